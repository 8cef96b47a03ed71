//! Paging of listings: page sizes, [`Page`], and the opaque keyset tokens that continue a listing.

use crate::error::StoreError;

/// Default and maximum page sizes of [`Store::list_sessions`].
///
/// [`Store::list_sessions`]: crate::Store::list_sessions
pub(crate) const SESSIONS_PAGE_DEFAULT: u32 = 50;
pub(crate) const SESSIONS_PAGE_MAX: u32 = 500;
/// Default and maximum page sizes of [`Store::history`].
///
/// [`Store::history`]: crate::Store::history
pub(crate) const HISTORY_PAGE_DEFAULT: u32 = 100;
pub(crate) const HISTORY_PAGE_MAX: u32 = 1000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass this to the same call to get the next page; `None` when this is the last page.
    pub next_page_token: Option<String>,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

/// Token prefixes: a version and the listing it belongs to.
const SESSION_TOKEN_PREFIX: &str = "s1:";
const MESSAGE_TOKEN_PREFIX: &str = "m1:";
/// Tokens longer than this are refused before decoding.
const MAX_TOKEN_LEN: usize = 1024;

pub(crate) fn encode_session_token(created_at: i64, id: &str) -> String {
    hex_encode(format!("{SESSION_TOKEN_PREFIX}{created_at}:{id}").as_bytes())
}

pub(crate) fn decode_session_token(token: &str) -> Result<(i64, String), StoreError> {
    let text = token_text(token, SESSION_TOKEN_PREFIX)?;
    let (created_at, id) = text.split_once(':').ok_or_else(bad_token)?;
    let created_at = created_at.parse::<i64>().map_err(|_| bad_token())?;
    if id.is_empty() {
        return Err(bad_token());
    }
    Ok((created_at, id.to_owned()))
}

pub(crate) fn encode_message_token(id: i64) -> String {
    hex_encode(format!("{MESSAGE_TOKEN_PREFIX}{id}").as_bytes())
}

pub(crate) fn decode_message_token(token: &str) -> Result<i64, StoreError> {
    token_text(token, MESSAGE_TOKEN_PREFIX)?
        .parse::<i64>()
        .map_err(|_| bad_token())
}

/// The text inside a token, after checking its prefix.
fn token_text(token: &str, prefix: &str) -> Result<String, StoreError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad_token());
    }
    let bytes = hex_decode(token).ok_or_else(bad_token)?;
    let text = String::from_utf8(bytes).map_err(|_| bad_token())?;
    text.strip_prefix(prefix)
        .map(str::to_owned)
        .ok_or_else(bad_token)
}

fn bad_token() -> StoreError {
    StoreError::InvalidPageToken(
        "not a token returned by this listing; start again without a page token".to_owned(),
    )
}

/// `requested` clamped to `1..=max`, with 0 meaning `default`.
pub(crate) fn clamp_page_size(requested: u32, default: u32, max: u32) -> u32 {
    if requested == 0 {
        default
    } else {
        requested.min(max)
    }
}

/// Splits the `size + 1` rows fetched for a page into the page and whether more follow.
pub(crate) fn split_page<T>(mut rows: Vec<T>, size: u32) -> (Vec<T>, bool) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = encode_session_token(1234, "abc:def");
        assert_eq!(
            decode_session_token(&token).unwrap(),
            (1234, "abc:def".to_owned())
        );
        assert_eq!(decode_message_token(&encode_message_token(42)).unwrap(), 42);
        for bad in [
            "zz",
            "abc",
            &encode_message_token(1),
            &hex_encode(b"s1:x:y"),
        ] {
            assert!(matches!(
                decode_session_token(bad),
                Err(StoreError::InvalidPageToken(_))
            ));
        }
        assert!(matches!(
            decode_message_token(&token),
            Err(StoreError::InvalidPageToken(_))
        ));
    }

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!(clamp_page_size(0, 50, 500), 50);
        assert_eq!(clamp_page_size(7, 50, 500), 7);
        assert_eq!(clamp_page_size(9999, 50, 500), 500);
    }
}
