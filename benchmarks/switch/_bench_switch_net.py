"""Namespaces, veth links and processes for bench_switch.py, all removed again.

A *pair* is two hosts, network namespaces ``<tag>a`` and ``<tag>b``, each
with one interface ``eth0`` (10.77.N.1/24 and 10.77.N.2/24), wired by veth
links to the root-namespace ends ``<tag>pa`` and ``<tag>pb``: the ports of
whichever switch joins them (Open vSwitch, kumoflow, the bare copy loop),
or nothing at all (the generator's sink). Offloads are off on all four
ends, as the emulator leaves them by default (``ethtool -K IF tx off rx off
sg off tso off gso off gro off lro off``), unless asked otherwise (and
GRO back on where "napi" input needs it, see below). The
hosts know each other's MAC address (static neighbour entries), so no ARP
crosses the switch during a measurement.

CPUs (:data:`HOST_CPU`, :data:`SWITCH_CPU`): a veth takes each frame in on
the *sender's* CPU, inside its transmit call. :class:`Lab` moves that work
to the CPU of whoever owns the receiving end, in one of three ways
(``ingress``): "napi" (the default) turns GRO on, so that the veth receives
through NAPI, and ``threaded`` NAPI, whose kernel thread it pins (and, with
``napi_fifo``, makes SCHED_FIFO): the switch's ports to SWITCH_CPU, the
hosts' eth0 to HOST_CPU (:func:`threaded_napi`); "rps" writes ``rps_cpus``
the same way (:func:`steer_receive`); "sender" leaves it where it is. In
"napi", :meth:`Lab.port_input` turns the switch ports' GRO off and on again
around TCP runs (a userspace switch cannot forward GRO-merged segments).
So a switch pays for its own input (delivery into its packet socket), as a
NIC's interrupt affinity would make it, and the hosts pay for theirs.
:meth:`Lab.pin_ovs` pins every thread of ovs-vswitchd to SWITCH_CPU and
puts the original affinities back in ``close()``; it writes them to
:data:`OVS_AFFINITY_FILE` first (under a lock, shared by overlapping runs:
the last one to finish restores them), so that :func:`sweep` can restore
them after a run that was killed.

Every name starts with :data:`PREFIX`; :class:`Lab` remembers what it made
and removes it in ``close()`` (namespaces, links, Open vSwitch bridges,
processes by pid), and :func:`sweep` removes anything left over by a run
that was killed.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass

PREFIX = "kfb"
#: the CPU of the hosts: generator, iperf3, ping, and the receive side of the hosts' eth0
HOST_CPU = 0
#: the CPU of the switch under test, and the receive side of its ports
SWITCH_CPU = 1
#: where pin_ovs() saves ovs-vswitchd's thread affinities until close() (or sweep()) restores them
OVS_AFFINITY_FILE = "/run/kfbench-ovs-affinity.json"
#: where each run lists the processes it started (pid and start time), for sweep() after a kill
PROCS_FILE = "/run/kfbench-procs-{pid}.json"
OFFLOADS_OFF = ("tx", "off", "rx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off", "lro", "off")


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc


@dataclass
class Pair:
    tag: str
    ns_a: str
    ns_b: str
    port_a: str          # root-namespace end of host a's link
    port_b: str
    mac_a: str
    mac_b: str
    ip_a: str
    ip_b: str

    def counters(self, ns: str, ifname: str = "eth0") -> dict[str, int]:
        """The interface's statistics (rx_packets, tx_packets, rx_dropped, ...)."""
        out = sh("ip", "-n", ns, "-j", "-s", "link", "show", ifname).stdout
        stats = json.loads(out)[0]["stats64"]
        return {f"rx_{k}": v for k, v in stats["rx"].items()} | {f"tx_{k}": v for k, v in stats["tx"].items()}

    def root_counters(self, ifname: str) -> dict[str, int]:
        stats = json.loads(sh("ip", "-j", "-s", "link", "show", ifname).stdout)[0]["stats64"]
        return {f"rx_{k}": v for k, v in stats["rx"].items()} | {f"tx_{k}": v for k, v in stats["tx"].items()}


