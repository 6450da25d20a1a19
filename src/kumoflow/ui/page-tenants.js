// Tenants: networks, subnets, ports (with their binding), routers, security groups and their
// rules, load balancers with the health of their members, QoS policies. Forms create and
// delete through the same API; what the API answers to a request it refuses is shown as it is.
// An admin sees every project's; a project token its own (and shared networks).

import {ApiError, del, get, post, put, session} from "./api.js";
import * as live from "./live.js";
import {debounce, h, table} from "./util.js";

export const title = () => "Tenants";

const short = (id) => (id ? String(id).slice(0, 8) : "");

export function render(main) {
  const heading = h("h1", {tabindex: "-1"}, "Tenants");
  const error = h("p", {class: "error", role: "alert"});
  const notice = h("p", {class: "notice", role: "status", "aria-live": "polite"});
  const body = h("div", {class: "tenants"});
  main.append(heading, h("p", {class: "help"}, session.admin ? "Every project's resources (admin token)."
                                                               : "Your project's resources."), error, notice, body);
  let data = null;
  let busy = 0;
  let shownKey = "";
  const formErrors = new Map();    // form id -> the API's last error there (kept when drawn again)

  const load = async () => {
    try {
      const [networks, subnets, ports, routers, groups, policies, lbs, pools] = await Promise.all([
        get("/v2.0/networks"), get("/v2.0/subnets"), get("/v2.0/ports"), get("/v2.0/routers"),
        get("/v2.0/security-groups"), get("/v2.0/qos/policies"), get("/v2/lbaas/loadbalancers"),
        get("/v2/lbaas/pools")]);
      const statuses = await Promise.all(lbs.loadbalancers.map(lb =>
        get(`/v2/lbaas/loadbalancers/${lb.id}/status`).then(s => s.statuses.loadbalancer, () => null)));
      data = {networks: networks.networks, subnets: subnets.subnets, ports: ports.ports, routers: routers.routers,
              groups: groups.security_groups, policies: policies.policies, lbs: lbs.loadbalancers,
              pools: pools.pools, statuses};
      error.textContent = "";
      const key = JSON.stringify(data);
      if (!busy && key !== shownKey) {       // drawn again only when something changed
        shownKey = key;
        show();
      }
    } catch (err) {
      error.textContent = err.shown || String(err);
    }
  };

  // A form's submit: run `action`, show the API's error under the form (verbatim), or reload.
  const act = async (form, action, done) => {
    const out = form.querySelector(".form-error");
    out.textContent = "";
    formErrors.delete(form.id);
    busy++;
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      await action();
      notice.textContent = done;
      for (const input of form.querySelectorAll("input")) input.value = input.defaultValue;
      busy--;
      await load();
      return true;
    } catch (err) {
      busy--;
      out.textContent = err instanceof ApiError ? err.shown : String(err);
      formErrors.set(form.id, out.textContent);
      return false;
    } finally {
      if (button) button.disabled = false;
    }
  };

  const remove = (what, path) => async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      await del(path);
      notice.textContent = `Deleted ${what}.`;
      await load();
    } catch (err) {
      button.disabled = false;
      error.textContent = err instanceof ApiError ? err.shown : String(err);
    }
  };

  const netName = (id) => {
    const n = data.networks.find(x => x.id === id);
    return n ? (n.name || short(n.id)) : short(id);
  };

  // Drawn again after every change: what is typed in the forms and where the focus was are kept.
  const show = () => {
    const focused = document.activeElement && document.activeElement.id;
    const typed = new Map([...body.querySelectorAll("input[id], select[id]")].map(el => [el.id, el.value]));
    body.replaceChildren(networksSection(), subnetsSection(), portsSection(), routersSection(), groupsSection(),
                         lbSection(), qosSection());
    for (const [id, v] of typed) {
      const el = document.getElementById(id);
      if (el && (el.tagName !== "SELECT" || [...el.options].some(o => o.value === v))) el.value = v;
    }
    if (focused) document.getElementById(focused)?.focus();
  };

  const field = (id, label, input) => h("div", {class: "field"}, h("label", {for: id}, label), input);
  const select = (id, options, attrs = {}) => h("select", {id, name: id, ...attrs},
    options.map(([value, text]) => h("option", {value}, text)));
  const formOf = (id, legend, fields, submit, onSubmit) => {
    const form = h("form", {class: "inline", id, "aria-label": legend},
      h("fieldset", {}, h("legend", {}, legend), fields, h("button", {type: "submit"}, submit)),
      h("p", {class: "error form-error", role: "alert"}, formErrors.get(id) || ""));
    form.addEventListener("submit", (event) => { event.preventDefault(); onSubmit(form); });
    return form;
  };
  const value = (form, name) => form.querySelector(`[name="${name}"]`).value.trim();
  const section = (id, title, ...content) => h("section", {"aria-labelledby": id}, h("h2", {id}, title), content);
  const networkOptions = () => data.networks.map(n => [n.id, `${n.name || short(n.id)} (${short(n.id)})`]);

  const networksSection = () => section("networks-h", "Networks",
    table("Networks", [
      {title: "name", cell: n => n.name || "", className: "name"},
      {title: "id", cell: n => h("code", {title: n.id}, short(n.id))},
      ...(session.admin ? [{title: "project", cell: n => n.project_id}] : []),
      {title: "type", cell: n => `${n["provider:network_type"] ?? ""} ${n["provider:segmentation_id"] ?? ""}`.trim()},
      {title: "subnets", cell: n => data.subnets.filter(s => s.network_id === n.id).map(s => s.cidr).join(", ")},
      {title: "status", cell: n => n.status},
      {title: "", cell: n => h("button", {type: "button", class: "danger", "aria-label": `Delete network ${n.name || n.id}`,
                                          onclick: remove(`network ${n.name || n.id}`, `/v2.0/networks/${n.id}`)}, "Delete")},
    ], data.networks, {rowAttrs: n => ({dataset: {id: n.id, name: n.name || ""}})}),
    formOf("create-network", "Create a network", [
      field("network-name", "Name", h("input", {id: "network-name", name: "network-name", required: true})),
      field("network-type", "Type", select("network-type", [["", "default (vxlan)"], ["vxlan", "vxlan"], ["nvgre", "nvgre"],
                                                            ["flat", "flat"], ["vlan", "vlan"]])),
    ], "Create network", (form) => {
      const body = {name: value(form, "network-name")};
      const type = value(form, "network-type");
      if (type) body["provider:network_type"] = type;
      act(form, () => post("/v2.0/networks", {network: body}), `Created network ${body.name}.`);
    }));

  const subnetsSection = () => section("subnets-h", "Subnets",
    table("Subnets", [
      {title: "name", cell: s => s.name || ""},
      {title: "cidr", cell: s => s.cidr},
      {title: "network", cell: s => netName(s.network_id)},
      {title: "gateway", cell: s => s.gateway_ip || "none"},
      {title: "DHCP", cell: s => s.enable_dhcp ? "on" : "off"},
      {title: "", cell: s => h("button", {type: "button", class: "danger", "aria-label": `Delete subnet ${s.cidr}`,
                                          onclick: remove(`subnet ${s.cidr}`, `/v2.0/subnets/${s.id}`)}, "Delete")},
    ], data.subnets),
    formOf("create-subnet", "Add a subnet", [
      field("subnet-network", "Network", select("subnet-network", networkOptions(), {required: true})),
      field("subnet-cidr", "CIDR", h("input", {id: "subnet-cidr", name: "subnet-cidr", required: true,
                                               placeholder: "10.0.0.0/24"})),
      field("subnet-name", "Name", h("input", {id: "subnet-name", name: "subnet-name"})),
    ], "Add subnet", (form) => {
      const body = {network_id: value(form, "subnet-network"), cidr: value(form, "subnet-cidr"),
                    name: value(form, "subnet-name")};
      act(form, () => post("/v2.0/subnets", {subnet: body}), `Added subnet ${body.cidr}.`);
    }));

  const portsSection = () => section("ports-h", "Ports",
    table("Ports", [
      {title: "name", cell: p => p.name || ""},
      {title: "id", cell: p => h("code", {title: p.id}, short(p.id))},
      {title: "network", cell: p => netName(p.network_id)},
      {title: "addresses", cell: p => [p.mac_address, ...(p.fixed_ips || []).map(ip => ip.ip_address)].join(" ")},
      {title: "owner", cell: p => p.device_owner || ""},
      {title: "status", cell: p => p.status},
      {title: "bound to", cell: p => p["binding:host_id"]
        ? `${p["binding:host_id"]} ${JSON.stringify(p["binding:profile"] || {})}` : "", className: "binding"},
      {title: "", cell: p => h("span", {class: "actions"},
        p["binding:host_id"] && session.admin ? h("button", {type: "button", "aria-label": `Unbind port ${p.name || p.id}`,
          onclick: async (event) => {
            event.currentTarget.disabled = true;
            try {
              await put(`/v2.0/ports/${p.id}`, {port: {"binding:host_id": "", "binding:profile": {}}});
              notice.textContent = `Unbound port ${p.name || p.id}.`;
            } catch (err) { error.textContent = err.shown || String(err); }
            load();
          }}, "Unbind") : null,
        h("button", {type: "button", class: "danger", "aria-label": `Delete port ${p.name || p.id}`,
                     onclick: remove(`port ${p.name || p.id}`, `/v2.0/ports/${p.id}`)}, "Delete"))},
    ], data.ports, {rowAttrs: p => ({dataset: {id: p.id, name: p.name || ""}})}),
    formOf("create-port", "Create a port", [
      field("port-network", "Network", select("port-network", networkOptions(), {required: true})),
      field("port-name", "Name", h("input", {id: "port-name", name: "port-name"})),
    ], "Create port", (form) => {
      const body = {network_id: value(form, "port-network"), name: value(form, "port-name")};
      act(form, () => post("/v2.0/ports", {port: body}), `Created port ${body.name}.`);
    }),
    session.admin ? formOf("bind-port", "Bind a port to a switch port", [
      field("bind-port-id", "Port", select("bind-port-id", data.ports.map(p => [p.id, `${p.name || short(p.id)} (${short(p.id)})`]),
                                           {required: true})),
      field("bind-host", "Switch (binding:host_id)", h("input", {id: "bind-host", name: "bind-host", required: true,
                                                                 placeholder: "name or datapath id"})),
      field("bind-where", "Switch port number or interface name", h("input", {id: "bind-where", name: "bind-where",
                                                                              required: true, placeholder: "3 or vm1-eth0"})),
    ], "Bind port", (form) => {
      const where = value(form, "bind-where");
      const profile = /^\d+$/.test(where) ? {port_no: Number(where)} : {interface: where};
      const body = {"binding:host_id": value(form, "bind-host"), "binding:profile": profile};
      act(form, () => put(`/v2.0/ports/${value(form, "bind-port-id")}`, {port: body}), "Bound the port.");
    }) : null);

  const routersSection = () => section("routers-h", "Routers",
    table("Routers", [
      {title: "name", cell: r => r.name || ""},
      {title: "id", cell: r => h("code", {title: r.id}, short(r.id))},
      {title: "status", cell: r => r.status},
      {title: "external gateway", cell: r => r.external_gateway_info ? netName(r.external_gateway_info.network_id) : ""},
      {title: "interfaces", cell: r => data.ports.filter(p => p.device_id === r.id && p.device_owner === "network:router_interface")
        .map(p => (p.fixed_ips || []).map(ip => ip.ip_address).join(" ")).join(", ")},
      {title: "routes", cell: r => (r.routes || []).map(rt => `${rt.destination} via ${rt.nexthop}`).join(", ")},
    ], data.routers));

  const ruleText = (r) => {
    const ports = r.port_range_min == null ? "" : r.port_range_min === r.port_range_max ? ` ${r.port_range_min}`
      : ` ${r.port_range_min}-${r.port_range_max ?? ""}`;
    const remote = r.remote_ip_prefix || (r.remote_group_id ? `group ${short(r.remote_group_id)}` : "any");
    return `${r.direction} ${r.ethertype} ${r.protocol || "any"}${ports} ${r.direction === "ingress" ? "from" : "to"} ${remote}`;
  };

  const groupsSection = () => section("groups-h", "Security groups",
    data.groups.map(g => h("div", {class: "group", dataset: {id: g.id}},
      table(`Security group ${g.name || short(g.id)}${session.admin ? " (" + g.project_id + ")" : ""}`, [
        {title: "rule", cell: r => ruleText(r), className: "rule"},
        {title: "id", cell: r => h("code", {title: r.id}, short(r.id))},
        {title: "", cell: r => h("button", {type: "button", class: "danger", "aria-label": `Delete rule ${ruleText(r)}`,
                                            onclick: remove(`rule ${ruleText(r)}`, `/v2.0/security-group-rules/${r.id}`)}, "Delete")},
      ], g.security_group_rules || [], {rowAttrs: r => ({dataset: {id: r.id}})}))),
    formOf("add-rule", "Add a security group rule", [
      field("rule-group", "Group", select("rule-group", data.groups.map(g => [g.id, `${g.name || short(g.id)} (${short(g.id)})`]),
                                          {required: true})),
      field("rule-direction", "Direction", select("rule-direction", [["ingress", "ingress"], ["egress", "egress"]])),
      field("rule-ethertype", "Ethertype", select("rule-ethertype", [["IPv4", "IPv4"], ["IPv6", "IPv6"]])),
      field("rule-protocol", "Protocol", h("input", {id: "rule-protocol", name: "rule-protocol", placeholder: "tcp, udp, icmp, 6 or empty"})),
      field("rule-min", "Port from", h("input", {id: "rule-min", name: "rule-min", inputmode: "numeric"})),
      field("rule-max", "Port to", h("input", {id: "rule-max", name: "rule-max", inputmode: "numeric"})),
      field("rule-remote", "Remote prefix", h("input", {id: "rule-remote", name: "rule-remote", placeholder: "0.0.0.0/0"})),
    ], "Add rule", (form) => {
      const rule = {security_group_id: value(form, "rule-group"), direction: value(form, "rule-direction"),
                    ethertype: value(form, "rule-ethertype")};
      const protocol = value(form, "rule-protocol");
      if (protocol) rule.protocol = /^\d+$/.test(protocol) ? Number(protocol) : protocol;
      for (const [name, key] of [["rule-min", "port_range_min"], ["rule-max", "port_range_max"]]) {
        const v = value(form, name);
        if (v) rule[key] = /^\d+$/.test(v) ? Number(v) : v;
      }
      const remote = value(form, "rule-remote");
      if (remote) rule.remote_ip_prefix = remote;
      act(form, () => post("/v2.0/security-group-rules", {security_group_rule: rule}), "Added the rule.");
    }));

  const lbSection = () => {
    const blocks = data.lbs.map((lb, i) => {
      const status = data.statuses[i];
      const members = [];
      for (const listener of status?.listeners || []) {
        for (const pool of listener.pools || []) {
          for (const m of pool.members || []) members.push({...m, pool, listener});
        }
      }
      // pools not reached through a listener have their members listed from the pools list
      const shownPools = new Set(members.map(m => m.pool.id));
      for (const pool of data.pools.filter(p => (p.loadbalancers || []).some(x => x.id === lb.id) && !shownPools.has(p.id))) {
        for (const m of pool.members || []) members.push({id: m.id, address: "", protocol_port: "", operating_status: "?", pool});
      }
      return h("div", {class: "lb", dataset: {id: lb.id}},
        h("h3", {}, `${lb.name || short(lb.id)}: VIP ${lb.vip_address} `,
          h("span", {class: `health ${String(lb.operating_status).toLowerCase()}`}, lb.operating_status)),
        table(`Members of load balancer ${lb.name || short(lb.id)}`, [
          {title: "pool", cell: m => m.pool.name || short(m.pool.id)},
          {title: "member", cell: m => m.address ? `${m.address}:${m.protocol_port}` : short(m.id)},
          {title: "health", cell: m => h("span", {class: `health ${String(m.operating_status).toLowerCase()}`},
                                         m.operating_status), className: "health-cell"},
          {title: "", cell: m => h("button", {type: "button", class: "danger", "aria-label": `Delete member ${m.address || m.id}`,
                                              onclick: remove(`member ${m.address || m.id}`,
                                                              `/v2/lbaas/pools/${m.pool.id}/members/${m.id}`)}, "Delete")},
        ], members, {rowAttrs: m => ({dataset: {id: m.id}})}));
    });
    return section("lbs-h", "Load balancers", blocks.length ? blocks : h("p", {}, "No load balancers."),
      data.pools.length ? formOf("add-member", "Add a load balancer member", [
        field("member-pool", "Pool", select("member-pool", data.pools.map(p => [p.id, `${p.name || short(p.id)} (${p.protocol} ${short(p.id)})`]),
                                            {required: true})),
        field("member-address", "Address", h("input", {id: "member-address", name: "member-address", required: true})),
        field("member-port", "Port", h("input", {id: "member-port", name: "member-port", required: true, inputmode: "numeric"})),
        field("member-weight", "Weight", h("input", {id: "member-weight", name: "member-weight", value: "1", inputmode: "numeric"})),
      ], "Add member", (form) => {
        const member = {address: value(form, "member-address"), protocol_port: Number(value(form, "member-port")),
                        weight: Number(value(form, "member-weight") || 1)};
        act(form, () => post(`/v2/lbaas/pools/${value(form, "member-pool")}/members`, {member}),
            `Added member ${member.address}.`);
      }) : null);
  };

  const qosSection = () => section("qos-h", "QoS policies",
    table("QoS policies", [
      {title: "name", cell: p => p.name || ""},
      {title: "id", cell: p => h("code", {title: p.id}, short(p.id))},
      {title: "shared", cell: p => p.shared ? "yes" : "no"},
      {title: "rules", cell: p => (p.rules || []).map(r => r.type === "bandwidth_limit"
        ? `limit ${r.max_kbps} kbit/s ${r.direction}` : r.type === "dscp_marking" ? `DSCP ${r.dscp_mark}`
        : `minimum ${r.min_kbps} kbit/s ${r.direction}`).join(", ")},
    ], data.policies));

  const reload = debounce(load, 400);
  const stop = live.onEvent((name) => {
    if (name === "record" || name === "resync") reload();
  });
  load();
  return () => { stop(); reload.cancel(); };
}
