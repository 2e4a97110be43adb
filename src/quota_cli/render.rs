//! Reading policy files (YAML or JSON; one policy, a list, multi-document YAML or a
//! `{"data":[...]}` list answer) and printing policies, usage and the audit log.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::bail;
use meshtel_model::quota::parse::{spec_from_value, strict_json_value, strict_yaml_value};
use meshtel_model::quota::{FieldError, QuotaPolicySpec, WorkloadMatch};
use meshtel_query::quotas::wire::READ_ONLY_FIELDS;
use meshtel_query::quotas::{AuditJson, PolicyJson};
use serde_json::Value;

/// Every policy in a file, in order; names must be unique.
pub fn parse_policies(text: &str) -> anyhow::Result<Vec<QuotaPolicySpec>> {
    let trimmed = text.trim_start();
    // A repeated key (its last value would silently win) is refused with its path.
    let documents: Vec<Value> =
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            vec![strict_json_value(text.as_bytes()).map_err(|e| {
                anyhow::anyhow!("the file is not valid JSON: {}", field_problem(&e))
            })?]
        } else {
            meshtel_model::yaml_nesting::check(text)
                .map_err(|e| anyhow::anyhow!("the file is not valid YAML: {e}"))?;
            yaml_serde::Deserializer::from_str(text)
                .enumerate()
                .map(|(i, doc)| {
                    strict_yaml_value(doc).map_err(|e| {
                        anyhow::anyhow!("YAML document {} is invalid: {}", i + 1, field_problem(&e))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
    let mut items = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Array(list) => items.extend(list),
            Value::Object(mut object) if matches!(object.get("data"), Some(Value::Array(_))) => {
                if let Some(Value::Array(list)) = object.remove("data") {
                    items.extend(list);
                }
            }
            other => items.push(other),
        }
    }
    let mut names = BTreeSet::new();
    let mut read = Vec::new();
    // Problems of the file's shape are listed with the policies' own.
    let problem = |field: &str, message: &str| {
        Err(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    };
    for (i, mut item) in items.into_iter().enumerate() {
        let Some(object) = item.as_object_mut() else {
            read.push(((i + 1).to_string(), problem("", "is not an object")));
            continue;
        };
        if object.contains_key("kind") || object.contains_key("domain") {
            let message =
                "looks like Istio or envoy ratelimit configuration: use meshtel quota import";
            read.push(((i + 1).to_string(), problem("", message)));
            continue;
        }
        for field in READ_ONLY_FIELDS {
            object.remove(field);
        }
        let label = match object.get("name") {
            Some(Value::String(name)) => format!("{name:?}"),
            _ => (i + 1).to_string(),
        };
        let mut spec = spec_from_value(item);
        if let Ok(read_spec) = &spec
            && !names.insert(read_spec.name.clone())
        {
            spec = problem("name", "appears twice in the file");
        }
        read.push((label, spec));
    }
    if read.iter().all(|(_, spec)| spec.is_ok()) {
        return Ok(read.into_iter().filter_map(|(_, spec)| spec.ok()).collect());
    }
    // Every problem of every policy at once: those that did not read, and what
    // validation finds in the others.
    let mut problems = String::new();
    for (label, spec) in &read {
        let errors = match spec {
            Err(errors) => errors.clone(),
            Ok(spec) => spec.compile_new().err().unwrap_or_default(),
        };
        write_problems(&mut problems, label, &errors);
    }
    bail!(
        "invalid quota policies, nothing applied:\n{}",
        problems.trim_end()
    )
}

/// `policy <label>:` and one `  field: message` line per problem; nothing for none.
fn write_problems(out: &mut String, label: &str, errors: &[FieldError]) {
    if errors.is_empty() {
        return;
    }
    let _ = writeln!(out, "policy {label}:");
    for e in errors {
        let _ = writeln!(out, "  {}", field_problem(e));
    }
}

/// `field: message`, or the message alone when it concerns no one field.
fn field_problem(error: &FieldError) -> String {
    if error.field.is_empty() {
        error.message.clone()
    } else {
        error.to_string()
    }
}

/// Compiles every policy; all problems, one per line, or nothing.
pub fn validate_all(specs: &[QuotaPolicySpec]) -> anyhow::Result<()> {
    let mut problems = String::new();
    for spec in specs {
        if let Err(errors) = spec.compile_new() {
            write_problems(&mut problems, &format!("{:?}", spec.name), &errors);
        }
    }
    if !problems.is_empty() {
        bail!(
            "invalid quota policies, nothing applied:\n{}",
            problems.trim_end()
        );
    }
    Ok(())
}

/// Policies as multi-document YAML.
pub fn specs_to_yaml(specs: &[QuotaPolicySpec]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, spec) in specs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&spec_to_yaml(spec)?);
    }
    Ok(out)
}

