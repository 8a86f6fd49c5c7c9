//! Structured, hostile inputs for `tests/fuzz.rs`: mostly well-formed, with the values at and
//! past every limit, the types swapped, and the bytes then bent (cut short, a byte changed),
//! so that the checks after parsing are reached, not only the first syntax error.

use proptest::prelude::*;
use proptest::sample::select;
use sendgate::provider::smpp::receipt::ReceiptState;
use serde_json::{json, Map, Value};

/// Cuts the bytes short, changes one, or leaves them alone (most often).
fn bend(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len();
    (0..6u8, any::<prop::sample::Index>(), any::<u8>()).prop_map(move |(how, at, b)| {
        let mut bytes = bytes.clone();
        if len > 0 {
            let i = at.index(len);
            match how {
                0 => bytes.truncate(i),
                1 => bytes[i] = b,
                2 => bytes.insert(i, b),
                _ => {}
            }
        }
        bytes
    })
}

// ---- jobs --------------------------------------------------------------------------------

const FIELDS: &[&str] = &[
    "id",
    "tenant",
    "channel",
    "to",
    "from",
    "text",
    "template",
    "priority",
    "send_at",
    "expires_at",
    "ttl_s",
    "quiet_hours",
    "tz",
    "route",
    "campaign",
    "meta",
    "unknown",
    "",
];

