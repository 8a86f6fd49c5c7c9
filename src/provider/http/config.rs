//! `[providers.NAME]` with `kind = "http"`: every key, its default and unit, the checks beyond
//! what the types say (errors name the key), and building the provider from it.
//!
//! Templates (`url`, `headers`, `body`) are parsed as the config is read: an unknown
//! placeholder is an error at `providers.NAME.body`, before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::answer::{check_pointer, Pointers};
use super::status::StatusMatch;
use super::template::{Escape, Field, Template, Values};
use super::HttpProvider;
use crate::config::humantime_serde;
use crate::provider::{BuildDeps, BuildError, KindConfig, Provider};

/// No secret is inline: `token_file` and `webhook.secret_file` hold them, and Debug shows
/// templates, never rendered values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Channels this provider serves (`viber`, `voice`, ...).
    pub channels: Vec<String>,
    /// Share of a channel's traffic when several providers serve it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `POST` (default), `PUT`, `PATCH` or `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Where each message goes; placeholders are percent-encoded. `http://` only for tests
    /// and simulators.
    pub url: Template,
    /// Request headers; placeholders as they are (`Authorization = "Bearer {{secret}}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// The body's type: JSON (values JSON-escaped, the template checked to be JSON) unless it
    /// is `application/x-www-form-urlencoded` (values percent-encoded).
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// The body; absent: none (a `GET`).
    #[serde(default)]
    pub body: Option<Template>,
    /// A file holding the secret `{{secret}}` stands for (an API key, a bearer token),
    /// surrounding whitespace ignored; read at start-up and again after the provider refuses it.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `{{from}}` of a job without `from`; without it such a job is rejected (`missing_field`).
    #[serde(default)]
    pub default_from: Option<String>,
    /// Requests in flight at once on this instance.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Connecting (TCP and TLS) may take this long; then the job is retried later.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A request with no answer by then may have been taken: the job ends `unknown`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A job whose final status has not come by then ends `unknown`.
    #[serde(default = "default_receipt_timeout", with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// After a throttling answer without `Retry-After`, nothing is sent for this long.
    #[serde(default = "default_throttle_backoff", with = "humantime_serde")]
    pub throttle_backoff: Duration,
    /// After the provider refused our credentials or account (`down_status`, `down_codes`), it
    /// is down in `/readyz` this long, then `token_file` is read again and tried.
    #[serde(default = "default_down_for", with = "humantime_serde")]
    pub down_for: Duration,
    /// PEM file of extra CAs the API's certificate may chain to; Mozilla's roots always count.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Larger answers are not the API's: read as no answer.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: usize,
    /// How to read an answer.
    pub answer: AnswerConfig,
    /// Status callbacks at `/v1/webhooks/NAME`; absent: none (jobs end `unknown` at
    /// `receipt_timeout`).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    /// HTTP statuses that mean "taken" when no table code says otherwise: classes (`"2xx"`)
    /// or statuses (`"201"`).
    #[serde(default = "default_success_status")]
    pub success_status: Vec<String>,
    /// Where the message id is in a success body (RFC 6901).
    pub message_id_pointer: String,
    /// Where the provider's error code is, in any answer; several are tried in order.
    #[serde(default)]
    pub error_code_pointer: Pointers,
    /// Where its human-readable error is (for the report's `error.message`).
    #[serde(default)]
    pub error_message_pointer: Pointers,
    /// Codes that refuse the message for good: `rejected`.
    #[serde(default)]
    pub permanent_codes: Vec<String>,
    /// Codes of a failure that may pass: retried after `pipeline.retry_backoff`.
    #[serde(default)]
    pub transient_codes: Vec<String>,
    /// Codes that say "slow down": like HTTP 429.
    #[serde(default)]
    pub throttle_codes: Vec<String>,
    /// Codes that blame our account (credentials, credit): the provider goes down for
    /// `down_for`.
    #[serde(default)]
    pub down_codes: Vec<String>,
    /// HTTP statuses that mean the same as `down_codes`.
    #[serde(default = "default_down_status")]
    pub down_status: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAuth {
    /// HMAC-SHA256 of the raw body under the secret, in `header`.
    HmacSha256,
    /// The secret itself, in `header` or in the query parameter `query`.
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// What a provider status becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusEvent {
    Delivered,
    Undelivered,
    Expired,
    Rejected,
    /// Read: `delivered` when nothing final came before, then a non-final `read`.
    Read,
    /// Not final (sent, queued, ringing): nothing reported.
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    /// A file holding the HMAC key or the shared token, surrounding whitespace ignored.
    pub secret_file: PathBuf,
    /// The header carrying the signature (`hmac_sha256`) or the token (`token`).
    #[serde(default)]
    pub header: Option<String>,
    /// `token` only: the query parameter carrying the token instead of a header.
    #[serde(default)]
    pub query: Option<String>,
    /// `hmac_sha256` only: how the signature is written.
    #[serde(default = "default_encoding")]
    pub encoding: SignatureEncoding,
    /// `hmac_sha256` only: text before the signature in the header (`"sha256="`).
    #[serde(default)]
    pub prefix: String,
    /// Where an array of statuses is (batched callbacks); absent: the body is one status.
    #[serde(default)]
    pub statuses_pointer: Option<String>,
    /// Within one status: the message id, as the send's answer gave it.
    pub message_id_pointer: String,
    /// Within one status: the provider's status.
    pub status_pointer: String,
    /// Within one status: the error code a report's `error.code` carries.
    #[serde(default)]
    pub error_code_pointer: Option<String>,
    /// Provider status → event. A key ending in `*` matches by prefix (the exact key wins,
    /// then the longest prefix); a status not listed is not final.
    pub statuses: BTreeMap<String, StatusEvent>,
    /// Larger callbacks get `413`.
    #[serde(default = "default_webhook_max_body")]
    pub max_body_bytes: usize,
}