/// One spec as YAML; an `unlimited` policy's limit fields, which it ignores, are left
/// out when they hold nothing (`maxAmount: 0`, `validDuration: ''`): turned into a
/// limited policy as printed, they would deny every request.
fn spec_to_yaml(spec: &QuotaPolicySpec) -> anyhow::Result<String> {
    let yaml = yaml_serde::to_string(spec)?;
    if !spec.unlimited {
        return Ok(yaml);
    }
    Ok(yaml
        .lines()
        .filter(|line| !matches!(*line, "maxAmount: 0" | "validDuration: ''" | "validDuration: \"\""))
        .map(|line| format!("{line}\n"))
        .collect())
}

/// One stored policy as YAML that `apply -f` takes back, headed by a comment (see
/// [`spec_to_yaml`]).
pub fn policy_to_yaml(policy: &PolicyJson) -> anyhow::Result<String> {
    let yaml = spec_to_yaml(&policy.spec)?;
    Ok(format!(
        "# version {}, updated {} by {}\n{yaml}",
        policy.version, policy.updated_at, policy.updated_by,
    ))
}

fn workload(w: &WorkloadMatch) -> String {
    let mut text = if w.service.is_empty() {
        w.workload.clone()
    } else {
        w.service.clone()
    };
    if text.is_empty() {
        text.push('*');
    }
    if !w.version.is_empty() {
        let _ = write!(text, "@{}", w.version);
    }
    if !w.namespace.is_empty() {
        let _ = write!(text, ".{}", w.namespace);
    }
    text
}

/// What a policy applies to, in a few words: `reviews -> ratings GET /api*`.
pub fn match_summary(spec: &QuotaPolicySpec) -> String {
    if let Some(rl) = &spec.rate_limit {
        let entries: Vec<String> = rl
            .descriptors
            .iter()
            .map(|e| match &e.value {
                Some(v) if e.share_threshold => format!("{}={v} (shared)", e.key),
                Some(v) => format!("{}={v}", e.key),
                None => e.key.clone(),
            })
            .collect();
        return format!("rls {}: {}", rl.domain, entries.join(","));
    }
    let m = &spec.matches;
    let mut parts = Vec::new();
    if !m.source.is_empty() || !m.destination.is_empty() {
        parts.push(format!(
            "{} -> {}",
            workload(&m.source),
            workload(&m.destination)
        ));
    }
    if !m.method.is_empty() {
        parts.push(m.method.clone());
    }
    if !m.path_prefix.is_empty() {
        parts.push(format!("{}*", m.path_prefix));
    }
    parts.extend(m.headers.iter().map(|(k, v)| format!("{k}={v}")));
    if parts.is_empty() {
        "*".into()
    } else {
        parts.join(" ")
    }
}

/// The default limit: `1/1s fixed-window`, `unlimited`, `(shadow)` when it never denies.
pub fn limit_summary(spec: &QuotaPolicySpec) -> String {
    if spec.unlimited {
        return "unlimited".into();
    }
    let algorithm = spec.algorithm.as_deref().unwrap_or("fixed-window");
    let mut text = format!("{}/{} {algorithm}", spec.max_amount, spec.valid_duration);
    if let Some(burst) = spec.burst {
        let _ = write!(text, " burst {burst}");
    }
    if spec.shadow {
        text.push_str(" (shadow)");
    }
    text
}

