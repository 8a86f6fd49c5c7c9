//! Cascades (docs/cascades.md): a job tried on one channel after another until a step's result
//! counts as success. Each step runs as a job of its own in the store, under its own store id
//! ([`store_id`]), so every step gets the claim, fencing and exactly-once machinery of any job;
//! its reports carry the job's own id and a `step` object. A step's terminal outcome is the
//! job's final ([`StepRef::ends_cascade`]) or a non-final `step` event, and recording that
//! event parks the next step in the same store step (`record_events`).

mod resolve;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use resolve::Cascades;

use crate::job::{Job, Until};
use crate::provider::price::Micros;
use crate::report::{EventKind, Report};
use crate::telemetry;

/// Between a job id and a step index in a step's store id. Job ids are printable ASCII
/// without spaces, so no job id can be a step's store id.
const SEP: &str = " #";

/// The metrics label of a cascade given inline in its job (configured ones go by name).
pub const INLINE: &str = "inline";

/// The store id of step `index` of job `job_id`: step 0 keeps the job's id (its record's claim
/// and duplicate detection are the job's), later steps get `job_id #index`.
pub fn store_id(job_id: &str, index: u32) -> String {
    if index == 0 {
        job_id.to_owned()
    } else {
        format!("{job_id}{SEP}{index}")
    }
}

/// The job id and step index of a store id (`(id, 0)` for a job's own id).
pub fn split_store_id(id: &str) -> (&str, u32) {
    match id.rsplit_once(SEP) {
        Some((job, k)) => match k.parse() {
            Ok(k) => (job, k),
            Err(_) => (id, 0),
        },
        None => (id, 0),
    }
}

/// What every report of a step, and the store's copy of an accepted step, knows about the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRef {
    /// The job's own id (the step's store id is [`StepRef::store_id`]).
    pub job_id: String,
    pub index: u32,
    /// The cascade's name in config, or [`INLINE`]: a bounded metrics label.
    pub cascade: String,
    pub until: Until,
    /// No step follows: its outcome is the job's final whatever it is.
    pub last: bool,
    /// The job's own validity: once past it, no later step could go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_expires_at: Option<DateTime<Utc>>,
    /// The step's decision time, where it has one (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_ms: Option<u64>,
    /// Once accepted: when its decision time ends (its receipt deadline, at the latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_by: Option<DateTime<Utc>>,
}

/// The `step` object of a report (docs/reports.md): which step of its job's cascade it is
/// about, and on the step's terminal event its outcome and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportStep {
    pub index: u32,
    pub cascade: String,
    pub channel: String,
    /// On the step's terminal event (a `step` event, or the job's final): what the step came to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<EventKind>,
    /// On the terminal event of an accepted step with a price: what the step cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// A result of the step that came after the step had ended (its decision time over):
    /// recorded and counted, never a second final, never a fallback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
}

impl StepRef {
    pub fn store_id(&self) -> String {
        store_id(&self.job_id, self.index)
    }

    /// Whether this step ending with `event` at `at` ends the job: success for its `until`
    /// (for `accepted`, anything once the provider took it: see complete.rs), no step after
    /// it, or the job's own validity over (no later step could go).
    pub fn ends_cascade(&self, event: EventKind, at: DateTime<Utc>) -> bool {
        self.last || (event == EventKind::Delivered && self.until == Until::Delivered) || self.job_expires_at.is_some_and(|e| e <= at)
    }

    /// Makes `r`, built for the step's store id, a report of the job: its own id, the `step`
    /// object, and a terminal event that does not end the job turned into a non-final `step`.
    pub fn stamp(&self, r: &mut Report) {
        r.job_id.clone_from(&self.job_id);
        let mut step =
            ReportStep { index: self.index, cascade: self.cascade.clone(), channel: r.channel.clone(), outcome: None, cost: None, currency: None, late: false };
        if r.event.is_final() {
            step.outcome = Some(r.event);
            if !self.ends_cascade(r.event, r.at) {
                // When the next step goes: now, or for a delivered step that waits for its
                // read, when its decision time ends.
                let waits = r.event == EventKind::Delivered && self.until == Until::Read;
                r.retry_at = Some(if waits { self.decide_by.unwrap_or(r.at).max(r.at) } else { r.at });
                r.event = EventKind::Step;
                r.is_final = false;
            }
        }
        r.step = Some(Box::new(step));
    }
}

