//! `sendgate provider-sim whatsapp`: Meta's WhatsApp Cloud API as a gateway meets it.
//!
//! Sends: `POST /{version}/{phone_number_id}/messages` with `Authorization: Bearer <token>`
//! and a message object (`messaging_product: whatsapp`, `to`, `type` `template` or `text`),
//! answered with `messages[0].id`, a `wamid.…`. Refusals carry Meta's error object
//! (`{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}`) with the
//! HTTP status Meta's error-code reference gives: 130429 and 131056 are `400`, 131000 `500`,
//! 131016 `503`, 190 `401`, 100 `400`.
//!
//! Statuses: `POST <webhook_url>` with the `whatsapp_business_account` payload (one entry, one
//! `messages` change, `metadata.phone_number_id`, `statuses[]` with `id`, `status`,
//! `timestamp`, `recipient_id`, `conversation` and `pricing` on `sent`/`delivered`, `errors[]`
//! on `failed`), signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`.

use std::borrow::Cow;

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faults::Refusal;
use super::statuses::{Pending, Status};
use super::{Answer, Mode, SendRequest};

/// The WhatsApp Business Account id statuses are reported under (any stable number does).
const WABA_ID: &str = "102290129340398";

pub struct CloudApi;

impl CloudApi {
    /// Meta's error object for `code`.
    fn error(http: StatusCode, code: i64, message: &str, details: &str) -> Answer {
        let body = json!({"error": {
            "message": format!("(#{code}) {message}"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AhUzCeLs4rZvQPBSim",
        }});
        Answer::json(http, &body)
    }
}

/// `/{version}/{phone_number_id}/messages` → the phone number id.
fn phone_number_id(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (version, id, leaf) = (parts.next()?, parts.next()?, parts.next()?);
    let version_ok = version.starts_with('v') && version.len() > 1 && version[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
    let id_ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_digit());
    (version_ok && id_ok && leaf == "messages" && parts.next().is_none()).then_some(id)
}

impl Mode for CloudApi {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    fn parse_send(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8], token: Option<&str>) -> Result<SendRequest, Refusal> {
        let Some(sender) = phone_number_id(path).filter(|_| method == Method::POST) else {
            return Err(Refusal::UnknownPath);
        };
        if let Some(want) = token {
            let got = headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            if got != Some(want) {
                return Err(Refusal::BadToken);
            }
        }
        // Typed, borrowing where it can: every message the gateway sends is parsed here.
        let m: OutgoingMessage = serde_json::from_slice(body).map_err(|_| Refusal::Invalid)?;
        let kind_ok = match m.kind.as_ref() {
            "template" => m.template.is_some(),
            "text" => m.text.is_some(),
            _ => false,
        };
        if m.messaging_product != "whatsapp" || !kind_ok || m.to.is_empty() {
            return Err(Refusal::Invalid);
        }
        Ok(SendRequest { sender: sender.to_owned(), recipient: m.to.trim_start_matches('+').to_owned(), input: m.to.into_owned() })
    }

    fn message_id(&self, seq: u64, send: &SendRequest) -> String {
        // Real ids are base64 of an opaque structure that starts with the recipient; only
        // uniqueness and the `wamid.` prefix matter to a gateway.
        format!("wamid.HBgN{}FQIAERgS{seq:020X}", send.recipient)
    }

    fn accepted(&self, send: &SendRequest, id: &str) -> Answer {
        let body = Accepted {
            messaging_product: "whatsapp",
            contacts: [Contact { input: &send.input, wa_id: &send.recipient }],
            messages: [AcceptedMessage { id, message_status: "accepted" }],
        };
        Answer { status: StatusCode::OK, body: Bytes::from(serde_json::to_vec(&body).expect("plain strings serialize")) }
    }

    fn refusal(&self, r: Refusal) -> Answer {
        match r {
            Refusal::Throttled => Self::error(StatusCode::BAD_REQUEST, 130429, "Rate limit hit", "Cloud API message throughput has been reached."),
            Refusal::PairLimit => Self::error(
                StatusCode::BAD_REQUEST,
                131056,
                "(Business Account, Consumer Account) pair rate limit hit",
                "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
            ),
            Refusal::ServerError => {
                Self::error(StatusCode::INTERNAL_SERVER_ERROR, 131000, "Something went wrong", "Message failed to send due to an unknown error.")
            }
            Refusal::Blocked => Self::error(
                StatusCode::BAD_REQUEST,
                131050,
                "Unable to deliver message",
                "The user has stopped receiving marketing messages from this business.",
            ),
            Refusal::UnknownRecipient => Self::error(StatusCode::BAD_REQUEST, 131026, "Message undeliverable", "Message Undeliverable."),
            Refusal::Overloaded => Self::error(StatusCode::SERVICE_UNAVAILABLE, 131016, "Service unavailable", "A service is temporarily unavailable."),
            Refusal::BadToken => Self::error(StatusCode::UNAUTHORIZED, 190, "Error validating access token", "The access token is invalid or has expired."),
            Refusal::Invalid => Self::error(StatusCode::BAD_REQUEST, 100, "Invalid parameter", "The message object is not a WhatsApp message."),
            Refusal::UnknownPath => Self::error(StatusCode::NOT_FOUND, 100, "Unsupported post request", "Unknown path components."),
        }
    }

