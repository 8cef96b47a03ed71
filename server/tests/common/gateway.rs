//! The gateway process and the CLI: starting the gateway, running commands against it, stopping it.

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
        self.cli_command(args).output().expect("run cli")
    }

    /// Runs a CLI command against this gateway with an API token, when there is one.
    pub fn cli_as(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = self.cli_command(args);
        if let Some(t) = token {
            cmd.env("OPEN_CLANKER_TOKEN", t);
        }
        cmd.output().expect("run cli")
    }

    /// A CLI command against this gateway, to spawn or to add to.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = command(&self.home);
        cmd.args(args).env("OPEN_CLANKER_ADDR", &self.addr);
        cmd
    }

    /// `status --json`, which must succeed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
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

/// The session id from the CLI's `session <id> (...)` line on stderr.
pub fn session_from(stderr_text: &str) -> String {
    stderr_text
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session line in {stderr_text:?}"))
        .to_string()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then let go).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `open-clanker <args>` run in `home` (no gateway needed: `doctor`, `config-validate`, ...) with
/// `env`, configured as a gateway there would be: listening on an unused local port, its data
/// under `home/data`.
pub fn run_in(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(home);
    cmd.args(args)
        .env(
            "OPEN_CLANKER_LISTEN",
            format!("127.0.0.1:{}", unused_port()),
        )
        .env("OPEN_CLANKER_DATA_DIR", home.join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run open-clanker")
}
