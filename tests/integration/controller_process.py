"""Run `kumoflow controller` as a real process for integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import kumoflow

SRC = str(Path(kumoflow.__file__).resolve().parents[1])


class ControllerProcess:
    """`kumoflow controller` on 127.0.0.1, stopped by PID.

    With port 0 (the default) the controller binds a port of the kernel's
    choosing and reports it in its status file (``--status-file``), which is
    also how `start` knows it is listening; `port` and `target` are then that
    port. A restart (`stop`, then `start`) binds the same port again, so
    switches configured with `target` find it."""

    def __init__(self, port: int = 0, apps: tuple[str, ...] = ("l2",), log: Path | None = None,
                 echo_interval: float = 1.0, log_level: str = "info", args: tuple[str, ...] = ()) -> None:
        """`args`: more command-line arguments (``("--audit-interval", "2")``)."""
        self.port = port
        self.apps = apps
        self.log = log
        self.echo_interval = echo_interval
        self.log_level = log_level
        self.args = tuple(args)
        self.proc: subprocess.Popen | None = None
        self.status: dict = {}      # the controller's --status-file, once started
        # its own desired-state store, kept across restarts, gone with the process object
        self._store_dir = tempfile.TemporaryDirectory(prefix="kf-store-")
        self.store = f"sqlite:{self._store_dir.name}/kumoflow.db"

    @property
    def target(self) -> str:
        assert self.port, "the controller has not been started: its port is not known yet"
        return f"tcp:127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "ControllerProcess":
        with tempfile.TemporaryDirectory(prefix="kf-ctl-") as tmp:
            status = Path(tmp) / "status.json"
            argv = [sys.executable, "-m", "kumoflow.cli", "controller", "--listen", f"tcp:127.0.0.1:{self.port}",
                    "--status-file", str(status), "--echo-interval", str(self.echo_interval),
                    "--log-level", self.log_level, "--store", self.store]
            for app in self.apps:
                argv += ["--app", app]
            argv += self.args
            with open(self.log, "ab") if self.log else open(os.devnull, "wb") as out:
                self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                             env={**os.environ, "PYTHONPATH": SRC})
            deadline = time.monotonic() + timeout
            while not status.exists():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"controller exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"controller wrote no status file within {timeout}s")
                time.sleep(0.05)
            self.status = json.loads(status.read_text())   # also "api": its URL, with --api
            [listen] = self.status["listen"]
        self.port = int(listen.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def __enter__(self) -> "ControllerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Cable:
    """A TCP relay between switches and a controller that a test can cut and
    mend, to disconnect switches without touching their configuration.

    The relay listens from the start to the end on a port of the kernel's
    choosing; while cut, it drops every connection it had and resets every
    new one at once, so a switch sees its controller gone, and the port is
    never released for another process to take."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._open = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def mend(self) -> "Cable":
        with self._lock:
            self._open = True
        return self

    def cut(self) -> None:
        """Drop every relayed connection and reset new ones until mended."""
        with self._lock:
            self._open = False
            for s in self._sockets:
                _drop(s)
            self._sockets.clear()

    def close(self) -> None:
        """Cut, and stop listening for good."""
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)      # wakes the blocked accept()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return                                      # closed
            with self._lock:
                if not self._open:
                    _reset(down)
                    continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                _reset(down)
                continue
            with self._lock:
                if not self._open:                          # cut meanwhile
                    _reset(down)
                    _reset(up)
                    continue
                self._sockets += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _drop(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


def _reset(s: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a refused peer would see it."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
