// Shared by the service graph and the service metrics pages: how rates, error rates and
// latencies are written and coloured, the metrics time-series API, Envoy response flags.

import { get } from '../api.js';
import { h } from './dom.js';

/**
 * Error-rate thresholds (fraction of requests answered 5xx, or not answered at all):
 * below `warn` is healthy (green), below `error` degraded (amber), else failing (red).
 */
export const ERROR_THRESHOLDS = { warn: 0.01, error: 0.05 };

/** 'ok' | 'warn' | 'error' | 'idle' (no traffic) for an error fraction. */
export function errorLevel(fraction, hasTraffic = true) {
  if (!hasTraffic) return 'idle';
  if (fraction === null || fraction === undefined || Number.isNaN(fraction)) return 'ok';
  if (fraction < ERROR_THRESHOLDS.warn) return 'ok';
  if (fraction < ERROR_THRESHOLDS.error) return 'warn';
  return 'error';
}

/** Colours of the levels (the app.css tokens, as values for canvas drawing). */
export const LEVEL_COLORS = { ok: '#16a34a', warn: '#d97706', error: '#dc2626', idle: '#9aa3b2' };

/** "≥1 %" style legend text of the thresholds. */
export function thresholdText() {
  const pct = (f) => `${+(f * 100).toFixed(2)} %`;
  return {
    ok: `< ${pct(ERROR_THRESHOLDS.warn)} errors`,
    warn: `${pct(ERROR_THRESHOLDS.warn)} – ${pct(ERROR_THRESHOLDS.error)}`,
    error: `≥ ${pct(ERROR_THRESHOLDS.error)}`,
  };
}

/** Requests per second → "12.3 req/s", "<0.01 req/s". */
export function formatRate(rate, unit = 'req/s') {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return '–';
  if (rate === 0) return `0 ${unit}`;
  if (rate < 0.01) return `<0.01 ${unit}`;
  if (rate >= 1000) return `${(rate / 1000).toFixed(rate >= 10_000 ? 0 : 1)}k ${unit}`;
  return `${rate.toFixed(rate >= 100 ? 0 : rate >= 10 ? 1 : 2)} ${unit}`;
}

/** Compact rate for graph edge labels: "12.3rps". */
export function shortRate(rate) {
  if (!rate) return '0rps';
  if (rate < 0.01) return '<0.01rps';
  if (rate >= 1000) return `${(rate / 1000).toFixed(1)}krps`;
  return `${rate.toFixed(rate >= 100 ? 0 : rate >= 10 ? 1 : 2)}rps`;
}

/** A fraction → "1.5 %" (fewer digits for big values, "<0.1 %" for tiny ones). */
export function formatPercent(fraction) {
  if (fraction === null || fraction === undefined || Number.isNaN(fraction)) return '–';
  const pct = fraction * 100;
  if (pct === 0) return '0 %';
  if (pct < 0.1) return '<0.1 %';
  return `${pct.toFixed(pct >= 10 ? 0 : 1)} %`;
}

/** Milliseconds → "850 µs", "12.3 ms", "1.25 s". */
export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0 ms';
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** "30s" / "5m" / "1h" / "2d" → seconds (NaN when unreadable). */
export function parseWindow(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(String(text || '').trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return n * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] || 's'];
}

/** Seconds → "30s", "5m", "1h", "1h30m". */
export function formatWindow(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  if (seconds > 3600) return `${Math.floor(seconds / 3600)}h${Math.round((seconds % 3600) / 60)}m`;
  return `${seconds}s`;
}

/** A step giving 60–120 points over the window, from the steps people expect. */
export function autoStep(windowSeconds) {
  const steps = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  return steps.find((s) => windowSeconds / s <= 120) ?? 3600;
}

/** The trace search lookback covering a window (the search page offers these). */
export function lookbackFor(windowSeconds) {
  const options = [
    [300, '5m'],
    [900, '15m'],
    [3600, '1h'],
    [7200, '2h'],
    [21600, '6h'],
    [43200, '12h'],
    [86400, '24h'],
    [172800, '2d'],
    [604800, '7d'],
  ];
  return (options.find(([s]) => s >= windowSeconds) ?? options[options.length - 1])[1];
}

/** The search page's `tags` parameter (Jaeger's JSON form) for failed spans. */
export const ERROR_TAGS = JSON.stringify({ error: 'true' });

/** `reviews.default.svc.cluster.local` for a short name and a namespace. */
export function serviceFqdn(name, namespace) {
  if (!name) return '';
  if (name.includes('.')) return name;
  return namespace && namespace !== 'unknown' ? `${name}.${namespace}.svc.cluster.local` : name;
}

/** The service name proxies give their spans: `<service>.<namespace>` (Istio's). */
export function traceServiceName(name, namespace) {
  if (!name) return '';
  const short = name.split('.')[0];
  return namespace && namespace !== 'unknown' ? `${short}.${namespace}` : short;
}

