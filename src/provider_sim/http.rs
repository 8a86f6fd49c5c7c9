//! `sendgate provider-sim http`: a generic JSON provider, shaped as the shipped example
//! `config/examples/http-infobip-viber.toml` expects (Infobip's Viber Business Messages API),
//! so that example's `kind = "http"` provider runs against it unchanged but for its origin.
//!
//! Sends: `POST /viber/2/messages` with `Authorization: App <token>` and
//! `{"messages": [{"sender", "destinations": [{"to"}], "content": {"type": "TEXT", "text"}}]}`,
//! answered `200` with `messages[0].messageId` and a `PENDING_ACCEPTED` status. Refusals as
//! Infobip words them: a request error is `{"errorCode": "E429" | "E500" | "E401" | "E400",
//! "description"}` with that HTTP status; a message refused for its destination is a `200`
//! whose `messages[0].status` is in the `REJECTED` group (`pair_limit_every`:
//! `REJECTED_FLOODING_FILTER`, `blocked_every`: `REJECTED_DESTINATION_BLOCKLISTED`,
//! `unknown_recipient_every`: `REJECTED_DESTINATION_NOT_REGISTERED`).
//!
//! Statuses: `POST <webhook_url>` with a delivery-report batch `{"results": [{"messageId",
//! "to", "status": {"groupName", "name"}, "error": {"name"}, ...}]}`: `sent` is
//! `PENDING_ENROUTE`, `delivered` `DELIVERED_TO_HANDSET`, `read` `SEEN_SEEN`, `failed`
//! `UNDELIVERABLE_NOT_DELIVERED` with error `EC_<failed_code>`. Infobip signs nothing: the
//! receiver's shared token is in `webhook_url`'s query (`?token=…`), as the example's callback
//! URL carries it. A forged POST goes to the same URL with every query value changed
//! ([`Mode::forged_url`]). An `X-Provider-Sim-Signature` header (hex HMAC-SHA256 of the body
//! under `app_secret`) is sent too, for a receiver configured with `auth = "hmac_sha256"`.

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use ring::hmac;
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::Refusal;
use super::statuses::{Pending, Status};
use super::{Answer, Mode, SendRequest};

/// The example's request path.
const SEND_PATH: &str = "/viber/2/messages";
const BULK_ID: &str = "a28dd97c-2222-4fcf-99f1-0b557ed381da";

pub struct JsonApi;

impl JsonApi {
    fn error(http: StatusCode, code: &str, description: &str) -> Answer {
        Answer::json(http, &json!({"errorCode": code, "description": description, "action": null, "violations": [], "resources": []}))
    }

    /// A `200` whose message carries `name` in `group` (`PENDING`: taken; `REJECTED`: not).
    fn message(id: &str, to: &str, group: (u32, &str), status: (u32, &str), description: &str) -> Answer {
        let body = json!({"bulkId": BULK_ID, "messages": [{
            "messageId": id,
            "status": {"groupId": group.0, "groupName": group.1, "id": status.0, "name": status.1, "description": description},
            "destination": to,
        }]});
        Answer::json(StatusCode::OK, &body)
    }

    fn rejected(status: (u32, &str), description: &str) -> Answer {
        Self::message("", "", (5, "REJECTED"), status, description)
    }
}

