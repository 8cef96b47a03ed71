//! One turn at a time per session, in arrival order: per-key locks, and a message's place in its
//! session's queue taken before its task runs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use tokio::sync::OwnedMutexGuard;

/// Per-key async locks: one turn at a time per session, so answers never interleave.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for `key`'s lock.
    pub fn lock_owned(
        &self,
        key: &str,
    ) -> impl Future<Output = OwnedMutexGuard<()>> + Send + 'static {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() > 1024 {
                // Forget the locks nobody holds or waits for.
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(key.to_owned()).or_default().clone()
        };
        lock.lock_owned()
    }

    /// Takes a place in `key`'s queue now, without waiting for the lock.
    pub(super) async fn reserve(&self, key: &str) -> Reservation {
        let mut wait: Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>> =
            Box::pin(self.lock_owned(key));
        // Polling once queues the waiter (tokio's mutex is FIFO) without waiting for the lock.
        let ready = futures::poll!(wait.as_mut());
        Reservation(match ready {
            Poll::Ready(guard) => Box::pin(std::future::ready(guard)),
            Poll::Pending => wait,
        })
    }
}

/// A message's place in its session's queue ([`super::Pipeline::reserve`]).
pub struct Reservation(Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>>);

impl Reservation {
    /// Waits for the session's turn; it lasts as long as the guard.
    pub(super) async fn turn(self) -> OwnedMutexGuard<()> {
        self.0.await
    }
}
