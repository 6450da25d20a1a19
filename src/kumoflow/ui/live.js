// The live connection: one EventSource on /sdn/events, opened with a one-time ticket
// (EventSource cannot send the token as a header). It tells the pages each event, keeps
// the last events for the events page, and watches the heartbeat: no message for three
// heartbeats, or the stream failing, and the controller is shown as unreachable while
// the UI keeps trying again (1 s, 2 s, then every 5 s). On coming back the pages are
// told to read their view again ("resync"), since events were missed meanwhile.

import {ApiError, post} from "./api.js";

export const NAMES = ["hello", "ping", "switch_up", "switch_down", "port", "link_up", "link_down", "host_found",
                      "host_moved", "host_lost", "record", "counters", "flows", "denied"];
const NOT_LOGGED = new Set(["hello", "ping", "counters", "flows"]);
const KEEP = 500;

const listeners = new Set();
const stateListeners = new Set();
export const history = [];          // the last events worth showing, newest last
export const info = {apps: [], admin: false, interval: 1, heartbeat: 2};

let source = null;
let watchdog = null;
let retry = null;
let attempts = 0;
let watched = null;
let wanted = false;
let state = "idle";
let wasLost = false;        // the stream broke (not: reopened to watch another switch)

export function onEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); }
export function onState(fn) { stateListeners.add(fn); fn(state); return () => stateListeners.delete(fn); }
export function currentState() { return state; }

function setState(next, detail = "") {
  state = next;
  for (const fn of stateListeners) fn(next, detail);
}

function emit(name, data) {
  if (!NOT_LOGGED.has(name)) {
    history.push({name, data, at: new Date()});
    if (history.length > KEEP) history.splice(0, history.length - KEEP);
  }
  for (const fn of listeners) {
    try { fn(name, data); } catch (err) { console.warn("a page failed on", name, err); }
  }
}

// Start (or restart, to watch another switch's flows: `dpid`, or null for none).
export function start(dpid = null) {
  wanted = true;
  if (source && watched === dpid && state === "live") return;
  watched = dpid;
  open();
}

export function stop() {
  wanted = false;
  wasLost = false;
  close();
  clearTimeout(retry);
  setState("idle");
}

export function watch(dpid) {
  if (!wanted || watched === dpid) return;
  watched = dpid;
  open();
}

function close() {
  clearTimeout(watchdog);
  if (source) {
    source.close();
    source = null;
  }
}

async function open() {
  close();
  clearTimeout(retry);
  if (state !== "unreachable") setState("connecting");
  let ticket;
  try {
    ticket = (await post("/sdn/events/tickets", {})).ticket;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;   // logged out by api.js
    lost(err.message);
    return;
  }
  if (!wanted) return;
  const params = new URLSearchParams({ticket});
  if (watched) params.set("switch", watched);
  const es = new EventSource(`/sdn/events?${params}`);
  source = es;
  for (const name of NAMES) {
    es.addEventListener(name, (event) => {
      if (source !== es) return;
      let data;
      try { data = JSON.parse(event.data); } catch { return; }
      alive();
      if (name === "hello") {
        Object.assign(info, data);
        attempts = 0;
        const again = wasLost;
        wasLost = false;
        setState("live");
        if (again) emit("resync", {});
      }
      if (name !== "ping") emit(name, data);
    });
  }
  es.onerror = () => {
    if (source !== es) return;
    lost("the event stream closed");
  };
  alive();
}

function alive() {
  clearTimeout(watchdog);
  watchdog = setTimeout(() => lost("no heartbeat"), (3 * (info.heartbeat || 2) + 1) * 1000);
}

function lost(why) {
  close();
  if (!wanted) return;
  wasLost = true;
  setState("unreachable", why);
  attempts += 1;
  const delay = attempts === 1 ? 1000 : attempts === 2 ? 2000 : 5000;
  clearTimeout(retry);
  retry = setTimeout(open, delay);
}
