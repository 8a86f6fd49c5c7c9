//! Property tests where the input space is too large for tables: every text, under every
//! `encoding` and `concatenation` setting, comes back whole through the simulator's own
//! decoding and reassembly; segment counts follow the 3GPP arithmetic; the receipt parser
//! survives anything an SMSC could send.

use proptest::prelude::*;
use proptest::sample::select;
use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessagePayload};

use super::config::{SmppConcatenation, SmppEncoding};
use super::receipt::{parse_deliver_sm, parse_receipt_text};
use super::submit::{build, Options, Submission};
use crate::provider::SendError;
use crate::sms::decode::{decode_text, Alphabet};
use crate::sms::reassembly::{split_user_data, submit_user_data, Part, Reassembler};

/// GSM 03.38 default alphabet but the escape, transcribed here apart from both rusmpp's encoder
/// and the simulator's decoder so that a slip in either table shows.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table as rusmpp encodes it (all but form feed): two septets each.
const GSM_EXTENSION: &str = "€[]{}^~|\\";
/// Latin-1 characters that GSM-7 lacks.
const LATIN1_ONLY: &str = "©®°±²³µ¶·¹º»¼½¾ÀÁÂÃÈÊËÌÍÎÏÐÒÓÔÕ×ÙÚÛÝÞáâãçêëíîïðóôõ÷úûýþÿ";
const CYRILLIC: &str = "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмнопрстуфхцчшщъыьэюяёЁ";
/// Astral characters (surrogate pairs), with skin tones, flags and ZWJ sequences.
const EMOJI: &[&str] = &["😀", "🎉", "🚀", "👍🏽", "❤️", "🇩🇪", "👨‍👩‍👧", "𝄞"];

const ENCODINGS: [SmppEncoding; 4] = [SmppEncoding::Auto, SmppEncoding::Gsm7, SmppEncoding::Ucs2, SmppEncoding::Latin1];
const CONCATENATIONS: [SmppConcatenation; 4] = [SmppConcatenation::Udh8, SmppConcatenation::Udh16, SmppConcatenation::Sar, SmppConcatenation::Payload];

fn is_gsm7(c: char) -> bool {
    GSM_BASIC.contains(c) || GSM_EXTENSION.contains(c)
}

fn pieces(sets: &[&str]) -> Vec<String> {
    sets.iter().flat_map(|s| s.chars()).map(String::from).collect()
}

fn mixed_piece() -> impl Strategy<Value = String> {
    let mut any_family = pieces(&[GSM_BASIC, GSM_EXTENSION, CYRILLIC, LATIN1_ONLY]);
    any_family.extend(EMOJI.iter().map(|e| e.to_string()));
    prop_oneof![4 => select(any_family), 1 => any::<char>().prop_map(String::from)]
}

/// Texts of 1 to `max` pieces drawn from one family of alphabets, so that long GSM-7 and
/// Latin-1 texts come up as often as mixed ones.
fn text(max: usize) -> BoxedStrategy<String> {
    let of = |piece: BoxedStrategy<String>| proptest::collection::vec(piece, 1..max).prop_map(|v| v.concat());
    prop_oneof![
        of(select(pieces(&[GSM_BASIC])).boxed()),
        of(select(pieces(&[GSM_BASIC, GSM_EXTENSION])).boxed()),
        of(select(pieces(&[GSM_BASIC, LATIN1_ONLY])).boxed()),
        of(select(pieces(&[CYRILLIC, " .,!?0123456789"])).boxed()),
        of(mixed_piece().boxed()),
    ]
    .boxed()
}

fn job(text: &str) -> crate::job::Job {
    let v = serde_json::json!({"id":"j","tenant":"t","channel":"sms","to":"+4915112345678","text":text});
    crate::job::from_value(v, chrono::Utc::now()).expect("valid job")
}

