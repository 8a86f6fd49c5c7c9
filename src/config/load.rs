//! Loading a config file and collecting *every* error with its key path.
//!
//! serde stops at the first error of a value, so each section (and each provider) is
//! deserialized on its own and semantic checks run over whatever parsed; the result names
//! every section at fault, not just the first.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::{Config, ProviderConfig, QuietHoursConfig};

/// All that is wrong with a config, one `key.path: reason` per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    parse(&text)
}

pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigErrors(vec![format!("TOML syntax: {e}")]))?;
    let mut errors = Vec::new();
    let mut config = Config::default();
    for (key, value) in table {
        match key.as_str() {
            "server" => section(&key, value, &mut errors, &mut config.server),
            "pipeline" => section(&key, value, &mut errors, &mut config.pipeline),
            "reports" => section(&key, value, &mut errors, &mut config.reports),
            "dev" => section(&key, value, &mut errors, &mut config.dev),
            "kafka" => config.kafka = typed(&key, value, &mut errors),
            "redis" => config.redis = typed(&key, value, &mut errors),
            "opt_out" => section(&key, value, &mut errors, &mut config.opt_out),
            "admin" => config.admin = typed(&key, value, &mut errors),
            "providers" => match value {
                Value::Table(providers) => {
                    for (name, mut p) in providers {
                        let path = format!("providers.{name}");
                        let pricing = match &mut p {
                            Value::Table(t) => t.remove("pricing"),
                            _ => None,
                        };
                        if let Some(pc) = provider(&path, p, &mut errors) {
                            let path = format!("{path}.pricing");
                            if let Some(cfg) = pricing.and_then(|v| typed(&path, v, &mut errors)) {
                                config.prices.insert(name.clone(), crate::provider::price::ProviderPrices::build(&path, cfg, pc.channels(), &mut errors));
                            }
                            config.providers.insert(name, pc);
                        }
                    }
                }
                _ => errors.push("providers: must be a table of providers".into()),
            },
            "tenant_defaults" => section(&key, value, &mut errors, &mut config.tenant_defaults),
            "tenants" => named_sections(&key, value, "tenants", &mut errors, &mut config.tenants),
            "whatsapp" => section(&key, value, &mut errors, &mut config.whatsapp),
            "rate_limits" => section(&key, value, &mut errors, &mut config.rate_limits),
            "cascades" => super::cascades::parse(value, &mut errors, &mut config.cascades),
            "campaigns" => named_sections(&key, value, "\"tenant/campaign\" sections", &mut errors, &mut config.campaigns),
            other => errors.push(format!(
                "{other}: unknown section (expected server, pipeline, reports, providers, kafka, redis, dev, opt_out, admin, tenant_defaults, tenants, whatsapp, rate_limits, cascades, campaigns)"
            )),
        }
    }
    validate(&config, &mut errors);
    validate_opt_out_and_admin(&config, &mut errors);
    validate_whatsapp(&config.whatsapp, &mut errors);
    validate_rate_limits(&config, &mut errors);
    validate_campaigns(&config, &mut errors);
    super::senders::validate(&config, &mut errors);
    super::cascades::validate(&config, &mut errors);
    validate_minimums(&config, &mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Reads `kind` first, then the rest as that kind's config: serde's tagged enums lose the
/// path of an error inside them, and the path is the point.
fn provider(path: &str, value: Value, errors: &mut Vec<String>) -> Option<ProviderConfig> {
    let Value::Table(mut t) = value else {
        errors.push(format!("{path}: must be a table"));
        return None;
    };
    let kinds = || ProviderConfig::KINDS.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
    match t.remove("kind") {
        Some(Value::String(k)) => match ProviderConfig::parse(&k, path, Value::Table(t), errors) {
            Some(parsed) => parsed,
            None => {
                errors.push(format!("{path}.kind: unknown provider kind {:?} (expected {})", k, kinds()));
                None
            }
        },
        Some(other) => {
            errors.push(format!("{path}.kind: unknown provider kind {other} (expected {})", kinds()));
            None
        }
        None => {
            errors.push(format!("{path}.kind: required ({})", kinds()));
            None
        }
    }
}

fn section<T: DeserializeOwned>(key: &str, value: Value, errors: &mut Vec<String>, slot: &mut T) {
    if let Some(v) = typed(key, value, errors) {
        *slot = v;
    }
}

/// `[key.NAME]` sections, each read on its own so that every one at fault is named.
fn named_sections<T: DeserializeOwned>(key: &str, value: Value, what: &str, errors: &mut Vec<String>, out: &mut std::collections::BTreeMap<String, T>) {
    let Value::Table(sections) = value else {
        errors.push(format!("{key}: must be a table of {what}"));
        return;
    };
    for (name, v) in sections {
        if let Some(t) = typed(&format!("{key}.{name}"), v, errors) {
            out.insert(name, t);
        }
    }
}

pub(super) fn typed<T: DeserializeOwned>(prefix: &str, value: Value, errors: &mut Vec<String>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let at = if path == "." { prefix.to_owned() } else { format!("{prefix}.{path}") };
            // `message()`: toml's Display repeats the key ("in `quiet_hours`") that `at` already names.
            errors.push(format!("{at}: {}", e.into_inner().message()));
            None
        }
    }
}

