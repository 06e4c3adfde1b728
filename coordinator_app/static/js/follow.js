// Following the coordinator's state, with one event stream per browser.
//
// An event stream holds one of the browser's connections to the coordinator while it is
// open, and a browser opens at most six to one host: six tabs that each streamed would
// leave a seventh nothing to load with. So the tabs of one browser elect one of them
// (a Web Lock, released when that tab closes) to read the stream, and it hands every
// state to the others over a BroadcastChannel; a tab that hears nothing for a while
// asks /api/state itself. Where Web Locks are missing (pages served over plain HTTP to
// a host other than this machine are not a secure context) every tab polls /api/state:
// a short request, which holds no connection.

import { api, authHeaders, authorized } from "./api.js";

const STREAM_LOCK = "stressgrid.state-stream";
const STATE_CHANNEL = "stressgrid.state";

/**
 * Follow the coordinator's state: ``onState(state)`` for each one, ``onMode(mode)`` with
 * "live" (event stream), "polling" (GET /api/state every second: the stream failed) or
 * "offline" (neither answers). Returns a function that stops it.
 */
export function followState(onState, onMode, { pollMs = 1000, staleMs = 20000 } = {}) {
  let stopped = false;
  let controller = null;
  let mode = null;
  let leading = false;
  const channel = typeof BroadcastChannel !== "undefined" && navigator.locks
    ? new BroadcastChannel(STATE_CHANNEL) : null;

  const setMode = (next) => {
    if (next !== mode) {
      mode = next;
      onMode(next);
    }
  };
  // A state (or only a mode) this tab got itself: shown, and handed to the other tabs when it leads.
  const deliver = (state, next) => {
    setMode(next);
    if (state) onState(state);
    if (leading) channel.postMessage({ state, mode: next });
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
            delivered = true;
            deliver(JSON.parse(data.join("\n")), "live");
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
      let state = null;
      try {
        state = await api.state();
      } catch (error) {
        deliver(null, "offline");
      }
      if (state) deliver(state, "polling");
      await sleep(Math.max(0, pollMs - (Date.now() - started)));
    }
  }

  // The tab that holds the lock reads the stream for the browser.
  async function lead() {
    let failures = 0;
    while (!stopped) {
      const delivered = await stream();
      if (stopped) break;
      failures = delivered ? 0 : failures + 1;
      // The stream ended or never worked: poll meanwhile, and try it again later,
      // sooner when it had been working (a coordinator restart, a proxy timeout).
      await poll(delivered ? 2 : Math.min(30, 3 * failures));
    }
  }

  const lockRelease = new AbortController();
  if (!channel) {
    // Nothing to share one stream with: poll, which holds no connection.
    (async () => {
      while (!stopped) await poll(60);
    })();
  } else {
    let heard = 0;
    channel.onmessage = ({ data }) => {
      if (leading || stopped || !data) return;
      heard = Date.now();
      if (data.mode) setMode(data.mode);   // a heartbeat before the leader's first state has none
      if (data.state) onState(data.state);
    };
    navigator.locks.request(STREAM_LOCK, { signal: lockRelease.signal }, async () => {
      leading = true;
      const beat = setInterval(() => channel.postMessage({ state: null, mode }), staleMs / 4);
      try {
        await lead();
      } finally {
        clearInterval(beat);
      }
    }).catch(() => {});
    // Until it leads, a tab shows the leader's states: its own first one at once, and its
    // own again whenever the leader has been silent for ``staleMs``.
    (async () => {
      let asked = 0;
      while (!stopped && !leading) {
        if (!asked || Date.now() - Math.max(heard, asked) >= staleMs) {
          asked = Date.now();
          await poll(1);
        } else {
          await sleep(pollMs);
        }
      }
    })();
  }

  return () => {
    stopped = true;
    lockRelease.abort();
    if (controller) controller.abort();
    if (channel) channel.close();
  };
}
