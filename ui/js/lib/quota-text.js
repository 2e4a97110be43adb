// Text helpers of the quota policies page (pages/quotas.js): a stored policy as YAML
// for editing, where a field sits in the editor's text, the YAML/JSON PUT, and the
// one-line summaries of matches, limits and audit changes.

import { url, ApiError, textMessage } from '../api.js';
import { formatNumber, formatAgo } from './dom.js';

const READ_ONLY = ['version', 'updatedAt', 'updatedBy'];

/* ---------- YAML out (for editing a stored policy) and small text helpers ---------- */

const PLAIN = /^[A-Za-z0-9_./][A-Za-z0-9_ ./()-]*$/;
const RESERVED = /^(true|false|null|yes|no|on|off|y|n|~|[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?|0x[0-9a-fA-F]+|0o[0-7]+|\.inf|\.nan)$/i;

export function yamlScalar(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const s = String(value);
  if (!s || !PLAIN.test(s) || RESERVED.test(s) || s.endsWith(' ')) return JSON.stringify(s);
  return s;
}

export function yamlKey(key) {
  return /^[A-Za-z0-9_.-]+$/.test(key) && !RESERVED.test(key) ? key : JSON.stringify(key);
}

export function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A JSON value as block YAML (objects and arrays nested, scalars quoted when needed). */
export function toYaml(value, indent = 0) {
  const pad = ' '.repeat(indent);
  const lines = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      if (isObject(item) && Object.keys(item).length) {
        const [first, ...rest] = toYaml(item, indent + 2).split('\n');
        lines.push(`${pad}- ${first.slice(indent + 2)}`, ...rest);
      } else if (Array.isArray(item) && item.length) {
        lines.push(`${pad}-`, toYaml(item, indent + 2));
      } else {
        lines.push(`${pad}- ${isObject(item) ? '{}' : Array.isArray(item) ? '[]' : yamlScalar(item)}`);
      }
    }
    return lines.join('\n');
  }
  for (const [key, v] of Object.entries(value)) {
    if (isObject(v) && Object.keys(v).length) lines.push(`${pad}${yamlKey(key)}:`, toYaml(v, indent + 2));
    else if (Array.isArray(v) && v.length) lines.push(`${pad}${yamlKey(key)}:`, toYaml(v, indent + 2));
    else lines.push(`${pad}${yamlKey(key)}: ${isObject(v) ? '{}' : Array.isArray(v) ? '[]' : yamlScalar(v)}`);
  }
  return lines.join('\n');
}

export function specOf(policy) {
  const spec = { ...policy };
  for (const f of READ_ONLY) delete spec[f];
  return spec;
}

/** The policy name written in the editor's text (YAML top-level `name:` or JSON). */
export function nameInText(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      const v = JSON.parse(trimmed);
      return typeof v?.name === 'string' ? v.name : '';
    } catch {
      return '';
    }
  }
  const m = /^name:[ \t]*(?:"([^"]*)"|'([^']*)'|([^\s#]+))/m.exec(text);
  return m ? m[1] ?? m[2] ?? m[3] ?? '' : '';
}

/** Line (0-based) of a field path (`overrides[1].maxAmount`) in YAML or JSON text. */
export function locateField(text, path) {
  const lines = text.split('\n');
  const segments = String(path || '')
    .split(/\.|\[(\d+)\]/)
    .filter((s) => s !== undefined && s !== '');
  let line = -1;
  let from = 0;
  for (const seg of segments) {
    if (/^\d+$/.test(seg)) {
      let seen = -1;
      for (let i = from; i < lines.length; i += 1) {
        if (/^\s*-(\s|$)/.test(lines[i]) || /^\s*\{/.test(lines[i])) {
          seen += 1;
          if (seen === Number(seg)) {
            line = i;
            from = i;
            break;
          }
        }
      }
      continue;
    }
    const escaped = seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const key = new RegExp(`(^|[\\s{,-])["']?${escaped}["']?\\s*:`);
    let found = -1;
    for (let i = from; i < lines.length; i += 1) {
      if (key.test(lines[i].replace(/#.*$/, ''))) {
        found = i;
        break;
      }
    }
    if (found < 0) break;
    line = found;
    from = found;
  }
  return line;
}

export function selectLine(textarea, line) {
  if (line < 0) return;
  const lines = textarea.value.split('\n');
  let start = 0;
  for (let i = 0; i < line; i += 1) start += lines[i].length + 1;
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line] || '').length);
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, line * lineHeight - textarea.clientHeight / 3);
}

