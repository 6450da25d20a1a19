"""The desired-state store (kumoflow.store) on SQLite: every operation, the
single revision counter and its change feed, atomic commits, persistence
across a reopen, watch callbacks, list filters, a damaged or foreign file
refused at open and left byte for byte as it was, and the controller's mirror
(core.state) following the feed to the same records as a fresh snapshot."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kumoflow
from kumoflow.controller import App
from kumoflow.controller.core import Core
from kumoflow.controller.runtime import Controller
from kumoflow.store import Change, Conflict, NotFound, Record, StoreCorrupt, StoreError, open_store
from kumoflow.store.sqlite import APPLICATION_ID, SQLiteStore

SRC = str(Path(kumoflow.__file__).resolve().parents[1])
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Clock:
    """Seconds since the epoch, moved on by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def memory(clock=None) -> SQLiteStore:
    return await SQLiteStore.open(":memory:", **({"clock": clock} if clock else {}))


# --- operations ------------------------------------------------------------------------------

def test_create_get_update_delete():
    async def main():
        clock = Clock()
        store = await memory(clock)
        assert store.revision == 0
        net = await store.create("network", {"name": "blue", "mtu": 1450}, project_id="p1")
        assert uuid.UUID(net.id).version == 4 and str(uuid.UUID(net.id)) == net.id
        assert (net.kind, net.project_id, net.revision, net.body) == ("network", "p1", 1, {"name": "blue", "mtu": 1450})
        assert net.created_at == net.updated_at == "2027-01-15T08:00:00Z"
        assert await store.get("network", net.id) == net

        clock.now += 61
        green = await store.update("network", net.id, {"name": "green"}, expect_revision=1)
        assert (green.revision, green.body, green.project_id) == (2, {"name": "green"}, "p1")
        assert (green.created_at, green.updated_at) == ("2027-01-15T08:00:00Z", "2027-01-15T08:01:01Z")
        assert await store.get("network", net.id) == green

        mine = await store.create("port", {"name": "p"}, project_id="p2", id="port-1")
        assert (mine.id, mine.revision) == ("port-1", 3)

        gone = await store.delete("network", net.id)
        assert gone == green
        with pytest.raises(NotFound):
            await store.get("network", net.id)
        assert store.revision == 4
        assert [(c.revision, c.kind, c.id, c.record, c.old) for c in await store.changes(0)] == [
            (1, "network", net.id, net, None),
            (2, "network", net.id, green, net),
            (3, "port", "port-1", mine, None),
            (4, "network", net.id, None, green),
        ]
        assert await store.changes(2) == (await store.changes(0))[2:]
        assert await store.changes(4) == []
        snapshot = await store.snapshot()
        assert (snapshot.revision, snapshot.records) == (4, [mine])
        await store.close()
    run(main())


def test_times_are_iso_8601_utc():
    async def main():
        store = await memory()
        record = await store.create("network", {}, project_id="p")
        assert ISO_Z.match(record.created_at) and ISO_Z.match(record.updated_at)
        assert abs(calendar.timegm(time.strptime(record.created_at, "%Y-%m-%dT%H:%M:%SZ")) - time.time()) < 5
    run(main())


def test_a_body_comes_back_as_json_gives_it_back():
    async def main():
        store = await memory()
        body = {"t": (1, 2), "n": None, "b": False, "f": 1.5, "d": {"x": ["y"]}}
        record = await store.create("network", body, project_id="p")
        assert record.body == {"t": [1, 2], "n": None, "b": False, "f": 1.5, "d": {"x": ["y"]}}
        assert await store.get("network", record.id) == record
        body["d"]["x"].append("z")                      # the caller's dict is not the store's
        assert (await store.get("network", record.id)).body["d"] == {"x": ["y"]}
    run(main())


def test_not_found():
    async def main():
        store = await memory()
        for call in (store.get("network", "nope"), store.update("network", "nope", {}),
                     store.delete("network", "nope")):
            with pytest.raises(NotFound, match="network nope"):
                await call
        await store.create("port", {}, project_id="p", id="same")
        with pytest.raises(NotFound):
            await store.get("network", "same")        # ids are per kind
        assert store.revision == 1
    run(main())


