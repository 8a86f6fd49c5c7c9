//! STOP replies: an inbound message (MO) whose text is a stop word puts its sender on the
//! opt-out list of the tenant that owns the number it was sent to (`[opt_out]` in config), for
//! the channel it came on (an SMPP MO opts out of `sms`, a WhatsApp message of `whatsapp`).

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::InboundMessage;
use crate::config::OptOutConfig;
use crate::job::masked;
use crate::store::{OptOutEntry, Store};
use crate::telemetry;

pub struct StopReplies {
    store: Arc<dyn Store>,
    /// Normalized (see [`normalize`]), like everything matched against them.
    default_words: Vec<String>,
    tenant_words: HashMap<String, Vec<String>>,
    /// Our destination number without its `+` → tenant.
    senders: HashMap<String, String>,
    default_tenant: Option<String>,
}

/// What a text is compared as: trimmed, trailing punctuation (anything not a letter or digit)
/// dropped, inner runs of whitespace made one space, upper-cased (Unicode-aware: `стоп` is
/// `СТОП`).
pub fn normalize(text: &str) -> String {
    let kept = text.trim_end_matches(|c: char| !c.is_alphanumeric());
    kept.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase()
}

/// An MO's source as an opt-out entry: SMSCs send international numbers as bare digits, so
/// `79161234567` (or `+79161234567`, `0079161234567`) is `+79161234567`. `None` for anything
/// that is not a phone number.
fn e164(source: &str) -> Option<String> {
    let s = source.trim();
    let digits = s.strip_prefix('+').or_else(|| s.strip_prefix("00")).unwrap_or(s);
    let n = format!("+{digits}");
    crate::job::is_e164(&n).then_some(n)
}

impl StopReplies {
    pub fn new(cfg: &OptOutConfig, store: Arc<dyn Store>) -> Self {
        let words = |ws: &[String]| ws.iter().map(|w| normalize(w)).collect::<Vec<_>>();
        if cfg.senders.is_empty() && cfg.default_tenant.is_none() {
            warn!("opt_out: neither senders nor default_tenant is set, so STOP replies are not recorded");
        }
        Self {
            store,
            default_words: words(&cfg.stop_words),
            tenant_words: cfg.tenants.iter().map(|(t, c)| (t.clone(), words(&c.stop_words))).collect(),
            senders: cfg.senders.iter().map(|(k, t)| (k.trim_start_matches('+').to_owned(), t.clone())).collect(),
            default_tenant: cfg.default_tenant.clone(),
        }
    }

    /// The tenant whose list a reply sent to `destination` goes on.
    pub fn tenant_for(&self, destination: &str) -> Option<&str> {
        self.senders.get(destination.trim().trim_start_matches('+')).or(self.default_tenant.as_ref()).map(String::as_str)
    }

    /// Whether `text` is one of `tenant`'s stop words (the defaults without a tenant).
    pub fn is_stop(&self, tenant: Option<&str>, text: &str) -> bool {
        let words = tenant.and_then(|t| self.tenant_words.get(t)).unwrap_or(&self.default_words);
        let text = normalize(text);
        !text.is_empty() && words.contains(&text)
    }

