//! Histories in Redis: one string of report JSON lines per job (`Keys::history`; read with
//! the list builds before session 10 kept, `Keys::hist`), appended by
//! `record_events.lua` together with the claim's final mark (which forgets its receipt state)
//! and the lifted holds (a receipt's final waits for `accepted`, a parked job's resumption for
//! `deferred`).

use std::time::Duration;

use async_trait::async_trait;

use super::{corrupt, millis, store_err, RedisStore};
use crate::report::{EventKind, Report};
use chrono::{DateTime, Utc};

use crate::store::{HandedFinal, History, PartOutcome, SentJob, StoreError};

#[async_trait]
impl History for RedisStore {
    async fn record_events(&self, reports: &[Report], ttl: Duration) -> Result<Vec<HandedFinal>, StoreError> {
        let json = reports.iter().map(|r| serde_json::to_string(r).map_err(|e| corrupt(self.keys.history(&r.job_id), e))).collect::<Result<Vec<_>, _>>()?;
        self.record_events_json(reports, &json, ttl).await
    }

    fn takes_report_json(&self) -> bool {
        true
    }

    async fn record_events_json(&self, reports: &[Report], json: &[String], ttl: Duration) -> Result<Vec<HandedFinal>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        if json.len() != reports.len() {
            return Err(corrupt("record_events", format!("{} encodings for {} reports", json.len(), reports.len())));
        }
        // One script: each history and its final mark land together even if Redis dies mid-batch.
        let mut inv = self.scripts.record_events.key(self.keys.deadlines());
        inv.key(self.keys.sched()).key(self.keys.sched_payload()).key(self.keys.sched_lease());
        inv.arg(self.keys.history_prefix()).arg(self.keys.job_prefix()).arg(millis(ttl)).arg(&self.owner).arg(self.keys.msgs_prefix());
        for (r, json) in reports.iter().zip(json) {
            let kind = match r.event {
                // A `delivered` job's receipts took all its mappings; any other final's job
                // may have some left, dropped with it.
                EventKind::Delivered if r.is_final => "1",
                _ if r.is_final => "2",
                EventKind::Step if r.ends_claim() => "s",
                EventKind::Accepted => "a",
                EventKind::Deferred => "d",
                EventKind::Duplicate if r.record.is_some() => "D",
                _ => "0",
            };
            let sid = r.store_id();
            inv.arg(&r.job_id).arg(if sid == r.job_id { "" } else { &*sid }).arg(kind).arg(json);
            match (crate::cascade::next_step(r), &r.record) {
                (Some((next, due)), _) => inv.arg(next).arg(due.timestamp_millis()),
                // A `duplicate`'s record, whose decision it marks recorded.
                (None, Some(record)) if kind == "D" => inv.arg(record.as_str()).arg(""),
                _ => inv.arg("").arg(""),
            };
        }
        let handed: Vec<(String, String, String, i64)> = inv.invoke_async(&mut self.conn()).await.map_err(|e| store_err(e, "record_events"))?;
        handed
            .into_iter()
            .map(|(sent, outcome, code, at)| {
                let job: SentJob = serde_json::from_str(&sent).map_err(|e| corrupt("record_events", e))?;
                let outcome = PartOutcome::parse(&outcome).ok_or_else(|| corrupt(self.keys.job(&job.job_id), format!("outcome {outcome:?}")))?;
                let decided_at = DateTime::<Utc>::from_timestamp_millis(at).unwrap_or_else(Utc::now);
                Ok(HandedFinal { job, outcome, error_code: (!code.is_empty()).then_some(code), decided_at })
            })
            .collect()
    }

    async fn events(&self, job_id: &str) -> Result<Vec<Report>, StoreError> {
        let (key, list) = (self.keys.history(job_id), self.keys.hist(job_id));
        // A history begun before an upgrade (or by an older instance during one) is partly in
        // the old list: both are read, in the order the events happened.
        let (text, rows): (Option<String>, Vec<String>) =
            redis::pipe().get(&key).lrange(&list, 0, -1).query_async(&mut self.conn()).await.map_err(|e| store_err(e, &key))?;
        let parse = |from: &str, json: &str| serde_json::from_str::<Report>(json).map_err(|e| corrupt(from, e));
        let mut events = rows.iter().map(|json| parse(&list, json)).collect::<Result<Vec<_>, _>>()?;
        for json in text.as_deref().unwrap_or_default().lines().filter(|l| !l.is_empty()) {
            events.push(parse(&key, json)?);
        }
        if !rows.is_empty() {
            events.sort_by_key(|r| r.at);
        }
        Ok(events)
    }
}
