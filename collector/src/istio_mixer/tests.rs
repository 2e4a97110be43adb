#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use meshtel_model::graph::UnixClock;
use meshtel_model::istio_mixer::CompressedAttributes;
use meshtel_model::istio_mixer::check_request::QuotaParams;
use meshtel_model::quota::QuotaPolicySpec;
use serde_json::json;

use super::*;
use crate::mesh_metrics::tests::{render, sample};
use crate::quota::{ManualClock, QuotaConfig};
use crate::report::ReportConfig;

struct FixedClock(AtomicU64);

impl UnixClock for FixedClock {
    fn now_unix_nano(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn service(policies: Vec<QuotaPolicySpec>) -> IstioMixer {
    let config = ReportConfig::default();
    let metrics = MeshMetrics::new(&config.metrics).unwrap();
    let clock = Arc::new(FixedClock(AtomicU64::new(1_700_000_000_000_000_000)));
    let reports = Reports::new(metrics, None, clock, config);
    let engine = Arc::new(
        QuotaEngine::new(
            QuotaConfig::default(),
            Arc::new(ManualClock::new(1_700_000_040_000_000_000)),
        )
        .unwrap(),
    );
    let load = engine.set_policies(1, policies);
    assert!(load.invalid.is_empty(), "{:?}", load.invalid);
    IstioMixer::new(reports, Some(engine))
}

use crate::mesh_metrics::MeshMetrics;

fn check(quotas: &[(&str, i64)], dedup: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(Compressor::reviews_to_ratings().done()),
        global_word_count: u32::try_from(GLOBAL_WORDS.len()).unwrap(),
        deduplication_id: dedup.into(),
        quotas: quotas
            .iter()
            .map(|(name, amount)| {
                let params = QuotaParams {
                    amount: *amount,
                    best_effort: false,
                };
                (name.to_string(), params)
            })
            .collect::<HashMap<_, _>>(),
    }
}

#[test]
fn the_global_dictionary_is_istios_final_list() {
    assert_eq!(GLOBAL_WORDS.len(), 223);
    assert_eq!(GLOBAL_WORDS[0], "source.ip");
    assert_eq!(GLOBAL_WORDS[15], "request.headers");
    assert_eq!(GLOBAL_WORDS[94], "'200'");
    assert_eq!(GLOBAL_WORDS[136], "200");
    assert_eq!(GLOBAL_WORDS[221], "inbound");
    assert_eq!(GLOBAL_WORDS[222], "outbound");
}

#[test]
fn global_and_message_words_decode() {
    let compressed = Compressor::reviews_to_ratings()
        .int("response.code", 200)
        .done();
    // "reviews-v2" is no global word; "request.method", "GET" and 200 (an int) are.
    assert!(compressed.words.contains(&"reviews-v2".to_string()));
    assert!(!compressed.words.contains(&"GET".to_string()));
    let bag = Bag::decode(&compressed, &compressed.words).unwrap();
    assert_eq!(bag.str("source.workload.name"), "reviews-v2");
    assert_eq!(bag.str("request.method"), "GET");
    assert_eq!(bag.map_str("request.headers", "x-user"), "jason");
    assert_eq!(bag.int("response.code"), Some(200));
    assert_eq!(bag.bool("connection.mtls"), Some(true));
}

#[test]
fn an_index_that_names_no_word_is_refused_by_name() {
    let mut compressed = Compressor::reviews_to_ratings().done();
    compressed.strings.insert(-100, 0);
    let error = Bag::decode(&compressed, &compressed.words).unwrap_err();
    assert!(
        error.to_string().contains("word index -100 names no word"),
        "{error}"
    );
    assert_eq!(error.grpc_status().code(), tonic::Code::InvalidArgument);

    let mut compressed = Compressor::reviews_to_ratings().done();
    compressed.strings.insert(0, 5000);
    let error = Bag::decode(&compressed, &compressed.words).unwrap_err();
    assert!(
        error.to_string().contains("the global dictionary has 223"),
        "{error}"
    );

    let error = Bag::check_word_count(224).unwrap_err();
    assert!(
        error.to_string().contains("knows 224 words, meshtel 223"),
        "{error}"
    );
    assert!(Bag::check_word_count(200).is_ok());
}

#[test]
fn check_charges_quotas_by_the_decoded_attributes() {
    let policy: QuotaPolicySpec = serde_json::from_value(json!({
        "name": "ratings-limit",
        "match": {"source": {"service": "reviews"}, "destination": {"service": "ratings"}},
        "dimensions": {"user": "request.headers[\"x-user\"]"},
        "maxAmount": 1,
        "validDuration": "1m",
    }))
    .unwrap();
    let mixer = service(vec![policy]);

    let first = mixer
        .check_request(&check(&[("ratings-limit", 1)], "a"))
        .unwrap();
    let precondition = first.precondition.unwrap();
    assert_eq!(precondition.status.unwrap().code, 0);
    assert_eq!(precondition.valid_use_count, 10_000);
    assert_eq!(precondition.valid_duration.unwrap().seconds, 60);
    let granted = &first.quotas["ratings-limit"];
    assert_eq!(granted.granted_amount, 1);
    assert_eq!(granted.status.as_ref().unwrap().code, 0);
    // The answer depends on the caller's app, the destination service and the user
    // header: an istio-proxy caches it per value of exactly those.
    let referenced = granted.referenced_attributes.as_ref().unwrap();
    let word = |i: i32| -> String {
        if i >= 0 {
            GLOBAL_WORDS[usize::try_from(i).unwrap()].to_string()
        } else {
            referenced.words[usize::try_from(-i - 1).unwrap()].clone()
        }
    };
    let matches: Vec<(String, String, i32)> = referenced
        .attribute_matches
        .iter()
        .map(|m| {
            let key = if m.map_key == 0 {
                String::new()
            } else {
                word(m.map_key)
            };
            (word(m.name), key, m.condition)
        })
        .collect();
    let (exact, absence) = (2, 1);
    for wanted in [
        ("source.labels", "app", exact),
        ("source.labels", "service.istio.io/canonical-name", absence),
        ("destination.service.name", "", exact),
        ("destination.labels", "app", exact),
        ("request.headers", "x-user", exact),
    ] {
        let wanted = (wanted.0.to_string(), wanted.1.to_string(), wanted.2);
        assert!(matches.contains(&wanted), "{wanted:?} not in {matches:?}");
    }
    assert_eq!(matches.len(), 5, "{matches:?}");

    // A client with an older, shorter list (100 words) gets the words past it spelled
    // out in the answer's own words, as Mixer answers, not as indices it cannot read.
    let mut older = check(&[("ratings-limit", 1)], "older");
    older.global_word_count = 100;
    let answer = mixer.check_request(&older).unwrap();
    let referenced = answer.quotas["ratings-limit"]
        .referenced_attributes
        .as_ref()
        .unwrap();
    let older_word = |i: i32| -> String {
        assert!(
            i < 100,
            "index {i} past the client's 100 words: {referenced:?}"
        );
        if i >= 0 {
            GLOBAL_WORDS[usize::try_from(i).unwrap()].to_string()
        } else {
            referenced.words[usize::try_from(-i - 1).unwrap()].clone()
        }
    };
    let names: Vec<String> = referenced
        .attribute_matches
        .iter()
        .map(|m| older_word(m.name))
        .collect();
    assert!(
        names.contains(&"destination.service.name".to_string()),
        "{names:?}"
    );

    // A retry of the same call is not charged again.
    let retry = mixer
        .check_request(&check(&[("ratings-limit", 1)], "a"))
        .unwrap();
    assert_eq!(retry.quotas["ratings-limit"].granted_amount, 1);

    let second = mixer
        .check_request(&check(&[("ratings-limit", 1)], "b"))
        .unwrap();
    let denied = &second.quotas["ratings-limit"];
    assert_eq!(denied.granted_amount, 0);
    // As Mixer's memquota: status OK, nothing granted.
    let status = denied.status.as_ref().unwrap();
    assert_eq!(status.code, 0, "{status:?}");

    // A quota no policy names is granted in full, with OK, as Mixer does.
    let unknown = mixer
        .check_request(&check(&[("requestcountquota", 3)], "c"))
        .unwrap();
    let unknown = &unknown.quotas["requestcountquota"];
    assert_eq!(unknown.granted_amount, 3);
    assert_eq!(unknown.referenced_attributes, None);
    assert_eq!(unknown.status.as_ref().unwrap().code, 0);
}

#[test]
fn a_header_is_referenced_as_the_request_spells_it() {
    let policy: QuotaPolicySpec = serde_json::from_value(json!({
        "name": "per-user",
        "dimensions": {"user": "request.headers[\"x-user\"]"},
        "maxAmount": 5,
        "validDuration": "1m",
    }))
    .unwrap();
    let mixer = service(vec![policy]);
    let mut request = check(&[("per-user", 1)], "");
    request.attributes = Some(
        Compressor::default()
            .map("request.headers", &[("X-User", "jason")])
            .done(),
    );
    let answer = mixer.check_request(&request).unwrap();
    let referenced = answer.quotas["per-user"]
        .referenced_attributes
        .clone()
        .unwrap();
    let [only] = referenced.attribute_matches.as_slice() else {
        panic!("{referenced:?}");
    };
    // The client looks the key up as it sent it, and finds it: EXACT.
    assert_eq!(only.condition, 2);
    assert_eq!(referenced.words, ["X-User"]);
}

#[test]
fn delta_encoded_reports_patch_the_element_before() {
    let mixer = service(Vec::new());
    let first = Compressor::reviews_to_ratings()
        .int("response.code", 200)
        .duration("response.duration", Duration::from_millis(12))
        .int("request.total_size", 300)
        .done();
    // The second request differs only in its status code and flags.
    let second = Compressor::default()
        .int("response.code", 503)
        .string("context.proxy_error_code", "UF")
        .done();
    let tcp = Compressor::default()
        .string("context.protocol", "tcp")
        .string("connection.event", "close")
        .done();
    let request = ReportRequest {
        attributes: vec![first, second, tcp],
        repeated_attributes_semantics: RepeatedAttributesSemantics::DeltaEncoding as i32,
        default_words: Vec::new(),
        global_word_count: u32::try_from(GLOBAL_WORDS.len()).unwrap(),
    };
    mixer.report_request(&request).unwrap();
    let text = render(mixer.reports.metrics());
    let labels = [
        ("reporter", "destination"),
        ("source_workload", "reviews-v2"),
        ("source_app", "reviews"),
        ("destination_workload", "ratings-v1"),
        ("destination_service", "ratings.default.svc.cluster.local"),
        ("connection_security_policy", "mutual_tls"),
    ];
    let with = |code: &str, flags: &str| {
        let mut all = labels.to_vec();
        all.push(("response_code", code));
        all.push(("response_flags", flags));
        sample(&text, "istio_requests_total", &all)
    };
    assert_eq!(with("200", "-"), Some(1.0), "{text}");
    assert_eq!(with("503", "UF"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "meshtel_report_tcp_events_skipped_total", &[]),
        Some(1.0)
    );
}

/// A Report whose elements use the Report's default words, delta-encoded.
fn report_of(attributes: Vec<CompressedAttributes>, default_words: Vec<String>) -> ReportRequest {
    ReportRequest {
        attributes,
        repeated_attributes_semantics: RepeatedAttributesSemantics::DeltaEncoding as i32,
        default_words,
        global_word_count: u32::try_from(GLOBAL_WORDS.len()).unwrap(),
    }
}

#[test]
fn one_large_word_cannot_be_copied_out_once_per_name_or_element() {
    let mixer = service(Vec::new());
    // A word past the bag's bound, named once.
    let big = "x".repeat(bag::MAX_BAG_BYTES + 1);
    let mut element = Compressor::default()
        .string("destination.service.host", &big)
        .done();
    let words = std::mem::take(&mut element.words);
    let error = mixer
        .report_request(&report_of(vec![element], words))
        .unwrap_err();
    assert!(
        error.to_string().contains("destination.service.host")
            && error.to_string().contains("more than 1024 KiB"),
        "{error}"
    );
    // A smaller word named by a map's many entries.
    let word = "y".repeat(64 << 10);
    let entries: Vec<(String, &str)> = (0..32).map(|i| (format!("h{i}"), word.as_str())).collect();
    let entries: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut element = Compressor::default()
        .map("request.headers", &entries)
        .done();
    let words = std::mem::take(&mut element.words);
    let error = mixer
        .report_request(&report_of(vec![element], words))
        .unwrap_err();
    assert!(error.to_string().contains("request.headers"), "{error}");
    // A word within the bound, repeated by a hundred delta-encoded elements that
    // change nothing: each record would copy it again.
    let word = "z".repeat(512 << 10);
    let mut first = Compressor::default()
        .string("request.url_path", &word)
        .done();
    let words = std::mem::take(&mut first.words);
    let mut elements = vec![first];
    elements.extend((0..100).map(|_| CompressedAttributes::default()));
    let error = mixer
        .report_request(&report_of(elements, words.clone()))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the 101 elements of this Report expand to more than 32 MiB"),
        "{error}"
    );
    // Nothing of a refused Report was taken; a few such elements are.
    let text = render(mixer.reports.metrics());
    assert_eq!(
        sample(&text, "meshtel_report_records_total", &[]),
        Some(0.0),
        "{text}"
    );
    let mut first = Compressor::reviews_to_ratings()
        .string("request.url_path", &word)
        .done();
    let words = std::mem::take(&mut first.words);
    let elements = vec![first, CompressedAttributes::default()];
    mixer.report_request(&report_of(elements, words)).unwrap();
}

