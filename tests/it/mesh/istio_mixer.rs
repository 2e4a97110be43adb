//! Istio's own Mixer API (`istio.mixer.v1.Mixer`) on the collector's gRPC port, as a
//! Mixer-era istio-proxy calls it: compressed attributes with the global dictionary.
//! `Check` charges a policy applied through `/api/quotas`; `Report` (delta-encoded, as
//! the default) lands in `istio_requests_total` and on the graph; an attribute set
//! naming a word that does not exist is `INVALID_ARGUMENT` naming the index.

use std::time::Duration;

use meshtel_collector::istio_mixer::{Compressor, GLOBAL_WORDS};
use meshtel_model::istio_mixer::check_request::QuotaParams;
use meshtel_model::istio_mixer::mixer_client::MixerClient;
use meshtel_model::istio_mixer::report_request::RepeatedAttributesSemantics;
use meshtel_model::istio_mixer::{CheckRequest, ReportRequest};
use tonic::transport::Channel;

use crate::support::*;

const TOKEN: &str = "istio-mixer-test-token";

fn word_count() -> u32 {
    u32::try_from(GLOBAL_WORDS.len()).unwrap()
}

fn check(dedup: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(Compressor::reviews_to_ratings().done()),
        global_word_count: word_count(),
        deduplication_id: dedup.into(),
        quotas: [(
            "ratings-limit".to_string(),
            QuotaParams {
                amount: 1,
                best_effort: false,
            },
        )]
        .into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixer_era_proxy_checks_quota_and_reports_requests() {
    let dir = TestDir::new();
    // A small Report bound, to see an oversized Report refused as too large.
    let config = dir.path().join("meshtel.toml");
    std::fs::write(&config, "[report]\nmax_message_bytes = \"4 KiB\"\n").unwrap();
    let m = Meshtel::start(
        &dir,
        Role::Serve,
        &["--admin-token", TOKEN, "--config", config.to_str().unwrap()],
    )
    .await;
    let policy = serde_json::json!({
        "name": "ratings-limit",
        "match": {"source": {"service": "reviews"}, "destination": {"service": "ratings"}},
        "dimensions": {"user": "request.headers[\"x-user\"]"},
        "maxAmount": 1,
        "validDuration": "1h",
    });
    let put = http()
        .put(m.query_url("/api/quotas/ratings-limit"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(policy.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());

    let channel = Channel::from_shared(format!("http://{}", m.grpc.expect("gRPC listener")))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut mixer = MixerClient::new(channel);

    // The collector loads the policy within a second. Until then the quota is unknown
    // and every Check is granted, with OK; once it governs, the hour's one token goes
    // to the first Check and every later one (another call, same user) is denied.
    // Each probe has its own deduplication id: the policy may arrive between two.
    let mut probes = 0;
    eventually(Duration::from_secs(5), "the policy governs Check", || {
        probes += 1;
        let id = format!("probe-{probes}");
        let mut mixer = mixer.clone();
        async move {
            let answer = mixer.check(check(&id)).await.unwrap().into_inner();
            let precondition = answer.precondition.unwrap();
            assert_eq!(precondition.status.unwrap().code, 0);
            (answer.quotas["ratings-limit"].granted_amount == 0).then_some(())
        }
    })
    .await;
    let denied = mixer.check(check("third")).await.unwrap().into_inner();
    // Exhausted as Mixer's memquota answers it: status OK, nothing granted.
    let quota = &denied.quotas["ratings-limit"];
    assert_eq!(quota.granted_amount, 0);
    assert_eq!(quota.status.clone().unwrap().code, 0, "{quota:?}");

    // Two requests in one delta-encoded Report: the second element carries only what
    // changed (the 429 and its RL flag).
    let first = Compressor::reviews_to_ratings()
        .int("response.code", 200)
        .duration("response.duration", Duration::from_millis(7))
        .done();
    let second = Compressor::default()
        .int("response.code", 429)
        .string("context.proxy_error_code", "RL")
        .done();
    let report = ReportRequest {
        attributes: vec![first, second],
        repeated_attributes_semantics: RepeatedAttributesSemantics::DeltaEncoding as i32,
        default_words: Vec::new(),
        global_word_count: word_count(),
    };
    mixer.report(report).await.unwrap();
    let metrics = get(&m.http_url("/metrics")).await.text();
    let count = |text: &str, wanted: &[(&str, &str)]| {
        parse_prometheus_text(text)
            .iter()
            .filter(|s| s.name == "istio_requests_total" && s.has(wanted))
            .map(|s| s.value)
            .sum::<f64>()
    };
    let series = |code: &'static str, flags: &'static str| {
        [
            ("reporter", "destination"),
            ("source_workload", "reviews-v2"),
            ("source_app", "reviews"),
            ("destination_workload", "ratings-v1"),
            ("destination_service_name", "ratings"),
            ("response_code", code),
            ("response_flags", flags),
        ]
    };
    assert_eq!(count(&metrics, &series("200", "-")), 1.0, "{metrics}");
    assert_eq!(count(&metrics, &series("429", "RL")), 1.0, "{metrics}");

    eventually(
        Duration::from_secs(20),
        "the graph shows the edge",
        || async {
            let graph = get_json(&m.query_url("/api/graph?duration=5m")).await;
            let edges = graph["elements"]["edges"].as_array()?.clone();
            edges
                .iter()
                .any(|e| e["data"]["traffic"]["responses"].get("429").is_some())
                .then_some(())
        },
    )
    .await;

    // A word index past the message's words is refused by name, nothing taken.
    let mut bad = Compressor::reviews_to_ratings()
        .int("response.code", 200)
        .done();
    bad.strings.insert(-500, 0);
    let refused = mixer
        .report(ReportRequest {
            attributes: vec![bad],
            repeated_attributes_semantics: 1,
            default_words: Vec::new(),
            global_word_count: word_count(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("word index -500"),
        "{}",
        refused.message()
    );
    // A client that knows more global words than meshtel is refused too.
    let mut newer = check("fourth");
    newer.global_word_count = word_count() + 1;
    let refused = mixer.check(newer).await.unwrap_err();
    assert!(
        refused.message().contains("global dictionary"),
        "{}",
        refused.message()
    );
    // A Report over [report] max_message_bytes is RESOURCE_EXHAUSTED, as every
    // too-large request is.
    let big = Compressor::reviews_to_ratings()
        .string("request.path", &"/x".repeat(4096))
        .done();
    let refused = mixer
        .report(ReportRequest {
            attributes: vec![big],
            repeated_attributes_semantics: 1,
            default_words: Vec::new(),
            global_word_count: word_count(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let metrics = get(&m.http_url("/metrics")).await.text();
    let total = count(&metrics, &[("source_workload", "reviews-v2")]);
    assert_eq!(total, 2.0, "{metrics}");
    m.stop().await;
}

/// A stop while `meshtel.db` cannot be written (an immutable file, as on a failing
/// disk): the last edge rollups are lost and the exit says so, but the store is still
/// stopped (its head flushed or left in the WAL with a line saying so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_whose_rollups_cannot_be_written_still_stops_the_store() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let channel = Channel::from_shared(format!("http://{}", m.grpc.expect("gRPC listener")))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // One request record: an open edge bucket, written at the stop.
    let record = Compressor::reviews_to_ratings()
        .int("response.code", 200)
        .done();
    MixerClient::new(channel)
        .report(ReportRequest {
            attributes: vec![record],
            repeated_attributes_semantics: 1,
            default_words: Vec::new(),
            global_word_count: word_count(),
        })
        .await
        .unwrap();
    let files: Vec<_> = ["meshtel.db", "meshtel.db-wal"]
        .iter()
        .map(|f| dir.data_dir().join(f))
        .collect();
    let chattr = |flag: &str, file: &std::path::Path| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(file)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !files.iter().all(|f| chattr("+i", f)) {
        files.iter().for_each(|f| {
            chattr("-i", f);
        });
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot make meshtel.db immutable here (needs chattr as root)"
        );
        eprintln!("SKIPPED a_stop_whose_rollups_cannot_be_written: needs chattr as root");
        m.stop().await;
        return;
    }
    let (exit, log) = m.stop_with_status().await;
    files.iter().for_each(|f| {
        chattr("-i", f);
    });
    assert!(!exit.success(), "{log}");
    assert!(
        log.contains("could not write the last edge rollups"),
        "{log}"
    );
    assert!(log.contains("store shut down"), "{log}");
}
