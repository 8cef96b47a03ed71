//! Exponential backoff with jitter, and retries that honour a platform's `retry_after`.

use std::future::Future;
use std::time::Duration;

use crate::sink::SendError;

/// Exponential backoff: `initial`, doubling up to `max`, each delay jittered by ±20%.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; each call doubles the following one (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(base)
    }

    /// Back to `initial` after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    /// 1 s doubling to 60 s: reconnecting to a platform.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// `d` ± 20%, from the OS random source (no need for a CSPRNG, but it is there).
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        return d;
    }
    let r = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX); // 0..=1
    d.mul_f64(0.8 + 0.4 * r)
}

/// How hard [`retry`] tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The longest `retry_after` waited out; a longer one is returned as the error.
    pub max_wait: Duration,
    /// First delay after a transient (network) error.
    pub transient_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            max_wait: Duration::from_secs(300),
            transient_delay: Duration::from_millis(500),
        }
    }
}

/// Runs `op` until it succeeds, waiting out [`SendError::RetryAfter`] (the platform's 429) and
/// backing off after [`SendError::Transient`] errors; [`SendError::Fatal`] is returned at once.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, mut op: F) -> Result<T, SendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SendError>>,
{
    let mut backoff = Backoff::new(policy.transient_delay, Duration::from_secs(10));
    let mut attempt = 1;
    loop {
        let err = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if attempt >= policy.attempts {
            return Err(err);
        }
        attempt += 1;
        match &err {
            SendError::RetryAfter(wait) if *wait <= policy.max_wait => {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "rate limited: waiting it out"
                );
                tokio::time::sleep(*wait).await;
            }
            SendError::Transient(e) => {
                let wait = backoff.next_delay();
                tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (d, base) in delays.iter().zip([1, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(
                *d >= base.mul_f64(0.79) && *d <= base.mul_f64(1.21),
                "{d:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1210));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_out_and_fatal_is_not_retried() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = retry(RetryPolicy::default(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(SendError::RetryAfter(Duration::from_secs(3))),
                1 => Err(SendError::Transient("reset".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_secs(3));

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(RetryPolicy::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(SendError::Fatal("bad request".into()))
        })
        .await;
        assert!(matches!(result, Err(SendError::Fatal(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A wait longer than allowed is not waited.
        let policy = RetryPolicy {
            max_wait: Duration::from_secs(1),
            ..Default::default()
        };
        let result: Result<(), _> = retry(policy, || async {
            Err(SendError::RetryAfter(Duration::from_secs(60)))
        })
        .await;
        assert!(matches!(result, Err(SendError::RetryAfter(_))));
    }
}