#[test]
fn independent_elements_stand_alone_and_default_words_serve_them() {
    let mixer = service(Vec::new());
    let full = Compressor::reviews_to_ratings()
        .int("response.code", 503)
        .done();
    // Both elements use the Report's default words instead of their own.
    let default_words = full.words.clone();
    let mut first = full.clone();
    first.words.clear();
    let mut second = full;
    second.words.clear();
    second.int64s.clear();
    let request = ReportRequest {
        attributes: vec![first, second],
        repeated_attributes_semantics: RepeatedAttributesSemantics::IndependentEncoding as i32,
        default_words,
        global_word_count: 100,
    };
    mixer.report_request(&request).unwrap();
    let text = render(mixer.reports.metrics());
    let code = |code: &str| {
        sample(
            &text,
            "istio_requests_total",
            &[("source_workload", "reviews-v2"), ("response_code", code)],
        )
    };
    assert_eq!(code("503"), Some(1.0), "{text}");
    // The second element carried no response.code of its own: not the first's, but
    // 200, as Mixer's metric defaults it (`response.code | 200`).
    assert_eq!(code("200"), Some(1.0), "{text}");
}

#[test]
fn a_report_with_one_unreadable_element_takes_nothing() {
    let mixer = service(Vec::new());
    let good = Compressor::reviews_to_ratings()
        .int("response.code", 200)
        .done();
    let mut bad = good.clone();
    bad.strings.insert(-77, -1);
    let request = ReportRequest {
        attributes: vec![good, bad],
        repeated_attributes_semantics: RepeatedAttributesSemantics::IndependentEncoding as i32,
        default_words: Vec::new(),
        global_word_count: 223,
    };
    let error = mixer.report_request(&request).unwrap_err();
    assert!(error.to_string().contains("word index -77"), "{error}");
    let text = render(mixer.reports.metrics());
    assert_eq!(
        sample(&text, "meshtel_report_records_total", &[]),
        Some(0.0),
        "{text}"
    );
}

