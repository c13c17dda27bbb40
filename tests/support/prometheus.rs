//! A real Prometheus server (Debian's `prometheus` package, installed by
//! `scripts/test.sh`) as a remote-write backend for tests.
//!
//! ```ignore
//! let prom = Prometheus::start().await;                   // own port, own temporary TSDB
//! // ... point the exporter at prom.write_url() ...
//! let value = prom.wait_for_value("up{job=\"api\"}", 1.0).await;
//! prom.stop();                                            // killed by PID, TSDB kept
//! let prom = prom.restart().await;                        // same port, same TSDB
//! ```
//!
//! Prometheus runs with an empty scrape config, `--web.enable-remote-write-receiver`,
//! its TSDB in a temporary directory and its web listener on `127.0.0.1:<free port>`;
//! it is ready when `/-/ready` answers 200. Dropping the handle kills it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How long Prometheus may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long the query helpers wait for a value.
pub const QUERY_WAIT: Duration = Duration::from_secs(20);

/// A running Prometheus process, or a stopped one whose port and TSDB are kept.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    /// Holds the TSDB and the config file until the handle is dropped.
    dir: tempfile::TempDir,
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Prometheus {
    /// A stopped Prometheus with a port and an empty TSDB: [`Prometheus::restart`] starts it.
    pub fn reserve() -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("prometheus.yml"), "scrape_configs: []\n")
            .expect("config file");
        Prometheus {
            child: None,
            port: free_port(),
            dir,
        }
    }

    /// Starts Prometheus and waits until it is ready.
    ///
    /// # Panics
    /// When the `prometheus` binary is missing or not ready within 30 s.
    pub async fn start() -> Prometheus {
        Prometheus::reserve().restart().await
    }

    /// Starts (again) on the same port and TSDB, and waits until ready.
    pub async fn restart(mut self) -> Prometheus {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", self.config_file().display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the prometheus binary (scripts/test.sh installs Debian's package)");
        self.child = Some(child);
        self.wait_ready().await;
        self
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("prometheus.yml")
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/-/ready", self.base_url());
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("prometheus exited ({status}): {}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready within {READY_WITHIN:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Kills the process (by PID) and waits for it; the port and TSDB stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The remote-write receiver's URL.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base_url())
    }

    /// The result vector of an instant query (`/api/v1/query`).
    pub async fn query(&self, query: &str) -> Vec<Value> {
        let response: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base_url()))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query request")
            .json()
            .await
            .expect("query JSON");
        assert_eq!(response["status"], "success", "{query}: {response}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single series `query` returns, once it has `value` (waits up to [`QUERY_WAIT`]).
    ///
    /// # Panics
    /// When it does not within the wait, showing what the query returned.
    pub async fn wait_for_value(&self, query: &str, value: f64) -> Value {
        let deadline = tokio::time::Instant::now() + QUERY_WAIT;
        loop {
            let result = self.query(query).await;
            if let [one] = result.as_slice() {
                if sample_value(one) == Some(value) {
                    return one.clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{query}: wanted one series with value {value}, got {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sum of every sample of metric `name` in Prometheus's own `/metrics`.
    pub async fn own_metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base_url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The value of one series of an instant query result.
pub fn sample_value(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

/// The labels of one series of a query result, `__name__` included.
pub fn labels(series: &Value) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = series["metric"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    labels
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
