//! Traces from real client libraries, read back through the Jaeger API: OpenTelemetry
//! Python's OTLP gRPC and HTTP exporters (gzip) and its Zipkin v2 JSON exporter;
//! OpenTelemetry JavaScript's OTLP/HTTP exporters, JSON (as browsers send) and
//! protobuf, and both ends of a call through two sidecars (W3C trace context);
//! zipkin-js, with a server that joins its caller's span id, and both ends of a call
//! through two sidecars (B3).
//!
//! The Python interpreter is `$MESHTEL_TEST_PYTHON` (set by `scripts/test.sh` to its
//! venv), or `target/py-venv/bin/python` in the repository; the JavaScript SDK is in
//! `$MESHTEL_SDK_NODE_MODULES` or `target/sdk-node/node_modules` (`scripts/test.sh`
//! installs `tests/sdk/js/package-lock.json` there, zipkin-js with it), run by `node`
//! on `PATH`. Without them a test fails under CI (`CI=true`) and is skipped loudly
//! elsewhere.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::support::*;

/// The environment, read through one function (no `set_var` in tests).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn python() -> Option<PathBuf> {
    if let Some(path) = env("MESHTEL_TEST_PYTHON") {
        return Some(PathBuf::from(path));
    }
    let venv = repo().join("target/py-venv/bin/python");
    venv.exists().then_some(venv)
}

fn tag<'a>(tags: &'a Value, key: &str) -> &'a Value {
    tags.as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap_or_else(|| panic!("no tag {key} in {tags}"))
}

/// Unix nanoseconds as a sender printed them: a JSON number, or a string (JavaScript's
/// numbers cannot hold them).
fn nanos(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not Unix nanoseconds: {value}"))
}

/// Fails under CI, else prints a loud notice: `test` is skipped because `why`.
pub(crate) fn skip(test: &str, why: &str, how: &str) {
    assert!(
        env("CI").as_deref() != Some("true"),
        "{test} cannot run (CI=true): {why}. {how}"
    );
    let bar = "!".repeat(78);
    eprintln!("\n\n{bar}\n!!! SKIPPED {test}: {why}.\n!!! {how}\n{bar}\n");
}

