//! Sampling during a run, in the background: the gateway's RSS and the stand-in's open streams.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::procs;

#[derive(Debug, Default)]
pub(super) struct Sampled {
    pub(super) rss_max_kib: u64,
    pub(super) standin_max: usize,
    pub(super) series: Vec<(f64, u64)>,
}

pub(super) struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Sampled>,
}

impl Sampler {
    pub(super) fn start(
        pid: Option<u32>,
        standin: Option<(reqwest::Client, String)>,
        every: Duration,
    ) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let begun = Instant::now();
            let mut out = Sampled::default();
            loop {
                if let Some(s) = pid.and_then(procs::sample) {
                    out.rss_max_kib = out.rss_max_kib.max(s.rss_kib);
                    out.series.push((begun.elapsed().as_secs_f64(), s.rss_kib));
                }
                if let Some((http, url)) = &standin
                    && let Some(active) = standin_active(http, url).await
                {
                    out.standin_max = out.standin_max.max(active);
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            out
        });
        Sampler { stop, task }
    }

    pub(super) async fn finish(self) -> Sampled {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

pub(super) async fn standin_active(http: &reqwest::Client, url: &str) -> Option<usize> {
    let v: serde_json::Value = http
        .get(format!("{url}/_standin/stats"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v.get("active_streams")?.as_u64().map(|n| n as usize)
}
