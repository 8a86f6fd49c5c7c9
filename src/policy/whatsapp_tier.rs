//! `whatsapp_tier`: WhatsApp Business messaging limits. A portfolio (`[whatsapp.portfolios.<name>]`,
//! a group of phone number ids) reaches at most `tier` unique recipients outside a
//! customer-service window in a moving `window`; a job over it is deferred (reason `tier_cap`)
//! until a counted recipient leaves the window. Meta's pair limit (one message per
//! `pair_interval` from one number to one recipient) defers with reason `rate_limited`.
//! One store call per batch decides and records, atomically across instances.
//!
//! What counts, and why (Meta: "the maximum number of unique WhatsApp user phone numbers your
//! business can deliver messages to, outside of a customer service window, within a moving
//! 24-hour period"):
//! - a recipient already counted in the window costs nothing, but is counted again at the
//!   new send's time: a user we messaged at 20:00 is still one we delivered to within the last
//!   24 h at 00:01 the next day, even if the first message was at 00:00 the day before. Keeping
//!   the first time instead would free that slot at 00:00 and could exceed Meta's count.
//! - a recipient who wrote to that number in the last 24 h is inside its service window: not
//!   counted, not refreshed ([`WhatsappTier::record_inbound`] records those contacts).
//! - a job is counted when it is allowed, not when the provider confirms: one that a later
//!   policy defers or a provider fails still holds its slot (it comes back for free). Erring
//!   that way never exceeds Meta's limit.
//! - a job whose `from` is in no portfolio (or that has none) is allowed and counted by
//!   `sendgate_whatsapp_unmanaged_total{reason}`: limits are opt-in per configured number.
//!
//! The admin API (`/v1/admin/whatsapp/...`) builds on [`WhatsappTier::usage`] and
//! [`WhatsappTier::record_inbound`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Candidate, Policy, Verdict};
use crate::config::WhatsappConfig;
use crate::job::{Channel, Job};
use crate::report::Reason;
use crate::store::whatsapp::{Attempt, Decision, Portfolio};
use crate::store::{Store, StoreError};
use crate::telemetry;

pub struct WhatsappTier {
    store: Arc<dyn Store>,
    portfolios: Vec<Spec>,
    /// Phone number id → index into `portfolios` (config validation keeps numbers unique).
    by_number: HashMap<String, usize>,
    /// The number a job without `from` goes out from, when every WhatsApp provider has the
    /// same default (`phone_number_id`): such a job counts against that number's portfolio.
    default_from: Option<String>,
}

struct Spec {
    name: String,
    tier: Option<u64>,
    window: Duration,
    pair_interval: Duration,
}

impl Spec {
    fn as_store(&self) -> Portfolio<'_> {
        Portfolio { name: &self.name, tier: self.tier, window: self.window, pair_interval: self.pair_interval }
    }
}

/// A portfolio's limit and what it used, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortfolioUsage {
    pub portfolio: String,
    /// `None`: unlimited (then nothing is counted and `used` is 0).
    pub tier: Option<u64>,
    pub window: Duration,
    pub used: u64,
    /// When the least recently counted recipient in the window was counted.
    pub oldest: Option<DateTime<Utc>>,
    /// When that recipient leaves the window and a slot frees: `oldest + window`.
    pub next_release: Option<DateTime<Utc>>,
}

impl PortfolioUsage {
    /// The admin API's JSON: `tier` is a number or `"unlimited"`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "portfolio": self.portfolio,
            "tier": self.tier.map_or(serde_json::json!("unlimited"), |t| serde_json::json!(t)),
            "window_s": self.window.as_secs(),
            "used": self.used,
            "remaining": self.tier.map(|t| t.saturating_sub(self.used)),
            "oldest": self.oldest,
            "next_release": self.next_release,
        })
    }
}

