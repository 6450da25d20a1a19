"""Hypervisors, overlays and underlays in topology files: validation and plan (no root)."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from kumoflow.net.errors import TopologyError
from kumoflow.net.overlay_plan import nic_mac, router_mac
from kumoflow.net.plan import make_plan
from kumoflow.net.topology import parse_topology

ROUTED = """\
name: ov
underlay:
  sites:
    - {name: east, subnet: 192.168.10.0/24}
    - {name: west, subnet: 192.168.20.0/24, gateway: 192.168.20.254}
hypervisors:
  - {name: hv1, kind: ovs, vtep: 192.168.10.11, site: east}
  - {name: hv2, kind: kernel, vtep: 192.168.20.12, site: west, vni: 5001}
  - {name: hv3, kind: kumoflow, vtep: 192.168.20.13, site: west, dpid: 7}
overlays:
  - {name: tenants, type: vxlan}
  - {name: gre, type: nvgre, hypervisors: [hv3, hv1]}
hosts:
  - {name: vm1, mac: "02:00:00:00:00:01", ip: 10.0.0.1/24}
  - {name: vm2, mac: "02:00:00:00:00:02", ip: 10.0.0.2/24}
  - {name: vm3, mac: "02:00:00:00:00:03", ip: 10.0.0.3/24}
links:
  - {src: vm1, dst: hv1}
  - {src: vm2, dst: hv2}
  - {src: vm3, dst: hv3, dst_port: 5}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), "topo.yaml")
    return [str(issue) for issue in info.value.issues]


def test_model_of_a_routed_underlay():
    topo = parse_topology(ROUTED)
    assert [s.name for s in topo.underlay.sites] == ["east", "west"]
    assert topo.underlay.sites[0].gateway == ipaddress.ip_address("192.168.10.1")  # the first address
    hv1, hv2, hv3 = topo.hypervisors
    assert (hv1.kind, str(hv1.vtep), hv1.site) == ("ovs", "192.168.10.11/24", "east")
    assert (hv2.kind, hv2.vni) == ("kernel", 5001)
    # the OpenFlow hypervisors are switches as well (dpid, controllers, overrides); the kernel one is not
    assert {s.name: s.dpid for s in topo.switches} == {"hv1": 1, "hv3": 7}
    assert [(o.name, o.type, o.hypervisors) for o in topo.overlays] == [
        ("tenants", "vxlan", ("hv1", "hv2", "hv3")), ("gre", "nvgre", ("hv1", "hv3"))]


def test_plan_names_numbers_and_next_hops():
    plan = make_plan(parse_topology(ROUTED))
    hv1, hv2, hv3 = plan.hypervisors
    # tunnel ports: named after the remote VTEP (and, Open vSwitch's names being global, the
    # local one after it), numbered by the remote's position
    assert [(t.number, t.name, t.remote) for t in hv1.tunnels] == [
        (1002, "vxlan-c0a8140c-c0a80a0b", "hv2"), (1003, "vxlan-c0a8140d-c0a80a0b", "hv3"),
        (2003, "nvgre-c0a8140d-c0a80a0b", "hv3")]
    assert [t.name[:15] for t in hv1.tunnels] == ["vxlan-c0a8140c-", "vxlan-c0a8140d-", "nvgre-c0a8140d-"]
    assert [(t.number, t.name) for t in hv3.tunnels] == [  # a kumoflow switch names its own ports
        (1001, "vxlan-c0a80a0b"), (1002, "vxlan-c0a8140c"), (2001, "nvgre-c0a80a0b")]
    assert [(t.number, t.name) for t in hv2.tunnels] == [(1001, "vxlan-c0a80a0b"), (1003, "vxlan-c0a8140d")]
    # the switches carry them, the ovs one with its packet mark
    switches = {s.name: s for s in plan.switches}
    assert switches["hv1"].tunnels == hv1.tunnels and switches["hv1"].tunnel_mark == hv1.mark != 0
    assert hv3.mark == 0 and switches["hv3"].tunnels == hv3.tunnels
    # names
    assert (hv1.bridge, hv1.underlay_bridge, hv1.nic, hv1.netns) == ("ov-hv1", "ov-hv1-u", "ov-hv1-ul", "")
    assert (hv2.bridge, hv2.netns, hv2.nic_in_netns) == ("br0", "ov-hv2", "ul")
    assert plan.underlay.netns == "ov-underlay" and plan.underlay.routed
    assert "ov-hv2" in plan.namespaces() and "ov-underlay" in plan.namespaces()
    assert {"ov-hv1-ul", "ov-hv1-u", "ov-hv2-ul", "ov-hv3-ul"} <= set(plan.root_ifnames())
    # next hops: across sites through the site's gateway, on a site directly
    gw_east, gw_west = ipaddress.ip_address("192.168.10.1"), ipaddress.ip_address("192.168.20.254")
    assert dict(hv1.routes) == {ipaddress.ip_address("192.168.20.12"): gw_east,
                                ipaddress.ip_address("192.168.20.13"): gw_east}
    assert dict(hv1.neighbors) == {gw_east: router_mac("ov", 1)}
    assert dict(hv2.neighbors) == {gw_west: router_mac("ov", 2), ipaddress.ip_address("192.168.20.13"): nic_mac("ov", 3)}
    # VM MTU: the underlay's less the largest tunnel overhead (VXLAN 50)
    assert {h.name: h.mtu for h in plan.hosts} == {"vm1": 1450, "vm2": 1450, "vm3": 1450}
    vm2_link = next(link for link in plan.links if link.b.node == "vm2")
    assert vm2_link.a.netns == "ov-hv2" and vm2_link.mtu == 1450  # the kernel hypervisor's port moves in
    # a kumoflow hypervisor has a namespace too: its VM port, its NIC (as ul) and its switch go there,
    # so its tunnel sockets are on the underlay, not on the root namespace's loopback
    assert (hv3.netns, hv3.nic_in_netns, switches["hv3"].netns) == ("ov-hv3", "ul", "ov-hv3")
    vm3_link = next(link for link in plan.links if link.b.node == "vm3")
    assert (vm3_link.a.netns, vm3_link.a.final_ifname) == ("ov-hv3", "ov-hv3-5")
    assert switches["hv1"].netns == "" and "ov-hv3" in plan.namespaces()


