// Service graph (/graph): who calls whom, how much, how well — Kiali's graph over
// meshtel's edge rollups (GET /api/graph), drawn with cytoscape + dagre (left → right).
//
// URL: ?window=1m|5m|15m|1h|6h|24h &graphType=workload|app|versionedApp|service
//      &refresh=off|10s|30s|1m [&maxNodes=N: draw up to N nodes, 500 by default]
//      [&node={id} | &edge={id}] (the open detail panel; opening
//      or closing it is a history entry, so Back closes it and a shared URL reopens it)
//
// The API answers a workload graph; the app, versioned-app and service graphs are
// folded from it here (rates add up; latencies of merged edges are rate-weighted means,
// marked ≈). Error rates are the API's own (httpPercentErr / grpcPercentErr, counted as
// Kiali does: 4xx, 5xx and no response; gRPC: non-OK), never recomputed from the codes;
// a node's is the rate-weighted error rate of the edges into it. Clicking a node or an edge — or its row in the tables under the graph, which
// make everything reachable by keyboard — opens #graph-detail with rates, response codes
// and flags, latency over time (GET /api/metrics/timeseries) and links to the traces.
//
// Test hooks: #graph-view[data-ready="true"] once the first answer is shown (data-state
// = graph | empty | error | too-large: more than MAX_DRAWN_NODES nodes, listed in the
// tables and #graph-too-large instead of drawn), rows .graph-edge[data-source][data-target][data-rate (req/s,
// bytes/s for tcp)][data-error-rate (fraction 0–1)], items .graph-node[data-id],
// controls #graph-window #graph-type #graph-refresh, side panel #graph-detail.

import { base, get, url } from '../api.js';
import { h, replace, loading, empty, errorState, formatClock } from '../lib/dom.js';
import { loadCytoscape } from '../lib/vendor.js';
import { createChart } from '../lib/chart.js';
import {
  LEVEL_COLORS,
  QUANTILES,
  PALETTE,
  formatRate,
  formatPercent,
  formatMs,
  parseWindow,
  autoStep,
  lookbackFor,
  ERROR_TAGS,
  serviceFqdn,
  traceServiceName,
  describeFlags,
  thresholdText,
  fetchTimeseries,
  alignTimeseries,
  metricsErrorNote,
  levelBadge,
} from '../lib/mesh.js';
import {
  known,
  isServerErrorCode,
  buildModel,
  mergeCodes,
  formatBytes,
  edgeRateText,
  edgeLevel,
  nodeLevel,
  plainLabel,
} from '../lib/graph-model.js';
import { elementsOf, STYLE, LAYOUT } from '../lib/graph-style.js';

export const title = 'Service graph';

const WINDOWS = [
  ['1m', 'Last 1m'],
  ['5m', 'Last 5m'],
  ['15m', 'Last 15m'],
  ['1h', 'Last 1h'],
  ['6h', 'Last 6h'],
  ['24h', 'Last 24h'],
];
const TYPES = [
  ['workload', 'Workload graph'],
  ['app', 'App graph'],
  ['versionedApp', 'Versioned app graph'],
  ['service', 'Service graph'],
];
const REFRESH = [
  ['off', 'Refresh: off'],
  ['10s', 'Every 10s'],
  ['30s', 'Every 30s'],
  ['1m', 'Every 1m'],
];
/** More nodes than this are listed, not drawn: laying out thousands freezes the tab. */
export const MAX_DRAWN_NODES = 500;
const KIND_NAMES = { workload: 'workload', app: 'app', versionedApp: 'app version', service: 'service', unknown: 'outside the mesh' };

function pick(value, options, fallback) {
  return options.some(([v]) => v === value) ? value : fallback;
}

// Node positions of the last layout, per graph type, so that coming back to a graph (or
// a refresh that adds nothing) keeps the picture people already read.
const positionCache = new Map();

/* ---------- the page ---------- */

