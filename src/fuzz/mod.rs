//! Fuzz targets: one function per place where bytes from outside reach a parser, each
//! panicking when a property fails.
//!
//! Every target takes raw bytes, feeds them in the way production does, and checks that
//! - nothing panics (nor loops: libFuzzer's `-timeout` catches that);
//! - the memory it holds at once stays under a fixed multiple of the input ([`alloc`]);
//! - what comes out is bounded, and round-trips where the format allows it (a job that parses,
//!   written with `to_json` and parsed again, is the same job).
//!
//! Two runners call the same functions: `cargo fuzz` (coverage-guided, `fuzz/`,
//! `scripts/fuzz`) and `tests/fuzz.rs` (proptest over raw bytes and over structured, hostile
//! inputs, and a replay of the kept corpus `fuzz/corpus/<target>/`), which `scripts/test` runs.
//! Not used by the daemon; public only so that those two can reach it.

pub mod alloc;
mod smpp;

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};

use crate::api::items::{self, SplitError};
use crate::api::{self as http, admin};
use crate::job::{self, Job, JobError};
use crate::provider::smpp::receipt::{parse_receipt_text, ReceiptState};
use crate::sms::decode::{decode_latin1, decode_ucs2};

pub use smpp::deliver_sm;

/// A fuzz target: its name and the function fed each input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name: the name is its `fuzz/fuzz_targets/<name>.rs` and its corpus folder.
pub const TARGETS: &[Target] =
    &[("job", job), ("ndjson", ndjson), ("admin_path", admin_path), ("receipt_text", receipt_text), ("deliver_sm", deliver_sm), ("config", config)];

/// Most bytes any target may hold at once per input byte, over [`ALLOC_SLACK`]. JSON is the
/// widest: `[{"":0},...]` turns 7 bytes into a map node of several hundred; anything that
/// grows with the input faster than linearly (or reserves what a length field claims) breaks
/// it at once.
pub const ALLOC_PER_INPUT_BYTE: usize = 192;
/// Fixed allowance: tables built on first use, error strings, small inputs.
pub const ALLOC_SLACK: usize = 256 * 1024;

/// Longest error a job may get, whatever its size: 64 characters of a value quoted at up to
/// 10 bytes each (`\u{10ffff}`), and the words around them.
const JOB_ERROR_MAX_BYTES: usize = 1024;

/// `job` parses as of this instant, so runs are reproducible (`ttl_s` is added to it).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).single().expect("a valid instant")
}

/// Checks the memory bound of one call and returns its result.
fn bounded<T>(target: &str, input_len: usize, f: impl FnOnce() -> T) -> T {
    let (out, peak) = alloc::peak_during(f);
    if let Some(peak) = peak {
        note_ratio(target, input_len, peak);
        assert!(peak <= ALLOC_PER_INPUT_BYTE * input_len + ALLOC_SLACK, "{target}: held {peak} bytes at once for {input_len} bytes of input");
    }
    out
}

/// The largest bytes-held-per-input-byte seen, times 100, for inputs of 1 KiB or more (below
/// that the fixed allowance dominates). Printed when it grows if `SENDGATE_FUZZ_REPORT` is set.
static WORST_RATIO: AtomicU64 = AtomicU64::new(0);

fn note_ratio(target: &str, input_len: usize, peak: usize) {
    if input_len < 1024 {
        return;
    }
    let ratio = (peak as u64 * 100) / input_len as u64;
    if WORST_RATIO.fetch_max(ratio, Ordering::Relaxed) < ratio && std::env::var_os("SENDGATE_FUZZ_REPORT").is_some() {
        eprintln!("fuzz {target}: {peak} bytes held for {input_len} input bytes ({:.1}x)", ratio as f64 / 100.0);
    }
}

