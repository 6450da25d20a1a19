"""What runs inside hosts: ``run:`` commands and FRR routers.

Both start once the network is up (namespaces, links, addresses, switches)
and stop at ``down`` before anything else is removed; both keep their files
in the host's directory, ``<run dir>/kumoflow-hosts/<topology>/<host>/``:

* ``run:`` -- the command (a string for ``sh -c``, or an argv) in the host's
  namespace (``ip netns exec``), in a session of its own so it outlives
  ``kumoflow up``, started in the topology file's directory, stdin from
  /dev/null, stdout and stderr to ``run.log``. ``run.pid`` holds its pid and
  the kernel's start time of that pid. ``down`` signals the process group of
  that pid (SIGTERM, then SIGKILL), and only the members of that group that
  are in the host's namespace: a reused pid or a process someone else
  started there is never signalled. (Deleting the namespace afterwards
  stops whatever is still running in it, as for every host.)
* ``frr:`` -- zebra, then the daemons asked for (default bgpd and staticd),
  as ``ip netns exec NS /usr/lib/frr/DAEMON -d -N NS -A 127.0.0.1 -f
  /dev/null --log file:DIR/DAEMON.log`` (zebra also ``-s 90000000``, a
  netlink buffer for large tables), NS being the host's namespace name.
  ``-N`` puts the daemons' pid files and vty sockets in ``/run/frr/NS/``;
  the daemons run as user frr. The configuration (``frr.conf`` in the
  host's directory, owned by frr, mode 0640) is then applied as one
  integrated configuration by ``vtysh -f``; a line FRR refuses fails
  ``up`` with that line's place in the topology file (or the ``file:``).
  ``down`` stops the daemons by their pid files (a pid is signalled only
  if it is that FRR daemon of that pathspace) and removes ``/run/frr/NS``.
  ``vtysh_argv`` is how to talk to them: ``vtysh --vty_socket /run/frr/NS
  --config_dir DIR`` (``vtysh -N NS`` works too, with a warning about a
  missing vtysh.conf).

An FRR host routes: ``net.ipv4.ip_forward`` and IPv6 forwarding are on in
its namespace (set with the host's addressing, :mod:`kumoflow.net.hosts`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from kumoflow.net import state
from kumoflow.net.errors import Issue, NetError, TopologyError
from kumoflow.net.hosts import NETNS_DIR, netns_command
from kumoflow.net.plan import HostPlan, Names

SUBDIR = "kumoflow-hosts"
FRR_RUN_DIR = Path("/run/frr")
FRR_SBIN = Path("/usr/lib/frr")
FRR_USER = "frr"
#: zebra's netlink receive buffer (bytes), as notes/bgp.md runs it: room for 100,000 routes at once
ZEBRA_NL_BUFSIZE = 90_000_000
#: how long a ``run:`` command is watched after it starts: exiting non-zero by then fails ``up``
RUN_GRACE = 0.2
STOP_GRACE = 2.0
_FRR_LINE = re.compile(r"^line (\d+): (.*)$")


# -- places -------------------------------------------------------------------


def topology_dir(topology: str) -> Path:
    return state.run_dir() / SUBDIR / topology


def host_dir(topology: str, host: str) -> Path:
    return topology_dir(topology) / host


def frr_pathspace_dir(netns: str) -> Path:
    return FRR_RUN_DIR / netns


def vtysh_argv(netns: str, directory: str | Path) -> list[str]:
    """The vtysh command line reaching the FRR daemons of namespace ``netns``."""
    return ["vtysh", "--vty_socket", str(frr_pathspace_dir(netns)), "--config_dir", str(directory)]


# -- processes ----------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _pgid(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return int(fields[2]) if fields[0] != "Z" else None


def _netns_id(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _stop(pids_now, grace: float = STOP_GRACE) -> list[int]:
    """SIGTERM what ``pids_now()`` lists, then SIGKILL what is left after
    ``grace`` s; ``pids_now`` is asked again each time (it checks identity).
    Returns the pids signalled."""
    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_now()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
                signalled.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids_now() and time.monotonic() < deadline:
            time.sleep(0.05)
    return sorted(set(signalled))


# -- run: ---------------------------------------------------------------------


def start_run(host: HostPlan) -> subprocess.Popen:
    """Start ``host.run`` in the background; see the module docstring."""
    assert host.run is not None
    directory = host_dir(host.topology, host.name)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "run.log"
    env = {**os.environ, "KUMOFLOW_TOPOLOGY": host.topology, "KUMOFLOW_HOST": host.name}
    cwd = host.workdir if host.workdir and Path(host.workdir).is_dir() else None
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                netns_command(host.netns, host.run), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd, env=env,
            )
        except OSError as exc:
            raise NetError(f"host {host.name}: cannot start run: {exc}") from exc
    pid_file = directory / "run.pid"
    record = {"pid": proc.pid, "start": _start_time(proc.pid), "netns": host.netns}
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, pid_file)
    return proc


def check_started(host: HostPlan, proc: subprocess.Popen) -> None:
    """Raise if ``proc`` (started by :func:`start_run`) has exited non-zero."""
    code = proc.poll()
    if code is not None and code != 0:
        log = host_dir(host.topology, host.name) / "run.log"
        raise NetError(f"host {host.name}: run exited with status {code}: {_tail(log)}")


def _run_processes(pid_file: Path) -> list[int]:
    """The live processes of a ``run:`` command: its process group, in its namespace."""
    try:
        record = json.loads(pid_file.read_text())
        pid, start, netns = int(record["pid"]), record.get("start"), str(record["netns"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    wanted = _netns_id(NETNS_DIR / netns)
    leader_ok = start is not None and _start_time(pid) == start
    found = []
    for p in _pids():
        if _pgid(p) != pid:
            continue
        # the leader by pid and start time; the rest of its group by namespace
        if p == pid and leader_ok:
            found.append(p)
        elif wanted is not None and _netns_id(f"/proc/{p}/ns/net") == wanted:
            found.append(p)
    return found


def stop_run(topology: str, host: str) -> list[str]:
    pid_file = host_dir(topology, host) / "run.pid"
    if not pid_file.exists():
        return []
    pids = _stop(lambda: _run_processes(pid_file))
    pid_file.unlink(missing_ok=True)
    return [f"run of {host} (pid {', '.join(map(str, pids))})"] if pids else []


# -- frr: ---------------------------------------------------------------------


def frr_problem(daemons: tuple[str, ...] | list[str]) -> str | None:
    """None when FRR can run these daemons here, else what is missing."""
    missing = [d for d in daemons if not os.access(FRR_SBIN / d, os.X_OK)]
    if shutil.which("vtysh") is None:
        missing.append("vtysh")
    if missing:
        return f"FRR is not installed ({', '.join(missing)} missing; `make setup` installs the frr package)"
    try:
        import pwd

        pwd.getpwnam(FRR_USER)
    except KeyError:
        return f"FRR's user {FRR_USER!r} does not exist (reinstall the frr package)"
    return None


def frr_config_issues(host: str, config) -> list[Issue]:
    """Dry-run ``config`` (a :class:`~kumoflow.net.topology.FrrConfig`) with
    ``vtysh --dryrun``: FRR's own parser. One issue per refused line, at its
    place in the topology file (inline ``config:``) or the ``file:``."""
    with tempfile.TemporaryDirectory(prefix="kumoflow-frr-") as tmp:
        conf = Path(tmp) / "frr.conf"
        conf.write_text(config.text)
        (Path(tmp) / "vtysh.conf").write_text("")
        try:
            proc = subprocess.run(["vtysh", "--config_dir", tmp, "-C", "-f", str(conf)],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [Issue(config.source, config.first_line, config.field, f"cannot check with vtysh: {exc}")]
    if proc.returncode == 0:
        return []
    return _frr_issues(host, config, proc.stdout + proc.stderr) or [
        Issue(config.source, config.first_line, config.field,
              f"FRR refuses the configuration of host {host!r}: {(proc.stdout + proc.stderr).strip()[-300:]}")
    ]


def _frr_issues(host: str, config, output: str) -> list[Issue]:
    issues = []
    for line in output.splitlines():
        match = _FRR_LINE.match(line.strip())
        if match:
            number = int(match.group(1))
            where = config.first_line + number - 1 if config.first_line else 0
            issues.append(Issue(config.source, where, config.field,
                                f"FRR refuses line {number} ({host}): {match.group(2).strip()}"))
    return issues


def _frr_pid_files(netns: str) -> list[Path]:
    directory = frr_pathspace_dir(netns)
    try:
        return sorted(directory.glob("*.pid"))
    except OSError:
        return []


def _frr_daemon_pids(netns: str) -> list[int]:
    """Live FRR daemons of pathspace ``netns``, from their pid files, each
    checked to be that daemon started with ``-N netns``."""
    found = []
    for pid_file in _frr_pid_files(netns):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        argv = _cmdline(pid)
        daemon = pid_file.stem
        if (argv and Path(argv[0]).name == daemon and "-N" in argv
                and argv.index("-N") + 1 < len(argv) and argv[argv.index("-N") + 1] == netns
                and _start_time(pid) is not None):
            found.append(pid)
    return found


def _ensure_frr_run_dir() -> None:
    if not FRR_RUN_DIR.is_dir():
        FRR_RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.chown(FRR_RUN_DIR, FRR_USER, FRR_USER)


def frr_preflight(host: HostPlan) -> None:
    """Refuse before anything is created: FRR missing, or the pathspace busy."""
    assert host.frr is not None
    problem = frr_problem(host.frr.daemons)
    if problem:
        raise NetError(f"host {host.name}: {problem}")
    if _frr_daemon_pids(host.netns):
        raise NetError(f"FRR daemons of pathspace {host.netns} are running already "
                       f"({frr_pathspace_dir(host.netns)}); `kumoflow down` removes a stale topology")


def start_frr(host: HostPlan) -> dict[str, Any]:
    """Start the daemons of ``host.frr`` in the host and apply its configuration."""
    frr = host.frr
    assert frr is not None
    directory = host_dir(host.topology, host.name)
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "frr.conf"
    conf.write_text(frr.text if frr.text.endswith("\n") else frr.text + "\n")
    (directory / "vtysh.conf").write_text("")
    for path in (directory, conf, directory / "vtysh.conf"):
        shutil.chown(path, FRR_USER, FRR_USER)
    os.chmod(directory, 0o755)
    os.chmod(conf, 0o640)
    _ensure_frr_run_dir()
    stale = frr_pathspace_dir(host.netns)
    if stale.is_dir() and not _frr_daemon_pids(host.netns):
        shutil.rmtree(stale, ignore_errors=True)
    info = {"pathspace": host.netns, "dir": str(directory), "daemons": list(frr.daemons)}
    for daemon in frr.daemons:
        log = directory / f"{daemon}.log"
        argv = [str(FRR_SBIN / daemon), "-d", "-N", host.netns, "-A", "127.0.0.1", "-f", "/dev/null",
                "--log", f"file:{log}"]
        if daemon == "zebra":
            argv += ["-s", str(ZEBRA_NL_BUFSIZE)]
        proc = _run(host, f"FRR {daemon}", netns_command(host.netns, argv))
        sock = frr_pathspace_dir(host.netns) / f"{daemon}.vty"
        deadline = time.monotonic() + 5
        while proc.returncode == 0 and not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.returncode != 0 or not sock.exists():
            why = (proc.stderr or proc.stdout).strip() or _tail(log)
            raise NetError(f"host {host.name}: FRR {daemon} did not start (exit status {proc.returncode}): {why}")
    proc = _run(host, "vtysh -f frr.conf", [*vtysh_argv(host.netns, directory), "-f", str(conf)], timeout=60)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        issues = _frr_issues(host.name, frr, output)
        if issues:
            raise TopologyError(issues)
        raise NetError(f"host {host.name}: FRR refused its configuration: {output[-500:]}")
    return info


def _run(host: HostPlan, what: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NetError(f"host {host.name}: {what} did not finish in {timeout:g}s") from exc
    except OSError as exc:
        raise NetError(f"host {host.name}: cannot run {what}: {exc}") from exc


def stop_frr(topology: str, host: str, netns: str) -> list[str]:
    pids = _stop(lambda: _frr_daemon_pids(netns))
    removed = [f"FRR daemons of {host} (pids {', '.join(map(str, pids))})"] if pids else []
    directory = frr_pathspace_dir(netns)
    if directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"FRR pathspace {directory}")
    return removed


# -- a whole topology ------------------------------------------------------------


def clear_files(topology: str) -> None:
    """Remove host files a crashed run of ``topology`` left (``up`` calls it
    once it knows nothing of the topology runs)."""
    directory = topology_dir(topology)
    if directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)


def stop_all(topology: str, names: Names, hosts: dict[str, str]) -> list[str]:
    """Stop every ``run:`` command and FRR daemon of ``topology``: those of
    ``hosts`` ({host: netns}, from the record and the plan) and those found
    by name (pid files in the topology's directory, FRR pathspaces named
    like its namespaces); then remove the topology's host directories."""
    removed: list[str] = []
    found = dict(hosts)
    directory = topology_dir(topology)
    if directory.is_dir():
        for sub in directory.iterdir():
            if sub.is_dir():
                found.setdefault(sub.name, names.netns(sub.name))
    pattern = names.netns_pattern()
    if FRR_RUN_DIR.is_dir():
        for sub in FRR_RUN_DIR.iterdir():
            if pattern.fullmatch(sub.name):
                found.setdefault(sub.name[len(topology) + 1:], sub.name)
    for host, netns in sorted(found.items()):
        removed += stop_run(topology, host)
        removed += stop_frr(topology, host, netns)
    if directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"host files {directory}")
        try:
            directory.parent.rmdir()  # only when no other topology has files there
        except OSError:
            pass
    return removed


def leftovers(topology: str, names: Names) -> list[str]:
    """What of ``topology``'s host services still exists."""
    found = []
    directory = topology_dir(topology)
    if directory.is_dir():
        for pid_file in sorted(directory.glob("*/run.pid")):
            pids = _run_processes(pid_file)
            if pids:
                found.append(f"run of {pid_file.parent.name} (pids {', '.join(map(str, pids))})")
    pattern = names.netns_pattern()
    if FRR_RUN_DIR.is_dir():
        for sub in sorted(FRR_RUN_DIR.iterdir()):
            if pattern.fullmatch(sub.name):
                pids = _frr_daemon_pids(sub.name)
                found.append(f"FRR pathspace {sub}" + (f" (daemons {pids})" if pids else ""))
    return found


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
