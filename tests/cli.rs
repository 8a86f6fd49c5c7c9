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
