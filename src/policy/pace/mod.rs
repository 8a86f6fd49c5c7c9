//! `pace`: smooth sending. A campaign with a `finish_by` is paced so that what is pending goes
//! out evenly by then: its pace (jobs per second) is the jobs pending over the sending time
//! left (quiet hours left out), recomputed from the shared count at every batch, and applied as
//! one more rate limit (`pace:tenant/campaign`, one token per job) through the rate limiter, so
//! jobs over the pace are deferred the usual way, not held in memory.
//!
//! Where `finish_by` comes from, first wins: the admin API (in the store), the campaign's
//! config (`[campaigns."tenant/campaign"]`), the first job of the campaign that carried one
//! (kept in the store). Pending is a set of job ids in the store ([`crate::store::Pacing`]):
//! each batch adds the campaign's jobs that are live (routed, or parked by a policy) and
//! removes those that ended (before the rate limiter), then removes those the limiter let go
//! and asks the place in the queue of those it deferred (after it), so a deferred job comes
//! back about when its turn comes, in the order the campaign's jobs were first seen.

mod sending_time;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

pub use sending_time::{advance, sending_seconds, Quiet};

use super::quiet_hours::QuietHours;
use crate::config::{CampaignConfig, Config};
use crate::job::Job;
use crate::store::{pace_field, PaceCall, PaceState, Store, StoreError};
use crate::telemetry;

/// How long what the store said about a campaign is trusted before it is asked again, when
/// no batch of that campaign asked meanwhile.
const REFRESH: Duration = Duration::from_secs(1);

/// A campaign whose pending count rose by more than this share since it was last read is
/// still being read in: its count, and so each job's turn, is still too low to go by.
const GROWTH: f64 = 0.05;

/// Paces are applied on a 0.5% grid (to the nearest step): a pace that moved less than that
/// keeps the limiter's leased slots (a changed speed starts its slots afresh).
const GRID: f64 = 1.005;

/// Where a campaign's `finish_by` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Admin,
    Config,
    Job,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Config => "config",
            Self::Job => "job",
        }
    }
}

/// One job's pacing news from a batch: live (pending) or gone (ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaceNote {
    pub tenant: String,
    pub campaign: String,
    pub id: String,
    pub finish_by: Option<DateTime<Utc>>,
    pub live: bool,
}

impl PaceNote {
    /// `None` for a job without a campaign.
    pub fn of(job: &Job, live: bool) -> Option<Self> {
        // Asked for every routed job: most have no campaign, and cost nothing then.
        let campaign = job.campaign.clone()?;
        Some(Self { tenant: job.tenant.clone(), campaign, id: job.id.clone(), finish_by: job.finish_by, live })
    }
}

/// What the admin API shows of a campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub finish_by: Option<(DateTime<Utc>, Source)>,
    pub pending: u64,
    /// Jobs per second now; `None` when not paced (no `finish_by`, nothing pending, or past it).
    pub pace: Option<f64>,
    /// When the pending jobs would be out at `min(pace, speed)`; `None` when unknown.
    pub projected_finish: Option<DateTime<Utc>>,
}

/// What the store last said about one campaign.
#[derive(Debug, Clone)]
struct Known {
    state: PaceState,
    read_at: Instant,
    /// Its count rose steeply until about then (see [`GROWTH`]).
    growing_until: Instant,
}

pub struct Pace {
    store: Arc<dyn Store>,
    /// `tenant/campaign` → its `[campaigns]` section.
    configured: std::collections::BTreeMap<String, CampaignConfig>,
    quiet: QuietHours,
    /// The pace aims this long before `finish_by`, and a deferred job comes back half of it
    /// before its turn: the limiter's `max_wait`.
    slack: Duration,
    /// Shortest deferral: the limiter's `lease`.
    lease: Duration,
    /// How long a pending set outlives its last change: `pipeline.dedup_ttl`, as a claim.
    keep: Duration,
    known: Mutex<HashMap<String, Known>>,
}

