"""The emulator's entry point: a :class:`Network` built from a topology.

::

    from kumoflow.net import Network

    # no controller: standalone switches forward as learning switches
    with Network.from_file("examples/single.yaml", fail_mode="standalone", controllers=[]) as net:
        print(net.host("h1").run(["ping", "-c1", "10.0.0.2"]).stdout)
        matrix = net.ping_all()
        assert matrix.ok, matrix

    # with the controller of the file (tcp:127.0.0.1:6653), secure switches
    with Network.from_file("examples/tree.yaml") as net:
        net.wait_connected()
        print(net.ping_all())

Standalone switches that *have* a controller configured forward only once
Open vSwitch gives up on the controller (about 15 s: three inactivity
probes), hence ``controllers=[]`` for controller-less tests.

``up()`` records what it is about to create (see :mod:`.state`), then makes
namespaces, links (veth pairs), host addressing, and finally the switches.
If anything fails -- or the process is interrupted -- it removes what it
made before raising. ``down()`` removes everything; after a crash,
``Network.teardown(name)`` (or ``kumoflow down``) does the same from the
state record and by name.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from pyroute2 import Ethtool, IPRoute

from kumoflow.net import cleanup, links, services, state, underlay
from kumoflow.net import hosts as hostmod
from kumoflow.net.cleanup import TeardownReport
from kumoflow.net.errors import NetError, TeardownError, TopologyError
from kumoflow.net.hosts import Host
from kumoflow.net.ping import PingMatrix, ping_pairs
from kumoflow.net.plan import UNDERLAY_NODE, HostPlan, Plan, make_plan
from kumoflow.net.switches import get_kind
from kumoflow.net.topology import FrrConfig, Topology, load_topology


class Network:
    """One instance of a topology on this machine."""

    def __init__(
        self,
        topology: Topology,
        *,
        name: str | None = None,
        fail_mode: str | None = None,
        controllers: list[str] | None = None,
    ):
        """``name``, ``fail_mode`` and ``controllers`` override the file's
        topology name, every switch's fail mode, and every switch's
        controllers (``[]``: none)."""
        self.topology = topology.with_overrides(name=name, fail_mode=fail_mode, controllers=controllers)
        self.plan: Plan = make_plan(self.topology)
        self._hosts = {h.name: Host(h, owner=self) for h in self.plan.hosts}
        self._started: list[subprocess.Popen] = []
        #: run: commands this process started (reaped by down; stopped by their pid files)
        self._services: list[subprocess.Popen] = []
        self._is_up = False
        self._created = ""
        #: switches wait_connected() has seen connected (and handed to on_connected)
        self._seen_connected: set[str] = set()

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Network:
        return cls(load_topology(path), **overrides)

    @classmethod
    def attach(cls, name: str) -> Network:
        """The running topology ``name`` (brought up by another process, e.g.
        ``kumoflow up``), from its state record and topology file; use its
        hosts, ping, and ``down()`` as if this process had made it."""
        record = state.read(name)
        if record is None:
            raise NetError(f"topology {name!r} is not running (no state record in {state.run_dir()})")
        source = record.get("source")
        if not source or not Path(source).is_file():
            raise NetError(f"topology {name!r}: its file {source!r} is gone; `kumoflow exec` still works")
        net = cls(load_topology(source), name=name)
        # the hosts as they were made, even if the file changed since
        net._hosts = {h: Host(_host_from_record(r), owner=net) for h, r in record.get("hosts", {}).items()}
        net._is_up = True
        return net

    # -- inspection -------------------------------------------------------

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def hosts(self) -> list[Host]:
        return list(self._hosts.values())

    def host(self, name: str) -> Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in topology {self.name!r}") from None

    def __getitem__(self, name: str) -> Host:
        return self.host(name)

    def __repr__(self) -> str:
        return f"<Network {self.name!r} {'up' if self._is_up else 'down'}>"

    # -- lifecycle --------------------------------------------------------

    def up(self) -> Network:
        """Create everything; on failure remove what was made and raise."""
        if os.geteuid() != 0:
            raise NetError("bringing a topology up needs root (namespaces, links, switches)")
        self._preflight()
        self._created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        state.write(self._record("starting"))
        try:
            self._create()
        except BaseException as exc:
            report = cleanup.teardown(self.name, self.plan)
            self._reap_services()
            if not report.clean and isinstance(exc, Exception):
                raise NetError(f"{exc}\n(and cleaning up failed: {', '.join(report.leftovers)})") from exc
            raise
        self._is_up = True
        return self

    def down(self) -> TeardownReport:
        """Remove everything this topology made; raises
        :class:`~kumoflow.net.errors.TeardownError` if something is left."""
        self._stop_started()
        report = cleanup.teardown(self.name, self.plan)
        self._reap_services()
        self._is_up = False
        if not report.clean:
            raise TeardownError(self.name, report.leftovers, report.errors)
        return report

    @staticmethod
    def teardown(name: str, topology: Topology | None = None) -> TeardownReport:
        """Remove topology ``name`` (by its state record, the topology if
        given, and by name) without a Network object -- e.g. after a crash."""
        plan = make_plan(topology.with_overrides(name=name)) if topology is not None else None
        report = cleanup.teardown(name, plan)
        if not report.clean:
            raise TeardownError(name, report.leftovers, report.errors)
        return report

    def leftovers(self) -> list[str]:
        """What of this topology exists on the machine now."""
        return cleanup.leftovers(self.name, self.plan)

    def __enter__(self) -> Network:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until every switch that has controllers is connected to one
        of them; raise :class:`~kumoflow.net.errors.NetError` naming the
        switches that are not, after ``timeout`` seconds.

        Call it once the controller is up: a switch seen connected for the
        first time is handed to its kind's ``on_connected``, which for Open
        vSwitch is what puts the short ``max_backoff`` into effect (see
        :mod:`kumoflow.net.ovs`)."""
        by_kind: dict[str, list] = {}
        for switch in self.plan.switches:
            if switch.controllers:
                by_kind.setdefault(switch.kind, []).append(switch)
        deadline = time.monotonic() + timeout
        while True:
            waiting = []
            for kind, switches in by_kind.items():
                status = get_kind(kind).connected(switches)
                waiting += [name for name, ok in status.items() if not ok]
                new = [s for s in switches if status.get(s.name) and s.name not in self._seen_connected]
                if new:
                    get_kind(kind).on_connected(new)
                    self._seen_connected.update(s.name for s in new)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise NetError(
                    f"switches not connected to a controller after {timeout:g}s: {', '.join(sorted(waiting))}"
                )
            time.sleep(0.1)

    # -- traffic ----------------------------------------------------------

    def ping(self, src: str, dst: str, *, count: int = 1, timeout: float = 1.0, retries: int = 1) -> bool:
        [result] = ping_pairs([(self.host(src), self.host(dst))], count=count, timeout=timeout, retries=retries)
        return result.ok

    def ping_all(
        self,
        hosts: list[str] | None = None,
        *,
        count: int = 1,
        timeout: float = 1.0,
        retries: int = 1,
    ) -> PingMatrix:
        """Ping every ordered pair of ``hosts`` (default: every host with a
        static address; each pinged at its first), concurrently."""
        chosen = [self.host(h) for h in hosts] if hosts else [h for h in self.hosts if h.plan.addresses]
        pairs = [(a, b) for a in chosen for b in chosen if a is not b]
        results = ping_pairs(pairs, count=count, timeout=timeout, retries=retries)
        return PingMatrix([h.name for h in chosen], results)

    # -- internals --------------------------------------------------------

    def _record(self, status: str, switches: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        plan = self.plan
        return {
            "name": self.name,
            "prefix": plan.names.prefix,
            "status": status,
            "source": str(Path(self.topology.source).resolve()) if self.topology.source != "<string>" else None,
            "pid": os.getpid(),
            "created": self._created,
            "namespaces": plan.namespaces(),
            "links": [link.a.ifname for link in plan.links] + [link.b.ifname for link in plan.links],
            "switches": switches if switches is not None else [s.record() for s in plan.switches],
            "hypervisors": [h.record() for h in plan.hypervisors],
            "hosts": {h.name: {**h.record(), **_service_record(h)} for h in plan.hosts},
        }

    def _preflight(self) -> None:
        """Refuse before creating anything if this would collide."""
        for kind in sorted({s.kind for s in self.plan.switches}):
            get_kind(kind).check()
        existing = state.read(self.name)
        if existing is not None:
            raise NetError(
                f"topology {self.name!r} is already up (state {state.record_path(self.name)}); "
                f"`kumoflow down {self.name}` removes it"
            )
        prefix = self.plan.names.prefix
        for other in state.all_records():
            if other.get("prefix") == prefix:
                raise NetError(
                    f"topology {other['name']!r} uses the same interface prefix {prefix!r}; "
                    "choose another name"
                )
        clash = self.leftovers()
        if clash:
            raise NetError(
                f"topology {self.name!r} left things behind ({', '.join(clash[:5])}); "
                f"`kumoflow down {self.name}` removes them"
            )
        with IPRoute() as ipr:
            taken = links.existing(ipr, self.plan.root_ifnames())
        if taken:
            raise NetError(f"interfaces already exist: {', '.join(taken)}")
        underlay.preflight(self.plan)
        routers = [h for h in self.plan.hosts if h.frr is not None]
        for host in routers:
            services.frr_preflight(host)
        issues = [i for h in routers for i in services.frr_config_issues(h.name, h.frr)]
        if issues:
            raise TopologyError(issues)
        services.clear_files(self.name)  # nothing of this name runs: old logs and pid files go

    def _create(self) -> None:
        plan = self.plan
        for netns in plan.namespaces():
            hostmod.create_namespace(netns)
        ethtool = Ethtool()
        try:
            with IPRoute() as ipr:
                for link in plan.links:
                    # offloads stay off on the underlay, whatever the file says (notes/overlays.md)
                    offloads = self.topology.offloads and link.b.node != UNDERLAY_NODE
                    links.create_link(ipr, ethtool, link, plan.names, offloads)
        finally:
            ethtool.close()
        for host in plan.hosts:
            hostmod.configure_host(host)
        underlay.up(plan)
        switches = [s.record() for s in plan.switches]
        for i, switch in enumerate(plan.switches):
            switches[i] = {**switches[i], **get_kind(switch.kind).up(switch)}
            state.write(self._record("starting", switches))
        # the network is up: what runs in the hosts (their record says where, already)
        for host in plan.hosts:
            if host.frr is not None:
                services.start_frr(host)
        started = []
        for host in plan.hosts:
            if host.run is not None:
                proc = services.start_run(host)
                self._services.append(proc)
                started.append((host, proc))
        if started:
            deadline = time.monotonic() + services.RUN_GRACE
            while time.monotonic() < deadline and any(p.poll() is None for _, p in started):
                time.sleep(0.02)
            for host, proc in started:
                services.check_started(host, proc)
        state.write(self._record("up", switches))

    def _reap_services(self) -> None:
        """Collect the run: commands this process started (teardown stopped
        them by their pid files), so none stays a zombie."""
        for proc in self._services:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._services.clear()

    def _stop_started(self) -> None:
        for proc in self._started:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._started:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._started.clear()


def _service_record(host: HostPlan) -> dict[str, Any]:
    """Where a host's services keep their files (known before they start)."""
    out: dict[str, Any] = {}
    if host.frr is not None:
        out["frr"] = {
            "pathspace": host.netns,
            "dir": str(services.host_dir(host.topology, host.name)),
            "daemons": list(host.frr.daemons),
        }
    if host.run is not None:
        out["run"] = {
            "command": host.run if isinstance(host.run, str) else list(host.run),
            "log": str(services.host_dir(host.topology, host.name) / "run.log"),
        }
    return out


def _command(run: Any) -> str | tuple[str, ...] | None:
    command = run.get("command") if isinstance(run, dict) else None
    return tuple(command) if isinstance(command, list) else command


def _host_from_record(record: dict[str, Any]) -> HostPlan:
    addresses = record.get("addresses")
    if addresses is None:  # a record written before hosts had lists
        addresses = [record["ip"]] if record.get("ip") else []
    gateways = record.get("gateways")
    if gateways is None:
        gateways = [record["gateway"]] if record.get("gateway") else []
    frr = None
    if record.get("frr"):
        frr = FrrConfig(text="", daemons=tuple(record["frr"].get("daemons", ())))
    return HostPlan(
        name=record["name"],
        netns=record["netns"],
        ifname=record["ifname"],
        mac=record["mac"],
        addresses=tuple(ipaddress.ip_interface(a) for a in addresses),
        gateways=tuple(ipaddress.ip_address(g) for g in gateways),
        switch=record.get("switch", ""),
        port=record.get("port", 0),
        topology=record.get("topology") or record["netns"].rsplit("-", 1)[0],
        slaac=bool(record.get("slaac")),
        loopback=tuple(ipaddress.ip_interface(a) for a in record.get("loopback", ())),
        run=_command(record.get("run")),
        frr=frr,
    )


__all__ = ["Network"]
