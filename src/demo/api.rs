//! Switching scenarios while the demo runs: the [`Controller`], its HTTP API on the query
//! port, a small page to click through the scenarios, and the `meshtel demo list` /
//! `apply` client.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/demo` | `{"scenarios":[{name, title, description, lookAt, file}], "current": name or null, "ingress", "rulesFile", "traffic": {...}}` |
//! | `PUT /api/demo/scenario` | body `{"name": "jason-to-v2"}` (`null` or `"none"`: base rules only) → `{"current", "quotas", "tookMs"}` once every proxy runs the new rules; 400 `{"error", "scenarios"}` for an unknown name; 500 `{"error", "current"}` when a proxy did not take them (`current`: the scenario in force) |
//! | `GET /api/demo/scenarios/{name}` | the scenario's YAML |
//! | `GET /demo` | the page: every scenario with what to look at, one click to apply |
//!
//! Applying writes the composed rules file ([`super::scenarios::plan`]) by rename,
//! waits until every proxy's `meshtel_proxy_rules_reloads_total{result="ok"}` moved (a
//! proxy that rejects them keeps the old ones: the old file is put back), then replaces
//! the demo's quota policies through `/api/quotas` (the demo's admin token) and waits
//! until every proxy holds the stored policies that can match there ([`quotas`]); the
//! user's own policies are left alone. `current` names the scenario whose rules are in
//! force, also when its quotas failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

use self::quotas::ProxyDestination;
use super::load::TrafficStats;
use super::scenarios::{self, NONE, SCENARIOS, Scenario};

pub mod client;
pub mod quotas;

/// How long applying waits for every proxy to load the new rules or quotas.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);

/// What the controller talks to, known once everything is bound.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// `http://<query>[<base path>]`.
    pub query_base: String,
    /// Bearer token for `/api/quotas`.
    pub admin_token: String,
    /// Every proxy's admin listener.
    pub proxy_admins: Vec<SocketAddr>,
    /// The Bookinfo page.
    pub ingress_url: String,
    /// When the demo started, for the traffic summary.
    pub started: Instant,
    /// The traffic counts.
    pub traffic: Arc<TrafficStats>,
}

/// Applies scenarios, one at a time.
pub struct Controller {
    rules_file: PathBuf,
    staging_file: PathBuf,
    current: Mutex<Option<&'static Scenario>>,
    applied_quotas: tokio::sync::Mutex<Vec<String>>,
    wiring: OnceLock<Wiring>,
    http: reqwest::Client,
}

/// Why a scenario was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// No such scenario.
    Unknown(String),
    /// The demo is still starting.
    NotReady,
    /// Writing the rules or quotas failed, or a proxy did not take them.
    Failed(anyhow::Error),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Unknown(name) => write!(
                f,
                "unknown scenario {name:?}; the scenarios are: {}",
                scenarios::names()
            ),
            ApplyError::NotReady => f.write_str("the demo is still starting"),
            ApplyError::Failed(error) => write!(f, "{error:#}"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// What applying did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The scenario now in force (`null`: base rules only).
    pub current: Option<&'static str>,
    /// The quota policies it put in place.
    pub quotas: Vec<String>,
    /// How long until every proxy had it.
    pub took_ms: u64,
}

