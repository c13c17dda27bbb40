//! Every metric the gateway exports: names, labels and descriptions in one place.
//!
//! Label values are bounded: `signal` (3), `transport` (`grpc`/`http`),
//! `reason` (the constants below), `exporter` (ids from config.toml), `stage`
//! (stage names), `trigger` (`size`/`timeout`/`shutdown`).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

// --- receiver ---
/// Requests received, by `signal`, `transport`, `outcome` (`accepted`, `refused`).
pub const RECEIVER_REQUESTS: &str = "otlp_gateway_receiver_requests_total";
/// Items in well-formed requests, by `signal`, `transport`.
pub const RECEIVER_ITEMS_RECEIVED: &str = "otlp_gateway_receiver_items_received_total";
/// Items acknowledged to the client, by `signal`, `transport`.
pub const RECEIVER_ITEMS_ACCEPTED: &str = "otlp_gateway_receiver_items_accepted_total";
/// Items refused, by `signal`, `transport`, `reason`.
pub const RECEIVER_ITEMS_REFUSED: &str = "otlp_gateway_receiver_items_refused_total";
/// Requests refused before their items could be counted, by `signal`, `transport`, `reason`.
pub const RECEIVER_REQUESTS_REFUSED: &str = "otlp_gateway_receiver_requests_refused_total";
/// Time from request head to response, by `signal`, `transport`.
pub const RECEIVER_REQUEST_DURATION: &str = "otlp_gateway_receiver_request_duration_seconds";
/// Received body size before decompression, by `signal`, `transport`.
pub const RECEIVER_REQUEST_BYTES: &str = "otlp_gateway_receiver_request_bytes";
/// Bytes that requests being read and decoded hold in `max_inflight_bytes`
/// (bodies, decompressed copies, decoded output), refreshed every second.
pub const RECEIVER_INFLIGHT_BYTES: &str = "otlp_gateway_receiver_inflight_bytes";
/// `max_inflight_bytes`.
pub const RECEIVER_INFLIGHT_CAPACITY: &str = "otlp_gateway_receiver_inflight_capacity_bytes";
/// Open client connections, by `transport`.
pub const RECEIVER_CONNECTIONS: &str = "otlp_gateway_receiver_connections";
/// Client connections closed, by `transport` and `reason` (`client`, `error`,
/// `header_timeout`, `idle_timeout`, `evicted`, `limit`, `shutdown`, `shutdown_forced`,
/// `tls_handshake`).
pub const RECEIVER_CONNECTIONS_CLOSED: &str = "otlp_gateway_receiver_connections_closed_total";
/// Failed reloads of a receiver's TLS certificate, key or client CA, by `transport`
/// (the previous certificate stays in use).
pub const RECEIVER_TLS_RELOAD_ERRORS: &str = "otlp_gateway_receiver_tls_reload_errors_total";

// --- pipeline stages ---
pub const STAGE_ITEMS_IN: &str = "otlp_gateway_stage_items_in_total";
pub const STAGE_ITEMS_OUT: &str = "otlp_gateway_stage_items_out_total";
pub const STAGE_ERRORS: &str = "otlp_gateway_stage_errors_total";
/// Items a full stage or connector of a pipeline did not get while another
/// target did, or given up at shutdown, by `stage`, `signal`, `reason`.
pub const STAGE_ITEMS_DROPPED: &str = "otlp_gateway_stage_items_dropped_total";

// --- span metrics ---
/// Series the span metrics connector holds (overflow series not counted).
pub const SPANMETRICS_SERIES: &str = "otlp_gateway_spanmetrics_series";
/// Spans counted in an overflow series because the cardinality limit was reached.
pub const SPANMETRICS_OVERFLOW_SPANS: &str = "otlp_gateway_spanmetrics_overflow_spans_total";

