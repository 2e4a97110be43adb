//! `meshtel bench freshness`: how long after the collector acknowledges a span it can
//! be fetched by id from the query API.
//!
//! Per sample: export one span with a new trace id over OTLP/gRPC; after the ack, poll
//! `GET /api/traces/{id}` every `--poll-interval` until it answers 200, and record the
//! time from ack to the first 200.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Args;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::{AnyValue, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::span::SpanKind;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use prost::bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::time::MissedTickBehavior;

use super::otlp_client::ExportClient;
use super::report::{Interrupt, Latencies, Out, round3};

/// `meshtel bench freshness` flags.
#[derive(Debug, Clone, Args)]
pub struct FreshnessArgs {
    /// OTLP/gRPC endpoint the span is sent to.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    pub otlp: String,
    /// Jaeger query API base URL polled for the trace.
    #[arg(long, default_value = "http://127.0.0.1:16686")]
    pub query: String,
    /// Spans to send, one after the other.
    #[arg(long, default_value_t = 50)]
    pub samples: usize,
    /// How often to ask for the trace.
    #[arg(long, default_value = "5ms", value_parser = meshtel_model::duration::parse_config_duration)]
    pub poll_interval: Duration,
    /// Give up on a sample after this long.
    #[arg(long, default_value = "30s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub timeout: Duration,
    /// Print a JSON summary line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

fn one_span_request(trace_id: [u8; 16], span_id: [u8; 8]) -> ExportTraceServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let kv = |key: &str, value: &str| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "meshtel-bench-freshness")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    flags: 1,
                    name: "freshness probe".to_string(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: now.saturating_sub(1_000_000),
                    end_time_unix_nano: now,
                    attributes: vec![kv("http.method", "GET"), kv("http.route", "/probe")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the freshness benchmark and prints its summary.
pub async fn run(args: FreshnessArgs) -> anyhow::Result<()> {
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    if args.poll_interval < Duration::from_millis(1) {
        bail!("--poll-interval must be at least 1ms");
    }
    let mut exporter = ExportClient::connect(&args.otlp, false).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let base = args.query.trim_end_matches('/').to_string();
    let mut rng = SmallRng::from_os_rng();
    let mut latencies = Latencies::new();
    let mut timeouts = 0u64;
    let mut export_latencies = Latencies::new();
    eprintln!(
        "freshness: {} samples, span → {}, poll {} every {}",
        args.samples,
        args.otlp,
        base,
        humantime::format_duration(args.poll_interval)
    );
    let interrupt = Interrupt::watch("printing the samples measured");
    // Why the run ended before its last sample, reported after the summary.
    let mut ended: Option<anyhow::Error> = None;
    let mut sent = 0;
    for sample in 0..args.samples {
        if interrupt.arrived() {
            break;
        }
        sent += 1;
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        rng.fill(&mut trace_id);
        rng.fill(&mut span_id);
        trace_id[0] |= 1;
        span_id[0] |= 1;
        let body = Bytes::from(one_span_request(trace_id, span_id).encode_to_vec());
        let exported = Instant::now();
        if let Err(e) = exporter.export(body, Duration::from_secs(30)).await {
            // The samples measured so far are printed before the error.
            ended = Some(anyhow::Error::new(e).context(format!("exporting sample {sample}")));
            sent -= 1;
            break;
        }
        let acked = Instant::now();
        export_latencies.record(acked - exported);

        let url = format!("{base}/api/traces/{}", hex(&trace_id));
        let mut ticker = tokio::time::interval(args.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // What the last poll that was not an answer of the query API got.
        let mut problem: Option<String> = None;
        let found = loop {
            ticker.tick().await;
            if acked.elapsed() > args.timeout || interrupt.arrived() {
                break None;
            }
            match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => break Some(acked.elapsed()),
                Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                    // Jaeger's "trace not found" is a JSON envelope with `errors`; any
                    // other 404 is a wrong --query (another port, a missing base path),
                    // which no wait mends.
                    let body = response.bytes().await.unwrap_or_default();
                    let jaeger = serde_json::from_slice::<serde_json::Value>(&body)
                        .is_ok_and(|v| v.get("errors").is_some_and(serde_json::Value::is_array));
                    if !jaeger {
                        bail!(
                            "{url} answered 404 without the Jaeger API's error envelope: is \
                             --query the query API's base URL (port 16686 by default, with any \
                             base path)?"
                        );
                    }
                    problem = None;
                }
                Ok(response) => problem = Some(format!("HTTP {}", response.status())),
                // Nothing listens there: no sample can be found, so the run stops now.
                Err(e) if e.is_connect() => {
                    return Err(anyhow::anyhow!(
                        "cannot reach the query API at {base} ({e:#}): is --query the address of \
                         meshtel serve or meshtel query?"
                    ));
                }
                Err(e) => problem = Some(format!("{e:#}")),
            }
        };
        match found {
            Some(latency) => latencies.record(latency),
            None if interrupt.arrived() => sent -= 1,
            None => {
                timeouts += 1;
                let last = problem.map(|p| format!(" (last poll: {p})")).unwrap_or_default();
                eprintln!("sample {sample}: trace {} not found after {:?}{last}", hex(&trace_id), args.timeout);
            }
        }
        // A little pause so samples do not land in the same flush.
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..60))).await;
    }

    let out = Out::new(args.json);
    out.line(format!(
        "freshness summary: {sent} of {} samples, {} found, {} timed out",
        args.samples,
        latencies.count(),
        timeouts
    ));
    out.line(format!("  ack → searchable ms  {}", latencies.text()));
    out.line(format!("  export ack ms        {}", export_latencies.text()));
    out.json(&json!({
        "bench": "freshness",
        "samples": sent,
        "found": latencies.count(),
        "timeouts": timeouts,
        "ack_to_searchable_ms": latencies.json(),
        "export_ms": export_latencies.json(),
        "poll_interval_ms": round3(args.poll_interval.as_secs_f64() * 1000.0),
    }));
    if let Some(error) = ended {
        return Err(error);
    }
    // A run that found nothing measured nothing: a script must see it.
    if latencies.count() == 0 && args.samples > 0 {
        anyhow::bail!("no sample became searchable within {:?}: nothing was measured", args.timeout);
    }
    Ok(())
}
