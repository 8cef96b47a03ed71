//! Spend caps: a session's and the day's, checked before a turn stores or sends anything.

use open_clanker_core::{Session, TurnError, now_ms};
use open_clanker_store::Store;

use crate::Engine;
use crate::pricing::usd;
use crate::rules::store_error;

/// Today's spend across all sessions, kept in memory for the daily cap and loaded from the
/// store's ledger when the UTC day changes.
#[derive(Default)]
pub(crate) struct DaySpend {
    today: tokio::sync::Mutex<Option<(String, i64)>>,
}

impl DaySpend {
    pub(crate) async fn current(&self, store: &Store) -> Result<i64, TurnError> {
        let day = open_clanker_store::utc_day(now_ms());
        let mut today = self.today.lock().await;
        match &*today {
            Some((d, v)) if *d == day => Ok(*v),
            _ => {
                let v = store.spend_on(&day).await.map_err(store_error)?;
                *today = Some((day, v));
                Ok(v)
            }
        }
    }

    pub(crate) async fn add(&self, micros: i64) {
        let day = open_clanker_store::utc_day(now_ms());
        let mut today = self.today.lock().await;
        match &mut *today {
            Some((d, v)) if *d == day => *v += micros,
            // Another day: reload from the ledger next time.
            _ => *today = None,
        }
    }
}

impl Engine {
    /// Refuses a turn over a spend cap, before anything is stored or sent.
    pub(crate) async fn check_spend(&self, session: Option<&Session>) -> Result<(), TurnError> {
        if let (Some(cap), Some(s)) = (self.session_cap, session)
            && s.cost_micros >= cap
        {
            return Err(TurnError::ResourceExhausted(format!(
                "this session has spent ${:.4} of its ${:.2} cap (limits.max_usd_per_session); start a new session or raise the cap",
                usd(s.cost_micros),
                usd(cap)
            )));
        }
        if let Some(cap) = self.day_cap {
            let spent = self.day_spend.current(&self.store).await?;
            if spent >= cap {
                return Err(TurnError::ResourceExhausted(format!(
                    "today's spend ${:.4} reached the ${:.2} daily cap (limits.max_usd_per_day); it resets at 00:00 UTC",
                    usd(spent),
                    usd(cap)
                )));
            }
        }
        Ok(())
    }
}
