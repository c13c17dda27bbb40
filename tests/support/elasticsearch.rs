//! An in-process Elasticsearch double for tests: `POST /_bulk` and
//! `POST /<index>/_bulk` on `127.0.0.1:0` (plain or TLS), following the
//! documented bulk contract, with knobs to fail whole requests or chosen
//! documents.
//!
//! ```ignore
//! let es = FakeElasticsearch::start().await;
//! es.fail_requests(2, 503, Some("1"));                  // two whole-request 503s, then normal
//! es.fail_items("/name", json!("poison"), 400, usize::MAX);
//! // ... point an exporter at es.url() ...
//! es.wait_for_documents(10).await;
//! let docs = es.documents();                            // stored, by index and id
//! ```
//!
//! # The contract it follows
//! - The body is NDJSON, gunzipped first when `Content-Encoding: gzip`; it
//!   must end with a newline, else the whole request is answered 400 with
//!   Elasticsearch's `illegal_argument_exception` body
//!   (`The bulk request must be terminated by a newline [\n]`). An empty body
//!   is a 400 `action_request_validation_exception`.
//! - Each action line is `{"index"|"create"|"update"|"delete": {"_index", "_id"}}`
//!   (`_index` from the path when absent; an auto id when `_id` is absent),
//!   followed by a source line, except for `delete`. A malformed action line
//!   is a whole-request 400 (`illegal_argument_exception`).
//! - The answer is HTTP 200 `{"took", "errors", "items"}` with one item per
//!   action, in request order: `{"<op>": {"_index", "_id", "_version",
//!   "result", "_shards", "_seq_no", "_primary_term", "status"}}` on success,
//!   `{"<op>": {"_index", "_id", "status", "error": {"type", "reason", ...}}}`
//!   on failure.
//! - `create` of an id the index holds: 409 `version_conflict_engine_exception`.
//!   `index` of one: 200, `result: "updated"`.
//! - A source that is not a JSON object, or repeats a key: 400
//!   `document_parsing_exception` (Elasticsearch refuses duplicate keys).
//! - An invalid index name (upper case, `\/*?"<>| ,#:`, a leading `-_+`):
//!   400 `invalid_index_name_exception`.
//! - With [`FakeElasticsearch::require_authorization`], a request without that
//!   exact `Authorization` header gets 401 `security_exception`.
//!
//! Dropping the double stops the server.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long the waiting helpers wait before failing the test.
pub const WAIT: Duration = Duration::from_secs(15);

/// Largest request body accepted (decompressed), as `http.max_content_length` (100 MB).
const MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    pub index: String,
    pub id: String,
    pub version: u64,
    pub source: Value,
}

/// One action of a request, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub op: String,
    pub index: String,
    pub id: String,
}

/// One request, as received and answered.
#[derive(Debug, Clone)]
pub struct BulkRecord {
    pub path: String,
    pub headers: HeaderMap,
    /// Whether the body came gzip-compressed.
    pub gzip: bool,
    /// The body after decompression.
    pub body: Bytes,
    /// Its actions, in order (empty when the request was refused whole before parsing).
    pub actions: Vec<Action>,
    pub status: u16,
    pub answer: Value,
    /// When it arrived.
    pub received: Instant,
}

