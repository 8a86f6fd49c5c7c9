//! Admin route for campaign sending speeds (behind the admin token, like the rest):
//! `PUT /v1/admin/campaigns/{tenant}/{campaign}` with `{"rate": 2.5}` (segments per second) or
//! `{"rate": null}` (back to `[rate_limits.campaigns]`); `{tenant}` `*` sets the campaign for
//! every tenant (a tenant's own speed wins). `GET` on the same path: the speed set at runtime.
//! Every instance picks a change up within `rate_limits.campaign_refresh`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tracing::info;

use super::{json_resp, read_body, store_unavailable, Resp};
use crate::policy::rate_limit::{set_campaign_rate, SetRateError};
use crate::store::Store;

const MAX_BODY_BYTES: usize = 4096;

fn tenant_arg(tenant: &str) -> Option<&str> {
    (tenant != "*").then_some(tenant)
}

fn bad(message: String) -> Resp {
    json_resp(StatusCode::BAD_REQUEST, json!({"error": message}))
}

pub(super) async fn set(store: &dyn Store, tenant: &str, campaign: &str, req: Request<Incoming>, actor: &str) -> Resp {
    let body = match read_body(req, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let rate = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => match o.get("rate") {
            Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(r) => Some(r),
                None => return bad(format!("rate: must be segments per second (a number) or null, got {v}")),
            },
            None => return bad("rate: required (segments per second, or null to clear)".into()),
        },
        Ok(_) => return bad("body: must be {\"rate\": number or null}".into()),
        Err(e) => return bad(format!("body: not JSON: {e}")),
    };
    match set_campaign_rate(store, tenant_arg(tenant), campaign, rate).await {
        Ok(()) => {
            info!(actor, action = "set_campaign_rate", tenant, campaign, rate = ?rate, "admin change");
            json_resp(StatusCode::OK, json!({"tenant": tenant, "campaign": campaign, "rate": rate}))
        }
        Err(SetRateError::Invalid { field, reason }) => bad(format!("{field}: {reason}")),
        Err(SetRateError::Store(e)) => store_unavailable(e),
    }
}

pub(super) async fn get(store: &dyn Store, tenant: &str, campaign: &str) -> Resp {
    match store.campaign_rates(&[(tenant, campaign)]).await {
        Ok(rates) => json_resp(StatusCode::OK, json!({"tenant": tenant, "campaign": campaign, "rate": rates.first().copied().flatten()})),
        Err(e) => store_unavailable(e),
    }
}
