//! Providers: what hands a message to the outside world, and what each answer means.
//!
//! A provider returns `Accepted` or a [`SendError`] that says whose fault it was and whether
//! to try again; receipts come back separately, on the channel given at construction, or
//! through its [`Webhook`].
//!
//! - this file: the [`Provider`] trait and the provider-neutral answers: [`SendError`] with
//!   its retry classification ([`SendError::is_retryable`]) and the `outcome` table
//!   ([`SendError::outcome_label`]).
//! - `build`: [`KindConfig`], what each kind's config offers, and [`build_all`].
//! - `metered`: the request metrics, once around every provider.
//! - [`https_client`]: the pooled HTTPS client every HTTP kind shares; [`credential`]: the
//!   secret it sends, read from a file, and the provider down while it is refused.
//! - [`webhook`]: the [`Webhook`] a provider may expose under `/v1/webhooks/{provider}`.
//! - [`price`]: price tables (`[providers.NAME.pricing]`) and what a job costs.
//! - one folder per kind: [`smpp`], [`whatsapp_cloud`], [`http`] (configured, not coded),
//!   [`telegram`].

mod build;
pub mod credential;
pub mod http;
pub mod https_client;
mod metered;
pub mod price;
pub mod smpp;
pub mod telegram;
pub mod webhook;
pub mod whatsapp_cloud;

pub use build::{build_all, BuildDeps, BuildError, EmbeddedApi, KindConfig, EMBEDDED_SIM};
pub use metered::Metered;
pub use webhook::Webhook;

use std::time::Duration;

use async_trait::async_trait;

use crate::job::Job;

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// One id per submitted part, in part order; receipts name these.
    pub message_ids: Vec<String>,
    pub segments: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The provider asked us to slow down; the message was not taken.
    #[error("provider throttled the submit; retry after {retry_after:?}")]
    Throttled { retry_after: Duration },
    /// A failure that may pass (system error, queue full); the message was not taken.
    #[error("transient provider failure ({code}): {message}")]
    Transient { code: String, message: String },
    /// No connection to the provider is up.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused this message for good (bad address, bad content).
    #[error("provider rejected the message ({code}): {message}")]
    Rejected { code: String, message: String },
    /// Sent, but no answer came (`cause`: `response_timeout` within `after`, or
    /// `connection_closed`): the provider may or may not have taken it, so it is never resent.
    #[error("no answer from the provider ({cause}, waited up to {after:?}); it may have taken the message")]
    Ambiguous { after: Duration, cause: &'static str },
    /// The provider kept failing transiently and trying again would outlive the job's validity
    /// (or would resend parts it already took): give up for good; the job ends `failed`.
    #[error("provider failure ({code}), not retried further: {message}")]
    Failed { code: String, message: String },
    /// Nothing was written: the job's claim belongs to another instance now (this one stalled
    /// past its heartbeat), which handles it. Dropped without a report.
    #[error("the job's claim is held by another instance now; nothing was sent")]
    Fenced,
}

impl SendError {
    /// Whether sending the same message again later is safe and may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. } | Self::Unavailable(_))
    }

    /// The `cause` label of `sendgate_submits_ambiguous_total`, for an ambiguous answer.
    pub fn ambiguous_cause(&self) -> Option<&'static str> {
        match self {
            Self::Ambiguous { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// The `outcome` label of `sendgate_provider_requests_total`.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Transient { .. } | Self::Unavailable(_) => "retry",
            Self::Rejected { .. } => "rejected",
            Self::Ambiguous { .. } => "timeout",
            Self::Failed { .. } => "failed",
            Self::Fenced => "fenced",
        }
    }
}

/// The step right before a job's first message is written to the provider: the pipeline marks
/// the job `submitting` there, so that what a crash leaves ambiguous is only what was on the
/// wire. A provider calls [`OnWire::enter`] once per job, after its waits (connection, window,
/// pauses, rate) and right before the write.
pub trait OnWire: Send + Sync {
    /// Resolves `true` once the job is marked; `false`: write nothing, answer
    /// [`SendError::Fenced`].
    fn enter(&self) -> Entry;

    /// Keeps the provider's in-flight slot (an SMPP window permit) of an accepted job until
    /// the pipeline has recorded the answer: what a crash can leave ambiguous is then at most
    /// the slots (`binds × window`), never a queue of answered-but-unrecorded jobs as well.
    fn keep(&self, slot: Box<dyn Send + Sync>) {
        drop(slot);
    }
}

/// The answer to [`OnWire::enter`]: known at once, or to come from the gate's store call. A
/// plain future, not a boxed one: every job on the hot path waits on one.
pub enum Entry {
    Ready(bool),
    Waiting(tokio::sync::oneshot::Receiver<bool>),
}

impl std::future::Future for Entry {
    type Output = bool;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<bool> {
        match self.get_mut() {
            Self::Ready(ours) => std::task::Poll::Ready(*ours),
            // The gate gone without answering: the process is stopping; write nothing.
            Self::Waiting(rx) => std::pin::Pin::new(rx).poll(cx).map(|answer| answer.unwrap_or(false)),
        }
    }
}

/// A gate that is always open: callers outside the pipeline (tests, tools) with no claim.
pub struct Unclaimed;

impl OnWire for Unclaimed {
    fn enter(&self) -> Entry {
        Entry::Ready(true)
    }
}

/// What `/readyz` shows of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProviderStatus {
    pub ready: bool,
    /// Connections up and configured-but-down (SMPP binds; 0/0 for providers without any).
    pub binds_up: usize,
    pub binds_down: usize,
    /// Why the provider is down when it knows (e.g. the SMSC refused our credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name: `route` values, report `provider`, metric label.
    fn name(&self) -> &str;
    /// Channels this provider serves.
    fn channels(&self) -> &[String];
    /// Share of its channels' traffic.
    fn weight(&self) -> u32;
    /// How long to wait for a final receipt before ending a job `unknown`.
    fn receipt_timeout(&self) -> Duration;
    /// At least one connection is up and can take a message now.
    fn is_ready(&self) -> bool;
    /// Connection detail for `/readyz`.
    fn status(&self) -> ProviderStatus {
        ProviderStatus { ready: self.is_ready(), ..ProviderStatus::default() }
    }
    /// Hands one job's message to the provider; resolves with its answer. `wire` is entered
    /// right before the first write (see [`OnWire`]).
    async fn send(&self, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError>;
    /// Closes connections politely (SMPP unbind) and stops reconnecting.
    async fn shutdown(&self);
    /// What `job` costs here in SMS segments, the unit rate limits count (one for providers
    /// that do not split text).
    fn segments(&self, _job: &Job) -> u32 {
        1
    }
    /// The sender id `job` goes out with: its `from`, else this provider's default.
    fn sender<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        job.from.as_deref()
    }
    /// Segments per second each of this provider's senders may send across instances when
    /// `[rate_limits.senders]` names none (WhatsApp's per-number throughput); `None`: no
    /// such default.
    fn sender_rate(&self) -> Option<f64> {
        None
    }
    /// The webhook mounted at `/v1/webhooks/{name}`, for providers that push receipts or
    /// inbound messages over HTTP; `None` (no route) by default.
    fn webhook(&self) -> Option<&dyn Webhook> {
        None
    }
    /// For providers that report reads (chat channels): how long after a job's final
    /// `delivered` its `read` status is still reported as the non-final `read` event (the
    /// store keeps the job that long). `None` (the default): no reads come.
    fn read_window(&self) -> Option<Duration> {
        None
    }
}
