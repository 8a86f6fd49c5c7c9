//! The limiter over the memory store, on tokio's paused clock: who goes when, who is deferred.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::time::Instant;

use super::*;
use crate::store::MemoryStore;

fn job(id: &str, tenant: &str, campaign: Option<&str>) -> Job {
    let mut v = serde_json::json!({"id": id, "tenant": tenant, "channel": "sms", "to": "+4915112345678", "text": "x"});
    if let Some(c) = campaign {
        v["campaign"] = c.into();
    }
    crate::job::from_value(v, Utc::now()).unwrap()
}

fn cfg(edit: impl FnOnce(&mut RateLimitsConfig)) -> RateLimitsConfig {
    let mut c = RateLimitsConfig { max_wait: Duration::from_secs(1), ..RateLimitsConfig::default() };
    edit(&mut c);
    c
}

/// Tokio's paused clock and the pipeline's clock, moved together.
struct Clocks {
    start: Instant,
    utc: DateTime<Utc>,
}

impl Clocks {
    fn new() -> Self {
        Self { start: Instant::now(), utc: Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap() }
    }
    fn now(&self) -> DateTime<Utc> {
        self.utc + chrono::Duration::from_std(self.start.elapsed()).unwrap()
    }
    /// An instant as an offset from the start, in ms.
    fn ms(&self, at: Instant) -> u128 {
        at.duration_since(self.start).as_millis()
    }
}

fn out<'a>(job: &'a Job, segments: u32) -> Outgoing<'a> {
    Outgoing { job, provider: "p", sender: Some("ACME"), sender_rate: None, segments, pace: None }
}

fn allowed_at(c: &Clocks, a: &[Admission]) -> Vec<Option<u128>> {
    a.iter().map(|a| (a.verdict == Verdict::Allow).then(|| c.ms(a.not_before))).collect()
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_for_their_slot_up_to_max_wait_then_are_deferred() {
    let c = Clocks::new();
    let rl = RateLimit::new(
        Arc::new(MemoryStore::new()),
        cfg(|c| {
            c.providers.insert("p".into(), 10.0);
        }),
    );
    let jobs: Vec<Job> = (0..14).map(|i| job(&format!("j{i}"), "t", None)).collect();
    let batch: Vec<Outgoing> = jobs.iter().map(|j| out(j, 1)).collect();
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    let want: Vec<Option<u128>> = (0..11).map(|i| Some(i * 100)).chain([None, None, None]).collect();
    assert_eq!(allowed_at(&c, &a), want, "one token per 100 ms, the slot at 1 s (= max_wait) still in");
    // The deferred come back in their order, half a max_wait before their turn: 1.1 s, 1.2 s, ...
    let retry: Vec<i64> = a[11..]
        .iter()
        .map(|a| match a.verdict {
            Verdict::Defer { until, reason: Reason::RateLimited } => (until - c.now()).num_milliseconds(),
            ref v => panic!("{v:?}"),
        })
        .collect();
    assert_eq!(retry, [600, 700, 800]);
}

#[tokio::test(start_paused = true)]
async fn segments_are_tokens_and_idle_time_is_not_saved_up() {
    let c = Clocks::new();
    let rl = RateLimit::new(
        Arc::new(MemoryStore::new()),
        cfg(|c| {
            c.senders.insert("ACME".into(), 10.0);
        }),
    );
    let jobs: Vec<Job> = (0..3).map(|i| job(&format!("j{i}"), "t", None)).collect();
    let batch = [out(&jobs[0], 3), out(&jobs[1], 1), out(&jobs[2], 2)];
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(0), Some(300), Some(400)]);
    // Ten idle seconds buy no burst: the next jobs are paced from now on.
    tokio::time::advance(Duration::from_secs(10)).await;
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(10_000), Some(10_300), Some(10_400)]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_campaign_does_not_hold_up_jobs_it_does_not_limit() {
    let c = Clocks::new();
    let rl = RateLimit::new(
        Arc::new(MemoryStore::new()),
        cfg(|c| {
            c.max_wait = Duration::from_secs(2);
            c.providers.insert("p".into(), 1000.0);
            c.campaigns.insert("slow".into(), 2.0);
        }),
    );
    let jobs: Vec<Job> = (0..8).map(|i| job(&format!("j{i}"), "t", (i % 2 == 0).then_some("slow"))).collect();
    let batch: Vec<Outgoing> = jobs.iter().map(|j| out(j, 1)).collect();
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    // Campaign jobs at 0, 0.5, 1, 1.5 s; the others on the provider's 1 ms slots. The provider's
    // lease reaches only 100 ms (its `rate × lease`), so a campaign job spends its earliest
    // provider slot; the others go on the slots after it.
    assert_eq!(allowed_at(&c, &a), [Some(0), Some(1), Some(500), Some(3), Some(1000), Some(5), Some(1500), Some(7)]);
    // Each tenant's "slow" campaign is its own limit.
    let other = job("o", "u", Some("slow"));
    let a = rl.evaluate(&[out(&other, 1)], c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(8)]);
}

