//! Turning a job into `submit_sm` PDUs: addresses, the text's alphabet, and the provider's
//! way of tying parts together (UDH, SAR TLVs, or one `message_payload`).

use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue as Tlv;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::udhs::concatenation::ConcatenatedShortMessageType;
use rusmpp::values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton};

use super::config::{SmppConcatenation, SmppConfig, SmppEncoding};
use super::encoding;
use crate::job::Job;
use crate::provider::SendError;

fn rejected(message: String) -> SendError {
    SendError::Rejected { code: "encoding".into(), message }
}

/// An address with the TON/NPI an SMSC expects: international numbers as digits, anything
/// else as an alphanumeric sender.
fn address(addr: &str) -> (Ton, Npi, &str) {
    let digits = addr.strip_prefix('+').unwrap_or(addr);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if addr.starts_with('+') || digits.len() > 8 {
            (Ton::International, Npi::Isdn, digits)
        } else {
            (Ton::National, Npi::Isdn, digits)
        }
    } else {
        (Ton::Alphanumeric, Npi::Unknown, addr)
    }
}

/// The provider settings that shape a message's PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub encoding: SmppEncoding,
    pub data_coding_gsm7: u8,
    pub concatenation: SmppConcatenation,
    pub max_segments: u8,
}

impl Default for Options {
    /// What a provider with none of the keys set does.
    fn default() -> Self {
        Self { encoding: SmppEncoding::Auto, data_coding_gsm7: 0x00, concatenation: SmppConcatenation::Udh8, max_segments: 10 }
    }
}

impl From<&SmppConfig> for Options {
    fn from(c: &SmppConfig) -> Self {
        Self { encoding: c.encoding, data_coding_gsm7: c.data_coding_gsm7, concatenation: c.concatenation, max_segments: c.max_segments }
    }
}

/// One job's PDUs and the SMS segments they make: a `message_payload` PDU carries several,
/// and segments are what an SMSC bills and throttles.
#[derive(Debug)]
pub struct Submission {
    pub pdus: Vec<SubmitSm>,
    pub segments: u32,
}

/// Builds the PDUs for one job. `reference` ties the parts of one message together; only
/// its low byte is used where the header has room for 8 bits.
pub fn build(job: &Job, default_from: &str, reference: u16, opts: &Options) -> Result<Submission, SendError> {
    let template = template(job, default_from)?;
    let encoded = encoding::encode(&job.text(), opts.encoding, opts.data_coding_gsm7)
        .map_err(|e| rejected(format!("text: {e}, and this provider's encoding is \"gsm7\"")))?;
    let parts = encoding::split(&encoded, header_octets(opts.concatenation));
    if parts.len() > usize::from(opts.max_segments) {
        return Err(SendError::Rejected {
            code: "max_segments".into(),
            message: format!("text needs {} segments; this provider's max_segments is {}", parts.len(), opts.max_segments),
        });
    }
    let template = template.with_data_coding(DataCoding::from(encoded.data_coding));
    let total = parts.len() as u8;
    let pdus = match (opts.concatenation, parts.as_slice()) {
        (SmppConcatenation::Payload, _) => vec![with_payload(template, &encoded.bytes)],
        (_, [single]) => vec![template.with_short_message(octets(single)?)],
        (SmppConcatenation::Udh8, _) => with_udh(template, &parts, ConcatenatedShortMessageType::u8(reference as u8))?,
        (SmppConcatenation::Udh16, _) => with_udh(template, &parts, ConcatenatedShortMessageType::u16(reference))?,
        (SmppConcatenation::Sar, _) => with_sar(template, &parts, reference as u8)?,
    };
    Ok(Submission { pdus, segments: u32::from(total) })
}

/// The SMS segments `text` makes with these settings, as [`build`] would cut it: what the
/// SMSC bills and throttles. A text `build` would refuse (forced `gsm7`) counts as its UCS-2 cut.
pub fn segments(text: &str, opts: &Options) -> u32 {
    let encoded = encoding::encode(text, opts.encoding, opts.data_coding_gsm7)
        .or_else(|_| encoding::encode(text, SmppEncoding::Ucs2, opts.data_coding_gsm7))
        .expect("UCS-2 encodes any text");
    encoding::split(&encoded, header_octets(opts.concatenation)).len() as u32
}

