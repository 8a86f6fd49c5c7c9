//! Table-driven tests for job parsing: the contract example, and one row per kind of bad input.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()
}

const EXAMPLE: &str = r#"{
  "id": "crm-7f3a-000123", "tenant": "acme", "channel": "sms", "to": "+79161234567",
  "from": "ACME", "text": "Your order 123 has shipped", "priority": "marketing",
  "send_at": "2026-11-21T09:00:00+03:00", "expires_at": "2026-11-22T09:00:00+03:00",
  "quiet_hours": { "start": "21:00", "end": "09:00" }, "tz": "Europe/Moscow",
  "route": "smsc-a", "campaign": "black-friday", "meta": { "crm_contact": "55012" }
}"#;

#[test]
fn contract_example_parses_and_round_trips() {
    let job = parse(EXAMPLE.as_bytes(), now()).unwrap();
    assert_eq!(job.id, "crm-7f3a-000123");
    assert_eq!(job.channel, Channel::Sms);
    assert_eq!(job.send_at, Some(Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()));
    assert_eq!(job.tz, Some(chrono_tz::Europe::Moscow));
    assert_eq!(job.meta.get("crm_contact").map(String::as_str), Some("55012"));
    let again = from_value(job.to_json(), now()).unwrap();
    assert_eq!(again, job);
}

/// A past `finish_by` still parses: a job parked before the deadline is read back after it.
#[test]
fn finish_by_round_trips_even_when_past() {
    let input = r#"{"id":"a","tenant":"t","channel":"sms","to":"+4915112345678","text":"x","campaign":"bf","finish_by":"2026-11-20T20:00:00+03:00"}"#;
    let job = parse(input.as_bytes(), now()).unwrap();
    assert_eq!(job.finish_by, Some(Utc.with_ymd_and_hms(2026, 11, 20, 17, 0, 0).unwrap()));
    assert_eq!(from_value(job.to_json(), now()).unwrap(), job);
}

