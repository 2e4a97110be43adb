// The service graph's model: the API's graph of the chosen type (GET /api/graph with
// graphType workload, app, versionedApp or service; an answer of another type, a
// workload graph from an older server, is folded into it here), with the rates, error
// rates and levels the page (pages/graph.js) draws. Pure functions of the answer.

import { errorLevel, formatRate } from './mesh.js';

const num = (v) => {
  const n = parseFloat(v);
  return Number.isFinite(n) ? n : 0;
};
export const known = (v) => (v && v !== 'unknown' ? v : '');

/** What a server node becomes in a graph type: {id, kind, label, ...}. */
function groupOf(d, type, multiNamespace) {
  const ns = d.namespace || '';
  const nsSuffix = multiNamespace && known(ns) ? `\n${ns}` : '';
  const services = (d.destServices || []).map((s) => s.name).filter(Boolean);
  if (d.service && !services.includes(d.service)) services.push(d.service);
  const common = { namespace: ns, app: known(d.app), version: known(d.version), workload: known(d.workload), services };
  if (d.nodeType === 'unknown' || d.id === 'unknown_source') {
    return { ...common, id: 'unknown_source', kind: 'unknown', label: 'unknown' };
  }
  if (d.nodeType === 'service' || type === 'workload' || (d.nodeType && d.nodeType !== 'workload')) {
    // Kiali types a versioned app's node `app`; its version tells it apart.
    const kind = d.nodeType === 'service' ? 'service' : d.nodeType === 'app' && known(d.version) ? 'versionedApp' : d.nodeType || 'workload';
    const name = kind === 'service' ? d.service || d.app || d.id : kind === 'app' ? d.app : kind === 'versionedApp' ? `${d.app} ${d.version || ''}` : d.workload || d.id;
    return { ...common, id: d.id, kind, label: `${name}${nsSuffix}` };
  }
  const app = common.app || common.workload || d.id;
  if (type === 'app') return { ...common, id: `app_${ns}_${app}`, kind: 'app', label: `${app}${nsSuffix}`, version: '' };
  if (type === 'versionedApp') {
    const version = common.version;
    return { ...common, id: `vapp_${ns}_${app}_${version || 'unknown'}`, kind: 'versionedApp', label: `${app}${version ? ` ${version}` : ''}${nsSuffix}` };
  }
  // service graph: a workload stands for the service it answers for, else its app.
  const service = services[0] || app;
  return { ...common, id: `svc_${ns}_${service}`, kind: 'service', label: `${service}${nsSuffix}`, version: '', services: [service] };
}

/** Response code → flag → percent of one API edge. */
function edgeCodes(d) {
  const codes = new Map();
  for (const [code, entry] of Object.entries(d.traffic?.responses || {})) {
    const flags = new Map();
    for (const [flag, pct] of Object.entries(entry?.flags || {})) flags.set(flag, num(pct));
    codes.set(code, flags);
  }
  return codes;
}

/** A server error or no response: the codes drawn in the error colour (4xx: client). */
export function isServerErrorCode(code) {
  if (code === '-') return true;
  const n = parseInt(code, 10);
  return n >= 500 && n <= 599;
}

/**
 * The error rate of one API edge as a fraction, as the API gives it: httpPercentErr
 * (4xx, 5xx and no response, as Kiali counts) or grpcPercentErr; the API leaves the
 * field out when there was no error.
 */
function apiErrorRate(rates, protocol) {
  if (protocol === 'tcp') return 0;
  return num(protocol === 'grpc' ? rates.grpcPercentErr : rates.httpPercentErr) / 100;
}

/**
 * The graph of `type` from the API's JSON: {nodes: Map, edges: [], namespaces: Set}.
 * Edge: {id, source, target, protocol, rate, errorRate, codes: Map<code, Map<flag, pct>>,
 * times: {p50,p95,p99,avg}, approx, throughput, percentReq}.
 */
