"""The qos app on the emulator, end to end: a real controller process
(`--app qos --api`, which loads `tenants` itself), a QoS policy made through
the Neutron API, a kumoflow and an Open vSwitch (netdev) hypervisor, VMs in
namespaces measured by iperf3 and watched by tcpdump.

    hv1 (kumoflow)                        hv2 (ovs)
    q1  10.30.0.1   under the policy      q2  10.30.0.2   under the policy
    p1  10.30.0.11  no policy             p2  10.30.0.12  no policy

The policy: 10 Mbit/s each way (bandwidth_limit egress and ingress, burst
as Neutron's agents make it: 80 % of the rate) and DSCP 46 (EF) on what
the port sends. Each switch kind meters its own VM: q1 -> p1 and p1 -> q1
cross the kumoflow switch alone, q2 -> p2 and p2 -> q2 Open vSwitch alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from test_firewall_emulator import created, emulated, serve, wait_until

pytestmark = [pytest.mark.root, pytest.mark.ovs]

ADMIN = "qos-test-admin-token"
PROJECT = "shaped"
#: VM -> (MAC, address, hypervisor, its port there, under the policy)
VMS = {
    "q1": ("fa:16:3e:30:00:01", "10.30.0.1", "hv1", 1, True),
    "p1": ("fa:16:3e:30:00:11", "10.30.0.11", "hv1", 2, False),
    "q2": ("fa:16:3e:30:00:02", "10.30.0.2", "hv2", 1, True),
    "p2": ("fa:16:3e:30:00:12", "10.30.0.12", "hv2", 2, False),
}
IP = {vm: v[1] for vm, v in VMS.items()}
LIMIT_KBPS, DSCP = 10_000, 46
#: iperf3's run, and the seconds it leaves out of its figure at the start (the burst, the TCP ramp)
SECONDS, OMIT = 4, 1
IPERF_PORT = 5201


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qos")
    with emulated(tmp, ("qos",), make_resources, "qos", VMS, ADMIN,
                  args=("--set", "qos.interval=2", "--audit-interval", "1")) as net:
        for vm in VMS:
            net.servers.append(serve(net, vm, ["iperf3", "-s", "-p", str(IPERF_PORT)]))
        for vm in ("p1", "p2"):
            wait_until(lambda: pings(net, vm.replace("p", "q"), vm), 60, f"{vm} reached")
        yield net


def make_resources(api: httpx.Client) -> dict:
    ids = {}
    network = created(api.post("/v2.0/networks", json={"network": {
        "name": "qos", "project_id": PROJECT, "provider:network_type": "vxlan"}}), "network")["id"]
    subnet = created(api.post("/v2.0/subnets", json={"subnet": {
        "name": "qos", "project_id": PROJECT, "network_id": network, "cidr": "10.30.0.0/24", "ip_version": 4,
        "gateway_ip": "10.30.0.254"}}), "subnet")["id"]
    policy = created(api.post("/v2.0/qos/policies", json={"policy": {"name": "ten", "project_id": PROJECT}}),
                     "policy")["id"]
    ids["policy"] = policy
    for direction in ("egress", "ingress"):
        ids[direction] = created(api.post(f"/v2.0/qos/policies/{policy}/bandwidth_limit_rules", json={
            "bandwidth_limit_rule": {"max_kbps": LIMIT_KBPS, "direction": direction}}), "bandwidth_limit_rule")["id"]
    created(api.post(f"/v2.0/qos/policies/{policy}/dscp_marking_rules", json={
        "dscp_marking_rule": {"dscp_mark": DSCP}}), "dscp_marking_rule")
    for vm, (mac, ip, _, _, shaped) in VMS.items():
        ids[vm] = created(api.post("/v2.0/ports", json={"port": {
            "name": vm, "project_id": PROJECT, "network_id": network, "mac_address": mac,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}], "port_security_enabled": False,
            "qos_policy_id": policy if shaped else None}}), "port")["id"]
    return ids


def pings(net, src: str, dst: str) -> bool:
    return net[src].run(["ping", "-c", "1", "-W", "1", IP[dst]], timeout=10).returncode == 0


def iperf(net, client: str, server: str) -> float:
    """TCP from client to server: the rate the server received, Mbit/s, in iperf3's own figure."""
    done = net[client].run(["iperf3", "-c", IP[server], "-p", str(IPERF_PORT), "-t", str(SECONDS), "-O", str(OMIT),
                            "-J"], timeout=SECONDS + 30)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6


