//! Turning a job into `submit_sm` PDUs: addresses, encoding (GSM-7 or UCS-2), concatenation.

use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::extra::encoding::ucs2::Ucs2;
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
        builder.reference_u8(reference as u8).gsm7bit_unpacked().fallback(Ucs2::new()).build()
    } else {
        builder.reference_u16(reference).gsm7bit_unpacked().fallback(Ucs2::new()).build()
    };
    parts.map_err(|e| rejected(format!("text: cannot be encoded for SMS: {e}")))
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
    fn addresses_get_ton_npi() {
        assert_eq!(address("+79161234567"), (Ton::International, Npi::Isdn, "79161234567"));
        assert_eq!(address("ACME"), (Ton::Alphanumeric, Npi::Unknown, "ACME"));
        assert_eq!(address("7070"), (Ton::National, Npi::Isdn, "7070"));
    }
}