def test_expect_revision_conflicts():
    async def main():
        store = await memory()
        net = await store.create("network", {"name": "a"}, project_id="p")
        await store.update("network", net.id, {"name": "b"}, expect_revision=net.revision)
        with pytest.raises(Conflict, match="revision 2, not 1"):
            await store.update("network", net.id, {"name": "c"}, expect_revision=net.revision)
        with pytest.raises(Conflict):
            await store.delete("network", net.id, expect_revision=1)
        assert (await store.get("network", net.id)).body == {"name": "b"}
        assert store.revision == 2
        await store.delete("network", net.id, expect_revision=2)
        assert store.revision == 3
    run(main())


def test_an_id_taken_is_a_conflict():
    async def main():
        store = await memory()
        await store.create("network", {"name": "a"}, project_id="p", id="n1")
        with pytest.raises(Conflict, match="n1 exists"):
            await store.create("network", {"name": "b"}, project_id="q", id="n1")
        assert (await store.get("network", "n1")).body == {"name": "a"}
        assert store.revision == 1
    run(main())


def test_bad_input_is_a_value_error_and_writes_nothing():
    async def main():
        store = await memory()
        for bad in ([("create", "network", {"x": object()}, "p")],
                    [("create", "network", {"x": float("nan")}, "p")],
                    [("create", "network", ["not", "a", "dict"], "p")],
                    [("create", "", {}, "p")],
                    [("create", "network", {}, None)],
                    [("update", "network", "n", {}, "1")],
                    [("upsert", "network", {}, "p")],
                    [("delete",)],
                    ["create"]):
            with pytest.raises(ValueError, match="commit op 0"):
                await store.commit(bad)
        with pytest.raises(ValueError, match="not JSON"):
            await store.create("network", {"when": time}, project_id="p")
        with pytest.raises(ValueError):
            await store.list("network", name=object())
        assert store.revision == 0 and await store.changes(0) == []
    run(main())


def test_a_closed_store_says_so():
    async def main():
        store = await memory()
        await store.close()
        await store.close()                            # twice is fine
        with pytest.raises(StoreError, match="closed"):
            await store.get("network", "x")
    run(main())


# --- revisions and commits --------------------------------------------------------------------

def test_revisions_increase_by_one_per_commit_and_a_commit_shares_one():
    async def main():
        store = await memory()
        a = await store.create("network", {}, project_id="p")
        changes = await store.commit([("create", "subnet", {"cidr": "10.0.0.0/24"}, "p", "s1"),
                                      ("update", "network", a.id, {"name": "a"}, 1),
                                      ("create", "port", {}, "p"),
                                      ("update", "subnet", "s1", {"cidr": "10.0.1.0/24"}),
                                      ("delete", "subnet", "s1", 2)])
        assert [c.revision for c in changes] == [2] * 5
        assert store.revision == 2
        assert [(c.kind, c.record is None, c.old is None) for c in changes] == [
            ("subnet", False, True), ("network", False, False), ("port", False, True),
            ("subnet", False, False), ("subnet", True, False)]
        assert changes[3].old == changes[0].record            # a later op sees the earlier one
        assert await store.changes(1) == changes
        assert await store.commit([]) == [] and store.revision == 2     # nothing to commit: no revision
        b = await store.create("network", {}, project_id="p")
        assert b.revision == 3
        revisions = [c.revision for c in await store.changes(0)]
        assert revisions == sorted(revisions) and len(set(revisions)) == 3
    run(main())


