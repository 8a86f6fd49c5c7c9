//! Pacing against the memory store: the pace follows what is pending and the time left,
//! deferred jobs are placed by their turn, and the deadline lifts the pace.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::store::MemoryStore;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn config(extra: &str) -> Config {
    crate::config::parse(&format!("[rate_limits]\nmax_wait = \"2s\"\nlease = \"100ms\"\n{extra}")).unwrap()
}

fn job(id: &str, campaign: &str, finish_by: Option<&str>) -> Job {
    let mut v = serde_json::json!({"id": id, "tenant": "acme", "channel": "sms", "to": "+4915112345678", "text": "x", "campaign": campaign});
    if let Some(f) = finish_by {
        v["finish_by"] = f.into();
    }
    crate::job::parse(v.to_string().as_bytes(), at("2026-11-21T10:00:00Z")).unwrap()
}

fn live(jobs: &[Job]) -> Vec<PaceNote> {
    jobs.iter().filter_map(|j| PaceNote::of(j, true)).collect()
}

#[tokio::test]
async fn the_pace_is_what_is_pending_over_the_time_left() {
    let now = at("2026-11-21T10:00:00Z");
    let pace = Pace::from_config(&config("[campaigns.\"acme/bf\"]\nfinish_by = \"2026-11-21T10:02:02Z\"\n"), Arc::new(MemoryStore::new()));
    let jobs: Vec<Job> = (0..1200).map(|i| job(&format!("j{i}"), "bf", None)).collect();
    pace.register(&live(&jobs), now).await.unwrap();
    // 1,200 jobs over the 120 s up to 2 s (max_wait) before 10:02:02: 10/s, on the 0.5% grid.
    let r = pace.rate(&jobs[0], now).unwrap();
    assert!((9.97..10.03).contains(&r), "{r}");
    // Half the time gone, half the jobs out: the same pace.
    let (out, rest) = jobs.split_at(600);
    let later = now + Duration::seconds(60);
    let refs: Vec<&Job> = out.iter().collect();
    pace.settle(&refs, &[], later).await.unwrap();
    let r = pace.rate(&rest[0], later).unwrap();
    assert!((9.97..10.03).contains(&r), "{r}");
    // Behind (only 300 out after 90 s): faster.
    let r = pace.rate(&rest[0], now + Duration::seconds(90)).unwrap();
    assert!((19.95..20.05).contains(&r), "{r}");
    // Past the aim: lifted.
    assert_eq!(pace.rate(&rest[0], now + Duration::seconds(121)), None);
    // Not a paced campaign: no pace, and its jobs are not counted.
    let other = job("x", "other", None);
    pace.register(&live(std::slice::from_ref(&other)), now).await.unwrap();
    assert_eq!(pace.rate(&other, now), None);
    assert_eq!(pace.status("acme", "other", None, now).await.unwrap().pending, 0);
}

#[tokio::test]
async fn finish_by_comes_from_the_admin_then_config_then_the_first_job() {
    let now = at("2026-11-21T10:00:00Z");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let pace = Pace::from_config(&config("[campaigns.\"acme/cfg\"]\nfinish_by = \"2026-11-21T12:00:00Z\"\n"), store.clone());
    // The first job's deadline sticks; a later job's does not move it.
    let first = job("a", "j", Some("2026-11-21T11:00:00Z"));
    let second = job("b", "j", Some("2026-11-21T15:00:00Z"));
    pace.register(&live(&[first, second]), now).await.unwrap();
    let s = pace.status("acme", "j", None, now).await.unwrap();
    assert_eq!(s.finish_by, Some((at("2026-11-21T11:00:00Z"), Source::Job)));
    assert_eq!(s.pending, 2);
    // Config wins over a job's.
    pace.register(&live(&[job("c", "cfg", Some("2026-11-21T11:00:00Z"))]), now).await.unwrap();
    assert_eq!(pace.status("acme", "cfg", None, now).await.unwrap().finish_by, Some((at("2026-11-21T12:00:00Z"), Source::Config)));
    // The admin's wins over both; cleared, back to config.
    pace.set_finish_by("acme", "cfg", Some(at("2026-11-21T13:00:00Z"))).await.unwrap();
    assert_eq!(pace.status("acme", "cfg", None, now).await.unwrap().finish_by, Some((at("2026-11-21T13:00:00Z"), Source::Admin)));
    pace.set_finish_by("acme", "cfg", None).await.unwrap();
    assert_eq!(pace.status("acme", "cfg", None, now).await.unwrap().finish_by.map(|f| f.1), Some(Source::Config));
}

