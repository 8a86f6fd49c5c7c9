//! `SimConfig`: the `sendgate smsc-sim` flags, also built from code or deserialized from TOML.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How the simulator listens, authenticates and answers.
#[derive(Debug, Clone, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2775")]
    pub listen: SocketAddr,

    /// Only accept binds with this system_id (others get ESME_RINVSYSID).
    #[arg(long)]
    pub system_id: Option<String>,

    /// Only accept binds with this password (others get ESME_RINVPASWD).
    #[arg(long)]
    pub password: Option<String>,

    /// Delay between a submit_sm and its delivery receipt, e.g. `50ms`, `2s`.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    #[serde(deserialize_with = "duration_from_str")]
    pub receipt_delay: Duration,

    /// Relative weights of receipt outcomes, e.g. `delivered=90,undelivered=5,expired=3,rejected=2`.
    #[arg(long, default_value = "delivered=100")]
    pub outcome_mix: String,

    /// Keep every reassembled message in memory (for tests; grows without bound).
    #[arg(long)]
    pub record_messages: bool,

    /// Append one JSON line per reassembled message to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

impl Default for SimConfig {
    /// In-process defaults: an ephemeral port and recorded messages, which is what tests want.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: None,
            password: None,
            receipt_delay: Duration::from_millis(50),
            outcome_mix: "delivered=100".into(),
            record_messages: true,
            log: None,
        }
    }
}

/// Config values carry their units (`receipt_delay = "50ms"`), as everywhere else in sendgate.
fn duration_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn clap_defaults_and_flags() {
        let d = Cli::parse_from(["sim"]).sim;
        assert_eq!(d.listen, "127.0.0.1:2775".parse().unwrap());
        assert_eq!(d.receipt_delay, Duration::from_millis(50));
        assert_eq!(d.outcome_mix, "delivered=100");
        assert!(!d.record_messages && d.log.is_none() && d.system_id.is_none());

        let c = Cli::parse_from([
            "sim", "--listen", "0.0.0.0:1", "--receipt-delay", "2s", "--system-id", "acme",
            "--password", "pw", "--outcome-mix", "delivered=1,rejected=1", "--record-messages",
            "--log", "/tmp/x.jsonl",
        ])
        .sim;
        assert_eq!(c.receipt_delay, Duration::from_secs(2));
        assert_eq!((c.system_id.as_deref(), c.password.as_deref()), (Some("acme"), Some("pw")));
        assert!(c.record_messages);
        assert_eq!(c.log, Some(PathBuf::from("/tmp/x.jsonl")));
    }

    #[test]
    fn serde_with_units_and_defaults() {
        let c: SimConfig = serde_json::from_str(r#"{"receipt_delay":"250ms","system_id":"a"}"#).unwrap();
        assert_eq!(c.receipt_delay, Duration::from_millis(250));
        assert_eq!(c.listen.port(), 0);
        assert!(c.record_messages);
        let err = serde_json::from_str::<SimConfig>(r#"{"receipt_delay":"soon"}"#).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }
}
