//! `rate_limit`: speeds in SMS segments per second that hold across every instance: per
//! provider, per sender (`from`), per tenant and per campaign; and a campaign's pace to its
//! `finish_by` in jobs per second ([`super::pace`]).
//!
//! Each limit is a GCRA timeline in the store (`Rates::rate_lease`; Redis: one script on
//! Redis's clock). An instance leases the next slots of a limit, at least `rate × lease` of
//! them per store call and as many as its batch needs within `max_wait`, and spends them here
//! ([`local`]): a job goes at its slot, so a limit's tokens are never closer than `1 / rate`
//! however many instances share it. A job whose slot is further off than `max_wait` is deferred
//! (`rate_limited`, `retry_at` near when its turn should come).
//!
//! This runs after routing, not in the [`Chain`](super::Chain): the provider limit and the
//! segment count (the provider's encoding) depend on the provider the job goes to. It is still
//! the last policy a job meets, so a job another policy stops never spends a token.

mod local;
mod store_clock;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

pub use local::{interval_us, lease_tokens};

use self::local::Leased;
use self::store_clock::StoreClock;
use super::Verdict;
use crate::config::RateLimitsConfig;
use crate::job::Job;
use crate::report::Reason;
use crate::store::{RateLease, Store, StoreError};
use crate::telemetry;

/// Fastest limit accepted: one token per microsecond, the store's resolution.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A speed is a positive, finite number of segments per second, at most [`MAX_RATE`].
pub fn check_rate(rate: f64) -> Result<(), String> {
    if !(rate.is_finite() && rate > 0.0) {
        Err(format!("must be > 0 segments per second, got {rate}"))
    } else if rate > MAX_RATE {
        Err(format!("must be at most {MAX_RATE} segments per second, got {rate}"))
    } else {
        Ok(())
    }
}

/// A campaign (or `route`) name as jobs carry it: `[A-Za-z0-9_.-]{1,64}`.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

#[derive(Debug, thiserror::Error)]
pub enum SetRateError {
    /// The caller's input is wrong (a 400 for the admin API).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sets (`Some`) or clears (`None`, back to `[rate_limits.campaigns]`) a campaign's speed at
/// runtime, for one tenant's campaign or (`tenant` `None`) that campaign name of every tenant.
/// Every instance applies it within `rate_limits.campaign_refresh`. This is what the admin API
/// calls.
pub async fn set_campaign_rate(store: &dyn Store, tenant: Option<&str>, campaign: &str, rate: Option<f64>) -> Result<(), SetRateError> {
    if let Some(t) = tenant.filter(|t| !crate::job::is_tenant(t)) {
        return Err(SetRateError::Invalid { field: "tenant", reason: format!("must match [a-z0-9_-]{{1,64}}, got {t:?}") });
    }
    if !valid_name(campaign) {
        return Err(SetRateError::Invalid { field: "campaign", reason: format!("must match [A-Za-z0-9_.-]{{1,64}}, got {campaign:?}") });
    }
    if let Some(r) = rate {
        check_rate(r).map_err(|reason| SetRateError::Invalid { field: "rate", reason })?;
    }
    store.set_campaign_rate(tenant, campaign, rate).await?;
    Ok(())
}

/// Which kind of limit: the `limit` label of the rate-limit metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Provider,
    Sender,
    Tenant,
    Campaign,
    /// A campaign's pace to its `finish_by` (`policy::pace`): counts jobs, not segments.
    Pace,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Sender => "sender",
            Self::Tenant => "tenant",
            Self::Campaign => "campaign",
            Self::Pace => "pace",
        }
    }
}

/// A job on its way to a provider, as the limiter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub job: &'a Job,
    pub provider: &'a str,
    /// The sender id it goes out with (`from`, else the provider's default), if any.
    pub sender: Option<&'a str>,
    /// The sender limit when `[rate_limits.senders]` names none ([`crate::provider::Provider::sender_rate`]).
    pub sender_rate: Option<f64>,
    /// SMS segments it costs with this provider's encoding: what every limit but the pace counts.
    pub segments: u32,
    /// Its campaign's pace in jobs per second, when it is paced to a `finish_by`.
    pub pace: Option<f64>,
}