    fn webhook_body(&self, sender: &str, statuses: &[(&Pending, Status)], failed_code: i64) -> Bytes {
        let now = chrono::Utc::now().timestamp();
        let (timestamp, expires) = (now.to_string(), (now + 86_400).to_string());
        let conversations: Vec<String> = statuses.iter().map(|(p, _)| format!("conv-{}", p.recipient)).collect();
        let items: Vec<StatusItem> = statuses
            .iter()
            .zip(&conversations)
            .map(|((p, status), conversation)| {
                let billed = matches!(status, Status::Sent | Status::Delivered);
                StatusItem {
                    id: &p.id,
                    status: status.label(),
                    timestamp: &timestamp,
                    recipient_id: &p.recipient,
                    conversation: billed.then_some(Conversation { id: conversation, expiration_timestamp: &expires, origin: Origin { kind: "marketing" } }),
                    pricing: billed.then_some(Pricing { billable: true, pricing_model: "PMP", category: "marketing", kind: "regular" }),
                    errors: (*status == Status::Failed).then_some([StatusError {
                        code: failed_code,
                        title: "Message undeliverable",
                        message: "Message undeliverable",
                        error_data: ErrorData { details: "Message Undeliverable." },
                    }]),
                }
            })
            .collect();
        let payload = Payload {
            object: "whatsapp_business_account",
            entry: [Entry {
                id: WABA_ID,
                changes: [Change {
                    field: "messages",
                    value: ChangeValue {
                        messaging_product: "whatsapp",
                        metadata: Metadata { display_phone_number: "15550783881", phone_number_id: sender },
                        statuses: items,
                    },
                }],
            }],
        };
        Bytes::from(serde_json::to_vec(&payload).expect("plain strings serialize"))
    }

    fn signature(&self, secret: &[u8], body: &[u8]) -> (&'static str, String) {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        ("x-hub-signature-256", format!("sha256={hex}"))
    }
}

/// The message object a send carries, as far as the simulator checks it.
#[derive(Deserialize)]
struct OutgoingMessage<'a> {
    #[serde(borrow)]
    messaging_product: Cow<'a, str>,
    #[serde(borrow)]
    to: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    template: Option<TemplateObject>,
    #[serde(default)]
    text: Option<TextObject>,
}

#[derive(Deserialize)]
struct TemplateObject {
    #[serde(rename = "name")]
    _name: String,
    #[serde(rename = "language")]
    _language: LanguageObject,
}

#[derive(Deserialize)]
struct LanguageObject {
    #[serde(rename = "code")]
    _code: String,
}

#[derive(Deserialize)]
struct TextObject {
    #[serde(rename = "body")]
    _body: String,
}

#[derive(Serialize)]
struct Accepted<'a> {
    messaging_product: &'static str,
    contacts: [Contact<'a>; 1],
    messages: [AcceptedMessage<'a>; 1],
}

#[derive(Serialize)]
struct Contact<'a> {
    input: &'a str,
    wa_id: &'a str,
}

#[derive(Serialize)]
struct AcceptedMessage<'a> {
    id: &'a str,
    message_status: &'static str,
}

#[derive(Serialize)]
struct Payload<'a> {
    object: &'static str,
    entry: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    id: &'static str,
    changes: [Change<'a>; 1],
}

#[derive(Serialize)]
struct Change<'a> {
    field: &'static str,
    value: ChangeValue<'a>,
}

#[derive(Serialize)]
struct ChangeValue<'a> {
    messaging_product: &'static str,
    metadata: Metadata<'a>,
    statuses: Vec<StatusItem<'a>>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    display_phone_number: &'static str,
    phone_number_id: &'a str,
}

#[derive(Serialize)]
struct StatusItem<'a> {
    id: &'a str,
    status: &'static str,
    timestamp: &'a str,
    recipient_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation: Option<Conversation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<Pricing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<[StatusError; 1]>,
}

#[derive(Serialize)]
struct Conversation<'a> {
    id: &'a str,
    expiration_timestamp: &'a str,
    origin: Origin,
}

