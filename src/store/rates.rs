//! Rates: rate-limit leases (a GCRA timeline per limit, see [`gcra`](super::gcra)) and the
//! campaign speeds set at runtime through the admin API.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::gcra::{RateGrant, RateLease};
use super::StoreError;

/// How a campaign speed is filed: `tenant/campaign`, `*/campaign` for every tenant (neither
/// `/` nor `*` can be in a tenant or campaign name).
pub fn campaign_field(tenant: Option<&str>, campaign: &str) -> String {
    format!("{}/{campaign}", tenant.unwrap_or("*"))
}

#[async_trait]
pub trait Rates: Send + Sync {
    /// Leases rate-limit tokens, one answer per request, in one round trip (GCRA: see
    /// [`gcra`](super::gcra)). Slot offsets in the answers count from the store's now: `now`
    /// for the memory store; Redis uses its own `TIME`, so that instances whose clocks differ
    /// still share one timeline.
    async fn rate_lease(&self, reqs: &[RateLease], now: DateTime<Utc>) -> Result<Vec<RateGrant>, StoreError>;

    /// Sets (`Some`) or clears (`None`) a campaign's speed in segments per second; `tenant`
    /// `None` sets it for that campaign name of every tenant (a tenant's own setting wins).
    async fn set_campaign_rate(&self, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), StoreError>;

    /// The speeds set for `(tenant, campaign)` pairs, one answer per pair: the tenant's own,
    /// else the every-tenant one, else `None`.
    async fn campaign_rates(&self, campaigns: &[(&str, &str)]) -> Result<Vec<Option<f64>>, StoreError>;
}
