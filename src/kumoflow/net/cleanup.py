"""Tear a topology down: everything recorded, planned, or found by its names.

Removal works from three sources, so it succeeds after a crash at any
point of ``up``: the state record (what ``up`` said it would make), the
plan (what the topology file makes, when the file is at hand), and a sweep
by name -- OVS bridges marked with the topology, root-namespace veths with
its alias or interface prefix, namespaces named ``<topology>-<host>``.
Order: what runs in the hosts (``run:`` commands and FRR daemons, see
:mod:`.services`), switches, Open vSwitch's routes through the topology's
bridges (ovs hypervisors, :mod:`.ovs_underlay`), links, then namespaces
(stopping the processes left running in them; kernel hypervisors and the
underlay are namespaces too). The record is removed only when nothing is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

from kumoflow.net import hosts, links, ovs_underlay, services, state
from kumoflow.net.plan import Names, Plan
from kumoflow.net.switches import SWITCH_KINDS, get_kind

SETTLE_SECONDS = 10.0  # veth peers and namespaces go away asynchronously; only waited for if left


@dataclass
class TeardownReport:
    name: str
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.leftovers


def _switch_records(plan: Plan | None, record: dict[str, Any] | None) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for sw in plan.switches if plan else ():
        found[sw.name] = sw.record()
    for sw in (record or {}).get("switches", ()):
        found[sw["name"]] = {**found.get(sw["name"], {}), **sw}
    return list(found.values())


def _kinds(plan: Plan | None, record: dict[str, Any] | None) -> list[str]:
    used = {sw["kind"] for sw in _switch_records(plan, record) if "kind" in sw}
    return sorted(used) if (plan or record) else sorted(SWITCH_KINDS)


def leftovers(name: str, plan: Plan | None = None, record: dict[str, Any] | None = None) -> list[str]:
    """What of topology ``name`` still exists (namespaces, links, switches)."""
    names = Names(name)
    record = record if record is not None else state.read(name)
    found = []
    pattern = names.netns_pattern()
    wanted = set(plan.namespaces() if plan else ()) | set((record or {}).get("namespaces", ()))
    found += [f"netns {ns}" for ns in hosts.list_namespaces() if ns in wanted or pattern.fullmatch(ns)]
    found += services.leftovers(name, names)
    with IPRoute() as ipr:
        found += [f"link {ifname}" for ifname in links.owned_links(ipr, names)]
    for kind in _kinds(plan, record):
        if kind not in SWITCH_KINDS:
            continue
        try:
            found += get_kind(kind).leftovers(name, names.prefix)
        except Exception as exc:  # NetError, or a kind that fails to load
            found.append(f"{kind} switches: cannot check ({exc})")
        if kind == "ovs":
            found += ovs_underlay.leftovers(names.prefix)
    return found


def teardown(name: str, plan: Plan | None = None, record: dict[str, Any] | None = None) -> TeardownReport:
    """Remove everything of topology ``name``; see the module docstring."""
    names = Names(name)
    record = record if record is not None else state.read(name)
    report = TeardownReport(name)

    def attempt(what: str, action, *args) -> None:
        try:
            report.removed += action(*args) or []
        except Exception as exc:  # keep going: remove as much as possible
            report.errors.append(f"{what}: {exc}")

    # what runs in the hosts first (run: commands, FRR daemons), while their namespaces exist
    recorded_hosts = {h: r.get("netns", names.netns(h)) for h, r in (record or {}).get("hosts", {}).items()}
    planned_hosts = {h.name: h.netns for h in plan.hosts} if plan else {}
    attempt("host services", services.stop_all, name, names, {**recorded_hosts, **planned_hosts})

    for sw in _switch_records(plan, record):
        kind = sw.get("kind")
        if kind in SWITCH_KINDS:
            attempt(f"switch {sw.get('name')}", lambda s=sw, k=kind: get_kind(k).down(s))
        else:
            report.errors.append(f"switch {sw.get('name')}: unknown kind {kind!r}; cannot remove it")
    for kind in _kinds(plan, record):
        if kind not in SWITCH_KINDS:
            continue
        attempt(f"{kind} sweep", lambda k=kind: get_kind(k).sweep(name, names.prefix))
    # Open vSwitch keeps the routes of an ovs hypervisor's underlay bridge after the bridge
    if "ovs" in _kinds(plan, record):
        attempt("ovs routes", ovs_underlay.sweep, names.prefix)

    with IPRoute() as ipr:
        recorded = list((record or {}).get("links", ()))
        planned: list[str] = []
        if plan is not None:
            bridges = {s.bridge for s in plan.switches}
            planned = [n for n in plan.root_ifnames() if n not in bridges]
        attempt("links", links.delete_links, ipr, recorded + planned)
        attempt("link sweep", lambda: links.delete_links(ipr, links.owned_links(ipr, names)))

    pattern = names.netns_pattern()
    wanted = set(plan.namespaces() if plan else ()) | set((record or {}).get("namespaces", ()))
    for ns in hosts.list_namespaces():
        if ns in wanted or pattern.fullmatch(ns):
            attempt(f"netns {ns}", lambda n=ns: [f"netns {n}"] if hosts.delete_namespace(n) else [])

    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        report.leftovers = leftovers(name, plan, record)
        if not report.leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if report.clean:
        state.remove(name)
    return report
