//! A job's `cascade`: the channels to try in order, each until a result counts as success
//! (docs/cascades.md). Parsed here, beside the job's other fields, so that a step's `to`,
//! `from`, `text` and `template` are checked exactly as a job's are; the same parser reads
//! `[cascades.NAME]` in config. What running a cascade means is `crate::cascade`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{check_channel, check_from, check_to, kind_of, name, quoted, quoted_json, string, template, text, time, Channel, Content, FieldError, FieldResult};

/// Most steps a cascade may have: each is a message someone pays for.
pub const MAX_STEPS: usize = 8;

/// The result that counts as a step's success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// The provider took it: its receipt's outcome is the job's final, whatever it is.
    Accepted,
    Delivered,
    Read,
}

impl Until {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }
}

/// A step's own validity, bounded by the job's `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Counted from when the step is taken up (each time: a step parked by quiet hours
    /// counts from when it comes back).
    Ttl(Duration),
    At(DateTime<Utc>),
}

/// One step of a cascade: what differs from the job on this channel, and when to move on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub channel: Channel,
    pub route: Option<String>,
    /// The recipient on this channel (a chat id for Telegram); `None`: the job's `to`.
    pub to: Option<String>,
    pub from: Option<String>,
    pub content: Option<Content>,
    pub until: Until,
    /// How long to wait for `until` before moving on; `None`: the provider's receipt timeout.
    pub decision_time: Option<Duration>,
    pub validity: Option<Validity>,
}

/// A job's `cascade` as given: a name from config, or the steps themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CascadeSpec {
    Named(String),
    Inline(Arc<[Step]>),
}

/// Longest decision time or step validity: the longest a job may live (`ttl_s`).
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

pub(super) fn spec(v: &Value) -> FieldResult<CascadeSpec> {
    match v {
        Value::String(_) => Ok(CascadeSpec::Named(name("cascade", v)?)),
        Value::Array(items) => steps(items).map(|s| CascadeSpec::Inline(s.into())).map_err(|m| FieldError("cascade", m)),
        other => Err(FieldError("cascade", format!("must be a cascade name or an array of steps, got {}", kind_of(other)))),
    }
}

/// Parses a cascade's steps; an error starts with the step's index and key (`[1].until: ...`).
pub fn steps(items: &[Value]) -> Result<Vec<Step>, String> {
    if items.is_empty() || items.len() > MAX_STEPS {
        return Err(format!("must have 1 to {MAX_STEPS} steps, got {}", items.len()));
    }
    items.iter().enumerate().map(|(i, v)| step(v).map_err(|FieldError(k, m)| format!("[{i}].{k}: {m}"))).collect()
}

const STEP_KEYS: &[&str] = &["channel", "route", "to", "from", "text", "template", "until", "decision_time", "ttl_s", "expires_at"];

fn step(v: &Value) -> FieldResult<Step> {
    let Value::Object(o) = v else {
        return Err(FieldError("channel", format!("a step must be an object, got {}", kind_of(v))));
    };
    if let Some(k) = o.keys().find(|k| !STEP_KEYS.contains(&k.as_str())) {
        return Err(FieldError("channel", format!("unknown key {} (expected one of {})", quoted(k), STEP_KEYS.join(", "))));
    }
    let get = |k: &str| o.get(k).filter(|v| !v.is_null());
    let channel = Channel::from_name(&string("channel", get("channel").ok_or_else(|| FieldError("channel", "required".into()))?)?);
    check_channel(&channel)?;
    let route = get("route").map(|v| name("route", v)).transpose()?;
    let to = get("to").map(|v| string("to", v)).transpose()?;
    if let Some(t) = &to {
        check_to(&channel, t)?;
    }
    let from = get("from").map(|v| string("from", v)).transpose()?;
    if let Some(f) = &from {
        check_from(&channel, f)?;
    }
    let content = match (get("text"), get("template")) {
        (Some(_), Some(_)) => return Err(FieldError("text", "give either text or template, not both".into())),
        (Some(t), None) => Some(Content::Text(text(t)?)),
        (None, Some(t)) => Some(Content::Template(template(t)?)),
        (None, None) => None,
    };
    let until = match get("until").map(|v| string("until", v)).transpose()?.as_deref() {
        None | Some("delivered") => Until::Delivered,
        Some("accepted") => Until::Accepted,
        Some("read") => Until::Read,
        Some(other) => return Err(FieldError("until", format!("must be \"accepted\", \"delivered\" or \"read\", got {}", quoted(other)))),
    };
    let decision_time = get("decision_time").map(|v| duration("decision_time", v)).transpose()?;
    if until == Until::Read && decision_time.is_none() {
        return Err(FieldError("decision_time", "required with until = \"read\" (how long to wait for the read)".into()));
    }
    let validity = match (get("ttl_s"), get("expires_at")) {
        (Some(_), Some(_)) => return Err(FieldError("ttl_s", "give either expires_at or ttl_s, not both".into())),
        (Some(v), None) => Some(Validity::Ttl(ttl(v)?)),
        (None, Some(v)) => Some(Validity::At(time("expires_at", v)?)),
        (None, None) => None,
    };
    Ok(Step { channel, route, to, from, content, until, decision_time, validity })
}

