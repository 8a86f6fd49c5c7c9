//! The in-memory store: `sendgate dev` and unit tests. One process, nothing survives it.
//!
//! TTLs are enforced lazily (on read) plus a sweep on writes, so memory stays bounded by what
//! is live, not by everything ever seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// foldhash instead of SipHash: `sendgate dev` hashes several job ids per job, and SipHash was
/// a visible share of its CPU. Seeded per process, so keys cannot be chosen to collide.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    campaign_field, gcra, Claim, ClaimReq, ClaimedJob, DueKind, Fenced, OptOutEntry, Overdue, OptOutPage, PartOutcome, RateGrant, RateLease, ScheduledJob, SentJob, Settled,
    Store, StoreError,
};
use crate::report::Report;

mod whatsapp;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// `local/{incarnation}`: tokens minted for this store start with it.
    owner: String,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self { inner: Mutex::default(), owner: format!("local/{}", rand::random::<u32>()) }
    }
}

/// Where a claimed job stands (the Redis hash's `st`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Claimed,
    Submitting,
    Deferred,
    Finishing,
    Sent,
    Final,
}

/// One job id's claim: the same state machine as the Redis hash, with every owner alive
/// (one process holds them all).
struct ClaimState {
    expires: Instant,
    st: St,
    own: String,
    src: Option<String>,
    /// Second records of this id seen so far (their sources).
    duplicates: Vec<String>,
}

#[derive(Default)]
struct Inner {
    claims: FastMap<String, ClaimState>,
    scheduled: FastMap<String, Entry>,
    /// (due, id): the due index of `scheduled`.
    due: BTreeSet<(DateTime<Utc>, String)>,
    next_lease: u64,
    /// provider → message id → job id; nested so that a receipt's lookup allocates nothing.
    messages: FastMap<String, FastMap<String, String>>,
    sent: FastMap<String, Tracked>,
    /// (deadline, job id).
    deadlines: BTreeSet<(DateTime<Utc>, String)>,
    history: FastMap<String, (Instant, Vec<Report>)>,
    last_sweep: Option<Instant>,
    /// tenant → channel → recipients, ordered so that a list pages by recipient; nested so
    /// that a lookup on the hot path allocates nothing.
    opt_outs: HashMap<String, HashMap<String, BTreeSet<String>>>,
    whatsapp: whatsapp::WhatsappState,
    /// Rate limit → its TAT, µs since the epoch.
    rate_tats: HashMap<String, u64>,
    /// `campaign_field` → speed set at runtime.
    campaign_rates: HashMap<String, f64>,
}

struct Entry {
    due: DateTime<Utc>,
    id: String,
    payload: String,
    src: Option<String>,
    lease: Option<u64>,
    recheck: bool,
}

struct Tracked {
    job: SentJob,
    deadline: DateTime<Utc>,
    delivered_parts: usize,
    /// Decided by a receipt, waiting for `finish_sent`.
    decided: Option<PartOutcome>,
    /// Its `accepted` report is not recorded yet: a receipt that would end it waits.
    held: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Drops expired claims and histories at most once a second.
    fn sweep(&mut self) {
        let now = Instant::now();
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = Some(now);
        self.claims.retain(|_, c| c.expires > now);
        self.history.retain(|_, (exp, _)| *exp > now);
    }


