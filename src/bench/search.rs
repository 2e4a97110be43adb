//! `meshtel bench search`: a mix of Jaeger query API requests against any deployment
//! that speaks the Jaeger v1 HTTP API.
//!
//! First it discovers what is there: services (`/api/services`), their operations
//! (`/api/operations`), and from one search per service some trace ids, operation
//! durations and tag values. Then `--concurrency` workers run the mix until
//! `--duration` is over:
//!
//! | kind                | request                                                     |
//! | ------------------- | ----------------------------------------------------------- |
//! | `trace`             | `/api/traces/{id}`                                          |
//! | `service`           | `/api/traces?service=&limit=&start=&end=`                   |
//! | `operation`         | … `&operation=&minDuration=&maxDuration=`                   |
//! | `tag`               | … `&tags={"k":"v"}`                                         |
//! | `services`          | `/api/services`                                             |

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Args;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::report::{Interrupt, Latencies, Out, counts_text, round3};

/// `meshtel bench search` flags.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Jaeger query API base URL (include the base path, if the deployment has one).
    #[arg(long, default_value = "http://127.0.0.1:16686")]
    pub endpoint: String,
    /// How long to run the mix.
    #[arg(long, default_value = "30s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub duration: Duration,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Searches cover `[now - lookback, now]`; make it cover the data.
    #[arg(long, default_value = "48h", value_parser = meshtel_model::duration::parse_config_duration)]
    pub lookback: Duration,
    /// `limit` of each search.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Weights of the request kinds, e.g. "trace=3,service=2,operation=2,tag=2,services=1".
    #[arg(long, default_value = "trace=1,service=1,operation=1,tag=1,services=1")]
    pub mix: String,
    /// Most services to discover operations, traces and tags of.
    #[arg(long, default_value_t = 50)]
    pub max_services: usize,
    /// Timeout of one request.
    #[arg(long, default_value = "30s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub timeout: Duration,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print a JSON summary line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The kinds of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Trace,
    Service,
    Operation,
    Tag,
    Services,
}

const KINDS: [Kind; 5] = [Kind::Trace, Kind::Service, Kind::Operation, Kind::Tag, Kind::Services];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Trace => "trace",
            Kind::Service => "service",
            Kind::Operation => "operation",
            Kind::Tag => "tag",
            Kind::Services => "services",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Trace => "trace by id",
            Kind::Service => "search by service",
            Kind::Operation => "service+operation+duration",
            Kind::Tag => "service+one tag",
            Kind::Services => "/api/services",
        }
    }
}

/// Largest weight of one kind in `--mix` (the weights are summed).
const MAX_MIX_WEIGHT: u32 = 1_000_000;

fn parse_mix(text: &str) -> anyhow::Result<BTreeMap<Kind, u32>> {
    let mut mix = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("--mix entry {part:?} is not kind=weight"))?;
        let kind = KINDS
            .into_iter()
            .find(|k| k.name() == name.trim())
            .with_context(|| format!("unknown --mix kind {name:?} (trace, service, operation, tag, services)"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w| *w <= MAX_MIX_WEIGHT)
            .with_context(|| {
                format!("--mix weight {weight:?} is not a whole number from 0 to {MAX_MIX_WEIGHT}")
            })?;
        mix.insert(kind, weight);
    }
    Ok(mix)
}

/// An operation seen in the data, with one span duration to search around.
#[derive(Debug, Clone)]
struct OperationSample {
    service: String,
    operation: String,
    duration_us: u64,
}

/// A string tag seen on a span of `service`.
#[derive(Debug, Clone)]
struct TagSample {
    service: String,
    key: String,
    value: String,
}

/// What discovery found.
#[derive(Debug, Default)]
struct Corpus {
    services: Vec<String>,
    trace_ids: Vec<String>,
    operations: Vec<OperationSample>,
    tags: Vec<TagSample>,
}