/// An instance imported as one policy per bound service: a Check naming the instance is
/// decided by the policy of its destination, and its answer references what every one
/// of them reads (which one decides depends on those), so that a caching istio-proxy
/// never spends one caller's grant on another.
#[test]
fn check_naming_a_split_instance_references_what_its_policies_read() {
    let split = |name: &str, service: &str, max: u64| -> QuotaPolicySpec {
        serde_json::from_value(json!({
            "name": name,
            "match": {"destination": {"service": service}},
            "dimensions": {"source": "source.labels[\"app\"] | \"unknown\""},
            "maxAmount": max,
            "validDuration": "1m",
        }))
        .unwrap()
    };
    let mixer = service(vec![
        split("requestcountquota.ratings", "ratings", 1),
        split("requestcountquota.reviews", "reviews", 5),
    ]);
    let first = mixer
        .check_request(&check(&[("requestcountquota", 1)], "a"))
        .unwrap();
    let granted = &first.quotas["requestcountquota"];
    assert_eq!(granted.granted_amount, 1);
    let referenced = granted.referenced_attributes.as_ref().expect("referenced");
    let names: Vec<String> = referenced
        .attribute_matches
        .iter()
        .map(|m| {
            let i = m.name;
            if i >= 0 {
                GLOBAL_WORDS[usize::try_from(i).unwrap()].to_string()
            } else {
                referenced.words[usize::try_from(-i - 1).unwrap()].clone()
            }
        })
        .collect();
    for wanted in ["destination.service.name", "source.labels"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} not in {names:?}"
        );
    }
    // The ratings policy (limit 1) decided: the next call is over it.
    let second = mixer
        .check_request(&check(&[("requestcountquota", 1)], "b"))
        .unwrap();
    assert_eq!(second.quotas["requestcountquota"].granted_amount, 0);
}

