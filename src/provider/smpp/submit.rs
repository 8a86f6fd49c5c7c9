//! Turning a job into `submit_sm` PDUs: addresses, encoding (GSM-7 or UCS-2), concatenation.

use rusmpp::extra::concatenation::{Concatenation, Concatenator};
use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};

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

/// Builds the PDUs for one job: one, or several concatenated parts (UDH, 8- or 16-bit
/// reference). GSM-7 when every character is in the GSM alphabet, else UCS-2.
pub fn build(job: &Job, default_from: &str, reference: u16) -> Result<Vec<SubmitSm>, SendError> {
    let from = job.from.as_deref().unwrap_or(default_from);
    let (s_ton, s_npi, source) = address(from);
    let (d_ton, d_npi, dest) = address(&job.to);
    let template = SubmitSm::builder()
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
        .data_coding(DataCoding::default())
        .short_message(OctetString::empty())
        .build();
    let text = job.text();
    let builder = template.multipart(&text);
    let parts = if reference <= u8::MAX as u16 {
        builder.reference_u8(reference as u8).encoder(Gsm7Septets::default()).fallback(Utf16).build()
    } else {
        builder.reference_u16(reference).encoder(Gsm7Septets::default()).fallback(Utf16).build()
    };
    parts.map_err(|e| rejected(format!("text: cannot be encoded for SMS: {e}")))
}

/// One 140-octet SMS carries 160 GSM-7 septets. rusmpp-extra counts unpacked GSM-7 in
/// octets (140 per part, header in octets); here the limit is septets, and a UDH of `h`
/// octets costs `ceil(h * 8 / 7)` septets with its fill bits: 160/153 (8-bit ref), 160/152
/// (16-bit ref). Escape pairs (`€`, `[`, ...) are never split across parts.
#[derive(Default)]
struct Gsm7Septets(Gsm7BitUnpacked);

impl Concatenator for Gsm7Septets {
    type Error = <Gsm7BitUnpacked as Concatenator>::Error;

    fn concatenate(&self, message: &str, _max: usize, header: usize) -> Result<(Concatenation, DataCoding), Self::Error> {
        self.0.concatenate(message, 160, (header * 8).div_ceil(7))
    }
}

/// UCS-2 as every handset reads it today: UTF-16BE, so characters outside the BMP (emoji)
/// travel as surrogate pairs. rusmpp-extra's `Ucs2` refuses those characters outright.
/// A part never ends between the two halves of a pair, so each part decodes on its own.
struct Utf16;

#[derive(Debug, thiserror::Error)]
#[error("text needs {0} parts; SMS concatenation allows 255")]
struct TooManyParts(usize);

impl Concatenator for Utf16 {
    type Error = TooManyParts;

    fn concatenate(&self, message: &str, _max: usize, header: usize) -> Result<(Concatenation, DataCoding), Self::Error> {
        // 140 octets per SMS, whatever limit the builder was given for GSM-7.
        let max = 140;
        let units: Vec<u16> = message.encode_utf16().collect();
        let to_bytes = |u: &[u16]| u.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<u8>>();
        if units.len() * 2 <= max {
            return Ok((Concatenation::Single(to_bytes(&units)), DataCoding::Ucs2));
        }
        let per_part = (max.saturating_sub(header) / 2).max(2);
        let mut parts = Vec::new();
        let mut i = 0;
        while i < units.len() {
            let mut end = (i + per_part).min(units.len());
            if end < units.len() && (0xD800..0xDC00).contains(&units[end - 1]) {
                end -= 1;
            }
            parts.push(to_bytes(&units[i..end]));
            i = end;
        }
        if parts.len() > 255 {
            return Err(TooManyParts(parts.len()));
        }
        Ok((Concatenation::Concatenated(parts), DataCoding::Ucs2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn job(text: &str) -> Job {
        let v = serde_json::json!({"id":"j","tenant":"t","channel":"sms","to":"+4915112345678","text":text});
        crate::job::from_value(v, Utc::now()).unwrap()
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
            let pdus = build(&job(&text), "sendgate", 7).unwrap();
            assert_eq!(pdus.len(), parts, "{} x{}", text.chars().next().unwrap(), text.chars().count());
            assert_eq!(u8::from(pdus[0].data_coding), dcs);
        }
    }

    #[test]
    fn emoji_go_as_utf16_and_pairs_are_never_split() {
        // 66 BMP characters then an emoji: the pair would straddle the 67-unit boundary.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let pdus = build(&job(&text), "sendgate", 3).unwrap();
        assert_eq!(pdus.len(), 2);
        let first_len = pdus[0].short_message().len();
        // UDH (6 bytes) + 66 characters: the emoji moved whole into part 2.
        assert_eq!(first_len, 6 + 66 * 2);
        assert_eq!(u8::from(pdus[0].data_coding), 0x08);
    }

    #[test]
    fn addresses_get_ton_npi() {
        assert_eq!(address("+79161234567"), (Ton::International, Npi::Isdn, "79161234567"));
        assert_eq!(address("ACME"), (Ton::Alphanumeric, Npi::Unknown, "ACME"));
        assert_eq!(address("7070"), (Ton::National, Npi::Isdn, "7070"));
    }
}
