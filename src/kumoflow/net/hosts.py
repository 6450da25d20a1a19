"""Hosts: network namespaces, their addressing, and running commands in them.

A host is a named network namespace (``/run/netns/<name>``, the place
``ip netns`` uses) holding ``lo`` and one interface, ``eth0``. Commands run
through ``ip netns exec``, so they also see the per-namespace
``/etc/netns/<name>/`` files and ``/sys`` of the namespace, as with ``ip``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kumoflow.net.errors import NetError
from kumoflow.net.plan import HostPlan

NETNS_DIR = Path("/run/netns")
IFA_F_NODAD = 0x02


def list_namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def namespace_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create_namespace(name: str) -> None:
    if namespace_exists(name):
        raise NetError(f"network namespace {name} already exists (`kumoflow down` removes a stale topology)")
    from pyroute2 import netns  # imported here: `kumoflow exec` needs none of pyroute2

    try:
        netns.create(name)
    except Exception as exc:
        raise NetError(f"cannot create network namespace {name}: {exc}") from exc


def host_sysctls(host: HostPlan) -> list[str]:
    """The ``key=value`` settings of the host's namespace, made before eth0 is up.

    Router advertisements are accepted on eth0 only with ``slaac``
    (``accept_ra=2``: also when the host forwards), with autoconfiguration,
    no duplicate address detection (the address is usable as soon as the RA
    arrives) and no delay before the first router solicitation; without
    ``slaac`` eth0 ignores them (a new namespace would accept them). A host
    running FRR forwards IPv4 and IPv6.
    """
    eth = f"net.ipv6.conf.{host.ifname}"
    if host.slaac:
        settings = [f"{eth}.accept_ra=2", f"{eth}.autoconf=1", f"{eth}.accept_dad=0",
                    f"{eth}.router_solicitation_delay=0"]
    else:
        settings = [f"{eth}.accept_ra=0", f"{eth}.autoconf=0"]
    if host.forwarding:
        settings += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
    return settings


def configure_host(host: HostPlan) -> None:
    """Set the namespace's sysctls, bring up ``lo`` (with the loopback
    addresses) and ``eth0`` (already moved in) with MAC, addresses and
    default routes."""
    from pyroute2 import NetNS, config

    # NetNS forks a child to open its socket in the namespace, then SIGTERMs
    # it; the child must die of it, not run a SIGTERM handler of this program
    # (one that raises SystemExit unwinds the child's copy of our stack: its
    # cleanup removes the namespaces we are building)
    config.disable_mp_signal = True
    settings = host_sysctls(host)
    try:
        proc = subprocess.run(netns_command(host.netns, ["sysctl", "-q", "-w", *settings]),
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetError(f"host {host.name}: cannot set {' '.join(settings)}: {exc}") from exc
    if proc.returncode != 0:
        raise NetError(f"host {host.name}: cannot set {' '.join(settings)}: {proc.stderr.strip()}")
    with NetNS(host.netns, flags=0) as ns:
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")
        for ip in host.loopback:
            ns.addr("add", index=lo, address=str(ip.ip), prefixlen=ip.network.prefixlen,
                    **({"flags": IFA_F_NODAD} if ip.version == 6 else {}))
        found = ns.link_lookup(ifname=host.ifname)
        if not found:
            raise NetError(f"{host.ifname} is missing in namespace {host.netns}")
        index = found[0]
        ns.link("set", index=index, address=host.mac)
        if host.mtu:
            ns.link("set", index=index, mtu=host.mtu)
        for ip in host.addresses:
            kwargs: dict[str, Any] = {}
            if ip.version == 6:
                kwargs["flags"] = IFA_F_NODAD  # usable at once, not "tentative"
            ns.addr("add", index=index, address=str(ip.ip), prefixlen=ip.network.prefixlen, **kwargs)
        ns.link("set", index=index, state="up")
        for gateway in host.gateways:
            family = 10 if gateway.version == 6 else 2
            ns.route("add", gateway=str(gateway), oif=index, family=family)


def namespace_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    try:
        target = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            pids.append(int(entry.name))
    return pids


def stop_processes(pids: list[int], grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if _alive(p)]
        if not alive:
            return
        pids = alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def delete_namespace(name: str) -> bool:
    """Stop the processes running in ``name`` and remove it; False if absent."""
    if not namespace_exists(name):
        return False
    from pyroute2 import netns

    stop_processes([p for p in namespace_pids(name) if p != os.getpid()])
    netns.remove(name)
    return True


def netns_command(namespace: str, cmd: Sequence[str] | str) -> list[str]:
    """``cmd`` (a list, or a string for ``sh -c``) wrapped in ``ip netns exec``."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    return ["ip", "netns", "exec", namespace, *argv]


