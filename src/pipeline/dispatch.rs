//! From routed jobs to providers: rate-limit admission, waiting for slots in waves, one send
//! task per job (marked `submitting` by the provider at the write, through the
//! [`SubmitGate`]); and carrying out what a batch's decisions came to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::gate::SubmitGate;
use super::{Completion, Envelope, Reporter};
use crate::clock::Clock;
use crate::job::Job;
use crate::policy::pace::{Pace, PaceNote};
use crate::policy::rate_limit::{Admission, LimitKind, Outgoing};
use crate::policy::{RateLimit, Verdict};
use crate::provider::Provider;
use crate::report::{EventKind, Report};
use crate::store::{ScheduledJob, Store};
use crate::telemetry;

/// Jobs whose rate-limit slots fall within one tick of each other wake together (their
/// submitting marks then share store rounds); each goes at the tick's end, so never before its
/// slot.
const WAKE_TICK: Duration = Duration::from_millis(2);

/// A wave that wakes later than this after its slots (the process stalled) does not go: its
/// slots have passed, and sending now would put them on top of the slots being spent now. Its
/// jobs are admitted again instead, once: late again, they go late rather than maybe never.
const LATE: Duration = Duration::from_millis(10);

/// A job and the provider it was routed to.
pub(super) type Routed = (Envelope, Arc<dyn Provider>);

/// What sending needs, shared by the worker and the waves it leaves waiting.
pub(super) struct Dispatch {
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    pub completions: mpsc::Sender<Completion>,
    pub rate_limit: Arc<RateLimit>,
    /// Smooth sending: campaigns' paces, applied through `rate_limit`.
    pub pace: Arc<Pace>,
    /// A parked job's claim outlives its due time by this much.
    pub claim_ttl: Duration,
    /// Marks jobs `submitting` at the write, one store call per batch of writes.
    pub gate: Arc<SubmitGate>,
    /// Where a provider's answer says which message ids now wait for their mappings.
    pub untracked: Arc<super::Untracked>,
}

impl Dispatch {
    /// Admits the routed jobs: sends those whose slot is now, leaves a task per wave for those
    /// that wait, adds the deferred to `out`, then carries `out` out. `again`: these jobs
    /// missed their slots once already.
    pub async fn run(self: &Arc<Self>, routed: Vec<Routed>, now: DateTime<Utc>, mut out: Decided, again: bool) {
        // Campaign jobs' pacing: the routed ones are pending, and so are the ones parked above;
        // the ended ones are not. Counted before the pace is read, so that it includes them.
        let mut notes = std::mem::take(&mut out.pace);
        notes.extend(routed.iter().filter_map(|(env, _)| PaceNote::of(&env.job, true)));
        if !notes.is_empty() {
            crate::retry::until_ok("pace", notes.len(), || self.pace.register(&notes, now)).await;
        }
        let outgoing: Vec<Outgoing> = routed
            .iter()
            .map(|(env, p)| Outgoing {
                job: &env.job,
                provider: p.name(),
                sender: p.sender(&env.job),
                sender_rate: p.sender_rate(),
                segments: p.segments(&env.job),
                pace: self.pace.rate(&env.job, now),
            })
            .collect();
        let mut admissions = self.admit(&outgoing, now).await;
        drop(outgoing);
        if !notes.is_empty() {
            let jobs: Vec<&Job> = routed.iter().map(|(env, _)| &env.job).collect();
            self.settle_pace(&jobs, &mut admissions, now).await;
        }
        // Keyed by the slot and how late the wave may still go (see `Admission::late_ok`).
        let mut waves: BTreeMap<(Instant, Duration), Vec<Routed>> = BTreeMap::new();
        let base = Instant::now();
        for ((env, provider), a) in routed.into_iter().zip(admissions) {
            match a.verdict {
                // Rounded up to the tick: a wave goes at its last job's slot, never before any.
                Verdict::Allow if a.not_before > base => waves.entry((round_up(a.not_before, base), a.late_ok)).or_default().push((env, provider)),
                Verdict::Allow => out.sends.push((env, provider)),
                other => out.settle(env, other, now),
            }
        }
        if !out.sends.is_empty() {
            self.send(std::mem::take(&mut out.sends)).await;
        }
        // Each wave waits in its own task, so the worker goes on with the next batch and other
        // providers' jobs meanwhile; the jobs waiting hold their in-flight permits, so memory
        // stays bounded. A job is marked submitting only at its write: an instance that dies
        // while jobs wait leaves them claimed, and another instance takes them over.
        for ((at, late_ok), wave) in waves {
            tokio::spawn(self.clone().wave(at, late_ok.max(LATE), wave, again));
        }
        out.finish(self.store.as_ref(), &self.reporter, self.claim_ttl).await;
    }

