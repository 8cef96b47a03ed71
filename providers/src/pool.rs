//! A small pool of identical HTTP clients for one provider.
//!
//! Over HTTP/2 one `reqwest::Client` puts every request to a host on one connection, and once the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` is reached further requests wait in the client's
//! queue instead of opening a second connection. The pool therefore hands each request the member
//! with the fewest requests in flight, and builds another member (its own connection) when every
//! member already carries `max_streams_per_connection` requests. At low load there is one member
//! and so one connection; after a burst, a member that falls idle is dropped again once the rest
//! have room to spare.
//!
//! A request is in flight from the moment its [`Lease`] is taken (before it is sent) until the
//! lease is dropped, which the provider clients do when the answer's stream ends or is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::ProviderError;

/// The most members one pool builds; past it, requests share the least loaded one.
pub(crate) const MAX_MEMBERS: usize = 256;

/// Builds a member.
type Make<C> = Box<dyn Fn() -> Result<C, ProviderError> + Send + Sync>;

/// Members (clients of type `C`), each with its count of requests in flight.
pub(crate) struct Pool<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    members: Mutex<Vec<Arc<Member<C>>>>,
    make: Make<C>,
    /// Requests one member takes before another is built.
    per_member: usize,
    max_members: usize,
}

struct Member<C> {
    value: C,
    in_flight: AtomicUsize,
}

/// One request's hold on a member: the member counts it in flight until the lease is dropped.
pub(crate) struct Lease<C> {
    member: Arc<Member<C>>,
    shared: Arc<Shared<C>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: Send + Sync + 'static> Pool<C> {
    /// A pool whose members `make` builds; the first is built now, so that a configuration that
    /// cannot give a member fails here. `per_member` (at least 1) requests go to one member
    /// before another is built, up to `max_members` (at least 1).
    pub(crate) fn new(
        per_member: usize,
        max_members: usize,
        make: impl Fn() -> Result<C, ProviderError> + Send + Sync + 'static,
    ) -> Result<Self, ProviderError> {
        let first = make()?;
        Ok(Self {
            shared: Arc::new(Shared {
                members: Mutex::new(vec![Arc::new(Member::new(first))]),
                make: Box::new(make),
                per_member: per_member.max(1),
                max_members: max_members.max(1),
            }),
        })
    }

    /// The member for the next request, counted in flight until the lease is dropped: the one
    /// with the fewest requests in flight (the oldest among equals), or a new one when every
    /// member has `per_member` or more and the pool is not full.
    pub(crate) fn acquire(&self) -> Lease<C> {
        let shared = &self.shared;
        let mut members = lock(&shared.members);
        let mut chosen = least_loaded(&members);
        if chosen.in_flight.load(Ordering::Acquire) >= shared.per_member
            && members.len() < shared.max_members
        {
            match (shared.make)() {
                Ok(value) => {
                    chosen = Arc::new(Member::new(value));
                    members.push(chosen.clone());
                    tracing::debug!(clients = members.len(), "provider client pool grew");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not build another provider client");
                }
            }
        }
        chosen.in_flight.fetch_add(1, Ordering::AcqRel);
        drop(members);
        Lease {
            member: chosen,
            shared: shared.clone(),
        }
    }

    /// The requests in flight on each member, oldest member first.
    #[cfg(test)]
    pub(crate) fn loads(&self) -> Vec<usize> {
        lock(&self.shared.members)
            .iter()
            .map(|m| m.in_flight.load(Ordering::Acquire))
            .collect()
    }
}

fn least_loaded<C>(members: &[Arc<Member<C>>]) -> Arc<Member<C>> {
    // `min_by_key` returns the first of equal minima: at low load the oldest member (whose
    // connection is warm) gets every request.
    members
        .iter()
        .min_by_key(|m| m.in_flight.load(Ordering::Acquire))
        .expect("a pool always has a member")
        .clone()
}

