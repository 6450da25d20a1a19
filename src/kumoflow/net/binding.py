"""Binding emulated hosts to the controller API's ports, the way a compute
service plugs a VM: a host that says ``port: NAME-or-ID`` in the topology is
that API port (``/v2.0/ports``), and after ``up`` the port is bound to the
switch port the host hangs off:

    PUT /v2.0/ports/ID  {"port": {"binding:host_id": "0x1", "binding:profile": {"port_no": 3}}}

``binding:host_id`` is the switch's datapath id, ``port_no`` the OpenFlow
port of the host's link. A name would do too (an Open vSwitch bridge's,
or the ``--name`` a kumoflow switch reports in its DESC reply: both are
``<prefix>-s1``), but the datapath id stays the choice here: the
controller knows it from the handshake for every kind of switch, with no
DESC request to wait for; it is the plan's own identity of the switch
(unique among the switches of a controller, where a name is unique only
when ``<prefix>`` is, and a short ``s1`` only while one topology alone
has it).
The port turns ACTIVE once that switch is connected and the port is up.
Binding changes no address: the host keeps the ``mac`` and ``ip`` of the
topology file, and a port whose MAC or addresses differ is bound all the
same, with a warning (give the host the port's).

    from kumoflow.net.binding import bind_ports
    for line in bind_ports(net.plan, "http://127.0.0.1:9696", token):
        print(line)
"""

from __future__ import annotations

import re
from typing import Any

from kumoflow.net.errors import NetError
from kumoflow.net.plan import Plan

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class BindingError(NetError):
    """A host's port could not be found or bound."""


def bindings(plan: Plan) -> list[tuple[str, str, str, int | None]]:
    """(host, API port name or id, binding:host_id, port_no) for each host with a ``port``.
    A VM of a ``kernel`` hypervisor (no OpenFlow) is bound to its tunnel endpoint:
    ``vtep:<its VTEP address>``, no port number."""
    dpids = {s.name: s.dpid for s in plan.switches}
    vteps = {h.name: h.vtep.ip for h in plan.hypervisors if h.kind == "kernel"}
    hosts = {h.name: h for h in plan.hosts}
    out = []
    for host in plan.topology.hosts:
        if host.port is None:
            continue
        attached = hosts[host.name]
        if attached.switch in vteps:
            out.append((host.name, host.port, f"vtep:{vteps[attached.switch]}", None))
        else:
            out.append((host.name, host.port, f"{dpids[attached.switch]:#x}", attached.port))
    return out


def bind_ports(plan: Plan, url: str, token: str, client: Any = None) -> list[str]:
    """Bind every host's API port; one line per host saying what was done (and any warning).
    BindingError names the host whose port is missing, ambiguous or refused."""
    import httpx

    http = client or httpx.Client(base_url=url.rstrip("/"), timeout=30.0)
    headers = {"X-Auth-Token": token}

    def call(method: str, path: str, host: str, **kw: Any) -> Any:
        try:
            response = http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise BindingError(f"host {host}: cannot reach the API at {url}: {exc}") from None
        if response.status_code >= 400:
            try:
                error = response.json()["NeutronError"]
                message = f"{error['type']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise BindingError(f"host {host}: {method} {path}: {response.status_code} {message}")
        return response.json()

    lines = []
    by_name = {h.name: h for h in plan.hosts}
    for host, port, switch, port_no in bindings(plan):
        if UUID.match(port):
            found = [call("GET", f"/v2.0/ports/{port}", host)["port"]]
        else:
            found = call("GET", "/v2.0/ports", host, params={"name": port})["ports"]
        if len(found) != 1:
            raise BindingError(f"host {host}: port: {len(found) or 'no'} API ports are named {port!r}"
                               + ("; give its id" if found else ""))
        api_port = found[0]
        profile = {"port_no": port_no} if port_no is not None else {}
        bound = call("PUT", f"/v2.0/ports/{api_port['id']}", host, json={"port": {
            "binding:host_id": switch, "binding:profile": profile}})["port"]
        where = f"switch {switch} port {port_no}" if port_no is not None else f"tunnel endpoint {switch[5:]}"
        line = f"host {host}: port {port} bound to {where} ({bound['status']})"
        plan_host = by_name[host]
        addresses = {ip["ip_address"] for ip in api_port.get("fixed_ips", ())}
        if api_port.get("mac_address") != plan_host.mac:
            line += f"; warning: the port's MAC is {api_port.get('mac_address')}, the host's {plan_host.mac}"
        own = [str(a.ip) for a in plan_host.addresses]
        if addresses and not addresses & set(own):
            line += (f"; warning: the port's addresses are {', '.join(sorted(addresses))}, "
                     f"the host's {', '.join(own) or 'from SLAAC'}")
        lines.append(line)
    return lines
