//! `schedule`: a job with `send_at` in the future is deferred until then (reason `scheduled`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::report::Reason;
use crate::store::StoreError;

pub struct Schedule;

#[async_trait]
impl Policy for Schedule {
    fn name(&self) -> &'static str {
        "schedule"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        for c in batch.iter_mut().filter(|c| c.is_open()) {
            if let Some(at) = c.job.send_at.filter(|at| *at > now) {
                c.verdict = Verdict::Defer { until: at, reason: Reason::Scheduled };
            }
        }
        Ok(())
    }
}
