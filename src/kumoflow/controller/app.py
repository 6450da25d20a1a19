"""The base class of controller applications.

An app is one network function. Most of what it does is compile: it names
the objects it is responsible for and turns each into flows, groups and
meters for one switch at a time (core.py explains how that stays
incremental). Its handlers only update what the controller observes (the
topology, the host table, its own state), tell the core what changed, and
answer packets with packet-outs.

    class Hub(App):
        name = "hub"
        tables = ("forward",)               # pipeline tables it fills (pipeline.py)

        def owners(self):                   # the objects it compiles
            return ["flood"]

        def compile(self, key, dp):         # -> [Flow | Group | Meter] for that switch
            return [Flow(self.table("forward"), 1, ofp.Match(),
                         [ofp.ApplyActions([ofp.Output(ofp.OFPP.FLOOD)])], self.cookie(0))]

Handlers (override what the app needs; plain functions run inline,
``async def`` ones run as tasks and may ``await dp.request(...)``):

    switch_up(dp)              the switch finished its handshake and was read
    switch_down(dp)            the channel to the switch closed
    packet_in(dp, msg)         ofp.PacketIn from one of the app's tables
    port_status(dp, msg)       ofp.PortStatus (dp.ports is already updated)
    flow_removed(dp, msg)      ofp.FlowRemoved of a flow with the app's cookie
    error(dp, msg, request)    ofp.ErrorMsg answering a message this app sent
    link_up(link) / link_down(link)          topology.py
    record_changed(change)     a desired-state record was created, updated or
                               deleted (state.py; the records: self.core.state)
    host_found(host) / host_moved(host, old) / host_lost(host)   hosts.py
    recover(dp, flows)         the flow stats read from a switch as it comes up,
                               before anything is sent to it: knowledge that
                               outlives a controller restart in the switch
                               itself (fabric recovers its hosts this way)

Cookies: `self.cookie(object_id)` puts the app's function number in the top
byte (pipeline.py). Group ids come from `self.ids` (the app's block), meter ids from
`self.meter_ids`.

An app whose flows come from a model of its own, made from desired-state
records and the switches up, subclasses `ModelApp`: it names the record
kinds the model is made of and writes `rebuild`, which the core calls once
per event that touched them.

A reactive app (``reactive = True``, the classic `l2`) adds its own flows
with `add_flow` from its handlers; the reconciler then leaves the flows in
its tables alone but for the miss entry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Hashable, Iterable

from kumoflow import ofp

from . import pipeline

if TYPE_CHECKING:
    from .core import Core
    from .datapath import Datapath
    from .flows import Entry

#: every handler the core dispatches to apps
EVENTS = frozenset(("switch_up", "switch_down", "packet_in", "port_status", "flow_removed", "error",
                    "link_up", "link_down", "host_found", "host_moved", "host_lost", "record_changed"))


class App:
    name = "app"
    tables: tuple[str, ...] = ()     # pipeline tables this app fills
    requires: tuple[str, ...] = ()   # apps it builds on, loaded before it
    reactive = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"unknown option(s) {', '.join(sorted(options))}")
        self.log = logging.getLogger(f"kumoflow.app.{self.name}")
        self.core: "Core" = None  # type: ignore[assignment]
        self.function = 0
        self.peers: dict[str, App] = {}

    def attach(self, core: "Core", function: int, apps: dict[str, "App"]) -> None:
        self.core = core
        self.function = function
        self.peers = apps

    def handles(self, handler: str) -> bool:
        return getattr(type(self), handler) is not getattr(App, handler)

    # --- identity ------------------------------------------------------------------

    def cookie(self, object_id: int = 0) -> int:
        return pipeline.cookie(self.function, object_id)

    @property
    def ids(self) -> range:
        """The group ids this app may use."""
        return pipeline.id_block(self.function)

    @property
    def meter_ids(self) -> range:
        """The meter ids this app may use (on each switch)."""
        return pipeline.meter_block(self.function)

    @staticmethod
    def table(name: str) -> int:
        return pipeline.table_id(name)

    # --- compiling -----------------------------------------------------------------

    def owners(self) -> Iterable[Hashable]:
        """Every object the app compiles now."""
        return ()

    def compile(self, key: Hashable, dp: "Datapath") -> list["Entry"]:
        """The flows, groups and meters of object `key` on switch `dp`. Pure:
        a function of the observed state only."""
        return []

    def changed(self, key: Hashable, dpid: int | None = None) -> None:
        """Object `key` changed (or appeared or went): recompile it, on every
        switch or on `dpid` only."""
        self.core.changed(self, key, dpid)

    def claims_port(self, dpid: int, port_no: int) -> bool:
        """Is this switch port the app's alone (a tenant VM's, say)? The fabric then
        neither floods into it nor learns hosts from it."""
        return False

    def metrics(self) -> Iterable[tuple]:
        """What the app counts, for /metrics: (name, help, "gauge" or "counter", value), or
        with labels (name, help, kind, value, {label: value}) once per label set; published
        as kumoflow_<app>_<name>."""
        return ()

    def table_miss(self, table: str) -> list[ofp.Instruction] | None:
        """The miss entry of one of the app's tables; None: the pipeline's default."""
        return None

    # --- sending (tags the message with this app, for error routing) ----------------

    def send(self, dp: "Datapath", msg: ofp.Message) -> int:
        return dp.send(msg, origin=self)

    def add_flow(self, dp: "Datapath", match: ofp.Match, instructions: list[ofp.Instruction],
                 priority: int = 1, table: str | None = None, **fields: Any) -> int:
        """Add a flow to one of this app's tables (the first by default), with its cookie."""
        return self.send(dp, ofp.FlowMod(cookie=self.cookie(), table_id=self.table(table or self.tables[0]),
                                         priority=priority, match=match, instructions=instructions, **fields))

    def delete_flows(self, dp: "Datapath", match: ofp.Match | None = None, out_port: int = ofp.OFPP.ANY) -> int:
        """Delete this app's flows (by cookie) matching `match`, in all of its tables."""
        return self.send(dp, ofp.FlowMod(
            command=ofp.OFPFC.DELETE, cookie=self.cookie(), cookie_mask=pipeline.FUNCTION_MASK,
            table_id=ofp.OFPTT.ALL, out_port=out_port, match=match if match is not None else ofp.Match()))

    # --- handlers: override what the app needs --------------------------------------

    def start(self) -> None:
        """Called once when the controller starts."""

    def stop(self) -> None:
        """Called once when the controller stops."""

    def recover(self, dp: "Datapath", flows: list[ofp.FlowStats]) -> Any:
        pass

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

    def link_up(self, link: Any) -> Any:
        pass

    def link_down(self, link: Any) -> Any:
        pass

    def host_found(self, host: Any) -> Any:
        pass

    def host_moved(self, host: Any, old: Any) -> Any:
        pass

    def host_lost(self, host: Any) -> Any:
        pass

    def record_changed(self, change: Any) -> Any:
        pass


class ModelApp(App):
    """An app that compiles from a model of its own, made from the desired state and
    the switches up (tenants, firewall): the model is made again once per event
    (`core.before_compile`, however many records the event brought) when a record of
    one of `model_kinds` changes, or a switch comes, goes or changes its ports."""
    model_kinds: frozenset[str] = frozenset()

    def rebuild(self) -> None:
        """Make the model again and mark what changed in it (`changed`)."""

    def rebuild_soon(self) -> None:
        self.core.before_compile(self.rebuild)

    def start(self) -> None:
        self.rebuild()

    def record_changed(self, change: Any) -> Any:
        if change.kind in self.model_kinds:
            self.rebuild_soon()

    def switch_up(self, dp: "Datapath") -> Any:
        self.rebuild_soon()

    def switch_down(self, dp: "Datapath") -> Any:
        self.rebuild_soon()

    def port_status(self, dp: "Datapath", msg: ofp.PortStatus) -> Any:
        self.rebuild_soon()
