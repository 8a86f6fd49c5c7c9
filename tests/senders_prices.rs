//! Tenants' sender lists and providers' price tables through the real pipeline: HTTP in, the
//! policy chain, routing, real SMPP to the embedded simulator, receipts back, JSONL reports.

mod support;

use sendgate::report::{EventKind, Reason};
use serde_json::{json, Value};
use support::{finals, start};

/// A second SMPP provider on the same embedded simulator as dev.toml's `smsc-a`.
const SMSC_B: &str = r#"
[providers.smsc-b]
kind = "smpp"
address = "embedded-sim"
system_id = "sendgate"
password = "dev"
channels = ["sms"]
default_from = "sendgate"
receipt_timeout = "60s"
"#;

/// `c` with the sections of dev.toml plus `extra` that these tests use.
fn with(c: &mut sendgate::config::Config, extra: &str) {
    let parsed = sendgate::config::parse(&format!("{}\n{extra}", sendgate::config::DEV_TOML)).unwrap();
    c.providers = parsed.providers;
    c.tenants = parsed.tenants;
}

fn sms(id: &str, tenant: &str, from: Option<&str>, route: Option<&str>) -> Value {
    let mut j = json!({"id": id, "tenant": tenant, "channel": "sms", "to": "+4915100000001", "text": "hello"});
    if let Some(f) = from {
        j["from"] = json!(f);
    }
    if let Some(r) = route {
        j["route"] = json!(r);
    }
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_outside_the_tenants_list_are_rejected_and_a_sender_on_one_provider_goes_through_it() {
    let h = start(|c| with(c, &format!("{SMSC_B}\n[tenants.acme.senders]\nsms = [\"ACME\", {{ from = \"ACME-OTP\", providers = [\"smsc-b\"] }}]\n"))).await;
    let mut jobs = vec![
        sms("listed", "acme", Some("ACME"), None),
        sms("spoofed", "acme", Some("SPOOF"), None),
        // The provider's default sender is the operator's own: allowed.
        sms("no-from", "acme", None, None),
        // Another tenant has no list: any sender, as before lists existed.
        sms("other-tenant", "beta", Some("SPOOF"), None),
        // Its sender is not on smsc-a.
        sms("otp-routed-a", "acme", Some("ACME-OTP"), Some("smsc-a")),
    ];
    // Round-robin would send half of these through smsc-a; the sender keeps them all on b.
    jobs.extend((0..6).map(|i| sms(&format!("otp-{i}"), "acme", Some("ACME-OTP"), None)));
    let ids: Vec<String> = jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect();
    let (status, body) = h.post("/v1/jobs", "application/json", Value::Array(jobs).to_string()).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(ids.len())), "{body}");
    let by = h.wait_final(&ids).await;
    let last = |id: &str| *finals(&by[id]).last().unwrap();

    let spoofed = last("spoofed");
    assert_eq!((spoofed.event, spoofed.reason), (EventKind::Rejected, Some(Reason::SenderNotRegistered)));
    assert_eq!(spoofed.error.as_ref().unwrap().message, "from: sender \"SPOOF\" is not registered for tenant acme on channel sms");
    assert!(by["spoofed"].iter().all(|r| r.event != EventKind::Accepted), "a rejected sender is never sent");

    let routed = last("otp-routed-a");
    assert_eq!((routed.event, routed.reason), (EventKind::Rejected, Some(Reason::InvalidJob)));
    assert_eq!(routed.error.as_ref().unwrap().message, "route: provider \"smsc-a\" does not carry sender \"ACME-OTP\", registered on smsc-b");

    for id in ["listed", "no-from", "other-tenant"] {
        assert_eq!(last(id).event, EventKind::Delivered, "{id}");
    }
    for i in 0..6 {
        let f = last(&format!("otp-{i}"));
        assert_eq!((f.event, f.provider.as_deref()), (EventKind::Delivered, Some("smsc-b")), "otp-{i}");
    }
    let sim = h.app.sim.as_ref().unwrap();
    // listed, no-from, other-tenant and the six OTPs; SPOOF only from the tenant without a list.
    assert_eq!(sim.messages().len(), 9);
    assert_eq!(sim.messages().iter().filter(|m| m.source == "SPOOF").count(), 1);
    h.app.shutdown().await;
}

/// Overlapping prefixes on `smsc-a`: the longest that matches a number wins.
const PRICES: &str = r#"
[providers.smsc-a.pricing]
currency = "CURRENCY"
refund_on = ["undelivered"]
rows = [
  { channel = "sms", prefix = "7", price = "0.05" },
  { channel = "sms", prefix = "79", price = "0.041" },
  { channel = "sms", prefix = "7916", price = "0.0333" },
  { channel = "sms", prefix = "", price = "0.1" },
]
"#;