    /// Sends a wave at its time, or up to `late` after it. Boxed: [`Dispatch::run`] spawns it
    /// and it may run `run` again.
    fn wave(self: Arc<Self>, at: Instant, late: Duration, jobs: Vec<Routed>, again: bool) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            tokio::time::sleep_until(at).await;
            if again || Instant::now() <= at + late {
                return self.send(jobs).await;
            }
            self.readmit(jobs, at).await;
        })
    }

    /// Jobs that missed their slots (the process stalled) are admitted again rather than sent
    /// late on top of the slots of now. Boxed: it goes through [`Dispatch::run`] again.
    fn readmit(self: Arc<Self>, jobs: Vec<Routed>, slot: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let late = Instant::now().saturating_duration_since(slot);
            debug!(late = ?late, jobs = jobs.len(), "rate-limited jobs missed their slots; admitting them again");
            let now = self.clock.now();
            self.run(jobs, now, Decided::default(), true).await;
        })
    }

    /// Hands jobs to their providers, one task per send. Each provider marks its job
    /// submitting through the gate right before writing it (a job marked submitting that
    /// another instance finds after we die is never resent; one still queued is sent by it).
    async fn send(&self, sends: Vec<Routed>) {
        for (env, provider) in sends {
            let tx = self.completions.clone();
            let gate = self.gate.clone();
            let untracked = self.untracked.clone();
            tokio::spawn(async move {
                let ticket = gate.ticket(&env.job.id, &env.token);
                let result = provider.send(&env.job, &ticket).await;
                if let Ok(acc) = &result {
                    // Before the completer can store the mappings: their receipts wait for it.
                    untracked.taken(provider.name(), &acc.message_ids);
                }
                let slot = ticket.into_slot();
                // Reserved first, then filled: `send(value)` keeps the value inside its future,
                // which made every job's task half again as large (and copied on every spawn).
                if let Ok(permit) = tx.reserve().await {
                    permit.send(Completion { env, provider: provider.name().into(), result, slot });
                }
            });
        }
    }

    /// Jobs let go leave their campaigns' pending sets before they are sent (so none is left
    /// there if this instance dies after sending it); jobs deferred on their campaign's pace
    /// come back about when their place in its queue comes, not at the limiter's estimate.
    async fn settle_pace(&self, jobs: &[&Job], admissions: &mut [Admission], now: DateTime<Utc>) {
        let (mut admitted, mut deferred): (Vec<&Job>, Vec<&Job>) = (Vec::new(), Vec::new());
        let mut on_pace = Vec::new();
        for (i, (job, a)) in jobs.iter().zip(admissions.iter()).enumerate() {
            if job.campaign.is_none() {
                continue;
            }
            if a.verdict == Verdict::Allow {
                admitted.push(job);
            } else {
                deferred.push(job);
                on_pace.push((i, a.held_by == Some(LimitKind::Pace)));
            }
        }
        let ranks = crate::retry::until_ok("pace", admitted.len() + deferred.len(), || self.pace.settle(&admitted, &deferred, now)).await;
        for ((i, paced), rank) in on_pace.into_iter().zip(ranks) {
            let (Some(rank), true) = (rank, paced) else { continue };
            if let (Some(at), Verdict::Defer { until, .. }) = (self.pace.retry_at(jobs[i], rank, now), &mut admissions[i].verdict) {
                *until = at;
            }
        }
    }

    /// The rate limiter's answers; like the chain, it retries until the store answers, the
    /// jobs staying in hand (a lease whose answer was lost only wastes its tokens).
    async fn admit(&self, outgoing: &[Outgoing<'_>], now: DateTime<Utc>) -> Vec<Admission> {
        if outgoing.is_empty() {
            return Vec::new();
        }
        crate::retry::until_ok("rate_limit", outgoing.len(), || self.rate_limit.evaluate(outgoing, now)).await
    }
}

/// What a batch's decisions came to, before they are carried out.
#[derive(Default)]
pub(super) struct Decided {
    /// Non-final reports (`duplicate`), published as they are.
    pub reports: Vec<Report>,
    /// Jobs to park under their claim, each with its `deferred` report (none for a recheck).
    pub parked: Vec<(ScheduledJob, Option<Report>)>,
    /// Finals decided here, with the token of the claim that may publish them.
    pub finals: Vec<(Report, String)>,
    pub done: Vec<Envelope>,
    pub sends: Vec<Routed>,
    /// Campaign jobs parked (pending) or ended (not) by the chain or routing, for pacing.
    pub pace: Vec<PaceNote>,
}

