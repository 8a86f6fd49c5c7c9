//! Admin routes for WhatsApp messaging limits (behind the admin token, like the rest):
//! `GET /v1/admin/whatsapp/portfolios/{name}` (a portfolio's tier and use) and
//! `POST /v1/admin/whatsapp/inbound` (record that recipients wrote to a number, opening their
//! customer-service windows, until the WhatsApp webhook does it by itself).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tracing::info;

use super::{json_resp, read_body, store_unavailable, Resp};
use crate::clock::Clock;
use crate::policy::whatsapp_tier::{InboundError, WhatsappTier};

/// A contact list larger than this is refused (`413`): send it in parts.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How far ahead of our clock an `at` may be (the caller's clock may run a little fast); later
/// ones are refused, since they would hold a service window open that never was.
const MAX_AHEAD: chrono::Duration = chrono::Duration::minutes(1);

pub struct WhatsappAdmin {
    pub tier: WhatsappTier,
    /// `now` for usage and for contacts given without `at`.
    pub clock: Arc<dyn Clock>,
}

impl WhatsappAdmin {
    pub(super) async fn portfolio(&self, name: &str) -> Resp {
        match self.tier.usage(name, self.clock.now()).await {
            Ok(Some(u)) => json_resp(StatusCode::OK, u.to_json()),
            Ok(None) => json_resp(StatusCode::NOT_FOUND, json!({"error": format!("no WhatsApp portfolio named {name:?}")})),
            Err(e) => store_unavailable(e),
        }
    }

    /// Body: one `{"number": "<phone number id>", "from": "+E164", "at": "RFC 3339"}` or an
    /// array of them; `at` defaults to now. All or nothing: a bad entry refuses the lot.
    pub(super) async fn inbound(&self, req: Request<Incoming>, actor: &str) -> Resp {
        let body = match read_body(req, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let items = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => items,
            Ok(v @ Value::Object(_)) => vec![v],
            Ok(_) => return bad("body: must be a contact object or an array of them".into()),
            Err(e) => return bad(format!("body: not JSON: {e}")),
        };
        let now = self.clock.now();
        let mut contacts: Vec<(&str, &str, DateTime<Utc>)> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match contact(item, now) {
                Ok(c) => contacts.push(c),
                Err(msg) => return bad(format!("[{i}].{msg}")),
            }
        }
        match self.tier.record_inbound(&contacts).await {
            Ok(()) => {
                info!(actor, contacts = contacts.len(), "admin recorded inbound WhatsApp contacts");
                json_resp(StatusCode::OK, json!({"recorded": contacts.len()}))
            }
            Err(e @ InboundError::Invalid { .. }) => bad(e.to_string()),
            Err(InboundError::Store(e)) => store_unavailable(e),
        }
    }
}

/// `(number, from, at)` of one entry, or `field: why`.
fn contact(item: &Value, now: DateTime<Utc>) -> Result<(&str, &str, DateTime<Utc>), String> {
    let Value::Object(o) = item else { return Err("entry: must be an object".into()) };
    if let Some(k) = o.keys().find(|k| !["number", "from", "at"].contains(&k.as_str())) {
        return Err(format!("{k}: unknown field (expected number, from, at)"));
    }
    let text = |k: &str| o.get(k).map(|v| v.as_str().ok_or_else(|| format!("{k}: must be a string"))).transpose();
    let number = text("number")?.ok_or("number: required")?;
    let from = text("from")?.ok_or("from: required")?;
    let at = match text("at")? {
        None => now,
        Some(s) => DateTime::parse_from_rfc3339(s).map_err(|e| format!("at: not an RFC 3339 time: {e}"))?.to_utc(),
    };
    if at > now + MAX_AHEAD {
        return Err(format!("at: in the future ({at}, now {now})"));
    }
    Ok((number, from, at))
}

fn bad(msg: String) -> Resp {
    json_resp(StatusCode::BAD_REQUEST, json!({"error": msg}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn contacts_name_the_field_at_fault() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let ok = json!({"number": "1", "from": "+4915100000001", "at": "2026-01-01T11:00:00Z"});
        assert_eq!(contact(&ok, now), Ok(("1", "+4915100000001", now - chrono::Duration::hours(1))));
        assert_eq!(contact(&json!({"number": "1", "from": "+4915100000001"}), now).unwrap().2, now);
        for (item, want) in [
            (json!("x"), "entry: must be an object"),
            (json!({"from": "+4915100000001"}), "number: required"),
            (json!({"number": 1, "from": "+4915100000001"}), "number: must be a string"),
            (json!({"number": "1"}), "from: required"),
            (json!({"number": "1", "from": "+4915100000001", "at": "noon"}), "at: not an RFC 3339 time"),
            (json!({"number": "1", "from": "+4915100000001", "at": "2026-01-01T12:05:00Z"}), "at: in the future"),
            (json!({"number": "1", "from": "+4915100000001", "to": "x"}), "to: unknown field"),
        ] {
            let err = contact(&item, now).unwrap_err();
            assert!(err.starts_with(want), "{item}: {err}");
        }
    }
}
