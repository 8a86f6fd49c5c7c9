//! `GET /readyz`: the store, the Kafka broker (when configured) and a provider per channel;
//! every provider's status for people. (`/healthz` answers from the router in `mod.rs`.)

use hyper::StatusCode;
use serde_json::{json, Value};

use super::{json_resp, Api, Ingest, Resp};

/// How long `/readyz` waits for a Kafka broker's metadata: below the probe timeouts of
/// load balancers and orchestrators (typically 1-5 s), above a healthy broker's answer.
const KAFKA_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);

impl Api {
    pub(super) async fn readyz(&self) -> Resp {
        let mut problems = Vec::new();
        // With Kafka, its broker must answer too: the jobs topic's metadata, through the
        // producer POST /v1/jobs publishes with (reports and DLQ records share it).
        let kafka = async {
            match &self.ingest {
                Ingest::Kafka { producer, topic } => producer.reachable(topic, KAFKA_PROBE_TIMEOUT).await.err(),
                Ingest::Embedded(_) => None,
            }
        };
        let (store, kafka) = tokio::join!(self.store.ping(), kafka);
        if let Err(e) = store {
            problems.push(format!("store: {e}"));
        }
        if let Some(e) = kafka {
            problems.push(format!("kafka: {e}"));
        }
        for c in self.router.channels_down() {
            problems.push(format!("channel {c}: no provider connected"));
        }
        // Every provider's binds, up or not, for people: a provider that is down while another
        // serves its channels shows here without making the instance unready.
        let providers: serde_json::Map<String, Value> = self.router.providers().iter().map(|p| (p.name().to_owned(), json!(p.status()))).collect();
        if problems.is_empty() {
            json_resp(StatusCode::OK, json!({"status": "ready", "providers": providers}))
        } else {
            json_resp(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not ready", "problems": problems, "providers": providers}))
        }
    }
}
