//! The binary: `check-config` output and exit codes, refusing to start on a
//! bad config, and a graceful exit 0 on SIGTERM.

#[path = "support/process.rs"]
mod process;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any one step of a test may take before the child is killed and
/// the test fails.
const LIMIT: Duration = Duration::from_secs(10);

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otlp-gateway"))
}

/// Reads all of `pipe` on its own thread, so a child that never exits
/// cannot block the test on the read.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// Sends the lines of `pipe` as they come, from a thread of their own.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for `child` to exit; after `limit` kills it and returns `None`.
fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `child` catches SIGTERM (its `SigCgt` mask in
/// `/proc/<pid>/status` has the bit), for at most `limit`.
fn sigterm_is_caught(child: &Child, limit: Duration) -> bool {
    const SIGTERM: u32 = 15;
    let path = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let caught = std::fs::read_to_string(&path)
            .ok()
            .and_then(|status| {
                let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (SIGTERM - 1)) != 0);
        if caught {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Like [`Command::output`], but the test fails (and the child is killed)
/// when it runs longer than [`LIMIT`].
fn output(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let status = wait_or_kill(&mut child, LIMIT);
    // The child is gone either way, so the pipes are closed and the readers end.
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let Some(status) = status else {
        panic!(
            "{command:?} did not exit within {LIMIT:?}; killed it.\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

#[test]
fn check_config_prints_resolved_pipelines_for_the_shipped_config() {
    let out = output(gateway().args(["check-config", "--config", "config.toml"]));
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
    let out = output(gateway().args(["check-config", "--config"]).arg(&path));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("processors.batch.timeout (line 2): invalid duration \"soon\""),
        "{stderr}"
    );

    // The same config refuses to start the gateway (a gateway that started
    // anyway would run until killed: `output` fails the test after LIMIT).
    let out = output(gateway().arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid duration \"soon\""));
}

/// A running gateway binary and the lines of its stderr.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The lines seen so far, the start line last.
    seen: Vec<String>,
}

/// Starts the binary on `config` and waits (at most [`LIMIT`]) for its start
/// line and its SIGTERM handler.
fn start(dir: &tempfile::TempDir, config: &str) -> Running {
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = gateway()
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // stderr is read on another thread: every wait below has a deadline.
    let lines = lines_of(child.stderr.take().expect("stderr"));
    let mut seen = Vec::new();

    let deadline = Instant::now() + LIMIT;
    let started = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let started = line.contains("Gateway started.");
                seen.push(line);
                if started {
                    break true;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break false,
        }
    };
    if !started {
        let status = wait_or_kill(&mut child, Duration::ZERO);
        panic!(
            "gateway did not log its start within {LIMIT:?} (exit: {status:?}); stderr: {seen:?}"
        );
    }
    // The handler is installed before the start line; check it all the same,
    // since an early SIGTERM without one kills the process outright.
    if !sigterm_is_caught(&child, LIMIT) {
        let status = wait_or_kill(&mut child, Duration::ZERO);
        panic!("gateway installed no SIGTERM handler within {LIMIT:?} (exit: {status:?}); stderr: {seen:?}");
    }
    Running { child, lines, seen }
}

/// A panicking test must not leave its gateway running.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// The address a listener reported in the start line (`grpc_addr=Some(…)`).
    fn addr(&self, field: &str) -> std::net::SocketAddr {
        let line = process::strip_ansi(self.seen.last().expect("start line"));
        let from = line
            .find(&format!("{field}=Some("))
            .unwrap_or_else(|| panic!("{field} in {line}"))
            + field.len()
            + 6;
        let to = from + line[from..].find(')').expect("closing parenthesis");
        line[from..to].parse().expect("an address")
    }

    /// Sends SIGTERM; returns the exit status (`None`: killed after `limit`)
    /// and the rest of stderr.
    fn terminate(mut self, limit: Duration) -> (Option<ExitStatus>, Vec<String>) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success());
        let status = wait_or_kill(&mut self.child, limit);
        // The child is gone (exited or killed), so its stderr ends soon.
        let deadline = Instant::now() + LIMIT;
        let mut rest = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            rest.push(line);
        }
        (status, rest)
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        &dir,
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
    );
    let (status, rest) = running.terminate(LIMIT);
    let Some(status) = status else {
        panic!("gateway did not exit within {LIMIT:?} of SIGTERM; killed it. stderr: {rest:?}");
    };
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("Gateway stopped.") && l.contains("drained")),
        "{rest:?}"
    );
}

#[test]
fn sigterm_exits_in_bounded_time_while_silent_clients_stay_connected() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        &dir,
        r#"
[service]
shutdown_timeout = "3s"
[admin]
endpoint = "127.0.0.1:0"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:0"
read_header_timeout = "120s"
[receivers.otlp.http]
endpoint = "127.0.0.1:0"
read_header_timeout = "120s"
[exporters.debug.console]
[pipelines.traces]
exporters = ["debug/console"]
"#,
    );
    // Connected and silent, for longer than the whole shutdown may take.
    let _grpc = std::net::TcpStream::connect(running.addr("grpc_addr")).expect("connects");
    let _http = std::net::TcpStream::connect(running.addr("http_addr")).expect("connects");
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    // shutdown_timeout, plus the forced stop after it, plus slack for a loaded machine.
    let (status, rest) = running.terminate(Duration::from_secs(3 + 2 + 3));
    let Some(status) = status else {
        panic!(
            "still running {:?} after SIGTERM; killed it. stderr: {rest:?}",
            sent.elapsed()
        );
    };
    assert_eq!(status.code(), Some(0), "{rest:?}");
}