#[test]
fn ttl_becomes_absolute_expiry() {
    let job = parse(br#"{"id":"a","tenant":"t","channel":"sms","to":"+4915112345678","text":"x","ttl_s":60}"#, now()).unwrap();
    assert_eq!(job.expires_at, Some(now() + Duration::seconds(60)));
}

/// (input, expected field, a fragment of the message). DLQ cases use field "dlq".
const BAD: &[(&str, &str, &str)] = &[
    (r#"[1,2]"#, "dlq", "not a JSON object"),
    (r#"{"tenant":"acme"}"#, "dlq", "id: missing"),
    (r#"{"id":42}"#, "dlq", "id: must be a string"),
    (r#"{"id":""}"#, "dlq", "1-128"),
    (r#"not json"#, "dlq", "not JSON"),
    (r#"{"id":"j","channel":"sms","to":"+79161234567","text":"x"}"#, "tenant", "required"),
    (r#"{"id":"j","tenant":"Acme!","channel":"sms","to":"+79161234567","text":"x"}"#, "tenant", "[a-z0-9_-]"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+7 916","text":"x"}"#, "to", "not an E.164 number: \"+7 916\""),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":79161234567,"text":"x"}"#, "to", "must be a string, got a number"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","template":{"name":"n","language":"en"}}"#, "text", "not both"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567"}"#, "text", "one of text or template"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","send_at":"tomorrow"}"#, "send_at", "RFC 3339"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","expires_at":"2026-13-01T00:00:00Z"}"#, "expires_at", "RFC 3339"),
    // Fuzzing: in UTC these are years 10000 and -1, which to_json cannot write back.
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","send_at":"9999-12-31T23:59:59-23:59"}"#, "send_at", "out of range"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","expires_at":"0000-01-01T00:00:00+00:01"}"#, "expires_at", "out of range"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","campaign":"c","finish_by":"Friday"}"#, "finish_by", "RFC 3339"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","finish_by":"2026-11-27T20:00:00Z"}"#, "finish_by", "needs a campaign"),
    (r#"{"id":"j","tenant":"a","channel":"fax machine","to":"+79161234567","text":"x"}"#, "channel", "not a channel name"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","priority":"urgent"}"#, "priority", "marketing"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","meta":{"k":1}}"#, "meta", "values must be strings"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","tz":"Mars/Olympus"}"#, "tz", "IANA"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","quiet_hours":{"start":"25:00","end":"08:00"}}"#, "quiet_hours", "not HH:MM"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","ttl_s":-5}"#, "ttl_s", "whole seconds"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":""}"#, "text", "empty"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":["x"]}"#, "text", "must be a string, got an array"),
    (r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","from":"WAY TOO LONG SENDER","text":"x"}"#, "from", "not a valid sender"),
    (r#"{"id":"j","tenant":"a","channel":"whatsapp","to":"+79161234567","template":{"name":"n"}}"#, "template", "language: required"),
    (
        r#"{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","send_at":"2026-11-22T00:00:00Z","expires_at":"2026-11-21T00:00:00Z"}"#,
        "expires_at",
        "after send_at",
    ),
];

#[test]
fn every_bad_input_names_its_field() {
    for (input, field, fragment) in BAD {
        let err = parse(input.as_bytes(), now()).expect_err(input);
        let msg = err.to_string();
        match (&err, *field) {
            (JobError::NotAJob(_), "dlq") => {}
            (JobError::Invalid { field: f, id, .. }, expected) => {
                assert_eq!(*f, expected, "{input} -> {msg}");
                assert_eq!(id, "j");
                assert!(msg.starts_with(&format!("{expected}: ")), "{msg}");
            }
            _ => panic!("{input}: wrong error class: {msg}"),
        }
        assert!(msg.contains(fragment), "{input}: {msg:?} lacks {fragment:?}");
    }
}

/// Fuzzing found errors quoting a bad value whole, a DEL character as 6 bytes: a 4 KiB tenant
/// made a 24 KiB error. The error goes into the `rejected` report, so it quotes only the start.
#[test]
fn errors_quote_only_the_start_of_a_long_value() {
    let long = "\u{7f}".repeat(4096);
    let valid = r#""id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x""#;
    let cases = [
        ("tenant", format!(r#"{{"id":"j","tenant":"{long}","channel":"sms","to":"+79161234567","text":"x"}}"#)),
        ("channel", format!(r#"{{"id":"j","tenant":"a","channel":"{long}","to":"+79161234567","text":"x"}}"#)),
        ("to", format!(r#"{{"id":"j","tenant":"a","channel":"sms","to":"{long}","text":"x"}}"#)),
        ("from", format!(r#"{{{valid},"from":"{long}"}}"#)),
        ("priority", format!(r#"{{{valid},"priority":"{long}"}}"#)),
        ("send_at", format!(r#"{{{valid},"send_at":"{long}"}}"#)),
        ("tz", format!(r#"{{{valid},"tz":"{long}"}}"#)),
        ("route", format!(r#"{{{valid},"route":"{long}"}}"#)),
        ("quiet_hours", format!(r#"{{{valid},"quiet_hours":{{"start":"{long}","end":"09:00"}}}}"#)),
        ("ttl_s", format!(r#"{{{valid},"ttl_s":["{long}"]}}"#)),
        ("meta", format!(r#"{{{valid},"meta":{{"{long}":1}}}}"#)),
    ];
    for (field, input) in cases {
        let err = parse(input.as_bytes(), now()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{field}: ")), "{msg}");
        assert!(msg.len() < 1024, "{field}: {} bytes", msg.len());
        assert!(msg.contains("bytes)"), "{field}: says how long it was: {msg}");
    }
}

#[test]
fn oversized_meta_is_rejected_but_salvaged_fields_stay() {
    let big = "v".repeat(META_MAX_BYTES);
    let input = format!(r#"{{"id":"j","tenant":"a","channel":"sms","to":"+79161234567","text":"x","meta":{{"k":"{big}"}}}}"#);
    let err = parse(input.as_bytes(), now()).unwrap_err();
    let JobError::Invalid { field, fields, .. } = err else { panic!() };
    assert_eq!(field, "meta");
    assert_eq!(fields.to, "+79161234567");
}

#[test]
fn e164_edges() {
    for (s, ok) in
        [("+12025550123", true), ("+1234567", false), ("+1234567890123456", false), ("+0123456789", false), ("12025550123", false), ("+1202555012a", false)]
    {
        assert_eq!(is_e164(s), ok, "{s}");
    }
}

#[test]
fn recipients_outside_a_job_are_checked_like_a_jobs() {
    assert_eq!(check_recipient("acme", "sms", Some("+79161234567")), Ok(()));
    assert_eq!(check_recipient("acme", "telegram", Some("chat-55012")), Ok(()));
    assert_eq!(check_recipient("acme", "sms", None), Ok(()));
    for (tenant, channel, to, field) in [("ACME", "sms", "+79161234567", "tenant"), ("acme", "s m s", "+7916", "channel"), ("acme", "sms", "79161234567", "to")]
    {
        assert_eq!(check_recipient(tenant, channel, Some(to)).unwrap_err().0, field, "{tenant}/{channel}/{to}");
    }
}

#[test]
fn masked_numbers_keep_only_their_ends() {
    assert_eq!(masked("+79161234567"), "+7916***4567");
    assert_eq!(masked("+4915112345678"), "+4915***5678");
    assert_eq!(masked("12345"), "***");
}

#[test]
fn a_rejected_report_of_a_huge_job_fits_a_broker_record() {
    use crate::report::{self, EventKind, Report};
    // Every echoed field far too long, control characters so each byte escapes to six in JSON.
    let huge = "\u{1}".repeat(1 << 20);
    let meta: Map<String, Value> = (0..100).map(|i| (format!("k{i:03}"), Value::from("\u{1}".repeat(100)))).collect();
    let input = serde_json::json!({ "id": "j", "tenant": huge, "channel": huge, "to": huge, "text": "x", "meta": meta });
    let err = from_value(input, now()).unwrap_err();
    let JobError::Invalid { id, fields, .. } = &err else { panic!("{err}") };
    for f in [&fields.tenant, &fields.channel, &fields.to] {
        assert_eq!(f.len(), report::ECHO_MAX_BYTES + "…".len());
    }
    // Whole entries in key order, up to the bound: 39 of 104 bytes each fit in 4096.
    assert_eq!(fields.meta.len(), 39);
    assert!(fields.meta.contains_key("k000") && !fields.meta.contains_key("k099"));
    let r = Report::from_parts(id, &fields.tenant, &fields.channel, &fields.to, &fields.meta, EventKind::Rejected, now()).with_error(None, err.to_string());
    let bytes = serde_json::to_vec(&r).unwrap().len();
    assert!(bytes < 64 * 1024, "{bytes} bytes");
}

#[test]
fn an_invalid_jobs_message_quotes_at_most_a_kilobyte() {
    let to = "9".repeat(100_000);
    let input = format!(r#"{{"id":"j","tenant":"a","channel":"sms","to":"{to}","text":"x"}}"#);
    let err = parse(input.as_bytes(), now()).unwrap_err();
    let JobError::Invalid { field, message, .. } = &err else { panic!() };
    assert_eq!(*field, "to");
    assert!(message.starts_with("not an E.164 number: \"999"), "{message}");
    assert!(message.len() <= crate::report::ERROR_MESSAGE_MAX_BYTES + 3, "{}", message.len());
}
