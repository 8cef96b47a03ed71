//! The scenarios, their measurements and the report: [`run`] runs the scenarios asked for and
//! returns the [`Report`], [`render`] writes it as text.
//!
//! The modules, each using only those above it:
//! - `report`: the report's types (serialized as the `--json` output);
//! - `sampler`: the gateway's RSS and the stand-in's open streams, sampled during a run;
//! - `harness`: the gateway under test, the bench's state, warm-up chats, the store check;
//! - `phases`: open and closed loop, one run's statistics, a measured run, medians over runs;
//! - `startup`: the start-up and idle scenarios;
//! - `traffic`: the single, load, throughput, hold and soak scenarios;
//! - `render`: the text report.

mod harness;
mod phases;
mod render;
mod report;
mod sampler;
mod startup;
mod traffic;

use std::path::PathBuf;

use crate::cli::{Args, Scenario};
use crate::procs::{self, GatewaySpec};

use harness::Bench;
pub use render::render;
pub use report::Report;
use report::{BinaryInfo, Machine};
use startup::{idle, startup};
use traffic::{hold, load, single, soak, throughput};

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