// --- tail sampling ---
/// Traces decided, by `policy` (the one that decided; empty when none matched),
/// `decision` (`keep`/`drop`) and `trigger` (`early`, `decision_wait`,
/// `max_trace_bytes`, `buffer_full`, `shutdown`).
pub const SAMPLING_DECISIONS: &str = "otlp_gateway_sampling_decisions_total";
/// Decisions forced before their time by a bound, by `reason`.
pub const SAMPLING_FORCED: &str = "otlp_gateway_sampling_forced_decisions_total";
/// Spans that arrived after their trace was decided, by the cached `decision`.
pub const SAMPLING_LATE_SPANS: &str = "otlp_gateway_sampling_late_spans_total";
/// Traces waiting for a decision.
pub const SAMPLING_TRACES_HELD: &str = "otlp_gateway_sampling_traces_held";
/// The adaptive baseline's share of ordinary traces, in percent.
pub const SAMPLING_BASELINE_PERCENT: &str = "otlp_gateway_sampling_baseline_percent";

// --- redaction ---
/// Values changed by the redaction stage, by `signal`, `rule` (`pan` for card
/// numbers found in text, `blocked_keys`, `allowed_keys`, or a rule's name)
/// and `action`.
pub const REDACTION_VALUES: &str = "otlp_gateway_redaction_values_total";
/// Items (spans, data points, log records) in batches the redaction stage changed, by `signal`.
pub const REDACTION_BATCH_ITEMS: &str = "otlp_gateway_redaction_changed_batch_items_total";

// --- tenants ---
/// Items per tenant, by `tenant` (the busiest `metrics_max_tenants`, the rest
/// `_other`), `signal` and `outcome` (`accepted`, `over_quota`, `refused`).
pub const TENANT_ITEMS: &str = "otlp_gateway_tenant_items_total";
/// Bytes (decoded protobuf) accepted per tenant, by `tenant`, `signal`.
pub const TENANT_BYTES: &str = "otlp_gateway_tenant_bytes_total";
// Requests refused for their tenant are counted on RECEIVER_REQUESTS_REFUSED by
// `reason` (`unauthenticated`, `permission_denied`, `invalid_tenant`, `over_quota`).

// --- batcher ---
/// Items per flushed batch, by `exporter`, `signal`.
pub const BATCH_ITEMS: &str = "otlp_gateway_batch_items";
/// Flushes, by `exporter`, `signal`, `trigger`.
pub const BATCH_FLUSHES: &str = "otlp_gateway_batch_flushes_total";

// --- queue ---
/// Items held for an exporter (batching, queued and in flight), by `exporter`, `signal`.
pub const QUEUE_ITEMS: &str = "otlp_gateway_queue_items";
/// Capacity of that queue in items, by `exporter`, `signal`.
pub const QUEUE_CAPACITY: &str = "otlp_gateway_queue_capacity_items";
pub const QUEUE_DISK_BYTES: &str = "otlp_gateway_queue_disk_bytes";
pub const QUEUE_DISK_PENDING_RECORDS: &str = "otlp_gateway_queue_disk_pending_records";
pub const QUEUE_DISK_CORRUPT_RECORDS: &str = "otlp_gateway_queue_disk_corrupt_records_total";
pub const QUEUE_DISK_SYNC_FAILURES: &str = "otlp_gateway_queue_disk_sync_failures_total";
pub const QUEUE_DISK_ITEMS_DROPPED: &str = "otlp_gateway_queue_disk_items_dropped_total";

