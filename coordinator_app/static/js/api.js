// The coordinator's JSON API, with the bearer token when the coordinator wants one.
//
// A 401 opens the token dialog once (concurrent requests share it), stores the
// token in localStorage and retries. The event stream is read with fetch, not
// EventSource, so it carries the Authorization header like every other call.

const TOKEN_KEY = "stressgrid.token";

let token = readToken();
let tokenPrompt = null;
let promptHandler = async () => { throw new Error("no token prompt"); };
const tokenListeners = new Set();

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch (error) {
    return "";
  }
}

export function hasToken() {
  return Boolean(token);
}

export function setToken(value) {
  token = value || "";
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch (error) {
    // private mode: keep it for this page only
  }
  tokenListeners.forEach((listener) => listener(token));
}

export function onTokenChange(listener) {
  tokenListeners.add(listener);
}

/** ``handler(wasRejected)`` resolves to the token the user typed. */
export function setTokenPrompt(handler) {
  promptHandler = handler;
}

function askToken(rejected) {
  if (!tokenPrompt) {
    tokenPrompt = promptHandler(rejected).then((value) => {
      setToken(value);
      tokenPrompt = null;
      return value;
    }, (error) => {
      tokenPrompt = null;
      throw error;
    });
  }
  return tokenPrompt;
}

export function authHeaders(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

/** An API error with the response's status and its ``error`` object. */
export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.error = error || {};
  }
}

export async function authorized(doFetch) {
  let sent = token;
  for (;;) {
    const response = await doFetch();
    if (response.status !== 401) return response;
    // A newer token may have arrived while this request was in flight.
    if (token && token !== sent) {
      sent = token;
      continue;
    }
    await askToken(Boolean(sent));
    sent = token;
  }
}

/** ``method path`` with an optional JSON ``body``: the decoded JSON (or null), or throws ApiError. */
export async function request(method, path, body, { signal, contentType = "application/json" } = {}) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === "string" || body instanceof Blob ? body : JSON.stringify(body);
    init.headers["Content-Type"] = contentType;
  }
  const response = await authorized(() => fetch(path, { ...init, headers: authHeaders(init.headers) }));
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data && data.error);
  return data;
}

export const api = {
  meta: () => request("GET", "/api/meta"),
  state: (options) => request("GET", "/api/state", undefined, options),
  runs: () => request("GET", "/api/runs"),
  run: (id) => request("GET", `/api/runs/${encodeURIComponent(id)}`),
  start: (plan) => request("POST", "/api/runs", plan),
  check: (plan, options) => request("POST", "/api/plans/check", plan, options),
  /** The rows of a feeder ``file`` (CSV, JSON lines or JSON, by its name): {rows, count, bytes}. */
  feederRows: (file) => request("POST", `/api/feeder-rows?name=${encodeURIComponent(file.name)}`, file,
    { contentType: "text/plain; charset=utf-8" }),
  abort: (id) => request("POST", `/api/runs/${encodeURIComponent(id)}/abort`),
  remove: (id) => request("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  overview: (id) => request("GET", `/api/runs/${encodeURIComponent(id)}/overview`),
  compare: (id, baseline, tolerance) => request("GET", `/api/runs/${encodeURIComponent(id)}/compare/` +
    `${encodeURIComponent(baseline)}?tolerance=${encodeURIComponent(tolerance)}`),
};

/** Download a protected file (``<a href>`` cannot send the token): fetch it and save the blob. */
export async function download(url, filename) {
  const response = await authorized(() => fetch(url, { headers: authHeaders() }));
  if (!response.ok) throw new ApiError(response.status, null);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}
