//! Runs the real `open-clanker` binary for end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_open-clanker");

/// The binary under test: this build's, or `OPEN_CLANKER_TEST_BIN` to run the same tests against
/// another build (e.g. the last release, to see a new test fail before its fix).
pub fn bin() -> std::ffi::OsString {
    std::env::var_os("OPEN_CLANKER_TEST_BIN").unwrap_or_else(|| BIN.into())
}
pub const KEY: &str = "sk-test-e2e-0123456789abcdef";

/// A command with an environment that cannot see the developer's own config or keys.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("share"))
        .env("RUST_LOG", "info,open_clanker=debug");
    cmd
}

/// A gateway process on an ephemeral port.
pub struct Gateway {
    pub child: Child,
    pub addr: String,
    pub home: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Gateway {
    /// Starts `open-clanker gateway` with `env` and waits until it listens.
    pub fn start(home: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut cmd = command(home);
        cmd.arg("gateway")
            .env("OPEN_CLANKER_LISTEN", "127.0.0.1:0")
            .env("OPEN_CLANKER_DATA_DIR", home.join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let err = stderr.join().unwrap_or_default();
                panic!("gateway did not start; stderr:\n{err}");
            }
        };
        let addr = line
            .rsplit(' ')
            .next()
            .expect("address in listening line")
            .to_string();
        Gateway {
            child,
            addr: format!("http://{addr}"),
            home: home.to_path_buf(),
            stderr: Some(stderr),
        }
    }

    /// Runs a CLI command against this gateway.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = command(&self.home);
        cmd.args(args).env("OPEN_CLANKER_ADDR", &self.addr);
        cmd.output().expect("run cli")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit; returns the status, how long it took, and stderr.
    pub fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let began = Instant::now();
        signal(self.child.id(), "TERM");
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        let elapsed = began.elapsed();
        let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
        (status, elapsed, err.unwrap_or_default())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A plain HTTP/1.1 GET, returning the status line and body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::Write;
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
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
    use std::io::Write;
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body.as_bytes()).expect("write body");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_string(), body.to_string())
}

/// The samples of a Prometheus text exposition: metric name, labels and value.
pub fn metric_samples(
    text: &str,
) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let mut labels = std::collections::BTreeMap::new();
        let name = match series.split_once('{') {
            None => series.to_string(),
            Some((name, rest)) => {
                let mut chars = rest.trim_end_matches('}').chars().peekable();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if key.is_empty() {
                        break;
                    }
                    assert_eq!(chars.next(), Some('"'), "bad exposition line: {line}");
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(other) => val.push(other),
                                None => {}
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.insert(key.trim_start_matches(',').to_string(), val);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                name.to_string()
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The sum of the samples named `name` whose labels include every pair of `labels`; `None` when
/// no sample matches.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (n, l, v) in metric_samples(text) {
        if n == name
            && labels
                .iter()
                .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `GET /metrics` of a gateway: the status line and the exposition.
pub fn scrape(addr: &str) -> (String, String) {
    http_get(addr, "/metrics")
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
    use std::io::Write;
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
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

/// The environment that makes a gateway answer with the stand-in at `url` (its Anthropic API, the
/// default provider), followed by `extra`.
pub fn standin_env<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", url)];
    env.extend_from_slice(extra);
    env
}

/// A stand-in provider on 127.0.0.1 that expects [`KEY`] and answers at once.
pub async fn standin() -> open_clanker_testkit::StandIn {
    open_clanker_testkit::spawn(open_clanker_testkit::StandInConfig {
        api_key: KEY.to_string(),
        default_delay: Duration::ZERO,
        ..Default::default()
    })
    .await
    .expect("stand-in")
}

/// The session id from the CLI's `session <id> (...)` line on stderr.
pub fn session_from(stderr_text: &str) -> String {
    stderr_text
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session line in {stderr_text:?}"))
        .to_string()
}