/// Why [`WhatsappTier::record_inbound`] refused a batch.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// Nothing was recorded: entry `index` is wrong (a caller's mistake, a `400`).
    #[error("[{index}].{field}: {message}")]
    Invalid { index: usize, field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WhatsappTier {
    pub fn new(store: Arc<dyn Store>, cfg: &WhatsappConfig) -> Self {
        let mut portfolios = Vec::new();
        let mut by_number = HashMap::new();
        for (name, p) in &cfg.portfolios {
            for n in &p.numbers {
                by_number.insert(n.clone(), portfolios.len());
            }
            if let Some(t) = p.tier.limit() {
                metrics::gauge!(telemetry::WHATSAPP_TIER_LIMIT_RECIPIENTS, "portfolio" => name.clone()).set(t as f64);
            }
            portfolios.push(Spec { name: name.clone(), tier: p.tier.limit(), window: p.window, pair_interval: p.pair_interval });
        }
        Self { store, portfolios, by_number, default_from: None }
    }

    /// Counts jobs without `from` against `number` (the providers' one default).
    pub fn with_default_from(mut self, number: Option<String>) -> Self {
        self.default_from = number;
        self
    }

    /// The default number a job without `from` goes out from on the `whatsapp` channel: the
    /// providers' `phone_number_id`, if every provider serving the channel has one and they
    /// agree (with several, which one a job takes is the router's choice, unknown here).
    pub fn default_from_of(providers: &std::collections::BTreeMap<String, crate::config::ProviderConfig>) -> Option<String> {
        let mut defaults = providers.values().filter_map(|p| match p {
            crate::config::ProviderConfig::WhatsappCloud(c) if c.channels.iter().any(|ch| ch == Channel::Whatsapp.as_str()) => Some(c.phone_number_id.clone()),
            _ => None,
        });
        let first = defaults.next()??;
        defaults.all(|d| d.as_deref() == Some(first.as_str())).then_some(first)
    }

    /// One portfolio's use of its tier at `now`; `None` if no portfolio has that name.
    pub async fn usage(&self, portfolio: &str, now: DateTime<Utc>) -> Result<Option<PortfolioUsage>, StoreError> {
        let Some(p) = self.portfolios.iter().find(|p| p.name == portfolio) else { return Ok(None) };
        let u = if p.tier.is_some() {
            let u = self.store.whatsapp_usage(&p.name, p.window, now).await?;
            metrics::gauge!(telemetry::WHATSAPP_TIER_USED_RECIPIENTS, "portfolio" => p.name.clone()).set(u.used as f64);
            u
        } else {
            crate::store::whatsapp::Usage { used: 0, oldest: None }
        };
        let window = chrono::Duration::from_std(p.window).unwrap_or(chrono::Duration::MAX);
        Ok(Some(PortfolioUsage {
            portfolio: p.name.clone(),
            tier: p.tier,
            window: p.window,
            used: u.used,
            oldest: u.oldest,
            next_release: u.oldest.and_then(|o| o.checked_add_signed(window)),
        }))
    }

    /// Every configured portfolio's name, in config order.
    pub fn portfolios(&self) -> impl Iterator<Item = &str> {
        self.portfolios.iter().map(|p| p.name.as_str())
    }

    /// Records that recipients wrote to phone numbers (`(number, recipient, at)`): each opens a
    /// 24 h customer-service window in which that number's jobs to them are not counted. The
    /// WhatsApp webhook and `POST /v1/admin/whatsapp/inbound` call this. All or nothing: one
    /// bad entry refuses the batch.
    pub async fn record_inbound(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), InboundError> {
        for (index, (number, recipient, _)) in contacts.iter().enumerate() {
            if !(1..=32).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InboundError::Invalid { index, field: "number", message: format!("not a phone number id (1-32 digits): {number:?}") });
            }
            if !crate::job::is_e164(recipient) {
                return Err(InboundError::Invalid { index, field: "from", message: format!("not an E.164 number: {recipient:?}") });
            }
        }
        Ok(self.store.record_inbound_contacts(contacts).await?)
    }
}

#[async_trait]
impl Policy for WhatsappTier {
    fn name(&self) -> &'static str {
        "whatsapp_tier"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        // Only the portfolios this batch touches go to the store, in first-seen order.
        let mut touched: Vec<usize> = Vec::new();
        let mut slot: HashMap<usize, usize> = HashMap::new();
        let mut asked: Vec<(usize, Attempt)> = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            // Copied out: the attempts borrow the job, not the batch we set verdicts in below.
            let job: &Job = c.job;
            if !c.is_open() || job.channel != Channel::Whatsapp {
                continue;
            }
            let Some(from) = job.from.as_deref().or(self.default_from.as_deref()) else {
                metrics::counter!(telemetry::WHATSAPP_UNMANAGED_TOTAL, "reason" => "no_from").increment(1);
                continue;
            };
            let Some(&p) = self.by_number.get(from) else {
                metrics::counter!(telemetry::WHATSAPP_UNMANAGED_TOTAL, "reason" => "unknown_number").increment(1);
                continue;
            };
            let spec = &self.portfolios[p];
            if spec.tier.is_none() && spec.pair_interval.is_zero() {
                continue;
            }
            let portfolio = *slot.entry(p).or_insert_with(|| {
                touched.push(p);
                touched.len() - 1
            });
            asked.push((i, Attempt { portfolio, number: from, recipient: &job.to, job_id: &job.id }));
        }
        if asked.is_empty() {
            return Ok(());
        }
        let portfolios: Vec<Portfolio> = touched.iter().map(|&p| self.portfolios[p].as_store()).collect();
        let attempts: Vec<Attempt> = asked.iter().map(|(_, a)| a.clone()).collect();
        let admission = self.store.whatsapp_admit(&portfolios, &attempts, now).await?;
        let decided: Vec<(usize, &str, Decision)> = asked.iter().zip(&admission.decisions).map(|((i, a), d)| (*i, portfolios[a.portfolio].name, *d)).collect();
        for (i, portfolio, decision) in decided {
            let (until, reason, label) = match decision {
                Decision::Allow => continue,
                Decision::TierCap { until } => (until, Reason::TierCap, "tier_cap"),
                Decision::PairLimit { until } => (until, Reason::RateLimited, "pair_limit"),
            };
            metrics::counter!(telemetry::WHATSAPP_DEFERRED_TOTAL, "portfolio" => portfolio.to_owned(), "reason" => label).increment(1);
            batch[i].verdict = Verdict::Defer { until, reason };
        }
        for (p, used) in portfolios.iter().zip(&admission.used) {
            if p.tier.is_some() {
                metrics::gauge!(telemetry::WHATSAPP_TIER_USED_RECIPIENTS, "portfolio" => p.name.to_owned()).set(*used as f64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "whatsapp_tier_tests.rs"]
mod tests;
