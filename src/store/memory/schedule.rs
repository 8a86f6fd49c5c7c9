//! The scheduled set in memory: entries by member, a due index beside them, and leases, as
//! `scripts/schedule.lua`, `claim_due.lua` and `finish_scheduled.lua` keep them in Redis.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClaimState, Entry, MemoryStore, St};
use crate::store::{ClaimedJob, DueKind, Schedule, ScheduledJob, StoreError, HELD_RETRY};

#[async_trait]
impl Schedule for MemoryStore {
    async fn schedule(&self, jobs: &[ScheduledJob], claim_ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            if !j.recheck {
                let keep = Instant::now() + (j.due - Utc::now()).to_std().unwrap_or_default() + claim_ttl;
                match g.claims.get_mut(&j.id) {
                    Some(c) if c.own == j.token && matches!(c.st, St::Claimed | St::Submitting) => {
                        c.st = St::Deferred;
                        c.held = true;
                        c.expires = c.expires.max(keep);
                    }
                    // Parked under this token already: the same call run again (schedule.lua).
                    Some(c) if c.own == j.token && c.st == St::Deferred => c.expires = c.expires.max(keep),
                    Some(_) => {
                        out.push(false);
                        continue;
                    }
                    None => {
                        let c = ClaimState {
                            expires: keep,
                            st: St::Deferred,
                            own: j.token.clone(),
                            src: j.src.clone(),
                            duplicates: Vec::new(),
                            held: true,
                            plan: None,
                        };
                        g.claims.insert(j.id.clone(), c);
                    }
                }
            }
            let entry = j.entry();
            if let Some(old) = g.scheduled.remove(&entry) {
                g.due.remove(&(old.due, entry.clone()));
            }
            g.due.insert((j.due, entry.clone()));
            let e = Entry { due: j.due, id: j.id.clone(), payload: j.payload.clone(), src: j.src.clone(), lease: None, recheck: j.recheck };
            g.scheduled.insert(entry, e);
            out.push(true);
        }
        Ok(out)
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration, claim_ttl: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        let mut g = self.lock();
        let due: Vec<_> = g.due.iter().take_while(|(d, _)| *d <= now).take(limit).cloned().collect();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            g.due.remove(&key);
            g.next_lease += 1;
            let lease = g.next_lease;
            let entry = key.1;
            let Some(e) = g.scheduled.get(&entry) else { continue };
            let (id, recheck) = (e.id.clone(), e.recheck);
            let mut token = None;
            let kind = if recheck {
                DueKind::Recheck
            } else {
                let tok = format!("{}/s{lease}", self.owner);
                let st = g.claims.get(&id).map(|c| (c.st, c.held));
                match st {
                    // Its `deferred` is still being published by its parker (this process, alive):
                    // looked at again shortly, unleased (see schedule.lua / claim_due.lua).
                    Some((St::Deferred, true)) => {
                        let again = now + chrono::Duration::from_std(HELD_RETRY).unwrap_or(chrono::Duration::seconds(1));
                        let e = g.scheduled.get_mut(&entry).expect("looked up above");
                        e.due = again;
                        g.due.insert((again, entry));
                        continue;
                    }
                    None | Some((St::Deferred, false)) => {
                        let expires = Instant::now() + claim_ttl;
                        let src = e.src.clone();
                        let c = g.claims.entry(id.clone()).or_insert(ClaimState {
                            expires,
                            st: St::Claimed,
                            own: String::new(),
                            src,
                            duplicates: Vec::new(),
                            held: false,
                            plan: None,
                        });
                        c.st = St::Claimed;
                        c.held = false;
                        c.own = tok.clone();
                        token = Some(tok);
                        DueKind::Resumed
                    }
                    // A claimer (alive: this process) is on it: back when this lease lapses.
                    Some((St::Claimed | St::Submitting, _)) => {
                        let e = g.scheduled.get_mut(&entry).expect("looked up above");
                        e.lease = Some(lease);
                        e.due = lease_until;
                        g.due.insert((lease_until, entry));
                        continue;
                    }
                    Some((St::Sent | St::Final | St::Finishing, _)) => {
                        g.scheduled.remove(&entry);
                        continue;
                    }
                }
            };
            let e = g.scheduled.get_mut(&entry).expect("looked up above");
            e.lease = Some(lease);
            e.due = lease_until;
            out.push(ClaimedJob { entry: entry.clone(), payload: e.payload.clone(), lease, token, src: e.src.clone(), kind });
            g.due.insert((lease_until, entry));
        }
        Ok(out)
    }

    async fn cancel_steps(&self, steps: &[(&str, &str)], _confirm_by: DateTime<Utc>) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(steps.len());
        for (id, _) in steps {
            let parked = g.claims.get(*id).is_some_and(|c| c.st == St::Deferred) && g.scheduled.get(*id).is_some_and(|e| e.lease.is_none());
            if parked {
                let e = g.scheduled.remove(*id).expect("checked above");
                g.due.remove(&(e.due, id.to_string()));
                g.claims.get_mut(*id).expect("checked above").st = St::Finishing;
            }
            out.push(parked);
        }
        Ok(out)
    }

    async fn finish_scheduled(&self, done: &[(String, u64)]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for (entry, lease) in done {
            if g.scheduled.get(entry).is_some_and(|e| e.lease == Some(*lease)) {
                let e = g.scheduled.remove(entry).expect("checked above");
                g.due.remove(&(e.due, entry.clone()));
            }
        }
        Ok(())
    }
}
