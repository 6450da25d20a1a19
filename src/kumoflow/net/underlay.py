"""The underlay at run time: the physical network between hypervisors.

``up`` runs once the namespaces and veths exist (each hypervisor's NIC and
its peer are planned as links, see :func:`kumoflow.net.plan.make_plan`). In
the underlay's namespace it makes a Linux bridge per site with the NIC
peers as its ports; on a routed underlay the same namespace is the router:
each site bridge holds the site's gateway address (the router's MAC), IPv4
forwarding is on, and every VTEP is a static neighbour. Then each
hypervisor gets its VTEP address by kind: an ``ovs`` one on its underlay
bridge (:mod:`.ovs_underlay`), a ``kernel`` or ``kumoflow`` one in its
namespace (:mod:`.kernel_vtep`), where a kumoflow switch's own tunnel
sockets use it.

Nothing here needs tearing down on its own: the namespaces and veths go
with the topology; Open vSwitch's routes are removed by
:func:`kumoflow.net.ovs_underlay.sweep`, which ``down`` calls.
"""

from __future__ import annotations

import subprocess

from kumoflow.net import kernel_vtep, ovs_underlay
from kumoflow.net.errors import NetError
from kumoflow.net.overlay_plan import HypervisorPlan, UnderlayPlan
from kumoflow.net.plan import Plan

TIMEOUT = 30


def ip_batch(netns: str | None, commands: list[str], tool: str = "ip") -> None:
    """Run ``ip``/``bridge`` commands (one a line) in ``netns`` (None: the
    root namespace) in one batch; NetError with what the tool said."""
    if not commands:
        return
    argv = [tool, *(["-n", netns] if netns else []), "-batch", "-"]
    try:
        proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True,
                              timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetError(f"{tool} -batch in {netns or 'the root namespace'}: {exc}") from exc
    if proc.returncode != 0:
        raise NetError(f"{tool} -batch in {netns or 'the root namespace'}: {proc.stderr.strip()}")


def sysctls(netns: str, settings: list[str]) -> None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings],
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise NetError(f"namespace {netns}: cannot set {' '.join(settings)}: {proc.stderr.strip()}")


#: a namespace of the underlay or a kernel hypervisor has no IPv6 of its own (no stray traffic)
NO_IPV6 = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]


def up(plan: Plan) -> None:
    """Build the underlay and give every hypervisor its VTEP (see the module docstring)."""
    if plan.underlay is None:
        return
    build_segments(plan.underlay, plan.hypervisors)
    for hv in plan.hypervisors:
        if hv.kind == "ovs":
            ovs_underlay.up(hv, plan.name)
        elif hv.kind == "kernel":
            ports = [link.a.final_ifname for link in plan.links if link.a.node == hv.name and link.a.final_ifname]
            kernel_vtep.up(hv, plan.underlay, ports)
        else:   # kumoflow: its switch opens its tunnel sockets in this namespace
            sysctls(hv.netns, NO_IPV6)
            ip_batch(hv.netns, kernel_vtep.nic_commands(hv, plan.underlay))


def build_segments(underlay: UnderlayPlan, hypervisors: tuple[HypervisorPlan, ...]) -> None:
    """The site bridges (and the router) in the underlay namespace."""
    ns = underlay.netns
    sysctls(ns, NO_IPV6 + (["net.ipv4.ip_forward=1"] if underlay.routed else []))
    commands = ["link set lo up"]
    for site in underlay.sites:
        commands.append(f"link add {site.bridge} type bridge")
        if underlay.routed:
            commands.append(f"link set {site.bridge} address {site.mac}")
            commands.append(f"addr add {site.gateway}/{site.subnet.prefixlen} dev {site.bridge}")
        commands.append(f"link set {site.bridge} up")
    bridge_of = {s.name: s.bridge for s in underlay.sites}
    for hv in hypervisors:
        commands.append(f"link set {hv.peer} master {bridge_of[hv.site]} up")
    if underlay.routed:
        for vtep, mac, bridge in underlay.vteps:
            commands.append(f"neigh replace {vtep} lladdr {mac} dev {bridge} nud permanent")
    ip_batch(ns, commands)


def root_addresses() -> dict[str, str]:
    """IPv4 address -> interface, of the root namespace."""
    import json

    proc = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=TIMEOUT)
    found = {}
    for link in json.loads(proc.stdout or "[]"):
        for info in link.get("addr_info", ()):
            found[info.get("local")] = link.get("ifname")
    return found


def preflight(plan: Plan) -> None:
    """Refuse before anything is made when a VTEP that lives in the root
    namespace is an address there already (another topology's, or the
    machine's), or Open vSwitch holds a route or tunnel port of ours."""
    rooted = [h for h in plan.hypervisors if not h.netns]
    if not rooted:
        return
    present = root_addresses()
    clash = [f"{h.vtep.ip} (hypervisor {h.name}) is on {present[str(h.vtep.ip)]}"
             for h in rooted if str(h.vtep.ip) in present]
    if clash:
        raise NetError("underlay addresses already in use on this machine: " + "; ".join(clash))
    ovs_underlay.preflight(plan)
