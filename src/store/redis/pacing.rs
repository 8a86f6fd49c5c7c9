//! Pacing in Redis: two hashes of deadlines and one sorted set of pending jobs per campaign,
//! all read and written by `pace.lua` in one call per batch.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, store_err, RedisStore};
use crate::store::{pace_field, pace_limit, PaceCall, PaceState, Pacing, StoreError};

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    (ms >= 0).then(|| DateTime::from_timestamp_millis(ms)).flatten()
}

#[async_trait]
impl Pacing for RedisStore {
    /// Not replay-guarded: run twice it adds and removes the same ids (sets, not counters) and
    /// `HSETNX` keeps the first offer.
    async fn pace(&self, calls: &[PaceCall<'_>], now: DateTime<Utc>, keep: Duration) -> Result<Vec<PaceState>, StoreError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.pace.prepare_invoke();
        inv.key(self.keys.campaign_finish_by()).key(self.keys.campaign_finish_by_job());
        inv.arg(now.timestamp_millis()).arg(keep.as_millis().max(1) as u64);
        for c in calls {
            inv.key(self.keys.campaign_pending(c.tenant, c.campaign)).key(self.keys.rate(&pace_limit(c.tenant, c.campaign)));
            inv.arg(pace_field(c.tenant, c.campaign)).arg(if c.configured { "1" } else { "0" });
            inv.arg(c.offer.map(|t| t.timestamp_millis().to_string()).unwrap_or_default());
            inv.arg(c.add.len()).arg(c.remove.len()).arg(c.rank.len());
            for id in c.add.iter().chain(&c.remove).chain(&c.rank) {
                inv.arg(*id);
            }
        }
        let flat: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, "pace"))?;
        let mut it = flat.into_iter();
        let mut out = Vec::with_capacity(calls.len());
        for c in calls {
            let mut next = || it.next().ok_or_else(|| corrupt("pace", "short answer"));
            let (admin, proposed, pending, booked_us) = (next()?, next()?, next()?, next()?);
            let ranks = (0..c.rank.len()).map(|_| next().map(|r| u64::try_from(r).ok())).collect::<Result<_, _>>()?;
            let booked_ahead = Duration::from_micros(booked_us.max(0) as u64);
            out.push(PaceState { admin_finish_by: from_ms(admin), job_finish_by: from_ms(proposed), pending: pending.max(0) as u64, ranks, booked_ahead });
        }
        Ok(out)
    }

    async fn set_finish_by(&self, tenant: &str, campaign: &str, finish_by: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        let field = pace_field(tenant, campaign);
        let (admin, proposed) = (self.keys.campaign_finish_by(), self.keys.campaign_finish_by_job());
        let mut pipe = redis::pipe();
        pipe.atomic();
        match finish_by {
            Some(t) => pipe.cmd("HSET").arg(&admin).arg(&field).arg(t.timestamp_millis()).ignore(),
            None => pipe.cmd("HDEL").arg(&admin).arg(&field).ignore().cmd("HDEL").arg(&proposed).arg(&field).ignore(),
        };
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &admin))
    }
}
