"""Switch kind ``kumoflow``: kumoflow's own software switch, one process per switch.

``up`` starts ``kumoflow switch`` (as ``python -m kumoflow.cli switch``, with
this interpreter and this copy of kumoflow) in the root network namespace
-- a hypervisor's in the hypervisor's namespace (``ip netns exec``), with a
relay to the controllers and from the root namespace's loopback
(:mod:`kumoflow.net.nsrelay`) -- in a session of its own so it outlives the
command that brought the topology up, with

* every planned port as ``--port N=IFNAME`` (the root-namespace veth ends),
  with its egress rates (the switch's ``ports:``) as ``--port-rate N:KBPS``
  and ``--queue N:QUEUE[:min=KBPS,max=KBPS]``,
  and a hypervisor's tunnel ports as ``--tunnel N=KIND:LOCAL_IP:REMOTE_IP``
  (KIND vxlan or nvgre; the switch names the port ``KIND-<remote in 8 hex>``),
* ``--name <prefix>-s1``, the name an Open vSwitch bridge of the switch
  would have (unique across topologies; the switch reports it in its DESC
  reply, where the controller's API reads it: ``binding:host_id`` may name
  the switch ``<prefix>-s1``, or ``s1`` when only one switch has that name),
* the switch's datapath id, fail mode and controllers (``tcp:`` only),
  and its ``max_backoff`` as ``--max-backoff`` (reconnection attempts at
  most that many seconds apart),
* a passive listener on a loopback port of the kernel's choosing (it binds
  port 0 and reports the port it got in its status file), ``ptcp:PORT:127.0.0.1``,
  for ``ovs-ofctl -O OpenFlow13 dump-flows tcp:127.0.0.1:PORT`` and the like
  (the address is in the state record and in the status file),
* ``--status-file``: a JSON file the switch keeps up to date (pid,
  connected to a controller or not, listen address); ``up`` waits for it to
  appear, and :meth:`KumoflowSwitch.connected` reads it.

Status and log files live in ``<run dir>/kumoflow-switches/<topology>/``
(``<switch>.json``, ``<switch>.log``). The pid goes into the topology's
state record, so ``down`` -- from any process, even after a crash --
stops the switch with SIGTERM (SIGKILL after 5 s); a sweep finds switch
processes of the topology by the status-file path on their command line.

Veth offloads: the switch completes partial checksums and segments GSO
frames itself (PACKET_VNET_HDR, see :mod:`kumoflow.switch.linuxport`), so
TCP works with ``offloads: true`` too; the default ``offloads: false``
spares it that work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kumoflow
from kumoflow.net import state
from kumoflow.net.errors import SwitchError
from kumoflow.net.plan import PortPlan, SwitchPlan
from kumoflow.net.switches import SwitchKind

START_TIMEOUT = 15.0
#: a switch in a hypervisor's namespace listens there on this port (its own loopback)
IN_NETNS_LISTEN_PORT = 6634
RELAY_MODULE = "kumoflow.net.nsrelay"
STOP_TIMEOUT = 5.0
SUBDIR = "kumoflow-switches"
_SRC = str(Path(kumoflow.__file__).resolve().parents[1])


def switch_dir(topology: str) -> Path:
    return state.run_dir() / SUBDIR / topology


def status_path(topology: str, switch: str) -> Path:
    return switch_dir(topology) / f"{switch}.json"


def log_path(topology: str, switch: str) -> Path:
    return switch_dir(topology) / f"{switch}.log"


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own child not yet reaped) is as good as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_switch_of(pid: int, topology: str | None) -> bool:
    """Is `pid` a kumoflow switch process, or its namespace relay, started by this kind
    (for `topology`)?"""
    argv = _cmdline(pid)
    if not ("switch" in argv or RELAY_MODULE in argv) or "--status-file" not in argv:
        return False
    path = argv[argv.index("--status-file") + 1] if argv.index("--status-file") + 1 < len(argv) else ""
    parent = Path(path).parent
    if parent.parent.name != SUBDIR:
        return False
    return topology is None or parent.name == topology


def _stop(pid: int) -> bool:
    """SIGTERM, then SIGKILL; True if it was running."""
    if not _alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        _reap(pid)
        if not _alive(pid):
            break
        time.sleep(0.02)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _processes(topology: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and _is_switch_of(int(entry.name), topology):
            if _alive(int(entry.name)):
                pids.append(int(entry.name))
    return sorted(pids)


def _started(switch: SwitchPlan, argv: list[str], env: dict, status: Path, logfile: Path,
             what: str) -> tuple[dict[str, Any], int]:
    """Start `argv` in a session of its own, its output to `logfile`; wait until it writes
    its pid to `status`. (status, pid), or SwitchError with the log's last lines."""
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        info = read_status(status)
        if info is not None and info.get("pid") == proc.pid:
            return info, proc.pid
        code = proc.poll()
        if code is not None:
            raise SwitchError(f"switch {switch.name}: {what} exited with status {code}: {_tail(logfile)}")
        if time.monotonic() > deadline:
            _stop(proc.pid)
            raise SwitchError(f"switch {switch.name}: {what} did not start within {START_TIMEOUT:g}s: "
                              f"{_tail(logfile)}")
        time.sleep(0.05)


