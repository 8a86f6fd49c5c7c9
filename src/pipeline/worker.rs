//! The decision loop: takes batches from intake, runs the policy chain once per batch, and
//! sends, parks or ends each job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::{Completion, Envelope, Reporter};
use crate::clock::Clock;
use crate::policy::rate_limit::{Admission, Outgoing};
use crate::policy::{Candidate, Chain, RateLimit, Verdict};
use crate::provider::Provider;
use crate::report::{EventKind, Reason, Report};
use crate::route::Router;
use crate::store::{ScheduledJob, Store};
use crate::telemetry;

/// Jobs whose rate-limit slots fall within one tick of each other wake together (one store
/// round to mark them submitting); each goes at the tick's end, so never before its slot.
const WAKE_TICK: Duration = Duration::from_millis(2);

pub struct WorkerCtx {
    pub clock: Arc<dyn Clock>,
    pub chain: Chain,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    pub router: Arc<Router>,
    pub completions: mpsc::Sender<Completion>,
    pub batch_size: usize,
    /// After routing: the provider and the segment count are known only then.
    pub rate_limit: Arc<RateLimit>,
}

/// Runs until intake closes and is empty; spawned sends finish on their own.
pub async fn worker(ctx: WorkerCtx, mut rx: mpsc::Receiver<Envelope>) {
    let mut batch = Vec::with_capacity(ctx.batch_size);
    while rx.recv_many(&mut batch, ctx.batch_size).await > 0 {
        let resumed = batch.iter().filter(|e| e.claimed).count() as u64;
        metrics::counter!(telemetry::JOBS_CONSUMED_TOTAL, "source" => "scheduler").increment(resumed);
        decide(&ctx, std::mem::take(&mut batch)).await;
    }
}

async fn decide(ctx: &WorkerCtx, batch: Vec<Envelope>) {
    let now = ctx.clock.now();
    let verdicts = loop {
        let mut cands: Vec<Candidate> =
            batch.iter().map(|e| Candidate { job: &e.job, claimed: e.claimed, verdict: Verdict::Allow }).collect();
        match ctx.chain.evaluate(&mut cands, now).await {
            Ok(()) => break cands.into_iter().map(|c| c.verdict).collect::<Vec<_>>(),
            Err(e) => {
                // The batch stays in hand: nothing is decided until the store answers.
                warn!(error = %e, jobs = batch.len(), "policy chain cannot reach the store; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };

    let mut out = Decided::default();
    let mut routed = Vec::new();
    for (env, verdict) in batch.into_iter().zip(verdicts) {
        match verdict {
            Verdict::Allow => match ctx.router.route(&env.job) {
                Ok(provider) => routed.push((env, provider)),
                Err(message) => {
                    out.reports.push(Report::about(&env.job, EventKind::Rejected, now).with_reason(Reason::InvalidJob).with_error(None, message));
                    out.done.push(env);
                }
            },
            other => out.settle(env, other, now),
        }
    }

    // Rate limits last: a job stopped or deferred above never spends a token.
    let outgoing: Vec<Outgoing> = routed
        .iter()
        .map(|(env, p)| Outgoing { job: &env.job, provider: p.name(), sender: p.sender(&env.job), segments: p.segments(&env.job) })
        .collect();
    let admissions = admit(ctx, &outgoing, now).await;
    drop(outgoing);
    let mut waves: BTreeMap<Instant, Vec<(Envelope, Arc<dyn Provider>)>> = BTreeMap::new();
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
        send(ctx.store.as_ref(), ctx.completions.clone(), std::mem::take(&mut out.sends)).await;
    }
    // Each wave waits in its own task, so the worker goes on with the next batch and other
    // providers' jobs meanwhile; the jobs waiting hold their in-flight permits, so memory stays
    // bounded. A wave is marked submitting only when it goes: an instance that dies while jobs
    // wait leaves them claimed, and another instance takes them over and sends them.
    for (at, wave) in waves {
        let (store, tx) = (ctx.store.clone(), ctx.completions.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            send(store.as_ref(), tx, wave).await;
        });
    }
    let Decided { reports, parked, done, .. } = out;
    if !parked.is_empty() {
        park(ctx.store.as_ref(), &parked).await;
    }
    ctx.reporter.emit(&reports).await;
    for env in done {
        env.ack.done();
    }
}

/// What a batch's decisions came to, before they are carried out.
#[derive(Default)]
struct Decided {
    reports: Vec<Report>,
    parked: Vec<ScheduledJob>,
    done: Vec<Envelope>,
    sends: Vec<(Envelope, Arc<dyn Provider>)>,
}

impl Decided {
    /// A job that is not sent now: parked (with a `deferred` report unless it is a silent
    /// recheck) or ended.
    fn settle(&mut self, env: Envelope, verdict: Verdict, now: chrono::DateTime<chrono::Utc>) {
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
}

/// The rate limiter's answers for the routed jobs; like the chain, it retries until the store
/// answers, the batch staying in hand.
async fn admit(ctx: &WorkerCtx, outgoing: &[Outgoing<'_>], now: chrono::DateTime<chrono::Utc>) -> Vec<Admission> {
    if outgoing.is_empty() {
        return Vec::new();
    }
    loop {
        match ctx.rate_limit.evaluate(outgoing, now).await {
            Ok(a) => return a,
            Err(e) => {
                warn!(error = %e, jobs = outgoing.len(), "rate limits cannot reach the store; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// `at` rounded up to a whole number of [`WAKE_TICK`]s after `base`.
fn round_up(at: Instant, base: Instant) -> Instant {
    let ticks = at.saturating_duration_since(base).as_nanos().div_ceil(WAKE_TICK.as_nanos());
    base + WAKE_TICK * ticks as u32
}

/// Hands jobs to their providers: marks them submitting in one round (a job marked submitting
/// that another instance finds after we die is never resent), then one task per send.
async fn send(store: &dyn Store, completions: mpsc::Sender<Completion>, sends: Vec<(Envelope, Arc<dyn Provider>)>) {
    let ids: Vec<&str> = sends.iter().map(|(e, _)| e.job.id.as_str()).collect();
    let mut wait = Duration::from_millis(100);
    while let Err(e) = store.mark_submitting(&ids).await {
        warn!(error = %e, jobs = ids.len(), "cannot mark jobs submitting; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    for (env, provider) in sends {
        let tx = completions.clone();
        tokio::spawn(async move {
            let result = provider.send(&env.job).await;
            let _ = tx.send(Completion { env, provider: provider.name().into(), result }).await;
        });
    }
}

/// Stores deferred jobs, retrying until the store takes them: a deferral that only lived in
/// memory would be lost with the process.
pub(super) async fn park(store: &dyn Store, jobs: &[ScheduledJob]) {
    let mut wait = Duration::from_millis(100);
    while let Err(e) = store.schedule(jobs).await {
        warn!(error = %e, jobs = jobs.len(), "cannot store deferred jobs; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
