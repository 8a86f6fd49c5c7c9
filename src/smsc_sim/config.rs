//! `SimConfig`: the `sendgate smsc-sim` flags, also built from code or deserialized from TOML.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::message_id::ReceiptIdFormat;
use super::receipts::ReceiptOrder;

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

    // Faults, all off by default. docs/smpp.md ("Simulating a bad SMSC") says what each does to a
    // gateway.
    /// Delay every submit_sm_resp by this much, e.g. `200ms`; responses on a connection keep
    /// their order.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    #[serde(deserialize_with = "duration_from_str")]
    pub response_latency: Duration,

    /// Answer every Nth submit_sm (simulator-wide) with ESME_RTHROTTLED instead of taking it.
    #[arg(long)]
    pub throttle_every: Option<NonZeroU64>,

    /// Answer submit_sm beyond this many per fixed one-second window (simulator-wide) with
    /// ESME_RTHROTTLED.
    #[arg(long)]
    pub throttle_above_tps: Option<NonZeroU32>,

    /// After the Nth accepted submit_sm (simulator-wide), close that connection without sending
    /// its submit_sm_resp and without unbind. The message was taken and gets its receipt.
    #[arg(long)]
    pub drop_after_submits: Option<NonZeroU64>,

    /// With `drop_after_submits`: drop a connection after every N accepted submits, not once.
    #[arg(long)]
    pub drop_repeat: bool,

    /// Never answer enquire_link, on any connection.
    #[arg(long)]
    pub ignore_enquire_link: bool,

    /// After the Nth accepted submit_sm (simulator-wide, once), the connection that took it
    /// answers nothing more and gets no receipts, but stays open.
    #[arg(long)]
    pub half_dead_after_submits: Option<NonZeroU64>,

    /// Answer every bind that passes the system_id/password checks with ESME_RBINDFAIL.
    #[arg(long)]
    pub refuse_binds: bool,

    /// Receipt delivery order: `in_order`, or `shuffled` (each receipt delayed by up to
    /// another receipt_delay at random).
    #[arg(long, value_enum, default_value = "in_order")]
    pub receipt_order: ReceiptOrder,

    /// How the receipt's message id is written relative to the submit_sm_resp id:
    /// `as_issued`, `hex`, `decimal` or `mixed`.
    #[arg(long, value_enum, default_value = "as_issued")]
    pub receipt_id_format: ReceiptIdFormat,

    /// Fraction (0 to 1) of receipts sent at once, before their submit_sm_resp.
    #[arg(long, default_value_t = 0.0)]
    pub receipt_before_resp_ratio: f64,
}

impl Default for SimConfig {
    /// In-process defaults (`sendgate dev`, tests): an ephemeral port; nothing recorded, so a
    /// long dev run does not grow (tests that read `messages()` turn `record_messages` on).
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: None,
            password: None,
            receipt_delay: Duration::from_millis(50),
            outcome_mix: "delivered=100".into(),
            record_messages: false,
            log: None,
            response_latency: Duration::ZERO,
            throttle_every: None,
            throttle_above_tps: None,
            drop_after_submits: None,
            drop_repeat: false,
            ignore_enquire_link: false,
            half_dead_after_submits: None,
            refuse_binds: false,
            receipt_order: ReceiptOrder::InOrder,
            receipt_id_format: ReceiptIdFormat::AsIssued,
            receipt_before_resp_ratio: 0.0,
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
        assert_faults_off(&d);

        let c = Cli::parse_from([
            "sim",
            "--listen",
            "0.0.0.0:1",
            "--receipt-delay",
            "2s",
            "--system-id",
            "acme",
            "--password",
            "pw",
            "--outcome-mix",
            "delivered=1,rejected=1",
            "--record-messages",
            "--log",
            "/tmp/x.jsonl",
        ])
        .sim;
        assert_eq!(c.receipt_delay, Duration::from_secs(2));
        assert_eq!((c.system_id.as_deref(), c.password.as_deref()), (Some("acme"), Some("pw")));
        assert!(c.record_messages);
        assert_eq!(c.log, Some(PathBuf::from("/tmp/x.jsonl")));

