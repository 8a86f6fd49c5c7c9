//! `[providers.NAME]` with `kind = "smpp"`: every key, its default and unit, the checks
//! beyond what the types say (errors name the key), and building the provider from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::SmppProvider;
use crate::config::humantime_serde;
use crate::provider::{BuildDeps, BuildError, KindConfig, Provider};
use crate::sms::decode::Alphabet;

/// The address value that means "the simulator `sendgate dev` starts in-process".
pub use crate::provider::EMBEDDED_SIM;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// `host:port` of the SMSC, or `embedded-sim` in `sendgate dev`.
    pub address: String,
    pub system_id: String,
    pub password: String,
    #[serde(default)]
    pub system_type: String,
    /// Channels this provider serves.
    #[serde(default = "default_sms")]
    pub channels: Vec<String>,
    /// Share of a channel's traffic when several providers serve it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Parallel binds (TCP connections) to the SMSC.
    #[serde(default = "default_binds")]
    pub binds: usize,
    /// What each bind is; see [`SmppBindMode`].
    #[serde(default)]
    pub bind_mode: SmppBindMode,
    /// In-flight `submit_sm` per bind awaiting their `submit_sm_resp`.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Default sender when a job has no `from`.
    #[serde(default)]
    pub default_from: Option<String>,
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(default = "default_enquire_link", with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    /// A job whose receipt has not come by then ends `unknown`.
    #[serde(default = "default_receipt_timeout", with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Alphabet for message text; see [`SmppEncoding`].
    #[serde(default)]
    pub encoding: SmppEncoding,
    /// `data_coding` sent with GSM-7 text: 0x00 ("SMSC default alphabet") suits most SMSCs;
    /// some want 0x01 before they read the octets as GSM 03.38.
    #[serde(default)]
    pub data_coding_gsm7: u8,
    /// How a text longer than one SMS travels; see [`SmppConcatenation`].
    #[serde(default)]
    pub concatenation: SmppConcatenation,
    /// A text needing more segments is rejected rather than billed as a small book; every
    /// segment costs as much as a whole SMS.
    #[serde(default = "default_max_segments")]
    pub max_segments: u8,
    /// After ESME_RTHROTTLED the bind sends nothing for this long, then the same PDU again.
    #[serde(default = "default_throttle_backoff", with = "humantime_serde")]
    pub throttle_backoff: Duration,
    /// After ESME_RMSGQFUL (the SMSC's queue is full) the bind pauses this long.
    #[serde(default = "default_queue_full_backoff", with = "humantime_serde")]
    pub queue_full_backoff: Duration,
    /// Times a submit answered with a passing error (ESME_RSYSERR, ...) is sent again in place
    /// before the job goes back to the pipeline to be retried later.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first such resend; doubles with each further one.
    #[serde(default = "default_retry_delay", with = "humantime_serde")]
    pub retry_delay: Duration,
    /// Most SMS segments per second this instance sends over all binds of this provider;
    /// 0 = no cap. A multipart job costs one per part, a `message_payload` one per segment.
    #[serde(default)]
    pub tps: u32,
    /// Most segments per second on each bind; 0 = no cap.
    #[serde(default)]
    pub bind_tps: u32,
    /// How this SMSC writes message ids in `submit_sm_resp` and in receipts; see
    /// [`SmppReceiptIdFormat`].
    #[serde(default)]
    pub receipt_id_format: SmppReceiptIdFormat,
    /// TLS to the SMSC (needs a build with the cargo feature `tls`).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CAs the SMSC's certificate must chain to; default: Mozilla's roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The name the SMSC's certificate must carry; default: the host part of `address`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// What a `submit_sm` with no answer in `response_timeout` leads to; see [`SmppOnTimeout`].
    #[serde(default)]
    pub on_response_timeout: SmppOnTimeout,
}

/// How an SMSC's receipt names a message relative to the id its `submit_sm_resp` gave. Both ids
/// are put in one canonical form before they are stored or looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmppReceiptIdFormat {
    /// Ids of hex digits only are numbers (decimal when all decimal digits and 9 or more long,
    /// else hex), so hex and decimal spellings of one id meet; other ids are compared
    /// lowercased, leading zeros dropped.
    #[default]
    Auto,
    /// Byte for byte, for SMSCs whose ids are case-sensitive.
    AsIs,
    /// Hex in `submit_sm_resp`, decimal in the receipt, whatever their length.
    HexToDecimal,
    /// Decimal in `submit_sm_resp`, hex in the receipt, whatever their length.
    DecimalToHex,
}

