// Trace view (/trace/{id}[?span={spanID}]): header with the trace's numbers, a
// minimap that zooms the timeline, in-trace search, and a virtualized waterfall —
// only the rows in view (plus a buffer) are in the DOM, each ROW_H tall — with a
// collapsible span tree, the critical path, and a span detail panel.

import { get, base, url } from '../api.js';
import { h, replace, formatDuration, formatTimeZoned, loading, empty, errorState, serviceColor, debounce } from '../lib/dom.js';
import { buildTraceModel, criticalPath, isRootSpan, searchText } from '../lib/trace-model.js';
import { createMinimap } from '../lib/trace-minimap.js';
import { spanDetail } from '../lib/span-detail.js';

export const title = 'Trace';

const ROW_H = 28; // keep in sync with .span-row height in pages.css
const AXIS_H = 30; // keep in sync with .trace-axis height in pages.css
const BUFFER = 15; // rows rendered above and below the viewport
const INDENT = 12; // px per tree level
const MAX_INDENT_DEPTH = 24; // deeper levels stop indenting and show their depth
const LAST_SEARCH_KEY = 'meshtel.search.last';
const NAME_WIDTH_KEY = 'meshtel.trace.nameWidth';

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function lastSearchHref() {
  let qs = '';
  try {
    qs = window.sessionStorage.getItem(LAST_SEARCH_KEY) || '';
  } catch {
    qs = '';
  }
  return `${base}/search${qs}`;
}

export function mount(root, ctx) {
  const requested = (ctx.path[0] || '').trim();
  const controller = new AbortController();
  let teardown = null;
  if (!requested) {
    root.append(empty('No trace id', h('p', {}, 'Open a trace from the ', h('a', { href: `${base}/search` }, 'search page'), '.')));
    return undefined;
  }
  const view = h('section', { id: 'trace-view', class: 'trace-view', 'data-trace-id': requested, 'aria-label': 'Trace' });
  root.append(view);

  const load = async () => {
    view.setAttribute('aria-busy', 'true');
    delete view.dataset.ready;
    replace(view, loading(`Loading trace ${requested}…`));
    let body;
    try {
      body = await get(`/api/traces/${encodeURIComponent(requested)}`, undefined, { signal: controller.signal });
    } catch (error) {
      if (error.name === 'AbortError') return;
      view.removeAttribute('aria-busy');
      if (error.status === 404) replace(view, notFound(requested));
      else if (error.status === 400) replace(view, empty('Not a valid trace id', h('p', { class: 'mono' }, error.message), h('p', {}, h('a', { href: lastSearchHref() }, 'Back to search'))));
      else replace(view, errorState(error, load));
      return;
    }
    const trace = body && Array.isArray(body.data) ? body.data[0] : null;
    view.removeAttribute('aria-busy');
    if (!trace || !Array.isArray(trace.spans) || !trace.spans.length) {
      replace(view, notFound(requested));
      return;
    }
    teardown = renderTrace(view, trace, ctx);
  };
  load();

  return () => {
    controller.abort();
    if (teardown) teardown();
  };
}

function notFound(id) {
  return empty(
    'Trace not found',
    h('p', {}, 'No trace with id ', h('code', {}, id), ' is stored. It may not have arrived yet (spans become searchable a moment after they are received), or it is older than the retention period.'),
    h('p', {}, h('a', { href: lastSearchHref() }, 'Back to search')),
  );
}

