//! Routing: the job's `route` if given, else a weighted pick among its channel's providers,
//! preferring ones that are up. A sender registered on some providers only
//! ([`SenderRegistry`]) goes through those.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::job::Job;
use crate::policy::SenderRegistry;
use crate::provider::Provider;

pub struct Router {
    providers: Vec<Arc<dyn Provider>>,
    by_channel: HashMap<String, Vec<usize>>,
    /// Drives the weighted round-robin.
    counter: AtomicU64,
    /// Which providers carry a tenant's registered senders.
    senders: SenderRegistry,
}

impl Router {
    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        let mut by_channel: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in providers.iter().enumerate() {
            for c in p.channels() {
                by_channel.entry(c.clone()).or_default().push(i);
            }
        }
        Self { providers, by_channel, counter: AtomicU64::new(0), senders: SenderRegistry::default() }
    }

    /// Routes each registered sender through the providers it is registered on.
    pub fn with_senders(mut self, senders: SenderRegistry) -> Self {
        self.senders = senders;
        self
    }

    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// Channels with no provider up (for `/readyz`).
    pub fn channels_down(&self) -> Vec<String> {
        let mut down: Vec<String> =
            self.by_channel.iter().filter(|(_, idx)| !idx.iter().any(|&i| self.providers[i].is_ready())).map(|(c, _)| c.clone()).collect();
        down.sort();
        down
    }

    /// The provider for `job`, or the reason there is none (which names the field at fault).
    pub fn route(&self, job: &Job) -> Result<Arc<dyn Provider>, String> {
        let channel = job.channel.as_str();
        let carriers = self.senders.providers_for(job);
        let carries = |name: &str| carriers.is_none_or(|c| c.iter().any(|n| n == name));
        let from = job.from.as_deref().unwrap_or_default();
        if let Some(name) = &job.route {
            let p = self.providers.iter().find(|p| p.name() == name).ok_or_else(|| format!("route: unknown provider {name:?}"))?;
            if !p.channels().iter().any(|c| c == channel) {
                return Err(format!("route: provider {name:?} does not serve channel {channel:?}"));
            }
            if !carries(name) {
                return Err(format!("route: provider {name:?} does not carry sender {from:?}, registered on {}", carriers.unwrap_or_default().join(", ")));
            }
            return Ok(p.clone());
        }
        let all = self.by_channel.get(channel).ok_or_else(|| format!("channel: no provider serves {channel:?}"))?;
        let candidates: Vec<usize> = all.iter().copied().filter(|&i| carries(self.providers[i].name())).collect();
        if candidates.is_empty() {
            // Config checks make this unreachable for configured providers; kept for a
            // registry built otherwise.
            return Err(format!(
                "from: sender {from:?} is registered on {}, none of which serves channel {channel:?}",
                carriers.unwrap_or_default().join(", ")
            ));
        }
        let ready: Vec<usize> = candidates.iter().copied().filter(|&i| self.providers[i].is_ready()).collect();
        // With nothing up, route anyway: the provider waits briefly for a bind, then the job
        // is deferred as provider_unavailable.
        let pool = if ready.is_empty() { candidates } else { ready };
        let total: u64 = pool.iter().map(|&i| self.providers[i].weight() as u64).sum();
        let mut ticket = self.counter.fetch_add(1, Ordering::Relaxed) % total.max(1);
        for &i in &pool {
            let w = self.providers[i].weight() as u64;
            if ticket < w {
                return Ok(self.providers[i].clone());
            }
            ticket -= w;
        }
        Ok(self.providers[pool[0]].clone())
    }
}