impl BulkRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The status of each item of a 200 answer, in order.
    pub fn item_statuses(&self) -> Vec<u16> {
        self.answer["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_object()?.values().next()?["status"].as_u64())
                    .map(|s| s as u16)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A whole-request failure to answer.
#[derive(Debug, Clone)]
struct RequestFailure {
    status: u16,
    retry_after: Option<String>,
    /// Store the documents first (the answer is lost on the way back).
    after_storing: bool,
}

/// Items whose source has `value` at JSON pointer `pointer` fail with `status`, `remaining` times.
#[derive(Debug, Clone)]
struct ItemFailure {
    pointer: String,
    value: Value,
    status: u16,
    remaining: usize,
}

#[derive(Default)]
struct Indices {
    /// index → id → document.
    docs: BTreeMap<String, BTreeMap<String, StoredDocument>>,
    seq_no: u64,
    auto_id: u64,
}

struct State {
    requests: Mutex<VecDeque<RequestFailure>>,
    items: Mutex<Vec<ItemFailure>>,
    authorization: Mutex<Option<String>>,
    indices: Mutex<Indices>,
    log: Mutex<Vec<BulkRecord>>,
    /// Bumped after each request, to wake the waiting helpers.
    changed: watch::Sender<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Certificates of a TLS double.
#[derive(Debug)]
pub struct DoubleTls {
    /// The CA written to a file, for `tls.ca_file`.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The running double.
pub struct FakeElasticsearch {
    state: Arc<State>,
    addr: SocketAddr,
    tls: Option<DoubleTls>,
    shutdown: CancellationToken,
}

impl Drop for FakeElasticsearch {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FakeElasticsearch {
    /// Starts the double on plain HTTP.
    pub async fn start() -> FakeElasticsearch {
        FakeElasticsearch::start_with(false).await
    }

    /// Starts the double behind TLS with a fresh CA ([`FakeElasticsearch::ca_file`]).
    pub async fn start_tls() -> FakeElasticsearch {
        FakeElasticsearch::start_with(true).await
    }

    async fn start_with(tls: bool) -> FakeElasticsearch {
        let state = Arc::new(State {
            requests: Mutex::new(VecDeque::new()),
            items: Mutex::new(Vec::new()),
            authorization: Mutex::new(None),
            indices: Mutex::new(Indices::default()),
            log: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tls, acceptor) = if tls {
            let (tls, acceptor) = make_tls();
            (Some(tls), Some(acceptor))
        } else {
            (None, None)
        };
        let shutdown = CancellationToken::new();
        spawn_server(listener, state.clone(), acceptor, shutdown.clone());
        FakeElasticsearch {
            state,
            addr,
            tls,
            shutdown,
        }
    }

    /// `http://127.0.0.1:<port>` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `tls.ca_file` of a TLS double.
    ///
    /// # Panics
    /// If started without TLS.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.tls.as_ref().expect("started with start_tls()").ca_file
    }

    // --- knobs ---

    /// Every request must carry exactly this `Authorization` header.
    pub fn require_authorization(&self, value: &str) {
        *lock(&self.state.authorization) = Some(value.to_owned());
    }

    /// The next `n` requests are refused whole with `status` (429, 503…), with
    /// `Retry-After: retry_after` when given; nothing is stored.
    pub fn fail_requests(&self, n: usize, status: u16, retry_after: Option<&str>) {
        let failure = RequestFailure {
            status,
            retry_after: retry_after.map(str::to_owned),
            after_storing: false,
        };
        lock(&self.state.requests).extend(std::iter::repeat_n(failure, n));
    }

    /// The next `n` requests (before those already scripted to fail) are answered normally;
    /// with [`FakeElasticsearch::fail_requests`] after it, a later request fails.
    pub fn pass_requests(&self, n: usize) {
        let pass = RequestFailure {
            status: 200,
            retry_after: None,
            after_storing: true,
        };
        lock(&self.state.requests).extend(std::iter::repeat_n(pass, n));
    }

    /// The next `n` requests are processed (documents stored) but answered 503
    /// whole, as when the answer is lost on the way back.
    pub fn lose_answers(&self, n: usize) {
        let failure = RequestFailure {
            status: 503,
            retry_after: None,
            after_storing: true,
        };
        lock(&self.state.requests).extend(std::iter::repeat_n(failure, n));
    }

    /// Documents whose source holds `value` at JSON pointer `pointer` (`"/name"`,
    /// `"/attributes/order.id"` is not a pointer: use `"/attributes/order.id"` with `~1`
    /// for `/` only) fail with item `status` (429, 400, 503…) the next `times` times.
    pub fn fail_items(&self, pointer: &str, value: Value, status: u16, times: usize) {
        lock(&self.state.items).push(ItemFailure {
            pointer: pointer.to_owned(),
            value,
            status,
            remaining: times,
        });
    }

    // --- what happened ---

    /// Every stored document, by index then id.
    pub fn documents(&self) -> Vec<StoredDocument> {
        lock(&self.state.indices)
            .docs
            .values()
            .flat_map(|docs| docs.values().cloned())
            .collect()
    }

    /// The stored documents of `index`.
    pub fn documents_in(&self, index: &str) -> Vec<StoredDocument> {
        lock(&self.state.indices)
            .docs
            .get(index)
            .map(|docs| docs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<BulkRecord> {
        lock(&self.state.log).clone()
    }

    /// Waits until at least `n` documents are stored.
    ///
    /// # Panics
    /// After [`WAIT`].
    pub async fn wait_for_documents(&self, n: usize) -> Vec<StoredDocument> {
        let mut changed = self.state.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let docs = self.documents();
            if docs.len() >= n {
                return docs;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "fake-elasticsearch: {} of {n} documents after {WAIT:?}; requests: {:#?}",
                    docs.len(),
                    self.requests()
                        .iter()
                        .map(|r| (r.status, r.actions.len()))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits until at least `n` requests were answered.
    ///
    /// # Panics
    /// After [`WAIT`].
    pub async fn wait_for_requests(&self, n: usize) -> Vec<BulkRecord> {
        let mut changed = self.state.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "fake-elasticsearch: {} of {n} requests after {WAIT:?}",
                    requests.len()
                );
            }
        }
    }
}

// --- server ---

fn spawn_server(
    listener: TcpListener,
    state: Arc<State>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let acceptor = acceptor.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, request).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = builder.serve_connection(TokioIo::new(tls), service) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                    None => {
                        tokio::select! {
                            _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                }
            });
        }
    });
}

fn json_reply(status: u16, body: &Value, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = retry_after {
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(after).expect("retry-after"),
        );
    }
    response
}

