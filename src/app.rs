//! Builds the daemon from a `Config`, runs its tasks, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::admin::{Admin, CampaignAdmin, WhatsappAdmin};
use crate::api::webhooks::WebhookEvents;
use crate::api::{self as http, Api, Ingest};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::pipeline::{completer, worker, CompleterCtx, DrainHandle, Intake, Reporter, WorkerCtx};
use crate::policy::pace::Pace;
use crate::policy::{Chain, RateLimit, WhatsappTier};
use crate::provider::{self, BuildDeps, EmbeddedApi};
use crate::provider_sim::{ProviderSim, ProviderSimHandle, SimMode};
use crate::receipt::correlate::Correlator;
use crate::receipt::deadlines::Sweep;
use crate::receipt::inbound::InboundOut;
use crate::receipt::opt_out::StopReplies;
use crate::route::Router;
use crate::scheduler::Scheduler;
use crate::sink::jsonl::JsonlSink;
use crate::sink::kafka::{KafkaProducer, KafkaSink, ReportsTopic};
use crate::sink::ledger::Ledger;
use crate::sink::Sink;
use crate::smsc_sim::{SimHandle, SmscSim};
use crate::source::kafka::{KafkaSource, SourceDeps};
use crate::store::{MemoryStore, RedisStore, Store};

/// How the daemon gets its outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `sendgate dev`: in-memory store, embedded SMSC simulator for `embedded-sim` providers.
    Dev,
    /// `sendgate run`: the deployed daemon.
    Run,
}

pub struct App {
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    /// The embedded simulator, in dev mode.
    pub sim: Option<SimHandle>,
    /// The embedded provider simulators, in dev mode, by the provider each serves.
    pub provider_sims: Vec<(String, ProviderSimHandle)>,
    drain_timeout: Duration,
    stop_intake: CancellationToken,
    stop_rest: CancellationToken,
    drain: DrainHandle,
    router: Arc<Router>,
    reporter: Arc<Reporter>,
    kafka_source: Option<Arc<KafkaSource>>,
    redis: Option<Arc<RedisStore>>,
    ingest_tasks: Vec<JoinHandle<()>>,
    pipeline_tasks: Vec<JoinHandle<()>>,
    rest_tasks: Vec<JoinHandle<()>>,
}

/// What shutdown could not finish by its deadline.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub in_flight: usize,
    pub awaiting_receipts: usize,
}

