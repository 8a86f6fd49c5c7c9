//! The job: the contract's input type, parsed and validated once, at the edge.
//!
//! Parsing walks the JSON object field by field instead of deriving `Deserialize`, so that every
//! error names the field and the reason (`to: not an E.164 number: "+7 916"`), and so that a
//! record that is a job with an id but is otherwise invalid can still be reported by that id.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use serde_json::{Map, Value};

use crate::report;

pub mod cascade;

pub use cascade::{CascadeSpec, Step, Until, Validity};

/// Largest serialized `meta` accepted (CONTRACT.md: "up to 4 KiB").
pub const META_MAX_BYTES: usize = 4096;
/// Largest JSON text of one job that `POST /v1/jobs` parses: room for the longest text with
/// every character escaped (10,000 × 12 bytes) and a full meta escaped too; a larger item
/// cannot be a valid job, so it is refused before its JSON tree is built.
pub const JOB_MAX_BYTES: usize = 256 * 1024;
/// Longest text accepted: far above any provider's concatenation limit, low enough that a
/// single job cannot pin megabytes of memory.
pub const TEXT_MAX_CHARS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Whatsapp,
    /// A chat channel served by a configured HTTP provider (`viber`, `telegram`, ...).
    Other(String),
}

impl Channel {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Other(s) => s,
        }
    }

    fn from_name(s: &str) -> Self {
        match s {
            "sms" => Self::Sms,
            "whatsapp" => Self::Whatsapp,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Channels whose `to` is a phone number.
    fn wants_e164(&self) -> bool {
        matches!(self, Self::Sms | Self::Whatsapp) || self.as_str() == "viber"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Marketing,
    Transactional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub language: String,
    pub params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Template(Template),
}

/// The job's wish about quiet hours; resolved against tenant defaults by the quiet-hours policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuietHours {
    #[default]
    TenantDefault,
    Off,
    Window {
        start: NaiveTime,
        end: NaiveTime,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
    pub from: Option<String>,
    pub content: Content,
    pub priority: Priority,
    pub send_at: Option<DateTime<Utc>>,
    /// Absolute validity; `ttl_s` is turned into this when the job is read.
    pub expires_at: Option<DateTime<Utc>>,
    pub quiet_hours: QuietHours,
    pub tz: Option<chrono_tz::Tz>,
    pub route: Option<String>,
    pub campaign: Option<String>,
    /// The campaign's deadline as this job proposes it (smooth sending): the first job seen
    /// sets it for its campaign when neither the admin API nor config has one. Only its
    /// format is checked: a parked job read back after the deadline must still parse.
    pub finish_by: Option<DateTime<Utc>>,
    pub meta: BTreeMap<String, String>,
    /// The channels to try in order (docs/cascades.md), as given.
    pub cascade: Option<Box<CascadeSpec>>,
    /// Set on the job of one step of a cascade (`crate::cascade`): this job's fields are that
    /// step's, its id is the step's own store id, and it is written back as its parent.
    pub step: Option<Box<crate::cascade::StepCtx>>,
}

/// Why bytes did not become a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Not a JSON object, or no usable `id`: nothing to report against, so it goes to the DLQ.
    #[error("{0}")]
    NotAJob(String),
    /// A job with an id, invalid otherwise: it gets a final `rejected` report.
    #[error("{field}{}{message}", if message.starts_with('[') { "" } else { ": " })]
    Invalid { id: String, fields: Box<InvalidJobFields>, field: &'static str, message: String },
}

/// What could be salvaged from an invalid job so its `rejected` report says whose it was.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvalidJobFields {
    pub tenant: String,
    pub channel: String,
    pub to: String,
    pub meta: BTreeMap<String, String>,
}

impl JobError {
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::NotAJob(_) => None,
            Self::Invalid { id, .. } => Some(id),
        }
    }
}

/// A field-level failure before the id is attached.
struct FieldError(&'static str, String);

type FieldResult<T> = Result<T, FieldError>;

/// Parses one job from JSON bytes; `now` is when it was read (turns `ttl_s` into `expires_at`).
pub fn parse(bytes: &[u8], now: DateTime<Utc>) -> Result<Job, JobError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| JobError::NotAJob(format!("not JSON: {e}")))?;
    from_value(value, now)
}

