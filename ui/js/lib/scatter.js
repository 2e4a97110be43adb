// A hand-written duration-vs-time scatter plot (SVG) for trace search results.
// Dots are sized by span count and red when the trace has errors; hovering shows a
// tooltip, clicking opens the trace (Ctrl/⌘/middle click: a new tab). The plot is
// a pointer convenience: the result list below it is the keyboard path, so the
// SVG is one labelled image to assistive technology.

import { svg, h, formatDuration, formatNumber, formatTimeZoned } from './dom.js';

const MARGIN = { top: 12, right: 16, bottom: 26, left: 60 };
const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];

/** ~`count` round ticks between 0 and `max` (µs durations, 1-2-5 steps). */
function durationTicks(max, count = 4) {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}

/** Round time ticks (µs) between `min` and `max`, ~`count` of them. */
function timeTicks(min, max, count = 6) {
  const spanS = (max - min) / 1e6;
  const step = (TIME_STEPS_S.find((s) => spanS / s <= count) || Math.ceil(spanS / count / 86400) * 86400) * 1e6;
  const offset = new Date().getTimezoneOffset() * 60e6; // align to local wall clock
  const first = Math.ceil((min - offset) / step) * step + offset;
  const ticks = [];
  for (let t = first; t <= max; t += step) ticks.push(t);
  return ticks;
}

function timeLabel(us, spanUs) {
  const d = new Date(us / 1000);
  const pad = (n) => String(n).padStart(2, '0');
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (spanUs > 2 * 86400e6) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
  if (spanUs < 10 * 60e6) return `${hm}:${pad(d.getSeconds())}`;
  return hm;
}

/**
 * Renders into `container` (emptied). points: [{id, time (µs), duration (µs), spans,
 * errors, label, href}]. options: {height, onOpen(point, event)}.
 * Returns {highlight(id|null), destroy()}.
 */
