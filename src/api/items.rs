//! Splitting a `POST /v1/jobs` body into its items without parsing them: one JSON job, a JSON
//! array of jobs, or NDJSON. Items stay slices of the body until each is parsed on its own, so
//! memory is the body plus one item's JSON tree, never a tree of the whole body (a 16 MiB
//! array of zeros was 8 million `Value`s and a `rejected` entry each: 9.6 GB). The item count
//! is checked while splitting, before any item is taken.

use std::cell::Cell;

use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body was not split.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// More than `max` items (`413`, naming the limit).
    TooMany { max: usize },
    /// Not a job, an array of jobs, or NDJSON (`400`).
    Malformed(String),
}

/// The body's items, each still its JSON text, at most `max` of them. A body that is not one
/// JSON value but has several lines is read as NDJSON, whatever its content type said; an
/// NDJSON line that is not JSON is an item too, one that fails to parse.
pub fn split(body: &[u8], ndjson: bool, max: usize) -> Result<Vec<&[u8]>, SplitError> {
    if !ndjson {
        match whole(body, max) {
            Ok(items) => return Ok(items),
            Err(e @ SplitError::TooMany { .. }) => return Err(e),
            Err(e) if !body.contains(&b'\n') => return Err(e),
            Err(_) => {}
        }
    }
    let mut items = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|line| !line.iter().all(u8::is_ascii_whitespace)) {
        if items.len() == max {
            return Err(SplitError::TooMany { max });
        }
        items.push(line);
    }
    Ok(items)
}

/// The body as one JSON value: an object (one item) or an array (its elements).
fn whole(body: &[u8], max: usize) -> Result<Vec<&[u8]>, SplitError> {
    let not_json = |e: serde_json::Error| SplitError::Malformed(format!("body: not JSON: {e}"));
    match body.iter().copied().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let over = Cell::new(false);
            let mut de = serde_json::Deserializer::from_slice(body);
            let items = de.deserialize_seq(Elements { max, over: &over }).and_then(|items| de.end().map(|()| items));
            match items {
                Ok(items) => Ok(items.into_iter().map(|raw| raw.get().as_bytes()).collect()),
                Err(_) if over.get() => Err(SplitError::TooMany { max }),
                Err(e) => Err(not_json(e)),
            }
        }
        _ => {
            // Validated without building anything: only the shape matters here.
            let raw: &RawValue = serde_json::from_slice(body).map_err(not_json)?;
            let text = raw.get();
            if text.starts_with('{') {
                Ok(vec![text.as_bytes()])
            } else {
                let shown = if text.len() > 40 { format!("{}...", &text[..text.floor_char_boundary(40)]) } else { text.to_owned() };
                Err(SplitError::Malformed(format!("body: must be a job object, an array of jobs, or NDJSON; got {shown}")))
            }
        }
    }
}

/// A JSON array's elements as borrowed slices of the body, failing at element `max + 1`.
struct Elements<'a> {
    max: usize,
    /// Set when the array was too long, to tell that failure from a syntax error.
    over: &'a Cell<bool>,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of jobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                self.over.set(true);
                return Err(A::Error::custom(format_args!("more than {} items", self.max)));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str, ndjson: bool, max: usize) -> Result<Vec<String>, SplitError> {
        split(body.as_bytes(), ndjson, max).map(|items| items.iter().map(|i| String::from_utf8_lossy(i).into_owned()).collect())
    }

    #[test]
    fn shapes_and_limits() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let malformed = |s: &str| Err(SplitError::Malformed(s.into()));
        for (body, ndjson, max, want) in [
            (r#" {"id":"a"} "#, false, 1, ok(&[r#"{"id":"a"}"#])),
            (r#"[{"id":"a"}, 0, "x"]"#, false, 3, ok(&[r#"{"id":"a"}"#, "0", r#""x""#])),
            ("[]", false, 1, ok(&[])),
            ("[0,0,0]", false, 2, Err(SplitError::TooMany { max: 2 })),
            // An array over the limit stays over it even with newlines: no NDJSON fallback.
            ("[0,\n0,\n0]", false, 2, Err(SplitError::TooMany { max: 2 })),
            ("{\"id\":\"a\"}\n\n{\"id\":\"b\"}\n", false, 2, ok(&[r#"{"id":"a"}"#, r#"{"id":"b"}"#])),
            ("{\"id\":\"a\"}\nnope\n", true, 5, ok(&[r#"{"id":"a"}"#, "nope"])),
            ("{}\n{}\n{}\n", true, 2, Err(SplitError::TooMany { max: 2 })),
            ("42", false, 1, malformed("body: must be a job object, an array of jobs, or NDJSON; got 42")),
            ("[1,", false, 1, malformed("body: not JSON: EOF while parsing a value at line 1 column 3")),
            ("{} x", false, 1, malformed("body: not JSON: trailing characters at line 1 column 4")),
        ] {
            assert_eq!(texts(body, ndjson, max), want, "{body:?}");
        }
    }

    #[test]
    fn sixteen_mib_of_zeros_stops_at_the_limit() {
        let mut body = b"[".to_vec();
        body.extend(std::iter::repeat_n(b"0,".as_slice(), 8 << 20).flatten());
        body.extend_from_slice(b"0]");
        assert_eq!(split(&body, false, 10_000), Err(SplitError::TooMany { max: 10_000 }));
    }
}