/// Parses one job from an already-decoded JSON value.
pub fn from_value(value: Value, now: DateTime<Utc>) -> Result<Job, JobError> {
    let Value::Object(obj) = value else {
        return Err(JobError::NotAJob(format!("not a JSON object but {}", kind_of(&value))));
    };
    let id = match obj.get("id") {
        None => return Err(JobError::NotAJob("id: missing".into())),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(JobError::NotAJob(format!("id: must be a string, got {}", kind_of(other)))),
    };
    if let Err(FieldError(_, msg)) = check_id(&id) {
        return Err(JobError::NotAJob(format!("id: {msg}")));
    }
    build(&obj, id.clone(), now).map_err(|FieldError(field, message)| JobError::Invalid {
        fields: Box::new(salvage(&obj)),
        id,
        field,
        message: report::bounded(&message, report::ERROR_MESSAGE_MAX_BYTES),
    })
}

/// What an invalid job's `rejected` report echoes, cut so the report always fits a broker
/// record however large the job's fields were: `tenant`, `channel` and `to` to
/// [`report::ECHO_MAX_BYTES`] each; of `meta`, its string entries in key order while their
/// keys and values add up to at most [`report::META_ECHO_MAX_BYTES`] (a valid meta is whole).
fn salvage(obj: &Map<String, Value>) -> InvalidJobFields {
    let s = |k: &str| report::bounded(obj.get(k).and_then(Value::as_str).unwrap_or_default(), report::ECHO_MAX_BYTES);
    let mut meta = BTreeMap::new();
    if let Some(m) = obj.get("meta").and_then(Value::as_object) {
        let mut strings: Vec<(&String, &str)> = m.iter().filter_map(|(k, v)| Some((k, v.as_str()?))).collect();
        strings.sort_unstable_by_key(|(k, _)| *k);
        let mut size = 0;
        for (k, v) in strings {
            size += k.len() + v.len();
            if size > report::META_ECHO_MAX_BYTES {
                break;
            }
            meta.insert(k.clone(), v.to_owned());
        }
    }
    InvalidJobFields { tenant: s("tenant"), channel: s("channel"), to: s("to"), meta }
}

fn build(obj: &Map<String, Value>, id: String, now: DateTime<Utc>) -> FieldResult<Job> {
    // Meta first: a rejected report echoes it, so a bad meta must be caught before anything else.
    let meta = opt(obj, "meta", meta)?.unwrap_or_default();
    let tenant = req_str(obj, "tenant")?;
    check_tenant(&tenant)?;
    let channel = Channel::from_name(&req_str(obj, "channel")?);
    check_channel(&channel)?;
    let to = req_str(obj, "to")?;
    check_to(&channel, &to)?;
    let from = opt(obj, "from", |v| string("from", v))?;
    if let Some(f) = &from {
        check_from(&channel, f)?;
    }
    let content = match (obj.get("text"), obj.get("template")) {
        (Some(_), Some(_)) => return Err(FieldError("text", "give either text or template, not both".into())),
        (None, None) => return Err(FieldError("text", "one of text or template is required".into())),
        (Some(t), None) => Content::Text(text(t)?),
        (None, Some(t)) => Content::Template(template(t)?),
    };
    let priority = match opt(obj, "priority", |v| string("priority", v))?.as_deref() {
        None | Some("marketing") => Priority::Marketing,
        Some("transactional") => Priority::Transactional,
        Some(other) => return Err(FieldError("priority", format!("must be \"marketing\" or \"transactional\", got {}", quoted(other)))),
    };
    let send_at = opt(obj, "send_at", |v| time("send_at", v))?;
    let expires_at = match (obj.get("expires_at"), obj.get("ttl_s")) {
        (Some(_), Some(_)) => return Err(FieldError("ttl_s", "give either expires_at or ttl_s, not both".into())),
        (Some(v), None) => Some(time("expires_at", v)?),
        (None, Some(v)) => Some(now + ttl(v)?),
        (None, None) => None,
    };
    if let (Some(s), Some(e)) = (send_at, expires_at) {
        if e <= s {
            return Err(FieldError("expires_at", format!("must be after send_at ({s})")));
        }
    }
    let quiet_hours = opt(obj, "quiet_hours", quiet_hours)?.unwrap_or_default();
    let tz = opt(obj, "tz", |v| {
        let s = string("tz", v)?;
        s.parse::<chrono_tz::Tz>().map_err(|_| FieldError("tz", format!("not an IANA time zone: {}", quoted(&s))))
    })?;
    let route = opt(obj, "route", |v| name("route", v))?;
    let campaign = opt(obj, "campaign", |v| name("campaign", v))?;
    let cascade = opt(obj, "cascade", cascade::spec)?.map(Box::new);
    let finish_by = opt(obj, "finish_by", |v| time("finish_by", v))?;
    if finish_by.is_some() && campaign.is_none() {
        return Err(FieldError("finish_by", "needs a campaign: it is the deadline of the job's campaign".into()));
    }
    Ok(Job { id, tenant, channel, to, from, content, priority, send_at, expires_at, quiet_hours, tz, route, campaign, finish_by, meta, cascade, step: None })
}

