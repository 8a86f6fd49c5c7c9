//! Templates: the URL, the headers and the body of a request with the job's fields in
//! `{{...}}`, parsed once when the config is read (an unknown field is a config error naming
//! the key) and rendered per job into a buffer, each value escaped for where it goes.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A value a template may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The job's `id`.
    Id,
    /// The job's `to` as given (`+4915...` for phone channels).
    To,
    /// `to` without its leading `+` (APIs that want bare digits).
    ToDigits,
    /// The job's `from`, else the provider's `default_from`.
    From,
    /// The job's `text`.
    Text,
    Tenant,
    Channel,
    /// The job's `campaign`, empty when it has none.
    Campaign,
    /// `meta.KEY` of the job, empty when it has no such key.
    Meta(String),
    /// The content of `token_file` (an API key, a bearer token): for headers, mostly.
    Secret,
    /// The content of `webhook.secret_file` when the webhook authenticates by token: for a
    /// callback URL passed with each request.
    WebhookToken,
}

/// Every name `{{...}}` may hold, for the error message.
pub const FIELDS: &str = "id, to, to_digits, from, text, tenant, channel, campaign, meta.KEY, secret, webhook_token";

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "to" => Self::To,
            "to_digits" => Self::ToDigits,
            "from" => Self::From,
            "text" => Self::Text,
            "tenant" => Self::Tenant,
            "channel" => Self::Channel,
            "campaign" => Self::Campaign,
            "secret" => Self::Secret,
            "webhook_token" => Self::WebhookToken,
            _ => match name.strip_prefix("meta.") {
                Some(k) if !k.is_empty() => Self::Meta(k.to_owned()),
                _ => return None,
            },
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id => f.write_str("id"),
            Self::To => f.write_str("to"),
            Self::ToDigits => f.write_str("to_digits"),
            Self::From => f.write_str("from"),
            Self::Text => f.write_str("text"),
            Self::Tenant => f.write_str("tenant"),
            Self::Channel => f.write_str("channel"),
            Self::Campaign => f.write_str("campaign"),
            Self::Meta(k) => write!(f, "meta.{k}"),
            Self::Secret => f.write_str("secret"),
            Self::WebhookToken => f.write_str("webhook_token"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

/// How a value is written where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Inside a JSON string: `"`, `\` and control characters escaped as serde_json does.
    Json,
    /// Percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~`): URLs and form bodies.
    Percent,
    /// As it is: header values (a CR or LF in one fails the request, never splits it).
    Raw,
}

/// A value a job does not have (a `from` with no default, `text` of a template job).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct Missing {
    pub field: String,
    pub why: &'static str,
}

/// Where a template finds its values.
pub trait Values {
    /// The value of `field`; `Err` names why the job has none.
    fn get(&self, field: &Field) -> Result<&str, &'static str>;
}

impl Template {
    /// Parses `text`: `{{name}}` (spaces inside allowed) is a field, everything else literal.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("unclosed {{{{ at byte {}", text.len() - rest.len() + open))?;
            let name = after[..close].trim();
            let field = Field::parse(name).ok_or_else(|| format!("unknown placeholder {{{{{name}}}}} (expected one of {FIELDS})"))?;
            parts.push(Part::Field(field));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The fields it names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Literal(_) => None,
        })
    }

    pub fn uses(&self, field: &Field) -> bool {
        self.fields().any(|f| f == field)
    }

    /// Appends the rendering to `out`.
    pub fn render_into(&self, values: &dyn Values, escape: Escape, out: &mut Vec<u8>) -> Result<(), Missing> {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Field(f) => {
                    let v = values.get(f).map_err(|why| Missing { field: f.to_string(), why })?;
                    write_escaped(v, escape, out);
                }
            }
        }
        Ok(())
    }

    pub fn render(&self, values: &dyn Values, escape: Escape) -> Result<String, Missing> {
        let mut out = Vec::new();
        self.render_into(values, escape, &mut out)?;
        // Literals are text and every escape writes UTF-8 (or ASCII).
        Ok(String::from_utf8(out).expect("templates render UTF-8"))
    }
}

fn write_escaped(v: &str, escape: Escape, out: &mut Vec<u8>) {
    match escape {
        Escape::Raw => out.extend_from_slice(v.as_bytes()),
        Escape::Json => {
            let start = out.len();
            serde_json::to_writer(&mut *out, v).expect("writing a string into a Vec cannot fail");
            // serde_json writes a quoted string; the template has its own quotes.
            out.remove(start);
            out.pop();
        }
        Escape::Percent => {
            for &b in v.as_bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b);
                } else {
                    out.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
        }
    }
}

/// Parsed as the config is read, so an unknown placeholder names its key.
impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Map(HashMap<String, &'static str>);

    impl Values for Map {
        fn get(&self, field: &Field) -> Result<&str, &'static str> {
            self.0.get(&field.to_string()).copied().ok_or("not set")
        }
    }

    fn values() -> Map {
        Map(HashMap::from([
            ("to".into(), "+4915100000001"),
            ("text".into(), "Say \"hi\"\\\n\t\u{1}ü 😀"),
            ("meta.x".into(), "a b&c=d/é"),
            ("secret".into(), "key-123"),
        ]))
    }

    #[test]
    fn renders_with_each_escape() {
        let t = Template::parse(r#"{"to":"{{to}}","text":"{{ text }}","x":"{{meta.x}}"}"#).unwrap();
        let json = t.render(&values(), Escape::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(v["text"], "Say \"hi\"\\\n\t\u{1}ü 😀");
        assert_eq!(v["x"], "a b&c=d/é");
        let url = Template::parse("https://api.example/send?to={{to}}&x={{meta.x}}").unwrap();
        assert_eq!(url.render(&values(), Escape::Percent).unwrap(), "https://api.example/send?to=%2B4915100000001&x=a%20b%26c%3Dd%2F%C3%A9");
        let header = Template::parse("App {{secret}}").unwrap();
        assert_eq!(header.render(&values(), Escape::Raw).unwrap(), "App key-123");
        assert_eq!(Template::parse("no fields").unwrap().render(&values(), Escape::Json).unwrap(), "no fields");
    }

    #[test]
    fn a_missing_value_names_the_field() {
        let t = Template::parse("{{from}}").unwrap();
        assert_eq!(t.render(&values(), Escape::Json), Err(Missing { field: "from".into(), why: "not set" }));
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (text, want) in [
            ("{{nope}}", "unknown placeholder {{nope}} (expected one of id, to,"),
            ("{{meta.}}", "unknown placeholder {{meta.}}"),
            ("a {{to", "unclosed {{ at byte 2"),
        ] {
            let e = Template::parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
        let t = Template::parse("{{ meta.crm_contact }}{{to_digits}}").unwrap();
        assert_eq!(t.fields().cloned().collect::<Vec<_>>(), [Field::Meta("crm_contact".into()), Field::ToDigits]);
    }
}