@pytest.mark.parametrize("failing", [
    ("update", "network", "missing", {}),                         # NotFound
    ("create", "network", {}, "p", "taken"),                      # Conflict: id taken
    ("delete", "network", "taken", 99),                           # Conflict: revision
])
def test_a_commit_is_all_or_nothing(failing):
    async def main():
        store = await memory()
        await store.create("network", {"name": "old"}, project_id="p", id="taken")
        seen = []
        store.watch(seen.append)
        before = (await store.snapshot(), await store.changes(0))
        with pytest.raises((NotFound, Conflict)):
            await store.commit([("create", "network", {"name": "new"}, "p", "fresh"),
                                ("update", "network", "taken", {"name": "changed"}),
                                failing,
                                ("create", "port", {}, "p")])
        assert store.revision == 1
        assert (await store.snapshot(), await store.changes(0)) == before
        with pytest.raises(NotFound):
            await store.get("network", "fresh")
        assert seen == []
        after = await store.create("network", {}, project_id="p")
        assert after.revision == 2                                      # the failed commit took no revision
    run(main())


# --- persistence ----------------------------------------------------------------------------

def test_everything_survives_a_reopen(tmp_path):
    path = tmp_path / "deep" / "er" / "kumoflow.db"

    async def main():
        store = await open_store(f"sqlite:{path}")
        a = await store.create("network", {"name": "a"}, project_id="p1")
        await store.commit([("create", "subnet", {"network_id": a.id}, "p1"),
                            ("update", "network", a.id, {"name": "A"})])
        b = await store.create("network", {"name": "b"}, project_id="p2")
        await store.delete("network", b.id)
        snapshot, changes = await store.snapshot(), await store.changes(0)
        await store.close()
        assert sorted(os.listdir(path.parent)) == ["kumoflow.db"]      # no WAL, no temporary left

        again = await open_store(f"sqlite:{path}")
        assert again.revision == 4
        assert await again.snapshot() == snapshot
        assert await again.changes(0) == changes
        assert await again.changes(1) == changes[1:] and await again.changes(2) == changes[3:] and [c.revision for c in changes] == [1, 2, 2, 3, 4]
        c = await again.update("network", a.id, {"name": "AA"}, expect_revision=2)
        assert c.revision == 5
        await again.close()
        third = await open_store(f"sqlite:{path}")
        assert (await third.get("network", a.id)).body == {"name": "AA"}
        await third.close()
    run(main())


def test_a_store_killed_without_close_keeps_every_commit(tmp_path):
    """A process killed at any point after a write returned: the WAL holds it."""
    path = tmp_path / "kumoflow.db"
    code = ("import asyncio, os, sys\n"
            "from kumoflow.store import open_store\n"
            "async def main():\n"
            "    store = await open_store(sys.argv[1])\n"
            "    for i in range(20):\n"
            "        await store.create('port', {'i': i}, project_id='p')\n"
            "    os.kill(os.getpid(), 9)\n"
            "asyncio.run(main())\n")
    proc = subprocess.run([sys.executable, "-c", code, f"sqlite:{path}"], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / "kumoflow.db-wal").exists()

    async def main():
        store = await open_store(f"sqlite:{path}")
        assert store.revision == 20
        assert [r.body["i"] for r in await store.list("port")] == list(range(20))
        await store.close()
    run(main())


def test_a_file_in_use_can_be_opened_again(tmp_path):
    """Two openers of one file (two controllers started at once on the default path): the second
    checks the file without touching the WAL the first is using; writes of each reach the other's
    snapshot and changes (not its watch)."""
    path = tmp_path / "kumoflow.db"

    async def main():
        a = await open_store(f"sqlite:{path}")
        await a.create("network", {"name": "a"}, project_id="p", id="n1")
        wal = (tmp_path / "kumoflow.db-wal").read_bytes()
        b = await open_store(f"sqlite:{path}")
        assert (tmp_path / "kumoflow.db-wal").read_bytes()[:len(wal)] == wal
        assert b.revision == 1 and (await b.get("network", "n1")).body == {"name": "a"}
        heard = []
        a.watch(heard.append)
        await b.create("network", {"name": "b"}, project_id="p", id="n2")
        assert b.revision == 2 and heard == []
        await a.create("network", {"name": "c"}, project_id="p", id="n3")      # takes 3, not 2
        assert [c.revision for c in await a.changes(0)] == [1, 2, 3]
        assert [r.id for r in (await b.snapshot()).records] == ["n1", "n2", "n3"]
        await b.close()
        await a.update("network", "n1", {"name": "A"})
        await a.close()
        again = await open_store(f"sqlite:{path}")
        assert again.revision == 4 and len((await again.snapshot()).records) == 3
        await again.close()
    run(main())


