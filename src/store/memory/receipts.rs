//! Receipt tracking in memory: message ids to jobs, part counts and receipt deadlines, as
//! `scripts/track_sent.lua`, `settle_part.lua` and `take_overdue.lua` keep them in Redis.
//! Read-back checkpoints are not kept: nothing outlives this process to read back for.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClaimState, FastMap, Inner, MemoryStore, St, Tracked};
use crate::store::{Overdue, PartOutcome, PartReceipt, Receipts, SentJob, Settled, StoreError};

impl Inner {
    /// One receipt: see [`Receipts::settle_part`].
    fn settle(&mut self, receipt: &PartReceipt<'_>, confirm_by: DateTime<Utc>) -> Settled {
        let (provider, message_id, outcome, code) = *receipt;
        let Some(job_id) = self.messages.get(provider).and_then(|m| m.get(message_id)).cloned() else { return Settled::Unmatched };
        if !self.sent.contains_key(&job_id) {
            return Settled::Unmatched;
        }
        self.messages.get_mut(provider).map(|m| m.remove(message_id));
        let t = self.sent.get_mut(&job_id).expect("looked up above");
        if t.decided.is_some() {
            return Settled::Pending;
        }
        // Delivered only when every part is; the first part that failed decides otherwise.
        if outcome == PartOutcome::Delivered {
            t.delivered_parts += 1;
            if t.delivered_parts < t.job.message_ids.len() {
                return Settled::Pending;
            }
        }
        t.decided = Some(outcome);
        let (old, job, held) = (t.deadline, t.job.clone(), t.held);
        if held {
            // Its `accepted` is not recorded yet: published after it, by its recorder.
            t.held = false;
            t.handed = Some((code.map(str::to_owned), Utc::now()));
        }
        t.deadline = confirm_by;
        self.deadlines.remove(&(old, job_id.clone()));
        self.deadlines.insert((confirm_by, job_id));
        if held {
            return Settled::HandedOff;
        }
        Settled::Final { job: Box::new(job), outcome }
    }

    pub(super) fn forget_sent(&mut self, job_id: &str) -> Option<Tracked> {
        let t = self.sent.remove(job_id)?;
        if let Some(m) = self.messages.get_mut(&t.job.provider) {
            for id in &t.job.message_ids {
                m.remove(id);
            }
        }
        self.deadlines.remove(&(t.deadline, job_id.to_owned()));
        Some(t)
    }
}

#[async_trait]
impl Receipts for MemoryStore {
    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for (job, deadline, token) in jobs {
            // The claim is kept `ttl` past the receipt deadline, as track_sent.lua keeps it: a
            // claim that lapsed while the receipt was still due (a dedup TTL shorter than the
            // receipt timeout) let a second record of the id be sent again, with a second final.
            let keep = Instant::now() + (*deadline - Utc::now()).to_std().unwrap_or_default() + ttl;
            match g.claims.get_mut(&job.job_id) {
                Some(c) if c.own == *token && matches!(c.st, St::Claimed | St::Submitting) => {
                    c.st = St::Sent;
                    c.expires = c.expires.max(keep);
                }
                // No claim at all (it expired): nobody else can hold it. Claimed again here, as
                // in Redis, so that the id stays seen.
                None => {
                    let c = ClaimState { expires: keep, st: St::Sent, own: token.clone(), src: None, duplicates: Vec::new(), held: false, plan: None };
                    g.claims.insert(job.job_id.clone(), c);
                }
                Some(_) => {
                    out.push(false);
                    continue;
                }
            }
            if !g.messages.contains_key(&job.provider) {
                g.messages.insert(job.provider.clone(), FastMap::default());
            }
            let m = g.messages.get_mut(&job.provider).expect("inserted above");
            for id in &job.message_ids {
                m.insert(id.clone(), job.job_id.clone());
            }
            g.deadlines.insert((*deadline, job.job_id.clone()));
            let t = Tracked { job: job.clone(), deadline: *deadline, delivered_parts: 0, decided: None, held: true, handed: None };
            g.sent.insert(job.job_id.clone(), t);
            out.push(true);
        }
        Ok(out)
    }

    async fn settle_parts(&self, receipts: &[PartReceipt<'_>], confirm_by: DateTime<Utc>) -> Result<Vec<Settled>, StoreError> {
        let mut g = self.lock();
        Ok(receipts.iter().map(|r| g.settle(r, confirm_by)).collect())
    }

    /// One process: a final decided here is being published here (the reporter retries until
    /// it is), so a decided job is leased again rather than handed out a second time; so is an
    /// undecided one whose `accepted` is not recorded yet (its tracker, this process, is still
    /// publishing it: an `unknown` decided now could be published before it).
    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError> {
        let mut g = self.lock();
        let due: Vec<(DateTime<Utc>, String)> = g.deadlines.iter().take_while(|(d, _)| *d <= now).take(limit).cloned().collect();
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            g.deadlines.remove(&key);
            if let Some(t) = g.sent.get_mut(&key.1) {
                t.deadline = lease_until;
                if t.decided.is_none() && !t.held {
                    // Decided here: a receipt arriving while the `unknown` is out makes no second final.
                    t.decided = Some(PartOutcome::Unknown);
                    out.push(Overdue { job_id: key.1.clone(), sent: Some(t.job.clone()), outcome: None, report: None, decided_at: None });
                }
                g.deadlines.insert((lease_until, key.1));
            }
        }
        Ok(out)
    }

    fn awaiting_receipts(&self) -> Option<usize> {
        Some(self.lock().sent.len())
    }

    async fn keep_for_read(&self, jobs: &[SentJob], ttl: Duration) -> Result<(), StoreError> {
        let mut g = self.lock();
        let now = Instant::now();
        while g.read_expiry.front().is_some_and(|(at, _)| *at <= now) {
            let (at, key) = g.read_expiry.pop_front().expect("checked");
            // Kept again since: that later expiry stands.
            if g.reads.get(&key).is_some_and(|(until, _)| *until <= at) {
                g.reads.remove(&key);
            }
        }
        for job in jobs {
            for id in &job.message_ids {
                let key = read_key(&job.provider, id);
                g.read_expiry.push_back((now + ttl, key.clone()));
                g.reads.insert(key, (now + ttl, job.clone()));
            }
        }
        Ok(())
    }

    async fn take_for_read(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<SentJob>>, StoreError> {
        let mut g = self.lock();
        let now = Instant::now();
        // An expired entry lingers until the next keep purges it; it is not handed out.
        Ok(keys.iter().map(|(provider, id)| g.reads.remove(&read_key(provider, id)).filter(|(until, _)| *until > now).map(|(_, job)| job)).collect())
    }
}

fn read_key(provider: &str, message_id: &str) -> String {
    format!("{provider}\n{message_id}")
}
