//! The `/api/quotas` client: one method per endpoint, API errors turned into readable
//! messages (field errors one per line).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_query::error::AdminErrorBody;
use meshtel_query::quotas::{ACTOR_HEADER, AuditJson, DataJson, PolicyJson, TOKEN_CHECK_PATH};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, header};
use serde::de::DeserializeOwned;

use super::ApiArgs;

/// A client of one query service.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    actor: Option<String>,
}

/// The condition of a PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Create only (`If-None-Match: *`).
    Create,
    /// Replace exactly this version (`If-Match: "<version>"`).
    Replace(u64),
}

impl AdminClient {
    /// A client for `--server`, sending `--token` and `--actor`.
    pub fn new(args: &ApiArgs) -> anyhow::Result<AdminClient> {
        let mut base = Url::parse(&args.server).with_context(|| {
            format!("--server {:?} is not a URL (write it as http://HOST:PORT)", args.server)
        })?;
        if base.cannot_be_a_base() {
            bail!(
                "--server {:?} is not an http:// or https:// URL",
                args.server
            );
        }
        // A base path (`http://host/jaeger`) is kept; `Url::join` semantics are not wanted.
        base.set_query(None);
        let http = reqwest::Client::builder()
            .timeout(ANSWER_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(AdminClient {
            http,
            base,
            token: args.token.clone().filter(|t| !t.trim().is_empty()),
            actor: args.actor.clone().filter(|a| !a.trim().is_empty()),
        })
    }

    /// `<base>/api/quotas/<segments>`.
    fn url(&self, segments: &[&str]) -> anyhow::Result<Url> {
        self.url_of(["api", "quotas"].iter().chain(segments))
    }

    /// `<base>/<segments>`, each segment escaped.
    fn url_of<'a>(&self, segments: impl IntoIterator<Item = &'a &'a str>) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("--server {} cannot take a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(actor) = &self.actor {
            request = request.header(ACTOR_HEADER, actor.as_str());
        }
        request
    }

    async fn send(&self, request: RequestBuilder, what: &str) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|error| {
            if error.is_builder() {
                anyhow!(error).context(format!(
                    "{what}: the request cannot be made (an --actor or token that is not a valid \
                     header value?)"
                ))
            } else if error.is_timeout() {
                anyhow!(
                    "{what}: {} did not answer within {} s (it accepted the connection: \
                     is it a meshtel query port, and is that process responsive?)",
                    self.base,
                    ANSWER_TIMEOUT.as_secs()
                )
            } else if self.base.scheme() == "https" && error.is_connect() {
                // A TLS handshake with a plain HTTP port fails this way.
                anyhow!(error).context(format!(
                    "{what}: cannot reach {} over TLS (the query port speaks plain HTTP: \
                     use http://, or the address of a TLS proxy in front of it)",
                    self.base
                ))
            } else {
                anyhow!(error).context(format!(
                    "{what}: cannot reach {} (is meshtel serve or meshtel query running? \
                     set --server or MESHTEL_QUERY_URL)",
                    self.base
                ))
            }
        })?;
        Ok(response)
    }

    /// Every policy.
    pub async fn list(&self) -> anyhow::Result<Vec<PolicyJson>> {
        let response = self
            .send(self.request(Method::GET, self.url(&[])?), "list")
            .await?;
        let list: DataJson<Vec<PolicyJson>> = read_json(response, "list").await?;
        Ok(list.data)
    }

    /// One policy, `None` when there is none.
    pub async fn get(&self, name: &str) -> anyhow::Result<Option<PolicyJson>> {
        let what = format!("get {name}");
        if name == meshtel_query::quotas::AUDIT_SEGMENT {
            // `/api/quotas/audit` is the audit log, not a policy.
            return Err(anyhow!(
                "{what}: name {name:?} is reserved (the audit log's path): no policy has it; \
                 `meshtel quota audit` shows the log"
            ));
        }
        let response = self
            .send(self.request(Method::GET, self.url(&[name])?), &what)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            let bytes = response
                .bytes()
                .await
                .with_context(|| format!("{what}: reading the answer"))?;
            // meshtel's own 404 names the policy; another server's is not "no policy".
            if serde_json::from_slice::<AdminErrorBody>(&bytes)
                .is_ok_and(|body| body.error == meshtel_query::quotas::policy_not_found(name))
            {
                return Ok(None);
            }
            return Err(anyhow!(
                "{what}: HTTP 404 {}\n  hint: does --server point at a meshtel query service \
                 (with its --query-base-path, if it has one)?",
                excerpt(&bytes)
            ));
        }
        read_json(response, &what).await.map(Some)
    }

    /// Writes a policy; returns it as stored.
    pub async fn put(
        &self,
        spec: &QuotaPolicySpec,
        condition: PutCondition,
    ) -> anyhow::Result<PolicyJson> {
        let what = format!("apply {}", spec.name);
        let body = serde_json::to_vec(spec)?;
        let request = self
            .request(Method::PUT, self.url(&[&spec.name])?)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let request = match condition {
            PutCondition::Create => request.header(header::IF_NONE_MATCH, "*"),
            PutCondition::Replace(version) => {
                request.header(header::IF_MATCH, format!("\"{version}\""))
            }
        };
        let response = self.send(request, &what).await?;
        read_json(response, &what).await
    }

    /// Checks that the token may write, writing nothing (`GET /api/admin/token`): 401
    /// and 403 become errors that say what to do.
    pub async fn check_write_token(&self) -> anyhow::Result<()> {
        let what = "checking the admin token";
        let segments: Vec<&str> = TOKEN_CHECK_PATH
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let url = self.url_of(&segments)?;
        let response = self.send(self.request(Method::GET, url), what).await?;
        let status = check(response, what).await?.status();
        if status != StatusCode::NO_CONTENT {
            // An older server answers another page (the UI) for an unknown path.
            bail!(
                "{what}: {} answered HTTP {} instead of 204: is it an older meshtel? Nothing \
                 was checked",
                self.base,
                status.as_u16()
            );
        }
        Ok(())
    }

    /// Deletes a policy.
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let what = format!("delete {name}");
        let response = self
            .send(self.request(Method::DELETE, self.url(&[name])?), &what)
            .await?;
        check(response, &what).await.map(drop)
    }

    /// Live usage of a quota, with at most `limit` keys.
    pub async fn usage(&self, name: &str, limit: usize) -> anyhow::Result<serde_json::Value> {
        let what = format!("usage {name}");
        let mut url = self.url(&[name, "usage"])?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        let response = self.send(self.request(Method::GET, url), &what).await?;
        read_json(response, &what).await
    }

    /// Audit entries, newest first.
    pub async fn audit(
        &self,
        name: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> anyhow::Result<Vec<AuditJson>> {
        let mut url = self.url(&["audit"])?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        if let Some(name) = name {
            url.query_pairs_mut().append_pair("name", name);
        }
        if let Some(before) = before {
            url.query_pairs_mut()
                .append_pair("before", &before.to_string());
        }
        let response = self.send(self.request(Method::GET, url), "audit").await?;
        let list: DataJson<Vec<AuditJson>> = read_json(response, "audit").await?;
        Ok(list.data)
    }
}

