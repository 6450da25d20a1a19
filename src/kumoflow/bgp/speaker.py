"""The cloud's BGP speaker: an FRR instance (zebra, staticd, bgpd) of kumoflow's own, its routes
streamed to the controller over zebra's FPM interface.

    async def on_routes(adds: list[Route], deletes: list[Route]) -> None: ...   # or a plain def

    speaker = Speaker(on_routes, namespace="netnode")      # None: the controller's own namespace
    await speaker.start()
    await speaker.configure(64512, "192.0.2.1",
                            peers=[("192.0.2.254", 64496, None)],             # (ip, remote AS, md5 password)
                            announced=[("10.0.0.0/24", "192.0.2.10")])       # (prefix, next hop)
    await speaker.peers()      # [{"peer_ip", "remote_as", "state", "established_s", "received", "sent"}]
    speaker.learned            # {(table, prefix): Route}: what the peers announce, now
    await speaker.stop()       # or: async with Speaker(...) as speaker:

The public interface is that, and no more:

    Speaker(on_routes, namespace=None, *, name=None, run_dir=None, fpm_port=0)
    await start(timeout=20.0)
    await configure(local_as, router_id, peers=(), announced=(), timers=None)
    await peers() -> list[dict]
    learned: dict[(table, prefix), Route]
    await stop(timeout=5.0, keep_logs=False)
    SpeakerError; Route and Nexthop (kumoflow.bgp.fpm)

**Learned routes.** zebra selects the best route of each prefix and sends it over FPM
(kumoflow.bgp.fpm); the routes of protocol BGP are the peers' (what the speaker announces are
static routes in its own zebra: never handed on). ``on_routes(adds, deletes)`` gets them in
batches as they arrive: ``adds`` are `Route`s (action "add", ``prefix``, ``nexthops``: tuple of
`Nexthop(gateway, ifindex, weight)`, ``table``, ``metric``) meaning "this prefix now goes by
these next hops" (new, or replacing what an earlier add said), ``deletes`` are `Route`s (action
"delete") of prefixes no longer learned. A batch is the net effect of what was read at once: a
prefix is in at most one of the two lists, and only changes are handed on. An async callback is
awaited before the next batch is read (zebra waits meanwhile). A session lost withdraws its
routes after the hold time (bgpd's timer): the callback gets the deletes. When the FPM
connection breaks (zebra stopped or died), and on `stop`, every learned route is handed on as a
delete: what the speaker no longer knows is not kept.

**Announced routes.** Each ``(prefix, nexthop)`` becomes a static route in the speaker's zebra
(``ip route PREFIX NEXTHOP`` / ``ipv6 route ...``), redistributed into BGP; the next hop is kept
as the route's next hop towards the peer (a third-party next hop, RFC 4271 5.1.3: the peer
sends the traffic to the cloud router's gateway address, not to the speaker) when the next hop
is on the network the speaker shares with the peer. A static route is active only when its next
hop is reachable from the speaker's namespace (an address on a connected network): one that is
not is not announced. Only the speaker's own routes go out (an AS-path filter ``^$``): routes
learned from one peer are not passed on to another.

**Sessions.** A peer of an IPv4 address exchanges IPv4 unicast routes, one of an IPv6 address
IPv6 unicast routes. ``configure`` may be called again at any time; it applies the differences
to the running FRR (through ``vtysh -N NAME``), and calling it twice with the same arguments
changes nothing. ``timers=(keepalive, hold)`` sets bgpd's timers for every session (FRR's
default is 60/180 s).

**Processes.** The daemons run in the namespace (``ip netns exec NS``) with their own
pathspace ``-N NAME`` (``name``, default ``kumoflow-NS``, or ``kumoflow`` without a namespace):
their sockets and pid files are in /var/run/frr/NAME/, their configuration and logs in a
private run directory (``run_dir``, default /run/kumoflow/bgp/NAME, mode 0770, root:frr). The
speaker stops the daemons it started, by the pids in their pid files (checked to be the
processes it started, by their command lines), on `stop` and on every failure of `start`;
never anything else. A pathspace already in use by live daemons is an error.

**FPM in the namespace.** zebra inside a namespace reaches only that namespace's 127.0.0.1, so
the speaker opens its FPM listening socket there: a short-lived thread enters the namespace
(setns(2) on /var/run/netns/NS), creates and binds the socket (127.0.0.1, ``fpm_port``; 0: any
free port), and the event loop serves it (`asyncio.start_server(sock=...)`). Anyone in the
namespace can connect to its 127.0.0.1: a connection is served only if its other end is a socket
of the speaker's zebra (found in /proc/PID/net/tcp and /proc/PID/fd); any other is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import grp
import inspect
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .fpm import RTPROT_BGP, DELETE, FpmDecoder, FpmError, Route

__all__ = ["Speaker", "SpeakerError", "Route"]

log = logging.getLogger("kumoflow.bgp")

FRR_DIR = Path("/usr/lib/frr")
FRR_RUN = Path("/var/run/frr")
NETNS_DIR = Path("/var/run/netns")
RUN_ROOT = Path("/run/kumoflow/bgp")
CLONE_NEWNET = 0x40000000
DAEMONS = ("zebra", "staticd", "bgpd")
LOCAL_ONLY = "KUMOFLOW-LOCAL-ONLY"

Callback = Callable[[list[Route], list[Route]], Any]
Key = tuple[int, Any]


class SpeakerError(RuntimeError):
    """The speaker could not start, or FRR refused a configuration (the message says which)."""


def _setns(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def listen_in_namespace(namespace: str | None, host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket bound in `namespace` (None: this one). The socket stays in the
    namespace it was made in whatever thread uses it later."""
    result: dict[str, Any] = {}

    def make() -> None:
        try:
            if namespace is not None:
                _setns(NETNS_DIR / namespace)    # this thread only; it ends right after
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(4)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            result["sock"] = sock
        except BaseException as e:               # handed to the caller's thread
            result["error"] = e

    thread = threading.Thread(target=make, name=f"fpm-listen-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:       # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class Speaker:
    """An FRR BGP speaker of kumoflow's own (see the module's docstring)."""

    def __init__(self, on_routes: Callback, namespace: str | None = None, *, name: str | None = None,
                 run_dir: str | os.PathLike | None = None, fpm_port: int = 0) -> None:
        self.on_routes = on_routes
        self.namespace = namespace
        self.name = name or (f"kumoflow-{namespace}" if namespace else "kumoflow")
        self.run_dir = Path(run_dir) if run_dir else RUN_ROOT / self.name
        self.fpm_port = fpm_port
        self.learned: dict[Key, Route] = {}
        self.fpm_errors = 0
        self._pids: dict[str, int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._connected = asyncio.Event()
        self._readers: set[asyncio.Task] = set()
        self._applied: dict[str, Any] | None = None
        self._config_lock = asyncio.Lock()
        self._started = False

    # --- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> "Speaker":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def pathspace(self) -> Path:
        return FRR_RUN / self.name

    async def start(self, timeout: float = 20.0) -> None:
        """Start zebra (with FPM to us), staticd and bgpd; returns once zebra's FPM stream is
        connected. Raises SpeakerError (nothing left running) when something fails."""
        if self._started:
            raise SpeakerError("the speaker is already started")
        for daemon in DAEMONS:
            if not (FRR_DIR / daemon).exists():
                raise SpeakerError(f"{FRR_DIR / daemon} not found: install Debian's frr package")
        if shutil.which("vtysh") is None:
            raise SpeakerError("vtysh not found: install Debian's frr package")
        if self.namespace is not None and not (NETNS_DIR / self.namespace).exists():
            raise SpeakerError(f"network namespace {self.namespace!r} does not exist ({NETNS_DIR})")
        for daemon in DAEMONS:
            pid = self._pid_from_file(daemon)
            if pid is not None and _alive(pid) and f"{self.name}" in _cmdline(pid):
                raise SpeakerError(f"FRR pathspace {self.name!r} is in use: {daemon} runs as pid {pid}")
        self._started = True
        try:
            await self._start(timeout)
        except BaseException as e:
            await self.stop(keep_logs=True)
            if isinstance(e, (SpeakerError, asyncio.CancelledError)):
                raise
            raise SpeakerError(f"starting the BGP speaker {self.name!r} failed: {e}") from e

    async def _start(self, timeout: float) -> None:
        if self.namespace is not None:
            await self._run(["ip", "-n", self.namespace, "link", "set", "lo", "up"])
        sock = listen_in_namespace(self.namespace, "127.0.0.1", self.fpm_port)
        port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve_fpm, sock=sock)
        self._write_configs(port)
        for daemon in DAEMONS:
            extra = ["-M", "dplane_fpm_nl", "-s", "90000000"] if daemon == "zebra" else []
            argv = [str(FRR_DIR / daemon), "-d", "-N", self.name, "-f", str(self.run_dir / f"{daemon}.conf"),
                    "-A", "127.0.0.1", *extra]
            if self.namespace is not None:
                argv = ["ip", "netns", "exec", self.namespace, *argv]
            await self._run(argv, timeout=timeout, daemon=True)
            pid = self._pid_from_file(daemon)
            if pid is None or not _alive(pid) or str(self.run_dir / f"{daemon}.conf") not in _cmdline(pid):
                raise SpeakerError(f"{daemon} did not start (pid file {self.pathspace / (daemon + '.pid')}); "
                                   f"see {self.run_dir / (daemon + '.log')}")
            self._pids[daemon] = pid
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            raise SpeakerError(f"zebra did not connect to the FPM socket 127.0.0.1:{port} within {timeout} s; "
                               f"see {self.run_dir / 'zebra.log'}") from None
        log.info("BGP speaker %s up in %s (zebra %d, staticd %d, bgpd %d; FPM port %d)", self.name,
                 self.namespace or "the controller's namespace", self._pids["zebra"], self._pids["staticd"],
                 self._pids["bgpd"], port)

    def _write_configs(self, fpm_port: int) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            gid = grp.getgrnam("frr").gr_gid
        except KeyError:
            raise SpeakerError("no group 'frr': install Debian's frr package") from None
        os.chown(self.run_dir, 0, gid)
        os.chmod(self.run_dir, 0o770)
        for daemon in DAEMONS:
            lines = [f"hostname {self.name}", f"log file {self.run_dir / (daemon + '.log')} informational"]
            if daemon == "zebra" and fpm_port:
                # every route with its next hops in RTA_GATEWAY/RTA_MULTIPATH, not by next-hop group id
                lines += ["no fpm use-next-hop-groups", f"fpm address 127.0.0.1 port {fpm_port}"]
            path = self.run_dir / f"{daemon}.conf"
            path.write_text("\n".join(lines) + "\n")
            os.chown(path, 0, gid)
            os.chmod(path, 0o640)

    def _pid_from_file(self, daemon: str) -> int | None:
        try:
            return int((self.pathspace / f"{daemon}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    async def stop(self, timeout: float = 5.0, keep_logs: bool = False) -> None:
        """Stop the daemons this speaker started (by pid, SIGTERM then SIGKILL), close the FPM
        socket, remove the run directory (kept with `keep_logs`, and when `start` failed), and
        hand every learned route to the callback as a delete."""
        for daemon in reversed(DAEMONS):
            pid = self._pids.pop(daemon, None)
            if pid is None:
                pid = self._pid_from_file(daemon) if self._started else None
                # only one this speaker started: its command line names our configuration
                if pid is None or str(self.run_dir / f"{daemon}.conf") not in _cmdline(pid):
                    continue
            await self._kill(pid, daemon, timeout)
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._readers):
            task.cancel()
        for task in list(self._readers):
            with contextlib.suppress(BaseException):
                await task
        if self._started:
            for daemon in DAEMONS:
                for suffix in (".pid", ".vty"):
                    with contextlib.suppress(OSError):
                        (self.pathspace / f"{daemon}{suffix}").unlink()
            with contextlib.suppress(OSError):
                (self.pathspace / "zserv.api").unlink()
            with contextlib.suppress(OSError):
                self.pathspace.rmdir()
            if not keep_logs:
                for daemon in DAEMONS:
                    for suffix in (".conf", ".log"):
                        with contextlib.suppress(OSError):
                            (self.run_dir / f"{daemon}{suffix}").unlink()
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()
        self._started = False
        self._applied = None
        self._connected.clear()
        await self._flush_learned()

    async def _kill(self, pid: int, daemon: str, timeout: float) -> None:
        mine = _cmdline(pid)
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while _alive(pid) and _cmdline(pid) == mine and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if _alive(pid) and _cmdline(pid) == mine:
            log.warning("%s (pid %d) did not stop within %s s: SIGKILL", daemon, pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def _run(self, argv: Sequence[str], input: bytes | None = None, timeout: float = 30.0,
                   daemon: bool = False) -> str:
        """Run a command; its output. `daemon`: it forks a daemon that keeps
        whatever stdout and stderr it was given, so give it none and wait
        for the command itself to exit (reading its pipes would wait for the
        daemon; under uvloop it does)."""
        pipe = asyncio.subprocess.DEVNULL if daemon else asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE if input else
                                                    asyncio.subprocess.DEVNULL, stdout=pipe, stderr=pipe)
        try:
            if daemon:
                await asyncio.wait_for(proc.wait(), timeout)
                out, err = b"", b""
            else:
                out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SpeakerError(f"{' '.join(argv[:6])} ...: no answer within {timeout} s") from None
        errors = [line for line in err.decode(errors="replace").splitlines()
                  if line.strip() and "vtysh.conf" not in line and "Disabling MPLS" not in line]
        if proc.returncode != 0:
            raise SpeakerError(f"{' '.join(argv[:6])}: exit status {proc.returncode}: {'; '.join(errors)}")
        return out.decode(errors="replace")

    # --- the FPM stream ------------------------------------------------------------------------

    async def _zebra_pid(self, wait: float = 10.0) -> int | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            pid = self._pids.get("zebra") or self._pid_from_file("zebra")
            if pid is not None and str(self.run_dir / "zebra.conf") in _cmdline(pid):
                return pid
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def _from_zebra(self, writer: asyncio.StreamWriter) -> bool:
        """Whether the connection is our zebra's: its end's socket is one of zebra's open files
        (anyone in the namespace can connect to 127.0.0.1, and what comes in becomes routes)."""
        peer, ours = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
        pid = await self._zebra_pid()
        if pid is None or not peer or not ours:
            return False
        inodes = set()
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == peer[1] \
                        and int(fields[2].rsplit(":", 1)[1], 16) == ours[1]:
                    inodes.add(fields[9])
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in inodes:     # socket:[INODE]
                        return True
        except OSError:
            pass
        return False

    async def _serve_fpm(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await self._from_zebra(writer):
            log.warning("BGP speaker %s: an FPM connection from %s is not our zebra's: closed", self.name,
                        writer.get_extra_info("peername"))
            writer.close()
            return
        task = asyncio.current_task()
        self._readers.add(task)
        decoder = FpmDecoder()
        self._connected.set()
        log.info("zebra connected to FPM (%s)", self.name)
        try:
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                decoder.feed(data)
                routes: list[Route] = []
                while True:
                    try:
                        route = decoder.next_route()
                    except FpmError as e:
                        self.fpm_errors += 1
                        log.warning("BGP speaker %s: %s", self.name, e)
                        if decoder.broken:
                            break
                        continue
                    if route is None:
                        break
                    routes.append(route)
                if routes:
                    await self._deliver(routes)
                if decoder.broken:
                    break
        except (ConnectionError, OSError) as e:
            log.warning("BGP speaker %s: FPM connection: %s", self.name, e)
        finally:
            self._readers.discard(task)
            writer.close()
            log.info("zebra's FPM connection closed (%s)", self.name)
            if not self._readers:
                self._connected.clear()
                await self._flush_learned()

    async def _deliver(self, routes: Iterable[Route]) -> None:
        learned = self.learned
        before: dict[Key, Route | None] = {}     # each prefix touched: what was learned before the batch
        last: dict[Key, Route] = {}              # ... and the last message about it
        for route in routes:
            key = (route.table, route.prefix)
            old = learned.pop(key, None)
            before.setdefault(key, old)
            last[key] = route
            if route.protocol == RTPROT_BGP and route.action != DELETE:
                learned[key] = route
        adds, deletes = [], []
        for key, old in before.items():
            new = learned.get(key)
            if new is None:
                if old is not None:        # withdrawn (zebra's delete is handed on), or now one of our own
                    route = last[key]
                    deletes.append(route if route.action == DELETE else
                                   Route(DELETE, old.prefix, (), old.table, old.protocol, old.metric, old.type))
            elif old is None or new != old:
                adds.append(new)
        if adds or deletes:
            await self._call(adds, deletes)

    async def _flush_learned(self) -> None:
        if self.learned:
            gone = [Route(DELETE, r.prefix, (), r.table, r.protocol, r.metric, r.type) for r in self.learned.values()]
            self.learned = {}
            await self._call([], gone)

    async def _call(self, adds: list[Route], deletes: list[Route]) -> None:
        try:
            result = self.on_routes(adds, deletes)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("BGP speaker %s: the route callback failed (%d adds, %d deletes)", self.name,
                          len(adds), len(deletes))

    # --- configuration -------------------------------------------------------------------------

    async def configure(self, local_as: int, router_id: str,
                        peers: Iterable[tuple] = (),
                        announced: Iterable[tuple[str, str]] = (),
                        timers: tuple[int, int] | None = None) -> None:
        """Make the running speaker so: AS `local_as`, `router_id`, sessions with `peers`
        ``(ip, remote_as)`` or ``(ip, remote_as, password)``, announcing `announced`
        ``(prefix, nexthop)``. Raises ValueError on bad arguments (nothing applied), SpeakerError
        when FRR refuses a command."""
        want = self._desired(local_as, router_id, peers, announced, timers)
        async with self._config_lock:
            if not self._started:
                raise SpeakerError("the speaker is not started")
            have = self._applied
            lines = self._commands(have, want)
            if lines:
                await self._vtysh_file(lines)
            self._applied = want

    @staticmethod
    def _desired(local_as: int, router_id: str, peers: Iterable[tuple], announced: Iterable[tuple[str, str]],
                 timers: tuple[int, int] | None) -> dict[str, Any]:
        if not isinstance(local_as, int) or not 1 <= local_as <= 4294967295:
            raise ValueError(f"local_as {local_as!r}: an AS number is 1..4294967295")
        rid = ipaddress.IPv4Address(router_id)
        peer_map: dict[str, tuple[int, str | None]] = {}
        for peer in peers:
            if len(peer) not in (2, 3):
                raise ValueError(f"peer {peer!r}: (ip, remote_as) or (ip, remote_as, password)")
            ip = ipaddress.ip_address(peer[0])
            remote_as = peer[1]
            password = peer[2] if len(peer) == 3 else None
            if not isinstance(remote_as, int) or not 1 <= remote_as <= 4294967295:
                raise ValueError(f"peer {ip}: remote AS {remote_as!r} is not 1..4294967295")
            if password is not None and (not password or any(c.isspace() or not c.isprintable() for c in password)
                                         or len(password) > 80):
                raise ValueError(f"peer {ip}: a password is 1..80 printable characters without spaces")
            if str(ip) in peer_map:
                raise ValueError(f"peer {ip} given twice")
            peer_map[str(ip)] = (remote_as, password or None)
        routes: set[tuple[str, str]] = set()
        for prefix, nexthop in announced:
            net = ipaddress.ip_network(prefix)
            hop = ipaddress.ip_address(nexthop)
            if net.version != hop.version:
                raise ValueError(f"announced {prefix} via {nexthop}: not the same IP version")
            routes.add((str(net), str(hop)))
        if timers is not None:
            keepalive, hold = timers
            if not (0 <= keepalive <= 65535 and (hold == 0 or 3 <= hold <= 65535)):
                raise ValueError(f"timers {timers!r}: keepalive 0..65535, hold 0 or 3..65535")
        return {"as": local_as, "router_id": str(rid), "peers": peer_map, "announced": routes, "timers": timers}

    @staticmethod
    def _commands(have: dict[str, Any] | None, want: dict[str, Any]) -> list[str]:
        """Configuration lines (vtysh -f: configuration mode) that turn `have` into `want`."""
        out: list[str] = []

        def static(prefix: str, hop: str, remove: bool = False) -> str:
            kind = "ipv6" if ":" in prefix else "ip"
            return f"{'no ' if remove else ''}{kind} route {prefix} {hop}"

        fresh = have is None or have["as"] != want["as"]
        if have is not None and have["as"] != want["as"]:
            out.append(f"no router bgp {have['as']}")
        old_routes = set() if have is None else have["announced"]
        out += [static(p, h, remove=True) for p, h in sorted(old_routes - want["announced"])]
        out += [static(p, h) for p, h in sorted(want["announced"] - old_routes)]
        if fresh:
            out.append(f"bgp as-path access-list {LOCAL_ONLY} seq 5 permit ^$")
        bgp = [f"router bgp {want['as']}"]
        body: list[str] = []
        if fresh:
            body += ["no bgp ebgp-requires-policy", "no bgp default ipv4-unicast", "bgp bestpath as-path multipath-relax"]
        if fresh or have["router_id"] != want["router_id"]:
            body.append(f"bgp router-id {want['router_id']}")
        if fresh or have["timers"] != want["timers"]:
            body.append(f"timers bgp {want['timers'][0]} {want['timers'][1]}" if want["timers"] else "no timers bgp")
        old_peers = {} if fresh else have["peers"]
        new_peers = want["peers"]
        per_af: dict[int, list[str]] = {4: [], 6: []}
        for ip, (remote_as, _password) in old_peers.items():
            if ip not in new_peers or new_peers[ip][0] != remote_as:
                body.append(f"no neighbor {ip}")
        for ip, (remote_as, password) in new_peers.items():
            old = old_peers.get(ip)
            if old is not None and old[0] == remote_as:
                if old[1] != password:
                    body.append(f"neighbor {ip} password {password}" if password else f"no neighbor {ip} password")
                continue
            body.append(f"neighbor {ip} remote-as {remote_as}")
            if password:
                body.append(f"neighbor {ip} password {password}")
            version = ipaddress.ip_address(ip).version
            per_af[version] += [f"neighbor {ip} activate", f"neighbor {ip} filter-list {LOCAL_ONLY} out"]
        for version, af in ((4, "ipv4"), (6, "ipv6")):
            lines = (["redistribute static"] if fresh else []) + per_af[version]
            if lines:
                body += [f"address-family {af} unicast", *(" " + line for line in lines), "exit-address-family"]
        if body:
            out += bgp + [" " + line for line in body] + ["exit"]
        return out

    async def _vtysh_file(self, lines: list[str]) -> None:
        path = self.run_dir / f"configure-{os.getpid()}.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # passwords: root only
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        try:
            await self._run(["vtysh", "-N", self.name, "-f", str(path)])
        except SpeakerError as e:
            raise SpeakerError(f"FRR refused the configuration: {e}") from None
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    async def vtysh_json(self, command: str) -> Any:
        """A ``show ... json`` command's answer, decoded."""
        text = await self._run(["vtysh", "-N", self.name, "-c", command])
        return json.loads(text or "{}")

    async def peers(self) -> list[dict]:
        """Each configured peer's session: ``peer_ip``, ``remote_as``, ``state`` (bgpd's:
        Idle, Connect, Active, OpenSent, OpenConfirm, Established), ``established_s`` (seconds
        since it was established, None when it is not), ``received`` (prefixes accepted from
        it), ``sent`` (prefixes announced to it)."""
        if not self._started:
            return []
        found = await self.vtysh_json("show bgp neighbors json")
        out = []
        for ip, info in found.items():
            if not isinstance(info, dict) or "bgpState" not in info:
                continue
            families = info.get("addressFamilyInfo", {})
            received = sum(af.get("acceptedPrefixCounter", 0) for af in families.values() if isinstance(af, dict))
            sent = sum(af.get("sentPrefixCounter", 0) for af in families.values() if isinstance(af, dict))
            up = info.get("bgpTimerUpMsec")
            out.append({"peer_ip": ip, "remote_as": info.get("remoteAs"), "state": info["bgpState"],
                        "established_s": (up / 1000 if info["bgpState"] == "Established" and up is not None
                                          else None),
                        "received": received, "sent": sent})
        return sorted(out, key=lambda p: (ipaddress.ip_address(p["peer_ip"]).version,
                                          ipaddress.ip_address(p["peer_ip"])))
