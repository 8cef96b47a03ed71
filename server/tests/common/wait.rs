//! Waiting for a condition, with a deadline.

use std::time::{Duration, Instant};

/// How long a test waits for the gateway to act on something before it gives up.
pub const WAIT: Duration = Duration::from_secs(30);

/// Checks `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `f` every `every` until it returns `Some`; panics naming `what` once `limit` has passed.
/// Blocks the thread: for the tests that run only the gateway (a child process) meanwhile.
pub fn poll<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let began = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(every);
    }
}

/// Like [`poll`], sleeping on the runtime (the stand-ins it runs go on answering).
pub async fn poll_async<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let began = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(began.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(every).await;
    }
}

/// Runs `f` every `every` until `done` holds of what it returned or `limit` has passed, and
/// returns the last value either way: the test's own assertions then say what is wrong.
pub async fn last_until<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let began = Instant::now();
    loop {
        let value = f();
        if done(&value) || began.elapsed() > limit {
            return value;
        }
        tokio::time::sleep(every).await;
    }
}