/// The limiter's answer for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// `Allow`, or `Defer { reason: RateLimited, .. }`.
    pub verdict: Verdict,
    /// When an allowed job may go: its slot, on tokio's clock (now, for a job no limit holds).
    pub not_before: Instant,
    /// For a deferred job, the limit whose turn was furthest off.
    pub held_by: Option<LimitKind>,
    /// For an allowed job, how late after `not_before` it may still go (a wave woken later
    /// than that is admitted again): its limits' catch-up tolerance when every one of them
    /// has one (a pace's), else zero. A pace's slot used a moment late is what its tolerance
    /// allows anyway; admitting the job again would lose the slot, and the campaign fall behind.
    pub late_ok: Duration,
}

/// The limits of one batch, while it is being decided.
struct BatchLimit {
    id: String,
    kind: LimitKind,
    rate: f64,
    /// Tokens of the batch's jobs under this limit, in order.
    demands: Vec<u32>,
}

/// Campaign speeds read from the store, with when they were read.
type CampaignCache = HashMap<(String, String), (Option<f64>, Instant)>;

pub struct RateLimit {
    store: Arc<dyn Store>,
    cfg: RateLimitsConfig,
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    leased: HashMap<String, Leased>,
    campaigns: CampaignCache,
    last_sweep: Option<Instant>,
    clock: StoreClock,
}

impl RateLimit {
    pub fn new(store: Arc<dyn Store>, cfg: RateLimitsConfig) -> Self {
        Self { store, cfg, local: Mutex::new(Local::default()) }
    }

