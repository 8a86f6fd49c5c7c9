//! `senders`: a job whose `from` is not among its tenant's registered senders for its channel
//! ends `rejected` (`sender_not_registered`). A tenant or channel without a list takes any
//! sender, and a job without `from` goes out with the provider's default sender, the
//! operator's own. The registry also says which providers carry a sender, for routing.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::config::{sender_key, Config};
use crate::job::Job;
use crate::report::{EventKind, Reason};
use crate::store::StoreError;

/// Sender key ([`sender_key`]) → the providers that carry it (`None`: every provider).
type SenderList = HashMap<String, Option<Vec<String>>>;

/// What a job's sender is to its tenant's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderCheck<'a> {
    /// No `from`, or no list for the job's tenant and channel.
    Unrestricted,
    /// Listed; carried by these providers only (`None`: by every provider of the channel).
    Registered(Option<&'a [String]>),
    NotRegistered,
}

/// The configured sender lists: tenant → channel → senders.
#[derive(Debug, Default)]
pub struct SenderRegistry {
    lists: HashMap<String, HashMap<String, SenderList>>,
}

impl SenderRegistry {
    pub fn from_config(cfg: &Config) -> Self {
        let lists = cfg
            .tenants
            .iter()
            .filter(|(_, t)| !t.senders.is_empty())
            .map(|(tenant, t)| {
                let by_channel = t
                    .senders
                    .iter()
                    .map(|(channel, entries)| (channel.clone(), entries.iter().map(|e| (sender_key(&e.from).to_owned(), e.providers.clone())).collect()))
                    .collect();
                (tenant.clone(), by_channel)
            })
            .collect();
        Self { lists }
    }

    pub fn check(&self, job: &Job) -> SenderCheck<'_> {
        let Some(from) = job.from.as_deref() else { return SenderCheck::Unrestricted };
        let Some(list) = self.lists.get(&job.tenant).and_then(|t| t.get(job.channel.as_str())) else { return SenderCheck::Unrestricted };
        match list.get(sender_key(from)) {
            Some(providers) => SenderCheck::Registered(providers.as_deref()),
            None => SenderCheck::NotRegistered,
        }
    }

    /// The providers `job` may go through because of its sender; `None`: any of its channel's.
    pub fn providers_for(&self, job: &Job) -> Option<&[String]> {
        match self.check(job) {
            SenderCheck::Registered(providers) => providers,
            SenderCheck::Unrestricted | SenderCheck::NotRegistered => None,
        }
    }
}

pub struct Senders {
    registry: SenderRegistry,
}

impl Senders {
    pub fn new(registry: SenderRegistry) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl Policy for Senders {
    fn name(&self) -> &'static str {
        "senders"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], _now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.registry.lists.is_empty() {
            return Ok(());
        }
        for c in batch.iter_mut().filter(|c| c.is_open()) {
            if self.registry.check(c.job) == SenderCheck::NotRegistered {
                let job = c.job;
                let from = job.from.as_deref().unwrap_or_default();
                let message = format!("from: sender {from:?} is not registered for tenant {} on channel {}", job.tenant, job.channel.as_str());
                c.verdict = Verdict::Stop { event: EventKind::Rejected, reason: Some(Reason::SenderNotRegistered), message: Some(message) };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn registry() -> SenderRegistry {
        let cfg = crate::config::parse(
            r#"
[providers.smsc-a]
kind = "smpp"
address = "127.0.0.1:2775"
system_id = "x"
password = "y"
[providers.smsc-b]
kind = "smpp"
address = "127.0.0.1:2776"
system_id = "x"
password = "y"
[tenants.acme.senders]
sms = ["ACME", { from = "ACME-OTP", providers = ["smsc-b"] }, "+4915100000000"]
[tenants.open]
tz = "UTC"
"#,
        )
        .unwrap();
        SenderRegistry::from_config(&cfg)
    }

    fn job(tenant: &str, channel: &str, to: &str, from: Option<&str>) -> Job {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let from = from.map(|f| format!(r#","from":"{f}""#)).unwrap_or_default();
        crate::job::parse(format!(r#"{{"id":"j","tenant":"{tenant}","channel":"{channel}","to":"{to}","text":"x"{from}}}"#).as_bytes(), now).unwrap()
    }

    #[test]
    fn a_sender_is_checked_against_its_tenants_list_for_its_channel() {
        let r = registry();
        let b = ["smsc-b".to_owned()];
        for (tenant, channel, to, from, want) in [
            ("acme", "sms", "+4915100000001", Some("ACME"), SenderCheck::Registered(None)),
            ("acme", "sms", "+4915100000001", Some("ACME-OTP"), SenderCheck::Registered(Some(&b[..]))),
            // A number matches with or without its `+`.
            ("acme", "sms", "+4915100000001", Some("4915100000000"), SenderCheck::Registered(None)),
            // Names are compared as the handset shows them: case counts.
            ("acme", "sms", "+4915100000001", Some("Acme"), SenderCheck::NotRegistered),
            ("acme", "sms", "+4915100000001", Some("OTHER"), SenderCheck::NotRegistered),
            // The provider's default sender is the operator's: allowed.
            ("acme", "sms", "+4915100000001", None, SenderCheck::Unrestricted),
            // No list for the channel, or for the tenant: today's behaviour.
            ("acme", "whatsapp", "+4915100000001", Some("106540352242922"), SenderCheck::Unrestricted),
            ("open", "sms", "+4915100000001", Some("ANYONE"), SenderCheck::Unrestricted),
            ("unlisted", "sms", "+4915100000001", Some("ANYONE"), SenderCheck::Unrestricted),
        ] {
            let j = job(tenant, channel, to, from);
            assert_eq!(r.check(&j), want, "{tenant} {channel} {from:?}");
        }
    }

    #[tokio::test]
    async fn an_unregistered_sender_is_rejected_naming_the_field() {
        let jobs = [job("acme", "sms", "+4915100000001", Some("SPOOF")), job("acme", "sms", "+4915100000001", Some("ACME"))];
        let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
        Senders::new(registry()).evaluate(&mut batch, Utc::now()).await.unwrap();
        let Verdict::Stop { event, reason, message } = &batch[0].verdict else { panic!("{:?}", batch[0].verdict) };
        assert_eq!((*event, *reason), (EventKind::Rejected, Some(Reason::SenderNotRegistered)));
        assert_eq!(message.as_deref(), Some("from: sender \"SPOOF\" is not registered for tenant acme on channel sms"));
        assert_eq!(batch[1].verdict, Verdict::Allow);
    }
}
