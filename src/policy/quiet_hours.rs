//! `quiet_hours`: a marketing job is not sent while the recipient's clock is inside its quiet
//! window; it is deferred (reason `quiet_hours`) to the first instant outside it.
//!
//! Which window: the job's `quiet_hours` (`false`: none), else its tenant's, else
//! `[tenant_defaults]`'s. Transactional jobs have none. Which clock: the job's `tz`; else every
//! zone of the number's prefix (`prefix_zones`), where an instant is allowed only if it is
//! allowed in all of them; else the tenant's zone. When a prefix's zones share no allowed
//! instant within a day (a number that may be anywhere in Russia, say), the tenant's zone
//! decides instead and `sendgate_quiet_hours_zone_fallback_total` counts it.

mod prefix_zones;
#[cfg(test)]
mod tests;
mod window;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::{Candidate, Policy, Verdict};
use crate::config::{Config, QuietHoursConfig, TenantConfig};
use crate::job::{self, Job, Priority};
use crate::report::{EventKind, Reason};
use crate::store::StoreError;
use crate::telemetry;

pub use window::{next_allowed, next_quiet, Window};

/// How far ahead zones of one prefix must share an allowed instant before the tenant's zone
/// is used instead.
const SHARED_HORIZON: Duration = Duration::hours(24);
/// Longer than any quiet spell of one zone: a window of 23:59, a DST hour, a skipped day.
const SINGLE_HORIZON: Duration = Duration::hours(72);

/// A tenant's settings as the policy uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantQuiet {
    pub tz: Tz,
    pub window: Option<Window>,
}

/// Where the zones a decision was made in came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    Job,
    Prefix,
    Tenant,
    /// The prefix's zones had no common allowed instant within a day: the tenant's zone
    /// decided (counted).
    TenantFallback,
}

/// One job's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No quiet hours apply (transactional, switched off, none configured).
    NotApplicable,
    Allow(ZoneSource),
    /// Quiet now; the first allowed instant.
    DeferUntil(DateTime<Utc>, ZoneSource),
}

pub struct QuietHours {
    tenants: HashMap<String, TenantQuiet>,
    /// For tenants not listed.
    default: TenantQuiet,
}

impl QuietHours {
    pub fn new(default: TenantQuiet, tenants: HashMap<String, TenantQuiet>) -> Self {
        prefix_zones::warm_up();
        Self { tenants, default }
    }

    /// A listed tenant's missing keys come from `[tenant_defaults]`, whose missing keys are
    /// UTC and no quiet hours.
    pub fn from_config(cfg: &Config) -> Self {
        let resolve = |t: &TenantConfig, base: TenantQuiet| TenantQuiet {
            tz: t.tz.unwrap_or(base.tz),
            window: match t.quiet_hours {
                None => base.window,
                Some(QuietHoursConfig::Off) => None,
                Some(QuietHoursConfig::Window { start, end }) => Window::new(start, end),
            },
        };
        let default = resolve(&cfg.tenant_defaults, TenantQuiet { tz: Tz::UTC, window: None });
        let tenants = cfg.tenants.iter().map(|(name, t)| (name.clone(), resolve(t, default))).collect();
        Self::new(default, tenants)
    }

    /// A tenant's zone and quiet window (its own, else `[tenant_defaults]`'s).
    pub fn tenant(&self, name: &str) -> &TenantQuiet {
        self.tenants.get(name).unwrap_or(&self.default)
    }

    /// Whether and until when `job` must wait at `now`.
    pub fn decide(&self, job: &Job, now: DateTime<Utc>) -> Decision {
        if job.priority == Priority::Transactional {
            return Decision::NotApplicable;
        }
        let tenant = self.tenant(&job.tenant);
        let window = match job.quiet_hours {
            job::QuietHours::Off => None,
            job::QuietHours::Window { start, end } => Window::new(start, end),
            job::QuietHours::TenantDefault => tenant.window,
        };
        let Some(window) = window else {
            return Decision::NotApplicable;
        };
        let job_tz;
        let (zones, source): (&[Tz], _) = if let Some(tz) = job.tz {
            job_tz = [tz];
            (&job_tz, ZoneSource::Job)
        } else if let Some(zones) = prefix_zones::zones_for(&job.to).filter(|_| job::is_e164(&job.to)) {
            (zones, ZoneSource::Prefix)
        } else {
            (std::slice::from_ref(&tenant.tz), ZoneSource::Tenant)
        };
        let horizon = if zones.len() > 1 { SHARED_HORIZON } else { SINGLE_HORIZON };
        let (at, source) = match next_allowed(&window, zones, now, horizon) {
            Some(at) => (at, source),
            None => {
                let at = next_allowed(&window, &[tenant.tz], now, SINGLE_HORIZON);
                // Cannot happen for one zone (see SINGLE_HORIZON); if it did, look again in a day.
                (at.unwrap_or(now + SHARED_HORIZON), ZoneSource::TenantFallback)
            }
        };
        if at == now {
            Decision::Allow(source)
        } else {
            Decision::DeferUntil(at, source)
        }
    }
}

#[async_trait]
impl Policy for QuietHours {
    fn name(&self) -> &'static str {
        "quiet_hours"
    }

    async fn evaluate(&self, batch: &mut [Candidate<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        for c in batch.iter_mut().filter(|c| c.is_open()) {
            let decision = self.decide(c.job, now);
            if matches!(decision, Decision::Allow(ZoneSource::TenantFallback) | Decision::DeferUntil(_, ZoneSource::TenantFallback)) {
                metrics::counter!(telemetry::QUIET_HOURS_ZONE_FALLBACK_TOTAL).increment(1);
            }
            let Decision::DeferUntil(until, _) = decision else { continue };
            c.verdict = if c.job.expires_at.is_some_and(|e| e <= until) {
                // It could never go: end it now rather than park it only to expire.
                Verdict::Stop {
                    event: EventKind::Expired,
                    reason: None,
                    message: Some(format!("quiet hours in the recipient's zone last until {until}, past the job's validity")),
                }
            } else {
                Verdict::Defer { until, reason: Reason::QuietHours }
            };
        }
        Ok(())
    }
}
