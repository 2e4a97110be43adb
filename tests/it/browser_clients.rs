//! What browser clients send and read, against the real binary: a page posting Zipkin
//! spans as `text/plain` (spec §5.1), and current Jaeger UI's v3 search (camelCase
//! parameters, jaeger-ui `src/api/v3/client.ts`) and trace view, whose answers must
//! pass the UI's schema (jaeger-ui `src/api/v3/schemas.ts`).

use serde_json::Value;

use crate::support::*;

/// A root span and its child, with a 32-digit trace id, as a browser's Zipkin reporter
/// posts them.
fn zipkin_spans(trace: &str, now_us: u64) -> Vec<u8> {
    format!(
        r#"[{{"traceId":"{trace}","id":"00000000000000a1","name":"get /page","kind":"SERVER",
            "timestamp":{now_us},"duration":5000,"localEndpoint":{{"serviceName":"web"}}}},
           {{"traceId":"{trace}","id":"00000000000000a2","parentId":"00000000000000a1",
            "name":"fetch","kind":"CLIENT","timestamp":{},"duration":2000,
            "localEndpoint":{{"serviceName":"web"}},"tags":{{"error":"true"}}}}]"#,
        now_us + 1_000
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_reports_zipkin_spans_and_jaeger_ui_finds_and_shows_them() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let trace = hex::encode(random_trace_id());
    let now_us = now_nanos() / 1_000;

    // `fetch(url, {method: "POST", body})` sends text/plain;charset=UTF-8.
    let reply = post(
        &m.zipkin_url(),
        &[("content-type", "text/plain;charset=UTF-8")],
        zipkin_spans(&trace, now_us),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    wait_for_trace(&m, &trace, 2).await;

    // The search page, as Jaeger UI's `fetchTraceSummaries` asks.
    let window =
        "query.startTimeMin=1970-01-01T00:00:00.000Z&query.startTimeMax=2100-01-01T00:00:00.000Z";
    let summaries = get_json(&m.query_url(&format!(
        "/api/v3/trace-summaries?query.serviceName=web&query.operationName=get%20%2Fpage&{window}&query.searchDepth=20&query.durationMin=1ms"
    )))
    .await;
    let list = summaries["summaries"].as_array().expect("summaries");
    assert_eq!(list.len(), 1, "{summaries}");
    assert_eq!(list[0]["traceId"], trace.as_str());
    assert_eq!(list[0]["rootOperationName"], "get /page");
    assert_eq!(list[0]["errorSpanCount"], 1);

    // The trace view, and the search answering with whole traces.
    for path in [
        format!(
            "/api/v3/traces/{trace}?startTime=1970-01-01T00:00:00Z&endTime=2100-01-01T00:00:00Z&rawTraces=true"
        ),
        format!("/api/v3/traces?query.serviceName=web&{window}&query.rawTraces=false"),
    ] {
        let body = get_json(&m.query_url(&path)).await;
        let spans = assert_jaeger_ui_accepts(&body);
        assert_eq!(spans.len(), 2, "{path}: {body}");
        let root = spans
            .iter()
            .find(|s| s["spanId"] == "00000000000000a1")
            .expect("the root");
        assert!(root.get("parentSpanId").is_none(), "{path}: {root}");
        assert_eq!(root["status"], serde_json::json!({}), "{path}: {root}");
        let child = spans
            .iter()
            .find(|s| s["spanId"] == "00000000000000a2")
            .expect("the child");
        assert_eq!(child["parentSpanId"], "00000000000000a1");
        assert_eq!(child["status"]["code"], 2, "{path}: {child}");
    }

    // One parameter under both its names, with two values.
    let reply = get(&m.query_url(&format!(
        "/api/v3/trace-summaries?query.serviceName=web&query.service_name=api&{window}"
    )))
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("query.serviceName=\"web\" and query.service_name=\"api\""),
        "{message}"
    );

    // Not JSON, posted as a form: the 400 says how the body was read.
    let reply = post(
        &m.zipkin_url(),
        &[("content-type", "application/x-www-form-urlencoded")],
        b"spans=none".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("read as Zipkin JSON v2 because its Content-Type"),
        "{}",
        reply.text()
    );
    m.stop().await;
}