/// Elasticsearch's error body: `{"error": {"root_cause": [...], "type", "reason"}, "status"}`.
fn error_body(status: u16, kind: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason,
        },
        "status": status,
    })
}

/// The error type Elasticsearch answers with a status.
fn error_type(status: u16) -> (&'static str, &'static str) {
    match status {
        429 => (
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
        ),
        400 => ("document_parsing_exception", "failed to parse field"),
        409 => ("version_conflict_engine_exception", "version conflict"),
        503 => (
            "unavailable_shards_exception",
            "primary shard is not active",
        ),
        500 => ("exception", "internal error"),
        _ => ("status_exception", "injected failure"),
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let default_index = match path.as_str() {
        "/_bulk" => None,
        p if p.ends_with("/_bulk") && p.matches('/').count() == 2 => {
            Some(p[1..p.len() - "/_bulk".len()].to_owned())
        }
        _ => {
            return json_reply(
                404,
                &error_body(
                    404,
                    "no_handler_found_exception",
                    &format!("no handler for {path}"),
                ),
                None,
            )
        }
    };
    if !matches!(parts.method, Method::POST | Method::PUT) {
        return json_reply(
            405,
            &error_body(
                405,
                "method_not_allowed",
                "Incorrect HTTP method, allowed: [POST, PUT]",
            ),
            None,
        );
    }
    let raw = match Limited::new(body, MAX_CONTENT_LENGTH).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_reply(
                413,
                &error_body(413, "content_too_long", "body too large"),
                None,
            )
        }
    };
    let gzip = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let seen = Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
        gzip,
        received: started,
    };
    let body = if gzip {
        let mut out = Vec::new();
        match flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_CONTENT_LENGTH as u64 + 1)
            .read_to_end(&mut out)
        {
            Ok(_) => Bytes::from(out),
            Err(e) => {
                return record(
                    state,
                    &seen,
                    raw,
                    Vec::new(),
                    400,
                    error_body(400, "parse_exception", &format!("invalid gzip body: {e}")),
                    None,
                )
            }
        }
    } else {
        raw
    };

    let required = lock(&state.authorization).clone();
    if let Some(required) = required {
        let given = parts.headers.get(http::header::AUTHORIZATION);
        if given.map(HeaderValue::as_bytes) != Some(required.as_bytes()) {
            return record(
                state,
                &seen,
                body,
                Vec::new(),
                401,
                error_body(
                    401,
                    "security_exception",
                    "missing authentication credentials for REST request [/_bulk]",
                ),
                None,
            );
        }
    }

    let lines = match parse_bulk(&body, default_index.as_deref()) {
        Ok(lines) => lines,
        Err((kind, reason)) => {
            return record(
                state,
                &seen,
                body,
                Vec::new(),
                400,
                error_body(400, kind, &reason),
                None,
            )
        }
    };
    let actions: Vec<Action> = lines.iter().map(|l| l.action.clone()).collect();

    let failure = lock(&state.requests).pop_front();
    if let Some(failure) = &failure {
        if !failure.after_storing {
            let (kind, reason) = error_type(failure.status);
            return record(
                state,
                &seen,
                body,
                actions,
                failure.status,
                error_body(failure.status, kind, reason),
                failure.retry_after.as_deref(),
            );
        }
    }

    let items: Vec<Value> = lines.into_iter().map(|line| apply(state, line)).collect();
    let errors = items.iter().any(|item| {
        item.as_object()
            .and_then(|o| o.values().next())
            .is_some_and(|v| v.get("error").is_some())
    });
    let answer = json!({
        "took": started.elapsed().as_millis() as u64,
        "errors": errors,
        "items": items,
    });
    if let Some(failure) = failure.filter(|f| f.status != 200) {
        let (kind, reason) = error_type(failure.status);
        return record(
            state,
            &seen,
            body,
            actions,
            failure.status,
            error_body(failure.status, kind, reason),
            None,
        );
    }
    record(state, &seen, body, actions, 200, answer, None)
}

