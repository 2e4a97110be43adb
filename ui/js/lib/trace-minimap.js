// The trace minimap: every span of the trace drawn on one small canvas (one line per
// span in tree order), with the timeline's current time window on top. Drag across
// it to zoom the timeline to that range, drag the window to pan, click to centre the
// window there; keyboard: ←/→ pan, +/− zoom, 0 or Esc resets.

import { h, formatDuration, serviceColor } from './dom.js';

const HEIGHT = 48;
const MIN_DRAG_PX = 4;

/**
 * model: from buildTraceModel. onChange(startRel, endRel) gets µs relative to the
 * trace start. Returns {el, setView(startRel, endRel), redraw(), destroy()}.
 */
export function createMinimap(model, onChange) {
  const total = Math.max(1, model.duration);
  let viewStart = 0;
  let viewEnd = total;
  const canvas = h('canvas', { class: 'mm-canvas', 'aria-hidden': 'true' });
  const shadeL = h('div', { class: 'mm-shade mm-shade-left' });
  const shadeR = h('div', { class: 'mm-shade mm-shade-right' });
  const win = h('div', { class: 'mm-window' });
  const drag = h('div', { class: 'mm-drag', hidden: true });
  const ticks = h(
    'div',
    { class: 'mm-ticks', 'aria-hidden': 'true' },
    [0, 0.25, 0.5, 0.75, 1].map((f) => h('span', { style: { left: `${f * 100}%` } }, formatDuration(Math.round(f * model.duration)))),
  );
  const area = h('div', { class: 'mm-area' }, canvas, shadeL, shadeR, win, drag);
  const el = h(
    'div',
    {
      id: 'trace-minimap',
      class: 'trace-minimap',
      tabindex: '0',
      role: 'slider',
      'aria-label': 'Trace minimap: drag to zoom the timeline to a time range; arrow keys pan, + and − zoom, 0 resets',
      'aria-valuemin': '0',
      'aria-valuemax': String(Math.round(total)),
    },
    area,
    ticks,
  );

  const fraction = (rel) => Math.min(1, Math.max(0, rel / total));

  function paintWindow() {
    const l = fraction(viewStart) * 100;
    const r = fraction(viewEnd) * 100;
    win.style.left = `${l}%`;
    win.style.width = `${Math.max(0.3, r - l)}%`;
    shadeL.style.width = `${l}%`;
    shadeR.style.left = `${r}%`;
    shadeR.style.width = `${100 - r}%`;
    const zoomed = viewStart > 0 || viewEnd < total;
    el.classList.toggle('zoomed', zoomed);
    el.setAttribute('aria-valuenow', String(Math.round(viewStart)));
    el.setAttribute('aria-valuetext', zoomed ? `Showing ${formatDuration(Math.round(viewStart))} to ${formatDuration(Math.round(viewEnd))} of ${formatDuration(total)}` : `Showing the whole trace, ${formatDuration(total)}`);
  }

  let drawnWidth = 0;
  function redraw() {
    const width = Math.floor(area.clientWidth);
    if (!width) return;
    drawnWidth = width;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(HEIGHT * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${HEIGHT}px`;
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, HEIGHT);
    const order = model.order;
    const n = order.length;
    const rowH = HEIGHT / Math.max(n, 1);
    const barH = Math.max(1, Math.min(4, rowH - (rowH > 3 ? 1 : 0)));
    const colors = new Map();
    for (let i = 0; i < n; i += 1) {
      const node = order[i];
      let color = colors.get(node.service);
      if (!color) colors.set(node.service, (color = serviceColor(node.service)));
      ctx.fillStyle = node.error ? '#dc2626' : color;
      const x = ((node.start - model.start) / total) * width;
      const w = Math.max(1, (node.duration / total) * width);
      ctx.fillRect(x, i * rowH, w, barH);
    }
  }

  // ---- pointer: drag to select, drag the window to pan, click to centre ----------
  let gesture = null;
  const relAt = (clientX) => {
    const rect = area.getBoundingClientRect();
    return fraction(((clientX - rect.left) / Math.max(1, rect.width)) * total) * total;
  };
  const onDown = (event) => {
    if (event.button !== 0) return;
    const rect = area.getBoundingClientRect();
    const rel = relAt(event.clientX);
    const zoomed = viewStart > 0 || viewEnd < total;
    const inWindow = zoomed && rel >= viewStart && rel <= viewEnd;
    gesture = { mode: inWindow ? 'pan' : 'select', x0: event.clientX, rel0: rel, start0: viewStart, end0: viewEnd, rect, moved: false };
    el.setPointerCapture(event.pointerId);
    event.preventDefault();
    el.focus({ preventScroll: true });
  };
  const onMove = (event) => {
    if (!gesture) return;
    if (Math.abs(event.clientX - gesture.x0) >= MIN_DRAG_PX) gesture.moved = true;
    if (!gesture.moved) return;
    const rel = relAt(event.clientX);
    if (gesture.mode === 'pan') {
      const width = gesture.end0 - gesture.start0;
      let s = gesture.start0 + (rel - gesture.rel0);
      s = Math.min(Math.max(0, s), total - width);
      viewStart = s;
      viewEnd = s + width;
      paintWindow();
    } else {
      const a = Math.min(rel, gesture.rel0);
      const b = Math.max(rel, gesture.rel0);
      drag.hidden = false;
      drag.style.left = `${fraction(a) * 100}%`;
      drag.style.width = `${(fraction(b) - fraction(a)) * 100}%`;
    }
  };
  const onUp = (event) => {
    if (!gesture) return;
    const g = gesture;
    gesture = null;
    drag.hidden = true;
    const rel = relAt(event.clientX);
    if (g.mode === 'pan') {
      if (g.moved) onChange(viewStart, viewEnd);
      return;
    }
    if (g.moved) {
      const a = Math.min(rel, g.rel0);
      const b = Math.max(rel, g.rel0);
      if (b - a > 0) onChange(a, b);
      return;
    }
    // A click: centre a window there (a quarter of the trace when not zoomed yet).
    const zoomed = viewStart > 0 || viewEnd < total;
    const width = zoomed ? viewEnd - viewStart : total / 4;
    const s = Math.min(Math.max(0, rel - width / 2), total - width);
    onChange(s, s + width);
  };
  const onCancel = () => {
    gesture = null;
    drag.hidden = true;
  };
  const onKey = (event) => {
    const width = viewEnd - viewStart;
    let s = viewStart;
    let e = viewEnd;
    switch (event.key) {
      case 'ArrowLeft':
        s = Math.max(0, viewStart - width * 0.1);
        e = s + width;
        break;
      case 'ArrowRight':
        e = Math.min(total, viewEnd + width * 0.1);
        s = e - width;
        break;
      case '+':
      case '=': {
        const c = (viewStart + viewEnd) / 2;
        s = c - width / 4;
        e = c + width / 4;
        break;
      }
      case '-':
      case '_': {
        const c = (viewStart + viewEnd) / 2;
        s = Math.max(0, c - width);
        e = Math.min(total, c + width);
        break;
      }
      case '0':
      case 'Escape':
      case 'Home':
        if (event.key === 'Escape' && viewStart === 0 && viewEnd === total) return;
        s = 0;
        e = total;
        break;
      default:
        return;
    }
    event.preventDefault();
    onChange(s, e);
  };
  el.addEventListener('pointerdown', onDown);
  el.addEventListener('pointermove', onMove);
  el.addEventListener('pointerup', onUp);
  el.addEventListener('pointercancel', onCancel);
  el.addEventListener('keydown', onKey);

  const observer = typeof ResizeObserver === 'function'
    ? new ResizeObserver(() => {
      if (Math.floor(area.clientWidth) !== drawnWidth) redraw();
    })
    : null;
  if (observer) observer.observe(area);
  paintWindow();

  return {
    el,
    redraw,
    setView(s, e) {
      viewStart = s;
      viewEnd = e;
      paintWindow();
    },
    destroy() {
      if (observer) observer.disconnect();
    },
  };
}
