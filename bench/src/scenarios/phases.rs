//! Load shapes (open and closed loop) and what a phase's outcomes become: the statistics of one
//! run, one measured run against a gateway (resources, store check), the medians over runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Driver, Mode, Outcome, Protocol};
use crate::procs;
use crate::stats::{Dist, median};

use super::harness::{Bench, Gateway, check_store, store_counts};
use super::report::{LatencyReport, Resources, RunStats};
use super::sampler::Sampler;

pub(super) struct Phase {
    pub(super) outcomes: Vec<Outcome>,
    pub(super) wall: Duration,
    pub(super) peak_in_flight: usize,
}

/// `n` chats, chat `i` sent at `ramp * i / n`; returns when all have ended.
pub(super) async fn open_loop(
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
pub(super) async fn closed_loop(
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

pub(super) fn paced_text(
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

/// Runs one measured phase against a gateway: resources, store check and statistics.
#[allow(clippy::too_many_arguments)]
pub(super) async fn measured(
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

pub(super) fn latency_report(
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
