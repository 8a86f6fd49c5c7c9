//! Correlation: a receipt's message id → its job → a final report; and the receipt deadline
//! that ends a job `unknown` when no receipt comes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::inbound::InboundOut;
use super::opt_out::StopReplies;
use super::{InboundReceipt, ProviderEvent};
use crate::clock::Clock;
use crate::pipeline::{BatchTasks, Reporter, Untracked};
use crate::report::{EventKind, Report};
use crate::store::{EarlyReceipt, PartOutcome, PartReceipt, SentJob, Settled, Store};
use crate::telemetry;

/// A receipt can beat its mapping (the SMSC answers the submit and sends the receipt before
/// we stored the mapping): such a receipt is retried for this long before it counts unmatched.
const EARLY_RECEIPT_GRACE: Duration = Duration::from_secs(10);
const EARLY_RECEIPT_RETRY: Duration = Duration::from_millis(250);
/// A receipt for a message whose mapping this instance is storing waits for it at most this
/// long (then it goes the early way): a store that takes longer is down, and the wait
/// unacknowledged must stay well inside an SMSC's `deliver_sm` response timeout.
const UNTRACKED_WAIT: Duration = Duration::from_secs(5);
/// A final decided by one instance and not confirmed within this (it died between deciding
/// and publishing) is handed out again by the deadline sweep of any instance.
pub(crate) const FINAL_CONFIRM_GRACE: chrono::Duration = chrono::Duration::seconds(30);
/// Batches of finals being published at once: publishing waits for the broker, and one batch
/// per broker round trip was measured to cap receipts at about 10,000/s.
const PUBLISHES_IN_FLIGHT: usize = 8;

pub struct Correlator {
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn Store>,
    pub reporter: Arc<Reporter>,
    /// Inbound messages that say STOP become opt-outs.
    pub stop_replies: Arc<StopReplies>,
    /// Where every inbound message is recorded.
    pub inbound: Arc<InboundOut>,
    /// Providers whose `read` statuses come after `delivered`, by name: how long a delivered
    /// job is kept in the store for its `read` ([`crate::provider::Provider::read_window`]).
    pub reads: HashMap<String, Duration>,
    /// Message ids whose mappings this instance is storing right now: their receipts wait.
    pub untracked: Arc<Untracked>,
}

/// Receipts in hand: when first seen, and the receipt.
type Seen = Vec<(Instant, InboundReceipt)>;

