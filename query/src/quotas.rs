//! The quota policy administration API, over a [`QuotaPolicyStore`] (SQL), an
//! [`AdminTokenStore`] and, where this process runs the collector's engine, a
//! [`QuotaUsageReader`]:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/quotas` | 200 `{"data":[policy, ...]}`, by name |
//! | `GET /api/quotas/{name}` | 200 policy, `ETag: "<version>"`; 304 for a matching `If-None-Match`; 404 |
//! | `PUT /api/quotas/{name}` | 201 created / 200 updated (or unchanged), the policy, `ETag`; 400, 412 |
//! | `DELETE /api/quotas/{name}` | 204; 404; 412 |
//! | `GET /api/quotas/{name}/usage?limit=100` | 200 live usage; 404 unknown quota; 503 without an engine |
//! | `GET /api/quotas/audit?name=&limit=100&before=` | 200 `{"data":[entry, ...]}`, newest first; `before` an entry's id: the page after it |
//! | `GET /api/admin/token` | 204 when the bearer token may write; 401, 403 |
//!
//! A *policy* is the spec's fields (camelCase, see [`QuotaPolicySpec`]) plus `version`,
//! `updatedAt` (RFC 3339) and `updatedBy` ([`PolicyJson`]). An audit *entry* is
//! `{"id","at","actor","action":"create|update|delete","name","before","after"}`
//! ([`AuditJson`]), `before`/`after` being specs or `null`. Usage is
//! [`wire::UsageJson`]:
//! `{"name","tokensGranted","checksDenied","granted","denied","keyCount","keys":[{"key","dimensions","used","limit","resetAfterMs","tokensGranted","checksDenied","granted","denied"}]}`:
//! Check decisions and tokens, not requests (`granted`/`denied` are the older names of
//! `tokensGranted`/`checksDenied`).
//!
//! PUT bodies are JSON (`Content-Type: application/json`) or YAML (`application/yaml`,
//! no Content-Type, or `application/x-www-form-urlencoded` as `curl -d` sends; YAML
//! takes JSON too); `name` may be left out, and must otherwise equal the path's. An
//! invalid policy is answered with every problem at once.
//! `If-Match: "<version>"` (or `*`) and `If-None-Match: *` make writes conditional: 412
//! when they do not hold. Writes need `Authorization: Bearer <token>` (401 without,
//! 403 when invalid), reads too when [`AdminConfig::require_token_for_reads`]. The
//! audit log records `X-Meshtel-Actor` or else `token:<8 hex digits>`. Every error is
//! `{"error":"…"}` ([`crate::error::AdminError`]), with
//! `"details":[{"field":"maxAmount","message":"…"}]` for invalid policies.

mod auth;
pub mod wire;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meshtel_model::quota::{
    AdminTokenStore, MAX_POLICY_SET_JSON_BYTES, Precondition, QuotaPolicySpec, QuotaPolicyStore,
    QuotaUsage, QuotaUsageReader, StoredPolicy,
};
use serde::{Deserialize, Serialize};

pub use self::auth::{
    ACTOR_HEADER, GENERATED_TOKEN_LABEL, MAX_ACTOR_CHARS, ensure_admin_token, token_digest,
};
use self::auth::{Access, Authenticator};
pub use self::wire::{AuditJson, DataJson, PolicyJson};
use self::wire::{Condition, body_format, etag, not_modified, parse_limit, parse_policy_body};
use crate::error::{AdminError, ApiError};
use crate::jaeger::params::QueryParams;

/// Keys per usage answer when `limit` is absent, and the most it may ask for.
pub const DEFAULT_USAGE_KEYS: usize = 100;
/// Most keys per usage answer.
pub const MAX_USAGE_KEYS: usize = 10_000;
/// Audit entries per answer when `limit` is absent.
pub const DEFAULT_AUDIT_ENTRIES: usize = 100;
/// Most audit entries per answer.
pub const MAX_AUDIT_ENTRIES: usize = 1_000;
/// The path segment of the audit log, which no policy may be named.
pub const AUDIT_SEGMENT: &str = "audit";
/// The path that checks a write token without writing (outside `/api/quotas/`, so
/// that it takes no policy name).
pub const TOKEN_CHECK_PATH: &str = "/api/admin/token";

