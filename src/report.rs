//! Report events: what the gateway tells the CRM about a job (CONTRACT.md, "Report event").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{Channel, Job};
use crate::provider::price::Micros;

/// Longest `tenant`, `channel` or `to` a report echoes from a job that did not parse: room
/// for every valid value (a chat id is at most 128 bytes), so only garbage is cut.
pub const ECHO_MAX_BYTES: usize = 128;
/// Longest `error.message`: it may quote the value at fault, and that value may be huge.
pub const ERROR_MESSAGE_MAX_BYTES: usize = 1024;
/// Most `meta` bytes (keys plus values) a report echoes: the contract's limit on a job's meta.
pub const META_ECHO_MAX_BYTES: usize = crate::job::META_MAX_BYTES;
/// What a cut value ends with, so a reader can tell it was cut.
const CUT_MARK: &str = "…";

/// `s` if it fits in `max` bytes, else its longest prefix (on a character boundary) that
/// does, followed by `…`. With the bounds above, a report stays under 64 KiB even when every
/// echoed character needs a six-byte JSON escape: far below a Kafka record's 1 MiB default.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    format!("{}{CUT_MARK}", &s[..s.floor_char_boundary(max)])
}

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
    /// A cascade step ended without ending its job (`step.outcome` says how): the next step
    /// goes. Non-final (docs/cascades.md).
    Step,
}

impl EventKind {
    /// Whether this event ends the job: the invariant is exactly one of these per job id.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Accepted | Self::Deferred | Self::Duplicate | Self::Read | Self::Step)
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
            Self::Step => "step",
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
    /// The job's `from` is not among its tenant's registered senders for its channel.
    SenderNotRegistered,
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
            Self::SenderNotRegistered => "sender_not_registered",
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
    /// On `accepted`, from the provider's price table: price × segments (SMS) or per message,
    /// an exact decimal string in `currency` (docs/reports.md).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost: Option<Micros>,
    /// ISO 4217 code of `cost` and `refund`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub currency: Option<String>,
    /// On a final after `accepted` that the provider refunds (its `refund_on`): the cost back.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refund: Option<Micros>,
    /// On every report of a job with a cascade: which step it is about (docs/reports.md).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<Box<crate::cascade::ReportStep>>,
    /// On `duplicate`: the record it answers, `topic/partition/offset` (absent for a job that
    /// came over HTTP in `sendgate dev`). One record, one `duplicate` (docs/reports.md).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<String>,
}

impl Report {
    /// A report about `job` with every optional field empty; callers fill what applies.
    pub fn about(job: &Job, event: EventKind, at: DateTime<Utc>) -> Self {
        let mut r = Self::from_parts(&job.id, &job.tenant, job.channel.as_str(), &job.to, &job.meta, event, at);
        if let Some(s) = &job.step {
            s.at.stamp(&mut r);
        }
        r
    }

    /// The id of the claim this report belongs to in the store: its job's, or for a later
    /// step of a cascade that step's own (`crate::cascade::store_id`).
    pub fn store_id(&self) -> std::borrow::Cow<'_, str> {
        match &self.step {
            // A final won by a `read` ends the next step, which it cancelled (cascade::read_won).
            Some(s) if self.is_final && s.outcome == Some(EventKind::Read) => crate::cascade::store_id(&self.job_id, s.index + 1).into(),
            Some(s) if s.index > 0 => crate::cascade::store_id(&self.job_id, s.index).into(),
            _ => self.job_id.as_str().into(),
        }
    }

    /// Whether this report ends what its claim was for: the job's final, or a cascade step's
    /// non-final `step` event (which ends that step's claim and parks the next step).
    pub fn ends_claim(&self) -> bool {
        self.is_final || (self.event == EventKind::Step && self.step.as_ref().is_some_and(|s| !s.late))
    }

    /// A report for a job known only by its parts (a rejected record, a receipt's mapping).
    pub fn from_parts(job_id: &str, tenant: &str, channel: &str, to: &str, meta: &BTreeMap<String, String>, event: EventKind, at: DateTime<Utc>) -> Self {
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
            cost: None,
            currency: None,
            refund: None,
            step: None,
            record: None,
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

    /// `message` is cut to [`ERROR_MESSAGE_MAX_BYTES`] (and `code` to [`ECHO_MAX_BYTES`]):
    /// both may quote what a client or a provider sent.
    pub fn with_error(mut self, code: Option<String>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = if message.len() > ERROR_MESSAGE_MAX_BYTES { bounded(&message, ERROR_MESSAGE_MAX_BYTES) } else { message };
        let code = code.map(|c| if c.len() > ECHO_MAX_BYTES { bounded(&c, ECHO_MAX_BYTES) } else { c });
        self.error = Some(ReportError { code, message });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_a_character_boundary_and_marks_the_cut() {
        for (s, max, want) in [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("eleven char", 10, "eleven cha…"),
            // "д" is two bytes: a cut inside it backs off to the character before.
            ("ддддд", 5, "дд…"),
            ("", 0, ""),
        ] {
            assert_eq!(bounded(s, max), want, "{s:?} at {max}");
        }
    }

    #[test]
    fn a_huge_error_message_and_code_are_cut() {
        let r = Report::from_parts("j", "t", "sms", "+1", &BTreeMap::new(), EventKind::Rejected, Utc::now())
            .with_error(Some("c".repeat(1000)), "m".repeat(1 << 20));
        let e = r.error.unwrap();
        assert_eq!(e.message.len(), ERROR_MESSAGE_MAX_BYTES + CUT_MARK.len());
        assert_eq!(e.code.unwrap().len(), ECHO_MAX_BYTES + CUT_MARK.len());
    }
}
