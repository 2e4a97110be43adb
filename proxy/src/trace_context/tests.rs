use http::HeaderMap;

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().expect("header value"));
    }
    map
}

#[test]
fn traceparent_parses_and_rejects_invalid_forms() {
    let parent = parse_traceparent(format!("00-{TRACE}-{SPAN}-01").as_bytes()).expect("valid");
    assert_eq!(hex(&parent.trace_id), TRACE);
    assert_eq!(hex(&parent.span_id), SPAN);
    assert_eq!(parent.sampled, Some(true));
    assert!(!parent.random_flag);
    assert_eq!(parse_traceparent(format!("00-{TRACE}-{SPAN}-02").as_bytes()).expect("valid").sampled, Some(false));
    for bad in [
        format!("ff-{TRACE}-{SPAN}-01"),
        format!("00-{}-{SPAN}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
        format!("00-{TRACE}-{SPAN}-01-extra"),
        format!("00-{TRACE}-{SPAN}"),
    ] {
        assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
    }
    // Higher versions: fields at fixed offsets, the rest ignored.
    assert!(parse_traceparent(format!("01-{TRACE}-{SPAN}-01-whatever").as_bytes()).is_some());
}

#[test]
fn b3_single_wins_over_multi_and_pads_64_bit_ids() {
    let map = headers(&[
        ("b3", &format!("{}-{SPAN}-1", &TRACE[16..])),
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", "1111111111111111"),
    ]);
    let extracted = extract(&map);
    let parent = extracted.parent.expect("parent");
    assert_eq!(hex(&parent.trace_id), format!("{}{}", "0".repeat(16), &TRACE[16..]));
    assert_eq!(hex(&parent.span_id), SPAN);
    assert_eq!(parent.sampled, Some(true));
    assert!(extracted.formats.b3_single && extracted.formats.b3_multi && !extracted.formats.w3c);
}

#[test]
fn b3_multi_flags_and_sampling_only() {
    let debug = extract(&headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN), ("x-b3-flags", "1")]));
    assert_eq!(debug.parent.expect("parent").sampled, Some(true));
    let deferred = extract(&headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)]));
    assert_eq!(deferred.parent.expect("parent").sampled, None);
    let deny = extract(&headers(&[("b3", "0")]));
    assert!(deny.parent.is_none());
    assert_eq!(deny.sampling_only, Some(false));
    assert!(!start_span(&deny, 100.0).sampled, "a deny without ids is respected");
    // ... and goes on as a single b3 header, with the new trace's ids, not as B3 multi.
    let mut map = headers(&[("b3", "0")]);
    let span = start_span(&deny, 100.0);
    inject(&mut map, &deny, &span);
    assert_eq!(map["b3"], format!("{}-{}-0", hex(&span.trace_id), hex(&span.span_id)).as_str());
    assert!(!map.contains_key("x-b3-traceid") && !map.contains_key("x-b3-sampled"), "{map:?}");
    let mut map = headers(&[("b3", "d")]);
    let debug = extract(&map);
    let span = start_span(&debug, 0.0);
    assert!(span.sampled);
    inject(&mut map, &debug, &span);
    assert!(map["b3"].to_str().expect("ascii").ends_with("-d"), "{map:?}");
    let malformed = extract(&headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN), ("x-b3-parentspanid", "-")]));
    assert!(malformed.parent.is_none());
}

#[test]
fn the_parent_sampling_decision_wins_over_the_rate() {
    let sampled = extract(&headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-01"))]));
    assert!(start_span(&sampled, 0.0).sampled);
    let unsampled = extract(&headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]));
    assert!(!start_span(&unsampled, 100.0).sampled);
    let none = Extracted::default();
    assert!(start_span(&none, 100.0).sampled);
    assert!(!start_span(&none, 0.0).sampled);
}

#[test]
fn inject_replaces_the_parent_with_our_span_and_keeps_tracestate() {
    let mut map = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-03")), ("tracestate", "a=1,b=2")]);
    let extracted = extract(&map);
    let span = start_span(&extracted, 0.0);
    assert_eq!(span.parent_span_id.map(|p| hex(&p)).as_deref(), Some(SPAN));
    inject(&mut map, &extracted, &span);
    assert_eq!(map["traceparent"], format!("00-{TRACE}-{}-03", hex(&span.span_id)).as_str());
    assert_eq!(map["tracestate"], "a=1,b=2");
    assert!(!map.contains_key("x-b3-traceid"), "no B3 added to a W3C request");
}