/// How long a command waits for the server's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Most characters of a non-JSON error answer quoted (a web page's HTML, from a
/// `--server` that is not a meshtel query port).
const EXCERPT_CHARS: usize = 300;

/// An error answer that is not meshtel's JSON, trimmed to its first [`EXCERPT_CHARS`].
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], bytes.len()),
        None => text.to_owned(),
    }
}

/// The response when it is a success, else its error as a readable message.
async fn check(response: Response, what: &str) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    let mut message = match serde_json::from_slice::<AdminErrorBody>(&bytes) {
        Ok(body) => {
            let mut text = format!("{what}: {} (HTTP {})", body.error, status.as_u16());
            for detail in &body.details {
                text.push_str(&format!("\n  {}: {}", detail.field, detail.message));
            }
            text
        }
        Err(_) => format!("{what}: HTTP {status}: {}", excerpt(&bytes)),
    };
    match status {
        StatusCode::UNAUTHORIZED => {
            message.push_str("\n  hint: pass --token or set MESHTEL_ADMIN_TOKEN");
        }
        StatusCode::FORBIDDEN => {
            message.push_str(
                "\n  hint: the server does not accept this token: use the one meshtel printed \
                 at first start, or the server's configured [admin] token / \
                 MESHTEL_ADMIN_TOKEN (--token or MESHTEL_ADMIN_TOKEN here); lost it? \
                 configure a new one on the server (MESHTEL_ADMIN_TOKEN=$(openssl rand -hex 32)) \
                 and restart it",
            );
        }
        StatusCode::PRECONDITION_FAILED => {
            message.push_str("\n  hint: the policy changed meanwhile; run the command again");
        }
        StatusCode::NOT_FOUND if serde_json::from_slice::<AdminErrorBody>(&bytes).is_err() => {
            message.push_str("\n  hint: does --server point at a meshtel query service?");
        }
        _ => {}
    }
    Err(anyhow!(message))
}

async fn read_json<T: DeserializeOwned>(response: Response, what: &str) -> anyhow::Result<T> {
    let response = check(response, what).await?;
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{what}: unexpected answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_page_for_an_error_is_quoted_only_in_part() {
        let page = format!("<!doctype html><html>{}</html>", "<p>meshtel</p>".repeat(100));
        let quoted = excerpt(page.as_bytes());
        assert!(quoted.starts_with("<!doctype html>"), "{quoted}");
        assert!(quoted.ends_with(&format!("… ({} bytes)", page.len())), "{quoted}");
        assert!(quoted.chars().count() < EXCERPT_CHARS + 20, "{quoted}");
        assert_eq!(excerpt(b" no route GET /x \n"), "no route GET /x");
    }
}
