// Time-series line charts over uPlot (vendored, loaded on first use).
//
//   const chart = createChart(container, {title, format, height, sync});
//   chart.setData(x, [{label, color, dash, values}]);   // x: unix seconds; null = gap
//   chart.destroy();
//
// The container gets the chart, a live legend (uPlot's; click a name to hide a line),
// an accessible summary (role="img" + aria-label with each line's latest and peak) and an
// empty message when nothing has a value. Charts created with the same `sync` key share
// their cursor, so hovering one shows the same instant in all.

import { h, replace, formatClock } from './dom.js';
import { loadUPlot } from './vendor.js';

const AXIS = { stroke: '#5d6675', grid: { stroke: '#eef0f3', width: 1 }, ticks: { stroke: '#dde1e7', width: 1, size: 4 }, font: '11px system-ui, sans-serif' };

/**
 * Unix seconds → "14:05", with the date ("12-05 14:05") over ranges of more than two
 * days and the seconds ("14:05:30") over ranges under ten minutes, where ticks fall
 * within a minute (as the search's scatter plot labels its axis).
 */
function axisTime(t, rangeS) {
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (rangeS > 2 * 86400) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
  return rangeS < 600 ? `${hm}:${pad(d.getSeconds())}` : hm;
}

function summarise(title, series, format) {
  const parts = series.map((s) => {
    const values = s.values.filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
    if (!values.length) return `${s.label}: no data`;
    const latest = values[values.length - 1];
    const peak = Math.max(...values);
    return `${s.label}: latest ${format(latest)}, peak ${format(peak)}`;
  });
  return `${title}. ${parts.join('; ')}`;
}

/**
 * A chart in `container`. `format(value)` writes axis ticks and legend values;
 * `min`/`max` fix the y range (default 0 … a bit above the highest value).
 */
export function createChart(container, { title = '', format = (v) => String(v), height = 200, sync = null, yMax = null } = {}) {
  let uplot = null;
  let shape = '';
  let destroyed = false;
  let observer = null;
  let pending = null;
  const plotArea = h('div', { class: 'chart-plot' });
  const note = h('div', { class: 'chart-empty muted small', hidden: true }, 'No data in this window');
  container.classList.add('chart');
  container.setAttribute('role', 'img');
  container.setAttribute('aria-label', `${title}: loading`);
  replace(container, title ? h('div', { class: 'chart-title' }, title) : null, plotArea, note);

  const width = () => Math.max(200, Math.floor(plotArea.clientWidth || container.clientWidth || 400));

  async function draw(x, series) {
    const uPlot = await loadUPlot();
    if (destroyed) return;
    const hasData = series.some((s) => s.values.some((v) => v !== null && v !== undefined));
    note.hidden = hasData;
    note.textContent = x.length ? 'No requests in this window' : 'No data in this window';
    container.setAttribute('aria-label', summarise(title, series, format));
    const data = [x, ...series.map((s) => s.values)];
    // Dots where a line cannot show a value: a lone point between gaps (or too few points).
    const dotted = series.map((s) => x.length <= 2 || s.values.some((v, i) => v !== null && v !== undefined && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null));
    const nextShape = JSON.stringify(series.map((s, i) => [s.label, s.color, s.dash, dotted[i]]));
    if (uplot && nextShape === shape) {
      uplot.setData(data);
      return;
    }
    if (uplot) uplot.destroy();
    shape = nextShape;
    const options = {
      width: width(),
      height,
      pxAlign: 0,
      cursor: sync ? { sync: { key: sync }, points: { size: 6 } } : { points: { size: 6 } },
      legend: { live: true },
      scales: {
        x: { time: true },
        y: {
          range: (u, min, max) => {
            const top = yMax !== null ? yMax : max > 0 ? max * 1.12 : 1;
            return [0, top];
          },
        },
      },
      axes: [
        // Local 24-hour times as everywhere else on these pages (uPlot's own are 12-hour,
        // with dates on a second line), spaced so that labels never touch.
        { ...AXIS, space: 64, values: (u, splits) => splits.map((t) => axisTime(t, u.scales.x.max - u.scales.x.min)) },
        { ...AXIS, size: 64, values: (u, ticks) => ticks.map((t) => format(t)) },
      ],
      series: [
        { value: (u, v) => (v === null || v === undefined ? '–' : formatClock(v * 1000)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color,
          width: s.width || 1.6,
          dash: s.dash,
          fill: s.fill,
          spanGaps: false,
          points: { show: dotted[i], size: 5, fill: s.color },
          value: (u, v) => (v === null || v === undefined ? '–' : format(v)),
        })),
      ],
    };
    uplot = new uPlot(options, data, plotArea);
    if (!observer && typeof ResizeObserver !== 'undefined') {
      observer = new ResizeObserver(() => {
        if (uplot && !destroyed) {
          const w = width();
          if (Math.abs(w - uplot.width) > 2) uplot.setSize({ width: w, height });
        }
      });
      observer.observe(plotArea);
    }
  }

  return {
    /** Draws (or redraws) the chart; resolves once drawn. */
    setData(x, series) {
      pending = (pending || Promise.resolve()).catch(() => {}).then(() => draw(x, series));
      pending.catch((error) => {
        note.hidden = false;
        note.textContent = `Chart unavailable: ${error.message}`;
      });
      return pending;
    },
    destroy() {
      destroyed = true;
      if (observer) observer.disconnect();
      if (uplot) uplot.destroy();
      uplot = null;
    },
  };
}
