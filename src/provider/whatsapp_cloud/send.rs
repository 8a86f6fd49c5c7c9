//! One job as a Cloud API message: the request body, the service-window rule for free-form
//! text, the number's slots and pause, and the answer as [`SendError`].

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::warn;

use super::client::{self, Answer};
use super::status::{self, Action};
use super::WhatsappCloudProvider;
use crate::job::{masked, Content, Job};
use crate::provider::{Accepted, OnWire, Provider, SendError};

/// The code of a free-form text refused before any request: Meta would answer `131047`.
pub const OUTSIDE_WINDOW: &str = "outside_service_window";

/// The Cloud API's message object for `job` going to `to` (digits, no `+`).
pub fn body(job: &Job, to: &str) -> Value {
    match &job.content {
        Content::Text(text) => json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": { "preview_url": false, "body": text },
        }),
        Content::Template(t) => {
            let mut template = json!({ "name": t.name, "language": { "code": t.language } });
            if !t.params.is_empty() {
                let params: Vec<Value> = t.params.iter().map(|p| json!({ "type": "text", "text": p })).collect();
                template["components"] = json!([{ "type": "body", "parameters": params }]);
            }
            json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template", "template": template })
        }
    }
}

pub(super) async fn send(p: &WhatsappCloudProvider, job: &Job, wire: &dyn OnWire) -> Result<Accepted, SendError> {
    let Some(number) = p.sender(job).map(str::to_owned) else {
        return Err(SendError::Rejected {
            code: "no_phone_number_id".into(),
            message: "from: no phone number id, and the provider has no phone_number_id".into(),
        });
    };
    if !number.chars().all(|c| c.is_ascii_digit()) || number.is_empty() {
        return Err(SendError::Rejected { code: "invalid_from".into(), message: format!("from: must be a WhatsApp phone number id (digits), got {number:?}") });
    }
    if matches!(job.content, Content::Text(_)) {
        let open = p.store.service_windows_open(&[(&number, &job.to)], p.clock.now()).await;
        match open.as_deref() {
            Ok([true]) => {}
            Ok(_) => {
                return Err(SendError::Rejected {
                    code: OUTSIDE_WINDOW.into(),
                    message: "text: free-form text goes only to a recipient who wrote to this number in the last 24 h; send a template".into(),
                })
            }
            Err(e) => return Err(SendError::Transient { code: "store".into(), message: e.to_string() }),
        }
    }
    let uri: hyper::Uri =
        format!("{}/{number}/messages", p.api).parse().map_err(|e| SendError::Rejected { code: "invalid_from".into(), message: format!("from: {e}") })?;
    let body = Bytes::from(body(job, job.to.trim_start_matches('+')).to_string());
    let line = p.number(&number);
    let _slot = line.slots.acquire().await.map_err(|_| SendError::Unavailable("provider shut down".into()))?;
    let mut entered = false;
    let mut throttled = 0;
    loop {
        // A paused number sends nothing, this message included; it keeps its place.
        loop {
            let until = *line.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        let Some(token) = p.token.current() else {
            return Err(SendError::Unavailable(p.token.refusal().unwrap_or_else(|| "access token refused".into())));
        };
        if !entered {
            if !wire.enter().await {
                return Err(SendError::Fenced);
            }
            entered = true;
        }
        let answer = client::post(&p.client, &uri, &token, body.clone(), p.cfg.request_timeout).await;
        let (http, code, message) = match answer {
            Answer::Sent { message_id } => return Ok(Accepted { message_ids: vec![message_id], segments: 1 }),
            Answer::NotSent(e) => return Err(SendError::Transient { code: "connect".into(), message: e }),
            Answer::Silent { cause } => return Err(SendError::Ambiguous { after: p.cfg.request_timeout, cause }),
            Answer::Refused { http, code, message } => (http, code, message),
        };
        match status::action(http, code) {
            Action::PauseNumber => {
                let until = Instant::now() + p.cfg.throttle_backoff;
                *line.paused_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
                warn!(provider = %p.name, number = %number, retry_after = ?p.cfg.throttle_backoff, "number throttled (130429); paused");
                throttled += 1;
                if throttled <= p.cfg.max_retries {
                    continue;
                }
                return Err(status::error(http, code, &message, p.cfg.throttle_backoff));
            }
            Action::DeferRecipient => {
                warn!(provider = %p.name, number = %number, recipient = %masked(&job.to), "pair limit (131056); recipient deferred");
                return Err(status::error(http, code, &message, p.cfg.pair_backoff));
            }
            Action::AuthDown => {
                let e = status::error(http, code, &message, p.cfg.auth_retry);
                p.token.refused(&e.to_string());
                return Err(e);
            }
            Action::Retry | Action::Reject => return Err(status::error(http, code, &message, p.cfg.throttle_backoff)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_cloud_apis() {
        let job = |content: &str| {
            crate::job::parse(format!(r#"{{"id":"j","tenant":"t","channel":"whatsapp","to":"+4915100000001",{content}}}"#).as_bytes(), chrono::Utc::now())
                .unwrap()
        };
        assert_eq!(
            body(&job(r#""text":"hi""#), "4915100000001"),
            json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"4915100000001","type":"text","text":{"preview_url":false,"body":"hi"}})
        );
        assert_eq!(
            body(&job(r#""template":{"name":"order_shipped","language":"en_US","params":["Ann","123"]}"#), "4915100000001")["template"],
            json!({"name":"order_shipped","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","text":"Ann"},{"type":"text","text":"123"}]}]})
        );
        assert_eq!(
            body(&job(r#""template":{"name":"hello_world","language":"en_US"}"#), "1")["template"],
            json!({"name":"hello_world","language":{"code":"en_US"}})
        );
    }
}
