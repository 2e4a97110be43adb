//! The peer metadata exchange in plain headers: the outbound proxy announces its
//! workload with them, the inbound proxy reads and strips them (Istio's, over
//! `x-meshtel-peer-*` instead of its encoded `x-envoy-peer-metadata`).

use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::config::MAX_IDENTITY_BYTES;
use crate::mesh::WorkloadIdentity;

/// What the names of the peer headers begin with.
pub(crate) const PEER_PREFIX: &str = "x-meshtel-peer-";
/// Peer identity headers: the outbound proxy adds them, the inbound proxy reads and
/// strips them (Istio's peer metadata exchange, in plain headers).
pub const PEER_WORKLOAD: HeaderName = HeaderName::from_static("x-meshtel-peer-workload");
/// See [`PEER_WORKLOAD`].
pub const PEER_NAMESPACE: HeaderName = HeaderName::from_static("x-meshtel-peer-namespace");
/// See [`PEER_WORKLOAD`].
pub const PEER_APP: HeaderName = HeaderName::from_static("x-meshtel-peer-app");
/// See [`PEER_WORKLOAD`].
pub const PEER_VERSION: HeaderName = HeaderName::from_static("x-meshtel-peer-version");
/// See [`PEER_WORKLOAD`]: the caller's cluster id.
pub const PEER_CLUSTER: HeaderName = HeaderName::from_static("x-meshtel-peer-cluster");
/// The peer identity headers the outbound proxy sends: values built once, since the
/// identity never changes; empty ones are not sent.
#[derive(Debug)]
pub(super) struct PeerHeaders([(HeaderName, Option<HeaderValue>); 5]);

impl PeerHeaders {
    pub(super) fn of(identity: &WorkloadIdentity, cluster: &str) -> PeerHeaders {
        let value = |text: &str| HeaderValue::from_str(text).ok().filter(|value| !value.is_empty());
        PeerHeaders([
            (PEER_WORKLOAD, value(&identity.name)),
            (PEER_NAMESPACE, value(&identity.namespace)),
            (PEER_APP, value(&identity.app)),
            (PEER_VERSION, value(&identity.version)),
            (PEER_CLUSTER, value(cluster)),
        ])
    }

    /// Announces this instance, replacing whatever the app may have sent.
    pub(super) fn set(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            match value {
                Some(value) => {
                    headers.insert(name, value.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }
    }
}

/// The caller's identity and cluster id header from the peer headers (removed); `None`
/// without any. A value no proxy sends (past [`MAX_IDENTITY_BYTES`], or not visible
/// ASCII) reads as absent: the caller is `unknown` there, and its request is still
/// counted (the collector would refuse the whole record for a label past its bound).
pub(super) fn take_peer_identity(headers: &mut HeaderMap) -> Option<(WorkloadIdentity, Option<HeaderValue>)> {
    // One pass over the names first: removing an absent header still hashes its name.
    if !headers.keys().any(|name| name.as_str().starts_with(PEER_PREFIX)) {
        return None;
    }
    let plausible = |value: &HeaderValue| value.len() <= MAX_IDENTITY_BYTES && value.as_bytes().iter().all(u8::is_ascii_graphic);
    let mut take = |name: HeaderName| {
        headers
            .remove(name)
            .filter(plausible)
            .and_then(|value| value.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    };
    let identity = WorkloadIdentity { name: take(PEER_WORKLOAD), namespace: take(PEER_NAMESPACE), app: take(PEER_APP), version: take(PEER_VERSION) };
    Some((identity, headers.remove(PEER_CLUSTER).filter(plausible)))
}

/// The caller's cluster id from its header: this proxy's own when the same, the usual
/// case (shared, not copied); `None` when empty or not text.
pub(super) fn peer_cluster(value: &HeaderValue, own: &Arc<str>) -> Option<Arc<str>> {
    if value.as_bytes() == own.as_bytes() {
        return Some(own.clone());
    }
    value.to_str().ok().filter(|text| !text.is_empty()).map(Arc::from)
}
