//! The worked examples of `docs/architecture.md`, one test each, built from
//! the pipeline core's public contracts: a stage that splits a batch by
//! tenant, a timed stage with its own budget feeding the fan-out, a connector
//! from traces to metrics, a partitioned exporter branch, and an exporter
//! returning a partial outcome.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otlp_gateway::batch::BatchConfig;
use otlp_gateway::config::HumanDuration;
use otlp_gateway::exporter::{ExportError, ExportOutcome, Exporter, Partitioner};
use otlp_gateway::model::regroup;
use otlp_gateway::model::{Batch, Context, Envelope, Signal};
use otlp_gateway::pipeline::branch::{spawn_branch, BranchSettings, BranchTasks};
use otlp_gateway::pipeline::{
    spawn_stage, Downstream, FanOut, Ingest, Refused, SignalPipeline, StageError, Target, Transform,
};
use otlp_gateway::queue::config::{RetryConfig, SendingQueueConfig};
use otlp_gateway::queue::retry::RetryPolicy;
use otlp_gateway::queue::QueuedBatch;
use otlp_gateway::testkit;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- helpers --

/// What a recording exporter was sent, in order.
#[derive(Debug, Default, Clone)]
struct Log(Arc<Mutex<Vec<(Context, Batch)>>>);

impl Log {
    fn push(&self, context: &Context, batch: &Batch) {
        self.0
            .lock()
            .unwrap()
            .push((context.clone(), batch.clone()));
    }
    fn sent(&self) -> Vec<(Context, Batch)> {
        self.0.lock().unwrap().clone()
    }
    fn items(&self) -> u64 {
        self.sent().iter().map(|(_, b)| b.items()).sum()
    }
}

/// Records every batch with its context; never fails.
struct Recording(Log);

impl Exporter for Recording {
    type Request = (Context, Batch);
    fn encode(&self, batch: &Batch, context: &Context) -> Result<Self::Request, ExportError> {
        Ok((context.clone(), batch.clone()))
    }
    async fn send(&self, request: &mut Self::Request) -> Result<ExportOutcome, ExportError> {
        self.0.push(&request.0, &request.1);
        Ok(ExportOutcome::default())
    }
    fn items(&self, request: &Self::Request) -> u64 {
        request.1.items()
    }
}

fn batch_config(size: u64, timeout_ms: u64) -> BatchConfig {
    BatchConfig {
        send_batch_size: size,
        send_batch_max_size: 0,
        timeout: HumanDuration::from_millis(timeout_ms),
    }
}

fn queue_config(queue_size: u64, num_consumers: usize) -> SendingQueueConfig {
    SendingQueueConfig {
        num_consumers,
        queue_size,
        ..SendingQueueConfig::default()
    }
}

fn retry_every(interval_ms: u64) -> RetryPolicy {
    RetryPolicy::from_config(&RetryConfig {
        enabled: true,
        initial_interval: HumanDuration::from_millis(interval_ms),
        randomization_factor: 0.0,
        multiplier: 1.0,
        max_interval: HumanDuration::from_millis(interval_ms),
        max_elapsed_time: HumanDuration::from_secs(600),
    })
}

/// An exporter branch for `exporter` with the given batching and queue.
fn branch<E: Exporter>(
    id: &str,
    signal: Signal,
    exporter: E,
    batch: &BatchConfig,
    queue: &SendingQueueConfig,
    retry: RetryPolicy,
    tasks: &mut BranchTasks,
) -> Target {
    let settings = BranchSettings {
        id,
        signal,
        batch,
        queue,
        retry,
        disk: None,
        breaker: None,
    };
    spawn_branch(
        &settings,
        Arc::new(exporter),
        &CancellationToken::new(),
        tasks,
    )
}

async fn join(mut tasks: BranchTasks) {
    while tasks.batchers.join_next().await.is_some() {}
    while tasks.senders.join_next().await.is_some() {}
}

/// Submits `envelope` through `ingest` and returns the verdict.
async fn submit(ingest: &Ingest, batch: Batch) -> Result<u64, Refused> {
    ingest
        .submit_envelope(Envelope::new(batch))
        .await
        .map(|a| a.rejected_items)
}

fn tenant_of(item: &regroup::ItemRef) -> Option<String> {
    item.span()
        .attribute("tenant.id")
        .and_then(|v| v.as_str().map(str::to_owned))
}

// ------------------------------------- 1. a stage that splits by tenant --