/// `"90s"`, `"10m"` (humantime) or a number of seconds; 1 s to 30 days.
fn duration(key: &'static str, v: &Value) -> FieldResult<Duration> {
    let d = match v {
        Value::String(s) => humantime::parse_duration(s).map_err(|e| FieldError(key, format!("not a duration like \"10m\": {} ({e})", quoted(s))))?,
        Value::Number(_) => v.as_u64().map(Duration::from_secs).ok_or_else(|| FieldError(key, format!("must be whole seconds, got {}", quoted_json(v))))?,
        other => return Err(FieldError(key, format!("must be a duration like \"10m\" or seconds, got {}", kind_of(other)))),
    };
    if d < Duration::from_secs(1) || d > LONGEST {
        return Err(FieldError(key, format!("must be between 1s and 30 days, got {}", humantime::format_duration(d))));
    }
    Ok(d)
}

fn ttl(v: &Value) -> FieldResult<Duration> {
    match v.as_u64() {
        Some(s) if (1..=LONGEST.as_secs()).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(FieldError("ttl_s", format!("must be whole seconds between 1 and 2592000, got {}", quoted_json(v)))),
    }
}

/// Whether `to` can be the recipient on `channel` (a step without its own `to` sends to the
/// job's): the error names the step's `to`.
pub(crate) fn check_recipient_for(channel: &Channel, to: &str) -> Result<(), String> {
    check_to(channel, to).map_err(|FieldError(_, m)| format!("{m} (the job's to; give the step its own to for channel {})", channel.as_str()))
}

impl CascadeSpec {
    pub(super) fn to_json(&self) -> Value {
        match self {
            Self::Named(n) => n.clone().into(),
            Self::Inline(steps) => Value::Array(steps.iter().map(Step::to_json).collect()),
        }
    }
}

impl Step {
    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("channel".into(), self.channel.as_str().into());
        for (k, v) in [("route", &self.route), ("to", &self.to), ("from", &self.from)] {
            if let Some(v) = v {
                o.insert(k.into(), v.clone().into());
            }
        }
        match &self.content {
            Some(Content::Text(t)) => {
                o.insert("text".into(), t.clone().into());
            }
            Some(Content::Template(t)) => {
                o.insert("template".into(), serde_json::json!({ "name": t.name, "language": t.language, "params": t.params }));
            }
            None => {}
        }
        o.insert("until".into(), self.until.as_str().into());
        if let Some(d) = self.decision_time {
            o.insert("decision_time".into(), humantime::format_duration(d).to_string().into());
        }
        match self.validity {
            Some(Validity::Ttl(d)) => {
                o.insert("ttl_s".into(), d.as_secs().into());
            }
            Some(Validity::At(t)) => {
                o.insert("expires_at".into(), t.to_rfc3339().into());
            }
            None => {}
        }
        Value::Object(o)
    }
}
