//! The configured webhook: authentication over the raw request (an HMAC-SHA256 signature of
//! the body, or a shared token in a header or the query), then statuses read at JSON pointers
//! and mapped through the `statuses` table into receipts.
//!
//! What happens to a receipt after is the receipt path's (the correlator): an unknown message
//! id is kept as an early receipt, a replayed or late status meets the one-final rule.

use hyper::HeaderMap;
use ring::hmac;
use serde_json::Value;
use tracing::debug;

use super::answer::text_at;
use super::config::{SignatureEncoding, StatusEvent, WebhookAuth, WebhookConfig};
use crate::provider::webhook::{constant_time_eq, query_value, unhex, Unauthorized, Webhook};
use crate::receipt::{InboundReceipt, ProviderEvent, ReceiptAck};
use crate::store::PartOutcome;
use crate::telemetry;

pub struct HttpWebhook {
    /// For the metric label of statuses that could not be read.
    provider: String,
    cfg: WebhookConfig,
    check: Check,
}

enum Check {
    /// The key, not the secret, is kept.
    Hmac(hmac::Key),
    Token(String),
}

impl HttpWebhook {
    pub fn new(provider: &str, cfg: WebhookConfig, secret: &str) -> Self {
        let check = match cfg.auth {
            WebhookAuth::HmacSha256 => Check::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())),
            WebhookAuth::Token => Check::Token(secret.to_owned()),
        };
        Self { provider: provider.to_owned(), cfg, check }
    }

    /// The event a provider status maps to: the exact key, else the longest `prefix*` key.
    pub fn event(&self, status: &str) -> Option<StatusEvent> {
        if let Some(e) = self.cfg.statuses.get(status) {
            return Some(*e);
        }
        self.cfg
            .statuses
            .iter()
            .filter_map(|(k, e)| k.strip_suffix('*').filter(|p| status.starts_with(p)).map(|p| (p.len(), *e)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, e)| e)
    }

    fn receipt(&self, item: &Value) -> Option<InboundReceipt> {
        let ignored = |reason: &'static str| {
            metrics::counter!(telemetry::WEBHOOK_STATUSES_IGNORED_TOTAL, "provider" => self.provider.clone(), "reason" => reason).increment(1);
            debug!(provider = %self.provider, reason, "webhook status ignored");
        };
        let Some(message_id) = text_at(item, &self.cfg.message_id_pointer) else {
            ignored("no_message_id");
            return None;
        };
        let Some(status) = text_at(item, &self.cfg.status_pointer) else {
            ignored("no_status");
            return None;
        };
        let (outcome, read) = match self.event(&status).unwrap_or(StatusEvent::Ignore) {
            StatusEvent::Delivered => (Some(PartOutcome::Delivered), false),
            StatusEvent::Read => (Some(PartOutcome::Delivered), true),
            StatusEvent::Undelivered => (Some(PartOutcome::Undelivered), false),
            StatusEvent::Expired => (Some(PartOutcome::Expired), false),
            StatusEvent::Rejected => (Some(PartOutcome::Rejected), false),
            StatusEvent::Ignore => (None, false),
        };
        let error_code = match outcome {
            Some(PartOutcome::Delivered) | None => None,
            Some(_) => self.cfg.error_code_pointer.as_deref().and_then(|p| text_at(item, p)).or(Some(status)),
        };
        Some(InboundReceipt { provider: "set by the caller".into(), message_id, outcome, error_code, read, stored: false, ack: ReceiptAck::default() })
    }
}

/// The signature as `hmac_sha256` webhooks carry it: what a test or simulator signs with.
pub fn sign(secret: &[u8], body: &[u8], encoding: SignatureEncoding) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body);
    match encoding {
        SignatureEncoding::Hex => tag.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        SignatureEncoding::Base64 => base64_encode(tag.as_ref()),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | u32::from(x) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe base64, padded or not; `None` for anything else. Small enough to keep
/// here rather than add a crate for one header.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl Webhook for HttpWebhook {
    fn max_body_bytes(&self) -> usize {
        self.cfg.max_body_bytes
    }

    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized> {
        self.authenticate_request("", headers, body)
    }

    fn authenticate_request(&self, query: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized> {
        let header = || self.cfg.header.as_deref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok());
        match &self.check {
            Check::Hmac(key) => {
                let value = header().ok_or(Unauthorized("no signature header"))?;
                let sig = value.trim().strip_prefix(self.cfg.prefix.as_str()).ok_or(Unauthorized("signature header without its prefix"))?;
                let tag = match self.cfg.encoding {
                    SignatureEncoding::Hex => unhex(sig),
                    SignatureEncoding::Base64 => base64_decode(sig),
                }
                .ok_or(Unauthorized("signature is not in the configured encoding"))?;
                hmac::verify(key, body, &tag).map_err(|_| Unauthorized("signature does not match the body"))
            }
            Check::Token(want) => {
                let got = match &self.cfg.query {
                    Some(name) => query_value(query, name),
                    None => header().map(str::to_owned),
                };
                let got = got.ok_or(Unauthorized("no token"))?;
                if constant_time_eq(got.as_bytes(), want.as_bytes()) {
                    Ok(())
                } else {
                    Err(Unauthorized("wrong token"))
                }
            }
        }
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<ProviderEvent>, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let items: Vec<&Value> = match &self.cfg.statuses_pointer {
            Some(p) => match v.pointer(p) {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => return Err(format!("no array of statuses at {p}")),
            },
            None if v.is_object() => vec![&v],
            None => return Err("not a JSON object".into()),
        };
        Ok(items.into_iter().filter_map(|item| self.receipt(item)).map(ProviderEvent::Receipt).collect())
    }
}

#[cfg(test)]
mod tests;