/// Settings of the admin API (`[admin]` in the config file).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin bearer token (also `MESHTEL_ADMIN_TOKEN`): at start its digest replaces
    /// every token stored in the database ([`ensure_admin_token`]), for every query
    /// process of the data directory. When unset, the stored token stays in force; when
    /// the database holds none, one is generated and printed once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Require the token for reads (`GET /api/quotas...`) too; by default reads are open
    /// and only writes need it.
    pub require_token_for_reads: bool,
}

/// Default of [`AdminConfig::require_token_for_reads`]: reads are open.
pub fn default_require_token_for_reads() -> bool {
    false
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            require_token_for_reads: default_require_token_for_reads(),
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("require_token_for_reads", &self.require_token_for_reads)
            .finish()
    }
}

#[derive(Clone)]
struct QuotaAdmin {
    store: Arc<dyn QuotaPolicyStore>,
    auth: Arc<Authenticator>,
    usage: Option<Arc<dyn QuotaUsageReader>>,
}

type AdminResult<T = Response> = Result<T, AdminError>;

/// The admin routes, with their own state; merge them into the query router (inside
/// its base path). `usage` is `None` in a process without the collector's quota engine
/// (`meshtel query`): usage requests then answer 503.
pub fn quota_router(
    store: Arc<dyn QuotaPolicyStore>,
    tokens: Arc<dyn AdminTokenStore>,
    usage: Option<Arc<dyn QuotaUsageReader>>,
    config: AdminConfig,
) -> Router {
    let auth = Authenticator::new(tokens, config.require_token_for_reads);
    let state = QuotaAdmin {
        store,
        auth: Arc::new(auth),
        usage,
    };
    Router::new()
        .route(
            "/api/quotas",
            get(list_policies).fallback(method_not_allowed),
        )
        .route(
            "/api/quotas/audit",
            get(audit_log)
                .put(reserved_name)
                .delete(reserved_name)
                .fallback(method_not_allowed),
        )
        .route(
            "/api/quotas/{name}",
            get(get_policy)
                .put(put_policy)
                .delete(delete_policy)
                .fallback(method_not_allowed),
        )
        .route(
            "/api/quotas/{name}/usage",
            get(get_usage).fallback(method_not_allowed),
        )
        .route(
            TOKEN_CHECK_PATH,
            get(check_write_token).fallback(method_not_allowed),
        )
        .with_state(state)
}

async fn method_not_allowed() -> AdminError {
    AdminError(ApiError::MethodNotAllowed)
}

async fn reserved_name() -> AdminError {
    AdminError(ApiError::InvalidPolicy(vec![
        meshtel_model::quota::FieldError {
            field: "name".into(),
            message: format!("{AUDIT_SEGMENT:?} is reserved (the audit log's path)"),
        },
    ]))
}

/// A JSON answer with a status and, for a policy, its ETag.
fn json<T: Serialize>(status: StatusCode, value: &T, version: Option<u64>) -> AdminResult {
    let body = serde_json::to_vec(value).map_err(ApiError::from)?;
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(version) = version {
        headers.insert(header::ETAG, etag(version));
    }
    Ok(response)
}

fn not_found(name: &str) -> AdminError {
    AdminError(ApiError::NotFound(policy_not_found(name)))
}

/// The error of a 404 for a policy `name` there is none of: the CLI tells it from
/// another server's 404 by it.
pub fn policy_not_found(name: &str) -> String {
    format!("quota policy {name:?} not found")
}

/// `GET /api/quotas`.
#[tracing::instrument(skip_all)]
async fn list_policies(State(admin): State<QuotaAdmin>, headers: HeaderMap) -> AdminResult {
    admin.auth.authorize(&headers, Access::Read).await?;
    let policies: Vec<PolicyJson> = admin
        .store
        .list_policies()
        .await?
        .into_iter()
        .map(PolicyJson::from)
        .collect();
    json(StatusCode::OK, &DataJson { data: policies }, None)
}

