"""The desired-state store: what the network should be, as records that
outlive the controller.

Everything a cloud management system or an operator declares (projects,
networks, subnets, ports, routers, security groups, QoS policies, load
balancers...) is a `Record`: a kind, an id, the project that owns it, the
store revision that last wrote it, creation and update times, and a body
of JSON attributes. Writes are transactional and every committed write
moves the store's single revision counter on by one, so the history is a
totally ordered change feed: `changes(since)` returns what happened after
a revision, and `watch` hands each commit to a callback as it happens.

The controller never reads the store while it compiles. It keeps a mirror
of every record in memory (`kumoflow.controller.state`), loaded from a
snapshot at start and kept current from the change feed; the compiler reads
that mirror, so compiling stays pure and fast and the store can be slow,
remote or briefly away. A cluster of controllers (a later backend on etcd,
whose revisions and watches have this very shape) follows the same feed.

The interface is async because the network backends are; the SQLite
backend (the default: one file, no server) does its short transactions
inline.

    store = await open_store("sqlite:/var/lib/kumoflow/kumoflow.db")
    net = await store.create("network", {"name": "blue"}, project_id="p1")
    await store.update("network", net.id, {"name": "green"}, expect_revision=net.revision)
    snapshot = await store.snapshot()          # every record + the revision it is at
    store.watch(on_changes)                    # on_changes([Change, ...]) after each commit
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

__all__ = ["Change", "Conflict", "NotFound", "Record", "Snapshot", "Store", "StoreCorrupt", "StoreError",
           "open_store"]


class StoreError(Exception):
    """Base of the store's errors."""


class NotFound(StoreError):
    """No record of that kind with that id."""


class Conflict(StoreError):
    """A write expected another revision of the record (someone wrote it since), or an id already exists."""


class StoreCorrupt(StoreError):
    """The store on disk is damaged or not a kumoflow store: found at open, never silently replaced."""


@dataclass(frozen=True)
class Record:
    kind: str                  # "network", "subnet", "port", ...
    id: str                    # a UUID, as text
    project_id: str
    revision: int              # the store revision that last wrote this record
    created_at: str            # ISO 8601, UTC, e.g. 2026-12-07T15:20:00Z
    updated_at: str
    body: dict[str, Any] = field(default_factory=dict)   # the attributes; JSON values only


@dataclass(frozen=True)
class Change:
    revision: int              # the commit's revision (several changes may share one)
    kind: str
    id: str
    record: Record | None      # the record as written; None when deleted
    old: Record | None         # what it was before; None when created


@dataclass(frozen=True)
class Snapshot:
    revision: int
    records: list[Record]


class Store(Protocol):
    revision: int   # of the last commit

    async def get(self, kind: str, id: str) -> Record:
        """The record, or NotFound."""

    async def list(self, kind: str, project_id: str | None = None, **equal: Any) -> list[Record]:
        """Records of a kind (of one project), whose body has each `equal` attribute equal to the value."""

    async def create(self, kind: str, body: dict[str, Any], project_id: str, id: str | None = None) -> Record:
        """A new record (a fresh UUID unless `id`; Conflict if taken)."""

    async def update(self, kind: str, id: str, body: dict[str, Any], expect_revision: int | None = None) -> Record:
        """Replace the body (NotFound; Conflict if `expect_revision` is not the record's revision)."""

    async def delete(self, kind: str, id: str, expect_revision: int | None = None) -> Record:
        """Remove the record and return what it was."""

    async def commit(self, ops: list[tuple]) -> list[Change]:
        """Several writes in one transaction, all or none: ("create", kind, body, project_id[, id]),
        ("update", kind, id, body[, expect_revision]), ("delete", kind, id[, expect_revision])."""

    async def snapshot(self) -> Snapshot:
        """Every record, and the revision they are at, consistently."""

    async def changes(self, since: int) -> list[Change]:
        """What was committed after revision `since`, in order."""

    def watch(self, callback: Callable[[list[Change]], Any]) -> None:
        """Call `callback` with each commit's changes, after it commits."""

    async def close(self) -> None:
        """Finish and release the store."""


async def open_store(url: str) -> Store:
    """A store from its URL: ``sqlite:PATH`` (``sqlite::memory:`` for tests)."""
    scheme, sep, rest = url.partition(":")
    if scheme == "sqlite" and sep and rest:
        from .sqlite import SQLiteStore
        return await SQLiteStore.open(rest)
    raise ValueError(f"store {url!r}: expected sqlite:PATH")
