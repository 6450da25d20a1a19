"""An Open vSwitch hypervisor's underlay side: a second bridge, its flows, routes and neighbours.

One ovs-vswitchd serves every emulated hypervisor, which is what the set-up
below works around (the measured pitfalls are in notes/overlays.md):

* The VM bridge (the switch of the topology, made by :mod:`.ovs`) holds the
  VM ports and the tunnel ports (``type=vxlan``, or ``type=gre`` for NVGRE:
  GRE with the key VSID<<8; ``options:key=flow``, so flows choose the
  VNI/VSID with ``set_field:tunnel_id``; ``options:egress_pkt_mark`` the
  hypervisor's mark, and no ``local_ip``).
* The underlay bridge ``<prefix>-<hv>-u`` holds the NIC (port 1) and, on
  its LOCAL port, the VTEP address (``noprefixroute``: the root namespace
  gets no route through it). Open vSwitch encapsulates towards a remote by
  its own route table; both VTEPs are local addresses of the root namespace,
  and Open vSwitch prefers the kernel's local routes to its own, so each
  remote gets a route ``ovs/route/add REMOTE/32 BRIDGE [GATEWAY]
  pkt_mark=MARK`` with the mark of the tunnel ports.
* The outer destination MAC comes from ``tnl/neigh``: the remote's NIC MAC
  (on its site) or the site gateway's. Were it the remote's *bridge* MAC,
  Open vSwitch would pop the tunnel inside the datapath and nothing would
  cross the underlay. Open vSwitch also learns a neighbour from the outer
  source of every tunnel packet it receives, so frames leave with the NIC's
  MAC as source (flow: LOCAL -> set source MAC, NIC), and arrive with the
  bridge's MAC put back as destination (NIC, IPv4 to the VTEP -> set
  destination MAC, LOCAL), where Open vSwitch pops them. ARP for the VTEP
  goes to LOCAL as well; everything else from the NIC is dropped.

Removal: the bridges go with the topology's other bridges (both carry the
``kumoflow-topology`` marker); Open vSwitch keeps routes whose bridge is
gone, so :func:`sweep` deletes every user route through a bridge of the
topology (by its interface prefix), and only those. ``tnl/neigh`` entries
go with their bridge.
"""

from __future__ import annotations

import subprocess

from kumoflow.net.errors import NetError, SwitchError
from kumoflow.net.ovs import DATAPATH_TYPE, MARKER, _atom, vsctl
from kumoflow.net.overlay_plan import HypervisorPlan

TIMEOUT = 20
NIC_PORT = 1


def appctl(*args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(["ovs-appctl", f"--timeout={TIMEOUT}", *args], capture_output=True, text=True,
                              timeout=TIMEOUT + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SwitchError(f"ovs-appctl {' '.join(args)}: {exc}") from exc
    if check and proc.returncode != 0:
        raise SwitchError(f"ovs-appctl {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def flows(hv: HypervisorPlan, bridge_mac: str) -> list[str]:
    """The underlay bridge's flows (OpenFlow 1.0 text for ovs-ofctl)."""
    vtep = hv.vtep.ip
    return [
        f"priority=10,in_port=LOCAL,actions=mod_dl_src:{hv.mac},output:{NIC_PORT}",
        f"priority=10,in_port={NIC_PORT},ip,nw_dst={vtep},actions=mod_dl_dst:{bridge_mac},LOCAL",
        f"priority=10,in_port={NIC_PORT},arp,arp_tpa={vtep},actions=LOCAL",
        "priority=0,actions=drop",
    ]


def up(hv: HypervisorPlan, topology: str) -> None:
    from kumoflow.net.underlay import ip_batch

    br, mac = hv.underlay_bridge, hv.underlay_mac
    vsctl("add-br", br, "--", "set", "Bridge", br, f"datapath_type={DATAPATH_TYPE}", "fail_mode=secure",
          "protocols=OpenFlow10,OpenFlow13", f"other-config:hwaddr={mac}", "other-config:disable-in-band=true",
          f"external_ids:{MARKER}={_atom(topology)}", f"external_ids:kumoflow-underlay={_atom(hv.name)}",
          "--", "add-port", br, hv.nic, "--", "set", "Interface", hv.nic, f"ofport_request={NIC_PORT}")
    try:
        with open(f"/proc/sys/net/ipv6/conf/{br}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass
    ip_batch(None, [f"link set {br} up", f"addr add {hv.vtep} dev {br} noprefixroute"])
    proc = subprocess.run(["ovs-ofctl", "add-flows", br, "-"], input="\n".join(flows(hv, mac)) + "\n",
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise SwitchError(f"hypervisor {hv.name}: ovs-ofctl add-flows {br}: {proc.stderr.strip()}")
    for remote, via in hv.routes:
        gateway = [str(via)] if via != remote else []
        appctl("ovs/route/add", f"{remote}/32", br, *gateway, f"pkt_mark={hv.mark}")
    for ip, neighbor_mac in hv.neighbors:
        appctl("tnl/neigh/set", br, str(ip), neighbor_mac)


def routes(prefix: str) -> list[tuple[str, str, str]]:
    """Open vSwitch's user routes through a bridge named ``<prefix>-...``:
    (destination/plen, mark or '', bridge)."""
    try:
        text = appctl("ovs/route/show", check=False)
    except SwitchError:
        return []
    found = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "User:" or "dev" not in words:
            continue
        bridge = words[words.index("dev") + 1]
        mark = words[words.index("MARK") + 1] if "MARK" in words else ""
        if bridge.startswith(prefix + "-"):
            found.append((words[1], mark, bridge))
    return found


def sweep(prefix: str) -> list[str]:
    removed = []
    for destination, mark, bridge in routes(prefix):
        appctl("ovs/route/del", destination, *([f"pkt_mark={mark}"] if mark else []), check=False)
        removed.append(f"ovs route {destination} mark {mark or '-'} dev {bridge}")
    return removed


def leftovers(prefix: str) -> list[str]:
    return [f"ovs route {d} mark {m or '-'} dev {b}" for d, m, b in routes(prefix)]


def preflight(plan) -> None:
    """Open vSwitch's port names are global: a tunnel port of ours that
    exists already belongs to another topology with the same VTEPs."""
    wanted = [t.name for s in plan.switches if s.kind == "ovs" for t in s.tunnels]
    if not wanted:
        return
    present = set(vsctl("--bare", "--columns=name", "list", "Interface").stdout.split())
    taken = [name for name in wanted if name in present]
    if taken:
        raise NetError(f"Open vSwitch has tunnel ports of these names already (another topology with the same "
                       f"underlay addresses?): {', '.join(taken)}")