    /// One receipt: see [`Store::settle_part`].
    fn settle(&mut self, provider: &str, message_id: &str, outcome: PartOutcome, confirm_by: DateTime<Utc>) -> Settled {
        let Some(job_id) = self.messages.get(provider).and_then(|m| m.get(message_id)).cloned() else { return Settled::Unmatched };
        let Some(t) = self.sent.get_mut(&job_id) else { return Settled::Unmatched };
        let last = outcome != PartOutcome::Delivered || t.delivered_parts + 1 >= t.job.message_ids.len();
        if t.decided.is_none() && last && t.held {
            // Left as it was (the mapping too): the receipt comes again once `accepted` is out.
            return Settled::Held;
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
        let (old, job) = (t.deadline, t.job.clone());
        t.deadline = confirm_by;
        self.deadlines.remove(&(old, job_id.clone()));
        self.deadlines.insert((confirm_by, job_id));
        Settled::Final { job, outcome }
    }

    fn opt_out_list(&self, tenant: &str, channel: &str) -> Option<&BTreeSet<String>> {
        self.opt_outs.get(tenant)?.get(channel)
    }

    fn forget_sent(&mut self, job_id: &str) -> Option<Tracked> {
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
impl Store for MemoryStore {
    fn owner(&self) -> &str {
        &self.owner
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
                    let c = ClaimState { expires: now + ttl, st: St::Claimed, own: r.token.to_owned(), src: r.src.map(str::to_owned), duplicates: Vec::new() };
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
                    if c.duplicates.iter().any(|d| d == src) {
                        Claim::Replay
                    } else {
                        c.duplicates.push(src.to_owned());
                        Claim::Duplicate
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

    async fn schedule(&self, jobs: &[ScheduledJob], claim_ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            if !j.recheck {
                let keep = Instant::now() + (j.due - Utc::now()).to_std().unwrap_or_default() + claim_ttl;
                match g.claims.get_mut(&j.id) {
                    Some(c) if c.own == j.token && matches!(c.st, St::Claimed | St::Submitting) => {
                        c.st = St::Deferred;
                        c.expires = c.expires.max(keep);
                    }
                    Some(_) => {
                        out.push(false);
                        continue;
                    }
                    None => {
                        let c = ClaimState { expires: keep, st: St::Deferred, own: j.token.clone(), src: j.src.clone(), duplicates: Vec::new() };
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
                let st = g.claims.get(&id).map(|c| c.st);
                match st {
                    None | Some(St::Deferred) => {
                        let expires = Instant::now() + claim_ttl;
                        let src = e.src.clone();
                        let c = g.claims.entry(id.clone()).or_insert(ClaimState { expires, st: St::Claimed, own: String::new(), src, duplicates: Vec::new() });
                        c.st = St::Claimed;
                        c.own = tok.clone();
                        token = Some(tok);
                        DueKind::Resumed
                    }
                    // A claimer (alive: this process) is on it: back when this lease lapses.
                    Some(St::Claimed | St::Submitting) => {
                        let e = g.scheduled.get_mut(&entry).expect("looked up above");
                        e.lease = Some(lease);
                        e.due = lease_until;
                        g.due.insert((lease_until, entry));
                        continue;
                    }
                    Some(St::Sent | St::Final | St::Finishing) => {
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

    async fn track_sent(&self, jobs: &[(SentJob, DateTime<Utc>, String)], _ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for (job, deadline, token) in jobs {
            match g.claims.get_mut(&job.job_id) {
                Some(c) if c.own == *token && matches!(c.st, St::Claimed | St::Submitting) => c.st = St::Sent,
                // No claim at all (it expired): nobody else can hold it.
                None => {}
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
            let t = Tracked { job: job.clone(), deadline: *deadline, delivered_parts: 0, decided: None, held: true };
            g.sent.insert(job.job_id.clone(), t);
            out.push(true);
        }
        Ok(out)
    }

    async fn settle_parts(
        &self,
        receipts: &[(&str, &str, PartOutcome)],
        confirm_by: DateTime<Utc>,
    ) -> Result<Vec<Settled>, StoreError> {
        let mut g = self.lock();
        Ok(receipts.iter().map(|(p, m, o)| g.settle(p, m, *o, confirm_by)).collect())
    }

    /// One process: a final decided here is being published here (the reporter retries until
    /// it is), so a decided job is leased again rather than handed out a second time.
    async fn take_overdue(&self, now: DateTime<Utc>, limit: usize, lease_until: DateTime<Utc>) -> Result<Vec<Overdue>, StoreError> {
        let mut g = self.lock();
        let due: Vec<(DateTime<Utc>, String)> = g.deadlines.iter().take_while(|(d, _)| *d <= now).take(limit).cloned().collect();
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            g.deadlines.remove(&key);
            if let Some(t) = g.sent.get_mut(&key.1) {
                t.deadline = lease_until;
                if t.decided.is_none() {
                    // Decided here: a receipt arriving while the `unknown` is out makes no second final.
                    t.decided = Some(PartOutcome::Unknown);
                    out.push(Overdue { job_id: key.1.clone(), sent: Some(t.job.clone()), outcome: None, report: None, decided_at: None });
                }
                g.deadlines.insert((lease_until, key.1));
            }
        }
        Ok(out)
    }

    async fn finish_sent(&self, job_ids: &[String]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for id in job_ids {
            g.forget_sent(id);
        }
        Ok(())
    }

    async fn record_events(&self, reports: &[Report], ttl: Duration) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.sweep();
        let exp = Instant::now() + ttl;
        for r in reports {
            if r.is_final {
                if let Some(c) = g.claims.get_mut(r.job_id.as_str()) {
                    c.st = St::Final;
                    c.expires = c.expires.max(exp);
                }
            } else if r.event == crate::report::EventKind::Accepted {
                if let Some(t) = g.sent.get_mut(r.job_id.as_str()) {
                    t.held = false;
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
        Ok(())
    }

    async fn events(&self, job_id: &str) -> Result<Vec<Report>, StoreError> {
        let g = self.lock();
        Ok(g.history.get(job_id).filter(|(exp, _)| *exp > Instant::now()).map(|(_, v)| v.clone()).unwrap_or_default())
    }

    async fn opted_out(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        let g = self.lock();
        Ok(entries.iter().map(|(t, c, r)| g.opt_out_list(t, c).is_some_and(|list| list.contains(*r))).collect())
    }

    async fn add_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        Ok(entries
            .iter()
            .map(|(t, c, r)| g.opt_outs.entry((*t).to_owned()).or_default().entry((*c).to_owned()).or_default().insert((*r).to_owned()))
            .collect())
    }

    async fn remove_opt_outs(&self, entries: &[OptOutEntry<'_>]) -> Result<Vec<bool>, StoreError> {
        let mut g = self.lock();
        Ok(entries.iter().map(|(t, c, r)| g.opt_outs.get_mut(*t).and_then(|l| l.get_mut(*c)).is_some_and(|list| list.remove(*r))).collect())
    }

    async fn list_opt_outs(&self, tenant: &str, channel: &str, after: Option<&str>, limit: usize) -> Result<OptOutPage, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let g = self.lock();
        let Some(list) = g.opt_out_list(tenant, channel) else { return Ok(OptOutPage::default()) };
        let from = after.map_or(Unbounded, |a| Excluded(a.to_owned()));
        let recipients: Vec<String> = list.range((from, Unbounded)).take(limit.saturating_add(1)).cloned().collect();
        Ok(OptOutPage::from_overfetch(recipients, limit))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn awaiting_receipts(&self) -> Option<usize> {
        Some(self.lock().sent.len())
    }

    async fn whatsapp_admit(
        &self,
        portfolios: &[super::whatsapp::Portfolio<'_>],
        attempts: &[super::whatsapp::Attempt<'_>],
        now: DateTime<Utc>,
    ) -> Result<super::whatsapp::Admission, StoreError> {
        Ok(self.lock().whatsapp.admit(portfolios, attempts, now))
    }

    async fn record_inbound_contacts(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.lock().whatsapp.record_inbound(contacts);
        Ok(())
    }

    async fn whatsapp_usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Result<super::whatsapp::Usage, StoreError> {
        Ok(self.lock().whatsapp.usage(portfolio, window, now))
    }

    async fn rate_lease(&self, reqs: &[RateLease], now: DateTime<Utc>) -> Result<Vec<RateGrant>, StoreError> {
        let now_us = now.timestamp_micros().max(0) as u64;
        let mut g = self.lock();
        // A TAT in the past means the same as none: forget those once there are many.
        if g.rate_tats.len() > 10_000 {
            g.rate_tats.retain(|_, tat| *tat > now_us);
        }
        Ok(reqs
            .iter()
            .map(|r| {
                let (grant, tat) = gcra::lease(g.rate_tats.get(&r.limit).copied(), now_us, r);
                g.rate_tats.insert(r.limit.clone(), tat);
                grant
            })
            .collect())
    }

    async fn set_campaign_rate(&self, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), StoreError> {
        let mut g = self.lock();
        let field = campaign_field(tenant, campaign);
        match rate {
            Some(r) => g.campaign_rates.insert(field, r),
            None => g.campaign_rates.remove(&field),
        };
        Ok(())
    }

    async fn campaign_rates(&self, campaigns: &[(&str, &str)]) -> Result<Vec<Option<f64>>, StoreError> {
        let g = self.lock();
        let get = |t: Option<&str>, c: &str| g.campaign_rates.get(&campaign_field(t, c)).copied();
        Ok(campaigns.iter().map(|(t, c)| get(Some(t), c).or_else(|| get(None, c))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn sent(id: &str, parts: &[&str]) -> SentJob {
        SentJob {
            job_id: id.into(),
            tenant: "t".into(),
            channel: "sms".into(),
            to: "+4915112345678".into(),
            meta: Default::default(),
            provider: "p".into(),
            message_ids: parts.iter().map(|s| s.to_string()).collect(),
            segments: parts.len() as u32,
        }
    }

    fn req<'a>(id: &'a str, token: &'a str, src: Option<&'a str>) -> ClaimReq<'a> {
        ClaimReq { id, token, src }
    }

    #[tokio::test]
    async fn claims_are_first_come_and_a_record_read_again_is_a_replay() {
        let s = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        let got = s.claim_ids(&[req("a", "t1", None), req("b", "t2", Some("p/0/1")), req("a", "t3", None)], ttl).await.unwrap();
        assert_eq!(got, [Claim::New, Claim::New, Claim::Duplicate]);
        // The same token again (a retried step): the same answer, not a duplicate.
        assert_eq!(s.claim_ids(&[req("a", "t1", None)], ttl).await.unwrap(), [Claim::New]);
        // The same record again while its claim is in flight: wait; once parked: nothing.
        assert_eq!(s.claim_ids(&[req("b", "t4", Some("p/0/1"))], ttl).await.unwrap(), [Claim::Busy]);
        assert_eq!(s.claim_ids(&[req("b", "t5", Some("p/0/2")), req("c", "t6", None)], ttl).await.unwrap(), [Claim::Duplicate, Claim::New]);
        let parked = ScheduledJob { id: "b".into(), token: "t2".into(), src: Some("p/0/1".into()), due: t(10), payload: "{}".into(), recheck: false };
        assert_eq!(s.schedule(&[parked], ttl).await.unwrap(), [true]);
        assert_eq!(s.claim_ids(&[req("b", "t7", Some("p/0/1"))], ttl).await.unwrap(), [Claim::Replay]);
    }

    #[tokio::test]
    async fn every_step_is_fenced_by_the_claim_token() {
        let s = MemoryStore::new();
        let ttl = Duration::from_secs(60);
        s.claim_ids(&[req("a", "mine", None)], ttl).await.unwrap();
        assert_eq!(s.mark_submitting(&[("a", "other"), ("nope", "mine")]).await.unwrap(), [false, false]);
        assert_eq!(s.begin_finals(&[("a", "other", "{}")], t(30)).await.unwrap(), [false]);
        assert_eq!(s.mark_submitting(&[("a", "mine")]).await.unwrap(), [true]);
        let tracked = s.track_sent(&[(sent("a", &["1"]), t(100), "other".into())], ttl).await.unwrap();
        assert_eq!(tracked, [false]);
        assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Unmatched);
        assert_eq!(s.track_sent(&[(sent("a", &["1"]), t(100), "mine".into())], ttl).await.unwrap(), [true]);
        // Until its `accepted` is recorded, a receipt that would end it waits, untouched.
        assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Held);
        let acc = Report::from_parts("a", "t", "sms", "+4915112345678", &Default::default(), crate::report::EventKind::Accepted, t(0));
        s.record_events(&[acc], ttl).await.unwrap();
        assert!(matches!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Final { .. }));
    }

    fn accepted(id: &str) -> Report {
        Report::from_parts(id, "t", "sms", "+4915112345678", &Default::default(), crate::report::EventKind::Accepted, t(0))
    }

    #[tokio::test]
    async fn due_jobs_are_leased_and_wait_while_their_claimer_is_on_them() {
        let s = MemoryStore::new();
        let (lease, ttl) = (Duration::from_secs(30), Duration::from_secs(60));
        let parked = |token: &str, due| ScheduledJob { id: "a".into(), token: token.into(), src: None, due, payload: "{}".into(), recheck: false };
        s.claim_ids(&[ClaimReq { id: "a", token: "x/1/1", src: None }], ttl).await.unwrap();
        assert_eq!(s.schedule(&[parked("x/1/1", t(10))], ttl).await.unwrap(), [true]);
        assert_eq!(s.schedule(&[parked("not-the-owner", t(10))], ttl).await.unwrap(), [false], "fenced");
        assert!(s.claim_due(t(9), 10, lease, ttl).await.unwrap().is_empty());
        let c = s.claim_due(t(10), 10, lease, ttl).await.unwrap();
        assert_eq!((c.len(), c[0].kind), (1, DueKind::Resumed));
        let token = c[0].token.clone().expect("resumed under a new token");
        assert_eq!(s.mark_submitting(&[("a", "x/1/1")]).await.unwrap(), [false], "the parker is fenced off");
        assert!(s.claim_due(t(20), 10, lease, ttl).await.unwrap().is_empty(), "leased");
        // Lapsed, but its claimer (this process: alive) is still on it: leased again, not run.
        assert!(s.claim_due(t(41), 10, lease, ttl).await.unwrap().is_empty());
        // The claimer parks it again (a retry): the new entry runs when due.
        assert_eq!(s.schedule(&[parked(&token, t(50))], ttl).await.unwrap(), [true]);
        s.finish_scheduled(&[("a".into(), c[0].lease)]).await.unwrap();
        let again = s.claim_due(t(50), 10, lease, ttl).await.unwrap();
        assert_eq!(again.len(), 1, "the stale lease did not remove the newer entry");
        // Once its job is final, a lapsed entry is dropped instead of run.
        let fin = Report::from_parts("a", "t", "sms", "+4915112345678", &Default::default(), crate::report::EventKind::Rejected, t(0));
        s.record_events(&[fin], ttl).await.unwrap();
        assert!(s.claim_due(t(500), 10, lease, ttl).await.unwrap().is_empty());
        assert!(s.lock().scheduled.is_empty());
    }

    #[tokio::test]
    async fn multipart_is_final_once_every_part_is_delivered_or_one_fails() {
        let s = MemoryStore::new();
        s.track_sent(&[(sent("j1", &["1", "2"]), t(100), "x".into()), (sent("j2", &["3", "4"]), t(100), "x".into())], Duration::from_secs(60)).await.unwrap();
        s.record_events(&[accepted("j1"), accepted("j2")], Duration::from_secs(60)).await.unwrap();
        assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
        assert!(matches!(s.settle_part("p", "2", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Final { outcome: PartOutcome::Delivered, .. }));
        assert!(matches!(s.settle_part("p", "3", PartOutcome::Undelivered, t(30)).await.unwrap(), Settled::Final { outcome: PartOutcome::Undelivered, .. }));
        // j2 is decided: its other part changes nothing.
        assert_eq!(s.settle_part("p", "4", PartOutcome::Delivered, t(30)).await.unwrap(), Settled::Pending);
        // Not confirmed by t(30): still this process's to publish (it is alive), not handed out.
        assert!(s.take_overdue(t(30), 10, t(60)).await.unwrap().is_empty());
        s.finish_sent(&["j1".into(), "j2".into()]).await.unwrap();
        assert!(s.take_overdue(t(200), 10, t(300)).await.unwrap().is_empty());
        assert_eq!(s.awaiting_receipts(), Some(0));
    }

    #[tokio::test]
    async fn opt_out_lists_are_per_tenant_and_channel_and_page_in_order() {
        let s = MemoryStore::new();
        let added = s.add_opt_outs(&[("a", "sms", "+2"), ("a", "sms", "+1"), ("a", "sms", "+2"), ("b", "sms", "+1")]).await.unwrap();
        assert_eq!(added, [true, true, false, true]);
        let asked = [("a", "sms", "+1"), ("a", "whatsapp", "+1"), ("b", "sms", "+2"), ("c", "sms", "+1")];
        assert_eq!(s.opted_out(&asked).await.unwrap(), [true, false, false, false]);
        s.add_opt_outs(&[("a", "sms", "+3")]).await.unwrap();
        let p1 = s.list_opt_outs("a", "sms", None, 2).await.unwrap();
        assert_eq!((p1.recipients.as_slice(), p1.next_cursor.as_deref()), (&["+1".to_string(), "+2".to_string()][..], Some("+2")));
        let p2 = s.list_opt_outs("a", "sms", p1.next_cursor.as_deref(), 2).await.unwrap();
        assert_eq!((p2.recipients, p2.next_cursor), (vec!["+3".to_string()], None));
        assert_eq!(s.remove_opt_outs(&[("a", "sms", "+1"), ("a", "sms", "+9")]).await.unwrap(), [true, false]);
        assert_eq!(s.opted_out(&[("a", "sms", "+1")]).await.unwrap(), [false]);
        assert_eq!(s.list_opt_outs("nobody", "sms", None, 10).await.unwrap(), OptOutPage::default());
    }

    #[tokio::test]
    async fn overdue_jobs_are_leased_until_finished() {
        let s = MemoryStore::new();
        s.track_sent(&[(sent("j", &["1"]), t(100), "x".into())], Duration::from_secs(60)).await.unwrap();
        assert!(s.take_overdue(t(99), 10, t(130)).await.unwrap().is_empty());
        let due = s.take_overdue(t(100), 10, t(130)).await.unwrap();
        assert_eq!(due, vec![Overdue { job_id: "j".into(), sent: Some(sent("j", &["1"])), outcome: None, report: None, decided_at: None }]);
        // Decided `unknown` by that: a receipt now makes no second final.
        assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(110)).await.unwrap(), Settled::Pending);
        assert!(s.take_overdue(t(129), 10, t(160)).await.unwrap().is_empty());
        assert!(s.take_overdue(t(130), 10, t(160)).await.unwrap().is_empty(), "decided: its publisher is this process");
        s.finish_sent(&["j".into()]).await.unwrap();
        assert!(s.take_overdue(t(500), 10, t(600)).await.unwrap().is_empty());
        assert_eq!(s.settle_part("p", "1", PartOutcome::Delivered, t(600)).await.unwrap(), Settled::Unmatched);
    }
}
