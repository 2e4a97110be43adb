//! Bearer tokens of the admin API: who may write (and, when configured, read), and
//! which actor the audit log records.
//!
//! A token is valid when the SHA-256 of what the client presents equals one of the
//! digests in the [`AdminTokenStore`], the data directory's `meshtel.db`, read at each
//! request: every query process on the directory accepts the same token. A configured
//! token's digest replaces every other at the start that configures it (a generated
//! token, or one configured earlier or on another process): an operator retires a
//! generated (or leaked) token by configuring a new one. A start without a configured
//! token keeps what is stored, and generates one only when nothing is. Only digests
//! are compared, every one of them, in constant time.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use meshtel_model::log_window::Throttled;
use meshtel_model::quota::AdminTokenStore;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// Header naming the person or tool behind a write, recorded in the audit log.
pub const ACTOR_HEADER: &str = "x-meshtel-actor";
/// Longest actor recorded, in characters.
pub const MAX_ACTOR_CHARS: usize = 64;
/// Label of the token generated at first start.
pub const GENERATED_TOKEN_LABEL: &str = "generated at first start";
/// Label of a configured token's digest.
pub const CONFIGURED_TOKEN_LABEL: &str = "configured";

/// SHA-256 of a token, lower-case hex: what the [`AdminTokenStore`] keeps.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Makes sure the admin API can be used. A configured token's digest becomes the only
/// one stored, retiring every other token for every process of the data directory.
/// Without one, what is stored stays in force; when nothing is, generates a random
/// token (32 bytes, hex), stores only its digest and returns it, for the binary to
/// print once. Returns `None` otherwise.
pub async fn ensure_admin_token(
    tokens: &dyn AdminTokenStore,
    configured: Option<&str>,
) -> meshtel_model::Result<Option<String>> {
    if let Some(configured) = configured.map(str::trim).filter(|t| !t.is_empty()) {
        let removed = tokens
            .replace_token_digests(&token_digest(configured), CONFIGURED_TOKEN_LABEL)
            .await?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "an admin token is configured: the tokens stored before (generated, or configured earlier or on another query process of this data directory) are deleted and no process accepts them any more"
            );
        }
        return Ok(None);
    }
    let stored = tokens.token_digests().await?.len();
    if stored > 0 {
        tracing::info!(
            "no admin token configured: the one stored in meshtel.db stays in force (generated at an earlier start, or configured on this or another query process)"
        );
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    tokens
        .add_token_digest(&token_digest(&token), GENERATED_TOKEN_LABEL)
        .await?;
    tracing::info!("generated an admin token");
    Ok(Some(token))
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// GET.
    Read,
    /// PUT, DELETE.
    Write,
}

/// Checks bearer tokens against the store.
pub(crate) struct Authenticator {
    tokens: Arc<dyn AdminTokenStore>,
    require_token_for_reads: bool,
    /// Requests refused for an invalid token, logged at most once per interval: a
    /// script still sending a retired token must not fill the disk.
    invalid_tokens: Arc<Throttled>,
}

impl Authenticator {
    pub(crate) fn new(tokens: Arc<dyn AdminTokenStore>, require_token_for_reads: bool) -> Self {
        let invalid_tokens = Throttled::new(|refused, access: &str| {
            tracing::warn!(
                refused,
                last_access = access,
                at_most_every = "10s",
                "admin requests refused (403) for an invalid token since the last warning: a client holds a retired or mistyped token"
            );
        });
        Authenticator {
            tokens,
            require_token_for_reads,
            invalid_tokens,
        }
    }

    /// Checks the request's token for `access`. Returns the audit actor for writes
    /// (`X-Meshtel-Actor`, else `token:<first 8 hex digits of the digest>`), `None` for
    /// reads that need no token.
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        access: Access,
    ) -> Result<Option<String>, ApiError> {
        if access == Access::Read && !self.require_token_for_reads {
            return Ok(None);
        }
        let token = bearer_token(headers)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut valid = false;
        for text in &self.tokens.token_digests().await? {
            let mut known = [0u8; 32];
            if hex::decode_to_slice(text, &mut known).is_ok() {
                // `|` rather than `||`: every digest is compared.
                valid |= constant_time_eq(&known, &digest);
            }
        }
        if !valid {
            self.invalid_tokens.note(format_args!("{access:?}"));
            return Err(ApiError::Forbidden("invalid admin token".into()));
        }
        let actor = sanitize_actor(headers)
            .unwrap_or_else(|| format!("token:{}", &hex::encode(digest)[..8]));
        Ok(Some(actor))
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthenticated(
            "an admin token is required: send Authorization: Bearer <token>".into(),
        ));
    };
    let text = value.to_str().unwrap_or("");
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::Unauthenticated(
            "the Authorization header must be Bearer <token>".into(),
        ));
    }
    Ok(token)
}

/// The `X-Meshtel-Actor` header with control characters as spaces, trimmed, at most
/// [`MAX_ACTOR_CHARS`] characters; `None` when absent or empty.
fn sanitize_actor(headers: &HeaderMap) -> Option<String> {
    let raw = String::from_utf8_lossy(headers.get(ACTOR_HEADER)?.as_bytes()).into_owned();
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_ACTOR_CHARS)
        .collect();
    let cleaned = cleaned.trim_end().to_string();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn quotas_digest_is_sha256_hex() {
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn quotas_bearer_parsing() {
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(ApiError::Unauthenticated(_))
        ));
        let basic = headers(&[("authorization", "Basic YTpi")]);
        assert!(matches!(
            bearer_token(&basic),
            Err(ApiError::Unauthenticated(_))
        ));
        let empty = headers(&[("authorization", "Bearer ")]);
        assert!(matches!(
            bearer_token(&empty),
            Err(ApiError::Unauthenticated(_))
        ));
        let ok = headers(&[("authorization", "bearer  s3cret ")]);
        assert_eq!(bearer_token(&ok).unwrap(), "s3cret");
    }

    #[test]
    fn quotas_actor_is_sanitised_and_bounded() {
        assert_eq!(sanitize_actor(&headers(&[])), None);
        assert_eq!(sanitize_actor(&headers(&[(ACTOR_HEADER, "  ")])), None);
        assert_eq!(
            sanitize_actor(&headers(&[(ACTOR_HEADER, " alice\tsmith ")])).as_deref(),
            Some("alice smith")
        );
        let long = "x".repeat(500);
        assert_eq!(
            sanitize_actor(&headers(&[(ACTOR_HEADER, &long)]))
                .unwrap()
                .len(),
            MAX_ACTOR_CHARS
        );
    }

    #[test]
    fn quotas_constant_time_eq() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] = 8;
        assert!(!constant_time_eq(&a, &b));
    }
}