/// A receipt of a step that had already ended (its decision time passed, the cascade moved
/// on): a non-final `step` event flagged `late`, whatever the outcome; counted.
pub fn late(mut r: Report) -> Report {
    if let Some(s) = r.step.as_mut() {
        s.outcome = Some(if r.event == EventKind::Step { s.outcome.unwrap_or(r.event) } else { r.event });
        s.late = true;
        r.event = EventKind::Step;
        r.is_final = false;
        metrics::counter!(telemetry::CASCADE_LATE_RESULTS_TOTAL, "cascade" => s.cascade.clone()).increment(1);
    }
    r
}

/// The step a job is on, kept on the job of that step ([`Job::step`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepCtx {
    pub at: StepRef,
    /// The job as read (with its `cascade`): what a step's job is stored as.
    pub parent: Arc<Job>,
    pub step: crate::job::Step,
}

/// For a `step` event (a step ended without ending its job): the next step's store id and
/// when it is due. Recording the event parks it (`History::record_events`).
pub fn next_step(r: &Report) -> Option<(String, DateTime<Utc>)> {
    let s = r.step.as_ref().filter(|s| r.event == EventKind::Step && !s.late)?;
    Some((store_id(&r.job_id, s.index + 1), r.retry_at.unwrap_or(r.at)))
}

/// Whether a `read` of this step can still win it: it waits for a read and a step follows.
pub fn waits_for_read(s: &StepRef) -> bool {
    s.until == Until::Read && !s.last
}

/// The job's final when a step's `read` came while its job was still tracked (with its
/// `delivered`, or without one): `delivered`, final, on the step's own claim.
pub fn read_with_delivery(mut r: Report) -> Report {
    if r.event == EventKind::Step {
        r.event = EventKind::Delivered;
        r.is_final = true;
        r.retry_at = None;
    }
    r
}

/// The job's final when a step's `read` came after its `delivered` ended the step but before
/// the next step started ([`crate::store::Schedule::cancel_steps`]): `delivered`, final, with
/// `step.outcome = "read"`, which puts it on the cancelled step's claim (`Report::store_id`).
pub fn read_won(mut r: Report) -> Report {
    r = read_with_delivery(r);
    if let Some(s) = r.step.as_mut() {
        s.outcome = Some(EventKind::Read);
    }
    r
}

/// Counts a published report of a cascade step: each step's terminal outcome by cascade and
/// step, and each fallback (a `step` event: the next step is parked).
pub fn count(r: &Report) {
    let Some(s) = &r.step else { return };
    let Some(outcome) = s.outcome.filter(|_| !s.late) else { return };
    let step = step_label(s.index);
    metrics::counter!(telemetry::CASCADE_STEPS_TOTAL, "cascade" => s.cascade.clone(), "step" => step, "outcome" => outcome.as_str()).increment(1);
    if r.event == EventKind::Step {
        metrics::counter!(telemetry::CASCADE_FALLBACKS_TOTAL, "cascade" => s.cascade.clone(), "step" => step).increment(1);
    }
}

/// A step index as a label: at most [`crate::job::cascade::MAX_STEPS`] values.
fn step_label(i: u32) -> &'static str {
    ["0", "1", "2", "3", "4", "5", "6", "7"].get(i as usize).copied().unwrap_or("8+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ids_round_trip_and_never_collide_with_job_ids() {
        assert_eq!(store_id("a", 0), "a");
        assert_eq!(store_id("a", 2), "a #2");
        assert_eq!(split_store_id("a #2"), ("a", 2));
        assert_eq!(split_store_id("a#2"), ("a#2", 0));
        assert_eq!(split_store_id("x"), ("x", 0));
        // A job id cannot hold a space: parsing refuses it.
        assert!(crate::job::parse(br#"{"id":"a #2","tenant":"t","channel":"sms","to":"+4915112345678","text":"x"}"#, Utc::now()).is_err());
    }
}
