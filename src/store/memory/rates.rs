//! Rate leases and campaign speeds in memory: the GCRA step of `store::gcra` on a map of TATs
//! (the memory store's now is the caller's `now`), and a map of speeds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryStore;
use crate::store::{campaign_field, gcra, RateGrant, RateLease, Rates, StoreError};

#[async_trait]
impl Rates for MemoryStore {
    async fn rate_lease(&self, reqs: &[RateLease], now: DateTime<Utc>) -> Result<Vec<RateGrant>, StoreError> {
        let now_us = now.timestamp_micros().max(0) as u64;
        let mut g = self.lock();
        // A TAT in the past means the same as none: forget those once there are many.
        if g.rate_tats.len() > 10_000 {
            g.rate_tats.retain(|_, tat| *tat > now_us);
        }
        Ok(reqs
            .iter()
            .map(|r| {
                let (grant, tat) = gcra::lease(g.rate_tats.get(&r.limit).copied(), now_us, r);
                g.rate_tats.insert(r.limit.clone(), tat);
                grant
            })
            .collect())
    }

    async fn set_campaign_rate(&self, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), StoreError> {
        let mut g = self.lock();
        let field = campaign_field(tenant, campaign);
        match rate {
            Some(r) => g.campaign_rates.insert(field, r),
            None => g.campaign_rates.remove(&field),
        };
        Ok(())
    }

    async fn campaign_rates(&self, campaigns: &[(&str, &str)]) -> Result<Vec<Option<f64>>, StoreError> {
        let g = self.lock();
        let get = |t: Option<&str>, c: &str| g.campaign_rates.get(&campaign_field(t, c)).copied();
        Ok(campaigns.iter().map(|(t, c)| get(Some(t), c).or_else(|| get(None, c))).collect())
    }
}
