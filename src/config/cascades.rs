//! `[cascades.NAME]`: cascades a job may name in its `cascade` (docs/cascades.md), and
//! `[tenants.T] cascade = "NAME"`, a tenant's default for jobs that give none. Steps are
//! read by the job parser's own step reader, so a step in config is checked exactly as one
//! in a job, and errors name the key (`cascades.viber_sms.steps[1].until: ...`).

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Value;

use super::Config;
use crate::job::Step;

/// One `[cascades.NAME]`: `steps = [{ channel = "viber", decision_time = "10m" }, ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeConfig {
    pub steps: Arc<[Step]>,
}

/// Reads the `[cascades]` section into `out`.
pub(super) fn parse(value: Value, errors: &mut Vec<String>, out: &mut BTreeMap<String, CascadeConfig>) {
    let Value::Table(t) = value else {
        errors.push("cascades: must be a table of cascades".into());
        return;
    };
    for (name, c) in t {
        let path = format!("cascades.{name}");
        if !(1..=64).contains(&name.len()) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
            errors.push(format!("{path}: cascade names match [A-Za-z0-9_.-]{{1,64}}, as a job's `cascade` must"));
            continue;
        }
        let Value::Table(mut c) = c else {
            errors.push(format!("{path}: must be a table with steps = [...]"));
            continue;
        };
        let steps = c.remove("steps");
        if let Some(k) = c.keys().next() {
            errors.push(format!("{path}.{k}: unknown key (expected steps)"));
            continue;
        }
        let Some(Value::Array(items)) = steps else {
            errors.push(format!("{path}.steps: required, an array of steps"));
            continue;
        };
        let items: Vec<serde_json::Value> = items.into_iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect();
        match crate::job::cascade::steps(&items) {
            Ok(steps) => {
                out.insert(name, CascadeConfig { steps: steps.into() });
            }
            Err(m) if m.starts_with('[') => errors.push(format!("{path}.steps{m}")),
            Err(m) => errors.push(format!("{path}.steps: {m}")),
        }
    }
}

/// Every step's channel served by a provider and its route configured for that channel; every
/// tenant's default cascade configured.
pub(super) fn validate(c: &Config, errors: &mut Vec<String>) {
    for (name, cascade) in &c.cascades {
        for (i, s) in cascade.steps.iter().enumerate() {
            let at = format!("cascades.{name}.steps[{i}]");
            let channel = s.channel.as_str();
            if !c.providers.values().any(|p| p.channels().iter().any(|ch| ch == channel)) {
                errors.push(format!("{at}.channel: no configured provider serves channel {channel:?}"));
            }
            if let Some(r) = &s.route {
                match c.providers.get(r) {
                    None => errors.push(format!("{at}.route: no provider {r:?} is configured")),
                    Some(p) if !p.channels().iter().any(|ch| ch == channel) => {
                        errors.push(format!("{at}.route: provider {r:?} does not serve channel {channel:?}"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if c.tenant_defaults.cascade.is_some() {
        errors.push("tenant_defaults.cascade: a default cascade is per tenant; give it under [tenants.<name>]".into());
    }
    for (tenant, t) in &c.tenants {
        if let Some(n) = &t.cascade {
            if !c.cascades.contains_key(n) {
                errors.push(format!("tenants.{tenant}.cascade: no cascade {n:?} is configured under [cascades]"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    const PROVIDERS: &str = "[providers.smsc-a]\nkind = \"smpp\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n";

    #[test]
    fn a_cascade_parses_and_a_tenant_may_default_to_it() {
        let c = crate::config::parse(&format!(
            "{PROVIDERS}[cascades.sms_twice]\nsteps = [{{ channel = \"sms\", decision_time = \"10m\" }}, {{ channel = \"sms\", route = \"smsc-a\", until = \"accepted\" }}]\n[tenants.acme]\ncascade = \"sms_twice\"\n"
        ))
        .unwrap();
        let steps = &c.cascades["sms_twice"].steps;
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].decision_time, Some(std::time::Duration::from_secs(600)));
        assert_eq!(c.tenants["acme"].cascade.as_deref(), Some("sms_twice"));
    }

    #[test]
    fn cascade_mistakes_name_their_keys() {
        for (body, want) in [
            ("[cascades.x]\nsteps = [{ channel = \"sms\" }, { channel = \"sms\", until = \"seen\" }]", "cascades.x.steps[1].until: must be \"accepted\""),
            ("[cascades.x]\nsteps = [{ channel = \"viber\" }]", "cascades.x.steps[0].channel: no configured provider serves channel \"viber\""),
            ("[cascades.x]\nsteps = [{ channel = \"sms\", route = \"smsc-b\" }]", "cascades.x.steps[0].route: no provider \"smsc-b\""),
            ("[cascades.x]\nsteps = []", "cascades.x.steps: must have 1 to 8 steps"),
            ("[cascades.x]\nstep = []", "cascades.x.step: unknown key"),
            ("[cascades.x]\nsteps = [{ channel = \"sms\", until = \"read\" }]", "cascades.x.steps[0].decision_time: required with until = \"read\""),
            ("[cascades.x]\nsteps = [{ channel = \"sms\", decision_time = \"soon\" }]", "cascades.x.steps[0].decision_time: not a duration"),
            ("[cascades.x]\nsteps = [{ channel = \"sms\", colour = 1 }]", "cascades.x.steps[0].channel: unknown key \"colour\""),
            ("[tenants.acme]\ncascade = \"nope\"", "tenants.acme.cascade: no cascade \"nope\" is configured"),
        ] {
            let errs = crate::config::parse(&format!("{PROVIDERS}{body}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{body}: {errs:?}");
        }
    }
}
