//! `dedup`: the first record with an id claims it; any later record with that id gets a
//! `duplicate` event and is never sent; the same record read again gets no event at all. One
//! store call claims the whole batch.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::report::EventKind;
use crate::sink::ledger::{Ledger, CHECKPOINT_SLACK};
use crate::store::{Claim, ClaimReq, Store, StoreError};
use crate::telemetry;

pub struct Dedup {
    store: Arc<dyn Store>,
    /// Reads the reports topic back for a dead instance's `duplicate` (Kafka only).
    ledger: Option<Arc<Ledger>>,
    /// How long an id is remembered: longer than any producer would retry a job.
    ttl: Duration,
    /// How long to wait before looking again at a claim another instance may still hold.
    busy_recheck: Duration,
}

/// A second record whose `duplicate` a live instance decided is asked about again this often
/// (held in the batch, not parked): until that instance records the event or dies.
const DUPLICATE_BUSY_WAIT: Duration = Duration::from_millis(500);

impl Dedup {
    pub fn new(store: Arc<dyn Store>, ledger: Option<Arc<Ledger>>, ttl: Duration, busy_recheck: Duration) -> Self {
        Self { store, ledger, ttl, busy_recheck }
    }
}

/// Of second records whose `duplicate` an instance decided and died before recording
/// (`(job id, record, decided at)`), those still to publish. Each job's reports partition is
/// read back once per call, from the offset checkpointed before the earliest decision: found
/// there, an event is recorded as out (its record read again is nothing from then on) and not
/// published again. Retried until the store and the broker answer: giving up would publish a
/// second `duplicate` or none.
pub async fn unpublished_duplicates(store: &dyn Store, ledger: Option<&Ledger>, unsure: Vec<(String, String, DateTime<Utc>)>) -> HashSet<(String, String)> {
    // No topic to read back (`sendgate dev`): its decider was this process, which is gone.
    let Some(ledger) = ledger else { return unsure.into_iter().map(|(j, r, _)| (j, r)).collect() };
    // Per partition: the earliest decision, and the records.
    type Wanted = (DateTime<Utc>, HashSet<(String, String)>);
    let mut by_partition: BTreeMap<i32, Wanted> = BTreeMap::new();
    for (job, record, at) in unsure {
        let e = by_partition.entry(ledger.partition_for(&job).await).or_insert((at, HashSet::new()));
        e.0 = e.0.min(at);
        e.1.insert((job, record));
    }
    let mut publish = HashSet::new();
    for (partition, (earliest, wanted)) in by_partition {
        let from = crate::retry::until_ok("offset_before", 1, || store.offset_before(partition, earliest - CHECKPOINT_SLACK)).await;
        let found = crate::retry::until_ok("read_back_duplicates", wanted.len(), || ledger.duplicates_in(partition, from, wanted.clone())).await;
        tracing::info!(partition, wanted = wanted.len(), in_topic = found.len(), "read back a dead instance's duplicate events");
        for (job, record) in &found {
            crate::retry::until_ok("duplicate_done", 1, || store.duplicate_done(job, record)).await;
        }
        publish.extend(wanted.into_iter().filter(|w| !found.contains(w)));
    }
    publish
}

