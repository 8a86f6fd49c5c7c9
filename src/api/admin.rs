//! The admin API under `/v1/admin/`: opt-out lists, WhatsApp tiers (`whatsapp.rs`) and
//! campaign speeds and pacing (`campaigns.rs`), behind
//! the configured bearer token.
//!
//! Without `[admin]` in config the whole prefix answers 404 (see `mod.rs`). Every request is
//! authorized before its path is even looked at, so without the token nothing here, not even
//! which routes exist, can be learned. Every change is logged with the configured `actor`.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use tracing::{info, warn};

use super::{json_resp, percent_decode, Resp};
use crate::config::AdminConfig;
use crate::job::{check_recipient, masked};
use crate::store::Store;
use crate::telemetry;

mod campaigns;
mod whatsapp;

pub use campaigns::CampaignAdmin;
pub use whatsapp::WhatsappAdmin;

/// A token shorter than this is refused at startup (as `admin.token` is by config checks).
const MIN_TOKEN_CHARS: usize = 16;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminSetupError {
    /// Fix the path or the file's permissions.
    #[error("admin.token_file: cannot read {}: {source}", path.display())]
    TokenFile { path: PathBuf, source: std::io::Error },
    /// Put a longer token in the file.
    #[error("admin.token_file: {}: the token must be at least {MIN_TOKEN_CHARS} characters, got {len}", path.display())]
    ShortToken { path: PathBuf, len: usize },
}

pub struct Admin {
    store: Arc<dyn Store>,
    /// The secret; never logged, compared only with [`constant_time_eq`].
    token: Vec<u8>,
    /// Who holds the token, for the log line of every change.
    actor: String,
    /// The WhatsApp routes; `None` until [`Admin::with_whatsapp`].
    whatsapp: Option<WhatsappAdmin>,
    /// Campaign pacing for `/v1/admin/campaigns/...`; `None` until [`Admin::with_campaigns`]
    /// (speeds alone then).
    campaigns: Option<CampaignAdmin>,
}

impl Admin {
    /// Reads the token (from `token_file` if that is how it is given).
    pub fn new(cfg: &AdminConfig, store: Arc<dyn Store>) -> Result<Self, AdminSetupError> {
        let token = match (&cfg.token, &cfg.token_file) {
            (Some(t), _) => t.trim().to_owned(),
            (None, Some(path)) => {
                let t = std::fs::read_to_string(path).map_err(|source| AdminSetupError::TokenFile { path: path.clone(), source })?;
                let t = t.trim().to_owned();
                if t.chars().count() < MIN_TOKEN_CHARS {
                    return Err(AdminSetupError::ShortToken { path: path.clone(), len: t.chars().count() });
                }
                t
            }
            // Config validation refuses an [admin] without either.
            (None, None) => String::new(),
        };
        Ok(Self { store, token: token.into_bytes(), actor: cfg.actor.clone(), whatsapp: None, campaigns: None })
    }

    /// Adds `/v1/admin/whatsapp/...`: a portfolio's tier and use, and inbound contacts.
    pub fn with_whatsapp(mut self, whatsapp: WhatsappAdmin) -> Self {
        self.whatsapp = Some(whatsapp);
        self
    }

    /// Adds smooth sending to `/v1/admin/campaigns/...`: `finish_by`, pending, pace.
    pub fn with_campaigns(mut self, campaigns: CampaignAdmin) -> Self {
        self.campaigns = Some(campaigns);
        self
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        if let Some(refused) = self.refusal(&req) {
            return refused;
        }
        let path = req.uri().path();
        let segments = path_segments(path);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        match segments.as_slice() {
            ["opt-outs", tenant, channel, recipient] => {
                if let Some(bad) = bad_path(tenant, channel, Some(recipient)) {
                    return bad;
                }
                match method {
                    Method::PUT => self.change(true, tenant, channel, recipient).await,
                    Method::DELETE => self.change(false, tenant, channel, recipient).await,
                    Method::GET => self.lookup(tenant, channel, recipient).await,
                    _ => method_not_allowed("PUT, DELETE, GET"),
                }
            }
            ["opt-outs", tenant, channel] => {
                if let Some(bad) = bad_path(tenant, channel, None) {
                    return bad;
                }
                match method {
                    Method::GET => self.list(tenant, channel, req.uri().query().unwrap_or("")).await,
                    _ => method_not_allowed("GET"),
                }
            }
            ["whatsapp", "portfolios", name] if self.whatsapp.is_some() => match (&self.whatsapp, method) {
                (Some(w), Method::GET) => w.portfolio(name).await,
                _ => method_not_allowed("GET"),
            },
            ["whatsapp", "inbound"] if self.whatsapp.is_some() => match (&self.whatsapp, method) {
                (Some(w), Method::POST) => w.inbound(req, &self.actor).await,
                _ => method_not_allowed("POST"),
            },
            ["campaigns", tenant, campaign] => match method {
                Method::PUT => campaigns::set(self.store.as_ref(), self.campaigns.as_ref(), tenant, campaign, req, &self.actor).await,
                Method::GET => campaigns::get(self.store.as_ref(), self.campaigns.as_ref(), tenant, campaign).await,
                _ => method_not_allowed("PUT, GET"),
            },
            _ => json_resp(StatusCode::NOT_FOUND, json!({"error": format!("no admin route for {path}")})),
        }
    }

