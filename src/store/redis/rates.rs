//! Rate leases and campaign speeds in Redis: one TAT key per limit (`Keys::rate`), leased by
//! `rate_lease.lua` on Redis's own clock, and one hash of campaign speeds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, store_err, RedisStore};
use crate::store::{campaign_field, RateGrant, RateLease, Rates, StoreError};

#[async_trait]
impl Rates for RedisStore {
    /// One script for every limit of a batch. Not replay-guarded: a lease whose reply is lost
    /// is retried as a new lease, and the lost one's tokens go unused (never overspent).
    async fn rate_lease(&self, reqs: &[RateLease], _now: DateTime<Utc>) -> Result<Vec<RateGrant>, StoreError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.rate_lease.prepare_invoke();
        for r in reqs {
            inv.key(self.keys.rate(&r.limit));
            inv.arg(r.interval_us).arg(r.want).arg(r.horizon_us).arg(r.tolerance_us);
        }
        let flat: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, "rate_lease"))?;
        if flat.len() != reqs.len() * 4 {
            return Err(corrupt("rate_lease", format!("{} answers for {} limits", flat.len() / 4, reqs.len())));
        }
        let us = |v: i64| v.max(0) as u64;
        Ok(flat.chunks(4).map(|c| RateGrant { granted: us(c[0]) as u32, first_us: c[1], next_free_us: us(c[2]), first_at_us: us(c[3]) }).collect())
    }

    async fn set_campaign_rate(&self, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), StoreError> {
        let key = self.keys.campaign_rates();
        let field = campaign_field(tenant, campaign);
        let cmd = match rate {
            Some(r) => redis::cmd("HSET").arg(&key).arg(&field).arg(r.to_string()).to_owned(),
            None => redis::cmd("HDEL").arg(&key).arg(&field).to_owned(),
        };
        cmd.query_async::<i64>(&mut self.conn()).await.map(drop).map_err(|e| store_err(e, &key))
    }

    async fn campaign_rates(&self, campaigns: &[(&str, &str)]) -> Result<Vec<Option<f64>>, StoreError> {
        if campaigns.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.campaign_rates();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&key);
        for (t, c) in campaigns {
            cmd.arg(campaign_field(Some(t), c)).arg(campaign_field(None, c));
        }
        let values: Vec<Option<String>> = cmd.query_async(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        // A value that does not parse is logged and ignored rather than allowed to stall every
        // batch that names its campaign.
        let parse = |field: usize| {
            let v = values.get(field)?.as_deref()?;
            v.parse::<f64>().ok().filter(|r| r.is_finite() && *r > 0.0).or_else(|| {
                tracing::error!(key = %key, value = %v, "ignoring a campaign speed that is not a valid rate");
                None
            })
        };
        Ok((0..campaigns.len()).map(|i| parse(2 * i).or_else(|| parse(2 * i + 1))).collect())
    }
}
