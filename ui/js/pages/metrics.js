// Service metrics (/metrics): every service's request rate, error rate and latency
// (GET /api/metrics/services), and for the selected one, per version over time
// (GET /api/metrics/timeseries?groupBy=version): requests/s, error rate, p50/p95/p99.
//
// URL: ?service=<fqdn> &window=5m|15m|1h|6h|24h &step=auto|10s|30s|1m|5m|15m|1h
//
// Test hooks: #metrics-view[data-ready="true"] once the list (and the selected service's
// charts) are shown (data-state = list | empty | error), rows .metrics-service
// [data-service=<fqdn>], chart containers .metrics-chart[data-metric=rate|errors|duration].

import { base } from '../api.js';
import { h, replace, loading, empty, formatNumber, formatClock } from '../lib/dom.js';
import { createChart } from '../lib/chart.js';
import {
  PALETTE,
  QUANTILES,
  errorLevel,
  formatRate,
  formatPercent,
  formatMs,
  parseWindow,
  autoStep,
  formatWindow,
  lookbackFor,
  ERROR_TAGS,
  traceServiceName,
  fetchServices,
  fetchTimeseries,
  alignTimeseries,
  seriesTotals,
  metricsApiMissing,
  metricsErrorNote,
  levelBadge,
  describeFlags,
  thresholdText,
} from '../lib/mesh.js';

export const title = 'Service metrics';

const WINDOWS = [
  ['5m', 'Last 5m'],
  ['15m', 'Last 15m'],
  ['1h', 'Last 1h'],
  ['6h', 'Last 6h'],
  ['24h', 'Last 24h'],
];
const STEPS = [
  ['auto', 'Step: auto'],
  ['10s', '10s'],
  ['30s', '30s'],
  ['1m', '1m'],
  ['5m', '5m'],
  ['15m', '15m'],
  ['1h', '1h'],
];
const SORTS = {
  name: (s) => `${s.name}.${s.namespace}`,
  rate: (s) => s.rate ?? -1,
  errorRate: (s) => s.errorRate ?? -1,
  p50Ms: (s) => s.p50Ms ?? -1,
  p95Ms: (s) => s.p95Ms ?? -1,
  p99Ms: (s) => s.p99Ms ?? -1,
};

// The last list per window: shown at once when the page mounts again (selecting a
// service changes the URL), then refreshed.
let servicesCache = null;
// Sort and filter: read from the URL at every mount (selecting a service keeps them
// there), so that the same URL always shows the same list.
const listState = { sort: 'rate', desc: true, filter: '' };

function pick(value, options, fallback) {
  return options.some(([v]) => v === value) ? value : fallback;
}

function shortName(fqdn) {
  return String(fqdn || '').split('.')[0];
}

function namespaceOf(fqdn) {
  return String(fqdn || '').split('.')[1] || '';
}