def test_memory_stores_are_separate():
    async def main():
        a, b = await open_store("sqlite::memory:"), await open_store("sqlite::memory:")
        await a.create("network", {}, project_id="p")
        assert (await b.snapshot()).records == [] and b.revision == 0
    run(main())


@pytest.mark.parametrize("url", ["sqlite:", "postgres://x", "etcd:localhost", "kumoflow.db"])
def test_an_unknown_store_url_is_a_value_error(url):
    with pytest.raises(ValueError, match="sqlite:PATH"):
        run(open_store(url))


def test_a_directory_that_cannot_be_made_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open") as info:
        run(open_store(f"sqlite:{tmp_path}/file/sub/kumoflow.db"))
    assert not isinstance(info.value, StoreCorrupt)


# --- watch -----------------------------------------------------------------------------------

def test_watchers_hear_each_commit_in_order_after_it_commits(caplog):
    async def main():
        store = await memory()
        heard: list[tuple] = []

        def first(changes):
            # called after the commit: the store already answers with what it committed
            assert store.revision == changes[0].revision
            heard.append(("first", [(c.revision, c.kind, c.id) for c in changes]))

        def broken(changes):
            raise RuntimeError("a watcher that fails")

        store.watch(first)
        store.watch(broken)
        store.watch(lambda changes: heard.append(("last", [(c.revision, c.kind, c.id) for c in changes])))
        await store.create("network", {}, project_id="p", id="n")
        with caplog.at_level(logging.ERROR, logger="kumoflow.store"):
            await store.commit([("create", "port", {}, "p", "x"), ("delete", "network", "n")])
        await store.update("port", "x", {"up": True})
        assert heard == [
            ("first", [(1, "network", "n")]), ("last", [(1, "network", "n")]),
            ("first", [(2, "port", "x"), (2, "network", "n")]), ("last", [(2, "port", "x"), (2, "network", "n")]),
            ("first", [(3, "port", "x")]), ("last", [(3, "port", "x")]),
        ]
        assert "store watcher" in caplog.text and "a watcher that fails" in caplog.text
        assert (await store.get("port", "x")).body == {"up": True}     # the failure undid nothing
    run(main())


def test_a_write_from_a_watcher_is_delivered_after_the_commit_in_hand():
    async def main():
        store = await memory()
        heard: list[tuple[str, int]] = []

        def writer(changes):
            heard.append(("writer", changes[0].revision))
            if changes[0].kind == "network":   # the store's calls run inline: drive the coroutine here
                coro = store.create("port", {}, project_id="p")
                with pytest.raises(StopIteration):
                    coro.send(None)

        store.watch(writer)
        store.watch(lambda changes: heard.append(("other", changes[0].revision)))
        await store.create("network", {}, project_id="p")
        assert heard == [("writer", 1), ("other", 1), ("writer", 2), ("other", 2)]
    run(main())


# --- list ------------------------------------------------------------------------------------