impl Decided {
    /// A job that is not sent now: parked (with a `deferred` report unless it is a silent
    /// recheck), ended, or dropped without a word.
    pub fn settle(&mut self, env: Envelope, verdict: Verdict, now: DateTime<Utc>) {
        let park = |recheck: bool, due: DateTime<Utc>| ScheduledJob {
            id: env.job.id.clone(),
            token: env.token.clone(),
            src: env.src.clone(),
            due,
            payload: env.job.to_json().to_string(),
            recheck,
        };
        match verdict {
            Verdict::Allow => unreachable!("allowed jobs are routed"),
            Verdict::Drop => {}
            Verdict::Recheck { until } => self.parked.push((park(true, until), None)),
            Verdict::Defer { until, reason } => {
                let mut r = Report::about(&env.job, EventKind::Deferred, now).with_reason(reason);
                r.retry_at = Some(until);
                self.parked.push((park(false, until), Some(r)));
            }
            Verdict::Stop { event, reason, message } => {
                let mut r = Report::about(&env.job, event, now);
                r.reason = reason;
                if event == EventKind::Duplicate {
                    // Which record it answers: recording it marks that record's one
                    // `duplicate` out (the record read again is nothing).
                    r.record = env.src.clone();
                }
                if let Some(m) = message {
                    r = r.with_error(None, m);
                }
                if r.is_final {
                    self.finals.push((r, env.token.clone()));
                } else {
                    self.reports.push(r);
                }
            }
        }
        self.done.push(env);
    }

    /// Ends a job with a final report.
    pub fn end(&mut self, env: Envelope, report: Report) {
        self.finals.push((report, env.token.clone()));
        self.done.push(env);
    }

    /// Parks, reports, then acks: a job's ack fires only once its deferral is stored and its
    /// report is out. A deferral or a final whose claim another token holds now (this
    /// instance stalled past its heartbeat) is dropped: the taker handles that job.
    pub async fn finish(self, store: &dyn Store, reporter: &Reporter, claim_ttl: Duration) {
        let Self { mut reports, parked, finals, done, sends, pace: _ } = self;
        debug_assert!(sends.is_empty(), "sends go out before a batch finishes");
        if !parked.is_empty() {
            let (jobs, deferred): (Vec<ScheduledJob>, Vec<Option<Report>>) = parked.into_iter().unzip();
            let stored = park(store, &jobs, claim_ttl).await;
            reports.extend(deferred.into_iter().zip(stored).filter_map(|(r, ok)| if ok { r } else { None }));
        }
        reports.extend(begin_finals(store, finals).await);
        if !reports.is_empty() {
            reporter.emit(&reports).await;
        }
        for env in done {
            env.ack.done();
        }
    }
}

/// Records finals decided in the pipeline before they are published (each under its claim's
/// token; a fenced one is dropped and counted): the reports to publish. Every final decided
/// outside the receipt path goes through here (the Kafka source's `rejected` too): from here
/// on the claim is `finishing`, so the record read again is nothing, and if this instance
/// dies the deadline sweep reads the reports topic back and publishes it only if it is not
/// there.
pub async fn begin_finals(store: &dyn Store, finals: Vec<(Report, String)>) -> Vec<Report> {
    if finals.is_empty() {
        return Vec::new();
    }
    let json: Vec<String> = finals.iter().map(|(r, _)| serde_json::to_string(r).expect("reports serialize")).collect();
    let begun = {
        let ids: Vec<std::borrow::Cow<str>> = finals.iter().map(|(r, _)| r.store_id()).collect();
        let rows: Vec<(&str, &str, &str)> = finals.iter().zip(&json).zip(&ids).map(|(((_, t), j), id)| (&**id, t.as_str(), j.as_str())).collect();
        let confirm_by = chrono::Utc::now() + crate::receipt::correlate::FINAL_CONFIRM_GRACE;
        crate::retry::until_ok("begin_finals", rows.len(), || store.begin_finals(&rows, confirm_by)).await
    };
    let lost = begun.iter().filter(|b| !**b).count();
    if lost > 0 {
        metrics::counter!(telemetry::JOBS_FENCED_TOTAL, "step" => "final").increment(lost as u64);
        warn!(jobs = lost, "finals not published: another instance holds these jobs now");
    }
    finals.into_iter().zip(begun).filter_map(|((r, _), ok)| ok.then_some(r)).collect()
}

/// Stores deferred jobs, retrying until the store answers (a deferral that only lived in
/// memory would be lost with the process); `false` where the claim was fenced off (counted).
pub(super) async fn park(store: &dyn Store, jobs: &[ScheduledJob], claim_ttl: Duration) -> Vec<bool> {
    let stored = crate::retry::until_ok("schedule", jobs.len(), || store.schedule(jobs, claim_ttl)).await;
    let lost = stored.iter().filter(|s| !**s).count();
    if lost > 0 {
        metrics::counter!(telemetry::JOBS_FENCED_TOTAL, "step" => "park").increment(lost as u64);
        warn!(jobs = lost, "deferrals not stored: another instance holds these jobs now");
    }
    stored
}

/// `at` rounded up to a whole number of [`WAKE_TICK`]s after `base`.
fn round_up(at: Instant, base: Instant) -> Instant {
    let ticks = at.saturating_duration_since(base).as_nanos().div_ceil(WAKE_TICK.as_nanos());
    base + WAKE_TICK * ticks as u32
}
