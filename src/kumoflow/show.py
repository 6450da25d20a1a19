"""`kumoflow show VIEW [SWITCH]` and `kumoflow dump-flows SWITCH`: what a
running controller knows, asked of its REST API (`kumoflow controller
--api ...`) and printed as tables (rich), or as the API's JSON with ``--json``.

    kumoflow show switches             every switch: ports up, flows, in sync or not
    kumoflow show switches s1          one switch's ports with their counters
    kumoflow show links | hosts
    kumoflow show flows [SWITCH]       flow entries as the switches report them
    kumoflow show groups | meters SWITCH
    kumoflow show diff [SWITCH]        what the controller would add, change, delete
    kumoflow show networks | subnets | ports | routers | floatingips    Neutron resources
    kumoflow dump-flows SWITCH         ovs-ofctl dump-flows lines

The API is ``--api URL`` (or $KUMOFLOW_API; default http://127.0.0.1:9696).
The token is ``--token`` (or $KUMOFLOW_TOKEN), else the admin token file
(``--token-file``, $KUMOFLOW_TOKEN_FILE, default /var/lib/kumoflow/admin-token).

A view is an entry of `VIEWS`: its name, help, whether it takes a SWITCH,
a ``fetch(api, switch)`` that returns JSON-able data (what ``--json``
prints) and a ``render(data, console)``. `list_view` makes one for a plain
API list (``GET /v2.0/networks`` -> ``{"networks": [...]}``) from its
columns, so adding `show networks` is one call:

    list_view("networks", "tenant networks", "/v2.0/networks", "networks",
              [("id", "id"), ("name", "name"), ("status", "status")])
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from kumoflow.api.options import DEFAULT_TOKEN_FILE, DEFAULT_URL


class ShowError(Exception):
    """Something to tell the user (no traceback), with the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- talking to the API ----------------------------------------------------------------------