/// Dimensions read Mixer's attributes as Mixer did: `request.url_path` is the path
/// without its query string, and `destination.labels["app"]` the destination's app
/// label, not the service the caller named. An override keyed on them applies.
#[test]
fn url_path_and_app_label_dimensions_key_counters_as_mixer_did() {
    let policy: QuotaPolicySpec = serde_json::from_value(json!({
        "name": "pathq",
        "dimensions": {
            "path": "request.url_path | \"unknown\"",
            "destination": "destination.labels[\"app\"] | \"unknown\"",
        },
        "maxAmount": 100,
        "validDuration": "10s",
        "overrides": [{"dimensions": {"path": "/api", "destination": "ratings"}, "maxAmount": 1}],
    }))
    .unwrap();
    let mixer = service(vec![policy]);
    let request = |page: &str, dedup: &str| {
        let attributes = Compressor::default()
            .string("source.workload.name", "reviews-v2")
            .string("source.workload.namespace", "default")
            .map(
                "destination.labels",
                &[("app", "ratings"), ("version", "v1")],
            )
            .string("destination.service.name", "ratings-svc")
            .string("destination.service.namespace", "default")
            .string("request.path", &format!("/api?page={page}"))
            .string("request.url_path", "/api")
            .done();
        let mut request = check(&[("pathq", 1)], dedup);
        request.attributes = Some(attributes);
        request
    };
    let granted = |page: &str, dedup: &str| {
        mixer.check_request(&request(page, dedup)).unwrap().quotas["pathq"].granted_amount
    };
    // One counter for /api whatever the query, at the override's limit of 1.
    assert_eq!(granted("1", "a"), 1);
    assert_eq!(granted("2", "b"), 0);
    assert_eq!(granted("3", "c"), 0);
}

