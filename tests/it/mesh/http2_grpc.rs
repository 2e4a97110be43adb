//! HTTP/2, gRPC and streamed bodies through a proxy pair.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{self, post};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::service::Routes;
use tonic::transport::Endpoint;

use crate::support::*;

use super::istio_metrics::istio_series_summary;
use super::{wait_for_mesh_reload, write_mesh};

/// A gRPC upstream: answers every Export with a partial success naming how many spans
/// it saw; refuses an empty one.
struct Backend;

#[tonic::async_trait]
impl TraceService for Backend {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = span_count(request.get_ref());
        if spans == 0 {
            return Err(tonic::Status::permission_denied("backend wants spans"));
        }
        let mut response = tonic::Response::new(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: spans as i64,
                error_message: format!("backend saw {spans} spans"),
            }),
        });
        response
            .metadata_mut()
            .insert("x-backend", "v1".parse().unwrap());
        Ok(response)
    }
}

/// `/version` answers the HTTP version the app saw; `/echo` streams the request body
/// back as it arrives.
fn backend_routes() -> Routes {
    let router = Router::new()
        .route(
            "/version",
            routing::get(|request: Request| async move {
                // HTTP/2 names it in `:authority`, with no `host` header beside it.
                let host = request
                    .headers()
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| request.uri().authority().map(|a| a.as_str()))
                    .unwrap_or("")
                    .to_string();
                format!("{:?} host={host}", request.version())
            }),
        )
        .route(
            "/echo",
            post(|request: Request| async move {
                let body = Body::from_stream(request.into_body().into_data_stream());
                Response::new(body)
            }),
        );
    Routes::from(router).add_service(TraceServiceServer::new(Backend))
}