#[derive(Serialize)]
struct Origin {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Pricing {
    billable: bool,
    pricing_model: &'static str,
    category: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct StatusError {
    code: i64,
    title: &'static str,
    message: &'static str,
    error_data: ErrorData,
}

#[derive(Serialize)]
struct ErrorData {
    details: &'static str,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::provider::webhook::Webhook;
    use crate::provider::whatsapp_cloud::webhook::CloudWebhook;
    use crate::receipt::ProviderEvent;
    use crate::store::PartOutcome;

    #[test]
    fn paths_and_bodies_are_the_cloud_apis() {
        assert_eq!(phone_number_id("/v23.0/106540352242922/messages"), Some("106540352242922"));
        for bad in ["/v23.0/+4915/messages", "/23.0/1/messages", "/v23.0/1/media", "/v23.0/1/messages/x", "/v23.0//messages"] {
            assert_eq!(phone_number_id(bad), None, "{bad}");
        }
        let api = CloudApi;
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer tok".parse().unwrap());
        let template = br#"{"messaging_product":"whatsapp","to":"4915100000001","type":"template","template":{"name":"hello","language":{"code":"en_US"}}}"#;
        let sent = api.parse_send(&Method::POST, "/v23.0/1065/messages", &h, template, Some("tok")).unwrap();
        assert_eq!((sent.sender.as_str(), sent.recipient.as_str()), ("1065", "4915100000001"));
        assert_eq!(api.parse_send(&Method::POST, "/v23.0/1065/messages", &h, template, Some("other")).unwrap_err(), Refusal::BadToken);
        assert_eq!(api.parse_send(&Method::POST, "/v23.0/1065/messages", &h, br#"{"to":"1","type":"text"}"#, None).unwrap_err(), Refusal::Invalid);
        assert_eq!(api.parse_send(&Method::GET, "/v23.0/1065/messages", &h, template, None).unwrap_err(), Refusal::UnknownPath);
    }

    /// What the simulator pushes is what our own webhook parses, signature included: a
    /// mismatch in either shows up here before it shows up end to end.
    #[test]
    fn statuses_read_back_through_our_webhook() {
        let api = CloudApi;
        let p = |id: &str| Pending { id: id.into(), sender: "1065".into(), recipient: "4915100000001".into(), end: super::super::statuses::End::Read, step: 0 };
        let (a, b, c) = (p("wamid.a"), p("wamid.b"), p("wamid.c"));
        let body = api.webhook_body("1065", &[(&a, Status::Sent), (&b, Status::Read), (&c, Status::Failed)], 131026);
        let hook = CloudWebhook::new(b"secret", None, "whatsapp".into());
        let (name, value) = api.signature(b"secret", &body);
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        hook.authenticate(&headers, &body).unwrap();
        let (_, forged) = api.signature(b"not the secret", &body);
        headers.insert(name, forged.parse().unwrap());
        assert!(hook.authenticate(&headers, &body).is_err());
        let got: Vec<(String, Option<PartOutcome>, bool, Option<String>)> = hook
            .parse(&body)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                ProviderEvent::Receipt(r) => (r.message_id, r.outcome, r.read, r.error_code),
                ProviderEvent::Inbound(_) => panic!("no inbound"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("wamid.a".into(), None, false, None),
                ("wamid.b".into(), Some(PartOutcome::Delivered), true, None),
                ("wamid.c".into(), Some(PartOutcome::Undelivered), false, Some("131026".into())),
            ]
        );
    }

    #[test]
    fn refusals_read_back_through_our_client_as_meta_documents_them() {
        use crate::provider::whatsapp_cloud::status::{action, Action};
        for (r, http, code, want) in [
            (Refusal::Throttled, 400, 130429, Action::PauseNumber),
            (Refusal::PairLimit, 400, 131056, Action::DeferRecipient),
            (Refusal::ServerError, 500, 131000, Action::Retry),
            (Refusal::Overloaded, 503, 131016, Action::Retry),
            (Refusal::Blocked, 400, 131050, Action::Reject),
            (Refusal::UnknownRecipient, 400, 131026, Action::Reject),
            (Refusal::BadToken, 401, 190, Action::AuthDown),
            (Refusal::Invalid, 400, 100, Action::Reject),
        ] {
            let a = CloudApi.refusal(r);
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!((a.status.as_u16(), v["error"]["code"].as_i64()), (http, Some(code)), "{r:?}");
            assert!(v["error"]["message"].as_str().unwrap().starts_with(&format!("(#{code})")), "{v}");
            assert_eq!(action(http, Some(code)), want, "{r:?}");
        }
    }
}
