//! `opt_out`: a `marketing` job to a recipient on its tenant's opt-out list for its channel
//! ends `suppressed`; `transactional` jobs (one-time codes, order status) skip the list
//! (CONTRACT.md, `priority`). One store call looks up the whole batch.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::job::Priority;
use crate::report::EventKind;
use crate::store::{OptOutEntry, Store, StoreError};

pub struct OptOut {
    store: Arc<dyn Store>,
}

impl OptOut {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Policy for OptOut {
    fn name(&self) -> &'static str {
        "opt_out"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], _now: DateTime<Utc>) -> Result<(), StoreError> {
        let asked: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].is_open() && batch[i].job.priority == Priority::Marketing).collect();
        if asked.is_empty() {
            return Ok(());
        }
        let entries: Vec<OptOutEntry> = asked.iter().map(|&i| (&*batch[i].job.tenant, batch[i].job.channel.as_str(), &*batch[i].job.to)).collect();
        let listed = self.store.opted_out(&entries).await?;
        for (&i, listed) in asked.iter().zip(listed) {
            if listed {
                let job = batch[i].job;
                // CONTRACT.md gives `suppressed` no `reason`; the message says which list.
                let message = format!("recipient is on tenant {}'s opt-out list for {}", job.tenant, job.channel.as_str());
                batch[i].verdict = Verdict::Stop { event: EventKind::Suppressed, reason: None, message: Some(message) };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, OptOuts};
    use chrono::TimeZone;

    fn job(id: &str, to: &str, extra: &str) -> crate::job::Job {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        crate::job::parse(format!(r#"{{"id":"{id}","tenant":"acme","channel":"sms","to":"{to}","text":"x"{extra}}}"#).as_bytes(), now).unwrap()
    }

    #[tokio::test]
    async fn marketing_to_a_listed_recipient_is_suppressed_and_transactional_goes() {
        let store = Arc::new(MemoryStore::new());
        store.add_opt_outs(&[("acme", "sms", "+4915100000001"), ("other", "sms", "+4915100000002")]).await.unwrap();
        let jobs = [
            job("m-listed", "+4915100000001", ""),
            job("t-listed", "+4915100000001", r#","priority":"transactional""#),
            // Another tenant's list does not apply.
            job("m-other-tenant", "+4915100000002", r#","priority":"marketing""#),
            job("m-clear", "+4915100000003", ""),
        ];
        let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        OptOut::new(store).evaluate(&mut batch, now).await.unwrap();
        let Verdict::Stop { event, reason, message } = &batch[0].verdict else { panic!("{:?}", batch[0].verdict) };
        assert_eq!((*event, *reason), (EventKind::Suppressed, None));
        assert_eq!(message.as_deref(), Some("recipient is on tenant acme's opt-out list for sms"));
        for c in &batch[1..] {
            assert_eq!(c.verdict, Verdict::Allow, "{}", c.job.id);
        }
    }
}
