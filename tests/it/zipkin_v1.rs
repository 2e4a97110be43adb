//! Zipkin v1 (`POST /api/v1/spans`), JSON and Thrift, through `meshtel serve` to the
//! Jaeger API: a shared client/server span becomes the client's span and the server's,
//! each under its own service, with its annotations, tags and addresses. The Thrift
//! span is encoded by thriftpy2 (`tests/sdk/send_zipkin_thrift.py`, from the venv of
//! `scripts/test.sh`; without it the test fails under CI and is skipped loudly
//! elsewhere).

use serde_json::{Value, json};

use crate::roundtrip::check_everywhere;
use crate::sdk::{python, repo, run_sender, skip};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_v1_json_round_trip() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    let Shared { trace, id, parent, ts } = Shared::new();
    let frontend = json!({"serviceName": "zk1-frontend"});
    let backend = json!({"serviceName": "zk1-backend", "ipv4": "192.168.99.1", "port": 3306});
    let spans = json!([{
        "traceId": trace, "id": id, "parentId": parent, "name": "Get /Api",
        "timestamp": ts, "duration": 2100,
        "annotations": [
            {"timestamp": ts, "value": "cs", "endpoint": frontend},
            {"timestamp": ts + 50, "value": "retry", "endpoint": frontend},
            {"timestamp": ts + 100, "value": "sr", "endpoint": backend},
            {"timestamp": ts + 1531, "value": "ss", "endpoint": backend},
            {"timestamp": ts + 2000, "value": "cr", "endpoint": frontend}
        ],
        "binaryAnnotations": [
            {"key": "http.path", "value": "/api", "endpoint": backend},
            {"key": "error", "value": "true", "endpoint": backend},
            {"key": "sa", "value": true, "endpoint": backend},
            {"key": "lc", "value": "", "endpoint": frontend}
        ]
    }]);
    let reply = post(
        &m.zipkin_url().replace("/api/v2/spans", "/api/v1/spans"),
        &[("content-type", "application/json")],
        serde_json::to_vec(&spans).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(reply.body.is_empty(), "202 has an empty body");

    let expected = shared_span_read_back(&trace, &id, &parent, ts, "zk1");
    check_everywhere(&m, &trace, "zk1-backend", &expected, 2).await;
    m.stop().await;
}

/// The same span as [`zipkin_v1_json_round_trip`], encoded by a Thrift library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_v1_thrift_round_trip() {
    let python = python().filter(|python| {
        // A venv made before thriftpy2 joined it has the SDK but not this.
        std::process::Command::new(python)
            .args(["-c", "import thriftpy2"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    let Some(python) = python else {
        skip(
            "zipkin_v1_thrift_round_trip",
            "no Python venv with thriftpy2",
            "Run `bash scripts/test.sh` (creates target/py-venv with thriftpy2) or set \
             MESHTEL_TEST_PYTHON to a python with thriftpy2 installed.",
        );
        return;
    };
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    let Shared { trace, id, parent, ts } = Shared::new();
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(repo().join("tests/sdk/send_zipkin_thrift.py"))
        .arg("--url")
        .arg(m.zipkin_url().replace("/api/v2/spans", "/api/v1/spans"))
        .args(["--trace-id", &trace, "--id", &id, "--parent-id", &parent])
        .args(["--timestamp", &ts.to_string()])
        .args(["--client", "zkt-frontend", "--server", "zkt-backend"]);
    let sent = run_sender(command, "send_zipkin_thrift.py").await;
    assert_eq!(sent["status"], 202, "{sent}");
    assert_eq!(sent["body"], "", "202 has an empty body");
    let expected = shared_span_read_back(&trace, &id, &parent, ts, "zkt");
    check_everywhere(&m, &trace, "zkt-backend", &expected, 2).await;
    m.stop().await;
}

/// The ids and start of the shared span both tests send: a 64-bit trace id, as v1 has.
struct Shared {
    trace: String,
    id: String,
    parent: String,
    ts: u64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            trace: hex::encode(&random_short_trace_id()[8..]),
            id: hex::encode(random_span_id()),
            parent: hex::encode(random_span_id()),
            ts: now_nanos() / 1_000 - 30_000_000,
        }
    }
}

/// What the Jaeger API serves for the shared span both tests send, its services named
/// `{prefix}-frontend` and `{prefix}-backend`.
fn shared_span_read_back(trace: &str, id: &str, parent: &str, ts: u64, prefix: &str) -> Value {
    let child_of = json!([{"refType": "CHILD_OF", "traceID": trace, "spanID": parent}]);
    json!({
        "traceID": trace,
        "spans": [
            {
                // The client side: the span's own timestamp and duration (not cs to
                // cr), its other annotation, and the server's address.
                "traceID": trace, "spanID": id, "operationName": "get /api",
                "references": child_of, "startTime": ts, "duration": 2100,
                "tags": [
                    {"key": "peer.service", "type": "string", "value": format!("{prefix}-backend")},
                    {"key": "net.peer.ip", "type": "string", "value": "192.168.99.1"},
                    {"key": "net.peer.port", "type": "int64", "value": 3306},
                    {"key": "span.kind", "type": "string", "value": "client"},
                ],
                "logs": [{"timestamp": ts + 50, "fields": [{"key": "event", "type": "string", "value": "retry"}]}],
                "processID": "p1", "warnings": null,
            },
            {
                // The server side: sr to ss, its tags. It shares the client's span id,
                // which the Jaeger API makes unique as Jaeger does: the first free id,
                // the child of the client's span.
                "traceID": trace, "spanID": "0000000000000001", "operationName": "get /api",
                "references": [{"refType": "CHILD_OF", "traceID": trace, "spanID": id}],
                "startTime": ts + 100, "duration": 1431,
                "tags": [
                    {"key": "http.path", "type": "string", "value": "/api"},
                    {"key": "net.host.ip", "type": "string", "value": "192.168.99.1"},
                    {"key": "net.host.port", "type": "int64", "value": 3306},
                    {"key": "span.kind", "type": "string", "value": "server"},
                    {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                    {"key": "error", "type": "bool", "value": true},
                ],
                "logs": [],
                "processID": "p2", "warnings": null,
            },
        ],
        "processes": {
            "p1": {"serviceName": format!("{prefix}-frontend"), "tags": []},
            "p2": {"serviceName": format!("{prefix}-backend"), "tags": []},
        },
        "warnings": null,
    })
}
