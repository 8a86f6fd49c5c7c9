//! From routed jobs to providers: rate-limit admission, waiting for slots in waves, marking
//! jobs submitting, one send task per job; and carrying out what a batch's decisions came to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::worker::park;
use super::{Completion, Envelope, Reporter};
use crate::clock::Clock;
use crate::policy::rate_limit::{Admission, Outgoing};
use crate::policy::{RateLimit, Verdict};
use crate::provider::Provider;
use crate::report::{EventKind, Report};
use crate::store::{ScheduledJob, Store};

/// Jobs whose rate-limit slots fall within one tick of each other wake together (one store
/// round to mark them submitting); each goes at the tick's end, so never before its slot.
const WAKE_TICK: Duration = Duration::from_millis(2);

/// A wave that wakes later than this after its slots (the process stalled) does not go: its
/// slots have passed, and sending now would put them on top of the slots being spent now. Its
/// jobs are admitted again instead, once: late again, they go late rather than maybe never.
/// (Once marked submitting a job is never held back: were this instance to die while it
/// waited, the job would end `unknown` without having been sent.)
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
}

impl Dispatch {
    /// Admits the routed jobs: sends those whose slot is now, leaves a task per wave for those
    /// that wait, adds the deferred to `out`, then carries `out` out. `again`: these jobs
    /// missed their slots once already.
    pub async fn run(self: &Arc<Self>, routed: Vec<Routed>, now: DateTime<Utc>, mut out: Decided, again: bool) {
        let outgoing: Vec<Outgoing> = routed
            .iter()
            .map(|(env, p)| Outgoing { job: &env.job, provider: p.name(), sender: p.sender(&env.job), segments: p.segments(&env.job) })
            .collect();
        let admissions = self.admit(&outgoing, now).await;
        drop(outgoing);
        let mut waves: BTreeMap<Instant, Vec<Routed>> = BTreeMap::new();
        let base = Instant::now();
        for ((env, provider), a) in routed.into_iter().zip(admissions) {
            match a.verdict {
                // Rounded up to the tick: a wave goes at its last job's slot, never before any.
                Verdict::Allow if a.not_before > base => waves.entry(round_up(a.not_before, base)).or_default().push((env, provider)),
                Verdict::Allow => out.sends.push((env, provider)),
                other => out.settle(env, other, now),
            }
        }
        if !out.sends.is_empty() {
            self.send(std::mem::take(&mut out.sends)).await;
        }
        // Each wave waits in its own task, so the worker goes on with the next batch and other
        // providers' jobs meanwhile; the jobs waiting hold their in-flight permits, so memory
        // stays bounded. A wave is marked submitting only when it goes: an instance that dies
        // while jobs wait leaves them claimed, and another instance takes them over.
        for (at, wave) in waves {
            tokio::spawn(self.clone().wave(at, wave, again));
        }
        out.finish(self.store.as_ref(), &self.reporter).await;
    }

    /// Sends a wave at its time. Boxed: [`Dispatch::run`] spawns it and it may run `run` again.
    fn wave(self: Arc<Self>, at: Instant, jobs: Vec<Routed>, again: bool) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            tokio::time::sleep_until(at).await;
            if again || Instant::now() <= at + LATE {
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

    /// Hands jobs to their providers: marks them submitting in one round (a job marked
    /// submitting that another instance finds after we die is never resent), then one task
    /// per send.
    async fn send(&self, sends: Vec<Routed>) {
        let ids: Vec<&str> = sends.iter().map(|(e, _)| e.job.id.as_str()).collect();
        let mut wait = Duration::from_millis(100);
        while let Err(e) = self.store.mark_submitting(&ids).await {
            warn!(error = %e, jobs = ids.len(), "cannot mark jobs submitting; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        for (env, provider) in sends {
            let tx = self.completions.clone();
            tokio::spawn(async move {
                let result = provider.send(&env.job).await;
                let _ = tx.send(Completion { env, provider: provider.name().into(), result }).await;
            });
        }
    }

    /// The rate limiter's answers; like the chain, it retries until the store answers, the
    /// jobs staying in hand.
    async fn admit(&self, outgoing: &[Outgoing<'_>], now: DateTime<Utc>) -> Vec<Admission> {
        if outgoing.is_empty() {
            return Vec::new();
        }
        loop {
            match self.rate_limit.evaluate(outgoing, now).await {
                Ok(a) => return a,
                Err(e) => {
                    warn!(error = %e, jobs = outgoing.len(), "rate limits cannot reach the store; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// What a batch's decisions came to, before they are carried out.
#[derive(Default)]
pub(super) struct Decided {
    pub reports: Vec<Report>,
    pub parked: Vec<ScheduledJob>,
    pub done: Vec<Envelope>,
    pub sends: Vec<Routed>,
}

impl Decided {
    /// A job that is not sent now: parked (with a `deferred` report unless it is a silent
    /// recheck) or ended.
    pub fn settle(&mut self, env: Envelope, verdict: Verdict, now: DateTime<Utc>) {
        match verdict {
            Verdict::Allow => unreachable!("allowed jobs are routed"),
            Verdict::Recheck { until } => {
                self.parked.push(ScheduledJob { id: env.job.id.clone(), due: until, payload: env.job.to_json().to_string(), recheck: true });
            }
            Verdict::Defer { until, reason } => {
                self.parked.push(ScheduledJob { id: env.job.id.clone(), due: until, payload: env.job.to_json().to_string(), recheck: false });
                let mut r = Report::about(&env.job, EventKind::Deferred, now).with_reason(reason);
                r.retry_at = Some(until);
                self.reports.push(r);
            }
            Verdict::Stop { event, reason, message } => {
                let mut r = Report::about(&env.job, event, now);
                r.reason = reason;
                if let Some(m) = message {
                    r = r.with_error(None, m);
                }
                self.reports.push(r);
            }
        }
        self.done.push(env);
    }

    /// Parks, reports, then acks: a job's ack fires only once its deferral is stored and its
    /// report is out.
    async fn finish(self, store: &dyn Store, reporter: &Reporter) {
        if !self.parked.is_empty() {
            park(store, &self.parked).await;
        }
        if !self.reports.is_empty() {
            reporter.emit(&self.reports).await;
        }
        for env in self.done {
            env.ack.done();
        }
    }
}

/// `at` rounded up to a whole number of [`WAKE_TICK`]s after `base`.
fn round_up(at: Instant, base: Instant) -> Instant {
    let ticks = at.saturating_duration_since(base).as_nanos().div_ceil(WAKE_TICK.as_nanos());
    base + WAKE_TICK * ticks as u32
}
