//! The report: what each scenario measured, as the `--json` output gives it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::cli::Args;
use crate::client::Protocol;
use crate::stats::Dist;

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
    pub(super) fn read() -> Machine {
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
