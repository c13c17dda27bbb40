//! Builds the running gateway from a validated [`Config`] and owns its shutdown.
//!
//! ```text
//! per signal with a pipeline:   Ingest channel ─► SignalPipeline task ─► FanOut
//! per (signal, exporter):       Target ─► branch (Batcher ─► MemoryQueue ─► Sender workers)
//! per exporter:                 one CircuitBreaker, shared by its workers of every signal
//! traces with spanmetrics:      one more Target ─► SpanMetricsConnector ─► metrics Ingest
//! exporters are looked up by id in the config's registry, never by parsing kind strings.
//! receivers (gRPC, HTTP) and the admin listener are bound before anything is reported ready.
//! ```
//!
//! # Shutdown
//! [`Gateway::shutdown`] stops the receivers (in-flight requests finish),
//! which drops every `Ingest` handle; the signal tasks then end, the
//! batchers flush and close their queues, and the workers drain them. If
//! draining takes longer than `service.shutdown_timeout`, retries are cut
//! short and what is left is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::budget::ItemBudget;
use crate::config::Config;
use crate::model::Signal;
use crate::queue::breaker::CircuitBreaker;
use crate::queue::disk::{LogSettings, StdFs};
use crate::queue::retry::RetryPolicy;
use crate::queue::DiskQueue;
use crate::receiver::grpc::GrpcReceiver;
use crate::receiver::http::HttpReceiver;
use crate::receiver::server::Shutdown;
use crate::settings::delivery::{QueueStorage, SendingQueueConfig};
use crate::telemetry::metrics::{
    QUEUE_CAPACITY, QUEUE_ITEMS, RECEIVER_INFLIGHT_BYTES, RECEIVER_INFLIGHT_CAPACITY,
};
use crate::telemetry::{metrics_handle, AdminServer, Readiness, ReadinessCheck};

use crate::pipeline::branch::{spawn_branch, BranchSettings, BranchTasks};
use crate::pipeline::fanout::{Routing, Slot};
use crate::pipeline::{
    spawn_sharded_stage, spawn_stage, BatchStage, Downstream, FanOut, Ingest, SignalPipeline,
    Submission,
};
use crate::redaction::Redactor;
use crate::sampling::sampler::split_by_shard;
use crate::sampling::{TailSampler, TailSamplingConfig};
use crate::spanmetrics::{SpanMetricsConnector, CONNECTOR_BUDGET};
use crate::tenancy::Tenants;

/// Submissions waiting for a signal task; beyond this, receivers answer retryable.
const SIGNAL_CHANNEL: usize = 64;

/// Spans the tail sampler may hold (its fan-out budget): room for
/// `num_traces` traces of 64 spans, at least a million spans.
fn sampling_budget(config: &TailSamplingConfig) -> u64 {
    (config.num_traces as u64).saturating_mul(64).max(1 << 20)
}

/// The slots (targets of `signal`, by exporter id) each route sends to;
/// batches without a route go to the pipeline's own exporters.
fn routing(config: &Config, signal: Signal, slots: &HashMap<&str, Slot>) -> Routing {
    let pick = |wanted: &[String]| -> Vec<Slot> {
        wanted
            .iter()
            .filter_map(|id| slots.get(id.as_str()).cloned())
            .collect()
    };
    let default = config
        .pipelines
        .get(signal)
        .map(|p| pick(&p.exporters))
        .unwrap_or_default();
    let routes: HashMap<Arc<str>, Vec<Slot>> = config
        .routes
        .iter()
        .map(|route| {
            (
                Arc::from(route.name.as_str()),
                pick(route.exporters_for(signal)),
            )
        })
        .collect();
    Routing { default, routes }
}