// --- exporter ---
/// Items delivered, by `exporter`, `signal`.
pub const EXPORTER_ITEMS_SENT: &str = "otlp_gateway_exporter_items_sent_total";
/// Items in failed attempts (each attempt counts), by `exporter`, `signal`, `reason`.
pub const EXPORTER_ITEMS_FAILED: &str = "otlp_gateway_exporter_items_failed_total";
/// Items given up on, by `exporter`, `signal`, `reason`.
pub const EXPORTER_ITEMS_DROPPED: &str = "otlp_gateway_exporter_items_dropped_total";
/// Retries scheduled, by `exporter`, `signal`.
pub const EXPORTER_RETRIES: &str = "otlp_gateway_exporter_retries_total";
/// Duration of one export attempt, by `exporter`, `signal`.
pub const EXPORTER_REQUEST_DURATION: &str = "otlp_gateway_exporter_request_duration_seconds";
/// State of an exporter's circuit breaker, by `exporter`: 0 closed, 1 open, 2 half-open.
pub const EXPORTER_CIRCUIT_STATE: &str = "otlp_gateway_exporter_circuit_state";
/// Circuit breaker state changes, by `exporter` and `to` (`open`, `half_open`, `closed`).
pub const EXPORTER_CIRCUIT_TRANSITIONS: &str = "otlp_gateway_exporter_circuit_transitions_total";
/// Data points the `prometheusremotewrite` exporter refused before sending (Prometheus
/// would have failed the whole request), by `exporter` and `reason` (the constants of
/// `exporter::prometheus::translate::refusal`: `duplicate_label`, `delta`, …).
pub const PROMETHEUS_POINTS_REFUSED: &str = "otlp_gateway_prometheus_points_refused_total";

// --- elasticsearch exporter ---
/// Documents Elasticsearch refused for good (a 4xx item in a bulk answer), by
/// `exporter`, `signal` and `reason` (the item's `error.type`, e.g.
/// `mapper_parsing_exception`). Also counted in `EXPORTER_ITEMS_DROPPED`.
pub const ELASTICSEARCH_ITEMS_REJECTED: &str = "otlp_gateway_elasticsearch_items_rejected_total";

/// Values of the `reason` label.
pub mod reason {
    pub const INVALID: &str = "invalid";
    pub const TOO_LARGE: &str = "too_large";
    pub const UNSUPPORTED: &str = "unsupported";
    pub const BACKPRESSURE: &str = "backpressure";
    pub const MEMORY_LIMIT: &str = "memory_limit";
    pub const SHUTTING_DOWN: &str = "shutting_down";
    pub const INVALID_ITEM: &str = "invalid_item";
    pub const NO_PIPELINE: &str = "no_pipeline";
    pub const RETRYABLE: &str = "retryable";
    pub const PERMANENT: &str = "permanent";
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    pub const PARTIAL_SUCCESS: &str = "partial_success";
    pub const QUEUE_FULL: &str = "queue_full";
    pub const SHUTDOWN: &str = "shutdown";
    pub const TIMEOUT: &str = "timeout";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const PERMISSION_DENIED: &str = "permission_denied";
    pub const INVALID_TENANT: &str = "invalid_tenant";
    pub const OVER_QUOTA: &str = "over_quota";
    /// A disk queue deleted its oldest segment for room (`on_full = "drop_oldest"`).
    pub const DISK_FULL: &str = "disk_full";
    /// A disk queue could not write data that was acknowledged upstream.
    pub const STORAGE: &str = "storage";
}

