"""The emulator's router hosts: FRR peering over BGP, SLAAC from router
advertisements, dual-stack and loopback addresses, run: commands (root).

Every test brings a topology up under a fresh name (``unique_name``) on one
Open vSwitch bridge in standalone mode with no controller (a learning
switch), and the ``topo_name`` fixture removes whatever is left, pass or
fail. What is left is asked of the kernel, /proc and /run/frr directly, not
of the emulator's own code. BGP timers are short (``timers bgp 1 3``,
``timers connect 1``): a session is up in about a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import kumoflow
from kumoflow.net import NetError, Network, TopologyError, state
from kumoflow.net.plan import interface_prefix
from kumoflow.net.services import host_dir

pytestmark = [pytest.mark.root, pytest.mark.ovs]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SRC = str(Path(kumoflow.__file__).resolve().parents[1])
STRICT = os.environ.get("CI", "").lower() in {"1", "true", "yes", "on"} or \
    os.environ.get("KUMOFLOW_STRICT", "").lower() in {"1", "true", "yes", "on"}


@pytest.fixture
def needs_frr():
    """FRR installed, or the test skips (fails in CI, like the suite's markers)."""
    if os.access("/usr/lib/frr/bgpd", os.X_OK) and Path("/usr/bin/vtysh").exists():
        return
    message = "FRR is not installed (`make test` installs the frr package)"
    if STRICT:
        pytest.fail(f"requirement not met in CI, refusing to skip: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def topo_name(unique_name):
    name = unique_name("r")
    yield name
    try:
        Network.teardown(name)
    except Exception as exc:  # report, but never leave a failing teardown unseen
        print(f"teardown of {name}: {exc}", file=sys.stderr)
    state.remove(name)


def leftovers(name: str) -> list[str]:
    """What exists of topology ``name``: namespaces, links, bridges, FRR
    pathspaces and processes, host files; asked of the system directly."""
    prefix = interface_prefix(name) + "-"
    out = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    out += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"{name}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        ifname = line.split(":")[1].strip().split("@")[0]
        if ifname.startswith(prefix):
            out.append(f"link {ifname}")
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()
    out += [f"bridge {b}" for b in bridges if b.startswith(prefix)]
    frr = Path("/run/frr")
    out += [f"frr {p}" for p in (frr.iterdir() if frr.is_dir() else ()) if p.name.startswith(f"{name}-")]
    out += [f"process {pid} {cmd}" for pid, cmd in processes_mentioning(name)]
    out += [f"files {p}" for p in [host_dir(name, "x").parent] if p.exists()]
    return out


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if text in cmd or f"KUMOFLOW_TOPOLOGY={text}".encode() + b"\0" in env + b"\0":
            found.append((int(entry.name), cmd.strip()))
    return found


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def kumoflow_cli(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    code = (
        "import sys, kumoflow.cli as c; c.COMMAND_MODULES = ['kumoflow.net.cli']; "
        "sys.exit(c.main(sys.argv[1:]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": SRC})
    if check and proc.returncode != 0:
        raise AssertionError(f"kumoflow {' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_topology(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topo.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def bgp_config(asn: int, router_id: str, peer: str, peer_as: int, network: str) -> str:
    return textwrap.dedent(f"""\
        frr defaults traditional
        router bgp {asn}
         bgp router-id {router_id}
         no bgp ebgp-requires-policy
         timers bgp 1 3
         neighbor {peer} remote-as {peer_as}
         neighbor {peer} timers connect 1
         address-family ipv4 unicast
          network {network}
         exit-address-family
        """)


def learned(router, prefix: str) -> bool:
    routes = router.vtysh_json("show bgp ipv4 unicast json").get("routes", {})
    return prefix in routes


# -- BGP between two FRR hosts -------------------------------------------------------------


@pytest.mark.usefixtures("needs_frr")
def test_two_frr_hosts_peer_learn_loopbacks_and_route(topo_name, tmp_path):
    (tmp_path / "r2.conf").write_text(bgp_config(65002, "10.0.0.2", "10.0.0.1", 65001, "203.0.113.0/24"))
    r1_config = textwrap.indent(bgp_config(65001, "10.0.0.1", "10.0.0.2", 65002, "198.51.100.0/24"), " " * 16)
    path = write_topology(tmp_path, f"""\
        switches:
          - {{name: s1, fail_mode: standalone, controller: none}}
        hosts:
          - name: r1
            mac: "00:00:00:00:01:01"
            ip: 10.0.0.1/24
            loopback: 198.51.100.1/24
            frr:
              daemons: [bgpd]
              config: |
{r1_config}
          - name: r2
            mac: "00:00:00:00:01:02"
            ip: [10.0.0.2/24, "2001:db8::2/64"]
            loopback: [203.0.113.1/24, "2001:db8:ff::1/128"]
            frr: {{file: r2.conf}}
        links:
          - {{src: r1, dst: s1}}
          - {{src: r2, dst: s1}}
        """)
    net = Network.from_file(path, name=topo_name)
    net.up()
    try:
        r1, r2 = net.host("r1"), net.host("r2")
        # the daemons asked for, in the host's namespace, under FRR's pathspace of that namespace
        assert sorted(p.name for p in Path(f"/run/frr/{r1.netns}").glob("*.pid")) == ["bgpd.pid", "zebra.pid"]
        assert sorted(p.name for p in Path(f"/run/frr/{r2.netns}").glob("*.pid")) == [
            "bgpd.pid", "staticd.pid", "zebra.pid"]
        pid = int(Path(f"/run/frr/{r1.netns}/bgpd.pid").read_text())
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{r1.netns}").st_ino
        conf = r1.directory / "frr.conf"
        assert (conf.owner(), oct(conf.stat().st_mode & 0o777)) == ("frr", "0o640")
        for host in (r1, r2):
            sysctl = host.run(["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]).stdout
            assert sysctl.split() == ["1", "1"]
        # each learns the other's prefix over BGP, and zebra puts it in the kernel
        assert wait_until(lambda: learned(r1, "203.0.113.0/24") and learned(r2, "198.51.100.0/24")), (
            r1.vtysh("show bgp ipv4 unicast summary"))
        peer = r1.vtysh_json("show bgp ipv4 unicast summary json")["peers"]["10.0.0.2"]
        assert (peer["state"], peer["pfxRcd"]) == ("Established", 1)
        routes = r1.vtysh_json("show ip route json")
        assert routes["203.0.113.0/24"][0]["protocol"] == "bgp"
        [kernel] = json.loads(r1.run(["ip", "-j", "route", "show", "203.0.113.0/24"], check=True).stdout)
        assert (kernel["gateway"], kernel["protocol"]) == ("10.0.0.2", "bgp")
        # routed to the peer's loopback, and back to ours
        ping = r1.run(["ping", "-c1", "-W2", "-I", "198.51.100.1", "203.0.113.1"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # dual stack and an IPv6 loopback on r2
        addrs = r2.run(["ip", "-j", "addr"], check=True).stdout
        assert "2001:db8::2" in addrs and "2001:db8:ff::1" in addrs
        assert set(r2.global_addresses()) == {"10.0.0.2", "2001:db8::2"}
        # kumoflow exec HOST vtysh reaches this host's daemons
        out = kumoflow_cli("exec", "--topo", topo_name, "r2", "vtysh", "-c", "show bgp ipv4 unicast json")
        assert "198.51.100.0/24" in json.loads(out.stdout)["routes"]
        assert "vtysh.conf" not in out.stderr
    finally:
        net.down()
    assert leftovers(topo_name) == []


@pytest.mark.usefixtures("needs_frr")
def test_bgp_session_loss_withdraws_and_down_stops_daemons_by_pid(topo_name, tmp_path):
    r1 = json.dumps(bgp_config(65001, "10.0.0.1", "10.0.0.2", 65002, "192.0.2.0/24")
                    + "ip route 192.0.2.0/24 blackhole\n")
    r2 = json.dumps(bgp_config(65002, "10.0.0.2", "10.0.0.1", 65001, "10.0.0.0/24"))
    path = write_topology(tmp_path, f"""\
        switches: [{{name: s1, fail_mode: standalone, controller: none}}]
        hosts:
          - name: r1
            mac: "00:00:00:00:01:01"
            ip: 10.0.0.1/24
            frr:
              config: {r1}
          - name: r2
            mac: "00:00:00:00:01:02"
            ip: 10.0.0.2/24
            frr:
              config: {r2}
        links: [{{src: r1, dst: s1}}, {{src: r2, dst: s1}}]
        """)
    with Network.from_file(path, name=topo_name) as net:
        r1, r2 = net.host("r1"), net.host("r2")
        # a static blackhole route (staticd) makes r1's network statement announce
        assert wait_until(lambda: learned(r2, "192.0.2.0/24")), r2.vtysh("show bgp ipv4 unicast")
        bgpd = int(Path(f"/run/frr/{r1.netns}/bgpd.pid").read_text())
        os.kill(bgpd, signal.SIGKILL)   # r1's BGP dies: r2 withdraws after the hold time (3 s)
        assert wait_until(lambda: not learned(r2, "192.0.2.0/24"), timeout=10)
        zebra = int(Path(f"/run/frr/{r2.netns}/zebra.pid").read_text())
    assert leftovers(topo_name) == []
    assert not Path(f"/proc/{zebra}").exists() or \
        Path(f"/proc/{zebra}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"


# -- SLAAC -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("needs_frr")
def test_slaac_host_takes_its_address_and_route_from_frr_router_advertisements(topo_name, tmp_path):
    path = write_topology(tmp_path, """\
        switches: [{name: s1, fail_mode: standalone, controller: none}]
        hosts:
          - name: r1
            mac: "00:00:00:00:01:01"
            ip: [10.0.0.1/24, "2001:db8:1::1/64"]
            loopback: "2001:db8:ff::1/128"
            frr:
              daemons: []
              config: |
                interface eth0
                 ipv6 nd prefix 2001:db8:1::/64
                 ipv6 nd ra-interval 1
                 no ipv6 nd suppress-ra
          - {name: h1, mac: "02:00:00:00:00:01", slaac: true}
          - {name: h2, mac: "02:00:00:00:00:02", ip: [10.0.0.2/24, "2001:db8:1::2/64"], slaac: true}
          - name: h3
            mac: "02:00:00:00:00:03"
            ip: [10.0.0.3/24, "2001:db8:1::3/64"]
            gateway: ["2001:db8:1::1", 10.0.0.1]
        links:
          - {src: r1, dst: s1}
          - {src: h1, dst: s1}
          - {src: h2, dst: s1}
          - {src: h3, dst: s1}
        """)
    with Network.from_file(path, name=topo_name) as net:
        h1, h2, h3 = net.host("h1"), net.host("h2"), net.host("h3")
        # EUI-64 from the MAC: 02:00:00:00:00:01 -> 0000:00ff:fe00:0001
        assert h1.slaac_address("2001:db8:1::/64") == "2001:db8:1::ff:fe00:1"
        assert h2.slaac_address("2001:db8:1::/64") == "2001:db8:1::ff:fe00:2"
        assert set(h2.global_addresses(4)) == {"10.0.0.2"}
        route = json.loads(h1.run(["ip", "-j", "-6", "route", "show", "default"], check=True).stdout)
        assert route and route[0]["protocol"] == "ra" and route[0]["gateway"].startswith("fe80::")
        # r1's loopback, off the link: through the default route the advertisements gave
        ping = h1.run(["ping", "-6", "-c1", "-W2", "2001:db8:ff::1"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # a host without slaac: ignores the advertisements (only its static address and gateways)
        time.sleep(1.5)   # more than one RA interval
        assert set(h3.global_addresses(6)) == {"2001:db8:1::3"}
        [v6] = json.loads(h3.run(["ip", "-j", "-6", "route", "show", "default"], check=True).stdout)
        [v4] = json.loads(h3.run(["ip", "-j", "-4", "route", "show", "default"], check=True).stdout)
        assert (v6["gateway"], v4["gateway"]) == ("2001:db8:1::1", "10.0.0.1") and v6["protocol"] != "ra"
        ping = h3.run(["ping", "-6", "-c1", "-W2", "2001:db8:ff::1"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        with pytest.raises(NetError, match="no static address"):
            h1.ip  # noqa: B018
        assert "h1" not in net.ping_all().hosts   # ping_all takes the hosts with a static address
    assert leftovers(topo_name) == []


# -- run: ---------------------------------------------------------------------------------


def test_run_commands_start_after_up_and_stop_at_down(topo_name, tmp_path):
    (tmp_path / "index.html").write_text("hello from web\n")
    path = write_topology(tmp_path, """\
        switches: [{name: s1, fail_mode: standalone, controller: none}]
        hosts:
          - name: web
            mac: "00:00:00:00:00:80"
            ip: [10.0.0.80/24, "2001:db8::80/64"]
            run: 'echo started in $(pwd) as $KUMOFLOW_HOST; exec python3 -m http.server 8000 --bind ::'
          - name: h1
            mac: "00:00:00:00:00:01"
            ip: [10.0.0.1/24, "2001:db8::1/64"]
            run: [sh, -c, "sleep 600 & sleep 600; echo never"]
        links: [{src: web, dst: s1}, {src: h1, dst: s1}]
        """)
    net = Network.from_file(path, name=topo_name)
    net.up()
    try:
        web, h1 = net.host("web"), net.host("h1")
        # started in the topology file's directory, in the host's namespace
        assert wait_until(lambda: web.run(["ss", "-Hltn", "sport = :8000"]).stdout.strip()), web.run_log.read_text()
        for url in ("http://10.0.0.80:8000/index.html", "http://[2001:db8::80]:8000/index.html"):
            got = h1.run(["curl", "-sS", "--max-time", "5", url])
            assert got.stdout == "hello from web\n", got.stderr
        log = web.run_log.read_text()
        assert f"started in {tmp_path} as web" in log and "GET /index.html" in log
        record = json.loads((h1.directory / "run.pid").read_text())
        group = [pid for pid, _ in processes_mentioning(topo_name) if os.getpgid(pid) == record["pid"]]
        assert len(group) >= 3    # sh and its two sleeps, one process group
        # something else running in the host, started by someone else
        other = subprocess.Popen(["ip", "netns", "exec", h1.netns, "sleep", "600"], start_new_session=True)
    finally:
        net.down()
    # everything it started is gone; what it did not start was left to the namespace's removal
    assert processes_mentioning(topo_name) == []
    assert other.wait(timeout=5) == -signal.SIGTERM  # stopped with the namespace, as before
    assert leftovers(topo_name) == []


def test_run_never_signals_a_process_it_did_not_start(tmp_path, monkeypatch):
    from kumoflow.net import services

    monkeypatch.setenv("KUMOFLOW_RUN_DIR", str(tmp_path / "run"))
    decoy = subprocess.Popen(["sleep", "600"], start_new_session=True)   # its own process group
    try:
        directory = services.host_dir("lab", "h1")
        directory.mkdir(parents=True)
        # a pid file whose pid was reused by the decoy (another start time), in a namespace that is gone
        (directory / "run.pid").write_text(json.dumps({"pid": decoy.pid, "start": 1, "netns": "lab-h1"}))
        assert services.stop_run("lab", "h1") == []
        assert services.leftovers("lab", services.Names("lab")) == []
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()


def test_a_run_command_that_fails_fails_up_and_leaves_nothing(topo_name, tmp_path):
    path = write_topology(tmp_path, """\
        switches: [{name: s1, fail_mode: standalone, controller: none}]
        hosts:
          - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, run: "echo about to fail; exit 3"}
        links: [{src: h1, dst: s1}]
        """)
    net = Network.from_file(path, name=topo_name)
    with pytest.raises(NetError, match=r"host h1: run exited with status 3: about to fail"):
        net.up()
    assert leftovers(topo_name) == []
    assert state.read(topo_name) is None


# -- failures and crashes ---------------------------------------------------------------------


@pytest.mark.usefixtures("needs_frr")
def test_a_refused_frr_line_is_reported_in_the_file_before_anything_is_made(topo_name, tmp_path):
    path = write_topology(tmp_path, """\
        switches: [{name: s1, fail_mode: standalone, controller: none}]
        hosts:
          - name: r1
            mac: "00:00:00:00:01:01"
            ip: 10.0.0.1/24
            frr:
              config: |
                router bgp 65001
                 neighbor 10.0.0.2 remote-ass 65002
        links: [{src: r1, dst: s1}]
        """)
    with pytest.raises(TopologyError) as info:
        Network.from_file(path, name=topo_name).up()
    assert str(info.value).startswith(f"{path}:9: hosts[0].frr.config: FRR refuses line 2 (r1): ")
    assert leftovers(topo_name) == []
    check = kumoflow_cli("up", str(path), "--check", check=False)
    assert check.returncode == 2 and f"{path}:9: hosts[0].frr.config" in check.stderr


CRASH_AFTER_FRR = """
import os, signal, sys
from kumoflow.net import Network, services
real = services.start_run
def die(host):
    os.kill(os.getpid(), signal.SIGKILL)   # FRR is up; no cleanup of any kind runs
services.start_run = die
Network.from_file(sys.argv[1], name=sys.argv[2]).up()
"""


@pytest.mark.usefixtures("needs_frr")
def test_kill_after_frr_started_then_down_removes_daemons(topo_name):
    proc = subprocess.run([sys.executable, "-c", CRASH_AFTER_FRR, str(EXAMPLES / "bgp.yaml"), topo_name],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p for p in leftovers(topo_name) if p.startswith("frr")]
    assert any("/usr/lib/frr/bgpd" in cmd for _, cmd in processes_mentioning(topo_name))
    kumoflow_cli("down", topo_name)   # by name: the record says what was made
    assert leftovers(topo_name) == []
    assert state.read(topo_name) is None


@pytest.mark.usefixtures("needs_frr")
def test_example_with_the_command_line(topo_name):
    example = str(EXAMPLES / "bgp.yaml")
    kumoflow_cli("up", example, "--name", topo_name)
    try:
        attached = Network.attach(topo_name)
        r1, h1 = attached.host("r1"), attached.host("h1")
        assert wait_until(lambda: learned(r1, "203.0.113.0/24")), r1.vtysh("show bgp ipv4 unicast summary")
        summary = kumoflow_cli("exec", "--topo", topo_name, "r1", "--", "vtysh", "-c",
                               "show bgp ipv4 unicast summary json")
        assert json.loads(summary.stdout)["peers"]["10.0.0.2"]["pfxRcd"] == 1
        ping = kumoflow_cli("exec", "--topo", topo_name, "r1", "--", "ping", "-c1", "-W2", "203.0.113.1")
        assert "1 received" in ping.stdout
        assert h1.slaac_address("2001:db8:1::/64") == "2001:db8:1:0:200:ff:fe00:1"
        page = kumoflow_cli("exec", "--topo", topo_name, "h1", "--", "curl", "-sS", "--max-time", "5",
                            "-o", "/dev/null", "-w", "%{http_code}", "http://10.0.0.80:8000/")
        assert page.stdout == "200"
    finally:
        kumoflow_cli("down", example, "--name", topo_name)
    assert leftovers(topo_name) == []
