//! The admin listener: `/health` (liveness), `/ready` (readiness) and
//! `/metrics` (Prometheus text).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::budget::ItemBudget;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot bind admin listener on {endpoint}")]
    Bind {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
/// Later calls (several gateways in one test process) share it.
pub fn metrics_handle() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding, tests); then
            // our handle renders only what this recorder saw, which is nothing.
            if metrics::set_global_recorder(recorder).is_ok() {
                super::metrics::describe();
            }
            handle
        })
        .clone()
}

/// A component that can make the gateway not ready (an open circuit
/// breaker, unhealthy queue storage): asked on every `/ready`.
pub trait ReadinessCheck: Send + Sync + std::fmt::Debug + 'static {
    /// Why the component is not ready, or `None` when it is.
    fn not_ready(&self) -> Option<String>;
}

/// What `/ready` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug)]
struct ReadinessInner {
    listeners_bound: AtomicBool,
    shutting_down: AtomicBool,
    queues: Vec<(String, ItemBudget)>,
    high_water: f64,
    checks: std::sync::Mutex<Vec<Arc<dyn ReadinessCheck>>>,
}

impl Readiness {
    /// Readiness over these exporter budgets; not ready until [`Readiness::set_listening`].
    pub fn new(queues: Vec<(String, ItemBudget)>, high_water: f64) -> Self {
        Readiness {
            inner: Arc::new(ReadinessInner {
                listeners_bound: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
                queues,
                high_water,
                checks: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Adds a component whose state `/ready` reports.
    pub fn add_check(&self, check: Arc<dyn ReadinessCheck>) {
        if let Ok(mut checks) = self.inner.checks.lock() {
            checks.push(check);
        }
    }

    pub fn set_listening(&self) {
        self.inner.listeners_bound.store(true, Ordering::Release);
    }

    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if !self.inner.listeners_bound.load(Ordering::Acquire) {
            reasons.push("listeners not bound".to_string());
        }
        if self.inner.shutting_down.load(Ordering::Acquire) {
            reasons.push("shutting down".to_string());
        }
        for (name, budget) in &self.inner.queues {
            let limit = (budget.capacity() as f64 * self.inner.high_water) as u64;
            if budget.used() > limit {
                reasons.push(format!(
                    "queue of {name} above high-water mark ({} of {} items)",
                    budget.used(),
                    budget.capacity()
                ));
            }
        }
        if let Ok(checks) = self.inner.checks.lock() {
            reasons.extend(checks.iter().filter_map(|check| check.not_ready()));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// Answers one admin request.
pub fn respond(
    method: &Method,
    path: &str,
    readiness: &Readiness,
    metrics: &PrometheusHandle,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/health" => text(StatusCode::OK, "ok\n".into()),
        "/ready" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n"),
        },
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// The bound admin listener.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    readiness: Readiness,
}

impl AdminServer {
    /// Binds `endpoint`.
    ///
    /// # Errors
    /// [`AdminError::Bind`] when the address is taken or invalid.
    pub async fn bind(endpoint: &str, readiness: Readiness) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(endpoint)
            .await
            .map_err(|source| AdminError::Bind {
                endpoint: endpoint.to_string(),
                source,
            })?;
        Ok(AdminServer {
            listener,
            readiness,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let handle = metrics_handle();
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::warn!(%error, "Admin accept failed.");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let readiness = self.readiness.clone();
            let handle = handle.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let response = respond(req.method(), req.uri().path(), &readiness, &handle);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "Admin connection ended with an error.");
                }
            });
        }
        graceful.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn health_ready_and_unknown_paths() {
        let handle = metrics_handle();
        let budget = ItemBudget::new(10);
        let readiness = Readiness::new(vec![("otlp/x".into(), budget.clone())], 0.5);
        let r = respond(&Method::GET, "/health", &readiness, &handle);
        assert_eq!(r.status(), StatusCode::OK);

        let r = respond(&Method::GET, "/ready", &readiness, &handle);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r).await, "listeners not bound\n");

        readiness.set_listening();
        assert_eq!(
            respond(&Method::GET, "/ready", &readiness, &handle).status(),
            StatusCode::OK
        );

        let _held = budget.try_reserve(6).unwrap();
        let r = respond(&Method::GET, "/ready", &readiness, &handle);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(r).await,
            "queue of otlp/x above high-water mark (6 of 10 items)\n"
        );

        drop(_held);
        #[derive(Debug)]
        struct Broken;
        impl ReadinessCheck for Broken {
            fn not_ready(&self) -> Option<String> {
                Some("storage of otlp/x unhealthy".into())
            }
        }
        readiness.add_check(Arc::new(Broken));
        let r = respond(&Method::GET, "/ready", &readiness, &handle);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r).await, "storage of otlp/x unhealthy\n");

        assert_eq!(
            respond(&Method::GET, "/nope", &readiness, &handle).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/health", &readiness, &handle).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn metrics_renders_prometheus_text() {
        let handle = metrics_handle();
        metrics::counter!(crate::telemetry::metrics::RECEIVER_REQUESTS, "signal" => "traces", "transport" => "grpc", "outcome" => "accepted").increment(3);
        let readiness = Readiness::new(vec![], 0.9);
        let r = respond(&Method::GET, "/metrics", &readiness, &handle);
        let text = body(r).await;
        assert!(
            text.contains("otlp_gateway_receiver_requests_total{signal=\"traces\",transport=\"grpc\",outcome=\"accepted\"}"),
            "{text}"
        );
    }
}
