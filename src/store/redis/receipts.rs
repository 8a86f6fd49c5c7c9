//! Receipt tracking in Redis: the SentJob and part count on the job's hash, message id → job
//! id in one hash per provider (`Keys::msgs`), the deadlines zset, and the reports sink's
//! offset checkpoints.
//! `track_sent.lua`, `settle_part.lua`, `take_overdue.lua`, and `record_events.lua` (a recorded
//! final forgets them) change them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, millis, store_err, RedisStore};
use crate::report::Report;
use crate::store::{EarlyReceipt, Overdue, PartOutcome, PartReceipt, Receipts, SentJob, Settled, StoreError};

/// One row of take_overdue.lua's answer: SentJob JSON, outcome, report JSON, decided at (ms).
fn overdue(key: &str, row: &[String]) -> Result<Overdue, StoreError> {
    let [sent, outcome, report, at] = row else { return Err(corrupt(key, "a short overdue row")) };
    let sent = (!sent.is_empty()).then(|| parse_sent(key, sent)).transpose()?;
    let report = (!report.is_empty()).then(|| report.clone());
    let job_id = match (&sent, &report) {
        (Some(s), _) => s.job_id.clone(),
        // A cascade step's report names its job: its claim is the step's own.
        (None, Some(r)) => serde_json::from_str::<Report>(r).map_err(|e| corrupt(key, e))?.store_id().into_owned(),
        (None, None) => return Err(corrupt(key, "an overdue job with neither a SentJob nor a report")),
    };
    let decided_at = at.parse::<i64>().ok().and_then(DateTime::<Utc>::from_timestamp_millis);
    Ok(Overdue { job_id, sent, outcome: PartOutcome::parse(outcome), report, decided_at })
}

fn parse_sent(key: &str, json: &str) -> Result<SentJob, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(key, e))
}

