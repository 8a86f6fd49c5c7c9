//! One job as one request (the templates rendered with its fields), and the answer as
//! [`SendError`] through the status table.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::Request;
use tracing::warn;

use super::answer;
use super::status::{self, Action};
use super::template::{Escape, Field, Values};
use super::HttpProvider;
use crate::job::{masked, Content, Job};
use crate::provider::https_client::{self, Exchange};
use crate::provider::{Accepted, OnWire, Provider, SendError};

/// A job's values for the templates.
struct JobValues<'a> {
    job: &'a Job,
    from: Option<&'a str>,
    secret: &'a str,
    webhook_token: Option<&'a str>,
}

impl Values for JobValues<'_> {
    fn get(&self, field: &Field) -> Result<&str, &'static str> {
        let j = self.job;
        Ok(match field {
            Field::Id => &j.id,
            Field::To => &j.to,
            Field::ToDigits => j.to.strip_prefix('+').unwrap_or(&j.to),
            Field::From => self.from.ok_or("the job has none and the provider has no default_from")?,
            Field::Text => match &j.content {
                Content::Text(t) => t,
                Content::Template(_) => return Err("the job carries a template; this provider sends text"),
            },
            Field::Tenant => &j.tenant,
            Field::Channel => j.channel.as_str(),
            Field::Campaign => j.campaign.as_deref().unwrap_or(""),
            Field::Meta(k) => j.meta.get(k).map_or("", String::as_str),
            Field::Secret => self.secret,
            Field::WebhookToken => self.webhook_token.ok_or("the webhook has no token")?,
        })
    }
}

fn rejected(code: &str, message: String) -> SendError {
    SendError::Rejected { code: code.into(), message }
}

/// The request for `job`; a job the templates cannot be filled from is rejected.
fn request(p: &HttpProvider, job: &Job, secret: &str) -> Result<Request<Full<Bytes>>, SendError> {
    let values = JobValues { job, from: p.sender(job), secret, webhook_token: p.webhook_token.as_deref() };
    let missing = |e: super::template::Missing| rejected("missing_field", e.to_string());
    let uri = p.cfg.url.render(&values, Escape::Percent).map_err(missing)?;
    let mut req = Request::builder().method(p.method.clone()).uri(uri);
    for (name, t) in &p.cfg.headers {
        let mut value = HeaderValue::from_str(&t.render(&values, Escape::Raw).map_err(missing)?)
            .map_err(|_| rejected("invalid_header", format!("headers.{name}: a value of the job makes it no valid header (a line break?)")))?;
        value.set_sensitive(t.uses(&Field::Secret));
        req = req.header(HeaderName::from_bytes(name.as_bytes()).expect("checked when the config was read"), value);
    }
    let body = match &p.cfg.body {
        Some(t) => {
            if !p.cfg.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                req = req.header(CONTENT_TYPE, p.cfg.content_type.as_str());
            }
            let mut out = Vec::with_capacity(512);
            t.render_into(&values, p.cfg.body_escape(), &mut out).map_err(missing)?;
            Bytes::from(out)
        }
        None => Bytes::new(),
    };
    req.body(Full::new(body)).map_err(|e| rejected("invalid_request", format!("url: {e}")))
}

pub(super) async fn send(p: &HttpProvider, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
    let Some(secret) = p.credential.current() else {
        return Err(SendError::Unavailable(p.credential.refusal().unwrap_or_else(|| "credentials refused".into())));
    };
    let req = request(p, job, &secret)?;
    let _slot = p.slots.acquire().await.map_err(|_| SendError::Unavailable("provider shut down".into()))?;
    // Throttled a moment ago: this job waits its turn in the scheduler, not on a socket.
    if let Some(wait) = p.paused_for() {
        return Err(SendError::Throttled { retry_after: wait });
    }
    if !wire.enter().await {
        return Err(SendError::Fenced);
    }
    let (status, body, retry_after) = match https_client::exchange(&p.client, req, p.cfg.request_timeout, p.cfg.max_answer_bytes).await {
        Exchange::Answered { status, body, retry_after } => (status, body, retry_after),
        Exchange::NotSent(e) => return Err(SendError::Transient { code: "connect".into(), message: e }),
        Exchange::Silent { cause } => return Err(SendError::Ambiguous { after: p.cfg.request_timeout, cause }),
    };
    let a = &p.cfg.answer;
    let read = answer::read(&body, &a.message_id_pointer, &a.error_code_pointer, &a.error_message_pointer);
    let code = read.code.as_deref();
    match status::action(&p.codes, &p.statuses, status, code) {
        Action::Accept => match read.message_id {
            Some(id) => Ok(Accepted { message_ids: vec![id], segments: 1 }),
            // Taken, but with no id no status can ever be matched to it: as good as no answer.
            None => Err(SendError::Ambiguous { after: p.cfg.request_timeout, cause: "no_message_id" }),
        },
        Action::Throttle => {
            let wait = retry_after.unwrap_or(p.cfg.throttle_backoff);
            p.pause(wait);
            warn!(provider = %p.name, status, code = ?code, retry_after = ?wait, "provider throttled; paused");
            Err(status::error(Action::Throttle, status, code, &read.message, wait))
        }
        Action::Down => {
            let e = status::error(Action::Down, status, code, &read.message, p.cfg.down_for);
            p.credential.refused(&e.to_string());
            Err(e)
        }
        action @ (Action::Retry | Action::Reject) => {
            if action == Action::Reject {
                tracing::debug!(provider = %p.name, recipient = %masked(&job.to), status, code = ?code, "message refused");
            }
            Err(status::error(action, status, code, &read.message, p.cfg.throttle_backoff))
        }
    }
}