export function renderScatter(container, points, { height = 170, onOpen } = {}) {
  let width = 0;
  let plot = null;
  let highlighted = null;
  const dots = new Map();
  const tip = h('div', { class: 'scatter-tip', role: 'presentation', hidden: true });

  const draw = () => {
    width = Math.max(320, Math.floor(container.clientWidth || 800));
    dots.clear();
    const innerW = width - MARGIN.left - MARGIN.right;
    const innerH = height - MARGIN.top - MARGIN.bottom;
    let tMin = Infinity;
    let tMax = -Infinity;
    let dMax = 0;
    let sMax = 1;
    for (const p of points) {
      if (p.time < tMin) tMin = p.time;
      if (p.time > tMax) tMax = p.time;
      if (p.duration > dMax) dMax = p.duration;
      if (p.spans > sMax) sMax = p.spans;
    }
    if (!points.length) {
      tMin = Date.now() * 1000 - 3600e6;
      tMax = Date.now() * 1000;
    }
    if (tMax - tMin < 2e6) {
      tMin -= 1e6;
      tMax += 1e6;
    }
    const pad = (tMax - tMin) * 0.03;
    tMin -= pad;
    tMax += pad;
    const yTicks = durationTicks(dMax || 1000);
    const yMax = Math.max(yTicks[yTicks.length - 1], dMax) || 1;
    const x = (t) => MARGIN.left + ((t - tMin) / (tMax - tMin)) * innerW;
    const y = (d) => MARGIN.top + innerH - (d / yMax) * innerH;
    const radius = (spans) => 3.5 + 6.5 * Math.sqrt(spans / sMax);

    const grid = svg('g', { class: 'scatter-grid' });
    for (const v of yTicks) {
      grid.append(
        svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }),
        svg('text', { x: MARGIN.left - 8, y: y(v) + 4, 'text-anchor': 'end' }, formatDuration(v)),
      );
    }
    for (const t of timeTicks(tMin, tMax, Math.max(3, Math.floor(innerW / 110)))) {
      grid.append(
        svg('line', { class: 'scatter-xtick', x1: x(t), x2: x(t), y1: MARGIN.top + innerH, y2: MARGIN.top + innerH + 4 }),
        svg('text', { x: x(t), y: height - 6, 'text-anchor': 'middle' }, timeLabel(t, tMax - tMin)),
      );
    }
    grid.append(svg('line', { class: 'scatter-axis', x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + innerH, y2: MARGIN.top + innerH }));

    const dotLayer = svg('g', { class: 'scatter-dots' });
    // Big dots first so small ones stay clickable on top.
    for (const p of [...points].sort((a, b) => b.spans - a.spans)) {
      const dot = svg('circle', {
        class: `scatter-dot${p.errors ? ' error' : ''}`,
        cx: x(p.time).toFixed(1),
        cy: y(p.duration).toFixed(1),
        r: radius(p.spans).toFixed(1),
        'data-trace-id': p.id,
      });
      dots.set(p.id, { dot, point: p });
      dotLayer.append(dot);
    }
    plot = svg(
      'svg',
      {
        class: 'scatter-svg',
        width,
        height,
        viewBox: `0 0 ${width} ${height}`,
        role: 'img',
        'aria-label': `Duration versus start time of ${points.length} trace${points.length === 1 ? '' : 's'}; the result list below has the same traces.`,
      },
      svg('text', { class: 'scatter-ylabel', x: 12, y: MARGIN.top + innerH / 2, transform: `rotate(-90 12 ${MARGIN.top + innerH / 2})`, 'text-anchor': 'middle' }, 'Duration'),
      grid,
      dotLayer,
      svg('circle', { class: 'scatter-ring', r: 0, style: { display: 'none' }, 'pointer-events': 'none' }),
    );
    container.replaceChildren(plot, tip);
    if (highlighted) highlight(highlighted);
  };

  const pointAt = (event) => {
    const target = event.target.closest && event.target.closest('circle[data-trace-id]');
    return target ? dots.get(target.getAttribute('data-trace-id')) : null;
  };

  const showTip = (entry) => {
    const p = entry.point;
    tip.replaceChildren(
      h('strong', {}, p.label),
      h('div', {}, `${formatDuration(p.duration)} · ${formatNumber(p.spans, 1)} span${p.spans === 1 ? '' : 's'}`, p.errors ? h('span', { class: 'scatter-tip-err' }, ` · ${p.errors} error${p.errors === 1 ? '' : 's'}`) : null),
      h('div', { class: 'muted' }, formatTimeZoned(p.time, false)),
    );
    tip.hidden = false;
    const cx = Number(entry.dot.getAttribute('cx'));
    const cy = Number(entry.dot.getAttribute('cy'));
    const tipW = tip.offsetWidth;
    tip.style.left = `${Math.min(Math.max(4, cx - tipW / 2), width - tipW - 4)}px`;
    tip.style.top = `${Math.max(0, cy - tip.offsetHeight - 12)}px`;
  };

  const onOver = (event) => {
    const entry = pointAt(event);
    if (entry) {
      showTip(entry);
      highlight(entry.point.id);
    }
  };
  const onOut = (event) => {
    if (pointAt(event)) {
      tip.hidden = true;
      highlight(null);
    }
  };
  const onClick = (event) => {
    const entry = pointAt(event);
    if (entry && onOpen) onOpen(entry.point, event);
  };
  const onAux = (event) => {
    const entry = pointAt(event);
    if (entry && event.button === 1 && entry.point.href) {
      event.preventDefault();
      window.open(entry.point.href, '_blank', 'noopener');
    }
  };

  // The highlight is a ring drawn on top (moving the dot itself in the DOM while the
  // pointer is on it would swallow clicks).
  function highlight(id) {
    if (highlighted && dots.has(highlighted)) dots.get(highlighted).dot.classList.remove('hover');
    highlighted = id;
    const entry = id && dots.get(id);
    const ring = plot && plot.querySelector('.scatter-ring');
    if (!ring) return;
    if (entry) {
      entry.dot.classList.add('hover');
      ring.setAttribute('cx', entry.dot.getAttribute('cx'));
      ring.setAttribute('cy', entry.dot.getAttribute('cy'));
      ring.setAttribute('r', String(Number(entry.dot.getAttribute('r')) + 3));
      ring.style.display = '';
    } else {
      ring.style.display = 'none';
    }
  }

  container.addEventListener('mouseover', onOver);
  container.addEventListener('mouseout', onOut);
  container.addEventListener('click', onClick);
  container.addEventListener('auxclick', onAux);
  draw();
  let lastWidth = container.clientWidth;
  const observer = typeof ResizeObserver === 'function'
    ? new ResizeObserver(() => {
      if (Math.abs(container.clientWidth - lastWidth) < 2) return;
      lastWidth = container.clientWidth;
      draw();
    })
    : null;
  if (observer) observer.observe(container);

  return {
    highlight,
    destroy() {
      if (observer) observer.disconnect();
      container.removeEventListener('mouseover', onOver);
      container.removeEventListener('mouseout', onOut);
      container.removeEventListener('click', onClick);
      container.removeEventListener('auxclick', onAux);
    },
  };
}
