//! The flow from a source to a durable point: intake → policy chain → provider → completion.
//!
//! A job holds one in-flight permit from intake until its [`Ack`] fires (its final report
//! confirmed, its `accepted` report confirmed and mapping stored, or its deferral stored), so
//! memory is bounded by `pipeline.max_in_flight`, never by the backlog.

mod batch_tasks;
mod complete;
mod dispatch;
mod gate;
mod reporter;
mod untracked;
mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::job::Job;

pub use batch_tasks::BatchTasks;
pub use complete::{completer, CompleterCtx, Completion};
pub use dispatch::begin_finals;
pub use gate::{SubmitGate, Ticket};
pub use reporter::Reporter;
pub use untracked::Untracked;
pub use worker::{worker, WorkerCtx};

/// Marks a job done at its durable point. Dropping it without [`Ack::done`] means "not done":
/// a Kafka offset stays uncommitted, a scheduled entry stays leased until its lease lapses.
pub struct Ack {
    on_done: Option<Box<dyn FnOnce() + Send>>,
    _permit: OwnedSemaphorePermit,
    /// `sendgate_jobs_in_flight`, looked up once by [`Intake::new`] rather than per job.
    in_flight: metrics::Gauge,
}

impl Ack {
    pub fn done(mut self) {
        if let Some(f) = self.on_done.take() {
            f();
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// Where a job handed to intake comes from, as far as its claim is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A record read (or parked as `Busy` and due again): its id is claimed by dedup under a
    /// fresh token. `src` is the record (`topic/partition/offset`), if there is one.
    Record { src: Option<String> },
    /// An owner's parked job back from the scheduled set, already claimed under `token`.
    Resumed { token: String, src: Option<String> },
    /// A parked job whose claimer died mid-submit, claimed under `token` to end `unknown`.
    Orphaned { token: String, src: Option<String> },
}

/// A job on its way through the pipeline.
pub struct Envelope {
    pub job: Job,
    /// The fencing token of its claim: every store step of this job shows it. Empty until the
    /// worker mints one for a record (the store knows the owner part).
    pub token: String,
    /// The record it came in, if any.
    pub src: Option<String>,
    /// Its id is already claimed under `token` (it came back from the scheduled set): dedup
    /// skips it.
    pub claimed: bool,
    /// Claimed to end `unknown`: its claimer died mid-submit.
    pub orphaned: bool,
    /// Until when its claim is kept at least, where known (claimed new in this process).
    pub claim_until: Option<DateTime<Utc>>,
    pub ack: Ack,
}

/// The entrance of the pipeline, shared by every source.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Envelope>,
    permits: Arc<Semaphore>,
    capacity: usize,
    in_flight: metrics::Gauge,
}

#[derive(Debug, thiserror::Error)]
#[error("the pipeline is shutting down")]
pub struct Closed;

impl Intake {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Envelope>) {
        let (tx, rx) = mpsc::channel(capacity);
        let in_flight = metrics::gauge!(crate::telemetry::JOBS_IN_FLIGHT);
        (Self { tx, permits: Arc::new(Semaphore::new(capacity)), capacity, in_flight }, rx)
    }

    /// Waits for room, then hands the job in. `on_done` runs at its durable point.
    pub async fn submit(&self, job: Job, origin: Origin, on_done: Option<Box<dyn FnOnce() + Send>>) -> Result<(), Closed> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| Closed)?;
        self.in_flight.increment(1.0);
        let ack = Ack { on_done, _permit: permit, in_flight: self.in_flight.clone() };
        let (token, src, claimed, orphaned) = match origin {
            Origin::Record { src } => (String::new(), src, false, false),
            Origin::Resumed { token, src } => (token, src, true, false),
            Origin::Orphaned { token, src } => (token, src, true, true),
        };
        self.tx.send(Envelope { job, token, src, claimed, orphaned, claim_until: None, ack }).await.map_err(|_| Closed)
    }

    /// One permit of the in-flight budget for work that does not go through the pipeline
    /// (a record for the DLQ, an invalid job's `rejected`): held until that work is done.
    pub async fn reserve(&self) -> Result<OwnedSemaphorePermit, Closed> {
        self.permits.clone().acquire_owned().await.map_err(|_| Closed)
    }

    /// The in-flight budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Free permits: how many jobs intake could take without waiting.
    pub fn room(&self) -> usize {
        self.permits.available_permits()
    }

    /// A handle that watches in-flight work without keeping intake open.
    pub fn drain_handle(&self) -> DrainHandle {
        DrainHandle { permits: self.permits.clone(), capacity: self.capacity }
    }
}

/// Watches the in-flight budget after intake has closed.
pub struct DrainHandle {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl DrainHandle {
    pub fn in_flight(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Resolves when no job is in flight (every permit is back).
    pub async fn drained(&self) {
        if let Ok(all) = self.permits.acquire_many(self.capacity as u32).await {
            drop(all);
        }
    }
}