/// Streams `chunks` chunks of 64 KiB to `/echo` and reads them back, sending each
/// chunk only once the previous one has come back: it completes only if neither proxy
/// waits for the whole request body before forwarding, nor for the whole response.
async fn echo_lockstep(client: &reqwest::Client, outbound: SocketAddr, chunks: u8) {
    const CHUNK: usize = 64 * 1024;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    sender.send(Ok(vec![0u8; CHUNK])).await.unwrap();
    let mut response = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .post(format!("http://{outbound}/echo"))
            .header("host", "backend")
            .body(body)
            .send(),
    )
    .await
    .expect("response headers while the request body is still open")
    .expect("POST /echo");
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    for i in 0..chunks {
        while received.len() < (usize::from(i) + 1) * CHUNK {
            let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "chunk {i} not echoed within 10 s ({} bytes back): a proxy buffers the body",
                        received.len()
                    )
                })
                .expect("reading the echo")
                .expect("the echo ended early");
            received.extend_from_slice(&chunk);
        }
        if i + 1 < chunks {
            sender.send(Ok(vec![i + 1; CHUNK])).await.unwrap();
        }
    }
    drop(sender);
    while let Some(chunk) = response.chunk().await.expect("the end of the echo") {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), usize::from(chunks) * CHUNK);
    for (i, chunk) in received.chunks(CHUNK).enumerate() {
        assert!(
            chunk.iter().all(|b| usize::from(*b) == i),
            "chunk {i} corrupted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_grpc_and_streamed_bodies_pass_through_a_proxy_pair() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let collector = format!("http://{}", m.grpc.unwrap());
    let mesh_path = dir.path().join("mesh.yaml");
    let mesh_arg = mesh_path.to_str().unwrap().to_string();
    write_mesh(&mesh_path, "services: []\n");
    let backend = AppServer::start(backend_routes()).await;
    let inbound = format!("127.0.0.1:0={}", backend.authority());
    let backend_proxy = MeshProxy::start(
        &dir,
        "backend-v1",
        &[
            "--mesh",
            &mesh_arg,
            "--service",
            "backend",
            "--version",
            "v1",
            "--inbound",
            &inbound,
            "--collector",
            &collector,
        ],
    )
    .await;
    let frontend_proxy = MeshProxy::start(
        &dir,
        "frontend-v1",
        &[
            "--mesh",
            &mesh_arg,
            "--service",
            "frontend",
            "--version",
            "v1",
            "--collector",
            &collector,
        ],
    )
    .await;
    write_mesh(
        &mesh_path,
        &format!(
            "services:\n  - name: backend\n    endpoints:\n      - address: {}\n        labels: {{ app: backend, version: v1 }}\n",
            backend_proxy.inbound()
        ),
    );
    wait_for_mesh_reload(&frontend_proxy, 1.0).await;
    let outbound = frontend_proxy.outbound;
    let mut requests = 0.0;

    // HTTP/1.1 and h2c (prior knowledge) end to end: the app sees the version the
    // client spoke.
    let h1 = http();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    for (client, want) in [(&h1, "HTTP/1.1"), (&h2, "HTTP/2.0")] {
        let reply = client
            .get(format!("http://{outbound}/version"))
            .header("host", "backend")
            .send()
            .await
            .expect("GET /version");
        requests += 1.0;
        assert_eq!(reply.status(), 200);
        if want == "HTTP/2.0" {
            assert_eq!(reply.version(), reqwest::Version::HTTP_2);
        }
        let body = reply.text().await.unwrap();
        assert!(body.starts_with(want), "{want}: {body}");
        assert!(
            body.contains("host=backend"),
            "the Host header reaches the app: {body}"
        );
    }

    // Bodies stream in both directions (h2 is full duplex end to end), 64 chunks = 4 MiB.
    echo_lockstep(&h2, outbound, 64).await;
    requests += 1.0;
    // A large HTTP/1.1 upload, echoed whole.
    let big: Vec<u8> = (0..8 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let reply = h1
        .post(format!("http://{outbound}/echo"))
        .header("host", "backend")
        .body(big.clone())
        .send()
        .await
        .expect("POST /echo");
    requests += 1.0;
    assert_eq!(reply.status(), 200);
    let echoed = reply.bytes().await.unwrap();
    assert!(
        echoed == big,
        "8 MiB echo differs ({} bytes back)",
        echoed.len()
    );

    // gRPC (h2c, content-type application/grpc, grpc-status in trailers) through the
    // pair, addressed by :authority as a gRPC client in the mesh would.
    let channel = Endpoint::from_shared(format!("http://{outbound}"))
        .unwrap()
        .origin("http://backend:4317".parse().unwrap())
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .expect("connecting to the outbound listener");
    let mut grpc = TraceServiceClient::new(channel.clone());
    let span = simple_span(
        &random_trace_id(),
        &random_span_id(),
        None,
        "op",
        now_nanos(),
        1_000,
    );
    let answer = grpc
        .export(ExportTraceServiceRequest {
            resource_spans: vec![resource_spans("grpc-client", vec![span.clone(), span])],
        })
        .await
        .expect("gRPC Export through the proxies");
    requests += 1.0;
    assert_eq!(answer.metadata().get("x-backend").unwrap(), "v1");
    let partial = answer.into_inner().partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert_eq!(partial.error_message, "backend saw 2 spans");
    // A gRPC error status passes through unchanged.
    let refused = grpc
        .export(ExportTraceServiceRequest::default())
        .await
        .expect_err("an empty Export is refused");
    requests += 1.0;
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(refused.message(), "backend wants spans");
    // A service the mesh does not know: UNAVAILABLE from the proxy itself, as Envoy.
    let channel = Endpoint::from_shared(format!("http://{outbound}"))
        .unwrap()
        .origin("http://ratings:9080".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let unknown = TraceServiceClient::new(channel)
        .export(ExportTraceServiceRequest::default())
        .await
        .expect_err("no such service");
    assert_eq!(unknown.code(), tonic::Code::Unavailable, "{unknown:?}");

    // Both proxies saw every request; only the unknown service got a local reply.
    eventually(Duration::from_secs(5), "proxy counters", || async {
        let out = frontend_proxy
            .stat("meshtel_proxy_requests_total", &[("direction", "outbound")])
            .await;
        let inb = backend_proxy
            .stat("meshtel_proxy_requests_total", &[("direction", "inbound")])
            .await;
        (out == requests + 1.0 && inb == requests).then_some(())
    })
    .await;
    assert_eq!(
        frontend_proxy
            .stat(
                "meshtel_proxy_local_replies_total",
                &[("direction", "outbound")]
            )
            .await,
        1.0
    );
    assert_eq!(
        backend_proxy
            .stat("meshtel_proxy_local_replies_total", &[])
            .await,
        0.0
    );

    // The collector's view: gRPC series carry grpc_response_status, the unknown service
    // is reported by the caller only (UH), and the streamed bodies are counted whole.
    let sample_value = |samples: &[PromSample], name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| s.value)
            .sum()
    };
    let grpc = [
        ("request_protocol", "grpc"),
        ("destination_workload", "backend-v1"),
    ];
    let samples = eventually(Duration::from_secs(15), "gRPC and HTTP series", || async {
        let samples = parse_prometheus_text(&get(&m.http_url("/metrics")).await.text());
        let total = "istio_requests_total";
        let complete = sample_value(&samples, total, &[("reporter", "destination")]) == requests
            && sample_value(&samples, total, &[("reporter", "source")]) == requests + 1.0;
        complete.then_some(samples)
    })
    .await;
    let total = "istio_requests_total";
    for reporter in ["source", "destination"] {
        for (status, count) in [("0", 1.0), ("7", 1.0)] {
            let labels = [
                grpc[0],
                grpc[1],
                ("reporter", reporter),
                ("grpc_response_status", status),
                ("response_code", "200"),
                ("source_workload", "frontend-v1"),
            ];
            assert_eq!(
                sample_value(&samples, total, &labels),
                count,
                "{labels:?}\n{}",
                istio_series_summary(&samples)
            );
        }
    }
    let unknown_service = [
        ("reporter", "source"),
        ("source_workload", "frontend-v1"),
        ("request_protocol", "grpc"),
        ("response_flags", "UH"),
        ("grpc_response_status", "14"),
    ];
    assert_eq!(
        sample_value(&samples, total, &unknown_service),
        1.0,
        "{}",
        istio_series_summary(&samples)
    );
    let http_in = [
        ("reporter", "destination"),
        ("request_protocol", "http"),
        ("destination_workload", "backend-v1"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
    ];
    assert_eq!(sample_value(&samples, total, &http_in), 4.0);
    let streamed = (12 * 1024 * 1024) as f64;
    for metric in ["istio_request_bytes_sum", "istio_response_bytes_sum"] {
        let bytes = sample_value(&samples, metric, &http_in);
        assert!(
            (streamed..streamed + 64.0 * 1024.0).contains(&bytes),
            "{metric}: {bytes} bytes for 12 MiB of bodies plus headers"
        );
    }

    // The graph keys the gRPC edge's responses by gRPC status, as Kiali does: OK and
    // PERMISSION_DENIED, one each, both over HTTP 200.
    let graph_url = m.query_url("/api/graph?window=5m");
    let edge = eventually(Duration::from_secs(15), "the gRPC graph edge", || async {
        let graph = get_json(&graph_url).await;
        graph["elements"]["edges"]
            .as_array()?
            .iter()
            .map(|e| e["data"].clone())
            .find(|e| e["id"] == "wl_default_frontend-v1->wl_default_backend-v1:grpc")
    })
    .await;
    assert_eq!(
        edge["traffic"]["responses"],
        serde_json::json!({
            "0": {"flags": {"-": "50.0"}, "hosts": {"backend.default.svc.cluster.local": "50.0"}},
            "7": {"flags": {"-": "50.0"}, "hosts": {"backend.default.svc.cluster.local": "50.0"}},
        }),
        "{edge:#}"
    );
    assert_eq!(
        edge["traffic"]["rates"]["grpcPercentErr"], "50.0",
        "{edge:#}"
    );
    backend.stop().await;
}

/// An app on 127.0.0.1:0 that speaks only HTTP/1.1, as many do: it answers "ok", and
/// an h2c connection preface gets no answer but a closed connection.
async fn http1_only_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(Response::new(Body::from("ok")))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Polls the proxy's log until it holds `text`.
async fn logged(proxy: &MeshProxy, text: &str) {
    eventually(Duration::from_secs(10), text, || async {
        proxy.log_text().contains(text).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_app_protocol_is_named_in_the_proxy_log() {
    let dir = TestDir::new();
    let mesh_path = dir.path().join("mesh.yaml");
    let mesh_arg = mesh_path.to_str().unwrap().to_string();
    write_mesh(&mesh_path, "services: []\n");
    let collector = closed_address().to_string();
    let collector = format!("http://{collector}");
    let start = |name: &'static str, inbound: String, extra: &'static [&'static str]| {
        let mut args = vec![
            "--mesh".to_owned(),
            mesh_arg.clone(),
            "--service".to_owned(),
            name.to_owned(),
            "--inbound".to_owned(),
            inbound,
            "--collector".to_owned(),
            collector.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let dir = &dir;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            MeshProxy::start(dir, name, &args).await
        }
    };

    // `auto` (the default): an h2c caller of an HTTP/1.1-only app gets 503, and the
    // log says which flag fixes it.
    let app = http1_only_app().await;
    let auto = start("web", format!("127.0.0.1:0={app}"), &[]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let reply = h2
        .get(format!("http://{}/", auto.inbound()))
        .send()
        .await
        .expect("h2c GET");
    assert_eq!(reply.status(), 503);
    logged(&auto, "start this proxy with --app-protocol http1").await;
    // HTTP/1.1 callers are served, and the flag fixes the h2c ones.
    assert_eq!(
        http()
            .get(format!("http://{}/", auto.inbound()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let fixed = start(
        "web-http1",
        format!("127.0.0.1:0={app}"),
        &["--app-protocol", "http1"],
    )
    .await;
    let reply = h2
        .get(format!("http://{}/", fixed.inbound()))
        .send()
        .await
        .expect("h2c GET");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), "ok");

    // `http1` in front of a gRPC app: the log says gRPC needs `auto`.
    let backend = AppServer::start(backend_routes()).await;
    let grpc_proxy = start(
        "backend",
        format!("127.0.0.1:0={}", backend.authority()),
        &["--app-protocol", "http1"],
    )
    .await;
    let channel = Endpoint::from_shared(format!("http://{}", grpc_proxy.inbound()))
        .unwrap()
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .expect("connecting to the inbound listener");
    let _ = TraceServiceClient::new(channel)
        .export(ExportTraceServiceRequest::default())
        .await;
    logged(
        &grpc_proxy,
        "start the proxy of a gRPC app with --app-protocol auto",
    )
    .await;
    assert!(
        !fixed.log_text().contains("--app-protocol"),
        "{}",
        fixed.log_text()
    );
    backend.stop().await;
}
