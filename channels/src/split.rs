//! Splitting a long Markdown answer into messages that fit a platform's limit (4096 on Telegram,
//! 2000 on Discord), without breaking UTF-8, words or code blocks.
//!
//! Lengths are counted in UTF-16 code units, the unit the platforms count in (for text without
//! astral characters that is the number of characters). A part prefers to end at a paragraph
//! break outside code, then at a line break, then between words; a single word longer than a whole
//! part is the only thing ever cut. A part that ends inside a fenced code block gets the fence
//! closed, and the next part reopens it with the same opening line (language included).

/// Telegram's longest message (text after entity parsing).
pub const TELEGRAM_LIMIT: usize = 4096;
/// Discord's longest message content.
pub const DISCORD_LIMIT: usize = 2000;

/// The smallest limit [`split_markdown`] accepts.
pub const MIN_LIMIT: usize = 32;

/// The length the platforms count: UTF-16 code units.
pub fn text_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// An open fenced code block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fence {
    /// The opening line as it will be repeated (marker and info string, trimmed).
    open_line: String,
    marker: char,
    marker_len: usize,
}

impl Fence {
    fn closing(&self) -> String {
        std::iter::repeat_n(self.marker, self.marker_len).collect()
    }
}

/// A fence line's marker: (character, run length, the rest of the line).
fn fence_marker(line: &str) -> Option<(char, usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let body = &line[indent..];
    let marker = body.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let run = body.chars().take_while(|c| *c == marker).count();
    (run >= 3).then(|| (marker, run, &body[run..]))
}

/// The fence state after `line` (without its line break), given the state before it.
fn step(state: Option<Fence>, line: &str) -> Option<Fence> {
    let line = line.trim_end_matches('\r');
    match state {
        None => match fence_marker(line) {
            // A backtick fence's info string may not contain backticks (CommonMark).
            Some(('`', _, info)) if info.contains('`') => None,
            Some((marker, marker_len, info)) => {
                let info: String = info.trim().chars().take(16).collect();
                let open_line = format!(
                    "{}{}",
                    std::iter::repeat_n(marker, marker_len).collect::<String>(),
                    info
                );
                Some(Fence {
                    open_line,
                    marker,
                    marker_len,
                })
            }
            None => None,
        },
        Some(fence) => match fence_marker(line) {
            Some((marker, len, rest))
                if marker == fence.marker && len >= fence.marker_len && rest.trim().is_empty() =>
            {
                None
            }
            _ => Some(fence),
        },
    }
}

/// The fence state after all of `text`.
fn state_after(mut state: Option<Fence>, text: &str) -> Option<Fence> {
    for line in text.split('\n') {
        state = step(state, line);
    }
    state
}

/// One part: `prefix` (a reopened fence), a slice of the input, and `suffix` (a closed fence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece<'a> {
    pub prefix: String,
    pub body: &'a str,
    pub suffix: String,
}

impl Piece<'_> {
    pub fn text(&self) -> String {
        format!("{}{}{}", self.prefix, self.body, self.suffix)
    }
}

/// The longest prefix of `s` (ending on a char boundary) of at most `budget` UTF-16 units.
fn fit(s: &str, budget: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.len_utf16();
        if used > budget {
            return i;
        }
    }
    s.len()
}

