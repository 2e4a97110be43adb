// Trace data helpers shared by the search and trace pages: error detection, a cheap
// per-trace summary for search results, the span tree (O(n) apart from sorting
// siblings by start time), and the critical path.
//
// Jaeger JSON (see /work/shared/spec/traces.md §1.7): times and durations in µs,
// the parent is the first in-trace reference (CHILD_OF first), processes by id.

/** A tag value as text (bools, numbers, int64-as-string, base64 binary). */
export function tagText(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/**
 * True for a span with `error=true` or `otel.status_code=ERROR` (which the OTLP mapping
 * pairs with `error=true`): the spans a search with the tag `error=true` finds, as
 * Jaeger UI counts them. An HTTP 5xx alone is no error here, as in Jaeger: the
 * instrumentation decides (a client span's 5xx is an error, a server's may not be).
 */
export function isErrorSpan(span) {
  const tags = span.tags;
  if (!tags) return false;
  for (let i = 0; i < tags.length; i += 1) {
    const { key, value } = tags[i];
    if (key === 'error') {
      if (value === true || value === 'true') return true;
    } else if (key === 'otel.status_code') {
      if (String(value).toUpperCase() === 'ERROR') return true;
    }
  }
  return false;
}

/** The value of tag `key` on a span (first match), or undefined. */
export function tagValue(span, key) {
  const tags = span.tags || [];
  for (let i = 0; i < tags.length; i += 1) if (tags[i].key === key) return tags[i].value;
  return undefined;
}

/** The in-trace parent reference of a span: first CHILD_OF, else first FOLLOWS_FROM. */
function parentRef(span, traceID, ids) {
  const refs = span.references;
  if (!refs || !refs.length) return null;
  let follows = null;
  for (let i = 0; i < refs.length; i += 1) {
    const ref = refs[i];
    if (ref.spanID === span.spanID || (ref.traceID && traceID && ref.traceID !== traceID) || !ids.has(ref.spanID)) continue;
    if (ref.refType !== 'FOLLOWS_FROM') return ref;
    if (!follows) follows = ref;
  }
  return follows;
}

/**
 * True for a root span: one without a CHILD_OF reference to a span of its own trace.
 * A link (FOLLOWS_FROM) or a reference to another trace does not make a span a child;
 * a CHILD_OF to a span of the trace that was not received makes it an orphan, not a root.
 */
export function isRootSpan(span, traceID) {
  const refs = span.references;
  if (!refs) return true;
  for (let i = 0; i < refs.length; i += 1) {
    const ref = refs[i];
    if (ref.refType === 'FOLLOWS_FROM' || ref.spanID === span.spanID) continue;
    if (ref.traceID && traceID && ref.traceID !== traceID) continue;
    return false;
  }
  return true;
}

function serviceOf(span, processes) {
  const process = processes[span.processID] || span.process;
  return (process && process.serviceName) || 'unknown';
}

/**
 * A search-result summary of one trace, without building the tree:
 * {traceID, rootService, rootOperation, hasRoot, start, duration, spanCount, errorCount,
 *  services: [{name, count}] (most spans first)}.
 */
export function summarizeTrace(trace) {
  const spans = trace.spans || [];
  const processes = trace.processes || {};
  const traceID = trace.traceID || (spans[0] && spans[0].traceID) || '';
  const ids = new Set();
  for (let i = 0; i < spans.length; i += 1) ids.add(spans[i].spanID);
  let start = Infinity;
  let end = -Infinity;
  let errorCount = 0;
  let root = null;
  let rootScore = null;
  const services = new Map();
  for (let i = 0; i < spans.length; i += 1) {
    const span = spans[i];
    const s = span.startTime || 0;
    const e = s + (span.duration || 0);
    if (s < start) start = s;
    if (e > end) end = e;
    if (isErrorSpan(span)) errorCount += 1;
    const service = serviceOf(span, processes);
    services.set(service, (services.get(service) || 0) + 1);
    if (!parentRef(span, traceID, ids)) {
      // Prefer a true root (no CHILD_OF parent in the trace), then the earliest, then the longest.
      const trueRoot = isRootSpan(span, traceID) ? 0 : 1;
      const score = [trueRoot, s, -(span.duration || 0)];
      if (!rootScore || score[0] < rootScore[0] || (score[0] === rootScore[0] && (score[1] < rootScore[1] || (score[1] === rootScore[1] && score[2] < rootScore[2])))) {
        root = span;
        rootScore = score;
      }
    }
  }
  if (!spans.length) start = end = 0;
  return {
    traceID,
    rootService: root ? serviceOf(root, processes) : spans[0] ? serviceOf(spans[0], processes) : 'unknown',
    rootOperation: root ? root.operationName : spans[0] ? spans[0].operationName : '',
    hasRoot: Boolean(root && isRootSpan(root, traceID)),
    start,
    duration: Math.max(0, end - start),
    spanCount: spans.length,
    errorCount,
    services: [...services].map(([name, count]) => ({ name, count })).sort((a, b) => b.count - a.count || a.name.localeCompare(b.name)),
  };
}

/**
 * The span tree of a trace. Nodes:
 *   {key, id, span, service, operation, process, start, duration, end, error,
 *    parent, children[], refType, depth, index (pre-order), subtree (size incl. self),
 *    pos, setSize (place among its siblings, 1-based)}
 * Returns {traceID, nodes (input order), order (pre-order), byId, roots, root,
 *   start, end, duration, maxDepth, services [{name,count}], errorCount, warnings}.
 */
export function buildTraceModel(trace) {
  const spans = trace.spans || [];
  const processes = trace.processes || {};
  const traceID = trace.traceID || (spans[0] && spans[0].traceID) || '';
  const n = spans.length;
  const ids = new Set();
  const byId = new Map();
  const nodes = new Array(n);
  let start = Infinity;
  let end = -Infinity;
  let errorCount = 0;
  const services = new Map();
  for (let i = 0; i < n; i += 1) {
    const span = spans[i];
    const process = processes[span.processID] || span.process || { serviceName: 'unknown', tags: [] };
    const s = span.startTime || 0;
    const d = Math.max(0, span.duration || 0);
    const error = isErrorSpan(span);
    const service = process.serviceName || 'unknown';
    // Duplicate span ids (rare, bad data) keep a unique internal key.
    let key = span.spanID;
    if (byId.has(key)) key = `${span.spanID}#${i}`;
    const node = {
      key,
      id: span.spanID,
      span,
      service,
      operation: span.operationName || '',
      process,
      start: s,
      duration: d,
      end: s + d,
      error,
      parent: null,
      children: [],
      refType: null,
      depth: 0,
      index: -1,
      subtree: 1,
      seq: i,
    };
    nodes[i] = node;
    byId.set(key, node);
    ids.add(span.spanID);
    if (s < start) start = s;
    if (s + d > end) end = s + d;
    if (error) errorCount += 1;
    services.set(service, (services.get(service) || 0) + 1);
  }
  if (!n) start = end = 0;

  const roots = [];
  for (let i = 0; i < n; i += 1) {
    const node = nodes[i];
    const ref = parentRef(node.span, traceID, ids);
    const parent = ref ? byId.get(ref.spanID) : null;
    if (parent && parent !== node) {
      node.parent = parent;
      node.refType = ref.refType;
      parent.children.push(node);
    } else {
      roots.push(node);
    }
  }
  const byStart = (a, b) => a.start - b.start || a.seq - b.seq;
  for (let i = 0; i < n; i += 1) if (nodes[i].children.length > 1) nodes[i].children.sort(byStart);
  roots.sort(byStart);

  // Pre-order walk (iterative: traces can be thousands of levels deep).
  const order = [];
  let maxDepth = 0;
  const walk = (rootNode) => {
    const stack = [rootNode];
    rootNode.depth = 0;
    while (stack.length) {
      const node = stack.pop();
      node.index = order.length;
      order.push(node);
      if (node.depth > maxDepth) maxDepth = node.depth;
      const kids = node.children;
      for (let k = kids.length - 1; k >= 0; k -= 1) {
        kids[k].depth = node.depth + 1;
        stack.push(kids[k]);
      }
    }
  };
  for (const rootNode of roots) walk(rootNode);
  if (order.length < n) {
    // Reference cycles: break them and show each unreached span as a root.
    for (let i = 0; i < n; i += 1) {
      const node = nodes[i];
      if (node.index !== -1) continue;
      if (node.parent) {
        const siblings = node.parent.children;
        siblings.splice(siblings.indexOf(node), 1);
        node.parent = null;
        node.refType = null;
      }
      roots.push(node);
      walk(node);
    }
  }
  for (let i = order.length - 1; i >= 0; i -= 1) {
    const node = order[i];
    if (node.parent) node.parent.subtree += node.subtree;
  }
  // Position among siblings (aria-posinset / aria-setsize of tree rows).
  roots.forEach((node, i) => {
    node.pos = i + 1;
    node.setSize = roots.length;
  });
  for (let i = 0; i < n; i += 1) {
    const kids = nodes[i].children;
    for (let k = 0; k < kids.length; k += 1) {
      kids[k].pos = k + 1;
      kids[k].setSize = kids.length;
    }
  }

  // The root that names the trace: a span without a CHILD_OF parent in the trace, else
  // the earliest orphan.
  let root = null;
  for (const candidate of roots) {
    if (isRootSpan(candidate.span, traceID)) {
      root = candidate;
      break;
    }
  }
  if (!root) root = roots[0] || null;

  return {
    traceID,
    nodes,
    order,
    byId,
    roots,
    root,
    start,
    end,
    duration: Math.max(0, end - start),
    maxDepth,
    services: [...services].map(([name, count]) => ({ name, count })).sort((a, b) => b.count - a.count || a.name.localeCompare(b.name)),
    errorCount,
    warnings: trace.warnings || [],
  };
}

/**
 * The critical path from `model.root` (Jaeger's algorithm, with one difference):
 * starting at the root's end, repeatedly descend into the child that finished last
 * before the current point; the parent's own time between children is critical too.
 * A child still running at that point (a retry's first attempt, ending just after the
 * second began) counts up to it, where Jaeger skips it and credits its time to the
 * parent. FOLLOWS_FROM children are skipped and children are clipped to their
 * parent's time range. Returns Map(node → [[startµs, endµs], …]) holding every span on
 * the path (its list may be empty when a child covers all of its time).
 */
export function criticalPath(model) {
  const result = new Map();
  const root = model.root;
  if (!root) return result;
  const add = (node, s, e) => {
    if (e <= s) return;
    let list = result.get(node);
    if (!list) result.set(node, (list = []));
    list.push([s, e]);
  };
  // Clip children to parents (top-down) and sort eligible children by end, latest first.
  const clip = new Map();
  clip.set(root, { s: root.start, e: root.end, kids: [] });
  const stack = [root];
  while (stack.length) {
    const node = stack.pop();
    const c = clip.get(node);
    for (const child of node.children) {
      if (child.refType === 'FOLLOWS_FROM') continue;
      if (child.start > c.e || child.end < c.s) continue;
      const cc = { s: Math.max(child.start, c.s), e: Math.min(child.end, c.e), kids: [] };
      clip.set(child, cc);
      c.kids.push(child);
      stack.push(child);
    }
    if (c.kids.length > 1) c.kids.sort((a, b) => clip.get(b).e - clip.get(a).e);
  }
  let current = root;
  // The point the walk has reached inside `current`, going back in time.
  let sectionEnd = clip.get(root).e;
  let guard = model.order.length * 4 + 16;
  while (current && guard > 0) {
    guard -= 1;
    // Every span the walk passes through is on the path, even one whose own time is
    // entirely covered by a child (it then has no segment of its own).
    if (!result.has(current)) result.set(current, []);
    const c = clip.get(current);
    // Kids are sorted by end, latest first: the first that started before the section's
    // end is the one that finished last before it, or was still running at it. The
    // section's end only moves back for a given node, so a cursor over its kids suffices.
    if (c.ptr === undefined) c.ptr = 0;
    while (c.ptr < c.kids.length && clip.get(c.kids[c.ptr]).s >= sectionEnd) c.ptr += 1;
    const next = c.kids[c.ptr] || null;
    if (next) {
      const nextEnd = Math.min(clip.get(next).e, sectionEnd);
      if (nextEnd < sectionEnd) add(current, nextEnd, sectionEnd);
      current = next;
      sectionEnd = nextEnd;
    } else {
      add(current, c.s, sectionEnd);
      if (current === root) break;
      sectionEnd = c.s;
      current = current.parent;
    }
  }
  return result;
}

/** Own time of a span: its duration minus the union of its children's time inside it. */
export function selfTime(node) {
  if (!node.children.length) return node.duration;
  const intervals = node.children
    .map((c) => [Math.max(c.start, node.start), Math.min(c.end, node.end)])
    .filter(([s, e]) => e > s)
    .sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let curS = -Infinity;
  let curE = -Infinity;
  for (const [s, e] of intervals) {
    if (s > curE) {
      if (curE > curS) covered += curE - curS;
      curS = s;
      curE = e;
    } else if (e > curE) {
      curE = e;
    }
  }
  if (curE > curS) covered += curE - curS;
  return Math.max(0, node.duration - covered);
}

/** Lower-cased text a span matches in-trace search against (built lazily, cached). */
export function searchText(node) {
  if (node.text !== undefined) return node.text;
  const parts = [node.service, node.operation, node.id];
  for (const tag of node.span.tags || []) parts.push(`${tag.key}=${tagText(tag.value)}`);
  for (const tag of node.process.tags || []) parts.push(`${tag.key}=${tagText(tag.value)}`);
  for (const log of node.span.logs || []) for (const field of log.fields || []) parts.push(`${field.key}=${tagText(field.value)}`);
  node.text = parts.join('\n').toLowerCase();
  return node.text;
}