/// Longest part of a value an error quotes: errors go into `rejected` reports, which must stay
/// small whatever the input (fuzzing found a 4 KiB tenant of DEL characters quoted as 24 KiB).
const QUOTED_MAX_CHARS: usize = 64;

/// A value as an error quotes it: whole when short, else its start and its length.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTED_MAX_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// A JSON value as an error quotes it: numbers and short values as written, the rest cut.
fn quoted_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().nth(QUOTED_MAX_CHARS).is_none() {
        s
    } else {
        quoted(&s)
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An absent field and an explicit `null` both mean "not given".
fn opt<T>(obj: &Map<String, Value>, key: &'static str, f: impl FnOnce(&Value) -> FieldResult<T>) -> FieldResult<Option<T>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => f(v).map(Some),
    }
}

fn req_str(obj: &Map<String, Value>, key: &'static str) -> FieldResult<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(FieldError(key, "required".into())),
        Some(v) => string(key, v),
    }
}

fn string(key: &'static str, v: &Value) -> FieldResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(FieldError(key, format!("must be a string, got {}", kind_of(other)))),
    }
}

fn check_id(id: &str) -> FieldResult<()> {
    if id.is_empty() || id.len() > 128 {
        return Err(FieldError("id", format!("must be 1-128 characters, got {}", id.len())));
    }
    if !id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(FieldError("id", "must be printable ASCII without spaces".into()));
    }
    Ok(())
}

