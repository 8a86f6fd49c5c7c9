//! `sendgate provider-sim telegram`: the Telegram Bot API's `sendMessage` as a gateway meets it.
//!
//! Sends: `POST /bot<token>/sendMessage` with `{"chat_id": <integer or "@channel">, "text": …}`,
//! answered `200 {"ok":true,"result":{"message_id":N,"chat":{"id":C,…},…}}`. Refusals are
//! `{"ok":false,"error_code":N,"description":…}` with HTTP status N, as the Bot API writes them:
//! 429 "Too Many Requests: retry after S" with `parameters.retry_after` (both `throttle_every`
//! and `pair_limit_every`: Telegram's per-chat flood control is the same 429), 403 "Forbidden:
//! bot was blocked by the user" (`blocked_every`), 400 "Bad Request: chat not found"
//! (`unknown_recipient_every`), 500 (`server_error_every`), 401 for a token other than
//! `--token`, 404 for any other path.
//!
//! Statuses: none. Telegram sends no delivery receipts (its `ok` means the message is in the
//! chat), so this mode never pushes anything, whatever `webhook_url` says.

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::Refusal;
use super::statuses::{Pending, Status};
use super::{Answer, Mode, SendRequest};

/// The `retry_after` a 429 names, in seconds: Telegram's shortest, so a test or a dev run
/// waits as little as the real API ever lets it.
const RETRY_AFTER_SECS: u64 = 1;

pub struct BotApi;

impl BotApi {
    fn error(code: u16, description: &str) -> Answer {
        Self::error_with(code, description, None)
    }

    fn error_with(code: u16, description: &str, parameters: Option<Value>) -> Answer {
        let mut body = json!({"ok": false, "error_code": code, "description": description});
        if let Some(p) = parameters {
            body["parameters"] = p;
        }
        Answer::json(StatusCode::from_u16(code).expect("a valid HTTP status"), &body)
    }
}

/// `/bot<token>/sendMessage` → the token.
fn path_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix("/bot")?.strip_suffix("/sendMessage")?;
    (!token.is_empty() && !token.contains('/')).then_some(token)
}

/// A chat's numeric id: its own for an integer, a stable made-up channel id (`-100…`) for an
/// `@username`, as Telegram answers with the channel's numeric id.
fn chat_number(chat: &str) -> i64 {
    if let Ok(id) = chat.parse::<i64>() {
        return id;
    }
    let hash = chat.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    -(1_000_000_000_000 + (hash % 1_000_000_000) as i64)
}

impl Mode for BotApi {
    fn name(&self) -> &'static str {
        "telegram"
    }

    fn pushes_statuses(&self) -> bool {
        false
    }

    fn made_up_token(&self, secret: &str) -> String {
        // A bot token's shape, `<bot id>:<secret>`: the provider checks it.
        format!("{}:{secret}", 100_000_000 + rand::random::<u32>() % 900_000_000)
    }

    fn parse_send(&self, method: &Method, path: &str, _headers: &HeaderMap, body: &[u8], token: Option<&str>) -> Result<SendRequest, Refusal> {
        let Some(got) = path_token(path).filter(|_| method == Method::POST) else {
            return Err(Refusal::UnknownPath);
        };
        if token.is_some_and(|want| want != got) {
            return Err(Refusal::BadToken);
        }
        let m: OutgoingMessage = serde_json::from_slice(body).map_err(|_| Refusal::Invalid)?;
        let chat = match m.chat_id {
            Value::Number(n) if n.is_i64() => n.to_string(),
            Value::String(s) if s.starts_with('@') && s.len() > 1 => s,
            _ => return Err(Refusal::Invalid),
        };
        if m.text.trim().is_empty() {
            return Err(Refusal::Invalid);
        }
        // The bot id is public (the part before `:`); the rest of the token is not kept.
        let bot = got.split_once(':').map_or("bot", |(id, _)| id);
        Ok(SendRequest { sender: bot.to_owned(), recipient: chat.clone(), input: chat })
    }

    fn message_id(&self, seq: u64, _send: &SendRequest) -> String {
        // Unique within the simulator, so within each chat as Telegram's are.
        seq.to_string()
    }

    fn accepted(&self, send: &SendRequest, id: &str) -> Answer {
        let chat_id = chat_number(&send.recipient);
        let kind = if send.recipient.starts_with('@') {
            "channel"
        } else if chat_id < 0 {
            "supergroup"
        } else {
            "private"
        };
        let body = json!({"ok": true, "result": {
            "message_id": id.parse::<i64>().unwrap_or_default(),
            "from": {"id": send.sender.parse::<i64>().unwrap_or_default(), "is_bot": true, "first_name": "sendgate provider-sim"},
            "chat": {"id": chat_id, "type": kind},
            "date": chrono::Utc::now().timestamp(),
        }});
        Answer::json(StatusCode::OK, &body)
    }

    fn refusal(&self, why: Refusal) -> Answer {
        match why {
            Refusal::Throttled | Refusal::PairLimit => {
                Self::error_with(429, &format!("Too Many Requests: retry after {RETRY_AFTER_SECS}"), Some(json!({"retry_after": RETRY_AFTER_SECS})))
            }
            Refusal::ServerError => Self::error(500, "Internal Server Error"),
            Refusal::Overloaded => Self::error(502, "Bad Gateway"),
            Refusal::Blocked => Self::error(403, "Forbidden: bot was blocked by the user"),
            Refusal::UnknownRecipient => Self::error(400, "Bad Request: chat not found"),
            Refusal::BadToken => Self::error(401, "Unauthorized"),
            Refusal::Invalid => Self::error(400, "Bad Request: message text is empty"),
            Refusal::UnknownPath => Self::error(404, "Not Found"),
        }
    }

    /// Never called: this mode pushes nothing ([`Mode::pushes_statuses`]).
    fn webhook_body(&self, _sender: &str, _statuses: &[(&Pending, Status)], _failed_code: i64) -> Bytes {
        Bytes::new()
    }

    /// Never called, as `webhook_body`.
    fn signature(&self, _secret: &[u8], _body: &[u8]) -> (&'static str, String) {
        ("x-telegram-bot-api-secret-token", String::new())
    }
}