/// After the drain deadline: how long export attempts in flight may still take before they are cut.
pub const FORCED_STOP: Duration = Duration::from_secs(2);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("exporter {id}")]
    Exporter {
        id: String,
        #[source]
        source: crate::exporter::BuildError,
    },
    #[error("tail sampling")]
    Sampling(#[source] crate::sampling::policy::PolicyError),
    #[error("redaction")]
    Redaction(#[source] crate::redaction::RedactionError),
    #[error("tenancy")]
    Tenancy(#[source] crate::tenancy::TenancyError),
    #[error("exporter {id}: an endpoint with {{tenant}} needs [tenancy]")]
    PerTenantWithoutTenancy { id: String },
    #[error("pipeline {signal} names unknown exporter {id}")]
    UnknownExporter { signal: Signal, id: String },
    #[error("receiver")]
    Receiver(#[from] crate::receiver::error::ReceiveError),
    #[error("admin listener")]
    Admin(#[from] crate::telemetry::admin::AdminError),
    #[error("exporter {id}: disk queue")]
    DiskQueue {
        id: String,
        #[source]
        source: crate::queue::disk::LogError,
    },
    #[error("[storage] directory {directory}: the disk queues may hold {needed} bytes but only {available} are free; free space or lower max_bytes")]
    DiskSpace {
        directory: String,
        needed: u64,
        available: u64,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    stop_receiving: CancellationToken,
    abort_export: CancellationToken,
    stop_admin: CancellationToken,
    receivers: JoinSet<()>,
    /// Signal tasks (and the timed stages they feed).
    pipelines: JoinSet<()>,
    /// Batchers and partition routers.
    batchers: JoinSet<()>,
    workers: JoinSet<()>,
    admin: JoinSet<()>,
    readiness: Readiness,
    shutdown_timeout: Duration,
}

impl Gateway {
    /// Builds every stage, binds every listener and starts serving.
    ///
    /// # Errors
    /// [`StartError`] when an exporter cannot be built or a port cannot be bound.
    pub async fn start(config: &Config) -> Result<Gateway, StartError> {
        metrics_handle();
        let receiver_config = &config.receivers.otlp;
        let retry_after = receiver_config.retry_after.get();

        let mut queues = Vec::new();
        // One circuit breaker per exporter id (per tenant for per-tenant exporters), shared
        // by the branches of every signal that sends to it: they reach the same backend.
        let mut breakers: HashMap<String, Arc<CircuitBreaker>> = HashMap::new();
        let mut tasks = BranchTasks::default();
        // Every disk queue's segments, against `[storage] max_bytes`.
        let disk_budget = ItemBudget::new(config.storage.max_bytes.get());
        let mut disk_needed = 0u64;
        let mut disk_checks: Vec<Arc<dyn ReadinessCheck>> = Vec::new();
        let mut pipelines = JoinSet::new();
        let abort_export = CancellationToken::new();
        let mut senders: [Option<mpsc::Sender<Submission>>; 3] = [None, None, None];
        let mut inputs: [Option<mpsc::Receiver<Submission>>; 3] = [None, None, None];
        // Every pipeline's channel first: a connector feeds a pipeline built after its own.
        for (slot, signal) in Signal::ALL.into_iter().enumerate() {
            if config.pipelines.get(signal).is_some() {
                let (tx, rx) = mpsc::channel(SIGNAL_CHANNEL);
                senders[slot] = Some(tx);
                inputs[slot] = Some(rx);
            }
        }

        let tenants = match &config.tenancy {
            Some(tenancy) => Some(Arc::new(
                Tenants::new(tenancy, &config.tenants, &config.routes)
                    .map_err(StartError::Tenancy)?,
            )),
            None => None,
        };
        for (slot, signal) in Signal::ALL.into_iter().enumerate() {
            if config.pipelines.get(signal).is_none() {
                continue;
            }
            let exporter_ids = config.signal_exporters(signal);
            let mut targets = Vec::new();
            // Where each exporter id's targets are: one, or one per listed tenant.
            let mut slots: HashMap<&str, Slot> = HashMap::new();
            for id in &exporter_ids {
                let entry = config
                    .exporter(id)
                    .ok_or_else(|| StartError::UnknownExporter {
                        signal,
                        id: id.clone(),
                    })?;
                let built = |tenant: Option<&str>| {
                    match tenant {
                        Some(tenant) => entry.config.build_for_tenant(id, signal, tenant),
                        None => entry.config.build(id, signal),
                    }
                    .map_err(|source| StartError::Exporter {
                        id: id.clone(),
                        source,
                    })
                };
                let retry = entry
                    .config
                    .retry_on_failure()
                    .map_or_else(RetryPolicy::disabled, RetryPolicy::from_config);
                let breaker_config = entry.config.circuit_breaker();
                let mut spawn = |label: &str, exporter| -> Result<usize, StartError> {
                    let breaker = breaker_config.enabled.then(|| {
                        breakers
                            .entry(label.to_owned())
                            .or_insert_with(|| Arc::new(CircuitBreaker::new(label, breaker_config)))
                            .clone()
                    });
                    let queue = entry.config.sending_queue();
                    let disk = match queue.storage {
                        QueueStorage::Memory => None,
                        QueueStorage::Disk => {
                            let (disk, _recovery) = open_disk_queue(
                                config,
                                (label, signal),
                                queue,
                                &disk_budget,
                                &abort_export,
                            )?;
                            disk_needed = disk_needed.saturating_add(queue.disk.max_bytes.get());
                            disk_checks.push(disk.readiness());
                            Some(disk)
                        }
                    };
                    let settings = BranchSettings {
                        id: label,
                        signal,
                        batch: &config.processors.batch,
                        queue,
                        retry: retry.clone(),
                        disk,
                        breaker,
                    };
                    let mut target = spawn_branch(&settings, exporter, &abort_export, &mut tasks);
                    if let Some(tenants) = &tenants {
                        target = target.with_tenant_share(tenants.max_queue_share());
                    }
                    let labels = [
                        ("exporter", label.to_owned()),
                        ("signal", signal.as_str().to_string()),
                    ];
                    gauge!(QUEUE_CAPACITY, &labels).set(target.budget.capacity() as f64);
                    queues.push((format!("{label} ({signal})"), target.budget.clone(), labels));
                    targets.push(target);
                    Ok(targets.len() - 1)
                };
                let slot = if entry.config.per_tenant() {
                    if tenants.is_none() {
                        return Err(StartError::PerTenantWithoutTenancy { id: id.clone() });
                    }
                    // One branch per listed tenant (validation requires unknown tenants refused).
                    let mut by_tenant = HashMap::new();
                    for tenant in config.tenants.keys() {
                        let exporter = built(Some(tenant))?;
                        let index = spawn(&format!("{id}[{tenant}]"), exporter)?;
                        by_tenant.insert(Arc::<str>::from(tenant.as_str()), index);
                    }
                    Slot::PerTenant(Arc::new(by_tenant))
                } else {
                    Slot::Target(spawn(id, built(None)?)?)
                };
                slots.insert(id.as_str(), slot);
            }
            // Span metrics: a connector that sees every span, next to the sampler or the exporters.
            let connector = match (&config.connectors.spanmetrics, signal, &senders[1]) {
                (Some(spanmetrics), Signal::Traces, Some(metrics)) => Some(spawn_stage(
                    SpanMetricsConnector::new(spanmetrics),
                    CONNECTOR_BUDGET,
                    Downstream::Pipeline(Ingest::new(
                        None,
                        Some(metrics.clone()),
                        None,
                        retry_after,
                    )),
                    abort_export.clone(),
                    &mut pipelines,
                )),
                _ => None,
            };
            let sampling = match (&config.processors.tail_sampling, signal) {
                (Some(sampling), Signal::Traces) => Some(sampling),
                _ => None,
            };
            // Without a sampler in front of them, the exporters' fan-out takes the connector too.
            let mut exporter_connector = None;
            if let (None, Some(connector)) = (sampling, &connector) {
                targets.push(connector.clone());
                exporter_connector = Some(Slot::Target(targets.len() - 1));
            }
            let mut exporters = FanOut::new(signal, targets);
            if tenants.is_some() {
                let mut routing = routing(config, signal, &slots);
                if let Some(slot) = exporter_connector {
                    // Every route's batches are counted, whatever exporters the route picks.
                    routing.default.push(slot.clone());
                    for slots in routing.routes.values_mut() {
                        slots.push(slot.clone());
                    }
                }
                exporters = exporters.with_routing(routing);
            }
            let fanout = match (sampling, signal) {
                // The sampler stands in front of the exporters, with its own budget.
                (Some(sampling), Signal::Traces) => {
                    let shard = sampling.for_shard(sampling.shards);
                    let samplers = (0..sampling.shards.max(1))
                        .map(|_| TailSampler::new(&shard))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(StartError::Sampling)?;
                    let stage = spawn_sharded_stage(
                        samplers,
                        split_by_shard,
                        sampling_budget(sampling),
                        Downstream::FanOut(exporters),
                        abort_export.clone(),
                        &mut pipelines,
                    );
                    FanOut::new(signal, connector.into_iter().chain([stage]).collect())
                }
                _ => exporters,
            };
            // Redaction first, so no unmasked value reaches a buffer, queue or exporter.
            let mut stages: Vec<BatchStage> = Vec::new();
            if let Some(redaction) = &config.processors.redaction {
                let redactor = Redactor::new(redaction, signal).map_err(StartError::Redaction)?;
                stages.push(Box::new(redactor));
            }
            let Some(rx) = inputs[slot].take() else {
                continue;
            };
            pipelines.spawn(
                SignalPipeline::new(signal, stages, fanout, retry_after)
                    .with_abort(abort_export.clone())
                    .run(rx),
            );
        }
        let BranchTasks {
            batchers,
            senders: workers,
        } = tasks;
        let [traces, metrics, logs] = senders;
        let ingest = Ingest::new(traces, metrics, logs, retry_after)
            .with_inflight_limit(receiver_config.max_inflight_bytes.get());

        if disk_needed > 0 {
            check_disk_space(config, disk_needed, &disk_budget)?;
        }
        let readiness = Readiness::new(
            queues
                .iter()
                .map(|(name, budget, _)| (name.clone(), budget.clone()))
                .collect(),
            config.admin.ready_queue_high_water,
        );
        for check in disk_checks {
            readiness.add_check(check);
        }
        // /ready fails, with the reason, while a breaker is open.
        for breaker in breakers.into_values() {
            readiness.add_check(breaker);
        }
        let stop_admin = CancellationToken::new();
        let mut admin = JoinSet::new();
        let admin_server = AdminServer::bind(&config.admin.endpoint, readiness.clone()).await?;
        let admin_addr = admin_server.local_addr();
        admin.spawn(admin_server.run(stop_admin.clone()));
        let gauges: Vec<_> = queues
            .into_iter()
            .map(|(_, budget, labels)| (budget, labels))
            .collect();
        let inflight = ingest.inflight().clone();
        gauge!(RECEIVER_INFLIGHT_CAPACITY).set(inflight.capacity() as f64);
        let stop_gauges = stop_admin.clone();
        let tenant_stats = tenants.clone();
        admin.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_gauges.cancelled() => return,
                }
                gauge!(RECEIVER_INFLIGHT_BYTES).set(inflight.used() as f64);
                for (budget, labels) in &gauges {
                    gauge!(QUEUE_ITEMS, labels).set(budget.used() as f64);
                }
                if let Some(tenants) = &tenant_stats {
                    crate::tenancy::stats::promote(tenants);
                }
            }
        });

        let stop_receiving = CancellationToken::new();
        // Connections get a third of the shutdown to finish; queued data drains in the rest.
        let receiver_grace = config.service.shutdown_timeout.get() / 3;
        let mut receivers = JoinSet::new();
        let mut grpc_addr = None;
        let mut http_addr = None;
        if let Some(grpc) = &receiver_config.grpc {
            let receiver =
                GrpcReceiver::bind(grpc, ingest.clone(), retry_after, tenants.clone()).await?;
            grpc_addr = Some(receiver.local_addr());
            receivers.spawn(receiver.run(Shutdown {
                token: stop_receiving.clone(),
                grace: receiver_grace,
            }));
        }
        if let Some(http) = &receiver_config.http {
            let receiver =
                HttpReceiver::bind(http, ingest.clone(), retry_after, tenants.clone()).await?;
            http_addr = Some(receiver.local_addr());
            receivers.spawn(receiver.run(Shutdown {
                token: stop_receiving.clone(),
                grace: receiver_grace,
            }));
        }
        drop(ingest);
        readiness.set_listening();
        tracing::info!(?grpc_addr, ?http_addr, ?admin_addr, "Gateway started.");

        Ok(Gateway {
            grpc_addr,
            http_addr,
            admin_addr,
            stop_receiving,
            abort_export,
            stop_admin,
            receivers,
            pipelines,
            batchers,
            workers,
            admin,
            readiness,
            shutdown_timeout: config.service.shutdown_timeout.get(),
        })
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Stops receiving (connections get a third of `shutdown_timeout` to
    /// finish, then are closed), drains the queues within the rest of
    /// `shutdown_timeout`, stops. Always returns within `shutdown_timeout`
    /// plus [`FORCED_STOP`]. Returns whether everything drained in time.
    pub async fn shutdown(mut self) -> bool {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        self.readiness.set_shutting_down();
        self.stop_receiving.cancel();
        let received = tokio::time::timeout_at(deadline, async {
            while self.receivers.join_next().await.is_some() {}
        })
        .await;
        if received.is_err() {
            self.receivers.abort_all();
        }
        let drain = async {
            while self.pipelines.join_next().await.is_some() {}
            while self.batchers.join_next().await.is_some() {}
            while self.workers.join_next().await.is_some() {}
        };
        let drained = tokio::time::timeout_at(deadline, drain).await.is_ok();
        if !drained {
            tracing::warn!(timeout = ?self.shutdown_timeout, "Drain deadline passed; dropping what is left.");
            self.abort_export.cancel();
            // Retry waits end at once; an attempt in flight gets a moment, then is cut.
            let stopped = tokio::time::timeout(FORCED_STOP, async {
                while self.pipelines.join_next().await.is_some() {}
                while self.batchers.join_next().await.is_some() {}
                while self.workers.join_next().await.is_some() {}
            })
            .await;
            if stopped.is_err() {
                self.pipelines.abort_all();
                self.batchers.abort_all();
                self.workers.abort_all();
            }
        }
        self.stop_admin.cancel();
        while self.admin.join_next().await.is_some() {}
        tracing::info!(drained, "Gateway stopped.");
        drained
    }
}

/// Opens the disk queue of exporter `label` for `signal` in its own
/// subdirectory of `[storage] directory`.
fn open_disk_queue(
    config: &Config,
    (label, signal): (&str, Signal),
    queue: &SendingQueueConfig,
    global: &ItemBudget,
    abort: &CancellationToken,
) -> Result<(DiskQueue, crate::queue::disk::Recovery), StartError> {
    let name: String = label
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let dir = config
        .storage
        .directory
        .join(format!("{name}-{}", signal.as_str()));
    let batch = &config.processors.batch;
    let max_items = if batch.send_batch_max_size > 0 {
        batch.send_batch_max_size
    } else {
        batch.send_batch_size.max(1)
    };
    DiskQueue::open(
        Arc::new(StdFs),
        &dir,
        LogSettings {
            segment_bytes: queue.disk.segment_bytes.get(),
        },
        global.share(queue.disk.max_bytes.get()),
        (label, signal),
        max_items,
        abort.clone(),
    )
    .map_err(|source| StartError::DiskQueue {
        id: label.to_owned(),
        source,
    })
}

/// Refuses to start when the filesystem cannot hold what the disk queues may write.
fn check_disk_space(config: &Config, needed: u64, held: &ItemBudget) -> Result<(), StartError> {
    use crate::queue::disk::Fs;
    let directory = &config.storage.directory;
    let needed = needed.min(config.storage.max_bytes.get());
    let free = StdFs.available(directory).unwrap_or(u64::MAX);
    // What the queues hold already counts as room they have.
    let available = free.saturating_add(held.used());
    if available < needed {
        return Err(StartError::DiskSpace {
            directory: directory.display().to_string(),
            needed,
            available,
        });
    }
    Ok(())
}