/// `[a-z0-9_-]{1,64}`: a tenant name, in jobs and wherever config names a tenant.
pub fn is_tenant(t: &str) -> bool {
    (1..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_tenant(t: &str) -> FieldResult<()> {
    if is_tenant(t) {
        Ok(())
    } else {
        Err(FieldError("tenant", format!("must match [a-z0-9_-]{{1,64}}, got {}", quoted(t))))
    }
}

fn check_channel(c: &Channel) -> FieldResult<()> {
    let name = c.as_str();
    let ok = (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FieldError("channel", format!("not a channel name: {}", quoted(name))))
    }
}

/// `+` and 8-15 digits, first digit not 0 (E.164 country codes never start with 0).
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// Checks a recipient named outside a job (an opt-out list entry, or with `to` absent the
/// list itself) exactly as a job's `tenant`, `channel` and `to` are checked; the error names
/// which of the three is at fault.
pub fn check_recipient(tenant: &str, channel: &str, to: Option<&str>) -> Result<(), (&'static str, String)> {
    let channel = Channel::from_name(channel);
    check_tenant(tenant).and_then(|()| check_channel(&channel)).and_then(|()| to.map_or(Ok(()), |to| check_to(&channel, to))).map_err(|FieldError(f, m)| (f, m))
}

/// A recipient as logs may show it: `+7916***4567`. Anything too short to keep both ends
/// apart is masked whole.
pub fn masked(to: &str) -> String {
    let chars: Vec<char> = to.chars().collect();
    if chars.len() < 10 {
        return "***".into();
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

fn check_to(channel: &Channel, to: &str) -> FieldResult<()> {
    if channel.wants_e164() {
        if !is_e164(to) {
            return Err(FieldError("to", format!("not an E.164 number: {}", quoted(to))));
        }
    } else if to.is_empty() || to.len() > 128 || to.chars().any(char::is_control) {
        return Err(FieldError("to", "must be a chat id of 1-128 characters".into()));
    }
    Ok(())
}

fn check_from(channel: &Channel, from: &str) -> FieldResult<()> {
    if is_sender(channel.as_str(), from) {
        Ok(())
    } else {
        Err(FieldError("from", format!("not a valid sender for {}: {}", channel.as_str(), quoted(from))))
    }
}

/// Whether `from` can be a job's sender on `channel`: the config's sender lists hold the same
/// rule, so every registered sender can match a job.
pub fn is_sender(channel: &str, from: &str) -> bool {
    match channel {
        // GSM 03.40 alphanumeric senders hold 11 characters; numeric ones are E.164-sized.
        "sms" => {
            let digits = from.strip_prefix('+').unwrap_or(from);
            (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
                || ((1..=11).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_alphanumeric() || b" .-_&".contains(&b)))
        }
        // A WhatsApp phone number id is numeric.
        "whatsapp" => (1..=32).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_digit()),
        _ => (1..=128).contains(&from.len()),
    }
}

fn text(v: &Value) -> FieldResult<String> {
    let s = string("text", v)?;
    let n = s.chars().count();
    if n == 0 {
        return Err(FieldError("text", "must not be empty".into()));
    }
    if n > TEXT_MAX_CHARS {
        return Err(FieldError("text", format!("longer than {TEXT_MAX_CHARS} characters ({n})")));
    }
    Ok(s)
}

fn template(v: &Value) -> FieldResult<Template> {
    let Value::Object(t) = v else {
        return Err(FieldError("template", format!("must be an object, got {}", kind_of(v))));
    };
    let field = |k: &str| match t.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(FieldError("template", format!("{k}: required"))),
        Some(other) => Err(FieldError("template", format!("{k}: must be a string, got {}", kind_of(other)))),
    };
    let name = field("name")?;
    let language = field("language")?;
    let params = match t.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::String(s) => Ok(s.clone()),
                other => Err(FieldError("template", format!("params[{i}]: must be a string, got {}", kind_of(other)))),
            })
            .collect::<FieldResult<_>>()?,
        Some(other) => return Err(FieldError("template", format!("params: must be an array, got {}", kind_of(other)))),
    };
    Ok(Template { name, language, params })
}

fn time(key: &'static str, v: &Value) -> FieldResult<DateTime<Utc>> {
    let s = string(key, v)?;
    let t =
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| FieldError(key, format!("not an RFC 3339 time: {} ({e})", quoted(&s))))?;
    // RFC 3339 years have four digits, and an offset can carry a time past them in UTC
    // (`9999-12-31T23:59:59-23:59`): `to_json` could not write it for the scheduled set to
    // read back (fuzzing found the round trip failing).
    if !(0..=9999).contains(&t.year()) {
        return Err(FieldError(key, format!("out of range: {} is not in years 0000-9999 in UTC", quoted(&s))));
    }
    Ok(t)
}

fn ttl(v: &Value) -> FieldResult<Duration> {
    match v.as_u64() {
        Some(s) if (1..=30 * 86_400).contains(&s) => Ok(Duration::seconds(s as i64)),
        _ => Err(FieldError("ttl_s", format!("must be whole seconds between 1 and 2592000, got {}", quoted_json(v)))),
    }
}

