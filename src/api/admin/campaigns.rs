//! Admin route for campaigns (behind the admin token, like the rest):
//! `PUT /v1/admin/campaigns/{tenant}/{campaign}` with `{"rate": 2.5}` (segments per second) or
//! `{"rate": null}` (back to `[rate_limits.campaigns]`), and/or `{"finish_by": "RFC 3339"}` (pace
//! the campaign to finish by then; `null` clears it); `{tenant}` `*` sets a speed for that
//! campaign of every tenant (a tenant's own speed wins; a `finish_by` is always one tenant's).
//! `GET` on the same path: the speed set at runtime and, for one tenant's campaign, its pacing:
//! `finish_by` and where it came from, jobs pending, the pace now, the projected finish.
//! Every instance picks a speed up within `rate_limits.campaign_refresh`, a `finish_by` at
//! its next batch of the campaign.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Map, Value};
use tracing::info;

use super::{json_resp, read_body, store_unavailable, Resp};
use crate::clock::Clock;
use crate::policy::pace::Pace;
use crate::policy::rate_limit::{set_campaign_rate, valid_name, SetRateError};
use crate::store::Store;

const MAX_BODY_BYTES: usize = 4096;

/// What the campaign routes need beyond the store: the pacing, and the configured speeds for
/// the projected finish.
pub struct CampaignAdmin {
    pub pace: Arc<Pace>,
    /// `[rate_limits.campaigns]`: `campaign` or `tenant/campaign` → segments per second.
    pub speeds: BTreeMap<String, f64>,
    pub clock: Arc<dyn Clock>,
}

fn tenant_arg(tenant: &str) -> Option<&str> {
    (tenant != "*").then_some(tenant)
}

fn bad(message: String) -> Resp {
    json_resp(StatusCode::BAD_REQUEST, json!({"error": message}))
}

/// What a PUT asks: `Some(None)` clears, `None` leaves alone.
struct Change {
    rate: Option<Option<f64>>,
    finish_by: Option<Option<DateTime<Utc>>>,
}

fn parse_change(o: &Map<String, Value>, now: DateTime<Utc>) -> Result<Change, String> {
    let rate = match o.get("rate") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v.as_f64().ok_or_else(|| format!("rate: must be segments per second (a number) or null, got {v}"))?)),
    };
    let finish_by = match o.get("finish_by") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => {
            let t = DateTime::parse_from_rfc3339(s).map_err(|e| format!("finish_by: not an RFC 3339 time: {s:?} ({e})"))?.to_utc();
            if t <= now {
                return Err(format!("finish_by: must be in the future, got {s} (now is {})", now.to_rfc3339()));
            }
            Some(Some(t))
        }
        Some(v) => return Err(format!("finish_by: must be an RFC 3339 time (a string) or null, got {v}")),
    };
    if rate.is_none() && finish_by.is_none() {
        return Err("rate: required (segments per second, or null to clear) unless finish_by is given (RFC 3339, or null to clear)".into());
    }
    Ok(Change { rate, finish_by })
}

pub(super) async fn set(store: &dyn Store, admin: Option<&CampaignAdmin>, tenant: &str, campaign: &str, req: Request<Incoming>, actor: &str) -> Resp {
    let body = match read_body(req, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let now = admin.map_or_else(Utc::now, |a| a.clock.now());
    let change = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => match parse_change(&o, now) {
            Ok(c) => c,
            Err(e) => return bad(e),
        },
        Ok(_) => return bad("body: must be {\"rate\": number or null} and/or {\"finish_by\": RFC 3339 or null}".into()),
        Err(e) => return bad(format!("body: not JSON: {e}")),
    };
    let mut answer = json!({"tenant": tenant, "campaign": campaign});
    if let Some(finish_by) = change.finish_by {
        if tenant == "*" {
            return bad("tenant: a finish_by is one tenant's campaign's, not every tenant's (\"*\")".into());
        }
        if let Some(e) = check_names(tenant, campaign) {
            return bad(e);
        }
        let Some(a) = admin else { return bad("finish_by: smooth sending is not set up here".into()) };
        // Checked before anything is stored, so that a bad rate leaves the finish_by alone.
        if let Some(Some(r)) = change.rate {
            if let Err(reason) = crate::policy::rate_limit::check_rate(r) {
                return bad(format!("rate: {reason}"));
            }
        }
        if let Err(e) = a.pace.set_finish_by(tenant, campaign, finish_by).await {
            return store_unavailable(e);
        }
        info!(actor, action = "set_campaign_finish_by", tenant, campaign, finish_by = ?finish_by, "admin change");
        answer["finish_by"] = json!(finish_by.map(|t| t.to_rfc3339()));
    }
    if let Some(rate) = change.rate {
        match set_campaign_rate(store, tenant_arg(tenant), campaign, rate).await {
            Ok(()) => {
                info!(actor, action = "set_campaign_rate", tenant, campaign, rate = ?rate, "admin change");
                answer["rate"] = json!(rate);
            }
            Err(SetRateError::Invalid { field, reason }) => return bad(format!("{field}: {reason}")),
            Err(SetRateError::Store(e)) => return store_unavailable(e),
        }
    }
    json_resp(StatusCode::OK, answer)
}

/// The 400 message for a tenant or campaign no job could carry.
fn check_names(tenant: &str, campaign: &str) -> Option<String> {
    if !crate::job::is_tenant(tenant) {
        return Some(format!("tenant: must match [a-z0-9_-]{{1,64}}, got {tenant:?}"));
    }
    (!valid_name(campaign)).then(|| format!("campaign: must match [A-Za-z0-9_.-]{{1,64}}, got {campaign:?}"))
}

pub(super) async fn get(store: &dyn Store, admin: Option<&CampaignAdmin>, tenant: &str, campaign: &str) -> Resp {
    let rate = match store.campaign_rates(&[(tenant, campaign)]).await {
        Ok(rates) => rates.first().copied().flatten(),
        Err(e) => return store_unavailable(e),
    };
    let mut answer = json!({"tenant": tenant, "campaign": campaign, "rate": rate});
    let (Some(a), Some(t)) = (admin, tenant_arg(tenant)) else { return json_resp(StatusCode::OK, answer) };
    if let Some(e) = check_names(t, campaign) {
        return bad(e);
    }
    let speed = rate.or_else(|| a.speeds.get(&format!("{t}/{campaign}")).or_else(|| a.speeds.get(campaign)).copied());
    match a.pace.status(t, campaign, speed, a.clock.now()).await {
        Ok(s) => {
            answer["finish_by"] = json!(s.finish_by.map(|(t, _)| t.to_rfc3339()));
            answer["finish_by_source"] = json!(s.finish_by.map(|(_, src)| src.as_str()));
            answer["pending"] = json!(s.pending);
            answer["pace_jobs_per_second"] = json!(s.pace);
            answer["projected_finish"] = json!(s.projected_finish.map(|t| t.to_rfc3339()));
            json_resp(StatusCode::OK, answer)
        }
        Err(e) => store_unavailable(e),
    }
}