#[async_trait]
impl Receipts for RedisStore {
    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = Utc::now().timestamp_millis();
        let mut inv = self.scripts.track_sent.key(self.keys.deadlines());
        inv.arg(self.keys.job_prefix()).arg(self.keys.msgs_prefix());
        for (job, deadline, token) in jobs {
            let json = serde_json::to_string(job).map_err(|e| corrupt(self.keys.job(&job.job_id), e))?;
            let deadline_ms = deadline.timestamp_millis();
            // Kept `ttl` past the deadline, so late receipts still match until then.
            let px = millis(ttl) + deadline_ms.saturating_sub(now_ms).max(0) as u64;
            // The claim's own TTL (the dedup TTL, days) mostly outlives that already.
            let extend = job.claim_until.is_none_or(|until| until.timestamp_millis() < now_ms.saturating_add(px as i64));
            inv.arg(&job.job_id).arg(token).arg(deadline_ms).arg(px).arg(if extend { "1" } else { "0" });
            inv.arg(json).arg(&job.provider).arg(job.message_ids.len());
            for id in &job.message_ids {
                inv.arg(id);
            }
        }
        // Run again after a lost reply, it answers the same (a job `sent` under its token).
        let tracked: Vec<i64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, "track_sent"))?;
        if tracked.len() != jobs.len() {
            return Err(corrupt(self.keys.deadlines(), format!("{} answers for {} jobs", tracked.len(), jobs.len())));
        }
        Ok(tracked.into_iter().map(|v| v == 1).collect())
    }

    async fn settle_parts(&self, receipts: &[PartReceipt<'_>], confirm_by: DateTime<Utc>) -> Result<Vec<Settled>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.deadlines();
        let mut inv = self.scripts.settle_part.key(&key);
        inv.arg(self.keys.job_prefix()).arg(confirm_by.timestamp_millis()).arg(self.keys.msg_prefix());
        inv.arg(Utc::now().timestamp_millis()).arg(&self.owner).arg(self.keys.msgs_prefix());
        for (provider, message_id, outcome, code) in receipts {
            inv.arg(*provider).arg(*message_id).arg(outcome.as_str()).arg(code.unwrap_or_default());
        }
        let reply: Vec<String> = self.invoke_replayable(&mut inv, &key).await?;
        if reply.len() != receipts.len() * 2 {
            return Err(corrupt(&key, format!("{} settle answers for {} receipts", reply.len() / 2, receipts.len())));
        }
        reply
            .chunks(2)
            .zip(receipts)
            .map(|(pair, (_, _, outcome, _))| match pair[0].as_str() {
                "u" => Ok(Settled::Unmatched),
                "p" => Ok(Settled::Pending),
                "h" => Ok(Settled::HandedOff),
                "f" => Ok(Settled::Final { job: Box::new(parse_sent(&key, &pair[1])?), outcome: *outcome }),
                other => Err(corrupt(&key, format!("unexpected settle answer {other:?}"))),
            })
            .collect()
    }

    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.deadlines();
        let mut inv = self.scripts.take_overdue.key(&key);
        inv.arg(now.timestamp_millis()).arg(limit.min(i64::MAX as usize)).arg(self.keys.job_prefix()).arg(lease_until.timestamp_millis());
        inv.arg(self.keys.alive_prefix()).arg(&self.owner).arg(self.keys.msgs_prefix());
        let rows: Vec<String> = self.invoke_replayable(&mut inv, &key).await?;
        // A bad entry is logged and skipped, not allowed to fail the batch around it.
        Ok(rows
            .chunks(4)
            .filter_map(|row| match overdue(&key, row) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable overdue job");
                    None
                }
            })
            .collect())
    }

    async fn checkpoint_offsets(&self, offsets: &[(i32, i64)], now: DateTime<Utc>) -> Result<(), StoreError> {
        if offsets.is_empty() {
            return Ok(());
        }
        // One pipeline: per partition the checkpoint, and those older than a day trimmed (a
        // decision is read back within minutes of its decider's death).
        let now_ms = now.timestamp_millis();
        let mut pipe = redis::pipe();
        for (p, offset) in offsets {
            let key = self.keys.offsets(*p);
            pipe.cmd("ZADD").arg(&key).arg(now_ms).arg(offset).ignore();
            pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now_ms - 86_400_000).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, "checkpoint_offsets"))
    }

    async fn offset_before(&self, partition: i32, at: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let key = self.keys.offsets(partition);
        let found: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&key)
            .arg(at.timestamp_millis())
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_err(e, &key))?;
        found.first().map(|o| o.parse().map_err(|e| corrupt(&key, e))).transpose()
    }

    async fn keep_early(&self, receipts: &[EarlyReceipt], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.early_keep(receipts, now).await
    }

    async fn take_early(&self, older_than: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Result<Vec<EarlyReceipt>, StoreError> {
        self.early_take(older_than, now, limit).await
    }

    async fn drop_early(&self, receipts: &[(&str, &str)]) -> Result<(), StoreError> {
        self.early_drop(receipts).await
    }

    async fn keep_for_read(&self, jobs: &[SentJob], ttl: Duration) -> Result<(), StoreError> {
        let Some(first) = jobs.first() else { return Ok(()) };
        let mut pipe = redis::pipe();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        for job in jobs {
            let json = serde_json::to_string(job).map_err(|e| corrupt(&job.job_id, e))?;
            for id in &job.message_ids {
                pipe.cmd("SET").arg(self.keys.read(&job.provider, id)).arg(&json).arg("PX").arg(ttl_ms).ignore();
            }
        }
        let key = self.keys.read(&first.provider, "*");
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| store_err(e, &key))
    }

    async fn take_for_read(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<SentJob>>, StoreError> {
        let Some((provider, _)) = keys.first() else { return Ok(Vec::new()) };
        let mut pipe = redis::pipe();
        for (provider, id) in keys {
            pipe.cmd("GETDEL").arg(self.keys.read(provider, id));
        }
        let key = self.keys.read(provider, "*");
        let found: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        found.iter().map(|j| j.as_deref().map(|j| parse_sent(&key, j)).transpose()).collect()
    }
}
