//! gRPC health following the store's readiness (what `/readyz` answers over HTTP).

use std::sync::Arc;

use meshtel_model::SpanSink;
use tokio::sync::watch;

/// How often gRPC health follows the store's readiness.
const GRPC_READINESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Sets the gRPC health of the server ("") and of the OTLP trace service to
/// NOT_SERVING while `sink` refuses every write, and back to SERVING after, until
/// `stop` says the servers stop.
pub async fn report_grpc_readiness(
    reporter: tonic_health::server::HealthReporter,
    sink: Arc<dyn SpanSink>,
    mut stop: watch::Receiver<bool>,
) {
    use tonic_health::ServingStatus;
    const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
    let mut serving = true;
    reporter
        .set_service_status(TRACE_SERVICE, ServingStatus::Serving)
        .await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(GRPC_READINESS_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let now_serving = sink.refuses_writes().is_none();
        if now_serving != serving {
            serving = now_serving;
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in ["", TRACE_SERVICE] {
                reporter.set_service_status(service, status).await;
            }
        }
    }
}