#[tokio::test]
async fn a_deferred_job_comes_back_before_its_turn_and_within_its_validity() {
    let now = at("2026-11-21T10:00:00Z");
    let pace = Pace::from_config(&config("[campaigns.\"acme/bf\"]\nfinish_by = \"2026-11-21T10:01:42Z\"\n"), Arc::new(MemoryStore::new()));
    let jobs: Vec<Job> = (0..100).map(|i| job(&format!("j{i:03}"), "bf", None)).collect();
    pace.register(&live(&jobs), now).await.unwrap();
    // 100 jobs over 100 s: 1/s. Still being read in (its first read): back within max_wait.
    let refs: Vec<&Job> = jobs.iter().collect();
    let ranks = pace.settle(&[], &refs, now).await.unwrap();
    assert_eq!(ranks[50], Some(50));
    assert_eq!(pace.retry_at(&jobs[50], 50, now), Some(now + Duration::seconds(2)));
    // Read in (the count steady): half a max_wait before its turn at 100 jobs over the 97 s
    // left (1.03/s): 47.5 s out.
    let later = now + Duration::seconds(3);
    pace.register(&live(&jobs), later).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let mut k = pace.lock();
    k.values_mut().for_each(|k| k.growing_until = Instant::now());
    drop(k);
    let back = pace.retry_at(&jobs[50], 50, later).unwrap();
    assert!((47_400..47_600).contains(&(back - later).num_milliseconds()), "{back}");
    // Never after its own validity ends.
    let mut short = jobs[50].clone();
    short.expires_at = Some(later + Duration::seconds(5));
    assert_eq!(pace.retry_at(&short, 50, later), short.expires_at);
}

#[tokio::test]
async fn quiet_hours_do_not_count_as_sending_time() {
    // Moscow 21:00-09:00 is 18:00Z-06:00Z: from 17:00Z to 07:00Z tomorrow (2 s before
    // finish_by) only 2 h can send.
    let cfg = config(
        "[tenants.acme]\ntz = \"Europe/Moscow\"\nquiet_hours = { start = \"21:00\", end = \"09:00\" }\n[campaigns.\"acme/bf\"]\nfinish_by = \"2026-11-22T07:00:02Z\"\n",
    );
    let pace = Pace::from_config(&cfg, Arc::new(MemoryStore::new()));
    let now = at("2026-11-21T17:00:00Z");
    let jobs: Vec<Job> = (0..3600).map(|i| job(&format!("j{i}"), "bf", None)).collect();
    pace.register(&live(&jobs), now).await.unwrap();
    let r = pace.rate(&jobs[0], now).unwrap();
    assert!((0.497..0.503).contains(&r), "3,600 jobs over two hours of sending time: {r}");
    let s = pace.status("acme", "bf", None, now).await.unwrap();
    assert_eq!(s.pending, 3600);
    // At the pace, 7,200 s of sending: 17:00Z-18:00Z, the night, 06:00Z-07:00Z.
    let f = s.projected_finish.unwrap();
    // (The pace is on a 0.5% grid: within 36 s.)
    assert!((at("2026-11-22T07:00:00Z") - f).num_seconds().abs() <= 36, "{f}");
}