const MAX_TRACE_IDS: usize = 10_000;
const MAX_OPERATIONS: usize = 2_000;
const MAX_TAGS: usize = 5_000;

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Api {
    client: reqwest::Client,
    base: String,
    lookback_us: u64,
    limit: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `start` and `end` (µs) covering the last `--lookback`, plus a minute of skew.
    fn window(&self) -> [(&'static str, String); 2] {
        let now = now_micros();
        [
            ("start", now.saturating_sub(self.lookback_us).to_string()),
            ("end", (now + 60_000_000).to_string()),
        ]
    }

    async fn get_json(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = self.url(path);
        let response = self
            .client
            .get(&url)
            .query(query)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("reading GET {url}"))?;
        if !status.is_success() {
            // An HTML error page (a wrong --endpoint path) is not worth printing whole.
            let text = String::from_utf8_lossy(&body);
            let shown: String = text.chars().take(300).collect();
            let cut = if shown.len() < text.len() { " ..." } else { "" };
            bail!("GET {url}: {status}: {shown}{cut} (is the endpoint the query service's address, with its --query-base-path if it has one?)");
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
    }
}

async fn discover(api: &Api, max_services: usize) -> anyhow::Result<Corpus> {
    let services = api.get_json("/api/services", &[]).await?;
    let mut corpus = Corpus {
        services: string_array(&services["data"]),
        ..Corpus::default()
    };
    corpus.services.sort();
    corpus.services.truncate(max_services.max(1));
    if corpus.services.is_empty() {
        bail!("no services at {}; ingest some traces first", api.base);
    }
    let mut seen_tags = HashSet::new();
    let mut seen_operations = HashSet::new();
    for service in &corpus.services {
        let operations = api
            .get_json("/api/operations", &[("service", service.clone())])
            .await?;
        let operation_count = operations["data"].as_array().map_or(0, Vec::len);
        let mut query = vec![("service", service.clone()), ("limit", api.limit.clone())];
        query.extend(api.window());
        let traces = api.get_json("/api/traces", &query).await?;
        let trace_count = traces["data"].as_array().map_or(0, Vec::len);
        tracing::debug!(%service, operations = operation_count, traces = trace_count, "discovered");
        for trace in traces["data"].as_array().into_iter().flatten() {
            if let Some(id) = trace["traceID"].as_str()
                && corpus.trace_ids.len() < MAX_TRACE_IDS
            {
                corpus.trace_ids.push(id.to_string());
            }
            for span in trace["spans"].as_array().into_iter().flatten() {
                let process = span["processID"].as_str().unwrap_or("");
                let span_service = trace["processes"][process]["serviceName"].as_str().unwrap_or("");
                if span_service != service {
                    continue;
                }
                let operation = span["operationName"].as_str().unwrap_or("");
                let duration_us = span["duration"].as_u64().unwrap_or(0);
                if !operation.is_empty()
                    && corpus.operations.len() < MAX_OPERATIONS
                    && seen_operations.insert((service.clone(), operation.to_string(), duration_us / 1000))
                {
                    corpus.operations.push(OperationSample {
                        service: service.clone(),
                        operation: operation.to_string(),
                        duration_us,
                    });
                }
                for tag in span["tags"].as_array().into_iter().flatten() {
                    let (Some(key), Some(value)) = (tag["key"].as_str(), tag["value"].as_str()) else {
                        continue;
                    };
                    // Only string tags of ordinary size, and not the span-kind or
                    // status tags the API synthesises.
                    if tag["type"].as_str() != Some("string")
                        || value.len() > 64
                        || key.starts_with("span.kind")
                        || key.starts_with("otel.")
                        || key.starts_with("internal.")
                    {
                        continue;
                    }
                    if corpus.tags.len() < MAX_TAGS
                        && seen_tags.insert((service.clone(), key.to_string(), value.to_string()))
                    {
                        corpus.tags.push(TagSample {
                            service: service.clone(),
                            key: key.to_string(),
                            value: value.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(corpus)
}

fn string_array(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// What one worker saw, per kind.
#[derive(Default)]
struct KindReport {
    latencies: Latencies,
    ok: u64,
    empty: u64,
    errors: BTreeMap<String, u64>,
}

impl KindReport {
    fn merge(&mut self, other: &KindReport) {
        self.latencies.merge(&other.latencies);
        self.ok += other.ok;
        self.empty += other.empty;
        super::report::merge_counts(&mut self.errors, &other.errors);
    }
}

/// Runs the search benchmark and prints its summary.
pub async fn run(args: SearchArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.duration.is_zero() || args.timeout.is_zero() {
        bail!("--duration and --timeout must be positive");
    }
    let mix = parse_mix(&args.mix)?;
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .context("building the HTTP client")?;
    let api = Arc::new(Api {
        client,
        base: args.endpoint.trim_end_matches('/').to_string(),
        lookback_us: u64::try_from(args.lookback.as_micros()).unwrap_or(u64::MAX),
        limit: args.limit.to_string(),
    });
    let discovery_started = Instant::now();
    let corpus = Arc::new(discover(&api, args.max_services).await?);
    eprintln!(
        "search → {}: {} services, {} trace ids, {} operations, {} tags discovered in {:.1}s; {} workers for {}",
        api.base,
        corpus.services.len(),
        corpus.trace_ids.len(),
        corpus.operations.len(),
        corpus.tags.len(),
        discovery_started.elapsed().as_secs_f64(),
        args.concurrency,
        humantime::format_duration(args.duration),
    );

    // Kinds with nothing to ask about drop out of the mix.
    let weighted: Vec<(Kind, u32)> = mix
        .iter()
        .map(|(&kind, &weight)| {
            let possible = match kind {
                Kind::Trace => !corpus.trace_ids.is_empty(),
                Kind::Operation => !corpus.operations.is_empty(),
                Kind::Tag => !corpus.tags.is_empty(),
                Kind::Service | Kind::Services => true,
            };
            (kind, if possible { weight } else { 0 })
        })
        .filter(|(_, w)| *w > 0)
        .collect();
    if weighted.is_empty() {
        bail!("nothing to run: every kind in --mix has weight 0 or no data");
    }
    for (kind, weight) in &mix {
        if *weight > 0 && !weighted.iter().any(|(k, _)| k == kind) {
            eprintln!("note: no data for {:?} requests; left out of the mix", kind.name());
        }
    }
    let weighted = Arc::new(weighted);

    let started = Instant::now();
    let deadline = started + args.duration;
    let interrupt = Arc::new(Interrupt::watch("finishing searches in flight"));
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..args.concurrency {
        let (api, corpus, weighted) = (api.clone(), corpus.clone(), weighted.clone());
        let seed = args.seed.wrapping_add(i as u64);
        let interrupt = interrupt.clone();
        workers.spawn(async move {
            run_worker(&api, &corpus, &weighted, (deadline, &interrupt), seed).await
        });
    }
    let mut totals: BTreeMap<Kind, KindReport> = BTreeMap::new();
    while let Some(joined) = workers.join_next().await {
        for (kind, report) in joined.context("search worker failed")? {
            totals.entry(kind).or_default().merge(&report);
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);

    let out = Out::new(args.json);
    let ok: u64 = totals.values().map(|r| r.ok).sum();
    let failed: u64 = totals.values().map(|r| r.errors.values().sum::<u64>()).sum();
    let all = ok + failed;
    out.line(format!(
        "search summary: {seconds:.1} s, concurrency {}, {ok} searches answered ({:.1}/s), {failed} failed",
        args.concurrency,
        ok as f64 / seconds
    ));
    out.line(format!(
        "  {:<28} {:>8} {:>7} {:>7}  latency ms",
        "kind", "ok", "empty", "errors"
    ));
    let mut kinds_json = serde_json::Map::new();
    for (kind, report) in &totals {
        let errors: u64 = report.errors.values().sum();
        out.line(format!(
            "  {:<28} {:>8} {:>7} {:>7}  {}{}",
            kind.describe(),
            report.ok,
            report.empty,
            errors,
            report.latencies.text(),
            if errors > 0 { format!("  [{}]", counts_text(&report.errors)) } else { String::new() }
        ));
        kinds_json.insert(
            kind.name().to_string(),
            json!({
                "ok": report.ok,
                "empty": report.empty,
                "errors": report.errors,
                "latency_ms": report.latencies.json(),
            }),
        );
    }
    out.json(&json!({
        "bench": "search",
        "endpoint": api.base,
        "concurrency": args.concurrency,
        "elapsed_s": round3(seconds),
        "requests": all,
        "failed": failed,
        "requests_per_s": round3(ok as f64 / seconds),
        "kinds": kinds_json,
    }));
    // A run whose searches mostly failed measured the failures: a script must see it.
    if failed > ok {
        anyhow::bail!("{failed} of {all} searches failed: the figures above do not measure the query service");
    }
    Ok(())
}

async fn run_worker(
    api: &Api,
    corpus: &Corpus,
    weighted: &[(Kind, u32)],
    (deadline, interrupt): (Instant, &Interrupt),
    seed: u64,
) -> BTreeMap<Kind, KindReport> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let total_weight: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut reports: BTreeMap<Kind, KindReport> = BTreeMap::new();
    while Instant::now() < deadline && !interrupt.arrived() {
        let mut pick = rng.random_range(0..total_weight.max(1));
        let mut kind = Kind::Services;
        for &(k, w) in weighted {
            if pick < w {
                kind = k;
                break;
            }
            pick -= w;
        }
        let request = build_request(api, corpus, kind, &mut rng);
        let started = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(body) if status.is_success() => Ok(is_empty_result(&body)),
                    Ok(_) => Err(format!("http_{}", status.as_u16())),
                    Err(e) => Err(reqwest_error_name(&e)),
                }
            }
            Err(e) => Err(reqwest_error_name(&e)),
        };
        let report = reports.entry(kind).or_default();
        match outcome {
            Ok(empty) => {
                report.latencies.record(started.elapsed());
                report.ok += 1;
                report.empty += u64::from(empty);
            }
            Err(name) => {
                *report.errors.entry(name).or_default() += 1;
                // A failing server is not asked again at once: the run would spin.
                tokio::time::sleep(FAILED_SEARCH_PAUSE).await;
            }
        }
    }
    reports
}

/// How long a search worker waits after a failed search before the next.
const FAILED_SEARCH_PAUSE: Duration = Duration::from_millis(50);

fn reqwest_error_name(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_string()
    } else if e.is_connect() {
        "connect".to_string()
    } else {
        "transport".to_string()
    }
}

/// `{"data":[]…` or `{"data":null…`: a search that found nothing.
fn is_empty_result(body: &[u8]) -> bool {
    body.starts_with(br#"{"data":[]"#) || body.starts_with(br#"{"data":null"#)
}

fn build_request(api: &Api, corpus: &Corpus, kind: Kind, rng: &mut SmallRng) -> reqwest::RequestBuilder {
    let search = |service: &str, extra: Vec<(&'static str, String)>| {
        let mut query = vec![("service", service.to_string()), ("limit", api.limit.clone())];
        query.extend(api.window());
        query.extend(extra);
        api.client.get(api.url("/api/traces")).query(&query)
    };
    match kind {
        Kind::Trace => {
            let id = corpus.trace_ids.choose(rng).map_or("0", String::as_str);
            api.client.get(api.url(&format!("/api/traces/{id}")))
        }
        Kind::Service => {
            let service = corpus.services.choose(rng).map_or("", String::as_str);
            search(service, Vec::new())
        }
        Kind::Operation => match corpus.operations.choose(rng) {
            Some(op) => {
                let min = (op.duration_us / 2).max(1);
                let max = op.duration_us.saturating_mul(2).max(min + 1);
                search(
                    &op.service,
                    vec![
                        ("operation", op.operation.clone()),
                        ("minDuration", format!("{min}us")),
                        ("maxDuration", format!("{max}us")),
                    ],
                )
            }
            None => search("", Vec::new()),
        },
        Kind::Tag => match corpus.tags.choose(rng) {
            Some(tag) => search(
                &tag.service,
                vec![("tags", json!({ tag.key.as_str(): tag.value }).to_string())],
            ),
            None => search("", Vec::new()),
        },
        Kind::Services => api.client.get(api.url("/api/services")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_rejects_unknown_kinds() {
        let mix = parse_mix("trace=3, tag=1,services=0").unwrap();
        assert_eq!(mix.get(&Kind::Trace), Some(&3));
        assert_eq!(mix.get(&Kind::Tag), Some(&1));
        assert_eq!(mix.get(&Kind::Services), Some(&0));
        assert!(parse_mix("bogus=1").is_err());
        assert!(parse_mix("trace").is_err());
        assert!(parse_mix("trace=x").is_err());
    }

    #[test]
    fn empty_results_are_recognised() {
        assert!(is_empty_result(br#"{"data":[],"total":0}"#));
        assert!(is_empty_result(br#"{"data":null}"#));
        assert!(!is_empty_result(br#"{"data":[{"traceID":"01"}]}"#));
    }
}
