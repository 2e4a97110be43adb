// The one way pages talk to the query service. Every call resolves to the parsed
// JSON body or throws an ApiError carrying the HTTP status and the server's message
// (Jaeger's `errors[0].msg`, or `error` / `message` fields), so pages can show it.

export const base = (document.querySelector('meta[name="meshtel-base"]')?.content || '').replace(/\/$/, '').replace('__MESHTEL_BASE__', '');

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

function messageOf(body, fallback) {
  if (!body || typeof body !== 'object') return fallback;
  if (Array.isArray(body.errors) && body.errors.length) return body.errors.map((e) => e.msg || e.message || JSON.stringify(e)).join('; ');
  if (typeof body.error === 'string') return body.error;
  if (body.error && typeof body.error.message === 'string') return body.error.message;
  if (typeof body.message === 'string') return body.message;
  return fallback;
}

/** The size of an answer, for messages: its text's length, else Content-Length. */
function sizeOf(response, text) {
  const bytes = text !== undefined ? text.length : Number(response.headers.get('content-length'));
  if (!Number.isFinite(bytes) || bytes <= 0) return 'size unknown';
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${bytes} bytes`;
}

/**
 * The message of an error answer that is not JSON. An HTML page (a reverse proxy's or
 * load balancer's 502, 503 or 504) is named by its title instead of being
 * shown as markup; other text is shown as sent, cut at 300 characters.
 */
export function textMessage(response, text) {
  const trimmed = text.trim();
  // An HTML page, whatever comes before its first tag (a comment, an XML prolog).
  if (trimmed.startsWith('<') && /<(html|head|body|title)\b/i.test(trimmed.slice(0, 4096))) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(trimmed)?.[1]?.replace(/\s+/g, ' ').trim();
    return `${response.statusText ? `${response.statusText}: ` : ''}an HTML page${title ? ` ("${title.slice(0, 120)}")` : ''} came back instead of meshtel's JSON, so something between this browser and meshtel (a proxy or load balancer) answered; is meshtel's query service running and reachable from it?`;
  }
  return trimmed.length > 300 ? `${trimmed.slice(0, 300)}…` : trimmed;
}

/** Builds `path?params` under the base path; array values repeat the key. */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((v) => query.append(key, v));
    else query.append(key, String(value));
  }
  const qs = query.toString();
  return `${base}${path}${qs ? `?${qs}` : ''}`;
}

/**
 * fetch + JSON with errors made readable. `options.token` adds a bearer token;
 * `options.body` (an object) is sent as JSON; `options.signal` aborts.
 * Resolves to {status, headers, body}.
 */
export async function request(method, path, { params, body, token, headers = {}, signal } = {}) {
  const init = { method, headers: { accept: 'application/json', ...headers }, signal };
  if (body !== undefined) {
    const given = Object.keys(init.headers).some((name) => name.toLowerCase() === 'content-type');
    if (!given) init.headers['content-type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  if (token) init.headers.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url(path, params), init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, `cannot reach meshtel at ${location.host}: ${error.message}`, null);
  }
  let text;
  try {
    text = await response.text();
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(response.status, `meshtel's answer could not be read (${sizeOf(response)}): ${error.message}`, null);
  }
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      // A 2xx that is not JSON is never "nothing found": a truncated or oversized
      // answer must show as an error, not as an empty page.
      if (response.ok) throw new ApiError(response.status, `meshtel's answer (${sizeOf(response, text)}) is not valid JSON: ${error.message}`, text.slice(0, 200));
      parsed = text;
    }
  }
  if (!response.ok) {
    const fallback = typeof parsed === 'string' && parsed ? textMessage(response, parsed) : response.statusText || 'an empty answer';
    throw new ApiError(response.status, messageOf(parsed, fallback), parsed);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** GET returning the body. */
export async function get(path, params, options = {}) {
  return (await request('GET', path, { ...options, params })).body;
}
