//! `meshtel` processes: started on 127.0.0.1:0 listeners with a temporary data
//! directory, stopped gracefully or with SIGKILL.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;

use super::grpc_client;

/// How long the binary may take to publish its listeners.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop (flush included) may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Every listener on 127.0.0.1:0 (a role ignores the flags of listeners it has not).
const LISTEN_ON_ANY_PORT: [&str; 8] = [
    "--grpc-listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
    "--zipkin-listen",
    "127.0.0.1:0",
    "--query-listen",
    "127.0.0.1:0",
];

/// Which subcommand to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Collector,
    Query,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Collector => "collector",
            Role::Query => "query",
        }
    }

    /// The file this role publishes its bound addresses in.
    fn listeners_file(self) -> &'static str {
        match self {
            Role::Serve => "listeners.json",
            Role::Collector => "listeners-collector.json",
            Role::Query => "listeners-query.json",
        }
    }
}

/// A temporary directory holding a data directory and the processes' logs; survives
/// restarts of the binary, removed at the end of the test.
pub struct TestDir {
    tmp: TempDir,
    runs: AtomicUsize,
}

impl TestDir {
    pub fn new() -> TestDir {
        let tmp = tempfile::Builder::new()
            .prefix("meshtel-it-")
            .tempdir()
            .expect("creating a temp dir");
        std::fs::create_dir_all(tmp.path().join("data")).unwrap();
        TestDir {
            tmp,
            runs: AtomicUsize::new(0),
        }
    }

    /// The temporary directory itself (mesh files, proxy logs and listener files).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn next_log(&self, role: Role) -> PathBuf {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        self.tmp
            .path()
            .join(format!("{}-{n}.log", role.subcommand()))
    }
}

/// One running `meshtel` process. Dropping it sends SIGTERM, then SIGKILL after a
/// timeout, so no test leaves a process behind, even when it panics.
pub struct Meshtel {
    child: Option<Child>,
    listeners_path: PathBuf,
    log: PathBuf,
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub zipkin: Option<SocketAddr>,
    pub query: Option<SocketAddr>,
}

impl Meshtel {
    /// `meshtel serve` with the default flags.
    pub async fn serve(dir: &TestDir) -> Meshtel {
        Meshtel::start(dir, Role::Serve, &[]).await
    }

    /// Starts `meshtel serve` as [`Meshtel::start`] does, with `toml` as its config
    /// file (`meshtel.toml` in `dir`).
    pub async fn serve_with_config(dir: &TestDir, toml: &str) -> Meshtel {
        let config = dir.path().join("meshtel.toml");
        std::fs::write(&config, toml).expect("writing the config file");
        let path = config.to_str().expect("a UTF-8 path");
        Meshtel::start(dir, Role::Serve, &["--config", path]).await
    }