def test_list_filters_and_projects():
    async def main():
        store = await memory()
        rows = [("p1", {"name": "a", "network_id": "n1", "admin_state_up": True, "tags": ["x"], "mtu": 1}),
                ("p1", {"name": "b", "network_id": "n2", "admin_state_up": False, "mtu": 1.0}),
                ("p2", {"name": "a", "network_id": "n1", "admin_state_up": 1, "tags": ["x", "y"]}),
                ("p2", {"name": "c", "network_id": None, "binding:host_id": "s1"}),
                ("", {"name": "shared", "shared": True})]
        made = [await store.create("port", body, project_id=project) for project, body in rows]
        await store.create("network", {"name": "a"}, project_id="p1")

        def names(records):
            return [r.body["name"] for r in records]
        assert names(await store.list("port")) == ["a", "b", "a", "c", "shared"]          # creation order
        assert names(await store.list("port", "p1")) == ["a", "b"]
        assert names(await store.list("port", project_id="p2")) == ["a", "c"]
        assert names(await store.list("port", "")) == ["shared"]
        assert names(await store.list("port", "p3")) == []
        assert names(await store.list("port", name="a")) == ["a", "a"]
        assert names(await store.list("port", "p2", name="a")) == ["a"]
        assert names(await store.list("port", name="a", network_id="n1")) == ["a", "a"]
        assert names(await store.list("port", name="a", network_id="n2")) == []
        assert names(await store.list("port", admin_state_up=True)) == ["a"]               # true is not 1
        assert names(await store.list("port", admin_state_up=1)) == ["a"]                  # and 1 is not true
        assert names(await store.list("port", mtu=1)) == ["a", "b"]                        # 1 and 1.0: one number
        assert names(await store.list("port", network_id=None)) == ["c"]                   # missing is not null
        assert names(await store.list("port", tags=["x"])) == ["a"]
        assert names(await store.list("port", tags=("x", "y"))) == ["a"]
        assert names(await store.list("port", **{"binding:host_id": "s1"})) == ["c"]
        assert names(await store.list("port", name="1")) == []
        assert await store.list("router") == []
        assert (await store.list("port", name="shared")) == [made[4]]
    run(main())


def test_list_text_filters_are_exact():
    async def main():
        store = await memory()
        for name in ("a", "A", "a ", "1", 'quote"d', "a.b"):
            await store.create("network", {"name": name, name: "key"}, project_id="p")
        await store.create("network", {"name": 1}, project_id="p")
        for name in ("a", "A", "a ", "1", 'quote"d', "a.b"):
            assert [r.body["name"] for r in await store.list("network", name=name)] == [name]
            assert [r.body["name"] for r in await store.list("network", **{name: "key"})] == [name]
        assert [r.body["name"] for r in await store.list("network", name=1)] == [1]
    run(main())


# --- a damaged or foreign file ----------------------------------------------------------------

def _good_store(path: Path, records: int = 40) -> None:
    async def main():
        store = await open_store(f"sqlite:{path}")
        await store.commit([("create", "port", {"name": f"port-{i}", "pad": "x" * 200}, "p") for i in range(records)])
        await store.close()
    run(main())


