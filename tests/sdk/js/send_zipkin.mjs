// Sends one call through zipkin-js, the Zipkin project's JavaScript tracer, as two
// services do with B3 headers, for the `sdk` end-to-end test (tests/it/sdk.rs):
// `frontend` records a CLIENT span; `backend` joins the caller's span id (a shared
// SERVER span, as B3 servers do by default), records a local child `select` under it
// and fails with `http.status_code` 500 and an `error` tag. zipkin-transport-http
// posts the three spans as Zipkin v2 JSON.
//
//     node send_zipkin.mjs --zipkin http://127.0.0.1:9411/api/v2/spans
//
// Prints one JSON object: the trace id, the shared span id and the child's span id
// (lower-case hex). Exits non-zero when the post fails.

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

// From $MESHTEL_SDK_NODE_MODULES (default target/sdk-node/node_modules), as send_traces.mjs.
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const nodeModules =
  process.env.MESHTEL_SDK_NODE_MODULES || path.join(repo, "target/sdk-node/node_modules");
const require = createRequire(path.join(nodeModules, "..", "package.json"));
const { Annotation, BatchRecorder, ExplicitContext, TraceId, Tracer, jsonEncoder, option } =
  require("zipkin");
const { HttpLogger } = require("zipkin-transport-http");

const { values } = parseArgs({ options: { zipkin: { type: "string" } } });
if (!values.zipkin) {
  console.error("usage: node send_zipkin.mjs --zipkin URL");
  process.exit(2);
}
// Posted when this script says so, not on a timer.
const logger = new HttpLogger({
  endpoint: values.zipkin,
  jsonEncoder: jsonEncoder.JSON_V2,
  httpInterval: 600000,
});
const recorder = new BatchRecorder({ logger });
const tracer = (service) =>
  new Tracer({ ctxImpl: new ExplicitContext(), recorder, localServiceName: service, traceId128Bit: true });
const frontend = tracer("frontend");
const backend = tracer("backend");

const call = frontend.createRootId();
frontend.letId(call, () => {
  frontend.recordServiceName("frontend");
  frontend.recordRpc("get /api");
  frontend.recordBinary("http.path", "/api");
  frontend.recordAnnotation(new Annotation.ClientSend());
});
// What the backend reads from X-B3-TraceId, X-B3-SpanId and X-B3-Sampled.
const incoming = new TraceId({
  traceId: call.traceId,
  spanId: call.spanId,
  parentId: option.None,
  sampled: new option.Some(true),
});
const served = backend.join(incoming);
let child;
backend.letId(served, () => {
  backend.recordServiceName("backend");
  backend.recordRpc("get /api");
  backend.recordAnnotation(new Annotation.ServerRecv());
  child = backend.createChildId();
  backend.letId(child, () => {
    backend.recordServiceName("backend");
    backend.recordAnnotation(new Annotation.LocalOperationStart("select"));
    backend.recordAnnotation(new Annotation.LocalOperationStop());
  });
  backend.recordBinary("http.status_code", "500");
  backend.recordBinary("error", "boom");
  backend.recordAnnotation(new Annotation.ServerSend());
});
frontend.letId(call, () => frontend.recordAnnotation(new Annotation.ClientRecv()));

if (logger.queue.length !== 3) {
  throw new Error(`expected 3 finished spans, have ${logger.queue.length}`);
}
const posted = new Promise((resolve, reject) => {
  logger.on("success", resolve);
  logger.on("error", reject);
});
logger.processQueue(logger.fetchImplementation);
await posted;
console.log(JSON.stringify({ trace_id: call.traceId, shared: call.spanId, child: child.spanId }));
