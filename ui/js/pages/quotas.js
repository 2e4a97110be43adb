// Quota policies (/quotas): the policies with their live usage (refreshed every few
// seconds while the tab is visible), a YAML/JSON editor that shows the API's validation
// errors next to the text, conditional writes (If-Match on edit, If-None-Match on create,
// 412 explained), delete behind a confirmation dialog, and the audit history.
//
// API: query/src/quotas.rs — GET /api/quotas, GET|PUT|DELETE /api/quotas/{name},
// GET /api/quotas/{name}/usage, GET /api/quotas/audit. Writes carry the admin token,
// which this page keeps in sessionStorage (this tab only), never in localStorage.
//
// Test hooks: #quotas-view (data-ready="true" once the list is shown), #quota-token,
// #quota-token-save, #quota-new, #quota-editor, #quota-save, .quota-field-error
// [data-field], .quota-row[data-name], .quota-usage, .quota-delete, #quota-confirm,
// #quota-confirm-yes, .quota-audit-entry.

import { request } from '../api.js';
import { h, replace, loading, empty, errorState, formatNumber } from '../lib/dom.js';
import {
  toYaml,
  locateField,
  specOf,
  nameInText,
  selectLine,
  putText,
  fieldErrorsOf,
  matchText,
  limitText,
  whenText,
} from '../lib/quota-text.js';
import { auditEntry, authMessage, EXAMPLE, USAGE_HINT, readToken, writeToken } from '../lib/quota-parts.js';

export const title = 'Quota policies';

const USAGE_EVERY_MS = 3000;
const LIST_EVERY_MS = 15000;
const MAX_POLLED = 50;
// Older servers answer granted / denied only.
const tokensGranted = (u) => u.tokensGranted ?? u.granted ?? 0;
const checksDenied = (u) => u.checksDenied ?? u.denied ?? 0;


/* ---------- the page ---------- */

