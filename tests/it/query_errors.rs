//! Bad input to the query port answers in the API's JSON error shapes: quota policies
//! with a type error or a repeated key name the field, every problem at once (admin
//! API, JSON and YAML, and `meshtel quota apply`); `curl -d`'s form content type is
//! read as a policy body; bodies over the limit are 413 stating it; unknown `/api`
//! paths are JSON 404s and Jaeger's SPM endpoints 501; a non-numeric `start`/`end` on a
//! trace fetch is 400.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "query-errors-test-token";

async fn put_policy(m: &Meshtel, name: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let response = http()
        .put(m.query_url(&format!("/api/quotas/{name}")))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

/// `(field, message)` of every problem of an invalid-policy answer.
fn problems(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.content_type, "application/json");
    let body = reply.json();
    assert_eq!(body["error"], "invalid quota policy", "{body}");
    let details = body["details"].as_array().expect("details");
    details
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_string(),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `(field, message)` of the only problem of an invalid-policy answer.
fn only_problem(reply: &Reply) -> (String, String) {
    let mut all = problems(reply);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_policy_type_errors_and_repeated_keys_name_the_field() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;
    let json = "application/json";

    // The type error, and what validation finds in the fields that did read.
    let reply = put_policy(&m, "p1", json, br#"{"name":"p1","maxAmount":1,"validDuration":"1s","overrides":[{"dimensions":{},"maxAmount":-3}]}"#.to_vec()).await;
    assert_eq!(
        problems(&reply),
        [
            (
                "overrides[0].maxAmount".to_string(),
                "must be a whole number ≥ 0, not -3".to_string()
            ),
            (
                "overrides[0].dimensions".to_string(),
                "must name at least one dimension".to_string()
            ),
        ]
    );

    let reply = put_policy(&m, "p2", json, br#"{"name":"p2","maxAmount":1,"validDuration":"1s","match":{"headers":{"x":{"regex":"a"}}}}"#.to_vec()).await;
    let (field, message) = only_problem(&reply);
    assert_eq!(field, "match.headers.x");
    assert_eq!(message, "must be a string, not an object");

    let reply = put_policy(
        &m,
        "p3",
        json,
        br#"{"name":"p3","maxAmount":1,"maxAmount":1000000,"validDuration":"1s"}"#.to_vec(),
    )
    .await;
    let (field, message) = only_problem(&reply);
    assert_eq!(field, "maxAmount");
    assert!(message.contains("duplicate key `maxAmount`"), "{message}");
    let missing = get(&m.query_url("/api/quotas/p3")).await;
    assert_eq!(
        missing.status,
        404,
        "the policy was stored: {}",
        missing.text()
    );

    let yaml = "application/yaml";
    let reply = put_policy(&m, "p4", yaml, b"name: p4\nmaxAmount: 1\nvalidDuration: 1s\noverrides:\n  - dimensions: {}\n    maxAmount: -3\n".to_vec()).await;
    assert_eq!(problems(&reply)[0].0, "overrides[0].maxAmount");
    let reply = put_policy(&m, "p5", yaml, b"name: p5\nmaxAmount: 1\nvalidDuration: 1s\ndimensions:\n  a: source.service\n  a: request.method\n".to_vec()).await;
    let (field, message) = only_problem(&reply);
    assert_eq!(field, "dimensions.a");
    assert!(message.contains("duplicate key"), "{message}");

    // Not JSON at all stays a plain 400 with the parser's message.
    let reply = put_policy(&m, "p6", json, b"{".to_vec()).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );

    // `curl -d @policy.json` (application/x-www-form-urlencoded) is read as a policy.
    let reply = put_policy(
        &m,
        "form",
        "application/x-www-form-urlencoded",
        br#"{"name":"form","maxAmount":1,"validDuration":"1s"}"#.to_vec(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = put_policy(
        &m,
        "form",
        "multipart/form-data; boundary=x",
        b"--x--".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 415, "{}", reply.text());

    // The CLI reads files the same way.
    let cli = |file: &str, text: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
            .args(["quota", "apply", "-f"])
            .arg(&path)
            .env("MESHTEL_QUERY_URL", m.query_url(""))
            .env("MESHTEL_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, text) = cli(
        "bad-type.yaml",
        "name: c1\nmaxAmount: 1\nvalidDuration: 1s\noverrides:\n  - dimensions: {}\n    maxAmount: -3\n",
    );
    assert!(!ok && text.contains("overrides[0].maxAmount"), "{text}");
    assert!(
        text.contains("overrides[0].dimensions: must name"),
        "{text}"
    );
    // Every problem at once, as the reviewer's policy has them.
    let (ok, text) = cli(
        "four.json",
        r#"{"name":"c5","maxAmount":-3,"validDuration":"0s","algorithm":"fixed-windw","dimensions":{"u":"request.bogus"}}"#,
    );
    assert!(!ok, "{text}");
    for want in [
        "maxAmount: must be a whole number ≥ 0, not -3",
        "dimensions.u: ",
        "validDuration: must be greater than zero",
        "algorithm: \"fixed-windw\" is not one of",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let (ok, text) = cli(
        "repeated.json",
        r#"{"name":"c2","maxAmount":1,"maxAmount":1000000,"validDuration":"1s"}"#,
    );
    assert!(!ok && text.contains("duplicate key `maxAmount`"), "{text}");
    let (ok, text) = cli(
        "repeated.yaml",
        "name: c3\nmaxAmount: 1\nmaxAmount: 1000000\nvalidDuration: 1s\n",
    );
    assert!(!ok && text.contains("maxAmount"), "{text}");
    let (ok, text) = cli("good.yaml", "name: c4\nmaxAmount: 1\nvalidDuration: 1s\n");
    assert!(ok, "{text}");

    // `quota get`: a policy meshtel does not have, another server's 404, the audit
    // log's reserved name.
    let get = |name: &str, server: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
            .args(["quota", "get", name, "--server", server])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, text) = get("c9", &m.query_url(""));
    assert!(!ok && text.contains("\"c9\" not found"), "{text}");
    let (ok, text) = get("c4", &m.http_url(""));
    assert!(
        !ok && text.contains("does --server point at a meshtel query service"),
        "{text}"
    );
    let (ok, text) = get("audit", &m.query_url(""));
    assert!(!ok && text.contains("is reserved"), "{text}");

    // `quota audit --before`: the page after a listing's last row.
    let audit = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
            .args(["quota", "audit", "--server", &m.query_url("")])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // The ID column of each row, under the header.
        let ids: Vec<u64> = (text.lines().skip(1))
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        ids
    };
    let all = audit(&[]);
    assert!(all.len() >= 2, "{all:?}");
    let newest = audit(&["--limit", "1"]);
    assert_eq!(newest, all[..1]);
    let rest = audit(&["--before", &newest[0].to_string()]);
    assert_eq!(rest, all[1..]);
    m.stop().await;
}

/// The v1 error envelope's only error: `(code, msg)`.
fn v1_error(reply: &Reply) -> (u64, String) {
    let body = reply.json();
    assert!(body["data"].is_null(), "{body}");
    let error = &body["errors"][0];
    (
        error["code"].as_u64().unwrap(),
        error["msg"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_port_answers_limits_unknown_paths_and_bad_hints_in_json() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--admin-token", TOKEN]).await;
    let big = vec![b' '; 3_000_000];

    let reply = put_policy(&m, "big", "application/json", big.clone()).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.content_type, "application/json");
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("2097152 bytes"), "{error}");

    let reply = post(
        &m.query_url("/api/transform"),
        &[("content-type", "application/json")],
        big,
    )
    .await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let (code, msg) = v1_error(&reply);
    assert_eq!(code, 413);
    assert!(msg.contains("2097152 bytes"), "{msg}");

    for kind in ["calls", "latencies", "errors", "minstep"] {
        let reply = get(&m.query_url(&format!("/api/metrics/{kind}?service=x"))).await;
        assert_eq!(reply.status, 501, "{kind}: {}", reply.text());
        assert_eq!(
            v1_error(&reply),
            (501, "metrics querying is currently disabled".to_string())
        );
    }
    // meshtel's own metrics endpoints still answer.
    let services = get(&m.query_url("/api/metrics/services")).await;
    assert_eq!(services.status, 200, "{}", services.text());

    let reply = get(&m.query_url("/api/nope")).await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.content_type.starts_with("text/plain"),
        "{}",
        reply.content_type
    );
    let (code, msg) = v1_error(&reply);
    assert_eq!(code, 404);
    assert!(msg.contains("/api/nope"), "{msg}");
    let reply = get(&m.query_url("/api/v3/nope")).await;
    assert_eq!(reply.status, 404);
    let body: Value = reply.json();
    assert_eq!(body["error"]["httpCode"], 404, "{body}");

    let id = "5b8efff798038103d269b633813fc60c";
    for name in ["start", "end"] {
        let reply = get(&m.query_url(&format!("/api/traces/{id}?{name}=abc"))).await;
        assert_eq!(reply.status, 400, "{name}: {}", reply.text());
        let (code, msg) = v1_error(&reply);
        assert_eq!(code, 400);
        assert!(
            msg.starts_with(&format!("unable to parse param '{name}'")),
            "{msg}"
        );
    }
    // Numeric values stay hints: the trace is simply not there.
    let reply = get(&m.query_url(&format!("/api/traces/{id}?start=1&end=2"))).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    m.stop().await;
}

