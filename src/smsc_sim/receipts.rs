//! Delivery receipts the simulator sends: the outcome mix, the SMPP Appendix B receipt text,
//! the `deliver_sm` that carries it, and the due-time queue that delays them.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};

use crate::weights::Weights;

/// esm_class message type "SMSC delivery receipt".
pub const ESM_DELIVERY_RECEIPT: u8 = 0x04;

/// The final state the simulator reports for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Undelivered,
    Expired,
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Self::Delivered, Self::Undelivered, Self::Expired, Self::Rejected];

    /// The name used in `outcome_mix` and as the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    /// `stat:` in the receipt text.
    pub fn stat(self) -> &'static str {
        match self {
            Self::Delivered => "DELIVRD",
            Self::Undelivered => "UNDELIV",
            Self::Expired => "EXPIRED",
            Self::Rejected => "REJECTD",
        }
    }

    /// `err:` in the receipt text. Vendor-specific in real SMSCs; these mimic common ones
    /// (001 unknown subscriber, 002 barred) so a gateway's error mapping has something to map.
    pub fn err(self) -> &'static str {
        match self {
            Self::Delivered | Self::Expired => "000",
            Self::Undelivered => "001",
            Self::Rejected => "002",
        }
    }

    pub fn message_state(self) -> MessageState {
        match self {
            Self::Delivered => MessageState::Delivered,
            Self::Undelivered => MessageState::Undeliverable,
            Self::Expired => MessageState::Expired,
            Self::Rejected => MessageState::Rejected,
        }
    }

    /// Whether registered_delivery (low two bits) asks for a receipt for this outcome:
    /// 1 = always, 2 = on failure only, 3 = on success only (SMPP 5.0 §4.7.21).
    pub fn wants_receipt(self, registered_delivery: u8) -> bool {
        match registered_delivery & 0b11 {
            1 => true,
            2 => self != Self::Delivered,
            3 => self == Self::Delivered,
            _ => false,
        }
    }
}

/// Relative weights per outcome, from `delivered=90,undelivered=5,expired=3,rejected=2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeMix(Weights<4>);

impl FromStr for OutcomeMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Weights::parse(s, Outcome::ALL.map(Outcome::label), "outcome").map(Self)
    }
}

impl Default for OutcomeMix {
    fn default() -> Self {
        Self(Weights::only(0))
    }
}

impl OutcomeMix {
    /// Draws an outcome; no random draw when only one outcome has weight.
    pub fn pick(&self) -> Outcome {
        Outcome::ALL[self.0.pick()]
    }
}

/// The receipt text of SMPP 3.4 Appendix B. `text:` is left empty: message bodies stay out of
/// receipts and logs.
pub fn receipt_text(id: &str, outcome: Outcome, submit_date: &str, done_date: &str) -> String {
    let dlvr = if outcome == Outcome::Delivered { "001" } else { "000" };
    format!("id:{id} sub:001 dlvr:{dlvr} submit date:{submit_date} done date:{done_date} stat:{} err:{} text:", outcome.stat(), outcome.err())
}

/// The order receipts go out in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ReceiptOrder {
    /// Submit order, each `receipt_delay` after its submit.
    #[default]
    InOrder,
    /// Each receipt is delayed by a further random 0..=`receipt_delay`, so receipts of
    /// submits close together arrive in random order (networks report in whatever order the
    /// handsets answer).
    Shuffled,
}

impl ReceiptOrder {
    /// When a receipt for a submit taken at `now` is due.
    pub fn due(self, now: Instant, delay: Duration) -> Instant {
        match self {
            Self::InOrder => now + delay,
            Self::Shuffled => now + delay + delay.mul_f64(rand::random::<f64>()),
        }
    }
}

/// A receipt waiting for its due time.
#[derive(Debug, Clone)]
pub struct PendingReceipt {
    pub due: Instant,
    /// The session that submitted; preferred when it is a transceiver.
    pub session_id: u64,
    /// Fallback routing: any receiver/transceiver bound with this system_id.
    pub system_id: Arc<str>,
    pub message_id: String,
    pub outcome: Outcome,
    pub submitted_at: SystemTime,
    /// Addresses of the submit_sm; the receipt swaps them.
    pub submit_source: (Ton, Npi, COctetString<1, 21>),
    pub submit_destination: (Ton, Npi, COctetString<1, 21>),
    /// Times it found no bound session to go to.
    pub attempts: u8,
}

