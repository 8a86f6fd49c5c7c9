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