/// Splits each batch by the spans' `tenant.id` and tags each part with its tenant.
struct SplitByTenant;

impl Transform for SplitByTenant {
    type In = Envelope;
    type Out = Envelope;
    fn name(&self) -> &'static str {
        "split_by_tenant"
    }
    fn process(&mut self, input: Envelope, out: &mut Vec<Envelope>) -> Result<(), StageError> {
        for (tenant, batch) in regroup::partition(&input.batch, tenant_of) {
            let context = match tenant {
                Some(tenant) => input.context.clone().with_tenant(tenant),
                None => input.context.clone(),
            };
            out.push(Envelope::with_context(context, batch));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_stage_that_splits_by_tenant_yields_exported_batches_of_one_tenant_each() {
    let log = Log::default();
    let mut tasks = BranchTasks::default();
    let target = branch(
        "recording/all",
        Signal::Traces,
        Recording(log.clone()),
        &batch_config(100_000, 10_000),
        &queue_config(100_000, 4),
        RetryPolicy::disabled(),
        &mut tasks,
    );
    let pipeline = SignalPipeline::new(
        Signal::Traces,
        vec![Box::new(SplitByTenant)],
        FanOut::new(Signal::Traces, vec![target]),
        Duration::from_secs(1),
    );
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(pipeline.run(rx));
    let ingest = Ingest::new(Some(tx), None, None, Duration::from_secs(1));
    for seed in 0..3 {
        submit(&ingest, testkit::batch(Signal::Traces, seed, 512))
            .await
            .unwrap();
    }
    drop(ingest);
    task.await.unwrap();
    join(tasks).await;

    let sent = log.sent();
    assert_eq!(log.items(), 3 * 512, "every span arrives");
    let mut tenants = Vec::new();
    for (context, batch) in &sent {
        let tenant = context.tenant().expect("every batch is tagged").to_owned();
        for item in regroup::split_items(batch) {
            assert_eq!(tenant_of(&item).as_deref(), Some(tenant.as_str()));
        }
        tenants.push(tenant);
    }
    tenants.sort();
    let before = tenants.len();
    tenants.dedup();
    assert_eq!(
        before,
        tenants.len(),
        "the batcher merged each tenant's parts of the 3 requests into one batch"
    );
    assert_eq!(tenants.len(), testkit::TENANTS.len());
}

// ------------------------ 2. a timed stage with its own budget, feeding the fan-out --

/// Holds every input for `wait` after the first, then lets all of it go.
struct HoldFor {
    wait: Duration,
    held: Vec<QueuedBatch>,
    since: Option<Instant>,
}

impl Transform for HoldFor {
    type In = QueuedBatch;
    type Out = Envelope;
    fn name(&self) -> &'static str {
        "hold_for"
    }
    fn process(&mut self, input: QueuedBatch, _out: &mut Vec<Envelope>) -> Result<(), StageError> {
        self.since.get_or_insert_with(Instant::now);
        self.held.push(input);
        Ok(())
    }
    fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + self.wait)
    }
    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Envelope>) {
        self.since = None;
        // Letting go of an input releases its items from the stage's budget.
        out.extend(self.held.drain(..).map(QueuedBatch::into_envelope));
    }
    fn flush(&mut self, out: &mut Vec<Envelope>) {
        self.on_deadline(Instant::now(), out);
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_stage_with_its_own_budget_refuses_when_full_and_feeds_the_fan_out() {
    let log = Log::default();
    let mut tasks = BranchTasks::default();
    let exporter = branch(
        "recording/after_stage",
        Signal::Traces,
        Recording(log.clone()),
        &batch_config(1, 10),
        &queue_config(100_000, 1),
        RetryPolicy::disabled(),
        &mut tasks,
    );
    let mut stages = JoinSet::new();
    let stage = spawn_stage(
        HoldFor {
            wait: Duration::from_secs(10),
            held: Vec::new(),
            since: None,
        },
        1000,
        Downstream::FanOut(FanOut::new(Signal::Traces, vec![exporter])),
        CancellationToken::new(),
        &mut stages,
    );
    let stage_budget = stage.budget.clone();
    let mut pipeline = SignalPipeline::new(
        Signal::Traces,
        Vec::new(),
        FanOut::new(Signal::Traces, vec![stage]),
        Duration::from_secs(3),
    );

    let first = Envelope::new(testkit::batch(Signal::Traces, 1, 512));
    pipeline.process(first).expect("fits the stage's budget");
    let second = Envelope::new(testkit::batch(Signal::Traces, 2, 512));
    assert_eq!(
        pipeline.process(second.clone()),
        Err(Refused::Busy {
            signal: Signal::Traces,
            retry_after: Duration::from_secs(3)
        }),
        "the stage is full: a retryable refusal"
    );
    assert_eq!(stage_budget.used(), 512);

    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        log.items(),
        512,
        "the stage let its data go at its deadline"
    );
    assert_eq!(stage_budget.used(), 0, "and released its budget");
    pipeline.process(second).expect("room again");

    drop(pipeline);
    while stages.join_next().await.is_some() {}
    join(tasks).await;
    assert_eq!(log.items(), 1024, "flushed at shutdown");
}

