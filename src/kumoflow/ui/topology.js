// The map of the network: a layered layout of the switches (the fabric's tiers), hosts below
// their switches, links coloured by state and drawn thicker with load, tunnels dashed.
//
// Layout: a switch's tier is its distance in links from the nearest switch that has hosts
// (edge switches are tier 0, a fat-tree's aggregation tier 1, its core tier 2); tiers are
// rows, the highest at the top. Within a row switches are ordered by the mean position of
// their neighbours in the row above, then below (a few sweeps of the barycentre heuristic),
// which keeps a fat-tree's pods together and its links short. Positions are kept for the
// session: a link that goes down, a switch that disconnects, never moves anything; only a
// switch or host never seen before makes a new layout.

import {h, s, dpidShort, rate, switchLabel} from "./util.js";

const ROW = 120;
const MARGIN = 50;
const MIN_GAP = 84;

export function linkKey(a, aPort, b, bPort) {
  const x = `${a}:${aPort}`;
  const y = `${b}:${bPort}`;
  return x < y ? `${x}-${y}` : `${y}-${x}`;
}

// Everything the map knows, kept between pages and updated by events.
export class Model {
  constructor() {
    this.switches = new Map();   // dpid -> {dpid, name, kind, endpoint, ports, up}
    this.links = new Map();      // key -> {key, a, b, up, load}
    this.hosts = new Map();      // mac -> {mac, ips, dpid, port_no}
    this.tunnels = [];
    this.positions = new Map();  // "s:dpid" | "h:mac" -> {x, y}
    this.layoutKey = "";
    this.width = 800;
    this.height = 400;
    this.counters = new Map();   // "dpid:port" -> {time, bytes}
  }

  load(topo) {
    const seen = new Set();
    for (const sw of topo.switches) {
      this.switches.set(sw.dpid, {...sw, up: true});
      seen.add(sw.dpid);
    }
    for (const sw of this.switches.values()) if (!seen.has(sw.dpid)) sw.up = false;
    const upLinks = new Set();
    for (const l of topo.links) {
      const key = linkKey(l.a.dpid, l.a.port_no, l.b.dpid, l.b.port_no);
      upLinks.add(key);
      const old = this.links.get(key);
      this.links.set(key, {key, a: l.a, b: l.b, up: true, load: old ? old.load : 0});
    }
    for (const link of this.links.values()) if (!upLinks.has(link.key)) link.up = false;
    this.hosts = new Map(topo.hosts.map(host => [host.mac, host]));
    this.tunnels = topo.tunnels;
    this.layout();
  }

  // An event from the stream; true when the map should be drawn again.
  apply(name, data) {
    if (name === "link_up" || name === "link_down") {
      const key = linkKey(data.a.dpid, data.a.port_no, data.b.dpid, data.b.port_no);
      const link = this.links.get(key) || {key, a: data.a, b: data.b, load: 0};
      link.up = name === "link_up";
      this.links.set(key, link);
      this.layout();
      return true;
    }
    if (name === "switch_up" || name === "switch_down") {
      const sw = this.switches.get(data.dpid);
      if (sw) sw.up = name === "switch_up";
      if (name === "switch_down") {
        for (const link of this.links.values()) {
          if (link.a.dpid === data.dpid || link.b.dpid === data.dpid) link.up = false;
        }
      }
      return true;
    }
    if (name === "host_found" || name === "host_moved") {
      this.hosts.set(data.mac, {...this.hosts.get(data.mac), ...data});
      if (name === "host_moved") this.layoutKey = "";     // its place in the row follows its switch
      this.layout();
      return true;
    }
    if (name === "host_lost") return this.hosts.delete(data.mac);
    if (name === "counters") return this.rates(data);
    return false;
  }

  // Load on each link: bytes a second through its `a` end (both directions), from two snapshots.
  rates(data) {
    const now = data.time;
    let changed = false;
    const through = new Map();
    for (const [dpid, ports] of Object.entries(data.switches)) {
      for (const [port, c] of Object.entries(ports)) {
        const key = `${dpid}:${port}`;
        const bytesNow = c[2] + c[3];
        const before = this.counters.get(key);
        this.counters.set(key, {time: now, bytes: bytesNow});
        if (before && now > before.time) through.set(key, Math.max(0, (bytesNow - before.bytes) / (now - before.time)));
      }
    }
    for (const link of this.links.values()) {
      const load = through.get(`${link.a.dpid}:${link.a.port_no}`) ?? through.get(`${link.b.dpid}:${link.b.port_no}`);
      if (load !== undefined && load !== link.load) {
        link.load = load;
        changed = true;
      }
    }
    return changed;
  }

