//! Amounts of money in exact integer micro-units (1e-6 of the currency), written as decimal
//! strings: a float would make sums drift, and a JSON number is read as a float by many
//! consumers.

use std::fmt;

/// Most fractional digits a price may have.
pub const MICRO_DIGITS: usize = 6;
const MICROS_PER_UNIT: u64 = 1_000_000;

/// An amount in micro-units of its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Micros(pub u64);

impl Micros {
    /// `"0.0415"`, `"12"`, `"0.000001"`: a non-negative decimal with at most six fractional
    /// digits. The error says what is wrong, for the caller to put behind a key.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("not a decimal amount with at most {MICRO_DIGITS} fractional digits: {s:?}");
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > MICRO_DIGITS || (s.contains('.') && frac.is_empty()) {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let frac: u64 = format!("{frac:0<MICRO_DIGITS$}").parse().map_err(|_| bad())?;
        whole.checked_mul(MICROS_PER_UNIT).and_then(|w| w.checked_add(frac)).map(Micros).ok_or_else(|| format!("too large: {s:?}"))
    }

    /// `self × n`, saturating (a sum beyond 18 trillion units is not a price).
    pub fn times(self, n: u32) -> Self {
        Micros(self.0.saturating_mul(u64::from(n)))
    }
}

/// The shortest exact decimal: `0.0415`, `12`, `0.000001`.
impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / MICROS_PER_UNIT, self.0 % MICROS_PER_UNIT);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:06}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl serde::Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Micros {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Micros::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_and_print_exactly() {
        for (text, micros, shown) in [
            ("0.0415", 41_500, "0.0415"),
            ("12", 12_000_000, "12"),
            ("12.50", 12_500_000, "12.5"),
            ("0.000001", 1, "0.000001"),
            ("0", 0, "0"),
            ("0.1", 100_000, "0.1"),
        ] {
            let m = Micros::parse(text).unwrap();
            assert_eq!((m.0, m.to_string()), (micros, shown.to_owned()), "{text}");
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{shown}\""));
            assert_eq!(serde_json::from_str::<Micros>(&format!("\"{shown}\"")).unwrap(), m);
        }
        // A tenth added ten times is exactly one, as it never is in binary floating point.
        assert_eq!(Micros(Micros::parse("0.1").unwrap().0 * 10).to_string(), "1");
        for bad in ["", ".5", "5.", "-1", "1e3", "0.0000001", "1,5", " 1", "0x10", "99999999999999999999"] {
            assert!(Micros::parse(bad).is_err(), "{bad:?}");
        }
    }
}
