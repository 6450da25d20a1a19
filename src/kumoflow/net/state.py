"""State records: what a running topology made, kept on disk.

``up`` writes ``<run dir>/<topology>.json`` *before* creating anything,
listing every namespace, interface and switch it is about to create, and
updates it as switches come up; ``down`` reads it back, so it removes
everything even when the process that ran ``up`` crashed. The run directory
is ``/run/kumoflow`` (a tmpfs: records vanish on reboot, as do the
namespaces and links they describe), or ``$KUMOFLOW_RUN_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_RUN_DIR = "/run/kumoflow"
VERSION = 1


def run_dir() -> Path:
    return Path(os.environ.get("KUMOFLOW_RUN_DIR") or DEFAULT_RUN_DIR)


def record_path(name: str, directory: Path | None = None) -> Path:
    return (directory or run_dir()) / f"{name}.json"


def write(record: dict[str, Any], directory: Path | None = None) -> Path:
    """Atomically (re)write the record of ``record["name"]``."""
    path = record_path(record["name"], directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump({"version": VERSION, **record}, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path


def read(name: str, directory: Path | None = None) -> dict[str, Any] | None:
    """The record of topology ``name``, or None if there is none (or it is
    unreadable: a half-written file is never left, see :func:`write`)."""
    try:
        with open(record_path(name, directory), encoding="utf-8") as src:
            record = json.load(src)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("name") == name else None


def remove(name: str, directory: Path | None = None) -> None:
    try:
        record_path(name, directory).unlink()
    except FileNotFoundError:
        pass


def all_records(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every readable record, sorted by topology name."""
    directory = directory or run_dir()
    records = []
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        record = read(path.stem, directory)
        if record is not None:
            records.append(record)
    return records


def find_host(host: str, topology: str | None = None, directory: Path | None = None) -> list[dict[str, Any]]:
    """Records of running topologies that have a host named ``host``
    (restricted to ``topology`` when given)."""
    return [
        r
        for r in all_records(directory)
        if (topology is None or r["name"] == topology) and host in r.get("hosts", {})
    ]
