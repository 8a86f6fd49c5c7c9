//! Claims in memory: the same state machine as `scripts/claim.lua` and its siblings, with
//! every owner alive (one process holds them all), so a claim is never taken over here.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClaimState, MemoryStore, St};
use crate::store::{Claim, ClaimReq, Claims, Fenced, StoreError};

#[async_trait]
impl Claims for MemoryStore {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// One process: every owner is alive, so a claim is never taken over here.
    async fn claim_ids(&self, reqs: &[ClaimReq<'_>], ttl: Duration) -> Result<Vec<Claim>, StoreError> {
        let mut g = self.lock();
        g.sweep();
        let now = Instant::now();
        Ok(reqs
            .iter()
            .map(|r| match g.claims.get_mut(r.id).filter(|c| c.expires > now) {
                None => {
                    let c = ClaimState {
                        expires: now + ttl,
                        st: St::Claimed,
                        own: r.token.to_owned(),
                        src: r.src.map(str::to_owned),
                        duplicates: Vec::new(),
                        held: false,
                        plan: r.plan.map(str::to_owned),
                    };
                    g.claims.insert(r.id.to_owned(), c);
                    Claim::New
                }
                Some(c) if c.own == r.token => match c.st {
                    St::Claimed => Claim::New,
                    _ => Claim::Replay,
                },
                Some(_) if r.src.is_none() => Claim::Duplicate,
                // A second record; read again, it is nothing (see claim.lua).
                Some(c) if c.src.as_deref() != r.src => {
                    let src = r.src.unwrap_or_default();
                    match c.duplicates.iter().find(|(d, _)| d == src) {
                        // Its event is out and recorded.
                        Some((_, None)) => Claim::Replay,
                        Some((_, Some(t))) if t == r.token => Claim::Duplicate,
                        // Decided by another token of this process, which lives: not recorded yet.
                        Some((_, Some(_))) => Claim::DuplicateBusy,
                        None => {
                            c.duplicates.push((src.to_owned(), Some(r.token.to_owned())));
                            Claim::Duplicate
                        }
                    }
                }
                Some(c) if matches!(c.st, St::Claimed | St::Submitting) => Claim::Busy,
                Some(_) => Claim::Replay,
            })
            .collect())
    }

    async fn mark_submitting(&self, jobs: &[Fenced<'_>]) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        Ok(jobs
            .iter()
            .map(|(id, token)| match g.claims.get_mut(*id) {
                Some(c) if c.own == *token && matches!(c.st, St::Claimed | St::Submitting) => {
                    c.st = St::Submitting;
                    true
                }
                _ => false,
            })
            .collect())
    }

    /// One process: a final begun here is published here (the reporter retries until it is),
    /// so nothing needs to be kept for another instance to re-emit.
    async fn begin_finals(&self, finals: &[(&str, &str, &str)], _confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        Ok(finals
            .iter()
            .map(|(id, token, _)| match g.claims.get_mut(*id) {
                Some(c) if c.own == *token && !matches!(c.st, St::Final | St::Finishing) => {
                    c.st = St::Finishing;
                    true
                }
                _ => false,
            })
            .collect())
    }

    async fn duplicate_done(&self, id: &str, src: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        if let Some(d) = g.claims.get_mut(id).and_then(|c| c.duplicates.iter_mut().find(|(d, _)| d == src)) {
            d.1 = None;
        }
        Ok(())
    }
}
