//! The chat scenarios: single (sequential chats), load (open loop), throughput (closed loop), hold
//! (idle streams held open) and soak (a long closed loop and its RSS trend).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::client::{Driver, Mode, Protocol, expected_answer};
use crate::stats::{median, slope};

use super::harness::{Bench, check_store, store_counts};
use super::phases::{Phase, closed_loop, latency_report, measured, open_loop, paced_text};
use super::report::{HoldReport, HoldRun, LatencyReport, SoakReport};
use super::sampler::{Sampler, standin_active};

pub(super) async fn single(bench: &mut Bench, protocol: Protocol) -> Result<LatencyReport, String> {
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

pub(super) async fn load(bench: &mut Bench, protocol: Protocol) -> Result<LatencyReport, String> {
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

pub(super) async fn throughput(
    bench: &mut Bench,
    protocol: Protocol,
) -> Result<LatencyReport, String> {
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

pub(super) async fn hold(bench: &mut Bench, protocol: Protocol) -> Result<HoldReport, String> {
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

pub(super) async fn soak(bench: &mut Bench, protocol: Protocol) -> Result<SoakReport, String> {
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