def _state(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _refused(path: Path, match: str) -> StoreCorrupt:
    before = _state(path.parent)
    with pytest.raises(StoreCorrupt, match=match) as info:
        run(open_store(f"sqlite:{path}"))
    assert str(path) in str(info.value)
    assert _state(path.parent) == before        # the file's bytes, and no file added beside it
    return info.value


def test_a_truncated_store_is_refused(tmp_path):
    good = tmp_path / "good.db"
    _good_store(good)
    data = good.read_bytes()
    assert len(data) >= 4 * 4096
    for name, cut, match in [("half.db", len(data) // 2 + 100, "not a whole number of 4096-byte pages"),
                             ("pages.db", 2 * 4096, r"truncated: 8192 bytes, its header says \d+ pages"),
                             ("header.db", 60, "shorter than an SQLite header"),
                             ("magic.db", 10, "shorter than an SQLite header")]:
        path = tmp_path / name
        path.write_bytes(data[:cut])
        _refused(path, match)


def test_random_bytes_and_an_empty_file_are_refused(tmp_path):
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(3 * 4096))
    _refused(noise, "not an SQLite database")
    text = tmp_path / "text.db"
    text.write_text("name: not a database\n")
    _refused(text, "not an SQLite database")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    _refused(empty, "empty")


def test_an_sqlite_file_of_another_application_is_refused(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE records (kind, id)")      # even with a table of the same name
    db.commit()
    db.close()
    _refused(path, "another application .application_id 0x00000000")
    wal = tmp_path / "wal.db"                          # a WAL database of another application gets no sidecar either
    db = sqlite3.connect(wal)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA application_id=42")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    _refused(wal, "0x0000002a")


def test_a_file_with_our_id_but_not_our_tables_is_refused(tmp_path):
    path = tmp_path / "half.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute("CREATE TABLE meta (key, value)")
    db.commit()
    db.close()
    _refused(path, "no changes, records table")


@pytest.mark.parametrize("version, match", [("2", "newer kumoflow .schema version 2; this one reads up to 1"),
                                            ("x", "schema version 'x' is not a number"),
                                            ("0", "unknown schema version 0")])
def test_another_schema_version_is_refused(tmp_path, version, match):
    path = tmp_path / "kumoflow.db"
    _good_store(path, records=3)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    db.commit()
    db.close()
    _refused(path, match)


def test_a_damaged_page_is_refused(tmp_path):
    path = tmp_path / "kumoflow.db"
    _good_store(path, records=200)
    data = bytearray(path.read_bytes())
    pages = len(data) // 4096
    page = pages // 2                                  # a b-tree page in the middle of the records
    data[page * 4096 + 8: page * 4096 + 4000] = bytes(range(256)) * 15 + bytes(range(72))
    path.write_bytes(bytes(data))
    _refused(path, "damaged")


def test_the_cli_exits_1_on_a_damaged_store_and_leaves_it(tmp_path):
    path = tmp_path / "kumoflow.db"
    path.write_bytes(os.urandom(8192))
    before = _state(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
                           "--store", f"sqlite:{path}"], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"store {path}: not an SQLite database" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _state(tmp_path) == before


def test_the_cli_runs_with_a_store_and_makes_it(tmp_path):
    path = tmp_path / "var" / "kumoflow.db"
    status = tmp_path / "status.json"
    proc = subprocess.Popen([sys.executable, "-m", "kumoflow.cli", "controller", "--listen", "tcp:127.0.0.1:0",
                             "--status-file", str(status), "--store", f"sqlite:{path}"],
                            env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not status.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert path.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert sorted(os.listdir(path.parent)) == ["kumoflow.db"]          # closed: no WAL left


def test_the_cli_default_store_and_none():
    from kumoflow.cli import build_parser
    parser = build_parser()
    assert parser.parse_args(["controller"]).store == "sqlite:/var/lib/kumoflow/kumoflow.db"
    assert parser.parse_args(["controller", "--store", "none"]).store == "none"


# --- the controller's mirror --------------------------------------------------------------------

class Listener(App):
    """Rebuilds the records from the record_changed events it hears."""
    name = "listener"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, str], Record] = {}
        self.events = 0

    def record_changed(self, change: Change) -> None:
        self.events += 1
        if change.record is None:
            self.seen.pop((change.kind, change.id), None)
        else:
            self.seen[change.kind, change.id] = change.record


KINDS = ("network", "port")
IDS = ("a", "b", "c", "d")


def mirror(core: Core) -> dict[tuple[str, str], Record]:
    return {(r.kind, r.id): r for kind in KINDS for r in core.state.all(kind)}


def test_a_controller_follows_its_store(tmp_path):
    async def main():
        path = tmp_path / "kumoflow.db"
        store = await open_store(f"sqlite:{path}")
        await store.create("network", {"name": "before"}, project_id="p", id="a")
        listener = Listener()
        controller = Controller([listener], store=store)
        await controller.start(["tcp:127.0.0.1:0"])
        assert mirror(controller.core) == {("network", "a"): await store.get("network", "a")}
        await store.commit([("create", "port", {"network_id": "a"}, "p", "b"),
                            ("create", "port", {"network_id": "a"}, "p", "c")])
        await store.delete("port", "c")
        snapshot = await store.snapshot()
        assert mirror(controller.core) == {(r.kind, r.id): r for r in snapshot.records} == listener.seen
        assert controller.core.state.revision == snapshot.revision == 3
        await controller.stop()
        with pytest.raises(StoreError, match="closed"):
            await store.get("network", "a")

        again = Controller([Listener()], store=await open_store(f"sqlite:{path}"))   # a restart
        await again.start(["tcp:127.0.0.1:0"])
        assert mirror(again.core) == {(r.kind, r.id): r for r in snapshot.records}
        await again.stop()
    run(main())


bodies = st.dictionaries(st.sampled_from(["name", "mtu", "up", "tags"]),
                         st.none() | st.booleans() | st.integers(-2, 2) | st.text("ab", max_size=2)
                         | st.lists(st.integers(0, 2), max_size=2), max_size=3)
expect = st.sampled_from([None, None, "current", "stale"])
ops = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(KINDS), bodies, st.sampled_from(["p1", "p2"]), st.sampled_from(IDS)),
    st.tuples(st.just("update"), st.sampled_from(KINDS), st.sampled_from(IDS), bodies, expect),
    st.tuples(st.just("delete"), st.sampled_from(KINDS), st.sampled_from(IDS), expect),
)