def steer_receive(ifname: str, cpu: int | None, ns: str | None = None) -> None:
    """Process what arrives on ifname (in namespace ns) on `cpu` (RPS; None:
    no steering, i.e. on the sender's CPU). Raises if the kernel did not take it."""
    path = f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus"
    mask = f"{0 if cpu is None else 1 << cpu:x}"
    prefix = ("ip", "netns", "exec", ns) if ns else ()
    sh(*prefix, "sh", "-c", f"echo {mask} > {path}")
    got = int(sh(*prefix, "cat", path).stdout.strip().replace(",", ""), 16)
    if got != int(mask, 16):
        raise RuntimeError(f"{path}{' in ' + ns if ns else ''}: rps_cpus is {got:x}, not {mask}")


def napi_threads(ifname: str) -> set[int]:
    """Pids of the kernel threads named napi/IFNAME-<id> (any namespace)."""
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().startswith(f"napi/{ifname}-"):
                        pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def threaded_napi(ifname: str, cpu: int | None, ns: str | None = None, fifo: int = 0) -> set[int]:
    """Take what arrives on ifname (in namespace ns) in a NAPI kernel thread
    pinned to `cpu`: a veth takes its input through NAPI while GRO is on, and
    ``threaded`` runs the NAPI poll in a thread of its own. cpu None: GRO off,
    so no NAPI (input on the sender's CPU). The new threads' pids."""
    prefix = ("ip", "netns", "exec", ns) if ns else ()
    sh(*prefix, "ethtool", "-K", ifname, "gro", "off")          # no NAPI (and no NAPI thread) left
    if cpu is None:
        return set()
    before = napi_threads(ifname)
    sh(*prefix, "ethtool", "-K", ifname, "gro", "on")
    sh(*prefix, "sh", "-c", f"echo 1 > /sys/class/net/{ifname}/threaded")
    new: set[int] = set()
    for _ in range(100):
        new = napi_threads(ifname) - before
        if new:
            break
        time.sleep(0.02)
    if not new:
        raise RuntimeError(f"no NAPI thread appeared for {ifname}{' in ' + ns if ns else ''}")
    for pid in new:
        os.sched_setaffinity(pid, {cpu})
        if fifo:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(fifo))
    return new


def softnet() -> list[dict[str, int]]:
    """Per CPU: frames its backlog processed, dropped (backlog full), and RPS
    interrupts it received (/proc/net/softnet_stat)."""
    out = []
    for line in open("/proc/net/softnet_stat"):
        f = [int(x, 16) for x in line.split()]
        out.append({"processed": f[0], "dropped": f[1], "received_rps": f[9] if len(f) > 9 else 0})
    return out


def thread_affinity(pid: int) -> dict[int, list[int]]:
    """The CPU affinity of every thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = sorted(os.sched_getaffinity(int(tid)))
        except OSError:
            pass
    return out


def set_thread_affinity(pid: int, cpus: set[int] | dict[int, list[int]], default: set[int] | None = None) -> None:
    """Like ``taskset -a -p``: every thread of pid to `cpus`, or, given a dict,
    each thread to its own entry (threads not in it to `default`)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        want = cpus.get(int(tid), default) if isinstance(cpus, dict) else cpus
        if want:
            try:
                os.sched_setaffinity(int(tid), want)
            except OSError:
                pass