/// Left-aligned columns separated by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `meshtel quota list`.
pub fn policies_table(policies: &[PolicyJson]) -> String {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            vec![
                p.spec.name.clone(),
                match_summary(&p.spec),
                limit_summary(&p.spec),
                p.spec.overrides.len().to_string(),
                p.version.to_string(),
                p.updated_by.clone(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "MATCH",
            "LIMIT",
            "OVERRIDES",
            "VERSION",
            "UPDATED BY",
        ],
        &rows,
    )
}

/// `meshtel quota usage`: a summary line, what it counts, and a table of keys. The
/// engine counts Check decisions and tokens, not requests (see `UsageJson` in the query
/// service); servers before `tokensGranted` / `checksDenied` answer `granted` / `denied`.
pub fn usage_table(usage: &Value) -> String {
    let number = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0).to_string();
    let either = |v: &Value, new: &str, old: &str| {
        v[new]
            .as_u64()
            .or_else(|| v[old].as_u64())
            .unwrap_or(0)
            .to_string()
    };
    let keys = usage["keys"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut out = format!(
        "quota {}: {} tokens granted, {} checks denied, {} live keys{}\n",
        usage["name"].as_str().unwrap_or(""),
        either(usage, "tokensGranted", "granted"),
        either(usage, "checksDenied", "denied"),
        number(usage, "keyCount"),
        if (keys.len() as u64) < usage["keyCount"].as_u64().unwrap_or(0) {
            format!(" (busiest {} shown)", keys.len())
        } else {
            String::new()
        },
    );
    out.push_str(
        "  (Check decisions, not requests: proxies lease tokens ahead and answer 429 themselves \
         after a denied Check;\n   requests refused: \
         istio_requests_total{reporter=\"destination\",response_flags=\"RL\"} on the collector's /metrics \
         (429s, and gRPC calls answered grpc_response_status=\"8\");\n   \
         a key counts since its counter was created: an idle key's is dropped once its window \
         passed, so keys need not add up to the totals)\n",
    );
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k["key"].as_str().unwrap_or("").to_string(),
                format!("{}/{}", number(k, "used"), number(k, "limit")),
                format!("{}ms", number(k, "resetAfterMs")),
                either(k, "tokensGranted", "granted"),
                either(k, "checksDenied", "denied"),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(
            &[
                "KEY",
                "USED",
                "RESETS IN",
                "TOKENS GRANTED",
                "CHECKS DENIED",
            ],
            &rows,
        ));
    }
    out
}

/// `meshtel quota audit`.
pub fn audit_table(entries: &[AuditJson]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.clone(),
                e.actor.clone(),
                e.action.clone(),
                e.name.clone(),
                e.version.map_or_else(|| "-".to_string(), |v| v.to_string()),
                changes(e.before.as_ref(), e.after.as_ref()),
            ]
        })
        .collect();
    table(
        &["ID", "AT", "ACTOR", "ACTION", "NAME", "VERSION", "CHANGES"],
        &rows,
    )
}

