//! Histories in memory: each job's reports, oldest first, with a TTL; recording one marks
//! the claim final (forgetting its receipt state) or lifts the hold on its receipts (`accepted`,
//! handing back a final decided meanwhile) or on its resumption (`deferred`), as
//! `scripts/record_events.lua` does.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ClaimState, Entry, Inner, MemoryStore, St};
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
            let sid = r.store_id();
            if r.ends_claim() {
                // Its receipt state is forgotten in the same step, as record_events.lua does.
                g.forget_sent(&sid);
                match g.claims.get_mut(&*sid) {
                    Some(c) => {
                        c.st = St::Final;
                        c.expires = c.expires.max(exp);
                    }
                    // A final for an id whose claim lapsed still marks it, as record_events.lua
                    // does: without it a second record of the id was taken for a new job.
                    None => {
                        let c = ClaimState { expires: exp, st: St::Final, own: String::new(), src: None, duplicates: Vec::new(), held: false, plan: None };
                        g.claims.insert(sid.clone().into_owned(), c);
                    }
                }
                if let Some((next, due)) = crate::cascade::next_step(r) {
                    g.park_next_step(&r.job_id, next, due, ttl);
                }
            } else if r.event == crate::report::EventKind::Accepted {
                if let Some(t) = g.sent.get_mut(&*sid) {
                    t.held = false;
                    // A receipt decided it meanwhile: its final goes out now, after `accepted`.
                    if let (Some((error_code, decided_at)), Some(outcome)) = (t.handed.clone(), t.decided) {
                        handed.push(HandedFinal { job: t.job.clone(), outcome, error_code, decided_at });
                    }
                }
            } else if r.event == crate::report::EventKind::Deferred {
                if let Some(c) = g.claims.get_mut(&*sid) {
                    c.held = false;
                }
            } else if let (crate::report::EventKind::Duplicate, Some(src)) = (r.event, &r.record) {
                // Its record read again is nothing from now on.
                if let Some(d) = g.claims.get_mut(&*sid).and_then(|c| c.duplicates.iter_mut().find(|(d, _)| d == src)) {
                    d.1 = None;
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

impl Inner {
    /// Parks the next step of a cascade whose step just ended, as record_events.lua does: its
    /// claim `deferred` and unheld, its entry due with the job as read (kept with the job's
    /// own claim) as payload. Nothing if it is parked already (a report recorded again).
    fn park_next_step(&mut self, job_id: &str, next: String, due: chrono::DateTime<chrono::Utc>, ttl: Duration) {
        if self.claims.contains_key(&next) {
            return;
        }
        let Some(plan) = self.claims.get(job_id).and_then(|c| c.plan.clone()) else {
            tracing::error!(job_id, step = %next, "no cascade plan kept for this job; its next step is not parked");
            return;
        };
        let expires = Instant::now() + (due - chrono::Utc::now()).to_std().unwrap_or_default() + ttl;
        if let Some(c) = self.claims.get_mut(job_id) {
            c.expires = c.expires.max(expires);
        }
        let c = ClaimState { expires, st: St::Deferred, own: String::new(), src: None, duplicates: Vec::new(), held: false, plan: None };
        self.claims.insert(next.clone(), c);
        self.due.insert((due, next.clone()));
        let e = Entry { due, id: next.clone(), payload: plan, src: None, lease: None, recheck: false };
        self.scheduled.insert(next, e);
    }
}
