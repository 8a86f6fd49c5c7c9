//! The text of the message ids the simulator hands out: one number per submit, written one way
//! in `submit_sm_resp` and possibly another way in the receipt, as real SMSCs do.
//!
//! Many SMSCs answer a submit with a hex id and report the same message in decimal (or the
//! other way round, sometimes zero-padded); a gateway that compares the strings loses every
//! receipt. `receipt_id_format` reproduces that so id normalisation has something to test.

use serde::Deserialize;

/// How the receipt's id (`id:` text and receipted_message_id TLV) relates to the
/// submit_sm_resp id. Value names are the same for the flag and the config key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIdFormat {
    /// The same string in both: lowercase hex, as before this option existed.
    #[default]
    AsIssued,
    /// Decimal in submit_sm_resp, uppercase hex in the receipt.
    Hex,
    /// Uppercase hex in submit_sm_resp, decimal zero-padded to 10 digits in the receipt.
    Decimal,
    /// One of the three above, drawn per message.
    Mixed,
}

/// The two spellings of one message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIds {
    /// What the client gets in submit_sm_resp (and what the recorded message lists).
    pub resp: String,
    /// What the receipt carries.
    pub receipt: String,
}

impl ReceiptIdFormat {
    pub fn ids(self, number: u64) -> MessageIds {
        let (resp, receipt) = match self.concrete() {
            Self::Hex => (format!("{number}"), format!("{number:X}")),
            Self::Decimal => (format!("{number:X}"), format!("{number:010}")),
            _ => {
                let id = format!("{number:x}");
                (id.clone(), id)
            }
        };
        MessageIds { resp, receipt }
    }

    /// Resolves `Mixed` to one of the fixed formats.
    fn concrete(self) -> Self {
        match self {
            Self::Mixed => [Self::AsIssued, Self::Hex, Self::Decimal][rand::random_range(0..3)],
            fixed => fixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_table() {
        let n = 0x4996_02D2; // 1234567890
        let cases = [
            (ReceiptIdFormat::AsIssued, "499602d2", "499602d2"),
            (ReceiptIdFormat::Hex, "1234567890", "499602D2"),
            (ReceiptIdFormat::Decimal, "499602D2", "1234567890"),
        ];
        for (format, resp, receipt) in cases {
            assert_eq!(format.ids(n), MessageIds { resp: resp.into(), receipt: receipt.into() }, "{format:?}");
        }
        assert_eq!(ReceiptIdFormat::Decimal.ids(255).receipt, "0000000255");
    }

    #[test]
    fn mixed_draws_one_of_the_fixed_formats() {
        let n = 3_000_000_007;
        let fixed = [ReceiptIdFormat::AsIssued, ReceiptIdFormat::Hex, ReceiptIdFormat::Decimal].map(|f| f.ids(n));
        for _ in 0..50 {
            let got = ReceiptIdFormat::Mixed.ids(n);
            assert!(fixed.contains(&got), "{got:?}");
        }
    }
}