export async function mount(root, ctx) {
  const windowParam = pick(ctx.params.get('window'), WINDOWS, '1h');
  const stepParam = pick(ctx.params.get('step'), STEPS, 'auto');
  const selected = ctx.params.get('service') || '';
  const windowSeconds = parseWindow(windowParam);
  let stepSeconds = stepParam === 'auto' ? autoStep(windowSeconds) : parseWindow(stepParam);
  if (windowSeconds / stepSeconds > 1500) stepSeconds = autoStep(windowSeconds);
  const state = { destroyed: false, charts: [], abort: null, services: null, listDone: false, detailDone: !selected };

  // The list's sort and filter are in the URL too (`sort`, `order`, `filter`), so a
  // reload or a shared link keeps them.
  const sortParam = ctx.params.get('sort');
  listState.sort = sortParam && SORTS[sortParam] ? sortParam : 'rate';
  const orderParam = ctx.params.get('order');
  listState.desc = orderParam !== 'asc';
  listState.filter = ctx.params.get('filter') || '';
  const listParams = () => {
    const byDefault = listState.sort === 'rate' && listState.desc;
    return {
      sort: byDefault ? undefined : listState.sort,
      order: byDefault ? undefined : listState.desc ? 'desc' : 'asc',
      filter: listState.filter || undefined,
    };
  };
  const replaceListParams = () => {
    const query = new URLSearchParams(location.search);
    for (const [key, value] of Object.entries(listParams())) {
      if (value) query.set(key, value);
      else query.delete(key);
    }
    const qs = query.toString();
    history.replaceState(null, '', location.pathname + (qs ? `?${qs}` : ''));
  };
  const setAll = (change, options) =>
    ctx.setParams({ service: selected, window: windowParam, step: stepParam === 'auto' ? undefined : stepParam, ...listParams(), ...change }, options);
  // `?service=reviews` or `reviews.default`, as the API takes them: once the list is in,
  // the one listed service they name replaces them, so the page, its note and its links
  // to traces all speak of that service.
  const resolveSelected = (services) => {
    if (!selected || services.some((s) => s.service === selected)) return false;
    const [name, ns, ...more] = selected.split('.');
    if (more.length) return false;
    const named = services.filter((s) => shortName(s.service) === name && (!ns || namespaceOf(s.service) === ns));
    if (named.length !== 1) return false;
    setAll({ service: named[0].service }, { replace: true });
    return true;
  };
  const select = (id, label, value, options, onchange) =>
    h('label', { class: 'field' }, label, h('select', { id, onchange: (e) => onchange(e.target.value) }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));

  const status = h('span', { class: 'muted small metrics-status', role: 'status', 'aria-live': 'polite' });
  const listBody = h('div', { class: 'metrics-list-body' }, loading('Loading services…'));
  const filterInput = h('input', {
    type: 'search',
    id: 'metrics-filter',
    placeholder: 'Filter services',
    'aria-label': 'Filter services by name or namespace',
    value: listState.filter,
    oninput: (e) => {
      listState.filter = e.target.value;
      replaceListParams();
      if (state.services) renderList(state.services);
    },
  });
  const detail = h('div', { class: 'metrics-detail' });
  const view = h(
    'section',
    { id: 'metrics-view', class: 'metrics-page', 'aria-labelledby': 'metrics-title' },
    h('div', { class: 'metrics-head' }, h('h1', { id: 'metrics-title' }, 'Service metrics'), status),
    h(
      'div',
      { class: 'panel metrics-toolbar row', role: 'group', 'aria-label': 'Metrics settings' },
      select('metrics-window', 'Window', windowParam, WINDOWS, (v) => setAll({ window: v })),
      select('metrics-step', 'Resolution', stepParam, STEPS, (v) => setAll({ step: v === 'auto' ? undefined : v })),
      h('div', { class: 'grow' }),
      h('button', { class: 'btn', type: 'button', onclick: () => refreshAll() }, 'Refresh now'),
    ),
    h(
      'div',
      { class: `metrics-layout${selected ? ' has-selection' : ''}` },
      h('section', { class: 'panel metrics-list', 'aria-labelledby': 'metrics-list-title' }, h('div', { class: 'row metrics-list-head' }, h('h2', { id: 'metrics-list-title', class: 'grow' }, 'Services'), filterInput), listBody),
      detail,
    ),
  );
  root.append(view);

  function markReady(stateName) {
    if (stateName) view.dataset.state = stateName;
    if (state.listDone && state.detailDone) view.dataset.ready = 'true';
  }

  /* ----- the service list ----- */

  async function loadServices() {
    if (servicesCache && servicesCache.window === windowParam) {
      if (resolveSelected(servicesCache.services)) return;
      state.services = servicesCache.services;
      renderList(state.services);
    }
    try {
      const body = await fetchServices({ window: windowParam });
      if (state.destroyed) return;
      const services = Array.isArray(body?.services) ? body.services : [];
      servicesCache = { window: windowParam, services };
      if (resolveSelected(services)) return;
      state.services = services;
      status.textContent = `${services.length} service${services.length === 1 ? '' : 's'} · last ${windowParam} · updated ${formatClock()}`;
      renderList(services);
      state.listDone = true;
      markReady(services.length ? 'list' : 'empty');
    } catch (error) {
      if (state.destroyed) return;
      state.services = null;
      replace(listBody, listError(error));
      status.textContent = '';
      state.listDone = true;
      markReady('error');
    }
  }

  function listError(error) {
    if (metricsApiMissing(error)) {
      return h(
        'div',
        { class: 'state state-error metrics-api-missing', role: 'alert' },
        h('h2', {}, 'Service metrics are not available from this server'),
        h('p', {}, 'It does not answer ', h('code', {}, 'GET /api/metrics/services'), ` (HTTP ${error.status}${error.message ? `: ${error.message}` : ''}). A meshtel built before the metrics API, or a query-only process without it?`),
        h('p', { class: 'muted' }, 'The service graph shows rates and latencies from the same proxy reports: ', h('a', { href: `${base}/graph?window=${windowParam === '24h' || windowParam === '6h' ? windowParam : '1h'}`, 'data-nav': true }, 'open the service graph'), '.'),
        h('button', { class: 'btn', type: 'button', onclick: () => refreshAll() }, 'Try again'),
      );
    }
    return h(
      'div',
      { class: 'state state-error', role: 'alert' },
      h('h2', {}, 'Could not load the services'),
      h('p', { class: 'error-message' }, `${error.status ? `HTTP ${error.status}: ` : ''}${error.message || error}`),
      h('button', { class: 'btn', type: 'button', onclick: () => refreshAll() }, 'Try again'),
    );
  }

  function sortHeader(key, label, numeric = true) {
    const active = listState.sort === key;
    return h(
      'th',
      { scope: 'col', class: numeric ? 'num' : null, 'aria-sort': active ? (listState.desc ? 'descending' : 'ascending') : null },
      h(
        'button',
        {
          type: 'button',
          class: 'btn-link metrics-sort',
          onclick: () => {
            if (listState.sort === key) listState.desc = !listState.desc;
            else {
              listState.sort = key;
              listState.desc = key !== 'name';
            }
            replaceListParams();
            renderList(state.services || []);
          },
        },
        label,
        active ? h('span', { 'aria-hidden': 'true' }, listState.desc ? ' ▾' : ' ▴') : null,
      ),
    );
  }

  function renderList(services) {
    if (!services.length) {
      replace(
        listBody,
        empty(
          `No service traffic in the last ${windowParam}`,
          h('p', {}, "Services appear here once meshtel's sidecar proxies report requests to them. Run a ", h('code', {}, 'meshtel proxy'), ' beside each service and send traffic through it (README: "Sidecar proxy, Istio metrics and the service graph").'),
          windowParam !== '24h' ? h('p', {}, h('button', { type: 'button', class: 'btn-link', onclick: () => setAll({ window: '24h' }) }, 'Look at the last 24h')) : null,
        ),
      );
      return;
    }
    const needle = listState.filter.trim().toLowerCase();
    const shown = services.filter((s) => !needle || `${s.service} ${s.name} ${s.namespace}`.toLowerCase().includes(needle));
    const key = SORTS[listState.sort] || SORTS.rate;
    shown.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return listState.desc ? -c : c;
    });
    const multiNamespace = new Set(services.map((s) => s.namespace)).size > 1;
    const rows = shown.map((s) => {
      const level = errorLevel(s.errorRate, (s.rate || 0) > 0);
      const current = s.service === selected;
      return h(
        'tr',
        { class: `metrics-service${current ? ' is-selected' : ''}`, dataset: { service: s.service }, 'aria-current': current ? 'true' : null, onclick: (e) => {
          if (e.target.closest('button, a')) return;
          setAll({ service: s.service });
        } },
        h(
          'td',
          {},
          h('button', { type: 'button', class: 'btn-link metrics-service-name', onclick: () => setAll({ service: s.service }), title: s.service }, s.name || shortName(s.service)),
          multiNamespace || s.namespace !== 'default' ? h('span', { class: 'muted small' }, ` ${s.namespace}`) : null,
          s.versions?.length ? h('div', { class: 'metrics-versions' }, s.versions.map((v) => h('span', { class: 'badge' }, v))) : null,
        ),
        h('td', { class: 'num' }, formatRate(s.rate, '').trim()),
        h('td', { class: 'num' }, levelBadge(level, formatPercent(s.errorRate))),
        h('td', { class: 'num' }, formatMs(s.p50Ms)),
        h('td', { class: 'num' }, formatMs(s.p95Ms)),
        h('td', { class: 'num' }, formatMs(s.p99Ms)),
      );
    });
    replace(
      listBody,
      h(
        'div',
        { class: 'metrics-table-wrap' },
        h(
        'table',
        { class: 'data metrics-table' },
        h('thead', {}, h('tr', {}, sortHeader('name', 'Service', false), sortHeader('rate', 'req/s'), sortHeader('errorRate', 'Errors'), sortHeader('p50Ms', 'p50'), sortHeader('p95Ms', 'p95'), sortHeader('p99Ms', 'p99'))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, `No service matches “${listState.filter}”.`))),
        ),
      ),
      h('p', { class: 'muted small metrics-footnote' }, `Rate: requests/s over the window. Errors: share of requests answered 5xx, not answered, flagged by the proxy (UH, UO, RL, …) or failed in gRPC (${thresholdText().ok} is healthy). Latency quantiles over the window.`),
    );
  }

  /* ----- the selected service ----- */

  function renderDetailShell() {
    if (!selected) {
      replace(
        detail,
        h('div', { class: 'panel metrics-placeholder' }, empty('Select a service', h('p', {}, 'Pick a service in the list to see its request rate, error rate and latency per version over time.'))),
      );
      return null;
    }
    const name = shortName(selected);
    const ns = namespaceOf(selected);
    const traced = traceServiceName(name, ns);
    const lookback = lookbackFor(windowSeconds);
    const heading = h('h2', { id: 'metrics-detail-title', tabindex: '-1' }, name, ns ? h('span', { class: 'muted metrics-ns' }, ` ${ns}`) : null);
    const note = h('div', { class: 'metrics-detail-note' });
    const summary = h('div', { class: 'metrics-summary' }, loading('Loading metrics…'));
    const rateBox = h('div', { class: 'metrics-chart', dataset: { metric: 'rate' } });
    const errorsBox = h('div', { class: 'metrics-chart', dataset: { metric: 'errors' } });
    const durationBox = h('div', { class: 'metrics-chart metrics-chart-wide', dataset: { metric: 'duration' } });
    const codes = h('div', { class: 'metrics-codes' });
    replace(
      detail,
      h(
        'section',
        { class: 'panel metrics-service-detail', 'aria-labelledby': 'metrics-detail-title' },
        h(
          'div',
          { class: 'row metrics-detail-head' },
          h('div', { class: 'grow' }, heading, h('div', { class: 'muted small mono' }, selected)),
          h(
            'nav',
            { class: 'metrics-links', 'aria-label': `Go to ${name}` },
            h('a', { href: `${base}/search?${new URLSearchParams({ service: traced, lookback })}`, 'data-nav': true }, 'Traces'),
            h('a', { href: `${base}/search?${new URLSearchParams({ service: traced, lookback, tags: ERROR_TAGS })}`, 'data-nav': true }, 'Error traces'),
            h('a', { href: `${base}/graph?${new URLSearchParams({ window: windowParam })}`, 'data-nav': true }, 'Service graph'),
            h('button', { type: 'button', class: 'btn-link', onclick: () => setAll({ service: undefined }), 'aria-label': 'Close the service details' }, 'Close'),
          ),
        ),
        note,
        summary,
        h('div', { class: 'metrics-charts' }, rateBox, errorsBox, durationBox),
        codes,
      ),
    );
    const sync = 'metrics';
    const charts = {
      rate: createChart(rateBox, { title: 'Request rate (req/s)', format: (v) => formatRate(v, '/s'), height: 190, sync }),
      errors: createChart(errorsBox, { title: 'Error rate', format: formatPercent, height: 190, sync }),
      duration: createChart(durationBox, { title: 'Duration p50 · p95 · p99', format: formatMs, height: 230, sync }),
    };
    state.charts = Object.values(charts);
    return { note, summary, codes, charts, boxes: [rateBox, errorsBox, durationBox] };
  }

  async function loadDetail(shell) {
    if (!shell) return;
    if (state.abort) state.abort.abort();
    state.abort = new AbortController();
    let body;
    try {
      body = await fetchTimeseries({ service: selected, window: windowParam, step: `${stepSeconds}s`, groupBy: 'version' }, { signal: state.abort.signal });
    } catch (error) {
      if (error.name === 'AbortError' || state.destroyed) return;
      replace(shell.summary, metricsErrorNote(error, `Metrics of ${shortName(selected)}`));
      for (const box of shell.boxes) box.hidden = true;
      // The response codes and flags shown were the last good refresh's: not beside an error.
      replace(shell.codes);
      state.detailDone = true;
      markReady();
      return;
    }
    if (state.destroyed) return;
    for (const box of shell.boxes) box.hidden = false;
    const step = body.stepSeconds || stepSeconds;
    const { x, series } = alignTimeseries(body);
    const colour = (i) => PALETTE[i % PALETTE.length];
    const value = (p, f) => (p && p[f] !== null && p[f] !== undefined ? p[f] : null);
    const draws = [
      shell.charts.rate.setData(
        x,
        series.map((s, i) => ({ label: s.label, color: colour(i), values: s.points.map((p) => (p ? p.perSecond : null)) })),
      ),
      shell.charts.errors.setData(
        x,
        series.map((s, i) => ({ label: s.label, color: colour(i), values: s.points.map((p) => (p ? value(p, 'errorRate') ?? (p.requests ? (p.errors || 0) / p.requests : null) : null)) })),
      ),
      shell.charts.duration.setData(
        x,
        series.flatMap((s, i) => QUANTILES.map((q) => ({ label: series.length > 1 || s.label !== 'all' ? `${s.label} ${q.label}` : q.label, color: colour(i), dash: q.dash, values: s.points.map((p) => value(p, q.field)) }))),
      ),
    ];
    renderSummary(shell, body, series, step);
    await Promise.allSettled(draws);
    if (state.destroyed) return;
    state.detailDone = true;
    markReady();
  }

  function renderSummary(shell, body, series, step) {
    const notListed = state.services && !state.services.some((s) => s.service === selected);
    replace(shell.note, notListed ? h('p', { class: 'muted small' }, `No traffic to this service in the last ${windowParam} according to the service list.`) : null);
    if (!series.length) {
      replace(shell.summary, h('p', { class: 'muted' }, `No requests to ${shortName(selected)} in the last ${windowParam}.`));
    } else {
      const rows = series.map((s, i) => {
        const t = seriesTotals(s, step);
        const level = errorLevel(t.errorRate, t.requests > 0);
        return h(
          'tr',
          { class: 'metrics-version', dataset: { version: s.label } },
          h('th', { scope: 'row' }, h('span', { class: 'swatch', style: { background: PALETTE[i % PALETTE.length] }, 'aria-hidden': 'true' }), s.label),
          h('td', { class: 'num' }, formatNumber(t.requests, 1)),
          h('td', { class: 'num' }, formatRate(t.rate)),
          h('td', { class: 'num' }, levelBadge(level, formatPercent(t.errorRate))),
          h('td', { class: 'num' }, formatMs(t.peak.p50Ms)),
          h('td', { class: 'num' }, formatMs(t.peak.p95Ms)),
          h('td', { class: 'num' }, formatMs(t.peak.p99Ms)),
        );
      });
      replace(
        shell.summary,
        h(
          'table',
          { class: 'data metrics-versions-table' },
          h('caption', { class: 'muted small' }, `Per version, last ${windowParam} (${formatWindow(step)} steps). Latency: highest value of a step.`),
          h(
            'thead',
            {},
            h('tr', {}, ['Version', 'Requests', 'Rate', 'Errors', 'p50 peak', 'p95 peak', 'p99 peak'].map((label, i) => h('th', { scope: 'col', class: i ? 'num' : null }, label))),
          ),
          h('tbody', {}, rows),
        ),
      );
    }
    const codeEntries = Object.entries(body.codes || {}).sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
    const flagEntries = Object.entries(body.flags || {}).filter(([f]) => f && f !== '-').sort((a, b) => b[1] - a[1]);
    const total = codeEntries.reduce((sum, [, n]) => sum + n, 0);
    replace(
      shell.codes,
      codeEntries.length
        ? h(
            'div',
            { class: 'metrics-breakdown' },
            h('h3', {}, 'Response codes'),
            h(
              'ul',
              { class: 'metrics-code-list' },
              codeEntries.map(([code, n]) =>
                h('li', { class: /^5|^0|^-/.test(code) ? 'code-error' : /^4/.test(code) ? 'code-client' : '' }, h('strong', {}, code === '0' || code === '-' ? 'none' : code), ` ${formatNumber(n, 1)}`, total ? h('span', { class: 'muted small' }, ` (${formatPercent(n / total)})`) : null),
              ),
            ),
          )
        : null,
      flagEntries.length
        ? h(
            'div',
            { class: 'metrics-breakdown' },
            h('h3', {}, 'Response flags'),
            h(
              'ul',
              { class: 'metrics-code-list' },
              flagEntries.map(([flag, n]) => h('li', {}, h('abbr', { title: describeFlags(flag).map((d) => d.meaning).join(', ') }, flag), ` ${formatNumber(n, 1)}`, h('span', { class: 'muted small' }, ` ${describeFlags(flag).map((d) => d.meaning).join(', ')}`))),
            ),
          )
        : null,
    );
  }

  let shell = null;
  function refreshAll() {
    replace(listBody, loading('Loading services…'));
    loadServices();
    if (shell) loadDetail(shell);
  }

  shell = renderDetailShell();
  await Promise.all([loadServices(), loadDetail(shell)]);

  return () => {
    state.destroyed = true;
    if (state.abort) state.abort.abort();
    for (const chart of state.charts) chart.destroy();
  };
}
