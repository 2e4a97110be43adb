// The span detail panel of the trace view (pages/trace.js): a span's facts, tags,
// process, events and references, built from the trace model (lib/trace-model.js).

import { base } from '../api.js';
import { h, formatDuration, formatOffset, formatTimeZoned, serviceColor } from './dom.js';
import { selfTime, tagText, tagValue } from './trace-model.js';

/** Characters of a value shown before "show all": a stack trace or a request body in a
 * tag would otherwise push the tags after it (error, status) out of sight. */
const LONG_VALUE = 300;

/** A value cell's content: the value, or its start and a button that shows the rest. */
function valueContent(value) {
  if (value.length <= LONG_VALUE) return value;
  const shown = h('span', {}, `${value.slice(0, LONG_VALUE)}…`);
  const more = h('button', { type: 'button', class: 'btn-link small sd-more' }, ` show all ${value.length.toLocaleString()} characters`);
  more.addEventListener('click', () => {
    shown.textContent = value;
    more.remove();
  });
  return [shown, more];
}

function kvTable(items, caption, query) {
  if (!items || !items.length) return h('p', { class: 'muted small' }, 'None');
  return h(
    'table',
    { class: 'data sd-kv' },
    h('caption', { class: 'visually-hidden' }, caption),
    h(
      'tbody',
      {},
      items.map((kv) => {
        const value = tagText(kv.value);
        const hit = query && `${kv.key}=${value}`.toLowerCase().includes(query);
        return h('tr', { class: hit ? 'match' : null }, h('th', { scope: 'row' }, kv.key), h('td', { class: kv.type && kv.type !== 'string' ? `kv-${kv.type}` : null }, valueContent(value)));
      }),
    ),
  );
}

function section(titleText, count, ...content) {
  return h('section', { class: 'sd-section' }, h('h3', {}, titleText, count !== null ? h('span', { class: 'muted' }, ` (${count})`) : null), ...content);
}

/**
 * The children of the span detail panel (#span-detail) for `node`: title, badges, facts,
 * tags, process, events, references, warnings. `cp` maps nodes to their critical-path
 * segments, `query` is the in-trace search (matching rows are marked), `open(target)`
 * selects another span, `close()` closes the panel.
 */
export function spanDetail(node, { model, cp, query, open, close }) {
  const span = node.span;
  const kind = tagValue(span, 'span.kind');
  const segs = cp.get(node);
  const cpTime = segs ? segs.reduce((sum, [s, e]) => sum + (e - s), 0) : 0;
  const logs = [...(span.logs || [])].sort((a, b) => (a.timestamp || 0) - (b.timestamp || 0));
  const refs = span.references || [];
  const spanLink = (target, text) => h('button', { type: 'button', class: 'btn-link', onclick: () => open(target) }, text);
  return [
    h(
      'div',
      { class: 'sd-head' },
      h('h2', { class: 'sd-title' }, node.operation || '(no operation)'),
      h('button', { type: 'button', class: 'btn btn-icon sd-close', 'aria-label': 'Close span details', title: 'Close (Esc)', onclick: close }, '✕'),
    ),
    h(
      'div',
      { class: 'sd-badges' },
      h('span', { class: 'sd-service' }, h('span', { class: 'swatch', style: { background: serviceColor(node.service) }, 'aria-hidden': 'true' }), node.service),
      kind ? h('span', { class: 'badge' }, String(kind)) : null,
      node.error ? h('span', { class: 'badge badge-error' }, 'error') : null,
      segs ? h('span', { class: 'badge sd-cp-badge' }, 'critical path') : null,
    ),
    h(
      'dl',
      { class: 'sd-facts' },
      h('dt', {}, 'Duration'), h('dd', {}, formatDuration(node.duration)),
      h('dt', {}, 'Self time'), h('dd', {}, formatDuration(selfTime(node))),
      h('dt', {}, 'Start'), h('dd', {}, formatOffset(node.start - model.start), h('span', { class: 'muted small' }, ` · ${formatTimeZoned(node.start)}`)),
      segs ? [h('dt', {}, 'Critical path'), h('dd', {}, formatDuration(cpTime))] : null,
      h('dt', {}, 'Span ID'), h('dd', {}, h('code', {}, node.id)),
      node.parent ? [h('dt', {}, 'Parent'), h('dd', {}, spanLink(node.parent, `${node.parent.service}: ${node.parent.operation}`))] : null,
      node.children.length ? [h('dt', {}, 'Children'), h('dd', {}, `${node.children.length}${node.subtree - 1 > node.children.length ? ` (${node.subtree - 1} descendants)` : ''}`)] : null,
    ),
    section('Tags', (span.tags || []).length, kvTable(span.tags, 'Span tags', query)),
    section('Process', (node.process.tags || []).length, kvTable(node.process.tags, 'Process tags', query)),
    section(
      'Events',
      logs.length,
      logs.length
        ? h(
          'ol',
          { class: 'sd-logs' },
          logs.map((log) => {
            const event = (log.fields || []).find((f) => f.key === 'event' || f.key === 'message');
            return h(
              'li',
              {},
              h('div', { class: 'sd-log-head' }, h('span', { class: 'mono' }, formatOffset((log.timestamp || 0) - model.start)), event ? h('strong', {}, ` ${tagText(event.value)}`) : null),
              kvTable(log.fields, 'Event fields', query),
            );
          }),
        )
        : h('p', { class: 'muted small' }, 'None'),
    ),
    refs.length
      ? section(
        'References',
        refs.length,
        h(
          'ul',
          { class: 'sd-refs' },
          refs.map((ref) => {
            const sameTrace = !ref.traceID || ref.traceID === model.traceID;
            const target = sameTrace ? model.byId.get(ref.spanID) : null;
            const isParent = target && target === node.parent;
            return h(
              'li',
              {},
              h('span', { class: 'badge' }, ref.refType || 'CHILD_OF'),
              ' ',
              target
                ? spanLink(target, `${target.service}: ${target.operation}`)
                : sameTrace
                  ? h('span', { class: 'muted' }, `span ${ref.spanID} (not in this trace)`)
                  : h('a', { href: `${base}/trace/${encodeURIComponent(ref.traceID)}?span=${encodeURIComponent(ref.spanID)}` }, `trace ${ref.traceID.slice(0, 12)}… span ${ref.spanID}`),
              isParent ? h('span', { class: 'muted small' }, ' (parent)') : null,
            );
          }),
        ),
      )
      : null,
    span.warnings && span.warnings.length ? section('Warnings', span.warnings.length, h('ul', {}, span.warnings.map((w) => h('li', {}, w)))) : null,
  ];
}
