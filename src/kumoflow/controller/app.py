"""The base class of controller applications.

An application is a class with handler methods; the controller calls the
ones a subclass overrides:

    switch_up(dp)              the switch finished its handshake (features and
                               ports known, the app's tables reset)
    switch_down(dp)            the channel to the switch closed
    packet_in(dp, msg)         ofp.PacketIn from one of the app's tables
    port_status(dp, msg)       ofp.PortStatus (dp.ports is already updated)
    flow_removed(dp, msg)      ofp.FlowRemoved of a flow with the app's cookie
    error(dp, msg, request)    ofp.ErrorMsg answering a message this app sent
                               (request is that message, or None if unknown)

A handler may be a plain function (run inline: the fast path) or a
coroutine function (run as a task).

Sharing one switch among several apps: apps form a pipeline in the order
they are given. Each app owns `tables` consecutive flow tables starting at
`self.table` (assigned by the controller), so apps never overwrite each
other's flows and each chooses its priorities freely. Each app's flows carry
its own cookie (`self.cookie`, the app's index in the top 16 bits), which
routes FLOW_REMOVED and PACKET_IN (by table) to the right app. The
controller installs each table's miss entry on switch up: by default a
miss goes on to the next app's first table (`self.next_table`), and the
last app's tables drop; an app changes that by overriding `table_miss`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kumoflow import ofp

if TYPE_CHECKING:
    from .datapath import Datapath

COOKIE_SHIFT = 48
COOKIE_MASK = 0xFFFF << COOKIE_SHIFT


class App:
    """Subclass and override handlers. `name` is how the app is logged."""

    name = "app"
    tables = 1

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.log = logging.getLogger(f"kumoflow.app.{self.name}")
        self.controller = None
        self.index = 0
        self.table = 0
        self.next_table: int | None = None

    # --- identity within the pipeline (set by the controller) -----------------

    def attach(self, controller, index: int, table: int, next_table: int | None) -> None:
        self.controller = controller
        self.index = index
        self.table = table
        self.next_table = next_table

    @property
    def cookie(self) -> int:
        return (self.index + 1) << COOKIE_SHIFT

    def owns_table(self, table_id: int) -> bool:
        return self.table <= table_id < self.table + self.tables

    def table_miss(self, table_id: int) -> list[ofp.Instruction]:
        """Instructions of the miss entry of one of this app's tables."""
        if self.next_table is not None:
            return [ofp.GotoTable(self.next_table)]
        return []   # drop

    # --- sending (tags the message with this app, for error routing) ----------

    def send(self, dp: "Datapath", msg: ofp.Message) -> int:
        return dp.send(msg, origin=self)

    def add_flow(self, dp: "Datapath", match: ofp.Match, instructions: list[ofp.Instruction],
                 priority: int = 1, table: int = 0, **fields: Any) -> int:
        """Add a flow to this app's table `table` (0 = its first), with its cookie."""
        return self.send(dp, ofp.FlowMod(cookie=self.cookie, table_id=self.table + table, priority=priority,
                                         match=match, instructions=instructions, **fields))

    def delete_flows(self, dp: "Datapath", match: ofp.Match | None = None, table: int | None = None,
                     out_port: int = ofp.OFPP.ANY) -> int:
        """Delete this app's flows (by cookie) matching `match`, in one table or all of its tables."""
        return self.send(dp, ofp.FlowMod(
            command=ofp.OFPFC.DELETE, cookie=self.cookie, cookie_mask=COOKIE_MASK,
            table_id=ofp.OFPTT.ALL if table is None else self.table + table,
            out_port=out_port, match=match if match is not None else ofp.Match()))

    # --- handlers: override what the app needs --------------------------------

    def start(self) -> None:
        """Called once when the controller starts."""

    def stop(self) -> None:
        """Called once when the controller stops."""

    def switch_up(self, dp: "Datapath") -> Any:
        pass

    def switch_down(self, dp: "Datapath") -> Any:
        pass

    def packet_in(self, dp: "Datapath", msg: ofp.PacketIn) -> Any:
        pass

    def port_status(self, dp: "Datapath", msg: ofp.PortStatus) -> Any:
        pass

    def flow_removed(self, dp: "Datapath", msg: ofp.FlowRemoved) -> Any:
        pass

    def error(self, dp: "Datapath", msg: ofp.ErrorMsg, request: ofp.Message | None) -> Any:
        pass


HANDLERS = ("switch_up", "switch_down", "packet_in", "port_status", "flow_removed", "error")


def overridden(app: App, handler: str) -> bool:
    return getattr(type(app), handler) is not getattr(App, handler)