class Api:
    """GETs of the controller's API, failures as ShowError."""

    def __init__(self, url: str, token: str, client: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.client = client or httpx.Client(base_url=self.url, timeout=30.0)
        self.headers = {"X-Auth-Token": token}

    def get(self, path: str, **params: Any) -> Any:
        import httpx

        try:
            response = self.client.get(path, params={k: v for k, v in params.items() if v is not None},
                                       headers=self.headers)
        except httpx.HTTPError as exc:
            raise ShowError(f"cannot reach the kumoflow API at {self.url}: {exc} "
                            f"(is `kumoflow controller --api ...` running? --api URL says where)") from None
        if response.status_code >= 400:
            try:
                error = response.json()["NeutronError"]
                message = error["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text.strip()[:200] or response.reason_phrase
            raise ShowError(f"{path}: {response.status_code} {message}")
        return response.json()


def resolve_token(token: str | None, token_file: str | None) -> str:
    if token:
        return token
    if os.environ.get("KUMOFLOW_TOKEN"):
        return os.environ["KUMOFLOW_TOKEN"]
    path = token_file or os.environ.get("KUMOFLOW_TOKEN_FILE") or DEFAULT_TOKEN_FILE
    try:
        found = open(path).read().strip()
    except OSError as exc:
        raise ShowError(f"no token: give --token, set KUMOFLOW_TOKEN, or make the admin token file readable "
                        f"({path}: {exc.strerror})", 2) from None
    if not found:
        raise ShowError(f"no token: the admin token file {path} is empty", 2)
    return found


# --- views ------------------------------------------------------------------------------------


@dataclass
class View:
    name: str
    help: str
    fetch: Callable[[Api, str | None], Any]
    render: Callable[[Any, Any], None]
    switch: str = "none"         # "none", "optional" or "required"


VIEWS: dict[str, View] = {}


def add_view(view: View) -> View:
    VIEWS[view.name] = view
    return view


def list_view(name: str, help: str, path: str, key: str, columns: list[tuple[str, str]]) -> View:
    """A view of a plain API list: ``GET path`` -> ``{key: [{...}, ...]}``;
    `columns` are (heading, attribute) pairs; lists print comma-separated."""

    def fetch(api: Api, switch: str | None) -> Any:
        return api.get(path)

    def render(data: Any, console: Any) -> None:
        table = _table(name, *(heading for heading, _ in columns))
        for item in data[key]:
            table.add_row(*(_cell(item.get(attr)) for _, attr in columns))
        console.print(table)

    return add_view(View(name, help, fetch, render))


def _table(title: str, *columns: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        if column in _LONG:       # matches, actions...: wrapped within the column, never cut
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, no_wrap=True)
    return table


_LONG = {"match", "actions", "buckets", "entry", "addresses", "bands", "peer"}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _short_dpid(dpid: str) -> str:
    return f"{int(dpid, 16):#x}"


def _switch_label(ref: dict) -> str:
    return ref.get("switch") or ref.get("name") or _short_dpid(ref["dpid"])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
    return f"{seconds // 86400}d{seconds // 3600 % 24:02d}h"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


# switches

def _fetch_switches(api: Api, switch: str | None) -> Any:
    if switch is None:
        return api.get("/sdn/switches")
    return api.get(f"/sdn/switches/{switch}")


def _render_switches(data: Any, console: Any) -> None:
    if "switch" in data:
        return _render_switch(data["switch"], console)
    table = _table("switches", "dpid", "name", "peer", "up", "settled", "ports up", "flows", "groups", "meters",
                   "in sync")
    for s in data["switches"]:
        ports = [p for p in s["ports"] if p["port"] != "LOCAL"]
        installed = s.get("installed") or {}
        differences = s.get("differences")
        table.add_row(_short_dpid(s["dpid"]), s.get("name") or "-", s["peer"], _duration(s["uptime"]),
                      _cell(s["settled"]), f"{sum(p['up'] for p in ports)}/{len(ports)}",
                      _count(installed.get("flows")), _count(installed.get("groups")),
                      _count(installed.get("meters")),
                      "-" if differences is None else ("yes" if differences == 0 else f"no ({differences})"))
    console.print(table)


def _render_switch(s: dict, console: Any) -> None:
    desc = s.get("description") or {}
    console.print(f"switch {_short_dpid(s['dpid'])} (dpid {s['dpid']})" + (f" {s['name']}" if s.get("name") else "")
                  + f", from {s['peer']}, up {_duration(s['uptime'])}"
                  + ("" if s["settled"] else ", settling")
                  + (f", {desc.get('software')}" if desc.get("software") else ""))
    table = _table("ports", "port", "name", "state", "link to", "rx pkts", "rx bytes", "tx pkts", "tx bytes",
                   "drops", "errors")
    for p in s["ports"]:
        state = "up" if p["up"] else ("admin down" if p["admin_down"] else "down")
        link = p.get("link")
        c = p.get("counters")
        row = [_count(c[k]) if c else "-" for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")]
        row += [_count(c["rx_dropped"] + c["tx_dropped"]) if c else "-",
                _count(c["rx_errors"] + c["tx_errors"]) if c else "-"]
        table.add_row(p["port"], p["name"], state, f"{_switch_label(link)} port {link['port_no']}" if link else "-",
                      *row)
    console.print(table)


add_view(View("switches", "switches connected (with SWITCH: its ports and counters)", _fetch_switches,
              _render_switches, switch="optional"))


# links and hosts

def _render_links(data: Any, console: Any) -> None:
    table = _table("links", "switch", "port", "", "switch", "port")
    for link in data["links"]:
        a, b = link["a"], link["b"]
        table.add_row(_switch_label(a), _port_label(a), "<->", _switch_label(b), _port_label(b))
    console.print(table)


def _port_label(ref: dict) -> str:
    name = ref.get("port_name")
    return f"{ref['port_no']} ({name})" if name else str(ref["port_no"])


def _render_hosts(data: Any, console: Any) -> None:
    table = _table("hosts", "mac", "addresses", "switch", "port", "last seen")
    for h in data["hosts"]:
        table.add_row(h["mac"], _cell(h["ips"]), _switch_label(h), _port_label(h), _duration(h["age"]) + " ago")
    console.print(table)


add_view(View("links", "links between switches (LLDP)", lambda api, _: api.get("/sdn/links"), _render_links))
add_view(View("hosts", "hosts and where they are attached", lambda api, _: api.get("/sdn/hosts"), _render_hosts))


# flows, groups, meters, diff (per switch; all switches when SWITCH is optional and not given)

def _each_switch(api: Api, switch: str | None, what: str) -> Any:
    if switch is not None:
        return {"switches": [api.get(f"/sdn/switches/{switch}/{what}")]}
    found = api.get("/sdn/switches", counters="false")["switches"]
    return {"switches": [{**api.get(f"/sdn/switches/{s['dpid']}/{what}"), "name": s.get("name")} for s in found]}


def _title(item: dict, what: str) -> str:
    name = item.get("name")
    return f"{what} of {_short_dpid(item['dpid'])}" + (f" ({name})" if name else "")


def _render_flows(data: Any, console: Any) -> None:
    for item in data["switches"]:
        table = _table(_title(item, "flows"), "table", "priority", "match", "actions", "packets", "bytes", "owner",
                       "cookie")
        for f in item["flows"]:
            table.add_row(str(f["table"]), str(f["priority"]), f["match"] or "(any)", f["actions"],
                          _count(f["n_packets"]), _count(f["n_bytes"]), f.get("owner") or "-", f["cookie"])
        console.print(table)


def _render_groups(data: Any, console: Any) -> None:
    for item in data["switches"]:
        table = _table(_title(item, "groups"), "group", "type", "owner", "buckets")
        for g in item["groups"]:
            buckets = "\n".join(
                ", ".join(filter(None, [f"weight {b['weight']}" if g["type"] == "select" else "",
                                        f"watch {b['watch_port']}" if b.get("watch_port") is not None else "",
                                        b["actions"]]))
                for b in g["buckets"]) or "-"
            table.add_row(str(g["group_id"]), g["type"], g.get("owner") or "-", buckets)
        console.print(table)


def _render_meters(data: Any, console: Any) -> None:
    for item in data["switches"]:
        table = _table(_title(item, "meters"), "meter", "flags", "owner", "bands")
        for m in item["meters"]:
            table.add_row(str(m["meter_id"]), _cell(m["flags"]), m.get("owner") or "-", "\n".join(m["bands"]))
        console.print(table)


def _render_diff(data: Any, console: Any) -> None:
    for item in data["switches"]:
        title = _title(item, "desired vs installed")
        if not item["ready"]:
            console.print(f"{title}: not read yet")
            continue
        if item["in_sync"]:
            console.print(f"{title}: in sync" + ("" if item["settled"] else " (settling)"))
            continue
        table = _table(title + ("" if item["settled"] else " (settling: only adds are sent)"), "", "kind", "owner",
                       "entry")
        for e in item["add"]:
            table.add_row("+", e["kind"], e.get("owner") or "-", e["text"])
        for c in item["change"]:
            table.add_row("~", c["want"]["kind"], c["want"].get("owner") or "-",
                          f"{c['have']['text']}\n-> {c['want']['text']}")
        for e in item["delete"]:
            table.add_row("-", e["kind"], e.get("owner") or "-", e["text"])
        console.print(table)


add_view(View("flows", "flow entries as the switches report them", lambda api, s: _each_switch(api, s, "flows"),
              _render_flows, switch="optional"))
add_view(View("groups", "a switch's groups", lambda api, s: _each_switch(api, s, "groups"), _render_groups,
              switch="required"))
add_view(View("meters", "a switch's meters", lambda api, s: _each_switch(api, s, "meters"), _render_meters,
              switch="required"))
add_view(View("diff", "what the controller would add, change and delete on switches",
              lambda api, s: _each_switch(api, s, "diff"), _render_diff, switch="optional"))


# Neutron resources (kumoflow.api.neutron): what the token's project sees, the admin's all

def _resource_view(name: str, help: str, path: str, columns: list[tuple[str, Callable[[dict], Any]]]) -> View:
    def render(data: Any, console: Any) -> None:
        table = _table(name, *(heading for heading, _ in columns))
        for item in data[name]:
            table.add_row(*(_cell(get(item)) for _, get in columns))
        console.print(table)

    return add_view(View(name, help, lambda api, _: api.get(path), render))


def _addresses(item: dict) -> list[str]:
    return [ip["ip_address"] for ip in item.get("fixed_ips", ())]


def _binding(item: dict) -> str | None:
    host, profile = item.get("binding:host_id"), item.get("binding:profile") or {}
    if not host:
        return None
    port = profile.get("interface", profile.get("port_no"))
    return f"{host} port {port}" if port is not None else host


_resource_view("networks", "tenant networks (Neutron)", "/v2.0/networks", [
    ("id", lambda n: n["id"]), ("name", lambda n: n["name"]), ("project", lambda n: n["project_id"]),
    ("type", lambda n: n.get("provider:network_type")), ("segment", lambda n: n.get("provider:segmentation_id")),
    ("shared", lambda n: n.get("shared")), ("subnets", lambda n: len(n.get("subnets", ()))),
    ("status", lambda n: n.get("status"))])
_resource_view("subnets", "subnets (Neutron)", "/v2.0/subnets", [
    ("id", lambda s: s["id"]), ("name", lambda s: s["name"]), ("project", lambda s: s["project_id"]),
    ("network", lambda s: s["network_id"]), ("cidr", lambda s: s["cidr"]), ("gateway", lambda s: s.get("gateway_ip")),
    ("pools", lambda s: [f"{p['start']}-{p['end']}" for p in s.get("allocation_pools", ())])])
_resource_view("ports", "ports (Neutron): addresses, binding to a switch port, status", "/v2.0/ports", [
    ("id", lambda p: p["id"]), ("name", lambda p: p["name"]), ("project", lambda p: p["project_id"]),
    ("network", lambda p: p["network_id"]), ("mac", lambda p: p["mac_address"]), ("addresses", _addresses),
    ("owner", lambda p: p.get("device_owner") or None), ("bound to", _binding), ("status", lambda p: p["status"])])
_resource_view("routers", "routers (Neutron)", "/v2.0/routers", [
    ("id", lambda r: r["id"]), ("name", lambda r: r["name"]), ("project", lambda r: r["project_id"]),
    ("gateway", lambda r: (r.get("external_gateway_info") or {}).get("network_id")),
    ("routes", lambda r: [f"{x['destination']} via {x['nexthop']}" for x in r.get("routes", ())]),
    ("status", lambda r: r.get("status"))])
_resource_view("floatingips", "floating IPs (Neutron): the address, the port and fixed address it is bound to",
               "/v2.0/floatingips", [
    ("id", lambda f: f["id"]), ("address", lambda f: f["floating_ip_address"]), ("project", lambda f: f["project_id"]),
    ("network", lambda f: f["floating_network_id"]), ("port", lambda f: f.get("port_id")),
    ("fixed address", lambda f: f.get("fixed_ip_address")), ("router", lambda f: f.get("router_id")),
    ("status", lambda f: f.get("status"))])


# --- the commands -----------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", metavar="URL", default=None,
                   help=f"the controller's API ($KUMOFLOW_API; default {DEFAULT_URL})")
    p.add_argument("--token", metavar="TOKEN", help="X-Auth-Token ($KUMOFLOW_TOKEN; else the admin token file)")
    p.add_argument("--token-file", metavar="PATH",
                   help=f"read the token from here ($KUMOFLOW_TOKEN_FILE; default {DEFAULT_TOKEN_FILE})")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")


def register(subparsers: argparse._SubParsersAction) -> None:
    views = "\n".join(f"  {v.name:<11} {v.help}" for v in VIEWS.values())
    p = subparsers.add_parser("show", help="show what a running controller knows (through its API)",
                              description="Show what a running controller knows, through its REST API.",
                              epilog=f"views:\n{views}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("view", choices=list(VIEWS), metavar="VIEW", help=f"one of: {', '.join(VIEWS)}")
    p.add_argument("switch", nargs="?", metavar="SWITCH", help="a datapath id (0x1, 26) or a switch name")
    _common(p)
    p.set_defaults(func=run_show)

    d = subparsers.add_parser("dump-flows", help="a switch's flows in ovs-ofctl dump-flows syntax (through the API)",
                              description="Print a switch's flow entries as `ovs-ofctl dump-flows` does, "
                                          "asked through the controller's API.")
    d.add_argument("switch", metavar="SWITCH", help="a datapath id (0x1, 26) or a switch name")
    d.add_argument("--table", type=int, metavar="N", help="one table only")
    _common(d)
    d.set_defaults(func=run_dump_flows)


def _api(args: argparse.Namespace, client: Any = None) -> Api:
    url = args.api or os.environ.get("KUMOFLOW_API") or DEFAULT_URL
    return Api(url, resolve_token(args.token, args.token_file), client)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def run_show(args: argparse.Namespace, client: Any = None) -> int:
    from rich.console import Console

    view = VIEWS[args.view]
    try:
        if view.switch == "required" and args.switch is None:
            raise ShowError(f"show {view.name} needs a SWITCH", 2)
        if view.switch == "none" and args.switch is not None:
            raise ShowError(f"show {view.name} takes no SWITCH", 2)
        data = view.fetch(_api(args, client), args.switch)
    except ShowError as exc:
        print(f"kumoflow show: {exc}", file=sys.stderr)
        return exc.status
    if args.json:
        _print_json(data)
    else:
        view.render(data, Console())
    return 0


def run_dump_flows(args: argparse.Namespace, client: Any = None) -> int:
    try:
        data = _api(args, client).get(f"/sdn/switches/{args.switch}/flows", table=args.table)
    except ShowError as exc:
        print(f"kumoflow dump-flows: {exc}", file=sys.stderr)
        return exc.status
    if args.json:
        _print_json(data)
    else:
        for flow in data["flows"]:
            sys.stdout.write(f" {flow['text']}\n")
    return 0
