//! Istio match conditions translated into a [`QuotaMatch`]: rule `match` expressions
//! (CEXL) and QuotaSpec attribute matches, when they are conjunctions of tests meshtel
//! can express.
//!
//! Accepted terms, joined by `&&` and freely parenthesised:
//! - `attr == "value"` (either side), where `attr` may carry a literal fallback,
//!   `(destination.labels["app"] | "unknown") == "ratings"`, as long as the fallback
//!   differs from the value (else the test also holds when the attribute is missing);
//! - `match(request.path, "/api*")` and `request.path.startsWith("/api")` (path prefix),
//!   `match(attr, "exact")`;
//! - `true`, and an empty expression (every request).
//!
//! Disjunctions, negations, inequalities, regular expressions and suffix globs are
//! refused with the offending term.

use super::super::attrs::{AttributeRef, DimensionExpr};
use super::super::policy::QuotaMatch;

/// A term that cannot be expressed, as written, and why.
#[derive(Debug)]
pub(super) struct Unexpressible {
    /// The term as written.
    pub term: String,
    /// Why, and what to write instead when there is a way.
    pub reason: String,
}

fn unexpressible(term: &str, reason: impl Into<String>) -> Unexpressible {
    Unexpressible {
        term: term.trim().to_string(),
        reason: reason.into(),
    }
}

/// Requirements gathered from several sources, all of which must hold.
#[derive(Debug, Clone, Default)]
pub(super) struct MatchBuilder(QuotaMatch);

impl MatchBuilder {
    /// The match built so far.
    pub fn into_match(self) -> QuotaMatch {
        self.0
    }

    /// Requires `attr == value`. Errors when meshtel matches cannot test the attribute
    /// or when an earlier requirement wants another value.
    pub fn require(&mut self, attr: &AttributeRef, value: &str) -> Result<(), String> {
        let m = &mut self.0;
        match attr {
            AttributeRef::SourceService => set(&mut m.source.service, "source.service", value),
            AttributeRef::SourceWorkload => set(&mut m.source.workload, "source.workload", value),
            AttributeRef::SourceVersion => set(&mut m.source.version, "source.version", value),
            AttributeRef::SourceNamespace => {
                set(&mut m.source.namespace, "source.namespace", value)
            }
            // An app label is matched as the service it names (meshtel matches test the
            // service; with Istio's conventions the two are one name).
            AttributeRef::DestinationService
            | AttributeRef::DestinationApp
            | AttributeRef::DestinationHost => match split_service_host(value) {
                Some((name, namespace)) => {
                    set(&mut m.destination.service, "destination.service", name)?;
                    set(
                        &mut m.destination.namespace,
                        "destination.namespace",
                        namespace,
                    )
                }
                None if *attr == AttributeRef::DestinationHost => Err(format!(
                    "{value:?} is not a Kubernetes service host <service>.<namespace>.svc.<domain>"
                )),
                None => set(&mut m.destination.service, "destination.service", value),
            },
            AttributeRef::DestinationWorkload => {
                set(&mut m.destination.workload, "destination.workload", value)
            }
            AttributeRef::DestinationVersion => {
                set(&mut m.destination.version, "destination.version", value)
            }
            AttributeRef::DestinationNamespace => {
                set(&mut m.destination.namespace, "destination.namespace", value)
            }
            AttributeRef::RequestMethod => set(&mut m.method, "request.method", value),
            AttributeRef::RequestHeader(name) => {
                let slot = m.headers.entry(name.clone()).or_default();
                set(slot, &format!("request.headers[{name:?}]"), value)
            }
            AttributeRef::SourcePrincipal => {
                Err("meshtel quota matches cannot test source.principal".into())
            }
            AttributeRef::RequestPath | AttributeRef::RequestUrlPath => Err(
                "meshtel quota matches test request paths by prefix only; write \
                 match(request.path, \"/prefix*\")"
                    .into(),
            ),
        }
    }

    /// Requires the request path to start with `prefix`.
    pub fn require_path_prefix(&mut self, prefix: &str) -> Result<(), String> {
        let current = &mut self.0.path_prefix;
        if prefix.starts_with(current.as_str()) {
            *current = prefix.to_string();
            Ok(())
        } else if current.starts_with(prefix) {
            Ok(())
        } else {
            Err(format!(
                "the path must start with both {current:?} and {prefix:?}, so the quota would never apply"
            ))
        }
    }
}

