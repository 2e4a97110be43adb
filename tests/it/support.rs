//! Starting the real `meshtel` binary on 127.0.0.1 port-0 listeners, stopping it
//! (gracefully or with SIGKILL), and the HTTP / gRPC clients the tests talk to it with.
//!
//! - [`process`]: `meshtel` processes ([`Meshtel`]) and their [`TestDir`].
//! - [`client`]: HTTP and gRPC clients, the Jaeger API's trace look-ups.
//! - [`otlp`]: OTLP spans, resources and random ids to send.
//! - [`proxy`]: `meshtel proxy` processes ([`MeshProxy`]).
//! - [`app_server`]: in-process upstream apps ([`AppServer`]).
//! - [`prometheus`]: the Prometheus text format parser.

mod app_server;
mod client;
mod otlp;
mod process;
mod prometheus;
mod proxy;

use std::path::Path;
use std::time::{Duration, Instant};

pub use app_server::*;
pub use client::*;
pub use otlp::*;
pub use process::*;
pub use prometheus::*;
pub use proxy::*;

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin token `meshtel serve` (or `meshtel query`) prints at first start (a bare word, or a log field
/// `token="..."`).
pub fn generated_token(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("generated admin token"))
        .find_map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_start_matches("token=").trim_matches('"'))
                .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .map(str::to_string)
}

/// Number of Parquet files under `dir`, recursively.
pub fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                parquet_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}
