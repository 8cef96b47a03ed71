//! One DNS resolver for all the clients of a provider's pool.
//!
//! reqwest gives every client its own hickory resolver (its own system configuration, name server
//! pool and cache, ~37 KB once used); the pool's clients share this one instead, set up exactly as
//! reqwest sets up its own (system configuration, IPv4 and IPv6 for happy eyeballs).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::sync::OnceCell;

/// A hickory resolver built on first use (inside the runtime), shared by clones.
#[derive(Clone, Default)]
pub(crate) struct SharedResolver {
    resolver: Arc<OnceCell<TokioResolver>>,
}

impl Resolve for SharedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let shared = self.resolver.clone();
        Box::pin(async move {
            let resolver = shared.get_or_try_init(|| async { new_resolver() }).await?;
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let addrs: Addrs = Box::new(lookup.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The resolver reqwest would build: the system's configuration (`/etc/resolv.conf`), asking for
/// both IPv4 and IPv6 addresses.
fn new_resolver() -> Result<TokioResolver, hickory_resolver::ResolveError> {
    let mut builder = TokioResolver::builder_tokio()?;
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_localhost_and_keeps_one_resolver() {
        let shared = SharedResolver::default();
        let other = shared.clone();
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = shared.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(other.resolver.initialized(), "a clone shares the resolver");
    }
}