fn validate(c: &Config, errors: &mut Vec<String>) {
    let mut check = |ok: bool, key: String, msg: String| {
        if !ok {
            errors.push(format!("{key}: {msg}"));
        }
    };
    check(c.server.max_body_bytes >= 1024, "server.max_body_bytes".into(), format!("must be >= 1024, got {}", c.server.max_body_bytes));
    check(!c.server.drain_timeout.is_zero(), "server.drain_timeout".into(), "must be > 0".into());
    check(c.pipeline.max_in_flight > 0, "pipeline.max_in_flight".into(), "must be > 0, got 0".into());
    check(c.pipeline.batch_size > 0, "pipeline.batch_size".into(), "must be > 0, got 0".into());
    check(!c.pipeline.scheduler_tick.is_zero(), "pipeline.scheduler_tick".into(), "must be > 0".into());
    let quiet_hours = |q: &Option<QuietHoursConfig>| match q {
        Some(QuietHoursConfig::Window { start, end }) if start == end => Err("start and end must differ"),
        _ => Ok(()),
    };
    if let Err(e) = quiet_hours(&c.tenant_defaults.quiet_hours) {
        check(false, "tenant_defaults.quiet_hours".into(), e.into());
    }
    for (name, t) in &c.tenants {
        check(
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)),
            format!("tenants.{name}"),
            "tenant names match [a-z0-9_-]{1,64}, as a job's `tenant` must".into(),
        );
        if let Err(e) = quiet_hours(&t.quiet_hours) {
            check(false, format!("tenants.{name}.quiet_hours"), e.into());
        }
    }
    // The checks every kind gets; then the kind's own (`provider/<kind>/config.rs`).
    for (name, p) in &c.providers {
        let path = format!("providers.{name}");
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
            errors.push(format!("{path}: provider names may hold only [A-Za-z0-9_.-]"));
        }
        if p.channels().is_empty() {
            errors.push(format!("{path}.channels: must name at least one channel"));
        }
        p.kind().validate(&path, errors);
    }
}

