//! The attributes a quota answer depends on (`ReferencedAttributes`), which a Mixer
//! client needs to cache the answer: an istio-proxy keys its quota cache and its
//! prefetched tokens on the values of exactly these attributes, so an answer for one
//! caller or user is never reused for another.

use meshtel_model::istio_mixer::ReferencedAttributes;
use meshtel_model::istio_mixer::referenced_attributes::{AttributeMatch, Condition};
use meshtel_model::quota::AttributeRef;

use super::bag::Bag;
use super::words::encode;

/// The Mixer attributes (name, map key) that supply one policy attribute, in the
/// order [`super::quota_attributes`] reads them.
fn sources(attr: &AttributeRef) -> Vec<(&'static str, Option<&str>)> {
    match attr {
        AttributeRef::SourceService => vec![
            ("source.labels", Some("app")),
            ("source.labels", Some("service.istio.io/canonical-name")),
        ],
        AttributeRef::SourceWorkload => vec![("source.workload.name", None)],
        AttributeRef::SourceVersion => vec![("source.labels", Some("version"))],
        AttributeRef::SourceNamespace => {
            vec![
                ("source.workload.namespace", None),
                ("source.namespace", None),
            ]
        }
        AttributeRef::SourcePrincipal => vec![("source.principal", None)],
        AttributeRef::DestinationService => vec![
            ("destination.service.name", None),
            ("destination.labels", Some("app")),
        ],
        AttributeRef::DestinationApp => vec![("destination.labels", Some("app"))],
        AttributeRef::DestinationHost => vec![("destination.service.host", None)],
        AttributeRef::DestinationWorkload => vec![("destination.workload.name", None)],
        AttributeRef::DestinationVersion => vec![("destination.labels", Some("version"))],
        AttributeRef::DestinationNamespace => vec![
            ("destination.service.namespace", None),
            ("destination.workload.namespace", None),
            ("destination.namespace", None),
        ],
        AttributeRef::RequestMethod => vec![("request.method", None)],
        // Both read from the path the request came with (`request.url_path` is it less
        // its query string).
        AttributeRef::RequestPath | AttributeRef::RequestUrlPath => {
            vec![("request.path", None), ("request.url_path", None)]
        }
        AttributeRef::RequestHeader(name) => vec![("request.headers", Some(name.as_str()))],
    }
}

/// Builds a `ReferencedAttributes`, its words as a Mixer client reads them.
struct Builder {
    referenced: ReferencedAttributes,
    /// The global words the client knows (its `global_word_count`).
    known: usize,
}

impl Builder {
    fn index(&mut self, word: &str) -> i32 {
        encode(word, &mut self.referenced.words, self.known)
    }

    fn add(&mut self, name: &str, map_key: Option<&str>, present: bool) {
        let name = self.index(name);
        let map_key = map_key.map_or(0, |key| self.index(key));
        let condition = if present {
            Condition::Exact
        } else {
            Condition::Absence
        };
        let found = AttributeMatch {
            name,
            condition: condition as i32,
            regex: String::new(),
            map_key,
        };
        if !self.referenced.attribute_matches.contains(&found) {
            self.referenced.attribute_matches.push(found);
        }
    }
}

/// What an answer for `attrs` depends on, for a request whose attributes are `bag`:
/// each attribute EXACT when the request carries it, ABSENCE when not; its words as a
/// client that knows the first `known` global words reads them.
pub fn referenced<'a>(
    attrs: impl IntoIterator<Item = &'a AttributeRef>,
    bag: &Bag,
    known: usize,
) -> ReferencedAttributes {
    let mut builder = Builder {
        referenced: ReferencedAttributes::default(),
        known,
    };
    for attr in attrs {
        for (name, key) in sources(attr) {
            match key {
                None => builder.add(name, None, bag.has(name)),
                // Header names are read ignoring case: the key is named as the request
                // spelled it, which is what the client's cache looks up.
                Some(key) => {
                    let sent = bag
                        .map(name)
                        .and_then(|m| m.keys().find(|k| k.eq_ignore_ascii_case(key)));
                    builder.add(name, Some(sent.map_or(key, String::as_str)), sent.is_some());
                }
            }
        }
    }
    builder.referenced
}
