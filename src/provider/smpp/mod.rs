//! The SMPP provider: N binds to one SMSC, each with its own window of in-flight `submit_sm`.
//!
//! `SmppConfig → SmppProvider`: the `[providers.NAME] kind = "smpp"` keys, their checks and
//! construction are [`config`]'s; binds live in [`bind`] (PDUs they receive in `incoming`), a
//! job's PDUs are built in [`submit`] from text encoded and cut in [`encoding`] and sent in
//! `send`, SMSC statuses are translated in [`status`], receipts are parsed in [`receipt`].

mod bind;
mod coalesce;
pub mod config;
pub mod encoding;
mod health;
pub mod ids;
pub(crate) mod incoming;
mod inflight;
mod killswitch;
#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod proptests;
mod rate;
pub mod receipt;
#[cfg(test)]
mod scripted_tests;
mod send;
pub mod status;
pub mod submit;
mod tls;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::bind::{BindCtx, BindSlot, Link, Role};
pub use self::config::{SmppBindMode, SmppConcatenation, SmppConfig, SmppEncoding, SmppOnTimeout, SmppReceiptIdFormat, EMBEDDED_SIM};
use self::health::Health;
use crate::clock::Clock;
use crate::job::Job;
use crate::provider::{Accepted, Provider, ProviderStatus, SendError};
use crate::receipt::ProviderEvent;
use crate::telemetry;

/// How long a send waits for some bind to come up before answering `Unavailable`: covers the
/// first bind at start-up and a quick rebind, without parking jobs behind a dead SMSC.
const BIND_WAIT: Duration = Duration::from_secs(3);

