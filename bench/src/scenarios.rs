//! The scenarios, their measurements and the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::client::{Driver, Mode, Outcome, Protocol, expected_answer};
use crate::procs::{self, GatewayProc, GatewaySpec, ProcSample, StandInProc};
use crate::stats::{Dist, median, slope};
use crate::{Args, Scenario};

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_mib: u64,
    pub cpu_model: String,
    pub kernel: String,
    /// `/proc/loadavg` when the bench started (other work on the machine skews timings).
    pub loadavg_at_start: String,
}

impl Machine {
    fn read() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_total_mib: mem_kib / 1024,
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease"),
            loadavg_at_start: read("/proc/loadavg"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BinaryInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub size_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct StartupReport {
    pub runs: usize,
    /// Spawn -> `GET /health` 200 with a new, empty data directory (creates the database).
    pub fresh_ms: Vec<f64>,
    pub fresh_median_ms: f64,
    /// The same with the database already there.
    pub existing_ms: Vec<f64>,
    pub existing_median_ms: f64,
    /// Spawn -> the "listening" line on stdout (median, all runs).
    pub listening_median_ms: f64,
    /// SIGTERM -> exit of an idle gateway.
    pub stop_median_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub runs: usize,
    /// RSS one second after start, before any chat (median over runs), KiB.
    pub rss_fresh_kib: f64,
    /// RSS after `--warmup` chats and a one-second pause (median), KiB.
    pub rss_after_warmup_kib: f64,
    pub threads: u64,
    pub per_run: Vec<(u64, u64)>,
    /// With `--channels`: RSS one second after Telegram and Discord both report connected
    /// (median over runs), KiB.
    pub rss_channels_kib: Option<f64>,
    pub channels_per_run: Vec<u64>,
}

/// The gateway's resources over one run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Resources {
    pub cpu_secs: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_max_kib: u64,
    pub hwm_kib: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    pub chats: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, usize>,
    /// Request sent -> first text delta.
    pub ttft: Dist,
    /// Request sent -> the turn's first event (`started`: the user's message is stored).
    pub started: Dist,
    /// Gaps between consecutive text deltas.
    pub gaps: Dist,
    /// Request sent -> end of the answer.
    pub total: Dist,
    pub wall_secs: f64,
    pub turns_per_sec: f64,
    /// Most chats in flight at once, as the bench counted them.
    pub peak_in_flight: usize,
    /// Most answers the stand-in was streaming at once (`/_standin/stats`).
    pub peak_standin_streams: usize,
    pub gateway: Option<Resources>,
    pub standin_cpu_secs: Option<f64>,
    pub bench_cpu_secs: f64,
    /// Gateway CPU time per turn, microseconds.
    pub gateway_cpu_us_per_turn: Option<f64>,
    /// Sessions and messages the store gained, and what the turns should have stored.
    pub stored: Option<StoreCheck>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StoreCheck {
    pub sessions_added: u64,
    pub messages_added: u64,
    pub messages_expected: u64,
    pub ok: bool,
}

/// One scenario over one protocol: medians over the runs, and the baseline.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    pub protocol: Protocol,
    pub chats_per_run: usize,
    pub tokens: usize,
    pub delay_ms: u64,
    pub connections: usize,
    pub runs: Vec<RunStats>,
    pub baseline_runs: Vec<RunStats>,
    /// Medians over the runs.
    pub ttft: Dist,
    pub started: Dist,
    pub gaps: Dist,
    pub baseline_ttft: Option<Dist>,
    pub baseline_gaps: Option<Dist>,
    /// The gateway's overhead on time to first token: `ttft - baseline_ttft`, percentile by
    /// percentile (medians over runs).
    pub overhead_ttft: Option<Dist>,
    /// The gateway's per-token relay delay: `gaps - baseline_gaps`, percentile by percentile.
    pub overhead_gap: Option<Dist>,
    /// Gaps minus the stand-in's pacing (`delay_ms`).
    pub gap_minus_pacing: Dist,
    pub turns_per_sec: f64,
    pub baseline_turns_per_sec: Option<f64>,
    pub gateway_cpu_us_per_turn: Option<f64>,
    pub gateway_rss_max_kib: Option<u64>,
    pub peak_in_flight: usize,
    pub peak_standin_streams: usize,
    pub errors: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct HoldRun {
    pub streams: usize,
    pub opened: usize,
    pub rss_before_kib: u64,
    pub rss_held_kib: u64,
    pub rss_after_release_kib: u64,
    pub per_stream_kib: f64,
    pub standin_streams: usize,
    pub errors: BTreeMap<String, usize>,
    pub stored: Option<StoreCheck>,
}

#[derive(Debug, Serialize)]
pub struct HoldReport {
    pub protocol: Protocol,
    pub runs: Vec<HoldRun>,
    /// Median over runs, KiB per held stream.
    pub per_stream_kib: f64,
    pub rss_before_kib: f64,
    pub rss_held_kib: f64,
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub protocol: Protocol,
    pub workers: usize,
    pub secs: u64,
    pub run: RunStats,
    /// (seconds since start, RSS KiB), one per second.
    pub rss_series: Vec<(f64, u64)>,
    /// RSS trend over the run after its first tenth, KiB per minute (least squares).
    pub rss_slope_kib_per_min: f64,
    /// Mean RSS of the second quarter and of the last quarter of the run, KiB.
    pub rss_q2_mean_kib: f64,
    pub rss_q4_mean_kib: f64,
    pub rss_max_kib: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Args,
    pub bench_nofile: u64,
    pub gateway_nofile: Option<u64>,
    pub binary: Option<BinaryInfo>,
    pub startup: Option<StartupReport>,
    pub idle: Option<IdleReport>,
    pub single: Vec<LatencyReport>,
    pub load: Vec<LatencyReport>,
    pub throughput: Vec<LatencyReport>,
    pub hold: Vec<HoldReport>,
    pub soak: Vec<SoakReport>,
    /// Failed chats (gateway and baseline), store mismatches and crashes.
    pub failures: usize,
}

// ---------------------------------------------------------------------------------------------
// The processes

struct Gateway {
    proc: Option<GatewayProc>,
    url: String,
    pid: Option<u32>,
}

impl Gateway {
    fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(procs::sample)
    }

    /// The last `n` warning and error lines of the log of a gateway we started.
    fn log_problems(&self, n: usize) -> Vec<String> {
        let Some(p) = &self.proc else {
            return Vec::new();
        };
        let log = std::fs::read_to_string(&p.log_path).unwrap_or_default();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_string)
            .collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// An error when a gateway we started has exited.
    fn check_alive(&mut self) -> Result<(), String> {
        if let Some(p) = self.proc.as_mut()
            && let Some(status) = p.proc.exited()
        {
            let log = std::fs::read_to_string(&p.log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            return Err(format!(
                "the gateway exited ({status}) during the run; log tail (newest first):\n{}",
                tail.join("\n")
            ));
        }
        Ok(())
    }
}

struct Bench {
    args: Args,
    spec: Option<GatewaySpec>,
    standin: Option<StandInProc>,
    standin_url: String,
    http: reqwest::Client,
    failures: usize,
    gateway_nofile: Option<u64>,
    runs: u64,
}

impl Bench {
    /// A fresh gateway (or the external one).
    fn gateway(&mut self) -> Result<Gateway, String> {
        if let Some(url) = &self.args.gateway_url {
            return Ok(Gateway {
                proc: None,
                url: url.trim_end_matches('/').to_string(),
                pid: self.args.gateway_pid,
            });
        }
        let spec = self.spec.as_ref().ok_or("no gateway binary")?;
        let g = procs::spawn_gateway(spec, None)?;
        let pid = g.proc.pid();
        if self.gateway_nofile.is_none() {
            self.gateway_nofile = procs::nofile_of(pid);
        }
        Ok(Gateway {
            url: g.url(),
            pid: Some(pid),
            proc: Some(g),
        })
    }

    fn standin_pid(&self) -> Option<u32> {
        self.standin.as_ref().map(|s| s.proc.pid())
    }

    fn run_tag(&mut self) -> String {
        self.runs += 1;
        format!("{}-{}", std::process::id(), self.runs)
    }

    async fn driver(
        &mut self,
        protocol: Protocol,
        g: &Gateway,
        streams: usize,
    ) -> Result<Driver, String> {
        let tag = self.run_tag();
        let base = if protocol == Protocol::Direct {
            self.standin_url.clone()
        } else {
            g.url.clone()
        };
        let connections = streams.div_ceil(self.args.per_conn).max(1);
        Driver::new(protocol, &base, connections, &self.args.api_key, &tag).await
    }

    /// `n` sequential chats that are not measured (errors still count).
    async fn warmup(&mut self, driver: &Driver, n: usize) {
        let expected = expected_answer(5);
        for i in 0..n {
            let o = driver
                .chat(
                    i,
                    format!("warm-up {i} #tokens=5"),
                    Mode::Complete {
                        expected: expected.clone(),
                    },
                    self.timeout(),
                )
                .await;
            if let Some(e) = o.error {
                eprintln!("  warm-up chat failed: {e}");
                self.failures += 1;
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.stream_timeout_secs)
    }
}

/// `(sessions, messages)` in the gateway's store, from `GetStatus`.
async fn store_counts(url: &str) -> Option<(u64, u64)> {
    let mut client = open_clanker_client::Client::connect(url).await.ok()?;
    let status = client.status().await.ok()?;
    let store = status.store?;
    Some((store.session_count, store.message_count))
}

/// Waits (up to `wait`) until the store has gained `sessions` sessions and `messages` messages.
async fn check_store(
    url: &str,
    before: Option<(u64, u64)>,
    sessions: u64,
    messages: u64,
    wait: Duration,
) -> Option<StoreCheck> {
    let before = before?;
    let deadline = Instant::now() + wait;
    loop {
        let now = store_counts(url).await?;
        let check = StoreCheck {
            sessions_added: now.0.saturating_sub(before.0),
            messages_added: now.1.saturating_sub(before.1),
            messages_expected: messages,
            ok: now.0.saturating_sub(before.0) == sessions
                && now.1.saturating_sub(before.1) == messages,
        };
        if check.ok || Instant::now() >= deadline {
            return Some(check);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling during a run

#[derive(Debug, Default)]
struct Sampled {
    rss_max_kib: u64,
    standin_max: usize,
    series: Vec<(f64, u64)>,
}

struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Sampled>,
}

impl Sampler {
    fn start(
        pid: Option<u32>,
        standin: Option<(reqwest::Client, String)>,
        every: Duration,
    ) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let begun = Instant::now();
            let mut out = Sampled::default();
            loop {
                if let Some(s) = pid.and_then(procs::sample) {
                    out.rss_max_kib = out.rss_max_kib.max(s.rss_kib);
                    out.series.push((begun.elapsed().as_secs_f64(), s.rss_kib));
                }
                if let Some((http, url)) = &standin
                    && let Some(active) = standin_active(http, url).await
                {
                    out.standin_max = out.standin_max.max(active);
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            out
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> Sampled {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn standin_active(http: &reqwest::Client, url: &str) -> Option<usize> {
    let v: serde_json::Value = http
        .get(format!("{url}/_standin/stats"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v.get("active_streams")?.as_u64().map(|n| n as usize)
}

// ---------------------------------------------------------------------------------------------
// Load shapes

struct Phase {
    outcomes: Vec<Outcome>,
    wall: Duration,
    peak_in_flight: usize,
}

/// `n` chats, chat `i` sent at `ramp * i / n`; returns when all have ended.
async fn open_loop(
    driver: &Driver,
    n: usize,
    ramp: Duration,
    text: Arc<dyn Fn(usize) -> String + Send + Sync>,
    mode: Mode,
    timeout: Duration,
) -> Phase {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let begun = Instant::now();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let driver = driver.clone();
        let text = text.clone();
        let mode = mode.clone();
        let in_flight = in_flight.clone();
        let peak = peak.clone();
        let at = start + ramp.mul_f64(i as f64 / n.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let o = driver.chat(i, text(i), mode, timeout).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            o
        }));
    }
    let mut outcomes = Vec::with_capacity(n);
    for t in tasks {
        outcomes.push(t.await.unwrap_or_else(|_| Outcome {
            error: Some("BENCH_TASK_PANICKED".into()),
            ..Outcome::default()
        }));
    }
    Phase {
        outcomes,
        wall: begun.elapsed(),
        peak_in_flight: peak.load(Ordering::SeqCst),
    }
}

/// `workers` chats at a time, back to back, for `secs`.
async fn closed_loop(
    driver: &Driver,
    workers: usize,
    secs: u64,
    text: Arc<dyn Fn(usize) -> String + Send + Sync>,
    expected: Arc<str>,
    timeout: Duration,
) -> Phase {
    let begun = Instant::now();
    let until = begun + Duration::from_secs(secs);
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let driver = driver.clone();
        let text = text.clone();
        let expected = expected.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < until {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let mode = Mode::Complete {
                    expected: expected.clone(),
                };
                out.push(driver.chat(i, text(i), mode, timeout).await);
            }
            out
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap_or_default());
    }
    Phase {
        outcomes,
        wall: begun.elapsed(),
        peak_in_flight: workers,
    }
}

fn paced_text(
    label: &'static str,
    tokens: usize,
    delay_ms: u64,
) -> Arc<dyn Fn(usize) -> String + Send + Sync> {
    Arc::new(move |i| {
        if delay_ms > 0 {
            format!("{label} {i} #tokens={tokens} #delay={delay_ms}")
        } else {
            format!("{label} {i} #tokens={tokens}")
        }
    })
}

/// Turns a phase into statistics.
fn summarize(phase: Phase) -> RunStats {
    let mut s = RunStats {
        chats: phase.outcomes.len(),
        wall_secs: phase.wall.as_secs_f64(),
        peak_in_flight: phase.peak_in_flight,
        ..RunStats::default()
    };
    let mut ttft = Vec::new();
    let mut started = Vec::new();
    let mut gaps = Vec::new();
    let mut total = Vec::new();
    for o in phase.outcomes {
        match o.error {
            Some(code) => *s.errors.entry(code).or_default() += 1,
            None => {
                s.ok += 1;
                ttft.extend(o.ttft_us);
                started.extend(o.started_us);
                gaps.extend(o.gaps_us.iter().map(|&g| u64::from(g)));
                total.push(o.total_us);
            }
        }
    }
    s.ttft = Dist::from_micros(ttft);
    s.started = Dist::from_micros(started);
    s.gaps = Dist::from_micros(gaps);
    s.total = Dist::from_micros(total);
    s.turns_per_sec = if s.wall_secs > 0.0 {
        s.ok as f64 / s.wall_secs
    } else {
        0.0
    };
    s
}

fn add_errors(into: &mut BTreeMap<String, usize>, from: &BTreeMap<String, usize>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn print_run(label: &str, r: &RunStats) {
    eprintln!(
        "  {label}: {} ok / {} chats in {:.1}s ({:.0}/s); ttft p50 {:.2} p99 {:.2} max {:.2} ms; gap p50 {:.2} p99 {:.2} ms; peak {} in flight{}{}",
        r.ok,
        r.chats,
        r.wall_secs,
        r.turns_per_sec,
        r.ttft.p50_ms,
        r.ttft.p99_ms,
        r.ttft.max_ms,
        r.gaps.p50_ms,
        r.gaps.p99_ms,
        r.peak_in_flight,
        r.gateway
            .map(|g| format!(
                "; gateway {:.2}s CPU, RSS max {} KiB",
                g.cpu_secs, g.rss_max_kib
            ))
            .unwrap_or_default(),
        if r.errors.is_empty() {
            String::new()
        } else {
            format!("; ERRORS {:?}", r.errors)
        }
    );
}

// ---------------------------------------------------------------------------------------------
// The scenarios

pub async fn run(args: Args, bench_nofile: u64) -> Result<Report, String> {
    let machine = Machine::read();
    eprintln!(
        "open-clanker-bench: {} cores, {} MiB, {}; load {}; RLIMIT_NOFILE {bench_nofile}",
        machine.nproc, machine.mem_total_mib, machine.cpu_model, machine.loadavg_at_start
    );
    let needs_gateway_bin = args.gateway_url.is_none();
    // Absolute paths: the gateway runs in its own data directory.
    let absolute =
        |p: &PathBuf| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let gateway_bin = match &args.gateway_bin {
        Some(p) => Some(absolute(p)?),
        None if needs_gateway_bin => Some(procs::find_bin("open-clanker").ok_or(
            "cannot find the open-clanker binary: build it (cargo build --release -p open-clanker) or pass --gateway-bin",
        )?),
        None => None,
    };
    let (standin, standin_url) = match &args.standin_url {
        Some(url) => (None, url.trim_end_matches('/').to_string()),
        None => {
            let bin = match &args.standin_bin {
                Some(p) => absolute(p)?,
                None => procs::find_bin("open-clanker-standin").ok_or(
                    "cannot find the open-clanker-standin binary: build it (cargo build --release -p open-clanker-testkit) or pass --standin-bin",
                )?,
            };
            let s = procs::spawn_standin(&bin, &args.api_key)?;
            eprintln!(
                "stand-in {} (pid {}) at {}",
                bin.display(),
                s.proc.pid(),
                s.url
            );
            let url = s.url.clone();
            (Some(s), url)
        }
    };
    let spec = gateway_bin.as_ref().map(|bin| GatewaySpec {
        bin: bin.clone(),
        standin_url: standin_url.clone(),
        api_key: args.api_key.clone(),
        log_level: args.log_level.clone(),
        env: args.gateway_env.clone(),
    });
    let binary = gateway_bin.as_ref().and_then(|p| {
        let size = std::fs::metadata(p).ok()?.len();
        Some(BinaryInfo {
            path: p.clone(),
            size_bytes: size,
            size_mib: size as f64 / (1024.0 * 1024.0),
        })
    });
    if let Some(b) = &binary {
        eprintln!("gateway {} ({:.2} MiB)", b.path.display(), b.size_mib);
    }
    let mut bench = Bench {
        args: args.clone(),
        spec,
        standin,
        standin_url,
        http: reqwest::Client::new(),
        failures: 0,
        gateway_nofile: None,
        runs: 0,
    };
    let mut report = Report {
        machine,
        settings: args.clone(),
        bench_nofile,
        gateway_nofile: None,
        binary,
        startup: None,
        idle: None,
        single: Vec::new(),
        load: Vec::new(),
        throughput: Vec::new(),
        hold: Vec::new(),
        soak: Vec::new(),
        failures: 0,
    };
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Startup => report.startup = startup(&mut bench)?,
            Scenario::Idle => report.idle = Some(idle(&mut bench).await?),
            Scenario::Single => {
                for &p in &args.protocol {
                    report.single.push(single(&mut bench, p).await?);
                }
            }
            Scenario::Load => {
                for &p in &args.protocol {
                    report.load.push(load(&mut bench, p).await?);
                }
            }
            Scenario::Throughput => {
                for &p in &args.protocol {
                    report.throughput.push(throughput(&mut bench, p).await?);
                }
            }
            Scenario::Hold => {
                for &p in &args.protocol {
                    report.hold.push(hold(&mut bench, p).await?);
                }
            }
            Scenario::Soak => {
                for &p in &args.protocol {
                    report.soak.push(soak(&mut bench, p).await?);
                }
            }
        }
    }
    if let Some(s) = bench.standin.as_mut()
        && let Some(status) = s.proc.exited()
    {
        eprintln!("the stand-in exited ({status}) during the run");
        bench.failures += 1;
    }
    report.gateway_nofile = bench.gateway_nofile;
    report.failures = bench.failures;
    Ok(report)
}

fn startup(bench: &mut Bench) -> Result<Option<StartupReport>, String> {
    let Some(spec) = bench.spec.clone() else {
        eprintln!("startup: skipped (the gateway is external)");
        return Ok(None);
    };
    let runs = bench.args.startup_runs.max(1);
    eprintln!("startup: {runs} runs with a new data dir, {runs} with an existing one");
    let mut listening = Vec::new();
    let mut time_one = |dir: &std::path::Path| -> Result<(f64, f64), String> {
        let begun = Instant::now();
        let mut g = procs::spawn_gateway(&spec, Some(dir))?;
        listening.push(g.listening_after.as_secs_f64() * 1000.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match procs::health_status(g.addr, Duration::from_secs(5)) {
                Ok(200) => break,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                other => return Err(format!("the gateway never became healthy: {other:?}")),
            }
        }
        let healthy = begun.elapsed().as_secs_f64() * 1000.0;
        let stopping = Instant::now();
        let clean = g.proc.stop(Duration::from_secs(15));
        let stop = stopping.elapsed().as_secs_f64() * 1000.0;
        if !clean {
            return Err("the gateway did not stop on SIGTERM within 15 s".into());
        }
        Ok((healthy, stop))
    };
    let mut fresh = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::Builder::new()
            .prefix("open-clanker-bench-start-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let (ms, stop) = time_one(dir.path())?;
        fresh.push(ms);
        stops.push(stop);
    }
    let dir = tempfile::Builder::new()
        .prefix("open-clanker-bench-start-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    time_one(dir.path())?; // creates the database
    let mut existing = Vec::new();
    for _ in 0..runs {
        let (ms, stop) = time_one(dir.path())?;
        existing.push(ms);
        stops.push(stop);
    }
    let r = StartupReport {
        runs,
        listening_median_ms: median(listening),
        fresh_median_ms: median(fresh.clone()),
        existing_median_ms: median(existing.clone()),
        stop_median_ms: median(stops),
        fresh_ms: fresh,
        existing_ms: existing,
    };
    eprintln!(
        "  start -> healthy: median {:.1} ms (new data dir), {:.1} ms (existing); stop {:.1} ms",
        r.fresh_median_ms, r.existing_median_ms, r.stop_median_ms
    );
    Ok(Some(r))
}

async fn idle(bench: &mut Bench) -> Result<IdleReport, String> {
    let runs = bench.args.repeat;
    eprintln!(
        "idle: {runs} fresh gateways, RSS before and after {} chats",
        bench.args.warmup
    );
    let mut per_run = Vec::new();
    let mut threads = 0;
    for _ in 0..runs {
        let mut g = bench.gateway()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fresh = g.sample().unwrap_or_default();
        let driver = bench.driver(Protocol::Grpc, &g, 1).await?;
        bench.warmup(&driver, bench.args.warmup.max(1)).await;
        drop(driver);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let warm = g.sample().unwrap_or_default();
        threads = warm.threads;
        g.check_alive()?;
        eprintln!(
            "  RSS {} KiB fresh, {} KiB after chats ({} threads)",
            fresh.rss_kib, warm.rss_kib, warm.threads
        );
        per_run.push((fresh.rss_kib, warm.rss_kib));
        if bench.args.gateway_url.is_some() {
            break;
        }
    }
    let mut channels_per_run = Vec::new();
    if bench.args.channels && bench.args.gateway_url.is_none() {
        channels_per_run = idle_with_channels(bench, runs).await?;
    }
    Ok(IdleReport {
        rss_channels_kib: (!channels_per_run.is_empty())
            .then(|| median(channels_per_run.iter().map(|r| *r as f64).collect())),
        channels_per_run,
        runs: per_run.len(),
        rss_fresh_kib: median(per_run.iter().map(|r| r.0 as f64).collect()),
        rss_after_warmup_kib: median(per_run.iter().map(|r| r.1 as f64).collect()),
        threads,
        per_run,
    })
}

/// Idle RSS of `runs` fresh gateways with both chat channels connected to stand-ins.
async fn idle_with_channels(bench: &mut Bench, runs: usize) -> Result<Vec<u64>, String> {
    const TELEGRAM_TOKEN: &str = "123456:bench-telegram-token";
    const DISCORD_TOKEN: &str = "MTE4.bench.discord-token";
    let telegram = open_clanker_testkit::telegram::spawn(TELEGRAM_TOKEN)
        .await
        .map_err(|e| format!("Telegram stand-in: {e}"))?;
    let discord = open_clanker_testkit::discord::spawn(DISCORD_TOKEN)
        .await
        .map_err(|e| format!("Discord stand-in: {e}"))?;
    let mut spec = bench.spec.clone().ok_or("no gateway binary")?;
    spec.env.extend([
        ("TELEGRAM_BOT_TOKEN".to_owned(), TELEGRAM_TOKEN.to_owned()),
        (
            "OPEN_CLANKER_TELEGRAM_API_URL".to_owned(),
            telegram.api_url(),
        ),
        ("DISCORD_BOT_TOKEN".to_owned(), DISCORD_TOKEN.to_owned()),
        ("OPEN_CLANKER_DISCORD_API_URL".to_owned(), discord.api_url()),
    ]);
    eprintln!("idle with channels: {runs} fresh gateways, Telegram and Discord connected");
    let mut rss = Vec::new();
    for _ in 0..runs {
        let proc = procs::spawn_gateway(&spec, None)?;
        let url = proc.url();
        let mut g = Gateway {
            url: url.clone(),
            pid: Some(proc.proc.pid()),
            proc: Some(proc),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connected = match open_clanker_client::Client::connect(&url).await {
                Ok(mut client) => client
                    .status()
                    .await
                    .map(|s| s.channels.iter().filter(|c| c.connected).count())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if connected == 2 {
                break;
            }
            if Instant::now() >= deadline {
                return Err("the channels did not both connect within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sample = g.sample().unwrap_or_default();
        g.check_alive()?;
        eprintln!("  RSS {} KiB with both channels connected", sample.rss_kib);
        rss.push(sample.rss_kib);
    }
    Ok(rss)
}

/// Runs one measured phase against a gateway: resources, store check and statistics.
#[allow(clippy::too_many_arguments)]
async fn measured(
    bench: &mut Bench,
    g: &mut Gateway,
    driver: &Driver,
    chats_expected: Option<u64>,
    phase: impl std::future::Future<Output = Phase>,
    label: &str,
) -> Result<RunStats, String> {
    let is_gateway = driver.protocol != Protocol::Direct;
    let before_counts = if is_gateway && chats_expected.is_some() {
        store_counts(&g.url).await
    } else {
        None
    };
    let gw_before = if is_gateway { g.sample() } else { None };
    let standin_before = bench.standin_pid().and_then(procs::sample);
    let bench_before = procs::own_cpu_secs();
    let sampler = Sampler::start(
        if is_gateway { g.pid } else { None },
        Some((bench.http.clone(), bench.standin_url.clone())),
        Duration::from_millis(250),
    );
    let phase = phase.await;
    let sampled = sampler.finish().await;
    let gw_after = if is_gateway { g.sample() } else { None };
    let standin_after = bench.standin_pid().and_then(procs::sample);
    let mut stats = summarize(phase);
    stats.bench_cpu_secs = procs::own_cpu_secs() - bench_before;
    stats.peak_standin_streams = sampled.standin_max;
    if let (Some(a), Some(b)) = (standin_before, standin_after) {
        stats.standin_cpu_secs = Some(b.cpu_secs - a.cpu_secs);
    }
    if let (Some(a), Some(b)) = (gw_before, gw_after) {
        let cpu = b.cpu_secs - a.cpu_secs;
        stats.gateway = Some(Resources {
            cpu_secs: cpu,
            rss_before_kib: a.rss_kib,
            rss_after_kib: b.rss_kib,
            rss_max_kib: sampled.rss_max_kib.max(b.rss_kib),
            hwm_kib: b.hwm_kib,
        });
        if stats.ok > 0 {
            stats.gateway_cpu_us_per_turn = Some(cpu * 1e6 / stats.chats as f64);
        }
    }
    if is_gateway {
        g.check_alive()?;
        if let Some(n) = chats_expected
            && stats.errors.is_empty()
        {
            stats.stored =
                check_store(&g.url, before_counts, n, 2 * n, Duration::from_secs(10)).await;
            if let Some(c) = stats.stored
                && !c.ok
            {
                eprintln!("  STORE MISMATCH: {c:?}");
                *stats.errors.entry("STORE_MISMATCH".into()).or_default() += 1;
            }
        }
    }
    bench.failures += stats.errors.values().sum::<usize>();
    print_run(label, &stats);
    if is_gateway && !stats.errors.is_empty() {
        for line in g.log_problems(5) {
            eprintln!("    gateway log: {line}");
        }
    }
    Ok(stats)
}

fn latency_report(
    protocol: Protocol,
    chats: usize,
    tokens: usize,
    delay_ms: u64,
    connections: usize,
    runs: Vec<RunStats>,
    baseline_runs: Vec<RunStats>,
) -> LatencyReport {
    let ttft = Dist::median_of(&runs.iter().map(|r| r.ttft).collect::<Vec<_>>());
    let started = Dist::median_of(&runs.iter().map(|r| r.started).collect::<Vec<_>>());
    let gaps = Dist::median_of(&runs.iter().map(|r| r.gaps).collect::<Vec<_>>());
    let (baseline_ttft, baseline_gaps) = if baseline_runs.is_empty() {
        (None, None)
    } else {
        (
            Some(Dist::median_of(
                &baseline_runs.iter().map(|r| r.ttft).collect::<Vec<_>>(),
            )),
            Some(Dist::median_of(
                &baseline_runs.iter().map(|r| r.gaps).collect::<Vec<_>>(),
            )),
        )
    };
    let mut errors = BTreeMap::new();
    for r in runs.iter().chain(&baseline_runs) {
        add_errors(&mut errors, &r.errors);
    }
    let cpu: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.gateway_cpu_us_per_turn)
        .collect();
    LatencyReport {
        protocol,
        chats_per_run: chats,
        tokens,
        delay_ms,
        connections,
        ttft,
        started,
        gaps,
        baseline_ttft,
        baseline_gaps,
        overhead_ttft: baseline_ttft.map(|b| ttft.diff(b)),
        overhead_gap: baseline_gaps.map(|b| gaps.diff(b)),
        gap_minus_pacing: gaps.minus(delay_ms as f64),
        turns_per_sec: median(runs.iter().map(|r| r.turns_per_sec).collect()),
        baseline_turns_per_sec: (!baseline_runs.is_empty())
            .then(|| median(baseline_runs.iter().map(|r| r.turns_per_sec).collect())),
        gateway_cpu_us_per_turn: (!cpu.is_empty()).then(|| median(cpu)),
        gateway_rss_max_kib: runs
            .iter()
            .filter_map(|r| r.gateway.map(|g| g.rss_max_kib))
            .max(),
        peak_in_flight: runs.iter().map(|r| r.peak_in_flight).max().unwrap_or(0),
        peak_standin_streams: runs
            .iter()
            .map(|r| r.peak_standin_streams)
            .max()
            .unwrap_or(0),
        errors,
        runs,
        baseline_runs,
    }
}

async fn single(bench: &mut Bench, protocol: Protocol) -> Result<LatencyReport, String> {
    let (turns, tokens, repeat) = (
        bench.args.single_turns,
        bench.args.single_tokens,
        bench.args.repeat,
    );
    eprintln!(
        "single ({}): {repeat} x {turns} sequential chats of {tokens} words, no pacing",
        protocol.name()
    );
    let mut g = bench.gateway()?;
    let driver = bench.driver(protocol, &g, 1).await?;
    bench.warmup(&driver, bench.args.warmup).await;
    let direct = if bench.args.baseline {
        let d = bench.driver(Protocol::Direct, &g, 1).await?;
        bench.warmup(&d, bench.args.warmup).await;
        Some(d)
    } else {
        None
    };
    let expected = expected_answer(tokens);
    let sequential = |driver: Driver, expected: Arc<str>, timeout: Duration| async move {
        let begun = Instant::now();
        let mut outcomes = Vec::with_capacity(turns);
        for i in 0..turns {
            let mode = Mode::Complete {
                expected: expected.clone(),
            };
            outcomes.push(
                driver
                    .chat(i, format!("single {i} #tokens={tokens}"), mode, timeout)
                    .await,
            );
        }
        Phase {
            outcomes,
            wall: begun.elapsed(),
            peak_in_flight: 1,
        }
    };
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    let timeout = bench.timeout();
    for r in 0..repeat {
        let phase = sequential(driver.clone(), expected.clone(), timeout);
        runs.push(
            measured(
                bench,
                &mut g,
                &driver,
                Some(turns as u64),
                phase,
                &format!("run {} {}", r + 1, protocol.name()),
            )
            .await?,
        );
        if let Some(d) = &direct {
            let phase = sequential(d.clone(), expected.clone(), timeout);
            baseline_runs.push(
                measured(
                    bench,
                    &mut g,
                    d,
                    None,
                    phase,
                    &format!("run {} direct", r + 1),
                )
                .await?,
            );
        }
    }
    Ok(latency_report(
        protocol,
        turns,
        tokens,
        0,
        1,
        runs,
        baseline_runs,
    ))
}

async fn load(bench: &mut Bench, protocol: Protocol) -> Result<LatencyReport, String> {
    let a = bench.args.clone();
    let connections = if protocol == Protocol::Grpc {
        a.streams.div_ceil(a.per_conn)
    } else {
        a.streams
    };
    eprintln!(
        "load ({}): {} x {} streams ({} connections), {} words at {} ms, opened over {} ms",
        protocol.name(),
        a.repeat,
        a.streams,
        connections,
        a.tokens,
        a.delay_ms,
        a.ramp_ms
    );
    let mut g = bench.gateway()?;
    let driver = bench.driver(protocol, &g, a.streams).await?;
    bench.warmup(&driver, a.warmup).await;
    let direct = if a.baseline {
        Some(bench.driver(Protocol::Direct, &g, a.streams).await?)
    } else {
        None
    };
    let expected = expected_answer(a.tokens);
    let ramp = Duration::from_millis(a.ramp_ms);
    let timeout = bench.timeout();
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for r in 0..a.repeat {
        let mode = Mode::Complete {
            expected: expected.clone(),
        };
        let phase = open_loop(
            &driver,
            a.streams,
            ramp,
            paced_text("load", a.tokens, a.delay_ms),
            mode.clone(),
            timeout,
        );
        runs.push(
            measured(
                bench,
                &mut g,
                &driver,
                Some(a.streams as u64),
                phase,
                &format!("run {} {}", r + 1, protocol.name()),
            )
            .await?,
        );
        if let Some(d) = &direct {
            let phase = open_loop(
                d,
                a.streams,
                ramp,
                paced_text("load", a.tokens, a.delay_ms),
                mode,
                timeout,
            );
            baseline_runs.push(
                measured(
                    bench,
                    &mut g,
                    d,
                    None,
                    phase,
                    &format!("run {} direct", r + 1),
                )
                .await?,
            );
        }
    }
    Ok(latency_report(
        protocol,
        a.streams,
        a.tokens,
        a.delay_ms,
        connections,
        runs,
        baseline_runs,
    ))
}

async fn throughput(bench: &mut Bench, protocol: Protocol) -> Result<LatencyReport, String> {
    let a = bench.args.clone();
    eprintln!(
        "throughput ({}): {} x {} s with {} workers, {} words, no pacing",
        protocol.name(),
        a.repeat,
        a.throughput_secs,
        a.throughput_workers,
        a.single_tokens
    );
    let mut g = bench.gateway()?;
    let driver = bench.driver(protocol, &g, a.throughput_workers).await?;
    bench.warmup(&driver, a.warmup).await;
    let direct = if a.baseline {
        Some(
            bench
                .driver(Protocol::Direct, &g, a.throughput_workers)
                .await?,
        )
    } else {
        None
    };
    let expected = expected_answer(a.single_tokens);
    let timeout = bench.timeout();
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for r in 0..a.repeat {
        // The store check needs the count of chats, known only afterwards: checked below.
        let before = store_counts(&g.url).await;
        let phase = closed_loop(
            &driver,
            a.throughput_workers,
            a.throughput_secs,
            paced_text("tp", a.single_tokens, 0),
            expected.clone(),
            timeout,
        );
        let mut stats = measured(
            bench,
            &mut g,
            &driver,
            None,
            phase,
            &format!("run {} {}", r + 1, protocol.name()),
        )
        .await?;
        if stats.errors.is_empty() {
            let n = stats.chats as u64;
            stats.stored = check_store(&g.url, before, n, 2 * n, Duration::from_secs(10)).await;
            if stats.stored.is_some_and(|c| !c.ok) {
                eprintln!("  STORE MISMATCH: {:?}", stats.stored);
                bench.failures += 1;
            }
        }
        runs.push(stats);
        if let Some(d) = &direct {
            let phase = closed_loop(
                d,
                a.throughput_workers,
                a.throughput_secs,
                paced_text("tp", a.single_tokens, 0),
                expected.clone(),
                timeout,
            );
            baseline_runs.push(
                measured(
                    bench,
                    &mut g,
                    d,
                    None,
                    phase,
                    &format!("run {} direct", r + 1),
                )
                .await?,
            );
        }
    }
    Ok(latency_report(
        protocol,
        a.throughput_workers,
        a.single_tokens,
        0,
        a.throughput_workers.div_ceil(a.per_conn),
        runs,
        baseline_runs,
    ))
}

async fn hold(bench: &mut Bench, protocol: Protocol) -> Result<HoldReport, String> {
    let a = bench.args.clone();
    let n = a.hold_streams;
    eprintln!(
        "hold ({}): {} x {n} idle streams held open (#hang), a fresh gateway each",
        protocol.name(),
        a.repeat
    );
    let mut runs = Vec::new();
    for _ in 0..a.repeat {
        let mut g = bench.gateway()?;
        let driver = bench.driver(protocol, &g, n).await?;
        bench.warmup(&driver, a.warmup).await;
        tokio::time::sleep(Duration::from_millis(a.hold_settle_ms)).await;
        let counts = store_counts(&g.url).await;
        let before = g.sample().unwrap_or_default();
        let (release_tx, release) = watch::channel(false);
        let opened = Arc::new(AtomicUsize::new(0));
        let mode = Mode::Hold {
            release,
            opened: opened.clone(),
        };
        let text: Arc<dyn Fn(usize) -> String + Send + Sync> =
            Arc::new(|i| format!("hold {i} #hang"));
        let d = driver.clone();
        let ramp = Duration::from_millis(a.ramp_ms);
        let timeout = bench.timeout();
        let phase = tokio::spawn(async move { open_loop(&d, n, ramp, text, mode, timeout).await });
        let deadline = Instant::now() + ramp + Duration::from_secs(60);
        while opened.load(Ordering::SeqCst) < n && Instant::now() < deadline && !phase.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(a.hold_settle_ms)).await;
        let held = g.sample().unwrap_or_default();
        let standin_streams = standin_active(&bench.http, &bench.standin_url)
            .await
            .unwrap_or(0);
        let got = opened.load(Ordering::SeqCst);
        let _ = release_tx.send(true);
        let phase = phase.await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(a.hold_settle_ms)).await;
        let after = g.sample().unwrap_or_default();
        g.check_alive()?;
        let mut errors = BTreeMap::new();
        for o in &phase.outcomes {
            if let Some(e) = &o.error {
                *errors.entry(e.clone()).or_default() += 1;
            }
        }
        // Each held turn stores the user's message and, once the caller leaves, the partial answer.
        let stored = if errors.is_empty() {
            check_store(
                &g.url,
                counts,
                n as u64,
                2 * n as u64,
                Duration::from_secs(20),
            )
            .await
        } else {
            None
        };
        if stored.is_some_and(|c| !c.ok) {
            *errors.entry("STORE_MISMATCH".into()).or_default() += 1;
        }
        bench.failures += errors.values().sum::<usize>();
        let per_stream = (held.rss_kib as f64 - before.rss_kib as f64) / n.max(1) as f64;
        eprintln!(
            "  {got}/{n} open: RSS {} -> {} KiB ({per_stream:.1} KiB per stream), {} KiB after release; stand-in streaming {standin_streams}{}",
            before.rss_kib,
            held.rss_kib,
            after.rss_kib,
            if errors.is_empty() {
                String::new()
            } else {
                format!("; ERRORS {errors:?}")
            }
        );
        runs.push(HoldRun {
            streams: n,
            opened: got,
            rss_before_kib: before.rss_kib,
            rss_held_kib: held.rss_kib,
            rss_after_release_kib: after.rss_kib,
            per_stream_kib: per_stream,
            standin_streams,
            errors,
            stored,
        });
        if bench.args.gateway_url.is_some() {
            break;
        }
    }
    Ok(HoldReport {
        protocol,
        per_stream_kib: median(runs.iter().map(|r| r.per_stream_kib).collect()),
        rss_before_kib: median(runs.iter().map(|r| r.rss_before_kib as f64).collect()),
        rss_held_kib: median(runs.iter().map(|r| r.rss_held_kib as f64).collect()),
        runs,
    })
}

async fn soak(bench: &mut Bench, protocol: Protocol) -> Result<SoakReport, String> {
    let a = bench.args.clone();
    eprintln!(
        "soak ({}): {} workers for {} s, {} words at {} ms",
        protocol.name(),
        a.soak_workers,
        a.soak_secs,
        a.soak_tokens,
        a.soak_delay_ms
    );
    let mut g = bench.gateway()?;
    let driver = bench.driver(protocol, &g, a.soak_workers).await?;
    bench.warmup(&driver, a.warmup).await;
    let before = store_counts(&g.url).await;
    let sampler = Sampler::start(g.pid, None, Duration::from_secs(1));
    let phase = closed_loop(
        &driver,
        a.soak_workers,
        a.soak_secs,
        paced_text("soak", a.soak_tokens, a.soak_delay_ms),
        expected_answer(a.soak_tokens),
        bench.timeout(),
    );
    let mut run = measured(
        bench,
        &mut g,
        &driver,
        None,
        phase,
        &format!("soak {}", protocol.name()),
    )
    .await?;
    let sampled = sampler.finish().await;
    if run.errors.is_empty() {
        let n = run.chats as u64;
        run.stored = check_store(&g.url, before, n, 2 * n, Duration::from_secs(10)).await;
        if run.stored.is_some_and(|c| !c.ok) {
            bench.failures += 1;
        }
    }
    let series = sampled.series;
    let span = series.last().map_or(0.0, |s| s.0);
    let after_warm: Vec<(f64, f64)> = series
        .iter()
        .filter(|s| s.0 >= span / 10.0)
        .map(|s| (s.0 / 60.0, s.1 as f64))
        .collect();
    let quarter_mean = |lo: f64, hi: f64| {
        let v: Vec<f64> = series
            .iter()
            .filter(|s| s.0 >= lo * span && s.0 < hi * span)
            .map(|s| s.1 as f64)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let r = SoakReport {
        protocol,
        workers: a.soak_workers,
        secs: a.soak_secs,
        rss_slope_kib_per_min: slope(&after_warm),
        rss_q2_mean_kib: quarter_mean(0.25, 0.5),
        rss_q4_mean_kib: quarter_mean(0.75, 1.01),
        rss_max_kib: sampled.rss_max_kib,
        rss_series: series,
        run,
    };
    eprintln!(
        "  RSS mean {:.0} KiB (2nd quarter) -> {:.0} KiB (last quarter), max {} KiB, trend {:+.1} KiB/min",
        r.rss_q2_mean_kib, r.rss_q4_mean_kib, r.rss_max_kib, r.rss_slope_kib_per_min
    );
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Text output

fn dist_row(out: &mut String, label: &str, d: &Dist) {
    let _ = writeln!(
        out,
        "  {label:<34} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
    );
}

fn latency_text(out: &mut String, title: &str, r: &LatencyReport) {
    let _ = writeln!(
        out,
        "\n{title} [{}]: {} chats/run x {} runs, {} words at {} ms, {} connection(s)",
        r.protocol.name(),
        r.chats_per_run,
        r.runs.len(),
        r.tokens,
        r.delay_ms,
        r.connections
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>9} {:>9} {:>9} {:>9}",
        "(ms, medians over runs)", "p50", "p90", "p99", "max"
    );
    dist_row(out, "time to first token", &r.ttft);
    if let Some(b) = &r.baseline_ttft {
        dist_row(out, "  baseline (stand-in direct)", b);
    }
    if let Some(o) = &r.overhead_ttft {
        dist_row(out, "  gateway overhead", o);
    }
    dist_row(out, "time to `started` (user msg stored)", &r.started);
    dist_row(out, "inter-token gap", &r.gaps);
    if let Some(b) = &r.baseline_gaps {
        dist_row(out, "  baseline (stand-in direct)", b);
    }
    if let Some(o) = &r.overhead_gap {
        dist_row(out, "  gateway relay delay", o);
    }
    if r.delay_ms > 0 {
        dist_row(out, "  gap minus pacing", &r.gap_minus_pacing);
    }
    let _ = writeln!(
        out,
        "  turns/s {:.1}{}; gateway CPU {} per turn; gateway RSS max {}; peak in flight {} (stand-in streaming {})",
        r.turns_per_sec,
        r.baseline_turns_per_sec
            .map(|t| format!(" (direct {t:.1})"))
            .unwrap_or_default(),
        r.gateway_cpu_us_per_turn
            .map(|c| format!("{c:.0} µs"))
            .unwrap_or_else(|| "n/a".into()),
        r.gateway_rss_max_kib
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into()),
        r.peak_in_flight,
        r.peak_standin_streams
    );
    let stored: Vec<String> = r
        .runs
        .iter()
        .filter_map(|x| x.stored)
        .map(|s| {
            format!(
                "+{} sessions +{}/{} messages",
                s.sessions_added, s.messages_added, s.messages_expected
            )
        })
        .collect();
    if !stored.is_empty() {
        let _ = writeln!(out, "  stored per run: {}", stored.join("; "));
    }
    let _ = writeln!(
        out,
        "  errors: {}",
        if r.errors.is_empty() {
            "none".to_string()
        } else {
            format!("{:?}", r.errors)
        }
    );
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "machine: {} cores, {} MiB, {}, Linux {}; load at start {}",
        m.nproc, m.mem_total_mib, m.cpu_model, m.kernel, m.loadavg_at_start
    );
    let _ = writeln!(
        out,
        "RLIMIT_NOFILE: bench {}, gateway {}",
        r.bench_nofile,
        r.gateway_nofile.map_or("n/a".into(), |n| n.to_string())
    );
    if let Some(b) = &r.binary {
        let _ = writeln!(
            out,
            "gateway binary: {} ({} bytes, {:.2} MiB)",
            b.path.display(),
            b.size_bytes,
            b.size_mib
        );
    }
    if let Some(s) = &r.startup {
        let _ = writeln!(
            out,
            "\nstartup (spawn -> GET /health 200, median of {}): {:.1} ms new data dir, {:.1} ms existing; SIGTERM -> exit {:.1} ms",
            s.runs, s.fresh_median_ms, s.existing_median_ms, s.stop_median_ms
        );
    }
    if let Some(i) = &r.idle {
        let _ = writeln!(
            out,
            "\nidle RSS (median of {}): {:.1} MiB before any chat, {:.1} MiB after warm-up; {} threads",
            i.runs,
            i.rss_fresh_kib / 1024.0,
            i.rss_after_warmup_kib / 1024.0,
            i.threads
        );
        if let Some(kib) = i.rss_channels_kib {
            let _ = writeln!(
                out,
                "idle RSS with Telegram and Discord connected (median of {}): {:.1} MiB",
                i.channels_per_run.len(),
                kib / 1024.0
            );
        }
    }
    for s in &r.single {
        latency_text(&mut out, "single chat", s);
    }
    for s in &r.load {
        latency_text(&mut out, "load", s);
    }
    for s in &r.throughput {
        latency_text(&mut out, "throughput", s);
    }
    for h in &r.hold {
        let _ = writeln!(
            out,
            "\nhold [{}]: {} idle streams x {} runs: RSS {:.1} -> {:.1} MiB, {:.2} KiB per open stream (median)",
            h.protocol.name(),
            h.runs.first().map_or(0, |x| x.streams),
            h.runs.len(),
            h.rss_before_kib / 1024.0,
            h.rss_held_kib / 1024.0,
            h.per_stream_kib
        );
        for x in &h.runs {
            let _ = writeln!(
                out,
                "  run: {}/{} open, {} -> {} KiB ({:.2} KiB/stream), {} KiB after release, errors {:?}",
                x.opened,
                x.streams,
                x.rss_before_kib,
                x.rss_held_kib,
                x.per_stream_kib,
                x.rss_after_release_kib,
                x.errors
            );
        }
    }
    for s in &r.soak {
        let _ = writeln!(
            out,
            "\nsoak [{}]: {} workers for {} s: {} turns ({:.1}/s), errors {:?}; RSS mean {:.1} MiB (2nd quarter) -> {:.1} MiB (last quarter), max {:.1} MiB, trend {:+.1} KiB/min",
            s.protocol.name(),
            s.workers,
            s.secs,
            s.run.ok,
            s.run.turns_per_sec,
            s.run.errors,
            s.rss_q2_mean_kib / 1024.0,
            s.rss_q4_mean_kib / 1024.0,
            s.rss_max_kib as f64 / 1024.0,
            s.rss_slope_kib_per_min
        );
    }
    let _ = writeln!(out, "\nfailures: {}", r.failures);
    out
}