export async function mount(root, ctx) {
  const windowParam = pick(ctx.params.get('window'), WINDOWS, '5m');
  const type = pick(ctx.params.get('graphType'), TYPES, 'workload');
  const refresh = pick(ctx.params.get('refresh'), REFRESH, 'off');
  const windowSeconds = parseWindow(windowParam);
  const maxNodes = Number(ctx.params.get('maxNodes')) || MAX_DRAWN_NODES;
  const state = { model: null, cy: null, selected: null, panel: null, timer: null, loadSeq: 0, destroyed: false, lastError: null };
  // The selection the URL asks for, opened once the graph it belongs to is shown.
  let wanted = ctx.params.get('edge') ? { kind: 'edge', id: ctx.params.get('edge') } : ctx.params.get('node') ? { kind: 'node', id: ctx.params.get('node') } : null;

  // Another window or refresh keeps the selection (same ids); another graph type drops it.
  const setAll = (change) => {
    const keep = state.selected && (!change.graphType || change.graphType === type) ? { [state.selected.kind]: state.selected.id } : {};
    ctx.setParams({ window: windowParam, graphType: type, refresh, ...keep, ...change });
  };

  /** Writes the selection into the URL as a new history entry (Back undoes it). */
  function pushSelection(selected) {
    const params = new URLSearchParams(location.search);
    params.delete('node');
    params.delete('edge');
    if (selected) params.set(selected.kind, selected.id);
    const qs = params.toString();
    const href = location.pathname + (qs ? `?${qs}` : '');
    if (href !== location.pathname + location.search) history.pushState(null, '', href);
  }
  const select = (id, label, value, options, onchange) =>
    h('label', { class: 'field' }, label, h('select', { id, onchange: (e) => onchange(e.target.value) }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));

  // A link's value this page does not offer is named, and the address shows what is
  // drawn instead, so that a shared link never shows other than it says.
  const replaced = [['window', WINDOWS, windowParam], ['graphType', TYPES, type], ['refresh', REFRESH, refresh]]
    .filter(([name, , shown]) => ctx.params.has(name) && ctx.params.get(name) !== shown)
    .map(([name, options, shown]) => `${name} "${ctx.params.get(name)}" is not one of ${options.map(([v]) => v).join(', ')}: showing ${shown}`);
  if (replaced.length) {
    const fixed = new URLSearchParams(location.search);
    fixed.set('window', windowParam);
    fixed.set('graphType', type);
    fixed.set('refresh', refresh);
    history.replaceState(null, '', `${location.pathname}?${fixed}`);
  }
  const linkNotice = replaced.length
    ? h('p', { id: 'graph-url-problems', class: 'panel graph-url-problems', role: 'status' }, `This link's ${replaced.join('; ')}.`)
    : null;
  const status = h('span', { class: 'graph-status muted small', role: 'status', 'aria-live': 'polite' });
  const canvas = h('div', { class: 'graph-canvas', role: 'img', 'aria-label': 'Service graph (loading)', 'aria-describedby': 'graph-legend' });
  const legend = renderLegend(type);
  const canvasWrap = h('div', { class: 'graph-canvas-wrap panel', hidden: true }, canvas, legend);
  const body = h('div', { class: 'graph-body' }, loading('Loading the service graph…'));
  const lists = h('div', { class: 'graph-lists' });
  const view = h(
    'section',
    { id: 'graph-view', class: 'graph-page', 'aria-labelledby': 'graph-title' },
    h(
      'div',
      { class: 'graph-head' },
      h('h1', { id: 'graph-title' }, 'Service graph'),
      status,
    ),
    linkNotice,
    h(
      'div',
      { class: 'panel graph-toolbar row', role: 'group', 'aria-label': 'Graph settings' },
      select('graph-window', 'Traffic window', windowParam, WINDOWS, (v) => setAll({ window: v })),
      select('graph-type', 'Graph type', type, TYPES, (v) => setAll({ graphType: v })),
      select('graph-refresh', 'Refresh', refresh, REFRESH, (v) => setAll({ refresh: v })),
      h('div', { class: 'grow' }),
      h('button', { class: 'btn', type: 'button', onclick: () => fit(), title: 'Fit the whole graph in view' }, 'Fit'),
      h('button', { class: 'btn', type: 'button', onclick: () => relayout(), title: 'Lay the graph out again' }, 'Re-layout'),
      h('button', { class: 'btn', type: 'button', onclick: () => load(), title: 'Fetch the graph now' }, 'Refresh now'),
      h('a', { class: 'btn graph-dot-link', href: url('/api/graph.dot', { window: windowParam, graphType: type }), download: `mesh-${windowParam}.dot`, title: 'The same graph in Graphviz DOT (Istio servicegraph format)' }, 'DOT'),
    ),
    body,
    lists,
  );
  root.append(view);

  function fit() {
    if (!state.cy) return;
    state.cy.fit(undefined, 36);
    if (state.cy.zoom() > 1.4) {
      state.cy.zoom(1.4);
      state.cy.center();
    }
  }

  /** After the canvas changed size (side panel): fit again if part of the graph is out of view. */
  function refitIfClipped() {
    if (!state.cy) return;
    state.cy.resize();
    const box = state.cy.elements().renderedBoundingBox();
    if (box.x1 < 0 || box.y1 < 0 || box.x2 > state.cy.width() || box.y2 > state.cy.height()) fit();
  }

  function relayout() {
    if (!state.cy) return;
    positionCache.delete(type);
    const layout = state.cy.layout(LAYOUT);
    layout.one('layoutstop', () => {
      fit();
      savePositions();
    });
    layout.run();
  }

  function savePositions() {
    if (!state.cy) return;
    const positions = new Map();
    state.cy.nodes().forEach((n) => positions.set(n.id(), { ...n.position() }));
    positionCache.set(type, positions);
  }

  async function load() {
    const seq = ++state.loadSeq;
    let json;
    try {
      json = await get('/api/graph', { window: windowParam, graphType: type });
    } catch (error) {
      if (state.destroyed || seq !== state.loadSeq) return;
      state.lastError = error;
      if (!state.model) {
        replace(body, errorState(error, () => {
          replace(body, loading('Loading the service graph…'));
          load();
        }));
        view.dataset.state = 'error';
        view.dataset.ready = 'true';
      } else {
        status.textContent = `Refresh failed: ${error.status ? `HTTP ${error.status}: ` : ''}${error.message} — showing the graph of ${formatClock(state.updatedAt)}`;
        status.classList.add('graph-status-error');
      }
      return;
    }
    if (state.destroyed || seq !== state.loadSeq) return;
    status.classList.remove('graph-status-error');
    state.lastError = null;
    state.updatedAt = Date.now();
    const model = buildModel(json, type);
    state.model = model;
    if (!model.nodes.size) {
      destroyCy();
      closePanel();
      replace(body, renderEmpty(windowParam, setAll));
      replace(lists);
      status.textContent = `No traffic in the last ${windowParam} · checked ${formatClock()}`;
      view.dataset.state = 'empty';
      view.dataset.ready = 'true';
      return;
    }
    status.textContent = `${model.nodes.size} nodes · ${model.edges.length} edges · last ${windowParam} · updated ${formatClock()}`;
    const drawn = model.nodes.size <= maxNodes;
    if (!drawn) {
      destroyCy();
      replace(body, renderTooMany(model, type, maxNodes, setAll));
    } else if (!canvasWrap.isConnected) {
      canvasWrap.hidden = false;
      replace(body, canvasWrap);
    }
    try {
      if (drawn) await draw(model);
    } catch (error) {
      if (state.destroyed) return;
      console.error(error);
      replace(body, errorState(new Error(`the graph could not be drawn: ${error.message}`)));
    }
    if (state.destroyed || seq !== state.loadSeq) return;
    renderLists(model);
    canvas.setAttribute('aria-label', `Service graph of the last ${windowParam}: ${model.nodes.size} nodes and ${model.edges.length} edges. Every node and edge is also listed in the tables below the graph.`);
    if (state.panel) state.panel.update(model);
    if (wanted) {
      // From the URL (a shared link, a reload, Back/Forward): no new history entry.
      const { kind, id } = wanted;
      wanted = null;
      const exists = kind === 'edge' ? model.edges.some((e) => e.id === id) : model.nodes.has(id);
      if (exists) openDetail(kind, id, { history: false, focus: false });
      // A link to a node or edge without traffic in this window (or from another graph type).
      else status.textContent += ` · the ${kind} ${id} of the link is not in this graph`;
    }
    view.dataset.state = drawn ? 'graph' : 'too-large';
    view.dataset.ready = 'true';
  }

  async function draw(model) {
    const cytoscape = await loadCytoscape();
    if (state.destroyed) return;
    const elements = elementsOf(model);
    if (!state.cy) {
      state.cy = cytoscape({ container: canvas, elements: [], style: STYLE, minZoom: 0.15, maxZoom: 3, boxSelectionEnabled: false, selectionType: 'single' });
      state.cy.on('tap', 'node', (e) => openDetail('node', e.target.id()));
      state.cy.on('tap', 'edge', (e) => openDetail('edge', e.target.id()));
      state.cy.on('tap', (e) => {
        if (e.target === state.cy) closePanel(false, { history: true });
      });
      state.cy.on('mouseover', 'node', (e) => {
        const hood = e.target.closedNeighborhood();
        state.cy.elements().not(hood).addClass('faded');
        canvas.style.cursor = 'pointer';
      });
      state.cy.on('mouseout', 'node', () => {
        state.cy.elements().removeClass('faded');
        canvas.style.cursor = '';
      });
      state.cy.on('mouseover', 'edge', () => {
        canvas.style.cursor = 'pointer';
      });
      state.cy.on('mouseout', 'edge', () => {
        canvas.style.cursor = '';
      });
      state.cy.on('dragfree', 'node', savePositions);
    }
    const cy = state.cy;
    const wanted = new Set(elements.map((e) => e.data.id));
    const had = new Set(cy.elements().map((e) => e.id()));
    const sameShape = wanted.size === had.size && [...wanted].every((id) => had.has(id));
    cy.batch(() => {
      cy.elements().forEach((el) => {
        if (!wanted.has(el.id())) el.remove();
      });
      for (const el of elements) {
        const existing = cy.getElementById(el.data.id);
        if (existing.nonempty()) existing.data(el.data);
        else cy.add(el);
      }
    });
    if (sameShape && had.size) return; // a refresh with the same nodes and edges: keep the picture
    const cached = positionCache.get(type);
    const nodeIds = cy.nodes().map((n) => n.id());
    if (cached && nodeIds.every((id) => cached.has(id))) {
      cy.layout({ name: 'preset', positions: (n) => cached.get(n.id()), fit: false }).run();
      fit();
      return;
    }
    await new Promise((resolve) => {
      const layout = cy.layout(LAYOUT);
      layout.one('layoutstop', resolve);
      layout.run();
    });
    fit();
    savePositions();
  }

  function destroyCy() {
    if (state.cy) state.cy.destroy();
    state.cy = null;
    canvasWrap.hidden = true;
  }

  /* ----- the tables under the graph: keyboard access to every node and edge ----- */

  function renderLists(model) {
    const nodeName = (id) => plainLabel(model.nodes.get(id) || { label: id });
    const edgeRows = model.edges.map((edge) => {
      const level = edgeLevel(edge);
      const p95 = edge.times.p95;
      return h(
        'tr',
        {
          class: `graph-edge level-${level}`,
          dataset: {
            id: edge.id,
            source: edge.source,
            target: edge.target,
            protocol: edge.protocol,
            rate: String(edge.rate),
            errorRate: String(edge.errorRate),
          },
          'aria-selected': state.selected?.kind === 'edge' && state.selected.id === edge.id ? 'true' : null,
        },
        h('td', {}, h('button', { type: 'button', class: 'btn-link', onclick: () => openDetail('edge', edge.id), 'aria-label': `Details of ${nodeName(edge.source)} to ${nodeName(edge.target)}` }, nodeName(edge.source), h('span', { 'aria-hidden': 'true', class: 'graph-arrow' }, ' → '), nodeName(edge.target))),
        h('td', {}, edge.protocol),
        h('td', { class: 'num' }, edgeRateText(edge)),
        h('td', { class: 'num' }, edge.protocol === 'tcp' ? '–' : h('span', { class: 'graph-err' }, h('span', { class: `swatch level-${level}`, 'aria-hidden': 'true' }), formatPercent(edge.errorRate))),
        h('td', { class: 'num' }, p95 !== undefined ? `${edge.approx ? '≈' : ''}${formatMs(p95)}` : '–'),
      );
    });
    const nodeItems = [...model.nodes.values()]
      .sort((a, b) => plainLabel(a).localeCompare(plainLabel(b)))
      .map((node) =>
        h(
          'li',
          { class: `graph-node level-${nodeLevel(node)}`, dataset: { id: node.id, kind: node.kind } },
          h('button', { type: 'button', class: 'btn-link', onclick: () => openDetail('node', node.id) }, plainLabel(node)),
          ' ',
          h('span', { class: 'muted small' }, KIND_NAMES[node.kind] || node.kind),
          node.inRate > 0 ? h('span', { class: 'small graph-node-stat' }, `in ${formatRate(node.inRate)}, ${formatPercent(node.inErrors / node.inRate)} err`) : null,
        ),
      );
    replace(
      lists,
      h(
        'section',
        { class: 'panel graph-edges', 'aria-labelledby': 'graph-edges-title' },
        h('h2', { id: 'graph-edges-title' }, `Edges (${model.edges.length})`),
        h(
          'table',
          { class: 'data' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'From → to'), h('th', { scope: 'col' }, 'Protocol'), h('th', { scope: 'col', class: 'num' }, 'Rate'), h('th', { scope: 'col', class: 'num' }, 'Errors'), h('th', { scope: 'col', class: 'num' }, 'p95'))),
          h('tbody', {}, edgeRows),
        ),
      ),
      h('section', { class: 'panel graph-nodes', 'aria-labelledby': 'graph-nodes-title' }, h('h2', { id: 'graph-nodes-title' }, `Nodes (${model.nodes.size})`), h('ul', { class: 'graph-node-list' }, nodeItems)),
    );
  }

  /* ----- the side panel ----- */

  /** Opens the panel of a node or edge; `history`: record it in the URL (a user's click). */
  function openDetail(kind, id, { history: record = true, focus = true } = {}) {
    if (!state.model) return;
    const exists = kind === 'edge' ? state.model.edges.some((e) => e.id === id) : state.model.nodes.has(id);
    if (!exists) return;
    if (state.panel && state.panel.kind === kind && state.panel.id === id) {
      state.panel.focus();
      return;
    }
    closePanel(false);
    state.selected = { kind, id };
    if (record) pushSelection(state.selected);
    if (state.cy) {
      state.cy.elements().unselect();
      state.cy.getElementById(id).select();
    }
    for (const row of lists.querySelectorAll('.graph-edge')) row.setAttribute('aria-selected', String(kind === 'edge' && row.dataset.id === id));
    state.panel = detailPanel({ kind, id, model: state.model, windowParam, windowSeconds, type, onClose: () => closePanel(true, { history: true }), onOpen: (k, i) => openDetail(k, i) });
    view.classList.add('has-detail');
    view.append(state.panel.el);
    refitIfClipped();
    if (focus) state.panel.focus();
  }

  /** Closes the panel; `history`: record it in the URL (the user closed it). */
  function closePanel(restoreFocus = true, { history: record = false } = {}) {
    if (!state.panel) return;
    const { kind, id } = state.panel;
    if (record) pushSelection(null);
    state.panel.destroy();
    state.panel = null;
    state.selected = null;
    view.classList.remove('has-detail');
    if (state.cy) state.cy.elements().unselect();
    refitIfClipped();
    for (const row of lists.querySelectorAll('.graph-edge[aria-selected="true"]')) row.removeAttribute('aria-selected');
    if (restoreFocus) {
      const selector = kind === 'edge' ? `.graph-edge[data-id="${CSS.escape(id)}"] button` : `.graph-node[data-id="${CSS.escape(id)}"] button`;
      const back = lists.querySelector(selector);
      if (back && (!document.activeElement || document.activeElement === document.body || !document.activeElement.isConnected)) back.focus({ preventScroll: true });
    }
  }

  const onKey = (event) => {
    if (event.key === 'Escape' && state.panel && !event.defaultPrevented && !document.querySelector('dialog[open]')) closePanel(true, { history: true });
  };
  document.addEventListener('keydown', onKey);

  const onVisible = () => {
    if (!document.hidden && refresh !== 'off') load();
  };
  document.addEventListener('visibilitychange', onVisible);
  if (refresh !== 'off') {
    state.timer = setInterval(() => {
      if (!document.hidden) load();
    }, parseWindow(refresh) * 1000);
  }

  await load();

  return () => {
    state.destroyed = true;
    clearInterval(state.timer);
    document.removeEventListener('keydown', onKey);
    document.removeEventListener('visibilitychange', onVisible);
    if (state.panel) state.panel.destroy();
    state.panel = null;
    if (state.cy) {
      savePositions();
      state.cy.destroy();
    }
    state.cy = null;
  };
}