/// The `sendMessage` body, as far as the simulator checks it.
#[derive(Deserialize)]
struct OutgoingMessage {
    #[serde(default)]
    chat_id: Value,
    #[serde(default)]
    text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::telegram::status::{action, is_blocked, Action};

    #[test]
    fn paths_and_bodies_are_the_bot_apis() {
        assert_eq!(path_token("/bot123:abc/sendMessage"), Some("123:abc"));
        for bad in ["/bot/sendMessage", "/123:abc/sendMessage", "/bot123:abc/getMe", "/bot1/x/sendMessage"] {
            assert_eq!(path_token(bad), None, "{bad}");
        }
        let h = HeaderMap::new();
        let send = |path: &str, body: &[u8], token: Option<&str>| BotApi.parse_send(&Method::POST, path, &h, body, token);
        let ok = send("/bot123:abc/sendMessage", br#"{"chat_id":4711,"text":"hi"}"#, Some("123:abc")).unwrap();
        assert_eq!((ok.sender.as_str(), ok.recipient.as_str()), ("123", "4711"));
        let channel = send("/bot123:abc/sendMessage", br#"{"chat_id":"@acme","text":"hi"}"#, None).unwrap();
        assert!(chat_number(&channel.recipient) < -1_000_000_000_000);
        assert_eq!(send("/bot123:abc/sendMessage", br#"{"chat_id":1,"text":"hi"}"#, Some("123:other")).unwrap_err(), Refusal::BadToken);
        assert_eq!(send("/bot123:abc/sendMessage", br#"{"chat_id":1,"text":""}"#, None).unwrap_err(), Refusal::Invalid);
        assert_eq!(send("/bot123:abc/sendMessage", br#"{"text":"hi"}"#, None).unwrap_err(), Refusal::Invalid);
        assert!(BotApi.made_up_token("s").split_once(':').is_some_and(|(id, s)| id.len() == 9 && s == "s"));
    }

    /// What the simulator answers is what our Telegram client reads, and the table acts on it
    /// as docs/providers.md says.
    #[test]
    fn answers_read_back_through_our_client() {
        use crate::provider::telegram::api::{read, Answer as Read};
        let send = SendRequest { sender: "123".into(), recipient: "4711".into(), input: "4711".into() };
        let a = BotApi.accepted(&send, "42");
        assert_eq!(read(a.status.as_u16(), &a.body), Read::Sent { chat_id: Some(4711), message_id: 42 });
        for (why, code, want) in [
            (Refusal::Throttled, 429, Action::PauseBot),
            (Refusal::PairLimit, 429, Action::PauseBot),
            (Refusal::ServerError, 500, Action::Retry),
            (Refusal::Blocked, 403, Action::Reject),
            (Refusal::UnknownRecipient, 400, Action::Reject),
            (Refusal::BadToken, 401, Action::AuthDown),
            (Refusal::Invalid, 400, Action::Reject),
        ] {
            let a = BotApi.refusal(why);
            let Read::Refused { code: got, description, retry_after, .. } = read(a.status.as_u16(), &a.body) else { panic!("{why:?}") };
            assert_eq!((a.status.as_u16(), got, action(got)), (code, code, want), "{why:?}");
            assert_eq!(retry_after.is_some(), code == 429, "{why:?}");
            assert_eq!(is_blocked(got, &description), why == Refusal::Blocked, "{why:?}");
        }
    }
}