    /// How long ago a limit's missed slots may still be used. A speed limit's passed slots are
    /// lost (no burst after idling). A pace's are recovered for a quarter of `max_wait`: its
    /// deferred jobs come back half a `max_wait` before their turn, and a busy instance that
    /// brings them back later than that would otherwise lose those slots for good, the whole
    /// campaign falling behind and catching up at the end (docs/policies.md). A quarter keeps
    /// what one 10 s can gain from that small (`rate × max_wait / 4`, 5% at the 2 s default).
    fn tolerance(&self, kind: LimitKind) -> Duration {
        if kind == LimitKind::Pace {
            self.cfg.max_wait / 4
        } else {
            Duration::ZERO
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides a batch: each job goes at its slot (within `max_wait`) or is deferred. One
    /// store call for every limit that needs more tokens, one more for campaign speeds not
    /// read within `campaign_refresh`. `now` is the pipeline's clock: `retry_at` counts from
    /// it, and it is the memory store's clock for leases.
    pub async fn evaluate(&self, batch: &[Outgoing<'_>], now: DateTime<Utc>) -> Result<Vec<Admission>, StoreError> {
        self.refresh_campaigns(batch).await?;
        let (limits, per_job) = self.limits_of(batch);
        let started = Instant::now();
        if limits.is_empty() {
            return Ok(batch.iter().map(|_| Admission { verdict: Verdict::Allow, not_before: started, held_by: None, late_ok: Duration::ZERO }).collect());
        }
        let latest = started + self.cfg.max_wait;

        // What the tokens held here do not cover is leased, for every limit in one call.
        let requests: Vec<RateLease> = {
            let mut local = self.lock();
            limits
                .iter()
                .filter_map(|l| {
                    let leased = local.leased_for(&l.id, l.rate, self.tolerance(l.kind));
                    let missing = leased.uncovered(l.demands.iter().copied(), started, latest);
                    (missing > 0).then(|| {
                        let largest = l.demands.iter().copied().max().unwrap_or(1).max(1);
                        // A job may start up to max_wait out; its other tokens follow its first.
                        let spill = Duration::from_micros(leased.interval_us()) * (largest - 1);
                        // A pace is not leased ahead: slots one instance holds and does not use are
                        // lost to the campaign, which then falls behind and must catch up at the end.
                        // Its batches make pacing store calls anyway, so leasing exactly costs none.
                        let least = if l.kind == LimitKind::Pace { 1 } else { lease_tokens(l.rate, self.cfg.lease) };
                        RateLease {
                            limit: l.id.clone(),
                            interval_us: leased.interval_us(),
                            want: missing.min(u64::from(u32::MAX)).max(u64::from(least)) as u32,
                            horizon_us: (self.cfg.max_wait + spill).as_micros() as u64,
                            tolerance_us: self.tolerance(l.kind).as_micros() as u64,
                        }
                    })
                })
                .collect()
        };
        let grants = if requests.is_empty() { Vec::new() } else { self.store.rate_lease(&requests, now).await? };
        let replied = Instant::now();
        let mut local = self.lock();
        if let Some(g) = grants.first() {
            local.clock.observe(g.first_at_us.saturating_add_signed(-g.first_us), replied);
        }
        for (req, g) in requests.iter().zip(&grants) {
            let store_now = g.first_at_us.saturating_add_signed(-g.first_us);
            let first = local.clock.local(g.first_at_us);
            let booked = local.clock.local(store_now + g.next_free_us);
            if let Some(leased) = local.leased.get_mut(&req.limit) {
                leased.add(first, g.first_at_us, g.granted, booked);
            }
        }

        let now_local = Instant::now();
        let out: Vec<Admission> =
            batch.iter().zip(&per_job).map(|(o, mine)| self.admit(&mut local, &limits, mine, o.segments.max(1), now_local, now)).collect();
        local.sweep(now_local, self.cfg.campaign_refresh);
        drop(local);
        // Counted per batch, not per job (see `telemetry::Tally`); a job under no limit is
        // not a rate-limit decision and is not counted.
        let deferred = out.iter().filter(|a| a.verdict != Verdict::Allow).count() as u64;
        let allowed = out.len() as u64 - deferred - per_job.iter().filter(|m| m.is_empty()).count() as u64;
        metrics::counter!(telemetry::POLICY_VERDICTS_TOTAL, "policy" => "rate_limit", "verdict" => "allow").increment(allowed);
        metrics::counter!(telemetry::POLICY_VERDICTS_TOTAL, "policy" => "rate_limit", "verdict" => "defer").increment(deferred);
        Ok(out)
    }

    /// One job against its limits: all of them must have its tokens within `max_wait`, or it
    /// takes none and is deferred.
    fn admit(&self, local: &mut Local, limits: &[BatchLimit], mine: &[usize], n: u32, now: Instant, now_utc: DateTime<Utc>) -> Admission {
        if mine.is_empty() {
            return Admission { verdict: Verdict::Allow, not_before: now, held_by: None, late_ok: Duration::ZERO };
        }
        let latest = now + self.cfg.max_wait;
        // The pace counts jobs; every other limit the job's segments.
        let cost = |i: usize| if limits[i].kind == LimitKind::Pace { 1 } else { n };
        let fit_from = |from: Instant| -> Vec<_> { mine.iter().map(|&i| local.leased.get(&limits[i].id).and_then(|l| l.fit(cost(i), from, latest))).collect() };
        let mut fits = fit_from(now);
        // Under several limits: one start that all of them have slots for, so that each limit
        // spends its slots when the job really goes. Where a limit's leased slots do not reach
        // that far, its earliest slot is spent instead (see docs/policies.md: a faster limit can then
        // see this job up to `max_wait` after the slot it spent).
        if mine.len() > 1 && fits.iter().all(Option::is_some) {
            let mut from = now;
            for _ in 0..8 {
                let common = fit_from(from);
                let Some(starts) = common.iter().map(|f| f.map(|f| f.start)).collect::<Option<Vec<_>>>() else { break };
                let last = starts.iter().copied().fold(from, Instant::max);
                if starts.iter().all(|s| *s == last) {
                    fits = common;
                    break;
                }
                from = last;
            }
        }
        if fits.iter().all(Option::is_some) {
            let mut at = now;
            let mut binding = limits[mine[0]].kind;
            for (&i, fit) in mine.iter().zip(fits) {
                let fit = fit.expect("checked above");
                if fit.start > at {
                    (at, binding) = (fit.start, limits[i].kind);
                }
                if let Some(l) = local.leased.get_mut(&limits[i].id) {
                    l.take(fit, cost(i));
                }
            }
            let wait = at - now;
            if !wait.is_zero() {
                metrics::histogram!(telemetry::RATE_LIMIT_WAIT_SECONDS, "limit" => binding.as_str()).record(wait.as_secs_f64());
            }
            let late_ok = mine.iter().map(|&i| self.tolerance(limits[i].kind)).min().unwrap_or_default();
            return Admission { verdict: Verdict::Allow, not_before: at, held_by: None, late_ok };
        }
        // Its turn, as far as this instance can tell: after what is booked and after the
        // jobs it deferred before. It comes back a little before that, so it waits the rest of
        // the way in place if nobody took the slots meanwhile.
        let mut turn = now;
        let mut binding = limits[mine[0]].kind;
        for (&i, fit) in mine.iter().zip(&fits) {
            if fit.is_none() {
                let at = local.leased.get_mut(&limits[i].id).map_or(now, |l| l.defer(cost(i), now));
                if at >= turn {
                    (turn, binding) = (at, limits[i].kind);
                }
            }
        }
        let back_in = (turn - now).saturating_sub(self.cfg.max_wait / 2).max(self.cfg.lease);
        metrics::counter!(telemetry::RATE_LIMITED_TOTAL, "limit" => binding.as_str()).increment(1);
        let until = now_utc + chrono::Duration::from_std(back_in).unwrap_or(chrono::Duration::seconds(1));
        Admission { verdict: Verdict::Defer { until, reason: Reason::RateLimited }, not_before: now, held_by: Some(binding), late_ok: Duration::ZERO }
    }

    /// The batch's limits, and for each job the indices of those that hold it.
    fn limits_of(&self, batch: &[Outgoing<'_>]) -> (Vec<BatchLimit>, Vec<Vec<usize>>) {
        let local = self.lock();
        let mut limits: Vec<BatchLimit> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let per_job = batch
            .iter()
            .map(|o| {
                let job = o.job;
                // Runtime speed (the tenant's, else every tenant's), else `tenant/campaign`, else `campaign`.
                let campaign = job.campaign.as_deref().and_then(|c| {
                    let runtime = local.campaigns.get(&(job.tenant.clone(), c.to_owned())).and_then(|(r, _)| *r);
                    let configured = self.cfg.campaigns.get(&format!("{}/{c}", job.tenant)).or_else(|| self.cfg.campaigns.get(c));
                    Some((format!("campaign:{}/{c}", job.tenant), runtime.or(configured.copied())?))
                });
                let candidates = [
                    (LimitKind::Provider, self.cfg.providers.get(o.provider).map(|r| (format!("provider:{}", o.provider), *r))),
                    (LimitKind::Sender, o.sender.and_then(|s| Some((format!("sender:{s}"), self.cfg.senders.get(s).copied().or(o.sender_rate)?)))),
                    (LimitKind::Tenant, self.cfg.tenants.get(&job.tenant).map(|r| (format!("tenant:{}", job.tenant), *r))),
                    (LimitKind::Campaign, campaign),
                    (LimitKind::Pace, o.pace.zip(job.campaign.as_deref()).map(|(r, c)| (crate::store::pace_limit(&job.tenant, c), r))),
                ];
                candidates
                    .into_iter()
                    .filter_map(|(kind, limit)| {
                        let (id, rate) = limit?;
                        let i = *index.entry(id.clone()).or_insert_with(|| {
                            limits.push(BatchLimit { id, kind, rate, demands: Vec::new() });
                            limits.len() - 1
                        });
                        limits[i].demands.push(if kind == LimitKind::Pace { 1 } else { o.segments.max(1) });
                        Some(i)
                    })
                    .collect()
            })
            .collect();
        (limits, per_job)
    }

    /// Reads the speeds of the batch's campaigns not read within `campaign_refresh`.
    async fn refresh_campaigns(&self, batch: &[Outgoing<'_>]) -> Result<(), StoreError> {
        let stale: Vec<(String, String)> = {
            let local = self.lock();
            let mut stale: Vec<(String, String)> = batch
                .iter()
                .filter_map(|o| Some((o.job.tenant.clone(), o.job.campaign.clone()?)))
                .filter(|k| local.campaigns.get(k).is_none_or(|(_, at)| at.elapsed() >= self.cfg.campaign_refresh))
                .collect();
            stale.sort();
            stale.dedup();
            stale
        };
        if stale.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(&str, &str)> = stale.iter().map(|(t, c)| (t.as_str(), c.as_str())).collect();
        let rates = self.store.campaign_rates(&pairs).await?;
        let at = Instant::now();
        let mut local = self.lock();
        for (key, rate) in stale.into_iter().zip(rates) {
            local.campaigns.insert(key, (rate, at));
        }
        Ok(())
    }
}

impl Local {
    /// This limit's leased tokens; a changed speed starts afresh (slots leased at the old one
    /// are dropped: conservative).
    fn leased_for(&mut self, id: &str, rate: f64, tolerance: Duration) -> &mut Leased {
        let interval = interval_us(rate);
        let entry = self.leased.entry(id.to_owned()).or_insert_with(|| Leased::new(interval).with_tolerance(tolerance));
        if entry.interval_us() != interval {
            *entry = Leased::new(interval).with_tolerance(tolerance);
        }
        entry
    }

    /// At most once a second: forgets limits with nothing leased or booked, and campaign speeds
    /// long unread, so memory follows what is in use.
    fn sweep(&mut self, now: Instant, refresh: Duration) {
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = Some(now);
        self.leased.retain(|_, l| l.sweep(now));
        self.campaigns.retain(|_, (_, at)| now.duration_since(*at) < refresh * 10);
    }
}

#[cfg(test)]
mod tests;