def _through_relay(target: str) -> str:
    """A controller target as the switch in a namespace reaches it: the relay's listener
    there, on the controller's own port."""
    return f"tcp:127.0.0.1:{target.rsplit(':', 1)[1]}"


def _start_relay(switch: SwitchPlan) -> dict[str, Any]:
    """The relay (kumoflow.net.nsrelay) of a switch that runs in a hypervisor's namespace."""
    status = switch_dir(switch.topology) / f"{switch.name}.relay.json"
    logfile = switch_dir(switch.topology) / f"{switch.name}.relay.log"
    for path in (status, logfile):
        path.unlink(missing_ok=True)
    ports: dict[str, str] = {}
    for target in switch.controllers:
        address, _, port = target.removeprefix("tcp:").rpartition(":")     # tcp:HOST:PORT
        host = address.strip("[]")
        if ports.setdefault(port, host) != host:
            raise SwitchError(f"switch {switch.name}: two controllers on port {port}: a switch in a namespace "
                              "reaches each through a relay on the controller's port")
    argv = [sys.executable, "-m", RELAY_MODULE, "--netns", switch.netns, "--status-file", str(status),
            "--out-of", str(IN_NETNS_LISTEN_PORT)]
    argv += [f"--into={port}={host}:{port}" for port, host in ports.items()]
    env = {**os.environ, "PYTHONPATH": _SRC}
    info, _ = _started(switch, argv, env, status, logfile, "namespace relay")
    return info


def qos_args(port: PortPlan) -> list[str]:
    """``--port-rate`` and ``--queue`` options for a port's egress rates."""
    config = port.config
    if config is None:
        return []
    args = ["--port-rate", f"{port.number}:{config.rate_kbps}"] if config.rate_kbps is not None else []
    for qid, lo, hi in config.queues:
        rates = ",".join(f"{name}={v}" for name, v in (("min", lo), ("max", hi)) if v is not None)
        args += ["--queue", f"{port.number}:{qid}" + (f":{rates}" if rates else "")]
    return args


