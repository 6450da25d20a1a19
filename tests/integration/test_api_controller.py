"""The northbound API of a real `kumoflow controller --api 127.0.0.1:0`
process: the address it reports, tokens, errors, metrics; and, with root and
Open vSwitch, the SDN view of the emulated mesh (examples/mesh.yaml: three
kumoflow switches and two Open vSwitch bridges) through the API and through
`kumoflow show` / `kumoflow dump-flows`, checked against what ovs-ofctl reads
from the switches themselves.

Waits are bounded polls on conditions; nothing asserts how fast anything is.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumoflow.net import Network

from controller_process import SRC, ControllerProcess
from test_fabric_emulator import EXAMPLES, Fabric, parse_flows, parse_groups, wait_until


def api_controller(tmp_path, apps=("fabric",), *args: str) -> ControllerProcess:
    return ControllerProcess(apps=apps, log=tmp_path / "controller.log",
                             args=("--api", "127.0.0.1:0", "--admin-token-file", str(tmp_path / "admin-token"),
                                   *args))


def metric_samples(text: str) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def kumoflow(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kumoflow.cli", *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"})


def test_a_controller_process_serves_the_api_on_the_port_it_reports(tmp_path):
    controller = api_controller(tmp_path, ("l2",)).start()
    try:
        url = controller.status["api"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        token_file = tmp_path / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/openapi.json").json()["info"]["title"] == "kumoflow"
            r = c.get("/sdn/switches")
            assert r.status_code == 401 and r.json()["NeutronError"]["type"] == "HTTPUnauthorized"
            admin = {"X-Auth-Token": token}
            assert c.get("/sdn/switches", headers=admin).json() == {"switches": []}
            issued = c.post("/v2.0/tokens", headers=admin, json={"token": {"project_id": "p1"}}).json()["token"]
            r = c.get("/sdn/hosts", headers={"X-Auth-Token": issued["token"]})
            assert r.status_code == 403 and r.json()["NeutronError"]["type"] == "HTTPForbidden"
            found = metric_samples(c.get("/metrics").text)
            assert found[("kumoflow_switches_connected", frozenset())] == 0
            assert found[("kumoflow_api_requests_total",
                          frozenset({"method": "GET", "route": "/sdn/switches", "status": "401"}.items()))] == 1
        shown = kumoflow("show", "switches", "--api", url, "--token-file", str(token_file), "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == {"switches": []}
        # a restart keeps the admin token (its file) and the issued tokens (the store)
        assert controller.stop() == 0
        controller.start()
        assert token_file.read_text().strip() == token
        with httpx.Client(base_url=controller.status["api"], timeout=30) as c:
            assert c.get("/sdn/hosts", headers={"X-Auth-Token": issued["token"]}).status_code == 403
            assert c.get("/sdn/hosts", headers={"X-Auth-Token": token}).status_code == 200
    finally:
        assert controller.stop() == 0


def test_a_public_api_address_is_refused_without_api_public(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
                           "--api", "0.0.0.0:0", "--admin-token-file", str(tmp_path / "t")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 2
    assert "--api-public" in proc.stderr
    assert not (tmp_path / "t").exists()


# --- the mesh, through the API -------------------------------------------------------------------


@pytest.fixture
def mesh(unique_name, tmp_path):
    controller = api_controller(tmp_path, ("fabric",), "--settle", "2")
    controller.start()
    net = Network.from_file(EXAMPLES / "mesh.yaml", name=unique_name("api"), fail_mode="secure",
                            controllers=[controller.target])
    try:
        net.up()
        net.wait_connected(60)
        fab = Fabric(net, controller, tmp_path / "controller.log")
        fab.token = (tmp_path / "admin-token").read_text().strip()
        fab.token_file = tmp_path / "admin-token"
        fab.url = controller.status["api"]
        yield fab
    finally:
        try:
            net.down()
        finally:
            status = controller.stop(signal.SIGTERM)
            lines = (tmp_path / "controller.log").read_text(errors="replace").splitlines()
            print("--- controller log (tail)", *lines[-40:], sep="\n", file=sys.stderr)
            assert status == 0


@pytest.mark.root
@pytest.mark.ovs
def test_the_mesh_seen_through_the_api_and_the_cli(mesh):
    fab = mesh
    admin = {"X-Auth-Token": fab.token}
    matrix = fab.all_pairs()
    assert matrix.ok, matrix
    c = httpx.Client(base_url=fab.url, headers=admin, timeout=60)

    # switches: every one, with the names Open vSwitch gives its bridges (a kumoflow switch: the same
    # name, which the emulator gives it with --name and it reports in its DESC reply)
    def switches():
        found = c.get("/sdn/switches").json()["switches"]
        return found if len(found) == 5 and all(s["settled"] and s["differences"] == 0 for s in found) else None
    found = wait_until(switches, timeout=30)
    assert found, c.get("/sdn/switches").json()
    assert [int(s["dpid"], 16) for s in found] == [1, 2, 3, 4, 5]
    by_dpid = {int(s["dpid"], 16): s for s in found}
    for name, plan in fab.switches.items():
        s = by_dpid[plan.dpid]
        assert s["name"] == plan.bridge, name
        ports = {p["port_no"]: p for p in s["ports"]}
        assert {p.number for p in plan.ports} <= set(ports), name
        assert all(ports[p.number]["up"] for p in plan.ports)

    # links: the nine cables between switches, each seen from both ends' ports
    links = c.get("/sdn/links").json()["links"]
    got = {frozenset({(int(l["a"]["dpid"], 16), l["a"]["port_no"]), (int(l["b"]["dpid"], 16), l["b"]["port_no"])})
           for l in links}
    want = {frozenset({(1, 2), (2, 1)}), frozenset({(2, 3), (3, 2)}), frozenset({(3, 4), (4, 3)}),
            frozenset({(4, 1), (1, 4)}), frozenset({(2, 13), (3, 12)}), frozenset({(5, 1), (1, 5)}),
            frozenset({(5, 2), (2, 5)}), frozenset({(5, 3), (3, 5)}), frozenset({(5, 4), (4, 5)})}
    assert got == want

    # hosts: h<i> on port 100+i of its switch, with its address
    where = {"h1": 1, "h2": 1, "h3": 2, "h4": 3, "h5": 3, "h6": 4}
    hosts = {h["mac"]: h for h in c.get("/sdn/hosts").json()["hosts"]}
    for i in range(1, 7):
        h = hosts[f"00:00:00:00:00:0{i}"]
        assert (int(h["dpid"], 16), h["port_no"]) == (where[f"h{i}"], 100 + i)
        assert f"10.0.0.{i}" in h["ips"]

    # flows and groups: what ovs-ofctl reads from each switch (counters aside)
    for name, plan in fab.switches.items():
        def same_flows():
            api = parse_flows("\n".join(" " + f["text"] for f in c.get(f"/sdn/switches/{plan.dpid}/flows").json()["flows"]))
            ofctl = fab.flows(name)
            return {f.identity for f in api} == {f.identity for f in ofctl} or None
        assert wait_until(same_flows, timeout=20), name
        groups = c.get(f"/sdn/switches/{plan.dpid}/groups").json()["groups"]
        assert parse_groups("\n".join(g["text"] for g in groups)) == fab.groups(name), name
        diff = c.get(f"/sdn/switches/{plan.dpid}/diff").json()
        assert diff["ready"] and diff["in_sync"], diff
        ports = c.get(f"/sdn/switches/{plan.dpid}").json()["switch"]["ports"]
        assert all(p["counters"] is not None for p in ports if p["port"] != "LOCAL")

    # the CLI, as a person would run it
    base = ("--api", fab.url, "--token-file", str(fab.token_file))
    out = kumoflow("show", "switches", *base)
    assert out.returncode == 0, out.stderr
    for plan in fab.switches.values():
        assert f"{plan.dpid:#x}" in out.stdout
    out = kumoflow("show", "hosts", *base, "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)["hosts"]) == 6
    out = kumoflow("show", "links", *base)
    assert out.returncode == 0 and out.stdout.count("<->") == 9
    s3 = fab.switches["s3"]
    out = kumoflow("dump-flows", s3.bridge, *base)           # an Open vSwitch bridge, by name
    assert out.returncode == 0, out.stderr
    assert {f.identity for f in parse_flows(out.stdout)} == {f.identity for f in fab.flows("s3")}
    out = kumoflow("show", "flows", "0x1", *base)
    assert out.returncode == 0 and "flows of 0x1" in out.stdout and "fabric" in out.stdout

    # a project token sees none of it; no token is 401
    issued = c.post("/v2.0/tokens", json={"token": {"project_id": "tenant-a"}}).json()["token"]
    assert httpx.get(f"{fab.url}/sdn/switches", headers={"X-Auth-Token": issued["token"]}).status_code == 403
    assert httpx.get(f"{fab.url}/sdn/switches").status_code == 401
    out = kumoflow("show", "hosts", "--api", fab.url, "--token", issued["token"])
    assert out.returncode == 1 and "403" in out.stderr

    # metrics
    found = metric_samples(httpx.get(f"{fab.url}/metrics", timeout=60).text)

    def value(name, **labels):
        return found[(name, frozenset(labels.items()))]

    assert value("kumoflow_switches_connected") == 5
    assert value("kumoflow_links") == 9 and value("kumoflow_hosts") == 6
    for plan in fab.switches.values():
        dpid = f"{plan.dpid:016x}"
        assert value("kumoflow_packet_ins_total", dpid=dpid) > 0          # LLDP at least
        assert value("kumoflow_flow_mods_total", dpid=dpid) > 0
        assert value("kumoflow_reconcile_runs_total", dpid=dpid) > 0
        assert value("kumoflow_reconcile_pending", dpid=dpid) == 0
    for i, dpid in ((1, 1), (3, 2), (6, 4)):
        port = [s for s in found if s[0] == "kumoflow_port_rx_packets_total"
                and dict(s[1])["dpid"] == f"{dpid:016x}" and dict(s[1])["port"] == str(100 + i)]
        assert port and found[port[0]] > 0, (i, dpid)   # the host pinged through it
    assert value("kumoflow_api_requests_total", method="GET", route="/sdn/switches", status="403") == 1
    c.close()



# --- a kumoflow switch found by its name ----------------------------------------------------------

NAMED_TOPOLOGY = """\
hosts:
  - {name: h1, mac: "fa:16:3e:00:00:71", ip: 10.71.0.5/24}
  - {name: h2, mac: "fa:16:3e:00:00:72", ip: 10.71.0.6/24}
