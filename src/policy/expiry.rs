//! `expiry`: a job whose validity ran out before it could be handed to a provider ends `expired`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::report::EventKind;
use crate::store::StoreError;

pub struct Expiry;

#[async_trait]
impl Policy for Expiry {
    fn name(&self) -> &'static str {
        "expiry"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        for c in batch.iter_mut().filter(|c| c.is_open()) {
            if c.job.expires_at.is_some_and(|e| e <= now) {
                c.verdict = Verdict::Stop { event: EventKind::Expired, reason: None, message: Some("validity ran out before sending".into()) };
            }
        }
        Ok(())
    }
}
