// Events: what the stream brought since login (switches up and down, ports, links, hosts,
// records changed, traffic the firewall denied), newest first, and the firewall's log of
// denied traffic (GET /v2.0/fwaas/denied) when the controller runs the firewall app.

import {get} from "./api.js";
import * as live from "./live.js";
import {dpidShort, h, table} from "./util.js";

export const title = () => "Events";

function describe(name, d) {
  const sw = (dpid) => dpidShort(dpid);
  switch (name) {
    case "switch_up": return `switch ${d.name || sw(d.dpid)} connected`;
    case "switch_down": return `switch ${d.name || sw(d.dpid)} disconnected`;
    case "port": return `port ${d.port_no} (${d.name}) of ${sw(d.dpid)}: ${d.reason}, ${d.up ? "up" : "down"}`;
    case "link_up": return `link ${sw(d.a.dpid)} port ${d.a.port_no} - ${sw(d.b.dpid)} port ${d.b.port_no} up`;
    case "link_down": return `link ${sw(d.a.dpid)} port ${d.a.port_no} - ${sw(d.b.dpid)} port ${d.b.port_no} DOWN`;
    case "host_found": return `host ${d.mac} ${d.ips.join(" ")} found on ${sw(d.dpid)} port ${d.port_no}`;
    case "host_moved": return `host ${d.mac} moved from ${sw(d.from.dpid)} port ${d.from.port_no} to ${sw(d.dpid)} port ${d.port_no}`;
    case "host_lost": return `host ${d.mac} gone`;
    case "record": return `${d.kind} ${d.id} ${d.op}d${d.project_id ? " (project " + d.project_id + ")" : ""}`;
    case "denied": return deniedText(d);
    case "resync": return "the controller is reachable again";
    default: return name;
  }
}

function deniedText(d) {
  return `${d.action} ${d.direction} port ${d.port_id.slice(0, 8)}: protocol ${d.protocol} `
         + `${d.source_ip_address}:${d.source_port} -> ${d.destination_ip_address}:${d.destination_port}`;
}

export function render(main) {
  const heading = h("h1", {tabindex: "-1"}, "Events");
  const kinds = h("select", {id: "event-kind"},
    [["", "all"], ["switch", "switches"], ["port", "ports"], ["link", "links"], ["host", "hosts"],
     ["record", "tenant resources"], ["denied", "denied traffic"]].map(([v, t]) => h("option", {value: v}, t)));
  const list = h("ol", {class: "events", id: "event-list", "aria-live": "polite", "aria-relevant": "additions"});
  const denied = h("section", {"aria-labelledby": "denied-h"}, h("h2", {id: "denied-h"}, "Denied traffic"));
  main.append(heading,
    h("p", {class: "filter"}, h("label", {for: "event-kind"}, "Show "), kinds),
    h("section", {"aria-labelledby": "stream-h"}, h("h2", {id: "stream-h"}, "Since you logged in, newest first"), list),
    denied);

  const item = (e) => h("li", {class: e.name.replace("_", "-"), dataset: {kind: e.name}},
    h("time", {datetime: e.at.toISOString()}, e.at.toLocaleTimeString("en-GB")), " ", describe(e.name, e.data));
  const wanted = (name) => !kinds.value || name.startsWith(kinds.value);
  const fill = () => list.replaceChildren(...live.history.filter(e => wanted(e.name)).slice().reverse().map(item));
  kinds.addEventListener("change", fill);
  fill();

  const loadDenied = async () => {
    if (!(live.info.apps || []).includes("firewall")) {
      denied.replaceChildren(denied.firstChild, h("p", {}, "The controller does not run the firewall app: nothing is denied."));
      return;
    }
    try {
      const {denied: records} = await get("/v2.0/fwaas/denied?limit=200");
      denied.replaceChildren(denied.firstChild, table("Denied traffic, newest first", [
        {title: "time", cell: d => d.time},
        {title: "what", cell: d => deniedText(d)},
        {title: "rule", cell: d => d.firewall_rule_id || "none allowed it"},
      ], records));
    } catch (err) {
      denied.replaceChildren(denied.firstChild, h("p", {class: "error", role: "alert"}, err.shown || String(err)));
    }
  };
  loadDenied();
  const stop = live.onEvent((name, data) => {
    if (name === "hello") { loadDenied(); return; }
    if (name === "denied") loadDenied();
    if (["counters", "flows", "ping"].includes(name) || !wanted(name)) return;
    list.prepend(item({name, data, at: new Date()}));
    while (list.children.length > 500) list.lastChild.remove();
  });
  return stop;
}