export function buildModel(json, type) {
  const serverNodes = (json?.elements?.nodes || []).map((n) => n.data).filter(Boolean);
  const serverEdges = (json?.elements?.edges || []).map((e) => e.data).filter(Boolean);
  const native = json?.graphType === type;
  const namespaces = new Set(serverNodes.map((d) => d.namespace).filter((n) => known(n)));
  const multi = namespaces.size > 1;
  const nodes = new Map();
  const groupOfId = new Map();
  for (const d of serverNodes) {
    const g = groupOf(d, native ? 'workload' : type, multi);
    groupOfId.set(d.id, g.id);
    const node = nodes.get(g.id);
    // An app node of the server's app graph lists its workloads and versions.
    const workloads = [g.workload, ...(d.workloads || [])].filter(Boolean);
    const versions = [g.version, ...(d.versions || [])].filter(Boolean);
    if (!node) {
      nodes.set(g.id, { ...g, workloads: new Set(workloads), versions: new Set(versions), services: new Set(g.services), members: [d] });
    } else {
      workloads.forEach((w) => node.workloads.add(w));
      versions.forEach((v) => node.versions.add(v));
      g.services.forEach((s) => node.services.add(s));
      node.members.push(d);
    }
  }
  // Edges: fold those that land on the same pair of nodes (and protocol).
  const folded = new Map();
  for (const d of serverEdges) {
    const source = groupOfId.get(d.source) || d.source;
    const target = groupOfId.get(d.target) || d.target;
    const protocol = d.traffic?.protocol || 'http';
    const rates = d.traffic?.rates || {};
    const rate = protocol === 'tcp' ? num(rates.tcp) : protocol === 'grpc' ? num(rates.grpc) : num(rates.http);
    // Weight for merging percentages: the rate, or a sliver when it rounded to 0.
    const weight = Math.max(rate, 1e-6);
    const codes = edgeCodes(d);
    const errorRate = apiErrorRate(rates, protocol);
    const key = `${source}->${target}:${protocol}`;
    let edge = folded.get(key);
    if (!edge) {
      edge = { id: key, source, target, protocol, rate: 0, weight: 0, errorWeight: 0, codes: new Map(), timeWeights: {}, times: {}, throughput: 0, percentReq: null, members: [] };
      folded.set(key, edge);
    }
    edge.members.push(d);
    // The API writes rates with 2 decimals: "0.00" is traffic below 0.005/s, not none.
    if (rate === 0 && (rates.http || rates.grpc || rates.tcp)) edge.tiny = true;
    edge.rate += rate;
    edge.weight += weight;
    edge.errorWeight += errorRate * weight;
    edge.throughput += num(d.throughput);
    for (const [code, flags] of codes) {
      const into = edge.codes.get(code) || new Map();
      for (const [flag, pct] of flags) into.set(flag, (into.get(flag) || 0) + (pct / 100) * weight);
      edge.codes.set(code, into);
    }
    for (const [q, v] of Object.entries(d.responseTimes || {})) {
      const ms = num(v);
      edge.timeWeights[q] = (edge.timeWeights[q] || 0) + weight;
      edge.times[q] = (edge.times[q] || 0) + ms * weight;
    }
    if (rates.httpPercentReq || rates.grpcPercentReq) edge.percentReq = num(rates.httpPercentReq || rates.grpcPercentReq) / 100;
  }
  const edges = [];
  for (const edge of folded.values()) {
    const merged = edge.members.length > 1;
    const codes = new Map();
    for (const [code, flags] of edge.codes) {
      const pcts = new Map();
      for (const [flag, w] of flags) pcts.set(flag, (w / edge.weight) * 100);
      codes.set(code, pcts);
    }
    const times = {};
    for (const q of Object.keys(edge.times)) times[q] = edge.times[q] / edge.timeWeights[q];
    edges.push({
      id: edge.id,
      source: edge.source,
      target: edge.target,
      protocol: edge.protocol,
      rate: edge.rate,
      errorRate: edge.weight ? edge.errorWeight / edge.weight : 0,
      codes,
      times,
      approx: merged,
      tiny: Boolean(edge.tiny) && edge.rate === 0,
      throughput: edge.throughput,
      percentReq: merged ? null : edge.percentReq,
      members: edge.members,
    });
    if (!nodes.has(edge.source)) nodes.set(edge.source, { id: edge.source, kind: 'unknown', label: edge.source, namespace: '', workloads: new Set(), versions: new Set(), services: new Set(), members: [] });
    if (!nodes.has(edge.target)) nodes.set(edge.target, { id: edge.target, kind: 'service', label: edge.target, namespace: '', workloads: new Set(), versions: new Set(), services: new Set(), members: [] });
  }
  edges.sort((a, b) => b.rate - a.rate || a.id.localeCompare(b.id));
  // Node totals from the edges (the same numbers whatever the graph type).
  for (const node of nodes.values()) {
    node.inRate = 0;
    node.inErrors = 0;
    node.outRate = 0;
    node.outErrors = 0;
    node.incoming = [];
    node.outgoing = [];
  }
  for (const edge of edges) {
    if (edge.protocol === 'tcp') {
      nodes.get(edge.target).incoming.push(edge);
      nodes.get(edge.source).outgoing.push(edge);
      continue;
    }
    const source = nodes.get(edge.source);
    const target = nodes.get(edge.target);
    source.outRate += edge.rate;
    source.outErrors += edge.rate * edge.errorRate;
    source.outgoing.push(edge);
    target.inRate += edge.rate;
    target.inErrors += edge.rate * edge.errorRate;
    target.incoming.push(edge);
  }
  return { nodes, edges, namespaces, type, native, timestamp: json?.timestamp, duration: json?.duration };
}

/** Codes of several edges merged (rate-weighted), as code → flag → percent. */
export function mergeCodes(edges) {
  const total = edges.reduce((sum, e) => sum + Math.max(e.rate, 1e-6), 0);
  const out = new Map();
  for (const e of edges) {
    const w = Math.max(e.rate, 1e-6);
    for (const [code, flags] of e.codes) {
      const into = out.get(code) || new Map();
      for (const [flag, pct] of flags) into.set(flag, (into.get(flag) || 0) + (pct * w) / total);
      out.set(code, into);
    }
  }
  return out;
}

export function formatBytes(rate) {
  if (!rate) return '0 B/s';
  if (rate >= 1e6) return `${(rate / 1e6).toFixed(1)} MB/s`;
  if (rate >= 1e3) return `${(rate / 1e3).toFixed(1)} kB/s`;
  return `${rate.toFixed(rate < 10 ? 1 : 0)} B/s`;
}

/** The rate to show: a sliver for traffic the API rounded to 0.00 (shown as "<0.01"). */
export function shownRate(edge) {
  return edge.rate || (edge.tiny ? 0.001 : 0);
}

export function edgeRateText(edge) {
  return edge.protocol === 'tcp' ? formatBytes(shownRate(edge)) : formatRate(shownRate(edge));
}

export function edgeLevel(edge) {
  if (edge.protocol === 'tcp') return edge.rate > 0 ? 'ok' : 'idle';
  return errorLevel(edge.errorRate, edge.rate > 0 || edge.members.length > 0);
}

export function nodeLevel(node) {
  if (node.inRate > 0) return errorLevel(node.inErrors / node.inRate);
  if (node.incoming.length) return errorLevel(0);
  return 'idle';
}

export function plainLabel(node) {
  return node.label.replace(/\n/g, ' · ');
}

