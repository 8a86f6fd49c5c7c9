//! The Bot API on the wire: a job as a `sendMessage` request, one `POST` over the shared HTTPS
//! client (`provider/https_client.rs`), and its answer read as Telegram writes it:
//! `{"ok":true,"result":{"message_id":N,"chat":{"id":C},...}}` or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{"retry_after":S}}`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::provider::https_client::{self, Exchange, Https};

/// Larger answers are not the Bot API's to `sendMessage`.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// A `retry_after` beyond this is not believed: a day is already longer than any job waits.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// `ok` with the message's id (unique within its chat only) and the chat's numeric id.
    Sent { chat_id: Option<i64>, message_id: i64 },
    /// Refused: Telegram's `error_code` (its HTTP status when the body has none), its
    /// `description`, and the `parameters` that say what to do.
    Refused { code: u16, description: String, retry_after: Option<Duration>, migrate_to_chat_id: Option<i64> },
    /// Never reached Telegram (connecting or TLS failed): nothing was sent.
    NotSent(String),
    /// Written, and no (whole, usable) answer: Telegram may have taken it.
    Silent { cause: &'static str },
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    result: Option<SentMessage>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct SentMessage {
    message_id: i64,
    #[serde(default)]
    chat: Option<Chat>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Deserialize)]
struct Parameters {
    /// Seconds; documented as an integer, read as a number in case a fraction comes.
    #[serde(default)]
    retry_after: Option<f64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

/// The `sendMessage` body: `chat_id` as a number when `to` is one (a user, group or
/// supergroup), else as given (`@channelusername`).
pub(super) fn body(to: &str, text: &str, parse_mode: Option<&str>) -> Value {
    let chat_id = to.parse::<i64>().map_or_else(|_| json!(to), |id| json!(id));
    let mut body = json!({ "chat_id": chat_id, "text": text });
    if let Some(mode) = parse_mode {
        body["parse_mode"] = json!(mode);
    }
    body
}

/// `POST uri` with `body`; the whole exchange bounded by `timeout`. `uri` carries the token:
/// it is never logged, and nothing here puts it in an error.
pub(super) async fn post(client: &Https, uri: Uri, body: Bytes, timeout: Duration) -> Answer {
    let req = Request::post(uri).header(CONTENT_TYPE, "application/json").body(Full::new(body)).expect("a valid URI and header values");
    match https_client::exchange(client, req, timeout, MAX_ANSWER_BYTES).await {
        Exchange::Answered { status, body, .. } => read(status, &body),
        Exchange::NotSent(e) => Answer::NotSent(e),
        Exchange::Silent { cause } => Answer::Silent { cause },
    }
}

/// An answer's body as the Bot API documents it.
pub(crate) fn read(status: u16, body: &[u8]) -> Answer {
    let reply = serde_json::from_slice::<Reply>(body).ok();
    if (200..300).contains(&status) {
        return match reply {
            Some(Reply { ok: true, result: Some(m), .. }) => Answer::Sent { chat_id: m.chat.map(|c| c.id), message_id: m.message_id },
            // Taken, maybe, but nothing to name it by: as good as no answer.
            _ => Answer::Silent { cause: "no_message_id" },
        };
    }
    match reply {
        Some(r) => {
            let params = r.parameters;
            let retry_after =
                params.as_ref().and_then(|p| p.retry_after).filter(|s| s.is_finite() && *s >= 0.0).map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER));
            Answer::Refused {
                code: r.error_code.unwrap_or(status),
                description: r.description.unwrap_or_default(),
                retry_after,
                migrate_to_chat_id: params.and_then(|p| p.migrate_to_chat_id),
            }
        }
        None => Answer::Refused {
            code: status,
            description: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            retry_after: None,
            migrate_to_chat_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_documented() {
        let ok = br#"{"ok":true,"result":{"message_id":4711,"from":{"id":123456,"is_bot":true,"first_name":"Acme"},"chat":{"id":-1001234567890,"title":"Acme news","type":"supergroup"},"date":1795242600,"text":"hi"}}"#;
        assert_eq!(read(200, ok), Answer::Sent { chat_id: Some(-1001234567890), message_id: 4711 });
        let throttled = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        assert_eq!(
            read(429, throttled),
            Answer::Refused {
                code: 429,
                description: "Too Many Requests: retry after 7".into(),
                retry_after: Some(Duration::from_secs(7)),
                migrate_to_chat_id: None
            }
        );
        let migrated = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1009876543210}}"#;
        assert!(matches!(read(400, migrated), Answer::Refused { code: 400, migrate_to_chat_id: Some(-1009876543210), .. }));
        let blocked = br#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#;
        assert!(matches!(read(403, blocked), Answer::Refused { code: 403, retry_after: None, .. }));
        assert_eq!(
            read(502, b"<html>bad gateway</html>"),
            Answer::Refused { code: 502, description: "<html>bad gateway</html>".into(), retry_after: None, migrate_to_chat_id: None }
        );
        assert_eq!(read(200, br#"{"ok":true,"result":true}"#), Answer::Silent { cause: "no_message_id" });
        assert_eq!(read(200, b"{}"), Answer::Silent { cause: "no_message_id" });
        let absurd = br#"{"ok":false,"error_code":429,"description":"x","parameters":{"retry_after":1e12}}"#;
        assert!(matches!(read(429, absurd), Answer::Refused { retry_after: Some(d), .. } if d == MAX_RETRY_AFTER));
    }

    #[test]
    fn bodies_are_the_bot_apis() {
        assert_eq!(body("123456789", "hi", None), json!({"chat_id": 123456789, "text": "hi"}));
        assert_eq!(body("-1001234567890", "<b>hi</b>", Some("HTML")), json!({"chat_id": -1001234567890i64, "text": "<b>hi</b>", "parse_mode": "HTML"}));
        assert_eq!(body("@acme_news", "hi", None), json!({"chat_id": "@acme_news", "text": "hi"}));
    }
}