/// Strings at and past the limits of every field that takes one.
fn hostile_string() -> impl Strategy<Value = String> {
    let fixed: Vec<String> = [
        "",
        " ",
        "a",
        "acme",
        "ACME",
        "sms",
        "whatsapp",
        "viber",
        "telegram",
        "Sms",
        "+79161234567",
        "+0123456789",
        "+1234567",
        "+1234567890123456",
        "79161234567",
        "+7 916",
        "marketing",
        "transactional",
        "Marketing",
        "2026-11-21T09:00:00+03:00",
        "2026-11-21T09:00:00Z",
        "2026-11-21t09:00:00z",
        "2016-12-31T23:59:60Z",
        "2026-11-21T09:00:00.999999999-23:59",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-21 09:00:00Z",
        "Europe/Moscow",
        "UTC",
        "utc",
        "Etc/GMT+12",
        "Etc/GMT-14",
        "US/Eastern",
        "Europe/Nowhere",
        "21:00",
        "09:00",
        "00:00",
        "23:59",
        "24:00",
        "1:2",
        "9:00:00",
        "-1:00",
        "é",
        "😀",
        "\u{0}",
        "\u{202e}",
        "\u{feff}",
        "\"",
        "\\",
        "a\u{0}b",
        "%",
        ":",
        "sub:1",
        "id:1",
        "\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prop_oneof![
        6 => select(fixed),
        2 => "[ -~]{0,20}",
        1 => any::<String>(),
        1 => (select(vec!['x', 'é', '😀', '9', '\u{7f}']), select(vec![11usize, 12, 15, 16, 32, 33, 64, 65, 128, 129, 4097])).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => Just("x".repeat(10_001)),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        6 => hostile_string().prop_map(Value::from),
        1 => select(vec![json!(0), json!(-1), json!(1), json!(2_592_000), json!(2_592_001), json!(u64::MAX), json!(i64::MIN), json!(1.5), json!(1e300), json!(-0.0)]),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(select(vec!["name", "language", "params", "start", "end", "k", ""]).prop_map(String::from), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid job: every check passes, so changes to it reach the later ones.
fn valid_job() -> Map<String, Value> {
    let v = json!({
        "id": "crm-7f3a-000123", "tenant": "acme", "channel": "sms", "to": "+79161234567", "from": "ACME",
        "text": "Your order 123 has shipped", "priority": "transactional", "send_at": "2026-11-21T09:00:00+03:00",
        "expires_at": "2026-11-22T09:00:00+03:00", "quiet_hours": {"start": "21:00", "end": "09:00"},
        "tz": "Europe/Moscow", "route": "smsc-a", "campaign": "black-friday", "meta": {"crm_contact": "55012"}
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object literal"),
    }
}

/// RFC 3339 times at the ends of the calendar, with offsets that carry them past it in UTC.
fn time_string() -> impl Strategy<Value = Value> {
    let year = prop_oneof![Just(0u32), Just(1), Just(1970), Just(2026), Just(9998), Just(9999), 0..10_000u32];
    let offset = prop_oneof![
        Just("Z".to_string()),
        Just("z".to_string()),
        (any::<bool>(), 0..24u32, 0..60u32).prop_map(|(plus, h, m)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' }))
    ];
    let clock = (0..24u32, 0..60u32, 0..=60u32);
    let any_day = (year, 1..=12u32, 1..=31u32, clock).prop_map(|(y, mo, d, (h, mi, sec))| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}"));
    let edge_day = select(vec![
        "9999-12-31T23:59:59",
        "9999-12-31T12:00:00",
        "0000-01-01T00:00:00",
        "0000-01-01T12:00:00",
        "2016-12-31T23:59:60",
        "2026-02-29T00:00:00",
        "2024-02-29T00:00:00",
        "1970-01-01T00:00:00",
    ])
    .prop_map(String::from);
    let frac = prop::option::of(0..1_000_000_000u32).prop_map(|f| f.map(|f| format!(".{f:09}")).unwrap_or_default());
    (prop_oneof![edge_day, any_day], frac, offset).prop_map(|(day, frac, off)| Value::from(format!("{day}{frac}{off}")))
}

fn job_value() -> impl Strategy<Value = Value> {
    let change = prop_oneof![
        3 => (select(FIELDS.to_vec()), prop::option::weighted(0.9, hostile_value())),
        2 => (select(vec!["send_at", "expires_at"]), time_string().prop_map(Some)),
    ];
    let changes = proptest::collection::vec(change, 0..5);
    (changes, any::<bool>()).prop_map(|(changes, template)| {
        let mut job = valid_job();
        if template {
            job.remove("text");
            job.insert("template".into(), json!({"name": "order_shipped", "language": "en", "params": ["123"]}));
        }
        for (field, value) in changes {
            match value {
                Some(v) => job.insert(field.to_string(), v),
                None => job.remove(field),
            };
        }
        Value::Object(job)
    })
}

pub fn job() -> impl Strategy<Value = Vec<u8>> {
    job_value().prop_flat_map(|v| bend(serde_json::to_vec(&v).expect("a JSON value serializes")))
}

/// `POST /v1/jobs` bodies: jobs one per line (with blank lines, CRLF, junk lines) or as an
/// array; the first byte is the content-type flag `fuzz::ndjson` reads.
pub fn ndjson() -> impl Strategy<Value = Vec<u8>> {
    let item = prop_oneof![
        6 => job_value().prop_map(|v| v.to_string()),
        1 => Just(String::new()),
        1 => Just("   \t".to_string()),
        1 => hostile_value().prop_map(|v| v.to_string()),
        1 => "[ -~]{0,30}",
    ];
    let body = (proptest::collection::vec(item, 0..6), select(vec!["\n", "\r\n", "\n\n", ",", ",\n"]), 0..3u8).prop_map(|(items, sep, shape)| match shape {
        0 => format!("[{}]", items.join(",")),
        _ => items.join(sep),
    });
    (any::<u8>(), body).prop_flat_map(|(flag, body)| {
        let mut bytes = vec![flag];
        bytes.extend(body.into_bytes());
        bend(bytes)
    })
}

// ---- admin paths -------------------------------------------------------------------------

pub fn admin_path() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        4 => select(vec![
            "opt-outs", "whatsapp", "portfolios", "inbound", "campaigns", "acme", "sms", "+79161234567", "%2B79161234567",
            "%", "%2", "%zz", "%2F", "%2f", "%C3%A9", "%aé", "%éa", "%%", "%+1", "%-1", "% 1", "é", "😀", "%F0%9F%98", "..", "",
            "%00", "%FF", "+", "a%20b",
        ]).prop_map(String::from),
        1 => "[ -~]{0,12}",
        1 => any::<String>(),
    ];
    let pair = (
        select(vec!["cursor", "limit", "page", "", "%6Cimit", "cursor=", "limit=1"]),
        prop_oneof![
            3 => select(vec!["1", "0", "100", "1000", "1001", "-1", "+1", "%2B7916", "%", "%a", "%aé", "é", "99999999999999999999999", ""]).prop_map(String::from),
            1 => "[ -~]{0,12}",
        ],
    )
        .prop_map(|(k, v)| format!("{k}={v}"));
    let prefix = select(vec!["/v1/admin/", "/v1/jobs/", "/v1/admin", "/", "", "http://h/v1/admin/"]);
    (prefix, proptest::collection::vec(segment, 0..6), prop::option::of(proptest::collection::vec(pair, 0..4))).prop_map(|(prefix, segments, query)| {
        let mut s = format!("{prefix}{}", segments.join("/"));
        if let Some(q) = query {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s.into_bytes()
    })
}

// ---- receipt text ------------------------------------------------------------------------

type Parsed = (String, ReceiptState, Option<String>);

const STATS: &[(&str, ReceiptState)] = &[
    ("DELIVRD", ReceiptState::Delivered),
    ("delivered", ReceiptState::Delivered),
    ("UNDELIV", ReceiptState::Undelivered),
    ("DELETED", ReceiptState::Undelivered),
    ("EXPIRED", ReceiptState::Expired),
    ("REJECTD", ReceiptState::Rejected),
    ("ACCEPTD", ReceiptState::Accepted),
    ("ENROUTE", ReceiptState::Accepted),
    ("UNKNOWN", ReceiptState::Unknown),
    ("WHATEVER", ReceiptState::Unknown),
];

/// A value as SMSCs write ids and error codes: no spaces, no colons.
fn token() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-fA-F]{1,20}", "[A-Za-z0-9_.-]{1,30}", "[!-9;-~]{1,10}", select(vec!["é".to_string(), "0".to_string(), "text".to_string()])]
}

fn case(s: &str, how: u8) -> String {
    match how % 3 {
        0 => s.to_ascii_lowercase(),
        1 => s.to_ascii_uppercase(),
        _ => s.to_string(),
    }
}

/// Receipt text from known fields (`Some(fields)`: a parser must read exactly these), or
/// with a field broken (`None`); written as UTF-8, and the broken ones also as UCS-2.
pub fn receipt_text() -> impl Strategy<Value = (Option<Parsed>, Vec<u8>)> {
    let colon = select(vec![":", " :", ": ", " : ", ":  "]);
    let space = select(vec![" ", "  ", "\t", "\r\n", " \u{3000}"]);
    let extra = select(vec!["sub:001", "dlvr:001", "submit date:2501020304", "done date:2501020305", "did:9", "receipted_id:8", "x"]);
    (
        token(),
        select(STATS.to_vec()),
        prop::option::of(token()),
        proptest::collection::vec(extra, 0..4),
        (any::<u8>(), colon, space),
        prop::option::of("[ -~]{0,20}"),
        0..4u8,
    )
        .prop_map(|(id, (stat, state), err, extras, (how, colon, space), tail, broken)| {
            let mut fields = vec![format!("{}{colon}{id}", case("id", how)), format!("{}{colon}{}", case("stat", how / 3), case(stat, how / 9))];
            if let Some(e) = &err {
                fields.push(format!("{}{colon}{e}", case("err", how / 27)));
            }
            fields.extend(extras.iter().map(|e| e.to_string()));
            // Order does not matter: rotate by a value already drawn.
            let n = fields.len();
            fields.rotate_left(how as usize % n);
            let mut text = fields.join(space);
            if let Some(t) = &tail {
                text.push_str(&format!("{space}text:{t}"));
            }
            match broken {
                // Fine as written: the parser must read these fields.
                0 | 1 => (Some((id, state, err)), text.into_bytes()),
                2 => (None, text.replacen(':', "", 1).into_bytes()),
                _ => (None, text.encode_utf16().flat_map(u16::to_be_bytes).collect()),
            }
        })
}

// ---- deliver_sm --------------------------------------------------------------------------

fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

fn tlv(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend((value.len() as u16).to_be_bytes());
    v.extend(value);
    v
}

/// The TLVs a receipt carries, plus one we do not read and one whose length lies.
fn tlvs() -> impl Strategy<Value = Vec<u8>> {
    let one = prop_oneof![
        3 => prop_oneof!["[0-9A-Za-z]{0,70}", "[ \t0-9a-f]{0,4}"].prop_map(|id| tlv(0x001E, &cstr(id.as_bytes()))),
        2 => any::<u8>().prop_map(|s| tlv(0x0427, &[s])),
        2 => (any::<u8>(), any::<u16>()).prop_map(|(t, c)| { let mut v = vec![t]; v.extend(c.to_be_bytes()); tlv(0x0423, &v) }),
        2 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|p| tlv(0x0424, &p)),
        1 => any::<u16>().prop_map(|r| tlv(0x0204, &r.to_be_bytes())),
        1 => (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(t, v)| tlv(t, &v)),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(t, n)| { let mut v = t.to_be_bytes().to_vec(); v.extend(n.to_be_bytes()); v }),
    ];
    proptest::collection::vec(one, 0..4).prop_map(|v| v.concat())
}

