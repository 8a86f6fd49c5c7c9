//! Price tables: what a message costs on each provider, and what comes back when it fails.
//!
//! `[providers.NAME.pricing]` gives a currency, rows (inline, or a CSV file) of channel,
//! E.164 prefix, price and, for WhatsApp, pricing category; the longest prefix of the
//! recipient's number wins. An SMS costs its price per segment, anything else its price per
//! message. Amounts are exact integer micro-units ([`Micros`]).
//!
//! - this file: the config keys, the built table, the cost of a job ([`Prices::charge`]).
//! - `money`: [`Micros`], parsed from and printed as decimal strings.
//! - `csv`: reading `file`.

mod csv;
mod money;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use money::Micros;

use crate::job::{Content, Job};
use crate::report::EventKind;

/// `[providers.NAME.pricing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// ISO 4217 code of every price in the table: `"EUR"`.
    pub currency: String,
    /// Inline rows; `file` adds more.
    #[serde(default)]
    pub rows: Vec<PriceRow>,
    /// A CSV file of rows, `channel,prefix,price[,category]`, read at startup (relative paths
    /// from the working directory).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Final events after acceptance that the provider refunds: any of `undelivered`,
    /// `expired`, `rejected`. Those finals carry `refund` (the job's cost).
    #[serde(default)]
    pub refund_on: Vec<EventKind>,
    /// The category of a WhatsApp template not in `template_categories`.
    #[serde(default = "default_category")]
    pub default_category: Category,
    /// WhatsApp template name → its pricing category (Meta's, set when it was approved).
    #[serde(default)]
    pub template_categories: BTreeMap<String, Category>,
}

fn default_category() -> Category {
    // The dearest: an unlisted template is not under-counted.
    Category::Marketing
}

/// One price row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRow {
    pub channel: String,
    /// Leading digits of the E.164 number without `+`; `""` matches every recipient (and is
    /// the only prefix a chat id can match).
    #[serde(default)]
    pub prefix: String,
    /// Per SMS segment, or per message on other channels: `"0.0415"` (a number is taken as
    /// the decimal it is written as).
    pub price: Price,
    /// WhatsApp rows only (and required there).
    #[serde(default)]
    pub category: Option<Category>,
}

/// A price as written in the config: a decimal string, or a TOML number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(pub Micros);

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Price;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a decimal price like \"0.0415\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Price, E> {
                Micros::parse(v).map(Price).map_err(E::custom)
            }
            // Display prints the shortest decimal that reads back as the same float: the
            // digits the user wrote.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Price, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Price, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Price, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// WhatsApp's pricing categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
    /// Free-form messages inside a customer-service window (a job with `text`).
    Service,
}

