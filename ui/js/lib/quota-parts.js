// The quota policies page's pieces that hold no page state (pages/quotas.js): the admin
// token in sessionStorage and what a refused token says, the example policy, the usage hint,
// and one audit history entry.

import { h } from './dom.js';
import { diffSpecs, short, toYaml, whenText } from './quota-text.js';

const TOKEN_KEY = 'meshtel.adminToken';

// Usage counts what the collector decided: Check calls and tokens, not requests.
export const USAGE_HINT =
  'Usage counts Check decisions and tokens, not requests: a proxy leases tokens ahead, and after one denied Check answers the requests that follow with 429 by itself until the window resets. Requests answered 429 are istio_requests_total{response_code="429",response_flags="RL"} on the collector\'s /metrics.';

export function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function writeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives as long as the page
  }
}

export const EXAMPLE = `# A quota policy (YAML or JSON). Fields: README "Quotas".
name: ratings-limit
description: 1 req/s to ratings when the caller is reviews
match:
  source: {service: reviews}
  destination: {service: ratings}
dimensions:                      # one counter per distinct combination
  source: source.service
  sourceVersion: source.version | "unknown"
maxAmount: 1
validDuration: 1s
algorithm: fixed-window          # or rolling-window (bucketDuration), token-bucket (burst)
overrides:                       # first match wins
  - dimensions: {sourceVersion: v3}
    maxAmount: 5
`;

/** One entry of the audit history; `open` holds the ids whose details were open. */
export function auditEntry(e, open) {
  const changes = e.action === 'update' ? diffSpecs(e.before, e.after) : [];
  const badge = { create: 'badge badge-ok', update: 'badge badge-warn', delete: 'badge badge-error' }[e.action] || 'badge';
  return h(
    'li',
    { class: 'quota-audit-entry', dataset: { id: String(e.id), name: e.name, action: e.action } },
    h(
      'div',
      { class: 'quota-audit-line' },
      h('span', { class: badge }, e.action),
      ' ',
      h('span', { class: 'mono' }, e.name),
      e.version != null ? h('span', { class: 'muted small', title: e.action === 'delete' ? 'the version deleted' : 'the version this change made (its ETag)' }, ` v${e.version}`) : null,
      ' by ',
      h('strong', {}, e.actor || 'unknown'),
      ' ',
      h('time', { datetime: e.at, title: e.at, class: 'muted' }, whenText(e.at)),
    ),
    changes.length
      ? h(
          'ul',
          { class: 'quota-audit-changes small' },
          changes.slice(0, 8).map((c) => h('li', {}, h('span', { class: 'mono' }, c.path), ': ', h('del', {}, short(c.before)), ' → ', h('ins', {}, short(c.after)))),
          changes.length > 8 ? h('li', { class: 'muted' }, `and ${changes.length - 8} more`) : null,
        )
      : e.action === 'update'
        ? h('div', { class: 'muted small' }, 'no change to the spec')
        : null,
    h(
      'details',
      { class: 'quota-audit-details small', dataset: { id: String(e.id) }, open: open.has(String(e.id)) },
      h('summary', {}, 'Before / after'),
      h(
        'div',
        { class: 'quota-audit-diff' },
        h('div', {}, h('div', { class: 'muted' }, 'Before'), h('pre', {}, e.before ? toYaml(e.before) : '(none)')),
        h('div', {}, h('div', { class: 'muted' }, 'After'), h('pre', {}, e.after ? toYaml(e.after) : '(deleted)')),
      ),
    ),
  );
}

/** What a write refused for its token (401 none, 403 wrong) says, and where to get one. */
export function authMessage(error, action) {
  if (error.status === 401) {
    return [
      h('strong', {}, `${action} needs the admin token. `),
      'Paste it in “Admin token” above. ',
      h('span', { class: 'muted' }, 'meshtel serve prints a generated token once at first start, meshtel demo in its guide; MESHTEL_ADMIN_TOKEN or [admin] token sets one.'),
    ];
  }
  return [h('strong', {}, `The server refused the admin token (HTTP 403). `), 'Check it, or paste a valid one in “Admin token” above.', error.message ? h('span', { class: 'muted' }, ` Server: ${error.message}`) : null];
}