fn default_weight() -> u32 {
    1
}
fn default_method() -> String {
    "POST".into()
}
fn default_content_type() -> String {
    "application/json".into()
}
fn default_concurrency() -> usize {
    64
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(20)
}
/// Chat and voice statuses come within minutes; a day covers a phone that was off.
fn default_receipt_timeout() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_throttle_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_down_for() -> Duration {
    Duration::from_secs(60)
}
fn default_max_answer_bytes() -> usize {
    64 * 1024
}
fn default_success_status() -> Vec<String> {
    vec!["2xx".into()]
}
fn default_down_status() -> Vec<u16> {
    vec![401]
}
fn default_encoding() -> SignatureEncoding {
    SignatureEncoding::Hex
}
fn default_webhook_max_body() -> usize {
    crate::provider::webhook::DEFAULT_MAX_BODY_BYTES
}

impl HttpConfig {
    /// Whether the body is a form (`application/x-www-form-urlencoded`), else JSON.
    pub fn form_body(&self) -> bool {
        self.content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    }

    pub fn body_escape(&self) -> Escape {
        if self.form_body() {
            Escape::Percent
        } else {
            Escape::Json
        }
    }

    /// Whether any template names `field`.
    pub fn uses(&self, field: &Field) -> bool {
        self.templates().any(|(_, t)| t.uses(field))
    }

    fn templates(&self) -> impl Iterator<Item = (String, &Template)> {
        let headers = self.headers.iter().map(|(k, t)| (format!("headers.{k}"), t));
        std::iter::once(("url".to_owned(), &self.url)).chain(headers).chain(self.body.iter().map(|b| ("body".to_owned(), b)))
    }
}

/// A value for every field: what the templates are checked with.
struct Sample;

impl Values for Sample {
    fn get(&self, _: &Field) -> Result<&str, &'static str> {
        Ok("1")
    }
}

impl KindConfig for HttpConfig {
    fn channels(&self) -> &[String] {
        &self.channels
    }

    fn validate(&self, path: &str, errors: &mut Vec<String>) {
        let s = self;
        let mut check = |ok: bool, k: &str, msg: String| {
            if !ok {
                errors.push(format!("{path}.{k}: {msg}"));
            }
        };
        check(!s.channels.is_empty(), "channels", "at least one channel".into());
        check(s.weight > 0, "weight", format!("must be > 0, got {}", s.weight));
        check(matches!(s.method.as_str(), "POST" | "PUT" | "PATCH" | "GET"), "method", format!("must be POST, PUT, PATCH or GET, got {:?}", s.method));
        match s.url.render(&Sample, Escape::Percent).map(|u| u.parse::<hyper::Uri>()) {
            Ok(Ok(u)) if matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some() => {}
            _ => check(false, "url", "must be an https:// URL".into()),
        }
        for (k, t) in &s.headers {
            check(hyper::header::HeaderName::from_bytes(k.as_bytes()).is_ok(), &format!("headers.{k}"), "not a valid header name".into());
            let ok = t.render(&Sample, Escape::Raw).is_ok_and(|v| hyper::header::HeaderValue::from_str(&v).is_ok());
            check(ok, &format!("headers.{k}"), "not a valid header value".into());
        }
        check(s.content_type.parse::<hyper::header::HeaderValue>().is_ok(), "content_type", "not a valid header value".into());
        if let (Some(body), false) = (&s.body, s.form_body()) {
            let rendered = body.render(&Sample, Escape::Json).unwrap_or_default();
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&rendered) {
                check(false, "body", format!("not JSON once its placeholders are filled in ({e}); put each {{{{...}}}} inside a JSON string"));
            }
        }
        for (key, t) in s.templates() {
            check(!t.uses(&Field::Secret) || s.token_file.is_some(), &key, "uses {{secret}}, but token_file is not set".into());
            let token_hook = s.webhook.as_ref().is_some_and(|w| w.auth == WebhookAuth::Token);
            check(!t.uses(&Field::WebhookToken) || token_hook, &key, "uses {{webhook_token}}, but the webhook does not authenticate by token".into());
        }
        check(s.concurrency > 0, "concurrency", format!("must be > 0, got {}", s.concurrency));
        for (k, d) in [
            ("connect_timeout", s.connect_timeout),
            ("request_timeout", s.request_timeout),
            ("receipt_timeout", s.receipt_timeout),
            ("throttle_backoff", s.throttle_backoff),
            ("down_for", s.down_for),
        ] {
            check(!d.is_zero(), k, "must be > 0".into());
        }
        check(s.max_answer_bytes >= 1024, "max_answer_bytes", format!("must be >= 1024, got {}", s.max_answer_bytes));
        for (k, f) in [("token_file", &s.token_file), ("tls_ca_file", &s.tls_ca_file)] {
            if let Some(f) = f {
                check(f.is_file(), k, format!("not a readable file: {}", f.display()));
            }
        }
        s.answer.validate(&format!("{path}.answer"), errors);
        if let Some(w) = &s.webhook {
            w.validate(&format!("{path}.webhook"), errors);
        }
    }

    fn build(&self, name: &str, deps: &BuildDeps) -> Result<Arc<dyn Provider>, BuildError> {
        HttpProvider::start(name, self.clone(), deps).map(|p| p as Arc<dyn Provider>)
    }
}

