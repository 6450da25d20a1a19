"""Controllers under test for cbench.py: start one on a free loopback port, watch it, stop it.

Three kinds, each run as its own process so it owns its core and its RSS
can be read from /proc:

    kumoflow   python -m kumoflow.cli controller --app l2 (uvloop)
    osken      osken-manager benchmarks/controller/_osken_simple_switch_13.py with os-ken's
               default hub (OSKEN_HUB_TYPE=native: OS threads); _cbench_osken.py stands
               in for osken-manager, which os-ken 4.x no longer installs
    osken-eventlet  the same with OSKEN_HUB_TYPE=eventlet (green threads, os-ken's old default)
    null       python benchmarks/controller/_cbench_null.py (the generator's ceiling)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import REPO, free_port

HERE = Path(__file__).resolve().parent
KINDS = ("kumoflow", "osken", "osken-eventlet", "null")
UP_LINE = re.compile(rb"switch \S+ up\b")
DOWN_LINE = re.compile(rb"switch \S+ down\b")


def listening(port: int) -> bool:
    """Is something LISTENing on 127.0.0.1:port (read from /proc/net/tcp: no probe connection)?"""
    want = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def listen_overflows() -> int:
    """TcpExt ListenOverflows: SYNs dropped because an accept queue was full (each costs the client 1 s)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return 0


def osken_manager(python: str) -> list[str]:
    """`osken-manager` beside the Python if os-ken installed one, else our equivalent launcher."""
    beside = Path(python).parent / "osken-manager"
    return [str(beside)] if beside.exists() else [python, str(HERE / "_cbench_osken.py")]


class Controller:
    """One controller process on 127.0.0.1:port, logging to a temp file."""

    def __init__(self, kind: str, port: int | None = None, echo_interval: float | None = None,
                 cpu: int | None = None, profile: str | None = None, python: str = sys.executable,
                 log_dir: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown controller {kind!r}: one of {', '.join(KINDS)}")
        self.kind = kind
        self.port = port or free_port()
        self.cpu = cpu
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), self.env.get("PYTHONPATH")]))
        listen = f"tcp:127.0.0.1:{self.port}"
        self.conf_path: str | None = None
        if kind == "kumoflow":
            prof = ["-m", "cProfile", "-o", profile] if profile else []
            self.argv = [python, *prof, "-m", "kumoflow.cli", "controller", "--listen", listen, "--app", "l2",
                         "--store", "none"]
            if echo_interval:
                self.argv += ["--echo-interval", str(echo_interval)]
        elif kind.startswith("osken"):
            self.env["OSKEN_HUB_TYPE"] = "eventlet" if kind == "osken-eventlet" else "native"
            self.argv = [*osken_manager(python), str(HERE / "_osken_simple_switch_13.py"),
                         "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(self.port)]
            if echo_interval:   # config-file options, not command-line ones
                fd, self.conf_path = tempfile.mkstemp(prefix="cbench-osken-", suffix=".conf", dir=log_dir)
                os.write(fd, f"[DEFAULT]\necho_request_interval = {echo_interval}\n"
                             f"maximum_unreplied_echo_requests = 3\n".encode())
                os.close(fd)
                self.argv += ["--config-file", self.conf_path]
        else:
            self.argv = [python, str(HERE / "_cbench_null.py"), "--listen", listen]
        fd, self.log_path = tempfile.mkstemp(prefix=f"cbench-{kind}-", suffix=".log", dir=log_dir)
        os.close(fd)
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def command(self) -> str:
        return " ".join(self.argv)

    def start(self, timeout: float = 30.0) -> "Controller":
        log = open(self.log_path, "wb")
        cpu = self.cpu

        def child_setup() -> None:
            # A shell's background job inherits SIGINT ignored; stop() relies on SIGINT.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     stdin=subprocess.DEVNULL, cwd=str(REPO), preexec_fn=child_setup)
        log.close()
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} before listening:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} did not listen on port {self.port} in {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (clean shutdown: a profiler writes its file), then SIGTERM, then SIGKILL; by PID."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                return self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()

    def log_bytes(self) -> bytes:
        with open(self.log_path, "rb") as f:
            return f.read()

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log_bytes().decode("utf-8", "replace").splitlines()[-n:])

    def count_up(self) -> int:
        return len(UP_LINE.findall(self.log_bytes()))

    def count_down(self) -> int:
        return len(DOWN_LINE.findall(self.log_bytes()))

    def rss_kib(self) -> int:
        return benchlib.rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return benchlib.cpu_seconds(self.pid)

    def cleanup(self, keep_log: bool = False) -> None:
        if self.conf_path:
            os.unlink(self.conf_path)
            self.conf_path = None
        if not keep_log:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
