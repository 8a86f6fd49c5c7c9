//! Criterion benches for the per-job hot paths: job parsing, SMS encoding/segmentation,
//! receipt text parsing, the policy chain over a batch with the in-memory store, and one
//! quiet-hours decision (one zone, many zones, the tenant-zone fallback).
//!
//! Run: `cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 2`.
//! Every bench declares its throughput in jobs (`Throughput::Elements`), so criterion's
//! `thrpt` line reads as jobs/s, and the `time` line of a batch bench divided by its batch
//! size is the cost per job.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sendgate::job::{self, Job};
use sendgate::policy::{Candidate, Chain, QuietHours, Verdict};
use sendgate::provider::smpp::receipt::parse_receipt_text;
use sendgate::provider::smpp::submit;
use sendgate::store::{MemoryStore, Store};

/// The job example of CONTRACT.md, byte for byte as a producer would send it.
const CONTRACT_JOB: &str = r#"{
  "id": "crm-7f3a-000123",
  "tenant": "acme",
  "channel": "sms",
  "to": "+79161234567",
  "from": "ACME",
  "text": "Your order 123 has shipped",
  "priority": "marketing",
  "send_at": "2026-11-21T09:00:00+03:00",
  "expires_at": "2026-11-22T09:00:00+03:00",
  "quiet_hours": { "start": "21:00", "end": "09:00" },
  "tz": "Europe/Moscow",
  "route": "smsc-a",
  "campaign": "black-friday",
  "meta": { "crm_contact": "55012" }
}"#;

/// A typical load-test job: required fields, a text and one meta key.
const MINIMAL_JOB: &str = r#"{"id":"lt-000001","tenant":"acme","channel":"sms","to":"+79161234567","text":"Your code is 123456","meta":{"n":"1"}}"#;

/// What the policies compare against: before the CONTRACT example's `send_at`.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn job_with_text(id: &str, text: &str) -> Job {
    let v = serde_json::json!({"id": id, "tenant": "acme", "channel": "sms", "to": "+79161234567", "text": text});
    job::from_value(v, now()).expect("bench job is valid")
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("job_parse");
    g.throughput(Throughput::Elements(1));
    for (name, src) in [("contract_example", CONTRACT_JOB), ("minimal", MINIMAL_JOB)] {
        // Fail loudly here rather than benchmark the error path.
        job::parse(src.as_bytes(), now()).expect("bench job parses");
        g.bench_function(name, |b| b.iter(|| job::parse(black_box(src.as_bytes()), now())));
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    // Texts around the segment limits the load test also sends.
    let long_gsm7 = "Black Friday: €5 off [today] {only} ~ use code BF-2026 at checkout. ".repeat(5);
    let long_cyrillic = "Ваш заказ отправлен, трек-номер 123456. Спасибо за покупку! ".repeat(4);
    let emoji = "Your order shipped 🚚📦 — thanks! 🎉 See you soon 😊".to_owned();
    let cases = [("gsm7_short", "Your code is 123456".to_owned()), ("gsm7_long_ext", long_gsm7), ("ucs2_long_cyrillic", long_cyrillic), ("ucs2_emoji", emoji)];
    let mut g = c.benchmark_group("sms_encode");
    g.throughput(Throughput::Elements(1));
    for (name, text) in &cases {
        let job = job_with_text("enc-1", text);
        let opts = submit::Options::default();
        let parts = submit::build(&job, "sendgate", 7, &opts).expect("bench text encodes").pdus;
        println!("sms_encode/{name}: {} chars -> {} submit_sm", text.chars().count(), parts.len());
        g.bench_function(*name, |b| b.iter(|| submit::build(black_box(&job), "sendgate", 7, &opts)));
    }
    g.finish();
}

fn bench_receipt(c: &mut Criterion) {
    // What the built-in simulator sends, and what SMSCs in the wild send (upper-case keys, err).
    let cases = [
        ("sim_delivered", "id:1f2e3d sub:001 dlvr:001 submit date:2511210600 done date:2511210600 stat:DELIVRD err:000 text:"),
        ("undeliv_with_text", "ID:4242424242 SUB:001 DLVR:000 SUBMIT DATE:2511210600 DONE DATE:2511210601 STAT:UNDELIV ERR:012 TEXT:Your order 123 has"),
    ];
    let mut g = c.benchmark_group("receipt_text");
    g.throughput(Throughput::Elements(1));
    for (name, text) in cases {
        assert!(parse_receipt_text(text).is_some(), "bench receipt parses");
        g.bench_function(name, |b| b.iter(|| parse_receipt_text(black_box(text))));
    }
    g.finish();
}

const BATCH: usize = 1_000;

