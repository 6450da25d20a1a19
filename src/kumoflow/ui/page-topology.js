// The topology page: the map, and the same in tables (switches, links) for keyboard and screen
// reader users. Live: links turn red when they go down, thicken with load; switches grey out.

import {get} from "./api.js";
import * as live from "./live.js";
import {draw, legend, missing, refresh, switchName} from "./topology.js";
import {model} from "./state.js";
import {debounce, dpidShort, h, rate, switchLabel, table} from "./util.js";

export const title = () => "Topology";

export function render(main, _args, _query) {
  const mapBox = h("div", {class: "map-box", tabindex: "0", role: "region",
                           "aria-label": "Network map (switches are links to their pages; Tab moves between them)"});
  const tables = h("div", {class: "tables"});
  const error = h("p", {class: "error", role: "alert"});
  main.append(h("h1", {tabindex: "-1"}, "Topology"), error, legend(), mapBox, tables);
  let svg = null;
  const open = (dpid) => { location.hash = `#/switch/${dpid}`; };

  const paint = () => {
    svg = draw(model, {onOpen: open});
    mapBox.replaceChildren(svg);
    tables.replaceChildren(...lists());
  };
  const lists = () => {
    const switches = [...model.switches.values()].sort((a, b) => (a.dpid < b.dpid ? -1 : 1));
    const links = [...model.links.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
    return [
      table("Switches", [
        {title: "switch", cell: sw => h("a", {href: `#/switch/${sw.dpid}`}, switchLabel(sw))},
        {title: "datapath", cell: sw => dpidShort(sw.dpid)},
        {title: "kind", cell: sw => sw.kind || "?"},
        {title: "state", cell: sw => sw.up ? "up" : "down", className: "state"},
        {title: "ports", cell: sw => String(sw.ports.length)},
        {title: "tunnel endpoint", cell: sw => sw.endpoint || ""},
      ], switches, {rowAttrs: sw => ({dataset: {dpid: sw.dpid}, class: sw.up ? "" : "down"})}),
      table("Links", [
        {title: "from", cell: l => `${switchName(model, l.a.dpid)} port ${l.a.port_no}`},
        {title: "to", cell: l => `${switchName(model, l.b.dpid)} port ${l.b.port_no}`},
        {title: "state", cell: l => l.up ? "up" : "down", className: "state"},
        {title: "load", cell: l => l.up ? rate(l.load * 8) : "", className: "num load"},
      ], links, {rowAttrs: l => ({dataset: {key: l.key}, class: l.up ? "" : "down"})}),
      table("Tunnels", [
        {title: "switch", cell: t => switchName(model, t.dpid)},
        {title: "port", cell: t => String(t.port_no)},
        {title: "kind", cell: t => t.kind},
        {title: "to", cell: t => t.remote_dpid ? `${switchName(model, t.remote_dpid)} (${t.remote})` : t.remote},
      ], model.tunnels),
    ];
  };
  const updateTables = debounce(() => {
    for (const row of tables.querySelectorAll("tr[data-key]")) {
      const link = model.links.get(row.dataset.key);
      if (!link) continue;
      row.classList.toggle("down", !link.up);
      row.querySelector(".state").textContent = link.up ? "up" : "down";
      row.querySelector(".load").textContent = link.up ? rate(link.load * 8) : "";
    }
    for (const row of tables.querySelectorAll("tr[data-dpid]")) {
      const sw = model.switches.get(row.dataset.dpid);
      if (!sw) continue;
      row.classList.toggle("down", !sw.up);
      row.querySelector(".state").textContent = sw.up ? "up" : "down";
    }
  }, 200);

  const load = async () => {
    try {
      model.load(await get("/sdn/topology"));
      error.textContent = "";
      paint();
    } catch (err) {
      error.textContent = err.shown || String(err);
    }
  };
  const reload = debounce(load, 300);
  const stop = live.onEvent((name, data) => {
    if (name === "resync" || name === "switch_up") { reload(); return; }
    if (!model.apply(name, data)) return;
    if (!svg || name.startsWith("host_") || missing(svg, model)) paint();
    else { refresh(svg, model); updateTables(); }
  });
  load();
  return () => { stop(); reload.cancel(); updateTables.cancel(); };
}
