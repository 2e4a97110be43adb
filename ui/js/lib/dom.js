// Small DOM helpers shared by every page: an element builder, formatters, and the
// loading / empty / error states every view shows the same way.

/**
 * h('div', {class: 'x', onclick: fn}, child, 'text', [more, children]) → HTMLElement.
 * Attributes starting with "on" become listeners; `null`/`false` attributes and
 * children are skipped; `dataset` and `style` objects are merged.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(el.style, value);
    } else if (key === 'class') {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/**
 * SVG element builder (same conventions as `h`). Styles go in as objects: a `style`
 * attribute string is an inline style, which the UI's Content-Security-Policy refuses.
 */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Microseconds → "850µs", "12.3ms", "4.56s", "2m 3s". */
export function formatDuration(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return '–';
  if (us < 0) return `-${formatDuration(-us)}`;
  // Each unit up to where its rounding would reach the next (999.96ms is "1.00s",
  // not "1000.0ms").
  if (us < 999.5) return `${Math.round(us)}µs`;
  if (us < 9_995) return `${(us / 1000).toFixed(2)}ms`;
  if (us < 999_950) return `${(us / 1000).toFixed(1)}ms`;
  if (us < 59_995_000) return `${(us / 1_000_000).toFixed(2)}s`;
  const s = Math.round(us / 1_000_000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ${s % 60}s`;
}

/** An offset from a trace's start: "+1.20ms", or "-2.01s" for a skewed clock. */
export function formatOffset(us) {
  return us < 0 ? formatDuration(us) : `+${formatDuration(us)}`;
}

/** Microseconds since the epoch → "2026-12-01 14:03:07.123" (local time). */
export function formatTime(us, withMs = true) {
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
}

/**
 * The browser's time zone, short ("UTC", "EST", "GMT+1"): every time on these pages is
 * the browser's local time, and says so where it is shown.
 */
export function zoneName(date = new Date()) {
  try {
    const part = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' }).formatToParts(date).find((p) => p.type === 'timeZoneName');
    return part ? part.value : '';
  } catch {
    return '';
  }
}

/** Microseconds since the epoch → "2026-12-01 14:03:07.123 UTC" (local time, its zone). */
export function formatTimeZoned(us, withMs = true) {
  const zone = zoneName(new Date(us / 1000));
  return zone ? `${formatTime(us, withMs)} ${zone}` : formatTime(us, withMs);
}

/** Milliseconds since the epoch (default now) → "14:03:07 UTC": local 24-hour clock time. */
export function formatClock(ms = Date.now()) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  const zone = zoneName(d);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${zone ? ` ${zone}` : ''}`;
}

/** "3 minutes ago". */
export function formatAgo(us) {
  const s = Math.max(0, (Date.now() * 1000 - us) / 1_000_000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** 1234.5 → "1.23k", rates and counts. */
export function formatNumber(n, digits = 2) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const abs = Math.abs(n);
  if (abs >= 1e6) return `${(n / 1e6).toFixed(digits)}M`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(digits)}k`;
  if (abs >= 100 || Number.isInteger(n)) return String(Math.round(n));
  return n.toFixed(digits);
}

/** A loading state; `label` says what is being loaded. */
export function loading(label = 'Loading…') {
  return h('div', { class: 'state state-loading', role: 'status', 'aria-live': 'polite' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
}

/** An empty state: a title and what to do about it (text or nodes). */
export function empty(title, ...help) {
  return h('div', { class: 'state state-empty' }, h('h2', {}, title), h('div', { class: 'state-help' }, ...help));
}

/** An error state showing what the API said. */
export function errorState(error, retry) {
  // A 2xx the page could not read is no HTTP failure: its message says what was wrong.
  const status = error && error.status >= 300 ? `HTTP ${error.status}: ` : '';
  return h(
    'div',
    { class: 'state state-error', role: 'alert' },
    h('h2', {}, 'Something went wrong'),
    h('p', { class: 'error-message' }, status + (error && error.message ? error.message : String(error))),
    retry ? h('button', { class: 'btn', type: 'button', onclick: retry }, 'Try again') : null,
  );
}

const assignedColors = new Map();

/** A colour per service name, stable for the page's lifetime: names get hues in the
 * order they are first asked for, each a golden angle (137.5°) from the previous, so
 * the services of one trace or graph always look different (as Jaeger UI does). */
export function serviceColor(name) {
  let color = assignedColors.get(name);
  if (!color) {
    const n = assignedColors.size;
    const hue = Math.round((200 + n * 137.508) % 360);
    const lightness = [44, 36, 52][Math.floor(n / 8) % 3];
    color = `hsl(${hue} 62% ${lightness}%)`;
    assignedColors.set(name, color);
  }
  return color;
}

/** Debounces `fn` by `ms`. */
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