export async function mount(root, ctx) {
  const state = {
    destroyed: false,
    policies: null,
    usage: new Map(), // name → {body, at} | {error}
    previous: new Map(), // name → {granted, denied, at}
    expanded: new Set(),
    usageUnavailable: null,
    editing: null, // {mode: 'new'|'edit', name, etag, version}
    editorAuthError: false, // the editor shows a refused token, which a new one clears
    pendingDelete: null,
    auditName: '',
    timers: [],
  };

  /* ----- token ----- */
  const tokenInput = h('input', {
    id: 'quota-token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: readToken() ? '•••••• (set)' : 'paste the admin token',
    'aria-describedby': 'quota-token-help',
  });
  const tokenHelp = h('span', { id: 'quota-token-help', class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const forgetButton = h('button', { type: 'button', class: 'btn-link small', onclick: () => forgetToken() }, 'Forget');
  // A form (Enter submits); the hidden username field lets password managers file the token.
  const tokenBox = h(
    'form',
    {
      class: 'quota-token-box',
      autocomplete: 'off',
      onsubmit: (e) => {
        e.preventDefault();
        saveToken();
      },
    },
    h('input', { type: 'text', name: 'username', value: 'meshtel-admin', autocomplete: 'username', hidden: true, 'aria-hidden': 'true', tabindex: '-1' }),
    h('label', { for: 'quota-token', class: 'quota-token-label' }, 'Admin token'),
    tokenInput,
    h('button', { id: 'quota-token-save', type: 'submit', class: 'btn' }, 'Use token'),
    forgetButton,
    tokenHelp,
  );

  function renderTokenState(message) {
    const has = Boolean(readToken());
    forgetButton.hidden = !has;
    tokenInput.placeholder = has ? '•••••• (set)' : 'paste the admin token';
    tokenHelp.textContent = message || (has ? 'Token set for this tab (sessionStorage; gone when the tab closes).' : 'Needed to create, change or delete policies.');
  }

  function saveToken() {
    const value = tokenInput.value.trim();
    if (!value) {
      tokenInput.setAttribute('aria-invalid', 'true');
      renderTokenState('Paste a token first.');
      tokenInput.focus();
      return;
    }
    writeToken(value);
    tokenInput.value = '';
    tokenInput.removeAttribute('aria-invalid');
    renderTokenState('Token saved for this tab.');
    say(''); // a refused-token message above no longer holds
    if (state.editorAuthError) {
      // Nor does the editor's: the next save uses the new token.
      clearErrors();
      state.editorAuthError = false;
    }
    if (state.authFailed) {
      loadList();
      loadAudit();
    }
  }

  function forgetToken() {
    writeToken('');
    renderTokenState('Token forgotten.');
  }

  function needToken(error) {
    tokenInput.setAttribute('aria-invalid', 'true');
    if (error.status === 401) renderTokenState('This needs the admin token: paste it here.');
    else renderTokenState('The server refused this token: paste a valid one.');
  }

  /* ----- layout ----- */
  const flash = h('div', { class: 'quota-flash', role: 'status', 'aria-live': 'polite' });
  const listError = h('div', { class: 'quota-list-error', role: 'alert' });
  const listBody = h('div', { class: 'quota-list-body' }, loading('Loading quota policies…'));
  const editorSlot = h('div', { class: 'quota-editor-slot' });
  const liveParts = () => [h('span', { class: 'quota-live-dot' }), `usage live, every ${USAGE_EVERY_MS / 1000}s`];
  const liveLabel = h('span', { class: 'muted small quota-live', 'aria-hidden': 'true' }, liveParts());
  const auditBody = h('div', { class: 'quota-audit-body' }, loading('Loading history…'));
  const auditFilter = h('select', { id: 'quota-audit-name', 'aria-label': 'Show the history of', onchange: (e) => {
    state.auditName = e.target.value;
    loadAudit();
  } });
  const dialogText = h('p', {});
  const dialogError = h('div', { class: 'quota-dialog-error' });
  const confirmYes = h('button', { id: 'quota-confirm-yes', type: 'button', class: 'btn btn-danger', onclick: () => confirmDelete() }, 'Delete');
  const dialog = h(
    'dialog',
    { id: 'quota-confirm', 'aria-labelledby': 'quota-confirm-title' },
    h('h2', { id: 'quota-confirm-title' }, 'Delete quota policy?'),
    dialogText,
    dialogError,
    h('div', { class: 'row quota-dialog-actions' }, h('div', { class: 'grow' }), h('button', { type: 'button', class: 'btn', onclick: () => dialog.close() }, 'Cancel'), confirmYes),
  );
  dialog.addEventListener('close', () => {
    const name = state.pendingDelete?.name;
    state.pendingDelete = null;
    if (name) view.querySelector(`.quota-row[data-name="${CSS.escape(name)}"] .quota-delete`)?.focus();
  });

  const view = h(
    'section',
    { id: 'quotas-view', class: 'quotas-page', 'aria-labelledby': 'quotas-title' },
    h('div', { class: 'quotas-head row' }, h('h1', { id: 'quotas-title', class: 'grow' }, 'Quota policies'), tokenBox),
    flash,
    editorSlot,
    h(
      'section',
      { class: 'panel quota-list', 'aria-labelledby': 'quota-list-title' },
      h(
        'div',
        { class: 'row quota-list-head' },
        h('h2', { id: 'quota-list-title', class: 'grow' }, 'Policies'),
        liveLabel,
        h('button', { id: 'quota-new', type: 'button', class: 'btn btn-primary', onclick: () => openEditor({ mode: 'new' }) }, 'New policy'),
      ),
      listError,
      listBody,
    ),
    h(
      'section',
      { class: 'panel quota-audit', 'aria-labelledby': 'quota-audit-title' },
      h('div', { class: 'row' }, h('h2', { id: 'quota-audit-title', class: 'grow' }, 'History'), auditFilter),
      auditBody,
    ),
    dialog,
  );
  root.append(view);
  renderTokenState();

  function say(message, kind = 'ok') {
    replace(flash, message ? h('div', { class: `quota-flash-${kind}` }, message) : null);
  }

  /* ----- list ----- */

  async function loadList() {
    let body;
    try {
      ({ body } = await request('GET', '/api/quotas', { token: readToken() }));
    } catch (error) {
      if (state.destroyed) return;
      if (error.status === 401 || error.status === 403) {
        state.authFailed = true;
        needToken(error);
        replace(listBody, h('div', { class: 'inline-error', role: 'alert' }, authMessage(error, 'Reading the policies')));
      } else if (!state.policies) {
        replace(listBody, errorState(error, () => loadList()));
      } else {
        replace(listError, h('div', { class: 'inline-error' }, `Could not refresh the list: ${error.status ? `HTTP ${error.status}: ` : ''}${error.message}`));
      }
      view.dataset.ready = 'true';
      return;
    }
    if (state.destroyed) return;
    state.authFailed = false;
    replace(listError);
    const policies = Array.isArray(body?.data) ? body.data : [];
    const same = state.policies && JSON.stringify(policies) === JSON.stringify(state.policies);
    state.policies = policies;
    if (!same) renderList();
    renderAuditFilter();
    view.dataset.ready = 'true';
    pollUsage();
  }

  function renderList() {
    const policies = state.policies || [];
    if (!policies.length) {
      replace(
        listBody,
        empty(
          'No quota policies yet',
          h('p', {}, 'A policy limits the requests that match it: the proxy in front of a service asks the collector and answers 429 above the limit. Create one with “New policy” (an example is filled in), or from a shell:'),
          h('pre', {}, 'meshtel quota apply -f ratings-limit.yaml\nmeshtel quota import memquota.yaml --apply   # Istio memquota / envoy ratelimit'),
        ),
      );
      return;
    }
    const rows = [];
    for (const p of policies) {
      const usageCell = h('td', { class: 'quota-usage', dataset: { name: p.name }, 'aria-live': 'off' });
      renderUsageCell(usageCell, p);
      rows.push(
        h(
          'tr',
          { class: 'quota-row', dataset: { name: p.name, version: String(p.version) } },
          h(
            'th',
            { scope: 'row' },
            h('span', { class: 'quota-name mono' }, p.name),
            p.shadow ? h('span', { class: 'badge badge-warn', title: 'counts but never denies' }, 'shadow') : null,
            p.unlimited ? h('span', { class: 'badge', title: 'never denies, keeps no counter' }, 'unlimited') : null,
            p.rateLimit ? h('span', { class: 'badge', title: 'answered by the Envoy rate limit service API' }, `RLS ${p.rateLimit.domain}`) : null,
            p.description ? h('div', { class: 'muted small' }, p.description) : null,
          ),
          h('td', {}, matchText(p.match), p.dimensions && Object.keys(p.dimensions).length ? h('div', { class: 'muted small' }, `per ${Object.keys(p.dimensions).join(', ')}`) : null),
          h('td', { class: 'nowrap' }, limitText(p), p.overrides?.length ? h('div', { class: 'muted small' }, `${p.overrides.length} override${p.overrides.length === 1 ? '' : 's'}`) : null),
          usageCell,
          h('td', { class: 'small' }, h('span', { title: p.updatedAt }, whenText(p.updatedAt)), h('div', { class: 'muted' }, `v${p.version} · ${p.updatedBy || '?'}`)),
          h(
            'td',
            { class: 'quota-actions nowrap' },
            h('button', { type: 'button', class: 'btn quota-edit', onclick: () => openEditor({ mode: 'edit', name: p.name }), 'aria-label': `Edit ${p.name}` }, 'Edit'),
            h('button', { type: 'button', class: 'btn quota-history', onclick: () => showHistory(p.name), 'aria-label': `History of ${p.name}` }, 'History'),
            h('button', { type: 'button', class: 'btn quota-delete', onclick: () => askDelete(p), 'aria-label': `Delete ${p.name}` }, 'Delete'),
          ),
        ),
      );
      if (state.expanded.has(p.name)) rows.push(h('tr', { class: 'quota-keys-row', dataset: { name: p.name } }, h('td', { colspan: 6 }, keysTable(p.name))));
    }
    // Keep the keyboard focus on the same control across a re-render.
    const active = document.activeElement;
    const activeRow = active && listBody.contains(active) ? active.closest('[data-name]') : null;
    const refocus = activeRow ? `${activeRow.classList.contains('quota-row') ? '.quota-row' : '.quota-keys-row'}[data-name="${CSS.escape(activeRow.dataset.name)}"] .${[...active.classList].find((c) => c.startsWith('quota-')) || 'btn'}` : null;
    replace(
      listBody,
      // On a narrow screen the table scrolls in its own box, so the page does not.
      h(
        'div',
        { class: 'quota-table-wrap' },
        h(
          'table',
          { class: 'data quota-table' },
          h('thead', {}, h('tr', {}, ['Policy', 'Match', 'Limit', 'Live usage', 'Changed', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, rows),
        ),
      ),
      h('p', { class: 'muted small quota-usage-hint' }, USAGE_HINT),
    );
    if (refocus) listBody.querySelector(refocus)?.focus();
  }

  function renderUsageCell(cell, policy) {
    if (state.usageUnavailable) {
      replace(cell, h('span', { class: 'muted small', title: state.usageUnavailable }, 'not available here'));
      return;
    }
    const entry = state.usage.get(policy.name);
    if (!entry) {
      replace(cell, h('span', { class: 'muted small' }, '…'));
      return;
    }
    if (entry.error) {
      replace(cell, h('span', { class: 'muted small', title: entry.error.message }, entry.error.status === 404 ? 'not loaded yet' : `error ${entry.error.status || ''}`));
      return;
    }
    const u = entry.body;
    const busiest = (u.keys || [])[0];
    const deniedRate = entry.deniedRate;
    const denying = deniedRate > 0;
    const expanded = state.expanded.has(policy.name);
    replace(
      cell,
      h(
        'div',
        { class: 'quota-usage-line' },
        h('span', { title: 'tokens granted since the collector started; a proxy leases tokens ahead, so this counts leased tokens, used or not' }, `${formatNumber(tokensGranted(u), 1)} ${tokensGranted(u) === 1 ? 'token' : 'tokens'} granted`),
        ' · ',
        h('span', { class: checksDenied(u) ? 'quota-denied' : 'muted', title: `Check decisions that denied since the collector started. ${USAGE_HINT}` }, `${formatNumber(checksDenied(u), 1)} ${checksDenied(u) === 1 ? 'check' : 'checks'} denied`),
        denying ? h('span', { class: 'badge badge-error quota-denying' }, `denying ${deniedRate >= 10 ? Math.round(deniedRate) : deniedRate.toFixed(1)} checks/s`) : null,
      ),
      busiest && !policy.unlimited
        ? h(
            'div',
            { class: 'quota-meter-line small' },
            h('meter', { min: 0, max: Math.max(1, busiest.limit), value: Math.min(busiest.used, busiest.limit), high: Math.max(1, busiest.limit) * 0.8, optimum: 0, 'aria-label': `busiest counter ${busiest.used} of ${busiest.limit}` }),
            ` ${busiest.used}/${busiest.limit}`,
            h('span', { class: 'muted' }, ` busiest · resets in ${(busiest.resetAfterMs / 1000).toFixed(busiest.resetAfterMs < 10000 ? 1 : 0)}s`),
          )
        : null,
      u.keyCount
        ? h(
            'button',
            {
              type: 'button',
              class: 'btn-link small quota-keys-toggle',
              'aria-expanded': String(expanded),
              onclick: () => {
                if (expanded) state.expanded.delete(policy.name);
                else state.expanded.add(policy.name);
                renderList();
                view.querySelector(`.quota-row[data-name="${CSS.escape(policy.name)}"] .quota-keys-toggle`)?.focus();
                if (!expanded) pollUsage();
              },
            },
            `${expanded ? 'Hide' : 'Show'} ${u.keyCount} counter${u.keyCount === 1 ? '' : 's'}`,
          )
        : h('div', { class: 'muted small' }, 'no live counters'),
    );
  }

  function keysTable(name) {
    const u = state.usage.get(name)?.body;
    if (!u || !u.keys?.length) return h('p', { class: 'muted small' }, 'No live counters.');
    return h(
      'table',
      { class: 'data quota-keys' },
      h('caption', { class: 'muted small' }, `Busiest ${u.keys.length} of ${u.keyCount} counters`),
      h('thead', {}, h('tr', {}, ['Dimensions', 'Used / limit', 'Resets in', 'Tokens granted', 'Checks denied'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        u.keys.map((k) =>
          h(
            'tr',
            {},
            h('td', { class: 'mono small' }, Object.entries(k.dimensions || {}).map(([d, v]) => `${d}=${v || '""'}`).join(' ') || k.key),
            h('td', {}, h('meter', { min: 0, max: Math.max(1, k.limit), value: Math.min(k.used, k.limit), high: Math.max(1, k.limit) * 0.8, optimum: 0 }), ` ${k.used} / ${k.limit}`),
            h('td', {}, `${(k.resetAfterMs / 1000).toFixed(1)}s`),
            h('td', {}, formatNumber(tokensGranted(k), 1)),
            h('td', { class: checksDenied(k) ? 'quota-denied' : null }, formatNumber(checksDenied(k), 1)),
          ),
        ),
      ),
    );
  }

  async function pollUsage() {
    if (state.destroyed || !state.policies || state.usageUnavailable || document.hidden || state.polling) return;
    state.polling = true;
    try {
      await pollUsageOnce();
    } finally {
      state.polling = false;
    }
  }

  async function pollUsageOnce() {
    const names = state.policies.slice(0, MAX_POLLED).map((p) => p.name);
    const token = readToken();
    // With no policy to ask about, the list itself says whether meshtel answers.
    let reached = false;
    if (!names.length) {
      try {
        await request('GET', '/api/quotas', { token });
        reached = true;
      } catch (error) {
        reached = Boolean(error.status);
      }
    }
    await Promise.all(
      names.map(async (name) => {
        const limit = state.expanded.has(name) ? 20 : 1;
        try {
          const { body } = await request('GET', `/api/quotas/${encodeURIComponent(name)}/usage`, { params: { limit }, token });
          const now = Date.now();
          const prev = state.previous.get(name);
          const deniedRate = prev && now > prev.at ? Math.max(0, (checksDenied(body) - prev.denied) / ((now - prev.at) / 1000)) : 0;
          state.previous.set(name, { denied: checksDenied(body), granted: tokensGranted(body), at: now });
          state.usage.set(name, { body, deniedRate });
          reached = true;
        } catch (error) {
          if (error.status) reached = true;
          if (error.status === 503) state.usageUnavailable = error.message;
          else state.usage.set(name, { error });
        }
      }),
    );
    if (state.destroyed) return;
    // "live" only while the server answers.
    replace(liveLabel, ...(reached ? liveParts() : [`usage: cannot reach meshtel at ${location.host}, retrying every ${USAGE_EVERY_MS / 1000}s`]));
    liveLabel.classList.toggle('quota-live-down', !reached);
    const focusedCell = document.activeElement?.closest?.('.quota-usage');
    for (const p of state.policies) {
      const cell = view.querySelector(`.quota-usage[data-name="${CSS.escape(p.name)}"]`);
      if (cell) renderUsageCell(cell, p);
      if (cell && cell === focusedCell) cell.querySelector('button')?.focus();
      const keysRow = view.querySelector(`.quota-keys-row[data-name="${CSS.escape(p.name)}"] td`);
      if (keysRow) replace(keysRow, keysTable(p.name));
    }
  }

  /* ----- editor ----- */

  async function openEditor({ mode, name }) {
    say('');
    if (mode === 'edit') {
      replace(editorSlot, h('div', { class: 'panel' }, loading(`Loading ${name}…`)));
      try {
        const { body, headers } = await request('GET', `/api/quotas/${encodeURIComponent(name)}`, { token: readToken() });
        if (state.destroyed) return;
        state.editing = { mode, name, etag: headers.get('etag') || `"${body.version}"`, version: body.version, updatedBy: body.updatedBy, original: '' };
        renderEditor(toYaml(specOf(body)) + '\n');
      } catch (error) {
        if (error.status === 401 || error.status === 403) needToken(error);
        replace(editorSlot, h('div', { class: 'panel' }, errorState(error, () => openEditor({ mode, name }))));
      }
      return;
    }
    state.editing = { mode: 'new', name: '', etag: null, version: null, original: '' };
    renderEditor(EXAMPLE);
  }

  function closeEditor() {
    const name = state.editing?.name;
    state.editing = null;
    replace(editorSlot);
    const back = name ? view.querySelector(`.quota-row[data-name="${CSS.escape(name)}"] .quota-edit`) : document.getElementById('quota-new');
    back?.focus();
  }

  let editorRefs = null;

  function renderEditor(text) {
    const editing = state.editing;
    editing.original = text;
    editing.dirty = false;
    const textarea = h('textarea', {
      id: 'quota-editor',
      rows: Math.min(28, Math.max(14, text.split('\n').length + 2)),
      spellcheck: 'false',
      autocapitalize: 'off',
      autocomplete: 'off',
      'aria-label': 'Quota policy, YAML or JSON',
      'aria-describedby': 'quota-errors quota-editor-help',
      oninput: () => {
        editing.dirty = textarea.value !== editing.original;
      },
      onkeydown: (e) => {
        if ((e.ctrlKey || e.metaKey) && (e.key === 'Enter' || e.key === 's')) {
          e.preventDefault();
          save();
        }
      },
    });
    textarea.value = text;
    const errors = h('div', { id: 'quota-errors', class: 'quota-errors', 'aria-live': 'polite' });
    const saveButton = h('button', { id: 'quota-save', type: 'button', class: 'btn btn-primary', onclick: () => save() }, editing.mode === 'new' ? 'Create policy' : 'Save changes');
    editorRefs = { textarea, errors, saveButton };
    const heading =
      editing.mode === 'new'
        ? h('h2', { id: 'quota-editor-title', tabindex: '-1' }, 'New quota policy')
        : h('h2', { id: 'quota-editor-title', tabindex: '-1' }, 'Edit ', h('span', { class: 'mono' }, editing.name), h('span', { class: 'muted small' }, ` version ${editing.version}${editing.updatedBy ? `, last changed by ${editing.updatedBy}` : ''}`));
    replace(
      editorSlot,
      h(
        'section',
        { class: 'panel quota-editor-panel', 'aria-labelledby': 'quota-editor-title' },
        heading,
        h(
          'div',
          { class: 'quota-editor-grid' },
          h(
            'div',
            { class: 'quota-editor-main' },
            textarea,
            h(
              'div',
              { class: 'row quota-editor-actions' },
              saveButton,
              h('button', { type: 'button', class: 'btn', onclick: () => closeEditor() }, 'Cancel'),
              editing.mode === 'new'
                ? h('button', { type: 'button', class: 'btn-link', onclick: () => {
                    textarea.value = EXAMPLE;
                    editing.dirty = false;
                    clearErrors();
                  } }, 'Reset to the example')
                : null,
              h('span', { class: 'muted small' }, 'Ctrl+Enter saves'),
            ),
          ),
          h(
            'div',
            { class: 'quota-editor-side' },
            errors,
            h(
              'details',
              { id: 'quota-editor-help', class: 'quota-help small' },
              h('summary', {}, 'Policy fields'),
              h(
                'dl',
                {},
                ...[
                  ['name', 'lower-case letters, digits, - . _ (the URL of the policy)'],
                  ['match', 'source / destination {service, workload, version, namespace}, method, pathPrefix, headers — all must hold; empty matches every request'],
                  ['dimensions', 'name → attribute expression (source.service, source.labels["version"], request.headers["x-user-id"], …, a | b | "literal"): one counter per combination'],
                  ['maxAmount', 'requests granted per validDuration'],
                  ['validDuration', 'window, e.g. 1s, 500ms, 1m'],
                  ['algorithm', 'fixed-window (default), rolling-window (bucketDuration), token-bucket (burst)'],
                  ['overrides', 'list of {dimensions, maxAmount, validDuration?}: the first whose dimensions all match wins'],
                  ['shadow / unlimited', 'count but never deny / never count'],
                ].flatMap(([term, text2]) => [h('dt', { class: 'mono' }, term), h('dd', {}, text2)]),
              ),
            ),
          ),
        ),
      ),
    );
    textarea.focus();
    textarea.setSelectionRange(0, 0);
    textarea.scrollTop = 0;
    editorSlot.scrollIntoView({ block: 'nearest' });
  }

  function clearErrors() {
    state.editorAuthError = false;
    if (!editorRefs) return;
    replace(editorRefs.errors);
    editorRefs.textarea.removeAttribute('aria-invalid');
  }

  function showErrors(message, fields = [], extra = null, invalid = true) {
    if (!editorRefs) return;
    const { textarea, errors } = editorRefs;
    const text = textarea.value;
    const items = fields.map((f) => {
      const line = locateField(text, f.field);
      return h(
        'li',
        { class: 'quota-field-error field-error', dataset: { field: f.field } },
        line >= 0
          ? h('button', { type: 'button', class: 'btn-link mono quota-field-name', onclick: () => selectLine(textarea, line), title: `Go to line ${line + 1}` }, f.field)
          : h('span', { class: 'mono quota-field-name' }, f.field),
        h('span', { class: 'quota-field-message' }, ` ${f.message}`),
        line >= 0 ? h('span', { class: 'muted small' }, ` (line ${line + 1})`) : null,
      );
    });
    // A YAML/JSON syntax error names a line: offer to go there.
    const lineMatch = /line (\d+)/.exec(message || '');
    replace(
      errors,
      h(
        'div',
        { class: 'inline-error', role: 'alert' },
        h('div', {}, message),
        items.length ? h('ul', { class: 'quota-field-errors' }, items) : null,
        lineMatch && !items.length ? h('button', { type: 'button', class: 'btn-link', onclick: () => selectLine(textarea, Number(lineMatch[1]) - 1) }, `Go to line ${lineMatch[1]}`) : null,
        extra,
      ),
    );
    if (invalid) textarea.setAttribute('aria-invalid', 'true');
  }

  async function save() {
    const editing = state.editing;
    if (!editing || !editorRefs) return;
    const { textarea, saveButton } = editorRefs;
    const text = textarea.value;
    clearErrors();
    let name = editing.mode === 'edit' ? editing.name : nameInText(text);
    if (!text.trim()) {
      showErrors('The policy is empty.', []);
      return;
    }
    if (!name) {
      showErrors('The policy needs a name.', [{ field: 'name', message: 'is required (lower-case letters, digits, “-”, “.” and “_”)' }]);
      return;
    }
    if (editing.mode === 'new' && !/^[a-z0-9][a-z0-9._-]*$/.test(name)) {
      showErrors('The policy name is not valid.', [{ field: 'name', message: `${JSON.stringify(name)} must start with a letter or digit and hold only lower-case letters, digits, “-”, “.” and “_”` }]);
      return;
    }
    if (editing.mode === 'new' && name === 'audit') {
      showErrors('The policy name is not valid.', [{ field: 'name', message: '“audit” is reserved' }]);
      return;
    }
    // A policy deleted while it was being edited is created again only if still absent.
    const headers = editing.mode === 'new' || editing.recreate ? { 'if-none-match': '*' } : { 'if-match': editing.etag };
    saveButton.disabled = true;
    saveButton.textContent = 'Saving…';
    try {
      const { status, body } = await putText(`/api/quotas/${encodeURIComponent(name)}`, text, { token: readToken(), headers });
      if (state.destroyed) return;
      state.editing = null;
      editorRefs = null;
      replace(editorSlot);
      say(`${status === 201 ? 'Created' : 'Saved'} ${name} (version ${body?.version ?? '?'}). The collector enforces it within a second.`);
      await Promise.all([loadList(), loadAudit()]);
      view.querySelector(`.quota-row[data-name="${CSS.escape(name)}"] .quota-edit`)?.focus();
    } catch (error) {
      if (state.destroyed) return;
      saveButton.disabled = false;
      saveButton.textContent = editing.mode === 'new' ? 'Create policy' : 'Save changes';
      await explainSaveError(error, name, editing);
    }
  }

  async function explainSaveError(error, name, editing) {
    if (error.status === 401 || error.status === 403) {
      needToken(error);
      showErrors(h('span', {}, authMessage(error, 'Saving')), [], null, false);
      state.editorAuthError = true;
      tokenInput.focus();
      return;
    }
    if (error.status === 412 && editing.mode === 'new') {
      showErrors(
        `A policy named “${name}” already exists.`,
        [],
        h('button', { type: 'button', class: 'btn', onclick: () => {
          state.editing.dirty = false;
          openEditor({ mode: 'edit', name });
        } }, `Open ${name} for editing`),
        false,
      );
      return;
    }
    if (error.status === 412) {
      let now = null;
      try {
        ({ body: now } = await request('GET', `/api/quotas/${encodeURIComponent(name)}`, { token: readToken() }));
      } catch {
        // deleted meanwhile, or unreadable: say so below
      }
      const who = now ? ` It is now version ${now.version}, changed by ${now.updatedBy || 'someone'} ${whenText(now.updatedAt)}.` : ' It may have been deleted.';
      // The list shows what is there now, not the policy as it was.
      loadList();
      showErrors(
        `Someone else changed “${name}” since you opened it.${who}`,
        [],
        h(
          'div',
          { class: 'row quota-conflict-actions' },
          now
            ? h('button', { type: 'button', class: 'btn', onclick: () => {
                state.editing.dirty = false;
                openEditor({ mode: 'edit', name });
              } }, 'Load their version (drop my edits)')
            : h('button', { type: 'button', class: 'btn', onclick: () => {
                editing.recreate = true;
                save();
              } }, 'Create it again with my edits'),
          now
            ? h('button', { type: 'button', class: 'btn btn-danger', onclick: () => {
                editing.etag = `"${now.version}"`;
                editing.version = now.version;
                editing.recreate = false;
                save();
              } }, 'Save mine over theirs')
            : h('button', { type: 'button', class: 'btn', onclick: () => {
                state.editing.dirty = false;
                closeEditor();
              } }, 'Discard my edits'),
        ),
        false,
      );
      return;
    }
    const fields = fieldErrorsOf(error.body);
    const prefix = error.status === 400 || error.status === 422 ? '' : error.status ? `HTTP ${error.status}: ` : '';
    showErrors(`${prefix}${error.message}`, fields, null, error.status === 400 || error.status === 422);
    if (fields.length) {
      const first = locateField(editorRefs.textarea.value, fields[0].field);
      if (first >= 0) selectLine(editorRefs.textarea, first);
    }
  }

  /* ----- delete ----- */

  /** Asks for the admin token in its field (a modal dialog would hide the field). */
  function askForToken(error, action) {
    needToken(error);
    say(h('span', {}, authMessage(error, action)), 'warn');
    tokenInput.focus();
  }

  function askDelete(policy) {
    if (!readToken()) {
      askForToken({ status: 401 }, 'Deleting');
      return;
    }
    state.pendingDelete = { name: policy.name, version: policy.version };
    replace(dialogText, 'Delete ', h('strong', { class: 'mono' }, policy.name), ` (version ${policy.version})? Requests it limits will no longer be limited once the collector reloads (within a second). The audit history keeps its last version.`);
    replace(dialogError);
    confirmYes.disabled = false;
    dialog.showModal();
    dialog.querySelector('.btn:not(.btn-danger)')?.focus();
  }

  async function confirmDelete() {
    const pending = state.pendingDelete;
    if (!pending) return;
    confirmYes.disabled = true;
    try {
      await request('DELETE', `/api/quotas/${encodeURIComponent(pending.name)}`, { token: readToken(), headers: { 'if-match': `"${pending.version}"` } });
      if (state.destroyed) return;
      state.pendingDelete = null;
      dialog.close();
      if (state.editing?.name === pending.name) {
        state.editing = null;
        replace(editorSlot);
      }
      say(`Deleted ${pending.name}.`);
      await Promise.all([loadList(), loadAudit()]);
      document.getElementById('quota-new')?.focus();
    } catch (error) {
      if (state.destroyed) return;
      confirmYes.disabled = false;
      if (error.status === 401 || error.status === 403) {
        // Closed first, so that its close handler does not take the focus back.
        state.pendingDelete = null;
        dialog.close();
        askForToken(error, 'Deleting');
      } else if (error.status === 412) {
        replace(dialogError, h('div', { class: 'inline-error', role: 'alert' }, `“${pending.name}” changed since the list was loaded. The list is reloaded: check the new version before deleting.`));
        confirmYes.disabled = true;
        loadList();
      } else if (error.status === 404) {
        state.pendingDelete = null;
        dialog.close();
        say(`${pending.name} was already deleted.`, 'warn');
        loadList();
      } else {
        replace(dialogError, h('div', { class: 'inline-error', role: 'alert' }, `${error.status ? `HTTP ${error.status}: ` : ''}${error.message}`));
      }
    }
  }

  /* ----- audit ----- */

  function renderAuditFilter() {
    const names = new Set((state.policies || []).map((p) => p.name));
    if (state.auditName) names.add(state.auditName);
    replace(auditFilter, h('option', { value: '' }, 'All policies'), [...names].sort().map((n) => h('option', { value: n, selected: n === state.auditName }, n)));
  }

  function showHistory(name) {
    state.auditName = name;
    renderAuditFilter();
    loadAudit();
    view.querySelector('.quota-audit')?.scrollIntoView({ block: 'start', behavior: 'smooth' });
    document.getElementById('quota-audit-title')?.setAttribute('tabindex', '-1');
    document.getElementById('quota-audit-title')?.focus({ preventScroll: true });
  }

  async function loadAudit() {
    let body;
    try {
      ({ body } = await request('GET', '/api/quotas/audit', { params: { name: state.auditName, limit: 50 }, token: readToken() }));
    } catch (error) {
      if (state.destroyed) return;
      replace(auditBody, error.status === 401 || error.status === 403 ? h('div', { class: 'inline-error' }, authMessage(error, 'Reading the history')) : h('div', { class: 'inline-error' }, `Could not load the history: ${error.status ? `HTTP ${error.status}: ` : ''}${error.message}`));
      return;
    }
    if (state.destroyed) return;
    const entries = Array.isArray(body?.data) ? body.data : [];
    if (!entries.length) {
      replace(auditBody, h('p', { class: 'muted' }, state.auditName ? `No changes to ${state.auditName} recorded.` : 'No changes recorded yet.'));
      return;
    }
    const open = new Set([...auditBody.querySelectorAll('details[open]')].map((d) => d.dataset.id));
    replace(
      auditBody,
      h(
        'ol',
        { class: 'quota-audit-list' },
        entries.map((e) => auditEntry(e, open)),
      ),
    );
  }

  /* ----- timers ----- */

  state.timers.push(setInterval(pollUsage, USAGE_EVERY_MS));
  state.timers.push(
    setInterval(() => {
      if (!document.hidden && !dialog.open) {
        loadList();
        loadAudit();
      }
    }, LIST_EVERY_MS),
  );
  const onVisible = () => {
    if (!document.hidden) pollUsage();
  };
  document.addEventListener('visibilitychange', onVisible);
  const onBeforeUnload = (e) => {
    if (state.editing?.dirty) e.preventDefault();
  };
  window.addEventListener('beforeunload', onBeforeUnload);
  // Leaving within the UI (the top bar, Back) asks too.
  ctx?.guardLeave?.(() => (state.editing?.dirty ? 'Leave the quotas page? The policy being edited has unsaved changes.' : null));

  renderAuditFilter();
  await Promise.all([loadList(), loadAudit()]);

  return () => {
    state.destroyed = true;
    state.timers.forEach(clearInterval);
    document.removeEventListener('visibilitychange', onVisible);
    window.removeEventListener('beforeunload', onBeforeUnload);
    if (dialog.open) dialog.close();
  };
}
