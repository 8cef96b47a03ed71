//! `open-clanker-bench`: a load generator for the Open Clanker gateway.
//!
//! It starts (or is pointed at) a real `open-clanker gateway` process and a stand-in provider
//! process (`open-clanker-standin`), opens streaming chats against the gateway and measures what
//! the gateway adds. See `docs/BENCHMARKS.md` for the method and the figures.

mod cli;
mod client;
mod procs;
mod scenarios;
mod stats;

use std::process::ExitCode;

use clap::Parser;

use cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.repeat == 0 || args.per_conn == 0 {
        eprintln!("error: --repeat and --per-conn must be at least 1");
        return ExitCode::from(2);
    }
    let nofile = procs::raise_nofile(args.nofile);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(scenarios::run(args.clone(), nofile));
    // Stop the processes (in `Drop`) before the runtime goes.
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", scenarios::render(&report));
    }
    if report.failures > 0 && !args.allow_errors {
        eprintln!(
            "FAILED: {} chat(s) failed or a process crashed (see errors above)",
            report.failures
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