/// A page's OpenTelemetry JS SDK (OTLP/HTTP JSON) and zipkin-js post spans across
/// origins when `[ingest.cors]` allows the page's origin, as the OpenTelemetry
/// Collector's `cors.allowed_origins` does: the preflight is answered for allowed
/// origins only, the answer names the origin, and the query port carries no CORS
/// header whatever the setting. Without the setting, a preflight is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_may_post_spans_from_a_browser() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(
        &dir,
        "[ingest.cors]\nallowed_origins = [\"http://shop.localhost:3000\", \"https://*.example.com\"]\nmax_age = \"10m\"\n",
    )
    .await;
    let otlp = m.http_url("/v1/traces");
    let allowed = "http://shop.localhost:3000";
    let preflight = |origin: &'static str, url: String| async move {
        options(
            &url,
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
        )
        .await
    };
    let header = |reply: &Reply, name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    for (origin, url) in [
        (allowed, otlp.clone()),
        ("https://app.example.com", otlp.clone()),
        (allowed, m.zipkin_url()),
    ] {
        let reply = preflight(origin, url.clone()).await;
        assert!(
            reply.status < 300,
            "{url}: {} {}",
            reply.status,
            reply.text()
        );
        assert_eq!(
            header(&reply, "access-control-allow-origin").as_deref(),
            Some(origin),
            "{url}"
        );
        assert!(header(&reply, "access-control-allow-methods").is_some_and(|m| m.contains("post")));
        assert!(
            header(&reply, "access-control-allow-headers")
                .is_some_and(|h| h.contains("content-type"))
        );
        assert_eq!(
            header(&reply, "access-control-max-age").as_deref(),
            Some("600")
        );
        // Credentialed posts too (navigator.sendBeacon), as the OpenTelemetry
        // Collector allows them.
        assert_eq!(
            header(&reply, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
    }
    // Another origin gets no permission; the browser then sends nothing.
    let reply = preflight("https://evil.test", otlp.clone()).await;
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
    // Nor may it write with a post no preflight precedes (text/plain, which the Zipkin
    // port reads as JSON): once origins are named, other origins' pages are refused.
    let evil_trace = hex::encode(random_trace_id());
    for url in [m.zipkin_url(), otlp.clone()] {
        let reply = post(
            &url,
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("origin", "https://evil.test"),
            ],
            zipkin_spans(&evil_trace, now_nanos() / 1_000),
        )
        .await;
        assert_eq!(reply.status, 403, "{url}: {}", reply.text());
        assert!(reply.text().contains("allowed_origins"), "{}", reply.text());
    }
    // ...and the operator sees it, not only the page's console.
    let log = m.log_text();
    assert!(
        log.contains("for an origin not in [ingest.cors] allowed_origins")
            && log.contains("https://evil.test"),
        "{log}"
    );
    let reply = post(
        &m.zipkin_url(),
        &[("content-type", "application/json"), ("origin", allowed)],
        zipkin_spans(&evil_trace, now_nanos() / 1_000),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());

    // The request itself, as the SDK sends it after the preflight.
    let trace = hex::encode(random_trace_id());
    let now = now_nanos();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"shop-web"}}}}]}},
           "scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"00000000000000b1","name":"checkout",
           "kind":1,"startTimeUnixNano":"{now}","endTimeUnixNano":"{}"}}]}}]}}]}}"#,
        now + 1_000_000
    );
    let reply = post(
        &otlp,
        &[("content-type", "application/json"), ("origin", allowed)],
        body.into_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        header(&reply, "access-control-allow-origin").as_deref(),
        Some(allowed)
    );
    assert!(
        header(&reply, "access-control-expose-headers").is_some_and(|h| h.contains("retry-after"))
    );
    wait_for_trace(&m, &trace, 1).await;

    // The query port keeps its data same-origin.
    let reply = preflight(allowed, m.query_url("/api/services")).await;
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
    let reply = post(
        &m.query_url("/api/services"),
        &[("origin", allowed)],
        Vec::new(),
    )
    .await;
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
    m.stop().await;

    // CORS off (the default): a preflight is refused.
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let reply = preflight(allowed, m.http_url("/v1/traces")).await;
    assert_eq!(reply.status, 405, "{}", reply.text());
    assert_eq!(header(&reply, "access-control-allow-origin"), None);
    m.stop().await;
}

/// Checks `{"result":{"resourceSpans":[…]}}` as Jaeger UI's zod schema for
/// `/api/v3/traces` does (nothing `null`; ids hex and not zero; optional fields absent,
/// never `""` or `null`), and returns its spans.
fn assert_jaeger_ui_accepts(body: &Value) -> Vec<Value> {
    assert_no_null(body, "result");
    let is_hex = |v: &Value, len: usize| {
        v.as_str().is_some_and(|s| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        })
    };
    let is_decimal = |v: &Value| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut spans = Vec::new();
    for rs in body["result"]["resourceSpans"]
        .as_array()
        .expect("resourceSpans")
    {
        assert!(rs.get("resource").is_none_or(Value::is_object), "{rs}");
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans, required") {
            assert!(ss.get("scope").is_none_or(Value::is_object), "{ss}");
            for span in ss["spans"].as_array().expect("spans, required") {
                assert!(is_hex(&span["traceId"], 32), "traceId: {span}");
                assert!(is_hex(&span["spanId"], 16), "spanId: {span}");
                if let Some(parent) = span.get("parentSpanId") {
                    assert!(is_hex(parent, 16), "parentSpanId: {span}");
                }
                for time in ["startTimeUnixNano", "endTimeUnixNano"] {
                    assert!(span.get(time).is_none_or(is_decimal), "{time}: {span}");
                }
                for number in ["kind", "flags", "droppedAttributesCount"] {
                    assert!(
                        span.get(number).is_none_or(Value::is_u64),
                        "{number}: {span}"
                    );
                }
                for list in ["attributes", "events", "links"] {
                    assert!(span.get(list).is_none_or(Value::is_array), "{list}: {span}");
                }
                assert!(span.get("status").is_none_or(Value::is_object), "{span}");
                spans.push(span.clone());
            }
        }
    }
    spans
}

fn assert_no_null(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_no_null(item, &format!("{path}[{i}]"));
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                assert_no_null(item, &format!("{path}.{key}"));
            }
        }
        _ => {}
    }
}
