//! The binary: `check-config` output and exit codes, refusing to start on a
//! bad config, and a graceful exit 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
}

#[test]
fn check_config_prints_resolved_pipelines_for_the_shipped_config() {
    let out = gateway()
        .args(["check-config", "--config", "config.toml"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pipeline traces: receivers [otlp]"),
        "{stdout}"
    );
    assert!(stdout.contains("exporters [debug/console"), "{stdout}");
    assert!(stdout.ends_with("config OK: config.toml\n"), "{stdout}");
}

#[test]
fn check_config_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[processors.batch]\ntimeout = \"soon\"\n[pipelines.traces]\nexporters = [\"otlp/nowhere\"]\n",
    )
    .unwrap();
    let out = gateway()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("processors.batch.timeout (line 2): invalid duration \"soon\""),
        "{stderr}"
    );

    // The same config refuses to start the gateway.
    let out = gateway().arg("--config").arg(&path).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid duration \"soon\""));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        r#"
[service]
shutdown_timeout = "5s"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"
[receivers.otlp.http]
endpoint = "127.0.0.1:0"
[exporters.debug.console]
[pipelines.traces]
exporters = ["debug/console"]
"#,
    )
    .unwrap();
    let mut child = gateway()
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("Gateway started."));
    assert!(started, "gateway logs its start");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = wait(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("Gateway stopped.") && l.contains("drained")),
        "{rest:?}"
    );
}

fn wait(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gateway did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
