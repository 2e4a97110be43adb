//! Tests of v1 parameter parsing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use super::*;
use proptest::prelude::*;

const NOW: u64 = 1_735_689_600_000_000_000;

fn search(q: &str) -> Result<TracesRequest> {
    parse_traces_params(&QueryParams::parse(Some(q)), NOW, 1500)
}

fn query(q: &str) -> TraceQuery {
    match search(q) {
        Ok(TracesRequest::Search(query)) => query,
        other => panic!("expected a search, got {other:?}"),
    }
}

fn error(q: &str) -> String {
    match search(q) {
        Err(ApiError::BadRequest(msg)) => msg,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[test]
fn signed_durations_as_go_reads_them() {
    // A negative minimum bounds nothing; a negative maximum lets no span through.
    let q = query("service=s&minDuration=-1s&maxDuration=%2B2ms");
    assert_eq!(
        (q.duration_min_nano, q.duration_max_nano),
        (None, Some(2_000_000))
    );
    assert!(matches!(
        search("service=s&maxDuration=-1ms"),
        Ok(TracesRequest::Nothing)
    ));
    assert!(matches!(
        search("service=s&minDuration=-5s&maxDuration=-1s"),
        Ok(TracesRequest::Nothing)
    ));
}

#[test]
fn defaults() {
    let q = query("service=frontend");
    assert_eq!(q.service.as_deref(), Some("frontend"));
    assert_eq!(q.operation, None);
    assert_eq!(q.limit, 100);
    assert_eq!(q.start_max_unix_nano, NOW);
    assert_eq!(q.start_min_unix_nano, NOW - 48 * 3600 * 1_000_000_000);
    assert_eq!((q.duration_min_nano, q.duration_max_nano), (None, None));
    assert!(q.tags.is_empty());
}

#[test]
fn jaeger_ui_request() {
    let q = query(
        "end=1735689600000000&limit=20&lookback=1h&maxDuration&minDuration&service=frontend&start=1735686000000000",
    );
    assert_eq!(q.start_min_unix_nano, 1_735_686_000_000_000_000);
    // `end` takes in its whole microsecond: a span starting at …600_000_000_001 ns,
    // shown as starting at 1735689600000000 µs, is found with that `end`.
    assert_eq!(q.start_max_unix_nano, 1_735_689_600_000_000_999);
    assert_eq!(q.limit, 20);
    assert_eq!((q.duration_min_nano, q.duration_max_nano), (None, None));
}

#[test]
fn grafana_request() {
    let q = query(
        "end=1738368000000000&limit=10&maxDuration=5s&minDuration=1s&operation=test-operation&service=test-service&start=1735689600000000&tags=%7B%22error%22%3A%22true%22%7D",
    );
    assert_eq!(q.operation.as_deref(), Some("test-operation"));
    assert_eq!(q.duration_min_nano, Some(1_000_000_000));
    assert_eq!(q.duration_max_nano, Some(5_000_000_000));
    assert_eq!(q.tags, vec![("error".to_string(), "true".to_string())]);
    assert_eq!(q.limit, 10);
}

#[test]
fn tags_merge_and_override() {
    let q = query(
        "service=s&tag=a:1&tag=url:http://x:80&tags=%7B%22a%22%3A%222%22%7D&tags=%7B%22b%22%3A%223%22%7D&tag=c:",
    );
    let expected: Vec<(String, String)> =
        [("a", "2"), ("b", "3"), ("c", ""), ("url", "http://x:80")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(q.tags, expected);
}

#[test]
fn error_messages_match_jaeger() {
    assert_eq!(error("limit=5"), "parameter 'service' is required");
    assert_eq!(error("service="), "parameter 'service' is required");
    assert_eq!(
        error("service=s&start=x"),
        "unable to parse param 'start': strconv.ParseInt: parsing \"x\": invalid syntax"
    );
    assert_eq!(
        error("service=s&end=1.5"),
        "unable to parse param 'end': strconv.ParseInt: parsing \"1.5\": invalid syntax"
    );
    assert_eq!(
        error("service=s&limit=abc"),
        "unable to parse param 'limit': strconv.ParseInt: parsing \"abc\": invalid syntax"
    );
    assert_eq!(
        error("service=s&limit=3000000000"),
        "unable to parse param 'limit': strconv.ParseInt: parsing \"3000000000\": value out of range"
    );
    assert_eq!(
        error("service=s&minDuration=1"),
        "unable to parse param 'minDuration': time: missing unit in duration \"1\""
    );
    assert_eq!(
        error("service=s&maxDuration=2d"),
        "unable to parse param 'maxDuration': time: unknown unit \"d\" in duration \"2d\""
    );
    assert_eq!(
        error("service=s&minDuration=x"),
        "unable to parse param 'minDuration': time: invalid duration \"x\""
    );
    assert_eq!(
        error("service=s&minDuration=2s&maxDuration=1s"),
        "'maxDuration' should be greater than 'minDuration'"
    );
    assert_eq!(
        error("service=s&minDuration=1s&maxDuration=-1s"),
        "'maxDuration' should be greater than 'minDuration'"
    );
    assert_eq!(
        error("service=s&minDuration=--1s"),
        "unable to parse param 'minDuration': time: invalid duration \"--1s\""
    );
    assert_eq!(
        error("service=s&maxDuration=-2d"),
        "unable to parse param 'maxDuration': time: unknown unit \"d\" in duration \"-2d\""
    );
    assert_eq!(
        error("service=s&tag=novalue"),
        "malformed 'tag' parameter, expecting key:value, received: novalue"
    );
    assert_eq!(
        error("service=s&tags=%7B%22a%22%3A1%7D"),
        "malformed 'tags' parameter, cannot unmarshal JSON: json: cannot unmarshal number into Go value of type string"
    );
    assert_eq!(
        error("service=s&tags=%5B%5D"),
        "malformed 'tags' parameter, cannot unmarshal JSON: json: cannot unmarshal array into Go value of type map[string]string"
    );
    assert!(
        error("service=s&tags=%7Bnope")
            .starts_with("malformed 'tags' parameter, cannot unmarshal JSON: ")
    );
    assert!(error("traceID=xyz").starts_with("cannot parse traceID param: "));
    assert!(
        error("traceID=000000000000000000000000000000001")
            .contains("cannot be longer than 32 hex characters")
    );
}

#[test]
fn limit_zero_negative_and_bound() {
    assert_eq!(query("service=s&limit=0").limit, 100);
    assert_eq!(query("service=s&limit=-3").limit, 100);
    assert_eq!(query("service=s&limit=100000").limit, 1500);
    assert_eq!(query("service=s&limit=%2B7").limit, 7);
}

#[test]
fn durations_and_zero_bounds() {
    let q = query("service=s&minDuration=1.2ms&maxDuration=0");
    assert_eq!(q.duration_min_nano, Some(1_200_000));
    assert_eq!(q.duration_max_nano, None);
    assert_eq!(
        query("service=s&minDuration=500%C2%B5s").duration_min_nano,
        Some(500_000)
    );
}

#[test]
fn trace_ids_win_over_search_params() {
    let req = search("traceID=4bf92f3577b34da6a3ce929d0e0e4736&traceID=00f067aa0ba902b7&service=&minDuration=2s&maxDuration=1s").unwrap();
    let TracesRequest::ByIds(ids) = req else {
        panic!("expected ids")
    };
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1].to_string(), "00f067aa0ba902b7");
    // Earlier parameters are still validated.
    assert!(error("traceID=abc&start=x").starts_with("unable to parse param 'start'"));
}

#[test]
fn trace_id_forms() {
    let a = parse_trace_id("abc").unwrap();
    assert_eq!(a, parse_trace_id("0000000000000abc").unwrap());
    assert_eq!(
        a,
        parse_trace_id("00000000000000000000000000000ABC").unwrap()
    );
    // 16 bytes of base64 (std, url-safe, padded or not).
    let id = parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    assert_eq!(parse_trace_id(&STANDARD.encode(id.0)).unwrap(), id);
    assert_eq!(parse_trace_id(&URL_SAFE_NO_PAD.encode(id.0)).unwrap(), id);
    assert!(parse_trace_id("").is_err());
    assert!(parse_trace_id("zz").is_err());
}

#[test]
fn dependencies_params() {
    let p = parse_dependencies_params(
        &QueryParams::parse(Some("endTs=1735689600000&lookback=604800000")),
        NOW,
    )
    .unwrap();
    assert_eq!(p.end_unix_nano, 1_735_689_600_000_000_000);
    assert_eq!(p.lookback_nano, 604_800_000_000_000);
    assert_eq!(p.service, None);
    let d = parse_dependencies_params(&QueryParams::parse(Some("service=a")), NOW).unwrap();
    assert_eq!(
        (d.end_unix_nano, d.lookback_nano),
        (NOW, 24 * 3600 * 1_000_000_000)
    );
    assert_eq!(d.service.as_deref(), Some("a"));
    for bad in ["0", "-1", "-3600000"] {
        let e =
            parse_dependencies_params(&QueryParams::parse(Some(&format!("lookback={bad}"))), NOW)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "unable to parse param 'lookback': {bad} is not a positive number of milliseconds"
            )
        );
    }
    let e = parse_dependencies_params(&QueryParams::parse(Some("lookback=1h")), NOW).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to parse param 'lookback': strconv.ParseInt: parsing \"1h\": invalid syntax"
    );
    let e = parse_dependencies_params(&QueryParams::parse(Some("endTs=now")), NOW).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to parse param 'endTs': strconv.ParseInt: parsing \"now\": invalid syntax"
    );
}