    /// Puts the senders of stop words on their lists, in one store call for the batch;
    /// retried until the store takes it, since a lost STOP means texting someone who said no.
    pub async fn handle(&self, messages: &[InboundMessage]) {
        let mut entries: Vec<(String, String, &InboundMessage)> = Vec::new();
        for m in messages {
            let tenant = self.tenant_for(&m.to);
            if !self.is_stop(tenant, &m.text) {
                continue;
            }
            match (tenant, e164(&m.from)) {
                (Some(t), Some(from)) => entries.push((t.to_owned(), from, m)),
                (None, _) => {
                    warn!(provider = %m.provider, destination = %m.to, "STOP reply to a number no tenant owns (opt_out.senders, opt_out.default_tenant); not recorded")
                }
                (_, None) => debug!(provider = %m.provider, "STOP reply from a source that is not a phone number; not recorded"),
            }
        }
        if entries.is_empty() {
            return;
        }
        let keys: Vec<OptOutEntry> = entries.iter().map(|(t, from, m)| (t.as_str(), m.channel.as_str(), from.as_str())).collect();
        let added = crate::retry::until_ok("add_opt_outs", keys.len(), || self.store.add_opt_outs(&keys)).await;
        for ((tenant, from, m), new) in entries.iter().zip(added) {
            if new {
                metrics::counter!(telemetry::OPT_OUTS_TOTAL, "source" => "mo").increment(1);
            }
            info!(tenant = %tenant, channel = %m.channel, recipient = %masked(from), provider = %m.provider, already_listed = !new, "recipient opted out by a STOP reply");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, OptOuts};

    fn replies(cfg: &str) -> (StopReplies, Arc<MemoryStore>) {
        let cfg = crate::config::parse(cfg).unwrap().opt_out;
        let store = Arc::new(MemoryStore::new());
        (StopReplies::new(&cfg, store.clone()), store)
    }

    #[test]
    fn stop_words_match_whole_text_ignoring_case_space_and_trailing_punctuation() {
        let (r, _) = replies("[opt_out.tenants.beta]\nstop_words = [\"halt now\"]\n");
        let cases: &[(Option<&str>, &str, bool)] = &[
            (None, "STOP", true),
            (None, "stop", true),
            (None, "  Stop!!! ", true),
            (None, "stop.\r\n", true),
            (None, "Unsubscribe?", true),
            (None, "stopall", true),
            (None, "стоп", true),
            (None, "Отписаться!", true),
            (None, "quit 🛑", true),
            (None, "STOP please", false),
            (None, "don't stop", false),
            (None, "!stop", false),
            (None, "STOPP", false),
            (None, "", false),
            (None, "...", false),
            // A tenant with its own list uses only that one.
            (Some("beta"), "Halt   now.", true),
            (Some("beta"), "STOP", false),
            // A tenant without one uses the defaults.
            (Some("acme"), "cancel", true),
        ];
        for (tenant, text, want) in cases {
            assert_eq!(r.is_stop(*tenant, text), *want, "{tenant:?} {text:?}");
        }
    }

    #[test]
    fn mo_sources_become_e164_or_nothing() {
        for (src, want) in [
            ("79161234567", Some("+79161234567")),
            ("+79161234567", Some("+79161234567")),
            ("0079161234567", Some("+79161234567")),
            ("ACME", None),
            ("12", None),
        ] {
            assert_eq!(e164(src).as_deref(), want, "{src}");
        }
    }

    fn mo(from: &str, to: &str, text: &str) -> InboundMessage {
        InboundMessage { provider: "p".into(), channel: "sms".into(), from: from.into(), to: to.into(), text: text.into(), at: None, ack: Default::default() }
    }

    #[tokio::test]
    async fn a_stop_goes_on_the_list_of_the_tenant_owning_the_destination() {
        let (r, store) = replies("[opt_out]\nsenders = { \"+12345\" = \"acme\" }\ndefault_tenant = \"other\"\n");
        r.handle(&[mo("79160000001", "12345", "STOP"), mo("79160000002", "99999", "stop"), mo("79160000003", "12345", "hello")]).await;
        let asked = [("acme", "sms", "+79160000001"), ("other", "sms", "+79160000002"), ("acme", "sms", "+79160000003"), ("acme", "sms", "+79160000002")];
        assert_eq!(store.opted_out(&asked).await.unwrap(), [true, true, false, false]);
    }

    #[tokio::test]
    async fn a_stop_to_an_unowned_number_is_dropped() {
        let (r, store) = replies("[opt_out]\nsenders = { \"12345\" = \"acme\" }\n");
        r.handle(&[mo("79160000001", "55555", "STOP")]).await;
        assert_eq!(store.list_opt_outs("acme", "sms", None, 10).await.unwrap().recipients, Vec::<String>::new());
    }
}