#[tokio::test(start_paused = true)]
async fn under_two_limits_a_job_spends_both_slots_when_it_goes() {
    let c = Clocks::new();
    let rl = RateLimit::new(
        Arc::new(MemoryStore::new()),
        cfg(|c| {
            c.max_wait = Duration::from_secs(2);
            c.providers.insert("p".into(), 100.0);
            c.tenants.insert("t".into(), 4.0);
        }),
    );
    // A backlog leases the provider to the horizon; tenant t's jobs (every 4th) then take the
    // provider slot at their own tenant slot, and the others keep every slot before it.
    let jobs: Vec<Job> = (0..12).map(|i| job(&format!("j{i}"), if i % 4 == 0 { "t" } else { "u" }, None)).collect();
    let backlog: Vec<Outgoing> = jobs.iter().map(|j| out(j, 1)).collect();
    let mut batch = backlog.clone();
    for _ in 0..20 {
        batch.extend(backlog.iter().filter(|o| o.job.tenant == "u"));
    }
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    let mut at: Vec<u128> = a.iter().filter(|a| a.verdict == Verdict::Allow).map(|a| c.ms(a.not_before)).collect();
    let tenant_t: Vec<u128> = a.iter().zip(&batch).filter(|(_, o)| o.job.tenant == "t").map(|(a, _)| c.ms(a.not_before)).collect();
    assert_eq!(tenant_t, [0, 250, 500]);
    at.sort_unstable();
    assert!(at.windows(2).all(|w| w[1] - w[0] >= 10), "two jobs on one provider slot: {at:?}");
    assert_eq!(at.len(), batch.len(), "all within 2 s at 100/s");
}

#[tokio::test(start_paused = true)]
async fn campaign_speeds_set_at_runtime_win_after_the_refresh() {
    let c = Clocks::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let rl = RateLimit::new(
        store.clone(),
        cfg(|c| {
            c.campaign_refresh = Duration::from_secs(5);
            c.campaigns.insert("acme/bf".into(), 1.0);
        }),
    );
    let jobs: Vec<Job> = (0..4).map(|i| job(&format!("j{i}"), "acme", Some("bf"))).collect();
    let batch: Vec<Outgoing> = jobs.iter().map(|j| out(j, 1)).collect();
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(0), Some(1000), None, None], "configured: 1/s");

    set_campaign_rate(store.as_ref(), None, "bf", Some(4.0)).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(5000), Some(5250), Some(5500), Some(5750)], "every tenant's bf: 4/s");
    set_campaign_rate(store.as_ref(), Some("acme"), "bf", Some(2.0)).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = rl.evaluate(&batch[..1], c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(6000)], "read 1 s ago: still 4/s until the refresh");
    tokio::time::advance(Duration::from_secs(4)).await;
    let a = rl.evaluate(&batch, c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(10_000), Some(10_500), Some(11_000), None], "acme's own: 2/s");
    set_campaign_rate(store.as_ref(), Some("acme"), "bf", None).await.unwrap();
    set_campaign_rate(store.as_ref(), None, "bf", None).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = rl.evaluate(&batch[..2], c.now()).await.unwrap();
    assert_eq!(allowed_at(&c, &a), [Some(15_000), Some(16_000)], "cleared: the config again");

    for (tenant, campaign, rate, field) in
        [(Some("ACME"), "bf", Some(1.0), "tenant"), (None, "b f", Some(1.0), "campaign"), (None, "bf", Some(0.0), "rate"), (None, "bf", Some(f64::NAN), "rate")]
    {
        match set_campaign_rate(store.as_ref(), tenant, campaign, rate).await {
            Err(SetRateError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{tenant:?} {campaign} {rate:?}: {other:?}"),
        }
    }
}

