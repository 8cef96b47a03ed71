//! Plain HTTP/1.1 requests to the gateway over a bare TCP connection, seen as they are sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Connects to `addr` (`http://host:port`) and sends `method path` with `headers` and `body`
/// (none: no `Content-Length` either).
fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TcpStream {
    let host = addr.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(body) = body {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    if let Some(body) = body {
        s.write_all(body).expect("write body");
    }
    s
}

/// A plain HTTP/1.1 GET, returning the status line and body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = send(addr, "GET", path, &[], None);
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// A plain HTTP/1.1 request with optional headers and body, returning the status line, the raw
/// header block and the body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (String, String, String) {
    let mut s = send(addr, method, path, headers, Some(body.as_bytes()));
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string())
}

/// Like [`http_request`], for binary bodies (gRPC-Web): the status line, the raw header block and
/// the body bytes as received (chunked framing included).
pub fn http_request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (String, String, Vec<u8>) {
    let mut s = send(addr, method, path, headers, Some(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head, body)
}