/** localStorage key: whether the graph legend was left open. */
const LEGEND_KEY = 'meshtel.graph.legend';

function renderLegend(type) {
  const t = thresholdText();
  const item = (cls, text) => h('li', {}, h('span', { class: `legend-line ${cls}`, 'aria-hidden': 'true' }), text);
  const shape = (cls, text) => h('li', {}, h('span', { class: `legend-shape ${cls}`, 'aria-hidden': 'true' }), text);
  // Closed unless the user opened it last time: open, it covers the nodes in its corner.
  let open = false;
  try {
    open = localStorage.getItem(LEGEND_KEY) === 'open';
  } catch {
    // storage unavailable: closed
  }
  const legend = h(
    'details',
    { class: 'graph-legend', id: 'graph-legend', open },
    h('summary', {}, 'Legend'),
    h('div', { class: 'small' }, 'Edge colour: error rate, as Kiali counts it: responses 4xx and 5xx (429 rate limited too) and requests without a response; gRPC: non-OK status'),
    h('ul', {}, item('level-ok', `Healthy: ${t.ok}`), item('level-warn', `Degraded: ${t.warn}`), item('level-error', `Failing: ${t.error}`), item('level-tcp', 'TCP (bytes/s)')),
    h('div', { class: 'small' }, 'Edge label: requests/s over the window (+ error %); width grows with rate. Node border: errors of its inbound traffic.'),
    h(
      'ul',
      { class: 'legend-shapes' },
      type === 'workload' ? shape('shape-workload', 'Workload') : null,
      type === 'app' ? shape('shape-app', 'App') : null,
      type === 'versionedApp' ? shape('shape-app', 'App version') : null,
      shape('shape-service', 'Service'),
      shape('shape-unknown', 'Outside the mesh'),
    ),
  );
  legend.addEventListener('toggle', () => {
    try {
      localStorage.setItem(LEGEND_KEY, legend.open ? 'open' : 'closed');
    } catch {
      // storage unavailable: not remembered
    }
  });
  return legend;
}