impl Controller {
    /// A controller writing `<data>/rules/demo.yaml` (staged as `<data>/demo-rules.next`).
    pub fn new(data_dir: &std::path::Path) -> anyhow::Result<Controller> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Controller {
            rules_file: rules_dir(data_dir).join("demo.yaml"),
            staging_file: data_dir.join("demo-rules.next"),
            current: Mutex::new(None),
            applied_quotas: tokio::sync::Mutex::new(Vec::new()),
            wiring: OnceLock::new(),
            http,
        })
    }

    /// The rules file every proxy reads.
    pub fn rules_file(&self) -> &std::path::Path {
        &self.rules_file
    }

    /// The scenario in force.
    pub fn current(&self) -> Option<&'static Scenario> {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_current(&self, scenario: Option<&'static Scenario>) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = scenario;
    }

    /// Writes the rules of `scenario` before any proxy runs (no waiting).
    pub fn write_initial_rules(&self, scenario: Option<&'static Scenario>) -> anyhow::Result<()> {
        let plan = scenarios::plan(scenario)?;
        std::fs::create_dir_all(rules_dir_of(&self.rules_file))
            .context("creating the rules directory")?;
        self.write_rules(&plan.rules)?;
        self.set_current(scenario);
        Ok(())
    }

    /// Tells the controller what it talks to; before this, applying answers NotReady.
    pub fn wire(&self, wiring: Wiring) {
        let _ = self.wiring.set(wiring);
    }

    /// The wiring, once set.
    pub fn wiring(&self) -> Option<&Wiring> {
        self.wiring.get()
    }

    /// Puts the quota policies of the scenario in force (at start, after the proxies).
    pub async fn apply_initial_quotas(&self) -> Result<Applied, ApplyError> {
        let started = Instant::now();
        let wiring = self.wiring.get().ok_or(ApplyError::NotReady)?;
        let scenario = self.current();
        let plan = scenarios::plan(scenario).map_err(ApplyError::Failed)?;
        let mut applied = self.applied_quotas.lock().await;
        self.replace_quotas(wiring, &mut applied, &plan.quotas)
            .await
            .map_err(ApplyError::Failed)?;
        Ok(Applied {
            current: scenario.map(|s| s.name),
            quotas: applied.clone(),
            took_ms: elapsed_ms(started),
        })
    }

    /// Applies `name` (`None` or `"none"`: the base rules only), replacing the previous
    /// scenario entirely; returns once every proxy has it.
    pub async fn apply(&self, name: Option<&str>) -> Result<Applied, ApplyError> {
        let started = Instant::now();
        let scenario = match name.map(str::trim) {
            None | Some(NONE) | Some("") => None,
            Some(name) => {
                Some(scenarios::find(name).ok_or_else(|| ApplyError::Unknown(name.to_owned()))?)
            }
        };
        let wiring = self.wiring.get().ok_or(ApplyError::NotReady)?;
        let plan = scenarios::plan(scenario).map_err(ApplyError::Failed)?;
        // One switch at a time: the rules file and the quotas change together.
        let mut applied = self.applied_quotas.lock().await;
        let previous = self.current();
        // A policy of the user's own under a name the scenario puts would stop it
        // halfway: refused before anything changes.
        self.check_quota_names_free(wiring, &applied, &plan.quotas)
            .await
            .map_err(|e| {
                ApplyError::Failed(e.context(format!(
                    "nothing changed: {} stays in force",
                    previous.map_or(NONE, |s| s.name)
                )))
            })?;
        let before = self.proxy_stats(wiring).await.map_err(ApplyError::Failed)?;
        self.write_rules(&plan.rules).map_err(ApplyError::Failed)?;
        let loaded = self
            .wait_for_proxies(wiring, "load the new rules", |i, stats| {
                if stats.rules_rejected > before[i].rules_rejected {
                    return Err(anyhow::anyhow!(
                        "a proxy rejected the rules of {}; see its log",
                        scenario.map_or(NONE, |s| s.name)
                    ));
                }
                Ok(stats.rules_ok > before[i].rules_ok)
            })
            .await;
        if let Err(error) = loaded {
            // The proxies keep the rules they run: put that file back so that the file,
            // `current` and what is in force agree.
            let restored = scenarios::plan(previous).and_then(|p| self.write_rules(&p.rules));
            let kept = previous.map_or(NONE, |s| s.name);
            return Err(ApplyError::Failed(match restored {
                Ok(()) => error.context(format!("the rules of {kept} stay in force")),
                Err(restore) => error.context(format!(
                    "the rules file could not be put back to {kept} either: {restore:#}"
                )),
            }));
        }
        // The new rules are in force from here on, whatever the quotas do.
        self.set_current(scenario);
        self.replace_quotas(wiring, &mut applied, &plan.quotas)
            .await
            .map_err(|e| {
                ApplyError::Failed(e.context(format!(
                    "the rules of {} are in force, its quota policies not on every proxy",
                    scenario.map_or(NONE, |s| s.name)
                )))
            })?;
        let done = Applied {
            current: scenario.map(|s| s.name),
            quotas: applied.clone(),
            took_ms: elapsed_ms(started),
        };
        info!(
            scenario = done.current.unwrap_or(NONE),
            took_ms = done.took_ms,
            "scenario applied"
        );
        Ok(done)
    }

    /// Fails naming the first policy of `quotas` that is stored but not the demo's
    /// (not in `applied`): the scenario could not put it.
    async fn check_quota_names_free(
        &self,
        wiring: &Wiring,
        applied: &[String],
        quotas: &[meshtel_model::quota::QuotaPolicySpec],
    ) -> anyhow::Result<()> {
        for spec in quotas.iter().filter(|q| !applied.contains(&q.name)) {
            let response = self
                .admin_request(wiring, reqwest::Method::GET, &spec.name)
                .send()
                .await
                .with_context(|| format!("reading quota {}", spec.name))?;
            if response.status().is_success() {
                bail!(users_policy_in_the_way(&spec.name));
            }
        }
        Ok(())
    }

    fn write_rules(&self, rules: &str) -> anyhow::Result<()> {
        // Staged outside the rules directory: the proxies watch every file in it.
        std::fs::write(&self.staging_file, rules)
            .with_context(|| format!("writing {}", self.staging_file.display()))?;
        std::fs::rename(&self.staging_file, &self.rules_file)
            .with_context(|| format!("replacing {}", self.rules_file.display()))
    }

    /// Deletes the policies applied before, puts `quotas`, then waits until every proxy
    /// holds the policies of `quotas` that can match there and none of those deleted
    /// (policies of the user's own stay as they are). `applied` follows each write, so a
    /// failure leaves it naming what is stored.
    async fn replace_quotas(
        &self,
        wiring: &Wiring,
        applied: &mut Vec<String>,
        quotas: &[meshtel_model::quota::QuotaPolicySpec],
    ) -> anyhow::Result<()> {
        if applied.is_empty() && quotas.is_empty() {
            return Ok(());
        }
        let present: Vec<String> = quotas.iter().map(|q| q.name.clone()).collect();
        let absent: Vec<String> = applied
            .iter()
            .filter(|n| !present.contains(n))
            .cloned()
            .collect();
        for name in &absent {
            let response = self
                .admin_request(wiring, reqwest::Method::DELETE, name)
                .send()
                .await
                .with_context(|| format!("deleting quota {name}"))?;
            if !(response.status().is_success()
                || response.status() == reqwest::StatusCode::NOT_FOUND)
            {
                bail!("deleting quota {name}: {}", response_text(response).await);
            }
            applied.retain(|n| n != name);
        }
        for spec in quotas {
            let body = serde_json::to_vec(spec).context("encoding a quota policy")?;
            let mut request = self
                .admin_request(wiring, reqwest::Method::PUT, &spec.name)
                .header(header::CONTENT_TYPE.as_str(), "application/json");
            // A policy of that name the demo did not write is the user's: created only
            // if absent, never replaced (and so never deleted by a later switch).
            if !applied.contains(&spec.name) {
                request = request.header(header::IF_NONE_MATCH.as_str(), "*");
            }
            let response = request
                .body(body)
                .send()
                .await
                .with_context(|| format!("putting quota {}", spec.name))?;
            if response.status() == reqwest::StatusCode::PRECONDITION_FAILED {
                bail!(users_policy_in_the_way(&spec.name));
            }
            if !response.status().is_success() {
                bail!(
                    "putting quota {}: {}",
                    spec.name,
                    response_text(response).await
                );
            }
            if !applied.contains(&spec.name) {
                applied.push(spec.name.clone());
            }
        }
        *applied = present.clone();
        self.wait_for_quota_policies(wiring, &present, &absent).await
    }

    /// Polls until every proxy holds exactly the stored policies that can match at it,
    /// the store holding every name of `present` and none of `absent`
    /// ([`quotas`] says how).
    async fn wait_for_quota_policies(
        &self,
        wiring: &Wiring,
        present: &[String],
        absent: &[String],
    ) -> anyhow::Result<()> {
        let proxies: Vec<ProxyDestination> =
            self.proxy_dumps(wiring).await?.into_iter().map(|(destination, _)| destination).collect();
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        loop {
            let listing = self
                .admin_get(wiring, "/api/quotas")
                .await
                .context("listing the quota policies")?;
            let policies = quotas::compiled_policies(&listing)?;
            quotas::check_stored(&policies, present, absent)?;
            let held: Vec<Vec<String>> =
                self.proxy_dumps(wiring).await?.into_iter().map(|(_, names)| names).collect();
            let lagging = quotas::lagging(&proxies, &held, &policies);
            if lagging.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "after {PROPAGATION_TIMEOUT:?} not every proxy holds the stored quota policies: {}",
                    lagging.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every proxy's destination and the quota policy names it holds, from its
    /// `/config_dump`.
    async fn proxy_dumps(&self, wiring: &Wiring) -> anyhow::Result<Vec<(ProxyDestination, Vec<String>)>> {
        let mut out = Vec::with_capacity(wiring.proxy_admins.len());
        for &admin in &wiring.proxy_admins {
            let what = || format!("reading /config_dump of the proxy with admin {admin}");
            let body = self
                .http
                .get(format!("http://{admin}/config_dump"))
                .send()
                .await
                .with_context(what)?
                .bytes()
                .await
                .with_context(what)?;
            let dump: Value = serde_json::from_slice(&body).with_context(what)?;
            out.push((ProxyDestination::from_config_dump(admin, &dump)?, quotas::held_names(admin, &dump)?));
        }
        Ok(out)
    }

    async fn admin_get(&self, wiring: &Wiring, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", wiring.query_base))
            .bearer_auth(&wiring.admin_token)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("GET {path}: {}", response_text(response).await);
        }
        let body = response.bytes().await?;
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
    }

    fn admin_request(
        &self,
        wiring: &Wiring,
        method: reqwest::Method,
        name: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/quotas/{name}", wiring.query_base))
            .bearer_auth(&wiring.admin_token)
            .header("x-meshtel-actor", "meshtel-demo")
    }

    async fn proxy_stats(&self, wiring: &Wiring) -> anyhow::Result<Vec<ProxyStats>> {
        let mut out = Vec::with_capacity(wiring.proxy_admins.len());
        for admin in &wiring.proxy_admins {
            let text = self
                .http
                .get(format!("http://{admin}/stats/prometheus"))
                .send()
                .await
                .with_context(|| format!("reading the stats of the proxy with admin {admin}"))?
                .text()
                .await
                .with_context(|| format!("reading the stats of the proxy with admin {admin}"))?;
            out.push(ProxyStats::parse(&text));
        }
        Ok(out)
    }

    /// Polls every proxy until `done(index, stats)` holds for each.
    async fn wait_for_proxies(
        &self,
        wiring: &Wiring,
        what: &str,
        done: impl Fn(usize, &ProxyStats) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        loop {
            let stats = self.proxy_stats(wiring).await?;
            let mut all = true;
            for (i, s) in stats.iter().enumerate() {
                all &= done(i, s)?;
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the proxies did not {what} within {PROPAGATION_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn response_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    format!("HTTP {status}: {body}")
}

/// `<data>/rules`.
pub fn rules_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("rules")
}

fn rules_dir_of(rules_file: &std::path::Path) -> &std::path::Path {
    rules_file.parent().unwrap_or(rules_file)
}

/// The few proxy counters applying waits on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProxyStats {
    /// `meshtel_proxy_rules_reloads_total{result="ok"}`.
    pub rules_ok: f64,
    /// `meshtel_proxy_rules_reloads_total{result="rejected"}`.
    pub rules_rejected: f64,
    /// `meshtel_proxy_quota_policies`.
    pub quota_policies: f64,
}

impl ProxyStats {
    /// Reads them from a Prometheus text page (absent series are 0).
    pub fn parse(text: &str) -> ProxyStats {
        let mut stats = ProxyStats::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match series {
                r#"meshtel_proxy_rules_reloads_total{result="ok"}"# => stats.rules_ok = value,
                r#"meshtel_proxy_rules_reloads_total{result="rejected"}"# => {
                    stats.rules_rejected = value
                }
                "meshtel_proxy_quota_policies" => stats.quota_policies = value,
                _ => {}
            }
        }
        stats
    }
}

