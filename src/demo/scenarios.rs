//! The lab steps: one Istio YAML file per scenario under `src/demo/scenarios/`, built
//! into the binary, and what applying one means.
//!
//! ```text
//!  scenarios/<name>.yaml ─┬─ networking.istio.io documents ─┐
//!                         │                                 ├─► <data>/rules/demo.yaml ─► every proxy
//!  scenarios/base.yaml ───┼─ base documents for the hosts ──┘    (one file, replaced       (reloads
//!                         │  the scenario leaves alone           atomically)                within 250 ms)
//!                         └─ config.istio.io documents ─► import_istio ─► quota policies ─► PUT /api/quotas
//! ```
//!
//! Each file starts with a comment: `# <name>: <title>`, then paragraphs saying what the
//! lab step shows; the one starting `Look at:` says where to see it. A scenario replaces
//! the previous one entirely; the base rules (subsets of every service, details pinned
//! to v1) stay for every host the scenario has no rule of the same kind for.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_model::quota::import::import_istio;
use serde::Deserialize;
use yaml_serde::Value;

/// The rules under every scenario.
pub const BASE: &str = include_str!("scenarios/base.yaml");

/// One lab step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The name to apply it by, e.g. `jason-to-v2`.
    pub name: &'static str,
    /// Its file, Istio YAML with a header comment.
    pub yaml: &'static str,
}

macro_rules! scenario {
    ($name:literal) => {
        Scenario {
            name: $name,
            yaml: include_str!(concat!("scenarios/", $name, ".yaml")),
        }
    };
}

/// Every scenario, in the order of the labs.
pub const SCENARIOS: [Scenario; 12] = [
    scenario!("route-all-v1"),
    scenario!("jason-to-v2"),
    scenario!("split-50-50"),
    scenario!("split-90-10"),
    scenario!("all-v3"),
    scenario!("delay-jason"),
    scenario!("abort-jason"),
    scenario!("circuit-breaker"),
    scenario!("eject-broken-instance"),
    scenario!("rate-limit-ratings"),
    scenario!("mirror-to-v2"),
    scenario!("canary-v2-buggy"),
];

/// The name that means "no scenario, the base rules only".
pub const NONE: &str = "none";

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// Every scenario name, comma separated (for error messages).
pub fn names() -> String {
    SCENARIOS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The leading comment block of a file, `# ` stripped.
fn header_lines(yaml: &str) -> impl Iterator<Item = &str> {
    yaml.lines()
        .take_while(|line| line.starts_with('#'))
        .map(|line| {
            line.trim_start_matches('#')
                .strip_prefix(' ')
                .unwrap_or(line.trim_start_matches('#'))
        })
}

/// The header's paragraphs after the title line, each joined into one line.
fn paragraphs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in header_lines(yaml).skip(1) {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line.trim());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl Scenario {
    /// The title: what the header's first line says after `<name>:`.
    pub fn title(&self) -> String {
        let first = header_lines(self.yaml).next().unwrap_or_default();
        first
            .split_once(':')
            .map_or(first, |(_, title)| title)
            .trim()
            .to_owned()
    }

    /// What the lab step shows: the header's paragraphs but the `Look at:` one.
    pub fn description(&self) -> String {
        paragraphs(self.yaml)
            .into_iter()
            .filter(|p| !p.starts_with("Look at:"))
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    /// Where to see it: the header's `Look at:` paragraph, without the prefix.
    pub fn look_at(&self) -> String {
        paragraphs(self.yaml)
            .into_iter()
            .find_map(|p| {
                p.strip_prefix("Look at:")
                    .map(|rest| rest.trim().to_owned())
            })
            .unwrap_or_default()
    }

    /// The file in the source tree.
    pub fn file(&self) -> String {
        format!("src/demo/scenarios/{}.yaml", self.name)
    }
}

/// What one YAML document is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DocumentKind {
    /// A `VirtualService` for these hosts (short names).
    VirtualService(Vec<String>),
    /// A `DestinationRule` for this host (short name).
    DestinationRule(String),
    /// Istio mixer configuration (`config.istio.io`): quota handler, instance, rule...
    Mixer,
}

/// One document of a file: its text (comments kept) and what it is.
#[derive(Debug, Clone)]
struct Document {
    text: String,
    kind: DocumentKind,
}

/// The fields of a document that say what it is and which hosts it covers.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    spec: Option<Value>,
}

