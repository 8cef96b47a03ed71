//! The text report, what the bench prints without `--json`.

use std::fmt::Write as _;

use crate::stats::Dist;

use super::report::{LatencyReport, Report};

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
