//! The gzip-compressed OTLP/JSON memory case, in a test binary of its own so
//! that the process's peak RSS is this case's alone.
//!
//! Four concurrent copies of one gzip-compressed JSON trace request of about
//! 32 MiB (decompressed). Decoded through a JSON tree, each copy cost about
//! 17 times its size (a 59 MiB request took 1 GiB), so four would pass 2 GiB;
//! with the streaming transcoder and every byte counted in
//! `max_inflight_bytes` (256 MiB by default), the peak stays under 512 MiB,
//! and copies that would not fit are refused retryably (503), not buffered.

use std::io::Write;
use std::time::Duration;

use otlp_gateway::config;
use otlp_gateway::testkit;
use otlp_gateway::topology::Gateway;

/// Peak resident set of this process since the last [`reset_peak`], in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .expect("VmHWM in /proc/self/status")
}

/// Resets the peak (`VmHWM`) to the current resident set.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
}

const BOUND: u64 = 512 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_large_gzip_json_requests_stay_within_the_memory_bound() {
    // About 1 KiB of JSON per span.
    let json = serde_json::to_vec(&testkit::trace_request(9, 32 * 1024)).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&json).unwrap();
    let gzip = bytes::Bytes::from(encoder.finish().unwrap());
    let json_len = json.len();
    drop(json);
    eprintln!(
        "request: {json_len} bytes of JSON, {} bytes gzip",
        gzip.len()
    );
    assert!(json_len > 30 << 20, "{json_len}");

    let text = r#"
[service.logs]
level = "warn"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.http]
endpoint = "127.0.0.1:0"
[exporters.debug.console]
[pipelines.traces]
exporters = ["debug/console"]
"#;
    let (config, _) = config::load_and_validate_str(text, "test.toml").unwrap();
    let gw = Gateway::start(&config).await.expect("starts");
    let url = format!("http://{}/v1/traces", gw.http_addr().unwrap());
    let client = reqwest::Client::new();

    reset_peak();
    let before = peak_rss();
    let sends = (0..4).map(|_| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzip.clone())
            .timeout(Duration::from_secs(120))
            .send()
    });
    let answers = futures_util::future::join_all(sends).await;
    let peak = peak_rss();
    let statuses: Vec<u16> = answers
        .into_iter()
        .map(|a| a.expect("answered").status().as_u16())
        .collect();
    eprintln!(
        "statuses {statuses:?}; RSS before {} MiB, peak {} MiB",
        before >> 20,
        peak >> 20
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "accepted or refused retryably: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        peak < BOUND,
        "peak RSS {} MiB is over the {} MiB bound",
        peak >> 20,
        BOUND >> 20
    );
    assert!(gw.shutdown().await);
}
