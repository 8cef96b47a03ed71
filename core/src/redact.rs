//! Keeping the secrets that live inside URLs out of what is shown and logged.
//!
//! A base URL may carry credentials: a user and password (`http://user:pw@proxy/v1`, sent as HTTP
//! Basic auth) or a credential in the query (`?api_key=...`, `?sig=...`). Everything that shows or
//! logs a URL passes it through [`redact_url`], which masks those and keeps the scheme, host, port
//! and path, so that the operator still sees where it points. Text that may quote a URL (error
//! messages) goes through [`redact_urls_in`], or [`scrub`] when the URL whose secrets must go is
//! known (its password may also appear on its own, percent-decoded).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::form_urlencoded;
use url::{Position, Url};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not searched for in free text: masking every occurrence of a
/// two-letter password would mangle the text around it. (Inside a URL they are masked whatever
/// their length.)
const MIN_FREE_TEXT_SECRET: usize = 4;

/// Parts of query parameter names that mark a credential (compared without regard to case, with
/// `-` read as `_`): `key`, `api_key`, `apikey`, `subscription-key`, `token`, `access_token`,
/// `secret`, `client_secret`, `password`, `passwd`, `pwd`, `sig`, `signature`,
/// `X-Amz-Signature`, `X-Amz-Credential`, `auth`, `session`... Masking a harmless parameter
/// whose name happens to contain one costs little; showing a credential costs much.
const SECRET_NAME_PARTS: [&str; 11] = [
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "sig",
    "auth",
    "credential",
    "session",
    "cookie",
    "jwt",
];

/// A configured URL (a provider's `base_url`, a channel's `api_url`) that may carry credentials:
/// its `Debug` shows it through [`redact_url`], so a config section holding one can derive
/// `Debug`. It reads as a `&str` where it is used.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RedactedUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for RedactedUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for RedactedUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl PartialEq<&str> for RedactedUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

/// True when a query parameter named `name` (as written, or percent-decoded) probably carries a
/// credential.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase().replace('-', "_");
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// `url` with its secrets masked: the user information becomes `***@` and the values of
/// credential-like query (and fragment) parameters `***`; scheme, host, port and path stay.
///
/// `http://user:PW@host/v1?key=X&a=b` becomes `http://***@host/v1?key=***&a=b`. A URL without
/// secrets comes back exactly as written. Text that does not parse as a URL is masked by its
/// shape: everything between `://` (or the start) and the last `@`, and credential-like
/// `name=value` pairs after a `?` or `#`.
pub fn redact_url(url: &str) -> String {
    match parse(url) {
        Some(parsed) => redact_parsed(url, parsed),
        None => redact_unparsed(url),
    }
}

/// `url` parsed, when the parser's reading of it can be trusted to find its user information: it
/// has a host, and no `@` after the host. (`http://u:12/x@h/` parses as host `u`, port 12 and
/// path `/x@h/`: the password `12/x` would not be seen as one.) `None` for the rest, which is
/// then masked by shape: no host (`sqlite::memory:`, `mailto:`, `user:pw@host` read as a scheme),
/// or an `@` in the path, query or fragment.
fn parse(url: &str) -> Option<Url> {
    let parsed = Url::parse(url).ok().filter(Url::has_host)?;
    let at_after_host = parsed.path().contains('@')
        || parsed.query().is_some_and(|q| q.contains('@'))
        || parsed.fragment().is_some_and(|f| f.contains('@'));
    (!at_after_host).then_some(parsed)
}

