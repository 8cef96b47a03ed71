//! The web chat page, served on the gateway's port at `GET /`. It talks to the gateway through
//! gRPC-Web only. Its built assets (`web/dist`, built with `cd web && npm ci && npm run build`) are
//! embedded in the binary, each also gzipped, so the binary stays one file and needs no npm to build.
//!
//! Every asset is sent with a strong ETag and `Cache-Control: no-cache` (browsers revalidate and get
//! `304 Not Modified` while the binary is unchanged), and gzipped when the client accepts it.

use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_SECURITY_POLICY,
    CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    content_type: &'static str,
    raw: &'static [u8],
    gzip: &'static [u8],
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {
        Asset {
            content_type: $content_type,
            raw: include_bytes!(concat!("../../web/dist/", $file)),
            gzip: include_bytes!(concat!("../../web/dist/", $file, ".gz")),
        }
    };
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
static APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
static APP_CSS: Asset = asset!("app.css", "text/css; charset=utf-8");

/// The page may only load its own script and style and talk to its own origin (gRPC-Web).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes, to merge into the gateway's router (plain HTTP, outside the gRPC-Web layer).
pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/index.html",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
}

/// FNV-1a: a stable content hash for the ETag (not a security measure).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `Accept-Encoding` allows gzip (present and not `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// Whether `If-None-Match` names this ETag (weak comparison, as for GET).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == bare)
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let gzip = accepts_gzip(request);
    let hash = fnv1a(asset.raw);
    let etag = if gzip {
        format!("\"{hash:016x}-gz\"")
    } else {
        format!("\"{hash:016x}\"")
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.content_type.starts_with("text/html") {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    if not_modified(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    let body = if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        asset.gzip
    } else {
        asset.raw
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    (StatusCode::OK, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_built_page_is_embedded() {
        let html = std::str::from_utf8(INDEX.raw).unwrap();
        assert!(
            html.contains("app.js") && html.contains("app.css"),
            "{html}"
        );
        assert!(APP_JS.raw.len() > 1000 && APP_CSS.raw.len() > 100);
        for a in [&INDEX, &APP_JS, &APP_CSS] {
            // gzip magic: the .gz files are gzip streams (their content is checked by `npm run check-dist`).
            assert_eq!(&a.gzip[..2], &[0x1f, 0x8b]);
            assert!(a.gzip.len() < a.raw.len());
        }
    }

    #[test]
    fn gzip_is_negotiated() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1.0, GZIP;q=0.5"
        )])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn serves_with_type_etag_and_encoding() {
        let plain = serve(&APP_JS, &HeaderMap::new());
        assert_eq!(plain.status(), StatusCode::OK);
        let h = plain.headers();
        assert_eq!(h[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(h[CONTENT_LENGTH], APP_JS.raw.len().to_string().as_str());
        assert!(h.get(CONTENT_ENCODING).is_none());
        let etag = h[ETAG].to_str().unwrap().to_string();

        let gz = serve(&APP_JS, &headers(&[("accept-encoding", "gzip")]));
        assert_eq!(gz.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(
            gz.headers()[CONTENT_LENGTH],
            APP_JS.gzip.len().to_string().as_str()
        );
        assert_ne!(gz.headers()[ETAG].to_str().unwrap(), etag);

        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        let cached = serve(&APP_JS, &again);
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[ETAG], etag.as_str());

        let html = serve(&INDEX, &HeaderMap::new());
        assert_eq!(html.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(html.headers().contains_key(CONTENT_SECURITY_POLICY));
    }
}
