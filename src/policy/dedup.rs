//! `dedup`: the first job with an id claims it; any later one gets a `duplicate` event and is
//! never sent. One store call claims the whole batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::report::EventKind;
use crate::store::{Store, StoreError};

pub struct Dedup {
    store: Arc<dyn Store>,
    /// How long an id is remembered: longer than any producer would retry a job.
    ttl: Duration,
}

impl Dedup {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self { store, ttl }
    }
}

#[async_trait]
impl Policy for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], _now: DateTime<Utc>) -> Result<(), StoreError> {
        let fresh: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].is_open() && !batch[i].resumed).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = fresh.iter().map(|&i| batch[i].job.id.as_str()).collect();
        let claimed = self.store.claim_ids(&ids, self.ttl).await?;
        for (&i, first) in fresh.iter().zip(claimed) {
            if !first {
                batch[i].verdict = Verdict::Stop { event: EventKind::Duplicate, reason: None, message: None };
            }
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
        let chain = Chain::new(vec![Box::new(Dedup::new(store, Duration::from_secs(3600))), Box::new(Expiry), Box::new(Schedule)]);
        let jobs = [
            job("a", ""),
            job("a", ""),
            job("b", r#","expires_at":"2026-01-01T11:00:00Z""#),
            job("c", r#","send_at":"2026-01-01T13:00:00Z""#),
            job("c", r#","send_at":"2026-01-01T13:00:00Z""#),
        ];
        let mut batch: Vec<Candidate> = jobs.iter().map(|j| Candidate { job: j, resumed: false, verdict: Verdict::Allow }).collect();
        batch[4].resumed = true;
        chain.evaluate(&mut batch, now).await.unwrap();
        let kinds: Vec<_> = batch.iter().map(|c| c.verdict.clone()).collect();
        assert_eq!(kinds[0], Verdict::Allow);
        assert!(matches!(kinds[1], Verdict::Stop { event: EventKind::Duplicate, .. }));
        assert!(matches!(kinds[2], Verdict::Stop { event: EventKind::Expired, .. }));
        let due = Utc.with_ymd_and_hms(2026, 1, 1, 13, 0, 0).unwrap();
        assert_eq!(kinds[3], Verdict::Defer { until: due, reason: Reason::Scheduled });
        // A resumed job skips dedup but is still checked by later policies.
        assert_eq!(kinds[4], Verdict::Defer { until: due, reason: Reason::Scheduled });
    }
}