/// What the simulator makes of the PDUs, fed in `order`: the decoded text, and each part's
/// text decoded on its own.
fn through_simulator(sub: &Submission, order: impl Iterator<Item = usize>) -> (String, Vec<String>) {
    let mut reassembler = Reassembler::<()>::new(4);
    let mut whole = None;
    let mut parts = vec![String::new(); sub.pdus.len()];
    for i in order {
        let pdu = &sub.pdus[i];
        let (data, sar) = submit_user_data(pdu);
        let (concat, payload) = split_user_data(u8::from(pdu.esm_class), data, sar).expect("well-formed UDH/SAR");
        parts[i] = decode_text(u8::from(pdu.data_coding), payload);
        let part = Part {
            source: pdu.source_addr.as_str(),
            destination: pdu.destination_addr.as_str(),
            concat,
            data_coding: u8::from(pdu.data_coding),
            message_id: i.to_string(),
            payload,
        };
        if let (_, Some(done)) = reassembler.push(part, || ()) {
            assert!(whole.is_none(), "completed twice");
            whole = Some(done);
        }
    }
    let whole = whole.expect("all parts arrived, so the message completed");
    (decode_text(whole.data_coding, &whole.payload), parts)
}

/// Segments the 3GPP arithmetic gives for `units`: one SMS if they fit, else `per_part` each.
fn arithmetic(units: usize, single: usize, per_part: usize) -> usize {
    if units <= single {
        1
    } else {
        units.div_ceil(per_part)
    }
}

/// (units, single-SMS room, room per part, characters that take two units and so may end a
/// part early) for a text in `alphabet` under `concatenation`.
fn sizes(text: &str, alphabet: Alphabet, concatenation: SmppConcatenation) -> (usize, usize, usize, usize) {
    let long_ref = concatenation == SmppConcatenation::Udh16;
    match alphabet {
        Alphabet::Gsm7 => {
            let ext = text.chars().filter(|c| GSM_EXTENSION.contains(*c)).count();
            (text.chars().count() + ext, 160, if long_ref { 152 } else { 153 }, ext)
        }
        Alphabet::Ucs2 => {
            let astral = text.chars().filter(|c| c.len_utf16() == 2).count();
            (text.encode_utf16().count(), 70, if long_ref { 66 } else { 67 }, astral)
        }
        Alphabet::Latin1 => (text.chars().count(), 140, if long_ref { 133 } else { 134 }, 0),
    }
}

fn expected_alphabet(text: &str, encoding: SmppEncoding) -> Alphabet {
    let gsm7 = text.chars().all(is_gsm7);
    match encoding {
        SmppEncoding::Auto | SmppEncoding::Gsm7 if gsm7 => Alphabet::Gsm7,
        SmppEncoding::Latin1 if text.chars().all(|c| u32::from(c) <= 0xFF) => Alphabet::Latin1,
        _ => Alphabet::Ucs2,
    }
}

