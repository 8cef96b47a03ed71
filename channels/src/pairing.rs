//! Pairing codes: what an unknown sender gets, and the owner approves with
//! `open-clanker pairing approve <channel> <code>`.

use std::time::Duration;

/// Characters of a code: upper-case letters and digits without the look-alikes 0, O, 1, I and L.
pub const CODE_ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters in a code.
pub const CODE_LEN: usize = 8;
/// How long a code stays valid. Short, because a channel has few codes waiting
/// ([`MAX_PENDING_PER_CHANNEL`]): strangers who never get approved free their places soon.
pub const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most unexpired codes one channel has at once (each channel counts its own). A sender holds at
/// most one: asking again re-sends the same code.
pub const MAX_PENDING_PER_CHANNEL: u32 = 3;

/// A fresh code from the operating system's CSPRNG, uniform over [`CODE_ALPHABET`].
pub fn generate_code() -> String {
    // Rejection sampling: 248 = 8 × 31, so bytes below it map uniformly.
    const LIMIT: u8 = (256 / CODE_ALPHABET.len() * CODE_ALPHABET.len()) as u8;
    let mut code = String::with_capacity(CODE_LEN);
    let mut buf = [0u8; 32];
    while code.len() < CODE_LEN {
        getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
        for &b in &buf {
            if b < LIMIT && code.len() < CODE_LEN {
                code.push(char::from(
                    CODE_ALPHABET[usize::from(b) % CODE_ALPHABET.len()],
                ));
            }
        }
    }
    code
}

/// True when `code` has the shape of a pairing code (any case).
pub fn is_code(code: &str) -> bool {
    code.len() == CODE_LEN
        && code
            .bytes()
            .all(|b| CODE_ALPHABET.contains(&b.to_ascii_uppercase()))
}

/// What an unknown sender is told.
pub fn pairing_message(channel: &str, code: &str) -> String {
    format!(
        "I don't know you yet, so I can't answer. Your pairing code is **{code}** (valid for {} \
         minutes). Ask the owner of this bot to approve it:\n\n`open-clanker pairing approve {channel} {code}`",
        CODE_TTL.as_secs() / 60
    )
}

/// What an unknown sender is told when the channel has too many codes pending.
pub const TOO_MANY_PENDING: &str = "I don't know you yet, and too many pairing requests are \
     waiting for the owner right now. Please try again later.";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_alphabet_has_no_look_alikes() {
        for c in b"0O1IL" {
            assert!(!CODE_ALPHABET.contains(c), "{}", char::from(*c));
        }
        let unique: HashSet<_> = CODE_ALPHABET.iter().collect();
        assert_eq!(unique.len(), CODE_ALPHABET.len());
    }

    #[test]
    fn codes_are_eight_alphabet_characters_and_vary() {
        let mut seen = HashSet::new();
        let mut counts = [0usize; 31];
        for _ in 0..2000 {
            let code = generate_code();
            assert_eq!(code.len(), CODE_LEN);
            assert!(is_code(&code), "{code}");
            for b in code.bytes() {
                counts[CODE_ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
            seen.insert(code);
        }
        assert_eq!(seen.len(), 2000, "codes repeat");
        // 16000 characters over 31 symbols: about 516 each; every symbol is used.
        assert!(counts.iter().all(|&n| n > 300), "{counts:?}");
        assert!(is_code("abcd2345"));
        assert!(!is_code("ABCD0345"));
        assert!(!is_code("ABCD234"));
    }

    #[test]
    fn codes_live_ten_minutes_and_three_wait_at_most() {
        assert_eq!(CODE_TTL, Duration::from_secs(600));
        assert_eq!(MAX_PENDING_PER_CHANNEL, 3);
        let text = pairing_message("telegram", "ABCD2345");
        assert!(text.contains("open-clanker pairing approve telegram ABCD2345"));
        assert!(text.contains("valid for 10 minutes"), "{text}");
    }
}
