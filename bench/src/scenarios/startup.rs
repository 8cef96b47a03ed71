//! The scenarios without chats under measure: start-up and stop times, and idle memory (also with
//! the Telegram and Discord channels connected).

use std::time::{Duration, Instant};

use crate::client::Protocol;
use crate::procs;
use crate::stats::median;

use super::harness::{Bench, Gateway};
use super::report::{IdleReport, StartupReport};

pub(super) fn startup(bench: &mut Bench) -> Result<Option<StartupReport>, String> {
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

pub(super) async fn idle(bench: &mut Bench) -> Result<IdleReport, String> {
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
