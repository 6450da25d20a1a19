// The UI's shell: login, hash routes (#/topology, #/switch/DPID, #/tenants, #/path, #/events),
// the live status in the header. Each page module renders into <main> and returns a function
// that undoes what it set up (event listeners, timers) when another page is shown.

import {ApiError, request, session, stats, whenUnauthorized} from "./api.js";
import * as live from "./live.js";
import {h} from "./util.js";

const PAGES = {
  topology: () => import("./page-topology.js"),
  switch: () => import("./page-switch.js"),
  tenants: () => import("./page-tenants.js"),
  path: () => import("./page-path.js"),
  events: () => import("./page-events.js"),
};
const ADMIN_ONLY = new Set(["topology", "switch", "path"]);

const main = () => document.getElementById("main");
let dispose = null;
let loginMessage = "";
let routing = 0;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [page, ...rest] = path.split("/").filter(Boolean);
  return {page: page || "", args: rest.map(decodeURIComponent), query: new URLSearchParams(query)};
}

async function route() {
  const mine = ++routing;
  if (dispose) { try { dispose(); } catch (err) { console.warn(err); } dispose = null; }
  const {page, args, query} = parseHash();
  const target = main();
  target.replaceChildren();
  if (!session.token || page === "login") {
    live.stop();
    showLogin(target);
    return;
  }
  if (!PAGES[page] || (ADMIN_ONLY.has(page) && !session.admin)) {
    location.replace(session.admin ? "#/topology" : "#/tenants");
    return;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === page || (page === "switch" && a.dataset.page === "topology")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  live.start(page === "switch" ? args[0] || null : null);
  const module = await PAGES[page]();
  if (mine !== routing) return;
  document.title = `${module.title(args)} - kumoflow`;
  dispose = module.render(target, args, query) || null;
  const heading = target.querySelector("h1");
  if (heading && document.activeElement !== document.body && !target.contains(document.activeElement)) heading.focus?.();
}

function showChrome() {
  const logged = Boolean(session.token);
  document.getElementById("logout").hidden = !logged;
  for (const a of document.querySelectorAll("#nav a[data-admin]")) a.hidden = logged && !session.admin;
  document.getElementById("nav").hidden = !logged;
}

function showLogin(target) {
  showChrome();
  document.title = "Log in - kumoflow";
  const error = h("p", {class: "error", id: "login-error", role: "alert"}, loginMessage);
  loginMessage = "";
  const input = h("input", {id: "token", name: "token", type: "password", autocomplete: "current-password",
                            required: true, "aria-describedby": "token-help login-error", spellcheck: "false"});
  const button = h("button", {type: "submit"}, "Log in");
  const form = h("form", {class: "login", "aria-labelledby": "login-title"},
    h("h1", {id: "login-title", tabindex: "-1"}, "Log in to kumoflow"),
    h("label", {for: "token"}, "Token"),
    input,
    h("p", {id: "token-help", class: "help"},
      "The admin token (", h("code", {}, "/var/lib/kumoflow/admin-token"), " on the controller's machine) sees "
      + "everything; a project token, issued by the admin, sees its project's tenant resources."),
    button, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    button.disabled = true;
    error.textContent = "";
    try {
      // any valid token gets a ticket, which says whose token it is (the ticket itself is not used)
      const who = await request("POST", "/sdn/events/tickets", {}, token);
      const role = who.admin ? "admin" : "project";
      session.set(token, role);
      showChrome();
      location.hash = role === "admin" ? "#/topology" : "#/tenants";
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.shown : String(err);
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  target.append(form);
  input.focus();
}

function logout(message = "") {
  session.clear();
  live.stop();
  loginMessage = message;
  showChrome();
  if (location.hash === "#/login") route();
  else location.hash = "#/login";
}

function statusShown(state, detail) {
  const status = document.getElementById("status");
  const banner = document.getElementById("banner");
  const text = {idle: session.token ? "" : "not logged in", connecting: "connecting...", live: "live",
                unreachable: "controller unreachable"}[state] || state;
  status.textContent = text;
  status.dataset.state = state;
  document.body.dataset.live = state;
  if (state === "unreachable") {
    banner.hidden = false;
    banner.textContent = `The controller cannot be reached (${detail || "no answer"}): what is shown is as it was `
      + "last seen; trying again.";
  } else {
    banner.hidden = true;
  }
}

window.addEventListener("hashchange", route);
whenUnauthorized((err) => logout(`${err.shown} Log in again.`));
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout());
  live.onState(statusShown);
  showChrome();
  if (!location.hash) location.replace(session.token ? (session.admin ? "#/topology" : "#/tenants") : "#/login");
  route();
});

// for tests and benchmarks: what the UI asked of the API
window.kumoflow = {stats, live};
