// mesh_app.mjs's two ends of a call through the meshtel sidecars, traced by zipkin-js
// with B3 headers instead (tests/it/sdk.rs):
//
//     node mesh_app_b3.mjs serve --service reviews --zipkin http://127.0.0.1:9411/api/v2/spans
//         an HTTP app on 127.0.0.1:0: prints {"port": N}, then answers every request
//         200 under a SERVER span that is a child of the request's X-B3-SpanId (the
//         tracer does not join its caller's span id), until killed;
//     node mesh_app_b3.mjs call --service productpage --zipkin URL --to http://OUTBOUND/reviews/1 --host reviews:9080
//         one GET under a CLIENT span sent as X-B3-* headers (128-bit trace id);
//         prints {"trace_id", "span_id", "status"} once its span is posted.
//
// Spans go to meshtel's Zipkin endpoint as v2 JSON. Exits non-zero when a post or the
// call fails.

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
const { BatchRecorder, ExplicitContext, Instrumentation, Tracer, jsonEncoder, option } =
  require("zipkin");
const { HttpLogger } = require("zipkin-transport-http");

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    service: { type: "string" },
    zipkin: { type: "string" },
    to: { type: "string" },
    host: { type: "string" },
  },
});
const mode = positionals[0];
if (!values.service || !values.zipkin || !["serve", "call"].includes(mode)) {
  console.error("usage: node mesh_app_b3.mjs serve|call --service NAME --zipkin URL [--to URL --host HOST]");
  process.exit(2);
}

let failed = null;
const logger = new HttpLogger({
  endpoint: values.zipkin,
  jsonEncoder: jsonEncoder.JSON_V2,
  httpInterval: 100,
});
logger.on("error", (error) => {
  failed = String(error);
});
const tracer = new Tracer({
  ctxImpl: new ExplicitContext(),
  recorder: new BatchRecorder({ logger }),
  localServiceName: values.service,
  supportsJoin: false,
  traceId128Bit: true,
});

if (mode === "serve") {
  let instrumentation;
  const server = http.createServer((request, response) => {
    const readHeader = (name) => {
      const value = request.headers[name.toLowerCase()];
      return value === undefined ? option.None : new option.Some(value);
    };
    const id = instrumentation.recordRequest(request.method, request.url, readHeader);
    tracer.letId(id, () => {
      tracer.recordBinary("received.b3.spanid", request.headers["x-b3-spanid"] ?? "");
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("ok");
      instrumentation.recordResponse(id, "200");
    });
  });
  server.listen(0, "127.0.0.1", () => {
    const port = server.address().port;
    instrumentation = new Instrumentation.HttpServer({ tracer, port });
    console.log(JSON.stringify({ port }));
  });
  const stop = () => {
    server.close();
    process.exit(failed === null ? 0 : 1);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const instrumentation = new Instrumentation.HttpClient({ tracer, remoteServiceName: "reviews" });
  const url = new URL(values.to);
  const outgoing = instrumentation.recordRequest({ headers: { host: values.host } }, values.to, "GET");
  const id = tracer.id;
  const status = await new Promise((resolve, reject) => {
    const request = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: "GET", headers: outgoing.headers },
      (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode));
      },
    );
    request.on("error", reject);
    request.end();
  });
  instrumentation.recordResponse(id, status);
  const posted = new Promise((resolve, reject) => {
    logger.on("success", resolve);
    logger.on("error", reject);
  });
  logger.processQueue(logger.fetchImplementation);
  await posted;
  console.log(JSON.stringify({ trace_id: id.traceId, span_id: id.spanId, status }));
}
