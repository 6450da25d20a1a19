"""Switch kind ``ovs``: an Open vSwitch bridge on the userspace datapath.

Each switch is one bridge, made in a single ``ovs-vsctl`` transaction:
``datapath_type=netdev`` (the userspace datapath; no openvswitch kernel
module needed), the planned OpenFlow versions, fail mode and datapath id,
in-band control off, every port with ``ofport_request`` set to its planned
number, and the controllers: one Controller row per target, with
``max_backoff`` set from the switch's ``max_backoff`` (seconds; OVS's own
default is 8 s), so the bridge retries a lost controller at least that
often (after 1 s, then doubling up to it). The bridge carries
``external_ids:kumoflow-topology=<topology>`` so a sweep finds it after a
crash. ``ovs-vsctl`` waits until ovs-vswitchd has applied the change, and
the ports' ``ofport``/``error`` columns are checked afterwards.

Open vSwitch before 3.1.3 (Debian 12 ships 3.1.0) creates a controller
connection with a maximum backoff of 8 s and an inactivity probe of 5 s
whatever the Controller row says, and applies the row's values only when
the bridge is reconfigured while the connection is up (fixed upstream by
"connmgr: Fix ofconn configuration on vswitchd startup", in 3.1.3 and
3.3.0). So :meth:`OvsSwitch.on_connected`, which
``Network.wait_connected`` calls once a bridge is connected, writes
``external_ids:kumoflow-connected`` on the bridge: ovs-vswitchd
reconfigures it, and the connection keeps the short backoff across later
disconnections for as long as the bridge keeps that controller. Until a
bridge has been connected once (and seen so), it backs off up to 8 s.

Egress rates (a switch's ``ports:``): each such port gets, in the same
transaction, a ``linux-htb`` QoS row (``other_config:max-rate``: the port
rate, in bit/s) with a Queue row per queue (``min-rate``, ``max-rate``);
``up`` then asks ovs-vswitchd whether it configured it (``ovs-appctl
qos/show``). On the netdev datapath it does: ovs-vswitchd puts a tc HTB
qdisc on the port's veth (class 1:fffe at the port rate, queue N as class
1:(N+1), in hex) and the frames it sends through its packet socket go through it,
so the port rate holds. But the userspace datapath does not hand the
queue a set_queue chose (the skb priority the kernel datapath sets) to
the kernel: every frame takes HTB's default class, queue 0's, and the
other queues' rates do nothing (measured with Open vSwitch 3.1.0; see
docs/switch-runtime.md, "Egress queues", and ../shared/notes/qos.md).

Open vSwitch itself (ovsdb-server and ovs-vswitchd) must be running; on a
machine without the kernel module it starts with
``/usr/share/openvswitch/scripts/ovs-ctl start --system-id=random``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import Any

from kumoflow.net.errors import SwitchError
from kumoflow.net.plan import PortPlan, SwitchPlan
from kumoflow.net.switches import SwitchKind

DATAPATH_TYPE = "netdev"
MARKER = "kumoflow-topology"
TIMEOUT = 20  # seconds, for every ovs-vsctl call (it blocks while vswitchd is away)
#: a tunnel type and the Open vSwitch interface type that speaks it (NVGRE: GRE, key VSID<<8 by the flows)
TUNNEL_TYPES = {"vxlan": "vxlan", "nvgre": "gre"}
#: the QoS type a port with egress rates gets (tc HTB on the port's Linux device)
QOS_TYPE = "linux-htb"
START_HINT = "start it with: /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random"


def _atom(value: str) -> str:
    """An OVSDB string atom, quoted unless it is plainly safe."""
    return value if re.fullmatch(r"[A-Za-z0-9_.-]+", value) else json.dumps(value)


def vsctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            ["ovs-vsctl", f"--timeout={TIMEOUT}", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT + 5,
        )
    except FileNotFoundError as exc:
        raise SwitchError(f"ovs-vsctl not found: install Open vSwitch (openvswitch-switch) and {START_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SwitchError(f"ovs-vsctl {' '.join(args[:2])} timed out: is ovs-vswitchd running? {START_HINT}") from exc
    if check and proc.returncode != 0:
        raise SwitchError(f"ovs-vsctl {' '.join(args[:2])}...: {proc.stderr.strip() or proc.returncode}")
    return proc


def qos_rows(port: PortPlan) -> list[str]:
    """ovs-vsctl arguments giving a port its egress rates (the switch's
    ``ports:``): a linux-htb QoS row (``max-rate``: the port rate) with a
    Queue row per queue (``min-rate``, ``max-rate``), in bit/s; nothing for
    a port without rates. A min rate of 0 is left out (Open vSwitch then
    takes its default, 12 kbit/s)."""
    config = port.config
    if config is None:
        return []
    n = port.number
    rows = ["--", "set", "Port", port.ifname, f"qos=@qos{n}", "--", f"--id=@qos{n}", "create", "QoS",
            f"type={QOS_TYPE}"]
    if config.rate_kbps is not None:
        rows.append(f"other-config:max-rate={config.rate_kbps * 1000}")
    rows += [f"queues:{qid}=@q{n}x{qid}" for qid, _, _ in config.queues]
    for qid, lo, hi in config.queues:
        rows += ["--", f"--id=@q{n}x{qid}", "create", "Queue"]
        if lo:
            rows.append(f"other-config:min-rate={lo * 1000}")
        if hi is not None:
            rows.append(f"other-config:max-rate={hi * 1000}")
    return rows


def _set(value: list) -> list:
    """The members of an OVSDB JSON set (a lone member is not wrapped)."""
    return value[1] if value and value[0] == "set" else [value]


class OvsSwitch(SwitchKind):
    name = "ovs"

    def check(self) -> None:
        if shutil.which("ovs-vsctl") is None:
            raise SwitchError(f"ovs-vsctl not found: install Open vSwitch and {START_HINT}")
        try:
            proc = subprocess.run(
                ["ovs-vsctl", "--timeout=5", "get", "Open_vSwitch", ".", "datapath_types"],
                capture_output=True, text=True, timeout=10,
            )
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0:
            why = proc.stderr.strip() if proc is not None else "timed out"
            raise SwitchError(f"Open vSwitch database is not reachable ({why}); {START_HINT}")
        try:
            appctl = subprocess.run(
                ["ovs-appctl", "--timeout=5", "-t", "ovs-vswitchd", "version"],
                capture_output=True, text=True, timeout=10,
            )
            running = appctl.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            running = False
        if not running:
            raise SwitchError(f"ovs-vswitchd is not running; {START_HINT}")
        if DATAPATH_TYPE not in proc.stdout:
            raise SwitchError(f"this ovs-vswitchd has no {DATAPATH_TYPE} datapath (has {proc.stdout.strip()})")

    def up(self, switch: SwitchPlan) -> dict[str, Any]:
        br = switch.bridge
        args = [
            "add-br", br, "--",
            "set", "Bridge", br,
            f"datapath_type={DATAPATH_TYPE}",
            f"protocols={','.join(switch.protocols)}",
            f"fail_mode={switch.fail_mode}",
            f"other-config:datapath-id={switch.dpid:016x}",
            "other-config:disable-in-band=true",
            f"external_ids:{MARKER}={_atom(switch.topology)}",
            f"external_ids:kumoflow-switch={_atom(switch.name)}",
        ]
        for port in switch.ports:
            args += ["--", "add-port", br, port.ifname,
                     "--", "set", "Interface", port.ifname, f"ofport_request={port.number}", *qos_rows(port)]
        for tunnel in switch.tunnels:  # a hypervisor's: see kumoflow.net.ovs_underlay
            args += ["--", "add-port", br, tunnel.name, "--", "set", "Interface", tunnel.name,
                     f"type={TUNNEL_TYPES[tunnel.type]}", f"options:remote_ip={tunnel.remote_ip}",
                     "options:key=flow", f"options:egress_pkt_mark={switch.tunnel_mark}",
                     f"ofport_request={tunnel.number}"]
        refs = []
        for i, target in enumerate(switch.controllers):
            refs.append(f"@c{i}")
            args += ["--", f"--id=@c{i}", "create", "Controller", f"target={_atom(target)}",
                     f"max_backoff={switch.max_backoff * 1000}"]
        if refs:
            args += ["--", "set", "Bridge", br, f"controller={','.join(refs)}"]
        vsctl(*args)
        self._check_ports(switch)
        self._check_qos(switch)
        return {"bridge": br}

    def _check_qos(self, switch: SwitchPlan) -> None:
        """ovs-vswitchd took each port's QoS (``ovs-appctl qos/show``): the
        database accepts any type, vswitchd may refuse it (logging why)."""
        for port in switch.ports:
            if port.config is None:
                continue
            try:
                shown = subprocess.run(["ovs-appctl", f"--timeout={TIMEOUT}", "qos/show", port.ifname],
                                       capture_output=True, text=True, timeout=TIMEOUT + 5)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SwitchError(f"switch {switch.name}: port {port.ifname}: ovs-appctl qos/show: {exc}") from exc
            first = (shown.stdout or shown.stderr).strip().splitlines()[:1]
            if shown.returncode != 0 or not first or QOS_TYPE not in first[0]:
                raise SwitchError(f"switch {switch.name}: port {port.ifname}: Open vSwitch did not configure its "
                                  f"{QOS_TYPE} QoS ({first[0] if first else 'no answer'}; see ovs-vswitchd.log)")

    def _check_ports(self, switch: SwitchPlan) -> None:
        ports = [*switch.ports, *(PortPlan(t.number, t.name) for t in switch.tunnels)]
        if not ports:
            return
        proc = vsctl("--format=json", "--columns=name,ofport,error", "list", "Interface",
                     *(p.ifname for p in ports))
        rows = {row[0]: row for row in json.loads(proc.stdout)["data"]}
        for port in ports:
            name, ofport, error = rows.get(port.ifname, (port.ifname, -1, ["set", []]))
            if isinstance(error, str) and error:
                raise SwitchError(f"switch {switch.name}: port {port.ifname}: {error}")
            if ofport != port.number:
                raise SwitchError(
                    f"switch {switch.name}: port {port.ifname} got OpenFlow port {ofport}, "
                    f"not the requested {port.number}"
                )

    def connected(self, switches: list[SwitchPlan]) -> dict[str, bool]:
        if not switches:
            return {}
        bridges = json.loads(vsctl("--format=json", "--columns=name,controller", "list", "Bridge",
                                   *(s.bridge for s in switches)).stdout)["data"]
        controllers = json.loads(vsctl("--format=json", "--columns=_uuid,is_connected", "list",
                                       "Controller").stdout)["data"]
        up = {uuid[1] for uuid, is_connected in controllers if is_connected is True}
        by_bridge = {name: {u[1] for u in _set(ref)} for name, ref in bridges}
        return {s.name: bool(by_bridge.get(s.bridge, set()) & up) for s in switches}

    def on_connected(self, switches: list[SwitchPlan]) -> None:
        """Make ovs-vswitchd reconfigure these (connected) bridges, so their
        live controller connections take the Controller rows' max_backoff
        (see the module docstring); ovs-vsctl returns once it has."""
        args: list[str] = []
        stamp = f"{time.time():.6f}"
        for switch in switches:
            args += ["--", "set", "Bridge", switch.bridge, f"external_ids:kumoflow-connected={_atom(stamp)}"]
        if args:
            vsctl(*args[1:], check=False)

    def down(self, record: dict[str, Any]) -> list[str]:
        bridge = record.get("bridge")
        if not bridge or bridge not in self._bridges():
            return []
        vsctl("--if-exists", "del-br", bridge)
        return [f"ovs bridge {bridge}"]

    def _bridges(self, topology: str | None = None) -> list[str]:
        if shutil.which("ovs-vsctl") is None:
            return []
        if topology is None:
            return vsctl("list-br").stdout.split()
        proc = vsctl("--bare", "--columns=name", "find", "Bridge", f"external_ids:{MARKER}={_atom(topology)}")
        return proc.stdout.split()

    def sweep(self, topology: str, prefix: str) -> list[str]:
        removed = []
        for bridge in self._bridges(topology):
            vsctl("--if-exists", "del-br", bridge)
            removed.append(f"ovs bridge {bridge}")
        return removed

    def leftovers(self, topology: str, prefix: str) -> list[str]:
        found = set(self._bridges(topology))
        found |= {b for b in self._bridges() if b.startswith(prefix + "-")}
        # ports of our veths left on some other bridge
        ports = []
        if shutil.which("ovs-vsctl") is not None:
            ports = [p for p in vsctl("--bare", "--columns=name", "list", "Port").stdout.split()
                     if p.startswith(prefix + "-")]
        return [f"ovs bridge {b}" for b in sorted(found)] + [f"ovs port {p}" for p in sorted(set(ports) - found)]