fn check_accepted(text: &str, opts: &Options, sub: &Submission) -> Result<(), TestCaseError> {
    let label = format!("{:?}/{:?}", opts.encoding, opts.concatenation);
    let dc = u8::from(sub.pdus[0].data_coding);
    let alphabet = expected_alphabet(text, opts.encoding);
    prop_assert_eq!(Alphabet::of(dc), alphabet, "{}", label);
    if alphabet == Alphabet::Gsm7 {
        prop_assert_eq!(dc, opts.data_coding_gsm7, "{}", label);
    }

    let (decoded, parts) = through_simulator(sub, 0..sub.pdus.len());
    prop_assert_eq!(&decoded, text, "{}", label);
    let (reversed, _) = through_simulator(sub, (0..sub.pdus.len()).rev());
    prop_assert_eq!(&reversed, text, "{} (parts in reverse)", label);
    // No part ends inside a character: each decodes on its own, as a handset may show it.
    prop_assert_eq!(parts.concat(), text, "{} (parts one by one)", label);

    let segments = sub.segments as usize;
    let (units, single, per_part, pairs) = sizes(text, alphabet, opts.concatenation);
    let least = arithmetic(units, single, per_part);
    if pairs == 0 {
        prop_assert_eq!(segments, least, "{}: {} units", label, units);
    } else {
        prop_assert!((least..=least + pairs).contains(&segments), "{}: {} segments for {} units", label, segments, units);
    }
    let pdus = if opts.concatenation == SmppConcatenation::Payload { 1 } else { segments };
    prop_assert_eq!(sub.pdus.len(), pdus, "{}", label);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every setting: what `build` makes, the simulator turns back into the exact text, in
    /// the alphabet the setting asks for, in the segments the arithmetic allows.
    #[test]
    fn every_setting_round_trips_through_the_simulator(
        text in text(400),
        data_coding_gsm7 in select(vec![0x00u8, 0x01]),
        reference in any::<u16>(),
    ) {
        for encoding in ENCODINGS {
            for concatenation in CONCATENATIONS {
                let opts = Options { encoding, data_coding_gsm7, concatenation, max_segments: 255 };
                match build(&job(&text), "sendgate", reference, &opts) {
                    Ok(sub) => check_accepted(&text, &opts, &sub)?,
                    Err(SendError::Rejected { code, message }) => {
                        let culprit = text.chars().find(|c| !is_gsm7(*c));
                        prop_assert!(encoding == SmppEncoding::Gsm7 && culprit.is_some(), "{:?}/{:?}: {}", encoding, concatenation, message);
                        prop_assert_eq!(code, "encoding");
                        let named = format!("{:?}", culprit.unwrap_or_default());
                        prop_assert!(message.contains(&named), "{} should name {}", message, named);
                    }
                    Err(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }

    /// A text is refused exactly when it needs more segments than allowed, and says how many.
    #[test]
    fn max_segments_is_a_hard_limit(
        text in text(400),
        max_segments in 1u8..=8,
        concatenation in select(CONCATENATIONS.to_vec()),
    ) {
        let unlimited = Options { concatenation, max_segments: 255, ..Options::default() };
        let needed = build(&job(&text), "s", 1, &unlimited).expect("auto never rejects").segments;
        let limited = Options { max_segments, ..unlimited };
        match build(&job(&text), "s", 1, &limited) {
            Ok(sub) => prop_assert!(sub.segments == needed && needed <= u32::from(max_segments)),
            Err(SendError::Rejected { code, message }) => {
                prop_assert!(needed > u32::from(max_segments));
                prop_assert_eq!(code, "max_segments");
                let says = format!("needs {needed} segments");
                prop_assert!(message.contains(&says), "{}", message);
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn receipt_text_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in any::<String>()) {
        let _ = parse_receipt_text(&String::from_utf8_lossy(&bytes));
        let _ = parse_receipt_text(&text);
    }

    /// Receipt-like texts: the keys and separators in any order, so the field scanner's
    /// edge cases (empty values, `text:` early, keys inside words) come up often.
    #[test]
    fn receipt_text_parser_never_panics_on_receipt_like_text(
        words in proptest::collection::vec(
            select(vec!["id", "ID", ":", " ", "  ", "stat", "err", "sub", "dlvr", "text", "done date", "é", "😀", "\u{0}", "x9", "DELIVRD", "UNDELIV"]),
            0..40,
        ),
    ) {
        let text = words.concat();
        if let Some((id, _, err)) = parse_receipt_text(&text) {
            prop_assert!(!id.is_empty() && !id.contains(':'));
            prop_assert!(err.is_none_or(|e| !e.is_empty()));
        }
    }

    #[test]
    fn deliver_sm_parser_never_panics(
        esm_class in any::<u8>(),
        data_coding in any::<u8>(),
        short in proptest::collection::vec(any::<u8>(), 0..=255),
        payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..400)),
        receipted_id in proptest::option::of("[ -~]{1,64}"),
    ) {
        let mut tlvs = Vec::new();
        if let Some(p) = payload {
            tlvs.push(MessageDeliveryRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(p))));
        }
        if let Some(id) = receipted_id.and_then(|id| COctetString::from_string(id).ok()) {
            tlvs.push(MessageDeliveryRequestTlvValue::ReceiptedMessageId(id));
        }
        let pdu = DeliverSm::builder()
            .esm_class(EsmClass::from(esm_class))
            .data_coding(DataCoding::from(data_coding))
            .short_message(OctetString::from_vec(short).expect("at most 255 octets"))
            .tlvs(tlvs)
            .build();
        let _ = parse_deliver_sm(&pdu);
    }
}

#[test]
fn gsm_basic_transcription_matches_the_simulator_septet_by_septet() {
    let septets = (0u8..0x80).filter(|&b| b != 0x1B);
    let decoded: String = septets.map(|b| crate::sms::decode::decode_gsm7(&[b])).collect();
    assert_eq!(decoded, GSM_BASIC);
}