    /// The 401 for a request without our token; `None` lets it through.
    fn refusal(&self, req: &Request<Incoming>) -> Option<Resp> {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            None => Some(unauthorized("Bearer realm=\"sendgate-admin\"", "authorization: a bearer token is required")),
            Some(t) if constant_time_eq(t.as_bytes(), &self.token) => None,
            Some(_) => {
                // Not the path: it may hold a phone number.
                warn!(method = %req.method(), "admin request with a wrong bearer token refused");
                Some(unauthorized("Bearer realm=\"sendgate-admin\", error=\"invalid_token\"", "authorization: the bearer token is not valid"))
            }
        }
    }

    async fn change(&self, add: bool, tenant: &str, channel: &str, recipient: &str) -> Resp {
        let entry = [(tenant, channel, recipient)];
        let result = if add { self.store.add_opt_outs(&entry).await } else { self.store.remove_opt_outs(&entry).await };
        let changed = match result {
            Ok(c) => c.first().copied().unwrap_or(false),
            Err(e) => return store_unavailable(e),
        };
        let action = if add { "add" } else { "remove" };
        if add && changed {
            metrics::counter!(telemetry::OPT_OUTS_TOTAL, "source" => "admin").increment(1);
        }
        info!(actor = %self.actor, action, tenant, channel, recipient = %masked(recipient), changed, "admin changed an opt-out list");
        json_resp(StatusCode::OK, json!({"tenant": tenant, "channel": channel, "recipient": recipient, "opted_out": add, "changed": changed}))
    }

    async fn lookup(&self, tenant: &str, channel: &str, recipient: &str) -> Resp {
        match self.store.opted_out(&[(tenant, channel, recipient)]).await {
            Ok(listed) => json_resp(
                StatusCode::OK,
                json!({"tenant": tenant, "channel": channel, "recipient": recipient, "opted_out": listed.first().copied().unwrap_or(false)}),
            ),
            Err(e) => store_unavailable(e),
        }
    }

    async fn list(&self, tenant: &str, channel: &str, query: &str) -> Resp {
        let (cursor, limit) = match page_query(query) {
            Ok(q) => q,
            Err(msg) => return json_resp(StatusCode::BAD_REQUEST, json!({"error": msg})),
        };
        match self.store.list_opt_outs(tenant, channel, cursor.as_deref(), limit).await {
            Ok(page) => {
                json_resp(StatusCode::OK, json!({"tenant": tenant, "channel": channel, "recipients": page.recipients, "next_cursor": page.next_cursor}))
            }
            Err(e) => store_unavailable(e),
        }
    }
}

/// Compares a presented token with ours in time that depends only on our token's length, so
/// response timing cannot tell an attacker how much of a guess was right. Hand-written rather
/// than taking the `subtle` crate for one function; `black_box` keeps the optimizer from
/// turning the loop back into an early exit.
pub(crate) fn constant_time_eq(presented: &[u8], ours: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != ours.len());
    for (i, &b) in ours.iter().enumerate() {
        diff |= std::hint::black_box(presented.get(i).copied().unwrap_or(0) ^ b);
    }
    std::hint::black_box(diff) == 0 && !ours.is_empty()
}