/** Envoy response flags and what they mean (the ones meshtel's proxy sets, and Istio's). */
export const RESPONSE_FLAGS = {
  '-': 'none',
  UH: 'no healthy upstream host',
  UF: 'upstream connection failure',
  UO: 'upstream overflow (circuit breaker open)',
  NR: 'no route configured',
  URX: 'retry limit exceeded',
  NC: 'upstream cluster not found',
  DT: 'request or connection exceeded max duration',
  DC: 'downstream connection terminated',
  LH: 'local health check failed',
  UT: 'upstream request timeout',
  LR: 'connection local reset',
  UR: 'upstream remote reset',
  UC: 'upstream connection termination',
  DI: 'request delayed by fault injection',
  FI: 'request aborted by fault injection',
  RL: 'rate limited (quota exceeded)',
  RLSE: 'rate limit service error',
  UAEX: 'denied by external authorization',
  IH: 'invalid header value rejected',
  SI: 'stream idle timeout',
  DPE: 'downstream protocol error',
  UPE: 'upstream protocol error',
  UMSDR: 'upstream max stream duration reached',
  OM: 'overload manager',
};

/** "UO,URX" → [{flag, meaning}]. */
export function describeFlags(flags) {
  return String(flags || '-')
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean)
    .map((flag) => ({ flag, meaning: RESPONSE_FLAGS[flag] || 'Envoy response flag' }));
}

/** A palette for series (versions): distinct, readable on white. */
export const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#0891b2', '#db2777', '#65a30d', '#dc2626', '#4b5563', '#0d9488'];

/** Line styles of the latency quantiles in charts. */
export const QUANTILES = [
  { field: 'p50Ms', label: 'p50', dash: [2, 3] },
  { field: 'p95Ms', label: 'p95', dash: undefined },
  { field: 'p99Ms', label: 'p99', dash: [9, 4] },
];

/** `GET /api/metrics/timeseries` (the body). */
export function fetchTimeseries(params, options) {
  return get('/api/metrics/timeseries', params, options);
}

/** `GET /api/metrics/services` (the body). */
export function fetchServices(params, options) {
  return get('/api/metrics/services', params, options);
}

/** A series key → a label: {version: "v1"} → "v1", {} → "all". */
export function seriesLabel(key) {
  const values = Object.values(key || {}).filter((v) => v !== null && v !== undefined && v !== '');
  return values.length ? values.join(' · ') : 'all';
}

/**
 * A time-series answer → {x: [unix seconds], series: [{key, label, points: [point|null]}]},
 * every series aligned on the union of timestamps (missing points are null: gaps). Each
 * point gets `seconds` (the time its requests were counted over) and `perSecond` (its
 * requests / seconds): the step still running counts only the seconds so far (at least
 * a fifth of the step), so it does not draw as a drop to zero at the right edge.
 */
export function alignTimeseries(body, now = Date.now()) {
  const stamps = new Set();
  const series = Array.isArray(body?.series) ? body.series : [];
  for (const s of series) for (const p of s.points || []) stamps.add(p.t);
  const ts = [...stamps].sort((a, b) => a - b);
  const step = body?.stepSeconds || 0;
  const secondsOf = (t) => (step && t + step * 1000 > now ? Math.max(step / 5, Math.min(step, (now - t) / 1000)) : step || 1);
  const index = new Map(ts.map((t, i) => [t, i]));
  const aligned = series
    .map((s) => {
      const points = new Array(ts.length).fill(null);
      for (const p of s.points || []) {
        const seconds = secondsOf(p.t);
        const partial = seconds < step;
        const perSecond = partial || p.rate === null || p.rate === undefined ? (p.requests || 0) / seconds : p.rate;
        points[index.get(p.t)] = { ...p, seconds, partial, perSecond, errorsPerSecond: (p.errors || 0) / seconds };
      }
      return { key: s.key || {}, label: seriesLabel(s.key), points };
    })
    .sort((a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }));
  return { x: ts.map((t) => t / 1000), series: aligned };
}

/** Totals of an aligned series: requests, errors, error fraction, mean rate, peak latencies. */
export function seriesTotals(series, stepSeconds) {
  let requests = 0;
  let errors = 0;
  let n = 0;
  const peak = { p50Ms: null, p95Ms: null, p99Ms: null };
  for (const p of series.points) {
    if (!p) continue;
    n += 1;
    requests += p.requests || 0;
    errors += p.errors || 0;
    for (const q of Object.keys(peak)) {
      if (p[q] !== null && p[q] !== undefined && (peak[q] === null || p[q] > peak[q])) peak[q] = p[q];
    }
  }
  const seconds = series.points.reduce((sum, p) => sum + (p ? p.seconds || stepSeconds || 0 : stepSeconds || 0), 0);
  return { requests, errors, errorRate: requests ? errors / requests : null, rate: seconds ? requests / seconds : null, points: n, peak };
}

/** True when an API error means the metrics API is not on this server (yet). */
export function metricsApiMissing(error) {
  return error && (error.status === 404 || error.status === 405 || error.status === 501);
}

/** What to show when a metrics request failed: a compact explanation. */
export function metricsErrorNote(error, what = 'Metrics over time') {
  if (metricsApiMissing(error)) {
    return h(
      'div',
      { class: 'inline-error metrics-unavailable', role: 'status' },
      h('strong', {}, `${what} are not available from this server. `),
      'It does not answer ',
      h('code', {}, '/api/metrics/…'),
      ` (HTTP ${error.status}${error.message ? `: ${error.message}` : ''}).`,
    );
  }
  return h('div', { class: 'inline-error', role: 'alert' }, `${what}: ${error.status ? `HTTP ${error.status}: ` : ''}${error.message || error}`);
}

/** A small legend swatch + text for a level. */
export function levelBadge(level, text) {
  const cls = { ok: 'badge badge-ok', warn: 'badge badge-warn', error: 'badge badge-error', idle: 'badge' }[level] || 'badge';
  return h('span', { class: cls }, text);
}