/// Formats `YYMMDDhhmm` (UTC), caching the last minute: at high rates consecutive receipts
/// mostly share one.
#[derive(Debug, Default)]
pub struct DateCache {
    minute: Option<u64>,
    text: String,
}

impl DateCache {
    pub fn format(&mut self, at: SystemTime) -> &str {
        let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let minute = secs / 60;
        if self.minute != Some(minute) {
            self.minute = Some(minute);
            self.text = chrono::DateTime::from_timestamp(secs as i64, 0).unwrap_or_default().format("%y%m%d%H%M").to_string();
        }
        &self.text
    }
}

/// Builds the receipt deliver_sm. Fields that cannot fail to encode (ids are hex or decimal
/// digits, the text is ASCII under 255 bytes) fall back to empty values instead of panicking.
pub fn receipt_pdu(r: &PendingReceipt, dates: &mut DateCache, now: SystemTime) -> DeliverSm {
    let submit_date = dates.format(r.submitted_at).to_owned();
    let done_date = dates.format(now);
    let text = receipt_text(&r.message_id, r.outcome, &submit_date, done_date);
    let (src_ton, src_npi, src) = r.submit_destination.clone();
    let (dst_ton, dst_npi, dst) = r.submit_source.clone();
    let mut pdu = DeliverSm::builder()
        .source_addr_ton(src_ton)
        .source_addr_npi(src_npi)
        .source_addr(src)
        .dest_addr_ton(dst_ton)
        .dest_addr_npi(dst_npi)
        .destination_addr(dst)
        .esm_class(EsmClass::from(ESM_DELIVERY_RECEIPT))
        .data_coding(DataCoding::from(0u8))
        .short_message(OctetString::from_string(text).unwrap_or_default())
        .push_tlv(MessageDeliveryRequestTlvValue::MessageState(r.outcome.message_state()))
        .build();
    if let Ok(id) = COctetString::<1, 65>::from_string(r.message_id.clone()) {
        pdu.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
    }
    pdu
}

/// Receipts ordered by due time. With a constant delay pushing at the back keeps the order and
/// a periodic tick pops the due prefix: no timer or task per message.
#[derive(Debug, Default)]
pub struct ReceiptQueue {
    queue: Mutex<VecDeque<PendingReceipt>>,
}

impl ReceiptQueue {
    pub fn push(&self, r: PendingReceipt) {
        let mut q = lock(&self.queue);
        if q.back().is_none_or(|b| b.due <= r.due) {
            q.push_back(r);
        } else {
            // Only shuffled receipts land here; an insert keeps the due order the tick relies on.
            let at = q.partition_point(|x| x.due <= r.due);
            q.insert(at, r);
        }
    }

    /// Removes and returns every receipt due at `now`.
    pub fn take_due(&self, now: Instant) -> Vec<PendingReceipt> {
        let mut q = lock(&self.queue);
        let n = q.partition_point(|r| r.due <= now);
        q.drain(..n).collect()
    }

    /// Puts receipts a session had no room for back at the front, in order: they stay due.
    pub fn retry_now(&self, rs: Vec<PendingReceipt>) {
        let mut q = lock(&self.queue);
        for r in rs.into_iter().rev() {
            q.push_front(r);
        }
    }

    /// Puts a receipt with nowhere to go back at least `after` from now, without breaking the
    /// due-time order.
    pub fn retry_later(&self, mut r: PendingReceipt, now: Instant, after: Duration) {
        let mut q = lock(&self.queue);
        let last = q.back().map(|b| b.due).unwrap_or(now);
        r.due = (now + after).max(last);
        r.attempts = r.attempts.saturating_add(1);
        q.push_back(r);
    }
}