@pytest.mark.parametrize("client, server, kind", [("q1", "p1", "kumoflow egress"), ("p1", "q1", "kumoflow ingress"),
                                                  ("q2", "p2", "ovs egress"), ("p2", "q2", "ovs ingress")])
def test_a_bandwidth_limit_holds_tcp_to_its_rate_each_way_on_both_switch_kinds(cloud, client, server, kind):
    mbps = iperf(cloud, client, server)
    print(f"{kind}: {mbps:.2f} Mbit/s under a {LIMIT_KBPS / 1000:g} Mbit/s limit", file=sys.stderr)
    assert abs(mbps - LIMIT_KBPS / 1000) <= LIMIT_KBPS / 1000 * 0.10, f"{kind}: {mbps:.2f} Mbit/s"


def test_unshaped_ports_are_not_limited(cloud):
    mbps = iperf(cloud, "p2", "p1")        # neither under the policy, across both switch kinds
    assert mbps > LIMIT_KBPS / 1000 * 1.5, mbps


@pytest.mark.parametrize("sender, receiver", [("q1", "p1"), ("q2", "p2")])
def test_dscp_is_marked_on_what_the_port_sends_as_the_receiver_sees_it(cloud, sender, receiver):
    capture = subprocess.Popen(["ip", "netns", "exec", cloud.host(receiver).netns, "tcpdump", "-l", "-n", "-v",
                                "-c", "3", "-i", "eth0", f"icmp and src host {IP[sender]}"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(1)        # tcpdump listening
        assert cloud[sender].run(["ping", "-c", "3", "-i", "0.2", IP[receiver]], timeout=20).returncode == 0
        out, _ = capture.communicate(timeout=10)
    finally:
        capture.kill()
        capture.wait(timeout=10)
    marks = [line for line in out.splitlines() if "tos 0x" in line]
    assert len(marks) == 3 and all(f"tos {DSCP << 2:#x}" in line for line in marks), out


def test_the_policy_s_usage_counts_what_its_meters_saw_and_dropped(cloud):
    before = usage(cloud)["bytes"]
    iperf(cloud, "q2", "p2")
    wait_until(lambda: usage(cloud)["bytes"] >= before + SECONDS * LIMIT_KBPS * 1000 / 8, 15, "meter counters polled")
    [egress] = [r for r in usage(cloud)["rules"] if r["rule_id"] == cloud.ids["egress"]]
    assert egress["direction"] == "egress" and egress["dropped_packets"] > 0, egress     # TCP probes past the limit
    qos = cloud.api.get(f"/v2.0/ports/{cloud.ids['q2']}/qos").json()["qos"]
    assert (qos["qos_policy_id"], qos["dscp_mark"], qos["egress"]["burst_kbits"]) == \
        (cloud.ids["policy"], DSCP, LIMIT_KBPS * 8 // 10)


def test_the_meters_stay_as_installed_across_audits(cloud):
    """Each switch reads its meters back as they were sent: an audit a second finds nothing to change."""
    def counts() -> dict:
        text = cloud.api.get("/metrics").text
        return dict(line.rsplit(" ", 1) for line in text.splitlines()
                    if line.startswith(("kumoflow_meter_mods_total{", "kumoflow_reconcile_pending{")))
    before = counts()
    time.sleep(3)
    after = counts()
    assert before == after and len(after) == 4, (before, after)
    assert {v for k, v in after.items() if k.startswith("kumoflow_reconcile_pending")} == {"0.0"}, after
    assert all(float(v) >= 2 for k, v in after.items() if k.startswith("kumoflow_meter_mods")), after   # q's two


def usage(cloud) -> dict:
    return cloud.api.get(f"/v2.0/qos/policies/{cloud.ids['policy']}/usage").json()["usage"]
