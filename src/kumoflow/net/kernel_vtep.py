"""A ``kernel`` hypervisor: the Linux kernel's VXLAN in a namespace, no OpenFlow at all.

It is the interoperation peer of the OpenFlow hypervisors: what the wire
between them carries is standard VXLAN (RFC 7348, UDP 4789) or it does not
work. In the hypervisor's namespace (``<topology>-<hv>``):

* ``ul``, its underlay NIC, with the VTEP address, TX checksum offload off
  (the emulator turns offloads off on every underlay veth): with it on, the
  kernel hands Open vSwitch's AF_PACKET socket frames with a partial outer
  UDP checksum, which Open vSwitch drops silently (notes/overlays.md);
  routes to the other sites' subnets through the site's gateway, and static
  neighbours for its next hops;
* ``br0``, a Linux bridge, with the VM ports (moved in at creation) and
  ``vxlan0``: ``id VNI dstport 4789 local VTEP dev ul nolearning``, its
  forwarding database holding one all-zeros entry per remote VTEP -- the
  flood list: frames for MACs it does not know go to every remote (head-end
  replication), and nothing is learnt from what arrives. The bridge learns
  the remote VMs' MACs on vxlan0 as usual.

Its namespace goes at ``down`` like a host's, and everything in it with it.
"""

from __future__ import annotations

from kumoflow.net.overlay_plan import KERNEL_BRIDGE, KERNEL_NIC, KERNEL_VXLAN, VXLAN_PORT, HypervisorPlan, UnderlayPlan


def nic_commands(hv: HypervisorPlan, underlay: UnderlayPlan) -> list[str]:
    """``ip -batch`` lines giving a hypervisor in a namespace of its own its VTEP on ``ul``,
    routes to the other sites and its static neighbours (a kumoflow hypervisor's too)."""
    ip = ["link set lo up", f"link set {KERNEL_NIC} up", f"addr add {hv.vtep} dev {KERNEL_NIC}"]
    site = next(s for s in underlay.sites if s.name == hv.site)
    if underlay.routed:
        for other in underlay.sites:
            if other.name != hv.site:
                ip.append(f"route add {other.subnet} via {site.gateway} dev {KERNEL_NIC}")
    for neighbor, mac in hv.neighbors:
        ip.append(f"neigh replace {neighbor} lladdr {mac} dev {KERNEL_NIC} nud permanent")
    return ip


def commands(hv: HypervisorPlan, underlay: UnderlayPlan, ports: list[str]) -> tuple[list[str], list[str]]:
    """(``ip -batch`` lines, ``bridge -batch`` lines) that make the hypervisor."""
    ip = nic_commands(hv, underlay)
    ip += [f"link add {KERNEL_BRIDGE} type bridge", f"link set {KERNEL_BRIDGE} up"]
    remotes = sorted({t.remote_ip for t in hv.tunnels})
    fdb = []
    if remotes:
        ip += [f"link add {KERNEL_VXLAN} type vxlan id {hv.vni} dstport {VXLAN_PORT} local {hv.vtep.ip} "
               f"dev {KERNEL_NIC} nolearning",
               f"link set {KERNEL_VXLAN} mtu {hv.vm_mtu} master {KERNEL_BRIDGE} up"]
        fdb = [f"fdb append 00:00:00:00:00:00 dev {KERNEL_VXLAN} dst {remote}" for remote in remotes]
    ip += [f"link set {port} master {KERNEL_BRIDGE} up" for port in ports]
    return ip, fdb


def up(hv: HypervisorPlan, underlay: UnderlayPlan, ports: list[str]) -> None:
    from kumoflow.net.underlay import NO_IPV6, ip_batch, sysctls

    sysctls(hv.netns, NO_IPV6)
    ip, fdb = commands(hv, underlay, ports)
    ip_batch(hv.netns, ip)
    ip_batch(hv.netns, fdb, tool="bridge")
