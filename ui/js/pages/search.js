// Trace search (/search): a Jaeger-style form whose whole state lives in the query
// string (service, operation, tags, minDuration, maxDuration, lookback | start+end,
// limit, sort), a duration-vs-time scatter plot, and a sortable result list whose
// items are real links to /trace/{id}.

import { get, base } from '../api.js';
import { h, replace, formatDuration, formatTime, formatTimeZoned, formatAgo, loading, empty, errorState, serviceColor, zoneName } from '../lib/dom.js';
import { renderScatter } from '../lib/scatter.js';
import { summarizeTrace } from '../lib/trace-model.js';
import {
  LOOKBACKS, DEFAULT_LOOKBACK, DEFAULT_LIMIT, MAX_LIMIT, lookbackRange, lookbackLabel, durationError, durationToUs,
  parseTags, tagsParamToText, toLocalInput, fromLocalInput,
} from '../lib/trace-query.js';

export const title = 'Trace search';

const SORTS = [
  ['recent', 'Most recent'],
  ['longest', 'Longest first'],
  ['shortest', 'Shortest first'],
  ['spans', 'Most spans'],
  ['errors', 'Errors first'],
];
const SERVICE_KEY = 'meshtel.search.service';
/** sessionStorage key: the query string of the last search (the trace page links back to it). */
export const LAST_SEARCH_KEY = 'meshtel.search.last';
const MAX_SERVICES_IN_RESULT = 6;

// Carried across the remount that ctx.setParams causes, so keyboard focus stays put.
let refocusId = null;

function storage(kind) {
  try {
    return kind === 'local' ? window.localStorage : window.sessionStorage;
  } catch {
    return null;
  }
}

/**
 * What is wrong with the search a URL describes (a link cut short, a value typed by
 * hand), each naming its parameter: such a link is not searched with guesses put in
 * place of what it says.
 */
function urlProblems(params) {
  const problems = [];
  const limit = params.get('limit');
  if (limit !== null && limit !== '' && !/^\d+$/.test(limit.trim())) problems.push(['limit', `limit "${limit}": not a whole number (1 to ${MAX_LIMIT})`]);
  else if (limit !== null && limit.trim() !== '' && parseInt(limit, 10) < 1) problems.push(['limit', `limit "${limit}": at least 1`]);
  const lookback = params.get('lookback');
  if (lookback && lookback !== 'custom' && !LOOKBACKS.some(([key]) => key === lookback)) {
    problems.push(['lookback', `lookback "${lookback}": not one of ${LOOKBACKS.map(([key]) => key).join(', ')} (or custom with start and end)`]);
  }
  // A custom range: lookback=custom, or start/end without a lookback.
  if (lookback === 'custom' || (!lookback && (params.get('start') || params.get('end')))) {
    const start = Number(params.get('start'));
    const end = Number(params.get('end'));
    if (!(Number.isFinite(start) && start > 0 && Number.isFinite(end) && end > start)) {
      problems.push(['lookback', `start "${params.get('start') ?? ''}", end "${params.get('end') ?? ''}": a custom range needs both, in microseconds since the epoch, the end after the start`]);
    }
  }
  const tags = params.get('tags');
  if (tags && /^[[{]/.test(tags.trim())) {
    try {
      const parsed = JSON.parse(tags);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) problems.push(['tags', 'tags: not a JSON object of key: value']);
    } catch {
      problems.push(['tags', `tags ${JSON.stringify(tags)}: not valid JSON (was the link cut short?)`]);
    }
  } else if (tags) {
    const { error } = parseTags(tags);
    if (error) problems.push(['tags', `tags: ${error}`]);
  }
  for (const name of ['minDuration', 'maxDuration']) {
    const value = params.get(name);
    const error = durationError(value);
    if (error) problems.push([name, `${name} "${value}": ${error}`]);
  }
  const min = durationToUs(params.get('minDuration'));
  const max = durationToUs(params.get('maxDuration'));
  if (Number.isFinite(min) && Number.isFinite(max) && max < min) problems.push(['maxDuration', 'maxDuration: less than minDuration']);
  return problems;
}

/** The search described by the URL. */
function readState(params) {
  const lookbackParam = params.get('lookback') || '';
  const start = Number(params.get('start'));
  const end = Number(params.get('end'));
  const custom = (lookbackParam === 'custom' || !lookbackParam) && Number.isFinite(start) && start > 0 && Number.isFinite(end) && end > start;
  const limit = parseInt(params.get('limit') || '', 10);
  const operation = params.get('operation') || '';
  const sort = params.get('sort') || 'recent';
  return {
    service: params.get('service') || '',
    operation: operation === 'all' ? '' : operation,
    tagsText: tagsParamToText(params.get('tags') || ''),
    minDuration: params.get('minDuration') || '',
    maxDuration: params.get('maxDuration') || '',
    lookback: custom ? 'custom' : LOOKBACKS.some(([key]) => key === lookbackParam) ? lookbackParam : DEFAULT_LOOKBACK,
    start: custom && Number.isFinite(start) && start > 0 ? start : NaN,
    end: custom && Number.isFinite(end) && end > 0 ? end : NaN,
    // A limit in the URL above what one search returns is that most, said so in the
    // results' header, rather than asked for and silently cut by the server.
    limit: Math.min(Number.isFinite(limit) && limit > 0 ? limit : DEFAULT_LIMIT, MAX_LIMIT),
    sort: SORTS.some(([key]) => key === sort) ? sort : 'recent',
  };
}

/** The URL parameters of a search (empty values are dropped by the router). */
function urlParams(state) {
  const { tags } = parseTags(state.tagsText);
  const custom = state.lookback === 'custom';
  return {
    service: state.service,
    operation: state.operation,
    tags: Object.keys(tags).length ? JSON.stringify(tags) : '',
    minDuration: state.minDuration.trim(),
    maxDuration: state.maxDuration.trim(),
    lookback: state.lookback,
    start: custom ? state.start : '',
    end: custom ? state.end : '',
    limit: state.limit,
    sort: state.sort === 'recent' ? '' : state.sort,
  };
}

function queryString(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '' || Number.isNaN(value)) continue;
    query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `?${qs}` : '';
}

