//! The Cloud API's webhook: the subscription check (`GET`), the signature over the raw body
//! (`X-Hub-Signature-256`), and a `messages` change as receipts and inbound messages.
//!
//! Statuses: `sent` says nothing final; `delivered` ends the job `delivered`; `read` ends it
//! `delivered` too when `delivered` was skipped or comes late (Meta does not promise the
//! order), and is the contract's non-final `read` after it; `failed` ends it `undelivered`
//! with Meta's `errors[0].code`. A replayed status meets the store's one-final rule.

use chrono::{DateTime, Utc};
use hyper::HeaderMap;
use ring::hmac;
use serde::Deserialize;

use crate::provider::webhook::{constant_time_eq, form_decode, unhex, Unauthorized, Verification, Webhook};
use crate::receipt::{InboundMessage, InboundReceipt, ProviderEvent, ReceiptAck};
use crate::store::PartOutcome;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

pub struct CloudWebhook {
    /// HMAC-SHA256 under the app secret; the secret itself is not kept.
    key: hmac::Key,
    verify_token: Option<String>,
    /// The channel inbound messages arrive on (the provider's first).
    channel: String,
}

impl CloudWebhook {
    pub fn new(app_secret: &[u8], verify_token: Option<String>, channel: String) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, app_secret), verify_token, channel }
    }
}

/// `sha256=<hex>` as Meta writes the header: what a test or simulator signs with.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, app_secret), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhook for CloudWebhook {
    fn verify(&self, query: &str) -> Option<Verification> {
        let (mut mode, mut token, mut challenge) = (None, None, None);
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "hub.mode" => mode = Some(form_decode(v)),
                "hub.verify_token" => token = Some(form_decode(v)),
                "hub.challenge" => challenge = Some(form_decode(v)),
                _ => {}
            }
        }
        let ok = match (&self.verify_token, &token) {
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
            _ => false,
        };
        Some(match challenge {
            Some(c) if ok && mode.as_deref() == Some("subscribe") => Verification::Challenge(c),
            _ => Verification::Refused,
        })
    }

    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized> {
        let header = headers.get(SIGNATURE_HEADER).ok_or(Unauthorized("no X-Hub-Signature-256"))?;
        let hex = header.to_str().ok().and_then(|h| h.strip_prefix("sha256=")).ok_or(Unauthorized("X-Hub-Signature-256 is not sha256=<hex>"))?;
        let tag = unhex(hex).ok_or(Unauthorized("X-Hub-Signature-256 is not hex"))?;
        hmac::verify(&self.key, body, &tag).map_err(|_| Unauthorized("X-Hub-Signature-256 does not match the body"))
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<ProviderEvent>, String> {
        let payload: Payload = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        for change in payload.entry.into_iter().flat_map(|e| e.changes) {
            let Some(value) = change.value else { continue };
            let number = value.metadata.map(|m| m.phone_number_id).unwrap_or_default();
            for s in value.statuses {
                let (outcome, read) = match s.status.as_str() {
                    "delivered" => (Some(PartOutcome::Delivered), false),
                    "read" => (Some(PartOutcome::Delivered), true),
                    "failed" => (Some(PartOutcome::Undelivered), false),
                    // `sent`, and kinds Meta may add (`deleted`, `warning`): nothing final.
                    _ => (None, false),
                };
                events.push(ProviderEvent::Receipt(InboundReceipt {
                    provider: "set by the caller".into(),
                    message_id: s.id,
                    outcome,
                    error_code: s.errors.first().and_then(|e| e.code).map(|c| c.to_string()),
                    read,
                    stored: false,
                    ack: ReceiptAck::default(),
                }));
            }
            for m in value.messages {
                let text = m
                    .text
                    .map(|t| t.body)
                    .or(m.button.map(|b| b.text))
                    .or_else(|| m.interactive.and_then(Interactive::title))
                    .or_else(|| [m.image, m.video, m.document].into_iter().flatten().find_map(|c| c.caption));
                let from = if m.from.starts_with('+') { m.from } else { format!("+{}", m.from) };
                events.push(ProviderEvent::Inbound(InboundMessage {
                    provider: "set by the caller".into(),
                    channel: self.channel.clone(),
                    from,
                    to: number.clone(),
                    text: text.unwrap_or_default(),
                    at: m.timestamp.and_then(|t| t.parse::<i64>().ok()).and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
                    ack: ReceiptAck::default(),
                }));
            }
        }
        Ok(events)
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    value: Option<ChangeValue>,
}

#[derive(Deserialize)]
struct ChangeValue {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Deserialize)]
struct StatusError {
    #[serde(default)]
    code: Option<i64>,
}

#[derive(Deserialize)]
struct Message {
    from: String,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    text: Option<Text>,
    #[serde(default)]
    button: Option<Button>,
    #[serde(default)]
    interactive: Option<Interactive>,
    #[serde(default)]
    image: Option<Media>,
    #[serde(default)]
    video: Option<Media>,
    #[serde(default)]
    document: Option<Media>,
}

#[derive(Deserialize)]
struct Text {
    body: String,
}

#[derive(Deserialize)]
struct Button {
    text: String,
}

#[derive(Deserialize)]
struct Media {
    #[serde(default)]
    caption: Option<String>,
}

#[derive(Deserialize)]
struct Interactive {
    #[serde(default)]
    button_reply: Option<Reply>,
    #[serde(default)]
    list_reply: Option<Reply>,
}

#[derive(Deserialize)]
struct Reply {
    title: String,
}

impl Interactive {
    fn title(self) -> Option<String> {
        self.button_reply.or(self.list_reply).map(|r| r.title)
    }
}

#[cfg(test)]
mod tests;