switches:
  - {name: s1, kind: kumoflow, dpid: 0x71}
links:
  - {src: h1, dst: s1, dst_port: 3}
  - {src: h2, dst: s1, dst_port: 4}
"""


@pytest.mark.root
def test_a_port_bound_to_a_kumoflow_switch_by_its_name_turns_active(tmp_path, unique_name):
    """The emulator starts `kumoflow switch --name <prefix>-s1`; the switch reports the name in its
    DESC reply; the API finds the switch by it (and by the YAML name s1 alone)."""
    from kumoflow.net.topology import parse_topology

    controller = api_controller(tmp_path, ("l2",))
    controller.start()
    net = Network(parse_topology(NAMED_TOPOLOGY, "named.yaml"), name=unique_name("nm"),
                  controllers=[controller.target])
    token = (tmp_path / "admin-token").read_text().strip()
    c = httpx.Client(base_url=controller.status["api"], headers={"X-Auth-Token": token}, timeout=30)
    try:
        network = c.post("/v2.0/networks", json={"network": {"name": "named"}}).json()["network"]["id"]
        c.post("/v2.0/subnets", json={"subnet": {"network_id": network, "cidr": "10.71.0.0/24"}})
        [plan] = net.plan.switches
        bridge = plan.bridge                                      # <prefix>-s1: what --name gets
        by_name = c.post("/v2.0/ports", json={"port": {"network_id": network, "binding:host_id": "s1",
                                                       "binding:profile": {"port_no": 3}}}).json()["port"]
        by_full_name = c.post("/v2.0/ports", json={"port": {
            "network_id": network, "binding:host_id": bridge,
            "binding:profile": {"interface": plan.ports[1].ifname}}}).json()["port"]
        wrong_port = c.post("/v2.0/ports", json={"port": {"network_id": network, "binding:host_id": "s1",
                                                          "binding:profile": {"port_no": 9}}}).json()["port"]
        assert by_name["status"] == by_full_name["status"] == "DOWN"          # no switch yet
        net.up()
        net.wait_connected(60)

        def status(port):
            return c.get(f"/v2.0/ports/{port['id']}").json()["port"]["status"]

        assert wait_until(lambda: status(by_name) == "ACTIVE" or None, timeout=30), status(by_name)
        assert status(by_full_name) == "ACTIVE" and status(wrong_port) == "DOWN"
        listed = c.get("/v2.0/ports", params={"status": "ACTIVE"}).json()["ports"]
        assert {p["id"] for p in listed} == {by_name["id"], by_full_name["id"]}
        [switch] = c.get("/sdn/switches", params={"counters": "false"}).json()["switches"]
        assert (switch["name"], switch["description"]["datapath"]) == (bridge, bridge)
        assert c.get("/sdn/switches/s1", params={"counters": "false"}).json()["switch"]["dpid"] == f"{0x71:016x}"
    finally:
        try:
            net.down()
        finally:
            c.close()
            assert controller.stop() == 0
