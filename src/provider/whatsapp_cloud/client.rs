//! One `POST` to the Cloud API over the shared HTTPS client (`provider/https_client.rs`), and
//! its answer read as the Cloud API writes it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Uri};
use serde::Deserialize;

use crate::provider::https_client::{self, Exchange, Https};

/// Larger answers are not the Cloud API's.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// 2xx with the message's id (`messages[0].id`, a `wamid.…`).
    Sent { message_id: String },
    /// Refused: the HTTP status, Meta's `error.code` and `error.message` when the body had them.
    Refused { http: u16, code: Option<i64>, message: String },
    /// Never reached Meta (connecting or TLS failed): nothing was sent.
    NotSent(String),
    /// Written, and no (whole) answer: Meta may have taken it.
    Silent { cause: &'static str },
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct Failure {
    error: MetaError,
}

#[derive(Deserialize)]
struct MetaError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// `POST uri` with `body` and the bearer token; the whole exchange bounded by `timeout`.
pub(super) async fn post(client: &Https, uri: &Uri, token: &str, body: Bytes, timeout: Duration) -> Answer {
    let req = Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(body))
        .expect("a valid URI and header values");
    match https_client::exchange(client, req, timeout, MAX_ANSWER_BYTES).await {
        Exchange::Answered { status, body, .. } => read(status, &body),
        Exchange::NotSent(e) => Answer::NotSent(e),
        Exchange::Silent { cause } => Answer::Silent { cause },
    }
}

/// An answer's body as the Cloud API documents it.
pub(super) fn read(status: u16, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Success>(body).ok().and_then(|s| s.messages.into_iter().next()) {
            Some(m) if !m.id.is_empty() => Answer::Sent { message_id: m.id },
            // Taken, but no id to match statuses to: as good as no answer.
            _ => Answer::Silent { cause: "no_message_id" },
        };
    }
    match serde_json::from_slice::<Failure>(body) {
        Ok(Failure { error: e }) => {
            let details = e.error_data.and_then(|d| d.details);
            let message = match (e.message, details) {
                (Some(m), Some(d)) => format!("{m} ({d})"),
                (m, d) => m.or(d).unwrap_or_default(),
            };
            Answer::Refused { http: status, code: e.code, message }
        }
        Err(_) => Answer::Refused { http: status, code: None, message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_documented() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+16505551234","wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA","message_status":"accepted"}]}"#;
        assert_eq!(read(200, ok), Answer::Sent { message_id: "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA".into() });
        let throttled = br#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"error_data":{"messaging_product":"whatsapp","details":"Cloud API message throughput has been reached."},"fbtrace_id":"AbC"}}"#;
        assert_eq!(
            read(400, throttled),
            Answer::Refused { http: 400, code: Some(130429), message: "(#130429) Rate limit hit (Cloud API message throughput has been reached.)".into() }
        );
        assert_eq!(read(502, b"<html>bad gateway</html>"), Answer::Refused { http: 502, code: None, message: "<html>bad gateway</html>".into() });
        assert_eq!(read(200, b"{}"), Answer::Silent { cause: "no_message_id" });
    }
}
