//! `POST` and `GET /v1/webhooks/{provider}`: receipts and inbound messages that providers
//! push to us, for every provider with a [`Webhook`].
//!
//! Order, for every provider alike: find the provider (`404`), read the body within the
//! provider's limit (`413`, `408`), check its authentication over the raw bytes (`401`), and
//! only then parse it (`400`). Its receipts and inbound messages go to the correlator, the
//! same path SMPP's `deliver_sm` takes, and the answer is `200` only once the store has them
//! (`503` when shutting down, so the provider sends them again). Each answer is counted in
//! `sendgate_webhook_requests_total{provider,outcome}`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::listener::{self, BodyError};
use super::{json_resp, percent_decode, Api, Resp};
use crate::provider::webhook::{Verification, Webhook};
use crate::receipt::{ProviderEvent, ReceiptAck};
use crate::telemetry;

#[cfg(test)]
mod tests;

/// The `provider` label of requests naming no provider with a webhook: provider names cannot
/// hold parentheses, and a name taken from the path would let anyone add series.
const UNKNOWN: &str = "(unknown)";

/// Where webhooks hand what they carry.
pub struct WebhookEvents(
    /// The correlator's queue, weakly held: the correlator still ends once the providers and
    /// the deadline sweep are gone at shutdown, and a webhook that comes after gets `503`.
    pub mpsc::WeakSender<ProviderEvent>,
);

fn counted(provider: &str, outcome: &'static str, resp: Resp) -> Resp {
    metrics::counter!(telemetry::WEBHOOK_REQUESTS_TOTAL, "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
    resp
}

impl Api {
    pub(super) async fn webhook(&self, req: Request<Incoming>, raw_name: &str) -> Resp {
        let name = percent_decode(raw_name);
        let found = self.router.providers().iter().find(|p| p.name() == name).and_then(|p| p.webhook().map(|w| (p.name(), w)));
        let Some((name, hook)) = found else {
            return counted(UNKNOWN, "unknown_provider", json_resp(StatusCode::NOT_FOUND, json!({"error": "no provider of that name takes webhooks"})));
        };
        match *req.method() {
            Method::GET => verify(name, hook, req.uri().query().unwrap_or("")),
            Method::POST => self.take(name, hook, req).await,
            _ => counted(name, "method_not_allowed", json_resp(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST (or GET to verify)"}))),
        }
    }

    async fn take(&self, name: &str, hook: &dyn Webhook, req: Request<Incoming>) -> Resp {
        let headers = req.headers().clone();
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = match listener::read_body(req, hook.max_body_bytes()).await {
            Ok(b) => b,
            Err(e) => {
                let outcome = match &e {
                    BodyError::TooLarge { .. } => "too_large",
                    BodyError::TooSlow { .. } => "body_timeout",
                    BodyError::Broken(_) => "broken_body",
                };
                return counted(name, outcome, super::body_error(e, |_| {}));
            }
        };
        if let Err(why) = hook.authenticate_request(&query, &headers, &body) {
            warn!(provider = %name, reason = %why, bytes = body.len(), "webhook refused: authentication failed; nothing in it was read");
            return counted(name, "unauthorized", json_resp(StatusCode::UNAUTHORIZED, json!({"error": "authentication failed"})));
        }
        let events = match hook.parse(&body) {
            Ok(events) => events,
            Err(e) => {
                debug!(provider = %name, error = %e, "webhook body malformed");
                return counted(name, "malformed", json_resp(StatusCode::BAD_REQUEST, json!({"error": format!("body: {e}")})));
            }
        };
        let unavailable = || counted(name, "unavailable", json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "shutting down; send it again"})));
        let Some(tx) = self.webhook_events.as_ref().and_then(|w| w.0.upgrade()) else {
            return unavailable();
        };
        let provider: Arc<str> = name.into();
        let count = events.len();
        let mut stored = Vec::new();
        for mut ev in events {
            // As for SMPP's deliver_sm: what the store must keep is acknowledged once it has it.
            let ack = match &mut ev {
                ProviderEvent::Receipt(r) => {
                    r.provider = provider.clone();
                    r.outcome.map(|_| &mut r.ack)
                }
                ProviderEvent::Inbound(m) => {
                    m.provider = provider.clone();
                    Some(&mut m.ack)
                }
            };
            if let Some(ack) = ack {
                let (pair, rx) = ReceiptAck::pair();
                *ack = pair;
                stored.push(rx);
            }
            if tx.send(ev).await.is_err() {
                return unavailable();
            }
        }
        drop(tx);
        for rx in stored {
            if rx.await.is_err() {
                return unavailable();
            }
        }
        counted(name, "accepted", json_resp(StatusCode::OK, json!({"received": count})))
    }
}

fn verify(name: &str, hook: &dyn Webhook, query: &str) -> Resp {
    match hook.verify(query) {
        Some(Verification::Challenge(text)) => counted(
            name,
            "verified",
            Response::builder().status(StatusCode::OK).header(CONTENT_TYPE, "text/plain").body(Full::new(Bytes::from(text))).expect("static response parts"),
        ),
        Some(Verification::Refused) => counted(name, "unauthorized", json_resp(StatusCode::FORBIDDEN, json!({"error": "verification refused"}))),
        None => counted(name, "method_not_allowed", json_resp(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "this provider's webhook takes POST only"}))),
    }
}
