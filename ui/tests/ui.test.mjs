#!/usr/bin/env node
// Browser tests of the web UI: Debian's headless Chromium driven by playwright-core,
// against a real `meshtel serve` that tests/it/ui.rs started and fed with mesh traffic
// and traces. That test writes the scenario's facts to a JSON file and runs
//
//   node ui/tests/ui.test.mjs FACTS.json
//
// Every step opens a fresh page, fails on any console error, uncaught exception, failed
// request or 5xx answer (a step may allow the ones it provokes), waits on the pages'
// stable hooks (ids, classes, data-* attributes) and saves a 1280×800 screenshot under
// FACTS.screenshotsDir. It prints the time to "interactive" of the search results and of
// a 1,000-span trace, and exits 1 listing the failures and hooks never seen.
//
// playwright-core comes from $MESHTEL_UI_NODE_MODULES (default target/ui-node/node_modules,
// where scripts/test.sh installs it); Chromium from $MESHTEL_CHROMIUM (default
// /usr/bin/chromium). Nothing is downloaded.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

import { installMarks, reportCspViolations } from './init-scripts.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const log = (...args) => console.log('[ui]', ...args);

if (process.argv.length !== 3) {
  console.error('usage: node ui/tests/ui.test.mjs FACTS.json   (written by tests/it/ui.rs)');
  process.exit(2);
}
const facts = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const nodeModules = process.env.MESHTEL_UI_NODE_MODULES || path.join(repo, 'target/ui-node/node_modules');
const { chromium } = createRequire(path.join(nodeModules, '..', 'package.json'))('playwright-core');

/** A step may take this long; a hook that should be there is waited for this long. */
const STEP_MS = 25_000;
const HOOK_MS = 8_000;
const READY_MS = 15_000;
const VIEWPORT = { width: 1280, height: 800 };
const shots = facts.screenshotsDir;
mkdirSync(shots, { recursive: true });

const failures = [];
const timings = [];
/** page → Map(hook → seen). Printed at the end for the hooks never found. */
const hooks = new Map();

function declareHooks(pageName, selectors) {
  const map = hooks.get(pageName) || new Map();
  for (const s of selectors) if (!map.has(s)) map.set(s, false);
  hooks.set(pageName, map);
}

function markHook(pageName, selector) {
  const map = hooks.get(pageName);
  if (map && map.has(selector)) map.set(selector, true);
}

class Check extends Error {}