        let f = Cli::parse_from([
            "sim",
            "--response-latency",
            "150ms",
            "--throttle-every",
            "3",
            "--throttle-above-tps",
            "50",
            "--drop-after-submits",
            "10",
            "--drop-repeat",
            "--ignore-enquire-link",
            "--half-dead-after-submits",
            "7",
            "--refuse-binds",
            "--receipt-order",
            "shuffled",
            "--receipt-id-format",
            "decimal",
            "--receipt-before-resp-ratio",
            "0.25",
        ])
        .sim;
        assert_eq!(f.response_latency, Duration::from_millis(150));
        assert_eq!((f.throttle_every, f.throttle_above_tps), (NonZeroU64::new(3), NonZeroU32::new(50)));
        assert_eq!((f.drop_after_submits, f.drop_repeat), (NonZeroU64::new(10), true));
        assert_eq!(f.half_dead_after_submits, NonZeroU64::new(7));
        assert!(f.ignore_enquire_link && f.refuse_binds);
        assert_eq!((f.receipt_order, f.receipt_id_format), (ReceiptOrder::Shuffled, ReceiptIdFormat::Decimal));
        assert_eq!(f.receipt_before_resp_ratio, 0.25);
        assert!(Cli::try_parse_from(["sim", "--throttle-every", "0"]).is_err(), "0 is not a period");
        assert!(Cli::try_parse_from(["sim", "--receipt-id-format", "as-issued"]).is_err(), "one spelling: as_issued");
    }

    fn assert_faults_off(c: &SimConfig) {
        assert_eq!(c.response_latency, Duration::ZERO);
        assert!(c.throttle_every.is_none() && c.throttle_above_tps.is_none());
        assert!(c.drop_after_submits.is_none() && !c.drop_repeat && c.half_dead_after_submits.is_none());
        assert!(!c.ignore_enquire_link && !c.refuse_binds);
        assert_eq!((c.receipt_order, c.receipt_id_format), (ReceiptOrder::InOrder, ReceiptIdFormat::AsIssued));
        assert_eq!(c.receipt_before_resp_ratio, 0.0);
    }

    #[test]
    fn serde_with_units_and_defaults() {
        let c: SimConfig = serde_json::from_str(r#"{"receipt_delay":"250ms","system_id":"a"}"#).unwrap();
        assert_eq!(c.receipt_delay, Duration::from_millis(250));
        assert_eq!(c.listen.port(), 0);
        assert!(!c.record_messages, "off unless asked for: a dev run must not grow");
        let err = serde_json::from_str::<SimConfig>(r#"{"receipt_delay":"soon"}"#).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        assert_faults_off(&c);
        assert_faults_off(&SimConfig::default());
    }

    #[test]
    fn serde_fault_keys_are_the_flag_names() {
        let c: SimConfig = toml::from_str(
            r#"
            response_latency = "50ms"
            throttle_every = 3
            throttle_above_tps = 100
            drop_after_submits = 1000
            drop_repeat = true
            ignore_enquire_link = true
            half_dead_after_submits = 500
            refuse_binds = true
            receipt_order = "shuffled"
            receipt_id_format = "mixed"
            receipt_before_resp_ratio = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(c.response_latency, Duration::from_millis(50));
        assert_eq!((c.throttle_every, c.throttle_above_tps), (NonZeroU64::new(3), NonZeroU32::new(100)));
        assert_eq!((c.drop_after_submits, c.drop_repeat), (NonZeroU64::new(1000), true));
        assert_eq!(c.half_dead_after_submits, NonZeroU64::new(500));
        assert!(c.ignore_enquire_link && c.refuse_binds);
        assert_eq!((c.receipt_order, c.receipt_id_format), (ReceiptOrder::Shuffled, ReceiptIdFormat::Mixed));
        assert_eq!(c.receipt_before_resp_ratio, 0.1);
        for bad in ["throttle_every = 0", r#"receipt_order = "random""#, r#"response_latency = "later""#] {
            assert!(toml::from_str::<SimConfig>(bad).is_err(), "{bad}");
        }
    }
}
