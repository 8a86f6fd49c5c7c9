//! Reading an incoming `deliver_sm`: a delivery receipt (TLVs first, then the Appendix B
//! `id:… stat:… err:…` text) or an MO message with its text decoded.

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::values::MessageState;

use crate::sms::decode::{decode_latin1, decode_text, decode_ucs2, Alphabet};
use crate::sms::reassembly::{split_user_data, Sar};

/// Where a message stands according to a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptState {
    Delivered,
    Undelivered,
    Expired,
    Rejected,
    Unknown,
    /// ACCEPTD / ENROUTE / scheduled: not final, another receipt should follow.
    Accepted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub state: ReceiptState,
    /// The SMSC's error code as it sent it (`err:` text, or network_error_code as 3+ digits).
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Receipt(Receipt),
    Mo { source: String, destination: String, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Acknowledge and drop: without an id the receipt cannot be matched to anything.
    #[error("delivery receipt without a message id (no receipted_message_id TLV, no `id:` in the text)")]
    MissingMessageId,
}

/// esm_class bits 2-5: SMSC delivery receipt.
const ESM_MC_DELIVERY_RECEIPT: u8 = 0x04;
/// esm_class bits 2-5: intermediate delivery notification.
const ESM_INTERMEDIATE_NOTIFICATION: u8 = 0x20;
const ESM_MESSAGE_TYPE_MASK: u8 = 0x3C;

/// Classifies and parses a `deliver_sm`.
pub fn parse_deliver_sm(pdu: &DeliverSm) -> Result<Inbound, ReceiptError> {
    let mut tlv_id = None;
    let mut tlv_state = None;
    let mut tlv_err = None;
    let mut payload: Option<&[u8]> = None;
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str()),
            Some(TlvValue::MessageState(s)) => tlv_state = Some(state_from_tlv(*s)),
            Some(TlvValue::NetworkErrorCode(e)) => tlv_err = Some(format!("{:03}", e.error_code)),
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref()),
            _ => {}
        }
    }
    let short: &[u8] = pdu.short_message().as_ref();
    let body = if short.is_empty() { payload.unwrap_or_default() } else { short };
    let data_coding = u8::from(pdu.data_coding);
    let message_type = u8::from(pdu.esm_class) & ESM_MESSAGE_TYPE_MASK;
    let is_receipt = matches!(message_type, ESM_MC_DELIVERY_RECEIPT | ESM_INTERMEDIATE_NOTIFICATION) || tlv_id.is_some();
    if !is_receipt {
        // A concatenated MO part: the text starts after its UDH (parts are not joined here).
        let esm_class = u8::from(pdu.esm_class);
        let body = split_user_data(esm_class, body, Sar::default()).map_or(body, |(_, payload)| payload);
        return Ok(Inbound::Mo {
            source: pdu.source_addr.as_str().to_owned(),
            destination: pdu.destination_addr.as_str().to_owned(),
            text: decode_text(data_coding, body),
        });
    }
    // Receipt text is ASCII in practice whatever data_coding says; reading it byte-for-byte
    // keeps `_` and `@` intact where GSM-7 would turn them into `§` and `¡`.
    let text = match Alphabet::of(data_coding) {
        Alphabet::Ucs2 => decode_ucs2(body),
        _ => decode_latin1(body),
    };
    let from_text = parse_receipt_text(&text);
    // A blank id is none, and a blank TLV gives way to the text: `ids` trims, so an id of
    // spaces became "" there, one key for every such receipt (fuzzing found a `\t` TLV).
    let blank = |id: &str| id.trim().is_empty();
    let message_id = tlv_id
        .filter(|id| !blank(id))
        .map(str::to_owned)
        .or_else(|| from_text.as_ref().map(|(id, _, _)| id.clone()))
        .filter(|id| !blank(id))
        .ok_or(ReceiptError::MissingMessageId)?;
    let (text_state, text_err) = match from_text {
        Some((_, state, err)) => (Some(state), err),
        None => (None, None),
    };
    // An intermediate notification is never final, whatever state it quotes (SMPP 3.4
    // 5.2.12): a final receipt for the message is still to come.
    let state = if message_type == ESM_INTERMEDIATE_NOTIFICATION { ReceiptState::Accepted } else { tlv_state.or(text_state).unwrap_or(ReceiptState::Unknown) };
    Ok(Inbound::Receipt(Receipt { message_id, state, error_code: tlv_err.or(text_err) }))
}

fn state_from_tlv(s: MessageState) -> ReceiptState {
    match s {
        MessageState::Delivered => ReceiptState::Delivered,
        MessageState::Expired => ReceiptState::Expired,
        // Deleted and skipped are final failures from the sender's point of view.
        MessageState::Undeliverable | MessageState::Deleted | MessageState::Skipped => ReceiptState::Undelivered,
        MessageState::Rejected => ReceiptState::Rejected,
        MessageState::Scheduled | MessageState::Enroute | MessageState::Accepted => ReceiptState::Accepted,
        MessageState::Unknown | MessageState::Other(_) => ReceiptState::Unknown,
    }
}