function expect(condition, message) {
  if (!condition) throw new Check(message);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the page shows in <main>, short: the best hint when a hook is missing. */
async function mainText(page) {
  try {
    const text = await page.locator('#main').innerText({ timeout: 1000 });
    return text.replace(/\s+/g, ' ').trim().slice(0, 200);
  } catch {
    return '(no #main)';
  }
}

/**
 * One step: a fresh page on a shared context, console/page errors collected, a
 * screenshot at the end whatever happens. `body(page, ctx)` gets ctx.allow(regex) to
 * accept errors it provokes on purpose, and ctx.shot(name) for more screenshots.
 */
async function step(name, pageName, context, body, { budget = STEP_MS, shot = pageName } = {}) {
  const page = await context.newPage();
  const problems = [];
  const allowed = [];
  const record = (what) => {
    if (allowed.some((re) => re.test(what))) log(`  (expected) ${what}`);
    else problems.push(what);
  };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = msg.location();
    record(`console.error: ${msg.text()}${where && where.url ? ` (${where.url}:${where.lineNumber})` : ''}`);
  });
  page.on('pageerror', (error) => record(`uncaught exception: ${error.message}`));
  page.on('requestfailed', (request) => {
    const reason = request.failure()?.errorText || '';
    // Navigations and page closes abort what is in flight; downloads end as aborts too.
    if (/ERR_ABORTED/.test(reason)) return;
    record(`request failed: ${request.method()} ${request.url()}: ${reason}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 500) record(`HTTP ${response.status()} from ${response.request().method()} ${response.url()}`);
  });
  const taken = new Set();
  const ctx = {
    pageName,
    allow: (re) => allowed.push(re),
    shot: async (file) => {
      taken.add(file);
      await page.screenshot({ path: path.join(shots, `${file}.png`), timeout: 5000 }).catch((e) => log(`  screenshot ${file}.png failed: ${e.message}`));
    },
  };
  const started = Date.now();
  let failed = false;
  let timer;
  const run = body(page, ctx);
  run.catch(() => {}); // a body left behind by the budget must not crash the driver
  try {
    await Promise.race([
      run,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Check(`step took longer than ${budget} ms`)), budget);
      }),
    ]);
    log(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    const message = error instanceof Check ? error.message : `${error.message.split('\n')[0]}`;
    failed = true;
    failures.push(`${name}: ${message}\n        page shows: ${await mainText(page)}`);
    log(`FAIL  ${name} (${Date.now() - started} ms): ${message}`);
  } finally {
    clearTimeout(timer);
  }
  await census(page, pageName, [...(hooks.get(pageName) || new Map()).keys()]).catch(() => {});
  // The state at the end: the page's screenshot unless the step took it, and on a
  // failure what the page showed then.
  if (!taken.has(shot)) await ctx.shot(shot);
  else if (failed) await ctx.shot(`${shot}-failure`);
  // Errors that arrive while the step settles still count.
  await sleep(200);
  if (problems.length) {
    failures.push(`${name}: ${problems.length} console/page error(s) on ${page.url()}:\n        ${problems.join('\n        ')}`);
    log(`FAIL  ${name}: ${problems.length} console/page error(s)`);
  }
  await page.close().catch(() => {});
}

/** Waits for `selector` (first match) to be attached (or `state`), recording the hook. */
async function hook(page, pageName, selector, { timeout = HOOK_MS, state = 'attached' } = {}) {
  try {
    await page.locator(selector).first().waitFor({ state, timeout });
  } catch {
    throw new Check(`missing hook ${selector} (not ${state} within ${timeout} ms)`);
  }
  markHook(pageName, selector);
  return page.locator(selector);
}

/** Notes which of `selectors` are in the DOM right now. */
async function census(page, pageName, selectors) {
  for (const s of selectors) {
    if ((await page.locator(s).count()) > 0) markHook(pageName, s);
  }
}

/** Waits until `selector` has `attr` = `value`; the message says what it had instead. */
async function waitAttr(page, selector, attr, value, timeout = READY_MS) {
  try {
    await page.waitForFunction(
      ([s, a, v]) => document.querySelector(s)?.getAttribute(a) === v,
      [selector, attr, value],
      { timeout, polling: 100 },
    );
  } catch {
    const seen = await page.evaluate(([s, a]) => {
      const el = document.querySelector(s);
      return el ? `${a}=${JSON.stringify(el.getAttribute(a))}` : 'no such element';
    }, [selector, attr]);
    throw new Check(`${selector} never got ${attr}="${value}" within ${timeout} ms (${seen})`);
  }
}

/** Attributes of every element matching `selector`. */
function attrsOf(page, selector, names) {
  return page.$$eval(selector, (els, names) => els.map((el) => {
    const out = { visible: !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length), classes: [...el.classList], text: el.textContent.replace(/\s+/g, ' ').trim().slice(0, 120) };
    for (const n of names) out[n] = el.getAttribute(n);
    return out;
  }), names);
}

/** Fills an input, or picks the option of a select (waiting for it to be loaded). */
async function setField(page, selector, value) {
  const el = page.locator(selector).first();
  const tag = await el.evaluate((e) => e.tagName.toLowerCase());
  if (tag === 'select') {
    await page.waitForFunction(
      ([s, v]) => [...(document.querySelector(s)?.options || [])].some((o) => o.value === v || o.textContent.trim() === v),
      [selector, value],
      { timeout: HOOK_MS, polling: 100 },
    ).catch(async () => {
      const options = await el.evaluate((e) => [...e.options].map((o) => o.value));
      throw new Check(`${selector} has no option ${JSON.stringify(value)} (options: ${JSON.stringify(options)})`);
    });
    const values = await el.evaluate((e) => [...e.options].map((o) => o.value));
    await el.selectOption(values.includes(value) ? { value } : { label: value });
  } else {
    await el.fill(String(value));
  }
}

/**
 * Navigates to `url` and returns ms from navigation start to `mark` (the page must show
 * `first` within HOOK_MS, so that a missing page fails fast).
 */
async function timeToMark(page, url, mark, first, timeout = READY_MS) {
  const wallStart = Date.now();
  await page.goto(url, { waitUntil: 'commit' });
  await page.locator(first).first().waitFor({ state: 'attached', timeout: HOOK_MS })
    .catch(() => { throw new Check(`missing hook ${first} on ${url} (not attached within ${HOOK_MS} ms)`); });
  try {
    const handle = await page.waitForFunction((m) => window.__meshtelMarks && window.__meshtelMarks[m], mark, { timeout, polling: 50 });
    return { inPage: Math.round(await handle.jsonValue()), wall: Date.now() - wallStart };
  } catch {
    throw new Check(`${url} never reached "${mark}" within ${timeout} ms`);
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** GET through a sidecar with node's http (it keeps the Host header as given). */
function probe(url, headers) {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers, timeout: 5000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body }));
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------
// The steps
// ---------------------------------------------------------------------------------------

const base = facts.baseUrl.replace(/\/$/, '');
const slow = facts.slow;
const big = facts.big;

const SEARCH_HOOKS = ['#search-form', '#search-service', '#search-operation', '#search-tags', '#search-min-duration', '#search-max-duration', '#search-lookback', '#search-limit', '#search-submit', '#search-sort', '#search-scatter', '#search-scatter [data-trace-id]', '.search-result', '#search-count', '#search-url-problems'];
const TRACE_HOOKS = ['#trace-view', '.span-row', '.span-toggle', '#span-detail', '#trace-search', '#trace-search-count', '#trace-minimap', '#trace-download', '.span-row.on-critical-path', '.span-row.error'];
const GRAPH_HOOKS = ['#graph-view', '#graph-draw-anyway', '.graph-edge', '.graph-node', '#graph-window', '#graph-type', '#graph-refresh', '#graph-detail'];
const METRICS_HOOKS = ['#metrics-view', '.metrics-service', '.metrics-chart'];
const QUOTA_HOOKS = ['#quotas-view', '#quota-token', '#quota-token-save', '#quota-new', '#quota-editor', '#quota-save', '.quota-field-error', '.quota-row', '.quota-usage', '.quota-delete', '#quota-confirm', '#quota-confirm-yes', '.quota-audit-entry'];
declareHooks('search', SEARCH_HOOKS);
declareHooks('trace', TRACE_HOOKS);
declareHooks('graph', GRAPH_HOOKS);
declareHooks('metrics', METRICS_HOOKS);
declareHooks('quotas', QUOTA_HOOKS);

let searchUrl = null;

/** Search: the service's 4 traces, sorted longest first; with minDuration exactly the slow one. */
async function searchStep(page, ctx) {
  const P = ctx.pageName;
  await page.goto(`${base}/search`);
  for (const s of ['#search-form', '#search-service', '#search-operation', '#search-tags', '#search-min-duration', '#search-max-duration', '#search-lookback', '#search-limit', '#search-submit']) {
    await hook(page, P, s);
  }
  // Every trace of the service first.
  await setField(page, '#search-service', slow.service);
  await page.locator('#search-submit').first().click();
  const all = [slow.traceId, ...slow.otherTraceIds];
  await page.waitForFunction((n) => document.querySelectorAll('.search-result').length === n, all.length, { timeout: READY_MS, polling: 100 })
    .catch(async () => {
      const rows = await attrsOf(page, '.search-result', ['data-trace-id']);
      throw new Check(`service ${slow.service}: want ${all.length} .search-result, saw ${rows.length} ${JSON.stringify(rows.map((r) => r['data-trace-id']))}`);
    });
  markHook(P, '.search-result');
  const ids = (await attrsOf(page, '.search-result', ['data-trace-id'])).map((r) => r['data-trace-id']);
  expect(JSON.stringify([...ids].sort()) === JSON.stringify([...all].sort()), `results ${JSON.stringify(ids)}, want ${JSON.stringify(all)}`);
  // Longest first puts the slow one on top (the sort shows with results).
  await hook(page, P, '#search-sort');
  const sortOptions = await page.locator('#search-sort').first().evaluate((el) => (el.tagName === 'SELECT' ? [...el.options].map((o) => ({ value: o.value, label: o.textContent.trim() })) : null));
  expect(sortOptions, '#search-sort is not a <select>');
  const longest = sortOptions.find((o) => /long/i.test(o.value) || /long/i.test(o.label));
  expect(longest, `#search-sort has no "longest first" option: ${JSON.stringify(sortOptions)}`);
  await page.locator('#search-sort').first().selectOption(longest.value);
  await page.waitForFunction((id) => document.querySelector('.search-result')?.getAttribute('data-trace-id') === id, slow.traceId, { timeout: HOOK_MS, polling: 100 })
    .catch(() => { throw new Check(`sorting "${longest.label}" does not put the slow trace ${slow.traceId} first`); });

  // Then with a minimum duration: exactly the slow trace.
  await page.locator('#search-min-duration').first().fill(slow.minDuration);
  await page.locator('#search-submit').first().click();
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('.search-result');
    return rows.length === 1 && rows[0].getAttribute('data-trace-id') === id;
  }, slow.traceId, { timeout: READY_MS, polling: 100 }).catch(async () => {
    const rows = await attrsOf(page, '.search-result', ['data-trace-id']);
    throw new Check(`minDuration ${slow.minDuration}: want exactly ${slow.traceId}, saw ${JSON.stringify(rows.map((r) => r['data-trace-id']))}`);
  });
  const [row] = await attrsOf(page, '.search-result', ['data-trace-id', 'data-duration-us', 'data-spans', 'data-errors']);
  expect(Number(row['data-duration-us']) === slow.durationUs, `data-duration-us=${row['data-duration-us']}, want ${slow.durationUs}`);
  expect(Number(row['data-spans']) === slow.spans.length, `data-spans=${row['data-spans']}, want ${slow.spans.length}`);
  expect(Number(row['data-errors']) === slow.spans.filter((s) => s.error).length, `data-errors=${row['data-errors']}, want ${slow.spans.filter((s) => s.error).length}`);
  expect(!(await page.locator('.search-result .sr-noroot').count()), 'the slow trace, whose root links to another trace, is marked "no root span"');
  const count = await (await hook(page, P, '#search-count')).first().innerText();
  expect(/\b1\b/.test(count), `#search-count says ${JSON.stringify(count)}, want 1`);
  await hook(page, P, '#search-scatter');
  await hook(page, P, `#search-scatter [data-trace-id="${slow.traceId}"]`);
  markHook(P, '#search-scatter [data-trace-id]');

  // The URL holds the search: loading it again runs it again. Timed from navigation start.
  searchUrl = page.url();
  expect(searchUrl.includes(slow.service), `the URL ${searchUrl} does not hold the search (no service)`);
  const runs = [];
  for (let i = 0; i < 3; i += 1) {
    const t = await timeToMark(page, searchUrl, 'search', '#search-form');
    await page.waitForFunction((id) => document.querySelectorAll('.search-result').length === 1 && document.querySelector('.search-result').getAttribute('data-trace-id') === id, slow.traceId, { timeout: HOOK_MS })
      .catch(() => { throw new Check(`reloading ${searchUrl} does not show exactly the slow trace again`); });
    runs.push(t);
  }
  const searchMs = median(runs.map((r) => r.inPage));
  timings.push(`search interactive: ${searchMs} ms`);
  log(`search interactive: ${searchMs} ms (navigation start → results; runs ${runs.map((r) => r.inPage).join(', ')} ms; wall clock incl. driver ${runs.map((r) => r.wall).join(', ')} ms)`);
  expect(searchMs <= facts.maxInteractiveMs, `search interactive ${searchMs} ms is far over the 500 ms target (limit ${facts.maxInteractiveMs} ms)`);
  await ctx.shot('search');

  // Opening the result shows the trace; back returns to the same results.
  const result = page.locator(`.search-result[data-trace-id="${slow.traceId}"]`).first();
  const link = result.locator('a[href*="/trace/"]').first();
  await ((await link.count()) ? link : result).click();
  await page.waitForURL((u) => u.pathname.endsWith(`/trace/${slow.traceId}`), { timeout: HOOK_MS })
    .catch(() => { throw new Check(`clicking the result did not open /trace/${slow.traceId} (at ${page.url()})`); });
  await hook(page, 'trace', `#trace-view[data-trace-id="${slow.traceId}"]`);
  await page.goBack();
  await page.waitForFunction((id) => document.querySelector(`.search-result[data-trace-id="${id}"]`), slow.traceId, { timeout: READY_MS })
    .catch(() => { throw new Check(`back from the trace does not show the search results again (at ${page.url()})`); });
  expect(page.url() === searchUrl, `back lands on ${page.url()}, want ${searchUrl}`);

  // A link with bad values is not searched with guesses: each bad parameter is named.
  await page.goto(`${base}/search?service=${encodeURIComponent(slow.service)}&minDuration=abc&limit=abc&tags=${encodeURIComponent('{"error":')}`);
  const problems = await (await hook(page, P, '#search-url-problems')).first().innerText();
  for (const named of ['minDuration "abc"', 'limit "abc"', 'tags']) expect(problems.includes(named), `#search-url-problems does not name ${named}: ${JSON.stringify(problems)}`);
  expect(!(await page.locator('.search-result').count()), 'a link with bad values was searched');

  // The top bar opens a trace by its id; what is not one is marked, not opened.
  const before = page.url();
  await page.locator('#trace-lookup input').first().fill('not-a-trace!');
  await page.locator('#trace-lookup input').first().press('Enter');
  await sleep(200);
  expect(page.url() === before, `an invalid id was opened: ${page.url()}`);
  expect((await page.locator('#trace-lookup input').first().getAttribute('aria-invalid')) === 'true', 'an invalid id is not marked');
  await page.locator('#trace-lookup input').first().fill(` ${slow.traceId} `);
  await page.locator('#trace-lookup input').first().press('Enter');
  await page.waitForURL((u) => u.pathname.endsWith(`/trace/${slow.traceId}`), { timeout: HOOK_MS })
    .catch(() => { throw new Check(`the trace id box did not open /trace/${slow.traceId} (at ${page.url()})`); });
  await hook(page, 'trace', `#trace-view[data-trace-id="${slow.traceId}"]`);
}

