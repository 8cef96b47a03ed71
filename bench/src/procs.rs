//! The processes under test: spawning the stand-in provider and the gateway, raising file-descriptor
//! limits, and reading a process's memory and CPU time from `/proc`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Raises this process's `RLIMIT_NOFILE` to `want` (soft and hard; the hard limit only goes up when
/// permitted, e.g. as root). Children inherit it. Returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) != 0 {
            return 0;
        }
        let wanted = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(current.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            // Not allowed to raise the hard limit: go as high as it lets us.
            let capped = libc::rlimit {
                rlim_cur: want.min(current.rlim_max),
                rlim_max: current.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &capped);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut current);
    }
    current.rlim_cur
}

/// The soft "Max open files" limit of a running process, from `/proc/PID/limits`.
pub fn nofile_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Memory and CPU of one process at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcSample {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Threads.
    pub threads: u64,
}

/// Reads `/proc/PID/status` and `/proc/PID/stat`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 ("state").
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_secs: (utime + stime) as f64 / clock_ticks(),
        threads: field("Threads:"),
    })
}

/// CPU seconds (user + system) this process has used.
pub fn own_cpu_secs() -> f64 {
    sample(std::process::id()).map_or(0.0, |s| s.cpu_secs)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
pub struct Managed {
    pub child: Child,
}

impl Managed {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` when the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns whether it stopped by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if self.exited().is_some() {
            return true;
        }
        // SAFETY: kill with a pid we own (our child, not yet reaped).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// Waits up to `timeout` for a line of `reader` starting with `prefix`; returns the rest of it. The
/// reader's remaining output is drained in a thread so the child never blocks on a full pipe.
fn wait_for_line<R: Read + Send + 'static>(
    reader: R,
    prefix: &'static str,
    timeout: Duration,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(reader).lines();
        let mut sent = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.trim().to_string());
                sent = true;
            }
        }
    });
    rx.recv_timeout(timeout)
        .map_err(|_| format!("no line starting with {prefix:?} within {timeout:?}"))
}

/// The stand-in provider process.
pub struct StandInProc {
    pub proc: Managed,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

pub fn spawn_standin(bin: &Path, api_key: &str) -> Result<StandInProc, String> {
    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            api_key,
            "--delay-ms",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proc = Managed { child };
    let url = wait_for_line(stdout, "listening on ", Duration::from_secs(20))?;
    Ok(StandInProc { proc, url })
}

/// How to start gateways.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub bin: PathBuf,
    pub standin_url: String,
    pub api_key: String,
    pub log_level: String,
    /// Extra `KEY=VALUE` environment.
    pub env: Vec<(String, String)>,
}

/// A running gateway with its own data directory.
pub struct GatewayProc {
    pub proc: Managed,
    pub addr: SocketAddr,
    /// From spawn to the "listening" line.
    pub listening_after: Duration,
    pub log_path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl GatewayProc {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `open-clanker gateway` on a free port with a data directory in `dir` (a fresh temporary
/// one when `None`), logging to `<dir>/gateway.log`, and waits for its "listening" line.
pub fn spawn_gateway(spec: &GatewaySpec, dir: Option<&Path>) -> Result<GatewayProc, String> {
    let temp = match dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("open-clanker-bench-")
                .tempdir()
                .map_err(|e| format!("temp dir: {e}"))?,
        ),
    };
    let dir = dir
        .map(Path::to_path_buf)
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .ok_or("no data dir")?;
    let config = dir.join("bench.toml");
    if !config.exists() {
        std::fs::write(&config, "# open-clanker-bench: built-in defaults\n")
            .map_err(|e| format!("config file: {e}"))?;
    }
    let log_path = dir.join("gateway.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("log file: {e}"))?;
    let data_dir = dir.join("data");
    let mut cmd = Command::new(&spec.bin);
    cmd.arg("--config")
        .arg(&config)
        .arg("gateway")
        .current_dir(&dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPEN_CLANKER_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("ANTHROPIC_API_KEY", &spec.api_key)
        .env("ANTHROPIC_BASE_URL", &spec.standin_url)
        .env("OPEN_CLANKER_DEFAULT_PROVIDER", "anthropic")
        .env("OPEN_CLANKER_LISTEN", "127.0.0.1:0")
        .env("OPEN_CLANKER_DATA_DIR", &data_dir)
        .env("OPEN_CLANKER_LOG_LEVEL", &spec.log_level)
        .env("OPEN_CLANKER_LOG_FORMAT", "human")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let begun = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut proc = Managed { child };
    let line = match wait_for_line(
        stdout,
        "open-clanker gateway listening on ",
        Duration::from_secs(30),
    ) {
        Ok(line) => line,
        Err(e) => {
            let status = proc.exited();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");
            return Err(format!(
                "the gateway did not start ({e}; exit {status:?}); log tail:\n{tail}"
            ));
        }
    };
    let listening_after = begun.elapsed();
    let addr: SocketAddr = line
        .parse()
        .map_err(|e| format!("gateway address {line:?}: {e}"))?;
    Ok(GatewayProc {
        proc,
        addr,
        listening_after,
        log_path,
        _temp: temp,
    })
}

/// `GET /health` over a fresh connection; the HTTP status code.
pub fn health_status(addr: SocketAddr, timeout: Duration) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut head[got..]).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let text = std::str::from_utf8(&head[..got]).map_err(|e| e.to_string())?;
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}

/// Looks for a sibling binary of this executable (`target/<profile>/NAME`), then `target/release`
/// and `target/debug` under the current directory.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join(name));
        if let Some(parent) = dir.parent() {
            // `target/release/deps/…` when run from `cargo test`/`cargo bench`.
            candidates.push(parent.join(name));
        }
    }
    candidates.push(PathBuf::from("target/release").join(name));
    candidates.push(PathBuf::from("target/debug").join(name));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}
