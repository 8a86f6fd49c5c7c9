//! Issue 5's cost requirement, counted instead of timed: the policy chain and the rate limiter
//! decide a batch in a small constant number of Redis requests (a script or a pipeline is
//! one), not one per job or per policy. Counted by `RedisStore::requests`.

use sendgate::policy::rate_limit::{Outgoing, RateLimit};
use sendgate::policy::{Candidate, Chain, Verdict};

use super::*;

const NUMBER: &str = "106540352242922";

fn config() -> sendgate::config::Config {
    sendgate::config::parse(&format!(
        r#"
[tenant_defaults]
tz = "Europe/Berlin"
quiet_hours = {{ start = "22:00", end = "08:00" }}

[whatsapp.portfolios.acme]
tier = 250
numbers = ["{NUMBER}"]

[providers.smsc-a]
kind = "smpp"
address = "127.0.0.1:2775"
system_id = "rt"
password = "rt"

[rate_limits]
providers = {{ "smsc-a" = 100000 }}
tenants = {{ acme = 100000 }}
senders = {{ ACME = 100000 }}
campaigns = {{ spring = 100000 }}
"#
    ))
    .expect("test config parses")
}

/// `n` jobs touching every policy: SMS and WhatsApp, marketing and transactional, some to
/// opted-out recipients, some expired, some for later, numbers across many zones.
fn jobs(tag: &str, n: usize, now: DateTime<Utc>) -> Vec<sendgate::job::Job> {
    (0..n)
        .map(|i| {
            let mut v = serde_json::json!({
                "id": format!("{tag}-{i}"), "tenant": "acme", "channel": "sms", "from": "ACME",
                "to": format!("+{}{:07}", ["7916", "1212", "4915", "5511"][i % 4], i), "text": "hello", "campaign": "spring",
            });
            match i % 10 {
                0 => v["expires_at"] = serde_json::json!("2020-01-01T00:00:00Z"),
                1 => v["send_at"] = serde_json::json!("2099-01-01T00:00:00Z"),
                2 => {
                    v["channel"] = serde_json::json!("whatsapp");
                    v["from"] = serde_json::json!(NUMBER);
                }
                3 => v["priority"] = serde_json::json!("transactional"),
                _ => {}
            }
            sendgate::job::from_value(v, now).expect("test job")
        })
        .collect()
}

/// Requests one batch of `n` jobs costs: the chain, then the rate limiter on what it allowed.
async fn requests_for(store: &Arc<RedisStore>, tag: &str, n: usize) -> (u64, usize) {
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    let cfg = config();
    let dyn_store: Arc<dyn Store> = store.clone();
    let chain = Chain::from_config(&cfg, dyn_store.clone(), None, Duration::from_secs(10));
    let limiter = RateLimit::new(dyn_store, cfg.rate_limits.clone());
    let jobs = jobs(tag, n, now);
    // Every fourth recipient opted out (only marketing jobs are held by it).
    let opted: Vec<String> = jobs.iter().step_by(4).map(|j| j.to.clone()).collect();
    let entries: Vec<(&str, &str, &str)> = opted.iter().map(|to| ("acme", "sms", to.as_str())).collect();
    store.add_opt_outs(&entries).await.unwrap();

    let before = store.requests();
    let mut batch: Vec<Candidate> = jobs.iter().map(Candidate::new).collect();
    chain.evaluate(&mut batch, now).await;
    let allowed: Vec<Outgoing> = batch
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Allow))
        .map(|c| Outgoing { job: c.job, provider: "smsc-a", sender: c.job.from.as_deref(), sender_rate: None, segments: 1, pace: None })
        .collect();
    limiter.evaluate(&allowed, now).await.expect("rate limits");
    (store.requests() - before, allowed.len())
}

#[tokio::test]
async fn a_batch_costs_the_same_few_redis_requests_at_any_size() {
    let s = Space::new().await;
    let store = s.instance("rt", Duration::from_secs(30)).await;
    let (small, small_allowed) = requests_for(&store, "small", 10).await;
    let (large, large_allowed) = requests_for(&store, "large", 1_000).await;
    eprintln!("10 jobs: {small} requests ({small_allowed} allowed); 1,000 jobs: {large} requests ({large_allowed} allowed)");
    assert!(large_allowed >= 300, "the batch exercised the rate limiter: {large_allowed}");
    // dedup, opt-out, WhatsApp and the rate leases: one each, whatever the batch size.
    assert!(large <= 6, "{large} Redis requests for 1,000 jobs");
    assert_eq!(large, small, "the count grows with the batch: {small} for 10 jobs, {large} for 1,000");
    s.cleanup().await;
}