/// Registers descriptions and units with the installed recorder.
pub fn describe() {
    describe_counter!(RECEIVER_REQUESTS, "OTLP export requests received.");
    describe_counter!(RECEIVER_ITEMS_RECEIVED, "Items in well-formed requests.");
    describe_counter!(RECEIVER_ITEMS_ACCEPTED, "Items acknowledged to the client.");
    describe_counter!(RECEIVER_ITEMS_REFUSED, "Items refused, by reason.");
    describe_counter!(
        RECEIVER_REQUESTS_REFUSED,
        "Requests refused before decoding, by reason."
    );
    describe_histogram!(
        RECEIVER_REQUEST_DURATION,
        Unit::Seconds,
        "Receive request duration."
    );
    describe_histogram!(
        RECEIVER_REQUEST_BYTES,
        Unit::Bytes,
        "Received body size (compressed)."
    );
    describe_counter!(STAGE_ITEMS_IN, "Items entering a pipeline stage.");
    describe_counter!(STAGE_ITEMS_OUT, "Items leaving a pipeline stage.");
    describe_counter!(STAGE_ERRORS, "Batches a stage failed on.");
    describe_gauge!(RECEIVER_CONNECTIONS, "Open client connections.");
    describe_gauge!(
        RECEIVER_INFLIGHT_BYTES,
        "Bytes held by requests being read and decoded."
    );
    describe_gauge!(RECEIVER_INFLIGHT_CAPACITY, "max_inflight_bytes.");
    describe_counter!(
        RECEIVER_CONNECTIONS_CLOSED,
        "Client connections closed, by reason."
    );
    describe_counter!(
        RECEIVER_TLS_RELOAD_ERRORS,
        "Failed reloads of a receiver TLS certificate, key or client CA (the previous one stays in use)."
    );
    describe_counter!(
        STAGE_ITEMS_DROPPED,
        "Items a full stage or connector did not get, or gave up at shutdown."
    );
    describe_counter!(
        REDACTION_VALUES,
        "Values changed by redaction, by rule and action."
    );
    describe_counter!(
        REDACTION_BATCH_ITEMS,
        "Items in batches that redaction changed."
    );
    describe_counter!(
        TENANT_ITEMS,
        "Items per tenant (the busiest; the rest as _other), by signal and outcome."
    );
    describe_counter!(
        TENANT_BYTES,
        "Bytes (decoded protobuf) accepted per tenant, by signal."
    );
    describe_histogram!(BATCH_ITEMS, "Items per flushed batch.");
    describe_counter!(BATCH_FLUSHES, "Batch flushes, by trigger.");
    describe_gauge!(
        QUEUE_ITEMS,
        "Items held for an exporter: batching, queued and in flight."
    );
    describe_gauge!(QUEUE_CAPACITY, "Capacity of an exporter's queue in items.");
    describe_gauge!(
        QUEUE_DISK_BYTES,
        "Bytes of segment files a disk queue holds."
    );
    describe_gauge!(
        QUEUE_DISK_PENDING_RECORDS,
        "Records in a disk queue not yet delivered."
    );
    describe_counter!(
        QUEUE_DISK_CORRUPT_RECORDS,
        "Disk queue records skipped for a bad checksum or length."
    );
    describe_counter!(
        QUEUE_DISK_SYNC_FAILURES,
        "Failed writes or fdatasync calls of a disk queue."
    );
    describe_counter!(
        QUEUE_DISK_ITEMS_DROPPED,
        "Items a full disk queue deleted (on_full = drop_oldest), per tenant."
    );
    describe_counter!(EXPORTER_ITEMS_SENT, "Items delivered by an exporter.");
    describe_counter!(EXPORTER_ITEMS_FAILED, "Items in failed export attempts.");
    describe_counter!(
        EXPORTER_ITEMS_DROPPED,
        "Items an exporter gave up on, by reason."
    );
    describe_counter!(EXPORTER_RETRIES, "Export retries scheduled.");
    describe_gauge!(
        EXPORTER_CIRCUIT_STATE,
        "State of an exporter's circuit breaker: 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        EXPORTER_CIRCUIT_TRANSITIONS,
        "Circuit breaker state changes, by the state entered."
    );
    describe_gauge!(
        SPANMETRICS_SERIES,
        "Series held by the span metrics connector (overflow series not counted)."
    );
    describe_counter!(
        SPANMETRICS_OVERFLOW_SPANS,
        "Spans counted in an overflow series: the cardinality limit was reached."
    );
    describe_histogram!(
        EXPORTER_REQUEST_DURATION,
        Unit::Seconds,
        "Export attempt duration."
    );
    describe_counter!(
        PROMETHEUS_POINTS_REFUSED,
        "Data points the remote-write exporter refused before sending, by reason."
    );
    describe_counter!(
        ELASTICSEARCH_ITEMS_REJECTED,
        "Documents Elasticsearch refused in a bulk answer, by error type."
    );
}
