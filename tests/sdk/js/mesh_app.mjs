// Two ends of one call through the meshtel sidecars, traced by the OpenTelemetry JS
// SDK with W3C trace context, for tests/it/sdk.rs:
//
//     node mesh_app.mjs serve --service reviews --otlp http://127.0.0.1:4318/v1/traces
//         an HTTP app on 127.0.0.1:0: prints {"port": N}, then answers every request
//         200 under a SERVER span continuing the request's `traceparent`, until killed;
//     node mesh_app.mjs call --service productpage --otlp URL --to http://OUTBOUND/reviews/1 --host reviews:9080
//         one GET under a CLIENT span whose context goes out as `traceparent`; prints
//         {"trace_id", "span_id", "status"} once its span is exported.
//
// Spans go to meshtel over OTLP/HTTP JSON, one export per span. Exits non-zero when an
// export or the call fails.

import { createRequire } from "node:module";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

// From $MESHTEL_SDK_NODE_MODULES (default target/sdk-node/node_modules), as send_traces.mjs.
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const nodeModules =
  process.env.MESHTEL_SDK_NODE_MODULES || path.join(repo, "target/sdk-node/node_modules");
const require = createRequire(path.join(nodeModules, "..", "package.json"));
const { SpanKind, SpanStatusCode, context, propagation, trace } = require("@opentelemetry/api");
const { W3CTraceContextPropagator } = require("@opentelemetry/core");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-http");
const { defaultResource, resourceFromAttributes } = require("@opentelemetry/resources");
const { SimpleSpanProcessor, TracerProvider } = require("@opentelemetry/sdk-trace");

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    service: { type: "string" },
    otlp: { type: "string" },
    to: { type: "string" },
    host: { type: "string" },
  },
});
const mode = positionals[0];
if (!values.service || !values.otlp || !["serve", "call"].includes(mode)) {
  console.error("usage: node mesh_app.mjs serve|call --service NAME --otlp URL [--to URL --host HOST]");
  process.exit(2);
}

propagation.setGlobalPropagator(new W3CTraceContextPropagator());
let failed = null;
const exporter = new OTLPTraceExporter({ url: values.otlp, timeoutMillis: 10000 });
const checked = {
  export(spans, done) {
    exporter.export(spans, (result) => {
      if (result.code !== 0) {
        failed = result.error ? String(result.error) : `code ${result.code}`;
      }
      done(result);
    });
  },
  shutdown: () => exporter.shutdown(),
  forceFlush: () => exporter.forceFlush(),
};
const provider = new TracerProvider({
  resource: defaultResource().merge(resourceFromAttributes({ "service.name": values.service })),
  spanProcessors: [new SimpleSpanProcessor({ exporter: checked })],
});
const tracer = provider.getTracer("meshtel.sdk.mesh", "0.1.0");

if (mode === "serve") {
  const server = http.createServer((request, response) => {
    const parent = propagation.extract(context.active(), request.headers);
    const span = tracer.startSpan(
      `${request.method} ${request.url}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": request.method } },
      parent,
    );
    span.setAttribute("received.traceparent", request.headers.traceparent ?? "");
    response.writeHead(200, { "content-type": "text/plain" });
    response.end("ok");
    span.end();
  });
  server.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: server.address().port }));
  });
  const stop = async () => {
    server.close();
    await provider.forceFlush();
    await provider.shutdown();
    process.exit(failed === null ? 0 : 1);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const span = tracer.startSpan("GET /reviews/1", {
    kind: SpanKind.CLIENT,
    attributes: { "http.request.method": "GET" },
  });
  const headers = { host: values.host };
  propagation.inject(trace.setSpan(context.active(), span), headers);
  const url = new URL(values.to);
  const status = await new Promise((resolve, reject) => {
    const request = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: "GET", headers },
      (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode));
      },
    );
    request.on("error", reject);
    request.end();
  });
  if (status !== 200) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: `status ${status}` });
  }
  span.end();
  await provider.forceFlush();
  await provider.shutdown();
  if (failed !== null) {
    throw new Error(`export failed: ${failed}`);
  }
  console.log(
    JSON.stringify({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId, status }),
  );
}
