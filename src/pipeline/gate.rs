//! The submit gate: a job becomes `submitting` in the store right before its provider writes
//! it, not when it is dispatched. Jobs queue for a window permit, a throttle pause or a rate
//! slot long before they go; marked at dispatch, every one of them would end `unknown` after a
//! crash although it never left. Marked here, what a crash leaves ambiguous is what was on the
//! wire (at most `binds × window` per SMPP provider), and the rest is taken over and sent.
//!
//! Marks are batched: whatever arrives while one store call is out goes in the next, so a
//! busy link costs one call per batch of writes and an idle one no added wait.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::provider::{Entry, OnWire};
use crate::store::Store;
use crate::telemetry;

/// Most marks per store call.
const MAX_BATCH: usize = 1024;

type Request = (String, String, oneshot::Sender<bool>);

pub struct SubmitGate {
    /// Unbounded: a job asks only with its provider's in-flight slot in hand (an SMPP window
    /// permit, an HTTP provider's concurrency), so the slots bound what can wait here, and
    /// asking costs no wait of its own.
    tx: mpsc::UnboundedSender<Request>,
}

impl SubmitGate {
    /// Starts the task that marks jobs; it ends when the last gate handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Arc::new(Self { tx })
    }

    /// The gate for one job's send.
    pub fn ticket<'a>(&'a self, job_id: &'a str, token: &'a str) -> Ticket<'a> {
        Ticket { gate: self, job_id, token, kept: std::sync::Mutex::new(None) }
    }
}

/// Whatever a provider keeps occupied until the job's answer is recorded (dropped then).
pub type Slot = Box<dyn Send + Sync>;

/// One job's way through the gate.
pub struct Ticket<'a> {
    gate: &'a SubmitGate,
    job_id: &'a str,
    token: &'a str,
    kept: std::sync::Mutex<Option<Slot>>,
}

impl Ticket<'_> {
    /// The provider's slot, to be dropped once the answer is recorded.
    pub fn into_slot(self) -> Option<Slot> {
        self.kept.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl OnWire for Ticket<'_> {
    fn enter(&self) -> Entry {
        let (tx, rx) = oneshot::channel();
        match self.gate.tx.send((self.job_id.to_owned(), self.token.to_owned(), tx)) {
            Ok(()) => Entry::Waiting(rx),
            // The gate is gone: the process is stopping; write nothing rather than unmarked.
            Err(_) => Entry::Ready(false),
        }
    }

    fn keep(&self, slot: Slot) {
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs: Vec<(&str, &str)> = batch.iter().map(|(id, tok, _)| (id.as_str(), tok.as_str())).collect();
        // A compare-and-set that answers the same when run again: retried until it answers.
        let ours = crate::retry::until_ok("mark_submitting", jobs.len(), || store.mark_submitting(&jobs)).await;
        drop(jobs);
        crate::failpoint::hit("submitting");
        let fenced = ours.iter().filter(|ours| !**ours).count();
        if fenced > 0 {
            metrics::counter!(telemetry::JOBS_FENCED_TOTAL, "step" => "submit").increment(fenced as u64);
        }
        for ((_, _, reply), ours) in batch.drain(..).zip(ours) {
            let _ = reply.send(ours);
        }
    }
}