/// What is known of a request before its body is read.
struct Seen {
    path: String,
    headers: HeaderMap,
    gzip: bool,
    received: Instant,
}

fn record(
    state: &State,
    seen: &Seen,
    body: Bytes,
    actions: Vec<Action>,
    status: u16,
    answer: Value,
    retry_after: Option<&str>,
) -> Response<Full<Bytes>> {
    let response = json_reply(status, &answer, retry_after);
    lock(&state.log).push(BulkRecord {
        path: seen.path.clone(),
        headers: seen.headers.clone(),
        gzip: seen.gzip,
        body,
        actions,
        status,
        answer,
        received: seen.received,
    });
    state.changed.send_modify(|n| *n += 1);
    response
}

/// One action with its source (parsed, or the reason it could not be).
struct Line {
    action: Action,
    source: Option<Result<Value, String>>,
}

/// Splits a bulk body into actions, or a whole-request error (type, reason).
fn parse_bulk(
    body: &[u8],
    default_index: Option<&str>,
) -> Result<Vec<Line>, (&'static str, String)> {
    if body.is_empty() {
        return Err((
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;".to_owned(),
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err((
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]".to_owned(),
        ));
    }
    let mut lines = body[..body.len() - 1]
        .split(|&b| b == b'\n')
        .enumerate()
        .peekable();
    let mut out = Vec::new();
    while let Some((number, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let malformed = |what: &str| {
            (
                "illegal_argument_exception",
                format!("Malformed action/metadata line [{}], {what}", number + 1),
            )
        };
        let action: Value = serde_json::from_slice(line)
            .map_err(|_| malformed("expected START_OBJECT but found [VALUE_STRING]"))?;
        let object = action
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| malformed("expected a single action"))?;
        let (op, meta) = object.iter().next().ok_or_else(|| malformed("empty"))?;
        if !matches!(op.as_str(), "index" | "create" | "update" | "delete") {
            return Err(malformed(&format!(
                "expected one of [create, delete, index, update] but found [{op}]"
            )));
        }
        let meta = meta
            .as_object()
            .ok_or_else(|| malformed("expected START_OBJECT"))?;
        for key in meta.keys() {
            if !matches!(
                key.as_str(),
                "_index"
                    | "_id"
                    | "routing"
                    | "pipeline"
                    | "require_alias"
                    | "if_seq_no"
                    | "if_primary_term"
                    | "version"
                    | "version_type"
                    | "dynamic_templates"
                    | "retry_on_conflict"
                    | "_source"
                    | "require_data_stream"
                    | "list_executed_pipelines"
            ) {
                return Err(malformed(&format!(
                    "Action/metadata line [{}] contains an unknown parameter [{key}]",
                    number + 1
                )));
            }
        }
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| default_index.map(str::to_owned))
            .ok_or((
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;".to_owned(),
            ))?;
        let id = meta
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let source = if op == "delete" {
            None
        } else {
            let (_, source) = lines.next().ok_or((
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]".to_owned(),
            ))?;
            Some(strict_object(source))
        };
        out.push(Line {
            action: Action {
                op: op.clone(),
                index,
                id,
            },
            source,
        });
    }
    Ok(out)
}

/// Parses a source line as a JSON object, refusing repeated keys as Elasticsearch does.
fn strict_object(line: &[u8]) -> Result<Value, String> {
    let value: StrictValue =
        serde_json::from_slice(line).map_err(|e| format!("failed to parse: {e}"))?;
    match value.0 {
        Value::Object(_) => Ok(value.0),
        _ => Err("failed to parse, document is empty or not an object".to_owned()),
    }
}