impl Category {
    pub const ALL: [Self; 4] = [Self::Marketing, Self::Utility, Self::Authentication, Self::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "marketing",
            Self::Utility => "utility",
            Self::Authentication => "authentication",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What a job cost, kept with the job until its final (an additive field of the stored
/// `SentJob`, so older stored jobs without it still parse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub cost: Micros,
    pub currency: String,
    /// The finals that refund `cost`, as the provider's config said when the job was sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refund_on: Vec<EventKind>,
}

/// Events `refund_on` may name: finals that can follow acceptance without a delivery.
pub const REFUNDABLE: [EventKind; 3] = [EventKind::Undelivered, EventKind::Expired, EventKind::Rejected];

/// One provider's built table.
#[derive(Debug, Default)]
pub struct ProviderPrices {
    currency: String,
    refund_on: Vec<EventKind>,
    default_category: Option<Category>,
    template_categories: BTreeMap<String, Category>,
    /// (channel, category) → prefix → price.
    rows: HashMap<(String, Option<Category>), HashMap<String, Micros>>,
}

impl ProviderPrices {
    /// The table of `cfg` (rows, then the file's), checked: every mistake is pushed as
    /// `{path}.key: reason`. `channels`: those the provider serves.
    pub fn build(path: &str, cfg: PricingConfig, channels: &[String], errors: &mut Vec<String>) -> Self {
        if !(cfg.currency.len() == 3 && cfg.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            errors.push(format!("{path}.currency: not an ISO 4217 code like \"EUR\": {:?}", cfg.currency));
        }
        for (i, e) in cfg.refund_on.iter().enumerate() {
            if !REFUNDABLE.contains(e) {
                errors.push(format!("{path}.refund_on[{i}]: {:?} is not refundable (undelivered, expired, rejected)", e.as_str()));
            }
        }
        let mut table = Self {
            currency: cfg.currency,
            refund_on: cfg.refund_on,
            default_category: Some(cfg.default_category),
            template_categories: cfg.template_categories,
            rows: HashMap::new(),
        };
        let mut rows: Vec<(String, PriceRow)> = cfg.rows.into_iter().enumerate().map(|(i, r)| (format!("{path}.rows[{i}]"), r)).collect();
        let before = errors.len();
        if let Some(file) = &cfg.file {
            rows.extend(csv::read(&format!("{path}.file"), file, errors));
        }
        // A file that could not be read or parsed has said so already.
        if rows.is_empty() && errors.len() == before {
            errors.push(format!("{path}: has no price rows (give rows or file)"));
        }
        for (at, row) in rows {
            table.add(&at, row, channels, errors);
        }
        table
    }

    fn add(&mut self, at: &str, row: PriceRow, channels: &[String], errors: &mut Vec<String>) {
        if !channels.contains(&row.channel) {
            errors.push(format!("{at}.channel: the provider does not serve channel {:?}", row.channel));
        }
        if row.prefix.len() > 15 || !row.prefix.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(format!("{at}.prefix: not up to 15 digits of an E.164 number without '+': {:?}", row.prefix));
        }
        match (row.channel == "whatsapp", row.category) {
            (true, None) => errors.push(format!("{at}.category: required on channel whatsapp (marketing, utility, authentication, service)")),
            (false, Some(_)) => errors.push(format!("{at}.category: only whatsapp prices have a category")),
            _ => {}
        }
        let prices = self.rows.entry((row.channel.clone(), row.category)).or_default();
        if prices.insert(row.prefix.clone(), row.price.0).is_some() {
            errors.push(format!("{at}: a second price for channel {:?}, prefix {:?}{}", row.channel, row.prefix, category_note(row.category)));
        }
    }

    /// The price of one unit (SMS segment, message) of `job`: its category's row with the
    /// longest prefix of its number.
    pub fn unit_price(&self, job: &Job) -> Option<Micros> {
        let category = match (&job.channel, &job.content) {
            (crate::job::Channel::Whatsapp, Content::Template(t)) => Some(self.template_categories.get(&t.name).copied().or(self.default_category)?),
            (crate::job::Channel::Whatsapp, Content::Text(_)) => Some(Category::Service),
            _ => None,
        };
        let prices = self.rows.get(&(job.channel.as_str().to_owned(), category))?;
        let digits = job.to.strip_prefix('+').filter(|d| d.bytes().all(|b| b.is_ascii_digit())).unwrap_or("");
        (0..=digits.len()).rev().find_map(|n| prices.get(&digits[..n]).copied())
    }

    /// What `job`, accepted in `segments` segments, costs here.
    pub fn charge(&self, job: &Job, segments: u32) -> Option<Charge> {
        let unit = self.unit_price(job)?;
        let units = if job.channel == crate::job::Channel::Sms { segments } else { 1 };
        Some(Charge { cost: unit.times(units), currency: self.currency.clone(), refund_on: self.refund_on.clone() })
    }
}

fn category_note(c: Option<Category>) -> String {
    c.map(|c| format!(", category {}", c.as_str())).unwrap_or_default()
}

/// Every provider's table, by provider name.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    by_provider: BTreeMap<String, Arc<ProviderPrices>>,
}

impl Prices {
    pub fn insert(&mut self, provider: String, prices: ProviderPrices) {
        self.by_provider.insert(provider, Arc::new(prices));
    }

    pub fn get(&self, provider: &str) -> Option<&ProviderPrices> {
        self.by_provider.get(provider).map(Arc::as_ref)
    }

    /// What `job` cost on `provider`; `None` when it has no table. A job its table has no
    /// row for is counted (`sendgate_jobs_unpriced_total`), so a gap in the table shows.
    pub fn charge(&self, provider: &str, job: &Job, segments: u32) -> Option<Charge> {
        let table = self.get(provider)?;
        let charge = table.charge(job, segments);
        if charge.is_none() {
            metrics::counter!(crate::telemetry::JOBS_UNPRICED_TOTAL, "provider" => provider.to_owned()).increment(1);
        }
        charge
    }
}

#[cfg(test)]
mod tests;
