//! Istio's Mixer API (`istio.mixer.v1.Mixer`, release-1.4) on the collector's gRPC
//! port, for Mixer-era istio-proxies (Istio 1.0 to 1.7) and anything else that speaks
//! it: `Check` charges the quotas it names on meshtel's quota engine, `Report` turns
//! each request's attributes into a request record for the Istio metrics and the
//! service graph, exactly as meshtel's own proxies' records are.
//!
//! ```text
//!  CheckRequest{CompressedAttributes, global_word_count, dedup id, quotas}
//!     ─► Bag (words: global dictionary i >= 0, message words -i-1)
//!     ─► QuotaAttributes ─► QuotaEngine::check_request ─► QuotaResult per quota
//!  ReportRequest{[CompressedAttributes], default_words, DELTA | INDEPENDENT}
//!     ─► one Bag per element (DELTA: each patches the one before)
//!     ─► RequestRecord (TCP connection events skipped, counted) ─► Reports::digest
//! ```
//!
//! Where Mixer's behaviour is copied: a client that knows more global words than
//! meshtel is refused; a precondition without check adapters is OK for 1 minute or
//! 10,000 uses; a quota no policy names is granted in full with status OK; the
//! deduplication key is the id plus the quota name; each quota answer lists the
//! attributes its policy reads (`referenced_attributes`: EXACT when the request carries
//! one, ABSENCE when not), which an istio-proxy keys its quota cache on. Where meshtel differs: an unreadable
//! attribute set is `INVALID_ARGUMENT` naming the index (Mixer: `INTERNAL`).

mod bag;
mod compress;
mod referenced;
mod words;

use std::sync::Arc;
use std::time::Duration;

use meshtel_model::istio_mixer::check_response::{PreconditionResult, QuotaResult};
use meshtel_model::istio_mixer::google::rpc::Status;
use meshtel_model::istio_mixer::mixer_server::{Mixer, MixerServer};
use meshtel_model::istio_mixer::report_request::RepeatedAttributesSemantics;
use meshtel_model::istio_mixer::{CheckRequest, CheckResponse, ReportRequest, ReportResponse};
use meshtel_model::mixer::{self as own, QuotaAttributes, Reporter, RequestRecord, Workload};
use tonic::codec::CompressionEncoding;
use tracing::{debug, instrument};

pub use bag::{Bag, Value};
pub use compress::Compressor;
pub use words::GLOBAL_WORDS;

use crate::error::{Error, Result};
use crate::grpc_decode::InvalidArgumentOnDecodeError;
use crate::quota::{QuotaEngine, proto_duration};
use crate::report::Reports;

/// How long a precondition answer may be used, as Mixer answers when no check adapter
/// applies (meshtel has none: its only checks are quotas).
pub const PRECONDITION_VALID_DURATION: Duration = Duration::from_secs(60);
/// How many requests a precondition answer may serve (Mixer's default).
pub const PRECONDITION_VALID_USE_COUNT: i32 = 10_000;

/// gRPC codes the answers use.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const NOT_FOUND: i32 = 5;
const RESOURCE_EXHAUSTED: i32 = 8;

/// The `istio.mixer.v1.Mixer` service over meshtel's reports and quota engine.
#[derive(Clone)]
pub struct IstioMixer {
    reports: Reports,
    quota: Option<Arc<QuotaEngine>>,
}

/// Labels of a workload from the `<side>.*` attributes, as Mixer 1.4's standard
/// metric instances read them.
fn workload(bag: &Bag, side: &str) -> Workload {
    let attr = |suffix: &str| format!("{side}.{suffix}");
    let labels = attr("labels");
    Workload {
        name: bag.str(&attr("workload.name")).to_string(),
        namespace: bag
            .first_str(&[&attr("workload.namespace"), &attr("namespace")])
            .to_string(),
        app: bag.map_str(&labels, "app").to_string(),
        version: bag.map_str(&labels, "version").to_string(),
        principal: bag.str(&attr("principal")).to_string(),
        canonical_service: bag
            .map_str(&labels, "service.istio.io/canonical-name")
            .to_string(),
        canonical_revision: bag
            .map_str(&labels, "service.istio.io/canonical-revision")
            .to_string(),
        cluster: String::new(),
    }
}