/** Instead of the drawing when there are more than MAX_DRAWN_NODES nodes. */
function renderTooMany(model, type, maxNodes, setAll) {
  // Graph types from finest to coarsest: only the coarser ones are offered.
  const rank = { workload: 0, versionedApp: 1, app: 2, service: 3 };
  const coarser = TYPES.filter(([t]) => (t === 'app' || t === 'service') && rank[t] > rank[type]);
  const n = model.nodes.size;
  return h(
    'div',
    { id: 'graph-too-large', class: 'panel state', role: 'note' },
    h('h2', {}, `${n} nodes are too many to draw`),
    h('p', {}, `The graph is drawn up to ${maxNodes} nodes (?maxNodes= in the URL): laying out thousands holds the page up for minutes. Every node and edge of the window is in the tables below (click a row for its details).`),
    coarser.length ? h('p', {}, 'A coarser graph folds nodes together: ', ...coarser.map(([t, text], i) => [i ? ', ' : '', h('button', { type: 'button', class: 'btn-link', onclick: () => setAll({ graphType: t }) }, text.toLowerCase())])) : null,
    h('p', {}, h('button', { id: 'graph-draw-anyway', type: 'button', class: 'btn', onclick: () => setAll({ maxNodes: String(n) }) }, `Draw all ${n} nodes anyway`)),
  );
}