impl AnswerConfig {
    fn validate(&self, path: &str, errors: &mut Vec<String>) {
        let mut check = |ok: Result<(), String>, k: &str| {
            if let Err(msg) = ok {
                errors.push(format!("{path}.{k}: {msg}"));
            }
        };
        for s in &self.success_status {
            check(StatusMatch::parse(s).map(|_| ()).ok_or_else(|| format!("{s:?} is neither a class like \"2xx\" nor an HTTP status")), "success_status");
        }
        check(if self.success_status.is_empty() { Err("at least one status".into()) } else { Ok(()) }, "success_status");
        check(check_pointer(&self.message_id_pointer), "message_id_pointer");
        for p in self.error_code_pointer.0.iter() {
            check(check_pointer(p), "error_code_pointer");
        }
        for p in self.error_message_pointer.0.iter() {
            check(check_pointer(p), "error_message_pointer");
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (table, codes) in [
            ("permanent_codes", &self.permanent_codes),
            ("transient_codes", &self.transient_codes),
            ("throttle_codes", &self.throttle_codes),
            ("down_codes", &self.down_codes),
        ] {
            for c in codes {
                if let Some(other) = seen.insert(c, table) {
                    check(Err(format!("{c:?} is in {other} too; a code means one thing")), table);
                }
            }
        }
        for s in &self.down_status {
            check(if (400..600).contains(s) { Ok(()) } else { Err(format!("{s} is not an HTTP error status")) }, "down_status");
        }
    }
}

impl WebhookConfig {
    fn validate(&self, path: &str, errors: &mut Vec<String>) {
        let mut check = |ok: bool, k: &str, msg: String| {
            if !ok {
                errors.push(format!("{path}.{k}: {msg}"));
            }
        };
        match self.auth {
            WebhookAuth::HmacSha256 => {
                check(self.header.is_some(), "header", "required with auth = \"hmac_sha256\" (where the signature is)".into());
                check(self.query.is_none(), "query", "only with auth = \"token\"".into());
            }
            WebhookAuth::Token => check(
                self.header.is_some() != self.query.is_some(),
                "header",
                "auth = \"token\" needs exactly one of header and query (where the token is)".into(),
            ),
        }
        if let Some(h) = &self.header {
            check(hyper::header::HeaderName::from_bytes(h.as_bytes()).is_ok(), "header", format!("not a valid header name: {h:?}"));
        }
        check(self.secret_file.is_file(), "secret_file", format!("not a readable file: {}", self.secret_file.display()));
        for (k, p) in [("statuses_pointer", &self.statuses_pointer), ("error_code_pointer", &self.error_code_pointer)] {
            if let Some(Err(e)) = p.as_deref().map(check_pointer) {
                check(false, k, e);
            }
        }
        for (k, p) in [("message_id_pointer", &self.message_id_pointer), ("status_pointer", &self.status_pointer)] {
            if let Err(e) = check_pointer(p) {
                check(false, k, e);
            }
        }
        let finals = self.statuses.values().filter(|e| !matches!(e, StatusEvent::Ignore | StatusEvent::Read)).count();
        check(finals > 0, "statuses", "must map at least one provider status to a final event (delivered, undelivered, expired, rejected)".into());
        for k in self.statuses.keys() {
            check(!k.trim_end_matches('*').contains('*'), &format!("statuses.{k}"), "`*` only at the end (a prefix)".into());
        }
        check(self.max_body_bytes >= 1024, "max_body_bytes", format!("must be >= 1024, got {}", self.max_body_bytes));
    }
}

#[cfg(test)]
mod tests;
