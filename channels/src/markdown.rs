//! Markdown (what models write) rendered the way Telegram accepts it: its HTML subset, with `&`,
//! `<`, `>` and `"` escaped and every tag closed, whatever the input (a half-streamed answer with an
//! open `**` or code fence included). Discord renders Markdown itself and needs no conversion.
//!
//! Telegram's HTML: `<b> <i> <s> <u> <code> <pre> <a href> <blockquote>`; line breaks are plain
//! newlines. Headings become bold lines, list items get `•` or their number, images become links.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Escapes text for Telegram HTML (text and attribute values).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Link targets Telegram accepts; anything else is shown as plain text.
fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    ["http://", "https://", "tg://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// The CSS class Telegram reads a code block's language from.
fn language(info: &str) -> Option<String> {
    let lang: String = info
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '#' | '.'))
        .take(32)
        .collect();
    (!lang.is_empty()).then_some(lang)
}

/// Renders Markdown as Telegram HTML.
pub fn to_telegram_html(markdown: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len() + 64);
    // Per open list: the next number (ordered) or None (bullets).
    let mut lists: Vec<Option<u64>> = Vec::new();
    // Per open link or image: whether an <a> was opened for it.
    let mut links: Vec<bool> = Vec::new();
    // Per open code block: whether it has a <code class> inside its <pre>.
    let mut code_blocks: Vec<bool> = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {}
                Tag::Heading { .. } => out.push_str("<b>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(kind) => {
                    let lang = match kind {
                        CodeBlockKind::Fenced(info) => language(&info),
                        CodeBlockKind::Indented => None,
                    };
                    match &lang {
                        Some(lang) => {
                            out.push_str("<pre><code class=\"language-");
                            out.push_str(&escape_html(lang));
                            out.push_str("\">");
                        }
                        None => out.push_str("<pre>"),
                    }
                    code_blocks.push(lang.is_some());
                }
                Tag::List(start) => {
                    if !lists.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    lists.push(start);
                }
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("• "),
                    }
                }
                Tag::Emphasis => out.push_str("<i>"),
                Tag::Strong => out.push_str("<b>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                    let ok = safe_url(&dest_url);
                    if ok {
                        out.push_str("<a href=\"");
                        out.push_str(&escape_html(dest_url.trim()));
                        out.push_str("\">");
                    }
                    links.push(ok);
                }
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(level) => {
                    out.push_str("</b>");
                    out.push_str(if level == HeadingLevel::H1 {
                        "\n\n"
                    } else {
                        "\n"
                    });
                }
                TagEnd::BlockQuote(_) => {
                    trim_newlines(&mut out);
                    out.push_str("</blockquote>\n");
                }
                TagEnd::CodeBlock => {
                    if out.ends_with('\n') {
                        out.pop();
                    }
                    if code_blocks.pop().unwrap_or(false) {
                        out.push_str("</code></pre>\n\n");
                    } else {
                        out.push_str("</pre>\n\n");
                    }
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        out.push('\n');
                    }
                }
                TagEnd::Item => {
                    trim_newlines(&mut out);
                    out.push('\n');
                }
                TagEnd::Emphasis => out.push_str("</i>"),
                TagEnd::Strong => out.push_str("</b>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::Link | TagEnd::Image if links.pop().unwrap_or(false) => {
                    out.push_str("</a>");
                }
                _ => {}
            },
            Event::Text(text) => out.push_str(&escape_html(&text)),
            Event::Code(code) => {
                out.push_str("<code>");
                out.push_str(&escape_html(&code));
                out.push_str("</code>");
            }
            Event::Html(html) | Event::InlineHtml(html) => out.push_str(&escape_html(&html)),
            Event::InlineMath(m) | Event::DisplayMath(m) => out.push_str(&escape_html(&m)),
            Event::FootnoteReference(r) => out.push_str(&escape_html(&format!("[{r}]"))),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("──────\n\n"),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
        }
    }
    collapse_blank_lines(out.trim())
}

fn trim_newlines(out: &mut String) {
    while out.ends_with('\n') {
        out.pop();
    }
}