/// Octets each part leaves for a concatenation header. SAR and `message_payload` parts carry
/// none from us, but the SMSC adds a UDH when it delivers them to the handset, so their parts
/// are cut as for an 8-bit-reference UDH (Jasmin does the same for SAR): 153 GSM-7 septets,
/// 67 UCS-2 characters.
fn header_octets(concatenation: SmppConcatenation) -> usize {
    match concatenation {
        SmppConcatenation::Udh16 => 7,
        SmppConcatenation::Udh8 | SmppConcatenation::Sar | SmppConcatenation::Payload => 6,
    }
}

/// The fields every PDU of a job shares.
fn template(job: &Job, default_from: &str) -> Result<SubmitSm, SendError> {
    let from = job.from.as_deref().unwrap_or(default_from);
    let (s_ton, s_npi, source) = address(from);
    let (d_ton, d_npi, dest) = address(&job.to);
    Ok(SubmitSm::builder()
        .source_addr_ton(s_ton)
        .source_addr_npi(s_npi)
        .source_addr(COctetString::from_string(source.to_owned()).map_err(|e| rejected(format!("from: {e}")))?)
        .dest_addr_ton(d_ton)
        .dest_addr_npi(d_npi)
        .destination_addr(COctetString::from_string(dest.to_owned()).map_err(|e| rejected(format!("to: {e}")))?)
        // EsmClass::default() is 0x08 in rusmpp; a plain message is 0x00.
        .esm_class(EsmClass::from(0u8))
        // Final receipts only (success or failure): intermediate ones would only cost traffic.
        .registered_delivery(RegisteredDelivery::from(0x01u8))
        .short_message(OctetString::empty())
        .build())
}

fn octets(bytes: &[u8]) -> Result<OctetString<0, 255>, SendError> {
    // Parts are at most 160 septets plus a 7-octet header, so this holds; an error here
    // would be a bug in the split, reported rather than sent truncated.
    OctetString::from_vec(bytes.to_vec()).map_err(|e| rejected(format!("text: part does not fit short_message: {e}")))
}

fn with_udh(template: SubmitSm, parts: &[&[u8]], kind: ConcatenatedShortMessageType) -> Result<Vec<SubmitSm>, SendError> {
    let total = parts.len() as u8;
    (1..=total)
        .zip(parts)
        .map(|(seq, part)| {
            let udh = kind.concatenated_short_message_unchecked(total, seq).udh_bytes();
            let user_data = [udh.as_bytes(), part].concat();
            Ok(template.clone().with_udhi_indicator().with_short_message(octets(&user_data)?))
        })
        .collect()
}

/// Parts tied by SAR TLVs. The reference is kept to 8 bits so that the SMSC can build the
/// 6-octet UDH the parts left room for.
fn with_sar(template: SubmitSm, parts: &[&[u8]], reference: u8) -> Result<Vec<SubmitSm>, SendError> {
    let total = parts.len() as u8;
    (1..=total)
        .zip(parts)
        .map(|(seq, part)| {
            let mut pdu = template.clone().with_short_message(octets(part)?);
            pdu.push_tlv(Tlv::SarMsgRefNum(u16::from(reference)));
            pdu.push_tlv(Tlv::SarTotalSegments(total));
            pdu.push_tlv(Tlv::SarSegmentSeqnum(seq));
            Ok(pdu)
        })
        .collect()
}