/// `[opt_out]` and `[admin]`; a function of its own so branches adding sections do not all
/// edit `validate`.
fn validate_opt_out_and_admin(c: &Config, errors: &mut Vec<String>) {
    let o = &c.opt_out;
    let mut stop_words = |key: String, words: &[String]| {
        if words.is_empty() {
            errors.push(format!("{key}: must name at least one stop word"));
        }
        for (i, w) in words.iter().enumerate() {
            if w.trim().is_empty() {
                errors.push(format!("{key}[{i}]: must not be blank"));
            }
        }
    };
    stop_words("opt_out.stop_words".into(), &o.stop_words);
    for (t, tc) in &o.tenants {
        stop_words(format!("opt_out.tenants.{t}.stop_words"), &tc.stop_words);
    }
    let tenant_msg = |t: &str| format!("not a tenant name ([a-z0-9_-]{{1,64}}): {t:?}");
    for t in o.tenants.keys().filter(|t| !crate::job::is_tenant(t)) {
        errors.push(format!("opt_out.tenants.{t}: {}", tenant_msg(t)));
    }
    for (sender, t) in &o.senders {
        if sender.trim_start_matches('+').is_empty() {
            errors.push(format!("opt_out.senders.{sender:?}: must not be blank"));
        }
        if !crate::job::is_tenant(t) {
            errors.push(format!("opt_out.senders.{sender}: {}", tenant_msg(t)));
        }
    }
    if let Some(t) = o.default_tenant.as_deref().filter(|t| !crate::job::is_tenant(t)) {
        errors.push(format!("opt_out.default_tenant: {}", tenant_msg(t)));
    }
    if let Some(a) = &c.admin {
        match (&a.token, &a.token_file) {
            (Some(_), Some(_)) => errors.push("admin.token: give token or token_file, not both".into()),
            (None, None) => errors.push("admin.token: required (or token_file); drop [admin] to disable the admin API".into()),
            // The length only, never the value: errors are printed.
            (Some(t), None) if t.trim().chars().count() < 16 => {
                errors.push(format!("admin.token: must be at least 16 characters, got {}", t.trim().chars().count()))
            }
            _ => {}
        }
        if a.actor.is_empty() || a.actor.chars().any(char::is_control) {
            errors.push("admin.actor: must be a non-empty name without control characters".into());
        }
    }
}

fn validate_whatsapp(w: &super::WhatsappConfig, errors: &mut Vec<String>) {
    // number id → the portfolio that claimed it first: a number in two portfolios would be
    // counted against whichever the lookup happened to find.
    let mut owner: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (name, p) in &w.portfolios {
        let key = |k: &str| format!("whatsapp.portfolios.{name}.{k}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
            errors.push(format!("whatsapp.portfolios.{name}: portfolio names may hold only [A-Za-z0-9_.-]"));
        }
        if p.tier == super::WhatsappTier::Recipients(0) {
            errors.push(format!("{}: must be > 0, got 0", key("tier")));
        }
        if p.numbers.is_empty() {
            errors.push(format!("{}: must name at least one phone number id", key("numbers")));
        }
        for n in &p.numbers {
            // The same rule as a job's `from` on channel whatsapp, so every number can match.
            if !(1..=32).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(format!("{}: {n:?} is not a phone number id (1-32 digits)", key("numbers")));
            } else if let Some(first) = owner.insert(n, name) {
                errors.push(format!("{}: {n:?} is already in portfolio {first:?}", key("numbers")));
            }
        }
        if p.window.is_zero() {
            errors.push(format!("{}: must be > 0", key("window")));
        }
    }
}

/// `[rate_limits]`: every speed positive and finite, provider names configured, campaign keys
/// `campaign` or `tenant/campaign`.
fn validate_rate_limits(c: &Config, errors: &mut Vec<String>) {
    use crate::job::is_tenant;
    use crate::policy::rate_limit::{check_rate, valid_name};
    let r = &c.rate_limits;
    let tables = [("providers", &r.providers), ("senders", &r.senders), ("tenants", &r.tenants), ("campaigns", &r.campaigns)];
    for (table, limits) in tables {
        for (name, rate) in limits {
            let key = format!("rate_limits.{table}.{name}");
            if let Err(e) = check_rate(*rate) {
                errors.push(format!("{key}: {e}"));
            }
            let known = match table {
                "providers" => c.providers.contains_key(name).then_some(()).ok_or("no provider of that name is configured".to_owned()),
                "tenants" => is_tenant(name).then_some(()).ok_or("a tenant is [a-z0-9_-]{1,64}".to_owned()),
                "campaigns" => {
                    let ok = match name.split_once('/') {
                        Some((tenant, campaign)) => is_tenant(tenant) && valid_name(campaign),
                        None => valid_name(name),
                    };
                    ok.then_some(()).ok_or("must be \"campaign\" or \"tenant/campaign\", as jobs name them".to_owned())
                }
                _ => (!name.is_empty()).then_some(()).ok_or("must not be empty".to_owned()),
            };
            if let Err(e) = known {
                errors.push(format!("{key}: {e}"));
            }
        }
    }
    if r.lease.is_zero() {
        errors.push("rate_limits.lease: must be > 0".into());
    }
    if r.campaign_refresh.is_zero() {
        errors.push("rate_limits.campaign_refresh: must be > 0".into());
    }
}