/// Where to end a part inside `window` (a prefix of the rest of the text, starting in `state`):
/// the end of the part's body and where the next part starts.
fn find_cut(window: &str, state: &Option<Fence>, whole_rest: &str) -> (usize, usize) {
    let min = window.len() / 3;
    let mut paragraph: Option<usize> = None;
    let mut line_break: Option<usize> = None;
    let mut fence = state.clone();
    let mut pos = 0;
    let mut prev_blank = true;
    for line in window.split_inclusive('\n') {
        let complete = line.ends_with('\n');
        let content = line.trim_end_matches('\n');
        let blank = content.trim().is_empty();
        if !complete {
            break;
        }
        // A blank line outside code ends a paragraph: cut before it.
        if blank && fence.is_none() && !prev_blank && pos > 0 {
            paragraph = Some(pos - 1);
        }
        let before = fence.is_some();
        fence = step(fence, content);
        let end = pos + content.len();
        // Never end a part right after a fence opens (it would hold an empty block).
        let just_opened = !before && fence.is_some();
        if end > 0 && !just_opened && !blank {
            line_break = Some(end);
        }
        prev_blank = blank;
        pos += line.len();
    }
    let cut = match (paragraph, line_break) {
        (Some(p), _) if p > min => Some(p),
        (_, Some(l)) if l > min => Some(l),
        _ => None,
    };
    let cut = cut.or_else(|| {
        window
            .char_indices()
            .rev()
            .find(|&(i, c)| (c == ' ' || c == '\t') && i > 0)
            .map(|(i, _)| i)
            .filter(|&i| !window[..i].trim().is_empty())
    });
    let cut = cut.or(paragraph).or(line_break);
    match cut {
        Some(cut) => {
            // The separator is consumed: blank lines between paragraphs, one line break inside
            // code (blank code lines are content), or the run of spaces between words.
            let inside_code = state_after(state.clone(), &window[..cut]).is_some();
            let rest = &whole_rest[cut..];
            let skip = if rest.starts_with('\n') || rest.starts_with("\r\n") {
                if inside_code {
                    if rest.starts_with("\r\n") { 2 } else { 1 }
                } else {
                    rest.len() - rest.trim_start_matches(['\n', '\r']).len()
                }
            } else {
                rest.len() - rest.trim_start_matches([' ', '\t']).len()
            };
            (cut, cut + skip)
        }
        // One word longer than a part: cut it (on a char boundary).
        None => (window.len(), window.len()),
    }
}

/// Splits `text` into pieces of at most `limit` UTF-16 units each.
pub(crate) fn pieces(text: &str, limit: usize) -> Vec<Piece<'_>> {
    let limit = limit.max(MIN_LIMIT);
    let mut out = Vec::new();
    let mut rest = text;
    let mut state: Option<Fence> = None;
    loop {
        if state.is_none() {
            rest = rest.trim_start_matches(['\n', '\r']);
        }
        if rest.trim().is_empty() {
            break;
        }
        let prefix = state
            .as_ref()
            .map(|f| format!("{}\n", f.open_line))
            .unwrap_or_default();
        let room = limit.saturating_sub(text_len(&prefix)).max(8);
        if text_len(rest) <= room {
            out.push(Piece {
                prefix,
                body: rest.trim_end(),
                suffix: String::new(),
            });
            break;
        }
        // Leave room for a closing fence, then shrink further if the cut lands in a longer one.
        let mut reserve = 0;
        let (body, next, after) = loop {
            let mut end = fit(rest, room.saturating_sub(reserve).max(1));
            if end == 0 {
                // Not even one character fits the budget: take one anyway (always progress).
                end = rest.chars().next().map_or(0, char::len_utf8);
            }
            let window = &rest[..end];
            let (end, next) = find_cut(window, &state, rest);
            let body = if state_after(state.clone(), &rest[..end]).is_some() {
                rest[..end].trim_end_matches(['\n', '\r'])
            } else {
                rest[..end].trim_end()
            };
            let after = state_after(state.clone(), body);
            let need = after.as_ref().map_or(0, |f| 1 + f.marker_len);
            if text_len(body) + need <= room || reserve >= room / 2 {
                break (body, next, after);
            }
            reserve += need;
        };
        let suffix = after
            .as_ref()
            .map(|f| format!("\n{}", f.closing()))
            .unwrap_or_default();
        if !body.trim().is_empty() {
            out.push(Piece {
                prefix,
                body,
                suffix,
            });
        }
        state = after;
        // `next` is past at least one character and on a char boundary.
        rest = &rest[next..];
    }
    out
}

