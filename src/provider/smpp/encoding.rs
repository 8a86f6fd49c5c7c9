//! Text → SMS octets: the alphabet a provider's `encoding` setting picks, and cutting the
//! octets into SMS-sized parts without ever splitting a character.

use rusmpp::extra::encoding::gsm7bit::{Gsm7BitEncodeError, Gsm7BitUnpacked};

use super::config::SmppEncoding;
use crate::sms::decode::Alphabet;

pub const DATA_CODING_LATIN1: u8 = 0x03;
pub const DATA_CODING_UCS2: u8 = 0x08;

/// User data of one SMS on the air interface.
const SMS_OCTETS: usize = 140;
/// GSM-7 packs 160 septets into those 140 octets; SMPP carries them unpacked, one per octet,
/// and the SMSC packs them.
const SMS_SEPTETS: usize = 160;
const GSM7_ESCAPE: u8 = 0x1B;

/// A text in the alphabet it will travel in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub alphabet: Alphabet,
    pub data_coding: u8,
    /// GSM-7: one septet per octet (extension characters take two). UCS-2: UTF-16BE.
    /// Latin-1: one octet per character.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("character {:?} (U+{:04X}) is not in the GSM 7-bit alphabet", .0, u32::from(*.0))]
pub struct NotGsm7(pub char);

/// Encodes `text` as the provider's `encoding` asks. Only a forced `gsm7` can fail.
///
/// rusmpp's GSM-7 table has every 03.38 character but the extension table's form feed, so a
/// text with a page break goes as UCS-2 under `auto`: no one sends those by SMS.
pub fn encode(text: &str, encoding: SmppEncoding, data_coding_gsm7: u8) -> Result<Encoded, NotGsm7> {
    let gsm7 = || {
        Gsm7BitUnpacked::new()
            .encode_to_vec(text)
            .map(|bytes| Encoded { alphabet: Alphabet::Gsm7, data_coding: data_coding_gsm7, bytes })
            .map_err(|Gsm7BitEncodeError::UnencodableCharacter(c)| NotGsm7(c))
    };
    match encoding {
        SmppEncoding::Auto => Ok(gsm7().unwrap_or_else(|_| ucs2(text))),
        SmppEncoding::Gsm7 => gsm7(),
        SmppEncoding::Ucs2 => Ok(ucs2(text)),
        SmppEncoding::Latin1 => Ok(latin1(text).unwrap_or_else(|| ucs2(text))),
    }
}

/// UCS-2 as every handset reads it today: UTF-16BE, so characters outside the BMP (emoji)
/// travel as surrogate pairs. rusmpp's `Ucs2` refuses those characters outright.
fn ucs2(text: &str) -> Encoded {
    let bytes = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    Encoded { alphabet: Alphabet::Ucs2, data_coding: DATA_CODING_UCS2, bytes }
}

/// ISO-8859-1, whose code points are the first 256 of Unicode; `None` if any character is past them.
fn latin1(text: &str) -> Option<Encoded> {
    let bytes = text.chars().map(|c| u8::try_from(c).ok()).collect::<Option<Vec<u8>>>()?;
    Some(Encoded { alphabet: Alphabet::Latin1, data_coding: DATA_CODING_LATIN1, bytes })
}

/// Room for user data in an SMS that is the whole message.
fn single_room(alphabet: Alphabet) -> usize {
    match alphabet {
        Alphabet::Gsm7 => SMS_SEPTETS,
        Alphabet::Ucs2 | Alphabet::Latin1 => SMS_OCTETS,
    }
}

/// Room for user data in one part of a concatenated message whose header takes `header`
/// octets. In GSM-7 the header costs `ceil(header * 8 / 7)` septets, fill bits included:
/// 153 (6-octet header), 152 (7-octet). In UCS-2 only whole UTF-16 units fit: 134, 132.
fn part_room(alphabet: Alphabet, header: usize) -> usize {
    match alphabet {
        Alphabet::Gsm7 => SMS_SEPTETS - (header * 8).div_ceil(7),
        Alphabet::Ucs2 => (SMS_OCTETS - header) & !1,
        Alphabet::Latin1 => SMS_OCTETS - header,
    }
}

/// Moves a cut at `end` back so that it falls between characters: never after a GSM-7 escape
/// or a UTF-16 high surrogate. Every part then decodes on its own, as a handset showing
/// parts before the last one arrives needs.
fn cut_back(alphabet: Alphabet, bytes: &[u8], end: usize) -> usize {
    match alphabet {
        Alphabet::Gsm7 if bytes[end - 1] == GSM7_ESCAPE => end - 1,
        Alphabet::Ucs2 if (0xD8..=0xDB).contains(&bytes[end - 2]) => end - 2,
        _ => end,
    }
}

