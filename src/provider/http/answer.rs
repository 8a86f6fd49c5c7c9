//! Reading what a provider answered (or pushed to the webhook): values at RFC 6901 JSON
//! pointers, as text.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One JSON pointer, or several tried in order (an API whose success and error bodies keep
/// their codes in different places): `"/errorCode"` or `["/messages/0/status/name", "/errorCode"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pointers(pub Vec<String>);

impl<'de> Deserialize<'de> for Pointers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(p)) => Ok(Self(vec![p])),
            Ok(OneOrMany::Many(ps)) => Ok(Self(ps)),
            Err(_) => Err(serde::de::Error::custom("must be a JSON pointer (\"/a/0/b\") or a list of them")),
        }
    }
}

/// Why `pointer` is not a JSON pointer, if it is not one.
pub fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!("must be a JSON pointer starting with \"/\" (RFC 6901), got {pointer:?}"))
    }
}

/// The value at `pointer` as text: a string as it is, a number or boolean written out (Viber
/// and Sinch write ids and codes as JSON numbers); `None` when absent, null, empty, or an
/// object or array.
pub fn text_at(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first of `pointers` that names a value, as text.
pub fn first_text(v: &Value, pointers: &Pointers) -> Option<String> {
    pointers.0.iter().find_map(|p| text_at(v, p))
}

/// What an answer's body says, for the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub message_id: Option<String>,
    pub code: Option<String>,
    /// The provider's own words (at `error_message_pointer`), else the body's start.
    pub message: String,
}

/// Reads `body` (JSON or not: a body that is not JSON has no id and no code).
pub fn read(body: &[u8], message_id: &str, code: &Pointers, message: &Pointers) -> Reading {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = first_text(&v, message).unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    Reading { message_id: text_at(&v, message_id), code: first_text(&v, code), message: text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_at_pointers() {
        let v = json!({"messages": [{"messageId": "abc", "status": {"id": 26, "name": "PENDING_ACCEPTED"}}], "errorCode": null, "ok": true, "empty": ""});
        assert_eq!(text_at(&v, "/messages/0/messageId").as_deref(), Some("abc"));
        assert_eq!(text_at(&v, "/messages/0/status/id").as_deref(), Some("26"));
        assert_eq!(text_at(&v, "/ok").as_deref(), Some("true"));
        for absent in ["/errorCode", "/messages/1/messageId", "/messages", "/empty", "/nope"] {
            assert_eq!(text_at(&v, absent), None, "{absent}");
        }
        let ps = Pointers(vec!["/errorCode".into(), "/messages/0/status/name".into()]);
        assert_eq!(first_text(&v, &ps).as_deref(), Some("PENDING_ACCEPTED"));
        assert_eq!(check_pointer("messageId").unwrap_err(), "must be a JSON pointer starting with \"/\" (RFC 6901), got \"messageId\"");
    }

    #[test]
    fn answers_are_read() {
        let ids = |code: &[&str]| Pointers(code.iter().map(|s| (*s).to_owned()).collect());
        let r = read(
            br#"{"status":0,"status_message":"ok","message_token":5741311803571721087}"#,
            "/message_token",
            &ids(&["/status"]),
            &ids(&["/status_message"]),
        );
        assert_eq!(r, Reading { message_id: Some("5741311803571721087".into()), code: Some("0".into()), message: "ok".into() });
        let r = read(b"<html>502 Bad Gateway</html>", "/id", &ids(&["/code"]), &ids(&[]));
        assert_eq!(r, Reading { message_id: None, code: None, message: "<html>502 Bad Gateway</html>".into() });
    }
}
