//! Fair shares of the concurrent-turn budget: one caller (an API token, a remote address, a chat
//! sender) may hold at most `limits.max_concurrent_turns_per_caller` running turns, so it cannot
//! take the whole of `limits.max_concurrent_turns` and lock the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Running turns per caller.
pub struct CallerShares {
    per_caller: usize,
    running: Mutex<HashMap<String, usize>>,
}

/// One running turn of one caller; dropping it gives the slot back.
pub struct SharePermit {
    shares: Arc<CallerShares>,
    caller: String,
}

impl CallerShares {
    /// `per_caller` turns at once for each caller (at least 1).
    pub fn new(per_caller: usize) -> Arc<Self> {
        Arc::new(Self {
            per_caller: per_caller.max(1),
            running: Mutex::new(HashMap::new()),
        })
    }

    pub fn per_caller(&self) -> usize {
        self.per_caller
    }

    /// A slot for `caller`, or `None` when it already runs its share.
    pub fn try_acquire(self: &Arc<Self>, caller: &str) -> Option<SharePermit> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let held = running.entry(caller.to_owned()).or_insert(0);
        if *held >= self.per_caller {
            return None;
        }
        *held += 1;
        Some(SharePermit {
            shares: self.clone(),
            caller: caller.to_owned(),
        })
    }

    /// Callers with at least one running turn.
    pub fn active_callers(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for SharePermit {
    fn drop(&mut self) {
        let mut running = self
            .shares
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = running.get_mut(&self.caller) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                // The map holds only callers with running turns: it cannot grow with every
                // address that ever called.
                running.remove(&self.caller);
            }
        }
    }
}

/// The default share: a quarter of the budget (at least 1), so it takes four callers at their
/// share to fill the gateway.
pub fn default_per_caller(max_concurrent_turns: usize) -> usize {
    (max_concurrent_turns / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_held_to_its_share_and_gets_slots_back() {
        let shares = CallerShares::new(2);
        let a1 = shares.try_acquire("token:a").unwrap();
        let _a2 = shares.try_acquire("token:a").unwrap();
        assert!(shares.try_acquire("token:a").is_none());
        // Another caller is not affected.
        let _b = shares.try_acquire("token:b").unwrap();
        assert_eq!(shares.active_callers(), 2);
        drop(a1);
        assert!(shares.try_acquire("token:a").is_some());
    }

    #[test]
    fn idle_callers_leave_the_map() {
        let shares = CallerShares::new(1);
        for i in 0..100 {
            drop(shares.try_acquire(&format!("peer:10.0.0.{i}")).unwrap());
        }
        assert_eq!(shares.active_callers(), 0);
    }

    #[test]
    fn default_share_is_a_quarter() {
        assert_eq!(default_per_caller(16_384), 4_096);
        assert_eq!(default_per_caller(3), 1);
        assert_eq!(default_per_caller(1), 1);
    }
}