fn short_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => receipt_text().prop_map(|(_, b)| b),
        1 => proptest::collection::vec(any::<u8>(), 0..255),
        // A UDH (concatenated MO part) then text, its length byte true or not.
        1 => (0u8..12, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(n, t)| { let mut v = vec![n, 0, 3, 7, 2, 1]; v.extend(t); v }),
    ]
}

/// One `deliver_sm` as an SMSC writes it, its fields chosen to reach our receipt and MO code
/// (esm_class, data_coding, the TLVs); then maybe a second PDU behind it, then bent.
pub fn deliver_sm() -> impl Strategy<Value = Vec<u8>> {
    let esm = prop_oneof![3 => select(vec![0x00u8, 0x04, 0x20, 0x40, 0x44, 0x08]), 1 => any::<u8>()];
    let dc = prop_oneof![3 => select(vec![0x00u8, 0x01, 0x03, 0x08, 0x18, 0xF0, 0xF4, 0xE0]), 1 => any::<u8>()];
    let addr = prop_oneof!["[0-9]{0,21}", "[A-Za-z ]{0,11}", "[ -~]{0,30}"];
    (esm, dc, addr.clone(), addr, short_message(), tlvs(), any::<u32>(), 0..8u8).prop_flat_map(|(esm, dc, src, dst, sm, tlvs, seq, lie)| {
        let mut body = cstr(b""); // service_type
        body.extend([1, 1]);
        body.extend(cstr(src.as_bytes()));
        body.extend([1, 1]);
        body.extend(cstr(dst.as_bytes()));
        body.extend([esm, 0, 0]);
        body.extend(cstr(b"")); // schedule_delivery_time
        body.extend(cstr(b"")); // validity_period
        body.extend([0, 0, dc, 0]);
        // sm_length: true, or one off either way.
        let sm_len = match lie {
            0 => sm.len().wrapping_add(1),
            1 => sm.len().wrapping_sub(1),
            _ => sm.len(),
        };
        body.push(sm_len.min(255) as u8);
        body.extend(sm.iter().take(255));
        body.extend(tlvs);
        let mut pdu = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        pdu.extend(0x0000_0005u32.to_be_bytes());
        pdu.extend(0u32.to_be_bytes());
        pdu.extend(seq.to_be_bytes());
        pdu.extend(body);
        if lie == 2 {
            // Two in one read, the second an enquire_link.
            pdu.extend([0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1]);
        }
        bend(pdu)
    })
}

