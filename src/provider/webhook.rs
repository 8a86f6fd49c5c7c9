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

    /// An authenticated body as receipts and inbound messages, named by this provider; a
    /// malformed body is an error (`400`) and nothing of it is used. Acks are set by the caller.
    fn parse(&self, body: &[u8]) -> Result<Vec<ProviderEvent>, String>;
}