/// Sets one match field, refusing contradictory requirements.
fn set(slot: &mut String, field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "{field} == \"\" (attribute absent) cannot be matched; meshtel matches require a value"
        ));
    }
    if slot.is_empty() {
        *slot = value.to_string();
        Ok(())
    } else if slot == value {
        Ok(())
    } else {
        Err(format!(
            "{field} must equal both {slot:?} and {value:?}, so the quota would never apply"
        ))
    }
}

/// `ratings.default.svc.cluster.local` → (`ratings`, `default`).
fn split_service_host(host: &str) -> Option<(&str, &str)> {
    let mut parts = host.split('.');
    let (name, namespace, svc) = (parts.next()?, parts.next()?, parts.next()?);
    (svc == "svc" && !name.is_empty() && !namespace.is_empty()).then_some((name, namespace))
}

/// Adds the requirements of a rule `match` expression.
pub(super) fn translate_match(expr: &str, into: &mut MatchBuilder) -> Result<(), Unexpressible> {
    let text = expr.trim();
    if text.is_empty() {
        return Ok(());
    }
    for term in conjuncts(text) {
        translate_term(term, into)?;
    }
    Ok(())
}

/// Adds one QuotaSpec `AttributeMatch` clause: `attribute: {exact|prefix|regex: value}`.
pub(super) fn translate_clause(
    attribute: &str,
    kind: &str,
    value: &str,
    into: &mut MatchBuilder,
) -> Result<(), Unexpressible> {
    let term = format!("{attribute}: {{{kind}: {value:?}}}");
    let attr = AttributeRef::parse(attribute).map_err(|e| unexpressible(&term, e))?;
    let result = match kind {
        "exact" => into.require(&attr, value),
        "prefix" if attr.is_path() => into.require_path_prefix(value),
        "prefix" => Err("meshtel quota matches test prefixes of request.path only".into()),
        _ => Err(format!(
            "meshtel quota matches do not support {kind} string matches"
        )),
    };
    result.map_err(|reason| unexpressible(&term, reason))
}

/// Splits `a && (b && c)` into `a`, `b`, `c`.
fn conjuncts(text: &str) -> Vec<&str> {
    let text = strip_parens(text);
    let parts = split_top(text, "&&");
    if parts.len() == 1 {
        return parts;
    }
    parts.into_iter().flat_map(conjuncts).collect()
}

fn translate_term(term: &str, into: &mut MatchBuilder) -> Result<(), Unexpressible> {
    let t = strip_parens(term);
    if t == "true" {
        return Ok(());
    }
    if split_top(t, "||").len() > 1 {
        return Err(unexpressible(
            t,
            "a disjunction (||) cannot be matched: meshtel matches are conjunctions; write one \
             policy per alternative",
        ));
    }
    if t.starts_with('!') || split_top(t, "!=").len() > 1 {
        return Err(unexpressible(
            t,
            "negations cannot be matched: meshtel matches require equal values",
        ));
    }
    if let Some(args) = call_args(t, "match") {
        return translate_glob(t, &args, into);
    }
    let sides = split_top(t, "==");
    if sides.len() == 2 {
        return translate_equality(t, sides[0], sides[1], into);
    }
    if let Some((receiver, args)) = method_call(t, "startsWith") {
        let [prefix] = args.as_slice() else {
            return Err(unexpressible(t, "startsWith takes one argument"));
        };
        let attr = AttributeRef::parse(receiver).map_err(|e| unexpressible(t, e))?;
        let prefix = string_literal(prefix)
            .ok_or_else(|| unexpressible(t, "startsWith needs a quoted string argument"))?;
        if !attr.is_path() {
            return Err(unexpressible(
                t,
                "meshtel quota matches test prefixes of request.path only",
            ));
        }
        return into
            .require_path_prefix(&prefix)
            .map_err(|r| unexpressible(t, r));
    }
    Err(unexpressible(
        t,
        "only attr == \"value\", match(request.path, \"/prefix*\") and \
         request.path.startsWith(\"/prefix\"), joined by &&, can be matched",
    ))
}

