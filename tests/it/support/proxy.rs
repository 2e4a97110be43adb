//! The sidecar: `meshtel proxy` processes.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{START_TIMEOUT, send_signal};
use super::{TestDir, get, parse_prometheus_text};

/// One running `meshtel proxy` process, its outbound and admin listeners (and inbound
/// when asked for) on 127.0.0.1:0. Dropping it kills the process (SIGKILL): a sidecar
/// holds nothing that must survive the test.
pub struct MeshProxy {
    child: Option<Child>,
    log: PathBuf,
    pub inbound: Option<SocketAddr>,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
}

impl MeshProxy {
    /// A sidecar of `service` version v1 (as [`MeshProxy::start`]): routes by the mesh
    /// file `mesh`, reports to `collector`, samples every trace, fronts an app when
    /// `inbound` (`LISTEN=APP`) is given, plus `extra` flags.
    pub async fn sidecar(
        dir: &TestDir,
        name: &str,
        service: &str,
        mesh: &str,
        collector: &str,
        inbound: Option<&str>,
        extra: &[&str],
    ) -> MeshProxy {
        let mut args = vec![
            "--mesh",
            mesh,
            "--service",
            service,
            "--version",
            "v1",
            "--collector",
            collector,
            "--sampling",
            "100",
        ];
        if let Some(inbound) = inbound {
            args.extend(["--inbound", inbound]);
        }
        args.extend_from_slice(extra);
        MeshProxy::start(dir, name, &args).await
    }

    /// Starts `meshtel proxy --outbound 127.0.0.1:0 --admin 127.0.0.1:0
    /// --listeners-file <dir>/<name>-listeners.json <args>` and waits for the listeners
    /// file. `args` carries `--mesh`, `--service`, `--version`, `--inbound`,
    /// `--collector`, `--sampling`, ... as the test needs.
    pub async fn start(dir: &TestDir, name: &str, args: &[&str]) -> MeshProxy {
        let listeners_path = dir.path().join(format!("{name}-listeners.json"));
        let _ = std::fs::remove_file(&listeners_path);
        let log = dir.path().join(format!("proxy-{name}.log"));
        let log_file = File::create(&log).expect("creating the proxy log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
        command
            .arg("proxy")
            .args(["--outbound", "127.0.0.1:0"])
            .args(["--admin", "127.0.0.1:0"])
            .arg("--listeners-file")
            .arg(&listeners_path)
            .args(["--proxy-id", name])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // Hermetic: no MESHTEL_PROXY_* of the developer's shell leaks into the proxy.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MESHTEL_PROXY_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().expect("spawning meshtel proxy");
        let mut proxy = MeshProxy {
            child: Some(child),
            log,
            inbound: None,
            outbound: ([127, 0, 0, 1], 0).into(),
            admin: ([127, 0, 0, 1], 0).into(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = proxy.child.as_mut().expect("the proxy is running");
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "meshtel proxy {name} exited during startup with {status}\n{}",
                    proxy.log_text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&listeners_path)
                && let Ok(json) = serde_json::from_str::<Value>(&text)
            {
                let addr = |key: &str| {
                    json.get(key)
                        .and_then(Value::as_str)
                        .map(|s| s.parse::<SocketAddr>().unwrap())
                };
                if let (Some(outbound), Some(admin)) = (addr("outbound"), addr("admin")) {
                    proxy.inbound = addr("inbound");
                    proxy.outbound = outbound;
                    proxy.admin = admin;
                    return proxy;
                }
            }
            assert!(
                Instant::now() < deadline,
                "meshtel proxy {name} did not write its listeners file within {START_TIMEOUT:?}\n{}",
                proxy.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The inbound listener (panics when the proxy has none).
    pub fn inbound(&self) -> SocketAddr {
        self.inbound.expect("a proxy with --inbound")
    }

    /// What the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://<admin>` + `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The admin `/stats/prometheus` samples of `name`, summed over label sets that
    /// contain every `(label, value)` of `labels`.
    pub async fn stat(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let reply = get(&self.admin_url("/stats/prometheus")).await;
        assert_eq!(
            reply.status,
            200,
            "admin /stats/prometheus: {}",
            reply.text()
        );
        parse_prometheus_text(&reply.text())
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| s.value)
            .sum()
    }
}

impl MeshProxy {
    /// SIGTERM, then waits up to `within` for a clean exit (status 0); returns how long
    /// the proxy took to drain and flush.
    pub async fn stop(mut self, within: Duration) -> Duration {
        let mut child = self.child.take().expect("the proxy is running");
        send_signal(child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "meshtel proxy did not exit cleanly on SIGTERM: {status}\n{}",
                    self.log_text()
                );
                super::process::assert_plain_log(&self.log_text());
                return started.elapsed();
            }
            if started.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "meshtel proxy did not stop within {within:?} of SIGTERM\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for MeshProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A 127.0.0.1 port bound but not listening, and without `SO_REUSEADDR`: connecting
/// is refused, and no server another test starts on port 0 is given it, as a port
/// released at once could be.
pub struct ClosedPort {
    socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        ClosedPort { socket, addr }
    }

    /// Starts listening on the port: a collector that comes back.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(128).unwrap();
        self.socket.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(self.socket.into()).unwrap()
    }
}

/// A 127.0.0.1 address nothing listens on for the rest of the test process (a
/// [`ClosedPort`] kept): a collector that is down.
pub fn closed_address() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<ClosedPort>> = std::sync::Mutex::new(Vec::new());
    let port = ClosedPort::new();
    let addr = port.addr;
    HELD.lock().unwrap().push(port);
    addr
}
