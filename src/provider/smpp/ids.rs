//! Message ids in one canonical form per provider: the id stored with a submit's mapping and
//! the id a receipt names must be the same string, and SMSCs write the same id differently in
//! `submit_sm_resp` and in the receipt (hex and decimal, upper and lower case, leading zeros).
//!
//! Both sides pass through here before anything is stored or looked up, so they always agree.

use crate::config::SmppReceiptIdFormat;

/// The canonical form of an id from a `submit_sm_resp`.
pub fn from_resp(format: SmppReceiptIdFormat, id: &str) -> String {
    match format {
        SmppReceiptIdFormat::HexToDecimal => number(id, 16),
        SmppReceiptIdFormat::DecimalToHex => number(id, 10),
        SmppReceiptIdFormat::Auto => plain(id),
        SmppReceiptIdFormat::AsIs => id.to_owned(),
    }
}

/// The canonical form of the id a delivery receipt names.
pub fn from_receipt(format: SmppReceiptIdFormat, id: &str) -> String {
    match format {
        SmppReceiptIdFormat::HexToDecimal => number(id, 10),
        SmppReceiptIdFormat::DecimalToHex => number(id, 16),
        SmppReceiptIdFormat::Auto => plain(id),
        SmppReceiptIdFormat::AsIs => id.to_owned(),
    }
}

/// The number written in `radix`, in decimal without leading zeros. An id that is not such a
/// number (the SMSC does not do what the setting says) falls back to [`plain`], so it still
/// matches an id written the same way on the other side.
fn number(id: &str, radix: u32) -> String {
    let trimmed = id.trim();
    match u128::from_str_radix(trimmed, radix) {
        Ok(n) if !trimmed.starts_with('+') => n.to_string(),
        _ => plain(id),
    }
}

/// Lowercase, no leading zeros (`"0"` stays): what `auto` does to every id.
fn plain(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    match lower.trim_start_matches('0') {
        "" if !lower.is_empty() => "0".to_owned(),
        rest => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smsc_sim::ReceiptIdFormat as Sim;
    use SmppReceiptIdFormat::*;

    #[test]
    fn canonical_forms_table() {
        // (format, resp id, receipt id, canonical form both become)
        let cases = [
            (Auto, "5F1C0A", "005f1c0a", "5f1c0a"),
            (Auto, "0", "000", "0"),
            (Auto, "msg-AbC", "MSG-abc", "msg-abc"),
            (AsIs, "0A", "0A", "0A"),
            (HexToDecimal, "499602D2", "1234567890", "1234567890"),
            (HexToDecimal, "ff", "0000000255", "255"),
            (DecimalToHex, "1234567890", "499602D2", "1234567890"),
            (DecimalToHex, "255", "00FF", "255"),
            // Not numbers as promised: both sides fall back to the plain form.
            (HexToDecimal, "xyz-1", "XYZ-1", "xyz-1"),
            (DecimalToHex, "+12", "+12", "+12"),
        ];
        for (format, resp, receipt, want) in cases {
            assert_eq!(from_resp(format, resp), want, "{format:?} resp {resp}");
            assert_eq!(from_receipt(format, receipt), want, "{format:?} receipt {receipt}");
        }
        assert_ne!(from_resp(AsIs, "0A"), from_receipt(AsIs, "a"), "as_is compares bytes");
    }

    /// Every spelling the simulator produces meets its submit id under the matching setting,
    /// and `auto` is enough for its default.
    #[test]
    fn simulator_formats_correlate() {
        for n in [1u64, 9, 10, 255, 4096, 1_234_567_890, 3_000_000_007, u64::from(u32::MAX) + 5] {
            for (sim, format) in [(Sim::AsIssued, Auto), (Sim::Hex, DecimalToHex), (Sim::Decimal, HexToDecimal)] {
                let ids = sim.ids(n);
                assert_eq!(from_resp(format, &ids.resp), from_receipt(format, &ids.receipt), "{sim:?} {n} {ids:?}");
            }
            // Without the setting, hex and decimal spellings of one number do not meet.
            let ids = Sim::Hex.ids(n);
            if n > 9 {
                assert_ne!(from_resp(Auto, &ids.resp), from_receipt(Auto, &ids.receipt), "{n}");
            }
        }
    }
}