impl Pace {
    pub fn from_config(cfg: &Config, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            configured: cfg.campaigns.clone(),
            quiet: QuietHours::from_config(cfg),
            slack: cfg.rate_limits.max_wait,
            lease: cfg.rate_limits.lease,
            keep: cfg.pipeline.dedup_ttl,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn configured_finish_by(&self, field: &str) -> Option<DateTime<Utc>> {
        self.configured.get(field).and_then(|c| c.finish_by)
    }

    /// The campaign's deadline and where it came from: admin, else config, else its first job.
    fn finish_by(&self, field: &str, state: &PaceState) -> Option<(DateTime<Utc>, Source)> {
        state
            .admin_finish_by
            .map(|t| (t, Source::Admin))
            .or_else(|| self.configured_finish_by(field).map(|t| (t, Source::Config)))
            .or_else(|| state.job_finish_by.map(|t| (t, Source::Job)))
    }

    /// The quiet hours that do not count as the campaign's sending time: its tenant's window,
    /// on the campaign's `tz`, else the tenant's. Recipients' own zones and jobs' own windows
    /// are not known per campaign: that is the approximation (docs/policies.md).
    fn quiet_of(&self, tenant: &str, field: &str) -> Option<Quiet> {
        let t = self.quiet.tenant(tenant);
        let tz = self.configured.get(field).and_then(|c| c.tz).unwrap_or(t.tz);
        t.window.map(|window| Quiet { window, tz })
    }

    /// Jobs per second for the campaign now, from what the store said last; `None`: not paced.
    fn pace_of(&self, tenant: &str, field: &str, state: &PaceState, now: DateTime<Utc>) -> Option<f64> {
        let (finish_by, _) = self.finish_by(field, state)?;
        if state.pending == 0 {
            return None;
        }
        let aim = finish_by - chrono::Duration::from_std(self.slack).unwrap_or_default();
        // The jobs let go hold the pace's slots up to where it is booked: the pending ones
        // start after that. (Counting from now instead made every campaign end late by up to
        // `max_wait`, catching up in a rush at the end.)
        let from = now + chrono::Duration::from_std(state.booked_ahead).unwrap_or_default();
        let left = sending_seconds(self.quiet_of(tenant, field), from, aim);
        if left <= 0.0 {
            // Past it (or nothing but quiet time left): jobs go as soon as allowed.
            return None;
        }
        let exact = state.pending as f64 / left;
        let on_grid = GRID.powf((exact.ln() / GRID.ln()).round());
        Some(on_grid.clamp(1e-6, super::rate_limit::MAX_RATE))
    }

    /// The pace in force for a job's campaign, from what the last batch learnt.
    pub fn rate(&self, job: &Job, now: DateTime<Utc>) -> Option<f64> {
        let field = pace_field(&job.tenant, job.campaign.as_deref()?);
        let known = self.lock();
        let k = known.get(&field)?;
        self.pace_of(&job.tenant, &field, &k.state, now)
    }

    /// Before the rate limiter: adds the batch's live jobs, removes its ended ones, offers
    /// their `finish_by`s, and reads each campaign afresh. Campaigns known to be unpaced and
    /// read within [`REFRESH`] cost nothing.
    pub async fn register(&self, notes: &[PaceNote], now: DateTime<Utc>) -> Result<(), StoreError> {
        let fields: Vec<String> = notes.iter().map(|n| pace_field(&n.tenant, &n.campaign)).collect();
        let calls: Vec<PaceCall> = {
            let known = self.lock();
            let mut calls: Vec<PaceCall> = Vec::new();
            let mut index: HashMap<&str, usize> = HashMap::new();
            for (n, field) in notes.iter().zip(&fields) {
                let k = known.get(field);
                let paced = k.is_some_and(|k| self.finish_by(field, &k.state).is_some());
                let stale = k.is_none_or(|k| k.read_at.elapsed() >= REFRESH);
                let news = n.finish_by.is_some() && k.is_none_or(|k| k.state.job_finish_by.is_none());
                if !(paced || stale || news) {
                    continue;
                }
                let i = *index.entry(field.as_str()).or_insert_with(|| {
                    calls.push(PaceCall {
                        tenant: &n.tenant,
                        campaign: &n.campaign,
                        configured: self.configured_finish_by(field).is_some(),
                        ..PaceCall::default()
                    });
                    calls.len() - 1
                });
                let c = &mut calls[i];
                c.offer = c.offer.or(n.finish_by);
                if n.live {
                    c.add.push(&n.id);
                } else {
                    c.remove.push(&n.id);
                }
            }
            calls
        };
        if calls.is_empty() {
            return Ok(());
        }
        let states = self.store.pace(&calls, now, self.keep).await?;
        self.learn(calls.iter().map(|c| pace_field(c.tenant, c.campaign)).zip(states));
        Ok(())
    }

    /// After the rate limiter: removes the jobs it let go, adds back and ranks those it
    /// deferred; for each deferred job, its place in its campaign's queue (`None` where the
    /// campaign is not paced). Counts jobs let go after their campaign's `finish_by`.
    pub async fn settle(&self, admitted: &[&Job], deferred: &[&Job], now: DateTime<Utc>) -> Result<Vec<Option<u64>>, StoreError> {
        let mut calls: Vec<PaceCall> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut late = 0u64;
        for job in admitted {
            if let Some((i, finish_by)) = self.call_of(job, &mut calls, &mut index) {
                late += u64::from(finish_by < now);
                calls[i].remove.push(&job.id);
            }
        }
        let mut asked = Vec::with_capacity(deferred.len());
        for job in deferred {
            asked.push(self.call_of(job, &mut calls, &mut index).map(|(i, _)| {
                calls[i].add.push(&job.id);
                calls[i].rank.push(&job.id);
                (i, calls[i].rank.len() - 1)
            }));
        }
        metrics::counter!(telemetry::CAMPAIGN_JOBS_LATE_TOTAL).increment(late);
        if calls.is_empty() {
            return Ok(vec![None; deferred.len()]);
        }
        let states = self.store.pace(&calls, now, self.keep).await?;
        let ranks = asked.iter().map(|a| a.and_then(|(i, j)| states[i].ranks.get(j).copied().flatten())).collect();
        self.learn(calls.iter().map(|c| pace_field(c.tenant, c.campaign)).zip(states));
        Ok(ranks)
    }

    /// The index of `job`'s campaign's call in `calls` (added if new) and its `finish_by`;
    /// `None` when the campaign is not paced.
    fn call_of<'a>(&self, job: &'a Job, calls: &mut Vec<PaceCall<'a>>, index: &mut HashMap<String, usize>) -> Option<(usize, DateTime<Utc>)> {
        let campaign = job.campaign.as_deref()?;
        let field = pace_field(&job.tenant, campaign);
        let (finish_by, _) = {
            let known = self.lock();
            self.finish_by(&field, &known.get(&field)?.state)?
        };
        let configured = self.configured_finish_by(&field).is_some();
        let i = *index.entry(field).or_insert_with(|| {
            calls.push(PaceCall { tenant: &job.tenant, campaign, configured, ..PaceCall::default() });
            calls.len() - 1
        });
        Some((i, finish_by))
    }