/// Two instances (two limiters) leasing from one limit in one store, batches interleaved over a
/// simulated 20 s: no second holds more than the rate, and the limit is used in full.
#[tokio::test(start_paused = true)]
async fn two_instances_share_one_limit_exactly() {
    let c = Clocks::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let edit = |c: &mut RateLimitsConfig| {
        c.providers.insert("p".into(), 200.0);
    };
    let (a, b) = (RateLimit::new(store.clone(), cfg(edit)), RateLimit::new(store.clone(), cfg(edit)));
    let jobs: Vec<Job> = (0..40).map(|i| job(&format!("j{i}"), "t", None)).collect();
    let mut starts = Vec::new();
    let mut step = 0u32;
    while c.start.elapsed() < Duration::from_secs(20) {
        // Uneven batches and segment counts (1-3), each instance every 7 or 11 ms.
        let n = 1 + (step as usize * 7) % 12;
        let batch: Vec<Outgoing> = jobs[..n].iter().enumerate().map(|(i, j)| out(j, 1 + (i as u32 + step) % 3)).collect();
        let rl = if step.is_multiple_of(2) { &a } else { &b };
        for (adm, o) in rl.evaluate(&batch, c.now()).await.unwrap().into_iter().zip(&batch) {
            if adm.verdict == Verdict::Allow {
                starts.push((adm.not_before, o.segments));
            }
        }
        tokio::time::advance(Duration::from_millis(if step.is_multiple_of(2) { 7 } else { 11 })).await;
        step += 1;
    }
    starts.sort();
    // A job goes at its first slot, or up to one interval after it when the slot had just
    // passed: two jobs are never closer than the first one's tokens less that interval.
    for w in starts.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= Duration::from_millis(5) * (w[0].1 - 1), "{:?} then {:?}: {gap:?}", w[0], w[1]);
    }
    let most_in_1s = (0..starts.len())
        .map(|i| starts[i..].iter().take_while(|(at, _)| *at < starts[i].0 + Duration::from_secs(1)).map(|(_, n)| n).sum::<u32>())
        .max()
        .unwrap();
    assert!(most_in_1s <= 202, "{most_in_1s} segments in one second at 200/s");
    let first_19s: u32 = starts.iter().filter(|(at, _)| c.ms(*at) < 19_000).map(|(_, n)| n).sum();
    assert!((3_790..=3_800).contains(&first_19s), "{first_19s} segments in 19 s at 200/s");
}

#[tokio::test(start_paused = true)]
async fn jobs_deferred_later_queue_behind_those_deferred_before() {
    let c = Clocks::new();
    let rl = RateLimit::new(
        Arc::new(MemoryStore::new()),
        cfg(|c| {
            c.providers.insert("p".into(), 10.0);
        }),
    );
    let jobs: Vec<Job> = (0..16).map(|i| job(&format!("j{i}"), "t", None)).collect();
    let batch: Vec<Outgoing> = jobs.iter().map(|j| out(j, 1)).collect();
    let retry_ms = |a: &[Admission]| -> Vec<i64> {
        a.iter()
            .filter_map(|a| match a.verdict {
                Verdict::Defer { until, .. } => Some((until - c.now()).num_milliseconds()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(retry_ms(&rl.evaluate(&batch[..14], c.now()).await.unwrap()), [600, 700, 800]);
    // The next batch's deferred come after the three before them (turns 1.4 s and 1.5 s).
    assert_eq!(retry_ms(&rl.evaluate(&batch[14..], c.now()).await.unwrap()), [900, 1000]);
}
