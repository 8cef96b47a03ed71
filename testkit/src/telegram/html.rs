//! Telegram's HTML check: the visible text of a message with `parse_mode: "HTML"`, or the error
//! Telegram gives for it.

/// Parses Telegram HTML into the visible text, refusing what Telegram refuses.
pub fn parse_html(html: &str) -> Result<String, String> {
    const TAGS: [&str; 16] = [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with('<') {
            let end = rest
                .find('>')
                .ok_or_else(|| format!("Unclosed start tag at byte offset {i}"))?;
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    _ => {
                        return Err(format!(
                            "Unmatched end tag at byte offset {i}, expected \"</{}>\", found \"</{name}>\"",
                            stack.last().cloned().unwrap_or_default()
                        ));
                    }
                }
            } else {
                let name = tag.split_whitespace().next().unwrap_or("").to_owned();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {i}"
                    ));
                }
                stack.push(name);
            }
            i += end + 1;
        } else if rest.starts_with('&') {
            let end = rest
                .find(';')
                .filter(|&e| e <= 10)
                .ok_or_else(|| format!("Unclosed entity at byte offset {i}"))?;
            let entity = &rest[1..end];
            let ch = match entity {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                _ => entity
                    .strip_prefix('#')
                    .and_then(|n| n.parse::<u32>().ok())
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        format!("Unsupported HTML entity \"&{entity};\" at byte offset {i}")
                    })?,
            };
            out.push(ch);
            i += end + 1;
        } else if bytes[i] == b'>' {
            return Err(format!("Unexpected \">\" at byte offset {i}"));
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_checked_like_telegram_does() {
        assert_eq!(parse_html("<b>a</b> &amp; <i>b</i>").unwrap(), "a & b");
        assert_eq!(
            parse_html("<pre><code class=\"language-rust\">x &lt; y</code></pre>").unwrap(),
            "x < y"
        );
        assert!(parse_html("<b>a").unwrap_err().contains("end tag"));
        assert!(
            parse_html("<x>a</x>")
                .unwrap_err()
                .contains("Unsupported start tag")
        );
        assert!(parse_html("a & b").is_err());
        assert!(parse_html("<b><i>a</b></i>").is_err());
    }
}