#[async_trait]
impl Policy for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        let fresh: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].is_open() && !batch[i].claimed).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        // A cascade's job as read, kept with its claim for its later steps.
        let plans: Vec<Option<String>> = fresh.iter().map(|&i| batch[i].job.step.as_ref().map(|s| s.parent.to_json().to_string())).collect();
        let reqs: Vec<ClaimReq> = fresh
            .iter()
            .zip(&plans)
            .map(|(&i, plan)| ClaimReq { id: batch[i].job.id.as_str(), token: &batch[i].token, src: batch[i].src, plan: plan.as_deref() })
            .collect();
        let mut claims = self.store.claim_ids(&reqs, self.ttl).await?;
        // Second records whose `duplicate` a live instance decided and has not recorded: asked
        // about again here until it records it (nothing more to do) or dies (ours to end).
        loop {
            let busy: Vec<usize> = (0..claims.len()).filter(|&k| claims[k] == Claim::DuplicateBusy).collect();
            if busy.is_empty() {
                break;
            }
            tokio::time::sleep(DUPLICATE_BUSY_WAIT).await;
            let again: Vec<ClaimReq> = busy.iter().map(|&k| reqs[k]).collect();
            for (k, answer) in busy.into_iter().zip(self.store.claim_ids(&again, self.ttl).await?) {
                claims[k] = answer;
            }
        }
        drop(reqs);
        // A dead decider's duplicates: the topic read back for them all at once.
        let unsure: Vec<(String, String, DateTime<Utc>)> = fresh
            .iter()
            .zip(&claims)
            .filter_map(|(&i, c)| match c {
                Claim::DuplicateUnsure { decided_at } => Some((batch[i].job.id.clone(), batch[i].src.unwrap_or_default().to_owned(), *decided_at)),
                _ => None,
            })
            .collect();
        let publish = if unsure.is_empty() { HashSet::new() } else { unpublished_duplicates(self.store.as_ref(), self.ledger.as_deref(), unsure).await };
        let mut replayed = 0;
        for (&i, claim) in fresh.iter().zip(claims) {
            batch[i].verdict = match claim {
                Claim::New => continue,
                Claim::Replay => {
                    replayed += 1;
                    Verdict::Drop
                }
                Claim::Duplicate => Verdict::Stop { event: EventKind::Duplicate, reason: None, message: None },
                Claim::DuplicateUnsure { .. } => {
                    if publish.contains(&(batch[i].job.id.clone(), batch[i].src.unwrap_or_default().to_owned())) {
                        Verdict::Stop { event: EventKind::Duplicate, reason: None, message: None }
                    } else {
                        replayed += 1;
                        Verdict::Drop
                    }
                }
                Claim::DuplicateBusy => unreachable!("asked again above until it is something else"),
                Claim::Busy => Verdict::Recheck { until: now + chrono::Duration::from_std(self.busy_recheck).unwrap_or(chrono::Duration::seconds(10)) },
                Claim::Orphaned => {
                    metrics::counter!(telemetry::SUBMITS_AMBIGUOUS_TOTAL, "cause" => "instance_died").increment(1);
                    tracing::warn!(job_id = %batch[i].job.id, "job was being submitted by an instance that died; not resending");
                    Verdict::Stop {
                        event: EventKind::Unknown,
                        reason: None,
                        message: Some("the instance submitting this job died before recording the provider's answer; not resent".into()),
                    }
                }
            };
        }
        if replayed > 0 {
            metrics::counter!(telemetry::JOBS_REPLAYED_TOTAL).increment(replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Chain, Expiry, Schedule};
    use crate::report::Reason;
    use crate::store::MemoryStore;
    use chrono::TimeZone;

    fn job(id: &str, extra: &str) -> crate::job::Job {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        crate::job::parse(format!(r#"{{"id":"{id}","tenant":"t","channel":"sms","to":"+4915112345678","text":"x"{extra}}}"#).as_bytes(), now).unwrap()
    }

    #[tokio::test]
    async fn chain_orders_dedup_expiry_schedule() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let chain =
            Chain::new(vec![Box::new(Dedup::new(store, None, Duration::from_secs(3600), Duration::from_secs(10))), Box::new(Expiry), Box::new(Schedule)]);
        let jobs = [
            job("a", ""),
            job("a", ""),
            job("b", r#","expires_at":"2026-01-01T11:00:00Z""#),
            job("c", r#","send_at":"2026-01-01T13:00:00Z""#),
            job("c", r#","send_at":"2026-01-01T13:00:00Z""#),
        ];
        let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
        batch[4].claimed = true;
        chain.evaluate(&mut batch, now).await;
        let kinds: Vec<_> = batch.iter().map(|c| c.verdict.clone()).collect();
        assert_eq!(kinds[0], Verdict::Allow);
        assert!(matches!(kinds[1], Verdict::Stop { event: EventKind::Duplicate, .. }));
        assert!(matches!(kinds[2], Verdict::Stop { event: EventKind::Expired, .. }));
        let due = Utc.with_ymd_and_hms(2026, 1, 1, 13, 0, 0).unwrap();
        assert_eq!(kinds[3], Verdict::Defer { until: due, reason: Reason::Scheduled });
        // A job we already claimed skips dedup but is still checked by later policies.
        assert_eq!(kinds[4], Verdict::Defer { until: due, reason: Reason::Scheduled });
    }
}
