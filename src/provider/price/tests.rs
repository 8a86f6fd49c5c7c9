use chrono::TimeZone;

use super::*;

const SMSC: &str = "kind = \"smpp\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n";

fn prices(pricing: &str) -> Result<Prices, Vec<String>> {
    crate::config::parse(&format!("[providers.a]\n{SMSC}channels = [\"sms\", \"whatsapp\"]\n[providers.a.pricing]\n{pricing}\n"))
        .map(|c| c.prices)
        .map_err(|e| e.0)
}

fn job(channel: &str, to: &str, content: &str) -> Job {
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    crate::job::parse(format!(r#"{{"id":"j","tenant":"acme","channel":"{channel}","to":"{to}",{content}}}"#).as_bytes(), now).unwrap()
}

const OVERLAPPING: &str = r#"currency = "EUR"
refund_on = ["undelivered"]
rows = [
  { channel = "sms", prefix = "7", price = "0.05" },
  { channel = "sms", prefix = "79", price = "0.041" },
  { channel = "sms", prefix = "7916", price = 0.0333 },
  { channel = "sms", prefix = "", price = "0.1" },
]"#;

#[test]
fn the_longest_prefix_wins_and_sms_costs_its_price_per_segment() {
    let p = prices(OVERLAPPING).unwrap();
    let text = |t: &str| format!(r#""text":"{t}""#);
    // (to, segments, cost in micro-units by hand)
    let cases = [
        ("+79161234567", 1, 33_300),    // 7916
        ("+79161234567", 3, 99_900),    // 7916 × 3
        ("+79261234567", 2, 82_000),    // 79 × 2
        ("+74951234567", 1, 50_000),    // 7
        ("+71111111111", 4, 200_000),   // 7 × 4
        ("+4915100000001", 1, 100_000), // "" (every number)
        ("+79169999999", 2, 66_600),    // 7916 × 2
    ];
    let mut sum = 0;
    for (to, segments, want) in cases {
        let c = p.charge("a", &job("sms", to, &text("hi")), segments).unwrap();
        assert_eq!((c.cost, c.currency.as_str(), &c.refund_on[..]), (Micros(want), "EUR", &[EventKind::Undelivered][..]), "{to} × {segments}");
        sum += c.cost.0;
    }
    // 0.0333 + 0.0999 + 0.082 + 0.05 + 0.2 + 0.1 + 0.0666: added by hand, 0.6318.
    assert_eq!(Micros(sum).to_string(), "0.6318");
    // A provider without a table charges nothing.
    assert_eq!(p.charge("b", &job("sms", "+79161234567", &text("hi")), 1), None);
}

#[test]
fn whatsapp_is_priced_per_message_by_category() {
    let p = prices(
        r#"currency = "USD"
default_category = "utility"
template_categories = { otp = "authentication", promo = "marketing" }
rows = [
  { channel = "whatsapp", prefix = "49", category = "marketing", price = "0.1365" },
  { channel = "whatsapp", prefix = "49", category = "utility", price = "0.0456" },
  { channel = "whatsapp", prefix = "49", category = "authentication", price = "0.0768" },
  { channel = "whatsapp", prefix = "", category = "service", price = "0" },
]"#,
    )
    .unwrap();
    let tpl = |name: &str| format!(r#""template":{{"name":"{name}","language":"en"}}"#);
    for (content, segments, want) in [
        (tpl("otp"), 1, "0.0768"),
        (tpl("promo"), 5, "0.1365"),
        // Not listed: the default category.
        (tpl("order_shipped"), 1, "0.0456"),
        // Free-form text is a service message.
        (r#""text":"hello""#.to_owned(), 1, "0"),
    ] {
        let c = p.charge("a", &job("whatsapp", "+4915100000001", &content), segments).unwrap();
        assert_eq!(c.cost.to_string(), want, "{content}");
    }
    // No row for this number's prefix in that category: unpriced.
    assert_eq!(p.charge("a", &job("whatsapp", "+4415100000001", &tpl("otp")), 1), None);
}

#[test]
fn a_price_file_adds_rows_and_its_mistakes_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.csv");
    std::fs::write(&file, "channel,prefix,price,category\n# Russia\nsms,7,0.05\n\nsms,79,0.041,\nwhatsapp,7,0.08,marketing\n").unwrap();
    let p = prices(&format!("currency = \"EUR\"\nfile = {:?}\nrows = [{{ channel = \"sms\", prefix = \"7916\", price = \"0.03\" }}]", file)).unwrap();
    let text = r#""text":"hi""#;
    for (to, want) in [("+79161234567", "0.03"), ("+79261234567", "0.041"), ("+74951234567", "0.05")] {
        assert_eq!(p.charge("a", &job("sms", to, text), 1).unwrap().cost.to_string(), want, "{to}");
    }

    std::fs::write(&file, "sms,7,0.05\nsms,7,abc\nsms,7,0.06\nsms,x7,0.01\nwhatsapp,7,0.01,cheap\nsms,7\n").unwrap();
    let errs = prices(&format!("currency = \"EUR\"\nfile = {:?}", file)).unwrap_err();
    let at = |n: usize| format!("providers.a.pricing.file ({} line {n})", file.display());
    for want in [
        format!("{}: price: not a decimal amount", at(2)),
        format!("{}: a second price for channel \"sms\", prefix \"7\"", at(3)),
        format!("{}.prefix: not up to 15 digits", at(4)),
        format!("{}: category: not one of", at(5)),
        format!("{}: want channel,prefix,price[,category], got 2 fields", at(6)),
    ] {
        assert!(errs.iter().any(|e| e.starts_with(&want)), "{want} missing from {errs:?}");
    }
    assert_eq!(errs.len(), 5, "{errs:?}");
}

#[test]
fn pricing_mistakes_name_their_keys() {
    let row = r#"rows = [{ channel = "sms", prefix = "7", price = "0.05" }]"#;
    for (body, want) in [
        (format!("currency = \"euro\"\n{row}"), "providers.a.pricing.currency: not an ISO 4217 code"),
        (format!("currency = \"EUR\"\nrefund_on = [\"delivered\"]\n{row}"), "providers.a.pricing.refund_on[0]: \"delivered\" is not refundable"),
        (format!("currency = \"EUR\"\nrefund_on = [\"lost\"]\n{row}"), "providers.a.pricing.refund_on[0]: unknown variant `lost`"),
        ("currency = \"EUR\"".to_owned(), "providers.a.pricing: has no price rows"),
        ("currency = \"EUR\"\nfile = \"/nonexistent/prices.csv\"".to_owned(), "providers.a.pricing.file: cannot read /nonexistent/prices.csv"),
        (row.to_owned(), "providers.a.pricing: missing field `currency`"),
        (
            "currency = \"EUR\"\nrows = [{ channel = \"sms\", prefix = \"7\", price = \"0.0000001\" }]".to_owned(),
            "providers.a.pricing.rows[0].price: not a decimal amount",
        ),
        (
            "currency = \"EUR\"\nrows = [{ channel = \"sms\", prefix = \"7\", price = -1 }]".to_owned(),
            "providers.a.pricing.rows[0].price: not a decimal amount",
        ),
        (
            "currency = \"EUR\"\nrows = [{ channel = \"viber\", prefix = \"7\", price = \"1\" }]".to_owned(),
            "providers.a.pricing.rows[0].channel: the provider does not serve",
        ),
        ("currency = \"EUR\"\nrows = [{ channel = \"whatsapp\", prefix = \"7\", price = \"1\" }]".to_owned(), "providers.a.pricing.rows[0].category: required"),
        (
            "currency = \"EUR\"\nrows = [{ channel = \"sms\", prefix = \"7\", price = \"1\", category = \"utility\" }]".to_owned(),
            "providers.a.pricing.rows[0].category: only whatsapp",
        ),
        (format!("currency = \"EUR\"\ncurrncy = \"EUR\"\n{row}"), "providers.a.pricing.currncy: unknown field"),
    ] {
        let errs = prices(&body).unwrap_err();
        assert!(errs.len() == 1 && errs[0].starts_with(want), "{body}: {errs:?}");
    }
}

#[test]
fn a_stored_job_from_before_prices_still_parses_and_its_reports_carry_no_money() {
    let old = r#"{"job_id":"j","tenant":"acme","channel":"sms","to":"+79161234567","meta":{},"provider":"a","message_ids":["m1"],"segments":2}"#;
    let sent: crate::store::SentJob = serde_json::from_str(old).unwrap();
    assert_eq!(sent.charge, None);
    let r = sent.report(EventKind::Undelivered, chrono::Utc::now());
    let json = serde_json::to_value(&r).unwrap();
    for key in ["cost", "currency", "refund"] {
        assert!(json.get(key).is_none(), "{key} in {json}");
    }
}

#[test]
fn finals_after_acceptance_carry_a_refund_only_where_refund_on_says() {
    let p = prices(OVERLAPPING).unwrap();
    let j = job("sms", "+79161234567", r#""text":"hi""#);
    let sent = crate::store::SentJob {
        job_id: j.id.clone(),
        tenant: j.tenant.clone(),
        channel: "sms".into(),
        to: j.to.clone(),
        meta: Default::default(),
        provider: "a".into(),
        message_ids: vec!["m1".into(), "m2".into()],
        segments: 2,
        charge: p.charge("a", &j, 2).map(Box::new),
        claim_until: None,
        step: None,
    };
    // The charge survives the store's JSON.
    let sent: crate::store::SentJob = serde_json::from_str(&serde_json::to_string(&sent).unwrap()).unwrap();
    let now = chrono::Utc::now();
    let money = |e: EventKind| {
        let r = sent.report(e, now);
        (r.cost.map(|m| m.to_string()), r.refund.map(|m| m.to_string()), r.currency)
    };
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(money(EventKind::Accepted), (some("0.0666"), None, some("EUR")));
    assert_eq!(money(EventKind::Undelivered), (None, some("0.0666"), some("EUR")));
    for e in [EventKind::Delivered, EventKind::Expired, EventKind::Rejected, EventKind::Unknown, EventKind::Read] {
        assert_eq!(money(e), (None, None, None), "{e:?}");
    }
}
