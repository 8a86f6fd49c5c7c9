//! Histories in memory: each job's reports, oldest first, with a TTL; recording one marks
//! the claim final (forgetting its receipt state) or lifts the hold on its receipts (`accepted`,
//! handing back a final decided meanwhile) or on its resumption (`deferred`), as
//! `scripts/record_events.lua` does.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ClaimState, MemoryStore, St};
use crate::report::Report;
use crate::store::{HandedFinal, History, StoreError};

#[async_trait]
impl History for MemoryStore {
    async fn record_events(&self, reports: &[Report], ttl: Duration) -> Result<Vec<HandedFinal>, StoreError> {
        let mut g = self.lock();
        let mut handed = Vec::new();
        g.sweep();
        let exp = Instant::now() + ttl;
        for r in reports {
            if r.is_final {
                // Its receipt state is forgotten in the same step, as record_events.lua does.
                g.forget_sent(&r.job_id);
                match g.claims.get_mut(r.job_id.as_str()) {
                    Some(c) => {
                        c.st = St::Final;
                        c.expires = c.expires.max(exp);
                    }
                    // A final for an id whose claim lapsed still marks it, as record_events.lua
                    // does: without it a second record of the id was taken for a new job.
                    None => {
                        let c = ClaimState { expires: exp, st: St::Final, own: String::new(), src: None, duplicates: Vec::new(), held: false };
                        g.claims.insert(r.job_id.clone(), c);
                    }
                }
            } else if r.event == crate::report::EventKind::Accepted {
                if let Some(t) = g.sent.get_mut(r.job_id.as_str()) {
                    t.held = false;
                    // A receipt decided it meanwhile: its final goes out now, after `accepted`.
                    if let (Some((error_code, decided_at)), Some(outcome)) = (t.handed.clone(), t.decided) {
                        handed.push(HandedFinal { job: t.job.clone(), outcome, error_code, decided_at });
                    }
                }
            } else if r.event == crate::report::EventKind::Deferred {
                if let Some(c) = g.claims.get_mut(r.job_id.as_str()) {
                    c.held = false;
                }
            }
            // Looked up by &str first: most reports belong to a job already in the history.
            match g.history.get_mut(r.job_id.as_str()) {
                Some(e) => {
                    e.0 = exp;
                    e.1.push(r.clone());
                }
                None => {
                    // Accepted, then final: two reports is the usual history.
                    let mut v = Vec::with_capacity(2);
                    v.push(r.clone());
                    g.history.insert(r.job_id.clone(), (exp, v));
                }
            }
        }
        Ok(handed)
    }

    async fn events(&self, job_id: &str) -> Result<Vec<Report>, StoreError> {
        let g = self.lock();
        Ok(g.history.get(job_id).filter(|(exp, _)| *exp > Instant::now()).map(|(_, v)| v.clone()).unwrap_or_default())
    }
}