/// One scenario in `GET /api/demo`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioJson {
    /// Name to apply it by.
    pub name: String,
    /// One line.
    pub title: String,
    /// What the lab step shows.
    pub description: String,
    /// Where to see it.
    pub look_at: String,
    /// Its file in the source tree.
    pub file: String,
}

impl ScenarioJson {
    fn of(s: &Scenario) -> ScenarioJson {
        ScenarioJson {
            name: s.name.to_owned(),
            title: s.title(),
            description: s.description(),
            look_at: s.look_at(),
            file: s.file(),
        }
    }
}

/// `PUT /api/demo/scenario` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioChoice {
    name: Option<String>,
}

/// The routes (merged into the query service).
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/api/demo", get(overview))
        .route("/api/demo/scenario", put(apply_scenario))
        .route("/api/demo/scenarios/{name}", get(scenario_yaml))
        .route("/demo", get(page))
        .with_state(controller)
}

/// Why a scenario is not applied over a policy of the user's own.
fn users_policy_in_the_way(name: &str) -> String {
    format!(
        "a quota policy named {name} exists and is not the demo's: this scenario would \
         replace it, so it is left as it is; rename or delete it to use the scenario"
    )
}

fn error(status: StatusCode, message: impl Into<String>, extra: Option<(&str, Value)>) -> Response {
    let mut body = json!({"error": message.into()});
    if let Some((key, value)) = extra {
        body[key] = value;
    }
    (status, axum::Json(body)).into_response()
}