/// The 400 for a path whose tenant, channel or recipient a job could not have (it names
/// which); `None` when all are fine.
fn bad_path(tenant: &str, channel: &str, recipient: Option<&str>) -> Option<Resp> {
    check_recipient(tenant, channel, recipient).err().map(|(field, msg)| {
        let field = if field == "to" { "recipient" } else { field };
        json_resp(StatusCode::BAD_REQUEST, json!({"error": format!("{field}: {msg}")}))
    })
}

/// The segments of an admin path after `/v1/admin/`, each percent-decoded on its own, so that
/// a `%2F` inside a segment stays inside it.
pub(crate) fn path_segments(path: &str) -> Vec<String> {
    path.strip_prefix("/v1/admin/").unwrap_or_default().split('/').map(percent_decode).collect()
}

/// `cursor` (the `next_cursor` of the previous page) and `limit` (1-1000, default 100). A `+`
/// in a query is taken literally, not as a space: cursors are E.164 numbers.
pub(crate) fn page_query(query: &str) -> Result<(Option<String>, usize), String> {
    let (mut cursor, mut limit) = (None, DEFAULT_PAGE);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "cursor" => cursor = Some(percent_decode(v)).filter(|c| !c.is_empty()),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit: must be a whole number from 1 to {MAX_PAGE}, got {:?}", percent_decode(v)))?
            }
            other => return Err(format!("query: unknown parameter {:?} (expected cursor, limit)", percent_decode(other))),
        }
    }
    Ok((cursor, limit))
}

fn unauthorized(challenge: &'static str, msg: &str) -> Resp {
    let mut resp = json_resp(StatusCode::UNAUTHORIZED, json!({"error": msg}));
    resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = json_resp(StatusCode::METHOD_NOT_ALLOWED, json!({"error": format!("method: use {allow}")}));
    resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

/// A request body of at most `max` bytes within `server.body_timeout`, or the 413/408/400
/// that says why not.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<bytes::Bytes, Resp> {
    super::listener::read_body(req, max).await.map_err(|e| super::body_error(e, |_| {}))
}

fn store_unavailable(e: crate::store::StoreError) -> Resp {
    json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"error": format!("store: {e}")}))
}

/// The 404 of the whole prefix when no `[admin]` is configured.
pub fn disabled() -> Resp {
    json_resp(StatusCode::NOT_FOUND, json!({"error": "the admin API is disabled: no [admin] token is configured"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        let ours = b"0123456789abcdef";
        let cases: &[(&[u8], bool)] = &[
            (b"0123456789abcdef", true),
            (b"0123456789abcdeF", false),
            (b"x123456789abcdef", false),
            (b"0123456789abcde", false),
            (b"0123456789abcdef0", false),
            (b"", false),
        ];
        for (presented, want) in cases {
            assert_eq!(constant_time_eq(presented, ours), *want, "{:?}", String::from_utf8_lossy(presented));
        }
        // No configured token never matches, not even an empty one.
        assert!(!constant_time_eq(b"", b""));
    }

    #[test]
    fn page_queries_name_the_bad_part() {
        assert_eq!(page_query(""), Ok((None, DEFAULT_PAGE)));
        assert_eq!(page_query("cursor=+79161234567&limit=2"), Ok((Some("+79161234567".into()), 2)));
        assert_eq!(page_query("cursor=%2B79161234567"), Ok((Some("+79161234567".into()), DEFAULT_PAGE)));
        assert!(page_query("limit=0").unwrap_err().starts_with("limit: must be"));
        assert!(page_query("limit=lots").unwrap_err().starts_with("limit: must be"));
        assert!(page_query("limit=1001").unwrap_err().starts_with("limit: must be"));
        assert!(page_query("page=2").unwrap_err().starts_with("query: unknown parameter \"page\""));
    }

    /// Fuzzing found a `%` followed by half of a multi-byte character panicking (a `str` slice
    /// inside the character); `from_str_radix` also read `%+1` as an escape.
    #[test]
    fn escapes_are_two_hex_digits_and_never_split_a_character() {
        assert_eq!(path_segments("/v1/admin/opt-outs/%aé/%é/%2B7916%2f1"), ["opt-outs", "%aé", "%é", "+7916/1"]);
        assert_eq!(page_query("cursor=%a\u{e9}1"), Ok((Some("%aé1".into()), DEFAULT_PAGE)));
        assert_eq!(page_query("cursor=%+1%-1"), Ok((Some("%+1%-1".into()), DEFAULT_PAGE)));
        assert_eq!(percent_decode("%C3%A9%"), "é%");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
    }
}