/// `reviews.default.svc.cluster.local` → `reviews`.
fn short_host(host: &str) -> String {
    host.split('.').next().unwrap_or(host).to_owned()
}

/// Splits multi-document YAML on `---` lines and classifies each document.
fn documents(source: &str, yaml: &str) -> anyhow::Result<Vec<Document>> {
    let mut texts = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            texts.push(String::new());
        } else if let Some(text) = texts.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let mut out = Vec::new();
    for (index, text) in texts.into_iter().enumerate() {
        let value: Value = yaml_serde::from_str(&text)
            .with_context(|| format!("{source}, document {}: not valid YAML", index + 1))?;
        if value.is_null() {
            continue;
        }
        let head: Head = yaml_serde::from_value(value).with_context(|| {
            format!("{source}, document {}: not a Kubernetes object", index + 1)
        })?;
        let spec = head.spec.unwrap_or(Value::Null);
        let kind = if head.api_version.starts_with("config.istio.io/") {
            DocumentKind::Mixer
        } else if head.kind == "VirtualService" {
            let hosts = spec["hosts"]
                .as_sequence()
                .map(Vec::as_slice)
                .unwrap_or_default();
            DocumentKind::VirtualService(
                hosts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(short_host)
                    .collect(),
            )
        } else if head.kind == "DestinationRule" {
            DocumentKind::DestinationRule(short_host(spec["host"].as_str().unwrap_or_default()))
        } else {
            bail!(
                "{source}, document {}: {} {:?} is not a rule the demo knows",
                index + 1,
                head.api_version,
                head.kind
            );
        };
        out.push(Document { text, kind });
    }
    Ok(out)
}

/// What applying a scenario writes: the rules file and the quota policies.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The one rules file every proxy reads.
    pub rules: String,
    /// Quota policies imported from the scenario's Istio mixer documents.
    pub quotas: Vec<QuotaPolicySpec>,
}

/// The rules and quotas of `scenario` (`None`: the base rules only).
pub fn plan(scenario: Option<&Scenario>) -> anyhow::Result<Plan> {
    let base = documents("base.yaml", BASE)?;
    let (name, chosen) = match scenario {
        Some(s) => (s.name, documents(&s.file(), s.yaml)?),
        None => (NONE, Vec::new()),
    };
    let mut covered_vs = BTreeSet::new();
    let mut covered_dr = BTreeSet::new();
    for document in &chosen {
        match &document.kind {
            DocumentKind::VirtualService(hosts) => covered_vs.extend(hosts.iter().cloned()),
            DocumentKind::DestinationRule(host) => {
                covered_dr.insert(host.clone());
            }
            DocumentKind::Mixer => {}
        }
    }
    let mut rules = match scenario {
        Some(s) => format!(
            "# Written by `meshtel demo` for the scenario {name}: its rules ({}),\n\
             # then the base rules (src/demo/scenarios/base.yaml) for the hosts it leaves alone.\n\
             # Replaced on every switch (`meshtel demo apply NAME`); edits here last until then.\n---\n",
            s.file()
        ),
        None => "# Written by `meshtel demo`: no scenario, the base rules only\n\
                 # (src/demo/scenarios/base.yaml). Replaced on every switch (`meshtel demo apply NAME`).\n---\n"
            .to_owned(),
    };
    let mut parts = Vec::new();
    for document in &chosen {
        if document.kind != DocumentKind::Mixer {
            parts.push(document.text.trim().to_owned());
        }
    }
    for document in &base {
        let replaced = match &document.kind {
            DocumentKind::VirtualService(hosts) => hosts.iter().any(|h| covered_vs.contains(h)),
            DocumentKind::DestinationRule(host) => covered_dr.contains(host),
            DocumentKind::Mixer => true,
        };
        if !replaced {
            // The base file's header describes the base, not this composition.
            let body: Vec<&str> = document
                .text
                .lines()
                .skip_while(|l| l.starts_with('#'))
                .collect();
            parts.push(body.join("\n").trim().to_owned());
        }
    }
    rules.push_str(&parts.join("\n---\n"));
    rules.push('\n');
    let quotas = match scenario {
        Some(s) if chosen.iter().any(|d| d.kind == DocumentKind::Mixer) => {
            import_istio(s.yaml).with_context(|| format!("importing the quotas of {}", s.file()))?
        }
        _ => Vec::new(),
    };
    Ok(Plan { rules, quotas })
}
