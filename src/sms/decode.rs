//! Short-message bytes → text by SMPP `data_coding`: GSM 03.38 (unpacked), UCS-2/UTF-16BE, Latin-1.
//!
//! Pure and total: any byte string decodes to some text (unmappable input becomes U+FFFD), because
//! both the simulator and the gateway's MO path feed it bytes from the wire.

/// GSM 03.38 default alphabet, indexed by septet. 0x1B is the escape to the extension table and
/// never reaches this table through [`decode_gsm7`].
const GSM7_DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

const GSM7_ESCAPE: u8 = 0x1B;

/// The GSM 03.38 extension table (the septet after 0x1B).
fn gsm7_extension(septet: u8) -> Option<char> {
    Some(match septet {
        0x0A => '\u{0C}',
        0x14 => '^',
        0x28 => '{',
        0x29 => '}',
        0x2F => '\\',
        0x3C => '[',
        0x3D => '~',
        0x3E => ']',
        0x40 => '|',
        0x65 => '€',
        _ => return None,
    })
}

/// Which alphabet a `data_coding` value selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    Gsm7,
    Ucs2,
    Latin1,
}

impl Alphabet {
    /// Maps `data_coding` to an alphabet, including the GSM 03.38 coding groups that phones and
    /// some SMSCs use in MO traffic. Anything else (binary, JIS, …) falls back to Latin-1 so
    /// every byte still shows up as exactly one character.
    pub fn of(data_coding: u8) -> Self {
        match data_coding {
            0x00 | 0x01 => Alphabet::Gsm7,
            0x08 => Alphabet::Ucs2,
            // General data coding group, uncompressed: bits 3-2 pick the alphabet.
            0x10..=0x1F | 0x30..=0x3F => match (data_coding >> 2) & 0b11 {
                0b00 => Alphabet::Gsm7,
                0b10 => Alphabet::Ucs2,
                _ => Alphabet::Latin1,
            },
            // Message waiting groups: 0xC0/0xD0 are GSM-7, 0xE0 is UCS-2.
            0xC0..=0xDF => Alphabet::Gsm7,
            0xE0..=0xEF => Alphabet::Ucs2,
            // Data coding / message class group: bit 2 set means 8-bit data.
            0xF0..=0xFF if data_coding & 0b100 == 0 => Alphabet::Gsm7,
            _ => Alphabet::Latin1,
        }
    }
}

/// Decodes `bytes` as `data_coding` says. Never fails; see the module docs.
pub fn decode_text(data_coding: u8, bytes: &[u8]) -> String {
    match Alphabet::of(data_coding) {
        Alphabet::Gsm7 => decode_gsm7(bytes),
        Alphabet::Ucs2 => decode_ucs2(bytes),
        Alphabet::Latin1 => decode_latin1(bytes),
    }
}

/// GSM 03.38 with one septet per octet (SMPP's "unpacked" form).
pub fn decode_gsm7(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut iter = bytes.iter().copied();
    while let Some(b) = iter.next() {
        if b >= 0x80 {
            out.push(char::REPLACEMENT_CHARACTER);
        } else if b == GSM7_ESCAPE {
            match iter.next() {
                // 03.38 says an unknown extension code shows as its default-table character.
                Some(next) if next < 0x80 && next != GSM7_ESCAPE => {
                    out.push(gsm7_extension(next).unwrap_or(GSM7_DEFAULT[next as usize]));
                }
                // A trailing or doubled escape (reserved): show a space, as handsets do.
                Some(next) if next == GSM7_ESCAPE => out.push(' '),
                Some(_) => out.push(char::REPLACEMENT_CHARACTER),
                None => out.push(' '),
            }
        } else {
            out.push(GSM7_DEFAULT[b as usize]);
        }
    }
    out
}

/// UCS-2 read as UTF-16BE, so surrogate pairs (emoji) decode; lone surrogates and an odd
/// trailing byte become U+FFFD.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut out: String = char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
    if bytes.len() % 2 == 1 {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

/// ISO-8859-1: each byte is the code point of the same value.
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16be(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
    }

    #[test]
    fn gsm7_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"Hello", "Hello"),
            (&[0x00, 0x01, 0x02, 0x11, 0x24, 0x40, 0x5F, 0x60, 0x7F], "@£$_¤¡§¿à"),
            (&[0x10, 0x1C, 0x1F, 0x5B, 0x7E], "ΔÆÉÄü"),
            (&[0x1B, 0x65], "€"),
            (&[0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x2F, 0x1B, 0x3D], "[]{}\\~"),
            (&[0x1B, 0x14, 0x1B, 0x40, 0x1B, 0x0A], "^|\u{0C}"),
            (&[b'a', 0x1B, 0x65, b'b'], "a€b"),
            // Unknown extension code: default-table character.
            (&[0x1B, b'A'], "A"),
            // Trailing escape, doubled escape, high-bit bytes.
            (&[b'x', 0x1B], "x "),
            (&[0x1B, 0x1B, b'y'], " y"),
            (&[0x80, 0xFF], "\u{FFFD}\u{FFFD}"),
            (&[0x1B, 0x90], "\u{FFFD}"),
            (b"", ""),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_gsm7(bytes), *want, "bytes {bytes:02x?}");
        }
    }

    #[test]
    fn ucs2_table() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (utf16be("Привет"), "Привет"),
            (utf16be("emoji 😀🎉 ok"), "emoji 😀🎉 ok"),
            (vec![0xD8, 0x3D], "\u{FFFD}"),              // lone high surrogate
            (vec![0xDE, 0x00, 0x00, 0x41], "\u{FFFD}A"), // lone low surrogate
            (vec![0x00, 0x41, 0x00], "A\u{FFFD}"),       // odd trailing byte
            (vec![], ""),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_ucs2(&bytes), want, "bytes {bytes:02x?}");
        }
    }

    #[test]
    fn data_coding_picks_alphabet() {
        let cases = [
            (0x00, Alphabet::Gsm7),
            (0x01, Alphabet::Gsm7),
            (0x02, Alphabet::Latin1),
            (0x03, Alphabet::Latin1),
            (0x04, Alphabet::Latin1),
            (0x08, Alphabet::Ucs2),
            (0x11, Alphabet::Gsm7),
            (0x18, Alphabet::Ucs2),
            (0x14, Alphabet::Latin1),
            (0xF0, Alphabet::Gsm7),
            (0xF4, Alphabet::Latin1),
        ];
        for (dc, want) in cases {
            assert_eq!(Alphabet::of(dc), want, "data_coding {dc:#04x}");
        }
        assert_eq!(decode_text(0x03, &[b'c', 0xE9]), "cé");
        // ASCII `_` (0x5F) is `§` in GSM-7; GSM-7 `_` is 0x11.
        assert_eq!(decode_text(0x00, b"a_b\x11"), "a§b_");
        assert_eq!(decode_text(0x08, &utf16be("ж")), "ж");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, RngCore};
        let mut rng = rand::rng();
        for _ in 0..2_000 {
            let mut bytes = vec![0u8; rng.random_range(0..300)];
            rng.fill_bytes(&mut bytes);
            let dc: u8 = rng.random();
            let _ = decode_text(dc, &bytes);
        }
    }
}
