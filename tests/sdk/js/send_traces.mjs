// Sends one small trace through the real OpenTelemetry JS SDK over each OTLP/HTTP
// encoding (JSON, as browsers send it, and protobuf), for the `sdk` end-to-end test
// (tests/it/sdk.rs).
//
//     node send_traces.mjs --http http://127.0.0.1:4318/v1/traces --service NAME
//
// Each trace is a SERVER parent with a CLIENT child that has attributes, an event and
// an ERROR status. Prints one JSON object on stdout: for each encoding, the trace id and
// span ids (lower-case hex) the SDK generated, and the times it recorded (Unix ns, as
// strings: each span's start and end, the event's). Exits non-zero when an export fails.

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

// The SDK comes from $MESHTEL_SDK_NODE_MODULES (default target/sdk-node/node_modules,
// where scripts/test.sh installs this folder's package-lock.json).
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const nodeModules =
  process.env.MESHTEL_SDK_NODE_MODULES || path.join(repo, "target/sdk-node/node_modules");
const require = createRequire(path.join(nodeModules, "..", "package.json"));
const { SpanKind, SpanStatusCode, context, trace } = require("@opentelemetry/api");
const { OTLPTraceExporter: JsonExporter } = require("@opentelemetry/exporter-trace-otlp-http");
const { OTLPTraceExporter: ProtoExporter } = require("@opentelemetry/exporter-trace-otlp-proto");
const { defaultResource, resourceFromAttributes } = require("@opentelemetry/resources");
const { SimpleSpanProcessor, TracerProvider } = require("@opentelemetry/sdk-trace");

/** Wraps an exporter and remembers whether every export succeeded (code 0). */
function checked(inner) {
  const state = { failed: null };
  const exporter = {
    export(spans, done) {
      inner.export(spans, (result) => {
        if (result.code !== 0) {
          state.failed = result.error ? String(result.error) : `code ${result.code}`;
        }
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => (inner.forceFlush ? inner.forceFlush() : Promise.resolve()),
  };
  return { exporter, state };
}

async function sendOneTrace(inner, service, transport) {
  const { exporter, state } = checked(inner);
  const provider = new TracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({ "service.name": service, "deployment.environment": "test" }),
    ),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer("meshtel.sdk.test", "0.1.0");
  const parent = tracer.startSpan("checkout", {
    kind: SpanKind.SERVER,
    attributes: { "http.request.method": "POST", transport },
  });
  const child = tracer.startSpan(
    "charge-card",
    { kind: SpanKind.CLIENT, attributes: { amount: 42, retry: true, rate: 0.5 } },
    trace.setSpan(context.active(), parent),
  );
  child.addEvent("card.declined", { reason: "insufficient funds" });
  child.setStatus({ code: SpanStatusCode.ERROR, message: "payment failed" });
  child.end();
  parent.end();
  await provider.forceFlush();
  await provider.shutdown();
  if (state.failed !== null) {
    throw new Error(`${transport} export failed: ${state.failed}`);
  }
  // The SDK's own clock: a span started from a parent's context is not held to end
  // before its parent does.
  const ns = ([seconds, nanos]) => (BigInt(seconds) * 1000000000n + BigInt(nanos)).toString();
  return {
    trace_id: parent.spanContext().traceId,
    parent: parent.spanContext().spanId,
    child: child.spanContext().spanId,
    times: {
      parent: [ns(parent.startTime), ns(parent.endTime)],
      child: [ns(child.startTime), ns(child.endTime)],
      event: ns(child.events[0].time),
    },
  };
}

const { values } = parseArgs({
  options: { http: { type: "string" }, service: { type: "string" } },
});
if (!values.http || !values.service) {
  console.error("usage: node send_traces.mjs --http URL --service NAME");
  process.exit(2);
}
const options = { url: values.http, timeoutMillis: 10000 };
const out = {
  "http-json": await sendOneTrace(new JsonExporter(options), values.service, "http-json"),
  "http-protobuf": await sendOneTrace(new ProtoExporter(options), values.service, "http-protobuf"),
};
console.log(JSON.stringify(out));
