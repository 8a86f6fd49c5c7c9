//! WhatsApp messaging limits in Redis: `whatsapp_admit.lua` held to the cases the in-memory
//! store meets in `src/policy/whatsapp_tier_tests.rs`, with two instances sharing a portfolio.

use std::collections::HashSet;

use sendgate::store::whatsapp::{Attempt, Decision, Portfolio};

use super::*;

const NUMBER: &str = "106540352242922";
const OTHER_NUMBER: &str = "106540352242923";
const DAY: chrono::Duration = chrono::Duration::hours(24);

fn acme(tier: Option<u64>) -> Portfolio<'static> {
    Portfolio { name: "acme", tier, window: Duration::from_secs(24 * 3600), pair_interval: Duration::from_secs(6) }
}

fn rcpt(i: usize) -> String {
    format!("+4915100{i:05}")
}

/// One job per recipient index, from `number`, with job id `{tag}-{i}`, in one call.
async fn admit(store: &RedisStore, tier: Option<u64>, number: &str, tag: &str, idx: &[usize], now: DateTime<Utc>) -> Vec<Decision> {
    let to: Vec<String> = idx.iter().map(|&i| rcpt(i)).collect();
    let ids: Vec<String> = idx.iter().map(|i| format!("{tag}-{i}")).collect();
    let attempts: Vec<Attempt> = to.iter().zip(&ids).map(|(r, id)| Attempt { portfolio: 0, number, recipient: r, job_id: id }).collect();
    let got = store.whatsapp_admit(&[acme(tier)], &attempts, now).await.unwrap();
    assert_eq!(got.decisions.len(), idx.len());
    got.decisions
}

fn allowed(d: &[Decision]) -> usize {
    d.iter().filter(|d| **d == Decision::Allow).count()
}

#[tokio::test]
async fn a_tier_of_250_lets_250_recipients_through_and_the_rest_wait_a_window() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let tier = Some(250);
    // 400 recipients in batches of 50, alternating instances.
    let mut decisions = Vec::new();
    for (k, chunk) in (0..400).collect::<Vec<_>>().chunks(50).enumerate() {
        let store = if k % 2 == 0 { &a } else { &b };
        decisions.extend(admit(store, tier, NUMBER, "j", chunk, t(0)).await);
    }
    assert_eq!(allowed(&decisions), 250);
    assert!(decisions[..250].iter().all(|d| *d == Decision::Allow));
    assert!(decisions[250..].iter().all(|d| *d == Decision::TierCap { until: t(0) + DAY }), "{:?}", &decisions[250..255]);
    // A retried call (its reply lost) decides the same and counts nothing twice.
    assert_eq!(admit(&b, tier, NUMBER, "j", &[0, 1, 399], t(0)).await, [Decision::Allow, Decision::Allow, Decision::TierCap { until: t(0) + DAY }]);

    // Recipients counted already cost nothing (from another number of the portfolio, so the
    // pair limit is not what is tested here).
    let again: Vec<usize> = (0..250).step_by(5).collect();
    assert_eq!(allowed(&admit(&a, tier, OTHER_NUMBER, "again", &again, t(0)).await), again.len());
    let usage = b.whatsapp_usage("acme", Duration::from_secs(86_400), t(60)).await.unwrap();
    assert_eq!((usage.used, usage.oldest), (250, Some(t(0))));

    // A recipient inside a service window goes even at the cap, and is not counted.
    a.record_inbound_contacts(&[(NUMBER, &rcpt(1000), t(30))]).await.unwrap();
    let pttl = s.pttl(&format!("wa:inbound:{NUMBER}:{}", rcpt(1000))).await;
    assert!(pttl > 86_400_000 && pttl <= 90_000_000, "inbound key TTL, got {pttl}");
    assert_eq!(admit(&b, tier, NUMBER, "in", &[1000, 1001], t(60)).await, [Decision::Allow, Decision::TierCap { until: t(0) + DAY }]);
    assert_eq!(b.whatsapp_usage("acme", Duration::from_secs(86_400), t(60)).await.unwrap().used, 250);

    // A window later the 250 have left: the 150 that waited go.
    let waited: Vec<usize> = (250..400).collect();
    let later = admit(&a, tier, NUMBER, "j", &waited, t(0) + DAY).await;
    assert_eq!(allowed(&later), 150);
    let usage = a.whatsapp_usage("acme", Duration::from_secs(86_400), t(0) + DAY).await.unwrap();
    assert_eq!((usage.used, usage.oldest), (150, Some(t(0) + DAY)));
    s.cleanup().await;
}