/// A JSON value whose objects have no repeated key.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(json!(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(json!(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
                Ok(StrictValue(json!(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StrictValue, A::Error> {
                let mut out = Vec::new();
                while let Some(StrictValue(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(StrictValue(Value::Array(out)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictValue, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let StrictValue(value) = map.next_value()?;
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("Duplicate field '{key}'")));
                    }
                    out.insert(key, value);
                }
                Ok(StrictValue(Value::Object(out)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Why `name` is not a valid index name, if it is not.
fn index_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("must not be empty, '.' or '..'")
    } else if name.starts_with(['-', '_', '+']) {
        Some("must not start with '_', '-', or '+'")
    } else if name.chars().any(|c| c.is_uppercase()) {
        Some("must be lowercase")
    } else if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        Some("must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]")
    } else if name.len() > 255 {
        Some("index name is too long")
    } else {
        None
    }
}

/// Carries out one action; its answer item.
fn apply(state: &State, line: Line) -> Value {
    let Line { mut action, source } = line;
    let op = action.op.clone();
    let fail = |action: &Action, status: u16, kind: &str, reason: String| {
        json!({ op.clone(): {
            "_index": action.index,
            "_id": action.id,
            "status": status,
            "error": {
                "type": kind,
                "reason": reason,
                "index_uuid": "fake-uuid",
                "shard": "0",
                "index": action.index,
            },
        }})
    };
    if let Some(problem) = index_name_problem(&action.index) {
        return fail(
            &action,
            400,
            "invalid_index_name_exception",
            format!("Invalid index name [{}], {problem}", action.index),
        );
    }
    let mut indices = lock(&state.indices);
    if action.id.is_empty() {
        indices.auto_id += 1;
        action.id = format!("auto-{}", indices.auto_id);
    }
    let source = match source {
        None => None,
        Some(Ok(source)) => Some(source),
        Some(Err(reason)) => {
            return fail(
                &action,
                400,
                "document_parsing_exception",
                format!("[1:1] {reason}"),
            )
        }
    };
    if let Some(source) = &source {
        let mut failures = lock(&state.items);
        if let Some(failure) = failures
            .iter_mut()
            .find(|f| f.remaining > 0 && source.pointer(&f.pointer) == Some(&f.value))
        {
            failure.remaining -= 1;
            let (kind, reason) = error_type(failure.status);
            let status = failure.status;
            return fail(
                &action,
                status,
                kind,
                format!("{reason} (injected for id [{}])", action.id),
            );
        }
    }
    let existing = indices
        .docs
        .get(&action.index)
        .and_then(|docs| docs.get(&action.id))
        .map(|d| d.version);
    let (status, result, version) = match (op.as_str(), existing, source) {
        ("create", Some(version), _) => {
            return fail(
                &action,
                409,
                "version_conflict_engine_exception",
                format!(
                    "[{}]: version conflict, document already exists (current version [{version}])",
                    action.id
                ),
            )
        }
        ("delete", None, _) => (404, "not_found", 1),
        ("delete", Some(version), _) => {
            if let Some(docs) = indices.docs.get_mut(&action.index) {
                docs.remove(&action.id);
            }
            (200, "deleted", version + 1)
        }
        ("update", None, _) => {
            return fail(
                &action,
                404,
                "document_missing_exception",
                format!("[{}]: document missing", action.id),
            )
        }
        (_, existing, Some(source)) => {
            let source = if op == "update" {
                source.get("doc").cloned().unwrap_or(source)
            } else {
                source
            };
            let version = existing.map_or(1, |v| v + 1);
            indices
                .docs
                .entry(action.index.clone())
                .or_default()
                .insert(
                    action.id.clone(),
                    StoredDocument {
                        index: action.index.clone(),
                        id: action.id.clone(),
                        version,
                        source,
                    },
                );
            match existing {
                None => (201, "created", version),
                Some(_) => (200, "updated", version),
            }
        }
        (_, _, None) => (400, "noop", 0),
    };
    indices.seq_no += 1;
    json!({ op: {
        "_index": action.index,
        "_id": action.id,
        "_version": version,
        "result": result,
        "_shards": {"total": 2, "successful": 1, "failed": 0},
        "_seq_no": indices.seq_no - 1,
        "_primary_term": 1,
        "status": status,
    }})
}

// --- certificates ---

fn make_tls() -> (DoubleTls, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake-elasticsearch test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");

    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");

    let certs = vec![cert.der().clone()];
    let private =
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("server key DER");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (
        DoubleTls { ca_file, _dir: dir },
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}
