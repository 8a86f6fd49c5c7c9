//! A provider's webhook: what `POST` and `GET /v1/webhooks/{provider}` do for a provider that
//! has one ([`Provider::webhook`](super::Provider::webhook)).
//!
//! The HTTP layer (`api/webhooks.rs`) owns the order, so no provider can get it wrong: the body
//! is read up to [`Webhook::max_body_bytes`], then [`Webhook::authenticate`] sees the raw bytes
//! and headers, and only an authenticated body reaches [`Webhook::parse`]. What `parse` returns
//! goes into the same receipt path as SMPP's `deliver_sm` (the correlator: correlation through
//! the store, exactly one final, early receipts kept), and the request is answered `200` only
//! once the store has what it carried, so the provider's own retry covers a crash.

use hyper::HeaderMap;

use crate::receipt::ProviderEvent;

/// The body size a webhook takes unless it says otherwise: provider callbacks are small (a
/// WhatsApp status batch is a few KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// The answer to a `GET` (a subscription check such as WhatsApp's `hub.challenge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// `200` with this text as the body.
    Challenge(String),
    /// `403`: the check's token is wrong.
    Refused,
}

/// Why an authentication check failed: for the log line, so it never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthorized(pub &'static str);

pub trait Webhook: Send + Sync {
    /// The largest body taken; a larger one is answered `413` before it is read whole.
    fn max_body_bytes(&self) -> usize {
        DEFAULT_MAX_BODY_BYTES
    }

    /// `GET` with its raw query string; `None` (the default): `GET` is not offered (`405`).
    fn verify(&self, query: &str) -> Option<Verification> {
        let _ = query;
        None
    }

    /// Checks the request's authentication (an HMAC of the raw body, a shared token) before
    /// anything in the body is parsed or acted on. Compare secrets in constant time.
    fn authenticate(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized>;

    /// What the HTTP layer calls: [`Webhook::authenticate`], unless the provider's check needs
    /// the request's raw query string too (a shared token in the callback URL).
    fn authenticate_request(&self, query: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Unauthorized> {
        let _ = query;
        self.authenticate(headers, body)
    }

    /// An authenticated body as receipts and inbound messages, named by this provider; a
    /// malformed body is an error (`400`) and nothing of it is used. Acks are set by the caller.
    fn parse(&self, body: &[u8]) -> Result<Vec<ProviderEvent>, String>;
}

/// Equal without an early exit, so timing says nothing of where a guess went wrong.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hex digits (either case) as bytes; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The value of `name` in a raw query string (`a=1&b=x%20y`), `%XX` and `+` decoded; the
/// first one when it repeats.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| form_decode(v))
}

/// A query value: `%XX` and `+` decoded.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
