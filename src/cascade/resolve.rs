//! From a job with a cascade to the job of one of its steps: the cascade by name from config
//! (`[cascades.NAME]`, or the tenant's default `[tenants.T] cascade`), or given inline; the
//! step by the index in the job's store id.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{split_store_id, StepCtx, StepRef, INLINE};
use crate::config::Config;
use crate::job::{CascadeSpec, Job, Step, Validity};

/// The cascades of the config, and each tenant's default.
#[derive(Debug, Default)]
pub struct Cascades {
    named: HashMap<String, Arc<[Step]>>,
    tenants: HashMap<String, String>,
}

/// Why a job's cascade could not be applied: the message (naming the field), and the step it
/// was for, so that its `rejected` final is recorded against that step's claim.
#[derive(Debug)]
pub struct Unresolved {
    pub message: String,
    pub at: StepRef,
}

impl Cascades {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            named: cfg.cascades.iter().map(|(n, c)| (n.clone(), c.steps.clone())).collect(),
            tenants: cfg.tenants.iter().filter_map(|(t, c)| Some((t.clone(), c.cascade.clone()?))).collect(),
        }
    }

    /// Makes `job` (a job read, or a step's job back from the scheduled set, id `job #k`) the
    /// job of its step, if it has a cascade: the step's channel, recipient, sender, content,
    /// route and validity, its id the step's store id, [`Job::step`] set. Jobs without a
    /// cascade and jobs already on their step are left as they are.
    pub fn resolve(&self, job: &mut Job, now: DateTime<Utc>) -> Result<(), Unresolved> {
        if job.step.is_some() {
            return Ok(());
        }
        let default;
        let spec = match (&job.cascade, self.tenants.get(&job.tenant)) {
            (Some(s), _) => &**s,
            (None, Some(name)) => {
                default = CascadeSpec::Named(name.clone());
                &default
            }
            (None, None) => return Ok(()),
        };
        let (job_id, index) = split_store_id(&job.id);
        let (job_id, index) = (job_id.to_owned(), index);
        let at = |cascade: &str, last: bool, decision: Option<std::time::Duration>, until| StepRef {
            job_id: job_id.clone(),
            index,
            cascade: cascade.to_owned(),
            until,
            last,
            job_expires_at: job.expires_at,
            decision_ms: decision.map(|d| d.as_millis() as u64),
            decide_by: None,
        };
        let fail = |message: String| Unresolved { message, at: at(INLINE, true, None, crate::job::Until::Delivered) };
        let (steps, label) = match spec {
            CascadeSpec::Named(n) => match self.named.get_key_value(n) {
                Some((n, s)) => (s.clone(), n.as_str()),
                None => return Err(fail(format!("cascade: no cascade {n:?} is configured"))),
            },
            CascadeSpec::Inline(s) => (s.clone(), INLINE),
        };
        let Some(step) = steps.get(index as usize) else {
            return Err(fail(format!("cascade: no step {index} in a cascade of {} steps (its config changed)", steps.len())));
        };
        let to = match &step.to {
            Some(t) => t.clone(),
            None => {
                crate::job::cascade::check_recipient_for(&step.channel, &job.to).map_err(|m| fail(format!("cascade[{index}].to: {m}")))?;
                job.to.clone()
            }
        };
        let at = at(label, index as usize + 1 == steps.len(), step.decision_time, step.until);
        let same_channel = step.channel == job.channel;
        let mut parent = job.clone();
        parent.id.clone_from(&job_id);
        let expires_at = match step.validity {
            None => job.expires_at,
            Some(v) => {
                let own = match v {
                    Validity::At(t) => t,
                    Validity::Ttl(d) => now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(30)),
                };
                Some(job.expires_at.map_or(own, |e| e.min(own)))
            }
        };
        job.id = at.store_id();
        job.channel = step.channel.clone();
        job.to = to;
        job.from = step.from.clone().or(if same_channel { job.from.take() } else { None });
        job.route = step.route.clone().or(if same_channel { job.route.take() } else { None });
        if let Some(c) = &step.content {
            job.content = c.clone();
        }
        job.expires_at = expires_at;
        job.step = Some(Box::new(StepCtx { at, parent: Arc::new(parent), step: step.clone() }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Channel, Until};

    fn job(extra: &str) -> Job {
        crate::job::parse(
            format!(r#"{{"id":"j1","tenant":"acme","channel":"sms","to":"+4915112345678","from":"ACME","text":"hi"{extra}}}"#).as_bytes(),
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn an_inline_step_takes_its_fields_and_its_store_id() {
        let c = Cascades::default();
        let mut j = job(r#","cascade":[{"channel":"telegram","to":"4242","decision_time":"10m"},{"channel":"sms","until":"accepted"}]"#);
        c.resolve(&mut j, Utc::now()).unwrap();
        assert_eq!((j.id.as_str(), j.channel.as_str(), j.to.as_str(), j.from.as_deref()), ("j1", "telegram", "4242", None));
        let s = j.step.as_ref().unwrap();
        assert_eq!((s.at.index, s.at.last, s.at.until, s.at.decision_ms), (0, false, Until::Delivered, Some(600_000)));
        // Written back as the job read, and read back as its second step by the store id.
        let mut again = crate::job::from_value(j.to_json(), Utc::now()).unwrap();
        again.id = crate::cascade::store_id("j1", 1);
        c.resolve(&mut again, Utc::now()).unwrap();
        assert_eq!((again.id.as_str(), again.channel.clone(), again.from.as_deref()), ("j1 #1", Channel::Sms, Some("ACME")));
        assert!(again.step.as_ref().unwrap().at.last);
    }

    #[test]
    fn a_step_without_a_to_must_suit_the_jobs_recipient() {
        let c = Cascades::default();
        let mut j = crate::job::parse(
            br#"{"id":"j1","tenant":"acme","channel":"telegram","to":"4242","text":"hi","cascade":[{"channel":"telegram"},{"channel":"sms"}]}"#,
            Utc::now(),
        )
        .unwrap();
        j.id = crate::cascade::store_id("j1", 1);
        let e = c.resolve(&mut j, Utc::now()).unwrap_err();
        assert!(e.message.starts_with("cascade[1].to: not an E.164 number"), "{}", e.message);
        assert_eq!(e.at.store_id(), "j1 #1");
    }

    #[test]
    fn an_unknown_name_is_rejected_by_field() {
        let c = Cascades::default();
        let mut j = job(r#","cascade":"nope""#);
        assert_eq!(c.resolve(&mut j, Utc::now()).unwrap_err().message, "cascade: no cascade \"nope\" is configured");
    }
}
