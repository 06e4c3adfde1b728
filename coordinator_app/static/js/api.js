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

async function authorized(doFetch) {
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
export async function request(method, path, body, { signal } = {}) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
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
  abort: (id) => request("POST", `/api/runs/${encodeURIComponent(id)}/abort`),
  remove: (id) => request("DELETE", `/api/runs/${encodeURIComponent(id)}`),
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

/**
 * Follow the coordinator's state: ``onState(state)`` for each one, ``onMode(mode)`` with
 * "live" (event stream), "polling" (GET /api/state every second: the stream failed) or
 * "offline" (neither answers). Returns a function that stops it.
 */
export function followState(onState, onMode, { pollMs = 1000, staleMs = 20000 } = {}) {
  let stopped = false;
  let controller = null;
  let mode = null;

  const setMode = (next) => {
    if (next !== mode) {
      mode = next;
      onMode(next);
    }
  };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function stream() {
    controller = new AbortController();
    const { signal } = controller;
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), staleMs);
    };
    try {
      arm();
      const response = await authorized(() => fetch("/api/stream", {
        headers: authHeaders({ Accept: "text/event-stream" }), signal, cache: "no-store",
      }));
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || !response.body || !type.startsWith("text/event-stream")) return false;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let delivered = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done || stopped) break;
        arm();
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = [];
          let event = "message";
          for (const line of chunk.split("\n")) {
            if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            else if (line.startsWith("event:")) event = line.slice(6).trim();
          }
          if (event === "state" && data.length) {
            setMode("live");
            delivered = true;
            onState(JSON.parse(data.join("\n")));
          }
        }
      }
      return delivered;
    } catch (error) {
      return false;
    } finally {
      clearTimeout(watchdog);
    }
  }

  async function poll(times) {
    for (let i = 0; i < times && !stopped; i += 1) {
      const started = Date.now();
      try {
        onState(await api.state());
        setMode("polling");
      } catch (error) {
        setMode("offline");
      }
      await sleep(Math.max(0, pollMs - (Date.now() - started)));
    }
  }

  (async () => {
    let failures = 0;
    while (!stopped) {
      const delivered = await stream();
      if (stopped) break;
      failures = delivered ? 0 : failures + 1;
      // The stream ended or never worked: poll meanwhile, and try it again later,
      // sooner when it had been working (a coordinator restart, a proxy timeout).
      await poll(delivered ? 2 : Math.min(30, 3 * failures));
    }
  })();

  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