class Host:
    """A running host of a :class:`~kumoflow.net.network.Network`."""

    def __init__(self, plan: HostPlan, owner: Any = None):
        self.plan = plan
        self._owner = owner

    name = property(lambda self: self.plan.name)
    netns = property(lambda self: self.plan.netns)
    ifname = property(lambda self: self.plan.ifname)
    mac = property(lambda self: self.plan.mac)
    #: the first static address, e.g. ``IPv4Interface('10.0.0.1/24')`` (None: SLAAC only)
    interface = property(lambda self: self.plan.ip)
    #: every static address of eth0, in file order
    interfaces = property(lambda self: self.plan.addresses)

    @property
    def ip(self) -> str:
        """The host's first static address without prefix length, e.g. ``'10.0.0.1'``."""
        if self.plan.ip is None:
            raise NetError(f"host {self.name} has no static address (slaac: its address comes from "
                           "router advertisements; see Host.global_addresses())")
        return str(self.plan.ip.ip)

    def address(self, version: int) -> str:
        """The first static IPv4 (``version=4``) or IPv6 (6) address, without prefix length."""
        for ip in self.plan.addresses:
            if ip.version == version:
                return str(ip.ip)
        raise NetError(f"host {self.name} has no static IPv{version} address")

    def __repr__(self) -> str:
        shown = ", ".join(str(a) for a in self.plan.addresses) or "slaac"
        return f"Host({self.name!r}, netns={self.netns!r}, ip={shown!r})"

    def command(self, cmd: Sequence[str] | str) -> list[str]:
        return netns_command(self.netns, cmd)

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        check: bool = False,
        timeout: float | None = 60,
        capture_output: bool = True,
        text: bool = True,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the host and wait; output captured as text by default.

        ``cmd`` is an argv list, or a string run by ``sh -c``.
        """
        return subprocess.run(
            self.command(cmd),
            check=check,
            timeout=timeout,
            capture_output=capture_output,
            text=text,
            **kwargs,
        )

    def popen(self, cmd: Sequence[str] | str, **kwargs: Any) -> subprocess.Popen:
        """Start ``cmd`` in the host without waiting (a server, say). The
        network stops it on ``down`` if it is still running."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        proc = subprocess.Popen(self.command(cmd), **kwargs)
        if self._owner is not None:
            self._owner._started.append(proc)
        return proc

    # -- addresses the kernel has ---------------------------------------------

    def global_addresses(self, version: int | None = None) -> list[str]:
        """eth0's global addresses as the kernel has them now (static ones and
        those SLAAC made), without prefix length; IPv4 and IPv6, or one
        ``version``. Tentative addresses are left out."""
        proc = self.run(["ip", "-j", "addr", "show", "dev", self.ifname, "scope", "global"], check=True)
        found = []
        for link in json.loads(proc.stdout or "[]"):
            for info in link.get("addr_info", ()):
                family = {"inet": 4, "inet6": 6}.get(info.get("family"))
                if family and (version is None or family == version) and not info.get("tentative"):
                    found.append(str(ipaddress.ip_address(info["local"])))
        return found

    def slaac_address(self, prefix: str | None = None, timeout: float = 10.0) -> str:
        """Wait for an IPv6 address SLAAC gave eth0 (in ``prefix`` when given,
        e.g. ``"2001:db8:1::/64"``) and return it; NetError after ``timeout`` s."""
        static = {str(a.ip) for a in self.plan.addresses}
        network = ipaddress.ip_network(prefix) if prefix else None
        deadline = time.monotonic() + timeout
        while True:
            for address in self.global_addresses(6):
                if address not in static and (network is None or ipaddress.ip_address(address) in network):
                    return address
            if time.monotonic() > deadline:
                raise NetError(f"host {self.name}: no SLAAC address{' in ' + prefix if prefix else ''} "
                               f"after {timeout:g}s")
            time.sleep(0.1)

    # -- services --------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The host's files: ``run.log``, and an FRR host's configuration and logs."""
        from kumoflow.net.services import host_dir

        return host_dir(self.plan.topology, self.name)

    @property
    def run_log(self) -> Path:
        """Where the output of the host's ``run:`` command goes."""
        return self.directory / "run.log"

    def vtysh(self, *commands: str, check: bool = True, timeout: float = 30) -> str:
        """Run vtysh commands against the host's FRR daemons; their output."""
        from kumoflow.net.services import vtysh_argv

        if self.plan.frr is None:
            raise NetError(f"host {self.name} runs no FRR (no frr: in the topology)")
        argv = vtysh_argv(self.netns, self.directory)
        for cmd in commands:
            argv += ["-c", cmd]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise NetError(f"host {self.name}: vtysh {' '.join(commands)!r} -> {proc.returncode}: "
                           f"{(proc.stdout + proc.stderr).strip()}")
        return proc.stdout

    def vtysh_json(self, command: str) -> Any:
        """The parsed output of one ``... json`` vtysh command."""
        return json.loads(self.vtysh(command) or "{}")
