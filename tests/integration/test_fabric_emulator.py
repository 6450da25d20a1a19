"""The `fabric` app (issue 11) on the emulator: real `kumoflow controller
--app fabric` processes driving real Open vSwitch bridges (userspace
datapath) and kumoflow switch processes that join real network namespaces.

The switches are the oracle: ``ovs-ofctl -O OpenFlow13`` reads flows, groups
and counters from both kinds (a kumoflow switch through its passive
listener). Every packet-in passes the classify table's miss entry or its LLDP
flow, so their packet counts are what reached the controller.

What the tests check (issue 11, section Tests):

1. every pair pings in the ring (6 Open vSwitch bridges) and in the k=4
   fat-tree (20 kumoflow switches) with no broadcast storm: the miss entries
   passed at most one packet per pair of hosts and none once all are known,
   LLDP packet-ins stay at about one per fabric port and second, and an ARP
   broadcast reaches every other host exactly once and never its sender;
2. a link cut while pinging every 10 ms reroutes (ring: the controller
   recomputes; mesh: fast-failover groups, kumoflow and Open vSwitch), pings
   go on succeeding, and the restored link carries the traffic again;
3. a controller killed with SIGKILL and restarted while two pings run every
   10 ms across both kinds of switch: no ping lost, the same flows and
   groups, flow durations older than the restart, nothing sent by the
   reconcilers, "reconciled: 0 added, 0 changed, 0 deleted" for every switch;
4. flows deleted with ``ovs-ofctl --strict del-flows`` (on both kinds) come
   back with the audit, a flow added by hand to the fabric's table goes;
5. a host whose cable moves to another switch is found there and reachable.

Waits are bounded polls on conditions; nothing asserts how fast anything is.
The controller runs at debug level: "reconciled: 0 added, ..." is logged at
debug when there is nothing to send.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kumoflow.net import Network, state

from controller_process import ControllerProcess

pytestmark = [pytest.mark.root, pytest.mark.ovs]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLASSIFY, FORWARD = 0, 40
FABRIC_COOKIE = 2          # the fabric's function number: the top byte of its cookies
NOBODY = "10.0.0.250"      # an address no host has: ARP requests for it are flooded and never answered


# --- waiting ------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.2):
    """Poll `predicate` until it returns something true (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def steady(read, timeout: float = 15.0, interval: float = 1.0):
    """`read()` once two readings `interval` apart agree (Open vSwitch updates
    flow counters lazily, about once a second)."""
    last = read()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        if now == last:
            return now
        last = now
    return last


# --- reading switches with ovs-ofctl ------------------------------------------------------


def ofctl(target: str, command: str, *args: str, options: tuple[str, ...] = ()) -> str:
    """`ovs-ofctl -O OpenFlow13 [options] command target args...`"""
    argv = ["ovs-ofctl", "-O", "OpenFlow13", *options, command, target, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class FlowLine:
    cookie: int
    duration: float
    table: int
    n_packets: int
    priority: int
    match: str        # "in_port=3,dl_src=00:00:00:00:00:01" ("" for none)
    actions: str
    text: str

    @property
    def fabric(self) -> bool:
        return self.cookie >> 56 == FABRIC_COOKIE

    @property
    def identity(self) -> tuple:
        """What the flow is, without its counters."""
        return self.cookie, self.table, self.priority, self.match, self.actions


def parse_flows(text: str) -> list[FlowLine]:
    flows = []
    for line in text.splitlines():
        if "n_packets=" not in line:
            continue
        head, _, actions = line.strip().partition(" actions=")
        fields = dict(part.split("=", 1) for part in head.split(", ") if "=" in part and "," not in part)
        last = head.split(", ")[-1]          # "priority=100,in_port=3,..." or "priority=0"
        found = re.search(r"priority=(\d+),?", last)
        match = last[found.end():] if found else last
        flows.append(FlowLine(
            cookie=int(fields.get("cookie", "0"), 16),
            duration=float(fields["duration"].rstrip("s")),
            table=int(fields.get("table", "0")),
            n_packets=int(fields["n_packets"]),
            priority=int(found.group(1)) if found else 32768,
            match=match,
            actions=actions,
            text=line.strip(),
        ))
    return flows


def parse_groups(text: str) -> dict[int, list[int]]:
    """group id -> the output port of each bucket, in bucket order."""
    groups = {}
    for line in text.splitlines():
        found = re.search(r"group_id=(\d+)", line)
        if found:
            groups[int(found.group(1))] = [int(p) for p in re.findall(r"output:(\d+)", line)]
    return groups


# --- a topology with its controller -------------------------------------------------------


class Fabric:
    """A topology of examples/ up under a unique name, its switches secure and
    connected to one `kumoflow controller --app fabric` process."""

    def __init__(self, net: Network, controller: ControllerProcess, log: Path) -> None:
        self.net = net
        self.controller = controller
        self.log = log        # the controller's log (a new file when a test restarts it)
        self.switches = {s.name: s for s in net.plan.switches}
        record = state.read(net.name) or {}
        self._listen = {s["name"]: s.get("listen") for s in record.get("switches", [])}

    # where ovs-ofctl reaches a switch: an OVS bridge by name, a kumoflow switch by its passive listener
    def target(self, switch: str) -> str:
        plan = self.switches[switch]
        if plan.kind == "ovs":
            return plan.bridge
        port, host = self._listen[switch].removeprefix("ptcp:").split(":")
        return f"tcp:{host}:{port}"

    def flows(self, switch: str, *filters: str) -> list[FlowLine]:
        return parse_flows(ofctl(self.target(switch), "dump-flows", *filters))

    def groups(self, switch: str) -> dict[int, list[int]]:
        return parse_groups(ofctl(self.target(switch), "dump-groups"))

    def tx_packets(self, switch: str, port: int) -> int:
        text = ofctl(self.target(switch), "dump-ports", str(port))
        found = re.search(r"tx pkts=(\d+)", text)
        assert found, text
        return int(found.group(1))

    def veth(self, switch: str, port: int) -> str:
        """The root-namespace veth end that is `port` of `switch`."""
        return self.net.plan.names.port(switch, port)

    def dpid(self, switch: str) -> int:
        return self.switches[switch].dpid

    def group_of(self, switch: str) -> int:
        """The fabric's group of the way to `switch` (the dpid, in the fabric's id block)."""
        return (FABRIC_COOKIE << 24) + self.dpid(switch)

    def packet_ins(self) -> dict[str, tuple[int, int]]:
        """switch -> (packets through the classify miss entry, LLDP frames), i.e.
        everything the switch sent to the controller."""
        counts = {}
        for name in self.switches:
            flows = self.flows(name, f"table={CLASSIFY}")
            miss = sum(f.n_packets for f in flows if f.priority == 0)
            lldp = sum(f.n_packets for f in flows if "dl_type=0x88cc" in f.match)
            counts[name] = (miss, lldp)
        return counts

    def misses(self) -> int:
        """Packets through the classify miss entries of all switches."""
        return sum(m for m, _ in self.packet_ins().values())

    def all_pairs(self, timeout: float = 60.0):
        """Ping every pair until all answer (the fabric needs LLDP rounds and
        the settle time first); the last matrix."""
        result = {}

        def attempt():
            result["matrix"] = self.net.ping_all(retries=1)
            return result["matrix"].ok

        wait_until(attempt, timeout=timeout, interval=0.5)
        return result["matrix"]

    def settled(self) -> bool:
        """Has the controller reconciled every switch in full (its settle time over)?"""
        text = self.log_text()
        return all(f"dpid={s.dpid:#x}: reconciled: " in text for s in self.switches.values())

    def wait_settled(self, timeout: float = 60.0) -> None:
        assert wait_until(self.settled, timeout=timeout), \
            f"not every switch was reconciled in full within {timeout:g}s"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def fabric(unique_name, tmp_path):
    """`fabric(example, *controller_args)` -> a running :class:`Fabric`. The
    controller logs at debug level into tmp_path; everything is torn down
    afterwards, whatever happened, and the controller must stop cleanly."""
    controllers: list[ControllerProcess] = []
    nets: list[Network] = []

    def make(example: str, *args: str) -> Fabric:
        log = tmp_path / f"controller{len(controllers)}.log"
        controller = ControllerProcess(apps=("fabric",), log=log, log_level="debug", args=args)
        controllers.append(controller)
        controller.start()
        net = Network.from_file(EXAMPLES / example, name=unique_name("fab"), fail_mode="secure",
                                controllers=[controller.target])
        nets.append(net)
        started = time.monotonic()
        net.up()
        net.wait_connected(60)
        print(f"{example}: up and connected in {time.monotonic() - started:.1f}s", file=sys.stderr)
        return Fabric(net, controller, log)

    yield make
    problems = []
    for net in nets:
        try:
            net.down()
        except Exception as exc:
            problems.append(f"teardown of {net.name}: {exc}")
            try:
                Network.teardown(net.name)
            except Exception as again:
                problems.append(f"teardown of {net.name} again: {again}")
    statuses = [controller.stop() for controller in controllers]
    for log in sorted(tmp_path.glob("controller*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if line[:2].isdigit() and " DEBUG " not in line]
        print(f"--- {log.name}, without debug lines (tail)", *lines[-40:], sep="\n", file=sys.stderr)
    assert not problems, problems
    assert all(s == 0 for s in statuses), f"controller exit status on SIGTERM: {statuses}"


# --- traffic ----------------------------------------------------------------------------


class Pinger:
    """`ping -i INTERVAL` from a host, its output in a file read while it runs."""

    def __init__(self, fab: Fabric, src: str, dst: str, path: Path, interval: float = 0.01) -> None:
        self.path = path
        self.dst = dst
        self._out = open(path, "w")
        self.proc = fab.net.host(src).popen(
            ["ping", "-n", "-D", "-O", "-i", str(interval), "-W", "1", fab.net.host(dst).ip],
            stdout=self._out, stderr=subprocess.STDOUT)

    def replies(self) -> list[int]:
        return [int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", self.path.read_text())]

    def last(self) -> int:
        replies = self.replies()
        return max(replies) if replies else 0

    def run_of_replies(self) -> int:
        """How many sequence numbers up to the newest reply answered, in a row."""
        got = set(self.replies())
        top = max(got, default=0)
        n = 0
        while top - n in got:
            n += 1
        return n

    def missing(self) -> list[int]:
        """Pings sent before the newest reply that got none (the last few,
        in flight when ping is stopped, are not lost)."""
        got = set(self.replies())
        return sorted(set(range(1, max(got, default=0))) - got)

    def duplicates(self) -> int:
        return self.path.read_text().count("(DUP!)")

    def stop(self) -> tuple[int, int]:
        """SIGINT (by PID); (transmitted, received) from ping's summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        text = self.path.read_text()
        found = re.search(r"(\d+) packets transmitted, (\d+) received", text)
        assert found, text[-2000:]
        return int(found.group(1)), int(found.group(2))


_ARP_LISTENER = r"""
import select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
target = socket.inet_aton(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in ready:
        break
    frame, addr = s.recvfrom(2048)
    if addr[2] != socket.PACKET_OUTGOING and frame[20:22] == b"\x00\x01" and frame[38:42] == target:
        n += 1
        print("got", flush=True)
print("count", n, flush=True)
"""

_ARP_SENDER = r"""
import socket, sys
ip, mac, target, count = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3], int(sys.argv[4])
arp = b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + socket.inet_aton(ip) + bytes(6) + socket.inet_aton(target)
frame = (b"\xff" * 6 + mac + b"\x08\x06" + arp).ljust(60, b"\x00")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(count):
    s.send(frame)
"""


def arp_broadcast_copies(net: Network, sender: str, count: int) -> dict[str, int]:
    """Send `count` ARP requests for NOBODY from `sender` (raw frames, so
    exactly `count`); how many copies each host received (the sender: its own
    frames coming back)."""
    listeners = {}
    for host in net.hosts:
        proc = subprocess.Popen(host.command([sys.executable, "-c", _ARP_LISTENER, NOBODY]), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        listeners[host.name] = proc
    lines: dict[str, list[str]] = {name: [] for name in listeners}

    def read(name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            lines[name].append(line.strip())

    readers = [threading.Thread(target=read, args=item, daemon=True) for item in listeners.items()]
    try:
        for t in readers:
            t.start()
        assert wait_until(lambda: all("ready" in lines[n] for n in listeners), timeout=30), lines
        host = net.host(sender)
        host.run([sys.executable, "-c", _ARP_SENDER, host.ip, host.mac, NOBODY, str(count)], check=True)
        others = [n for n in listeners if n != sender]
        # every other host has its copies (or the wait ends) ...
        wait_until(lambda: all(lines[n].count("got") >= count for n in others), timeout=20)
        time.sleep(1.0)    # ... and a second more for any duplicate to show up
    finally:
        for proc in listeners.values():
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in listeners.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in readers:
            t.join(5)
    copies = {}
    for name, got in lines.items():
        total = [line for line in got if line.startswith("count ")]
        assert total, f"{name}: ARP listener said {got}"
        copies[name] = int(total[-1].split()[1])
    return copies


# --- 1. all pairs, no storm ------------------------------------------------------------------


@pytest.mark.parametrize("example", ["ring.yaml", "fattree.yaml"])
def test_all_pairs_ping_without_a_storm(fabric, example):
    fab = fabric(example)
    started = time.monotonic()
    fab.wait_settled()
    matrix = fab.all_pairs()
    assert matrix.ok, str(matrix)
    print(f"{example}: every pair answered {time.monotonic() - started:.1f}s after connecting", file=sys.stderr)
    hosts = len(fab.net.hosts)

    # What reached the controller. The miss entry passes each host's first
    # frames (before its admission flow is in) and nothing else: bounded by
    # the hosts, not by time or traffic.
    misses = steady(fab.misses)
    counts = fab.packet_ins()
    print(f"{example}: packet-ins (classify miss, LLDP) per switch: {counts}", file=sys.stderr)
    assert misses <= hosts * hosts, counts
    # LLDP: about one frame a second per fabric port; a switch that forwarded
    # LLDP frames on, or a loop, would show far more.
    for name, (_, lldp) in counts.items():
        [flow] = [f for f in fab.flows(name, f"table={CLASSIFY}") if "dl_type=0x88cc" in f.match]
        ports = len(fab.switches[name].ports)
        assert lldp <= ports * (flow.duration + 5), (name, lldp, flow.text)

    # Everything learned: all pairs again and not one more packet-in from the miss entries.
    assert fab.net.ping_all(retries=1).ok
    after = steady(fab.misses)
    assert after == misses, (counts, fab.packet_ins())

    # A broadcast reaches every other host exactly once and never comes back.
    copies = arp_broadcast_copies(fab.net, "h1", 3)
    assert copies == {h.name: (0 if h.name == "h1" else 3) for h in fab.net.hosts}, copies


# --- 2. a link cut while pinging every 10 ms ----------------------------------------------


def ip_link(ifname: str, updown: str) -> None:
    subprocess.run(["ip", "link", "set", ifname, updown], check=True, capture_output=True, timeout=10)


@pytest.mark.parametrize("example, src, dst, cut, way", [
    # ring: h1 (s1) -> h3 (s3) goes s1 port 1 -> s2 -> s3, the only shortest way; the ring
    # has no loop-free alternate, so the controller recomputes the group (the other way round).
    # s1's own end of the link goes down.
    ("ring.yaml", "h1", "h3", ("s1", 1), ("s1", "s3", 1)),
    # mesh: h1 (s1, kumoflow) -> h6 (s4, Open vSwitch) over the direct link s1 port 4 -
    # s4 port 1, with a fast-failover backup through s5 on both switches. The far (Open
    # vSwitch) end goes down: the kumoflow switch sees its carrier go.
    ("mesh.yaml", "h1", "h6", ("s4", 1), ("s1", "s4", 4)),
], ids=["ring", "mesh"])
def test_a_link_cut_while_pinging_reroutes(fabric, tmp_path, example, src, dst, cut, way):
    fab = fabric(example)
    fab.wait_settled()
    assert fab.all_pairs().ok
    switch, towards, port = way
    group = fab.group_of(towards)
    assert fab.groups(switch)[group][0] == port, fab.groups(switch)
    veth = fab.veth(*cut)

    pinger = Pinger(fab, src, dst, tmp_path / "ping.txt")
    try:
        assert wait_until(lambda: pinger.run_of_replies() >= 50), pinger.path.read_text()[-2000:]
        ip_link(veth, "down")
        at_cut = pinger.last()
        # pings resume the other way, and keep succeeding
        assert wait_until(lambda: pinger.last() > at_cut + 100 and pinger.run_of_replies() >= 100, timeout=30), \
            pinger.path.read_text()[-2000:]
        assert wait_until(lambda: port not in fab.groups(switch)[group]), fab.groups(switch)

        # the link comes back: LLDP finds it and the shortest way uses it again
        ip_link(veth, "up")
        assert wait_until(lambda: fab.groups(switch)[group][:1] == [port], timeout=30), fab.groups(switch)
        before = fab.tx_packets(switch, port)
        assert wait_until(lambda: fab.tx_packets(switch, port) >= before + 100, timeout=30), \
            "pings do not leave by the restored link"
        mark = pinger.last()
        assert wait_until(lambda: pinger.last() > mark + 100 and pinger.run_of_replies() >= 100, timeout=30)
    finally:
        ip_link(veth, "up")
        sent, _ = pinger.stop()
    print(f"{example}: {sent} pings 10 ms apart across a cut and a repair, lost: {pinger.missing()}",
          file=sys.stderr)


# --- 3. a controller killed and restarted while traffic flows ---------------------------------


def connected(net: Network) -> dict[str, bool]:
    from kumoflow.net.switches import get_kind
    status: dict[str, bool] = {}
    for kind in {s.kind for s in net.plan.switches}:
        status.update(get_kind(kind).connected([s for s in net.plan.switches if s.kind == kind]))
    return status


def test_a_controller_killed_and_restarted_changes_nothing(fabric, tmp_path):
    fab = fabric("mesh.yaml")
    fab.wait_settled()
    assert fab.all_pairs().ok
    flows_before = {name: {f.identity for f in fab.flows(name)} for name in fab.switches}
    groups_before = {name: fab.groups(name) for name in fab.switches}

    # h1 (s1, kumoflow) -> h6 (s4, Open vSwitch) and h3 (s2, kumoflow) -> h5 (s3, Open vSwitch)
    pingers = [Pinger(fab, "h1", "h6", tmp_path / "ping-h1-h6.txt"),
               Pinger(fab, "h3", "h5", tmp_path / "ping-h3-h5.txt")]
    try:
        def replies_grow(by: int):
            marks = [p.last() for p in pingers]
            return wait_until(lambda: all(p.last() >= m + by for p, m in zip(pingers, marks)), timeout=30)

        assert replies_grow(50)
        events = [("killed", time.strftime("%H:%M:%S"))]
        assert fab.controller.stop(signal.SIGKILL) == -signal.SIGKILL
        assert wait_until(lambda: not any(connected(fab.net).values()), timeout=30), connected(fab.net)
        assert replies_grow(50)        # no controller: the switches keep forwarding (fail secure)

        fab.log = fab.controller.log = tmp_path / "controller-restarted.log"
        restarted = time.monotonic()
        events.append(("restarted", time.strftime("%H:%M:%S")))
        fab.controller.start()
        fab.net.wait_connected(60)
        fab.wait_settled()
        events.append(("settled", time.strftime("%H:%M:%S")))
        assert replies_grow(50)
    finally:
        results = [p.stop() for p in pingers]
    for p, (sent, _) in zip(pingers, results):
        assert not p.missing(), f"{p.path.name}: of {sent} pings, these got no answer: {p.missing()}; {events}"
        assert not p.duplicates(), p.path.read_text()[-3000:]

    # Nothing was reinstalled: the same flows and groups, the flows' durations
    # counting from before the restart, and nothing sent by the reconcilers.
    since = time.monotonic() - restarted
    for name in fab.switches:
        flows = fab.flows(name)
        assert {f.identity for f in flows} == flows_before[name], name
        young = [f.text for f in flows if f.duration <= since]
        assert not young, f"{name}: flows younger than the restart ({since:.1f}s ago): {young}"
        assert fab.groups(name) == groups_before[name], name
    log = fab.log_text()
    for switch in fab.switches.values():
        lines = re.findall(rf"dpid={switch.dpid:#x}: reconciled.*", log)
        assert lines and all(line.endswith(": 0 added, 0 changed, 0 deleted") for line in lines), (switch.name, lines)
        assert f"dpid={switch.dpid:#x}: reconciled: 0 added, 0 changed, 0 deleted" in log, switch.name
    sent = re.findall(r"dpid=\S+: reconcile: .*", log)
    assert not sent, sent[:20]


# --- 4. a flow deleted by hand comes back ----------------------------------------------------


def test_the_audit_repairs_flows_changed_by_hand(fabric):
    fab = fabric("mesh.yaml", "--audit-interval", "2")
    fab.wait_settled()
    assert fab.all_pairs().ok
    host_flow = "table=40,dl_dst={}"
    deleted = {"s1": "00:00:00:00:00:06", "s3": "00:00:00:00:00:01"}     # a kumoflow switch and an OVS bridge
    wanted = {}
    for switch, mac in deleted.items():
        [flow] = fab.flows(switch, host_flow.format(mac))
        wanted[switch] = flow.identity
    stray = "table=40,priority=50,dl_dst=00:00:00:00:00:99,actions=drop"   # in the fabric's table, not the fabric's

    started = time.monotonic()
    for switch, mac in deleted.items():
        ofctl(fab.target(switch), "del-flows", f"table=40,priority=100,dl_dst={mac}", options=("--strict",))
    for switch in ("s2", "s4"):
        ofctl(fab.target(switch), "add-flow", stray)

    def repaired():
        for switch, mac in deleted.items():
            flows = fab.flows(switch, host_flow.format(mac))
            if [f.identity for f in flows] != [wanted[switch]]:
                return False
        return not any(fab.flows(switch, "table=40,dl_dst=00:00:00:00:00:99") for switch in ("s2", "s4"))

    assert wait_until(repaired, timeout=30), {s: [f.text for f in fab.flows(s, "table=40")] for s in fab.switches}
    # put back, not left alone: younger than the deletion
    since = time.monotonic() - started
    for switch, mac in deleted.items():
        [flow] = fab.flows(switch, host_flow.format(mac))
        assert flow.duration < since, (flow.text, since)
    assert fab.net.ping("h1", "h6", retries=2) and fab.net.ping("h4", "h1", retries=2)


# --- 5. a host moved to another switch ---------------------------------------------------------


def test_a_host_moved_to_another_switch_is_found(fabric):
    fab = fabric("mesh.yaml")
    fab.wait_settled()
    assert fab.all_pairs().ok
    h4 = fab.net.host("h4")
    assert (h4.plan.switch, h4.plan.port) == ("s3", 104)
    # a quiet host: no IPv6 chatter of its own announces it at the new place
    h4.run("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1", check=True)
    # h4's cable goes from s3 (port 104) to s4 (new port 107): both Open vSwitch bridges, so the
    # veth's switch end moves between them in one transaction; the host keeps its MAC and address.
    veth, new_port = fab.veth("s3", 104), 107
    subprocess.run(["ovs-vsctl", "--timeout=20", "del-port", fab.switches["s3"].bridge, veth,
                    "--", "add-port", fab.switches["s4"].bridge, veth,
                    "--", "set", "Interface", veth, f"ofport_request={new_port}"],
                   check=True, capture_output=True, timeout=30)

    # h1 knows h4's MAC already: its pings are unicast to a host the fabric lost with its port,
    # flooded as unknown unicast, answered from the new port, and h4 is found there.
    assert wait_until(lambda: fab.net.ping("h1", "h4"), timeout=30), "h1 cannot reach h4 after the move"
    assert wait_until(lambda: f"host {h4.mac} at {fab.dpid('s4'):#x} port {new_port} ['{h4.ip}']" in fab.log_text()
                      or f"to {fab.dpid('s4'):#x} port {new_port}" in fab.log_text(), timeout=10)
    matrix = fab.all_pairs(timeout=30)
    assert matrix.ok, str(matrix)

    # the flows say where h4 is now
    towards = lambda switch: [f.actions for f in fab.flows(switch, f"table={FORWARD},dl_dst={h4.mac}")]  # noqa: E731
    assert towards("s4") == [f"output:{new_port}"]
    assert towards("s3") == [f"group:{fab.group_of('s4')}"]
    for switch in ("s1", "s2", "s5"):
        assert towards(switch) == [f"group:{fab.group_of('s4')}"], switch
    assert fab.flows("s4", f"table={CLASSIFY},in_port={new_port},dl_src={h4.mac}")