impl App {
    pub async fn start(cfg: Config, mode: Mode) -> anyhow::Result<Self> {
        Self::start_with_clock(cfg, mode, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(cfg: Config, mode: Mode, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        crate::telemetry::prometheus();
        let redis = match &cfg.redis {
            Some(r) => Some(RedisStore::connect(r).await.context("redis")?),
            None => None,
        };
        let store: Arc<dyn Store> = match &redis {
            Some(r) => r.clone(),
            None => Arc::new(MemoryStore::new()),
        };
        let pace = Arc::new(Pace::from_config(&cfg, store.clone()));
        // Read before anything is started: a bad token file fails fast.
        let admin = match &cfg.admin {
            Some(a) => Some(
                Admin::new(a, store.clone())?
                    .with_whatsapp(WhatsappAdmin { tier: WhatsappTier::new(store.clone(), &cfg.whatsapp), clock: clock.clone() })
                    .with_campaigns(CampaignAdmin { pace: pace.clone(), speeds: cfg.rate_limits.campaigns.clone(), clock: clock.clone() }),
            ),
            None => None,
        };
        // A claim held by a live instance is looked at again once its heartbeat could lapse.
        let busy_recheck = cfg.redis.as_ref().map_or(Duration::from_secs(10), |r| r.heartbeat_ttl);
        let producer = match &cfg.kafka {
            Some(k) => Some(KafkaProducer::new(k).context("kafka")?),
            None => None,
        };
        // Reports go to the partition their job id names, so a final can be looked for there
        // after its publisher died (sink::ledger).
        let reports_topic = match (&cfg.kafka, &producer) {
            (Some(k), Some(p)) => Some(ReportsTopic::new(p.clone(), &k.reports_topic)),
            _ => None,
        };
        let sink: Arc<dyn Sink> = match (&reports_topic, &producer) {
            (Some(t), Some(p)) => Arc::new(KafkaSink::new(p.clone(), t.clone())),
            _ => Arc::new(JsonlSink::open(cfg.reports.stdout, cfg.reports.file.clone()).await.context("reports.file")?),
        };
        let ledger = match (&cfg.kafka, &reports_topic) {
            (Some(k), Some(t)) => Some(Arc::new(Ledger::new(k, t.clone()))),
            _ => None,
        };
        let reporter = Arc::new(Reporter::new(sink, store.clone(), cfg.server.job_history_ttl));

        let sim = if mode == Mode::Dev && needs_sim(&cfg) {
            Some(SmscSim::start(cfg.dev.smsc_sim.clone()).await.context("starting the embedded SMSC simulator")?)
        } else {
            None
        };

        // Bound before the provider simulators start: they push statuses to this address, and
        // what they push before the API serves waits in the listen backlog.
        let api_listener = http::bind(cfg.server.listen).await.context("server.listen")?;
        let metrics_listener = http::bind(cfg.server.metrics_listen).await.context("server.metrics_listen")?;
        let api_addr = api_listener.local_addr()?;
        let metrics_addr = metrics_listener.local_addr()?;
        let provider_sims = if mode == Mode::Dev { start_provider_sims(&cfg, api_addr).await? } else { Vec::new() };

        let (events_tx, events_rx) = mpsc::channel(65_536);
        let deps = BuildDeps {
            events: events_tx.clone(),
            clock: clock.clone(),
            store: store.clone(),
            embedded_sim: sim.as_ref().map(SimHandle::local_addr),
            provider_sims: provider_sims.iter().map(|(name, _, api)| (name.clone(), api.clone())).collect(),
        };
        let provider_sims: Vec<(String, ProviderSimHandle)> = provider_sims.into_iter().map(|(name, sim, _)| (name, sim)).collect();
        let providers = provider::build_all(&cfg.providers, &deps)?;
        drop(deps);
        // The deadline sweep feeds early receipts kept in the store back to the correlator.
        let early_tx = events_tx.clone();
        drop(events_tx);
        let webhook_events = WebhookEvents(early_tx.downgrade());
        let reads = providers.iter().filter_map(|p| Some((p.name().to_owned(), p.read_window()?))).collect();
        let router = Arc::new(Router::new(providers).with_senders(crate::policy::SenderRegistry::from_config(&cfg)));

        let (intake, intake_rx) = Intake::new(cfg.pipeline.max_in_flight);
        let chain = Chain::from_config(&cfg, store.clone(), ledger.clone(), busy_recheck);
        let (completions_tx, completions_rx) = mpsc::channel(cfg.pipeline.max_in_flight.max(1));
        let untracked = Arc::new(crate::pipeline::Untracked::new());
        let worker_task = tokio::spawn(worker(
            WorkerCtx {
                clock: clock.clone(),
                chain,
                store: store.clone(),
                reporter: reporter.clone(),
                router: router.clone(),
                completions: completions_tx,
                batch_size: cfg.pipeline.batch_size,
                // Not in the chain: it needs the routed provider. See policy::rate_limit.
                rate_limit: Arc::new(RateLimit::new(store.clone(), cfg.rate_limits.clone())),
                pace: pace.clone(),
                claim_ttl: cfg.pipeline.dedup_ttl,
                cascades: Arc::new(crate::cascade::Cascades::from_config(&cfg)),
                untracked: untracked.clone(),
            },
            intake_rx,
        ));
        let completer_task = tokio::spawn(completer(
            CompleterCtx {
                clock: clock.clone(),
                store: store.clone(),
                reporter: reporter.clone(),
                router: router.clone(),
                retry_backoff: cfg.pipeline.retry_backoff,
                mapping_slack: Duration::from_secs(3600),
                claim_ttl: cfg.pipeline.dedup_ttl,
                prices: cfg.prices.clone(),
                untracked: untracked.clone(),
            },
            completions_rx,
        ));
        let pipeline_tasks = vec![worker_task, completer_task];

        let stop_intake = CancellationToken::new();
        let stop_rest = CancellationToken::new();
        let mut rest_tasks = Vec::new();
        let stop_replies = Arc::new(StopReplies::new(&cfg.opt_out, store.clone()));
        let inbound = Arc::new(match &cfg.kafka {
            Some(k) => InboundOut::Kafka {
                producer: KafkaProducer::with_message_timeout(k, Some(k.inbound_timeout)).context("kafka (inbound)")?,
                topic: k.inbound_topic.clone(),
                timeout: k.inbound_timeout,
            },
            None => InboundOut::Log,
        });
        rest_tasks.push(tokio::spawn(
            Correlator { clock: clock.clone(), store: store.clone(), reporter: reporter.clone(), stop_replies, inbound, reads, untracked }.run(events_rx),
        ));
        let late_window = router.providers().iter().map(|p| p.receipt_timeout()).max().unwrap_or(Duration::from_secs(3600));
        let sweep = Sweep {
            clock: clock.clone(),
            store: store.clone(),
            reporter: reporter.clone(),
            ledger: ledger.clone(),
            every: Duration::from_secs(1),
            receipts: early_tx,
            late_window,
        };
        rest_tasks.push(tokio::spawn(sweep.run(stop_rest.clone())));
        if reports_topic.is_some() {
            rest_tasks.push(tokio::spawn(checkpoint_offsets(clock.clone(), store.clone(), reporter.clone(), stop_rest.clone())));
        }

        let mut ingest_tasks = Vec::new();
        ingest_tasks.push(tokio::spawn(
            Scheduler {
                clock: clock.clone(),
                store: store.clone(),
                intake: intake.clone(),
                tick: cfg.pipeline.scheduler_tick,
                lease: cfg.pipeline.scheduler_lease,
                batch: cfg.pipeline.batch_size,
                claim_ttl: cfg.pipeline.dedup_ttl,
            }
            .run(stop_intake.clone()),
        ));
        let drain = intake.drain_handle();
        let kafka_source = match (&cfg.kafka, &producer) {
            (Some(k), Some(_)) => {
                let source = Arc::new(KafkaSource::new(k).context("kafka consumer")?);
                let deps = SourceDeps {
                    intake: intake.clone(),
                    clock: clock.clone(),
                    store: store.clone(),
                    reporter: reporter.clone(),
                    dlq: KafkaProducer::with_message_timeout(k, Some(k.inbound_timeout)).context("kafka (dlq)")?,
                    dedup_ttl: cfg.pipeline.dedup_ttl,
                    ledger: ledger.clone(),
                };
                let (s, stop) = (source.clone(), stop_intake.clone());
                ingest_tasks.push(tokio::spawn(async move { s.run(deps, stop).await }));
                Some(source)
            }
            _ => None,
        };
        let ingest = match (&cfg.kafka, &producer) {
            (Some(k), Some(p)) => Ingest::Kafka { producer: p.clone(), topic: k.jobs_topic.clone() },
            _ => Ingest::Embedded(intake),
        };
        let api = Arc::new(Api {
            ingest,
            store: store.clone(),
            router: router.clone(),
            clock,
            max_body_bytes: cfg.server.max_body_bytes,
            admin,
            webhook_events: Some(webhook_events),
        });
        ingest_tasks
            .push(tokio::spawn(crate::api::listener::serve_with(api_listener, (&cfg.server).into(), stop_intake.clone(), move |req| api.clone().handle(req))));
        rest_tasks.push(tokio::spawn(http::serve_metrics(metrics_listener, stop_rest.clone())));

        Ok(Self {
            api_addr,
            metrics_addr,
            store,
            sim,
            provider_sims,
            drain_timeout: cfg.server.drain_timeout,
            stop_intake,
            stop_rest,
            drain,
            router,
            reporter,
            kafka_source,
            redis,
            ingest_tasks,
            pipeline_tasks,
            rest_tasks,
        })
    }

    /// Whether every configured channel has a provider connected.
    pub fn providers_ready(&self) -> bool {
        self.router.channels_down().is_empty()
    }

    /// Stop reading → finish in-flight work by the drain deadline → unbind → flush. Returns
    /// what was still unfinished at the deadline (also logged).
    pub async fn shutdown(self) -> Leftovers {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        info!(timeout = ?self.drain_timeout, "shutting down: intake closed, draining in-flight jobs");
        self.stop_intake.cancel();
        for t in self.ingest_tasks {
            let _ = t.await;
        }
        let mut left = Leftovers::default();
        if tokio::time::timeout_at(deadline, self.drain.drained()).await.is_err() {
            left.in_flight = self.drain.in_flight();
        }
        if let Some(source) = &self.kafka_source {
            // Every job that reached a durable point has its offset committed before we leave
            // the group; the rest is re-read by the partitions' next owner.
            let s = source.clone();
            let _ = tokio::task::spawn_blocking(move || s.finish()).await;
        }
        // In memory nothing survives us: wait for outstanding receipts while the deadline allows,
        // then end the rest `unknown`, so that even here every job gets its one final event.
        while let Some(n) = self.store.awaiting_receipts().filter(|n| *n > 0) {
            if tokio::time::Instant::now() >= deadline {
                left.awaiting_receipts = n;
                let now = chrono::Utc::now();
                let max = chrono::DateTime::<chrono::Utc>::MAX_UTC;
                if let Ok(jobs) = self.store.take_overdue(max, usize::MAX, max).await {
                    // Only the undecided come back: a decided final is being published already,
                    // and a job whose `accepted` is still being published stays (its `unknown`
                    // could go out first; counted in `awaiting_receipts`).
                    let reports: Vec<_> = jobs
                        .iter()
                        .filter_map(|j| j.sent.as_ref())
                        .map(|j| {
                            j.report(crate::report::EventKind::Unknown, now)
                                .with_error(None, "shut down before the receipt came; in-memory state does not outlive the process")
                        })
                        .collect();
                    self.reporter.emit(&reports).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for p in self.router.providers() {
            p.shutdown().await;
        }
        for t in self.pipeline_tasks {
            if left.in_flight == 0 {
                let _ = t.await;
            } else {
                t.abort();
            }
        }
        self.stop_rest.cancel();
        // The correlator ends once the binds are gone; give it what is left of the deadline
        // (at least a few seconds) to publish the finals of receipts that came in meanwhile.
        let rest_deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(5));
        for t in self.rest_tasks {
            if tokio::time::timeout_at(rest_deadline, t).await.is_err() {
                warn!("a receipt or metrics task was still running at the drain deadline");
            }
        }
        self.reporter.flush().await;
        if let Some(r) = &self.redis {
            // Our claims are all settled or named above; let others take what is left at once.
            r.shutdown().await;
        }
        if let Some(sim) = &self.sim {
            sim.shutdown().await;
        }
        for (_, sim) in &self.provider_sims {
            sim.shutdown().await;
        }
        if left.in_flight > 0 || left.awaiting_receipts > 0 {
            warn!(in_flight = left.in_flight, awaiting_receipts = left.awaiting_receipts, "drain deadline reached with work unfinished");
        } else {
            info!("shutdown complete: nothing left in flight");
        }
        left
    }
}

/// One provider simulator per provider whose `base_url` is `embedded-sim`, from
/// `[dev.provider_sim]`, on a loopback port, with a token and app secret made up for this run,
/// pushing statuses to this daemon's own webhook for that provider.
async fn start_provider_sims(cfg: &Config, api_addr: SocketAddr) -> anyhow::Result<Vec<(String, ProviderSimHandle, EmbeddedApi)>> {
    let mut sims = Vec::new();
    for (name, p) in &cfg.providers {
        let Some(mode) = p.kind().wants_provider_sim() else { continue };
        let mode = SimMode::named(mode).with_context(|| format!("providers.{name}: no provider simulator of mode {mode:?}"))?;
        let secret = |what: &str| format!("dev-{what}-{:032x}", rand::random::<u128>());
        let mut sim_cfg = cfg.dev.provider_sim.clone();
        sim_cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        sim_cfg.token = Some(mode.made_up_token(&secret("token")));
        sim_cfg.app_secret = secret("app-secret");
        // A provider name is [A-Za-z0-9_.-]: nothing in it needs escaping in a path.
        sim_cfg.webhook_url = Some(format!("http://{api_addr}/v1/webhooks/{name}"));
        let api = EmbeddedApi { base_url: String::new(), token: sim_cfg.token.clone().unwrap_or_default(), app_secret: sim_cfg.app_secret.clone() };
        let sim = ProviderSim::start(mode, sim_cfg)
            .await
            .with_context(|| format!("starting the embedded provider simulator for providers.{name} (dev.provider_sim)"))?;
        sims.push((name.clone(), sim.clone(), EmbeddedApi { base_url: sim.base_url(), ..api }));
    }
    Ok(sims)
}

fn needs_sim(cfg: &Config) -> bool {
    cfg.providers.values().any(|p| p.kind().wants_embedded_sim())
}

/// Every few seconds, where the reports sink has written up to: a read-back of a dead
/// instance's decisions starts at the checkpoint before them (sink::ledger).
async fn checkpoint_offsets(clock: Arc<dyn crate::clock::Clock>, store: Arc<dyn Store>, reporter: Arc<Reporter>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = store.checkpoint_offsets(&reporter.delivered_offsets(), clock.now()).await {
            tracing::warn!(error = %e, "cannot checkpoint the reports topic's offsets");
        }
    }
}
