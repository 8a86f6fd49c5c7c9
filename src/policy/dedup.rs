//! `dedup`: the first record with an id claims it; any later record with that id gets a
//! `duplicate` event and is never sent; the same record read again gets no event at all. One
//! store call claims the whole batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::report::EventKind;
use crate::store::{Claim, ClaimReq, Store, StoreError};
use crate::telemetry;

pub struct Dedup {
    store: Arc<dyn Store>,
    /// How long an id is remembered: longer than any producer would retry a job.
    ttl: Duration,
    /// How long to wait before looking again at a claim another instance may still hold.
    busy_recheck: Duration,
}

impl Dedup {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, busy_recheck: Duration) -> Self {
        Self { store, ttl, busy_recheck }
    }
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
        let claims = self.store.claim_ids(&reqs, self.ttl).await?;
        drop(reqs);
        let mut replayed = 0;
        for (&i, claim) in fresh.iter().zip(claims) {
            batch[i].verdict = match claim {
                Claim::New => continue,
                Claim::Replay => {
                    replayed += 1;
                    Verdict::Drop
                }
                Claim::Duplicate => Verdict::Stop { event: EventKind::Duplicate, reason: None, message: None },
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
        let chain = Chain::new(vec![Box::new(Dedup::new(store, Duration::from_secs(3600), Duration::from_secs(10))), Box::new(Expiry), Box::new(Schedule)]);
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