impl Mode for JsonApi {
    fn name(&self) -> &'static str {
        "http"
    }

    fn forged_url(&self, url: &str) -> String {
        // The shared token is a query value: a forgery carries a wrong one.
        match url.split_once('?') {
            Some((base, query)) => {
                let forged: Vec<String> = query.split('&').map(|kv| format!("{kv}forged")).collect();
                format!("{base}?{}", forged.join("&"))
            }
            None => url.to_owned(),
        }
    }

    fn parse_send(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8], token: Option<&str>) -> Result<SendRequest, Refusal> {
        if method != Method::POST || path != SEND_PATH {
            return Err(Refusal::UnknownPath);
        }
        if let Some(want) = token {
            let got = headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("App "));
            if got != Some(want) {
                return Err(Refusal::BadToken);
            }
        }
        let req: Request = serde_json::from_slice(body).map_err(|_| Refusal::Invalid)?;
        let [m] = req.messages.as_slice() else { return Err(Refusal::Invalid) };
        let to = match m.destinations.as_slice() {
            [d] if !d.to.is_empty() => d.to.clone(),
            _ => return Err(Refusal::Invalid),
        };
        if m.sender.is_empty() || m.content.get("type").and_then(Value::as_str).is_none() {
            return Err(Refusal::Invalid);
        }
        Ok(SendRequest { sender: m.sender.clone(), recipient: to.clone(), input: to })
    }

    fn message_id(&self, seq: u64, _send: &SendRequest) -> String {
        // Infobip's ids are opaque strings; unique is what matters.
        format!("ib-{seq:016x}")
    }

    fn accepted(&self, send: &SendRequest, id: &str) -> Answer {
        Self::message(id, &send.recipient, (1, "PENDING"), (26, "PENDING_ACCEPTED"), "Message sent to next instance")
    }

    fn refusal(&self, why: Refusal) -> Answer {
        match why {
            Refusal::Throttled => Self::error(StatusCode::TOO_MANY_REQUESTS, "E429", "Too many requests sent."),
            Refusal::PairLimit => Self::rejected((20, "REJECTED_FLOODING_FILTER"), "Too many messages to this destination."),
            Refusal::ServerError => Self::error(StatusCode::INTERNAL_SERVER_ERROR, "E500", "Something went wrong."),
            Refusal::Overloaded => Self::error(StatusCode::SERVICE_UNAVAILABLE, "E503", "Service unavailable."),
            Refusal::Blocked => Self::rejected((55, "REJECTED_DESTINATION_BLOCKLISTED"), "The destination is on a block list."),
            Refusal::UnknownRecipient => Self::rejected((51, "REJECTED_DESTINATION_NOT_REGISTERED"), "The destination is not registered."),
            Refusal::BadToken => Self::error(StatusCode::UNAUTHORIZED, "E401", "Invalid login details."),
            Refusal::Invalid => Self::error(StatusCode::BAD_REQUEST, "E400", "Request cannot be processed."),
            Refusal::UnknownPath => Self::error(StatusCode::NOT_FOUND, "E404", "Not found."),
        }
    }

    fn webhook_body(&self, sender: &str, statuses: &[(&Pending, Status)], failed_code: i64) -> Bytes {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        let failed_error = format!("EC_{failed_code}");
        let results: Vec<Value> = statuses
            .iter()
            .map(|(p, status)| {
                let (group_id, group, id, name) = match status {
                    Status::Sent => (1, "PENDING", 7, "PENDING_ENROUTE"),
                    Status::Delivered => (3, "DELIVERED", 5, "DELIVERED_TO_HANDSET"),
                    Status::Read => (3, "SEEN", 5, "SEEN_SEEN"),
                    Status::Failed => (2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED"),
                };
                let error = if *status == Status::Failed { failed_error.as_str() } else { "NO_ERROR" };
                json!({
                    "bulkId": BULK_ID, "messageId": p.id, "to": p.recipient, "sender": sender,
                    "sentAt": now, "doneAt": now, "messageCount": 1,
                    "status": {"groupId": group_id, "groupName": group, "id": id, "name": name, "description": name},
                    "error": {"groupId": 0, "groupName": if error == "NO_ERROR" { "OK" } else { "HANDSET_ERRORS" }, "id": 0, "name": error, "permanent": *status == Status::Failed},
                })
            })
            .collect();
        Bytes::from(json!({"results": results}).to_string())
    }

    fn signature(&self, secret: &[u8], body: &[u8]) -> (&'static str, String) {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body);
        ("x-provider-sim-signature", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    destinations: Vec<Destination>,
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize)]
struct Destination {
    #[serde(default)]
    to: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_answers_and_forged_urls() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "App key".parse().unwrap());
        let body = br#"{"messages":[{"sender":"Demo","destinations":[{"to":"4915100000001"}],"content":{"type":"TEXT","text":"hi"}}]}"#;
        let ok = JsonApi.parse_send(&Method::POST, SEND_PATH, &h, body, Some("key")).unwrap();
        assert_eq!((ok.sender.as_str(), ok.recipient.as_str()), ("Demo", "4915100000001"));
        assert_eq!(JsonApi.parse_send(&Method::POST, SEND_PATH, &h, body, Some("other")).unwrap_err(), Refusal::BadToken);
        assert_eq!(JsonApi.parse_send(&Method::POST, "/sms/2/text", &h, body, None).unwrap_err(), Refusal::UnknownPath);
        assert_eq!(JsonApi.parse_send(&Method::POST, SEND_PATH, &h, br#"{"messages":[]}"#, None).unwrap_err(), Refusal::Invalid);
        let a = JsonApi.accepted(&ok, "ib-1");
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            (a.status, &v["messages"][0]["messageId"], &v["messages"][0]["status"]["name"]),
            (StatusCode::OK, &json!("ib-1"), &json!("PENDING_ACCEPTED"))
        );
        assert_eq!(JsonApi.forged_url("http://h/v1/webhooks/ib?token=abc"), "http://h/v1/webhooks/ib?token=abcforged");
        assert_eq!(JsonApi.forged_url("http://h/x"), "http://h/x");
    }
}