#[test]
fn inject_rewrites_b3_in_the_forms_received() {
    let mut map = headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN), ("x-b3-sampled", "1")]);
    let extracted = extract(&map);
    let span = start_span(&extracted, 0.0);
    inject(&mut map, &extracted, &span);
    assert_eq!(map["x-b3-traceid"], TRACE);
    assert_eq!(map["x-b3-spanid"], hex(&span.span_id).as_str());
    assert_eq!(map["x-b3-parentspanid"], SPAN);
    assert_eq!(map["x-b3-sampled"], "1");
    assert!(map.contains_key("traceparent"));

    let mut single = headers(&[("b3", &format!("{TRACE}-{SPAN}-1")), ("tracestate", "orphan=1")]);
    let extracted = extract(&single);
    let span = start_span(&extracted, 0.0);
    inject(&mut single, &extracted, &span);
    assert_eq!(single["b3"], format!("{TRACE}-{}-1-{SPAN}", hex(&span.span_id)).as_str());
    assert!(!single.contains_key("tracestate"), "tracestate without traceparent is discarded");
}

#[test]
fn a_new_trace_gets_w3c_and_b3_multi() {
    let mut map = HeaderMap::new();
    let extracted = extract(&map);
    let span = start_span(&extracted, 100.0);
    inject(&mut map, &extracted, &span);
    let parent = parse_traceparent(map["traceparent"].as_bytes()).expect("valid traceparent");
    assert_eq!(parent.trace_id, span.trace_id);
    assert_eq!(map["x-b3-traceid"], hex(&span.trace_id).as_str());
    assert!(!map.contains_key("x-b3-parentspanid"));
}

#[test]
fn stale_trace_headers_are_removed_whichever_are_present() {
    let mut map = headers(&[("x-b3-parentspanid", SPAN), ("x-b3-flags", "0"), ("tracestate", "orphan=1"), ("b3", "garbage"), ("x-other", "kept")]);
    let extracted = extract(&map);
    assert_eq!(extracted.formats, Formats::default(), "no valid context");
    assert!(extracted.present.tracestate());
    let span = start_span(&extracted, 100.0);
    inject(&mut map, &extracted, &span);
    for removed in ["x-b3-parentspanid", "x-b3-flags", "tracestate", "b3"] {
        assert!(!map.contains_key(removed), "{removed} left: {map:?}");
    }
    assert_eq!(map["x-b3-traceid"], hex(&span.trace_id).as_str());
    assert_eq!(map["x-other"], "kept");
    assert_eq!(Present::of(&HeaderMap::new()), Present::default());
}

#[test]
fn inject_keeps_a_64_bit_b3_trace_id_and_the_debug_flag() {
    let short = &TRACE[16..];
    let mut multi = headers(&[("x-b3-traceid", short), ("x-b3-spanid", SPAN), ("x-b3-flags", "1")]);
    let extracted = extract(&multi);
    let span = start_span(&extracted, 0.0);
    assert!(span.sampled, "debug implies sampled");
    inject(&mut multi, &extracted, &span);
    assert_eq!(multi["x-b3-traceid"], short, "16 digits stay 16 digits");
    assert_eq!(multi["x-b3-spanid"], hex(&span.span_id).as_str());
    assert_eq!(multi["x-b3-parentspanid"], SPAN);
    assert_eq!(multi["x-b3-flags"], "1");
    assert!(!multi.contains_key("x-b3-sampled"), "debug is not sent with sampled");
    // W3C has the id left-padded to 32 digits (traces.md §6.3).
    let w3c = parse_traceparent(multi["traceparent"].as_bytes()).expect("valid traceparent");
    assert_eq!(hex(&w3c.trace_id), format!("{}{short}", "0".repeat(16)));

    let mut single = headers(&[("b3", &format!("{short}-{SPAN}-d"))]);
    let extracted = extract(&single);
    let span = start_span(&extracted, 0.0);
    inject(&mut single, &extracted, &span);
    assert_eq!(single["b3"], format!("{short}-{}-d-{SPAN}", hex(&span.span_id)).as_str());

    // A 128-bit id whose high half is zero but which came as 32 digits stays 32 digits.
    let padded = format!("{}{short}", "0".repeat(16));
    let mut long = headers(&[("b3", &format!("{padded}-{SPAN}-1"))]);
    let extracted = extract(&long);
    let span = start_span(&extracted, 0.0);
    inject(&mut long, &extracted, &span);
    assert_eq!(long["b3"], format!("{padded}-{}-1-{SPAN}", hex(&span.span_id)).as_str());
}

