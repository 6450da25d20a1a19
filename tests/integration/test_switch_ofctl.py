"""Open vSwitch's own management tool against kumoflow's passive listener.

Each test runs ``ovs-ofctl -O OpenFlow13 ... tcp:127.0.0.1:PORT`` against a
``kumoflow switch`` process whose three ports are veths to three host
namespaces, and -- wherever the output does not depend on the switch's own
ports and counters -- runs the same commands against an Open vSwitch bridge
(netdev datapath) and checks that ovs-ofctl shows the same thing for both.
"""

from __future__ import annotations

import re

import pytest

from test_switch_support import (SwitchProcess, flow_keys, hosts_on_veths, ofctl, parse_flows,
                                 parse_port_stats, parse_ports_desc, ping, sh, wait_until)

pytestmark = [pytest.mark.root, pytest.mark.ovs]

FLOWS = [
    "table=0,priority=100,ip,nw_dst=10.99.0.0/24,actions=output:2",
    "table=0,priority=90,in_port=1,dl_src=02:00:00:00:00:01,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,"
    "actions=goto_table:1",
    "table=0,priority=80,tcp,nw_src=10.0.0.1,tp_dst=80,actions=set_field:10.0.0.9->ip_dst,output:3",
    "table=0,priority=70,dl_vlan=10,actions=pop_vlan,output:1",
    "table=0,priority=60,udp6,ipv6_dst=fd00::/64,udp_dst=53,actions=drop",
    "table=0,cookie=0x1234,priority=50,arp,arp_tpa=10.99.0.2,actions=write_actions(output:2),goto_table:2",
    "table=1,priority=10,metadata=0x5/0xff,actions=CONTROLLER:128",
    "table=2,idle_timeout=30,hard_timeout=60,priority=5,actions=write_metadata:0x1/0x1,goto_table:3",
    "table=3,priority=7,udp,ip_ecn=1,actions=dec_ttl,push_vlan:0x8100,set_field:4196->vlan_vid,output:2",
]
FLOW_FILE = [
    "table=0,priority=40,icmp,icmp_type=8,actions=output:1",
    "table=0,priority=41,ipv6,ipv6_src=fd00::1,actions=output:2",
    "table=0,priority=42,in_port=3,dl_type=0x88cc,actions=CONTROLLER:65535",
    "table=4,cookie=0x99,priority=1,eth_type=0x0800,ip_dscp=46,actions=set_queue:0,output:1",
]
GROUPS = [
    "group_id=1,type=all,bucket=output:1,bucket=output:2",
    "group_id=2,type=select,bucket=weight:60,output:1,bucket=weight:40,output:2",
    "group_id=3,type=indirect,bucket=output:3",
    "group_id=4,type=fast_failover,bucket=watch_port:1,output:1,bucket=watch_port:2,output:2",
]
METERS = [
    "meter=1,kbps,burst,stats,bands=type=drop,rate=1000,burst_size=100",
    "meter=2,pktps,bands=type=drop,rate=100",
]


@pytest.fixture
def rig(unique_name, tmp_path):
    """(switch process, hosts, ovs bridge name)."""
    with hosts_on_veths(unique_name, 3, subnet="10.99.0", quiet=True) as hosts:
        switch = SwitchProcess(tmp_path, {i + 1: h[1] for i, h in enumerate(hosts)})
        bridge = unique_name("br")
        sh("ovs-vsctl", "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
           "fail_mode=secure", "protocols=OpenFlow13")
        try:
            switch.start()
            yield switch, hosts, bridge
        finally:
            switch.stop()
            sh("ovs-vsctl", "--if-exists", "del-br", bridge, check=False)
            if switch.proc is not None and switch.proc.returncode not in (0, None):
                print(switch.log()[-5000:])


def both(switch, bridge, *args):
    """Run the same ovs-ofctl command on the kumoflow switch and the OVS bridge."""
    return ofctl(switch.target, *args), ofctl(bridge, *args)


def test_add_flow_add_flows_and_dump_flows_match_open_vswitch(rig, tmp_path):
    switch, hosts, bridge = rig
    for flow in FLOWS:
        both(switch, bridge, "add-flow", flow)
    path = tmp_path / "flows.txt"
    path.write_text("# a comment\n" + "\n".join(FLOW_FILE) + "\n")
    both(switch, bridge, "add-flows", str(path))
    ours, theirs = both(switch, bridge, "dump-flows")
    assert len(parse_flows(ours)) == len(FLOWS) + len(FLOW_FILE)
    # the hosts are quiet (no IPv6) and send nothing: every counter is 0 on both
    assert flow_keys(ours, counters=True) == flow_keys(theirs, counters=True)
    assert {(f["n_packets"], f["n_bytes"]) for f in parse_flows(ours)} == {("0", "0")}
    # per-table dump and a filtered one
    ours, theirs = both(switch, bridge, "dump-flows", "table=0,ip")
    assert flow_keys(ours) == flow_keys(theirs) and len(parse_flows(ours)) >= 3
    for f in parse_flows(ofctl(switch.target, "dump-flows")):
        assert re.fullmatch(r"\d+(\.\d+)?s", f["duration"])