/**
 * "Custom time range" starts from the lookback chosen before it, up to now, to the
 * second; a link's exact range is searched as it is; the top bar's box takes a
 * traceparent and says what is wrong with what it cannot open.
 */
async function customRangeStep(page, ctx) {
  const P = ctx.pageName;
  await page.goto(`${base}/search?${new URLSearchParams({ service: slow.service, lookback: '2d' })}`);
  await hook(page, P, '#search-lookback');
  await page.locator('#search-lookback').first().selectOption('custom');
  const [start, end] = await Promise.all(['#search-start', '#search-end'].map((s) => page.locator(s).first().inputValue()));
  const nowS = Date.now() / 1000;
  const seconds = (value) => new Date(value).getTime() / 1000;
  // To the second: fields that step by seconds, holding them (the browser leaves ":00"
  // out of a value, so a time on a whole minute shows as HH:MM).
  const steps = await Promise.all(['#search-start', '#search-end'].map((s) => page.locator(s).first().getAttribute('step')));
  expect(steps.every((step) => step === '1'), `custom range fields step by ${steps}, not by seconds`);
  expect(/T\d\d:\d\d(:\d\d)?$/.test(start) && /T\d\d:\d\d(:\d\d)?$/.test(end), `custom range fields are not times: ${start} … ${end}`);
  expect(Math.abs(seconds(end) - nowS) <= 5, `"To" is ${end}, not now`);
  expect(Math.abs(nowS - seconds(start) - 2 * 86400) <= 5, `"From" is ${start}, not two days ago (the lookback chosen before)`);
  await page.locator('#search-submit').first().click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('lookback') === 'custom', null, { timeout: HOOK_MS });
  const url = new URL(page.url());
  const endUs = Number(url.searchParams.get('end'));
  expect(endUs >= nowS * 1e6 - 5e6, `searched up to ${endUs} µs, more than 5 s before now`);
  // A link's exact range, to the microsecond, is searched as given.
  const exact = { start: String(Number(url.searchParams.get('start')) + 123_456), end: String(endUs - 654_321) };
  await page.goto(`${base}/search?${new URLSearchParams({ service: slow.service, lookback: 'custom', ...exact })}`);
  await hook(page, P, '.search-result');
  await page.locator('#search-limit').first().fill('19');
  await page.locator('#search-submit').first().click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('limit') === '19', null, { timeout: HOOK_MS });
  const again = new URL(page.url()).searchParams;
  expect(again.get('start') === exact.start && again.get('end') === exact.end, `the link's range ${exact.start}…${exact.end} was searched as ${again.get('start')}…${again.get('end')}`);

  const box = page.locator('#trace-lookup input').first();
  await box.fill('d28902ec-418e-4420-9dae-e06031b6a5c1');
  await box.press('Enter');
  const problem = page.locator('#trace-lookup-error').first();
  await problem.waitFor({ state: 'visible', timeout: HOOK_MS }).catch(() => { throw new Check('an id the box cannot open says nothing visible'); });
  expect(/x-request-id/.test(await problem.innerText()), `#trace-lookup-error: ${await problem.innerText()}`);
  await box.fill(`00-${slow.traceId.padStart(32, '0')}-00f067aa0ba902b7-01`);
  expect(await problem.isHidden(), 'the message stays while a new id is typed');
  await box.press('Enter');
  await page.waitForURL((u) => u.pathname.endsWith(`/trace/${slow.traceId.padStart(32, '0')}`), { timeout: HOOK_MS })
    .catch(() => { throw new Check(`a traceparent did not open its trace (at ${page.url()})`); });
}

/**
 * A page whose code does not load (meshtel down) says meshtel cannot be reached and
 * offers to try again, which works once it is back; a graph link's unknown window is
 * named and the address shows what is drawn.
 */
async function unreachableStep(page, ctx) {
  await page.goto(`${base}/search`);
  await hook(page, 'search', '#search-form');
  const graphCode = '**/static/js/pages/graph.js';
  ctx.allow(/static\/js\/pages\/graph\.js/);
  await page.route(graphCode, (route) => route.abort('connectionrefused'));
  await page.locator('nav a[data-page="graph"]').first().click();
  const retry = page.getByRole('button', { name: 'Try again' }).first();
  await retry.waitFor({ timeout: HOOK_MS }).catch(async () => { throw new Check(`no "Try again" when the graph page's code does not load: ${await mainText(page)}`); });
  const said = await mainText(page);
  expect(said.includes('cannot reach meshtel'), `the page says ${JSON.stringify(said)}, not that meshtel cannot be reached`);
  await page.unroute(graphCode);
  await retry.click();
  await hook(page, 'graph', '#graph-view');

  await page.goto(`${base}/graph?window=2h&graphType=workload`);
  const notice = await hook(page, 'graph', '#graph-url-problems');
  const text = await notice.first().innerText();
  expect(text.includes('window "2h"') && text.includes('showing 5m'), `#graph-url-problems: ${JSON.stringify(text)}`);
  const shown = new URL(page.url()).searchParams.get('window');
  expect(shown === '5m', `the address says window=${shown} while the 5m graph is drawn`);
}

/** The slow trace: order, depths, services, critical path, errors, collapse, detail, find. */
/** An answer cut off mid-JSON (as a browser gives up on one too large) shows an error. */
async function cutOffStep(page, ctx) {
  await page.route(`**/api/traces/${slow.traceId}*`, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: '{"data":[{"traceID":"' }));
  await page.goto(`${base}/trace/${slow.traceId}`);
  const message = await (await hook(page, ctx.pageName, '.state-error .error-message')).first().innerText();
  expect(/^meshtel's answer \(21 bytes\) is not valid JSON/.test(message), `the error says ${JSON.stringify(message)}, want "meshtel's answer (21 bytes) is not valid JSON…"`);
}