async fn overview(State(controller): State<Arc<Controller>>) -> Response {
    let wiring = controller.wiring();
    axum::Json(json!({
        "scenarios": SCENARIOS.iter().map(ScenarioJson::of).collect::<Vec<_>>(),
        "current": controller.current().map(|s| s.name),
        "ingress": wiring.map(|w| w.ingress_url.clone()),
        "rulesFile": controller.rules_file().display().to_string(),
        "traffic": wiring.map(|w| w.traffic.total(w.started)),
    }))
    .into_response()
}

#[tracing::instrument(skip_all)]
async fn apply_scenario(State(controller): State<Arc<Controller>>, body: Bytes) -> Response {
    let choice: ScenarioChoice = match serde_json::from_slice(&body) {
        Ok(choice) => choice,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": \"<scenario>\"}}: {e}"),
                None,
            );
        }
    };
    match controller.apply(choice.name.as_deref()).await {
        Ok(applied) => axum::Json(applied).into_response(),
        Err(e @ ApplyError::Unknown(_)) => {
            let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            error(
                StatusCode::BAD_REQUEST,
                e.to_string(),
                Some(("scenarios", json!(names))),
            )
        }
        Err(e @ ApplyError::NotReady) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None)
        }
        Err(ApplyError::Failed(e)) => {
            let current = controller.current().map(|s| s.name);
            warn!(
                error = %format!("{e:#}"),
                current = current.unwrap_or(NONE),
                "applying a scenario failed"
            );
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "applying the scenario failed: {e:#}. In force: {}",
                    current.unwrap_or(NONE)
                ),
                Some(("current", json!(current))),
            )
        }
    }
}

