"""Run `kumoflow controller` as a real process for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import kumoflow

SRC = str(Path(kumoflow.__file__).resolve().parents[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControllerProcess:
    """`kumoflow controller` on 127.0.0.1:port, stopped by PID."""

    def __init__(self, port: int, apps: tuple[str, ...] = ("l2",), log: Path | None = None,
                 echo_interval: float = 1.0) -> None:
        self.port = port
        self.apps = apps
        self.log = log
        self.echo_interval = echo_interval
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def start(self) -> "ControllerProcess":
        argv = [sys.executable, "-m", "kumoflow.cli", "controller", "--listen", self.target,
                "--echo-interval", str(self.echo_interval), "--log-level", "info"]
        for app in self.apps:
            argv += ["--app", app]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": SRC})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("controller did not start listening")

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
    mend, to disconnect switches without touching their configuration."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def mend(self) -> "Cable":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until mended."""
        with self._lock:
            if self._listener is not None:
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept()
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                down.close()
                continue
            with self._lock:
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
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