fn quiet_hours(v: &Value) -> FieldResult<QuietHours> {
    let hhmm = |o: &Map<String, Value>, k: &str| -> FieldResult<NaiveTime> {
        let s = o.get(k).and_then(Value::as_str).ok_or_else(|| FieldError("quiet_hours", format!("{k}: required \"HH:MM\"")))?;
        NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| FieldError("quiet_hours", format!("{k}: not HH:MM: {}", quoted(s))))
    };
    match v {
        Value::Bool(false) => Ok(QuietHours::Off),
        Value::Object(o) => {
            let (start, end) = (hhmm(o, "start")?, hhmm(o, "end")?);
            if start == end {
                return Err(FieldError("quiet_hours", "start and end must differ".into()));
            }
            Ok(QuietHours::Window { start, end })
        }
        other => Err(FieldError("quiet_hours", format!("must be {{\"start\",\"end\"}} or false, got {}", kind_of(other)))),
    }
}

fn name(key: &'static str, v: &Value) -> FieldResult<String> {
    let s = string(key, v)?;
    let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(s)
    } else {
        Err(FieldError(key, format!("must match [A-Za-z0-9_.-]{{1,64}}, got {}", quoted(&s))))
    }
}

fn meta(v: &Value) -> FieldResult<BTreeMap<String, String>> {
    let Value::Object(m) = v else {
        return Err(FieldError("meta", format!("must be an object of strings, got {}", kind_of(v))));
    };
    let mut out = BTreeMap::new();
    let mut size = 0;
    for (k, v) in m {
        let Value::String(s) = v else {
            return Err(FieldError("meta", format!("{}: values must be strings, got {}", quoted(k), kind_of(v))));
        };
        size += k.len() + s.len();
        out.insert(k.clone(), s.clone());
    }
    if size > META_MAX_BYTES {
        return Err(FieldError("meta", format!("larger than {META_MAX_BYTES} bytes ({size})")));
    }
    Ok(out)
}

impl Job {
    /// The job as contract JSON, with `ttl_s` already turned into `expires_at`, so that
    /// parsing it again (from the scheduled set) gives the same job.
    pub fn to_json(&self) -> Value {
        // A step's job is stored as the job it is a step of: its store id says which step.
        if let Some(s) = &self.step {
            return s.parent.to_json();
        }
        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_owned(), v);
        };
        put("id", self.id.clone().into());
        put("tenant", self.tenant.clone().into());
        put("channel", self.channel.as_str().into());
        put("to", self.to.clone().into());
        if let Some(f) = &self.from {
            put("from", f.clone().into());
        }
        match &self.content {
            Content::Text(t) => put("text", t.clone().into()),
            Content::Template(t) => put("template", serde_json::json!({ "name": t.name, "language": t.language, "params": t.params })),
        }
        if self.priority == Priority::Transactional {
            put("priority", "transactional".into());
        }
        if let Some(t) = self.send_at {
            put("send_at", t.to_rfc3339().into());
        }
        if let Some(t) = self.expires_at {
            put("expires_at", t.to_rfc3339().into());
        }
        match self.quiet_hours {
            QuietHours::TenantDefault => {}
            QuietHours::Off => put("quiet_hours", false.into()),
            QuietHours::Window { start, end } => {
                put("quiet_hours", serde_json::json!({ "start": start.format("%H:%M").to_string(), "end": end.format("%H:%M").to_string() }))
            }
        }
        if let Some(tz) = self.tz {
            put("tz", tz.name().into());
        }
        if let Some(r) = &self.route {
            put("route", r.clone().into());
        }
        if let Some(c) = &self.campaign {
            put("campaign", c.clone().into());
        }
        if let Some(t) = self.finish_by {
            put("finish_by", t.to_rfc3339().into());
        }
        if !self.meta.is_empty() {
            put("meta", serde_json::to_value(&self.meta).expect("string map serializes"));
        }
        if let Some(c) = &self.cascade {
            put("cascade", c.to_json());
        }
        Value::Object(o)
    }

    /// The text a provider sends: the job's text, or for a template its name and params
    /// (SMS has no templates; HTTP providers render templates natively).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.content {
            Content::Text(t) => t.into(),
            Content::Template(t) => format!("{} {}", t.name, t.params.join(" ")).into(),
        }
    }
}

#[cfg(test)]
mod tests;
