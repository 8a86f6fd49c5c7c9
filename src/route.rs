//! Routing: the job's `route` if given, else a weighted pick among its channel's providers,
//! preferring ones that are up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::job::Job;
use crate::provider::Provider;

pub struct Router {
    providers: Vec<Arc<dyn Provider>>,
    by_channel: HashMap<String, Vec<usize>>,
    /// Drives the weighted round-robin.
    counter: AtomicU64,
}

impl Router {
    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        let mut by_channel: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in providers.iter().enumerate() {
            for c in p.channels() {
                by_channel.entry(c.clone()).or_default().push(i);
            }
        }
        Self { providers, by_channel, counter: AtomicU64::new(0) }
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
        if let Some(name) = &job.route {
            let p = self.providers.iter().find(|p| p.name() == name).ok_or_else(|| format!("route: unknown provider {name:?}"))?;
            if !p.channels().iter().any(|c| c == channel) {
                return Err(format!("route: provider {name:?} does not serve channel {channel:?}"));
            }
            return Ok(p.clone());
        }
        let candidates = self.by_channel.get(channel).ok_or_else(|| format!("channel: no provider serves {channel:?}"))?;
        let ready: Vec<usize> = candidates.iter().copied().filter(|&i| self.providers[i].is_ready()).collect();
        // With nothing up, route anyway: the provider waits briefly for a bind, then the job
        // is deferred as provider_unavailable.
        let pool = if ready.is_empty() { candidates.clone() } else { ready };
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