def test_mod_flows_and_del_flows_match_open_vswitch(rig):
    switch, hosts, bridge = rig
    for flow in FLOWS:
        both(switch, bridge, "add-flow", flow)
    steps = [
        ("mod-flows", "table=0,ip,nw_dst=10.99.0.0/24,actions=output:3"),           # non-strict
        ("mod-flows", "--strict", "table=0,priority=70,dl_vlan=10,actions=output:2"),
        ("mod-flows", "table=2,actions=output:1"),                                  # keeps timeouts
        ("del-flows", "table=0,tcp"),                                               # non-strict
        ("del-flows", "--strict", "table=0,priority=60,udp6,ipv6_dst=fd00::/64,udp_dst=53"),
        ("del-flows", "cookie=0x1234/-1"),
        ("del-flows", "table=1"),
        ("del-flows", "out_port=2"),
    ]
    for step in steps:
        if step[1] == "--strict":
            sh("ovs-ofctl", "-O", "OpenFlow13", "--strict", step[0], switch.target, step[2])
            sh("ovs-ofctl", "-O", "OpenFlow13", "--strict", step[0], bridge, step[2])
        else:
            both(switch, bridge, *step)
        ours, theirs = both(switch, bridge, "dump-flows")
        assert flow_keys(ours) == flow_keys(theirs), step
    both(switch, bridge, "del-flows")
    assert parse_flows(ofctl(switch.target, "dump-flows")) == []


def test_groups_match_open_vswitch(rig):
    switch, hosts, bridge = rig
    for group in GROUPS:
        both(switch, bridge, "add-group", group)
    ours, theirs = both(switch, bridge, "dump-groups")
    assert sorted(ours.splitlines()[1:]) == sorted(theirs.splitlines()[1:])
    assert len(ours.splitlines()) == 1 + len(GROUPS)
    # a flow using a group; then deleting the group deletes the flow
    both(switch, bridge, "add-flow", "priority=5,in_port=1,actions=group:1")
    both(switch, bridge, "del-groups", "group_id=1")
    ours, theirs = both(switch, bridge, "dump-groups")
    assert sorted(ours.splitlines()[1:]) == sorted(theirs.splitlines()[1:])
    assert "group_id=1," not in ours
    assert flow_keys(ofctl(switch.target, "dump-flows")) == flow_keys(ofctl(bridge, "dump-flows"))
    stats = ofctl(switch.target, "dump-group-stats")
    assert stats.count("group_id=") == len(GROUPS) - 1


def meter_stats(text: str) -> list[str]:
    """meter-stats output without its header line and the durations, one item a meter."""
    body = text.split("\n", 1)[1]
    return sorted(re.sub(r"duration:[\d.]+s", "", " ".join(body.split())).split("meter:")[1:])


def test_meters(rig):
    switch, hosts, bridge = rig
    for meter in METERS:
        ofctl(switch.target, "add-meter", meter)
    text = ofctl(switch.target, "dump-meters")
    flat = " ".join(text.split())
    assert "meter=1 kbps burst stats bands= type=drop rate=1000 burst_size=100" in flat
    assert "meter=2 pktps bands= type=drop rate=100" in flat
    for meter in METERS:            # the userspace datapath takes both: the same text back
        ofctl(bridge, "add-meter", meter)
    assert sorted(" ".join(ofctl(bridge, "dump-meters").split()).split("meter=")[1:]) == \
        sorted(flat.split("meter=")[1:])
    # the same statistics (all 0: no flow uses a meter), durations aside
    ours, theirs = (meter_stats(text) for text in both(switch, bridge, "meter-stats"))
    assert ours == theirs and len(ours) == len(METERS), (ours, theirs)
    ofctl(switch.target, "del-meter", "meter=2")
    assert "meter=2" not in ofctl(switch.target, "dump-meters")