class _AffinityRecord:
    """OVS_AFFINITY_FILE under an exclusive lock: ovs-vswitchd's pid, its threads'
    original affinities, and the pids of the benchmark runs that keep it pinned."""

    def __enter__(self) -> _AffinityRecord:
        import fcntl
        self._lock = open(OVS_AFFINITY_FILE + ".lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.pid, self.threads, self.holders = 0, {}, []
        try:
            with open(OVS_AFFINITY_FILE) as f:
                saved = json.load(f)
            self.pid, self.holders = saved["pid"], saved["holders"]
            self.threads = {int(k): v for k, v in saved["threads"].items()}
        except (OSError, ValueError, KeyError):
            pass
        self.holders = [h for h in self.holders if os.path.exists(f"/proc/{h}")]    # runs still alive
        return self

    def release_if_unheld(self) -> bool:
        """No run holds it any more: put the saved affinities back. Whether it did."""
        if self.holders or not self.threads:
            return False
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                alive = f.read().strip() == "ovs-vswitchd"
        except OSError:
            alive = False
        if alive:                                   # threads born while pinned: as the main thread was
            set_thread_affinity(self.pid, self.threads,
                                default=set(self.threads.get(self.pid) or range(os.cpu_count() or 1)))
        self.pid, self.threads = 0, {}
        return alive

    def __exit__(self, *exc) -> None:
        try:
            if self.threads:
                with open(OVS_AFFINITY_FILE, "w") as f:
                    json.dump({"pid": self.pid, "threads": self.threads, "holders": self.holders}, f)
            elif os.path.exists(OVS_AFFINITY_FILE):
                os.unlink(OVS_AFFINITY_FILE)
        finally:
            self._lock.close()


class Lab:
    """What one benchmark run created; close() removes all of it."""

    def __init__(self, ingress: str = "napi", steer_hosts: bool = True, napi_fifo: int = 0) -> None:
        self.ingress, self.steer_hosts, self.napi_fifo = ingress, steer_hosts, napi_fifo
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.bridges: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.ovs_pinned: tuple[int, dict[int, list[int]]] | None = None
        self._n = 0

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pair(self, offloads: bool = False, steer: bool = True) -> Pair:
        self._n += 1
        n = self._n
        tag = f"{PREFIX}{os.getpid() % 1000:03d}{n}"
        ns_a, ns_b = f"{tag}a", f"{tag}b"
        ips = (f"10.77.{n}.1", f"10.77.{n}.2")
        macs = (f"02:77:00:00:{n:02x}:01", f"02:77:00:00:{n:02x}:02")
        for ns, ip, mac, peer_ip, peer_mac in ((ns_a, ips[0], macs[0], ips[1], macs[1]),
                                               (ns_b, ips[1], macs[1], ips[0], macs[0])):
            port = f"{tag}p{ns[-1]}"
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", port + "x")
            self.links.append(port)
            sh("sysctl", "-qw", f"net.ipv6.conf.{port}.disable_ipv6=1", check=False)
            sh("ip", "link", "set", port + "x", "netns", ns)
            sh("ip", "-n", ns, "link", "set", port + "x", "name", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr", peer_mac, "dev", "eth0", "nud", "permanent")
            sh("ip", "link", "set", port, "up")
            if not offloads:
                sh("ethtool", "-K", port, *OFFLOADS_OFF, check=False)
                sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", *OFFLOADS_OFF, check=False)
            if steer:
                steer_receive(port, SWITCH_CPU if self.ingress == "rps" else None)
                steer_receive("eth0", HOST_CPU if self.steer_hosts and self.ingress == "rps" else None, ns)
                if self.ingress == "napi":
                    threaded_napi(port, SWITCH_CPU, fifo=self.napi_fifo)
                    if self.steer_hosts:
                        threaded_napi("eth0", HOST_CPU, ns, fifo=self.napi_fifo)
        return Pair(tag, ns_a, ns_b, f"{tag}pa", f"{tag}pb", macs[0], macs[1], ips[0], ips[1])

    def port_input(self, pair: Pair, napi: bool) -> None:
        """With ingress "napi": the pair's switch ports through their NAPI threads
        (napi=True) or GRO off, input on the sender's CPU (napi=False; for TCP,
        whose GRO-merged segments no userspace switch can forward as frames)."""
        if self.ingress == "napi":
            for port in (pair.port_a, pair.port_b):
                threaded_napi(port, SWITCH_CPU if napi else None, fifo=self.napi_fifo)

    def ovs_bridge(self, pair: Pair, tables: int | None = None) -> str:
        """An Open vSwitch bridge with the userspace datapath (netdev) on the pair's
        root ends as OpenFlow ports 1 and 2, fail mode secure, no controller."""
        br = f"{pair.tag}br"
        sh("ovs-vsctl", "--timeout=10", "add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev",
           "protocols=OpenFlow13", "fail_mode=secure", "other-config:disable-in-band=true",
           "--", "add-port", br, pair.port_a, "--", "set", "Interface", pair.port_a, "ofport_request=1",
           "--", "add-port", br, pair.port_b, "--", "set", "Interface", pair.port_b, "ofport_request=2")
        self.bridges.append(br)
        return br

    def pin_ovs(self, pid: int, cpu: int = SWITCH_CPU) -> dict[int, list[int]]:
        """Every thread of ovs-vswitchd (pid) to `cpu` until close(); the original affinities.
        Runs that overlap share one record of the original affinities (OVS_AFFINITY_FILE,
        under a lock): the first one saves it, the last one to finish restores it."""
        if self.ovs_pinned:
            return self.ovs_pinned[1]
        with _AffinityRecord() as rec:
            if rec.pid != pid or not rec.threads:
                rec.pid, rec.threads, rec.holders = pid, thread_affinity(pid), []
            rec.holders.append(os.getpid())
            original = rec.threads
            set_thread_affinity(pid, {cpu})
        self.ovs_pinned = (pid, original)
        return original

    def unpin_ovs(self) -> None:
        if not self.ovs_pinned:
            return
        self.ovs_pinned = None
        with _AffinityRecord() as rec:
            rec.holders = [h for h in rec.holders if h != os.getpid()]
            rec.release_if_unheld()

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.procs.append(proc)
        self._save_procs()
        return proc

    def _save_procs(self) -> None:
        path = PROCS_FILE.format(pid=os.getpid())
        try:
            if self.procs:
                with open(path, "w") as f:
                    json.dump([[p.pid, _start_time(p.pid)] for p in self.procs], f)
            elif os.path.exists(path):
                os.unlink(path)
        except OSError:
            pass

    def stop(self, proc: subprocess.Popen, timeout: float = 5.0) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        if proc in self.procs:
            self.procs.remove(proc)
            self._save_procs()

    def del_bridge(self, br: str) -> None:
        sh("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", br, check=False)
        if br in self.bridges:
            self.bridges.remove(br)

    def close(self) -> None:
        try:
            self.unpin_ovs()
        except Exception:
            pass
        for proc in list(self.procs):
            try:
                self.stop(proc)
            except Exception:
                pass
        for br in list(self.bridges):
            self.del_bridge(br)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        self.links.clear()
        self.namespaces.clear()


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def sweep() -> list[str]:
    """Remove namespaces, links and bridges named PREFIX* (a killed run's leftovers)
    and give ovs-vswitchd back the CPU affinity a killed run took from it."""
    removed = []
    for path in glob.glob(PROCS_FILE.format(pid="*")):
        run = int(path.rsplit("-", 1)[1].split(".")[0])
        if os.path.exists(f"/proc/{run}"):
            continue                                        # that run is still going
        try:
            with open(path) as f:
                procs = json.load(f)
        except (OSError, ValueError):
            procs = []
        for pid, started in procs:
            if started is not None and _start_time(pid) == started:     # the very process, not a reused pid
                try:
                    os.killpg(pid, signal.SIGTERM)
                    removed.append(f"process {pid}")
                except OSError:
                    pass
        os.unlink(path)
    with _AffinityRecord() as rec:
        pid = rec.pid
        if rec.release_if_unheld():
            removed.append(f"ovs-vswitchd {pid}: CPU affinity restored")
    for br in sh("ovs-vsctl", "--timeout=10", "list-br", check=False).stdout.split():
        if br.startswith(PREFIX):
            sh("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", br, check=False)
            removed.append(br)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            sh("ip", "link", "del", name, check=False)
            removed.append(name)
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(PREFIX):
            sh("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    return removed


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