/// A search may name at most 256 tags, in any of its forms; more is a 400 naming the
/// bound (a few thousand once overflowed a worker's stack and took the process down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_naming_too_many_tags_is_refused_and_the_server_lives_on() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let simple = |n: usize| {
        (0..n)
            .map(|i| format!("tag=k{i}:v"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let object = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let json = format!("{{{}}}", fields.join(","));
        json.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'0'..=b'9' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let ok = get(&m.query_url(&format!(
        "/api/traces?service=x&lookback=1h&{}",
        simple(256)
    )))
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    for n in [257, 2_500] {
        let reply =
            get(&m.query_url(&format!("/api/traces?service=x&lookback=1h&{}", simple(n)))).await;
        assert_eq!(reply.status, 400, "{n}: {}", reply.text());
        let (code, msg) = v1_error(&reply);
        assert_eq!(code, 400);
        assert_eq!(
            msg,
            format!(
                "the 'tag' and 'tags' parameters name {n} tags, more than the 256 one \
                 search may name"
            )
        );
        let reply = get(&m.query_url(&format!(
            "/api/traces?service=x&lookback=1h&tags={}",
            object(n)
        )))
        .await;
        assert_eq!(reply.status, 400, "{n}: {}", reply.text());
        let reply = get(&m.query_url(&format!(
            "/api/v3/traces?query.service_name=x&query.start_time_min=2026-01-01T00:00:00Z\
             &query.start_time_max=2026-01-02T00:00:00Z&query.attributes={}",
            object(n)
        )))
        .await;
        assert_eq!(reply.status, 400, "{n}: {}", reply.text());
        let body = reply.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("'query.attributes' parameters name"),
            "{body}"
        );
    }
    let services = get(&m.query_url("/api/services")).await;
    assert_eq!(services.status, 200, "{}", services.text());
    m.stop().await;
}
