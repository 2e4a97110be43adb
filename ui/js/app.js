// The shell: a History-API router over the pages. Every page is a module exporting
//   title: string
//   mount(root, ctx) → optional cleanup function (called when leaving the page)
// with ctx = { params: URLSearchParams, path: string[] (segments after the page
// name), navigate(href, {replace}), setParams(object, {replace}), guardLeave(check) }:
// `check()` returns a question when leaving the page would lose work (an unsaved
// edit), asked before any navigation away, Back included.
// State lives in the URL, so searches are shareable and the back button works.

import { base } from './api.js';
import { h, replace, errorState } from './lib/dom.js';
import { traceIdOf } from './lib/trace-query.js';

const routes = {
  search: () => import('./pages/search.js'),
  trace: () => import('./pages/trace.js'),
  graph: () => import('./pages/graph.js'),
  metrics: () => import('./pages/metrics.js'),
  quotas: () => import('./pages/quotas.js'),
};

const main = document.getElementById('main');
let cleanup = null;
let generation = 0;
/** The current page's leave check, and the address it was rendered at. */
let leaveGuard = null;
let currentHref = location.pathname + location.search;

/** Whether the user lets the current page go (asked only when it would lose work). */
function mayLeave() {
  const question = leaveGuard ? leaveGuard() : null;
  return !question || window.confirm(question);
}

/** The page name and the rest of the path, relative to the base path. */
function parseLocation() {
  let path = location.pathname;
  if (base && path.startsWith(base)) path = path.slice(base.length);
  // A segment that is not valid %-encoding stays as typed: the page it names says what
  // is wrong with it (a trace id that is not one) instead of the whole page failing.
  const segments = path.split('/').filter(Boolean).map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      return segment;
    }
  });
  const page = segments[0] || 'search';
  return { page, rest: segments.slice(1), params: new URLSearchParams(location.search) };
}

/** Goes to `href`; false when the user chose to stay (unsaved work). */
export function navigate(href, { replace: replaceState = false } = {}) {
  if (!mayLeave()) return false;
  const target = href.startsWith('/') && base && !href.startsWith(`${base}/`) ? base + href : href;
  if (replaceState) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  render();
  return true;
}

/** Replaces the query string with `params` (empty values dropped). */
export function setParams(params, { replace: replaceState = false } = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((v) => query.append(key, v));
    else query.set(key, String(value));
  }
  const qs = query.toString();
  const href = location.pathname + (qs ? `?${qs}` : '');
  if (href === location.pathname + location.search) return;
  if (replaceState) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  render();
}

async function render() {
  const mine = ++generation;
  const { page, rest, params } = parseLocation();
  currentHref = location.pathname + location.search;
  leaveGuard = null;
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.warn('page cleanup failed', error);
    }
    cleanup = null;
  }
  for (const link of document.querySelectorAll('nav a[data-page]')) {
    const current = link.dataset.page === page || (page === 'trace' && link.dataset.page === 'search');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const load = routes[page];
  if (!load) {
    replace(main, h('div', { class: 'state state-empty' }, h('h2', {}, 'Page not found'), h('p', {}, h('a', { href: `${base}/search`, 'data-nav': true }, 'Search traces'))));
    return;
  }
  let module;
  try {
    module = await load();
  } catch (error) {
    // The page's code did not arrive: meshtel is down or unreachable. Say so, and let
    // the user try again once it is back.
    console.error(error);
    if (mine === generation) {
      const unreachable = new Error(`cannot reach meshtel at ${location.host}: this page's code did not load (${error.message})`);
      replace(main, errorState(unreachable, () => render()));
    }
    return;
  }
  try {
    if (mine !== generation) return;
    document.title = `${module.title} · meshtel`;
    main.replaceChildren();
    const guardLeave = (check) => {
      if (mine === generation) leaveGuard = check;
    };
    const result = await module.mount(main, { params, path: rest, navigate, setParams, guardLeave });
    if (mine !== generation) {
      if (typeof result === 'function') result();
      return;
    }
    cleanup = typeof result === 'function' ? result : null;
  } catch (error) {
    console.error(error);
    if (mine === generation) replace(main, errorState(error, () => render()));
  }
}

// Same-origin links marked data-nav (and any link inside <main> under the base path
// without a target) navigate without reloading.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const href = link.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith(`${base}/api/`)) return;
  if (!link.hasAttribute('data-nav') && !link.closest('main')) return;
  event.preventDefault();
  navigate(href);
});

window.addEventListener('popstate', () => {
  // Back or Forward has moved the address already: put it back if the user stays.
  if (!mayLeave()) {
    history.pushState(null, '', currentHref);
    return;
  }
  render();
});

// Open a trace by its id (from a log line, an x-request-id's trace): the top bar's box.
const lookup = document.getElementById('trace-lookup');
if (lookup) {
  const input = lookup.querySelector('input');
  const problem = h('div', { id: 'trace-lookup-error', class: 'trace-lookup-error', role: 'alert', hidden: true });
  lookup.append(problem);
  input?.setAttribute('aria-describedby', 'trace-lookup-error');
  const setProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
    if (message) input?.setAttribute('aria-invalid', 'true');
    else input?.removeAttribute('aria-invalid');
  };
  lookup.addEventListener('input', () => setProblem(''));
  lookup.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input ? input.value.trim() : '';
    if (!text) return;
    const id = traceIdOf(text);
    if (!id) {
      setProblem('Not a trace ID: give up to 32 hex digits, or a traceparent or b3 header value. To find a request by its x-request-id, search a service with the tag guid:x-request-id=<id>.');
      return;
    }
    setProblem('');
    if (navigate(`/trace/${encodeURIComponent(id)}`)) input.value = '';
  });
}
if (location.pathname === `${base}/` || location.pathname === base || location.pathname === '/') {
  history.replaceState(null, '', `${base}/search${location.search}`);
}
render();