/// An amount of 0 is granted as nothing (Mixer's memquota: OK, 0) and a negative one
/// (a release, which meshtel does not do) is refused for its quota alone: the call and
/// its other quotas are answered as usual.
#[test]
fn amounts_of_zero_and_below_are_answered_per_quota() {
    let policy: QuotaPolicySpec = serde_json::from_value(json!({
        "name": "ratings-limit",
        "maxAmount": 1,
        "validDuration": "1m",
    }))
    .unwrap();
    let mixer = service(vec![policy]);
    let answer = mixer
        .check_request(&check(
            &[("ratings-limit", 1), ("zero", 0), ("release", -2)],
            "a",
        ))
        .unwrap();
    assert_eq!(answer.precondition.unwrap().status.unwrap().code, 0);
    assert_eq!(answer.quotas["ratings-limit"].granted_amount, 1);
    let zero = &answer.quotas["zero"];
    assert_eq!(
        (zero.granted_amount, zero.status.as_ref().unwrap().code),
        (0, 0)
    );
    let release = &answer.quotas["release"];
    assert_eq!(release.granted_amount, 0);
    let status = release.status.as_ref().unwrap();
    assert_eq!(status.code, 3, "{status:?}");
    assert!(status.message.contains("release"), "{status:?}");
    // A zero-amount check charged nothing: the limit of 1 is still there to take.
    let zero_first = service(vec![
        serde_json::from_value(json!({"name": "q", "maxAmount": 1, "validDuration": "1m"}))
            .unwrap(),
    ]);
    let answer = zero_first.check_request(&check(&[("q", 0)], "z")).unwrap();
    assert_eq!(answer.quotas["q"].granted_amount, 0);
    let answer = zero_first.check_request(&check(&[("q", 1)], "y")).unwrap();
    assert_eq!(answer.quotas["q"].granted_amount, 1);
}
