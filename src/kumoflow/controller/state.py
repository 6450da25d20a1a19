"""The controller's mirror of the desired-state store (kumoflow.store).

Compiling reads desired state from here, never from the store: a dict of
records by kind and id, loaded from a snapshot when the controller starts
and kept current by applying the store's change feed. Each applied change
reaches the apps as `record_changed(change)` (a `store.Change`: the record
as written, or None when deleted, and what it was before), so an app marks
what it compiles from that record as changed. Changes are applied in
revision order, once each: a change at or below the mirror's revision has
been seen already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from kumoflow.store import Change, Record, Snapshot

if TYPE_CHECKING:
    from .core import Core


class DesiredState:
    def __init__(self, core: "Core") -> None:
        self.core = core
        self.revision = 0
        self._records: dict[str, dict[str, Record]] = {}

    def get(self, kind: str, id: str) -> Record | None:
        return self._records.get(kind, {}).get(id)

    def all(self, kind: str) -> list[Record]:
        return list(self._records.get(kind, {}).values())

    def load(self, snapshot: Snapshot) -> None:
        """Replace everything with a snapshot; apps hear of each record that differs."""
        wanted = {(r.kind, r.id): r for r in snapshot.records}
        changes = [Change(snapshot.revision, kind, id, None, old)
                   for kind, records in self._records.items() for id, old in records.items()
                   if (kind, id) not in wanted]
        changes += [Change(snapshot.revision, r.kind, r.id, r, self.get(r.kind, r.id))
                    for r in snapshot.records if self.get(r.kind, r.id) != r]
        self.revision = 0
        self.apply(changes, snapshot.revision)

    def apply(self, changes: Iterable[Change], revision: int | None = None) -> None:
        seen = self.revision    # one commit's changes share a revision: decide once, before applying any
        with self.core.batch():
            for change in changes:
                if change.revision <= seen and revision is None:
                    continue   # seen already
                records = self._records.setdefault(change.kind, {})
                if change.record is None:
                    records.pop(change.id, None)
                else:
                    records[change.id] = change.record
                self.revision = max(self.revision, change.revision)
                self.core.dispatch("record_changed", change)
            if revision is not None:
                self.revision = revision
