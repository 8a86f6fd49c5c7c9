//! Smooth sending end to end: `sendgate run` (two instances sharing one campaign's pace)
//! against the real broker (Tansu), real Redis and the SMPP simulator over TCP.
//!
//! One two-minute test on purpose (the issue's): it also checks the pace along the way and the
//! admin route's view of the campaign, rather than spending another two minutes on each.

mod support;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sendgate::smsc_sim::{SimConfig, SmscSim};
use serde_json::{json, Value};
use support::services::{produce, producer, run_config, unique, Collector, Daemon, Topics};

const JOBS: usize = 10_000;
const WINDOW_S: f64 = 120.0;
const TOKEN: &str = "pacing-test-admin-token";

async fn admin_get(d: &Daemon, path: &str) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) = support::request_with(d.api, "GET", path, &[("authorization", &auth)], Bytes::new()).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// 10,000 jobs of one campaign, `finish_by` two minutes ahead (on the jobs: the first one read
/// sets it): the last one reaches the SMSC in the last 10% of the window, no 10 s of the window
/// holds more than 110% of the even pace's (10,000 / 120 s), and the count never runs more
/// than 10% ahead of where the even pace is. (Ahead it must get a little: finishing before
/// the deadline is finishing ahead of the even pace, which ends at it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_finish_by_their_deadline_at_an_even_pace() {
    let topics = Topics::create(6);
    let sim = SmscSim::start(SimConfig { receipt_delay: Duration::from_millis(20), record_messages: true, ..SimConfig::default() }).await.unwrap();
    let reports = Collector::start(&topics.reports);
    let dir = tempfile::tempdir().unwrap();
    // SENDGATE_TEST_KEEP=1 keeps the daemons' configs and logs for a look after a failure.
    let dir_path = dir.path().to_owned();
    let _dir = if std::env::var_os("SENDGATE_TEST_KEEP").is_some() {
        eprintln!("keeping {}", dir.keep().display());
        None
    } else {
        Some(dir)
    };
    let (group, prefix) = (unique("g"), format!("{}:", unique("sg")));
    let redis = support::services::env("SENDGATE_TEST_REDIS_URL");
    let daemons: Vec<Daemon> = ["gw-a", "gw-b"]
        .iter()
        .map(|name| {
            let cfg = run_config(&dir_path, name, &topics, &group, &redis, &prefix, sim.local_addr());
            let mut text = std::fs::read_to_string(&cfg).unwrap();
            text.push_str(&format!("\n[admin]\ntoken = \"{TOKEN}\"\n\n[rate_limits]\nmax_wait = \"2s\"\n"));
            std::fs::write(&cfg, text).unwrap();
            Daemon::start(&cfg, dir_path.join(format!("{name}.log")))
        })
        .collect();
    // Both in the group before the clock starts: a rebalance mid-run would stall reading.
    let joined = std::time::Instant::now();
    while !daemons.iter().all(|d| d.log_text().contains("partitions assigned")) || joined.elapsed() < Duration::from_secs(8) {
        assert!(joined.elapsed() < Duration::from_secs(60), "daemons did not join the group");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let t0 = Utc::now();
    let finish_by = t0 + chrono::Duration::milliseconds((WINDOW_S * 1000.0) as i64);
    let records: Vec<(String, Vec<u8>)> = (0..JOBS)
        .map(|i| {
            let to = format!("+4915{i:09}");
            let job = json!({"id": format!("p-{i}"), "tenant": "acme", "channel": "sms", "to": to, "text": format!("paced {i}"),
                "campaign": "bf", "finish_by": finish_by.to_rfc3339()});
            (to, serde_json::to_vec(&job).unwrap())
        })
        .collect();
    produce(&producer(), &topics.jobs, &records).await;

    // Mid-run, the admin route shows the campaign being paced (from either instance).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mid = admin_get(&daemons[1], "/v1/admin/campaigns/acme/bf").await;
    assert_eq!(mid["finish_by_source"], "job", "{mid}");
    let pending = mid["pending"].as_u64().unwrap();
    assert!((6_500..=8_200).contains(&pending), "a quarter of the window gone: {mid}");
    let pace = mid["pace_jobs_per_second"].as_f64().unwrap();
    assert!((75.0..=95.0).contains(&pace), "{mid}");
    let projected: DateTime<Utc> = mid["projected_finish"].as_str().unwrap().parse().unwrap();
    assert!((projected - finish_by).num_seconds().abs() <= 6, "{mid}");

    let finals = reports.wait_finals(JOBS, Duration::from_secs(160)).await;
    if finals.len() < JOBS {
        let mut last: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for r in reports.reports() {
            last.insert(r.job_id.clone(), format!("{:?} retry_at {:?} at {}", r.event, r.retry_at, r.at));
        }
        let stuck: Vec<_> = last.iter().filter(|(id, _)| !finals.contains_key(*id)).take(5).collect();
        eprintln!("not final, last events: {stuck:?}");
        for d in &daemons {
            eprintln!("{}", d.log_text().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(20).collect::<Vec<_>>().join("\n"));
        }
    }
    assert_eq!(finals.len(), JOBS);
    let twice: Vec<&String> = finals.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    if !twice.is_empty() {
        for r in reports.reports().iter().filter(|r| twice.iter().take(3).any(|id| **id == r.job_id)) {
            eprintln!("{} {:?} final={} provider={:?} retry_at={:?} at={} error={:?}", r.job_id, r.event, r.is_final, r.provider, r.retry_at, r.at, r.error);
        }
    }
    assert!(twice.is_empty(), "{} jobs with more than one final", twice.len());
    let mut at: Vec<f64> = sim.messages().iter().map(|m| (m.received_at - t0).num_milliseconds() as f64 / 1000.0).collect();
    at.sort_by(f64::total_cmp);
    assert_eq!(at.len(), JOBS, "one message per job at the SMSC");

    let even = JOBS as f64 / WINDOW_S;
    let last = at[JOBS - 1];
    let per_10s: Vec<usize> = (0..13).map(|k| at.iter().filter(|t| (k as f64 * 10.0..(k + 1) as f64 * 10.0).contains(*t)).count()).collect();
    // How far ahead of the even pace the count ever ran, as a share of where the even pace was
    // (the first arrival excepted: one job is always "ahead" of an even start at 0).
    let ahead = at.iter().enumerate().skip(1).map(|(i, t)| (i + 1) as f64 / (even * t)).fold(0.0, f64::max);
    // For the record: the busiest sliding 10 s (the SMPP path bunches submits now and then).
    let busiest = (0..JOBS).map(|i| at[i..].iter().take_while(|t| **t < at[i] + 10.0).count()).max().unwrap();
    eprintln!("first {:.2}s, last {last:.2}s, per 10 s {per_10s:?}, busiest sliding 10 s {busiest}, most ahead {:.1}%", at[0], (ahead - 1.0) * 100.0);
    // Per second around the busiest 10 s: a burst (a stall before it) or a raised pace.
    let worst = (0..13).max_by_key(|k| per_10s[*k]).unwrap_or(0);
    let seconds = (worst * 10).saturating_sub(5)..(worst * 10 + 15).min(120);
    let per_s: Vec<usize> = seconds.map(|s| at.iter().filter(|t| (s as f64..s as f64 + 1.0).contains(*t)).count()).collect();
    eprintln!("per second from {} s: {per_s:?}", (worst * 10).saturating_sub(5));
    assert!((0.9 * WINDOW_S..=WINDOW_S).contains(&last), "the last job at {last:.2}s, not in the last 10% of {WINDOW_S}s");
    for (k, n) in per_10s.iter().enumerate() {
        assert!(*n as f64 <= 1.1 * even * 10.0, "{n} jobs in {}-{} s, over 110% of the even pace", k * 10, k * 10 + 10);
    }
    assert!(ahead <= 1.1, "the count ran {:.1}% ahead of the even pace", (ahead - 1.0) * 100.0);

    let after = admin_get(&daemons[0], "/v1/admin/campaigns/acme/bf").await;
    assert_eq!((after["pending"].as_u64(), after["pace_jobs_per_second"].as_f64()), (Some(0), None), "{after}");
    for d in daemons {
        assert_eq!(d.terminate(), Some(0));
    }
}