/// Splits a Markdown `text` into messages of at most `limit` UTF-16 code units (at least
/// [`MIN_LIMIT`]). Text that fits is returned as one part (trimmed); blank text gives no parts.
pub fn split_markdown(text: &str, limit: usize) -> Vec<String> {
    pieces(text, limit).iter().map(Piece::text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_markdown("hello", 100), ["hello"]);
        assert_eq!(split_markdown("  \n ", 100), Vec::<String>::new());
    }

    #[test]
    fn words_are_never_cut() {
        let text = (0..500)
            .map(|i| format!("tok{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let parts = split_markdown(&text, 100);
        assert!(parts.len() > 20);
        let mut words = Vec::new();
        for p in &parts {
            assert!(text_len(p) <= 100, "{p:?}");
            words.extend(p.split_whitespace().map(str::to_owned));
        }
        let original: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        assert_eq!(words, original);
    }

    #[test]
    fn paragraphs_are_preferred() {
        let a = "a".repeat(30) + " " + &"b".repeat(30);
        let text = format!("{a}\n\n{a}\n\n{a}");
        let parts = split_markdown(&text, 140);
        assert_eq!(parts, [format!("{a}\n\n{a}"), a.clone()]);
    }

    #[test]
    fn utf8_and_utf16_are_respected() {
        // Astral characters count two UTF-16 units each.
        let text = "😀".repeat(100);
        let parts = split_markdown(&text, 50);
        assert_eq!(parts.len(), 4);
        for p in &parts {
            assert_eq!(text_len(p), 50);
        }
        let text = "é ".repeat(200);
        for p in split_markdown(&text, 33) {
            assert!(text_len(&p) <= 33);
        }
    }

    #[test]
    fn a_giant_word_is_cut_on_a_char_boundary() {
        let text = "ж".repeat(100);
        let parts = split_markdown(&text, 40);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| text_len(p) <= 40));
    }

    #[test]
    fn code_fences_are_closed_and_reopened() {
        let code: String = (0..40).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n\n```rust\n{code}```\n\nDone.");
        let parts = split_markdown(&text, 200);
        assert!(parts.len() >= 3, "{parts:#?}");
        for (i, p) in parts.iter().enumerate() {
            assert!(text_len(p) <= 200, "{p:?}");
            assert!(
                state_after(None, p).is_none(),
                "part {i} leaves a fence open: {p:?}"
            );
        }
        assert!(parts[1].starts_with("```rust\n"), "{:?}", parts[1]);
        // Every code line survives whole.
        let joined = parts.join("\n");
        for i in 0..40 {
            assert!(
                joined.contains(&format!("let x{i} = {i};")),
                "line {i} lost"
            );
        }
        assert!(parts.last().unwrap().ends_with("Done."));
    }

    #[test]
    fn tildes_and_longer_fences() {
        let body: String = (0..30)
            .map(|i| format!("line {i} with ``` inside\n"))
            .collect();
        let text = format!("~~~~\n{body}~~~~\nafter");
        let parts = split_markdown(&text, 120);
        for p in &parts {
            assert!(text_len(p) <= 120);
            assert!(state_after(None, p).is_none(), "{p:?}");
        }
        assert!(parts[1].starts_with("~~~~\n"));
    }

    fn words() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "[a-z]{1,10}",
            "[àéîöü]{1,5}",
            "[😀🎉]{1,3}",
            Just("```".to_owned()),
            Just("```py".to_owned()),
            Just("**bold**".to_owned()),
        ];
        let sep = prop_oneof![
            4 => Just(" ".to_owned()),
            1 => Just("\n".to_owned()),
            1 => Just("\n\n".to_owned()),
        ];
        proptest::collection::vec((word, sep), 0..300).prop_map(|items| {
            let mut s = String::new();
            for (w, sep) in items {
                // Fence markers only at line starts, as Markdown writes them.
                if w.starts_with("```") {
                    s.push('\n');
                    s.push_str(&w);
                    s.push('\n');
                } else {
                    s.push_str(&w);
                    s.push_str(&sep);
                }
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn parts_fit_keep_every_word_and_balance_fences(text in words(), limit in 40usize..400) {
            let ps = pieces(&text, limit);
            let mut seen = Vec::new();
            for p in &ps {
                let t = p.text();
                prop_assert!(text_len(&t) <= limit, "{} > {limit}: {t:?}", text_len(&t));
                prop_assert!(!t.trim().is_empty());
                seen.extend(p.body.split_whitespace());
            }
            let original: Vec<&str> = text.split_whitespace().collect();
            prop_assert_eq!(seen, original);
            // Only a fence the source leaves open may stay open, in the last part.
            let source_open = state_after(None, &text).is_some();
            for (i, p) in ps.iter().enumerate() {
                let open = state_after(None, &p.text()).is_some();
                prop_assert!(!open || (source_open && i + 1 == ps.len()), "part {i}: {:?}", p.text());
            }
        }
    }
}