/** Builds the whole trace view into `view`; returns a cleanup function. */
function renderTrace(view, trace, ctx) {
  const model = buildTraceModel(trace);
  const cp = criticalPath(model);
  const order = model.order;
  const n = order.length;
  const total = Math.max(1, model.duration);
  const rootNode = model.root || order[0];

  // ---- state --------------------------------------------------------------------
  const collapsed = new Set();
  let visible = [];
  const visPos = new Int32Array(n);
  let viewStart = 0;
  let viewEnd = total;
  let activeNode = order[0];
  let selectedNode = null;
  let query = '';
  let matches = [];
  const matchSet = new Set();
  let matchIdx = -1;
  const rendered = new Map(); // node → row element
  let rFirst = -1;
  let rLast = -1;

  view.dataset.traceId = model.traceID;
  view.dataset.spanCount = String(n);
  document.title = `${rootNode.service}: ${rootNode.operation} · Trace · meshtel`;

  // ---- header -------------------------------------------------------------------
  // The download is the API's own answer, fetched again pretty-printed when clicked,
  // so no copy of a large trace is serialised up front.
  const downloadHref = url(`/api/traces/${encodeURIComponent(model.traceID)}`, { prettyPrint: 'true' });
  const stat = (label, value) => h('div', { class: 'trace-stat' }, h('dt', {}, label), h('dd', {}, value));
  const hasTrueRoot = isRootSpan(rootNode.span, model.traceID);
  const header = h(
    'header',
    { class: 'panel trace-header' },
    h(
      'div',
      { class: 'trace-title-row' },
      h(
        'h1',
        { class: 'trace-title' },
        h('span', { class: 'swatch', style: { background: serviceColor(rootNode.service) }, 'aria-hidden': 'true' }),
        h('span', { class: 'trace-title-service' }, rootNode.service),
        ': ',
        h('span', { class: 'trace-title-op' }, rootNode.operation || '(no operation)'),
      ),
      hasTrueRoot ? null : h('span', { class: 'badge badge-warn', title: 'No span without a parent was received; the earliest orphan names the trace' }, 'no root span'),
      h('span', { class: 'grow' }),
      h('a', { class: 'btn', href: lastSearchHref() }, '← Search'),
      h('a', { id: 'trace-download', class: 'btn', href: downloadHref, download: `trace-${model.traceID}.json` }, 'Download JSON'),
    ),
    h(
      'dl',
      { class: 'trace-stats' },
      stat('Trace ID', h('code', { class: 'trace-id' }, model.traceID)),
      stat('Started', h('time', { datetime: new Date(model.start / 1000).toISOString() }, formatTimeZoned(model.start))),
      stat('Duration', formatDuration(model.duration)),
      stat('Services', String(model.services.length)),
      stat('Depth', String(model.maxDepth + 1)),
      stat('Spans', String(n)),
      stat('Errors', model.errorCount ? h('span', { class: 'badge badge-error' }, String(model.errorCount)) : '0'),
    ),
    h(
      'ul',
      { class: 'trace-services', 'aria-label': 'Services in this trace (select one to find its spans)' },
      model.services.map((s) =>
        h(
          'li',
          {},
          h(
            'button',
            { type: 'button', class: 'trace-service-chip', title: `Find spans of ${s.name}`, onclick: () => setQuery(s.name) },
            h('span', { class: 'swatch', style: { background: serviceColor(s.name) }, 'aria-hidden': 'true' }),
            s.name,
            h('span', { class: 'muted' }, ` ${s.count}`),
          ),
        ),
      ),
    ),
    model.warnings && model.warnings.length ? h('div', { class: 'inline-error', role: 'note' }, model.warnings.join('; ')) : null,
  );

  // ---- minimap ------------------------------------------------------------------
  const minimap = createMinimap(model, (s, e) => setView(s, e));

  // ---- toolbar ------------------------------------------------------------------
  const searchInput = h('input', {
    id: 'trace-search',
    type: 'search',
    placeholder: 'Find spans: service, operation, tag…',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-label': 'Find spans in this trace',
    'aria-describedby': 'trace-search-count',
    'aria-controls': 'trace-rows',
  });
  const searchCount = h('span', { id: 'trace-search-count', class: 'trace-search-count', 'aria-live': 'polite', 'data-count': '0' });
  const searchPos = h('span', { id: 'trace-search-position', class: 'muted small' });
  const prevBtn = h('button', { type: 'button', class: 'btn btn-icon', 'aria-label': 'Previous match (Shift+Enter)', title: 'Previous match (Shift+Enter)', disabled: true, onclick: () => step(-1) }, '↑');
  const nextBtn = h('button', { type: 'button', class: 'btn btn-icon', 'aria-label': 'Next match (Enter)', title: 'Next match (Enter)', disabled: true, onclick: () => step(1) }, '↓');
  const cpToggle = h('input', { type: 'checkbox', id: 'trace-critical-path', checked: true });
  const zoomLabel = h('span', { class: 'muted small trace-zoom-label', 'aria-live': 'polite' });
  const resetZoom = h('button', { type: 'button', id: 'trace-zoom-reset', class: 'btn', hidden: true, onclick: () => {
    const hadFocus = document.activeElement === resetZoom;
    setView(0, total);
    if (hadFocus) minimap.el.focus();
  } }, 'Reset zoom');
  const toolbar = h(
    'div',
    { class: 'trace-toolbar', role: 'toolbar', 'aria-label': 'Timeline tools' },
    h('div', { class: 'trace-find' }, searchInput, prevBtn, nextBtn, searchCount, searchPos),
    h('span', { class: 'grow' }),
    zoomLabel,
    resetZoom,
    h('label', { class: 'trace-cp-toggle', title: 'The chain of spans that determines when the trace ends' }, cpToggle, ' Critical path'),
    h('button', { type: 'button', class: 'btn', id: 'trace-expand-all', onclick: expandAll }, 'Expand all'),
    h('button', { type: 'button', class: 'btn', id: 'trace-collapse-all', onclick: collapseAll }, 'Collapse all'),
  );

  // ---- timeline -----------------------------------------------------------------
  const tickEls = [0, 0.25, 0.5, 0.75, 1].map((f, i) => h('span', { class: `trace-tick${i === 0 ? ' first' : i === 4 ? ' last' : ''}`, style: { left: `${f * 100}%` } }));
  const resizer = h('div', {
    class: 'trace-resizer',
    role: 'separator',
    tabindex: '0',
    'aria-orientation': 'vertical',
    'aria-label': 'Resize the service and operation column',
    'aria-valuemin': '15',
    'aria-valuemax': '70',
  });
  const axis = h(
    'div',
    { class: 'trace-axis' },
    h('div', { class: 'trace-axis-name' }, h('span', { 'aria-hidden': 'true' }, 'Service & operation'), resizer),
    h('div', { class: 'trace-axis-ticks', 'aria-hidden': 'true' }, tickEls),
  );
  const rowsEl = h('div', { class: 'trace-rows', id: 'trace-rows', role: 'tree', 'aria-label': `Spans of trace ${model.traceID}` });
  const scroller = h('div', { class: 'trace-scroll' }, axis, rowsEl);
  const detail = h('aside', { id: 'span-detail', class: 'span-detail', 'aria-label': 'Span details', tabindex: '-1', hidden: true });
  const bodyEl = h('div', { class: 'trace-body' }, scroller, detail);

  replace(view, header, minimap.el, toolbar, bodyEl);
  minimap.redraw();

  // ---- visible rows ---------------------------------------------------------------
  function computeVisible() {
    visible = [];
    visPos.fill(-1);
    let i = 0;
    while (i < n) {
      const node = order[i];
      visPos[i] = visible.length;
      visible.push(node);
      i += collapsed.has(node) ? node.subtree : 1;
    }
    rowsEl.style.height = `${visible.length * ROW_H}px`;
    view.dataset.spanOrder = visible.map((node) => node.id).join(',');
    view.dataset.visibleSpanCount = String(visible.length);
    while (activeNode && visPos[activeNode.index] < 0) activeNode = activeNode.parent;
    if (!activeNode) activeNode = visible[0];
  }

  function buildRow(node, i) {
    const row = document.createElement('div');
    let cls = 'span-row';
    if (node.error) cls += ' error';
    if (cp.has(node)) cls += ' on-critical-path';
    if (node === selectedNode) cls += ' selected';
    if (query) cls += matchSet.has(node) ? ' search-match' : ' search-dim';
    if (matchIdx >= 0 && matches[matchIdx] === node) cls += ' search-current';
    row.className = cls;
    row.setAttribute('role', 'treeitem');
    row.setAttribute('aria-level', String(node.depth + 1));
    row.setAttribute('aria-posinset', String(node.pos));
    row.setAttribute('aria-setsize', String(node.setSize));
    row.setAttribute('aria-selected', node === selectedNode ? 'true' : 'false');
    const hasKids = node.children.length > 0;
    const isCollapsed = hasKids && collapsed.has(node);
    if (hasKids) row.setAttribute('aria-expanded', isCollapsed ? 'false' : 'true');
    row.setAttribute('aria-label', `${node.service} ${node.operation}, ${formatDuration(node.duration)}${node.error ? ', error' : ''}${isCollapsed ? `, ${plural(node.subtree - 1, 'hidden span')}` : ''}`);
    row.tabIndex = node === activeNode ? 0 : -1;
    row.style.transform = `translateY(${i * ROW_H}px)`;
    const ds = row.dataset;
    ds.spanId = node.id;
    ds.depth = String(node.depth);
    ds.service = node.service;
    ds.operation = node.operation;
    row.spanNode = node;
    const color = serviceColor(node.service);

    const name = document.createElement('div');
    name.className = 'span-name';
    // The whole name, for when the column cuts it short.
    name.title = `${node.service}: ${node.operation}`;
    // Indentation is capped in CSS at a share of the column so deep trees stay readable.
    name.style.setProperty('--indent', `${Math.min(node.depth, MAX_INDENT_DEPTH) * INDENT}px`);
    if (hasKids) {
      const toggle = document.createElement('button');
      toggle.type = 'button';
      toggle.className = 'span-toggle';
      toggle.tabIndex = -1;
      toggle.setAttribute('aria-hidden', 'true');
      toggle.title = isCollapsed ? `Expand (${plural(node.subtree - 1, 'span')})` : 'Collapse';
      toggle.textContent = isCollapsed ? '▸' : '▾';
      name.append(toggle);
    } else {
      const spacer = document.createElement('span');
      spacer.className = 'span-toggle-space';
      name.append(spacer);
    }
    if (node.depth > MAX_INDENT_DEPTH) {
      const deep = document.createElement('span');
      deep.className = 'span-deep';
      deep.textContent = `L${node.depth + 1}`;
      deep.title = `Depth ${node.depth + 1}`;
      name.append(deep);
    }
    const svc = document.createElement('span');
    svc.className = 'span-svc';
    svc.style.borderLeftColor = color;
    svc.textContent = node.service;
    const op = document.createElement('span');
    op.className = 'span-op';
    op.textContent = node.operation;
    name.append(svc, op);
    if (!node.parent && !isRootSpan(node.span, model.traceID)) {
      // Top level only because its parent did not arrive: not a second root.
      const orphan = document.createElement('span');
      orphan.className = 'span-orphan';
      orphan.title = 'Its parent span is not in this trace (not received, or not yet)';
      orphan.textContent = 'parent missing';
      name.append(orphan);
    }
    if (isCollapsed) {
      const hidden = document.createElement('span');
      hidden.className = 'span-hidden-count';
      hidden.textContent = `+${node.subtree - 1}`;
      name.append(hidden);
    }
    if (node.error) {
      const err = document.createElement('span');
      err.className = 'span-error-icon';
      err.title = 'Error';
      err.textContent = '!';
      name.append(err);
    }

    const tl = document.createElement('div');
    tl.className = 'span-timeline';
    const width = viewEnd - viewStart;
    const relS = node.start - model.start;
    const relE = node.end - model.start;
    if (relE >= viewStart && relS <= viewEnd) {
      const l = Math.max(0, ((relS - viewStart) / width) * 100);
      const r = Math.min(100, ((relE - viewStart) / width) * 100);
      const bar = document.createElement('div');
      bar.className = 'span-bar';
      bar.style.left = `${l}%`;
      bar.style.width = `${Math.max(0, r - l)}%`;
      bar.style.backgroundColor = color;
      tl.append(bar);
      const segs = cp.get(node);
      if (segs) {
        for (const [s, e] of segs) {
          const sl = Math.max(0, ((s - model.start - viewStart) / width) * 100);
          const sr = Math.min(100, ((e - model.start - viewStart) / width) * 100);
          if (sr < sl) continue;
          const seg = document.createElement('div');
          seg.className = 'cp-seg';
          seg.style.left = `${sl}%`;
          seg.style.width = `${sr - sl}%`;
          tl.append(seg);
        }
      }
      const label = document.createElement('span');
      label.className = 'span-dur';
      label.textContent = formatDuration(node.duration);
      if (r < 78) label.style.left = `calc(${r}% + 6px)`;
      else if (l > 14) label.style.right = `calc(${100 - l}% + 6px)`;
      else {
        label.style.right = `calc(${100 - r}% + 4px)`;
        label.classList.add('inside');
      }
      tl.append(label);
    } else {
      tl.classList.add('out-of-view');
      const arrow = document.createElement('span');
      arrow.className = `span-offscreen ${relE < viewStart ? 'before' : 'after'}`;
      arrow.textContent = relE < viewStart ? `◂ ${formatDuration(node.duration)}` : `${formatDuration(node.duration)} ▸`;
      tl.append(arrow);
    }
    row.append(name, tl);
    return row;
  }

  /** Puts the rows in view (plus a buffer, plus the active row) in the DOM. */
  function renderRows(force) {
    const top = scroller.scrollTop;
    const height = Math.max(scroller.clientHeight - AXIS_H, ROW_H * 8);
    const first = Math.max(0, Math.floor(top / ROW_H) - BUFFER);
    const last = Math.min(visible.length, Math.ceil((top + height) / ROW_H) + BUFFER);
    const activeIdx = activeNode ? visPos[activeNode.index] : -1;
    const activeInRange = activeIdx >= first && activeIdx < last;
    if (!force && first === rFirst && last === rLast) return;
    rFirst = first;
    rLast = last;
    const focusedRow = rowsEl.contains(document.activeElement) ? document.activeElement : null;
    const wanted = [];
    if (activeIdx >= 0 && activeIdx < first) wanted.push(activeIdx);
    for (let i = first; i < last; i += 1) wanted.push(i);
    if (activeIdx >= last && !activeInRange) wanted.push(activeIdx);
    const keep = new Set();
    if (force) {
      rendered.clear();
      rowsEl.textContent = '';
    } else {
      for (const i of wanted) keep.add(visible[i]);
      for (const [node, el] of rendered) {
        if (!keep.has(node)) {
          el.remove();
          rendered.delete(node);
        }
      }
    }
    let cursor = rowsEl.firstChild;
    for (const i of wanted) {
      const node = visible[i];
      let el = rendered.get(node);
      if (!el) {
        el = buildRow(node, i);
        rendered.set(node, el);
        rowsEl.insertBefore(el, cursor);
      } else if (el === cursor) {
        cursor = cursor.nextSibling;
      } else {
        rowsEl.insertBefore(el, cursor);
      }
    }
    if (focusedRow && !focusedRow.isConnected && activeNode) {
      const el = rendered.get(activeNode);
      if (el) el.focus({ preventScroll: true });
    }
  }

  function updateTabStops() {
    for (const [node, el] of rendered) el.tabIndex = node === activeNode ? 0 : -1;
  }

  function scrollToIndex(i, center = false) {
    const viewH = scroller.clientHeight - AXIS_H;
    const rowTop = i * ROW_H;
    if (center) {
      if (rowTop < scroller.scrollTop || rowTop + ROW_H > scroller.scrollTop + viewH) scroller.scrollTop = Math.max(0, rowTop - viewH / 2);
    } else if (rowTop < scroller.scrollTop) {
      scroller.scrollTop = rowTop;
    } else if (rowTop + ROW_H > scroller.scrollTop + viewH) {
      scroller.scrollTop = rowTop + ROW_H - viewH;
    }
  }

  /** Expands the ancestors of `node`; true when anything changed. */
  function reveal(node) {
    let changed = false;
    for (let p = node.parent; p; p = p.parent) if (collapsed.delete(p)) changed = true;
    if (changed) computeVisible();
    return changed;
  }

  function setActive(node, { focus = false, center = false } = {}) {
    const revealed = reveal(node);
    activeNode = node;
    scrollToIndex(visPos[node.index], center);
    renderRows(revealed);
    updateTabStops();
    if (focus) {
      const el = rendered.get(node);
      if (el) el.focus({ preventScroll: true });
    }
  }

  function toggle(node, collapse) {
    if (!node.children.length) return;
    const willCollapse = collapse === undefined ? !collapsed.has(node) : collapse;
    if (willCollapse === collapsed.has(node)) return;
    if (willCollapse) collapsed.add(node);
    else collapsed.delete(node);
    const hadFocus = rowsEl.contains(document.activeElement);
    computeVisible();
    renderRows(true);
    updateTabStops();
    if (hadFocus && activeNode) {
      const el = rendered.get(activeNode);
      if (el) el.focus({ preventScroll: true });
    }
  }

  function expandAll() {
    collapsed.clear();
    computeVisible();
    renderRows(true);
  }

  function collapseAll() {
    for (const node of order) if (node.children.length) collapsed.add(node);
    computeVisible();
    scroller.scrollTop = Math.min(scroller.scrollTop, Math.max(0, visPos[activeNode.index] * ROW_H));
    renderRows(true);
  }

  // ---- zoom ---------------------------------------------------------------------
  function updateAxis() {
    const width = viewEnd - viewStart;
    tickEls.forEach((el, i) => {
      el.textContent = formatDuration(Math.round(viewStart + (width * i) / 4));
    });
  }

  function setView(s, e) {
    let start = Math.max(0, Math.min(s, total));
    let end = Math.max(0, Math.min(e, total));
    if (end - start < Math.min(total, 2)) {
      const c = (start + end) / 2;
      start = Math.max(0, c - 1);
      end = Math.min(total, start + 2);
    }
    viewStart = start;
    viewEnd = end;
    const zoomed = viewStart > 0 || viewEnd < total;
    resetZoom.hidden = !zoomed;
    view.classList.toggle('zoomed', zoomed);
    zoomLabel.textContent = zoomed ? `Zoomed to ${formatDuration(Math.round(viewStart))} – ${formatDuration(Math.round(viewEnd))}` : '';
    minimap.setView(viewStart, viewEnd);
    updateAxis();
    renderRows(true);
  }

  // ---- in-trace search ----------------------------------------------------------
  function runFind(text) {
    query = text.trim().toLowerCase();
    matches = [];
    matchSet.clear();
    matchIdx = -1;
    if (query) {
      for (let i = 0; i < n; i += 1) {
        const node = order[i];
        if (searchText(node).includes(query)) {
          matches.push(node);
          matchSet.add(node);
        }
      }
    }
    view.classList.toggle('searching', Boolean(query));
    updateFindStatus();
    renderRows(true);
    if (selectedNode) renderDetail(selectedNode);
  }

  function updateFindStatus() {
    searchCount.dataset.count = String(matches.length);
    searchCount.textContent = query ? (matches.length ? `${matches.length} ${matches.length === 1 ? 'match' : 'matches'}` : 'No matches') : '';
    searchPos.textContent = matchIdx >= 0 ? `${matchIdx + 1} of ${matches.length}` : '';
    prevBtn.disabled = nextBtn.disabled = matches.length === 0;
  }

  function step(dir) {
    if (!matches.length) return;
    matchIdx = matchIdx < 0 ? (dir > 0 ? 0 : matches.length - 1) : (matchIdx + dir + matches.length) % matches.length;
    const node = matches[matchIdx];
    reveal(node);
    activeNode = node;
    scrollToIndex(visPos[node.index], true);
    renderRows(true);
    updateFindStatus();
  }

  function setQuery(text) {
    searchInput.value = text;
    runFind(text);
    searchInput.focus();
  }

  const findLater = debounce(() => {
    if (searchInput.value.trim().toLowerCase() !== query) runFind(searchInput.value);
  }, 120);
  searchInput.addEventListener('input', findLater);
  searchInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      if (searchInput.value.trim().toLowerCase() !== query) runFind(searchInput.value);
      step(event.shiftKey ? -1 : 1);
    } else if (event.key === 'Escape' && searchInput.value) {
      event.preventDefault();
      searchInput.value = '';
      runFind('');
    } else if (event.key === 'ArrowDown' && matches.length === 0 && activeNode) {
      event.preventDefault();
      setActive(activeNode, { focus: true });
    }
  });

  // ---- selection and detail -----------------------------------------------------
  function setRowClass(node, cls, on) {
    const el = node && rendered.get(node);
    if (el) {
      el.classList.toggle(cls, on);
      if (cls === 'selected') el.setAttribute('aria-selected', on ? 'true' : 'false');
    }
  }

  function writeSpanParam(id) {
    const url = new URL(location.href);
    if (id) url.searchParams.set('span', id);
    else url.searchParams.delete('span');
    const href = url.pathname + url.search + url.hash;
    if (href !== location.pathname + location.search + location.hash) history.replaceState(history.state, '', href);
  }

  function select(node, { scroll = true } = {}) {
    setRowClass(selectedNode, 'selected', false);
    selectedNode = node;
    setRowClass(node, 'selected', true);
    renderDetail(node);
    detail.hidden = false;
    view.classList.add('has-detail');
    writeSpanParam(node.id);
    if (scroll) setActive(node, { center: true });
  }

  function closeDetail() {
    setRowClass(selectedNode, 'selected', false);
    selectedNode = null;
    detail.hidden = true;
    view.classList.remove('has-detail');
    writeSpanParam(null);
    if (activeNode) setActive(activeNode, { focus: true });
  }

  function renderDetail(node) {
    const open = (target) => {
      select(target);
      const el = rendered.get(target);
      if (el) el.focus({ preventScroll: true });
    };
    replace(detail, ...spanDetail(node, { model, cp, query, open, close: closeDetail }));
    detail.scrollTop = 0;
  }

  // ---- events -------------------------------------------------------------------
  rowsEl.addEventListener('click', (event) => {
    const row = event.target.closest('.span-row');
    if (!row || !row.spanNode) return;
    const node = row.spanNode;
    if (event.target.closest('.span-toggle')) {
      activeNode = node;
      toggle(node);
      return;
    }
    activeNode = node;
    updateTabStops();
    select(node, { scroll: false });
    const el = rendered.get(node);
    if (el && document.activeElement !== el) el.focus({ preventScroll: true });
  });

  rowsEl.addEventListener('keydown', (event) => {
    const row = event.target.closest('.span-row');
    if (!row || !row.spanNode || event.altKey || event.ctrlKey || event.metaKey) return;
    const node = row.spanNode;
    const i = visPos[node.index];
    const page = Math.max(1, Math.floor((scroller.clientHeight - AXIS_H) / ROW_H) - 1);
    const move = (j) => setActive(visible[Math.max(0, Math.min(visible.length - 1, j))], { focus: true });
    switch (event.key) {
      case 'ArrowDown': move(i + 1); break;
      case 'ArrowUp': move(i - 1); break;
      case 'PageDown': move(i + page); break;
      case 'PageUp': move(i - page); break;
      case 'Home': move(0); break;
      case 'End': move(visible.length - 1); break;
      case 'ArrowRight':
        if (node.children.length && collapsed.has(node)) {
          activeNode = node;
          toggle(node, false);
        } else if (node.children.length) move(i + 1);
        break;
      case 'ArrowLeft':
        if (node.children.length && !collapsed.has(node)) {
          activeNode = node;
          toggle(node, true);
        } else if (node.parent) setActive(node.parent, { focus: true });
        break;
      case 'Enter':
      case ' ':
        activeNode = node;
        select(node, { scroll: false });
        break;
      case 'Escape':
        if (selectedNode) closeDetail();
        else return;
        break;
      case '/':
        searchInput.focus();
        searchInput.select();
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  detail.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      closeDetail();
    }
  });

  // Name column width: drag the axis divider or use ←/→ on it; remembered per browser.
  const setNameWidth = (pct) => {
    const clamped = Math.round(Math.min(70, Math.max(15, pct)) * 10) / 10;
    view.style.setProperty('--name-w', `${clamped}%`);
    resizer.setAttribute('aria-valuenow', String(Math.round(clamped)));
    try {
      window.localStorage.setItem(NAME_WIDTH_KEY, String(clamped));
    } catch {
      // storage unavailable: the width just isn't remembered
    }
    return clamped;
  };
  let nameWidth = 0;
  try {
    nameWidth = Number(window.localStorage.getItem(NAME_WIDTH_KEY)) || 0;
  } catch {
    nameWidth = 0;
  }
  if (nameWidth) nameWidth = setNameWidth(nameWidth);
  else resizer.setAttribute('aria-valuenow', '35');
  resizer.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    resizer.setPointerCapture(event.pointerId);
    const rect = scroller.getBoundingClientRect();
    const onMove = (e) => {
      nameWidth = setNameWidth(((e.clientX - rect.left) / rect.width) * 100);
    };
    const onUp = () => {
      resizer.removeEventListener('pointermove', onMove);
      resizer.removeEventListener('pointerup', onUp);
      resizer.removeEventListener('pointercancel', onUp);
    };
    resizer.addEventListener('pointermove', onMove);
    resizer.addEventListener('pointerup', onUp);
    resizer.addEventListener('pointercancel', onUp);
  });
  resizer.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
    event.preventDefault();
    const current = nameWidth || parseFloat(getComputedStyle(view).getPropertyValue('--name-w')) || 35;
    nameWidth = setNameWidth(current + (event.key === 'ArrowLeft' ? -2 : 2));
  });

  cpToggle.addEventListener('change', () => view.classList.toggle('hide-cp', !cpToggle.checked));

  const onScroll = () => renderRows(false);
  scroller.addEventListener('scroll', onScroll, { passive: true });
  let lastHeight = 0;
  const observer = typeof ResizeObserver === 'function'
    ? new ResizeObserver(() => {
      const height = scroller.clientHeight;
      if (height !== lastHeight) {
        lastHeight = height;
        renderRows(false);
      }
    })
    : null;
  if (observer) observer.observe(scroller);

  // ---- first paint --------------------------------------------------------------
  computeVisible();
  updateAxis();
  const wanted = ctx.params.get('span');
  const initial = wanted ? model.nodes.find((node) => node.id === wanted) : null;
  if (initial) {
    select(initial, { scroll: false });
    setActive(initial, { center: true });
  } else {
    renderRows(true);
  }
  view.dataset.ready = 'true';
  if (performance.mark) performance.mark('meshtel:trace-ready');

  return () => {
    if (observer) observer.disconnect();
    minimap.destroy();
    scroller.removeEventListener('scroll', onScroll);
  };
}