// ------------------------------------------ 3. a connector from traces to metrics --

/// Counts spans per service and emits them as a `spans` sum into the metrics pipeline.
struct SpanCounter {
    counts: BTreeMap<String, i64>,
    every: Duration,
    since: Option<Instant>,
}

impl SpanCounter {
    fn emit(&mut self, out: &mut Vec<Envelope>) {
        self.since = None;
        if self.counts.is_empty() {
            return;
        }
        let request = ExportMetricsServiceRequest {
            resource_metrics: std::mem::take(&mut self.counts)
                .into_iter()
                .map(|(service, count)| ResourceMetrics {
                    resource: Some(testkit::resource(&service, 0)),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "spans".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    value: Some(number_data_point::Value::AsInt(count)),
                                    time_unix_nano: 1,
                                    ..Default::default()
                                }],
                                aggregation_temporality: 1,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let batch = Batch::decode(Signal::Metrics, request.encode_to_vec().into())
            .expect("valid metrics")
            .batch;
        out.push(Envelope::new(batch));
    }
}

impl Transform for SpanCounter {
    type In = QueuedBatch;
    type Out = Envelope;
    fn name(&self) -> &'static str {
        "span_counter"
    }
    fn process(&mut self, input: QueuedBatch, _out: &mut Vec<Envelope>) -> Result<(), StageError> {
        for item in regroup::split_items(&input.batch) {
            let service = item
                .span()
                .resource()
                .attribute("service.name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *self.counts.entry(service).or_default() += 1;
        }
        self.since.get_or_insert_with(Instant::now);
        Ok(())
    }
    fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + self.every)
    }
    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Envelope>) {
        self.emit(out);
    }
    fn flush(&mut self, out: &mut Vec<Envelope>) {
        self.emit(out);
    }
}

fn metric_sum(batch: &Batch) -> HashMap<String, i64> {
    let request = ExportMetricsServiceRequest::decode(batch.to_bytes()).unwrap();
    let mut sums = HashMap::new();
    for rm in request.resource_metrics {
        let service = rm
            .resource
            .unwrap()
            .attributes
            .into_iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value?.value? {
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => Some(s),
                _ => None,
            })
            .unwrap();
        for m in rm.scope_metrics.into_iter().flat_map(|s| s.metrics) {
            if let Some(metric::Data::Sum(sum)) = m.data {
                for p in sum.data_points {
                    if let Some(number_data_point::Value::AsInt(v)) = p.value {
                        *sums.entry(service.clone()).or_default() += v;
                    }
                }
            }
        }
    }
    sums
}