/// Runs a sender script (`command`) within 60 s, its output read as it comes, and
/// returns the JSON object it printed: the ids it sent, by transport. A script still
/// running then is killed.
pub(crate) async fn run_sender(mut command: tokio::process::Command, name: &str) -> Value {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within 60 s"))
        .unwrap();
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_python_sdk_traces_are_served() {
    let Some(python) = python() else {
        skip(
            "opentelemetry_python_sdk_traces_are_served",
            "no Python venv",
            "Run `bash scripts/test.sh` (creates target/py-venv) or set MESHTEL_TEST_PYTHON \
             to a python with the OpenTelemetry SDK installed.",
        );
        return;
    };
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(repo().join("tests/sdk/send_traces.py"))
        .arg("--grpc")
        .arg(m.grpc.unwrap().to_string())
        .arg("--http")
        .arg(m.http_url("/v1/traces"))
        .arg("--zipkin")
        .arg(m.zipkin_url())
        .args(["--service", "py-shop"]);
    let sent = run_sender(command, "send_traces.py").await;
    check_traces(&m, &sent, &["grpc", "http", "zipkin"], "py-shop", "python").await;
    m.stop().await;
}

/// The `node_modules` holding `tests/sdk/js/package-lock.json`'s libraries, or `None`
/// after [`skip`] when they or node are missing.
fn js_libraries(test: &str) -> Option<PathBuf> {
    let node_modules = env("MESHTEL_SDK_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/sdk-node/node_modules"));
    if Command::new("node").arg("--version").output().is_err() {
        skip(test, "no node on PATH", "Install Node.js 20 or later.");
        return None;
    }
    let installed = ["@opentelemetry/sdk-trace", "zipkin-transport-http"]
        .iter()
        .all(|package| node_modules.join(package).join("package.json").is_file());
    if !installed {
        skip(
            test,
            &format!(
                "tests/sdk/js's libraries are not in {}",
                node_modules.display()
            ),
            "Run `bash scripts/test.sh` (installs tests/sdk/js/package-lock.json into \
             target/sdk-node) or set MESHTEL_SDK_NODE_MODULES.",
        );
        return None;
    }
    Some(node_modules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_js_sdk_traces_are_served() {
    let Some(node_modules) = js_libraries("opentelemetry_js_sdk_traces_are_served") else {
        return;
    };
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg(repo().join("tests/sdk/js/send_traces.mjs"))
        .arg("--http")
        .arg(m.http_url("/v1/traces"))
        .args(["--service", "js-shop"])
        .env("MESHTEL_SDK_NODE_MODULES", &node_modules);
    let sent = run_sender(command, "send_traces.mjs").await;
    check_traces(
        &m,
        &sent,
        &["http-json", "http-protobuf"],
        "js-shop",
        "nodejs",
    )
    .await;
    m.stop().await;
}

/// zipkin-js as two services use it with B3: the server joins its caller's span id.
/// The trace API tells the two apart as Jaeger does (the server span gets a new id,
/// the client span as its parent, and the server's own child follows it); `raw=true`
/// shows what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_js_shared_span_ids_are_told_apart() {
    let Some(node_modules) = js_libraries("zipkin_js_shared_span_ids_are_told_apart") else {
        return;
    };
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg(repo().join("tests/sdk/js/send_zipkin.mjs"))
        .arg("--zipkin")
        .arg(m.zipkin_url())
        .env("MESHTEL_SDK_NODE_MODULES", &node_modules);
    let sent = run_sender(command, "send_zipkin.mjs").await;
    let trace_id = sent["trace_id"].as_str().unwrap();
    let shared = sent["shared"].as_str().unwrap();
    let child_id = sent["child"].as_str().unwrap();

    let trace = wait_for_trace(&m, trace_id, 3).await;
    let service = |span: &Value| {
        trace["processes"][span["processID"].as_str().unwrap()]["serviceName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let spans = trace["spans"].as_array().unwrap();
    let find = |what: &str, test: &dyn Fn(&Value) -> bool| {
        spans
            .iter()
            .find(|s| test(s))
            .unwrap_or_else(|| panic!("no {what} in {trace}"))
    };
    let client = find("frontend span", &|s| service(s) == "frontend");
    let server = find("backend get /api", &|s| {
        service(s) == "backend" && s["operationName"] == "get /api"
    });
    let select = find("select", &|s| s["spanID"] == child_id);
    let child_of =
        |parent: &Value| json!([{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}]);

    assert_eq!(client["spanID"], shared);
    assert_eq!(client["references"], json!([]));
    assert_eq!(tag(&client["tags"], "span.kind")["value"], "client");
    assert_eq!(tag(&client["tags"], "http.path")["value"], "/api");
    assert_ne!(server["spanID"], shared, "{trace}");
    assert_eq!(server["references"], child_of(&json!(shared)));
    assert_eq!(tag(&server["tags"], "span.kind")["value"], "server");
    assert_eq!(tag(&server["tags"], "http.status_code")["value"], "500");
    assert!(
        server["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "error", "type": "bool", "value": true})),
        "{server}"
    );
    assert_eq!(select["operationName"], "select");
    assert_eq!(service(select), "backend");
    assert_eq!(select["references"], child_of(&server["spanID"]));

    let raw = get_json(&m.query_url(&format!("/api/traces/{trace_id}?raw=true"))).await;
    let mut ids: Vec<&str> = raw["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![shared, shared, child_id];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{raw}");
    m.stop().await;
}

/// The OpenTelemetry JS SDK on both ends of a call through two sidecars, with W3C
/// trace context: see [`call_through_two_sidecars`]. The app is handed its sidecar's
/// span as `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_js_traces_a_call_through_two_sidecars() {
    call_through_two_sidecars(
        "opentelemetry_js_traces_a_call_through_two_sidecars",
        Propagation::W3c,
    )
    .await;
}

/// zipkin-js on both ends of a call through two sidecars, with B3 headers (the app's
/// tracer makes a child of its caller's span, as B3 servers do that do not join): see
/// [`call_through_two_sidecars`]. The app is handed its sidecar's span as
/// `X-B3-SpanId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_js_traces_a_call_through_two_sidecars() {
    call_through_two_sidecars(
        "zipkin_js_traces_a_call_through_two_sidecars",
        Propagation::B3,
    )
    .await;
}

/// How the apps of [`call_through_two_sidecars`] trace and propagate.
#[derive(Clone, Copy)]
enum Propagation {
    /// `tests/sdk/js/mesh_app.mjs`: the OpenTelemetry JS SDK, `traceparent`, OTLP.
    W3c,
    /// `tests/sdk/js/mesh_app_b3.mjs`: zipkin-js, `X-B3-*`, Zipkin v2 JSON.
    B3,
}

/// A traced app (reviews) behind its sidecar, and a traced caller (productpage) that
/// calls it through its own sidecar: the caller's CLIENT span, the caller's sidecar,
/// the callee's sidecar and the callee's SERVER span must be one trace, each the
/// child of the one before, and the app must be handed its sidecar's span.
async fn call_through_two_sidecars(test: &str, propagation: Propagation) {
    let Some(node_modules) = js_libraries(test) else {
        return;
    };
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let collector = format!("http://{}", m.grpc.unwrap());
    let (script, export) = match propagation {
        Propagation::W3c => (
            "mesh_app.mjs",
            ["--otlp".to_string(), m.http_url("/v1/traces")],
        ),
        Propagation::B3 => ("mesh_app_b3.mjs", ["--zipkin".to_string(), m.zipkin_url()]),
    };
    let script_path = repo().join("tests/sdk/js").join(script);

    // reviews: the app, then its sidecar in front of it.
    let mut app = tokio::process::Command::new("node")
        .arg(&script_path)
        .args(["serve", "--service", "reviews"])
        .args(&export)
        .env("MESHTEL_SDK_NODE_MODULES", &node_modules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("running {script} serve: {e}"));
    let mut lines = tokio::io::BufReader::new(app.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{script} serve prints its port within 30 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("{script} serve printed its port"));
    let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
        .as_u64()
        .unwrap();
    let mesh = dir.path().join("mesh.yaml");
    let mesh_arg = mesh.to_str().unwrap().to_string();
    crate::mesh::write_mesh(&mesh, "services: []\n");
    let app_inbound = format!("127.0.0.1:0=127.0.0.1:{port}");
    let sidecar = async |name: &str, service: &str, inbound: Option<&str>| {
        MeshProxy::sidecar(&dir, name, service, &mesh_arg, &collector, inbound, &[]).await
    };
    let reviews = sidecar("reviews-v1", "reviews", Some(&app_inbound)).await;
    let productpage = sidecar("productpage-v1", "productpage", None).await;
    crate::mesh::write_mesh(
        &mesh,
        &format!(
            "services:\n  - name: reviews\n    port: 9080\n    endpoints:\n      - address: {}\n        workload: reviews-v1\n        labels: {{ app: reviews, version: v1 }}\n",
            reviews.inbound()
        ),
    );
    crate::mesh::wait_for_mesh_reload(&productpage, 1.0).await;

    // productpage: one call through its sidecar's outbound listener.
    let mut call = tokio::process::Command::new("node");
    call.arg(&script_path)
        .args(["call", "--service", "productpage", "--host", "reviews:9080"])
        .args(&export)
        .arg("--to")
        .arg(format!("http://{}/reviews/1", productpage.outbound))
        .env("MESHTEL_SDK_NODE_MODULES", &node_modules);
    let sent = run_sender(call, script).await;
    assert_eq!(sent["status"], 200, "{sent}");
    let trace_id = sent["trace_id"].as_str().unwrap();
    let caller_span = sent["span_id"].as_str().unwrap();

    let trace = wait_for_trace(&m, trace_id, 4).await;
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 4, "{trace:#}");
    let service = |span: &Value| {
        trace["processes"][span["processID"].as_str().unwrap()]["serviceName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let find = |name: &str, kind: &str| {
        spans
            .iter()
            .find(|s| service(s) == name && tag(&s["tags"], "span.kind")["value"] == kind)
            .unwrap_or_else(|| panic!("no {kind} span of {name} in {trace:#}"))
    };
    let caller = find("productpage", "client");
    let caller_sidecar = find("productpage.default", "client");
    let callee_sidecar = find("reviews.default", "server");
    let callee = find("reviews", "server");
    let parent = |span: &Value| {
        let references = span["references"].as_array().unwrap();
        assert_eq!(references.len(), 1, "{span:#}");
        assert_eq!(references[0]["refType"], "CHILD_OF");
        references[0]["spanID"].as_str().unwrap().to_string()
    };
    let sidecar_span = callee_sidecar["spanID"].as_str().unwrap();
    assert_eq!(caller["spanID"], caller_span);
    assert_eq!(caller["references"], json!([]));
    assert_eq!(parent(caller_sidecar), caller_span);
    assert_eq!(
        parent(callee_sidecar),
        caller_sidecar["spanID"].as_str().unwrap()
    );
    assert_eq!(parent(callee), sidecar_span);
    let (header, expected) = match propagation {
        Propagation::W3c => (
            "received.traceparent",
            format!("00-{trace_id}-{sidecar_span}-01"),
        ),
        Propagation::B3 => ("received.b3.spanid", sidecar_span.to_string()),
    };
    assert_eq!(tag(&callee["tags"], header)["value"], expected);
    drop(app);
    m.stop().await;
}

/// Reads back through the Jaeger API the trace each of `transports` sent (ids in
/// `sent`): a SERVER `checkout` parent and a CLIENT `charge-card` child with typed
/// attributes, an event and an ERROR status, from `service` of SDK `language`.
async fn check_traces(
    m: &Meshtel,
    sent: &Value,
    transports: &[&str],
    service: &str,
    language: &str,
) {
    for &transport in transports {
        // Zipkin tags are strings; OTLP attributes keep their types.
        let zipkin = transport == "zipkin";
        let ids = &sent[transport];
        let trace_id = ids["trace_id"].as_str().unwrap();
        let parent_id = ids["parent"].as_str().unwrap();
        let child_id = ids["child"].as_str().unwrap();
        let trace = wait_for_trace(m, trace_id, 2).await;
        assert_eq!(trace["traceID"], trace_id);
        let spans = trace["spans"].as_array().unwrap();
        let parent = spans
            .iter()
            .find(|s| s["spanID"] == parent_id)
            .expect("parent span");
        let child = spans
            .iter()
            .find(|s| s["spanID"] == child_id)
            .expect("child span");

        assert_eq!(parent["operationName"], "checkout");
        assert_eq!(parent["references"], json!([]));
        assert_eq!(tag(&parent["tags"], "span.kind")["value"], "server");
        assert_eq!(tag(&parent["tags"], "transport")["value"], transport);
        assert_eq!(tag(&parent["tags"], "http.request.method")["value"], "POST");
        assert_eq!(
            parent["tags"][0],
            json!({"key": "otel.scope.name", "type": "string", "value": "meshtel.sdk.test"})
        );
        assert_eq!(
            parent["tags"][1],
            json!({"key": "otel.scope.version", "type": "string", "value": "0.1.0"})
        );

        assert_eq!(child["operationName"], "charge-card");
        assert_eq!(
            child["references"],
            json!([{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent_id}])
        );
        let tags = &child["tags"];
        let typed = |key: &str, kind: &str, value: Value, text: &str| {
            let expected = if zipkin {
                json!({"key": key, "type": "string", "value": text})
            } else {
                json!({"key": key, "type": kind, "value": value})
            };
            assert_eq!(*tag(tags, key), expected, "{transport}");
        };
        typed("amount", "int64", json!(42), "42");
        typed("retry", "bool", json!(true), "true");
        typed("rate", "float64", json!(0.5), "0.5");
        assert_eq!(tag(tags, "span.kind")["value"], "client");
        assert_eq!(tag(tags, "otel.status_code")["value"], "ERROR");
        let errors: Vec<&Value> = tags
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["key"] == "error")
            .collect();
        let logs = child["logs"].as_array().unwrap();
        assert_eq!(logs.len(), 1, "{logs:?}");
        if zipkin {
            // The Zipkin exporter writes the status description into an `error` tag,
            // which stays beside the `error` flag, as OpenTelemetry's Zipkin receiver
            // keeps it; its event becomes an annotation whose text is JSON.
            assert_eq!(
                errors,
                [
                    &json!({"key": "error", "type": "string", "value": "payment failed"}),
                    &json!({"key": "error", "type": "bool", "value": true}),
                ]
            );
            assert_eq!(
                logs[0]["fields"],
                json!([{"key": "event", "type": "string",
                        "value": r#"{"card.declined": {"reason": "insufficient funds"}}"#}])
            );
        } else {
            assert_eq!(
                errors,
                [&json!({"key": "error", "type": "bool", "value": true})]
            );
            assert_eq!(
                tag(tags, "otel.status_description")["value"],
                "payment failed"
            );
            assert_eq!(
                logs[0]["fields"],
                json!([
                    {"key": "event", "type": "string", "value": "card.declined"},
                    {"key": "reason", "type": "string", "value": "insufficient funds"},
                ])
            );
        }
        // Times as the SDK recorded them, in Jaeger's microseconds: cut from OTLP's
        // nanoseconds, rounded by the Zipkin exporter. (Not their order: the
        // JavaScript SDK's clock lets a child end after its parent now and then.)
        let times = &ids["times"];
        let micros = |ns: u64| if zipkin { (ns + 500) / 1000 } else { ns / 1000 };
        for (span, name) in [(parent, "parent"), (child, "child")] {
            let (start, end) = (nanos(&times[name][0]), nanos(&times[name][1]));
            assert_eq!(span["startTime"], micros(start), "{transport} {name} start");
            assert_eq!(
                span["duration"],
                micros(end - start),
                "{transport} {name} duration"
            );
        }
        assert_eq!(
            logs[0]["timestamp"],
            micros(nanos(&times["event"])),
            "{transport} event"
        );

        let process = &trace["processes"][parent["processID"].as_str().unwrap()];
        assert_eq!(process["serviceName"], service);
        assert_eq!(
            tag(&process["tags"], "telemetry.sdk.language")["value"],
            language
        );
        assert_eq!(
            tag(&process["tags"], "deployment.environment")["value"],
            "test"
        );
        assert!(
            process["tags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["key"] != "service.name"),
            "service.name is not repeated in process tags"
        );
    }
    let ops = get_json(&m.query_url(&format!("/api/services/{service}/operations"))).await;
    let mut names: Vec<&str> = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["charge-card", "checkout"]);
}