fn state_from_stat(stat: &str) -> ReceiptState {
    match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => ReceiptState::Delivered,
        "UNDELIV" | "UNDELIVERABLE" | "DELETED" | "SKIPPED" => ReceiptState::Undelivered,
        "EXPIRED" => ReceiptState::Expired,
        "REJECTD" | "REJECTED" => ReceiptState::Rejected,
        "ACCEPTD" | "ACCEPTED" | "ENROUTE" | "SCHEDULED" | "BUFFRED" | "BUFFERED" => ReceiptState::Accepted,
        _ => ReceiptState::Unknown,
    }
}

/// Parses `id:… sub:… dlvr:… submit date:… done date:… stat:… err:… text:…` leniently: keys
/// in any case and order, spaces around `:`, fields missing. `None` when there is no `id:`;
/// a missing `stat:` reads as Unknown. Nothing after `text:` is read as a field: that is
/// message content.
pub fn parse_receipt_text(text: &str) -> Option<(String, ReceiptState, Option<String>)> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let end = locate(&lower, "text").map_or(lower.len(), |(key_start, _)| key_start);
    let (text, lower) = (&text[..end], &lower[..end]);
    let id = field(text, lower, "id")?;
    let state = field(text, lower, "stat").map_or(ReceiptState::Unknown, state_from_stat);
    let err = field(text, lower, "err").map(str::to_owned);
    Some((id.to_owned(), state, err))
}

/// The value after `key:`; `None` if absent or empty.
fn field<'a>(text: &'a str, lower: &str, key: &str) -> Option<&'a str> {
    let (_, value_start) = locate(lower, key)?;
    let value = text[value_start..].split_whitespace().next().unwrap_or("");
    // `id: sub:001`: the id is missing, not `sub:001`.
    if value.is_empty() || value.contains(':') {
        return None;
    }
    Some(value)
}

