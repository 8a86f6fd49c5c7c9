//! Pacing in memory: the same decisions as `scripts/pace.lua` on plain maps.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryStore;
use crate::store::{pace_field, pace_limit, PaceCall, PaceState, Pacing, StoreError};

/// One campaign's pending jobs: ordered by (first seen in ms, id), as the Redis sorted set.
#[derive(Default)]
pub(super) struct Pending {
    order: BTreeSet<(i64, String)>,
    seen: HashMap<String, i64>,
}

#[derive(Default)]
pub(super) struct PacingState {
    admin: HashMap<String, DateTime<Utc>>,
    proposed: HashMap<String, DateTime<Utc>>,
    pending: HashMap<String, Pending>,
}

#[async_trait]
impl Pacing for MemoryStore {
    async fn pace(&self, calls: &[PaceCall<'_>], now: DateTime<Utc>, _keep: Duration) -> Result<Vec<PaceState>, StoreError> {
        let mut g = self.lock();
        let g = &mut *g;
        let p = &mut g.pacing;
        let now_ms = now.timestamp_millis();
        let now_us = now.timestamp_micros().max(0) as u64;
        Ok(calls
            .iter()
            .map(|c| {
                let field = pace_field(c.tenant, c.campaign);
                if let Some(offer) = c.offer {
                    p.proposed.entry(field.clone()).or_insert(offer);
                }
                let admin = p.admin.get(&field).copied();
                let proposed = p.proposed.get(&field).copied();
                let tracked = c.configured || admin.is_some() || proposed.is_some();
                let set = p.pending.entry(field.clone()).or_default();
                for id in &c.remove {
                    if let Some(ms) = set.seen.remove(*id) {
                        set.order.remove(&(ms, (*id).to_owned()));
                    }
                }
                if tracked {
                    for id in &c.add {
                        if !set.seen.contains_key(*id) {
                            set.seen.insert((*id).to_owned(), now_ms);
                            set.order.insert((now_ms, (*id).to_owned()));
                        }
                    }
                }
                // A linear count: the memory store serves one process (`sendgate dev`, tests).
                let ranks = c.rank.iter().map(|id| set.seen.get(*id).map(|ms| set.order.range(..(*ms, (*id).to_owned())).count() as u64)).collect();
                let pending = set.seen.len() as u64;
                if pending == 0 {
                    p.pending.remove(&field);
                }
                let tat = g.rate_tats.get(&pace_limit(c.tenant, c.campaign)).copied().unwrap_or(0);
                let booked_ahead = Duration::from_micros(tat.saturating_sub(now_us));
                PaceState { admin_finish_by: admin, job_finish_by: proposed, pending, ranks, booked_ahead }
            })
            .collect())
    }

    async fn set_finish_by(&self, tenant: &str, campaign: &str, finish_by: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        let mut g = self.lock();
        let field = pace_field(tenant, campaign);
        match finish_by {
            Some(t) => {
                g.pacing.admin.insert(field, t);
            }
            None => {
                g.pacing.admin.remove(&field);
                g.pacing.proposed.remove(&field);
            }
        }
        Ok(())
    }
}