impl Correlator {
    /// Runs until every provider's event sender is gone.
    pub async fn run(self, mut rx: mpsc::Receiver<ProviderEvent>) {
        let mut early: VecDeque<(Instant, Instant, InboundReceipt)> = VecDeque::new();
        // Receipts waiting for their mappings, which this instance is storing (`untracked`).
        let mut waiting: Seen = Vec::new();
        let mut batch = Vec::with_capacity(512);
        let mut tick = tokio::time::interval(EARLY_RECEIPT_RETRY);
        let mut publishing = BatchTasks::new(PUBLISHES_IN_FLIGHT, "publish finals");
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 512) => {
                    if n == 0 { break; }
                    let events = std::mem::take(&mut batch);
                    let mut inbound = Vec::new();
                    let receipts = events.into_iter().filter_map(|e| match e {
                        ProviderEvent::Receipt(r) => Some(r),
                        ProviderEvent::Inbound(m) => {
                            metrics::counter!(telemetry::RECEIPTS_TOTAL, "provider" => m.provider.to_string(), "outcome" => "mo").increment(1);
                            inbound.push(m);
                            None
                        }
                    }).map(|r| (Instant::now(), r)).collect();
                    self.stop_replies.handle(&inbound).await;
                    super::inbound::open_service_windows(self.store.as_ref(), &inbound, self.clock.now()).await;
                    self.inbound.record(&inbound, &self.stop_replies, self.clock.now()).await;
                    for m in &inbound {
                        m.ack.done();
                    }
                    let receipts = self.not_untracked(receipts, &mut waiting);
                    self.handle(receipts, &mut early, &mut publishing).await;
                }
                () = self.untracked.stored(), if !waiting.is_empty() => {
                    let ready = self.not_untracked(std::mem::take(&mut waiting), &mut waiting);
                    self.handle(ready, &mut early, &mut publishing).await;
                }
                _ = tick.tick(), if !early.is_empty() || !waiting.is_empty() => {
                    let now = Instant::now();
                    // Waiting ones past UNTRACKED_WAIT too, should no mapping be stored meanwhile.
                    let mut due = self.not_untracked(std::mem::take(&mut waiting), &mut waiting);
                    while early.front().is_some_and(|(_, retry, _)| *retry <= now) {
                        let (first, _, r) = early.pop_front().expect("checked");
                        due.push((first, r));
                    }
                    self.handle(due, &mut early, &mut publishing).await;
                }
            }
        }
        // Stopping: whatever still waits goes the early way (kept in the store) or settles.
        self.handle(waiting, &mut early, &mut publishing).await;
        publishing.drain().await;
    }

    /// Those of `receipts` whose messages' mappings are not being stored by this instance right
    /// now; the others join `waiting` (unacknowledged) until they are, or for at most
    /// [`UNTRACKED_WAIT`].
    fn not_untracked(&self, receipts: Seen, waiting: &mut Seen) -> Seen {
        let mut ready = Vec::with_capacity(receipts.len());
        for (first_seen, r) in receipts {
            if r.outcome.is_some() && first_seen.elapsed() < UNTRACKED_WAIT && self.untracked.contains(&r.provider, &r.message_id) {
                waiting.push((first_seen, r));
            } else {
                ready.push((first_seen, r));
            }
        }
        ready
    }

    async fn handle(&self, receipts: Vec<(Instant, InboundReceipt)>, early: &mut VecDeque<(Instant, Instant, InboundReceipt)>, publishing: &mut BatchTasks) {
        let now = self.clock.now();
        // Intermediate states (enroute, accepted) say nothing final: skip them.
        let receipts: Vec<(Instant, InboundReceipt, PartOutcome)> = receipts
            .into_iter()
            .filter_map(|(t, r)| match r.outcome {
                Some(o) => Some((t, r, o)),
                None => {
                    r.ack.done();
                    None
                }
            })
            .collect();
        if receipts.is_empty() {
            return;
        }
        // One store round trip for the whole batch, not one per receipt; replay-guarded in the
        // store, so a retry after a lost reply gets the first run's answer.
        let keys: Vec<PartReceipt> = receipts.iter().map(|(_, r, o)| (&*r.provider, r.message_id.as_str(), *o, r.error_code.as_deref())).collect();
        let settled = crate::retry::until_ok("settle_parts", keys.len(), || self.store.settle_parts(&keys, now + FINAL_CONFIRM_GRACE)).await;
        drop(keys);
        // A `read` after its job's `delivered` finds no receipt state: its job was kept apart
        // for it (one more round trip, only for batches that have such reads).
        let read_keys: Vec<(&str, &str)> = receipts
            .iter()
            .zip(&settled)
            .filter(|((_, r, _), s)| r.read && **s == Settled::Unmatched)
            .map(|((_, r, _), _)| (&*r.provider, r.message_id.as_str()))
            .collect();
        let mut read_jobs = if read_keys.is_empty() {
            Vec::new()
        } else {
            crate::retry::until_ok("take_for_read", read_keys.len(), || self.store.take_for_read(&read_keys)).await
        }
        .into_iter();
        drop(read_keys);
        // Delivered jobs to keep for their `read`, by how long.
        let mut keep_for_read: Vec<(Duration, Vec<SentJob>)> = Vec::new();
        crate::failpoint::hit("receipt-stored");
        let mut reports = Vec::with_capacity(receipts.len());
        // (provider, outcome) → receipts: counted once per batch, not looked up per receipt.
        let mut counts: Vec<(&str, &'static str, u64)> = Vec::new();
        // Early receipts to keep in the store before they are acknowledged, and kept ones that
        // have matched now.
        let (mut keep, mut matched_kept) = (Vec::new(), Vec::new());
        // Delivered cascade steps whose `read` came: the read wins unless the next step started.
        let mut read_wins: Vec<SentJob> = Vec::new();
        // Receipts that matched nothing through their grace, and their outcomes.
        let mut gone: Vec<(&InboundReceipt, PartOutcome)> = Vec::new();
        for ((first_seen, r, outcome), settled) in receipts.iter().zip(settled) {
            let label = match settled {
                Settled::Final { job, outcome } => {
                    let mut rep = job.report(outcome.event(), now);
                    if outcome != PartOutcome::Delivered {
                        rep = rep.with_error(r.error_code.clone(), format!("receipt for message {}", r.message_id));
                    }
                    reports.push(rep);
                    // A chat's `read` settled it (its `delivered` skipped or late): `delivered`
                    // first, then the non-final `read`, in one publish.
                    if r.read && outcome == PartOutcome::Delivered {
                        // A step waiting for its read has it: the job's final.
                        if job.step.as_deref().is_some_and(crate::cascade::waits_for_read) {
                            let rep = reports.pop().expect("pushed above");
                            reports.push(crate::cascade::read_with_delivery(rep));
                        }
                        reports.push(job.report(EventKind::Read, now));
                    } else if let Some(window) = self.reads.get(&*r.provider).filter(|_| outcome == PartOutcome::Delivered) {
                        match keep_for_read.iter_mut().find(|(w, _)| w == window) {
                            Some((_, jobs)) => jobs.push((*job).clone()),
                            None => keep_for_read.push((*window, vec![(*job).clone()])),
                        }
                    }
                    "matched"
                }
                Settled::Unmatched if r.read => match read_jobs.next().flatten() {
                    // A step waiting for its read, delivered: the read wins if the next step
                    // has not started (decided below, in one store call).
                    Some(job) if job.step.as_deref().is_some_and(crate::cascade::waits_for_read) => {
                        read_wins.push(job);
                        "read"
                    }
                    // A cascade step that ended before its read came: late.
                    Some(job) if job.step.as_ref().is_some_and(|s| !s.last) => {
                        reports.push(crate::cascade::late(job.report(EventKind::Read, now)));
                        "late"
                    }
                    Some(job) => {
                        reports.push(job.report(EventKind::Read, now));
                        "read"
                    }
                    None => self.unmatched(*first_seen, r, *outcome, early, &mut keep),
                },
                // Handed off: the recorder of its job's `accepted` publishes the final after it.
                Settled::Pending | Settled::HandedOff => "matched",
                Settled::Unmatched => self.unmatched(*first_seen, r, *outcome, early, &mut keep),
            };
            if label == "early" {
                continue;
            }
            if label == "unmatched" && !r.read {
                gone.push((r, *outcome));
            }
            if r.stored && (label == "matched" || label == "read") {
                matched_kept.push((&*r.provider, r.message_id.as_str()));
            }
            match counts.iter_mut().find(|(p, l, _)| *p == &*r.provider && *l == label) {
                Some((_, _, n)) => *n += 1,
                None => counts.push((&r.provider, label, 1)),
            }
        }
        if !keep.is_empty() {
            crate::retry::until_ok("keep_early", keep.len(), || self.store.keep_early(&keep, now)).await;
        }
        // Delivered cascade steps whose `read` came: one store call decides, per step, whether
        // the read won (the next step still parked) or is late (the next step started).
        if !read_wins.is_empty() {
            let finals: Vec<Report> = read_wins.iter().map(|j| crate::cascade::read_won(j.report(EventKind::Delivered, now))).collect();
            let json: Vec<String> = finals.iter().map(|r| serde_json::to_string(r).expect("reports serialize")).collect();
            let ids: Vec<String> = finals.iter().map(|r| r.store_id().into_owned()).collect();
            let rows: Vec<(&str, &str)> = ids.iter().map(String::as_str).zip(json.iter().map(String::as_str)).collect();
            let won = crate::retry::until_ok("cancel_steps", rows.len(), || self.store.cancel_steps(&rows, now + FINAL_CONFIRM_GRACE)).await;
            for ((job, fin), won) in read_wins.iter().zip(finals).zip(won) {
                if won {
                    reports.push(fin);
                    reports.push(job.report(EventKind::Read, now));
                } else {
                    reports.push(crate::cascade::late(job.report(EventKind::Read, now)));
                }
            }
        }
        // Receipts that matched nothing through their grace: a cascade step ended by its
        // decision time is kept for them (receipt/deadlines.rs). Looked up only now, once per
        // such receipt, so early receipts cost nothing more.
        if !gone.is_empty() {
            let late_keys: Vec<(&str, &str)> = gone.iter().map(|(r, _)| (&*r.provider, r.message_id.as_str())).collect();
            let kept = crate::retry::until_ok("take_for_read", late_keys.len(), || self.store.take_for_read(&late_keys)).await;
            for ((r, outcome), job) in gone.iter().zip(kept) {
                if let Some(job) = job.filter(|j| j.step.is_some()) {
                    let rep = job.report(outcome.event(), now);
                    let rep = if *outcome == PartOutcome::Delivered {
                        rep
                    } else {
                        rep.with_error(r.error_code.clone(), format!("receipt for message {}", r.message_id))
                    };
                    reports.push(crate::cascade::late(rep));
                }
            }
        }
        if !matched_kept.is_empty() {
            crate::retry::until_ok("drop_early", matched_kept.len(), || self.store.drop_early(&matched_kept)).await;
        }
        // Stored (settled, or kept as early): the SMSC may have its deliver_sm_resp now.
        for (_, r, _) in &receipts {
            r.ack.done();
        }
        for (provider, label, n) in counts {
            metrics::counter!(telemetry::RECEIPTS_TOTAL, "provider" => provider.to_string(), "outcome" => label).increment(n);
        }
        if !reports.is_empty() {
            let (reporter, store) = (self.reporter.clone(), self.store.clone());
            // Recording them (retried until the store takes it) forgets their jobs; until then each
            // stays due for re-publishing by the deadline sweep of any instance, after the grace.
            // Kept for a `read` only once `delivered` is out, so that no `read` can overtake it.
            publishing
                .spawn(async move {
                    reporter.emit(&reports).await;
                    for (window, jobs) in keep_for_read {
                        crate::retry::until_ok("keep_for_read", jobs.len(), || store.keep_for_read(&jobs, window)).await;
                    }
                })
                .await;
        }
    }

    /// A receipt that matched no job: its job's mapping may not be stored yet, so it is tried
    /// again soon, here ("early"), and kept in the store first, so that acknowledging it cannot
    /// lose it; after [`EARLY_RECEIPT_GRACE`] it counts "unmatched".
    fn unmatched(
        &self,
        first_seen: Instant,
        r: &InboundReceipt,
        outcome: PartOutcome,
        early: &mut VecDeque<(Instant, Instant, InboundReceipt)>,
        keep: &mut Vec<EarlyReceipt>,
    ) -> &'static str {
        if first_seen.elapsed() >= EARLY_RECEIPT_GRACE {
            debug!(provider = %r.provider, "receipt matches no job");
            return "unmatched";
        }
        let mut r = r.clone();
        if !r.stored {
            keep.push(EarlyReceipt { provider: r.provider.to_string(), message_id: r.message_id.clone(), outcome, error_code: r.error_code.clone() });
            r.stored = true;
        }
        early.push_back((first_seen, Instant::now() + EARLY_RECEIPT_RETRY, r));
        "early"
    }
}

#[cfg(test)]
#[path = "correlate_tests.rs"]
mod tests;