  layout() {
    // what the layout depends on: which switches, hosts and links exist (not their state)
    const key = [[...this.switches.keys()], [...this.hosts.keys()], [...this.links.keys()]]
      .map(keys => keys.sort().join(",")).join("|");
    if (key === this.layoutKey) return;
    this.layoutKey = key;
    const dpids = [...this.switches.keys()].sort();
    const adjacent = new Map(dpids.map(d => [d, new Set()]));
    for (const link of this.links.values()) {
      if (adjacent.has(link.a.dpid) && adjacent.has(link.b.dpid) && link.a.dpid !== link.b.dpid) {
        adjacent.get(link.a.dpid).add(link.b.dpid);
        adjacent.get(link.b.dpid).add(link.a.dpid);
      }
    }
    // tiers: distance from the nearest switch with hosts
    const tier = new Map();
    const queue = [];
    for (const host of this.hosts.values()) {
      if (adjacent.has(host.dpid) && !tier.has(host.dpid)) { tier.set(host.dpid, 0); queue.push(host.dpid); }
    }
    if (!queue.length && dpids.length) {
      // no hosts: start from the switches with fewest links
      const fewest = Math.min(...dpids.map(d => adjacent.get(d).size));
      for (const d of dpids) if (adjacent.get(d).size === fewest) { tier.set(d, 0); queue.push(d); }
    }
    while (queue.length) {
      const here = queue.shift();
      for (const peer of adjacent.get(here)) {
        if (!tier.has(peer)) { tier.set(peer, tier.get(here) + 1); queue.push(peer); }
      }
    }
    for (const d of dpids) if (!tier.has(d)) tier.set(d, 0);
    const top = Math.max(0, ...tier.values());
    const rows = [];
    for (let t = 0; t <= top; t++) rows.push(dpids.filter(d => tier.get(d) === t));
    // order within rows: barycentre sweeps, up then down
    const order = new Map();
    const number = (row) => row.forEach((d, i) => order.set(d, i / Math.max(1, row.length - 1)));
    rows.forEach(number);
    const sweep = (row, towards) => {
      const score = new Map(row.map(d => {
        const near = [...adjacent.get(d)].filter(p => towards.includes(p)).map(p => order.get(p));
        return [d, near.length ? near.reduce((a, b) => a + b, 0) / near.length : order.get(d)];
      }));
      row.sort((x, y) => score.get(x) - score.get(y) || (x < y ? -1 : 1));
      number(row);
    };
    // down then up, ending upwards: the edge row (where the hosts hang) leads, so a fat-tree's
    // pods stay together under their aggregation switches
    for (let pass = 0; pass < 4; pass++) {
      for (let t = top - 1; t >= 0; t--) sweep(rows[t], rows[t + 1]);
      for (let t = 1; t <= top; t++) sweep(rows[t], rows[t - 1]);
    }
    const hosts = [...this.hosts.values()].filter(host => adjacent.has(host.dpid));
    const widest = Math.max(1, ...rows.map(r => r.length), hosts.length);
    this.width = Math.max(960, widest * MIN_GAP + 2 * MARGIN);
    this.height = 2 * MARGIN + top * ROW + (hosts.length ? ROW : 20);
    const spread = (i, n) => MARGIN + (i + 0.5) * (this.width - 2 * MARGIN) / n;
    this.positions.clear();
    rows.forEach((row, t) => row.forEach((d, i) => {
      this.positions.set(`s:${d}`, {x: spread(i, row.length), y: MARGIN + (top - t) * ROW});
    }));
    hosts.sort((a, b) => this.positions.get(`s:${a.dpid}`).x - this.positions.get(`s:${b.dpid}`).x
      || a.port_no - b.port_no);
    hosts.forEach((host, i) => this.positions.set(`h:${host.mac}`, {x: spread(i, hosts.length),
                                                                     y: MARGIN + (top + 1) * ROW - 20}));
  }
}