pub struct SmppProvider {
    name: Arc<str>,
    cfg: SmppConfig,
    /// Binds that submit (transceivers or transmitters), picked round-robin.
    slots: Vec<Arc<BindSlot>>,
    /// Receivers of a transmitter/receiver setup: only unbound at shutdown.
    receivers: Vec<Arc<BindSlot>>,
    /// Round-robin cursor over binds.
    next: AtomicUsize,
    /// Concatenation references cycle per provider so that parts of different messages to the
    /// same recipient never share one.
    reference: AtomicU16,
    /// `tps`: segments per second over all binds.
    rate: rate::Rate,
    /// What the bind tasks share: the bound count senders wait on, health, `stop`.
    binds: Arc<BindCtx>,
    /// The pipeline's clock: a job's `expires_at` is read against it.
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl SmppProvider {
    /// Starts the binds (they connect in the background and keep reconnecting).
    pub fn start(name: &str, cfg: SmppConfig, address: String, events: mpsc::Sender<ProviderEvent>, clock: Arc<dyn Clock>) -> Arc<Self> {
        let name: Arc<str> = name.into();
        let stop = CancellationToken::new();
        let (submit_role, receivers) = match cfg.bind_mode {
            SmppBindMode::Transceiver => (Role::Transceiver, 0),
            SmppBindMode::TransmitterReceiver => (Role::Transmitter, cfg.binds),
        };
        let binds = Arc::new(BindCtx {
            provider: name.clone(),
            cfg: cfg.clone(),
            address,
            bound: watch::Sender::new(0),
            health: Health::new(name.clone(), cfg.binds + receivers),
            stop: stop.clone(),
        });
        let slots: Vec<Arc<BindSlot>> = (0..cfg.binds).map(|i| Arc::new(BindSlot::new(i, cfg.window, cfg.bind_tps))).collect();
        let receivers: Vec<Arc<BindSlot>> = (0..receivers).map(|i| Arc::new(BindSlot::new(i, 1, 0))).collect();
        let tasks = slots
            .iter()
            .map(|slot| tokio::spawn(bind::run(binds.clone(), slot.clone(), submit_role, events.clone())))
            .chain(receivers.iter().map(|slot| tokio::spawn(bind::run(binds.clone(), slot.clone(), Role::Receiver, events.clone()))))
            .chain([tokio::spawn(sample_window_slots(name.clone(), slots.clone(), cfg.window, stop.clone()))])
            .collect();
        Arc::new(Self {
            name,
            rate: rate::Rate::per_second(cfg.tps),
            cfg,
            slots,
            receivers,
            next: AtomicUsize::new(0),
            reference: AtomicU16::new(rand::random()),
            binds,
            clock,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    /// Window slots of the submitting binds that jobs hold now (see [`window_slots_in_use`]).
    pub fn window_slots_in_use(&self) -> usize {
        window_slots_in_use(&self.slots, self.cfg.window)
    }

    /// A bound bind, round-robin; waits up to [`BIND_WAIT`] when none is bound.
    async fn pick(&self) -> Result<(Arc<BindSlot>, Link), SendError> {
        let deadline = tokio::time::Instant::now() + BIND_WAIT;
        let mut bound = self.binds.bound.subscribe();
        loop {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..self.slots.len() {
                let slot = &self.slots[(start + i) % self.slots.len()];
                if let Some(link) = slot.link() {
                    return Ok((slot.clone(), link));
                }
            }
            if self.stop.is_cancelled() {
                return Err(SendError::Unavailable("provider is shutting down".into()));
            }
            // Refused binds do not come back within BIND_WAIT: say so now.
            if let Some(why) = self.binds.health.refusal() {
                return Err(SendError::Unavailable(format!("SMSC at {} refuses our binds: {why}", self.cfg.address)));
            }
            match tokio::time::timeout_at(deadline, bound.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(SendError::Unavailable(format!("no SMPP bind to {} is up", self.cfg.address))),
            }
        }
    }
}

#[async_trait]
impl Provider for SmppProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[String] {
        &self.cfg.channels
    }

    fn weight(&self) -> u32 {
        self.cfg.weight
    }

    fn receipt_timeout(&self) -> Duration {
        self.cfg.receipt_timeout
    }

    fn is_ready(&self) -> bool {
        *self.binds.bound.borrow() > 0
    }

    fn status(&self) -> ProviderStatus {
        self.binds.health.status(self.is_ready())
    }

    /// Request metrics are counted around every provider (`provider::metered`), not here.
    async fn send(&self, job: &Job, wire: &dyn crate::provider::OnWire) -> Result<Accepted, SendError> {
        self.submit(job, wire).await
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        for slot in self.slots.iter().chain(&self.receivers) {
            slot.unbind().await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for mut t in tasks {
            // Bind tasks end once their links do; one that does not is not waited for forever.
            if tokio::time::timeout(Duration::from_secs(15), &mut t).await.is_err() {
                t.abort();
            }
        }
    }

    fn segments(&self, job: &Job) -> u32 {
        submit::segments(&job.text(), &(&self.cfg).into())
    }

    fn sender<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        Some(job.from.as_deref().or(self.cfg.default_from.as_deref()).unwrap_or("sendgate"))
    }
}

/// Slots taken over `binds`: a job holds one from before its submit gate mark until its answer
/// is recorded.
fn window_slots_in_use(binds: &[Arc<BindSlot>], window: usize) -> usize {
    binds.iter().map(|b| window.saturating_sub(b.window.available_permits())).sum()
}

/// Keeps the window gauges: whether the window is what holds jobs back is the first question
/// when a provider sends slower than its SMSC allows. Sampled, not counted per job: the hot path
/// pays nothing for it.
async fn sample_window_slots(provider: Arc<str>, binds: Vec<Arc<BindSlot>>, window: usize, stop: CancellationToken) {
    metrics::gauge!(telemetry::SMPP_WINDOW_SLOTS, "provider" => provider.to_string()).set((binds.len() * window) as f64);
    let in_use = metrics::gauge!(telemetry::SMPP_WINDOW_SLOTS_IN_USE, "provider" => provider.to_string());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => in_use.set(window_slots_in_use(&binds, window) as f64),
            () = stop.cancelled() => return,
        }
    }
}