/// The fields an audit entry changed, `field: before → after` in compact JSON (each
/// side cut to [`CHANGE_CHARS`]), `-` when there is nothing to compare.
fn changes(before: Option<&QuotaPolicySpec>, after: Option<&QuotaPolicySpec>) -> String {
    let fields = |spec: Option<&QuotaPolicySpec>| match spec.map(serde_json::to_value) {
        Some(Ok(Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (fields(before), fields(after));
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |value: Option<&Value>| {
        let text = value.map_or_else(|| "(none)".to_owned(), Value::to_string);
        match text.char_indices().nth(CHANGE_CHARS) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        }
    };
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|key| *key != "name" && before.get(*key) != after.get(*key))
        .map(|key| {
            format!(
                "{key}: {} → {}",
                shown(before.get(key)),
                shown(after.get(key))
            )
        })
        .collect();
    if changed.is_empty() {
        "-".to_owned()
    } else {
        changed.join("; ")
    }
}

/// Longest side of a change shown in the audit table, in characters.
const CHANGE_CHARS: usize = 40;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn an_unlimited_policy_prints_without_the_limit_it_ignores() {
        let spec: QuotaPolicySpec = serde_json::from_value(serde_json::json!({
            "name": "free", "unlimited": true, "match": {"destination": {"service": "ratings"}},
        }))
        .unwrap();
        let policy = PolicyJson {
            spec,
            version: 1,
            updated_at: "2026-12-05T12:00:00.000Z".into(),
            updated_by: "ops".into(),
        };
        let yaml = policy_to_yaml(&policy).unwrap();
        assert!(
            !yaml.contains("maxAmount") && !yaml.contains("validDuration"),
            "{yaml}"
        );
        assert!(yaml.contains("unlimited: true"), "{yaml}");
        // And it reads back as the same policy.
        let read = parse_policies(&yaml).unwrap();
        assert_eq!(read[0], policy.spec);
        // `quota import` prints specs the same way.
        let imported = specs_to_yaml(std::slice::from_ref(&policy.spec)).unwrap();
        assert!(
            !imported.contains("maxAmount") && !imported.contains("validDuration"),
            "{imported}"
        );
        assert_eq!(parse_policies(&imported).unwrap()[0], policy.spec);
    }

    #[test]
    fn audit_rows_say_what_changed() {
        let spec = |max: u64, description: &str| {
            serde_json::from_value::<QuotaPolicySpec>(serde_json::json!({
                "name": "q", "maxAmount": max, "validDuration": "1s", "description": description,
            }))
            .unwrap()
        };
        let entry = |id, action: &str, before, after| AuditJson {
            id,
            at: "2026-12-05T12:00:00.000Z".into(),
            actor: "ops".into(),
            action: action.into(),
            name: "q".into(),
            before,
            after,
            version: (id > 1).then_some(id as u64 * 10),
        };
        let text = audit_table(&[
            entry(3, "delete", Some(spec(5, "x")), None),
            entry(2, "update", Some(spec(1, "x")), Some(spec(5, "x"))),
            entry(1, "create", None, Some(spec(1, &"d".repeat(60)))),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("CHANGES"), "{text}");
        assert!(lines[2].ends_with("maxAmount: 1 → 5"), "{text}");
        assert!(lines[1].contains("maxAmount: 5 → (none)"), "{text}");
        assert!(lines[3].contains("description: (none) → \"dddd"), "{text}");
        assert!(lines[3].contains("…"), "{text}");
        // The version each change made; none recorded on the oldest.
        assert!(lines[0].contains(" VERSION "), "{text}");
        assert!(lines[1].contains(" 30 "), "{text}");
        assert!(lines[3].contains(" - "), "{text}");
    }

    #[test]
    fn usage_says_it_counts_checks_and_tokens_not_requests() {
        let usage = serde_json::json!({
            "name": "q", "tokensGranted": 40, "checksDenied": 3, "granted": 40, "denied": 3,
            "keyCount": 1,
            "keys": [{"key": "q;u=a", "used": 1, "limit": 5, "resetAfterMs": 200,
                      "tokensGranted": 40, "checksDenied": 3, "granted": 40, "denied": 3}],
        });
        let text = usage_table(&usage);
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "quota q: 40 tokens granted, 3 checks denied, 1 live keys"
        );
        assert!(text.contains(r#"response_flags="RL""#), "{text}");
        assert!(
            text.contains("TOKENS GRANTED") && text.contains("CHECKS DENIED"),
            "{text}"
        );
        // An older server: only the old names.
        let old =
            serde_json::json!({"name": "q", "granted": 7, "denied": 2, "keyCount": 0, "keys": []});
        assert!(usage_table(&old).starts_with("quota q: 7 tokens granted, 2 checks denied"));
    }

    #[test]
    fn quota_files_in_every_shape() {
        let one = "name: a\nmaxAmount: 1\nvalidDuration: 1s\n";
        assert_eq!(parse_policies(one).unwrap().len(), 1);
        let multi = format!("{one}---\nname: b\nmaxAmount: 2\nvalidDuration: 1s\n---\n");
        let names: Vec<String> = parse_policies(&multi)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let list = r#"[{"name":"a","maxAmount":1,"validDuration":"1s"}]"#;
        assert_eq!(parse_policies(list).unwrap()[0].max_amount, 1);
        let answer = r#"{"data":[{"name":"a","maxAmount":1,"validDuration":"1s","version":3,"updatedAt":"x","updatedBy":"y"}]}"#;
        assert_eq!(parse_policies(answer).unwrap()[0].name, "a");
        assert!(parse_policies(&format!("{one}---\n{one}")).is_err());
        assert!(parse_policies("name: a\nmaxAmmount: 1\n").is_err());
        // Every problem of every policy, those that read and those that did not.
        let text = "name: a\nmaxAmount: -3\nvalidDuration: 0s\nshadw: true\n---\n\
                    name: b\nmaxAmount: 1\nvalidDuration: 1s\nalgorithm: leaky\n";
        let error = parse_policies(text).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid quota policies, nothing applied:\n\
             policy \"a\":\n  shadw: unknown field `shadw`; did you mean `shadow`?\n\
             \x20 maxAmount: must be a whole number ≥ 0, not -3\n\
             \x20 validDuration: must be greater than zero\n\
             policy \"b\":\n  algorithm: \"leaky\" is not one of fixed-window, rolling-window, token-bucket"
        );
        assert!(
            parse_policies("kind: handler\n")
                .unwrap_err()
                .to_string()
                .contains("import")
        );
        // The file's shape problems are listed with the policies' own.
        let text = "- 1\n- {name: a, maxAmount: 1, validDuration: 1s}\n- {name: a, maxAmount: 1, validDuration: 1s}\n\
                    - {name: c, maxAmount: -1, validDuration: 1s}\n";
        let error = parse_policies(text).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid quota policies, nothing applied:\n\
             policy 1:\n  is not an object\n\
             policy \"a\":\n  name: appears twice in the file\n\
             policy \"c\":\n  maxAmount: must be a whole number ≥ 0, not -1"
        );
    }

    #[test]
    fn imported_policies_print_as_yaml_that_reads_back_the_same() {
        // What `quota import` prints and `quota get` shows is what `apply -f` takes:
        // scalars kept as written, shareThreshold, the reported name (empty: none),
        // a limit of 0, whitelisted (unlimited) descriptors.
        let specs = meshtel_model::quota::import::import_envoy_ratelimit(
            r#"
domain: scal
descriptors:
  - key: api_version
    value: 1.10
    rate_limit: {unit: minute, requests_per_unit: 0}
  - key: hexish
    value: 0x1F
    rate_limit: {unit: minute, requests_per_unit: 1, name: 1e3}
  - key: flag
    value: yes
  - key: path
    value: /api/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
"#,
        )
        .unwrap();
        let yaml = specs_to_yaml(&specs).unwrap();
        assert_eq!(parse_policies(&yaml).unwrap(), specs, "{yaml}");
        assert!(yaml.contains("shareThreshold: true"), "{yaml}");
        let stored = PolicyJson {
            spec: specs[0].clone(),
            version: 1,
            updated_at: "t".into(),
            updated_by: "u".into(),
        };
        let shown = policy_to_yaml(&stored).unwrap();
        assert_eq!(
            parse_policies(&shown).unwrap(),
            vec![specs[0].clone()],
            "{shown}"
        );
    }

    #[test]
    fn quota_summaries() {
        let spec: QuotaPolicySpec = yaml_serde::from_str(
            "name: q\nmatch: {source: {service: reviews, version: v3}, destination: {service: ratings}, method: GET, pathPrefix: /api}\n\
             maxAmount: 1\nvalidDuration: 1s\n",
        )
        .unwrap();
        assert_eq!(match_summary(&spec), "reviews@v3 -> ratings GET /api*");
        assert_eq!(limit_summary(&spec), "1/1s fixed-window");
        let all = QuotaPolicySpec {
            unlimited: true,
            ..spec
        };
        assert_eq!(limit_summary(&all), "unlimited");
        assert_eq!(match_summary(&QuotaPolicySpec::default()), "*");
        let shared = meshtel_model::quota::import::import_envoy_ratelimit(
            "domain: s\ndescriptors: [{key: path, value: /api/*, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 2}}]\n",
        )
        .unwrap();
        assert_eq!(match_summary(&shared[0]), "rls s: path=/api/* (shared)");
        assert_eq!(
            table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1\n"
        );
    }
}