/// The encoded text as SMS segments: one when it fits a single SMS, else parts that leave
/// room for a concatenation header of `header` octets.
pub fn split(encoded: &Encoded, header: usize) -> Vec<&[u8]> {
    let bytes = encoded.bytes.as_slice();
    if bytes.len() <= single_room(encoded.alphabet) {
        return vec![bytes];
    }
    let room = part_room(encoded.alphabet, header);
    let mut parts = Vec::with_capacity(bytes.len().div_ceil(room) + 1);
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + room).min(bytes.len());
        if end < bytes.len() {
            end = cut_back(encoded.alphabet, bytes, end);
        }
        parts.push(&bytes[start..end]);
        start = end;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_by_setting() {
        use SmppEncoding::*;
        let cases = [
            ("Hi [€]", Auto, Some(0x00)),
            ("naïve", Auto, Some(0x08)),
            ("Привет", Auto, Some(0x08)),
            ("Hi", Gsm7, Some(0x00)),
            ("naïve", Gsm7, None),
            ("Hi", Ucs2, Some(0x08)),
            ("café ©½", Latin1, Some(0x03)),
            ("€", Latin1, Some(0x08)),
            ("😀", Latin1, Some(0x08)),
        ];
        for (text, setting, want) in cases {
            let got = encode(text, setting, 0x00).ok().map(|e| e.data_coding);
            assert_eq!(got, want, "{text:?} as {setting:?}");
        }
        assert_eq!(encode("a", Gsm7, 0x01).unwrap().data_coding, 0x01);
        assert_eq!(encode("aж", Gsm7, 0x00).unwrap_err().to_string(), "character 'ж' (U+0436) is not in the GSM 7-bit alphabet");
        assert_eq!(encode("é\u{FF}", Latin1, 0).unwrap().bytes, [0xE9, 0xFF]);
    }

    /// Segment count by alphabet and header size (6: 8-bit reference, 7: 16-bit).
    #[test]
    fn segment_limits() {
        let count = |text: &str, setting, header| split(&encode(text, setting, 0).unwrap(), header).len();
        use SmppEncoding::*;
        let a = |n| "a".repeat(n);
        let cases = [
            (a(160), Auto, 6, 1),
            (a(161), Auto, 6, 2),
            (a(306), Auto, 6, 2),
            (a(307), Auto, 6, 3),
            (a(304), Auto, 7, 2),
            (a(305), Auto, 7, 3),
            (a(70), Ucs2, 6, 1),
            (a(71), Ucs2, 6, 2),
            (a(134), Ucs2, 6, 2),
            (a(135), Ucs2, 6, 3),
            (a(132), Ucs2, 7, 2),
            (a(133), Ucs2, 7, 3),
            (a(140), Latin1, 6, 1),
            (a(141), Latin1, 6, 2),
            (a(268), Latin1, 6, 2),
            (a(269), Latin1, 6, 3),
            (a(266), Latin1, 7, 2),
            (a(267), Latin1, 7, 3),
            // Escape pairs cost two septets and are never split: 152 + `€` would end on an escape.
            ("€".repeat(80), Auto, 6, 1),
            ("€".repeat(81), Auto, 6, 2),
            (format!("{}€{}", a(152), a(10)), Auto, 6, 2),
        ];
        for (text, setting, header, want) in cases {
            assert_eq!(count(&text, setting, header), want, "{} chars as {setting:?}, header {header}", text.chars().count());
        }
    }

    #[test]
    fn parts_end_between_characters() {
        // 152 septets then `€`: the escape pair moves whole into part 2.
        let gsm = encode(&format!("{}€{}", "a".repeat(152), "b".repeat(10)), SmppEncoding::Auto, 0).unwrap();
        assert_eq!(split(&gsm, 6).iter().map(|p| p.len()).collect::<Vec<_>>(), [152, 12]);
        // 66 BMP characters then an emoji: the pair would straddle the 67-unit boundary.
        let utf16 = encode(&format!("{}😀{}", "ж".repeat(66), "ж".repeat(10)), SmppEncoding::Auto, 0).unwrap();
        assert_eq!(split(&utf16, 6).iter().map(|p| p.len()).collect::<Vec<_>>(), [132, 24]);
    }
}