#[tokio::test(start_paused = true)]
async fn a_connector_turns_traces_into_metrics_of_the_metrics_pipeline() {
    let traces_log = Log::default();
    let metrics_log = Log::default();
    let mut tasks = BranchTasks::default();
    let mut stages = JoinSet::new();

    // The metrics pipeline: its own signal task and exporter.
    let metrics_exporter = branch(
        "recording/metrics",
        Signal::Metrics,
        Recording(metrics_log.clone()),
        &batch_config(1, 10),
        &queue_config(100_000, 1),
        RetryPolicy::disabled(),
        &mut tasks,
    );
    let (metrics_tx, metrics_rx) = mpsc::channel(8);
    let metrics_task = tokio::spawn(
        SignalPipeline::new(
            Signal::Metrics,
            Vec::new(),
            FanOut::new(Signal::Metrics, vec![metrics_exporter]),
            Duration::from_secs(1),
        )
        .run(metrics_rx),
    );
    let metrics_ingest = Ingest::new(None, Some(metrics_tx), None, Duration::from_secs(1));

    // The traces pipeline: an exporter and the connector side by side.
    let traces_exporter = branch(
        "recording/traces",
        Signal::Traces,
        Recording(traces_log.clone()),
        &batch_config(100_000, 10),
        &queue_config(100_000, 1),
        RetryPolicy::disabled(),
        &mut tasks,
    );
    let connector = spawn_stage(
        SpanCounter {
            counts: BTreeMap::new(),
            every: Duration::from_secs(60),
            since: None,
        },
        100_000,
        Downstream::Pipeline(metrics_ingest),
        CancellationToken::new(),
        &mut stages,
    );
    let (traces_tx, traces_rx) = mpsc::channel(8);
    let traces_task = tokio::spawn(
        SignalPipeline::new(
            Signal::Traces,
            Vec::new(),
            FanOut::new(Signal::Traces, vec![traces_exporter, connector]),
            Duration::from_secs(1),
        )
        .run(traces_rx),
    );
    let traces_ingest = Ingest::new(Some(traces_tx), None, None, Duration::from_secs(1));

    let mut expected: HashMap<String, i64> = HashMap::new();
    for seed in 0..2 {
        let body = testkit::encoded_traces(seed, 512);
        let request = ExportTraceServiceRequest::decode(body.clone()).unwrap();
        for rs in &request.resource_spans {
            let service = rs.resource.as_ref().unwrap().attributes[0]
                .value
                .as_ref()
                .and_then(|v| match v.value.as_ref()? {
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                        Some(s.clone())
                    }
                    _ => None,
                })
                .unwrap();
            let spans: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
            *expected.entry(service).or_default() += spans as i64;
        }
        let batch = Batch::decode(Signal::Traces, body).unwrap().batch;
        submit(&traces_ingest, batch).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(61)).await;
    let after_interval: u64 = metrics_log.items();
    assert!(after_interval > 0, "the connector emitted at its interval");

    // Shutdown in flow order: traces, then the connector, then metrics.
    drop(traces_ingest);
    traces_task.await.unwrap();
    while stages.join_next().await.is_some() {}
    metrics_task.await.unwrap();
    join(tasks).await;

    assert_eq!(
        traces_log.items(),
        1024,
        "the traces exporter got every span"
    );
    let mut counted: HashMap<String, i64> = HashMap::new();
    for (_, batch) in metrics_log.sent() {
        assert_eq!(batch.signal(), Signal::Metrics);
        for (service, n) in metric_sum(&batch) {
            *counted.entry(service).or_default() += n;
        }
    }
    assert_eq!(
        counted, expected,
        "one count per service, every span counted once"
    );
}

// ------------------------------------------------ 4. a partitioned exporter branch --

/// Puts each resource in the partition of its `service.name`.
#[derive(Debug)]
struct ByService;

fn service_of(item: &regroup::ItemRef) -> String {
    item.span()
        .resource()
        .attribute("service.name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Partitioner for ByService {
    fn split(&self, envelope: Envelope, partitions: usize) -> Vec<(usize, Envelope)> {
        regroup::partition(&envelope.batch, service_of)
            .into_iter()
            .map(|(service, batch)| {
                let index = service.bytes().map(usize::from).sum::<usize>() % partitions;
                (
                    index,
                    Envelope::with_context(envelope.context.clone(), batch),
                )
            })
            .collect()
    }
}

/// Records span names per service in send order; fails every third attempt
/// retryably, and takes longer for some services, to tempt reordering.
struct Ordered {
    by_service: Arc<Mutex<HashMap<String, Vec<u64>>>>,
    attempts: AtomicU64,
}

impl Exporter for Ordered {
    type Request = Batch;
    fn encode(&self, batch: &Batch, _context: &Context) -> Result<Batch, ExportError> {
        Ok(batch.clone())
    }
    async fn send(&self, request: &mut Batch) -> Result<ExportOutcome, ExportError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(attempt % 7)).await;
        if attempt % 3 == 0 {
            return Err(ExportError::Retryable {
                reason: "try again".into(),
                retry_after: None,
            });
        }
        let mut log = self.by_service.lock().unwrap();
        for item in regroup::split_items(request) {
            let name: u64 = item.span().name().parse().unwrap();
            log.entry(service_of(&item)).or_default().push(name);
        }
        Ok(ExportOutcome::default())
    }
    fn items(&self, request: &Batch) -> u64 {
        request.items()
    }
    fn partitioner(&self) -> Option<Arc<dyn Partitioner>> {
        Some(Arc::new(ByService))
    }
}

