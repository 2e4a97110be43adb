//! Configurations envoyproxy/ratelimit or meshtel refuse.

use super::error;

#[test]
fn invalid_configurations_are_refused_with_the_descriptor_path() {
    let cases = [
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limits: {unit: second}\n",
            "descriptors[0].descriptors[0] (d.a.b)",
            r#"unknown key "rate_limits""#,
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, burst: 2}\n",
            "descriptors[0] (d.a), rate_limit",
            r#"unknown key "burst""#,
        ),
        (
            "domain: d\ndescriptor: []\n",
            "file",
            r#"unknown key "descriptor""#,
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - value: x\n",
            "descriptors[0].descriptors[0].key",
            "descriptor has empty key",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: b_c\n  - key: a_b\n    value: c\n",
            "descriptors[1] (d.a_b_c)",
            "duplicate descriptor composite key \"d.a_b_c\" (also descriptors[0])",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: second}\n",
            "descriptors[0] (d.a), rate_limit.unit",
            "should not specify rate limit unit when unlimited",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "descriptors[0] (d.a), rate_limit.unit",
            "invalid rate limit unit \"fortnight\"",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {requests_per_unit: 1}\n",
            "rate_limit.unit",
            "invalid rate limit unit \"\"",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {name: n, replaces: [{name: n}], unit: second, requests_per_unit: 1}\n",
            "rate_limit.replaces[0].name",
            "replaces should not contain name of same descriptor",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {replaces: [{}], unit: second, requests_per_unit: 1}\n",
            "rate_limit.replaces[0].name",
            "empty replaces entry",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {name: n, unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {name: N, unit: second, requests_per_unit: 1}\n",
            "descriptors[1] (d.b), rate_limit.name",
            "is also the name of descriptors[0] (d.a)",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: x*y\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
            "descriptors[0] (d.a_x*y), value",
            "wildcard only at the end",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
            "rate_limit.requests_per_unit",
            "not an unsigned 32-bit integer",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    shadow_mode: yes\n",
            "descriptors[0] (d.a), shadow_mode",
            "expected true or false",
        ),
        (
            "descriptors: []\n",
            "domain",
            "config file cannot have empty domain",
        ),
        ("- domain: d\n", "file", "expected a mapping"),
        (
            "domain: a\n---\ndomain: b\n",
            "document 2",
            "one YAML document",
        ),
    ];
    for (yaml, location, message) in cases {
        let err = error(yaml);
        assert!(err.contains(location), "expected {location:?} in: {err}");
        assert!(err.contains(message), "expected {message:?} in: {err}");
    }
}