/** A proxy's HTML error page in front of the query service is named, not shown as markup. */
async function gatewayPageStep(page, ctx) {
  ctx.allow(/status of 50[23]|HTTP 50[23]|Bad Gateway|Service Unavailable/);
  const html = '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
  await page.route(/\/api\/traces\?/, (route) => route.fulfill({ status: 502, contentType: 'text/html', body: html }));
  await page.goto(`${base}/search?service=${encodeURIComponent(slow.service)}`);
  const message = await (await hook(page, ctx.pageName, '.state-error .error-message')).first().innerText();
  expect(/^HTTP 502: .*an HTML page \("502 Bad Gateway"\) came back instead of meshtel's JSON/.test(message) && !message.includes('<'), `the error says ${JSON.stringify(message)}, want "HTTP 502: … an HTML page ("502 Bad Gateway") came back instead of meshtel's JSON…"`);
  // One that opens with an XML prolog and a comment (lighttpd's, some load balancers').
  const xhtml = '<?xml version="1.0" encoding="iso-8859-1"?>\n<!-- generated -->\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1></body></html>';
  await page.unroute(/\/api\/traces\?/);
  await page.route(/\/api\/traces\?/, (route) => route.fulfill({ status: 503, contentType: 'text/html', body: xhtml }));
  await page.goto(`${base}/search?service=${encodeURIComponent(slow.service)}&limit=21`);
  const second = await (await hook(page, ctx.pageName, '.state-error .error-message')).first().innerText();
  expect(/an HTML page \("503 Service Unavailable"\)/.test(second) && !second.includes('<'), `the error says ${JSON.stringify(second)}`);
}

/**
 * A shop's page posts a span with fetch() as OpenTelemetry JS's OTLP/HTTP JSON exporter
 * does, from an origin `[ingest.cors]` allows: the browser's preflight passes and the
 * trace is stored. From another origin the browser blocks the request. The page comes
 * from a server of this script's own on 127.0.0.1 (named *.localhost: Chromium sends a
 * page from a non-loopback address to a loopback one only with the user's leave).
 */
async function corsStep(page, ctx) {
  ctx.allow(/blocked by CORS policy|ERR_FAILED|Failed to fetch/);
  const server = http.createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    // An icon of its own: Chromium would otherwise ask this server for /favicon.ico
    // whenever it gets to it, possibly after the server below is closed.
    res.end('<!doctype html><title>shop</title><link rel="icon" href="data:,"><h1>shop</h1>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = server.address().port;
    const post = async (origin, how = 'fetch') => {
      await page.goto(`http://${origin}.localhost:${port}/`);
      const traceId = randomBytes(16).toString('hex');
      const now = BigInt(Date.now()) * 1000000n;
      const body = JSON.stringify({ resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'shop-web' } }] },
        scopeSpans: [{ spans: [{ traceId, spanId: '00000000000000b1', name: 'checkout', kind: 1,
          startTimeUnixNano: String(now), endTimeUnixNano: String(now + 1000000n) }] }],
      }] });
      const answer = await page.evaluate(async ({ url, body, how }) => {
        // A beacon (older OpenTelemetry JS browser exporters) is sent with credentials,
        // and its answer is not seen: only whether it was queued.
        if (how === 'beacon') return navigator.sendBeacon(url, new Blob([body], { type: 'application/json' })) ? 'queued' : 'not queued';
        try {
          const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          return `HTTP ${response.status}`;
        } catch (error) {
          return `refused: ${error.message}`;
        }
      }, { url: facts.cors.otlpUrl, body, how });
      return { traceId, answer };
    };
    const allowed = await post(facts.cors.allowedName);
    expect(allowed.answer === 'HTTP 200', `a page on an allowed origin posted a span: ${allowed.answer}`);
    const stored = await fetch(`${base}/api/traces/${allowed.traceId}`);
    expect(stored.status === 200, `the span posted across origins is stored: HTTP ${stored.status}`);
    const beacon = await post(facts.cors.allowedName, 'beacon');
    expect(beacon.answer === 'queued', `a beacon was queued: ${beacon.answer}`);
    let beaconStored = 0;
    for (let i = 0; i < 50 && beaconStored !== 200; i++) {
      await sleep(100);
      beaconStored = (await fetch(`${base}/api/traces/${beacon.traceId}`)).status;
    }
    expect(beaconStored === 200, `the span a beacon posted across origins is stored: HTTP ${beaconStored}`);
    const denied = await post(facts.cors.deniedName);
    expect(denied.answer.startsWith('refused'), `a page on another origin is refused by the browser: ${denied.answer}`);
  } finally {
    server.close();
  }
}

/** A trace link whose %-encoding is broken says what is wrong, not a blank page. */
async function malformedLinkStep(page, ctx) {
  ctx.allow(/status of 400|HTTP 400|Bad Request/);
  await page.goto(`${base}/trace/%zz`);
  const message = await (await hook(page, ctx.pageName, '.state-empty')).first().innerText();
  expect(/Not a valid trace id/.test(message) && /%zz/.test(message), `the page names the id as typed: ${JSON.stringify(message)}`);
}