#[test]
fn query_string_reading() {
    let p = QueryParams::parse(Some("a=1&a=2&bare&prettyPrint=false&sp=x+y%2By"));
    assert_eq!(p.get("a"), "1");
    assert_eq!(p.all("a").collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(p.get("bare"), "");
    assert_eq!(p.get("missing"), "");
    assert_eq!(p.get("sp"), "x y+y");
    assert!(!p.pretty_print());
    assert!(QueryParams::parse(Some("prettyPrint=1")).pretty_print());
    assert!(!QueryParams::parse(Some("prettyPrint")).pretty_print());
    assert!(!parse_raw_param(&QueryParams::parse(None)).unwrap());
    assert!(parse_raw_param(&QueryParams::parse(Some("raw=T"))).unwrap());
    assert_eq!(
        parse_raw_param(&QueryParams::parse(Some("raw=yes")))
            .unwrap_err()
            .to_string(),
        "unable to parse param 'raw': strconv.ParseBool: parsing \"yes\": invalid syntax"
    );
}

proptest! {
    #[test]
    fn go_int_matches_rust_for_plain_numbers(n in any::<i64>()) {
        prop_assert_eq!(parse_go_int(&n.to_string(), 64), Ok(n));
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,40}") {
        let _ = search(&s);
        let _ = parse_dependencies_params(&QueryParams::parse(Some(&s)), NOW);
        let _ = parse_trace_id(&s);
        let _ = parse_string_map(&s);
    }

    #[test]
    fn hex_trace_ids_round_trip(id in any::<u128>()) {
        let parsed = parse_trace_id(&format!("{id:032x}")).unwrap();
        prop_assert_eq!(u128::from_be_bytes(parsed.0), id);
        prop_assert_eq!(parse_trace_id(&parsed.to_string()).unwrap(), parsed);
    }
}