def test_vms_are_bound_to_their_switch_port_or_to_a_kernel_hypervisors_vtep():
    from kumoflow.net.binding import bindings

    plan = make_plan(parse_topology(ROUTED.replace('ip: 10.0.0.1/24}', 'ip: 10.0.0.1/24, port: p1}')
                                    .replace('ip: 10.0.0.2/24}', 'ip: 10.0.0.2/24, port: p2}')
                                    .replace('ip: 10.0.0.3/24}', 'ip: 10.0.0.3/24, port: p3}')))
    assert bindings(plan) == [("vm1", "p1", "0x1", 1), ("vm2", "p2", "vtep:192.168.20.12", None),
                              ("vm3", "p3", "0x7", 5)]


def test_switched_underlay_and_nvgre_mtu():
    plan = make_plan(parse_topology("""\
        underlay: {subnet: 10.99.0.0/24, mtu: 1600}
        hypervisors:
          - {name: a, vtep: 10.99.0.1}
          - {name: b, kind: kumoflow, vtep: 10.99.0.2}
        overlays: [{name: o, type: nvgre}]
        """))
    assert not plan.underlay.routed and plan.underlay.sites[0].gateway is None
    a, b = plan.hypervisors
    assert a.vm_mtu == 1600 - 42
    assert dict(a.routes) == {ipaddress.ip_address("10.99.0.2"): ipaddress.ip_address("10.99.0.2")}
    assert dict(a.neighbors) == {ipaddress.ip_address("10.99.0.2"): nic_mac(plan.name, 2)}
    assert [t.name for t in b.tunnels] == ["nvgre-0a630001"]  # a kumoflow switch's own names


BAD = """\
underlay:
  sites:
    - {name: east, subnet: 192.168.10.0/24}
    - {name: west, subnet: 192.168.20.0/24}
hypervisors:
  - {name: hv1, kind: xen, vtep: 192.168.10.11, site: east}       #1 unknown kind
  - {name: hv2, kind: kernel, vtep: 192.168.20.12, site: west, vni: 5001}
  - {name: hv3, vtep: 192.168.20.12, site: west}                  #2 duplicate underlay address
  - {name: hv4, vtep: 192.168.10.9, site: west}                   #3 outside its site's subnet
  - {name: hv5, vtep: 192.168.20.5, site: north}                  #4 unknown site
  - {name: hv6, kind: kernel, vtep: 192.168.20.6, site: west}     #5 no vni
  - {name: hv7, vtep: 192.168.10.1, site: east}                   #6 the gateway's address
overlays:
  - {name: t, type: nvgre, hypervisors: [hv2, hv7]}               #7 kernel cannot do nvgre
  - {name: u, type: geneve}                                       #8 not a tunnel type
"""


def test_every_bad_input_reported_at_once():
    lines = {n: i for i, line in enumerate(BAD.splitlines(), 1) for n in range(1, 9) if f"#{n} " in line}
    errors = errors_of(BAD)
    expected = [
        (lines[1], "hypervisors[0].kind: unknown hypervisor kind 'xen' (known: ovs, kumoflow, kernel)"),
        (lines[2], "hypervisors[2].vtep: underlay address 192.168.20.12 is already used by hypervisor 'hv2'"),
        (lines[3], "hypervisors[3].vtep: 192.168.10.9 is outside the subnet 192.168.20.0/24"),
        (lines[4], "hypervisors[4].site: unknown site 'north' (the underlay's sites: east, west)"),
        (lines[5], "hypervisors[5].vni: missing required field"),
        (lines[6], "hypervisors[6].vtep: underlay address 192.168.10.1 is already used by the gateway of site 'east'"),
        (lines[7], "overlays[0].hypervisors[0]: nvgre: a kernel hypervisor ('hv2') cannot terminate nvgre"),
        (lines[8], "overlays[1].type: 'geneve' is not a tunnel type (vxlan, nvgre)"),
    ]
    for line, start in expected:
        assert any(e.startswith(f"topo.yaml:{line}: {start}") for e in errors), (start, errors)
    assert len(errors) == len(expected), errors