// its IPv4 address if it has one (short), else its first address, else its MAC
export function hostLabel(host) {
  const ips = host.ips || [];
  return ips.find(ip => !ip.includes(":")) || ips[0] || host.mac;
}

// The SVG of the map. `opts.onOpen(dpid)`: a switch was chosen (click, Enter or Space);
// `opts.path`: {switches: Set(dpid), links: Set(key), hosts: Set(mac)} to highlight.
export function draw(model, opts = {}) {
  const path = opts.path || {switches: new Set(), links: new Set(), hosts: new Set()};
  const svg = s("svg", {viewBox: `0 0 ${model.width} ${model.height}`, class: "map", role: "group",
                        "aria-label": `Network map: ${model.switches.size} switches, ${model.links.size} links, `
                                      + `${model.hosts.size} hosts`});
  const linkLayer = s("g", {class: "links"});
  const tunnelLayer = s("g", {class: "tunnels"});
  const hostLayer = s("g", {class: "hosts"});
  const switchLayer = s("g", {class: "switches"});
  svg.append(tunnelLayer, linkLayer, hostLayer, switchLayer);

  // links: parallel links between the same two switches are bowed apart
  const pairs = new Map();
  for (const link of model.links.values()) {
    const pair = [link.a.dpid, link.b.dpid].sort().join("|");
    if (!pairs.has(pair)) pairs.set(pair, []);
    pairs.get(pair).push(link);
  }
  for (const group of pairs.values()) {
    group.sort((x, y) => (x.key < y.key ? -1 : 1));
    group.forEach((link, i) => {
      const a = model.positions.get(`s:${link.a.dpid}`);
      const b = model.positions.get(`s:${link.b.dpid}`);
      if (!a || !b) return;
      const bend = (i - (group.length - 1) / 2) * 24;
      const d = curve(a, b, bend);
      const load = link.load * 8;
      const cls = ["link", link.up ? "up" : "down", path.links.has(link.key) ? "on-path" : ""].join(" ").trim();
      const el = s("path", {d, class: cls, "stroke-width": width(link), dataset: {key: link.key, a: link.a.dpid,
                                                                                  b: link.b.dpid}},
        s("title", {text: `${endName(model, link.a)} - ${endName(model, link.b)}: ${link.up ? "up" : "DOWN"}`
                          + (link.up ? `, ${rate(load)}` : "")}));
      linkLayer.append(el);
    });
  }

  // tunnels between switches (dashed), drawn once per pair
  const drawn = new Set();
  for (const t of model.tunnels) {
    if (!t.remote_dpid) continue;
    const pair = [t.dpid, t.remote_dpid].sort().join("|") + t.kind;
    if (drawn.has(pair)) continue;
    drawn.add(pair);
    const a = model.positions.get(`s:${t.dpid}`);
    const b = model.positions.get(`s:${t.remote_dpid}`);
    if (!a || !b) continue;
    tunnelLayer.append(s("path", {d: curve(a, b, 40), class: `tunnel ${t.kind}`, dataset: {a: t.dpid, b: t.remote_dpid}},
      s("title", {text: `${t.kind} tunnel ${switchName(model, t.dpid)} - ${switchName(model, t.remote_dpid)}`})));
  }

  for (const host of model.hosts.values()) {
    const p = model.positions.get(`h:${host.mac}`);
    const at = model.positions.get(`s:${host.dpid}`);
    if (!p || !at) continue;
    const on = path.hosts.has(host.mac);
    hostLayer.append(s("line", {x1: p.x, y1: p.y, x2: at.x, y2: at.y, class: `host-link${on ? " on-path" : ""}`}));
    hostLayer.append(s("g", {class: `host${on ? " on-path" : ""}`, transform: `translate(${p.x},${p.y})`,
                             dataset: {mac: host.mac}},
      s("title", {text: `host ${host.mac} ${(host.ips || []).join(" ")} on ${switchName(model, host.dpid)} port ${host.port_no}`}),
      s("rect", {x: -7, y: -7, width: 14, height: 14, rx: 3}),
      s("text", {y: 22, class: "label"}, hostLabel(host))));
  }

  for (const sw of model.switches.values()) {
    const p = model.positions.get(`s:${sw.dpid}`);
    if (!p) continue;
    const name = switchLabel(sw);
    const kind = sw.kind === "ovs" ? "Open vSwitch" : sw.kind === "kumoflow" ? "kumoflow switch" : (sw.kind || "switch");
    const cls = ["switch", sw.kind || "other", sw.up ? "up" : "down", path.switches.has(sw.dpid) ? "on-path" : ""];
    const node = s("g", {class: cls.join(" ").trim(), transform: `translate(${p.x},${p.y})`, tabindex: "0",
                         role: "link", "aria-label": `${name}, ${kind}, datapath ${dpidShort(sw.dpid)}${sw.up ? "" : ", down"}`,
                         dataset: {dpid: sw.dpid, name}},
      s("title", {text: `${name} (${kind}, ${dpidShort(sw.dpid)})${sw.endpoint ? ", tunnel endpoint " + sw.endpoint : ""}`}),
      sw.kind === "ovs" ? s("rect", {x: -20, y: -14, width: 40, height: 28, rx: 4}) : s("circle", {r: 17}),
      s("text", {y: 4, class: "kind"}, sw.kind === "ovs" ? "ovs" : sw.kind === "kumoflow" ? "kf" : "?"),
      s("text", {y: 32, class: "label"}, name));
    if (opts.onOpen) {
      node.addEventListener("click", () => opts.onOpen(sw.dpid));
      node.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); opts.onOpen(sw.dpid); }
      });
    }
    switchLayer.append(node);
  }
  return svg;
}

