//! Message ids in one canonical form per provider: the id stored with a submit's mapping and
//! the id a receipt names must be the same string, and SMSCs write the same id differently in
//! `submit_sm_resp` and in the receipt (hex and decimal, upper and lower case, leading zeros).
//!
//! Both sides pass through here before anything is stored or looked up, so they always agree.
//! The canonical form of a numeric id is its number in lowercase hex: the ids of the many SMSCs
//! that hand out hex ids stay as they were, lowercased.

use super::config::SmppReceiptIdFormat;

/// Under `auto`, an id of only decimal digits is read as decimal from this many digits on
/// (leading zeros counted, as SMSCs pad decimal ids), as hex below: a 32-bit id is at most 8
/// hex digits, and its decimal spelling is 9 or 10 digits from 100,000,000 on.
const AUTO_DECIMAL_DIGITS: usize = 9;

/// The canonical form of an id from a `submit_sm_resp`.
pub fn from_resp(format: SmppReceiptIdFormat, id: &str) -> String {
    match format {
        SmppReceiptIdFormat::Auto => auto(id),
        SmppReceiptIdFormat::AsIs => id.to_owned(),
        SmppReceiptIdFormat::HexToDecimal => number(id, 16),
        SmppReceiptIdFormat::DecimalToHex => number(id, 10),
    }
}

/// The canonical form of the id a delivery receipt names.
pub fn from_receipt(format: SmppReceiptIdFormat, id: &str) -> String {
    match format {
        SmppReceiptIdFormat::Auto => auto(id),
        SmppReceiptIdFormat::AsIs => id.to_owned(),
        SmppReceiptIdFormat::HexToDecimal => number(id, 10),
        SmppReceiptIdFormat::DecimalToHex => number(id, 16),
    }
}

/// Ids of hex digits only are numbers: decimal when they are all decimal digits and long
/// enough to be a decimal spelling, else hex. Anything else is compared lowercased without
/// leading zeros.
fn auto(id: &str) -> String {
    let t = id.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        let decimal = t.len() >= AUTO_DECIMAL_DIGITS && t.bytes().all(|b| b.is_ascii_digit());
        if let Ok(n) = u128::from_str_radix(t, if decimal { 10 } else { 16 }) {
            return format!("{n:x}");
        }
    }
    plain(t)
}

/// The number written in `radix`, as lowercase hex. An id that is not such a number (the
/// SMSC does not do what the setting says) falls back to `auto`.
fn number(id: &str, radix: u32) -> String {
    let t = id.trim();
    match u128::from_str_radix(t, radix) {
        Ok(n) if !t.starts_with('+') => format!("{n:x}"),
        _ => auto(id),
    }
}

/// Lowercase, no leading zeros (`"0"` stays).
fn plain(id: &str) -> String {
    let lower = id.to_ascii_lowercase();
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
            // Hex against decimal, either way round, padded or not.
            (Auto, "1234567890", "499602D2", "499602d2"),
            (Auto, "499602D2", "0000000001234567890", "499602d2"),
            (Auto, "12345678", "0305419896", "12345678"),
            // Short all-digit ids read as hex: fine while both sides write them the same way.
            (Auto, "12345", "0012345", "12345"),
            (Auto, "msg-AbC", "MSG-abc", "msg-abc"),
            (Auto, "0x1F", "0X1f", "x1f"),
            (AsIs, "0A", "0A", "0A"),
            (HexToDecimal, "499602D2", "1234567890", "499602d2"),
            (HexToDecimal, "ff", "0000000255", "ff"),
            (DecimalToHex, "1234567890", "499602D2", "499602d2"),
            // Short decimal ids need the setting: `auto` would read "255" as hex.
            (DecimalToHex, "255", "00FF", "ff"),
            // Not numbers as promised: both sides fall back to `auto`.
            (HexToDecimal, "xyz-1", "XYZ-1", "xyz-1"),
            (DecimalToHex, "+12", "+12", "+12"),
        ];
        for (format, resp, receipt, want) in cases {
            assert_eq!(from_resp(format, resp), want, "{format:?} resp {resp}");
            assert_eq!(from_receipt(format, receipt), want, "{format:?} receipt {receipt}");
        }
        assert_ne!(from_resp(AsIs, "0A"), from_receipt(AsIs, "a"), "as_is compares bytes");
        assert_ne!(from_resp(Auto, "255"), from_receipt(Auto, "FF"), "auto reads a short decimal id as hex");
    }

    /// Every spelling the simulator produces meets its submit id, under `auto` and under the
    /// matching explicit setting, for ids from 100,000,000 on (below, a decimal id is too
    /// short to tell from hex).
    #[test]
    fn simulator_formats_correlate() {
        let numbers = [100_000_000u64, 0x1234_5678, 1_234_567_890, 3_000_000_007, u64::from(u32::MAX)];
        for n in numbers {
            for (sim, format) in [(Sim::AsIssued, Auto), (Sim::Hex, DecimalToHex), (Sim::Decimal, HexToDecimal)] {
                let ids = sim.ids(n);
                assert_eq!(from_resp(format, &ids.resp), from_receipt(format, &ids.receipt), "{sim:?} {n} {ids:?}");
                assert_eq!(from_resp(Auto, &ids.resp), from_receipt(Auto, &ids.receipt), "{sim:?} {n} {ids:?} under auto");
            }
        }
        // Explicit settings work for small numbers too.
        for n in [1u64, 9, 10, 255, 4096, 99_999_999] {
            for (sim, format) in [(Sim::Hex, DecimalToHex), (Sim::Decimal, HexToDecimal)] {
                let ids = sim.ids(n);
                assert_eq!(from_resp(format, &ids.resp), from_receipt(format, &ids.receipt), "{sim:?} {n} {ids:?}");
            }
        }
    }
}
