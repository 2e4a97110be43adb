//! Compressing attributes as an istio-proxy does, for clients of the Mixer API:
//! meshtel's tests and benchmarks.

use std::time::Duration;

use meshtel_model::istio_mixer::{CompressedAttributes, StringMap};

use super::words::{GLOBAL_WORDS, encode};
use crate::quota::proto_duration;

/// Compresses attributes as an istio-proxy does: a word of the global dictionary is
/// sent as its index, any other word once in the message's words (index -1, -2, ...).
#[derive(Default)]
pub struct Compressor {
    attributes: CompressedAttributes,
}

impl Compressor {
    fn index(&mut self, word: &str) -> i32 {
        encode(word, &mut self.attributes.words, GLOBAL_WORDS.len())
    }

    /// A string attribute.
    pub fn string(mut self, name: &str, value: &str) -> Self {
        let (n, v) = (self.index(name), self.index(value));
        self.attributes.strings.insert(n, v);
        self
    }

    /// An integer attribute.
    pub fn int(mut self, name: &str, value: i64) -> Self {
        let n = self.index(name);
        self.attributes.int64s.insert(n, value);
        self
    }

    /// A boolean attribute.
    pub fn bool(mut self, name: &str, value: bool) -> Self {
        let n = self.index(name);
        self.attributes.bools.insert(n, value);
        self
    }

    /// A duration attribute.
    pub fn duration(mut self, name: &str, value: Duration) -> Self {
        let n = self.index(name);
        self.attributes.durations.insert(n, proto_duration(value));
        self
    }

    /// A string map attribute (headers, labels).
    pub fn map(mut self, name: &str, entries: &[(&str, &str)]) -> Self {
        let n = self.index(name);
        let mut map = StringMap::default();
        for (k, v) in entries {
            let (k, v) = (self.index(k), self.index(v));
            map.entries.insert(k, v);
        }
        self.attributes.string_maps.insert(n, map);
        self
    }

    /// The compressed attributes.
    pub fn done(self) -> CompressedAttributes {
        self.attributes
    }

    /// Bookinfo's reviews-v2 calling ratings-v1 (`GET /ratings/0`, user `jason` in
    /// `x-user`, over mTLS), as the ratings sidecar (inbound) reports it: the
    /// attributes meshtel's tests start from.
    pub fn reviews_to_ratings() -> Compressor {
        Compressor::default()
            .string("context.reporter.kind", "inbound")
            .string(
                "context.reporter.uid",
                "kubernetes://ratings-v1-7d9.default",
            )
            .string("context.protocol", "http")
            .string("source.workload.name", "reviews-v2")
            .string("source.workload.namespace", "default")
            .map("source.labels", &[("app", "reviews"), ("version", "v2")])
            .string("destination.workload.name", "ratings-v1")
            .string("destination.workload.namespace", "default")
            .map(
                "destination.labels",
                &[("app", "ratings"), ("version", "v1")],
            )
            .string(
                "destination.service.host",
                "ratings.default.svc.cluster.local",
            )
            .string("destination.service.name", "ratings")
            .string("destination.service.namespace", "default")
            .string("request.method", "GET")
            .string("request.path", "/ratings/0?x=1")
            .string("request.url_path", "/ratings/0")
            .map(
                "request.headers",
                &[(":authority", "ratings:9080"), ("x-user", "jason")],
            )
            .bool("connection.mtls", true)
    }
}
