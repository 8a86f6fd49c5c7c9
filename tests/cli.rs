//! The `sendgate` binary as an operator runs it: exit codes, `check-config`, and SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sendgate::report::Report;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_sendgate");

#[test]
fn check_config_names_every_bad_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "not an address"
[pipeline]
batch_size = 0
[providers.smsc-a]
kind = "smpp"
address = "127.0.0.1:2775"
system_id = "sendgate"
password = "secret"
window = "sixty-four"
"#,
    )
    .unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["server.listen:", "pipeline.batch_size:", "providers.smsc-a.window:"] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }

    let good = Command::new(BIN).arg("check-config").arg("config/sendgate.example.toml").output().unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stderr));
    let missing = Command::new(BIN).arg("check-config").arg(dir.path().join("nope.toml")).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn sigterm_finishes_in_flight_jobs_unbinds_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The banner names the API address; logs go to stderr with it.
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let log_path = dir.path().join("stderr.log");
    let log_for_thread = log_path.clone();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(log_for_thread).unwrap();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            use std::io::Write;
            let _ = writeln!(log, "{line}");
            if let Some(rest) = line.split("curl -X POST http://").nth(1) {
                let addr = rest.split('/').next().unwrap().to_string();
                let _ = addr_tx.send(addr);
            }
        }
    });
    let addr: std::net::SocketAddr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("banner").parse().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("term-{i}")).collect();
    rt.block_on(async {
        // Wait for the bind, then post and stop at once: many jobs are still in flight.
        let deadline = Instant::now() + Duration::from_secs(20);
        while support::request(addr, "GET", "/readyz", None, Bytes::new()).await.0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let jobs: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"id": id, "tenant": "acme", "channel": "sms", "to": format!("+4915300000{i:03}"), "text": "bye ".repeat(60)}))
            .collect();
        let (status, _) = support::request(addr, "POST", "/v1/jobs", Some("application/json"), serde_json::to_vec(&jobs).unwrap().into()).await;
        assert_eq!(status, 202);
    });
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let lines = reader.join().unwrap();
    let reports: Vec<Report> = lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?}: {e}"))).collect();
    for id in &ids {
        let finals = reports.iter().filter(|r| &r.job_id == id && r.is_final).count();
        assert_eq!(finals, 1, "{id} has {finals} finals");
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("SMPP unbind acknowledged"), "{log}");
    assert!(log.contains("shutdown complete: nothing left in flight"), "{log}");
}