class KumoflowSwitch(SwitchKind):
    name = "kumoflow"

    def check(self) -> None:
        if os.geteuid() != 0:
            raise SwitchError("kumoflow switches need root (raw sockets on the veth ends)")

    def protocol_problem(self, protocol: str) -> str | None:
        if protocol != "OpenFlow13":
            return "the kumoflow switch speaks OpenFlow13 only"
        return None

    def controller_problem(self, target: str) -> str | None:
        if not target.startswith("tcp:"):
            return "the kumoflow switch connects to controllers over tcp: only"
        return None

    def up(self, switch: SwitchPlan) -> dict[str, Any]:
        # topology validation has refused these already; a plan made by hand is checked again
        for protocol in switch.protocols:
            if problem := self.protocol_problem(protocol):
                raise SwitchError(f"switch {switch.name}: protocols: {protocol}: {problem}")
        for target in switch.controllers:
            if problem := self.controller_problem(target):
                raise SwitchError(f"switch {switch.name}: controller: {target}: {problem}")
        directory = switch_dir(switch.topology)
        directory.mkdir(parents=True, exist_ok=True)
        status = status_path(switch.topology, switch.name)
        logfile = log_path(switch.topology, switch.name)
        try:
            status.unlink()
        except FileNotFoundError:
            pass
        # a hypervisor's switch runs in its namespace, reached through a relay (kumoflow.net.nsrelay)
        relay = _start_relay(switch) if switch.netns else None
        listen = f"ptcp:{IN_NETNS_LISTEN_PORT if relay else 0}:127.0.0.1"
        # named as an Open vSwitch bridge of this switch would be (<prefix>-s1, unique across
        # topologies): the controller's API finds it by that name, or by the YAML name s1 alone
        argv = [sys.executable, "-m", "kumoflow.cli", "switch", "--name", switch.bridge,
                "--dpid", f"{switch.dpid:#x}", "--fail-mode", switch.fail_mode,
                "--listen", listen, "--status-file", str(status)]
        for port in switch.ports:
            argv += ["--port", f"{port.number}={port.ifname}", *qos_args(port)]
        for tunnel in switch.tunnels:  # a hypervisor's; its VTEP is on its NIC (kumoflow.net.underlay)
            argv += ["--tunnel", f"{tunnel.number}={tunnel.type}:{tunnel.local_ip}:{tunnel.remote_ip}"]
        for target in switch.controllers:
            argv += ["--controller", _through_relay(target) if relay else target]
        argv += ["--max-backoff", str(switch.max_backoff)]
        if relay:
            argv = ["ip", "netns", "exec", switch.netns, *argv]
        level = os.environ.get("KUMOFLOW_SWITCH_LOG_LEVEL")
        if level:
            argv += ["--log-level", level]
        env = dict(os.environ)
        env["PYTHONPATH"] = _SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            info, pid = _started(switch, argv, env, status, logfile, "kumoflow switch")
        except SwitchError:
            if relay:
                _stop(relay["pid"])
            raise
        [listen] = info["listen"]                       # ptcp:PORT:127.0.0.1, the port it bound
        made = {"pid": pid, "listen": listen, "status_file": str(status), "log": str(logfile)}
        if relay:   # reached from the root namespace through the relay
            made.update(listen=f"ptcp:{relay['out_of'][str(IN_NETNS_LISTEN_PORT)]}:127.0.0.1",
                        relay_pid=relay["pid"], netns=switch.netns)
        return made

    def connected(self, switches: list[SwitchPlan]) -> dict[str, bool]:
        out = {}
        for s in switches:
            info = read_status(status_path(s.topology, s.name)) or {}
            pid = info.get("pid")
            out[s.name] = bool(info.get("connected") and isinstance(pid, int) and pid > 0 and _alive(pid))
        return out

    def down(self, record: dict[str, Any]) -> list[str]:
        removed = []
        pid = record.get("pid")
        topology = record.get("topology")
        if isinstance(pid, int) and pid > 0 and _is_switch_of(pid, topology) and _stop(pid):
            removed.append(f"kumoflow switch {record.get('name')} (pid {pid})")
        relay = record.get("relay_pid")
        if isinstance(relay, int) and relay > 0 and _is_switch_of(relay, topology) and _stop(relay):
            removed.append(f"namespace relay of kumoflow switch {record.get('name')} (pid {relay})")
        if topology and record.get("name"):
            directory = switch_dir(topology)
            for path in (status_path(topology, record["name"]), log_path(topology, record["name"]),
                         directory / f"{record['name']}.relay.json", directory / f"{record['name']}.relay.log"):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            _remove_empty(switch_dir(topology))
        return removed

    def sweep(self, topology: str, prefix: str) -> list[str]:
        removed = []
        for pid in _processes(topology):
            if _stop(pid):
                removed.append(f"kumoflow switch process {pid}")
        directory = switch_dir(topology)
        if directory.is_dir():
            for path in directory.iterdir():
                try:
                    path.unlink()
                except OSError:
                    pass
            _remove_empty(directory)
        return removed

    def leftovers(self, topology: str, prefix: str) -> list[str]:
        return [f"kumoflow switch process {pid}" for pid in _processes(topology)]


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