/// How a provider's binds are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmppBindMode {
    /// `binds` transceivers: submits and receipts share each connection.
    #[default]
    Transceiver,
    /// `binds` transmitters for submits plus `binds` receivers for receipts and MO messages,
    /// for SMSCs that offer no transceiver binds.
    TransmitterReceiver,
}

/// A submit that got no answer may or may not have been taken by the SMSC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppOnTimeout {
    /// Never resend: the job ends `unknown` (`sendgate_submits_ambiguous_total`).
    #[default]
    Fail,
    /// Resend it once, on another bind or the same one rebound: the operator accepts that the
    /// recipient may get it twice (`sendgate_smpp_submits_resent_total`).
    Retry,
}

/// Which alphabet a provider sends text in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppEncoding {
    /// GSM-7 when every character is in the GSM 03.38 alphabet, else UCS-2 (UTF-16BE).
    #[default]
    Auto,
    /// GSM-7 only; a text with any other character is rejected.
    Gsm7,
    /// UCS-2 (UTF-16BE) always: 70 characters per SMS even for plain Latin text.
    Ucs2,
    /// ISO-8859-1 (`data_coding` 0x03) when every character fits, else UCS-2.
    Latin1,
}

/// How a multi-part text is tied together for the handset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppConcatenation {
    /// A User Data Header with an 8-bit reference in each part (153 GSM-7 septets per part).
    #[default]
    Udh8,
    /// A User Data Header with a 16-bit reference: fewer reference clashes, 152 septets per part.
    Udh16,
    /// SAR TLVs (`sar_msg_ref_num`, …) and no UDH: the SMSC builds the header itself.
    Sar,
    /// One `submit_sm` with the whole text in `message_payload`; the SMSC splits it.
    Payload,
}

fn default_sms() -> Vec<String> {
    vec!["sms".into()]
}
fn default_weight() -> u32 {
    1
}
fn default_binds() -> usize {
    1
}
fn default_window() -> usize {
    64
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(10)
}
/// As Kannel and Jasmin: an idle link is probed twice a minute. (It was 200 ms while rusmppc's
/// connection task could sit on queued submits until its enquire_link timer fired;
/// `coalesce::Repoll` wakes it instead.)
fn default_enquire_link() -> Duration {
    Duration::from_secs(30)
}
fn default_receipt_timeout() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_throttle_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_full_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_delay() -> Duration {
    Duration::from_millis(500)
}
/// Twilio's limit too (1,600 GSM-7 characters): beyond it, handsets and costs both suffer.
fn default_max_segments() -> u8 {
    10
}

impl KindConfig for SmppConfig {
    fn channels(&self) -> &[String] {
        &self.channels
    }

    fn validate(&self, path: &str, errors: &mut Vec<String>) {
        let s = self;
        let mut check = |ok: bool, k: &str, msg: String| {
            if !ok {
                errors.push(format!("{path}.{k}: {msg}"));
            }
        };
        check(s.binds > 0, "binds", format!("must be > 0, got {}", s.binds));
        check(s.window > 0, "window", format!("must be > 0, got {}", s.window));
        check(s.weight > 0, "weight", format!("must be > 0, got {}", s.weight));
        check(
            s.address == EMBEDDED_SIM || s.address.parse::<std::net::SocketAddr>().is_ok() || s.address.contains(':'),
            "address",
            format!("must be host:port or \"{EMBEDDED_SIM}\", got {:?}", s.address),
        );
        check(s.system_id.len() <= 15, "system_id", "at most 15 characters (SMPP limit)".into());
        check(s.password.len() <= 8, "password", "at most 8 characters (SMPP limit)".into());
        check(s.reconnect_min <= s.reconnect_max, "reconnect_min", "must not exceed reconnect_max".into());
        check(s.max_segments > 0, "max_segments", "must be > 0, got 0".into());
        check(!s.throttle_backoff.is_zero(), "throttle_backoff", "must be > 0".into());
        check(!s.queue_full_backoff.is_zero(), "queue_full_backoff", "must be > 0".into());
        check(s.max_retries <= 100, "max_retries", format!("must be <= 100, got {}", s.max_retries));
        check(!s.tls || cfg!(feature = "tls"), "tls", "this build has no TLS support (build with the cargo feature `tls`)".into());
        if let Some(ca) = &s.tls_ca_file {
            check(ca.is_file(), "tls_ca_file", format!("not a readable file: {}", ca.display()));
        }
        check(
            Alphabet::of(s.data_coding_gsm7) == Alphabet::Gsm7,
            "data_coding_gsm7",
            format!("must select the GSM 7-bit alphabet (e.g. 0x00 or 0x01), got {:#04x}", s.data_coding_gsm7),
        );
    }

