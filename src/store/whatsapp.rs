//! WhatsApp: what the store keeps for WhatsApp messaging limits, the [`Whatsapp`] calls, and
//! the types of its batch call.
//!
//! Per portfolio: the recipients counted in its moving window, each with the time it was last
//! counted. Per (phone number id, recipient): the last inbound contact (the customer-service
//! window it opens) and the last send (Meta's pair limit). `MemoryStore` and `RedisStore`
//! implement the same decision; `policy::whatsapp_tier` owns the config and the metrics.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Meta's customer-service window: a recipient who wrote to a number in the last 24 h can be
/// sent anything from that number, and is not counted against the tier.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// One portfolio's limits, as the batch call needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Portfolio<'a> {
    pub name: &'a str,
    /// Unique recipients per `window`; `None`: unlimited, and nothing is counted.
    pub tier: Option<u64>,
    pub window: Duration,
    /// At most one send per this long from one number to one recipient; zero: off.
    pub pair_interval: Duration,
}

/// One job under the check.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt<'a> {
    /// Index into the call's portfolios.
    pub portfolio: usize,
    /// The phone number id it goes out from (the job's `from`).
    pub number: &'a str,
    pub recipient: &'a str,
    /// A job that comes back (deferred later in the chain, or retried after a provider
    /// failure) is not held back by its own earlier send under the pair limit.
    pub job_id: &'a str,
}

/// The answer for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It may go; if it counted, the recipient is now in the window.
    Allow,
    /// The portfolio reached its tier: try again when a counted recipient leaves the window.
    TierCap { until: DateTime<Utc> },
    /// The same number sent to the same recipient less than `pair_interval` ago.
    PairLimit { until: DateTime<Utc> },
}

/// Every attempt's decision, in order, and each portfolio's count after the batch (0 for an
/// unlimited one, which is not counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub decisions: Vec<Decision>,
    pub used: Vec<u64>,
}

/// A portfolio's window as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Unique recipients counted in the window now.
    pub used: u64,
    /// When the least recently counted of them was counted: it leaves the window (and a slot
    /// frees) one `window` later.
    pub oldest: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Whatsapp: Send + Sync {
    /// WhatsApp messaging limits for a batch of jobs, in order, in one atomic step (one script
    /// in Redis, so instances sharing a portfolio never exceed its tier together). For each
    /// attempt: a recipient inside a customer-service window with that number is not counted;
    /// one already counted in the window is counted again at `now` (free); a new one is
    /// counted while the portfolio is under its tier, else the attempt is `TierCap` until a
    /// counted recipient leaves the window; then the pair limit; only an allowed attempt
    /// changes anything.
    async fn whatsapp_admit(&self, portfolios: &[Portfolio<'_>], attempts: &[Attempt<'_>], now: DateTime<Utc>) -> Result<Admission, StoreError>;

    /// Records that recipients wrote to phone numbers: `(number, recipient, at)`; each opens a
    /// customer-service window of [`SERVICE_WINDOW`] from `at` (a later contact extends it, an
    /// earlier one arriving late changes nothing).
    async fn record_inbound_contacts(&self, contacts: &[(&str, &str, DateTime<Utc>)]) -> Result<(), StoreError>;

    /// Whether each `(number, recipient)` is inside a customer-service window at `now`: the
    /// recipient wrote to that number less than [`SERVICE_WINDOW`] ago. Read only.
    async fn service_windows_open(&self, pairs: &[(&str, &str)], now: DateTime<Utc>) -> Result<Vec<bool>, StoreError>;

    /// A portfolio's window at `now`, read only (the admin API).
    async fn whatsapp_usage(&self, portfolio: &str, window: Duration, now: DateTime<Utc>) -> Result<Usage, StoreError>;
}

/// Milliseconds since the epoch, the unit every WhatsApp time is stored in.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Whether a contact at `last` (ms) keeps the service window open at `now`.
pub(crate) fn window_open(last: Option<i64>, now: DateTime<Utc>) -> bool {
    last.is_some_and(|l| ms(now).saturating_sub(l) < dur_ms(SERVICE_WINDOW))
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A duration in the store's unit, saturating.
pub(crate) fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