/// At most one blank line in a row (outside `<pre>` blocks, where text is kept as it is).
fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0;
    let mut in_pre = 0usize;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("<pre>") || rest.starts_with("<pre><code") {
            in_pre += 1;
        } else if rest.starts_with("</pre>") {
            in_pre = in_pre.saturating_sub(1);
        }
        if c == '\n' && in_pre == 0 {
            newlines += 1;
            if newlines <= 2 {
                out.push(c);
            }
        } else {
            newlines = 0;
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The text a reader sees of Telegram HTML: tags dropped, entities decoded.
pub fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        if in_tag {
            in_tag = c != '>';
        } else if c == '<' {
            in_tag = true;
        } else if c == '&' {
            let decoded = [
                ("&amp;", '&'),
                ("&lt;", '<'),
                ("&gt;", '>'),
                ("&quot;", '"'),
            ]
            .into_iter()
            .find(|(entity, _)| rest.starts_with(entity));
            if let Some((entity, ch)) = decoded {
                out.push(ch);
                rest = &rest[entity.len()..];
                continue;
            }
            out.push('&');
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks the tags are properly nested and only from Telegram's set.
    fn balanced(html: &str) -> bool {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                return false;
            };
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name) {
                    return false;
                }
            } else {
                let name = tag.split_whitespace().next().unwrap_or("").to_owned();
                if !["b", "i", "s", "u", "code", "pre", "a", "blockquote"].contains(&name.as_str())
                {
                    return false;
                }
                stack.push(name);
            }
        }
        stack.is_empty()
    }

    #[test]
    fn formatting_becomes_telegram_html() {
        assert_eq!(
            to_telegram_html("**bold** and *it* and ~~gone~~ and `x < y`"),
            "<b>bold</b> and <i>it</i> and <s>gone</s> and <code>x &lt; y</code>"
        );
        assert_eq!(
            to_telegram_html("# Title\n\nSome text."),
            "<b>Title</b>\n\nSome text."
        );
        assert_eq!(
            to_telegram_html("```rust\nfn main() { a && b }\n```"),
            "<pre><code class=\"language-rust\">fn main() { a &amp;&amp; b }</code></pre>"
        );
        assert_eq!(
            to_telegram_html("- one\n- two\n\n1. a\n2. b"),
            "• one\n• two\n\n1. a\n2. b"
        );
        assert_eq!(
            to_telegram_html("[site](https://example.com/?a=1&b=\"2\")"),
            "<a href=\"https://example.com/?a=1&amp;b=&quot;2&quot;\">site</a>"
        );
        assert_eq!(
            to_telegram_html("[x](javascript:alert(1))"),
            "x",
            "unsafe links are plain text"
        );
        assert_eq!(
            to_telegram_html("> quoted"),
            "<blockquote>quoted</blockquote>"
        );
    }

    #[test]
    fn everything_else_is_escaped() {
        assert_eq!(
            to_telegram_html("<b>not a tag</b> & \"quotes\""),
            "&lt;b&gt;not a tag&lt;/b&gt; &amp; &quot;quotes&quot;"
        );
        assert_eq!(to_telegram_html("snake_case_name"), "snake_case_name");
        assert_eq!(to_telegram_html("a <script>"), "a &lt;script&gt;");
    }

    #[test]
    fn half_streamed_markdown_stays_valid() {
        for partial in [
            "**bold",
            "```py\nprint(1",
            "[link](http://x",
            "*a **b",
            "> q\n```",
        ] {
            let html = to_telegram_html(partial);
            assert!(balanced(&html), "{partial:?} -> {html:?}");
        }
        assert_eq!(
            to_telegram_html("```py\nprint(1"),
            "<pre><code class=\"language-py\">print(1</code></pre>"
        );
    }

    #[test]
    fn the_visible_text_is_not_longer_than_the_source_for_common_answers() {
        let md = "# Plan\n\n1. **First** do `this` & that\n2. Then [read](https://x.y)\n\n```sh\necho <hi>\n```";
        let html = to_telegram_html(md);
        assert!(visible_text(&html).chars().count() <= md.chars().count());
        assert!(visible_text(&html).contains("echo <hi>"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn any_input_gives_balanced_known_tags(text in "[a-z *_`~#>\\-\\[\\]()<&\"\n1.!]{0,200}") {
            let html = to_telegram_html(&text);
            prop_assert!(balanced(&html), "{text:?} -> {html:?}");
        }
    }
}
