//! The command line: what to measure and how.

use std::path::PathBuf;

use clap::Parser;

use crate::client::Protocol;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Binary size; spawn -> `GET /health` 200, fresh and existing data dir (`--startup-runs`).
    Startup,
    /// RSS of a fresh gateway before any chat and after a few.
    Idle,
    /// One chat at a time (`--single-turns` turns, `--single-tokens` tokens, no pacing).
    Single,
    /// `--streams` concurrent streaming chats (`--tokens` at `--delay-ms`, opened over
    /// `--ramp-ms`), every turn stored and checked.
    Load,
    /// `--hold-streams` streams held open and idle (`#hang`): memory per open stream.
    Hold,
    /// `--throughput-workers` chats back to back without pacing for `--throughput-secs`.
    Throughput,
    /// `--soak-workers` paced chats back to back for `--soak-secs`, sampling RSS: growth trend.
    Soak,
}

/// Load generator for the Open Clanker gateway: streaming chats over gRPC (K streams per HTTP/2
/// connection), gRPC-Web or the OpenAI-compatible endpoint, against a real gateway process that
/// talks to a local stand-in provider process. Reports the gateway's overhead (time to first token
/// and per-token relay delay beyond the stand-in's own, measured straight against the stand-in as
/// the baseline), p50/p99/max, turns per second, errors by code, the gateway's RSS and CPU time and
/// memory per open idle stream, as medians over `--repeat` runs. Exits 1 when any chat failed
/// (wrong answer, gRPC error, a turn not stored) or a process crashed.
///
/// All traffic goes to 127.0.0.1. Every phase is bounded in count and time.
#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(name = "open-clanker-bench", version)]
pub struct Args {
    /// Scenarios to run, in this order.
    #[arg(value_enum, default_values_t = [Scenario::Startup, Scenario::Idle, Scenario::Single, Scenario::Load, Scenario::Hold])]
    pub scenarios: Vec<Scenario>,

    /// Protocols for single/load/hold/throughput/soak (repeat the flag or comma-separate).
    #[arg(long, short, value_enum, value_delimiter = ',', default_values_t = [Protocol::Grpc])]
    pub protocol: Vec<Protocol>,

    /// Each scenario is run this many times; the report gives medians over the runs.
    #[arg(long, short, default_value_t = 3)]
    pub repeat: usize,

    /// The gateway binary [default: `open-clanker` beside this binary, else target/release or
    /// target/debug].
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The stand-in binary [default: `open-clanker-standin`, found like the gateway].
    #[arg(long)]
    pub standin_bin: Option<PathBuf>,
    /// Use this running gateway (`http://127.0.0.1:PORT`) instead of starting one; it must use
    /// the stand-in at `--standin-url` as its Anthropic provider (the default provider).
    #[arg(long, requires = "standin_url")]
    pub gateway_url: Option<String>,
    /// The PID of the `--gateway-url` gateway, for its RSS and CPU time (else not reported).
    #[arg(long, requires = "gateway_url")]
    pub gateway_pid: Option<u32>,
    /// Use this running stand-in (`http://127.0.0.1:PORT`) instead of starting one.
    #[arg(long)]
    pub standin_url: Option<String>,
    /// The API key the stand-in expects.
    #[arg(long, default_value = "bench-key")]
    pub api_key: String,
    /// The gateway's log level (`OPEN_CLANKER_LOG_LEVEL`); its log goes to a file in its data dir.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Extra environment for started gateways, `KEY=VALUE` (repeatable), e.g.
    /// `TOKIO_WORKER_THREADS=1` or `MALLOC_ARENA_MAX=2`.
    #[arg(long, value_parser = parse_env)]
    pub gateway_env: Vec<(String, String)>,
    /// Idle: also measure gateways with the Telegram and Discord channels enabled and connected
    /// (to Bot API and Discord stand-ins this process runs on 127.0.0.1).
    #[arg(long)]
    pub channels: bool,
    /// RLIMIT_NOFILE for this process and the processes it starts (they inherit it).
    #[arg(long, default_value_t = 65536)]
    pub nofile: u64,

    /// Spawn -> healthy runs per data-dir kind (startup).
    #[arg(long, default_value_t = 10)]
    pub startup_runs: usize,

    /// Sequential turns per run (single).
    #[arg(long, default_value_t = 300)]
    pub single_turns: usize,
    /// Words per answer (single).
    #[arg(long, default_value_t = 5)]
    pub single_tokens: usize,

    /// Concurrent streams (load).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub streams: usize,
    /// gRPC streams per HTTP/2 connection (connections = ceil(streams / this)).
    #[arg(long, short = 'k', default_value_t = 100)]
    pub per_conn: usize,
    /// Words per answer (load).
    #[arg(long, default_value_t = 20)]
    pub tokens: usize,
    /// The stand-in's pause before each word, ms (load; `#delay=`).
    #[arg(long, default_value_t = 500)]
    pub delay_ms: u64,
    /// The streams are opened evenly over this many ms (0: all at once).
    #[arg(long, default_value_t = 5000)]
    pub ramp_ms: u64,
    /// Also run each single/load/throughput run straight against the stand-in (the baseline the
    /// overhead is computed from).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub baseline: bool,

    /// Streams held open (hold).
    #[arg(long, default_value_t = 1000)]
    pub hold_streams: usize,
    /// Wait after the last held stream opened (or closed) before reading RSS, ms.
    #[arg(long, default_value_t = 2000)]
    pub hold_settle_ms: u64,

    /// Closed-loop workers (throughput).
    #[arg(long, default_value_t = 64)]
    pub throughput_workers: usize,
    /// Duration of a throughput run, s.
    #[arg(long, default_value_t = 10)]
    pub throughput_secs: u64,

    /// Closed-loop workers (soak).
    #[arg(long, default_value_t = 500)]
    pub soak_workers: usize,
    /// Duration of the soak, s.
    #[arg(long, default_value_t = 600)]
    pub soak_secs: u64,
    /// The stand-in's pause before each word during the soak, ms.
    #[arg(long, default_value_t = 100)]
    pub soak_delay_ms: u64,
    /// Words per answer during the soak.
    #[arg(long, default_value_t = 10)]
    pub soak_tokens: usize,

    /// Turns run (and not measured) on a new gateway before measuring.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Longest a single chat may take, s (then it counts as a `TIMEOUT` error).
    #[arg(long, default_value_t = 120)]
    pub stream_timeout_secs: u64,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 even when chats failed.
    #[arg(long)]
    pub allow_errors: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err("empty variable name".into());
    }
    Ok((k.to_string(), v.to_string()))
}