fn redact_parsed(original: &str, mut url: Url) -> String {
    let has_userinfo = !url.username().is_empty() || url.password().is_some();
    // The masked parameters, when any was masked.
    let masked = |params: Option<&str>| match params.map(redact_params) {
        Some(Cow::Owned(masked)) => Some(masked),
        _ => None,
    };
    let query = masked(url.query());
    let fragment = masked(url.fragment());
    if !has_userinfo && query.is_none() && fragment.is_none() {
        return original.to_owned();
    }
    if has_userinfo && (url.set_password(None).is_err() || url.set_username(MASK).is_err()) {
        return redact_unparsed(original);
    }
    if query.is_some() {
        url.set_query(query.as_deref());
    }
    if fragment.is_some() {
        url.set_fragment(fragment.as_deref());
    }
    // The parser gives `http://host` the path `/`: keep the URL as it was written.
    let written_path = original.find("://").is_some_and(|i| {
        original[i + 3..]
            .split(['?', '#'])
            .next()
            .is_some_and(|rest| rest.contains(['/', '\\']))
    });
    if url.path() == "/" && !written_path {
        return format!(
            "{}{}",
            &url[..Position::BeforePath],
            &url[Position::AfterPath..]
        );
    }
    url.into()
}

/// Masks by shape, for text the URL parser refuses: more may be masked than needed, never less.
fn redact_unparsed(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(start);
    // A password may hold an unescaped `/`, `?` or `#`: the last `@` ends the user information.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(MASK), &rest[at..]),
        None => (None, rest),
    };
    let (before_params, params) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    out.extend(userinfo);
    out.push_str(before_params);
    // `?a=b&key=c#x` : each run between `?` and `#` is a list of parameters.
    let mut rest = params;
    while let Some(sep) = rest.chars().next() {
        out.push(sep);
        rest = &rest[sep.len_utf8()..];
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        out.push_str(&redact_params(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

/// `a=b&key=c` with the values of credential-like parameters masked (`a=b&key=***`); borrowed
/// when nothing was masked.
fn redact_params(params: &str) -> Cow<'_, str> {
    let secret = |pair: &str| {
        pair.split_once('=').is_some_and(|(name, _)| {
            is_secret_param(name)
                || form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .is_some_and(|(decoded, _)| is_secret_param(&decoded))
        })
    };
    if !params.split(['&', ';']).any(secret) {
        return Cow::Borrowed(params);
    }
    let mut out = String::with_capacity(params.len());
    let mut rest = params;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        let Some(sep) = rest[end..].chars().next() else {
            break;
        };
        out.push(sep);
        rest = &rest[end + 1..];
    }
    Cow::Owned(out)
}

/// Punctuation that closes a URL quoted in text (`"http://..."`, `(http://...)`, `http://....`)
/// rather than belonging to it. Only whitespace ends a URL: a password may hold quotes.
fn closes_url(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | '`'
            | '<'
            | '>'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '.'
            | ','
            | ';'
            | ':'
            | '!'
            | '?'
    )
}

/// `text` with every URL in it (`scheme://...`) passed through [`redact_url`].
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-` and `.` before `://`.
        let scheme_start = rest[..found]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[found..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| found + i);
        let url = rest[scheme_start..end].trim_end_matches(closes_url);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(url));
        rest = &rest[scheme_start + url.len()..];
    }
    out.push_str(rest);
    out
}

/// The secrets `url` carries, to mask wherever they appear in text: its password and the values
/// of its credential-like parameters, as written and percent-decoded, longest first. (The user
/// name is not among them: it is masked inside URLs, but is no secret on its own.)
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut add = |raw: &str| {
        let decoded = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
        // In a query `+` may stand for a space.
        for s in [
            raw.to_owned(),
            decoded(raw),
            decoded(&raw.replace('+', " ")),
        ] {
            if s.chars().count() >= MIN_FREE_TEXT_SECRET && !found.contains(&s) {
                found.push(s);
            }
        }
    };
    // The password as written: between the first `:` and the last `@` after `://` (when the
    // parser is trusted there is no `@` after the host), and as the parser encodes it.
    let start = url.find("://").map_or(0, |i| i + 3);
    if let Some(at) = url[start..].rfind('@')
        && let Some((_, password)) = url[start..start + at].split_once(':')
    {
        add(password);
    }
    if let Some(password) = parse(url).as_ref().and_then(Url::password) {
        add(password);
    }
    // The parameters as written (the parser re-encodes them).
    let params = url.split_once(['?', '#']).map_or("", |(_, p)| p);
    for pair in params.split(['&', ';', '?', '#']) {
        if let Some((name, value)) = pair.split_once('=') {
            let decoded_name = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(n, _)| n.into_owned())
                .unwrap_or_default();
            if !value.is_empty() && (is_secret_param(name) || is_secret_param(&decoded_name)) {
                add(value);
            }
        }
    }
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// `text` with `secrets` masked wherever they occur (longest first).
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