/// `GET /api/quotas/{name}`.
#[tracing::instrument(skip_all)]
async fn get_policy(
    State(admin): State<QuotaAdmin>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> AdminResult {
    admin.auth.authorize(&headers, Access::Read).await?;
    let Path(name) = path?;
    let Some(policy) = admin.store.get_policy(&name).await? else {
        return Err(not_found(&name));
    };
    if not_modified(&headers, policy.version) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, etag(policy.version));
        return Ok(response);
    }
    let version = policy.version;
    json(StatusCode::OK, &PolicyJson::from(policy), Some(version))
}

/// The store's precondition for a write's condition; `If-Match: *` becomes the
/// current version (412 when there is none).
async fn precondition(
    admin: &QuotaAdmin,
    name: &str,
    condition: Condition,
) -> AdminResult<Precondition> {
    Ok(match condition {
        Condition::None => Precondition::None,
        Condition::IfMatch(versions) if versions.len() == 1 => Precondition::IfMatch(versions[0]),
        // A list: the one the policy is at, if listed (the store checks it again as it
        // writes); none (weak tags only, which never match): 412.
        Condition::IfMatch(versions) => {
            let current = admin.store.get_policy(name).await?.map(|p| p.version);
            match current.filter(|v| versions.contains(v)) {
                Some(version) => Precondition::IfMatch(version),
                None => {
                    return Err(AdminError(ApiError::PreconditionFailed(format!(
                        "quota policy {name:?} is not at a version If-Match names"
                    ))));
                }
            }
        }
        Condition::IfNoneExists => Precondition::IfNoneExists,
        Condition::IfExists => match admin.store.get_policy(name).await? {
            Some(current) => Precondition::IfMatch(current.version),
            None => {
                return Err(AdminError(ApiError::PreconditionFailed(format!(
                    "quota policy {name:?} does not exist"
                ))));
            }
        },
    })
}