function renderEmpty(windowParam, setAll) {
  const longer = WINDOWS.map(([w]) => w).filter((w) => parseWindow(w) > parseWindow(windowParam));
  return empty(
    `No traffic in the last ${windowParam}`,
    h('p', {}, "The graph is drawn from the request records meshtel's sidecar proxies report: each request through a proxy becomes an edge from the caller to the service it called. No proxy reported a request in this window."),
    longer.length ? h('p', {}, 'Traffic may be older: ', ...longer.map((w, i) => [i ? ', ' : '', h('button', { type: 'button', class: 'btn-link', onclick: () => setAll({ window: w }) }, `last ${w}`)])) : null,
    h('p', {}, 'To get edges, run a proxy beside each service and send requests through them (see the README section "Sidecar proxy, Istio metrics and the service graph"):'),
    h(
      'pre',
      {},
      [
        'meshtel serve &',
        '# reviews: its app on :9080, the proxy in front of it',
        'meshtel proxy --mesh mesh.yaml --service reviews --version v1 \\',
        '    --inbound 127.0.0.1:15106=127.0.0.1:9080 --outbound 127.0.0.1:15101 &',
        '# productpage calls reviews through its own proxy',
        'meshtel proxy --mesh mesh.yaml --service productpage --version v1 \\',
        '    --inbound 127.0.0.1:15006=127.0.0.1:9081 --outbound 127.0.0.1:15001 &',
        "curl -H 'Host: reviews' http://127.0.0.1:15001/reviews/1",
      ].join('\n'),
    ),
    h('p', {}, 'Or see it end to end from a checkout: ', h('code', {}, 'cargo test --test it mesh'), ' (while this server runs elsewhere, the tests use their own).'),
  );
}