/** PUT with a YAML body: api.request always sends JSON's Content-Type, so this is fetch. */
export async function putText(path, text, { token, headers }) {
  const json = text.trim().startsWith('{');
  const init = {
    method: 'PUT',
    headers: { accept: 'application/json', 'content-type': json ? 'application/json' : 'application/yaml', ...headers },
    body: text,
  };
  if (token) init.headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (error) {
    throw new ApiError(0, `cannot reach meshtel at ${location.host}: ${error.message}`, null);
  }
  const raw = await response.text();
  let body = null;
  try {
    body = raw ? JSON.parse(raw) : null;
  } catch {
    body = raw;
  }
  if (!response.ok) {
    const message = body && typeof body === 'object' && typeof body.error === 'string' ? body.error : typeof body === 'string' && body ? textMessage(response, body) : response.statusText || 'an empty answer';
    throw new ApiError(response.status, message, body);
  }
  return { status: response.status, headers: response.headers, body };
}

/** Field errors of an API error body: `details` (meshtel) or `fields` / `errors` shapes. */
export function fieldErrorsOf(body) {
  if (!body || typeof body !== 'object') return [];
  const list = body.details || body.fields || (Array.isArray(body.errors) ? body.errors : []);
  return Array.isArray(list) ? list.filter((e) => e && (e.field || e.path)).map((e) => ({ field: e.field || e.path, message: e.message || e.msg || '' })) : [];
}

/* ---------- summaries ---------- */

export function matchText(match) {
  if (!match || !Object.keys(match).length) return 'every request';
  const side = (w) => (w ? [w.service, w.workload, w.version && `(${w.version})`, w.namespace && `in ${w.namespace}`].filter(Boolean).join(' ') : '');
  const parts = [];
  const src = side(match.source);
  const dst = side(match.destination);
  if (src || dst) parts.push(`${src || 'any'} → ${dst || 'any'}`);
  if (match.method) parts.push(match.method);
  if (match.pathPrefix) parts.push(`${match.pathPrefix}*`);
  for (const [k, v] of Object.entries(match.headers || {})) parts.push(`${k}: ${v}`);
  return parts.join(' · ');
}

export function limitText(p) {
  if (p.unlimited) return 'unlimited';
  const algorithm = p.algorithm || 'fixed-window';
  return `${formatNumber(p.maxAmount ?? 0, 1)} / ${p.validDuration || '?'} · ${algorithm}${p.burst ? ` (burst ${p.burst})` : ''}`;
}

export function whenText(rfc3339) {
  const ms = Date.parse(rfc3339);
  if (Number.isNaN(ms)) return rfc3339 || '';
  return formatAgo(ms * 1000);
}

/** Changed leaves between two specs: [{path, before, after}]. */
export function diffSpecs(before, after, prefix = '') {
  const out = [];
  const keys = new Set([...Object.keys(before || {}), ...Object.keys(after || {})]);
  for (const key of keys) {
    const a = before ? before[key] : undefined;
    const b = after ? after[key] : undefined;
    const path = prefix ? `${prefix}.${key}` : key;
    if (isObject(a) && isObject(b)) out.push(...diffSpecs(a, b, path));
    else if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path, before: a, after: b });
  }
  return out;
}

export function short(value) {
  if (value === undefined) return '∅';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}