    fn wants_embedded_sim(&self) -> bool {
        self.address == EMBEDDED_SIM
    }

    fn build(&self, name: &str, deps: &BuildDeps) -> Result<Arc<dyn Provider>, BuildError> {
        let address = if self.address == EMBEDDED_SIM {
            let sim = deps
                .embedded_sim
                .ok_or_else(|| BuildError { key: format!("providers.{name}.address"), reason: format!("\"{EMBEDDED_SIM}\" works only in `sendgate dev`") })?;
            sim.to_string()
        } else {
            self.address.clone()
        };
        Ok(SmppProvider::start(name, self.clone(), address, deps.events.clone(), deps.clock.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, ProviderConfig};

    #[test]
    fn smpp_text_keys_are_checked() {
        let base = "[providers.c]\nkind = \"smpp\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n";
        let ok = parse(&format!("{base}encoding = \"latin1\"\nconcatenation = \"sar\"\ndata_coding_gsm7 = 0x01\nmax_segments = 4\n")).unwrap();
        let ProviderConfig::Smpp(c) = &ok.providers["c"] else { unreachable!("an smpp section") };
        assert_eq!((c.encoding, c.concatenation, c.data_coding_gsm7, c.max_segments), (SmppEncoding::Latin1, SmppConcatenation::Sar, 1, 4));
        for (extra, want) in [
            ("encoding = \"utf8\"", "providers.c.encoding: unknown variant `utf8`"),
            ("concatenation = \"udh\"", "providers.c.concatenation: unknown variant `udh`"),
            ("data_coding_gsm7 = 0x08", "providers.c.data_coding_gsm7: must select the GSM 7-bit alphabet"),
            ("data_coding_gsm7 = 300", "providers.c.data_coding_gsm7: invalid value"),
            ("max_segments = 0", "providers.c.max_segments: must be > 0"),
        ] {
            let errs = parse(&format!("{base}{extra}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{extra}: {errs:?}");
        }
    }

    #[test]
    fn smpp_link_keys_are_checked() {
        let base = "[providers.c]\nkind = \"smpp\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n";
        let ProviderConfig::Smpp(d) = parse(base).unwrap().providers["c"].clone() else { unreachable!("an smpp section") };
        assert_eq!(
            (d.bind_mode, d.on_response_timeout, d.receipt_id_format, d.tps, d.bind_tps, d.max_retries),
            (SmppBindMode::Transceiver, SmppOnTimeout::Fail, SmppReceiptIdFormat::Auto, 0, 0, 3)
        );
        let set = "bind_mode = \"transmitter_receiver\"\non_response_timeout = \"retry\"\nreceipt_id_format = \"hex_to_decimal\"\n\
                   tps = 250\nbind_tps = 100\nmax_retries = 0\nthrottle_backoff = \"250ms\"\n";
        let ProviderConfig::Smpp(c) = parse(&format!("{base}{set}")).unwrap().providers["c"].clone() else { unreachable!("an smpp section") };
        assert_eq!(
            (c.bind_mode, c.on_response_timeout, c.receipt_id_format, c.tps, c.bind_tps, c.max_retries),
            (SmppBindMode::TransmitterReceiver, SmppOnTimeout::Retry, SmppReceiptIdFormat::HexToDecimal, 250, 100, 0)
        );
        assert_eq!(c.throttle_backoff, std::time::Duration::from_millis(250));
        // TLS only in builds that have it, and the error says how to get it.
        let tls = parse(&format!("{base}tls = true\n"));
        assert_eq!(tls.is_ok(), cfg!(feature = "tls"), "{:?}", tls.as_ref().err());
        if let Err(e) = tls {
            assert!(e.0[0].starts_with("providers.c.tls: this build has no TLS"), "{e}");
        }
        for (extra, want) in [
            ("bind_mode = \"receiver\"", "providers.c.bind_mode: unknown variant `receiver`"),
            ("on_response_timeout = \"resend\"", "providers.c.on_response_timeout: unknown variant `resend`"),
            ("receipt_id_format = \"hex\"", "providers.c.receipt_id_format: unknown variant `hex`"),
            ("tps = -1", "providers.c.tps: invalid value"),
            ("max_retries = 1000", "providers.c.max_retries: must be <= 100"),
            ("throttle_backoff = \"0s\"", "providers.c.throttle_backoff: must be > 0"),
            ("tls_ca_file = \"/nonexistent/ca.pem\"", "providers.c.tls_ca_file: not a readable file"),
        ] {
            let errs = parse(&format!("{base}{extra}\n")).unwrap_err().0;
            assert!(errs.len() == 1 && errs[0].starts_with(want), "{extra}: {errs:?}");
        }
    }
}
