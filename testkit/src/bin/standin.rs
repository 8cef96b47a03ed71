//! `open-clanker-standin`: the stand-in AI provider as a process.
//!
//! Prints exactly one line, `listening on http://ADDR`, once it is bound, then serves until
//! SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use open_clanker_testkit::StandInConfig;

/// A stand-in AI provider speaking the Anthropic Messages and OpenAI Chat Completions APIs, for
/// tests. See the crate documentation for the `#directives` that steer its answers.
#[derive(Debug, Parser)]
#[command(name = "open-clanker-standin", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The API key clients must send.
    #[arg(long, default_value = "test-key")]
    api_key: String,
    /// Wait before each delta, in milliseconds, when a message has no `#delay`.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// The most streams a client may have open at once on one HTTP/2 (h2c) connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS) [default: hyper's, 200].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    http2_max_concurrent_streams: Option<u32>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let config = StandInConfig {
        api_key: args.api_key,
        default_delay: Duration::from_millis(args.delay_ms),
        http2_max_concurrent_streams: args.http2_max_concurrent_streams,
    };
    let standin = open_clanker_testkit::spawn_on(listener, config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{}", standin.addr())?;
        stdout.flush()?;
    }
    wait_for_signal().await?;
    standin.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