/// What every write starts with: the caller's actor (401/403 first), the policy name
/// and the store precondition of the conditional headers.
async fn begin_write(
    admin: &QuotaAdmin,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> AdminResult<(String, String, Precondition)> {
    let actor = admin
        .auth
        .authorize(headers, Access::Write)
        .await?
        .unwrap_or_default();
    let Path(name) = path?;
    let condition = wire::write_condition(headers)?;
    let precondition = precondition(admin, &name, condition).await?;
    Ok((actor, name, precondition))
}

/// `PUT /api/quotas/{name}`.
#[tracing::instrument(skip_all)]
async fn put_policy(
    State(admin): State<QuotaAdmin>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AdminResult {
    let (actor, name, precondition) = begin_write(&admin, path, &headers).await?;
    let spec: QuotaPolicySpec = parse_policy_body(&name, body_format(&headers)?, &body?)?;
    spec.compile_new().map_err(ApiError::InvalidPolicy)?;
    // Checked against the other policies in the write's own transaction: two writers
    // at once, in this process or another on the same database, cannot both pass.
    let checked = spec.clone();
    let check = move |stored: &[StoredPolicy]| against_the_set(&checked, stored);
    let (stored, created) = admin
        .store
        .put_policy_checked(spec, precondition, &actor, &check)
        .await?
        .map_err(ApiError::InvalidPolicy)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let version = stored.version;
    json(status, &PolicyJson::from(stored), Some(version))
}

/// What refuses `spec` beside the `stored` policies: a policy already limiting the
/// same rate-limit descriptors, or a set past [`MAX_POLICY_SET_JSON_BYTES`] as the
/// JSON every proxy's policy watch receives.
fn against_the_set(
    spec: &QuotaPolicySpec,
    stored: &[StoredPolicy],
) -> Result<(), Vec<meshtel_model::quota::FieldError>> {
    if let Some(rate_limit) = &spec.rate_limit
        && let Some(other) = spec.descriptor_conflict(stored.iter().map(|p| &p.spec))
    {
        // As envoyproxy/ratelimit refuses a config with a duplicate descriptor: only
        // one of the two would ever be applied.
        return Err(vec![meshtel_model::quota::FieldError {
            field: "rateLimit.descriptors".to_owned(),
            message: format!(
                "policy {:?} already limits these descriptors in domain {:?}: edit it, or delete it first",
                other.name, rate_limit.domain
            ),
        }]);
    }
    let set: Vec<&QuotaPolicySpec> = stored
        .iter()
        .map(|p| &p.spec)
        .filter(|other| other.name != spec.name)
        .chain(std::iter::once(spec))
        .collect();
    // Policies that read back from SQL always serialize; one that did not would be
    // counted as nothing here and refused by the engine's own encoding.
    let bytes = serde_json::to_vec(&set).map_or(0, |json| json.len());
    if bytes <= MAX_POLICY_SET_JSON_BYTES {
        return Ok(());
    }
    Err(vec![meshtel_model::quota::FieldError {
        field: String::new(),
        message: format!(
            "with this policy the {} policies would take {bytes} bytes as the JSON sent to every \
             proxy, more than the {MAX_POLICY_SET_JSON_BYTES} bytes a proxy's policy watch reads: \
             shorten descriptions, or fold overrides into fewer dimensions",
            set.len()
        ),
    }])
}

/// `GET /api/admin/token`: 204 when the bearer token may write, 401 without one, 403
/// for a wrong one. Writes nothing (no audit entry): what `meshtel quota apply` asks
/// before writing, also when every policy of its file is already stored, so that a
/// wrong token is not taken for a good one.
#[tracing::instrument(skip_all)]
async fn check_write_token(State(admin): State<QuotaAdmin>, headers: HeaderMap) -> AdminResult {
    admin.auth.authorize(&headers, Access::Write).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/quotas/{name}`.
#[tracing::instrument(skip_all)]
async fn delete_policy(
    State(admin): State<QuotaAdmin>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> AdminResult {
    let (actor, name, precondition) = begin_write(&admin, path, &headers).await?;
    if admin
        .store
        .delete_policy(&name, precondition, &actor)
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}

/// `GET /api/quotas/{name}/usage?limit=`.
#[tracing::instrument(skip_all)]
async fn get_usage(
    State(admin): State<QuotaAdmin>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> AdminResult {
    admin.auth.authorize(&headers, Access::Read).await?;
    let Path(name) = path?;
    let params = QueryParams::parse(query.as_deref());
    let limit = parse_limit(params.get("limit"), DEFAULT_USAGE_KEYS, MAX_USAGE_KEYS)?;
    let Some(reader) = &admin.usage else {
        return Err(AdminError(ApiError::Unavailable(
            "quota usage is not available here: this process runs no quota engine; \
             `meshtel serve` answers it, and a `meshtel collector` counts its decisions in \
             meshtel_quota_checks_total on its /metrics"
                .into(),
        )));
    };
    let usage = match reader.usage(&name, limit) {
        Some(usage) => usage,
        // Stored but not (yet) loaded by the engine: nothing counted.
        None if admin.store.get_policy(&name).await?.is_some() => QuotaUsage {
            name,
            granted: 0,
            denied: 0,
            keys: Vec::new(),
            key_count: 0,
        },
        None => return Err(not_found(&name)),
    };
    json(StatusCode::OK, &wire::UsageJson::from(usage), None)
}

/// `GET /api/quotas/audit?name=&limit=&before=`.
#[tracing::instrument(skip_all)]
async fn audit_log(
    State(admin): State<QuotaAdmin>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> AdminResult {
    admin.auth.authorize(&headers, Access::Read).await?;
    let params = QueryParams::parse(query.as_deref());
    let limit = parse_limit(
        params.get("limit"),
        DEFAULT_AUDIT_ENTRIES,
        MAX_AUDIT_ENTRIES,
    )?;
    let name = Some(params.get("name")).filter(|n| !n.is_empty());
    let before = match params.get("before") {
        "" => None,
        text => Some(
            text.parse::<i64>()
                .ok()
                .filter(|id| *id >= 1)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "before must be an audit entry's id (a whole number from 1), not {text:?}"
                    ))
                })?,
        ),
    };
    let entries: Vec<AuditJson> = admin
        .store
        .audit_before(name, before, limit)
        .await?
        .into_iter()
        .map(AuditJson::from)
        .collect();
    json(StatusCode::OK, &DataJson { data: entries }, None)
}

#[cfg(test)]
mod tests;
