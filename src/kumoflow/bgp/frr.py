"""A plain FRR router in a network namespace: the peer router of the BGP tests and benchmarks
(and a building block for an emulated router host).

    router = FrrRouter("peerns", {"zebra": "...", "staticd": "ip route ...", "bgpd": "router bgp ..."})
    await router.start()
    await router.vtysh("show bgp ipv4 unicast summary json")   # text; router.vtysh_json(...) decodes
    await router.stop()

Daemons: those named in the configuration dict (zebra first; any of FRR's daemons), each run
as ``ip netns exec NS /usr/lib/frr/DAEMON -d -N NAME -f RUN_DIR/DAEMON.conf -A 127.0.0.1``,
stopped by the pids in their pid files (only if their command lines name this router's
configuration). ``name`` (the pathspace) defaults to ``peer-NS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from .speaker import FRR_DIR, FRR_RUN, SpeakerError, _alive, _cmdline

__all__ = ["FrrRouter"]


class FrrRouter:
    def __init__(self, namespace: str, configs: dict[str, str], *, name: str | None = None,
                 zebra_args: tuple[str, ...] = ("-s", "90000000")) -> None:
        self.namespace = namespace
        self.name = name or f"peer-{namespace}"
        self.configs = {"zebra": "", **configs}
        self.zebra_args = zebra_args
        self.run_dir: Path | None = None
        self.pids: dict[str, int] = {}

    async def _run(self, *argv: str, timeout: float = 60.0, daemon: bool = False) -> str:
        """A command's output. `daemon`: it forks a daemon that may keep the stdout and stderr it
        was given, so it gets none and only its own exit is awaited (as Speaker._run)."""
        pipe = asyncio.subprocess.DEVNULL if daemon else asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=pipe, stderr=pipe)
        if daemon:
            await asyncio.wait_for(proc.wait(), timeout)
            out = err = b""
        else:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        if proc.returncode != 0:
            lines = [line for line in err.decode(errors="replace").splitlines() if "vtysh.conf" not in line]
            raise SpeakerError(f"{' '.join(argv[:6])}: exit status {proc.returncode}: {'; '.join(lines)}")
        return out.decode(errors="replace")

    async def start(self) -> None:
        gid = grp.getgrnam("frr").gr_gid
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"frr-{self.name}-"))
        os.chown(self.run_dir, 0, gid)
        os.chmod(self.run_dir, 0o770)
        try:
            await self._run("ip", "-n", self.namespace, "link", "set", "lo", "up")
            for daemon, text in self.configs.items():
                path = self.run_dir / f"{daemon}.conf"
                path.write_text(f"hostname {self.name}\nlog file {self.run_dir / daemon}.log informational\n"
                                + text + "\n")
                os.chown(path, 0, gid)
                os.chmod(path, 0o640)
                extra = list(self.zebra_args) if daemon == "zebra" else []
                await self._run("ip", "netns", "exec", self.namespace, str(FRR_DIR / daemon), "-d", "-N", self.name,
                                "-f", str(path), "-A", "127.0.0.1", *extra, daemon=True)
                pid = int((FRR_RUN / self.name / f"{daemon}.pid").read_text().split()[0])
                if str(path) not in _cmdline(pid):
                    raise SpeakerError(f"{daemon} of {self.name}: pid {pid} is not the process started")
                self.pids[daemon] = pid
        except BaseException:
            await self.stop()
            raise

    async def vtysh(self, *commands: str) -> str:
        argv = ["vtysh", "-N", self.name]
        for command in commands:
            argv += ["-c", command]
        return await self._run(*argv)

    async def vtysh_json(self, command: str) -> Any:
        return json.loads(await self.vtysh(command) or "{}")

    def pid(self, daemon: str) -> int:
        return self.pids[daemon]

    async def stop(self) -> None:
        for daemon in reversed(list(self.pids)):
            pid = self.pids.pop(daemon)
            mine = _cmdline(pid)
            if not _alive(pid) or self.run_dir is None or str(self.run_dir / f"{daemon}.conf") not in mine:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)    # a test may have stopped it
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid) or _cmdline(pid) != mine:
                    break
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        space = FRR_RUN / self.name
        if space.is_dir():
            for entry in space.iterdir():
                with contextlib.suppress(OSError):
                    entry.unlink()
            with contextlib.suppress(OSError):
                space.rmdir()
        if self.run_dir is not None:
            for entry in self.run_dir.iterdir():
                with contextlib.suppress(OSError):
                    entry.unlink()
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()