// Update what events change without drawing again: link state and load, switch state.
export function refresh(svg, model) {
  for (const el of svg.querySelectorAll("path.link")) {
    const link = model.links.get(el.dataset.key);
    if (!link) continue;
    el.classList.toggle("up", link.up);
    el.classList.toggle("down", !link.up);
    el.setAttribute("stroke-width", width(link));
    const title = el.querySelector("title");
    if (title) title.textContent = `${endName(model, link.a)} - ${endName(model, link.b)}: `
                                   + (link.up ? `up, ${rate(link.load * 8)}` : "DOWN");
  }
  for (const el of svg.querySelectorAll("g.switch")) {
    const sw = model.switches.get(el.dataset.dpid);
    if (!sw) continue;
    el.classList.toggle("up", sw.up);
    el.classList.toggle("down", !sw.up);
  }
}

// true when a link or switch is in the model but not in the drawing (draw again)
export function missing(svg, model) {
  const links = svg.querySelectorAll("path.link").length;
  const switches = svg.querySelectorAll("g.switch").length;
  const hosts = svg.querySelectorAll("g.host").length;
  return links !== model.links.size || switches !== model.switches.size || hosts !== model.hosts.size;
}

function width(link) {
  if (!link.up) return 3;
  const bits = link.load * 8;
  return bits <= 0 ? 2 : Math.min(10, 2 + Math.log10(1 + bits / 1000) * 1.6).toFixed(1);
}

function curve(a, b, bend) {
  if (!bend) return `M${a.x},${a.y} L${b.x},${b.y}`;
  const mx = (a.x + b.x) / 2;
  const my = (a.y + b.y) / 2;
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  return `M${a.x},${a.y} Q${mx - (dy / len) * bend * 2},${my + (dx / len) * bend * 2} ${b.x},${b.y}`;
}

export function switchName(model, dpid) {
  const sw = model.switches.get(dpid);
  return sw ? switchLabel(sw) : dpidShort(dpid);
}

function endName(model, end) {
  return `${switchName(model, end.dpid)} port ${end.port_no}`;
}

export function legend() {
  return h("ul", {class: "legend", "aria-label": "Legend"},
    h("li", {}, h("span", {class: "key kf"}), "kumoflow switch"),
    h("li", {}, h("span", {class: "key ovs"}), "Open vSwitch"),
    h("li", {}, h("span", {class: "key host"}), "host"),
    h("li", {}, h("span", {class: "key link-up"}), "link up (thicker: more traffic)"),
    h("li", {}, h("span", {class: "key link-down"}), "link down"),
    h("li", {}, h("span", {class: "key tunnel"}), "tunnel"));
}
