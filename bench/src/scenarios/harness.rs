//! The processes under test and the bench's own state: a gateway (started here or external),
//! drivers and warm-up chats against it, and the check that every turn was stored.

use std::time::{Duration, Instant};

use crate::cli::Args;
use crate::client::{Driver, Mode, Protocol, expected_answer};
use crate::procs::{self, GatewayProc, GatewaySpec, ProcSample, StandInProc};

use super::report::StoreCheck;

pub(super) struct Gateway {
    pub(super) proc: Option<GatewayProc>,
    pub(super) url: String,
    pub(super) pid: Option<u32>,
}

impl Gateway {
    pub(super) fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(procs::sample)
    }

    /// The last `n` warning and error lines of the log of a gateway we started.
    pub(super) fn log_problems(&self, n: usize) -> Vec<String> {
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
    pub(super) fn check_alive(&mut self) -> Result<(), String> {
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

pub(super) struct Bench {
    pub(super) args: Args,
    pub(super) spec: Option<GatewaySpec>,
    pub(super) standin: Option<StandInProc>,
    pub(super) standin_url: String,
    pub(super) http: reqwest::Client,
    pub(super) failures: usize,
    pub(super) gateway_nofile: Option<u64>,
    pub(super) runs: u64,
}

impl Bench {
    /// A fresh gateway (or the external one).
    pub(super) fn gateway(&mut self) -> Result<Gateway, String> {
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

    pub(super) fn standin_pid(&self) -> Option<u32> {
        self.standin.as_ref().map(|s| s.proc.pid())
    }

    fn run_tag(&mut self) -> String {
        self.runs += 1;
        format!("{}-{}", std::process::id(), self.runs)
    }

    pub(super) async fn driver(
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
    pub(super) async fn warmup(&mut self, driver: &Driver, n: usize) {
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

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.stream_timeout_secs)
    }
}

/// `(sessions, messages)` in the gateway's store, from `GetStatus`.
pub(super) async fn store_counts(url: &str) -> Option<(u64, u64)> {
    let mut client = open_clanker_client::Client::connect(url).await.ok()?;
    let status = client.status().await.ok()?;
    let store = status.store?;
    Some((store.session_count, store.message_count))
}

/// Waits (up to `wait`) until the store has gained `sessions` sessions and `messages` messages.
pub(super) async fn check_store(
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