/// The whole text in `message_payload`, `short_message` empty as SMPP 3.4 requires.
fn with_payload(mut template: SubmitSm, bytes: &[u8]) -> SubmitSm {
    template.push_tlv(Tlv::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(bytes.to_vec()))));
    template
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rusmpp::tlvs::TlvValue;

    fn job(text: &str) -> Job {
        let v = serde_json::json!({"id":"j","tenant":"t","channel":"sms","to":"+4915112345678","text":text});
        crate::job::from_value(v, Utc::now()).unwrap()
    }

    fn opts(encoding: SmppEncoding, concatenation: SmppConcatenation) -> Options {
        Options { encoding, concatenation, ..Options::default() }
    }

    fn tlvs(pdu: &SubmitSm) -> Vec<TlvValue> {
        pdu.tlvs().iter().filter_map(|t| t.value().cloned()).collect()
    }

    #[test]
    fn defaults_match_an_smpp_section_without_the_keys() {
        let cfg = crate::config::parse("[providers.p]\nkind = \"smpp\"\naddress = \"h:1\"\nsystem_id = \"s\"\npassword = \"p\"\n").unwrap();
        let crate::config::ProviderConfig::Smpp(smpp) = &cfg.providers["p"] else { unreachable!("an smpp section") };
        assert_eq!(Options::from(smpp), Options::default());
    }

    #[test]
    fn segment_counts_follow_gsm7_and_ucs2_limits() {
        for (text, parts, dcs) in [
            ("a".repeat(160), 1, 0x00u8),
            ("a".repeat(161), 2, 0x00),
            ("a".repeat(306), 2, 0x00),
            ("a".repeat(307), 3, 0x00),
            ("€".repeat(80), 1, 0x00),
            ("€".repeat(81), 2, 0x00),
            ("ж".repeat(70), 1, 0x08),
            ("ж".repeat(71), 2, 0x08),
            ("ж".repeat(134), 2, 0x08),
            ("ж".repeat(135), 3, 0x08),
        ] {
            let built = build(&job(&text), "sendgate", 7, &Options::default()).unwrap();
            assert_eq!(built.pdus.len(), parts, "{} x{}", text.chars().next().unwrap(), text.chars().count());
            assert_eq!(built.segments, parts as u32);
            assert_eq!(u8::from(built.pdus[0].data_coding), dcs);
            // What rate limits count is what `build` cuts, whatever carries the parts.
            for concatenation in [SmppConcatenation::Udh8, SmppConcatenation::Sar, SmppConcatenation::Payload] {
                assert_eq!(segments(&text, &opts(SmppEncoding::Auto, concatenation)), parts as u32);
            }
        }
        assert_eq!(segments(&"a".repeat(305), &opts(SmppEncoding::Auto, SmppConcatenation::Udh16)), 3, "152 septets a part");
        assert_eq!(segments("жж", &opts(SmppEncoding::Gsm7, SmppConcatenation::Udh8)), 1, "refused by build; counted as UCS-2");
    }

    #[test]
    fn emoji_go_as_utf16_and_pairs_are_never_split() {
        // 66 BMP characters then an emoji: the pair would straddle the 67-unit boundary.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let pdus = build(&job(&text), "sendgate", 3, &Options::default()).unwrap().pdus;
        assert_eq!(pdus.len(), 2);
        let first_len = pdus[0].short_message().len();
        // UDH (6 bytes) + 66 characters: the emoji moved whole into part 2.
        assert_eq!(first_len, 6 + 66 * 2);
        assert_eq!(u8::from(pdus[0].data_coding), 0x08);
    }

    /// (text, encoding, data_coding, segments, first short_message length) with UDH8.
    #[test]
    fn encoding_settings_table() {
        use SmppEncoding::*;
        let cases = [
            ("é".repeat(140), Latin1, 0x03u8, 1u32, 140usize),
            ("é".repeat(141), Latin1, 0x03, 2, 6 + 134),
            ("€".repeat(10), Latin1, 0x08, 1, 20),
            ("a".repeat(71), Ucs2, 0x08, 2, 6 + 134),
            ("a".repeat(160), Gsm7, 0x00, 1, 160),
            ("naïve".to_owned(), Auto, 0x08, 1, 10),
        ];
        for (text, encoding, dc, segments, first) in cases {
            let built = build(&job(&text), "s", 1, &opts(encoding, SmppConcatenation::Udh8)).unwrap();
            let got = (u8::from(built.pdus[0].data_coding), built.segments, built.pdus[0].short_message().len());
            assert_eq!(got, (dc, segments, first), "{} chars as {encoding:?}", text.chars().count());
        }
        let gsm7_01 = Options { data_coding_gsm7: 0x01, ..Options::default() };
        assert_eq!(u8::from(build(&job("hi"), "s", 1, &gsm7_01).unwrap().pdus[0].data_coding), 0x01);
    }

    #[test]
    fn forced_gsm7_rejects_naming_the_character() {
        let err = build(&job("Привет"), "s", 1, &opts(SmppEncoding::Gsm7, SmppConcatenation::Udh8)).unwrap_err();
        let SendError::Rejected { code, message } = err else { panic!("{err:?}") };
        assert_eq!(code, "encoding");
        assert!(message.contains("'П' (U+041F) is not in the GSM 7-bit alphabet"), "{message}");
    }

    #[test]
    fn udh_headers_by_reference_width() {
        let text = "a".repeat(200);
        let udh = |concatenation| {
            let pdus = build(&job(&text), "s", 0x1234, &opts(SmppEncoding::Auto, concatenation)).unwrap().pdus;
            assert!(pdus.iter().all(|p| u8::from(p.esm_class) == 0x40 && p.tlvs().is_empty()));
            pdus.iter().map(|p| p.short_message().as_ref()[..7].to_vec()).collect::<Vec<_>>()
        };
        // 8-bit: the low byte of the reference; 16-bit: all of it.
        assert_eq!(udh(SmppConcatenation::Udh8), [[5, 0, 3, 0x34, 2, 1, b'a'], [5, 0, 3, 0x34, 2, 2, b'a']]);
        assert_eq!(udh(SmppConcatenation::Udh16), [[6, 8, 4, 0x12, 0x34, 2, 1], [6, 8, 4, 0x12, 0x34, 2, 2]]);
    }

    #[test]
    fn sar_parts_carry_tlvs_and_no_udh() {
        let text = "a".repeat(307);
        let built = build(&job(&text), "s", 0x1234, &opts(SmppEncoding::Auto, SmppConcatenation::Sar)).unwrap();
        assert_eq!(built.segments, 3);
        for (i, pdu) in built.pdus.iter().enumerate() {
            assert_eq!(u8::from(pdu.esm_class), 0x00);
            assert_eq!(tlvs(pdu), [TlvValue::SarMsgRefNum(0x34), TlvValue::SarTotalSegments(3), TlvValue::SarSegmentSeqnum(i as u8 + 1)]);
        }
        let lens: Vec<usize> = built.pdus.iter().map(|p| p.short_message().len()).collect();
        assert_eq!(lens, [153, 153, 1]);
        // One part: a plain message, no TLVs.
        let single = build(&job("hi"), "s", 9, &opts(SmppEncoding::Auto, SmppConcatenation::Sar)).unwrap();
        assert!(single.pdus[0].tlvs().is_empty());
    }

    #[test]
    fn payload_is_one_pdu_counting_every_segment() {
        for (text, segments) in [("hi".to_owned(), 1), ("a".repeat(307), 3), ("ж".repeat(135), 3)] {
            let built = build(&job(&text), "s", 1, &opts(SmppEncoding::Auto, SmppConcatenation::Payload)).unwrap();
            assert_eq!((built.pdus.len(), built.segments), (1, segments), "{} chars", text.chars().count());
            let pdu = &built.pdus[0];
            assert!(pdu.short_message().is_empty());
            assert_eq!(u8::from(pdu.esm_class), 0x00);
            let tlvs = tlvs(pdu);
            let [TlvValue::MessagePayload(p)] = tlvs.as_slice() else { panic!("{tlvs:?}") };
            let want = encoding::encode(&text, SmppEncoding::Auto, 0).unwrap().bytes;
            assert_eq!(p.value.as_ref(), want.as_slice());
        }
    }

    #[test]
    fn max_segments_rejects_with_the_count_needed() {
        for concatenation in [SmppConcatenation::Udh8, SmppConcatenation::Udh16, SmppConcatenation::Sar, SmppConcatenation::Payload] {
            let o = Options { max_segments: 2, ..opts(SmppEncoding::Auto, concatenation) };
            assert_eq!(build(&job(&"a".repeat(300)), "s", 1, &o).unwrap().segments, 2);
            let err = build(&job(&"a".repeat(320)), "s", 1, &o).unwrap_err();
            assert_eq!(
                err,
                SendError::Rejected { code: "max_segments".into(), message: "text needs 3 segments; this provider's max_segments is 2".into() },
                "{concatenation:?}"
            );
        }
    }

    #[test]
    fn addresses_get_ton_npi() {
        assert_eq!(address("+79161234567"), (Ton::International, Npi::Isdn, "79161234567"));
        assert_eq!(address("ACME"), (Ton::Alphanumeric, Npi::Unknown, "ACME"));
        assert_eq!(address("7070"), (Ton::National, Npi::Isdn, "7070"));
    }
}
