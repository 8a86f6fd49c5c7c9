//! The scheduled set in Redis: a due-time zset, a payload hash and a lease hash
//! (`Keys::sched*`), changed only by `schedule.lua`, `claim_due.lua` and `finish_scheduled.lua`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, millis, store_err, RedisStore};
use crate::store::{ClaimedJob, DueKind, Schedule, ScheduledJob, StoreError, HELD_RETRY};

/// A scheduled entry's value: its recheck flag byte, its source record, a newline, then the
/// job's JSON (which holds no raw newline, nor does a topic name): one HGET brings back all.
fn encode_entry(j: &ScheduledJob) -> String {
    let flag = if j.recheck { '1' } else { '0' };
    format!("{flag}{}\n{}", j.src.as_deref().unwrap_or(""), j.payload)
}

/// `(recheck, source, payload)` of an entry's value.
fn decode_entry(v: &str) -> Option<(bool, Option<&str>, &str)> {
    let recheck = match v.as_bytes().first()? {
        b'0' => false,
        b'1' => true,
        _ => return None,
    };
    let (src, payload) = v[1..].split_once('\n')?;
    Some((recheck, (!src.is_empty()).then_some(src), payload))
}

#[async_trait]
impl Schedule for RedisStore {
    async fn schedule(&self, jobs: &[ScheduledJob], claim_ttl: Duration) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.schedule.key(self.keys.sched());
        inv.key(self.keys.sched_payload()).key(self.keys.sched_lease());
        inv.arg(self.keys.job_prefix()).arg(millis(claim_ttl));
        for j in jobs {
            inv.arg(j.entry()).arg(&j.id).arg(&j.token).arg(j.due.timestamp_millis()).arg(encode_entry(j));
        }
        let stored: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, &self.keys.sched()))?;
        if stored.len() != jobs.len() {
            return Err(corrupt(self.keys.sched(), format!("{} answers for {} entries", stored.len(), jobs.len())));
        }
        Ok(stored.into_iter().map(|v| v == 1).collect())
    }

    async fn cancel_steps(&self, steps: &[(&str, &str)], confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.cancel_step.key(self.keys.deadlines());
        inv.key(self.keys.sched()).key(self.keys.sched_payload()).key(self.keys.sched_lease());
        inv.arg(self.keys.job_prefix()).arg(Utc::now().timestamp_millis()).arg(confirm_by.timestamp_millis()).arg(&self.owner);
        for (id, report) in steps {
            inv.arg(*id).arg(*report);
        }
        let done: Vec<i64> = self.invoke_replayable(&mut inv, "cancel_step").await?;
        if done.len() != steps.len() {
            return Err(corrupt("cancel_step", format!("{} answers for {} steps", done.len(), steps.len())));
        }
        Ok(done.into_iter().map(|v| v == 1).collect())
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration, claim_ttl: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = now.timestamp_millis();
        let mut inv = self.scripts.claim_due.key(self.keys.sched());
        inv.key(self.keys.sched_payload()).key(self.keys.sched_lease()).key(self.keys.sched_seq());
        inv.arg(now_ms).arg(limit).arg(now_ms.saturating_add(millis(lease) as i64));
        inv.arg(self.keys.job_prefix()).arg(self.keys.alive_prefix()).arg(&self.owner).arg(millis(claim_ttl));
        inv.arg(now_ms.saturating_add(millis(HELD_RETRY) as i64));
        let rows: Vec<(String, String, u64, String, String)> = self.invoke_replayable(&mut inv, "claim_due").await?;
        let payload_key = self.keys.sched_payload();
        rows.into_iter()
            .map(|(entry, flagged, lease, token, kind)| {
                let bad = |why: &str| corrupt(format!("{payload_key}/{entry}"), why);
                let (_, src, payload) = decode_entry(&flagged).ok_or_else(|| bad("not flag, source and payload"))?;
                let kind = match kind.as_str() {
                    "r" => DueKind::Resumed,
                    "c" => DueKind::Recheck,
                    "o" => DueKind::Orphaned,
                    other => return Err(bad(&format!("unknown kind {other:?}"))),
                };
                let token = (!token.is_empty()).then_some(token);
                Ok(ClaimedJob { payload: payload.to_owned(), src: src.map(str::to_owned), entry, lease, token, kind })
            })
            .collect()
    }

    async fn finish_scheduled(&self, done: &[(String, u64)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut inv = self.scripts.finish_scheduled.key(self.keys.sched());
        inv.key(self.keys.sched_payload()).key(self.keys.sched_lease());
        for (id, lease) in done {
            inv.arg(id).arg(lease.to_string());
        }
        inv.invoke_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &self.keys.sched()))
    }
}
