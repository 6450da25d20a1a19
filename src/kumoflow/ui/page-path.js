// The path a packet would take from one host to another (GET /sdn/path), highlighted on the map
// and listed hop by hop.

import {get} from "./api.js";
import * as live from "./live.js";
import {draw, legend, linkKey, switchName} from "./topology.js";
import {model} from "./state.js";
import {h, table} from "./util.js";

export const title = () => "Path";

export function render(main, _args, query) {
  const heading = h("h1", {tabindex: "-1"}, "Path between two hosts");
  const hostOptions = () => [...model.hosts.values()].sort((a, b) => (a.mac < b.mac ? -1 : 1))
    .map(host => h("option", {value: host.mac}, `${(host.ips || []).join(" ") || "?"} (${host.mac})`));
  const src = h("input", {id: "path-src", name: "src", list: "path-hosts", required: true, value: query.get("src") || "",
                          placeholder: "MAC or IP address"});
  const dst = h("input", {id: "path-dst", name: "dst", list: "path-hosts", required: true, value: query.get("dst") || "",
                          placeholder: "MAC or IP address"});
  const hosts = h("datalist", {id: "path-hosts"});
  const error = h("p", {class: "error form-error", role: "alert"});
  const form = h("form", {class: "inline", id: "path-form", "aria-label": "Path"},
    h("fieldset", {}, h("legend", {}, "From and to (a MAC or IP address)"),
      h("div", {class: "field"}, h("label", {for: "path-src"}, "From"), src),
      h("div", {class: "field"}, h("label", {for: "path-dst"}, "To"), dst),
      h("button", {type: "submit"}, "Show path")), hosts, error);
  const result = h("div", {id: "path-result", "aria-live": "polite"});
  const mapBox = h("div", {class: "map-box", tabindex: "0", role: "region", "aria-label": "Network map with the path"});
  main.append(heading, form, result, legend(), mapBox);
  let shown = null;

  const paint = () => {
    const on = {switches: new Set(), links: new Set(), hosts: new Set()};
    if (shown) {
      shown.hops.forEach((hop, i) => {
        on.switches.add(hop.dpid);
        const next = shown.hops[i + 1];
        if (next) on.links.add(linkKey(hop.dpid, hop.out_port, next.dpid, next.in_port));
      });
      on.hosts.add(shown.src.mac);
      on.hosts.add(shown.dst.mac);
    }
    mapBox.replaceChildren(draw(model, {path: on, onOpen: (dpid) => { location.hash = `#/switch/${dpid}`; }}));
  };

  const find = async () => {
    error.textContent = "";
    try {
      shown = await get(`/sdn/path?${new URLSearchParams({src: src.value.trim(), dst: dst.value.trim()})}`);
      const hops = shown.hops.map((hop, i) => ({...hop, n: i + 1}));
      result.replaceChildren(
        h("p", {}, `${shown.hops.length} switch${shown.hops.length === 1 ? "" : "es"} from ${shown.src.ips[0] || shown.src.mac}`
                   + ` to ${shown.dst.ips[0] || shown.dst.mac}.`
                   + (shown.equal_cost ? " Other paths as short exist: the fabric spreads flows over them, so a given "
                                         + "flow may take one of those." : "")),
        table("Hops", [
          {title: "#", cell: hop => String(hop.n), className: "num"},
          {title: "switch", cell: hop => h("a", {href: `#/switch/${hop.dpid}`}, switchName(model, hop.dpid))},
          {title: "in port", cell: hop => String(hop.in_port), className: "num"},
          {title: "out port", cell: hop => String(hop.out_port), className: "num"},
        ], hops, {rowAttrs: hop => ({dataset: {dpid: hop.dpid}})}));
      history.replaceState(null, "", `#/path?${new URLSearchParams({src: src.value.trim(), dst: dst.value.trim()})}`);
    } catch (err) {
      shown = null;
      result.replaceChildren();
      error.textContent = err.shown || String(err);
    }
    paint();
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); find(); });

  const load = async () => {
    try {
      model.load(await get("/sdn/topology"));
    } catch (err) {
      error.textContent = err.shown || String(err);
    }
    hosts.replaceChildren(...hostOptions());
    if (src.value && dst.value) await find();
    else paint();
  };
  const stop = live.onEvent((name, data) => {
    if (name === "link_up" || name === "link_down" || name === "switch_down" || name === "switch_up") {
      model.apply(name, data);
      if (shown) find(); else paint();
    }
  });
  load();
  return stop;
}
