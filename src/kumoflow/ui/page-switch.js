// A switch: its ports with live counters and rates, its flow table in ovs-ofctl syntax with live
// packet and byte counts (the event stream's "flows" snapshots), its groups and meters, and what
// the controller would still change on it (desired vs installed).

import {get} from "./api.js";
import * as live from "./live.js";
import {bytes, count, debounce, dpidShort, h, rate, soon, table} from "./util.js";

export const title = (args) => `Switch ${dpidShort(args[0] || "")}`;

const PORT_FIELDS = ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped", "rx_errors",
                     "tx_errors"];

export function render(main, args) {
  const ident = args[0];
  const heading = h("h1", {tabindex: "-1"}, `Switch ${dpidShort(ident)}`);
  const error = h("p", {class: "error", role: "alert"});
  const summary = h("dl", {class: "summary"});
  const ports = h("section", {"aria-labelledby": "ports-h"}, h("h2", {id: "ports-h"}, "Ports"));
  const filter = h("input", {type: "search", id: "flow-filter", placeholder: "match, action, cookie...",
                             "aria-describedby": "flow-count"});
  const flowCount = h("span", {id: "flow-count", class: "help", "aria-live": "polite"});
  const flows = h("section", {"aria-labelledby": "flows-h"},
    h("h2", {id: "flows-h"}, "Flows"),
    h("p", {class: "filter"}, h("label", {for: "flow-filter"}, "Filter "), filter, " ", flowCount));
  const flowTable = h("div");
  flows.append(flowTable);
  const groups = h("section", {"aria-labelledby": "groups-h"}, h("h2", {id: "groups-h"}, "Groups"));
  const meters = h("section", {"aria-labelledby": "meters-h"}, h("h2", {id: "meters-h"}, "Meters"));
  const diff = h("section", {"aria-labelledby": "diff-h"}, h("h2", {id: "diff-h"}, "Desired vs installed"));
  const crumb = h("span", {}, heading.textContent);
  main.append(h("nav", {class: "crumbs", "aria-label": "Breadcrumb"}, h("a", {href: "#/topology"}, "Topology"), " / ", crumb),
              heading, error, summary, ports, flows, groups, meters, diff);

  const portRows = new Map();     // port_no -> {cells, last: {time, rx, tx}}
  const flowRows = new Map();     // "table|priority|match" -> {packets, bytes cells, row}
  let dpid = null;

  const shownPorts = (sw) => {
    const columns = [
      {title: "port", cell: p => p.port},
      {title: "name", cell: p => p.name},
      {title: "state", cell: p => p.up ? "up" : (p.admin_down ? "down (admin)" : "down"), className: "state"},
      {title: "link to", cell: p => p.link ? h("a", {href: `#/switch/${p.link.dpid}`},
                                               `${p.link.switch || dpidShort(p.link.dpid)} port ${p.link.port_no}`) : ""},
      {title: "rx packets", cell: p => count(p.counters?.rx_packets), className: "num rx_packets"},
      {title: "tx packets", cell: p => count(p.counters?.tx_packets), className: "num tx_packets"},
      {title: "rx bytes", cell: p => bytes(p.counters?.rx_bytes), className: "num rx_bytes"},
      {title: "tx bytes", cell: p => bytes(p.counters?.tx_bytes), className: "num tx_bytes"},
      {title: "dropped", cell: p => count((p.counters?.rx_dropped ?? 0) + (p.counters?.tx_dropped ?? 0)), className: "num dropped"},
      {title: "errors", cell: p => count((p.counters?.rx_errors ?? 0) + (p.counters?.tx_errors ?? 0)), className: "num errors"},
      {title: "rx rate", cell: () => "", className: "num rx_rate"},
      {title: "tx rate", cell: () => "", className: "num tx_rate"},
    ];
    const el = table(`Ports of ${sw.name || dpidShort(sw.dpid)}`, columns, sw.ports,
                     {rowAttrs: p => ({dataset: {port: String(p.port_no)}})});
    portRows.clear();
    for (const row of el.querySelectorAll("tr[data-port]")) portRows.set(row.dataset.port, {row, last: null});
    return el;
  };

  const shownFlows = (list) => {
    const columns = [
      {title: "table", cell: f => String(f.table), className: "num"},
      {title: "priority", cell: f => String(f.priority), className: "num"},
      {title: "packets", cell: f => count(f.n_packets), className: "num n_packets"},
      {title: "bytes", cell: f => count(f.n_bytes), className: "num n_bytes"},
      {title: "owner", cell: f => f.owner || ""},
      {title: "flow (ovs-ofctl)", cell: f => h("code", {}, f.text), className: "flow-text"},
    ];
    const el = table(`Flows of ${summary.dataset.name || ""}`.trim(), columns, list,
                     {rowAttrs: f => ({dataset: {key: `${f.table}|${f.priority}|${f.match}`}})});
    flowRows.clear();
    for (const row of el.querySelectorAll("tr[data-key]")) {
      flowRows.set(row.dataset.key, {row, packets: row.querySelector(".n_packets"), bytes: row.querySelector(".n_bytes")});
    }
    applyFilter();
    return el;
  };

  const applyFilter = () => {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const {row} of flowRows.values()) {
      const text = row.textContent.toLowerCase();
      const on = words.every(w => text.includes(w));
      row.hidden = !on;
      shown += on ? 1 : 0;
    }
    flowCount.textContent = `${shown} of ${flowRows.size} flows shown`;
  };
  filter.addEventListener("input", debounce(applyFilter, 150));

  const load = async () => {
    try {
      const [{switch: sw}, fl, gr, me, df] = await Promise.all([
        get(`/sdn/switches/${encodeURIComponent(ident)}`), get(`/sdn/switches/${encodeURIComponent(ident)}/flows`),
        get(`/sdn/switches/${encodeURIComponent(ident)}/groups`), get(`/sdn/switches/${encodeURIComponent(ident)}/meters`),
        get(`/sdn/switches/${encodeURIComponent(ident)}/diff`)]);
      error.textContent = "";
      dpid = sw.dpid;
      const name = sw.name || dpidShort(sw.dpid);
      heading.textContent = `Switch ${name}`;
      crumb.textContent = heading.textContent;
      document.title = `Switch ${name} - kumoflow`;
      summary.dataset.name = name;
      summary.replaceChildren(...[
        ["datapath", dpidShort(sw.dpid)], ["maker", sw.description ? `${sw.description.manufacturer}, ${sw.description.software}` : "?"],
        ["connected from", sw.peer], ["up for", `${Math.round(sw.uptime)} s`], ["tables", sw.n_tables ?? "?"],
        ["installed", sw.installed ? `${sw.installed.flows} flows, ${sw.installed.groups} groups, ${sw.installed.meters} meters` : "not read yet"],
        ["still to change", sw.differences ?? "?"],
      ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
      ports.replaceChildren(ports.firstChild, shownPorts(sw));
      flowTable.replaceChildren(shownFlows(fl.flows));
      groups.replaceChildren(groups.firstChild, gr.groups.length
        ? h("pre", {class: "ofctl", tabindex: "0"}, gr.groups.map(g => `${g.text}${g.owner ? "   # " + g.owner : ""}`).join("\n"))
        : h("p", {}, "No groups."));
      meters.replaceChildren(meters.firstChild, me.meters.length
        ? h("pre", {class: "ofctl", tabindex: "0"}, me.meters.map(m => m.text).join("\n"))
        : h("p", {}, "No meters."));
      diff.replaceChildren(diff.firstChild, shownDiff(df));
    } catch (err) {
      error.textContent = err.shown || String(err);
    }
  };

  const counters = (data) => {
    const mine = dpid && data.switches[dpid];
    if (!mine) return;
    for (const [port, c] of Object.entries(mine)) {
      const entry = portRows.get(port);
      if (!entry) continue;
      const cells = (cls) => entry.row.querySelector(`.${cls}`);
      set(cells("rx_packets"), count(c[0]));
      set(cells("tx_packets"), count(c[1]));
      set(cells("rx_bytes"), bytes(c[2]));
      set(cells("tx_bytes"), bytes(c[3]));
      set(cells("dropped"), count(c[4] + c[5]));
      set(cells("errors"), count(c[6] + c[7]));
      if (entry.last && data.time > entry.last.time) {
        const dt = data.time - entry.last.time;
        set(cells("rx_rate"), rate(Math.max(0, c[2] - entry.last.rx) * 8 / dt));
        set(cells("tx_rate"), rate(Math.max(0, c[3] - entry.last.tx) * 8 / dt));
      }
      entry.last = {time: data.time, rx: c[2], tx: c[3]};
    }
  };

  const flowCounters = (data) => {
    if (data.dpid !== dpid) return;
    let unknown = 0;
    for (const [tableId, priority, match, packets, octets] of data.flows) {
      const entry = flowRows.get(`${tableId}|${priority}|${match}`);
      if (!entry) { unknown++; continue; }
      set(entry.packets, count(packets));
      set(entry.bytes, count(octets));
    }
    if (unknown || data.flows.length !== flowRows.size) reloadSoon();   // flows came or went
  };

  const reloadSoon = soon(load, 1500);
  const stop = live.onEvent((name, data) => {
    if (name === "counters") counters(data);
    else if (name === "flows") flowCounters(data);
    else if (name === "resync" || (name === "port" && data.dpid === dpid)) reloadSoon();
  });
  load();
  return () => { stop(); reloadSoon.cancel(); };
}

function set(cell, text) {
  if (!cell || cell.textContent === text) return;
  cell.textContent = text;
  cell.classList.remove("bump");
  void cell.offsetWidth;        // restart the highlight
  cell.classList.add("bump");
}

function shownDiff(df) {
  if (!df.ready) return h("p", {}, "The switch has not been read yet.");
  if (df.in_sync) return h("p", {class: "ok"}, "In sync: the switch holds what the controller wants.");
  const lines = [
    ...df.add.map(e => h("li", {class: "add"}, h("span", {class: "tag"}, "add "), h("code", {}, e.text))),
    ...df.change.map(c => h("li", {class: "change"}, h("span", {class: "tag"}, "change "), h("code", {}, c.have.text),
                            h("br"), h("span", {class: "tag"}, "    to "), h("code", {}, c.want.text))),
    ...df.delete.map(e => h("li", {class: "delete"}, h("span", {class: "tag"}, "delete "), h("code", {}, e.text))),
  ];
  return h("div", {},
    h("p", {}, `${df.add.length} to add, ${df.change.length} to change, ${df.delete.length} to delete`
               + (df.settled ? "." : " (settling: only adds are sent for now).")),
    h("ul", {class: "diff"}, lines));
}
