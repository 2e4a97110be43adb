"""Sends one small trace through the real OpenTelemetry Python SDK over each OTLP
transport and the Zipkin v2 JSON exporter, for the `sdk` end-to-end test
(tests/it/sdk.rs).

    python send_traces.py --grpc 127.0.0.1:4317 --http http://127.0.0.1:4318/v1/traces \
        --zipkin http://127.0.0.1:9411/api/v2/spans --service NAME

Each trace is a SERVER parent with a CLIENT child that has attributes, an event and an
ERROR status. Prints one JSON object on stdout: for each transport, the trace id and
span ids (lower-case hex) the SDK generated, and the times it recorded (Unix ns: each
span's start and end, the event's). Exits non-zero when an export fails.
"""

import argparse
import json
import sys

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


class CheckedExporter:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.failed = False

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failed = True
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def send_one_trace(exporter, service, transport):
    checked = CheckedExporter(exporter)
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service, "deployment.environment": "test"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(checked))
    tracer = provider.get_tracer("meshtel.sdk.test", "0.1.0")
    with tracer.start_as_current_span(
        "checkout",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "transport": transport},
    ) as parent:
        with tracer.start_as_current_span(
            "charge-card",
            kind=SpanKind.CLIENT,
            attributes={"amount": 42, "retry": True, "rate": 0.5},
        ) as child:
            child.add_event("card.declined", {"reason": "insufficient funds"})
            child.set_status(Status(StatusCode.ERROR, "payment failed"))
    provider.shutdown()
    if checked.failed:
        sys.exit(f"{transport} export failed")
    return {
        "trace_id": format(parent.get_span_context().trace_id, "032x"),
        "parent": format(parent.get_span_context().span_id, "016x"),
        "child": format(child.get_span_context().span_id, "016x"),
        "times": {
            "parent": [parent.start_time, parent.end_time],
            "child": [child.start_time, child.end_time],
            "event": child.events[0].timestamp,
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grpc", required=True, help="host:port of OTLP gRPC")
    parser.add_argument("--http", required=True, help="URL of OTLP HTTP /v1/traces")
    parser.add_argument("--zipkin", required=True, help="URL of Zipkin /api/v2/spans")
    parser.add_argument("--service", required=True, help="service.name")
    args = parser.parse_args()
    out = {
        "grpc": send_one_trace(
            GrpcSpanExporter(
                endpoint=args.grpc,
                insecure=True,
                compression=grpc.Compression.Gzip,
                timeout=10,
            ),
            args.service,
            "grpc",
        ),
        "http": send_one_trace(
            HttpSpanExporter(
                endpoint=args.http, compression=HttpCompression.Gzip, timeout=10
            ),
            args.service,
            "http",
        ),
        "zipkin": send_one_trace(
            ZipkinExporter(endpoint=args.zipkin, timeout=10), args.service, "zipkin"
        ),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
