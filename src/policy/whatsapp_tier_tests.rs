//! `whatsapp_tier` over the in-memory store: what counts, what waits, and until when.
//! `tests/redis_store.rs` holds the Redis script to the same cases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::{WhatsappConfig, WhatsappPortfolioConfig, WhatsappTier as Tier};
use crate::store::MemoryStore;

const NUMBER: &str = "106540352242922";
const OTHER_NUMBER: &str = "106540352242923";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

fn config(tier: Tier, pair_interval: Duration) -> WhatsappConfig {
    let p = WhatsappPortfolioConfig { tier, numbers: vec![NUMBER.into(), OTHER_NUMBER.into()], window: Duration::from_secs(24 * 3600), pair_interval };
    WhatsappConfig { portfolios: BTreeMap::from([("acme".to_owned(), p)]) }
}

fn policy(tier: Tier, pair_interval: Duration) -> (WhatsappTier, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    (WhatsappTier::new(store.clone(), &config(tier, pair_interval)), store)
}

fn job(id: &str, channel: &str, from: Option<&str>, to: &str) -> Job {
    let from = from.map_or(String::new(), |f| format!(r#","from":"{f}""#));
    crate::job::parse(format!(r#"{{"id":"{id}","tenant":"t","channel":"{channel}","to":"{to}","text":"x"{from}}}"#).as_bytes(), t0()).unwrap()
}

fn wa(id: &str, to: &str) -> Job {
    job(id, "whatsapp", Some(NUMBER), to)
}

fn to(i: usize) -> String {
    format!("+4915100{i:05}")
}

async fn run(p: &WhatsappTier, jobs: &[Job], now: DateTime<Utc>) -> Vec<Verdict> {
    let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
    p.evaluate(&mut batch, now).await.unwrap();
    batch.into_iter().map(|c| c.verdict).collect()
}

fn capped(until: DateTime<Utc>) -> Verdict {
    Verdict::Defer { until, reason: Reason::TierCap }
}

#[tokio::test]
async fn the_tier_counts_unique_recipients_and_each_capped_job_waits_for_its_own_slot() {
    let (p, _) = policy(Tier::Recipients(3), Duration::ZERO);
    for h in 0..3 {
        assert_eq!(run(&p, &[wa(&format!("a{h}"), &to(h as usize))], t0() + hours(h)).await, [Verdict::Allow]);
    }
    // Repeats of counted recipients are free; new ones wait for the 1st, 2nd, ... oldest to leave.
    let jobs = [wa("r0", &to(0)), wa("n3", &to(3)), wa("r2", &to(2)), wa("n4", &to(4)), wa("n5", &to(5)), wa("n6", &to(6))];
    let v = run(&p, &jobs, t0() + hours(3)).await;
    // r0 and r2 moved to(0) and to(2) to t0+3h first, so to(1) (t0+1h) leaves first, then they.
    assert_eq!(v, [Verdict::Allow, capped(t0() + hours(25)), Verdict::Allow, capped(t0() + hours(27)), capped(t0() + hours(27)), capped(t0() + hours(27))]);
    let u = p.usage("acme", t0() + hours(3)).await.unwrap().unwrap();
    assert_eq!((u.tier, u.used, u.oldest, u.next_release), (Some(3), 3, Some(t0() + hours(1)), Some(t0() + hours(25))));
    assert_eq!(run(&p, &[wa("n3", &to(3))], t0() + hours(24)).await, [capped(t0() + hours(25))]);
    assert_eq!(run(&p, &[wa("n3", &to(3))], t0() + hours(25)).await, [Verdict::Allow]);
    assert!(p.usage("nobody", t0()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_recipient_sent_again_stays_counted_until_a_window_after_the_last_send() {
    let (p, _) = policy(Tier::Recipients(1), Duration::ZERO);
    assert_eq!(run(&p, &[wa("a", &to(0))], t0()).await, [Verdict::Allow]);
    assert_eq!(run(&p, &[wa("b", &to(0))], t0() + hours(20)).await, [Verdict::Allow], "free: counted already");
    // Meta still counts to(0) at t0+24h: we delivered to it at t0+20h.
    assert_eq!(run(&p, &[wa("c", &to(1))], t0() + hours(24)).await, [capped(t0() + hours(44))]);
    assert_eq!(run(&p, &[wa("c", &to(1))], t0() + hours(44)).await, [Verdict::Allow]);
}

#[tokio::test]
async fn an_inbound_contact_opens_a_service_window_with_that_number_only() {
    let (p, store) = policy(Tier::Recipients(1), Duration::ZERO);
    assert_eq!(run(&p, &[wa("a", &to(0))], t0()).await, [Verdict::Allow]);
    p.record_inbound(&[(NUMBER, &to(1), t0() - hours(23)), (NUMBER, &to(2), t0() - hours(25))]).await.unwrap();
    // A late webhook for an older message does not shorten the window.
    store.record_inbound_contacts(&[(NUMBER, &to(1), t0() - hours(30))]).await.unwrap();
    let jobs = [wa("b", &to(1)), wa("c", &to(2)), job("d", "whatsapp", Some(OTHER_NUMBER), &to(1))];
    assert_eq!(run(&p, &jobs, t0()).await, [Verdict::Allow, capped(t0() + hours(24)), capped(t0() + hours(24))]);
    assert_eq!(p.usage("acme", t0()).await.unwrap().unwrap().used, 1, "the service-window send was not counted");
    assert_eq!(run(&p, &[wa("e", &to(1))], t0() + hours(1)).await, [capped(t0() + hours(24))], "the window closed 24 h after the contact");
    assert!(matches!(p.record_inbound(&[(NUMBER, "0049", t0())]).await, Err(InboundError::Invalid { index: 0, field: "from", .. })));
    assert!(matches!(p.record_inbound(&[(NUMBER, &to(1), t0()), ("+1", &to(1), t0())]).await, Err(InboundError::Invalid { index: 1, field: "number", .. })));
}

#[tokio::test]
async fn the_pair_limit_spaces_sends_from_one_number_to_one_recipient() {
    let (p, _) = policy(Tier::Recipients(100), Duration::from_secs(6));
    let jobs = [wa("a", &to(0)), wa("b", &to(0)), job("c", "whatsapp", Some(OTHER_NUMBER), &to(0))];
    let until = t0() + chrono::Duration::seconds(6);
    assert_eq!(run(&p, &jobs, t0()).await, [Verdict::Allow, Verdict::Defer { until, reason: Reason::RateLimited }, Verdict::Allow]);
    // The job that went (and came back: deferred later in the chain, say) is not held back by
    // itself; its new send time is the pair's last send.
    let s = |n: i64| t0() + chrono::Duration::seconds(n);
    assert_eq!(run(&p, &[wa("a", &to(0))], s(1)).await, [Verdict::Allow]);
    assert_eq!(run(&p, &[wa("b", &to(0))], s(6)).await, [Verdict::Defer { until: s(7), reason: Reason::RateLimited }]);
    assert_eq!(run(&p, &[wa("b", &to(0))], s(7)).await, [Verdict::Allow]);
    assert_eq!(p.usage("acme", s(7)).await.unwrap().unwrap().used, 1);
}

#[tokio::test]
async fn a_capped_job_does_not_take_the_pair_slot_and_pair_zero_is_off() {
    let (p, _) = policy(Tier::Recipients(1), Duration::from_secs(6));
    assert_eq!(run(&p, &[wa("a", &to(0)), wa("x", &to(1))], t0()).await, [Verdict::Allow, capped(t0() + hours(24))]);
    p.record_inbound(&[(NUMBER, &to(1), t0())]).await.unwrap();
    assert_eq!(run(&p, &[wa("y", &to(1))], t0()).await, [Verdict::Allow], "x never went, so it left no pair send");

    let (off, _) = policy(Tier::Recipients(100), Duration::ZERO);
    assert_eq!(run(&off, &[wa("a", &to(0)), wa("b", &to(0))], t0()).await, [Verdict::Allow, Verdict::Allow]);
}

#[tokio::test]
async fn unlimited_portfolios_count_nothing_but_keep_the_pair_limit() {
    let (p, _) = policy(Tier::Unlimited, Duration::from_secs(6));
    let jobs: Vec<Job> = (0..50).map(|i| wa(&format!("j{i}"), &to(i))).chain([wa("again", &to(0))]).collect();
    let v = run(&p, &jobs, t0()).await;
    assert!(v[..50].iter().all(|v| *v == Verdict::Allow));
    assert!(matches!(v[50], Verdict::Defer { reason: Reason::RateLimited, .. }));
    let u = p.usage("acme", t0()).await.unwrap().unwrap();
    assert_eq!((u.tier, u.used), (None, 0));
    assert_eq!(u.to_json()["tier"], "unlimited");
}

#[tokio::test]
async fn jobs_outside_any_portfolio_and_other_channels_pass_untouched() {
    let (p, _) = policy(Tier::Recipients(1), Duration::from_secs(6));
    assert_eq!(run(&p, &[wa("a", &to(0))], t0()).await, [Verdict::Allow]);
    let jobs = [
        job("b", "whatsapp", Some("999"), &to(1)),
        job("c", "whatsapp", None, &to(2)),
        job("d", "sms", Some(NUMBER), &to(3)),
        job("e", "sms", Some(NUMBER), &to(3)),
    ];
    assert_eq!(run(&p, &jobs, t0()).await, [Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::Allow]);
    assert_eq!(p.usage("acme", t0()).await.unwrap().unwrap().used, 1);
}

#[tokio::test]
async fn jobs_another_policy_stopped_are_not_counted() {
    let (p, _) = policy(Tier::Recipients(1), Duration::ZERO);
    let jobs = [wa("a", &to(0)), wa("b", &to(1))];
    let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
    batch[0].verdict = Verdict::Defer { until: t0() + hours(1), reason: Reason::Scheduled };
    p.evaluate(&mut batch, t0()).await.unwrap();
    assert_eq!(batch[1].verdict, Verdict::Allow);
    let u = p.usage("acme", t0()).await.unwrap().unwrap();
    assert_eq!(
        u.to_json(),
        serde_json::json!({
            "portfolio": "acme", "tier": 1, "window_s": 86400, "used": 1, "remaining": 0,
            "oldest": "2026-01-01T00:00:00Z", "next_release": "2026-01-02T00:00:00Z",
        })
    );
}

#[tokio::test]
async fn a_job_without_from_counts_against_the_providers_one_default_number() {
    let (p, _) = policy(Tier::Recipients(1), Duration::ZERO);
    let p = p.with_default_from(Some(NUMBER.into()));
    let jobs = [job("a", "whatsapp", None, &to(0)), job("b", "whatsapp", None, &to(1))];
    assert_eq!(run(&p, &jobs, t0()).await[1], capped(t0() + hours(24)));
    assert_eq!(p.usage("acme", t0()).await.unwrap().unwrap().used, 1);
}

#[test]
fn the_default_number_is_known_only_when_every_whatsapp_provider_agrees() {
    let provider = |channel: &str, number: Option<&str>| {
        let number = number.map_or(String::new(), |n| format!("phone_number_id = \"{n}\"\n"));
        let cfg: crate::provider::whatsapp_cloud::WhatsappCloudConfig =
            toml::from_str(&format!("token_file = \"/dev/null\"\nchannels = [\"{channel}\"]\n{number}")).unwrap();
        crate::config::ProviderConfig::WhatsappCloud(cfg)
    };
    let of = |ps: Vec<crate::config::ProviderConfig>| WhatsappTier::default_from_of(&ps.into_iter().enumerate().map(|(i, p)| (format!("p{i}"), p)).collect());
    assert_eq!(of(vec![provider("whatsapp", Some(NUMBER))]), Some(NUMBER.to_owned()));
    assert_eq!(of(vec![provider("whatsapp", Some(NUMBER)), provider("whatsapp", Some(NUMBER))]), Some(NUMBER.to_owned()));
    assert_eq!(of(vec![provider("whatsapp", Some(NUMBER)), provider("whatsapp", Some(OTHER_NUMBER))]), None);
    assert_eq!(of(vec![provider("whatsapp", Some(NUMBER)), provider("whatsapp", None)]), None);
    // A provider on another channel has no say.
    assert_eq!(of(vec![provider("whatsapp", Some(NUMBER)), provider("wa_marketing", Some(OTHER_NUMBER))]), Some(NUMBER.to_owned()));
    assert_eq!(of(vec![]), None);
}