/// Job bytes, as the Kafka source and `POST /v1/jobs` hand them to [`job::parse`].
pub fn job(data: &[u8]) {
    let parsed = bounded("job", data.len(), || job::parse(data, now()));
    match parsed {
        Ok(job) => check_job(&job, data.len()),
        Err(e) => {
            // Errors go into `rejected` reports: they quote what was wrong, but only its start.
            let msg = e.to_string();
            assert!(msg.len() <= JOB_ERROR_MAX_BYTES, "job: {} byte error for {} bytes: {msg}", msg.len(), data.len());
            if let JobError::Invalid { id, .. } = &e {
                assert!(data.len() >= id.len(), "job: the id of a rejected job comes from its bytes");
            }
        }
    }
}

/// A parsed job is within the contract's limits and survives `to_json` and parsing again
/// (the scheduled set stores jobs that way).
fn check_job(job: &Job, input_len: usize) {
    assert!((1..=128).contains(&job.id.len()), "job: id of {} bytes", job.id.len());
    if let job::Content::Text(t) = &job.content {
        assert!(t.chars().count() <= job::TEXT_MAX_CHARS, "job: text over the limit");
    }
    let meta: usize = job.meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(meta <= job::META_MAX_BYTES, "job: meta of {meta} bytes");
    let bytes = serde_json::to_vec(&job.to_json()).expect("a JSON value serializes");
    assert!(bytes.len() <= 2 * input_len + 512, "job: {} bytes written for {input_len} read", bytes.len());
    match job::parse(&bytes, now()) {
        Ok(again) => assert_eq!(&again, job, "job: to_json and parse again changed the job"),
        Err(e) => panic!("job: to_json wrote a job that does not parse: {e}: {}", String::from_utf8_lossy(&bytes)),
    }
}

/// A `POST /v1/jobs` body, split as the handler splits it and each item parsed as it parses
/// them. The first byte says whether the content type said NDJSON (bit 0) and sets the item
/// limit (1-64, the rest of it), so that bodies over the limit come up often.
pub fn ndjson(data: &[u8]) {
    let Some((&flag, body)) = data.split_first() else { return };
    let ndjson = flag & 1 == 1;
    let max = 1 + usize::from(flag >> 1) % 64;
    let split = bounded("ndjson", body.len(), || {
        let split = items::split(body, ndjson, max);
        for item in split.iter().flatten() {
            let _ = crate::api::jobs::parse_item(item.trim_ascii(), now());
        }
        split
    });
    let items = match split {
        Ok(items) => items,
        Err(SplitError::TooMany { max: m }) => {
            assert_eq!(m, max, "ndjson: TooMany names another limit");
            // An array is refused at element `max + 1`, before the rest is read (so a broken
            // array over the limit is refused as too long); lines are counted. Either way
            // there really were more than `max`.
            let array = !ndjson && body.trim_ascii_start().starts_with(b"[");
            if !array {
                match items::split(body, ndjson, usize::MAX) {
                    Ok(all) => assert!(all.len() > max, "ndjson: {} items refused as more than {max}", all.len()),
                    Err(e) => panic!("ndjson: {e:?} without a limit"),
                }
            }
            return;
        }
        Err(SplitError::Malformed(msg)) => {
            assert!(msg.len() <= 512, "ndjson: a {} byte error", msg.len());
            return;
        }
    };
    assert!(items.len() <= max, "ndjson: {} items past the limit of {max}", items.len());
    let range = body.as_ptr_range();
    for item in &items {
        // Items are slices of the body, never copies, and never blank.
        assert!(range.contains(&item.as_ptr()) && item.len() <= body.len(), "ndjson: an item that is not part of the body");
        assert!(!item.trim_ascii().is_empty(), "ndjson: a blank item");
    }
    // The same items written one per line, or as an array, split back the same.
    if items.iter().all(|i| !i.contains(&b'\n')) {
        let lines = items.join(&b'\n');
        assert_eq!(items::split(&lines, true, max), Ok(items.clone()), "ndjson: items written one per line split differently");
    }
    // (Valid as the splitter reads JSON: `RawValue`, which unlike `IgnoredAny` wants UTF-8.)
    if items.iter().all(|i| serde_json::from_slice::<&serde_json::value::RawValue>(i).is_ok()) {
        let array = [b"[".as_slice(), &items.join(&b','), b"]"].concat();
        let trimmed: Vec<&[u8]> = items.iter().map(|i| i.trim_ascii()).collect();
        assert_eq!(items::split(&array, false, max), Ok(trimmed), "ndjson: items written as an array split differently");
    }
}

