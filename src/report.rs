//! Report events: what the gateway tells the CRM about a job (CONTRACT.md, "Report event").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{Channel, Job};

/// What happened to a job. `final` is derived from the kind, never set by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Accepted,
    Deferred,
    Duplicate,
    Read,
    Delivered,
    Undelivered,
    Expired,
    Rejected,
    Suppressed,
    Failed,
    Unknown,
}

impl EventKind {
    /// Whether this event ends the job: the invariant is exactly one of these per job id.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Accepted | Self::Deferred | Self::Duplicate | Self::Read)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Deferred => "deferred",
            Self::Duplicate => "duplicate",
            Self::Read => "read",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Suppressed => "suppressed",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// Why a job was deferred or rejected (`reason` in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Scheduled,
    QuietHours,
    RateLimited,
    TierCap,
    ProviderUnavailable,
    InvalidJob,
    ProviderRejected,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::QuietHours => "quiet_hours",
            Self::RateLimited => "rate_limited",
            Self::TierCap => "tier_cap",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::InvalidJob => "invalid_job",
            Self::ProviderRejected => "provider_rejected",
        }
    }
}

/// The `error` object of a report: a provider code and/or a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReportError {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    pub message: String,
}

/// One report event, serialized exactly as CONTRACT.md shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub job_id: String,
    pub tenant: String,
    pub channel: String,
    pub to: String,
    pub provider: Option<String>,
    pub event: EventKind,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub provider_message_id: Option<String>,
    pub segments: Option<u32>,
    pub reason: Option<Reason>,
    pub retry_at: Option<DateTime<Utc>>,
    pub error: Option<ReportError>,
    pub at: DateTime<Utc>,
    pub meta: BTreeMap<String, String>,
}

impl Report {
    /// A report about `job` with every optional field empty; callers fill what applies.
    pub fn about(job: &Job, event: EventKind, at: DateTime<Utc>) -> Self {
        Self::from_parts(&job.id, &job.tenant, job.channel.as_str(), &job.to, &job.meta, event, at)
    }

    /// A report for a job known only by its parts (a rejected record, a receipt's mapping).
    pub fn from_parts(
        job_id: &str,
        tenant: &str,
        channel: &str,
        to: &str,
        meta: &BTreeMap<String, String>,
        event: EventKind,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            job_id: job_id.to_owned(),
            tenant: tenant.to_owned(),
            channel: channel.to_owned(),
            to: to.to_owned(),
            provider: None,
            event,
            is_final: event.is_final(),
            provider_message_id: None,
            segments: None,
            reason: None,
            retry_at: None,
            error: None,
            at,
            meta: meta.clone(),
        }
    }

    pub fn with_provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_owned());
        self
    }

    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn with_error(mut self, code: Option<String>, message: impl Into<String>) -> Self {
        self.error = Some(ReportError { code, message: message.into() });
        self
    }
}

/// Channel names are owned by `job`; reports carry them as strings so a report can be built
/// for a record whose channel did not parse.
impl From<Channel> for String {
    fn from(c: Channel) -> Self {
        c.as_str().to_owned()
    }
}