/// One request: one resource per service, one span each, named `seq`.
fn sequenced(seq: u64, services: &[&str]) -> Batch {
    let request = ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .map(|service| ResourceSpans {
                resource: Some(testkit::resource(service, 0)),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: [seq as u8 + 1; 16].to_vec(),
                        span_id: [1; 8].to_vec(),
                        name: seq.to_string(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    Batch::decode(Signal::Traces, request.encode_to_vec().into())
        .unwrap()
        .batch
}

#[tokio::test(start_paused = true)]
async fn a_partitioned_branch_keeps_each_keys_order_through_parallel_senders_and_retries() {
    let by_service = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = BranchTasks::default();
    let target = branch(
        "ordered/x",
        Signal::Traces,
        Ordered {
            by_service: by_service.clone(),
            attempts: AtomicU64::new(0),
        },
        &batch_config(2, 1),
        &queue_config(100_000, 4),
        retry_every(5),
        &mut tasks,
    );
    let fanout = FanOut::new(Signal::Traces, vec![target]);
    let services = ["cart", "checkout", "frontend", "payment", "shipping"];
    for seq in 0..60 {
        fanout
            .admit(Envelope::new(sequenced(seq, &services)))
            .unwrap();
        if seq % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(fanout);
    join(tasks).await;

    let by_service = by_service.lock().unwrap();
    assert_eq!(by_service.len(), services.len());
    for (service, seen) in by_service.iter() {
        assert_eq!(
            seen,
            &(0..60).collect::<Vec<u64>>(),
            "{service}: every span once, in order"
        );
    }
}

// ------------------------------------------ 5. an exporter with a partial outcome --

/// Delivers only the first half of a request on its first attempt and asks
/// for the rest to be retried after 1 s; delivers everything after that.
struct HalfFirst {
    log: Log,
    attempts: Arc<AtomicU64>,
}

impl Exporter for HalfFirst {
    type Request = Batch;
    fn encode(&self, batch: &Batch, _context: &Context) -> Result<Batch, ExportError> {
        Ok(batch.clone())
    }
    async fn send(&self, request: &mut Batch) -> Result<ExportOutcome, ExportError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt == 0 {
            let half = request.items() / 2;
            let done = request.split_to(half);
            self.log.push(&Context::default(), &done);
            return Err(ExportError::Partial {
                delivered: done.items(),
                rejected: 0,
                reason: "some items were throttled".into(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        self.log.push(&Context::default(), request);
        Ok(ExportOutcome::default())
    }
    fn items(&self, request: &Batch) -> u64 {
        request.items()
    }
}

#[tokio::test(start_paused = true)]
async fn a_partial_outcome_retries_only_the_rest_and_frees_the_delivered_items_at_once() {
    let log = Log::default();
    let attempts = Arc::new(AtomicU64::new(0));
    let mut tasks = BranchTasks::default();
    let target = branch(
        "half/x",
        Signal::Traces,
        HalfFirst {
            log: log.clone(),
            attempts: attempts.clone(),
        },
        &batch_config(1, 1),
        &queue_config(100_000, 1),
        retry_every(10),
        &mut tasks,
    );
    let budget = target.budget.clone();
    let fanout = FanOut::new(Signal::Traces, vec![target]);
    fanout
        .admit(Envelope::new(testkit::batch(Signal::Traces, 3, 512)))
        .unwrap();

    // After the first attempt, during the retry wait (retry_after 1 s).
    while attempts.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "waiting for Retry-After"
    );
    assert_eq!(log.items(), 256, "half delivered");
    assert_eq!(
        budget.used(),
        256,
        "the delivered half no longer holds the budget"
    );

    drop(fanout);
    join(tasks).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let sent = log.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].1.items(), 256, "the retry carried only the rest");
    assert_eq!(budget.used(), 0);
    let span_ids = |batch: &Batch| -> Vec<Option<[u8; 8]>> {
        regroup::split_items(batch)
            .map(|item| item.span().span_id())
            .collect()
    };
    let mut delivered = span_ids(&sent[0].1);
    delivered.extend(span_ids(&sent[1].1));
    assert!(
        delivered == span_ids(&testkit::batch(Signal::Traces, 3, 512)),
        "each span exactly once, in order"
    );
}