/// `text` made safe to show when it may quote `url` or its secrets: every URL in it redacted
/// ([`redact_urls_in`]) and `url`'s secrets ([`url_secrets`]) masked wherever they occur.
pub fn scrub(text: &str, url: &str) -> String {
    mask_secrets(&redact_urls_in(text), &url_secrets(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_example_from_the_docs() {
        assert_eq!(
            redact_url("http://user:PW@host/v1?key=X&a=b"),
            "http://***@host/v1?key=***&a=b"
        );
    }

    #[test]
    fn userinfo_is_masked_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://alice:s3cret@proxy.example:8443/openai/v1"),
            "https://***@proxy.example:8443/openai/v1"
        );
        // A token as the user name, with no password.
        assert_eq!(
            redact_url("https://ghp_0123456789@git.example/x"),
            "https://***@git.example/x"
        );
        assert_eq!(redact_url("http://:pw@h/"), "http://***@h/");
        assert_eq!(redact_url("http://u:pw@h:81"), "http://***@h:81");
        assert_eq!(redact_url("http://u:pw@h?key=1"), "http://***@h?key=***");
        assert_eq!(
            redact_url("http://u:p@[::1]:8080/v1"),
            "http://***@[::1]:8080/v1"
        );
        assert_eq!(
            redact_url("postgres://app:s%40cret@db.example:5432/clanker"),
            "postgres://***@db.example:5432/clanker"
        );
    }

    #[test]
    fn urls_without_secrets_come_back_as_written() {
        for url in [
            "https://api.openai.com/v1",
            "http://127.0.0.1:11434/v1/",
            "HTTP://Example.COM",
            "https://api.anthropic.com/v1/models?limit=1",
            "sqlite://data/open-clanker.db?mode=rwc",
            "sqlite::memory:",
            "not a url at all",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn credential_parameters_are_masked_whatever_their_case() {
        assert_eq!(
            redact_url("https://h/v1?API_KEY=abc&Token=t&x=1&Signature=s&sig=z"),
            "https://h/v1?API_KEY=***&Token=***&x=1&Signature=***&sig=***"
        );
        assert_eq!(
            redact_url("https://h/?apikey=1;access_token=2;password=3;secret=4;mode=5"),
            "https://h/?apikey=***;access_token=***;password=***;secret=***;mode=5"
        );
        assert_eq!(
            redact_url("https://h/p?X-Amz-Credential=AK&X-Amz-Signature=ff&api-version=2024"),
            "https://h/p?X-Amz-Credential=***&X-Amz-Signature=***&api-version=2024"
        );
        // Percent-encoded names are recognised too.
        assert_eq!(redact_url("https://h/?%6Bey=v"), "https://h/?%6Bey=***");
        assert_eq!(
            redact_url("https://h/#access_token=t&state=s"),
            "https://h/#access_token=***&state=s"
        );
        assert!(is_secret_param("subscription-key"));
        assert!(!is_secret_param("limit"));
    }

    #[test]
    fn unparsable_urls_are_masked_by_shape() {
        // Not a valid port: the parser refuses it, the password must still go.
        assert_eq!(
            redact_url("http://user:pa/ss@host:99999/v1"),
            "http://***@host:99999/v1"
        );
        assert_eq!(redact_url("ftp//user:pw@host?key=1"), "***@host?key=***");
        assert_eq!(redact_url("user:pw@host/v1"), "***@host/v1");
    }

    #[test]
    fn urls_in_text_are_redacted() {
        let text = "could not reach http://u:hunter22@10.0.0.1:9/v1 (then \
                    \"https://h/?token=abc\"): refused";
        assert_eq!(
            redact_urls_in(text),
            "could not reach http://***@10.0.0.1:9/v1 (then \"https://h/?token=***\"): refused"
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
        assert_eq!(redact_urls_in("a ://b"), "a ://b");
    }

    #[test]
    fn scrub_masks_the_secrets_of_a_known_url_anywhere() {
        let url = "postgres://app:s%40cret@db.example:5432/clanker?sslpassword=k%2Byz";
        let msg = "failed to connect to postgres://app:s%40cret@db.example with s@cret and k+yz";
        let scrubbed = scrub(msg, url);
        for leak in ["s%40cret", "s@cret", "k+yz"] {
            assert!(!scrubbed.contains(leak), "{leak}: {scrubbed}");
        }
        assert!(scrubbed.contains("db.example"), "{scrubbed}");
        // The user name alone is no secret; short passwords are not searched for in free text.
        assert_eq!(scrub("user app", "postgres://app:xy@h/db"), "user app");
        assert_eq!(scrub("plain", "sqlite::memory:"), "plain");
    }

    proptest! {
        /// Whatever the password and parameter value, neither survives redaction, and the host
        /// and path are kept.
        #[test]
        fn no_secret_survives(
            user in "[a-zA-Z0-9._~-]{0,12}",
            password in "[a-zA-Z0-9!$&'()*+,;=._~%:@/?#-]{4,24}",
            value in "[a-zA-Z0-9._~%+/-]{4,24}",
            name in prop::sample::select(vec![
                "key", "api_key", "APIKEY", "token", "access_token", "secret", "password",
                "sig", "signature", "Api-Key",
            ]),
            host in "[a-z]{1,10}(\\.[a-z]{1,5})?",
            path in "(/[a-z0-9]{1,8}){0,3}",
        ) {
            let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
            for pw in [password.as_str(), encoded.as_str()] {
                let url = format!("http://{user}:{pw}@{host}:8080{path}?a=1&{name}={value}&b=2");
                let shown = redact_url(&url);
                prop_assert!(!shown.contains(&format!(":{pw}@")), "{url} -> {shown}");
                prop_assert!(!shown.contains(&format!("={value}")), "{url} -> {shown}");
                prop_assert!(!shown.contains(&format!("//{user}:")), "{url} -> {shown}");
                if pw == encoded {
                    // Parsable: host, port and path are kept as they were.
                    prop_assert!(shown.starts_with(&format!("http://***@{host}:8080")), "{url} -> {shown}");
                    prop_assert!(shown.contains(&format!("{path}?a=1&")), "{url} -> {shown}");
                    let in_text = redact_urls_in(&format!("error: {url} failed"));
                    prop_assert!(!in_text.contains(&format!(":{pw}@")), "{in_text}");
                    prop_assert!(!in_text.contains(&format!("={value}")), "{in_text}");
                }
                let text = format!("boom {pw} and {value} and {password}");
                let scrubbed = scrub(&text, &url);
                prop_assert!(!scrubbed.contains(&password) && !scrubbed.contains(&value), "{url}: {scrubbed}");
            }
        }

        /// A URL quoted anywhere in any text loses its secrets.
        #[test]
        fn no_secret_survives_in_text(
            prefix in "\\PC{0,12}",
            suffix in "\\PC{0,12}",
            password in "[a-zA-Z0-9!$&'()*+,;=._~%:@/?#-]{4,24}",
            value in "[a-zA-Z0-9._~%+/-]{4,24}",
        ) {
            let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
            for pw in [password.as_str(), encoded.as_str()] {
                let text = format!("{prefix} http://me:{pw}@host:8080/v1?token={value}&x=1 {suffix}");
                let shown = redact_urls_in(&text);
                prop_assert!(!shown.contains(&format!(":{pw}@")), "{text} -> {shown}");
                prop_assert!(!shown.contains(&format!("={value}")), "{text} -> {shown}");
            }
        }

        /// Redaction never panics on arbitrary text, and is idempotent.
        #[test]
        fn any_text_is_handled(text in "\\PC{0,80}") {
            let once = redact_url(&text);
            prop_assert_eq!(redact_url(&once), once.clone());
            let _ = redact_urls_in(&text);
            let _ = scrub(&text, &text);
        }
    }
}