/// 1,000 distinct jobs: most plain, every 10th already expired, every 10th (offset 5)
/// scheduled for later, so every policy of the chain has something to do.
fn batch_jobs(prefix: &str) -> Vec<Job> {
    (0..BATCH)
        .map(|i| {
            let extra = match i % 10 {
                0 => r#","expires_at":"2026-11-20T11:00:00Z""#,
                5 => r#","send_at":"2026-11-20T13:00:00Z""#,
                _ => "",
            };
            let src = format!(r#"{{"id":"{prefix}-{i:06}","tenant":"acme","channel":"sms","to":"+7916{i:07}","text":"Your code is {i:06}"{extra}}}"#);
            job::parse(src.as_bytes(), now()).expect("bench job parses")
        })
        .collect()
}

/// The daemon's chain (`Chain::from_config`), every policy on: tenant quiet hours that do not
/// bind at the bench's instant (so each job's zones are still worked out), and a WhatsApp
/// portfolio (the jobs are SMS, so it only looks).
fn chain(store: Arc<dyn Store>) -> Chain {
    let cfg = sendgate::config::parse(
        r#"
[tenant_defaults]
tz = "Europe/Berlin"
quiet_hours = { start = "03:00", end = "03:01" }
[whatsapp.portfolios.acme]
tier = 250
numbers = ["106540352242922"]
"#,
    )
    .expect("bench config parses");
    Chain::from_config(&cfg, store, None, Duration::from_secs(10))
}

fn candidates(jobs: &[Job]) -> Vec<Candidate<'_>> {
    jobs.iter().map(Candidate::new).collect()
}

fn bench_policy_chain(c: &mut Criterion) {
    // The daemon runs with the Prometheus recorder installed; the chain counts every verdict.
    sendgate::telemetry::prometheus();
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("current-thread runtime");
    let jobs = batch_jobs("pc");
    let mut g = c.benchmark_group("policy_chain");
    g.throughput(Throughput::Elements(BATCH as u64));
    // A batch iteration is ~0.5 ms plus an untimed store set-up: 50 samples fit in 2 s.
    g.sample_size(50);

    // Every id new: a fresh store per iteration (built outside the timed part), so dedup
    // claims 1,000 ids each time instead of finding them from the previous iteration.
    g.bench_function("fresh_ids_1000", |b| {
        b.iter_batched(
            || {
                let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
                (chain(store), candidates(&jobs))
            },
            |(chain, mut cands)| {
                rt.block_on(chain.evaluate(&mut cands, now()));
                // Returned, so freeing the store's 1,000 claims happens outside the timing.
                (chain, cands)
            },
            BatchSize::SmallInput,
        )
    });

    // Every id already claimed: the dedup-hit path (1,000 `duplicate` verdicts).
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let warm = chain(store);
    rt.block_on(warm.evaluate(&mut candidates(&jobs), now()));
    g.bench_function("duplicate_ids_1000", |b| {
        b.iter_batched(
            || candidates(&jobs),
            |mut cands| {
                rt.block_on(warm.evaluate(&mut cands, now()));
                cands
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Sanity: the mix above really exercises every verdict.
    let mut cands = candidates(&jobs);
    rt.block_on(chain(Arc::new(MemoryStore::new())).evaluate(&mut cands, now()));
    let count = |f: fn(&Verdict) -> bool| cands.iter().filter(|c| f(&c.verdict)).count();
    println!(
        "policy_chain mix: allow={} defer={} stop={} (per-job cost = time / {BATCH})",
        count(|v| matches!(v, Verdict::Allow)),
        count(|v| matches!(v, Verdict::Defer { .. })),
        count(|v| matches!(v, Verdict::Stop { .. })),
    );
}

fn bench_quiet_hours(c: &mut Criterion) {
    let cfg = sendgate::config::parse("[tenant_defaults]\ntz = \"Europe/Moscow\"\nquiet_hours = { start = \"21:00\", end = \"09:00\" }\n")
        .expect("bench config parses");
    let policy = QuietHours::from_config(&cfg);
    let night = Utc.with_ymd_and_hms(2026, 11, 21, 19, 0, 0).unwrap(); // 22:00 in Moscow
    let day = Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap(); // 12:00 in Moscow
    let job = |to: &str, extra: &str| {
        let src = format!(r#"{{"id":"qh","tenant":"acme","channel":"sms","to":"{to}","text":"x"{extra}}}"#);
        job::parse(src.as_bytes(), now()).expect("bench job parses")
    };
    let cases = [
        ("one_zone_allowed", job("+74951234567", ""), day),
        ("one_zone_deferred", job("+74951234567", ""), night),
        // +1 800: 42 zones, deferred to the one and a half hours they share.
        ("42_zones_deferred", job("+18005550100", ""), Utc.with_ymd_and_hms(2026, 11, 21, 14, 0, 0).unwrap()),
        // +7 mobile, 16 zones sharing no 10:00-20:00: searched for a day, then the tenant's zone.
        ("16_zones_fallback", job("+79161234567", r#","quiet_hours":{"start":"20:00","end":"10:00"}"#), night),
    ];
    let mut g = c.benchmark_group("quiet_hours");
    g.throughput(Throughput::Elements(1));
    for (name, job, at) in &cases {
        println!("quiet_hours/{name}: {:?}", policy.decide(job, *at));
        g.bench_function(*name, |b| b.iter(|| policy.decide(black_box(job), *at)));
    }
    g.finish();
}

criterion_group!(benches, bench_parse, bench_encode, bench_receipt, bench_policy_chain, bench_quiet_hours);
criterion_main!(benches);