fn translate_equality(
    term: &str,
    lhs: &str,
    rhs: &str,
    into: &mut MatchBuilder,
) -> Result<(), Unexpressible> {
    let (lhs, rhs) = (strip_parens(lhs), strip_parens(rhs));
    let (attr_text, value) = match (string_literal(lhs), string_literal(rhs)) {
        (None, Some(value)) => (lhs, value),
        (Some(value), None) => (rhs, value),
        _ => {
            return Err(unexpressible(
                term,
                "an equality must compare an attribute with a quoted string",
            ));
        }
    };
    let expr = DimensionExpr::parse(attr_text).map_err(|e| unexpressible(term, e))?;
    let mut chain: Vec<&AttributeRef> = Vec::new();
    for attr in expr.chain.iter().map(AttributeRef::as_matched) {
        if !chain.contains(&attr) {
            chain.push(attr);
        }
    }
    let [attr] = chain.as_slice() else {
        return Err(unexpressible(
            term,
            "a fallback between different attributes (a | b) cannot be matched; compare one \
             attribute",
        ));
    };
    if expr.default.as_deref() == Some(value.as_str()) {
        return Err(unexpressible(
            term,
            "the fallback equals the compared value, so the test also holds when the attribute \
             is missing, which meshtel matches cannot express",
        ));
    }
    into.require(attr, &value)
        .map_err(|r| unexpressible(term, r))
}

fn translate_glob(term: &str, args: &[&str], into: &mut MatchBuilder) -> Result<(), Unexpressible> {
    let [attr, pattern] = args else {
        return Err(unexpressible(
            term,
            "match takes an attribute and a quoted glob",
        ));
    };
    let attr = AttributeRef::parse(attr).map_err(|e| unexpressible(term, e))?;
    let pattern = string_literal(pattern)
        .ok_or_else(|| unexpressible(term, "the glob must be a quoted string"))?;
    let result = match pattern.find('*') {
        None => into.require(&attr, &pattern),
        Some(i) if i + 1 == pattern.len() && attr.is_path() => {
            into.require_path_prefix(&pattern[..i])
        }
        Some(_) => Err(
            "only prefix globs on request.path (match(request.path, \"/api*\")) can be matched"
                .into(),
        ),
    };
    result.map_err(|r| unexpressible(term, r))
}

/// `"x"` or `'x'` → `x`, when the whole text is one literal.
fn string_literal(text: &str) -> Option<String> {
    let t = text.trim();
    let first = t.chars().next()?;
    if !(first == '"' || first == '\'') || t.len() < 2 || !t.ends_with(first) {
        return None;
    }
    let inner = &t[1..t.len() - 1];
    (!inner.contains(first)).then(|| inner.to_string())
}

/// `name(a, b)` → `[a, b]`, when the whole text is that call.
fn call_args<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let rest = text.strip_prefix(name)?.trim_start();
    if !rest.starts_with('(') || closing_paren(rest) != Some(rest.len() - 1) {
        return None;
    }
    Some(split_top(&rest[1..rest.len() - 1], ","))
}

/// `receiver.name(args)` → (`receiver`, `[args]`), when the whole text is that call.
fn method_call<'a>(text: &'a str, name: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let needle = format!(".{name}(");
    let at = text.rfind(&needle)?;
    let rest = &text[at + needle.len() - 1..];
    if closing_paren(rest) != Some(rest.len() - 1) {
        return None;
    }
    Some((&text[..at], split_top(&rest[1..rest.len() - 1], ",")))
}

/// Removes parentheses enclosing the whole text: `((a == "b"))` → `a == "b"`.
fn strip_parens(text: &str) -> &str {
    let mut t = text.trim();
    while t.starts_with('(') && closing_paren(t) == Some(t.len() - 1) {
        t = t[1..t.len() - 1].trim();
    }
    t
}

/// Byte index of the parenthesis closing the one that starts `text`.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on `sep` outside quotes, parentheses and brackets; parts are trimmed.
fn split_top<'a>(text: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote = None;
    let mut start = 0;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            (None, _) if depth == 0 && text[i..].starts_with(sep) => {
                parts.push(text[start..i].trim());
                start = i + sep.len();
                for _ in 1..sep.chars().count() {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}