impl<C> Member<C> {
    fn new(value: C) -> Self {
        Self {
            value,
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl<C> Shared<C> {
    /// After a member fell to zero requests in flight: drops idle members (the newest first) for
    /// as long as the others hold the pool's load with room to spare (at most half their
    /// capacity), so that a burst's extra clients and their connections do not outlive it.
    fn shrink(&self) {
        let mut members = lock(&self.members);
        // Requests are only counted in while the lock is held: what is idle here stays idle.
        let total: usize = members
            .iter()
            .map(|m| m.in_flight.load(Ordering::Acquire))
            .sum();
        let mut removed = Vec::new();
        while members.len() > 1 && total <= (members.len() - 1) * self.per_member / 2 {
            let Some(i) = members
                .iter()
                .rposition(|m| m.in_flight.load(Ordering::Acquire) == 0)
            else {
                break;
            };
            removed.push(members.remove(i));
        }
        let left = members.len();
        drop(members);
        if !removed.is_empty() {
            tracing::debug!(clients = left, "provider client pool shrank");
        }
    }
}

impl<C> Lease<C> {
    /// The member's client.
    pub(crate) fn get(&self) -> &C {
        &self.member.value
    }
}

impl<C> Drop for Lease<C> {
    fn drop(&mut self) {
        if self.member.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.shrink();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A pool of numbered fake members (0, 1, 2, ... in the order they were built).
    fn fake(per_member: usize, max_members: usize) -> (Pool<u32>, Arc<AtomicU32>) {
        let built = Arc::new(AtomicU32::new(0));
        let counter = built.clone();
        let pool = Pool::new(per_member, max_members, move || {
            Ok(counter.fetch_add(1, Ordering::SeqCst))
        })
        .unwrap();
        (pool, built)
    }

    #[test]
    fn one_member_while_the_load_is_low() {
        let (pool, built) = fake(4, 256);
        for _ in 0..100 {
            let lease = pool.acquire();
            assert_eq!(*lease.get(), 0);
            assert_eq!(pool.loads(), vec![1]);
        }
        // Up to the limit at once still fits the first member.
        let held: Vec<_> = (0..4).map(|_| pool.acquire()).collect();
        assert!(held.iter().all(|l| *l.get() == 0));
        assert_eq!(pool.loads(), vec![4]);
        assert_eq!(built.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn grows_when_every_member_is_full_and_balances() {
        let (pool, _) = fake(4, 256);
        let mut held: Vec<_> = (0..4).map(|_| pool.acquire()).collect();
        let fifth = pool.acquire();
        assert_eq!(*fifth.get(), 1, "the fifth request gets a new member");
        assert_eq!(pool.loads(), vec![4, 1]);
        held.push(fifth);
        // The new member fills up before a third is built.
        held.extend((0..3).map(|_| pool.acquire()));
        assert_eq!(pool.loads(), vec![4, 4]);
        held.push(pool.acquire());
        assert_eq!(pool.loads(), vec![4, 4, 1]);
        // A request that ends frees room on its member, which the next request takes.
        let i = held.iter().position(|l| *l.get() == 0).unwrap();
        held.swap_remove(i);
        assert_eq!(pool.loads(), vec![3, 4, 1]);
        held.push(pool.acquire());
        assert_eq!(pool.loads(), vec![3, 4, 2]);
        held.push(pool.acquire());
        assert_eq!(pool.loads(), vec![3, 4, 3]);
        held.push(pool.acquire());
        assert_eq!(pool.loads(), vec![4, 4, 3], "the oldest among equals");
    }

    #[test]
    fn past_the_cap_the_least_loaded_member_is_shared() {
        let (pool, built) = fake(2, 3);
        let held: Vec<_> = (0..6).map(|_| pool.acquire()).collect();
        assert_eq!(pool.loads(), vec![2, 2, 2]);
        let more: Vec<_> = (0..4).map(|_| pool.acquire()).collect();
        assert_eq!(pool.loads(), vec![4, 3, 3]);
        assert_eq!(built.load(Ordering::SeqCst), 3);
        drop((held, more));
        assert_eq!(pool.loads(), vec![0], "idle extra members are dropped");
    }

    #[test]
    fn a_dropped_lease_is_no_longer_in_flight() {
        let (pool, _) = fake(100, 256);
        let a = pool.acquire();
        let b = pool.acquire();
        assert_eq!(pool.loads(), vec![2]);
        drop(a);
        assert_eq!(pool.loads(), vec![1]);
        // A lease moved into another task and dropped there counts out as well.
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert_eq!(pool.loads(), vec![0]);
    }

    #[test]
    fn extra_members_go_once_the_rest_have_room_to_spare() {
        let (pool, built) = fake(4, 256);
        let mut held: Vec<_> = (0..12).map(|_| pool.acquire()).collect();
        assert_eq!(pool.loads(), vec![4, 4, 4]);
        // Emptying member 2 while members 0 and 1 are still full keeps it (8 > 2 * 4 / 2).
        held.retain(|l| *l.get() != 2);
        assert_eq!(pool.loads(), vec![4, 4, 0]);
        // Down to 4 in flight (at most half of the others' capacity): an emptied member goes.
        held.retain(|l| *l.get() != 1);
        assert_eq!(pool.loads(), vec![4, 0]);
        held.truncate(2);
        assert_eq!(pool.loads(), vec![2, 0]);
        held.clear();
        assert_eq!(pool.loads(), vec![0]);
        assert_eq!(built.load(Ordering::SeqCst), 3);
        // And it grows again when needed.
        let held: Vec<_> = (0..5).map(|_| pool.acquire()).collect();
        assert_eq!(pool.loads(), vec![4, 1]);
        assert_eq!(*held[4].get(), 3);
    }

    #[test]
    fn a_member_that_cannot_be_built_leaves_the_load_on_the_others() {
        let built = Arc::new(AtomicU32::new(0));
        let counter = built.clone();
        let pool = Pool::new(1, 256, move || {
            match counter.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(0u32),
                _ => Err(ProviderError::Config("no more".into())),
            }
        })
        .unwrap();
        let held: Vec<_> = (0..3).map(|_| pool.acquire()).collect();
        assert!(held.iter().all(|l| *l.get() == 0));
        assert_eq!(pool.loads(), vec![3]);
    }

    #[test]
    fn concurrent_acquires_never_overfill_a_member_below_the_cap() {
        let (pool, _) = fake(8, 256);
        let pool = Arc::new(pool);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || (0..16).map(|_| pool.acquire()).collect::<Vec<_>>())
            })
            .collect();
        let held: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let loads = pool.loads();
        assert_eq!(loads.iter().sum::<usize>(), 128);
        assert_eq!(loads, vec![8; 16], "{loads:?}");
        drop(held);
        assert_eq!(pool.loads(), vec![0]);
    }
}

/// The count through the provider clients and real answers from the stand-in.
#[cfg(test)]
mod through_answers {
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use open_clanker_testkit::{StandIn, StandInConfig};

    use crate::{
        AnthropicProvider, ChatMessage, CompletionRequest, Provider, ProviderConfig, ProviderKind,
        Role,
    };

    fn request(text: &str) -> CompletionRequest {
        CompletionRequest {
            model: "stand-in-model".into(),
            system: None,
            messages: vec![ChatMessage::new(Role::User, text)],
            max_tokens: 1024,
            temperature: None,
        }
    }

    async fn provider(per_connection: u32) -> (StandIn, AnthropicProvider) {
        let standin = open_clanker_testkit::spawn(StandInConfig {
            http2_max_concurrent_streams: Some(per_connection),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut config = ProviderConfig::new(ProviderKind::Anthropic, "test-key")
            .with_base_url(standin.anthropic_base_url());
        config.http2_prior_knowledge = true;
        config.max_retries = 0;
        config.max_streams_per_connection = per_connection;
        (standin, AnthropicProvider::new(config).unwrap())
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn an_answer_is_in_flight_until_its_stream_is_dropped_or_done() {
        let (standin, p) = provider(4).await;
        assert_eq!(p.client_loads(), vec![0]);
        // Dropped midway.
        let mut held = p.stream(request("#hang")).await.unwrap();
        held.next().await.unwrap().unwrap();
        assert_eq!(p.client_loads(), vec![1]);
        drop(held);
        assert_eq!(p.client_loads(), vec![0]);
        // Read to its end: in flight until the body is finished.
        let mut whole = p.stream(request("#tokens=3")).await.unwrap();
        assert_eq!(p.client_loads(), vec![1]);
        while let Some(event) = whole.next().await {
            event.unwrap();
        }
        eventually("a finished answer still counts", || {
            p.client_loads() == vec![0]
        })
        .await;
        drop(whole);
        // Refused: not in flight once the error is returned.
        assert!(p.stream(request("#status=400")).await.is_err());
        assert_eq!(p.client_loads(), vec![0]);
        // Five held answers: a second client for the fifth; gone again once all are dropped.
        let mut streams = Vec::new();
        for i in 0..5 {
            let mut s = p.stream(request(&format!("{i} #hang"))).await.unwrap();
            s.next().await.unwrap().unwrap();
            streams.push(s);
        }
        assert_eq!(p.client_loads(), vec![4, 1]);
        assert_eq!(standin.connections(), 2);
        drop(streams);
        assert_eq!(p.client_loads(), vec![0]);
    }
}