/// `[campaigns."tenant/campaign"]`: keys name one tenant's campaign, as jobs do.
fn validate_campaigns(c: &Config, errors: &mut Vec<String>) {
    for name in c.campaigns.keys() {
        let ok = name.split_once('/').is_some_and(|(t, c)| crate::job::is_tenant(t) && crate::policy::rate_limit::valid_name(c));
        if !ok {
            errors.push(format!("campaigns.{name}: must be \"tenant/campaign\", as jobs name them"));
        }
    }
}

/// Floors for the durations the exactly-one-final promise rests on, and for the API
/// listener's limits: a value below one is almost always a typo (`"60s"` meant as `"60m"`),
/// and it fails in production, under load, rather than at startup.
fn validate_minimums(c: &Config, errors: &mut Vec<String>) {
    use std::time::Duration;
    let mut at_least = |key: &str, got: Duration, min: Duration| {
        if got < min {
            errors.push(format!("{key}: must be at least {}, got {}", humantime::format_duration(min), humantime::format_duration(got)));
        }
    };
    // A job id must be remembered longer than any producer retries or a consumer re-reads a
    // record (a rebalance, a restart after a crash); below an hour, a record re-read after an
    // ordinary outage is sent a second time.
    at_least("pipeline.dedup_ttl", c.pipeline.dedup_ttl, Duration::from_secs(3600));
    // A claimed due job must stay claimed for longer than one send takes (window permits,
    // throttle pauses, the provider's answer); a lease that lapses mid-send lets another
    // instance send the job again.
    at_least("pipeline.scheduler_lease", c.pipeline.scheduler_lease, Duration::from_secs(5));
    if let Some(r) = &c.redis {
        // The heartbeat is refreshed every quarter of this; below a second, one slow Redis
        // round trip or a scheduling hiccup declares a live instance dead and its jobs are
        // taken over while it still sends them.
        at_least("redis.heartbeat_ttl", r.heartbeat_ttl, Duration::from_secs(1));
    }
    if let Some(k) = &c.kafka {
        // Each commit is a broker round trip; more often than every 10 ms the consumer spends
        // its time committing, and a commit never takes effect faster than the broker answers.
        at_least("kafka.commit_interval", k.commit_interval, Duration::from_millis(10));
    }
    // The listener's limits: zero would refuse every request or close every connection.
    let s = &c.server;
    at_least("server.header_timeout", s.header_timeout, Duration::from_millis(100));
    at_least("server.body_timeout", s.body_timeout, Duration::from_millis(100));
    at_least("server.idle_timeout", s.idle_timeout, Duration::from_millis(100));
    if s.max_jobs_per_request == 0 {
        errors.push("server.max_jobs_per_request: must be > 0, got 0".into());
    }
    if s.max_connections == 0 {
        errors.push("server.max_connections: must be > 0, got 0".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_config_is_valid() {
        parse(crate::config::DEV_TOML).unwrap();
    }

    #[test]
    fn example_config_is_valid() {
        parse(include_str!("../../config/sendgate.example.toml")).unwrap();
    }

    #[test]
    fn three_mistakes_name_three_keys() {
        let text = r#"
[server]
drain_timeout = "soon"
[pipeline]
max_in_flight = 0
[providers.a]
kind = "smpp"
address = "127.0.0.1:2775"
system_id = "x"
password = "y"
windw = 10
"#;
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("server.drain_timeout: not a duration")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("pipeline.max_in_flight: must be > 0")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("providers.a") && e.contains("windw")), "{errs:?}");
    }

    #[test]
    fn opt_out_and_admin_keys_parse_and_their_mistakes_are_named() {
        let ok = parse(
            r#"
[opt_out]
senders = { "12345" = "acme", "+4915100000000" = "beta" }
default_tenant = "acme"
[opt_out.tenants.beta]
stop_words = ["HALT"]
[admin]
token = "0123456789abcdef"
actor = "ops"
"#,
        )
        .unwrap();
        assert_eq!(ok.opt_out.stop_words.len(), crate::config::DEFAULT_STOP_WORDS.len());
        assert_eq!(ok.opt_out.senders["12345"], "acme");
        assert_eq!(ok.opt_out.tenants["beta"].stop_words, ["HALT"]);
        assert!(!format!("{ok:?}").contains("0123456789abcdef"), "Debug must not show the token");

        let errs = parse(
            r#"
[opt_out]
stop_words = []
senders = { "12345" = "Acme Corp" }
default_tenant = "ACME"
[opt_out.tenants.beta]
stop_words = [" "]
[admin]
token = "short-secret"
"#,
        )
        .unwrap_err()
        .0;
        for key in [
            "opt_out.stop_words:",
            "opt_out.senders.12345:",
            "opt_out.default_tenant:",
            "opt_out.tenants.beta.stop_words[0]:",
            "admin.token: must be at least 16",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(key)), "{key} missing from {errs:?}");
        }
        assert!(!errs.iter().any(|e| e.contains("short-secret")), "errors must not show the token: {errs:?}");
        let errs = parse("[admin]\nactor = \"ops\"\n").unwrap_err().0;
        assert!(errs[0].starts_with("admin.token: required"), "{errs:?}");
    }

    #[test]
    fn tenants_and_their_defaults() {
        let c = parse(
            r#"
[tenant_defaults]
tz = "Europe/Berlin"
quiet_hours = { start = "21:00", end = "09:00" }
[tenants.acme]
tz = "America/New_York"
[tenants.night-owls]
quiet_hours = false
"#,
        )
        .unwrap();
        assert_eq!(c.tenant_defaults.tz, Some(chrono_tz::Europe::Berlin));
        let hm = |s| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert_eq!(c.tenant_defaults.quiet_hours, Some(QuietHoursConfig::Window { start: hm("21:00"), end: hm("09:00") }));
        assert_eq!((c.tenants["acme"].tz, c.tenants["acme"].quiet_hours), (Some(chrono_tz::America::New_York), None));
        assert_eq!(c.tenants["night-owls"].quiet_hours, Some(QuietHoursConfig::Off));
        let none = parse("").unwrap();
        assert!(none.tenants.is_empty() && none.tenant_defaults.tz.is_none() && none.tenant_defaults.quiet_hours.is_none());
    }

    #[test]
    fn tenant_mistakes_name_their_keys() {
        for (text, want) in [
            ("[tenants.acme]\ntz = \"Mars/Base\"", "tenants.acme.tz: not an IANA zone: \"Mars/Base\""),
            ("[tenants.acme]\nquiet_hours = { start = \"9pm\", end = \"09:00\" }", "tenants.acme.quiet_hours.start: not HH:MM: \"9pm\""),
            ("[tenants.acme]\nquiet_hours = { start = \"21:00\" }", "tenants.acme.quiet_hours: missing field `end`"),
            ("[tenants.acme]\nquiet_hours = { start = \"21:00\", end = \"09:00\", tz = \"UTC\" }", "tenants.acme.quiet_hours.tz: unknown field `tz`"),
            ("[tenants.acme]\nquiet_hours = true", "tenants.acme.quiet_hours: must be { start = \"HH:MM\", end = \"HH:MM\" } or false, got true"),
            ("[tenants.acme]\nquiet_hours = \"21-09\"", "tenants.acme.quiet_hours: invalid type: string \"21-09\""),
            ("[tenants.acme]\nquiet_hours = { start = \"21:00\", end = \"21:00\" }", "tenants.acme.quiet_hours: start and end must differ"),
            ("[tenants.acme]\ntimezone = \"UTC\"", "tenants.acme.timezone: unknown field `timezone`"),
            ("[tenants.ACME]\ntz = \"UTC\"", "tenants.ACME: tenant names match [a-z0-9_-]{1,64}"),
            ("[tenant_defaults]\ntz = \"Europe/Berlinn\"", "tenant_defaults.tz: not an IANA zone"),
            ("tenants = 3", "tenants: must be a table of tenants"),
        ] {
            let errs = parse(text).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{text}: {errs:?}");
        }
        // Every tenant's mistake at once.
        let errs = parse("[tenants.a]\ntz = \"X\"\n[tenants.b]\ntz = \"Y\"\n").unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn whatsapp_portfolios_are_checked() {
        use std::time::Duration;
        let ok = parse(
            "[whatsapp.portfolios.acme]\ntier = 2000\nnumbers = [\"106540352242922\"]\n\
             [whatsapp.portfolios.big]\ntier = \"unlimited\"\nnumbers = [\"1\", \"2\"]\nwindow = \"12h\"\npair_interval = \"0s\"\n",
        )
        .unwrap();
        let acme = &ok.whatsapp.portfolios["acme"];
        assert_eq!((acme.tier.limit(), acme.window, acme.pair_interval), (Some(2000), Duration::from_secs(86_400), Duration::from_secs(6)));
        let big = &ok.whatsapp.portfolios["big"];
        assert_eq!((big.tier.limit(), big.window, big.pair_interval), (None, Duration::from_secs(43_200), Duration::ZERO));
        for (body, want) in [
            ("tier = 0\nnumbers = [\"1\"]", "whatsapp.portfolios.p.tier: must be > 0"),
            ("tier = \"lots\"\nnumbers = [\"1\"]", "whatsapp.portfolios.p.tier: must be a recipient count"),
            ("tier = -5\nnumbers = [\"1\"]", "whatsapp.portfolios.p.tier: must be a recipient count"),
            ("tier = 250\nnumbers = []", "whatsapp.portfolios.p.numbers: must name at least one"),
            ("tier = 250\nnumbers = [\"+15551234567\"]", "whatsapp.portfolios.p.numbers: \"+15551234567\" is not a phone number id"),
            ("tier = 250\nnumbers = [\"1\"]\nwindow = \"0s\"", "whatsapp.portfolios.p.window: must be > 0"),
            ("tier = 250\nnumbers = [\"1\"]\npair_intervl = \"6s\"", "whatsapp.portfolios.p.pair_intervl: unknown field"),
            (
                "tier = 250\nnumbers = [\"1\"]\n[whatsapp.portfolios.q]\ntier = 250\nnumbers = [\"1\"]",
                "whatsapp.portfolios.q.numbers: \"1\" is already in portfolio \"p\"",
            ),
        ] {
            let errs = parse(&format!("[whatsapp.portfolios.p]\n{body}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{body}: {errs:?}");
        }
    }

    #[test]
    fn rate_limit_keys_are_checked() {
        let base = "[providers.smsc-a]\nkind = \"smpp\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n[rate_limits]\n";
        let ok = parse(&format!(
            "{base}providers = {{ \"smsc-a\" = 200 }}\nsenders = {{ ACME = 0.5 }}\ntenants = {{ acme = 50 }}\ncampaigns = {{ promo = 2, \"acme/bf\" = 10.5 }}\nmax_wait = \"1s\"\nlease = \"50ms\"\n"
        ))
        .unwrap();
        let r = &ok.rate_limits;
        assert_eq!((r.providers["smsc-a"], r.senders["ACME"], r.campaigns["acme/bf"]), (200.0, 0.5, 10.5));
        assert_eq!((r.max_wait, r.lease), (std::time::Duration::from_secs(1), std::time::Duration::from_millis(50)));
        for (extra, want) in [
            ("providers = { smsc-b = 10 }", "rate_limits.providers.smsc-b: no provider of that name"),
            ("providers = { smsc-a = 0 }", "rate_limits.providers.smsc-a: must be > 0"),
            ("tenants = { acme = -1 }", "rate_limits.tenants.acme: must be > 0"),
            ("tenants = { \"a b\" = 1 }", "rate_limits.tenants.a b: a tenant is"),
            ("campaigns = { \"a/b/c\" = 1 }", "rate_limits.campaigns.a/b/c: must be"),
            ("senders = { X = 1e9 }", "rate_limits.senders.X: must be at most"),
            ("lease = \"0s\"", "rate_limits.lease: must be > 0"),
            ("max_wiat = \"1s\"", "rate_limits.max_wiat: unknown field `max_wiat`"),
        ] {
            let errs = parse(&format!("{base}{extra}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{extra}: {errs:?}");
        }
    }

    #[test]
    fn campaign_sections_are_checked() {
        let ok = parse("[campaigns.\"acme/bf\"]\nfinish_by = \"2026-11-27T20:00:00+03:00\"\ntz = \"Europe/Moscow\"\n").unwrap();
        let bf = &ok.campaigns["acme/bf"];
        assert_eq!(bf.finish_by.map(|t| t.to_rfc3339()), Some("2026-11-27T17:00:00+00:00".into()));
        assert_eq!(bf.tz, Some(chrono_tz::Europe::Moscow));
        for (body, want) in [
            ("[campaigns.bf]\nfinish_by = \"2026-11-27T20:00:00Z\"", "campaigns.bf: must be \"tenant/campaign\""),
            ("[campaigns.\"acme/bf\"]\nfinish_by = \"tomorrow\"", "campaigns.acme/bf.finish_by: not an RFC 3339 time: \"tomorrow\""),
            ("[campaigns.\"acme/bf\"]\nfinish_by = 2026", "campaigns.acme/bf.finish_by: must be an RFC 3339 time"),
            ("[campaigns.\"acme/bf\"]\ntz = \"Mars/Olympus\"", "campaigns.acme/bf.tz: not an IANA zone"),
            ("[campaigns.\"acme/bf\"]\nfinsh_by = \"2026-11-27T20:00:00Z\"", "campaigns.acme/bf.finsh_by: unknown field"),
            ("campaigns = 3", "campaigns: must be a table"),
        ] {
            let errs = parse(&format!("{body}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{body}: {errs:?}");
        }
    }

    #[test]
    fn minimums_name_their_keys() {
        let kafka = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n";
        let redis = "[redis]\nurl = \"redis://127.0.0.1/\"\n";
        // Exactly at each floor is fine.
        parse(&format!(
            "[pipeline]\ndedup_ttl = \"1h\"\nscheduler_lease = \"5s\"\n{kafka}commit_interval = \"10ms\"\n{redis}heartbeat_ttl = \"1s\"\n\
             [server]\nheader_timeout = \"100ms\"\nbody_timeout = \"100ms\"\nidle_timeout = \"100ms\"\nmax_jobs_per_request = 1\nmax_connections = 1\n"
        ))
        .unwrap();
        for (text, want) in [
            ("[pipeline]\ndedup_ttl = \"59m\"".to_owned(), "pipeline.dedup_ttl: must be at least 1h, got 59m"),
            ("[pipeline]\nscheduler_lease = \"1s\"".to_owned(), "pipeline.scheduler_lease: must be at least 5s, got 1s"),
            (format!("{redis}heartbeat_ttl = \"500ms\""), "redis.heartbeat_ttl: must be at least 1s, got 500ms"),
            (format!("{kafka}commit_interval = \"1ms\""), "kafka.commit_interval: must be at least 10ms, got 1ms"),
            ("[server]\nheader_timeout = \"0s\"".to_owned(), "server.header_timeout: must be at least 100ms, got 0s"),
            ("[server]\nbody_timeout = \"10ms\"".to_owned(), "server.body_timeout: must be at least 100ms"),
            ("[server]\nidle_timeout = \"0s\"".to_owned(), "server.idle_timeout: must be at least 100ms"),
            ("[server]\nmax_jobs_per_request = 0".to_owned(), "server.max_jobs_per_request: must be > 0"),
            ("[server]\nmax_connections = 0".to_owned(), "server.max_connections: must be > 0"),
        ] {
            let errs = parse(&text).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{text}: {errs:?}");
        }
    }

    #[test]
    fn unknown_section_and_bad_value_are_both_reported() {
        let errs = parse("[sever]\nlisten = \"x\"\n[providers.b]\nkind = \"smpp\"\naddress = \"nowhere\"\nsystem_id = \"x\"\npassword = \"y\"\nbinds = 0\n")
            .unwrap_err()
            .0;
        assert!(errs.iter().any(|e| e.starts_with("sever: unknown section")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("providers.b.binds: must be > 0")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("providers.b.address")), "{errs:?}");
    }
}