#[tokio::test]
async fn a_recipient_sent_again_stays_counted_until_a_window_after_the_last_send() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let h = |n: i64| t(0) + chrono::Duration::hours(n);
    assert_eq!(admit(&a, Some(1), NUMBER, "a", &[0], h(0)).await, [Decision::Allow]);
    assert_eq!(admit(&b, Some(1), NUMBER, "b", &[0], h(20)).await, [Decision::Allow]);
    assert_eq!(admit(&a, Some(1), NUMBER, "c", &[1], h(24)).await, [Decision::TierCap { until: h(44) }]);
    assert_eq!(admit(&b, Some(1), NUMBER, "c", &[1], h(44)).await, [Decision::Allow]);
    s.cleanup().await;
}

#[tokio::test]
async fn the_pair_limit_holds_across_instances_but_not_against_the_same_job() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    let sec = |n: i64| t(0) + chrono::Duration::seconds(n);
    assert_eq!(admit(&a, None, NUMBER, "a", &[0], sec(0)).await, [Decision::Allow]);
    assert_eq!(admit(&b, None, NUMBER, "b", &[0], sec(1)).await, [Decision::PairLimit { until: sec(6) }]);
    assert_eq!(admit(&b, None, OTHER_NUMBER, "b", &[0], sec(1)).await, [Decision::Allow], "another number");
    // The same job again (it came back): not held back by itself, and its send time moves.
    assert_eq!(admit(&b, None, NUMBER, "a", &[0], sec(2)).await, [Decision::Allow]);
    assert_eq!(admit(&a, None, NUMBER, "b", &[0], sec(7)).await, [Decision::PairLimit { until: sec(8) }]);
    assert_eq!(admit(&a, None, NUMBER, "b", &[0], sec(8)).await, [Decision::Allow]);
    let pttl = s.pttl(&format!("wa:pair:{NUMBER}:{}", rcpt(0))).await;
    assert!(pttl > 5_000 && pttl <= 7_000, "pair key TTL, got {pttl}");
    // Unlimited: nothing was counted.
    assert_eq!(s.cmd::<i64>(&["EXISTS", &s.key("wa:window:acme")]).await, 0);
    s.cleanup().await;
}

#[tokio::test]
async fn two_instances_racing_never_exceed_the_tier_together() {
    let s = Space::new().await;
    let (a, b) = s.two().await;
    // Overlapping recipient pools (0..500 and 100..600), 25 per batch, both instances at once.
    let run = |store: Arc<RedisStore>, tag: &'static str, from: usize| async move {
        let mut got = Vec::new();
        for chunk in (from..from + 500).collect::<Vec<_>>().chunks(25) {
            for (i, d) in chunk.iter().zip(admit(&store, Some(250), NUMBER, tag, chunk, t(0)).await) {
                got.push((*i, d));
            }
        }
        got
    };
    let (ga, gb) = tokio::join!(run(a.clone(), "a", 0), run(b.clone(), "b", 100));
    let through: HashSet<usize> = ga.iter().chain(&gb).filter(|(_, d)| *d == Decision::Allow).map(|(i, _)| *i).collect();
    assert_eq!(through.len(), 250, "unique recipients let through by both");
    assert_eq!(a.whatsapp_usage("acme", Duration::from_secs(86_400), t(0)).await.unwrap().used, 250);
    // Every other attempt waited for the tier or (a recipient both sent to) the pair limit.
    assert!(ga.iter().chain(&gb).all(|(i, d)| match d {
        Decision::Allow => through.contains(i),
        Decision::TierCap { until } => !through.contains(i) && *until == t(0) + DAY,
        Decision::PairLimit { .. } => through.contains(i),
    }));
    s.cleanup().await;
}