/// A scenario's YAML, as text/plain so that a browser following the demo page's link
/// shows it instead of downloading it.
async fn scenario_yaml(Path(name): Path<String>) -> Response {
    match scenarios::find(&name) {
        Some(s) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            s.yaml,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            ApplyError::Unknown(name).to_string(),
            None,
        ),
    }
}

const PAGE: &str = include_str!("page.html");

/// The scenario page's Content-Security-Policy: its one inline script and one inline
/// style allowed by their SHA-256 (`page_policy_hashes_match_the_page` checks them
/// against `page.html`), fetches to the same origin, and no framing, so another site
/// cannot trick a click on "Apply".
const PAGE_POLICY: &str = "default-src 'self'; \
    script-src 'sha256-mLf926KSqUYT+eJ60kJFMPnFiqxest4fpr7/bx8YCOY='; \
    style-src 'sha256-TtBK21vCcGVhXVd7JcVaqbukNHqN4I1h+eEF8c1Z1cc='; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

async fn page() -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(PAGE),
    )
        .into_response()
}


#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::{PAGE, PAGE_POLICY};

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
        out
    }

    /// The text between `open` and `close` in the page.
    fn inline<'a>(open: &str, close: &str) -> &'a str {
        let start = PAGE.find(open).unwrap() + open.len();
        let end = start + PAGE[start..].find(close).unwrap();
        &PAGE[start..end]
    }

    #[test]
    fn page_policy_hashes_match_the_page() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(!PAGE.contains("style=\""), "an inline style attribute the policy refuses");
        for (open, close) in [("<script type=\"module\">", "</script>"), ("<style>", "</style>")] {
            let hash = base64(&Sha256::digest(inline(open, close).as_bytes()));
            assert!(PAGE_POLICY.contains(&format!("'sha256-{hash}'")), "{open}: sha256-{hash}");
        }
    }
}