def test_ports_desc_tables_and_port_counters(rig):
    switch, hosts, bridge = rig
    desc = parse_ports_desc(ofctl(switch.target, "dump-ports-desc"))
    assert sorted(desc) == ["1", "2", "3"]
    for i, (ns, port, ip, mac) in enumerate(hosts, 1):
        d = desc[str(i)]
        assert d["name"] == port
        assert d["addr"] == open(f"/sys/class/net/{port}/address").read().strip()
        assert d["config"] == "0" and d["state"] == "LIVE"
        assert d["speed"].startswith("10000 Mbps now")

    tables = ofctl(switch.target, "dump-tables")
    assert "table 0:" in tables
    n_tables = 1 + sum(int(b) - int(a) + 1 for a, b in re.findall(r"tables (\d+)\.\.\.(\d+): ditto", tables)) + \
        len(re.findall(r"^\s+table \d+:", tables, re.M)) - 1
    assert n_tables == 64

    # forwarding between host 1 and host 2 by flows ovs-ofctl installs
    ofctl(switch.target, "add-flow", "priority=10,in_port=1,actions=output:2")
    ofctl(switch.target, "add-flow", "priority=10,in_port=2,actions=output:1")
    before = parse_port_stats(ofctl(switch.target, "dump-ports"))
    assert ping(hosts[0][0], hosts[1][2], count=5)
    assert not ping(hosts[0][0], hosts[2][2], count=1, timeout=1)           # no flow towards port 3
    after = parse_port_stats(ofctl(switch.target, "dump-ports"))
    assert after["1"]["rx_pkts"] - before["1"]["rx_pkts"] >= 5
    assert after["2"]["tx_pkts"] - before["2"]["tx_pkts"] >= 5
    assert after["2"]["rx_pkts"] - before["2"]["rx_pkts"] >= 5
    assert after["1"]["tx_bytes"] > before["1"]["tx_bytes"]
    single = parse_port_stats(ofctl(switch.target, "dump-ports", "2"))
    assert list(single) == ["2"]

    flows = {f["match"]: f for f in parse_flows(ofctl(switch.target, "dump-flows"))}
    assert int(flows["in_port=1"]["n_packets"]) >= 5 and int(flows["in_port=2"]["n_bytes"]) > 0
    table0 = re.search(r"table 0:\s*\n\s*active=(\d+), lookup=(\d+), matched=(\d+)", ofctl(switch.target, "dump-tables"))
    assert table0 is not None, ofctl(switch.target, "dump-tables")
    active, lookup, matched = map(int, table0.groups())
    assert active == 2 and lookup >= 10 and matched >= 10 and lookup >= matched


def test_mod_port(rig):
    switch, hosts, bridge = rig
    ns, port = hosts[1][0], hosts[1][1]
    ofctl(switch.target, "add-flow", "priority=10,in_port=1,actions=output:2")
    ofctl(switch.target, "add-flow", "priority=10,in_port=2,actions=output:1")
    assert ping(hosts[0][0], hosts[1][2], count=2)

    def port2(predicate):
        desc = parse_ports_desc(ofctl(switch.target, "dump-ports-desc"))["2"]
        return desc if predicate(desc) else None

    ofctl(switch.target, "mod-port", "2", "down")
    desc = wait_until(lambda: port2(lambda d: "LINK_DOWN" in d["state"]), 5, what="port 2 link down")
    assert desc["config"] == "PORT_DOWN"
    assert ",UP" not in sh("ip", "link", "show", port).stdout.split(">")[0]       # the interface went down
    assert "NO-CARRIER" in sh("ip", "-n", ns, "link", "show", "eth0").stdout       # the host sees it
    assert not ping(hosts[0][0], hosts[1][2], count=1, timeout=1)

    ofctl(switch.target, "mod-port", "2", "up")
    desc = wait_until(lambda: port2(lambda d: d["state"] == "LIVE"), 5, what="port 2 live again")
    assert desc["config"] == "0"
    wait_until(lambda: "LOWER_UP" in sh("ip", "-n", ns, "link", "show", "eth0").stdout, 5,
               what="the host sees the carrier again")
    assert ping(hosts[0][0], hosts[1][2], count=2, timeout=3)

    for word, shown in (("no-receive", "NO_RECV"), ("no-forward", "NO_FWD"), ("no-packet-in", "NO_PACKET_IN")):
        ofctl(switch.target, "mod-port", "3", word)
        assert shown in parse_ports_desc(ofctl(switch.target, "dump-ports-desc"))["3"]["config"]
    ofctl(switch.target, "mod-port", "3", "receive")
    config = parse_ports_desc(ofctl(switch.target, "dump-ports-desc"))["3"]["config"]
    assert "NO_RECV" not in config and "NO_FWD" in config
    # no-flood: an OpenFlow 1.0 bit; ovs-ofctl sends it and the switch takes it
    out = ofctl(switch.target, "mod-port", "3", "no-flood", check=False)
    assert "error" not in out.lower(), out
    # a port that does not exist
    out = ofctl(switch.target, "mod-port", "9", "down", check=False)
    assert "couldn't find port `9'" in out, out              # as the switch's port description says
    assert switch.proc.poll() is None