@pytest.mark.parametrize("text, message", [
    ("hypervisors: [{name: a, vtep: 10.0.0.1}]\n", "topo.yaml:1: underlay: hypervisors need an underlay"),
    ("underlay: {subnet: 10.0.0.0/24, sites: []}\nhypervisors: [{name: a, vtep: 10.0.0.1}]\n",
     "topo.yaml:1: underlay: give subnet:"),
    ("underlay: {subnet: 10.0.0.1/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}]\n",
     "topo.yaml:1: underlay.subnet: '10.0.0.1/24' is not an IPv4 subnet"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2, site: x}]\n",
     "topo.yaml:2: hypervisors[0].site: a switched underlay (subnet:) has no sites"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2, vni: 5}]\n",
     "topo.yaml:2: hypervisors[0].vni: only a kernel hypervisor has a fixed VNI"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, kind: kernel, vtep: 10.0.0.2, vni: 5, "
     "controller: none}]\n", "topo.yaml:2: hypervisors[0].controller: a kernel hypervisor runs no OpenFlow"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}]\n"
     "overlays: [{name: o, type: vxlan}]\n", "topo.yaml:3: overlays[0]: an overlay joins at least two"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}, {name: b, vtep: 10.0.0.3}]\n"
     "overlays: [{name: o, type: vxlan}, {name: p, type: vxlan, hypervisors: [a, b]}]\n",
     "topo.yaml:3: overlays[1]: a and b already share a vxlan tunnel (overlay 'o')"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}]\n"
     "overlays: [{name: o, type: vxlan, hypervisors: [a, zz]}]\n",
     "topo.yaml:3: overlays[0].hypervisors[1]: unknown hypervisor 'zz'"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}]\n"
     "switches: [{name: s1}]\nlinks: [{src: a, dst: s1}]\n",
     "topo.yaml:4: links: 'a' is a hypervisor: it links to VMs (hosts) only"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}]\n"
     "hosts: [{name: v, mac: '02:00:00:00:00:01', ip: 1.1.1.1/24}]\nlinks: [{src: v, dst: a, dst_port: 1000}]\n",
     "topo.yaml:4: links: port 1000 of hypervisor 'a': VM ports are 1..999"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: underlay, vtep: 10.0.0.2}]\n",
     "topo.yaml:2: hypervisors[0].name: 'underlay' is reserved"),
    ("underlay: {subnet: 10.0.0.0/24}\nhypervisors: [{name: a, vtep: 10.0.0.2}, {name: b, vtep: 10.0.0.3}, "
     "{name: c, kind: kernel, vni: 1, vtep: 10.0.0.4}]\noverlays: [{name: o, type: vxlan}]\n",
     "topo.yaml:3: overlays[0]: ovs hypervisors a and b would both have a vxlan tunnel to c"),
    ("underlay: {sites: [{name: a, subnet: 10.0.0.0/24}, {name: b, subnet: 10.0.0.0/25}]}\n"
     "hypervisors: [{name: h, vtep: 10.0.0.2, site: a}]\n",
     "topo.yaml:1: underlay.sites[1].subnet: 10.0.0.0/25 overlaps site 'a'"),
])
def test_bad_overlay_input(text, message):
    errors = errors_of(text)
    assert any(e.startswith(message) for e in errors), errors


def test_vm_addresses_may_overlap_only_as_api_ports():
    text = """\
        underlay: {subnet: 10.0.0.0/24}
        hypervisors: [{name: a, vtep: 10.0.0.2}, {name: b, vtep: 10.0.0.3}]
        hosts:
          - {name: v1, mac: "02:00:00:00:00:01", ip: 172.16.0.1/24, port: red1}
          - {name: v2, mac: "02:00:00:00:00:02", ip: 172.16.0.1/24, port: blue1}
        links: [{src: v1, dst: a}, {src: v2, dst: b}]
        """
    assert [h.port for h in parse_topology(textwrap.dedent(text)).hosts] == ["red1", "blue1"]
    assert any("already used by hosts[0]" in e for e in errors_of(text.replace(", port: blue1", "")))


def test_the_plan_shows_tunnels():
    from kumoflow.net.show import plan_tables

    tables = {t.title: t for t in plan_tables(make_plan(parse_topology(ROUTED)))}
    tunnels = tables["tunnels"]
    assert tunnels.row_count == 8  # hv1: 2 vxlan + 1 nvgre, hv2: 2, hv3: 2 + 1
    names = list(tunnels.columns[2].cells)
    assert "vxlan-c0a8140c-c0a80a0b" in names and "vxlan-c0a80a0b" in names
    assert tables["hypervisors"].row_count == 3 and "underlay (namespace ov-underlay)" in tables
