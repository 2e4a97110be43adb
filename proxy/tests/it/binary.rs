//! Smoke test of the `meshtel-proxy` binary: boots on port 0, publishes its
//! listeners, answers the admin port, stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn the_binary_boots_reports_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, include_str!("../../examples/mesh.yaml")).expect("write mesh");
    let listeners_file = dir.path().join("listeners.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshtel-proxy"))
        .args(["--mesh", mesh.to_str().expect("utf-8 path"), "--service", "reviews", "--version", "v2"])
        .args(["--inbound", "127.0.0.1:0=127.0.0.1:9", "--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--collector", &format!("http://{}", dead_address().await), "--sampling", "100"])
        .arg("--listeners-file")
        .arg(&listeners_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start meshtel-proxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    let addresses: meshtel_proxy::ListenerAddresses = loop {
        if let Some(parsed) = std::fs::read(&listeners_file).ok().and_then(|json| serde_json::from_slice(&json).ok()) {
            break parsed;
        }
        assert!(Instant::now() < deadline, "no listeners file");
        assert!(child.try_wait().expect("wait").is_none(), "proxy exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(addresses.inbound.is_some());
    let client = http1_client();
    let admin = |path: &str| {
        http::Request::get(format!("http://{}{path}", addresses.admin)).body(empty()).expect("request")
    };
    let (parts, body, _) = send(&client, admin("/ready")).await;
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"ready\n"[..]));
    let (parts, body, _) = send(&client, admin("/stats/prometheus")).await;
    assert_eq!(parts.status, 200);
    assert!(String::from_utf8_lossy(&body).contains("meshtel_proxy_reports_dropped_total 0"));
    // The inbound's app (port 9, discard) is not listening: 503 UF, not a hang.
    let inbound = format!("http://{}/", addresses.inbound.expect("inbound"));
    let (parts, _, _) = send(&client, get(&inbound, "reviews", &[])).await;
    assert_eq!(parts.status, 503);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "proxy did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