def _model_commit(model: dict, ops: list[tuple], revision: int) -> tuple[list[tuple], type | None]:
    """The ops with expected revisions resolved, and the error the commit must raise (None: it succeeds);
    `model` ((kind, id) -> (project, body, revision)) takes the commit, at `revision`, if it succeeds."""
    scratch = dict(model)
    resolved, error = [], None
    for op in ops:
        verb, kind = op[0], op[1]
        key = (kind, op[4] if verb == "create" else op[2])
        current = scratch.get(key)
        if verb != "create":
            want = op[-1]
            want = None if want is None else (current[2] if current else 7) + (0 if want == "current" else 1000)
            op = (*op[:-1], want)
        resolved.append(op)
        if error:
            continue
        if verb == "create":
            error = Conflict if current else None
            scratch[key] = (op[3], json.loads(json.dumps(op[2])), revision)
        elif current is None:
            error = NotFound
        elif op[-1] is not None and op[-1] != current[2]:
            error = Conflict
        elif verb == "update":
            scratch[key] = (current[0], json.loads(json.dumps(op[3])), revision)
        else:
            del scratch[key]
    if error is None:
        model.clear()
        model.update(scratch)
    return resolved, error


@settings(max_examples=150)
@given(commits=st.lists(st.lists(ops, min_size=1, max_size=3), max_size=25), start=st.integers(0, 25),
       again=st.integers(0, 25))
def test_the_mirror_follows_the_store_to_a_fresh_snapshot(commits, start, again):
    """A core loaded from a snapshot after `start` commits and then following the watch ends equal to a
    fresh snapshot; so does a core that loads once early and once at the end (load works out the
    difference); and the store agrees with a model of the same ops (atomic commits, errors)."""
    async def main():
        store = await memory()
        listener = Listener()
        follower, reloaded = Core([listener]), Core([])
        model: dict = {}
        revision = 0
        for i, commit in enumerate(commits + [[]]):
            if i == start:
                follower.state.load(await store.snapshot())
                store.watch(follower.state.apply)
            if i == again:
                reloaded.state.load(await store.snapshot())
            if not commit:
                continue
            before = dict(model)
            resolved, error = _model_commit(model, commit, revision + 1)
            if error is None:
                changes = await store.commit(resolved)
                revision += 1
                assert [c.revision for c in changes] == [revision] * len(commit)
            else:
                with pytest.raises(error):
                    await store.commit(resolved)
                assert model == before
            assert store.revision == revision
        snapshot = await store.snapshot()
        fresh = {(r.kind, r.id): r for r in snapshot.records}
        assert {k: (r.project_id, r.body, r.revision) for k, r in fresh.items()} == model
        assert snapshot.revision == revision
        if start <= len(commits):
            assert mirror(follower) == fresh == listener.seen
            assert follower.state.revision == revision
        reloaded.state.load(snapshot)
        assert mirror(reloaded) == fresh and reloaded.state.revision == revision
    run(main())
