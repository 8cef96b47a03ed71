//! What the stand-in answers: decided by directives in the last user message's text.

use std::time::Duration;

/// Most words a `#tokens=N` answer has.
pub const MAX_TOKENS_DIRECTIVE: usize = 1_000_000;

/// The directives found in a message text (`#name` or `#name=value` words).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `#tokens=N`: answer with N words `tok0 tok1 ...`.
    pub tokens: Option<usize>,
    /// `#delay=MS`: wait this long before each delta.
    pub delay: Option<Duration>,
    /// `#status=CODE`: answer with this HTTP status and the provider's error body.
    pub status: Option<u16>,
    /// `#retry_after=S`: the `retry-after` header of an error answer.
    pub retry_after: Option<u64>,
    /// `#fail=N`: the first N requests with this text fail (with `#status`, default 503).
    pub fail: Option<u32>,
    /// `#cut=K`: send K deltas, then drop the connection.
    pub cut: Option<usize>,
    /// `#sse_error`: send one delta, then an error event.
    pub sse_error: bool,
    /// `#hang`: send one delta, then nothing more until the client leaves.
    pub hang: bool,
}

impl Directives {
    /// Reads the directives of `text`. Unknown or malformed ones are ignored.
    pub fn parse(text: &str) -> Self {
        let mut d = Directives::default();
        for word in text.split_whitespace() {
            let Some(directive) = word.strip_prefix('#') else {
                continue;
            };
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let value = value.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            let name = name.trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            match name {
                "tokens" => {
                    d.tokens = value
                        .parse::<usize>()
                        .ok()
                        .map(|n| n.min(MAX_TOKENS_DIRECTIVE))
                }
                "delay" => d.delay = value.parse().ok().map(Duration::from_millis),
                "status" => d.status = value.parse().ok().filter(|s| (100..=599).contains(s)),
                "retry_after" => d.retry_after = value.parse().ok(),
                "fail" => d.fail = value.parse().ok(),
                "cut" => d.cut = value.parse().ok(),
                "sse_error" => d.sse_error = true,
                "hang" => d.hang = true,
                _ => {}
            }
        }
        d
    }
}

/// How a streamed answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// All events, as the real service sends them.
    Complete,
    /// After this many deltas the connection is dropped without the closing events.
    Cut(usize),
    /// After one delta an error event is sent.
    ErrorEvent,
    /// After one delta nothing more is sent until the client disconnects.
    Hang,
}

/// A successful answer to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The pieces of text, one per delta; concatenated they are the whole answer.
    pub deltas: Vec<String>,
    /// Whether the answer was cut short by `max_tokens`.
    pub truncated: bool,
    /// Words in all the request's messages (and system prompt).
    pub input_tokens: u64,
    /// Wait before each delta.
    pub delay: Duration,
    /// How the stream ends.
    pub ending: Ending,
}

impl Answer {
    /// The whole text.
    pub fn text(&self) -> String {
        self.deltas.concat()
    }

    /// Output tokens: one per delta.
    pub fn output_tokens(&self) -> u64 {
        self.deltas.len() as u64
    }
}

/// The answer's deltas for `text`: `echo: <words of text>`, or `tok0 tok1 ...` with `#tokens=N`.
/// Each delta after the first starts with a space.
pub fn deltas_for(text: &str, directives: &Directives) -> Vec<String> {
    let words: Vec<String> = match directives.tokens {
        Some(n) => (0..n).map(|i| format!("tok{i}")).collect(),
        None => std::iter::once("echo:".to_string())
            .chain(text.split_whitespace().map(str::to_string))
            .collect(),
    };
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { w } else { format!(" {w}") })
        .collect()
}

/// Counts words, the stand-in's notion of tokens.
pub fn count_words<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts
        .into_iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directives() {
        let d = Directives::parse(
            "hi #tokens=5 #delay=20 #status=429 #retry_after=2 #fail=1 #cut=3 #sse_error #hang #nope=1",
        );
        assert_eq!(
            d,
            Directives {
                tokens: Some(5),
                delay: Some(Duration::from_millis(20)),
                status: Some(429),
                retry_after: Some(2),
                fail: Some(1),
                cut: Some(3),
                sse_error: true,
                hang: true,
            }
        );
        assert_eq!(Directives::parse("plain text"), Directives::default());
        assert_eq!(Directives::parse("#status=abc #status=999").status, None);
        assert_eq!(Directives::parse("(#tokens=2).").tokens, None);
        assert_eq!(Directives::parse("say #tokens=2.").tokens, Some(2));
        assert!(Directives::parse("#hang.").hang);
    }

    #[test]
    fn deltas_concatenate_to_the_answer() {
        let d = deltas_for("hello  big\nworld", &Directives::default());
        assert_eq!(d, vec!["echo:", " hello", " big", " world"]);
        assert_eq!(d.concat(), "echo: hello big world");
        let d = deltas_for("x #tokens=3", &Directives::parse("x #tokens=3"));
        assert_eq!(d.concat(), "tok0 tok1 tok2");
        assert!(deltas_for("", &Directives::parse("#tokens=0")).is_empty());
    }

    #[test]
    fn word_counts() {
        assert_eq!(count_words(["a b", " c ", ""]), 3);
    }
}