/** Rewrites the query string without a page re-render (sort changes, defaults). */
function replaceUrl(params) {
  const href = location.pathname + queryString(params);
  if (href !== location.pathname + location.search) history.replaceState(null, '', href);
}

function traceHref(id) {
  return `${base}/trace/${encodeURIComponent(id)}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

const SORTERS = {
  recent: (a, b) => b.start - a.start,
  longest: (a, b) => b.duration - a.duration || b.start - a.start,
  shortest: (a, b) => a.duration - b.duration || b.start - a.start,
  spans: (a, b) => b.spanCount - a.spanCount || b.start - a.start,
  errors: (a, b) => b.errorCount - a.errorCount || b.start - a.start,
};

export function mount(root, ctx) {
  const state = readState(ctx.params);
  const controller = new AbortController();
  let searchController = null;
  let searchToken = 0;
  let opsToken = 0;
  let scatter = null;
  let summaries = [];
  let lastSearch = state;

  // ---- form -------------------------------------------------------------------
  const fieldError = (id) => h('div', { class: 'field-error', id, 'aria-live': 'polite' });
  const serviceSel = h('select', { id: 'search-service', name: 'service', required: true, disabled: !state.service }, h('option', { value: state.service }, state.service || 'Loading services…'));
  const opSel = h('select', { id: 'search-operation', name: 'operation' }, h('option', { value: '' }, 'All operations'));
  const opError = fieldError('search-operation-error');
  const tagsInput = h('textarea', {
    id: 'search-tags',
    name: 'tags',
    rows: 2,
    spellcheck: 'false',
    autocomplete: 'off',
    placeholder: 'http.status_code=500 error=true',
    'aria-describedby': 'search-tags-help search-tags-error',
  });
  tagsInput.value = state.tagsText;
  const tagsError = fieldError('search-tags-error');
  const minInput = h('input', { id: 'search-min-duration', name: 'minDuration', type: 'text', inputmode: 'text', autocomplete: 'off', placeholder: 'e.g. 100ms', value: state.minDuration, 'aria-describedby': 'search-duration-error' });
  const maxInput = h('input', { id: 'search-max-duration', name: 'maxDuration', type: 'text', autocomplete: 'off', placeholder: 'e.g. 1.2s', value: state.maxDuration, 'aria-describedby': 'search-duration-error' });
  const durationErr = fieldError('search-duration-error');
  const lookbackSel = h(
    'select',
    { id: 'search-lookback', name: 'lookback' },
    LOOKBACKS.map(([key, label]) => h('option', { value: key }, label)),
    h('option', { value: 'custom' }, 'Custom time range'),
  );
  lookbackSel.value = state.lookback;
  // The range shown: a link's own (to the microsecond, kept as long as the fields are
  // not edited), else filled from the lookback at the moment "Custom" is chosen.
  let exactRange = state.lookback === 'custom' && Number.isFinite(state.start) && Number.isFinite(state.end)
    ? { start: state.start, end: state.end } : null;
  const rangeInput = (id, name, us, round) => h('input', {
    id, name, type: 'datetime-local', step: 1, value: us === undefined ? '' : toLocalInput(us, round), 'aria-describedby': 'search-range-error',
  });
  const startInput = rangeInput('search-start', 'start', exactRange?.start, Math.floor);
  const endInput = rangeInput('search-end', 'end', exactRange?.end, Math.ceil);
  const rangeError = fieldError('search-range-error');
  const customFields = h(
    'div',
    { class: 'search-custom-range', hidden: state.lookback !== 'custom' },
    h('label', { class: 'field' }, 'From', startInput),
    h('label', { class: 'field' }, 'To', endInput),
    rangeError,
  );
  const limitInput = h('input', { id: 'search-limit', name: 'limit', type: 'number', min: 1, max: MAX_LIMIT, step: 1, value: state.limit, 'aria-describedby': 'search-limit-error' });
  const limitError = fieldError('search-limit-error');
  const submit = h('button', { id: 'search-submit', class: 'btn btn-primary', type: 'submit' }, 'Find traces');

  const form = h(
    'form',
    { id: 'search-form', class: 'search-form', 'aria-label': 'Search traces', novalidate: true },
    h('h1', {}, 'Search traces'),
    h('label', { class: 'field' }, 'Service', serviceSel),
    h('label', { class: 'field' }, 'Operation', opSel),
    opError,
    h(
      'label',
      { class: 'field' },
      'Tags',
      tagsInput,
    ),
    h('div', { class: 'muted small', id: 'search-tags-help' }, 'key=value pairs, space or newline separated; quote values with spaces.'),
    tagsError,
    h('label', { class: 'field' }, 'Lookback', lookbackSel),
    customFields,
    h('div', { class: 'search-form-pair' }, h('label', { class: 'field' }, 'Min duration', minInput), h('label', { class: 'field' }, 'Max duration', maxInput)),
    durationErr,
    h('label', { class: 'field' }, 'Limit results', limitInput),
    limitError,
    submit,
  );

  const resultsEl = h('section', { class: 'search-results', 'aria-label': 'Search results' });
  const page = h('div', { class: 'search-page' }, h('aside', { class: 'panel search-sidebar' }, form), resultsEl);
  root.append(page);

  // Restore focus after the remount a submit caused.
  if (refocusId) {
    const el = document.getElementById(refocusId);
    refocusId = null;
    if (el) el.focus({ preventScroll: true });
  }

  // ---- form behaviour ---------------------------------------------------------
  // Choosing "Custom" fills the fields with the lookback chosen before it, up to now.
  let previousLookback = lookbackSel.value;
  lookbackSel.addEventListener('change', () => {
    const custom = lookbackSel.value === 'custom';
    customFields.hidden = !custom;
    if (custom) {
      const range = lookbackRange(previousLookback !== 'custom' ? previousLookback : DEFAULT_LOOKBACK);
      exactRange = range;
      startInput.value = toLocalInput(range.start, Math.floor);
      endInput.value = toLocalInput(range.end, Math.ceil);
    }
    previousLookback = lookbackSel.value;
  });
  for (const input of [startInput, endInput]) {
    input.addEventListener('input', () => { exactRange = null; });
  }
  tagsInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  serviceSel.addEventListener('change', () => {
    loadOperations(serviceSel.value, '');
  });

  function setError(input, errorEl, message) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    errorEl.textContent = message || '';
  }

  /** The form's search, or null after marking the invalid fields. */
  function collect() {
    const next = {
      service: serviceSel.value,
      operation: opSel.value,
      tagsText: tagsInput.value.trim(),
      minDuration: minInput.value.trim(),
      maxDuration: maxInput.value.trim(),
      lookback: lookbackSel.value,
      start: NaN,
      end: NaN,
      limit: parseInt(limitInput.value, 10),
      sort: lastSearch.sort,
    };
    const invalid = [];
    const tagsResult = parseTags(next.tagsText);
    setError(tagsInput, tagsError, tagsResult.error);
    if (tagsResult.error) invalid.push(tagsInput);

    const minErr = durationError(next.minDuration);
    const maxErr = durationError(next.maxDuration);
    let orderMsg = '';
    if (!minErr && !maxErr && next.minDuration && next.maxDuration && durationToUs(next.maxDuration) < durationToUs(next.minDuration)) {
      orderMsg = 'Max duration must be greater than min duration';
    }
    setError(minInput, durationErr, minErr ? `Min duration: ${minErr}` : '');
    setError(maxInput, durationErr, maxErr ? `Max duration: ${maxErr}` : orderMsg);
    durationErr.textContent = minErr ? `Min duration: ${minErr}` : maxErr ? `Max duration: ${maxErr}` : orderMsg;
    if (minErr) invalid.push(minInput);
    else if (maxErr || orderMsg) invalid.push(maxInput);

    if (next.lookback === 'custom') {
      next.start = exactRange ? exactRange.start : fromLocalInput(startInput.value);
      next.end = exactRange ? exactRange.end : fromLocalInput(endInput.value);
      let msg = '';
      if (Number.isNaN(next.start) || Number.isNaN(next.end)) msg = 'Enter both a start and an end time';
      else if (next.end <= next.start) msg = 'The end must be after the start';
      setError(startInput, rangeError, msg);
      if (msg) invalid.push(startInput);
    }
    if (!Number.isFinite(next.limit) || next.limit < 1 || next.limit > MAX_LIMIT) {
      setError(limitInput, limitError, `Enter a limit between 1 and ${MAX_LIMIT}`);
      invalid.push(limitInput);
    } else {
      setError(limitInput, limitError, '');
    }
    if (!next.service) {
      serviceSel.setAttribute('aria-invalid', 'true');
      invalid.push(serviceSel);
    } else {
      serviceSel.removeAttribute('aria-invalid');
    }
    if (invalid.length) {
      invalid[0].focus();
      return null;
    }
    return next;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = collect();
    if (!next) return;
    storage('local')?.setItem(SERVICE_KEY, next.service);
    const params = urlParams(next);
    if (queryString(params) === location.search) {
      // Same URL (a relative lookback moves with the clock): search again in place.
      runSearch(next);
      return;
    }
    refocusId = document.activeElement && document.activeElement.id ? document.activeElement.id : 'search-submit';
    ctx.setParams(params);
  });

  // ---- data -------------------------------------------------------------------
  async function loadOperations(service, selected) {
    const token = ++opsToken;
    opError.textContent = '';
    if (!service) {
      replace(opSel, h('option', { value: '' }, 'All operations'));
      return;
    }
    opSel.disabled = true;
    replace(opSel, h('option', { value: selected || '' }, selected || 'Loading operations…'));
    let ops = [];
    try {
      const body = await get(`/api/services/${encodeURIComponent(service)}/operations`, undefined, { signal: controller.signal });
      if (token !== opsToken) return;
      ops = Array.isArray(body && body.data) ? [...body.data].sort((a, b) => a.localeCompare(b)) : [];
    } catch (error) {
      if (error.name === 'AbortError' || token !== opsToken) return;
      opError.textContent = `Cannot load operations: ${error.message}`;
    }
    if (selected && !ops.includes(selected)) ops.unshift(selected);
    replace(opSel, h('option', { value: '' }, 'All operations'), ops.map((op) => h('option', { value: op }, op)));
    opSel.value = selected || '';
    opSel.disabled = false;
  }

  async function loadServices() {
    if (!state.service) serviceSel.disabled = true;
    let services;
    try {
      const body = await get('/api/services', undefined, { signal: controller.signal });
      services = Array.isArray(body && body.data) ? [...body.data].sort((a, b) => a.localeCompare(b)) : [];
    } catch (error) {
      if (error.name === 'AbortError') return;
      replace(serviceSel, h('option', { value: state.service }, state.service || 'Services unavailable'));
      serviceSel.disabled = !state.service;
      if (!state.service) replace(resultsEl, errorState(error, loadServices));
      return;
    }
    if (!services.length && !state.service) {
      replace(serviceSel, h('option', { value: '' }, 'No services yet'));
      replace(resultsEl, noDataState());
      return;
    }
    const list = state.service && !services.includes(state.service) ? [state.service, ...services] : services;
    replace(serviceSel, list.map((name) => h('option', { value: name }, name)));
    serviceSel.disabled = false;
    if (state.service) {
      serviceSel.value = state.service;
      return;
    }
    // No search in the URL: pick the last-used (or first) service and search right away.
    const remembered = storage('local')?.getItem(SERVICE_KEY);
    const service = remembered && services.includes(remembered) ? remembered : services[0];
    serviceSel.value = service;
    const next = { ...state, service };
    lastSearch = next;
    replaceUrl(urlParams(next));
    loadOperations(service, '');
    runSearch(next);
  }

  async function runSearch(search) {
    const token = ++searchToken;
    lastSearch = search;
    if (searchController) searchController.abort();
    searchController = new AbortController();
    const signal = searchController.signal;
    if (scatter) {
      scatter.destroy();
      scatter = null;
    }
    resultsEl.setAttribute('aria-busy', 'true');
    replace(resultsEl, loading('Searching traces…'));
    const range = search.lookback === 'custom' ? { start: search.start, end: search.end } : lookbackRange(search.lookback);
    const { tags } = parseTags(search.tagsText);
    let body;
    try {
      body = await get(
        '/api/traces',
        {
          service: search.service,
          operation: search.operation,
          tags: Object.keys(tags).length ? JSON.stringify(tags) : '',
          minDuration: search.minDuration,
          maxDuration: search.maxDuration,
          start: Math.floor(range.start),
          end: Math.ceil(range.end),
          limit: search.limit,
        },
        { signal },
      );
    } catch (error) {
      if (error.name === 'AbortError' || token !== searchToken) return;
      resultsEl.removeAttribute('aria-busy');
      replace(resultsEl, errorState(error, () => runSearch(search)));
      return;
    }
    if (token !== searchToken) return;
    storage('session')?.setItem(LAST_SEARCH_KEY, location.search);
    summaries = (Array.isArray(body && body.data) ? body.data : []).filter((t) => t && t.spans && t.spans.length).map(summarizeTrace);
    resultsEl.removeAttribute('aria-busy');
    renderResults(search, body && Array.isArray(body.errors) ? body.errors : []);
  }

  // ---- results ----------------------------------------------------------------
  function noDataState() {
    return empty(
      'No traces yet',
      h('p', {}, 'meshtel has not received any spans. Point an OpenTelemetry SDK or collector at one of its receivers (their default addresses; a meshtel started on other ports or hosts lists its own in ', h('code', {}, 'listeners.json'), ' in its data directory):'),
      h(
        'ul',
        { class: 'search-receivers' },
        h('li', {}, h('strong', {}, 'OTLP gRPC: '), h('code', {}, '127.0.0.1:4317')),
        h('li', {}, h('strong', {}, 'OTLP HTTP: '), h('code', {}, 'http://127.0.0.1:4318/v1/traces')),
        h('li', {}, h('strong', {}, 'Zipkin v2: '), h('code', {}, 'http://127.0.0.1:9411/api/v2/spans')),
      ),
      h('pre', {}, 'OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\\nOTEL_SERVICE_NAME=my-service ./my-app'),
      h('p', {}, 'Or run your services behind the meshtel sidecar proxies (', h('code', {}, 'meshtel proxy'), '), which report a span for each request they sample (1 % of new traces unless started with --sampling). Traces show up here a moment after they arrive.'),
      h('p', {}, h('button', { class: 'btn', type: 'button', onclick: () => loadServices() }, 'Check again')),
    );
  }

  function widen(lookback) {
    lookbackSel.value = lookback;
    customFields.hidden = true;
    form.requestSubmit();
  }

  function renderResults(search, errors) {
    const count = summaries.length;
    const sortSel = h('select', { id: 'search-sort', 'aria-label': 'Sort results' }, SORTS.map(([key, label]) => h('option', { value: key }, label)));
    sortSel.value = search.sort;
    const list = h('ol', { class: 'search-result-list', 'aria-label': 'Traces' });
    sortSel.addEventListener('change', () => {
      search.sort = sortSel.value;
      lastSearch = search;
      replaceUrl(urlParams(search));
      storage('session')?.setItem(LAST_SEARCH_KEY, location.search);
      renderList(list, search.sort);
    });
    const range = search.lookback === 'custom' ? `${formatTime(search.start, false)} – ${formatTimeZoned(search.end, false)}` : lookbackLabel(search.lookback).toLowerCase();
    const zone = zoneName();
    const head = h(
      'div',
      { class: 'search-results-head' },
      h('h2', { id: 'search-count', 'data-count': String(count), 'aria-live': 'polite' }, plural(count, 'trace')),
      h('span', { class: 'muted small' }, `${search.service}${search.operation ? ` · ${search.operation}` : ''} · ${range}${count >= search.limit ? ` · newest ${search.limit} shown, ${search.limit >= MAX_LIMIT ? 'the most one search returns: narrow the time range for more' : 'raise the limit for more'}` : ''}${zone ? ` · times in ${zone}` : ''}`),
      h('span', { class: 'grow' }),
      count ? h('label', { class: 'search-sort-label' }, 'Sort', sortSel) : null,
    );
    const partial = errors.length ? h('div', { class: 'inline-error', role: 'alert' }, `Some traces could not be loaded: ${errors.map((e) => (e.traceID ? `${e.traceID}: ` : '') + (e.msg || JSON.stringify(e))).join('; ')}`) : null;
    if (!count) {
      const wider = LOOKBACKS.filter(([key, , secs]) => search.lookback === 'custom' || secs > (LOOKBACKS.find(([k]) => k === search.lookback) || [0, 0, 0])[2]).slice(-2);
      replace(
        resultsEl,
        head,
        partial,
        empty(
          'No traces found',
          h('p', {}, `No trace of ${search.service}${search.operation ? ` (${search.operation})` : ''} matched ${search.tagsText || search.minDuration || search.maxDuration ? 'these filters ' : ''}in the ${range}.`),
          h('p', {}, 'Try a longer lookback, fewer tags, or a wider duration range.'),
          wider.length ? h('p', { class: 'row' }, wider.map(([key, label]) => h('button', { class: 'btn', type: 'button', onclick: () => widen(key) }, `Search the ${label.toLowerCase()}`))) : null,
        ),
      );
      return;
    }
    const scatterEl = h('div', { id: 'search-scatter', class: 'panel search-scatter' });
    replace(resultsEl, scatterEl, partial, head, list);
    const points = summaries.map((s) => ({
      id: s.traceID,
      time: s.start,
      duration: s.duration,
      spans: s.spanCount,
      errors: s.errorCount,
      label: `${s.rootService}: ${s.rootOperation}`,
      href: traceHref(s.traceID),
    }));
    scatter = renderScatter(scatterEl, points, {
      onOpen: (point, event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey) window.open(point.href, '_blank', 'noopener');
        else ctx.navigate(`/trace/${encodeURIComponent(point.id)}`);
      },
    });
    renderList(list, search.sort);
  }

  function renderList(list, sort) {
    const sorted = [...summaries].sort(SORTERS[sort] || SORTERS.recent);
    const longest = Math.max(1, ...sorted.map((s) => s.duration));
    const items = sorted.map((s) => {
      const shown = s.services.slice(0, MAX_SERVICES_IN_RESULT);
      const more = s.services.length - shown.length;
      const pct = Math.max(0.5, (s.duration / longest) * 100);
      const titleText = `${s.rootService}: ${s.rootOperation || '(no operation)'}`;
      return h(
        'li',
        {
          class: `search-result${s.errorCount ? ' has-errors' : ''}`,
          dataset: { traceId: s.traceID, durationUs: String(s.duration), spans: String(s.spanCount), errors: String(s.errorCount) },
          onmouseenter: () => scatter && scatter.highlight(s.traceID),
          onmouseleave: () => scatter && scatter.highlight(null),
        },
        h(
          'div',
          { class: 'sr-head' },
          h(
            'a',
            { class: 'sr-title', href: traceHref(s.traceID), onfocus: () => scatter && scatter.highlight(s.traceID), onblur: () => scatter && scatter.highlight(null) },
            h('span', { class: 'swatch', style: { background: serviceColor(s.rootService) }, 'aria-hidden': 'true' }),
            h('strong', {}, s.rootService),
            ': ',
            s.rootOperation || '(no operation)',
            s.hasRoot ? null : h('span', { class: 'badge badge-warn sr-noroot', title: 'The root span has not been received' }, 'no root span'),
            h('span', { class: 'sr-id mono', title: s.traceID }, s.traceID.slice(0, 7)),
            h('span', { class: 'visually-hidden' }, `, ${formatDuration(s.duration)}, ${plural(s.spanCount, 'span')}${s.errorCount ? `, ${plural(s.errorCount, 'error')}` : ''}`),
          ),
          h('span', { class: 'sr-duration', 'aria-hidden': 'true' }, formatDuration(s.duration)),
        ),
        h('div', { class: 'sr-bar', 'aria-hidden': 'true', title: titleText }, h('span', { style: { width: `${pct.toFixed(2)}%` } })),
        h(
          'div',
          { class: 'sr-meta' },
          h('span', { class: 'badge' }, plural(s.spanCount, 'span')),
          s.errorCount ? h('span', { class: 'badge badge-error' }, plural(s.errorCount, 'error')) : null,
          h(
            'ul',
            { class: 'sr-services', 'aria-label': 'Services' },
            shown.map((svc) => h('li', {}, h('span', { class: 'swatch', style: { background: serviceColor(svc.name) }, 'aria-hidden': 'true' }), svc.name, h('span', { class: 'muted' }, ` (${svc.count})`))),
            more > 0 ? h('li', { class: 'muted', title: s.services.slice(MAX_SERVICES_IN_RESULT).map((x) => `${x.name} (${x.count})`).join(', ') }, `+${more} more`) : null,
          ),
          h('span', { class: 'sr-time muted small nowrap' }, h('time', { datetime: new Date(s.start / 1000).toISOString() }, formatTime(s.start, false)), ` · ${formatAgo(s.start)}`),
        ),
      );
    });
    list.replaceChildren(...items);
  }

  // ---- start ------------------------------------------------------------------
  loadServices();
  if (state.service) {
    loadOperations(state.service, state.operation);
    const problems = urlProblems(ctx.params);
    if (problems.length) {
      // Show what the link said, mark the fields, and search nothing.
      const fields = { limit: [limitInput, limitError], lookback: [lookbackSel, rangeError], tags: [tagsInput, tagsError], minDuration: [minInput, durationErr], maxDuration: [maxInput, durationErr] };
      if (ctx.params.get('tags')) tagsInput.value = ctx.params.get('tags');
      for (const name of ['minDuration', 'maxDuration']) {
        const input = name === 'minDuration' ? minInput : maxInput;
        if (ctx.params.get(name)) input.value = ctx.params.get(name);
      }
      for (const [name, message] of problems) setError(fields[name][0], fields[name][1], message);
      replace(
        resultsEl,
        h(
          'div',
          { class: 'state state-error', role: 'alert', id: 'search-url-problems' },
          h('h2', {}, 'This link’s search cannot run'),
          h('ul', { class: 'url-problems' }, problems.map(([, message]) => h('li', { class: 'error-message' }, message))),
          h('p', { class: 'muted' }, 'Correct the marked fields and press Find traces.'),
        ),
      );
    } else {
      runSearch(state);
    }
  }

  return () => {
    controller.abort();
    if (searchController) searchController.abort();
    if (scatter) scatter.destroy();
  };
}