    /// Starts `meshtel <role>` on `dir`'s data directory with every listener on
    /// 127.0.0.1:0 plus `extra` flags, and waits for `listeners.json`.
    pub async fn start(dir: &TestDir, role: Role, extra: &[&str]) -> Meshtel {
        let data_dir = dir.data_dir();
        let listeners_path = data_dir.join(role.listeners_file());
        // A SIGKILLed process leaves its file behind; never read a stale one.
        let _ = std::fs::remove_file(&listeners_path);
        let log = dir.next_log(role);
        let log_file = File::create(&log).expect("creating the log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
        // A relative data directory, as the default `./meshtel-data` is.
        command
            .current_dir(dir.path())
            .arg(role.subcommand())
            .arg("--data-dir")
            .arg("data")
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--zipkin-listen", "127.0.0.1:0"])
            .args(["--query-listen", "127.0.0.1:0"]);
        command
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("MESHTEL_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = command.spawn().expect("spawning meshtel");
        let mut process = Meshtel {
            child: Some(child),
            listeners_path: listeners_path.clone(),
            log,
            grpc: None,
            http: None,
            zipkin: None,
            query: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.child_mut().try_wait().unwrap() {
                panic!(
                    "meshtel {} exited during startup with {status}\n{}",
                    role.subcommand(),
                    process.log_text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&listeners_path)
                && let Ok(json) = serde_json::from_str::<Value>(&text)
            {
                let addr = |key: &str| {
                    json.get(key)
                        .and_then(Value::as_str)
                        .map(|s| s.parse().unwrap())
                };
                process.grpc = addr("grpc");
                process.http = addr("http");
                process.zipkin = addr("zipkin");
                process.query = addr("query");
                let complete = match role {
                    Role::Serve => process.grpc.is_some() && process.query.is_some(),
                    Role::Collector => process.grpc.is_some(),
                    Role::Query => process.query.is_some(),
                };
                if complete {
                    return process;
                }
            }
            assert!(
                Instant::now() < deadline,
                "meshtel did not write listeners.json within {START_TIMEOUT:?}\n{}",
                process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `meshtel <role>` on `dir`'s data directory (listeners on 127.0.0.1:0, plus
    /// `extra`) when it is expected not to start: waits for it to exit and returns its
    /// status and what it printed. Leaves the listener files of processes already
    /// running there alone.
    pub async fn run_expecting_exit(
        dir: &TestDir,
        role: Role,
        extra: &[&str],
    ) -> (ExitStatus, String) {
        let log = dir.next_log(role);
        let log_file = File::create(&log).expect("creating the log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshtel"))
            .current_dir(dir.path())
            .arg(role.subcommand())
            .arg("--data-dir")
            .arg("data")
            .args(LISTEN_ON_ANY_PORT)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("MESHTEL_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawning meshtel");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, std::fs::read_to_string(&log).unwrap_or_default());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "meshtel {} kept running; expected it to exit\n{}",
                    role.subcommand(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process is running")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process is running").id()
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit (status 0, `listeners.json` removed).
    pub async fn stop(mut self) {
        let status = self.terminate().await;
        assert!(
            status.success(),
            "meshtel did not exit cleanly on SIGTERM: {status}\n{}",
            self.log_text()
        );
        assert!(
            !self.listeners_path.exists(),
            "{} left behind after a clean stop",
            self.listeners_path.display()
        );
        assert_plain_log(&self.log_text());
    }

    /// Sends SIGTERM; the exit status, however the process ended, and its whole log.
    pub async fn stop_with_status(self) -> (ExitStatus, String) {
        self.stop_by_signal("TERM").await
    }

    /// Sends `signal` (a name `kill` knows: `HUP`); the exit status, however the
    /// process ended, its whole log, and whether `listeners.json` is left behind.
    pub async fn stop_by_signal(mut self, signal: &str) -> (ExitStatus, String) {
        let status = self.signal_and_wait(signal).await;
        let mut log = self.log_text();
        if self.listeners_path.exists() {
            log.push_str("\n[test] listeners file left behind");
        }
        (status, log)
    }

    async fn terminate(&mut self) -> ExitStatus {
        self.signal_and_wait("TERM").await
    }

    async fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        send_signal(self.pid(), signal);
        let what = format!("stop within {STOP_TIMEOUT:?} of SIG{signal}");
        self.exit_within(Instant::now() + STOP_TIMEOUT, &what).await
    }

    /// Waits up to `within` for the process to exit by itself; its status and whole
    /// log. Panics (killing it) if it is still running then.
    pub async fn wait_for_exit(mut self, within: Duration) -> (ExitStatus, String) {
        let status = self
            .exit_within(Instant::now() + within, "exit by itself")
            .await;
        (status, self.log_text())
    }

    /// The exit status once the process has exited; panics, killing it, when that is
    /// not before `deadline` ("meshtel did not {what}").
    async fn exit_within(&mut self, deadline: Instant, what: &str) -> ExitStatus {
        loop {
            if let Some(status) = self.child_mut().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let log = self.log_text();
                let _ = self.child_mut().kill();
                let _ = self.child_mut().wait();
                self.child = None;
                panic!("meshtel did not {what}\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ctrl-C twice: SIGINT, then once the log says the store is stopping, SIGINT
    /// again. The exit status and the whole log.
    pub async fn interrupt_twice(mut self) -> (ExitStatus, String) {
        send_signal(self.pid(), "INT");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self.log_text().contains("Ctrl-C again stops at once") {
            assert!(
                Instant::now() < deadline,
                "no stopping line after SIGINT\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        send_signal(self.pid(), "INT");
        let status = self.exit_within(deadline, "stop at a second SIGINT").await;
        (status, self.log_text())
    }

    /// SIGKILL: no flush, no cleanup; only the WAL survives.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("the process is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the killed process");
    }

    /// `http://<query>` + `path`.
    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query.expect("a query listener"))
    }

    /// `http://<http>` + `path`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("an OTLP HTTP listener"))
    }

    /// The Zipkin span endpoint.
    pub fn zipkin_url(&self) -> String {
        format!(
            "http://{}/api/v2/spans",
            self.zipkin.expect("a Zipkin listener")
        )
    }

    /// A gRPC `TraceService` client.
    pub async fn grpc_client(&self) -> TraceServiceClient<Channel> {
        grpc_client(self.grpc.expect("a gRPC listener")).await
    }
}

impl Drop for Meshtel {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            send_signal(child.id(), "TERM");
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

pub(super) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A log written to a file has no terminal colour codes: grep, journald and
/// `kubectl logs` must see the text as it is.
pub fn assert_plain_log(log: &str) {
    assert!(
        !log.contains("\u{1b}["),
        "ANSI escape codes in a log written to a file:\n{log}"
    );
}