/// The README's first WhatsApp job, against the binary: `sendgate dev` serves `whatsapp` with
/// its embedded Cloud API simulator, whose signed statuses come back through dev's own webhook.
#[test]
fn dev_takes_a_whatsapp_template_job_to_accepted_delivered_read() {
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["dev", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let stderr = child.stderr.take().unwrap();
    let (banner_tx, banner_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = banner_tx.send(line);
        }
    });
    let mut banner = Vec::new();
    let addr: std::net::SocketAddr = loop {
        let line = banner_rx.recv_timeout(Duration::from_secs(30)).expect("banner");
        banner.push(line.clone());
        if let Some(rest) = line.split("curl -X POST http://").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    let sim_line = banner_rx.iter().take(6).find(|l| l.contains("whatsapp simulator for wa: http://127.0.0.1:"));
    assert!(sim_line.is_some(), "the banner names the simulator: {banner:?}");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while support::request(addr, "GET", "/readyz", None, Bytes::new()).await.0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let job = json!({"id": "wa-1", "tenant": "acme", "channel": "whatsapp", "to": "+4915112345678",
            "template": {"name": "order_shipped", "language": "en_US", "params": ["A-1042"]}});
        let (status, answer) = support::request(addr, "POST", "/v1/jobs", Some("application/json"), job.to_string().into()).await;
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(1)), "{answer}");
    });
    let mut events = Vec::new();
    while events.last().map(String::as_str) != Some("read") {
        let line = lines_rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("events so far: {events:?}"));
        let r: Report = serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line {line:?}: {e}"));
        assert_eq!((r.job_id.as_str(), r.provider.as_deref()), ("wa-1", Some("wa")));
        assert!(r.provider_message_id.as_deref().is_some_and(|m| m.starts_with("wamid.")), "{line}");
        events.push(serde_json::to_value(r.event).unwrap().as_str().unwrap().to_owned());
    }
    assert_eq!(events, ["accepted", "delivered", "read"]);
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A child that a failing assertion must not leave running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sendgate provider-sim <mode> --listen 127.0.0.1:0`, its stdout, and the address it printed.
fn spawn_provider_sim(mode: &str) -> (std::process::Child, BufReader<std::process::ChildStdout>, std::net::SocketAddr) {
    let mut child = Command::new(BIN).args(["provider-sim", mode, "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first = String::new();
    // Kept until the child exits: it prints its stats on the way out.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    let addr: std::net::SocketAddr = first.trim().parse().unwrap_or_else(|e| panic!("{first:?}: {e}"));
    (child, stdout, addr)
}

/// SIGTERM; it exits 0 and its last line is its stats.
fn stop_provider_sim(mut child: std::process::Child, mut stdout: BufReader<std::process::ChildStdout>) -> serde_json::Value {
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut last = String::new();
    stdout.read_line(&mut last).unwrap();
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("{last:?}: {e}"))
}

#[test]
fn provider_sim_prints_its_address_and_names_a_bad_flag() {
    let bad = Command::new(BIN).args(["provider-sim", "whatsapp", "--webhook-batch", "0"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("provider_sim.webhook_batch: must be > 0"));
    let (child, stdout, addr) = spawn_provider_sim("whatsapp");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, answer) = rt.block_on(async {
        let body = json!({"messaging_product": "whatsapp", "to": "4915112345678", "type": "text", "text": {"body": "hi"}});
        support::request(addr, "POST", "/v23.0/106540352242922/messages", Some("application/json"), body.to_string().into()).await
    });
    assert_eq!(status, 200, "{answer}");
    assert!(answer["messages"][0]["id"].as_str().is_some_and(|id| id.starts_with("wamid.")), "{answer}");
    let stats = stop_provider_sim(child, stdout);
    assert_eq!(stats["taken"], 1, "{stats}");
}

#[test]
fn provider_sim_telegram_answers_send_message_as_the_bot_api() {
    let (child, stdout, addr) = spawn_provider_sim("telegram");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, answer) = rt.block_on(async {
        let body = json!({"chat_id": 700000001, "text": "hi"});
        support::request(addr, "POST", "/bot123456:dev-token/sendMessage", Some("application/json"), body.to_string().into()).await
    });
    assert_eq!((status, &answer["ok"], &answer["result"]["chat"]["id"]), (200, &json!(true), &json!(700000001)), "{answer}");
    assert!(answer["result"]["message_id"].is_i64(), "{answer}");
    let stats = stop_provider_sim(child, stdout);
    assert_eq!((&stats["taken"], &stats["webhook_posts"]), (&json!(1), &json!(0)), "{stats}");
}

#[test]
fn provider_sim_http_answers_as_the_infobip_example_expects() {
    let (child, stdout, addr) = spawn_provider_sim("http");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, answer) = rt.block_on(async {
        let body = json!({"messages": [{"sender": "DemoCompany", "destinations": [{"to": "4915112345678"}], "content": {"type": "TEXT", "text": "hi"}}]});
        support::request(addr, "POST", "/viber/2/messages", Some("application/json"), body.to_string().into()).await
    });
    assert_eq!((status, &answer["messages"][0]["status"]["name"]), (200, &json!("PENDING_ACCEPTED")), "{answer}");
    assert!(answer["messages"][0]["messageId"].as_str().is_some_and(|id| id.starts_with("ib-")), "{answer}");
    let stats = stop_provider_sim(child, stdout);
    assert_eq!(stats["taken"], 1, "{stats}");
}