/// A request target (`/v1/admin/opt-outs/acme/sms/%2B79...?cursor=...`), read as hyper reads
/// it, then decoded by the admin API and by `GET /v1/jobs/{id}`.
pub fn admin_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    bounded("admin_path", data.len(), || {
        check_percent_decode(&text);
        let Ok(uri) = text.parse::<hyper::Uri>() else { return };
        let path = uri.path();
        for segment in admin::path_segments(path) {
            assert!(segment.len() <= path.len(), "admin_path: a segment longer than its path");
        }
        if let Some(id) = path.strip_prefix("/v1/jobs/") {
            check_percent_decode(id);
        }
        if let Ok((cursor, limit)) = admin::page_query(uri.query().unwrap_or("")) {
            assert!((1..=1000).contains(&limit), "admin_path: limit {limit} let through");
            assert!(cursor.is_none_or(|c| !c.is_empty() && c.len() <= text.len()), "admin_path: cursor");
        }
    });
}

/// Decoding never grows a string, and undoes encoding exactly.
fn check_percent_decode(s: &str) {
    let decoded = http::percent_decode(s);
    assert!(decoded.len() <= s.len(), "percent_decode: {s:?} grew to {decoded:?}");
    if !s.contains('%') {
        assert_eq!(decoded, s, "percent_decode: changed a string without %");
    }
    let encoded: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(http::percent_decode(&encoded), s, "percent_decode: did not undo encoding");
}

/// Receipt text (`id:… stat:… err:…`), read as a `deliver_sm`'s short message is: byte for
/// byte, as UCS-2, and (for the text parser alone) as UTF-8.
pub fn receipt_text(data: &[u8]) {
    bounded("receipt_text", data.len(), || {
        for text in [decode_latin1(data), decode_ucs2(data), String::from_utf8_lossy(data).into_owned()] {
            let Some((id, state, err)) = parse_receipt_text(&text) else { continue };
            for value in std::iter::once(&id).chain(&err) {
                assert!(!value.is_empty() && text.contains(value.as_str()), "receipt_text: {value:?} is not from {text:?}");
                assert!(!value.contains(':') && !value.contains(char::is_whitespace), "receipt_text: {value:?}");
            }
            // What was read, written in the canonical form, reads the same.
            let mut canonical = format!("id:{id} stat:{}", stat_word(&state));
            if let Some(e) = &err {
                canonical.push_str(&format!(" err:{e}"));
            }
            let again = parse_receipt_text(&canonical);
            assert_eq!(again, Some((id, state, err)), "receipt_text: {canonical:?} read differently");
        }
    });
}

fn stat_word(s: &ReceiptState) -> &'static str {
    match s {
        ReceiptState::Delivered => "DELIVRD",
        ReceiptState::Undelivered => "UNDELIV",
        ReceiptState::Expired => "EXPIRED",
        ReceiptState::Rejected => "REJECTD",
        ReceiptState::Unknown => "UNKNOWN",
        ReceiptState::Accepted => "ACCEPTD",
    }
}

/// A config file's text, through TOML parsing and every validation.
pub fn config(data: &[u8]) {
    // `load_file` refuses a file that is not UTF-8 before parsing; anything else is parsed.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = bounded("config", data.len(), || crate::config::parse(text));
    if let Err(errors) = result {
        assert!(!errors.0.is_empty(), "config: refused without a reason");
        let total: usize = errors.0.iter().map(String::len).sum();
        // An unknown section's error lists the known ones: ~200 bytes for 4 (`a=1\n`).
        assert!(total <= 64 * data.len() + 4096, "config: {total} bytes of errors for {} of text", data.len());
    }
}