/// The attributes quota policies match on.
pub fn quota_attributes(bag: &Bag) -> QuotaAttributes {
    QuotaAttributes {
        source: Some(workload(bag, "source")),
        destination: Some(workload(bag, "destination")),
        destination_service_host: bag.str("destination.service.host").to_string(),
        destination_service_name: bag.str("destination.service.name").to_string(),
        destination_service_namespace: bag.str("destination.service.namespace").to_string(),
        request_method: bag.str("request.method").to_string(),
        request_path: bag
            .first_str(&["request.path", "request.url_path"])
            .to_string(),
        request_headers: bag
            .map("request.headers")
            .map(|headers| {
                headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The request record of one reported request, or `None` for a TCP connection event
/// (meshtel keeps no TCP metrics).
pub fn request_record(bag: &Bag) -> Option<RequestRecord> {
    let protocol = bag.first_str(&["api.protocol", "context.protocol"]);
    if protocol == "tcp" || !bag.str("connection.event").is_empty() {
        return None;
    }
    let outbound = bag.str("context.reporter.kind") == "outbound";
    let reporter = if outbound {
        Reporter::Source
    } else {
        Reporter::Destination
    };
    // Mixer 1.4: "unknown" for the caller's side, else whether the connection was mTLS.
    let connection_security_policy = if outbound {
        ""
    } else if bag.bool("connection.mtls").unwrap_or(false) {
        "mutual_tls"
    } else {
        "none"
    };
    let size = |total: &str, body: &str| {
        bag.int(total)
            .or_else(|| bag.int(body))
            .map_or(0, |n| u64::try_from(n).unwrap_or(0))
    };
    let flags = bag.str("context.proxy_error_code");
    Some(RequestRecord {
        reporter: reporter as i32,
        source: Some(workload(bag, "source")),
        destination: Some(workload(bag, "destination")),
        destination_service: bag.str("destination.service.host").to_string(),
        destination_service_name: bag.str("destination.service.name").to_string(),
        destination_service_namespace: bag.str("destination.service.namespace").to_string(),
        request_method: bag.str("request.method").to_string(),
        request_path: bag
            .first_str(&["request.url_path", "request.path"])
            .to_string(),
        request_protocol: if protocol.is_empty() {
            "http"
        } else {
            protocol
        }
        .to_string(),
        // Out of range stays out of range, for the record check to refuse. None given is
        // 200, as Mixer 1.4's metric reads it (`response.code | 200`).
        response_code: bag
            .int("response.code")
            .map_or(200, |c| u32::try_from(c).unwrap_or(u32::MAX)),
        grpc_response_status: bag.str("response.grpc_status").parse().ok(),
        response_flags: if flags == "-" { "" } else { flags }.to_string(),
        start_unix_nano: bag
            .time("request.time")
            .map_or(0, |t| u64::try_from(t).unwrap_or(0)),
        duration_nanos: bag
            .duration("response.duration")
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        request_bytes: size("request.total_size", "request.size"),
        response_bytes: size("response.total_size", "response.size"),
        trace_id: Vec::new(),
        connection_security_policy: connection_security_policy.to_string(),
    })
}

fn status(code: i32, message: String) -> Option<Status> {
    Some(Status {
        code,
        message,
        details: Vec::new(),
    })
}

impl IstioMixer {
    /// The service over `reports`, charging quotas on `quota` when given (without an
    /// engine every quota is granted in full, as Mixer grants quotas it has no
    /// handler for).
    pub fn new(reports: Reports, quota: Option<Arc<QuotaEngine>>) -> IstioMixer {
        IstioMixer { reports, quota }
    }

    /// Answers a Check.
    pub fn check_request(&self, request: &CheckRequest) -> Result<CheckResponse> {
        Bag::check_word_count(request.global_word_count)?;
        let known_words = usize::try_from(request.global_word_count).unwrap_or(usize::MAX);
        let bag = match &request.attributes {
            Some(attributes) => Bag::decode(attributes, &attributes.words)?,
            None => Bag::default(),
        };
        let own_request = own::CheckRequest {
            attributes: Some(quota_attributes(&bag)),
            deduplication_id: request.deduplication_id.clone(),
            // Amounts of 0 and below are answered here (below), not charged.
            quotas: request
                .quotas
                .iter()
                .filter(|(_, params)| params.amount > 0)
                .map(|(name, params)| {
                    let params = own::check_request::QuotaParams {
                        amount: params.amount,
                        best_effort: params.best_effort,
                    };
                    (name.clone(), params)
                })
                .collect(),
        };
        let mut quotas: std::collections::HashMap<String, QuotaResult> = match &self.quota {
            Some(engine) => engine
                .check_request(&own_request)?
                .quotas
                .into_iter()
                .map(|(name, result)| {
                    // Mixer answers a quota it has no handler for with OK, and an
                    // exhausted one with OK too and nothing granted, as its memquota
                    // adapter does: the istio-proxy reads `granted_amount` 0 as exhausted.
                    let (code, message) = match result.status_code {
                        NOT_FOUND | RESOURCE_EXHAUSTED => (OK, String::new()),
                        code => (code, result.status_message),
                    };
                    // What the answer depends on, so that a caching client never
                    // reuses it for another caller, user or path: for an instance
                    // split per service, what every one of its policies reads (which
                    // of them decides depends on their matches).
                    let handles = engine.handles_for(&name);
                    let referenced_attributes = (!handles.is_empty()).then(|| {
                        let attributes = handles.iter().flat_map(|h| h.policy().attributes());
                        referenced::referenced(attributes, &bag, known_words)
                    });
                    let answer = QuotaResult {
                        valid_duration: result.valid_duration,
                        granted_amount: result.granted_amount,
                        status: status(code, message),
                        referenced_attributes,
                    };
                    (name, answer)
                })
                .collect(),
            None => request
                .quotas
                .iter()
                .map(|(name, params)| {
                    let answer = QuotaResult {
                        valid_duration: Some(proto_duration(PRECONDITION_VALID_DURATION)),
                        granted_amount: params.amount,
                        status: status(OK, String::new()),
                        referenced_attributes: None,
                    };
                    (name.clone(), answer)
                })
                .collect(),
        };
        // Mixer's memquota grants an amount of 0 as nothing at all (OK, 0), and takes a
        // negative one as a release, which meshtel's counters do not do: refused for
        // that quota alone, the others of the call answered as usual.
        for (name, params) in request.quotas.iter().filter(|(_, p)| p.amount <= 0) {
            let (code, message) = if params.amount == 0 {
                (OK, String::new())
            } else {
                let message = format!(
                    "quota {name:?}: amount {} is a release of quota, which meshtel does not do",
                    params.amount
                );
                (INVALID_ARGUMENT, message)
            };
            let answer = QuotaResult {
                valid_duration: Some(proto_duration(PRECONDITION_VALID_DURATION)),
                granted_amount: 0,
                status: status(code, message),
                referenced_attributes: None,
            };
            quotas.insert(name.clone(), answer);
        }
        Ok(CheckResponse {
            precondition: Some(PreconditionResult {
                status: status(OK, String::new()),
                valid_duration: Some(proto_duration(PRECONDITION_VALID_DURATION)),
                valid_use_count: PRECONDITION_VALID_USE_COUNT,
                referenced_attributes: None,
                route_directive: None,
            }),
            quotas,
        })
    }

    /// Digests a Report: every element's attributes become a request record, and
    /// the records are taken together or, when any element cannot be read, not at all.
    pub fn report_request(&self, request: &ReportRequest) -> Result<ReportResponse> {
        Bag::check_word_count(request.global_word_count)?;
        let independent = request.repeated_attributes_semantics
            == RepeatedAttributesSemantics::IndependentEncoding as i32;
        let mut bag = Bag::default();
        let mut records = Vec::with_capacity(request.attributes.len());
        let mut tcp_events = 0u64;
        let mut proxy_id = String::new();
        // What the records copy out of the bags: each element's record copies its bag's
        // strings, so a few large words repeated by delta-encoded elements would be
        // copied once per element. Bounded as the proxies' own Reports are.
        let max_built = self.reports.max_message_bytes().saturating_mul(4);
        let mut built = 0usize;
        for element in &request.attributes {
            let words = if element.words.is_empty() {
                &request.default_words
            } else {
                &element.words
            };
            if independent {
                bag = Bag::default();
            }
            bag.update(element, words)?;
            built = built.saturating_add(bag.bytes());
            if built > max_built {
                return Err(Error::InvalidMixerAttributes(format!(
                    "the {} elements of this Report expand to more than {} MiB of request \
                     records (four times [report] max_message_bytes): send fewer per Report",
                    request.attributes.len(),
                    max_built >> 20
                )));
            }
            if proxy_id.is_empty() {
                proxy_id = bag.str("context.reporter.uid").to_string();
            }
            match request_record(&bag) {
                Some(record) => records.push(record),
                None => tcp_events += 1,
            }
        }
        let batch = own::ReportRequest {
            proxy_id,
            records,
            dropped_since_last: 0,
            sent_unix_nano: 0,
        };
        self.reports.digest(&batch)?;
        self.reports.metrics().record_skipped_tcp_events(tcp_events);
        Ok(ReportResponse {})
    }
}

#[tonic::async_trait]
impl Mixer for IstioMixer {
    #[instrument(level = "debug", skip_all, fields(protocol = "istio_check"))]
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        match self.check_request(request.get_ref()) {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(error) => {
                debug!(error = %error, "istio mixer check refused");
                Err(error.grpc_status())
            }
        }
    }

    #[instrument(level = "debug", skip_all, fields(protocol = "istio_report"))]
    async fn report(
        &self,
        request: tonic::Request<ReportRequest>,
    ) -> Result<tonic::Response<ReportResponse>, tonic::Status> {
        match self.report_request(request.get_ref()) {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(error) => {
                debug!(error = %error, "istio mixer report refused");
                Err(error.grpc_status())
            }
        }
    }
}

/// Builds the `istio.mixer.v1.Mixer` gRPC service (gzip both ways, the Report
/// message size bound) for `tonic::transport::Server::add_service`. An undecodable
/// request gets `INVALID_ARGUMENT`.
pub fn istio_mixer_grpc_service(
    reports: Reports,
    quota: Option<Arc<QuotaEngine>>,
) -> InvalidArgumentOnDecodeError<MixerServer<IstioMixer>> {
    let max_message_bytes = reports.max_message_bytes();
    InvalidArgumentOnDecodeError::new(
        MixerServer::new(IstioMixer::new(reports, quota))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes),
    )
}

#[cfg(test)]
mod tests;