/// `c` priced in `currency`: each test its own, as the metrics recorder is one per process.
fn priced(c: &mut sendgate::config::Config, currency: &str) {
    let parsed = sendgate::config::parse(&format!("{}\n{}", sendgate::config::DEV_TOML, PRICES.replace("CURRENCY", currency))).unwrap();
    c.providers = parsed.providers;
    c.prices = parsed.prices;
}

/// The value of the series of `name` with `provider` and `currency`, 0 when absent.
async fn counter(h: &support::Harness, name: &str, currency: &str) -> u64 {
    let (_, body) = support::request(h.app.metrics_addr, "GET", "/metrics", None, Default::default()).await;
    let text = body.as_str().unwrap().to_owned();
    let series = |l: &&str| l.starts_with(&format!("{name}{{")) && l.contains(r#"provider="smsc-a""#) && l.contains(&format!(r#"currency="{currency}""#));
    text.lines().find(series).map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).unwrap_or(0)
}

/// Waits (bounded) for the counter to reach `want`: a final's report is in the file a moment
/// before its refund is counted.
async fn assert_counter(h: &support::Harness, name: &str, currency: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = counter(h, name, currency).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}{{currency={currency}}}: {got}, want {want}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_carry_their_cost_and_the_spend_counter_adds_up_exactly() {
    let h = start(|c| priced(c, "EUR")).await;
    let one = "hi".to_owned();
    let two = "a".repeat(200); // GSM-7: 153 characters a part
    let three = "a".repeat(400);
    // (id, to, text, cost by hand)
    let cases = [
        ("c1", "+79161234567", &one, "0.0333"),   // 7916 × 1
        ("c2", "+79161234567", &two, "0.0666"),   // 7916 × 2
        ("c3", "+79261234567", &one, "0.041"),    // 79 × 1
        ("c4", "+74951234567", &three, "0.15"),   // 7 × 3
        ("c5", "+4915100000001", &two, "0.2"),    // "" × 2
        ("c6", "+79169999999", &three, "0.0999"), // 7916 × 3
    ];
    let jobs: Vec<Value> = cases.iter().map(|(id, to, text, _)| json!({"id": id, "tenant": "acme", "channel": "sms", "to": to, "text": text})).collect();
    let ids: Vec<String> = cases.iter().map(|c| c.0.to_owned()).collect();
    h.post("/v1/jobs", "application/json", Value::Array(jobs).to_string()).await;
    let by = h.wait_final(&ids).await;
    for (id, _, _, want) in cases {
        let accepted = by[id].iter().find(|r| r.event == EventKind::Accepted).unwrap();
        assert_eq!((accepted.cost.map(|m| m.to_string()), accepted.currency.as_deref()), (Some(want.to_owned()), Some("EUR")), "{id}");
        let f = finals(&by[id])[0];
        assert_eq!((f.event, f.refund, f.cost), (EventKind::Delivered, None, None), "{id}");
    }
    // On the wire: an exact decimal string.
    let raw = std::fs::read_to_string(&h.reports_path).unwrap();
    assert!(raw.lines().any(|l| l.contains(r#""job_id":"c1""#) && l.contains(r#""cost":"0.0333","currency":"EUR""#)), "{raw}");
    // 0.0333 + 0.0666 + 0.041 + 0.15 + 0.2 + 0.0999 = 0.5908, in micro-units.
    assert_counter(&h, "sendgate_spend_micro_units_total", "EUR", 590_800).await;
    assert_eq!(counter(&h, "sendgate_refunds_micro_units_total", "EUR").await, 0);
    h.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_finals_carry_a_refund_where_the_provider_refunds_them_and_expired_ones_do_not() {
    let h = start(|c| {
        priced(c, "USD");
        c.dev.smsc_sim.outcome_mix = "undelivered=1,expired=1".into();
    })
    .await;
    let jobs: Vec<Value> =
        (0..40).map(|i| json!({"id": format!("r{i}"), "tenant": "acme", "channel": "sms", "to": format!("+7916{i:07}"), "text": "a".repeat(200)})).collect();
    let ids: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    h.post("/v1/jobs", "application/json", Value::Array(jobs).to_string()).await;
    let by = h.wait_final(&ids).await;
    let mut refunded = 0;
    for id in &ids {
        let f = finals(&by[id])[0];
        match f.event {
            EventKind::Undelivered => {
                assert_eq!((f.refund.map(|m| m.to_string()), f.currency.as_deref(), f.cost), (Some("0.0666".into()), Some("USD"), None), "{id}");
                refunded += 1;
            }
            EventKind::Expired => assert_eq!((f.refund, f.currency.as_deref()), (None, None), "{id}: expired is not in refund_on"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(refunded > 0 && refunded < 40, "both outcomes show up in 40 jobs: {refunded} undelivered");
    assert_counter(&h, "sendgate_spend_micro_units_total", "USD", 40 * 66_600).await;
    assert_counter(&h, "sendgate_refunds_micro_units_total", "USD", refunded * 66_600).await;
    h.app.shutdown().await;
}
