//! Shared helpers for the integration tests: start the daemon in-process on loopback ports,
//! talk HTTP to it, read its JSONL reports.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use sendgate::app::{App, Mode};
use sendgate::clock::ManualClock;
use sendgate::config::{self, Config};
use sendgate::report::Report;
use serde_json::Value;

pub struct Harness {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub reports_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// The instant tests run at: the CONTRACT.md example job is valid then.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 6, 30, 0).unwrap()
}

/// The dev config on free ports, reports to a temp file, simulator recording messages.
pub fn dev_config(dir: &std::path::Path) -> Config {
    let mut cfg = config::parse(config::DEV_TOML).expect("dev config parses");
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.metrics_listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.drain_timeout = Duration::from_secs(10);
    cfg.reports.stdout = false;
    cfg.reports.file = Some(dir.join("reports.jsonl"));
    cfg.dev.smsc_sim.record_messages = true;
    cfg.dev.smsc_sim.receipt_delay = Duration::from_millis(20);
    cfg.pipeline.scheduler_tick = Duration::from_millis(20);
    cfg
}

pub async fn start(tweak: impl FnOnce(&mut Config)) -> Harness {
    // `RUST_LOG=debug cargo test ... -- --nocapture` shows the daemon's logs.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = dev_config(dir.path());
    tweak(&mut cfg);
    let reports_path = cfg.reports.file.clone().unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let app = App::start_with_clock(cfg, Mode::Dev, clock.clone()).await.expect("app starts");
    let h = Harness { app, clock, reports_path, _dir: dir };
    h.wait_until("providers bound", || h.app.providers_ready()).await;
    h
}

/// The dev daemon with its chat simulators answering statuses after 20 ms and recording every
/// request, failed sends retried after 5 s, as `tweak` changes it.
pub async fn start_with_chats(tweak: impl FnOnce(&mut Config)) -> Harness {
    start(|cfg| {
        cfg.dev.provider_sim.status_delay = Duration::from_millis(20);
        cfg.dev.provider_sim.record_messages = true;
        cfg.pipeline.retry_backoff = Duration::from_secs(5);
        tweak(cfg);
    })
    .await
}

impl Harness {
    pub fn base(&self) -> String {
        format!("http://{}", self.app.api_addr)
    }

    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> (u16, Value) {
        request(self.app.api_addr, "POST", path, Some(content_type), body.into()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        request(self.app.api_addr, "GET", path, None, Bytes::new()).await
    }

    /// A bodiless request with `authorization: <auth>` when given.
    pub async fn admin(&self, method: &str, path: &str, auth: Option<&str>) -> (u16, hyper::HeaderMap, Value) {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        request_with(self.app.api_addr, method, path, &headers, Bytes::new()).await
    }

    /// Waits (real time, bounded) until the store has `(tenant, channel, recipient)` opted
    /// out or not, as `want` says.
    pub async fn wait_opted_out(&self, entry: (&str, &str, &str), want: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.app.store.opted_out(&[entry]).await.unwrap() != [want] {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {entry:?} opted out = {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every report written so far.
    pub fn reports(&self) -> Vec<Report> {
        let text = std::fs::read_to_string(&self.reports_path).unwrap_or_default();
        complete_lines(&text).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad report line {l}: {e}"))).collect()
    }

    /// Reports grouped by job id, in order.
    pub fn reports_by_job(&self) -> HashMap<String, Vec<Report>> {
        let mut m: HashMap<String, Vec<Report>> = HashMap::new();
        for r in self.reports() {
            m.entry(r.job_id.clone()).or_default().push(r);
        }
        m
    }

    /// Waits (real time, bounded) until every id has a final report; returns the grouping.
    pub async fn wait_final(&self, ids: &[String]) -> HashMap<String, Vec<Report>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let by = self.reports_by_job();
            let missing = ids.iter().filter(|id| !by.get(*id).is_some_and(|rs| rs.iter().any(|r| r.is_final))).count();
            if missing == 0 {
                return by;
            }
            if tokio::time::Instant::now() > deadline {
                for id in ids.iter().filter(|id| !by.get(*id).is_some_and(|rs| rs.iter().any(|r| r.is_final))).take(3) {
                    eprintln!("{id}: {:?}", by.get(id).map(|rs| rs.iter().map(|r| r.event).collect::<Vec<_>>()));
                }
                panic!("{missing} of {} jobs never got a final report", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One HTTP/1.1 request over a fresh loopback connection.
pub async fn request(addr: std::net::SocketAddr, method: &str, path: &str, content_type: Option<&str>, body: Bytes) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = content_type.map(|ct| ("content-type", ct)).into_iter().collect();
    let (status, _, v) = request_with(addr, method, path, &headers, body).await;
    (status, v)
}

/// [`request`] with any headers, answering the response headers too.
pub async fn request_with(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> (u16, hyper::HeaderMap, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Full::new(body)).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, v)
}

/// The lines of a report file that the daemon has finished writing: one being written while
/// the test reads has no newline yet and is left for the next read.
pub fn complete_lines(text: &str) -> std::str::Lines<'_> {
    text[..text.rfind('\n').map_or(0, |i| i + 1)].lines()
}

pub fn finals(rs: &[Report]) -> Vec<&Report> {
    rs.iter().filter(|r| r.is_final).collect()
}
pub mod audit;
pub mod fault_proxy;
pub mod https;
pub mod offsets;
pub mod services;