    /// Remembers what the store said, notes campaigns still being read in, and sets the gauges.
    fn learn(&self, states: impl Iterator<Item = (String, PaceState)>) {
        let now = Instant::now();
        let mut known = self.lock();
        for (field, state) in states {
            let growing = match known.get(&field) {
                Some(k) => (state.pending as f64) > (k.state.pending as f64) * (1.0 + GROWTH),
                None => true,
            };
            let since = known.get(&field).map_or(now, |k| k.growing_until);
            let growing_until = if growing { now + self.slack } else { since };
            known.insert(field, Known { state, read_at: now, growing_until });
        }
        // Long unread campaigns are forgotten: memory follows what is in use.
        known.retain(|_, k| now.duration_since(k.read_at) < REFRESH * 600);
        let paced: Vec<&Known> = known.iter().filter(|(f, k)| self.finish_by(f, &k.state).is_some()).map(|(_, k)| k).collect();
        metrics::gauge!(telemetry::CAMPAIGNS_PACED).set(paced.len() as f64);
        metrics::gauge!(telemetry::CAMPAIGN_JOBS_PENDING).set(paced.iter().map(|k| k.state.pending as f64).sum::<f64>());
    }

    /// When a job the limiter deferred should come back: half a `max_wait` before its turn
    /// at the pace (its place in the queue over the pace, in sending time), never after its
    /// own validity ends. While its campaign is still being read in (its count rising steeply)
    /// the turn is too late to go by, so it comes back within `max_wait` to be placed again.
    /// `None` where the campaign is not paced now: the limiter's own estimate stands.
    pub fn retry_at(&self, job: &Job, rank: u64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let field = pace_field(&job.tenant, job.campaign.as_deref()?);
        let known = self.lock();
        let k = known.get(&field)?;
        let rate = self.pace_of(&job.tenant, &field, &k.state, now)?;
        let turn = k.state.booked_ahead.as_secs_f64() + rank as f64 / rate;
        let mut back = (turn - self.slack.as_secs_f64() / 2.0).max(self.lease.as_secs_f64());
        if k.growing_until > Instant::now() {
            back = back.min(self.slack.as_secs_f64());
        }
        let until = advance(self.quiet_of(&job.tenant, &field), now, back);
        Some(job.expires_at.map_or(until, |e| until.min(e)))
    }

    /// The campaign as the admin API shows it, read afresh. `speed`: its speed limit, if any
    /// (segments per second, taken as jobs per second for the projection).
    pub async fn status(&self, tenant: &str, campaign: &str, speed: Option<f64>, now: DateTime<Utc>) -> Result<Status, StoreError> {
        let field = pace_field(tenant, campaign);
        let call = PaceCall { tenant, campaign, configured: self.configured_finish_by(&field).is_some(), ..PaceCall::default() };
        let state = self.store.pace(&[call], now, self.keep).await?.pop().unwrap_or_default();
        let pace = self.pace_of(tenant, &field, &state, now);
        let at = pace.into_iter().chain(speed).reduce(f64::min);
        let projected_finish = match at {
            _ if state.pending == 0 => None,
            // After the slots already booked, which the jobs let go wait in.
            Some(rate) => Some(advance(
                self.quiet_of(tenant, &field),
                now + chrono::Duration::from_std(state.booked_ahead).unwrap_or_default(),
                state.pending as f64 / rate,
            )),
            None => None,
        };
        Ok(Status { finish_by: self.finish_by(&field, &state), pending: state.pending, pace, projected_finish })
    }

    /// Sets or clears a campaign's `finish_by` through the admin API; this instance applies it
    /// at once, the others at their next batch of the campaign (within a second when idle).
    pub async fn set_finish_by(&self, tenant: &str, campaign: &str, finish_by: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        self.store.set_finish_by(tenant, campaign, finish_by).await?;
        self.lock().remove(&pace_field(tenant, campaign));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
