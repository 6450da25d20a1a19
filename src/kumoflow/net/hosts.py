"""Hosts: network namespaces, their addressing, and running commands in them.

A host is a named network namespace (``/run/netns/<name>``, the place
``ip netns`` uses) holding ``lo`` and one interface, ``eth0``. Commands run
through ``ip netns exec``, so they also see the per-namespace
``/etc/netns/<name>/`` files and ``/sys`` of the namespace, as with ``ip``.
"""

from __future__ import annotations

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


def configure_host(host: HostPlan) -> None:
    """Bring up ``lo`` and ``eth0`` (already moved in) with MAC, address and
    default route."""
    from pyroute2 import NetNS

    with NetNS(host.netns, flags=0) as ns:
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")
        found = ns.link_lookup(ifname=host.ifname)
        if not found:
            raise NetError(f"{host.ifname} is missing in namespace {host.netns}")
        index = found[0]
        ns.link("set", index=index, address=host.mac)
        kwargs: dict[str, Any] = {}
        if host.ip.version == 6:
            kwargs["flags"] = IFA_F_NODAD  # usable at once, not "tentative"
        ns.addr("add", index=index, address=str(host.ip.ip), prefixlen=host.ip.network.prefixlen, **kwargs)
        ns.link("set", index=index, state="up")
        if host.gateway is not None:
            family = 10 if host.gateway.version == 6 else 2
            ns.route("add", gateway=str(host.gateway), oif=index, family=family)


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
    #: the interface address, e.g. ``IPv4Interface('10.0.0.1/24')``
    interface = property(lambda self: self.plan.ip)

    @property
    def ip(self) -> str:
        """The host's address without prefix length, e.g. ``'10.0.0.1'``."""
        return str(self.plan.ip.ip)

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r}, ip={str(self.plan.ip)!r})"

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