/// Where `key` (starting a word, followed by optional spaces and `:`) and its value begin.
fn locate(lower: &str, key: &str) -> Option<(usize, usize)> {
    lower.match_indices(key).find_map(|(at, _)| {
        let starts_word = lower[..at].chars().next_back().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let rest = lower[at + key.len()..].trim_start().strip_prefix(':')?;
        starts_word.then(|| (at, lower.len() - rest.trim_start().len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::tlvs::MessageDeliveryRequestTlvValue as Tlv;
    use rusmpp::types::{AnyOctetString, COctetString, OctetString};
    use rusmpp::values::{DataCoding, ErrorCodeNetworkType, EsmClass, MessagePayload, NetworkErrorCode};

    use ReceiptState::*;

    #[test]
    fn receipt_text_table() {
        let s = |x: &str| Some(x.to_string());
        type Want<'a> = Option<(&'a str, ReceiptState, Option<String>)>;
        let cases: &[(&str, Want)] = &[
            ("id:1a2b sub:001 dlvr:001 submit date:2501020304 done date:2501020305 stat:DELIVRD err:000 text:hello", Some(("1a2b", Delivered, s("000")))),
            ("ID:77 SUB:001 STAT:undeliv ERR:012", Some(("77", Undelivered, s("012")))),
            ("id : 5  stat :  EXPIRED   err: 003", Some(("5", Expired, s("003")))),
            ("stat:REJECTD id:x9", Some(("x9", Rejected, None))),
            ("id:1 stat:DELETED", Some(("1", Undelivered, None))),
            ("id:1 stat:ACCEPTD", Some(("1", Accepted, None))),
            ("id:1 stat:ENROUTE", Some(("1", Accepted, None))),
            ("id:1 stat:BUFFRED", Some(("1", Accepted, None))),
            ("id:1 stat:UNKNOWN", Some(("1", Unknown, None))),
            ("id:1 stat:WHATEVER", Some(("1", Unknown, None))),
            ("id:1", Some(("1", Unknown, None))),
            ("id:AbC-123_x done date:2501020305", Some(("AbC-123_x", Unknown, None))),
            // `did:` and `receipted_id:` are not `id:`.
            ("did:9 receipted_id:8 id:7 stat:DELIVRD", Some(("7", Delivered, None))),
            ("id:3 text:stat:DELIVRD err:9", Some(("3", Unknown, None))),
            ("text: id:4", None),
            ("id: sub:001 stat:DELIVRD", None),
            ("sub:001 stat:DELIVRD", None),
            ("", None),
            ("hello there", None),
        ];
        for (text, want) in cases {
            let want = want.clone().map(|(id, st, err)| (id.to_string(), st, err));
            assert_eq!(parse_receipt_text(text), want, "{text:?}");
        }
    }

    fn deliver(esm: u8, dc: u8, text: &[u8], tlvs: Vec<Tlv>) -> DeliverSm {
        DeliverSm::builder()
            .source_addr(COctetString::from_static_slice(b"4915100000000\0").unwrap())
            .destination_addr(COctetString::from_static_slice(b"ACME\0").unwrap())
            .esm_class(EsmClass::from(esm))
            .data_coding(DataCoding::from(dc))
            .short_message(OctetString::from_vec(text.to_vec()).unwrap())
            .tlvs(tlvs)
            .build()
    }

    fn receipt(id: &str, state: ReceiptState, err: Option<&str>) -> Result<Inbound, ReceiptError> {
        Ok(Inbound::Receipt(Receipt { message_id: id.into(), state, error_code: err.map(Into::into) }))
    }

    #[test]
    fn deliver_sm_table() {
        let rid = |s: &str| Tlv::ReceiptedMessageId(COctetString::from_string(s.to_string()).unwrap());
        let net_err = |code| Tlv::NetworkErrorCode(NetworkErrorCode::new(ErrorCodeNetworkType::Gsm, code));
        let text = b"id:abc sub:001 dlvr:000 stat:UNDELIV err:001 text:";
        let ucs2: Vec<u8> = "id:u1 stat:DELIVRD".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let payload = |b: &[u8]| Tlv::MessagePayload(MessagePayload::new(AnyOctetString::from_slice(b)));
        let cases: Vec<(DeliverSm, Result<Inbound, ReceiptError>)> = vec![
            (deliver(0x04, 0, text, vec![]), receipt("abc", Undelivered, Some("001"))),
            // TLVs win over the text.
            (deliver(0x04, 0, text, vec![rid("ABC"), Tlv::MessageState(MessageState::Delivered), net_err(0)]), receipt("ABC", Delivered, Some("000"))),
            // receipted_message_id alone marks a receipt even with esm_class 0.
            (deliver(0x00, 0, b"", vec![rid("z"), Tlv::MessageState(MessageState::Expired)]), receipt("z", Expired, None)),
            (deliver(0x20, 0, b"id:i1 stat:ENROUTE", vec![]), receipt("i1", Accepted, None)),
            // An intermediate notification is not final even when it quotes a final-looking state.
            (deliver(0x20, 0, b"id:i2 stat:UNKNOWN", vec![]), receipt("i2", Accepted, None)),
            (deliver(0x20, 0, b"id:i3 stat:DELIVRD", vec![]), receipt("i3", Accepted, None)),
            (deliver(0x44, 0, b"id:u_d stat:DELIVRD", vec![]), receipt("u_d", Delivered, None)),
            (deliver(0x04, 8, &ucs2, vec![]), receipt("u1", Delivered, None)),
            (deliver(0x04, 0, b"", vec![payload(b"id:p stat:REJECTD err:9")]), receipt("p", Rejected, Some("9"))),
            (deliver(0x04, 0, b"stat:DELIVRD", vec![]), Err(ReceiptError::MissingMessageId)),
            // A blank receipted_message_id is none: the text's id, or no id at all.
            (deliver(0x04, 0, b"", vec![rid("\t")]), Err(ReceiptError::MissingMessageId)),
            (deliver(0x04, 0, b"id:t1 stat:DELIVRD", vec![rid(" ")]), receipt("t1", Delivered, None)),
            (deliver(0x04, 0, b"id:q", vec![Tlv::MessageState(MessageState::Other(42))]), receipt("q", Unknown, None)),
            (
                deliver(0x00, 0, &[b'H', b'i', 0x1B, 0x65], vec![]),
                Ok(Inbound::Mo { source: "4915100000000".into(), destination: "ACME".into(), text: "Hi€".into() }),
            ),
            (
                deliver(0x00, 8, &"ж😀".encode_utf16().flat_map(u16::to_be_bytes).collect::<Vec<_>>(), vec![]),
                Ok(Inbound::Mo { source: "4915100000000".into(), destination: "ACME".into(), text: "ж😀".into() }),
            ),
            (
                deliver(0x40, 0, &[5, 0, 3, 1, 2, 1, b'o', b'k'], vec![]),
                Ok(Inbound::Mo { source: "4915100000000".into(), destination: "ACME".into(), text: "ok".into() }),
            ),
            (
                deliver(0x00, 3, b"", vec![payload(&[b'c', 0xE9])]),
                Ok(Inbound::Mo { source: "4915100000000".into(), destination: "ACME".into(), text: "cé".into() }),
            ),
        ];
        for (i, (pdu, want)) in cases.into_iter().enumerate() {
            assert_eq!(parse_deliver_sm(&pdu), want, "case {i}");
        }
    }

    #[test]
    fn random_text_never_panics() {
        use rand::{Rng, RngCore};
        let mut rng = rand::rng();
        let vocabulary = ["id", "ID", ":", " ", "stat", "err", "sub", "é", "😀", "\u{0}", "x", "DELIVRD"];
        for _ in 0..5_000 {
            let mut bytes = vec![0u8; rng.random_range(0..160)];
            rng.fill_bytes(&mut bytes);
            let _ = parse_receipt_text(&String::from_utf8_lossy(&bytes));
            let words: String = (0..rng.random_range(0..20)).map(|_| vocabulary[rng.random_range(0..vocabulary.len())]).collect();
            let _ = parse_receipt_text(&words);
            let esm = [0x00, 0x04, 0x20][rng.random_range(0..3)];
            bytes.truncate(255);
            let _ = parse_deliver_sm(&deliver(esm, rng.random(), &bytes, vec![]));
        }
    }
}