async function traceStep(page, ctx) {
  const P = ctx.pageName;
  await page.goto(`${base}/trace/${slow.traceId}`);
  await hook(page, P, '#trace-view');
  await waitAttr(page, '#trace-view', 'data-ready', 'true');
  const view = await page.locator('#trace-view').first().evaluate((el) => ({ id: el.getAttribute('data-trace-id'), count: el.getAttribute('data-span-count'), order: el.getAttribute('data-span-order') }));
  expect(view.id === slow.traceId, `#trace-view data-trace-id=${view.id}, want ${slow.traceId}`);
  expect(Number(view.count) === slow.spans.length, `data-span-count=${view.count}, want ${slow.spans.length}`);
  const want = slow.spans.map((s) => s.spanId);
  const badges = await attrsOf(page, '.trace-header .badge-warn', ['title']);
  expect(!badges.length, `the root span, which links to another trace, gets the badge ${JSON.stringify(badges)}`);
  expect(view.order === want.join(','), `data-span-order:\n          saw  ${view.order}\n          want ${want.join(',')} (tree order, children by start time: ${slow.spans.map((s) => s.operation).join(' > ')})`);

  await hook(page, P, '.span-row');
  const rows = await attrsOf(page, '.span-row', ['data-span-id', 'data-depth', 'data-service', 'data-operation']);
  expect(rows.map((r) => r['data-span-id']).join(',') === want.join(','), `.span-row order ${rows.map((r) => r['data-span-id']).join(',')}, want ${want.join(',')}`);
  for (const s of slow.spans) {
    const r = rows.find((x) => x['data-span-id'] === s.spanId);
    expect(Number(r['data-depth']) === s.depth, `span ${s.operation}: data-depth=${r['data-depth']}, want ${s.depth}`);
    expect(r['data-service'] === s.service, `span ${s.operation}: data-service=${r['data-service']}, want ${s.service}`);
    expect(r['data-operation'] === s.operation, `span ${s.operation}: data-operation=${r['data-operation']}`);
    expect(r.classes.includes('error') === s.error, `span ${s.operation}: class "error" ${r.classes.includes('error') ? 'set' : 'missing'}, want ${s.error ? 'set' : 'not set'}`);
    if (s.critical !== null) {
      const on = r.classes.includes('on-critical-path');
      expect(on === s.critical, `span ${s.operation}: on-critical-path ${on ? 'set' : 'missing'}, want ${s.critical ? 'set' : 'not set'} (critical path: ${slow.spans.filter((x) => x.critical).map((x) => x.operation).join(', ')})`);
    }
  }
  markHook(P, '.span-row.on-critical-path');
  markHook(P, '.span-row.error');
  await census(page, P, TRACE_HOOKS);

  // Collapsing a span with children hides them; expanding shows them again.
  const parent = slow.spans.find((s) => s.collapse);
  const hidden = slow.spans.filter((s) => s.ancestors.includes(parent.spanId)).map((s) => s.spanId);
  const visibleIds = async () => (await attrsOf(page, '.span-row', ['data-span-id'])).filter((r) => r.visible).map((r) => r['data-span-id']);
  await (await hook(page, P, `.span-row[data-span-id="${parent.spanId}"] .span-toggle`)).first().click();
  markHook(P, '.span-toggle');
  await page.waitForFunction((ids) => ids.every((id) => {
    const el = document.querySelector(`.span-row[data-span-id="${id}"]`);
    return !el || !(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  }), hidden, { timeout: HOOK_MS, polling: 100 }).catch(async () => {
    throw new Check(`collapsing ${parent.operation} leaves its children visible (visible rows: ${(await visibleIds()).join(',')})`);
  });
  await page.locator(`.span-row[data-span-id="${parent.spanId}"] .span-toggle`).first().click();
  await page.waitForFunction((n) => [...document.querySelectorAll('.span-row')].filter((el) => el.offsetWidth || el.offsetHeight).length === n, slow.spans.length, { timeout: HOOK_MS, polling: 100 })
    .catch(async () => { throw new Check(`expanding ${parent.operation} again does not show every span (visible: ${(await visibleIds()).join(',')})`); });

  // Selecting a span opens its detail.
  const pick = slow.spans.find((s) => s.operation === slow.searchOperation);
  await page.locator(`.span-row[data-span-id="${pick.spanId}"]`).first().click();
  const detail = (await hook(page, P, '#span-detail', { state: 'visible' })).first();
  await page.waitForFunction((op) => document.querySelector('#span-detail')?.textContent.includes(op), pick.operation, { timeout: HOOK_MS })
    .catch(async () => { throw new Check(`#span-detail does not show ${pick.operation} after clicking its row: ${JSON.stringify((await detail.innerText()).slice(0, 120))}`); });
  expect((await detail.innerText()).includes(pick.spanId), `#span-detail does not show the span id ${pick.spanId}`);

  // Find in trace.
  await (await hook(page, P, '#trace-search')).first().fill(slow.searchOperation);
  const counter = (await hook(page, P, '#trace-search-count')).first();
  await page.waitForFunction(() => /\b1\b/.test(document.querySelector('#trace-search-count')?.textContent || ''), null, { timeout: HOOK_MS })
    .catch(async () => { throw new Check(`#trace-search "${slow.searchOperation}" → #trace-search-count ${JSON.stringify(await counter.innerText())}, want 1 match`); });
  await hook(page, P, '#trace-minimap', { state: 'visible' });

  // Download: a link to the trace's JSON, or a button that saves it.
  const download = (await hook(page, P, '#trace-download')).first();
  const href = await download.getAttribute('href');
  if (href && !href.startsWith('blob:') && !href.startsWith('data:')) {
    const url = new URL(href, page.url());
    expect(url.pathname.includes(slow.traceId), `#trace-download points at ${href}, not at the trace`);
    const response = await page.request.get(url.toString());
    expect(response.ok(), `#trace-download ${href}: HTTP ${response.status()}`);
    expect((await response.text()).includes(slow.traceId), `#trace-download ${href} does not hold the trace`);
  } else {
    const [file] = await Promise.all([page.waitForEvent('download', { timeout: HOOK_MS }), download.click()]);
    const text = readFileSync(await file.path(), 'utf8');
    expect(text.includes(slow.traceId), `#trace-download saved ${file.suggestedFilename()} without the trace id in it`);
  }
  await ctx.shot('trace');
}

/** The 1,000-span trace: ready time (median of 3 loads), count and order. */
async function bigTraceStep(page, ctx) {
  const P = 'trace';
  const url = `${base}/trace/${big.traceId}`;
  const runs = [];
  for (let i = 0; i < 3; i += 1) runs.push(await timeToMark(page, url, `trace:${big.traceId}`, '#trace-view', 20_000));
  const ms = median(runs.map((r) => r.inPage));
  timings.push(`trace view interactive (${big.spanCount} spans): ${ms} ms`);
  log(`trace view interactive (${big.spanCount} spans): ${ms} ms (navigation start → #trace-view data-ready; runs ${runs.map((r) => r.inPage).join(', ')} ms; wall clock incl. driver ${runs.map((r) => r.wall).join(', ')} ms)`);
  markHook(P, '#trace-view');
  await ctx.shot('trace-1000');
  const view = await page.locator('#trace-view').first().evaluate((el) => ({ count: el.getAttribute('data-span-count'), order: el.getAttribute('data-span-order') || '' }));
  expect(Number(view.count) === big.spanCount, `data-span-count=${view.count}, want ${big.spanCount}`);
  const order = view.order.split(',').filter(Boolean);
  const firstDiff = big.order.findIndex((id, i) => order[i] !== id);
  expect(order.length === big.order.length && firstDiff === -1, `data-span-order has ${order.length} ids; first difference at position ${firstDiff}: saw ${order[firstDiff]}, want ${big.order[firstDiff]}`);
  const rows = await page.locator('.span-row').count();
  expect(rows > 0, 'no .span-row rendered');
  log(`  ${rows} .span-row elements in the DOM for ${big.spanCount} spans`);
  expect(ms <= facts.maxInteractiveMs, `trace view interactive ${ms} ms is far over the 500 ms target (limit ${facts.maxInteractiveMs} ms)`);
  // Scrolling to the end works (virtualised or not): the last span's row appears.
  await page.locator('#trace-view').first().evaluate((el) => {
    const scroller = [el, ...el.querySelectorAll('*')].find((e) => e.scrollHeight > e.clientHeight + 10 && /(auto|scroll)/.test(getComputedStyle(e).overflowY));
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    else window.scrollTo(0, document.body.scrollHeight);
  });
  const last = big.order[big.order.length - 1];
  await page.waitForFunction((id) => document.querySelector(`.span-row[data-span-id="${id}"]`), last, { timeout: HOOK_MS })
    .catch(() => { throw new Check(`scrolled to the end, the last span's row (${last}) never appears`); });
}

/** Graph: the expected edges with their error rates; a node's detail. */
async function graphStep(page, ctx) {
  const P = ctx.pageName;
  // Over the drawing limit (?maxNodes=, 500 by default): listed, not drawn, until asked.
  await page.goto(`${base}/graph?maxNodes=1`);
  await waitAttr(page, '#graph-view', 'data-state', 'too-large');
  expect(await page.locator('.graph-edge').count() > 0 && !(await page.locator('.graph-canvas canvas').count()), 'over maxNodes: want the tables and no canvas');
  await (await hook(page, P, '#graph-draw-anyway')).click();
  await waitAttr(page, '#graph-view', 'data-state', 'graph');
  expect(await page.locator('.graph-canvas canvas').count() > 0, '"Draw anyway" drew no canvas');
  await page.goto(`${base}/graph`);
  await hook(page, P, '#graph-view');
  await waitAttr(page, '#graph-view', 'data-ready', 'true');
  for (const s of ['#graph-window', '#graph-type', '#graph-refresh']) await hook(page, P, s);
  const matches = (edge, want) => (edge['data-source'] === want.source || edge['data-source'] === want.sourceApp) && (edge['data-target'] === want.target || edge['data-target'] === want.targetApp);
  const check = async () => {
    await hook(page, P, '.graph-edge');
    const edges = await attrsOf(page, '.graph-edge', ['data-source', 'data-target', 'data-rate', 'data-error-rate']);
    const shown = edges.map((e) => `${e['data-source']}→${e['data-target']} (rate ${e['data-rate']}, errors ${e['data-error-rate']})`).join('; ');
    for (const want of facts.graph.edges) {
      const edge = edges.find((e) => matches(e, want));
      expect(edge, `no .graph-edge ${want.source} → ${want.target}; shown: ${shown || 'none'}`);
      expect(Number(edge['data-rate']) > 0, `edge ${want.source} → ${want.target}: data-rate=${edge['data-rate']}, want > 0`);
      const errorRate = Number(edge['data-error-rate']);
      expect(want.errors ? errorRate > 0 : !(errorRate > 0), `edge ${want.source} → ${want.target}: data-error-rate=${edge['data-error-rate']}, want ${want.errors ? '> 0' : '0 or empty'}`);
    }
    const nodes = (await attrsOf(page, '.graph-node', ['data-id'])).map((n) => n['data-id']);
    for (const want of facts.graph.edges) {
      for (const [id, app] of [[want.source, want.sourceApp], [want.target, want.targetApp]]) {
        expect(nodes.includes(id) || nodes.includes(app), `no .graph-node data-id=${id}; nodes: ${nodes.join(', ')}`);
      }
    }
    markHook(P, '.graph-node');
  };
  await check();
  await ctx.shot('graph');
  // An edge of 4xx only is not healthy: its error rate is the API's (Kiali's) own.
  const clientErrors = facts.graph.edges.find((e) => e.clientErrorsOnly);
  const clientRow = page.locator(`.graph-edge[data-source="${clientErrors.source}"][data-target="${clientErrors.target}"]`).first();
  const clientClass = (await clientRow.getAttribute('class')) || '';
  const clientErrText = (await clientRow.locator('td').nth(3).innerText()).trim();
  expect(!/\blevel-ok\b/.test(clientClass) && /[1-9]/.test(clientErrText), `4xx-only edge ${clientErrors.source} → ${clientErrors.target} shown as healthy: class "${clientClass}", errors "${clientErrText}"`);
  // The selection is in the URL: a reload reopens it, Back closes it.
  const unselected = page.url();
  await clientRow.locator('button').first().click();
  await hook(page, P, '#graph-detail', { state: 'visible' });
  await page.waitForFunction(() => new URLSearchParams(location.search).get('edge'), null, { timeout: HOOK_MS, polling: 100 })
    .catch(() => { throw new Check(`selecting an edge leaves the URL at ${page.url()}`); });
  const selectedUrl = page.url();
  expect(new URL(selectedUrl).searchParams.get('window') !== null || !new URL(unselected).searchParams.get('window'), `selecting dropped the other parameters: ${unselected} → ${selectedUrl}`);
  await page.reload();
  await waitAttr(page, '#graph-view', 'data-ready', 'true');
  await page.locator('#graph-detail').first().waitFor({ state: 'visible', timeout: HOOK_MS })
    .catch(() => { throw new Check(`reloading ${selectedUrl} does not reopen #graph-detail`); });
  // Back re-renders the page from the URL: wait for the new view, not the old one.
  await page.evaluate(() => { document.querySelector('#graph-view').dataset.before = 'back'; });
  await page.goBack();
  await page.waitForFunction(() => document.querySelector('#graph-view[data-ready="true"]:not([data-before])') && !document.querySelector('#graph-detail') && !new URLSearchParams(location.search).get('edge'), null, { timeout: READY_MS, polling: 100 })
    .catch(() => { throw new Check(`Back from ${selectedUrl} does not close #graph-detail (now ${page.url()})`); });
  expect(page.url().includes('/graph'), `Back left the graph page: ${page.url()}`);
  // A node's detail (the node may be an SVG shape or a list item with a button).
  const reviews = facts.graph.edges.find((e) => e.errors);
  const node = page.locator(`.graph-node[data-id="${reviews.target}"], .graph-node[data-id="${reviews.targetApp}"]`).first();
  expect(await node.count(), `no .graph-node for ${reviews.target}`);
  const button = node.locator('button, a').first();
  if (await button.count()) await button.click();
  else await node.click({ force: true }).catch(() => node.dispatchEvent('click'));
  await hook(page, P, '#graph-detail', { state: 'visible' });
  await page.waitForFunction((app) => document.querySelector('#graph-detail')?.textContent.includes(app), reviews.targetApp, { timeout: HOOK_MS })
    .catch(() => { throw new Check(`#graph-detail does not name ${reviews.targetApp} after clicking its node`); });
  // Refresh: a button refreshes now, a select sets an interval.
  const refresh = page.locator('#graph-refresh').first();
  if ((await refresh.evaluate((el) => el.tagName)) === 'SELECT') {
    expect((await refresh.locator('option').count()) > 1, '#graph-refresh is a select without choices');
  } else {
    await refresh.click();
    await waitAttr(page, '#graph-view', 'data-ready', 'true');
    await check();
  }
  // Another graph type regroups the same traffic (by app when offered).
  const typeSelect = page.locator('#graph-type').first();
  const types = await typeSelect.evaluate((el) => (el.tagName === 'SELECT' ? [...el.options].map((o) => o.value) : []));
  const other = types.find((t) => /^app/i.test(t));
  if (other) {
    await typeSelect.selectOption(other);
    await page.waitForFunction(([from, to, wl]) => [...document.querySelectorAll('#graph-view[data-ready="true"] .graph-edge')].some((e) => e.dataset.source !== wl && e.dataset.source.includes(from) && e.dataset.target.includes(to)), [reviews.sourceApp, reviews.targetApp, reviews.source], { timeout: READY_MS, polling: 100 })
      .catch(async () => {
        const edges = await attrsOf(page, '.graph-edge', ['data-source', 'data-target']);
        throw new Check(`graph type "${other}": no edge ${reviews.sourceApp} → ${reviews.targetApp}; shown: ${edges.map((e) => `${e['data-source']}→${e['data-target']}`).join('; ')}`);
      });
  } else {
    log(`  #graph-type offers no app grouping (${types.join(', ')}); not switched`);
  }
}

/** Metrics: every mesh service listed; a selected one shows rate, errors and duration charts. */
async function metricsStep(page, ctx) {
  const P = ctx.pageName;
  await page.goto(`${base}/metrics`);
  await hook(page, P, '#metrics-view');
  await waitAttr(page, '#metrics-view', 'data-ready', 'true');
  const state = await page.locator('#metrics-view').first().getAttribute('data-state');
  expect(state !== 'error', `#metrics-view data-state="error": ${await mainText(page)}`);
  await hook(page, P, '.metrics-service');
  const services = (await attrsOf(page, '.metrics-service', ['data-service'])).map((s) => s['data-service']);
  // data-service may be a name or a fully qualified one (reviews.default.svc.cluster.local).
  const serviceOf = (name) => services.find((s) => s === name || s.startsWith(`${name}.`));
  for (const name of facts.metrics.services) {
    expect(serviceOf(name), `no .metrics-service for ${name}; shown: ${services.join(', ')}`);
  }
  const chosen = serviceOf(facts.metrics.services[facts.metrics.services.length - 1]);
  const row = page.locator(`.metrics-service[data-service="${chosen}"]`).first();
  const button = row.locator('button, a').first();
  await ((await button.count()) ? button : row).click();
  await page.waitForFunction((service) => {
    const view = document.querySelector('#metrics-view[data-ready="true"]');
    return view && new URL(location.href).searchParams.get('service') === service
      && ['rate', 'errors', 'duration'].every((m) => view.querySelector(`.metrics-chart[data-metric="${m}"]`));
  }, chosen, { timeout: READY_MS, polling: 100 }).catch(async () => {
    const charts = (await attrsOf(page, '.metrics-chart', ['data-metric'])).map((c) => c['data-metric']);
    throw new Check(`selecting ${chosen}: want .metrics-chart rate, errors and duration in a ready #metrics-view; charts: ${charts.join(', ') || 'none'} (at ${page.url()})`);
  });
  markHook(P, '.metrics-chart');
  // The list's filter is in the URL: a reload keeps it.
  const filterText = chosen.split('.')[0];
  await page.locator('#metrics-filter').first().fill(filterText);
  await page.waitForFunction((text) => new URL(location.href).searchParams.get('filter') === text, filterText, { timeout: HOOK_MS })
    .catch(() => { throw new Check(`the metrics filter is not in the URL (at ${page.url()})`); });
  await page.reload();
  await page.waitForFunction((text) => document.querySelector('#metrics-filter')?.value === text, filterText, { timeout: READY_MS })
    .catch(() => { throw new Check('a reload lost the metrics filter'); });
  // The menu's link (a URL with no filter) shows the whole list again.
  await page.locator('nav a[data-page="metrics"]').first().click();
  await page.waitForFunction(() => location.search === '' && document.querySelector('#metrics-filter')?.value === '', null, { timeout: READY_MS })
    .catch(async () => { throw new Check(`the menu's /metrics kept the filter ${JSON.stringify(await page.locator('#metrics-filter').first().inputValue())} (at ${page.url()})`); });
  // A short name, as the API takes it, opens the listed service it names.
  if (chosen.includes('.')) {
    await page.goto(`${base}/metrics?${new URLSearchParams({ service: filterText })}`);
    await page.waitForFunction((service) => new URL(location.href).searchParams.get('service') === service, chosen, { timeout: READY_MS })
      .catch(() => { throw new Check(`/metrics?service=${filterText} did not open ${chosen} (at ${page.url()})`); });
  }
}

/** Fills #quota-editor: a text editor (JSON is YAML too) or a form of named fields. */
async function fillQuotaEditor(page, spec) {
  const editor = page.locator('#quota-editor').first();
  const fieldSelectors = (aliases) => aliases.flatMap((a) => [
    `#quota-editor [name="${a}"]`,
    `#quota-editor input[data-field="${a}"], #quota-editor select[data-field="${a}"], #quota-editor textarea[data-field="${a}"]`,
    `#quota-editor [data-field="${a}"] input, #quota-editor [data-field="${a}"] select`,
    `#quota-${a.replace(/[A-Z.]/g, (c) => (c === '.' ? '-' : `-${c.toLowerCase()}`))}`,
  ]);
  const fields = {
    name: ['name'],
    description: ['description'],
    source: ['match.source.service', 'source.service', 'sourceService', 'source-service', 'source'],
    destination: ['match.destination.service', 'destination.service', 'destinationService', 'destination-service', 'destination'],
    maxAmount: ['maxAmount', 'max-amount', 'max_amount'],
    validDuration: ['validDuration', 'valid-duration', 'valid_duration'],
  };
  const find = async (aliases) => {
    for (const s of fieldSelectors(aliases)) {
      const loc = page.locator(s).first();
      if (await loc.count()) return s;
    }
    return null;
  };
  const maxAmountField = await find(fields.maxAmount);
  if (maxAmountField) {
    const values = {
      name: spec.name,
      description: spec.description,
      source: spec.match.source.service,
      destination: spec.match.destination.service,
      maxAmount: spec.maxAmount,
      validDuration: spec.validDuration,
    };
    for (const [key, value] of Object.entries(values)) {
      const selector = await find(fields[key]);
      if (!selector) {
        if (key === 'description') continue;
        const inventory = await editor.evaluate((el) => [...el.querySelectorAll('input, select, textarea')].map((e) => e.name || e.id || e.getAttribute('data-field') || e.tagName).join(', '));
        throw new Check(`#quota-editor has no field for ${key} (tried [name]/[data-field]/#quota-… ${fields[key].join('|')}; fields: ${inventory})`);
      }
      await setField(page, selector, String(value));
    }
    return 'form';
  }
  const tag = await editor.evaluate((el) => el.tagName.toLowerCase());
  const text = tag === 'textarea' ? editor : editor.locator('textarea, [contenteditable="true"]').first();
  if (!(await text.count())) {
    const inventory = await editor.evaluate((el) => el.outerHTML.slice(0, 300));
    throw new Check(`#quota-editor is neither a text editor nor a form with a maxAmount field: ${inventory}`);
  }
  await text.fill(JSON.stringify(spec, null, 2));
  return 'text';
}

/** Quotas: token, an invalid policy refused field by field, a valid one enforced and audited, then deleted. */
async function quotasStep(page, ctx) {
  const P = ctx.pageName;
  const q = facts.quota;
  await page.goto(`${base}/quotas`);
  await hook(page, P, '#quotas-view');
  await (await hook(page, P, '#quota-token')).first().fill(facts.adminToken);
  await (await hook(page, P, '#quota-token-save')).first().click();
  await (await hook(page, P, '#quota-new')).first().click();
  await hook(page, P, '#quota-editor', { state: 'visible' });
  const spec = {
    name: q.name,
    description: 'created by the browser test',
    match: { source: { service: q.sourceService }, destination: { service: q.destinationService } },
    maxAmount: q.maxAmount,
    validDuration: q.invalidValidDuration,
  };
  // Invalid first: the server (or the form) says which field.
  ctx.allow(/status of 400|HTTP 400|Bad Request/);
  const mode = await fillQuotaEditor(page, spec);
  await (await hook(page, P, '#quota-save')).first().click();
  await hook(page, P, '.quota-field-error', { state: 'visible' });
  const errors = await attrsOf(page, '.quota-field-error', ['data-field']);
  expect(errors.some((e) => (e['data-field'] || '').endsWith('validDuration')), `.quota-field-error for ${JSON.stringify(errors.map((e) => [e['data-field'], e.text]))}, want data-field="validDuration"`);
  log(`  invalid policy (${mode} editor): ${errors.map((e) => `${e['data-field']}: ${e.text}`).join('; ')}`);
  await ctx.shot('quotas-invalid');

  // Then valid.
  spec.validDuration = q.validDuration;
  await fillQuotaEditor(page, spec);
  await page.locator('#quota-save').first().click();
  await hook(page, P, `.quota-row[data-name="${q.name}"]`, { timeout: READY_MS });
  markHook(P, '.quota-row');

  // Enforced by the destination's sidecar: 429s through the proxies within a few seconds.
  const statuses = [];
  let limited = null;
  const deadline = Date.now() + 12_000;
  while (Date.now() < deadline && statuses.filter((s) => s === 429).length < 3) {
    const reply = await probe(q.probe.url, {
      ...q.probe.headers,
      traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
      'x-request-id': randomBytes(8).toString('hex'),
    });
    statuses.push(reply.status);
    expect(reply.status === 200 || reply.status === 429, `GET ${q.probe.url} (Host ${q.probe.headers.host}): HTTP ${reply.status} ${reply.body.slice(0, 200)}`);
    if (reply.status === 429 && !limited) limited = reply;
    await sleep(150);
  }
  const summary = `${statuses.filter((s) => s === 200).length}×200, ${statuses.filter((s) => s === 429).length}×429`;
  log(`  quota ${q.name} (${q.maxAmount} per ${q.validDuration}, ${q.sourceService} → ${q.destinationService}): ${summary}`);
  expect(limited, `the quota created in the UI is not enforced: ${summary} through the proxies in 12 s`);
  // Once in force, at most one more request passes (a new window may start meanwhile).
  const after = statuses.slice(statuses.indexOf(429)).filter((s) => s === 200).length;
  expect(after <= 1, `${after} requests passed after the first 429 (${statuses.join(' ')}) under ${q.maxAmount} per ${q.validDuration}`);
  const denied = statuses.filter((s) => s === 429).length;
  expect(limited.headers['x-envoy-ratelimited'] === 'true', `429 without x-envoy-ratelimited: true (${JSON.stringify(limited.headers)})`);
  expect(String(limited.headers['x-ratelimit-limit'] || '').includes(q.name), `429's x-ratelimit-limit ${limited.headers['x-ratelimit-limit']} does not name ${q.name}`);

  // Usage and audit after a reload (the token is remembered or entered again).
  await page.reload();
  await hook(page, P, '#quotas-view');
  if (!(await page.locator(`.quota-row[data-name="${q.name}"]`).count())) {
    await page.locator('#quota-token').first().fill(facts.adminToken).catch(() => {});
    await page.locator('#quota-token-save').first().click().catch(() => {});
  }
  const usage = (await hook(page, P, `.quota-row[data-name="${q.name}"] .quota-usage`, { timeout: READY_MS })).first();
  markHook(P, '.quota-usage');
  // The live usage counts the denials just seen (it refreshes every few seconds).
  await page.waitForFunction(([name, n]) => new RegExp(`\\b${n}\\b`).test(document.querySelector(`.quota-row[data-name="${name}"] .quota-usage`)?.textContent || ''), [q.name, denied], { timeout: HOOK_MS })
    .catch(async () => { throw new Check(`.quota-usage of ${q.name} does not show the ${denied} denied requests: ${JSON.stringify(await usage.innerText())}`); });
  log(`  usage shown: ${(await usage.innerText()).replace(/\s+/g, ' ').trim()}`);
  await hook(page, P, '.quota-audit-entry', { timeout: READY_MS });
  const audit = await attrsOf(page, '.quota-audit-entry', []);
  expect(audit.some((a) => a.text.includes(q.name) && /creat/i.test(a.text)), `no .quota-audit-entry for the creation of ${q.name}: ${JSON.stringify(audit.map((a) => a.text))}`);
  expect(audit.some((a) => a.text.includes(q.name) && /\bv\d+\b/.test(a.text)), `no policy version in the .quota-audit-entry of ${q.name}: ${JSON.stringify(audit.map((a) => a.text))}`);
  await ctx.shot('quotas');

  // Delete: without the token, the page asks for it in its field (not in the modal dialog).
  await page.evaluate(() => sessionStorage.clear());
  await (await hook(page, P, `.quota-row[data-name="${q.name}"] .quota-delete`)).first().click();
  await page.waitForFunction(() => !document.querySelector('#quota-confirm')?.open && document.activeElement?.id === 'quota-token' && /needs the admin token/.test(document.querySelector('.quota-flash')?.textContent), null, { timeout: HOOK_MS })
    .catch(() => { throw new Check('Delete without the admin token does not ask for it in #quota-token'); });
  await page.locator('#quota-token').first().fill(facts.adminToken).then(() => page.locator('#quota-token-save').first().click());
  // Delete with confirmation.
  await (await hook(page, P, `.quota-row[data-name="${q.name}"] .quota-delete`)).first().click();
  markHook(P, '.quota-delete');
  await hook(page, P, '#quota-confirm', { state: 'visible' });
  await (await hook(page, P, '#quota-confirm-yes')).first().click();
  await page.waitForFunction((name) => !document.querySelector(`.quota-row[data-name="${name}"]`), q.name, { timeout: HOOK_MS })
    .catch(() => { throw new Check(`${q.name} still listed after confirming its deletion`); });
  await page.waitForFunction((name) => [...document.querySelectorAll('.quota-audit-entry')].some((e) => e.textContent.includes(name) && /delet/i.test(e.textContent)), q.name, { timeout: HOOK_MS })
    .catch(() => { throw new Check(`no .quota-audit-entry for the deletion of ${q.name}`); });
}

/** A policy deleted while it is edited: saving offers to create it again from the edit. */
async function quotaDeletedWhileEditedStep(page, ctx) {
  const P = ctx.pageName;
  const q = facts.quota;
  const name = `${q.name}-gone`;
  const url = `${base}/api/quotas/${name}`;
  const auth = { authorization: `Bearer ${facts.adminToken}` };
  const policy = (maxAmount) => ({ name, match: { source: { service: q.sourceService }, destination: { service: q.destinationService } }, maxAmount, validDuration: q.validDuration });
  const put = await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json', 'if-none-match': '*' }, body: JSON.stringify(policy(1000)) });
  expect(put.status === 201, `PUT ${url}: HTTP ${put.status} ${await put.text()}`);
  ctx.allow(/status of 412|HTTP 412|Precondition Failed|status of 404|HTTP 404|Not Found/);
  await page.goto(`${base}/quotas`);
  await (await hook(page, P, '#quota-token')).first().fill(facts.adminToken);
  await (await hook(page, P, '#quota-token-save')).first().click();
  await (await hook(page, P, `.quota-row[data-name="${name}"] .quota-edit`, { timeout: READY_MS })).first().click();
  await hook(page, P, '#quota-editor', { state: 'visible' });
  await fillQuotaEditor(page, policy(2000));
  const gone = await fetch(url, { method: 'DELETE', headers: auth });
  expect(gone.status === 204, `DELETE ${url}: HTTP ${gone.status}`);
  await page.locator('#quota-save').first().click();
  const again = page.getByRole('button', { name: 'Create it again with my edits' });
  await again.waitFor({ state: 'visible', timeout: HOOK_MS }).catch(async () => { throw new Check(`saving ${name} after its deletion offers no "Create it again with my edits": ${await mainText(page)}`); });
  await again.click();
  await hook(page, P, `.quota-row[data-name="${name}"]`, { timeout: READY_MS });
  const now = await fetch(url, { headers: auth });
  const body = await now.json();
  expect(now.status === 200 && body.maxAmount === 2000, `after "Create it again": HTTP ${now.status} ${JSON.stringify(body)}, want maxAmount 2000`);
  await fetch(url, { method: 'DELETE', headers: auth });
}

// ---------------------------------------------------------------------------------------

/** Prints the timings, the hooks never found and the failures; the exit code. */
function report() {
  for (const line of timings) console.log(line);
  const missing = [...hooks].map(([pageName, map]) => [pageName, [...map].filter(([, seen]) => !seen).map(([s]) => s)]).filter(([, list]) => list.length);
  if (missing.length) log(`hooks never found:\n${missing.map(([pageName, list]) => `  ${pageName}: ${list.join(' ')}`).join('\n')}`);
  if (failures.length) {
    console.error(`\n[ui] FAILED: ${failures.length} problem(s):`);
    for (const f of failures) console.error(`  - ${f}`);
    return 1;
  }
  log(`passed; screenshots in ${shots}`);
  return 0;
}

/**
 * The critical path of a retried call, from the page's own module: the first attempt,
 * still running when the retry began, is on it up to that point, and the parent, which
 * only waited on both, has no critical time of its own.
 */
async function criticalPathOfARetry() {
  const { criticalPath } = await import('../js/lib/trace-model.js');
  const span = (id, start, end, parent) => ({ id, start, end, duration: end - start, children: [], parent, refType: 'CHILD_OF' });
  const root = span('root', 0, 6_000, null);
  const first = span('first attempt', 0, 3_004, root);
  const retry = span('retry', 3_003, 6_000, root);
  const inner = span('inside the first', 100, 3_000, first);
  const beside = span('beside the retry', 3_500, 4_000, root);
  root.children = [first, retry, beside];
  first.children = [inner];
  const path = criticalPath({ root, order: [root, first, inner, retry, beside] });
  const segments = (node) => JSON.stringify(path.get(node) ?? null);
  expect(segments(root) === '[]', `the root has critical time of its own: ${segments(root)}`);
  expect(segments(retry) === '[[3003,6000]]', `the retry: ${segments(retry)}`);
  expect(segments(first) === '[[3000,3003],[0,100]]', `the first attempt: ${segments(first)}`);
  expect(segments(inner) === '[[100,3000]]', `inside the first attempt: ${segments(inner)}`);
  expect(!path.has(beside), 'a span running beside the retry is not on the path');
}
/** Durations and offsets as the pages print them: signed for a skewed clock, hours past 60 min. */
async function durationFormats() {
  const { formatDuration, formatOffset } = await import('../js/lib/dom.js');
  const { durationError, traceIdOf } = await import('../js/lib/trace-query.js');
  const cases = [
    [formatDuration(850), '850µs'],
    [formatDuration(7_199_000_000), '1h 59m 59s'],
    [formatDuration(61_000_000), '1m 1s'],
    [formatOffset(-2_011_000), '-2.01s'],
    [formatOffset(1_200), '+1.20ms'],
    [durationError('-1s'), 'Must not be negative'],
    [durationError('1.5s'), null],
    // Rounding never reaches the next unit's boundary in the unit below it.
    [formatDuration(59_999_000), '1m 0s'],
    [formatDuration(999_960), '1.00s'],
    [formatDuration(999.6), '1.00ms'],
    [formatDuration(9_999), '10.0ms'],
    // What the top bar's box opens.
    [traceIdOf(' 4bf92f3577b34da6a3ce929d0e0e4736 '), '4bf92f3577b34da6a3ce929d0e0e4736'],
    [traceIdOf('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), '4bf92f3577b34da6a3ce929d0e0e4736'],
    [traceIdOf('80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1'), '80f198ee56343ba864fe8b2a57d3eff7'],
    [traceIdOf('trace_id=a3ce929d0e0e4736'), 'a3ce929d0e0e4736'],
    [traceIdOf('trace_id="4bf92f3577b34da6a3ce929d0e0e4736"'), '4bf92f3577b34da6a3ce929d0e0e4736'],
    [traceIdOf('"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",'), '4bf92f3577b34da6a3ce929d0e0e4736'],
    [traceIdOf('traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), '4bf92f3577b34da6a3ce929d0e0e4736'],
    [traceIdOf('d28902ec-418e-4420-9dae-e06031b6a5c1'), null],
  ];
  for (const [saw, want] of cases) expect(saw === want, `saw ${JSON.stringify(saw)}, want ${JSON.stringify(want)}`);
}
try {
  await durationFormats();
  log('duration formats: ok');
} catch (error) {
  failures.push(`duration formats: ${error.message}`);
}
try {
  await criticalPathOfARetry();
  log('critical path of a retried call: ok');
} catch (error) {
  failures.push(`critical path of a retried call: ${error.message}`);
}

const executablePath = process.env.MESHTEL_CHROMIUM || '/usr/bin/chromium';
const overall = setTimeout(() => {
  failures.push(`the browser test did not finish within ${facts.timeoutMs} ms`);
  process.exit(report());
}, facts.timeoutMs);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});
log(`${executablePath} ${browser.version()} against ${base}; screenshots in ${shots}`);
try {
  const context = await browser.newContext({ viewport: VIEWPORT, acceptDownloads: true });
  await context.addInitScript(installMarks);
  await context.addInitScript(reportCspViolations);
  await step('search: service, sort, minDuration finds the slow trace; URL reload and back', 'search', context, searchStep, { budget: 40_000 });
  await step('search: a custom range from the lookback, to the second; an exact link range kept; the trace id box', 'search', context, customRangeStep, { shot: 'search-custom' });
  await step('trace: the slow trace in tree order, critical path, errors, collapse, detail, find, download', 'trace', context, traceStep);
  await step(`trace: ${big.spanCount}-span trace becomes interactive`, 'trace', context, bigTraceStep, { budget: 40_000, shot: 'trace-1000' });
  await step('trace: a cut-off answer is an error, not "Trace not found"', 'trace', context, cutOffStep, { shot: 'trace-cut-off' });
  await step('search: a proxy\'s HTML error page is named, not shown as markup', 'search', context, gatewayPageStep, { shot: 'search-502' });
  await step('trace: a link with broken %-encoding names the id, not a blank page', 'trace', context, malformedLinkStep, { shot: 'trace-malformed' });
  await step('graph: the mesh edges and their error rates', 'graph', context, graphStep);
  await step('metrics: rate, errors and duration per service', 'metrics', context, metricsStep);
  await step('graph: a page whose code does not load says meshtel is unreachable, and tries again; a bad window is named', 'graph', context, unreachableStep, { shot: 'graph-unreachable' });
  await step('quotas: token, invalid then valid policy, enforced (429), usage, audit, delete', 'quotas', context, quotasStep, { budget: 45_000 });
  await step('quotas: a policy deleted while edited is created again from the edit', 'quotas', context, quotaDeletedWhileEditedStep, { shot: 'quotas-recreated' });
  await step('ingest: a page on an allowed origin posts spans across origins; another origin is refused (CORS)', 'ingest', context, corsStep);
} finally {
  await browser.close().catch(() => {});
  clearTimeout(overall);
}

process.exitCode = report();
