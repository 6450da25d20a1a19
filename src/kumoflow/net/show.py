"""Terminal output of a plan: switches and hosts as tables (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kumoflow.net.plan import Plan


def plan_tables(plan: Plan) -> list[Table]:
    switches = Table("switch", "kind", "bridge", "dpid", "fail mode", "controllers", "ports", title="switches")
    for s in plan.switches:
        switches.add_row(
            s.name, s.kind, s.bridge, f"{s.dpid:#x}", s.fail_mode,
            "\n".join(s.controllers) or "-",
            " ".join(str(p.number) for p in s.ports) or "-",
        )
    hosts = Table("host", "namespace", "ip", "mac", "gateway", "attached to", "runs", title="hosts")
    for h in plan.hosts:
        addresses = [str(a) for a in h.addresses] + (["slaac"] if h.slaac else [])
        addresses += [f"lo {a}" for a in h.loopback]
        runs = []
        if h.frr is not None:
            runs.append("frr")
        if h.run is not None:
            runs.append("run")
        hosts.add_row(
            h.name, h.netns, "\n".join(addresses), h.mac, "\n".join(str(g) for g in h.gateways) or "-",
            f"{h.switch} port {h.port}" if h.switch else "-",
            "\n".join(runs) or "-",
        )
    links = Table("link", "a", "b", title="switch-to-switch links")
    for link in plan.links:
        if link.b.netns is None and link.a.netns is None:
            links.add_row(str(link.index), f"{link.a.node} port {link.a.port}", f"{link.b.node} port {link.b.port}")
    tables = [switches, hosts]
    if links.row_count:
        tables.append(links)
    return tables + overlay_tables(plan)


def overlay_tables(plan: Plan) -> list[Table]:
    """Hypervisors (VTEP, site, bridges) and every tunnel port, when the plan has hypervisors."""
    if not plan.hypervisors:
        return []
    hypervisors = Table("hypervisor", "kind", "vtep", "site", "nic", "bridge", "VM MTU", title="hypervisors")
    tunnels = Table("hypervisor", "port", "name", "type", "local", "remote", "overlay", title="tunnels")
    for h in plan.hypervisors:
        bridge = f"{h.bridge} (in {h.netns})" if h.netns else "\n".join(filter(None, (h.bridge, h.underlay_bridge)))
        hypervisors.add_row(h.name, h.kind, str(h.vtep), h.site, h.nic, bridge, str(h.vm_mtu))
        for t in h.tunnels:
            # a kernel hypervisor has one VXLAN device: its "ports" are its flood list's entries
            port = "vxlan0" if h.netns else str(t.number)
            tunnels.add_row(h.name, port, t.name, t.type, str(t.local_ip), f"{t.remote_ip} ({t.remote})", t.overlay)
    underlay = Table("site", "subnet", "gateway", "bridge", title=f"underlay (namespace {plan.underlay.netns})")
    for site in plan.underlay.sites:
        underlay.add_row(site.name, str(site.subnet), str(site.gateway or "-"), site.bridge)
    return [underlay, hypervisors, tunnels]


def print_plan(plan: Plan, title: str, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{title}[/bold] (interface prefix {plan.names.prefix}-)")
    for table in plan_tables(plan):
        console.print(table)
