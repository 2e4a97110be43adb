// Search form helpers: lookback windows, Go-style duration validation, the logfmt
// tags box (as in Jaeger UI) ⇄ the `tags` JSON parameter, datetime-local values.

export const LOOKBACKS = [
  ['5m', 'Last 5 minutes', 5 * 60],
  ['15m', 'Last 15 minutes', 15 * 60],
  ['1h', 'Last hour', 3600],
  ['2h', 'Last 2 hours', 2 * 3600],
  ['6h', 'Last 6 hours', 6 * 3600],
  ['12h', 'Last 12 hours', 12 * 3600],
  ['24h', 'Last 24 hours', 24 * 3600],
  ['2d', 'Last 2 days', 2 * 86400],
  ['7d', 'Last 7 days', 7 * 86400],
];

export const DEFAULT_LOOKBACK = '1h';
export const DEFAULT_LIMIT = 20;
/**
 * The most traces one search returns: the query service's `[query] max_search_limit`,
 * which the page carries, else its default.
 */
export const MAX_LIMIT = (() => {
  const meta = typeof document === 'undefined' ? null : document.querySelector('meta[name="meshtel-max-search-limit"]');
  const limit = Number(meta?.content);
  return Number.isInteger(limit) && limit > 0 ? limit : 1500;
})();

/** {start, end} in µs for a lookback key (unknown keys fall back to 1h). */
export function lookbackRange(lookback, nowUs = Date.now() * 1000) {
  const entry = LOOKBACKS.find(([key]) => key === lookback) || LOOKBACKS.find(([key]) => key === DEFAULT_LOOKBACK);
  return { start: Math.floor(nowUs - entry[2] * 1e6), end: Math.ceil(nowUs) };
}

/** The lookback key that best matches an arbitrary label, for display. */
export function lookbackLabel(lookback) {
  const entry = LOOKBACKS.find(([key]) => key === lookback);
  return entry ? entry[1] : lookback;
}

// Go's time.ParseDuration: a sequence of decimal numbers with units; "0" alone is fine.
const DURATION_RE = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;

/** null when `text` is empty or a valid duration, else a message. */
export function durationError(text) {
  const t = (text || '').trim();
  if (t.startsWith('-')) return 'Must not be negative';
  if (!t || t === '0' || DURATION_RE.test(t)) return null;
  if (/^\d+(\.\d+)?$/.test(t)) return 'Add a unit, e.g. 100ms, 1.2s or 500us';
  if (/\d\s*d$/.test(t)) return 'Days are not supported; use hours, e.g. 48h';
  return 'Not a duration; use e.g. 100ms, 1.2s, 500us or 1m30s';
}

/** A duration text → µs (for comparing min and max); NaN when invalid or empty. */
export function durationToUs(text) {
  const t = (text || '').trim();
  if (!t || durationError(t)) return NaN;
  if (t === '0') return 0;
  const units = { ns: 1e-3, us: 1, µs: 1, μs: 1, ms: 1e3, s: 1e6, m: 6e7, h: 3.6e9 };
  let total = 0;
  const sign = t.startsWith('-') ? -1 : 1;
  for (const match of t.matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) total += parseFloat(match[1]) * units[match[2]];
  return sign * total;
}

/**
 * Parses the tags box: logfmt `key=value` pairs separated by spaces or newlines;
 * values may be "double quoted" (with \" escapes); a bare key means `key=true`.
 * Returns {tags: {key: "value"}, error: null|string}.
 */
export function parseTags(text) {
  const tags = {};
  const s = text || '';
  let i = 0;
  const isSpace = (ch) => ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r';
  while (i < s.length) {
    while (i < s.length && isSpace(s[i])) i += 1;
    if (i >= s.length) break;
    let key = '';
    if (s[i] === '"') {
      const [value, next, ok] = readQuoted(s, i);
      if (!ok) return { tags, error: 'Unterminated quote in tags' };
      key = value;
      i = next;
    } else {
      while (i < s.length && !isSpace(s[i]) && s[i] !== '=') key += s[i++];
    }
    if (!key) return { tags, error: `Expected key=value near "${s.slice(i, i + 12)}"` };
    if (s[i] !== '=') {
      tags[key] = 'true';
      continue;
    }
    i += 1;
    let value = '';
    if (s[i] === '"') {
      const [quoted, next, ok] = readQuoted(s, i);
      if (!ok) return { tags, error: 'Unterminated quote in tags' };
      value = quoted;
      i = next;
    } else {
      while (i < s.length && !isSpace(s[i])) value += s[i++];
    }
    tags[key] = value;
  }
  return { tags, error: null };
}

function readQuoted(s, start) {
  let i = start + 1;
  let out = '';
  while (i < s.length) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      const next = s[i + 1];
      out += next === 'n' ? '\n' : next === 't' ? '\t' : next;
      i += 2;
    } else if (ch === '"') {
      return [out, i + 1, true];
    } else {
      out += ch;
      i += 1;
    }
  }
  return [out, i, false];
}

/** {key: value} → logfmt text for the tags box. */
export function tagsToText(tags) {
  return Object.entries(tags)
    .map(([key, value]) => {
      const v = String(value);
      const k = /[\s="]/.test(key) || !key ? `"${key.replace(/["\\]/g, '\\$&')}"` : key;
      return /[\s="]/.test(v) || v === '' ? `${k}="${v.replace(/["\\]/g, '\\$&')}"` : `${k}=${v}`;
    })
    .join(' ');
}

/** The `tags` URL parameter (Jaeger's JSON object, or logfmt typed by hand) → box text. */
export function tagsParamToText(param) {
  if (!param) return '';
  try {
    const parsed = JSON.parse(param);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return tagsToText(parsed);
  } catch {
    // not JSON: keep it as typed
  }
  return param;
}

/**
 * µs since the epoch → a datetime-local value in local time, to the second
 * ("2026-12-01T14:03:07"), rounded by `round` (Math.floor for a start, Math.ceil for an
 * end, so that the range shown still holds the one given).
 */
export function toLocalInput(us, round = Math.floor) {
  const d = new Date(round(us / 1e6) * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A datetime-local value → µs since the epoch (NaN when empty or invalid). */
export function fromLocalInput(value) {
  if (!value) return NaN;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? NaN : ms * 1000;
}

/**
 * The trace id in what was pasted into the top bar's box: a bare id (1 to 32 hex
 * digits, 64-bit ids too), or the id in a `traceparent` or `b3` header value or a
 * `trace_id=…` pair as copied from a log line; null when there is none.
 */
export function traceIdOf(text) {
  const unquote = (value) => value.trim().replace(/[,;]$/, '').replace(/^["']|["']$/g, '');
  let id = unquote(text);
  // `trace_id=…`, `trace_id="…"` (logfmt), `"trace_id":"…"` (JSON), `traceparent: …`.
  const pair = text.trim().match(/^["']?[\w.-]+["']?\s*[=:]\s*(.+)$/);
  if (pair) id = unquote(pair[1]);
  const traceparent = id.match(/^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/i);
  if (traceparent) return traceparent[1];
  const b3 = id.match(/^([0-9a-f]{16}|[0-9a-f]{32})-[0-9a-f]{16}(?:-[01d](?:-[0-9a-f]{16})?)?$/i);
  if (b3) return b3[1];
  return /^[0-9a-f]{1,32}$/i.test(id) ? id : null;
}
