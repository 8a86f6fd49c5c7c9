//! `[tenants.<tenant>.senders]`: the senders (`from`) a tenant registered, per channel, and
//! the providers that carry each. The keys and their checks; the policy that applies them is
//! `policy/senders.rs`.

use serde::Deserialize;

use super::Config;

/// One registered sender: `"ACME"`, or `{ from = "ACME", providers = ["smsc-a"] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderEntry {
    /// An alphanumeric name or a number (SMS), a phone number id (WhatsApp).
    pub from: String,
    /// The providers this sender is registered on; `None`: every provider of the channel.
    pub providers: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for SenderEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            from: String,
            providers: Vec<String>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SenderEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a sender "ACME" or { from = "ACME", providers = ["..."] }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SenderEntry { from: v.to_owned(), providers: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(SenderEntry { from: t.from, providers: Some(t.providers) })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The form a sender is compared in: numbers with and without their `+` are one sender.
pub fn sender_key(from: &str) -> &str {
    match from.strip_prefix('+') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits,
        _ => from,
    }
}

/// Every sender valid for its channel and listed once; every provider named configured and
/// serving that channel. Lists are per tenant: `[tenant_defaults]` holds none.
pub(super) fn validate(c: &Config, errors: &mut Vec<String>) {
    if !c.tenant_defaults.senders.is_empty() {
        errors.push("tenant_defaults.senders: sender lists are per tenant; give them under [tenants.<name>.senders]".into());
    }
    for (tenant, t) in &c.tenants {
        for (channel, entries) in &t.senders {
            let key = format!("tenants.{tenant}.senders.{channel}");
            if !c.providers.values().any(|p| p.channels().iter().any(|ch| ch == channel)) {
                errors.push(format!("{key}: no configured provider serves channel {channel:?}"));
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            for (i, e) in entries.iter().enumerate() {
                let at = format!("{key}[{i}]");
                if !crate::job::is_sender(channel, &e.from) {
                    errors.push(format!("{at}: {:?} is not a valid {channel} sender (as a job's `from` must be)", e.from));
                } else if !seen.insert(sender_key(&e.from)) {
                    errors.push(format!("{at}: {:?} is listed twice", e.from));
                }
                let providers = e.providers.as_deref().unwrap_or_default();
                if e.providers.as_ref().is_some_and(Vec::is_empty) {
                    errors.push(format!("{at}.providers: must name at least one provider (or give the sender as a plain string)"));
                }
                for name in providers {
                    match c.providers.get(name) {
                        None => errors.push(format!("{at}.providers: no provider {name:?} is configured")),
                        Some(p) if !p.channels().iter().any(|ch| ch == channel) => {
                            errors.push(format!("{at}.providers: provider {name:?} does not serve channel {channel:?}"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDERS: &str = "[providers.smsc-a]\nkind = \"smpp\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n";

    #[test]
    fn sender_lists_parse_in_both_forms() {
        let c =
            crate::config::parse(&format!("{PROVIDERS}[tenants.acme.senders]\nsms = [\"ACME\", {{ from = \"+4915100000000\", providers = [\"smsc-a\"] }}]\n"))
                .unwrap();
        let sms = &c.tenants["acme"].senders["sms"];
        assert_eq!(sms[0], SenderEntry { from: "ACME".into(), providers: None });
        assert_eq!(sms[1], SenderEntry { from: "+4915100000000".into(), providers: Some(vec!["smsc-a".into()]) });
    }

    #[test]
    fn sender_list_mistakes_name_their_keys() {
        for (body, want) in [
            ("[tenants.acme.senders]\nsms = [\"WAY-TOO-LONG-NAME\"]", "tenants.acme.senders.sms[0]: \"WAY-TOO-LONG-NAME\" is not a valid sms sender"),
            ("[tenants.acme.senders]\nsms = [\"ACME\", \"OTP\", \"ACME\"]", "tenants.acme.senders.sms[2]: \"ACME\" is listed twice"),
            ("[tenants.acme.senders]\nsms = [\"+4915100000000\", \"4915100000000\"]", "tenants.acme.senders.sms[1]: \"4915100000000\" is listed twice"),
            ("[tenants.acme.senders]\nsms = [{ from = \"ACME\", providers = [\"smsc-x\"] }]", "tenants.acme.senders.sms[0].providers: no provider \"smsc-x\""),
            ("[tenants.acme.senders]\nsms = [{ from = \"ACME\", providers = [] }]", "tenants.acme.senders.sms[0].providers: must name at least one"),
            ("[tenants.acme.senders]\nsms = [{ from = \"ACME\" }]", "tenants.acme.senders.sms[0]: missing field `providers`"),
            ("[tenants.acme.senders]\nsms = [{ from = \"ACME\", provider = [\"smsc-a\"] }]", "tenants.acme.senders.sms[0].provider: unknown field"),
            ("[tenants.acme.senders]\nsms = [3]", "tenants.acme.senders.sms[0]: invalid type: integer `3`"),
            ("[tenants.acme.senders]\nwhatsapp = [\"106540352242922\"]", "tenants.acme.senders.whatsapp: no configured provider serves channel \"whatsapp\""),
            ("[tenant_defaults.senders]\nsms = [\"ACME\"]", "tenant_defaults.senders: sender lists are per tenant"),
        ] {
            let errs = crate::config::parse(&format!("{PROVIDERS}{body}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{body}: {errs:?}");
        }
    }
}