#[test]
fn tracestate_split_over_lines_is_joined() {
    let split = headers(&[("tracestate", "a=1"), ("tracestate", "b=2,c=3")]);
    assert_eq!(trace_state(&split), "a=1,b=2,c=3");
    let empty_line = headers(&[("tracestate", "a=1"), ("tracestate", ""), ("tracestate", "c=3")]);
    assert_eq!(trace_state(&empty_line), "a=1,c=3");
    assert_eq!(trace_state(&headers(&[("tracestate", "a=1")])), "a=1");
    assert_eq!(trace_state(&HeaderMap::new()), "");
}

#[test]
fn a_b3_single_decision_wins_over_the_multi_headers_decision() {
    let multi = |sampled: &str| -> HeaderMap {
        let mut map = headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)]);
        if !sampled.is_empty() {
            map.insert("x-b3-sampled", sampled.parse().expect("header value"));
        }
        map
    };
    for (single, multi_sampled, sampled, debug) in [("0", "1", false, false), ("1", "0", true, false), ("d", "", true, true)] {
        let mut map = multi(multi_sampled);
        map.insert("b3", single.parse().expect("header value"));
        let extracted = extract(&map);
        let parent = extracted.parent.expect("the multi headers' context");
        assert_eq!(hex(&parent.trace_id), TRACE, "b3: {single}");
        assert_eq!(parent.sampled, Some(sampled), "b3: {single}");
        let span = start_span(&extracted, if sampled { 0.0 } else { 100.0 });
        assert_eq!(span.sampled, sampled, "b3: {single}");
        inject(&mut map, &extracted, &span);
        let state = if debug { "d" } else if sampled { "1" } else { "0" };
        assert_eq!(map["b3"], format!("{TRACE}-{}-{state}-{SPAN}", hex(&span.span_id)).as_str());
        if debug {
            assert_eq!(map["x-b3-flags"], "1", "b3: {single}");
            assert!(!map.contains_key("x-b3-sampled"), "b3: {single}");
        } else {
            assert_eq!(map["x-b3-sampled"], state, "b3: {single}");
        }
    }
}

#[test]
fn multi_headers_without_a_context_follow_the_traceparent() {
    // A decision alone, or an id alone, beside a traceparent that says otherwise.
    let cases: [(&[(&'static str, &str)], bool); 3] = [
        (&[("x-b3-sampled", "0")], true),
        (&[("x-b3-flags", "1")], false),
        (&[("x-b3-traceid", "1111111111111111"), ("x-b3-sampled", "1")], false),
    ];
    for (multi, sampled) in cases {
        let flags = if sampled { "01" } else { "00" };
        let mut map = headers(multi);
        map.insert("traceparent", format!("00-{TRACE}-{SPAN}-{flags}").parse().expect("header value"));
        let extracted = extract(&map);
        let span = start_span(&extracted, 50.0);
        assert_eq!(span.sampled, sampled, "{multi:?}");
        inject(&mut map, &extracted, &span);
        assert_eq!(map["x-b3-traceid"], TRACE, "{multi:?}");
        assert_eq!(map["x-b3-spanid"], hex(&span.span_id).as_str(), "{multi:?}");
        assert_eq!(map["x-b3-parentspanid"], SPAN, "{multi:?}");
        assert_eq!(map["x-b3-sampled"], if sampled { "1" } else { "0" }, "{multi:?}");
        assert!(!map.contains_key("x-b3-flags"), "{multi:?}: {map:?}");
    }
}