/// Poisoning only means another thread panicked mid-update of plain data; keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_mix_parse_table() {
        let ok = |w: [u32; 4]| Ok(w);
        let cases: &[(&str, Result<[u32; 4], &str>)] = &[
            ("delivered=100", ok([100, 0, 0, 0])),
            ("delivered=90,undelivered=5,expired=3,rejected=2", ok([90, 5, 3, 2])),
            (" Delivered = 1 , rejected=1 ", ok([1, 0, 0, 1])),
            ("delivered=0", Err("more than 0")),
            ("", Err("more than 0")),
            ("lost=5", Err("unknown outcome")),
            ("delivered", Err("expected name=weight")),
            ("delivered=-1", Err("whole number")),
            ("delivered=1,delivered=2", Err("twice")),
            ("delivered=4294967295,expired=1", Err("too large")),
        ];
        for (input, want) in cases {
            match (input.parse::<OutcomeMix>().map(|m| m.0.weights()), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn outcome_mix_pick() {
        let mix: OutcomeMix = "delivered=2,undelivered=1,rejected=1".parse().unwrap();
        let picks: Vec<Outcome> = (0..4).map(|r| Outcome::ALL[mix.0.pick_at(r)]).collect();
        use Outcome::*;
        assert_eq!(picks, [Delivered, Delivered, Undelivered, Rejected]);
        assert_eq!("expired=3".parse::<OutcomeMix>().unwrap().pick(), Expired);
    }

    #[test]
    fn registered_delivery_table() {
        use Outcome::*;
        let cases = [
            (0x00, Delivered, false),
            (0x01, Delivered, true),
            (0x01, Rejected, true),
            (0x02, Delivered, false),
            (0x02, Expired, true),
            (0x03, Delivered, true),
            (0x03, Undelivered, false),
            (0x11, Delivered, true),
        ];
        for (rd, outcome, want) in cases {
            assert_eq!(outcome.wants_receipt(rd), want, "rd {rd:#x} {outcome:?}");
        }
    }

    #[test]
    fn receipt_text_format() {
        assert_eq!(
            receipt_text("1f", Outcome::Delivered, "2501020304", "2501020305"),
            "id:1f sub:001 dlvr:001 submit date:2501020304 done date:2501020305 stat:DELIVRD err:000 text:"
        );
        assert!(receipt_text("a", Outcome::Rejected, "x", "y").contains("dlvr:000 submit date:x done date:y stat:REJECTD err:002"));
    }

    #[test]
    fn date_cache_formats_utc_minutes() {
        let mut c = DateCache::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_735_787_045); // 2025-01-02 03:04:05 UTC
        assert_eq!(c.format(t), "2501020304");
        assert_eq!(c.format(t + Duration::from_secs(60)), "2501020305");
    }

    #[test]
    fn queue_keeps_due_order() {
        let q = ReceiptQueue::default();
        let t0 = Instant::now();
        let r = |ms: u64, id: &str| PendingReceipt {
            due: t0 + Duration::from_millis(ms),
            session_id: 1,
            system_id: "s".into(),
            message_id: id.into(),
            outcome: Outcome::Delivered,
            submitted_at: SystemTime::now(),
            submit_source: (Ton::Unknown, Npi::Unknown, COctetString::empty()),
            submit_destination: (Ton::Unknown, Npi::Unknown, COctetString::empty()),
            attempts: 0,
        };
        q.push(r(10, "a"));
        q.push(r(30, "c"));
        q.push(r(20, "b"));
        let due = q.take_due(t0 + Duration::from_millis(20));
        assert_eq!(due.iter().map(|r| r.message_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        q.retry_now(due);
        q.retry_later(r(0, "late"), t0, Duration::from_millis(5));
        let all = q.take_due(t0 + Duration::from_secs(1));
        let ids: Vec<_> = all.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "late"]);
        assert!(all.windows(2).all(|w| w[0].due <= w[1].due));
        assert_eq!(all[3].attempts, 1);
    }

    #[test]
    fn shuffled_due_times_stay_within_one_more_delay() {
        let (now, delay) = (Instant::now(), Duration::from_millis(100));
        assert_eq!(ReceiptOrder::InOrder.due(now, delay), now + delay);
        let dues: Vec<_> = (0..200).map(|_| ReceiptOrder::Shuffled.due(now, delay)).collect();
        assert!(dues.iter().all(|d| (now + delay..=now + 2 * delay).contains(d)));
        assert!(dues.windows(2).any(|w| w[0] > w[1]), "some later submit is due earlier");
    }
}