/* ---------- the detail panel (#graph-detail) ---------- */

function statList(items) {
  return h(
    'dl',
    { class: 'graph-stats' },
    items.filter(Boolean).map(([term, value, extra]) => h('div', { class: 'graph-stat' }, h('dt', {}, term), h('dd', extra || {}, value))),
  );
}

/**
 * The response codes of an edge or node; with `traced` (the trace service name of the
 * callee), a failing code links to the traces that answered it: spans carry no `error`
 * tag for a 4xx (a 429 of a quota included), so "Error traces" alone would miss them.
 */
function codesTable(codes, traced, windowSeconds) {
  const rows = [];
  const sorted = [...codes.entries()].sort(([a], [b]) => (a === '-' ? 1 : b === '-' ? -1 : a.localeCompare(b, undefined, { numeric: true })));
  for (const [code, flags] of sorted) {
    for (const [flag, pct] of [...flags.entries()].sort((a, b) => b[1] - a[1])) {
      const error = isServerErrorCode(code);
      const four = /^4/.test(code);
      rows.push(
        h(
          'tr',
          { class: error ? 'code-error' : four ? 'code-client' : '' },
          h(
            'td',
            {},
            code === '-'
              ? h('span', { title: 'no response (connection failed or reset)' }, 'none')
              : traced && (error || four)
                ? h('a', { href: codeSearchHref(traced, windowSeconds, code), 'data-nav': true, title: `Traces of ${traced} that answered ${code}` }, code)
                : code,
          ),
          h('td', {}, describeFlags(flag).map(({ flag: f, meaning }, i) => [i ? ', ' : '', f === '-' ? h('span', { class: 'muted' }, '–') : h('abbr', { title: meaning }, f), f === '-' ? null : h('span', { class: 'muted small' }, ` ${meaning}`)])),
          h('td', { class: 'num' }, `${pct >= 10 ? pct.toFixed(0) : pct.toFixed(1)} %`),
        ),
      );
    }
  }
  if (!rows.length) return h('p', { class: 'muted small' }, 'No response codes recorded.');
  return h('table', { class: 'data graph-codes' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col' }, 'Flags'), h('th', { scope: 'col', class: 'num' }, 'Requests'))), h('tbody', {}, rows));
}

function searchHref(service, windowSeconds, errorsOnly) {
  const params = new URLSearchParams({ service, lookback: lookbackFor(windowSeconds) });
  if (errorsOnly) params.set('tags', ERROR_TAGS);
  return `${base}/search?${params}`;
}

/** The trace service name of a callee, or '' when it has none to search by. */
function tracedName(service, namespace) {
  return service ? traceServiceName(service, namespace) : '';
}

function codeSearchHref(service, windowSeconds, code) {
  const params = new URLSearchParams({ service, lookback: lookbackFor(windowSeconds), tags: JSON.stringify({ 'http.response.status_code': code }) });
  return `${base}/search?${params}`;
}

function metricsWindow(windowSeconds) {
  const options = [
    [300, '5m'],
    [900, '15m'],
    [3600, '1h'],
    [21600, '6h'],
    [86400, '24h'],
  ];
  return (options.find(([s]) => s >= windowSeconds) ?? options[options.length - 1])[1];
}

function only(set) {
  return set && set.size === 1 ? [...set][0] : '';
}

/** The timeseries query of a selection, or null when it has no service to ask about. */
function seriesQuery(kind, id, model) {
  if (kind === 'edge') {
    const edge = model.edges.find((e) => e.id === id);
    const source = model.nodes.get(edge.source);
    const target = model.nodes.get(edge.target);
    const service = only(target.services) || [...target.services][0];
    if (!service) return null;
    const params = { service: serviceFqdn(service, target.namespace) };
    if (source.kind !== 'unknown' && only(source.workloads)) {
      params.sourceWorkload = only(source.workloads);
      params.sourceNamespace = source.namespace;
    } else if (source.kind === 'app' && source.app) {
      // An app node (the server's app graph) stands for all its workloads.
      params.sourceApp = source.app;
      params.sourceNamespace = source.namespace;
    } else if (source.kind !== 'unknown') {
      // A caller behind a service (the service graph): the callers' own view, which
      // holds the failures before the callee (UO, FI, UH) the callee never reports.
      params.reporter = 'source';
    }
    if (only(target.workloads)) {
      params.destinationWorkload = only(target.workloads);
      params.destinationNamespace = target.namespace;
    } else if (target.kind === 'app' && target.app) {
      params.destinationApp = target.app;
      params.destinationNamespace = target.namespace;
    }
    return params;
  }
  const node = model.nodes.get(id);
  const service = [...node.services][0];
  if (!service || !node.incoming.length) return null;
  const params = { service: serviceFqdn(service, node.namespace) };
  if (only(node.workloads)) {
    params.destinationWorkload = only(node.workloads);
    params.destinationNamespace = node.namespace;
  } else if (node.kind === 'app' && node.app) {
    params.destinationApp = node.app;
    params.destinationNamespace = node.namespace;
  }
  return params;
}

function detailPanel({ kind, id, model: initialModel, windowParam, windowSeconds, type, onClose, onOpen }) {
  let model = initialModel;
  const heading = h('h2', { id: 'graph-detail-title', tabindex: '-1' });
  const subtitle = h('div', { class: 'muted small graph-detail-sub' });
  const stats = h('div', { class: 'graph-detail-stats' });
  const links = h('div', { class: 'graph-detail-links' });
  const chartsNote = h('div', { class: 'graph-detail-chart-note' });
  const rateBox = h('div', { class: 'graph-chart', dataset: { metric: 'rate' } });
  const durationBox = h('div', { class: 'graph-chart', dataset: { metric: 'duration' } });
  // The error rate above counts as Kiali does, 4xx included; the chart's line comes from
  // the metrics API, which counts failures as Istio's dashboards do. Said, not hidden.
  const failuresCaption = h('p', { class: 'muted small' }, 'failures/s: 5xx, no response, a proxy flag or a gRPC error; 4xx answers count in the error rate above, not here.');
  const chartsSection = h('section', { class: 'graph-detail-charts', 'aria-label': 'Over time' }, h('h3', {}, `Over the last ${windowParam}`), chartsNote, rateBox, failuresCaption, durationBox);
  const el = h(
    'aside',
    { id: 'graph-detail', class: 'side-panel graph-detail', role: 'complementary', 'aria-labelledby': 'graph-detail-title' },
    h('div', { class: 'graph-detail-head' }, h('div', { class: 'grow' }, heading, subtitle), h('button', { type: 'button', class: 'btn graph-detail-close', 'aria-label': 'Close details', title: 'Close (Esc)', onclick: onClose }, '×')),
    stats,
    links,
    chartsSection,
  );
  const sync = `graph-detail-${Math.random().toString(36).slice(2)}`;
  let rateChart = null;
  let durationChart = null;
  let abort = null;
  let destroyed = false;

  function render() {
    const name = (nid) => plainLabel(model.nodes.get(nid) || { label: nid });
    if (kind === 'edge') {
      const edge = model.edges.find((e) => e.id === id);
      if (!edge) {
        replace(stats, h('p', { class: 'inline-error' }, 'This edge had no traffic in the latest refresh.'));
        return;
      }
      const target = model.nodes.get(edge.target);
      const source = model.nodes.get(edge.source);
      replace(heading, name(edge.source), h('span', { class: 'graph-arrow', 'aria-label': 'to' }, ' → '), name(edge.target));
      replace(subtitle, `${edge.protocol.toUpperCase()} edge · ${KIND_NAMES[source.kind]} → ${KIND_NAMES[target.kind]} · last ${windowParam}`);
      const level = edgeLevel(edge);
      const approx = edge.approx ? '≈' : '';
      const service = [...target.services][0] || target.app || only(target.workloads);
      let fourxx = 0;
      let fivexx = 0;
      let none = 0;
      for (const [code, flags] of edge.codes) {
        const sum = [...flags.values()].reduce((a, b) => a + b, 0) / 100;
        if (code === '-') none += sum;
        else if (/^4/.test(code)) fourxx += sum;
        else if (/^5/.test(code)) fivexx += sum;
      }
      replace(
        stats,
        statList([
          [edge.protocol === 'tcp' ? 'Throughput' : 'Request rate', edgeRateText(edge)],
          edge.protocol === 'tcp' ? null : ['Error rate', levelBadge(level, formatPercent(edge.errorRate)), { class: `level-${level}` }],
          edge.protocol === 'http' ? ['5xx · no response · 4xx', `${formatPercent(fivexx)} · ${formatPercent(none)} · ${formatPercent(fourxx)}`] : null,
          edge.percentReq !== null && edge.percentReq !== undefined ? ["Share of caller's requests", formatPercent(edge.percentReq)] : null,
          edge.times.p50 !== undefined ? ['Latency p50 / p95 / p99', `${approx}${formatMs(edge.times.p50)} / ${approx}${formatMs(edge.times.p95)} / ${approx}${formatMs(edge.times.p99)}`] : null,
          edge.throughput && edge.protocol !== 'tcp' ? ['Response bytes', formatBytes(edge.throughput)] : null,
        ]),
        edge.approx ? h('p', { class: 'muted small' }, `Merged from ${edge.members.length} workload edges: latencies are rate-weighted means of theirs.`) : null,
        h('h3', {}, 'Responses'),
        codesTable(edge.codes, tracedName(service, target.namespace), windowSeconds),
      );
      renderLinks(service, target.namespace, edge.errorRate > 0);
    } else {
      const node = model.nodes.get(id);
      if (!node) {
        replace(stats, h('p', { class: 'inline-error' }, 'This node had no traffic in the latest refresh.'));
        return;
      }
      replace(heading, plainLabel(node));
      replace(subtitle, `${KIND_NAMES[node.kind] || node.kind}${known(node.namespace) ? ` · namespace ${node.namespace}` : ''} · last ${windowParam}`);
      const inLevel = nodeLevel(node);
      const facts = [];
      if (node.workloads.size) facts.push(['Workload' + (node.workloads.size > 1 ? 's' : ''), [...node.workloads].join(', ')]);
      if (node.app) facts.push(['App', node.app]);
      if (node.versions.size) facts.push(['Version' + (node.versions.size > 1 ? 's' : ''), [...node.versions].sort().join(', ')]);
      if (node.services.size) facts.push(['Serves', [...node.services].join(', ')]);
      const edgeLink = (edge, other) =>
        h(
          'li',
          {},
          h('button', { type: 'button', class: 'btn-link', onclick: () => onOpen('edge', edge.id) }, other),
          ' ',
          h('span', { class: 'muted small' }, `${edgeRateText(edge)}${edge.protocol === 'tcp' ? '' : `, ${formatPercent(edge.errorRate)} err`}`),
        );
      replace(
        stats,
        statList([
          ...facts,
          ['Inbound', node.inRate > 0 ? formatRate(node.inRate) : 'none'],
          node.inRate > 0 ? ['Inbound errors', levelBadge(inLevel, formatPercent(node.inErrors / node.inRate))] : null,
          ['Outbound', node.outRate > 0 ? formatRate(node.outRate) : 'none'],
          node.outRate > 0 ? ['Outbound errors', formatPercent(node.outErrors / node.outRate)] : null,
        ]),
        node.incoming.length ? [h('h3', {}, 'Inbound responses'), codesTable(mergeCodes(node.incoming.filter((e) => e.protocol !== 'tcp')), node.kind === 'unknown' ? '' : tracedName([...node.services][0] || node.app || only(node.workloads), node.namespace), windowSeconds)] : null,
        node.incoming.length ? [h('h3', {}, `Called by (${node.incoming.length})`), h('ul', { class: 'graph-detail-edges' }, node.incoming.map((e) => edgeLink(e, name(e.source))))] : null,
        node.outgoing.length ? [h('h3', {}, `Calls (${node.outgoing.length})`), h('ul', { class: 'graph-detail-edges' }, node.outgoing.map((e) => edgeLink(e, name(e.target))))] : null,
      );
      const service = [...node.services][0] || node.app || only(node.workloads);
      renderLinks(node.kind === 'unknown' ? '' : service, node.namespace, node.inErrors > 0);
    }
  }

  function renderLinks(service, namespace, hasErrors) {
    if (!service) {
      replace(links);
      return;
    }
    const traced = traceServiceName(service, namespace);
    const fqdn = serviceFqdn(service, namespace);
    replace(
      links,
      h('h3', {}, 'Go to'),
      h(
        'ul',
        { class: 'graph-detail-linklist' },
        h('li', {}, h('a', { href: searchHref(traced, windowSeconds, false), 'data-nav': true }, `Traces of ${traced}`)),
        h('li', {}, h('a', { href: searchHref(traced, windowSeconds, true), 'data-nav': true, class: hasErrors ? 'graph-error-link' : null }, `Error traces of ${traced}`)),
        fqdn.includes('.') ? h('li', {}, h('a', { href: `${base}/metrics?${new URLSearchParams({ service: fqdn, window: metricsWindow(windowSeconds) })}`, 'data-nav': true }, `Metrics of ${service}`)) : null,
      ),
    );
  }

  async function loadCharts() {
    const query = seriesQuery(kind, id, model);
    if (!query) {
      chartsSection.hidden = true;
      return;
    }
    chartsSection.hidden = false;
    if (abort) abort.abort();
    abort = new AbortController();
    const step = autoStep(windowSeconds);
    if (!rateChart) {
      rateChart = createChart(rateBox, { title: 'Requests/s and failures/s', format: (v) => formatRate(v, '/s'), height: 150, sync });
      durationChart = createChart(durationBox, { title: 'Duration', format: formatMs, height: 150, sync });
    }
    let body;
    try {
      body = await fetchTimeseries({ ...query, window: windowParam, step: `${step}s` }, { signal: abort.signal });
    } catch (error) {
      if (error.name === 'AbortError' || destroyed) return;
      replace(chartsNote, metricsErrorNote(error));
      rateBox.hidden = true;
      failuresCaption.hidden = true;
      durationBox.hidden = true;
      return;
    }
    if (destroyed) return;
    replace(chartsNote);
    rateBox.hidden = false;
    failuresCaption.hidden = false;
    durationBox.hidden = false;
    const { x, series } = alignTimeseries(body);
    const all = series[0] || { points: [] };
    const value = (p, f) => (p && p[f] !== null && p[f] !== undefined ? p[f] : null);
    rateChart.setData(x, [
      { label: 'requests/s', color: PALETTE[0], values: all.points.map((p) => (p ? p.perSecond : null)) },
      { label: 'failures/s', color: LEVEL_COLORS.error, values: all.points.map((p) => (p ? p.errorsPerSecond : null)) },
    ]);
    durationChart.setData(
      x,
      QUANTILES.map((q, i) => ({ label: q.label, color: ['#0891b2', '#2563eb', '#9333ea'][i], dash: q.dash, values: all.points.map((p) => value(p, q.field)) })),
    );
  }

  render();
  loadCharts();

  return {
    el,
    kind,
    id,
    focus() {
      heading.focus();
    },
    update(next) {
      model = next;
      render();
      loadCharts();
    },
    destroy() {
      destroyed = true;
      if (abort) abort.abort();
      if (rateChart) rateChart.destroy();
      if (durationChart) durationChart.destroy();
      el.remove();
    },
  };
}