// ---- config ------------------------------------------------------------------------------

const CONFIGS: [&str; 2] = [include_str!("../../config/dev.toml"), include_str!("../../config/sendgate.example.toml")];

fn hostile_toml() -> impl Strategy<Value = toml::Value> {
    use toml::Value as T;
    prop_oneof![
        select(vec![0i64, -1, 1, 15, 16, 1023, 1024, 65_536, i64::MAX, i64::MIN]).prop_map(T::Integer),
        select(vec![0.0f64, -0.0, -1.0, 0.5, 1e9, 1e308, f64::INFINITY, f64::NAN]).prop_map(T::Float),
        select(vec![
            "",
            "0s",
            "0ms",
            "1ns",
            "1s",
            "30s",
            "18446744073709551615s",
            "99999999999999999999d",
            "1 year",
            "-1s",
            "x",
            "00:00",
            "21:00",
            "24:00",
            "Europe/Nowhere",
            "UTC",
            "unlimited",
            "smpp",
            "http",
            "127.0.0.1:0",
            "embedded",
            "localhost",
            "::1",
            "[::1]:2775",
            "0123456789abcdef",
            "é",
            "😀",
            "\u{0}",
            "a.b",
            "..",
            "/",
        ])
        .prop_map(|s| T::String(s.to_string())),
        any::<bool>().prop_map(T::Boolean),
        Just(T::Array(vec![])),
        Just(T::Table(toml::Table::new())),
        "[ -~]{0,40}".prop_map(T::String),
    ]
}

/// Every path to a value in `table`, for picking one to change.
fn paths(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in table {
        prefix.push(k.clone());
        out.push(prefix.clone());
        if let toml::Value::Table(t) = v {
            paths(t, prefix, out);
        }
        prefix.pop();
    }
}

fn at<'a>(table: &'a mut toml::Table, path: &[String]) -> Option<&'a mut toml::Table> {
    let mut t = table;
    for k in path {
        t = t.get_mut(k)?.as_table_mut()?;
    }
    Some(t)
}

/// One of our configs with a few values replaced, removed or added where they are not known.
pub fn config() -> impl Strategy<Value = Vec<u8>> {
    let keys = select(vec!["kind", "tps", "window", "binds", "address", "channels", "token", "tier", "numbers", "x", "start", "end"]);
    let edit = (any::<prop::sample::Index>(), 0..3u8, hostile_toml(), keys);
    (select(CONFIGS.to_vec()), proptest::collection::vec(edit, 1..5)).prop_flat_map(|(text, edits)| {
        let mut table: toml::Table = text.parse().expect("our configs are TOML");
        for (which, how, value, key) in edits {
            let mut all = Vec::new();
            paths(&table, &mut Vec::new(), &mut all);
            let Some(path) = all.get(which.index(all.len().max(1))).cloned() else { continue };
            let (last, parent) = path.split_last().expect("a path has a key");
            let Some(t) = at(&mut table, parent) else { continue };
            match how {
                0 => t.insert(last.clone(), value),
                1 => t.remove(last),
                _ => match t.get_mut(last) {
                    Some(toml::Value::Table(inner)) => inner.insert(key.to_string(), value),
                    _ => t.insert(key.to_string(), value),
                },
            };
        }
        bend(toml::to_string(&table).unwrap_or_default().into_bytes())
    })
}
