"""The controller core, sans-IO: switch sessions, apps, compilation and
reconciliation, timers. Messages in, messages out, time injected.

The network's desired state is a sum of small pieces. Each app names the
objects it compiles (`App.owners`: a host, a switch, the paths towards a
switch...) and compiles one object for one switch at a time
(`App.compile(key, dp)` returns flows, groups and meters). Observed state
(topology, hosts, ports) changes in reactive handlers, which tell the core
what it touched with `App.changed(key)`; at the end of the event the core
recompiles just those objects, works out which entries of which switches
changed, and hands those keys to each switch's `Reconciler`, which sends
the difference. So a host that moves costs the flows of that host, not a
recompilation of the network, and the reconciler reads a switch only when
it connects and when the periodic audit comes round.

Two safeguards make a restart invisible to traffic:

* a switch is read before anything is sent to it (reconcile.py), so flows
  that are already right are never touched, and apps may rebuild what
  they knew from what the switch holds (`App.recover`);
* for ``settle`` seconds after a switch comes up, only what is missing is
  added: nothing the switch held when it connected is changed or deleted
  while the controller's view of the network (links discovered by LLDP,
  hosts) is still filling in; what the controller itself installed since
  follows what it learns. Then the switch is reconciled in full, and again
  by every audit.

The I/O layer (runtime.py) moves bytes between sockets and `Datapath`s,
calls `tick()` when `next_deadline()` comes, and runs coroutine handlers
through `spawn`. Tests do the same in memory (tests/unit/memnet.py).
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import time
from typing import Any, Callable, Coroutine, Hashable

from kumoflow import ofp

from . import pipeline
from .app import EVENTS, App
from .datapath import SEND_MANY_BATCH, Datapath
from .flows import Entry, Flow
from .hosts import HostTable
from .reconcile import Reconciler
from .state import DesiredState
from .topology import Topology

log = logging.getLogger("kumoflow.controller")

Owner = tuple[Any, Hashable]     # (app or the core, the app's key)
PIPELINE = "pipeline"
#: the specification's default asynchronous configuration with INVALID_TTL packet-ins added
#: for the master (OpenFlow 1.3 has no switch config flag for them)
_PACKET_INS = 1 << ofp.OFPR.NO_MATCH | 1 << ofp.OFPR.ACTION | 1 << ofp.OFPR.INVALID_TTL
_ALL_PORT_STATUS = 1 << ofp.OFPPR.ADD | 1 << ofp.OFPPR.DELETE | 1 << ofp.OFPPR.MODIFY
_DONE = object()
_ALL_FLOW_REMOVED = (1 << ofp.OFPRR.IDLE_TIMEOUT | 1 << ofp.OFPRR.HARD_TIMEOUT | 1 << ofp.OFPRR.DELETE
                     | 1 << ofp.OFPRR.GROUP_DELETE)


def async_config() -> ofp.SetAsync:
    return ofp.SetAsync(packet_in_mask=(_PACKET_INS, 0), port_status_mask=(_ALL_PORT_STATUS, _ALL_PORT_STATUS),
                        flow_removed_mask=(_ALL_FLOW_REMOVED, 0))


class Core:
    def __init__(self, apps: list[App], *, clock: Callable[[], float] = time.monotonic,
                 echo_interval: float = 5.0, echo_timeout: float = 15.0, request_timeout: float = 10.0,
                 settle: float = 3.0, audit_interval: float = 30.0,
                 miss_send_len: int = ofp.OFP_DEFAULT_MISS_SEND_LEN) -> None:
        self.now = clock
        self.echo_interval, self.echo_timeout = echo_interval, echo_timeout
        self.request_timeout = request_timeout
        self.settle, self.audit_interval = settle, audit_interval
        self.miss_send_len = miss_send_len
        self.spawn: Callable[[Coroutine], Any] = _no_loop
        self.on_timers_changed: Callable[[], Any] = lambda: None   # the runtime re-arms its timer
        self.topology = Topology(self)
        self.hosts = HostTable(self)
        self.state = DesiredState(self)
        self.connections: set[Datapath] = set()
        self.datapaths: dict[int, Datapath] = {}          # dpid -> session, switches that are up
        self.reconcilers: dict[int, Reconciler] = {}
        # desired state: dpid -> key -> entry, and who owns each entry
        self.desired: dict[int, dict[tuple, Entry]] = {}
        self._owner_of: dict[int, dict[tuple, Owner]] = {}
        self._owned: dict[Owner, dict[int, set[tuple]]] = {}
        self._dirty_owners: dict[Owner, set[int] | None] = {}   # None: every switch
        self._dirty_keys: dict[int, set[tuple] | None] = {}      # None: every key
        self._written: set[Datapath] = set()
        self._after_flows: dict[Datapath, list[ofp.Message]] = {}
        self._before_compile: dict[Callable[[], Any], None] = {}
        #: observers of every event dispatched to apps, called as fn(handler, args) after the apps
        #: (the API's event stream, kumoflow.api.events): each should return at once; one that raises is logged
        self.listeners: list[Callable[[str, tuple], Any]] = []
        self._depth = 0
        self._batch = _Batch(self)
        self._timers: list[tuple[float, int, Callable[[], Any]]] = []
        self._seq = itertools.count()
        self.apps = self._load(apps)
        self._table_app = self._assign_tables()
        self.call_every(echo_interval / 2, self._keepalive)
        if audit_interval > 0:
            self.call_every(audit_interval, self.audit)

    # --- apps ------------------------------------------------------------------------

    def _load(self, apps: list[App]) -> list[App]:
        """The apps in order, each preceded by the apps it requires (loaded once)."""
        from kumoflow.apps import load_app
        ordered: list[App] = []
        names: dict[str, App] = {}
        given: dict[str, App] = {}
        for app in apps:
            if given.setdefault(app.name, app) is not app:
                raise ValueError(f"app {app.name} given twice")

        def add(app: App) -> None:
            if names.get(app.name) is app:
                return
            for need in app.requires:
                add(names.get(need) or given.get(need) or load_app(need))
            names[app.name] = app
            ordered.append(app)

        for app in apps:
            add(app)
        custom = itertools.count()
        for app in ordered:
            number = pipeline.FUNCTIONS.get(app.name)
            app.attach(self, number if number is not None else pipeline.CUSTOM_FUNCTIONS + next(custom), names)
        return ordered

    def _assign_tables(self) -> dict[int, App]:
        table_app: dict[int, App] = {}
        for app in self.apps:
            for name in app.tables:
                if name not in pipeline.TABLE:
                    raise ValueError(f"app {app.name}: no table {name!r} in the pipeline "
                                     f"(tables: {', '.join(pipeline.TABLE)})")
                table = pipeline.TABLE[name].id
                if table in table_app:
                    raise ValueError(f"apps {table_app[table].name} and {app.name} both fill table {name}")
                table_app[table] = app
        return table_app

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(name)

    def start(self) -> None:
        for app in self.apps:
            app.start()

    def stop(self) -> None:
        for app in self.apps:
            app.stop()

    # --- time --------------------------------------------------------------------------

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        when = self.now() + delay
        sooner = not self._timers or when < self._timers[0][0]
        heapq.heappush(self._timers, (when, next(self._seq), fn))
        if sooner:
            self.on_timers_changed()

    def call_every(self, interval: float, fn: Callable[[], Any]) -> None:
        def again() -> None:
            self.call_later(interval, again)
            fn()
        self.call_later(interval, again)

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def tick(self) -> None:
        """Run the timers that are due (requests' deadlines among them)."""
        now = self.now()
        with self.batch():
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                try:
                    fn()
                except Exception:
                    log.exception("timer %r failed", fn)

    def _keepalive(self) -> None:
        """Echo idle switches; close those silent for echo_timeout (dead peers)."""
        now = self.now()
        for dp in list(self.connections):
            idle = now - dp.last_seen
            if idle > self.echo_timeout:
                log.warning("%s: no message for %.0fs; closing", dp, idle)
                dp.close()
                dp.connection_lost(TimeoutError("echo timeout"))
            elif idle > self.echo_interval and dp.conn.negotiated:
                dp.send(ofp.EchoRequest())

    # --- batching: every event ends by compiling, reconciling and flushing -----------------

    def batch(self) -> "_Batch":
        """`with core.batch():` an event; at the end of the outermost one, what
        changed is compiled and reconciled and every session written to flushes."""
        return self._batch

    def before_compile(self, fn: Callable[[], Any]) -> None:
        """Run `fn` once at the end of this event, before what changed is compiled:
        an app that rebuilds a model from many records does it once per event (a bulk
        API request is one), not once per record."""
        self._before_compile[fn] = None
        if not self._depth:
            with self.batch():
                pass

    def _end_batch(self) -> None:
        while self._before_compile:
            pending, self._before_compile = list(self._before_compile), {}
            self._depth += 1     # what they mark changed is compiled below, together, not one event each
            try:
                for fn in pending:
                    try:
                        fn()
                    except Exception:
                        log.exception("%r failed", fn)
            finally:
                self._depth -= 1
        if self._dirty_owners or self._dirty_keys:
            self._depth += 1
            try:
                self._settle_changes()
            finally:
                self._depth -= 1
        after, self._after_flows = self._after_flows, {}
        for dp, msgs in after.items():
            if not dp.closed:
                dp.send(ofp.BarrierRequest())     # the flows first, then what must meet them
                for msg in msgs:
                    dp.send(msg)
                self._written.add(dp)
        written, self._written = self._written, set()
        for dp in written:
            dp.flush()

    def send_after_flows(self, dp: Datapath, msg: ofp.Message) -> None:
        """Send `msg` once the flows this event compiled are in the switch
        (after them and a barrier): a packet-out to OFPP_TABLE then meets
        the flows that were just installed for it."""
        self._after_flows.setdefault(dp, []).append(msg)
        if not self._depth:
            with self.batch():
                pass

    def wrote(self, dp: Datapath) -> None:
        if self._depth:
            self._written.add(dp)
        else:
            dp.flush()

    def _settle_changes(self) -> None:
        for _ in range(8):   # compiling may mark more owners (rarely); bounded
            if not self._dirty_owners:
                break
            dirty, self._dirty_owners = self._dirty_owners, {}
            for owner, dpids in dirty.items():
                for dpid in (self.datapaths if dpids is None else dpids):
                    if dpid in self.datapaths:
                        self._compile(owner, dpid)
        dirty_keys, self._dirty_keys = self._dirty_keys, {}
        for dpid, keys in dirty_keys.items():
            self._sync(dpid, keys)

    # --- connections -----------------------------------------------------------------------

    def connect(self, peer: str = "?") -> Datapath:
        """A new channel: returns its session (the I/O layer sets write/on_close)."""
        dp = Datapath(self, peer)
        self.connections.add(dp)
        self.wrote(dp)   # our HELLO
        return dp

    def connection_closed(self, dp: Datapath, exc: Exception | None) -> None:
        self.connections.discard(dp)
        if dp.id is not None and self.datapaths.get(dp.id) is dp:
            self._switch_down(dp, exc)

    def switch_connected(self, dp: Datapath) -> None:
        """Handshake done: replace an older session of the same switch, read what it holds."""
        old = self.datapaths.get(dp.id)
        if old is not None and old is not dp:
            log.info("switch %s reconnected from %s; dropping its old channel", dp.name, dp.peer)
            old.close()
            self._switch_down(old, None)
        dp.send(ofp.SetConfig(miss_send_len=self.miss_send_len))
        dp.send(async_config())    # a packet whose TTL runs out in a router's flows comes to the controller
        self._read(dp, first=True)

    def _read(self, dp: Datapath, first: bool = False) -> None:
        """Read a switch's flows, groups and meters; then reconcile it."""
        replies: dict[int, Any] = {}
        requests = Reconciler.read_requests()

        def got(i: int, reply: Any) -> None:
            if dp.closed:
                return
            if isinstance(reply, (TimeoutError, ConnectionError)):
                log.warning("%s: cannot read what the switch holds: %s", dp, reply)
                if first:
                    dp.close()
                    dp.connection_lost(reply)
                elif dp.id in self.reconcilers:
                    self.reconcilers[dp.id].read_failed()
                return
            if isinstance(reply, Exception):   # an ERROR (no meter support: it holds none) or bad bytes
                if i == 0:
                    log.warning("%s: cannot read its flows (%s); assuming it holds none", dp, reply)
                replies[i] = []
            else:
                replies[i] = reply.body
            if len(replies) == len(requests):
                self._read_done(dp, replies, first)

        if not first:
            self.reconcilers[dp.id].reading()
        for i, request in enumerate(requests):
            dp.expect(request, lambda reply, i=i: got(i, reply))

    def _read_done(self, dp: Datapath, replies: dict[int, Any], first: bool) -> None:
        flows, groups, meters = replies[0], replies[1], replies[2]
        if first:
            dpid = dp.id
            desired = self.desired.setdefault(dpid, {})
            reconciler = Reconciler(desired, self._owns)
            self.reconcilers[dpid] = reconciler
            reconciler.read(flows, groups, meters)
            self.datapaths[dpid] = dp
            dp.up_since = self.now()
            dp.settled = self.settle <= 0
            for app in self.apps:
                self._call(app, "recover", dp, flows)
            dp.is_up = True
            log.info("switch %s up from %s with %d ports; holds %d flows, %d groups, %d meters", dp.name,
                     dp.peer, len(dp.ports), len(flows), len(groups), len(meters))
            self.dispatch("switch_up", dp)
            self._compile_switch(dpid)
            if not dp.settled:
                self.call_later(self.settle, lambda: self._settled(dp))
        else:
            self._audit_in_steps(dp, self.reconcilers[dp.id], flows, groups, meters)

    def _audit_in_steps(self, dp: Datapath, reconciler: Reconciler, flows, groups, meters) -> None:
        """An audit's read applied and compared a step at a time, each step a timer of its own
        (other events run between; the first step now), then what differs reconciled."""
        steps = reconciler.audit_in_steps(flows, groups, meters)

        def step() -> None:
            if dp.closed or self.reconcilers.get(dp.id) is not reconciler:
                steps.close()                 # gone, or connected again: a new read is coming
            elif next(steps, _DONE) is _DONE:
                dirty = self._dirty_keys.setdefault(dp.id, set())
                if dirty is not None:
                    dirty |= reconciler.differing
            else:
                # the runtime's clock (the loop's) stands still within a tick: a timer due now
                # would run in this same tick, so the next step waits a millisecond
                self.call_later(0.001, step)
        step()

    def _settled(self, dp: Datapath) -> None:
        if dp.is_up and self.datapaths.get(dp.id) is dp:
            dp.settled = True
            self._compile_switch(dp.id)

    def _switch_down(self, dp: Datapath, exc: Exception | None) -> None:
        was_up, dp.is_up = dp.is_up, False
        if self.datapaths.get(dp.id) is dp:
            del self.datapaths[dp.id]
            self.reconcilers.pop(dp.id, None)
            self._forget_switch(dp.id)
        if was_up:
            log.info("switch %s down (%s)", dp.name, exc or "closed")
            self.dispatch("switch_down", dp)

    def audit(self) -> None:
        """Read every switch again and repair what drifted."""
        for dp in list(self.datapaths.values()):
            if dp.is_up and not self.reconcilers[dp.id].reading_now:   # the last audit still being applied: skip
                self._read(dp)

    # --- desired state -------------------------------------------------------------------------

    def changed(self, app: Any, key: Hashable, dpid: int | None = None) -> None:
        """`app`'s object `key` changed: recompile it (on one switch, or on all)."""
        owner = (app, key)
        if dpid is None:
            self._dirty_owners[owner] = None
        else:
            dpids = self._dirty_owners.setdefault(owner, set())
            if dpids is not None:
                dpids.add(dpid)
        if not self._depth:
            with self.batch():
                pass

    def _compile_switch(self, dpid: int) -> None:
        """Every object of every app, compiled for a switch that just came up."""
        self._compile((self, PIPELINE), dpid)
        for app in self.apps:
            for key in app.owners():
                self._compile((app, key), dpid)
        self._dirty_keys[dpid] = None

    def _compile(self, owner: Owner, dpid: int) -> None:
        source, key = owner
        dp = self.datapaths[dpid]
        try:
            entries = self._pipeline_entries(dp) if source is self else source.compile(key, dp)
        except Exception:
            log.exception("%s failed to compile %r for %s; keeping what it had", _name(source), key, dp.name)
            return
        desired = self.desired.setdefault(dpid, {})
        owner_of = self._owner_of.setdefault(dpid, {})
        per_switch = self._owned.setdefault(owner, {})
        old = per_switch.get(dpid, set())
        new: set[tuple] = set()
        for entry in entries:
            holder = owner_of.get(entry.key)
            if holder is not None and holder != owner:
                log.error("%s: %s and %s both want %r; keeping the first", dp.name, _describe(holder),
                          _describe(owner), entry)
                continue
            new.add(entry.key)
            desired[entry.key] = entry
            owner_of[entry.key] = owner
        for gone in old - new:
            if owner_of.get(gone) == owner:
                del desired[gone]
                del owner_of[gone]
        if new:
            per_switch[dpid] = new
        else:
            per_switch.pop(dpid, None)
            if not per_switch:
                del self._owned[owner]
        dirty = self._dirty_keys.setdefault(dpid, set())
        if dirty is not None:   # in place: a batch compiling many owners on one switch stays linear
            dirty |= old
            dirty |= new

    def _forget_switch(self, dpid: int) -> None:
        self.desired.pop(dpid, None)
        for owner in self._owner_of.pop(dpid, {}).values():
            per_switch = self._owned.get(owner)
            if per_switch is not None:
                per_switch.pop(dpid, None)
                if not per_switch:
                    del self._owned[owner]
        self._dirty_keys.pop(dpid, None)

    def _pipeline_entries(self, dp: Datapath) -> list[Entry]:
        """The miss entry of every table of the pipeline."""
        cookie = pipeline.cookie(pipeline.FUNCTIONS[PIPELINE], 0)
        entries = []
        for table in pipeline.TABLES:
            app = self._table_app.get(table.id)
            instructions = app.table_miss(table.name) if app is not None else None
            if instructions is None:
                instructions = pipeline.miss_instructions(table)
            entries.append(Flow(table.id, 0, ofp.Match(), instructions, cookie))
        return entries

    def _owns(self, entry: Entry) -> bool:
        """May the reconciler delete this entry when nothing wants it?"""
        if isinstance(entry, Flow):
            if entry.table not in pipeline.BY_ID:
                return False
            app = self._table_app.get(entry.table)
            return (app is None or not app.reactive
                    or pipeline.cookie_function(entry.cookie) == pipeline.FUNCTIONS[PIPELINE])
        number = pipeline.function_of(entry.key[0], entry.group_id if entry.key[0] == "group" else entry.meter_id)
        return any(app.function == number for app in self.apps)

    def _sync(self, dpid: int, keys: set[tuple] | None) -> None:
        dp = self.datapaths.get(dpid)
        reconciler = self.reconcilers.get(dpid)
        if dp is None or reconciler is None or not reconciler.ready or not dp.is_up:
            return
        msgs = reconciler.sync(keys, adds_only=not dp.settled)
        if keys is None or len(msgs) > 100:
            log.log(logging.INFO if msgs else logging.DEBUG, "%s: reconciled%s: %d added, %d changed, %d deleted",
                    dp.name, "" if dp.settled else " (settling: adds only)", *reconciler.last)
        if log.isEnabledFor(logging.DEBUG):
            for msg, _ in msgs:
                log.debug("%s: reconcile: %s", dp.name, msg)
        for i, (msg, key) in enumerate(msgs, 1):
            if key is None:
                dp.send(msg)
            else:
                dp.send(msg, origin=lambda err, r=reconciler, k=key: r.forget(k))
            if not i % SEND_MANY_BATCH:
                dp.flush()     # a long sync: the switch works on the first messages while the rest are encoded

    # --- events from switches ----------------------------------------------------------------

    def packet_in(self, dp: Datapath, msg: ofp.PacketIn) -> None:
        app = self._table_app.get(msg.table_id)
        if app is not None:
            self._call(app, "packet_in", dp, msg)

    def port_status(self, dp: Datapath, msg: ofp.PortStatus) -> None:
        self.dispatch("port_status", dp, msg)

    def flow_removed(self, dp: Datapath, msg: ofp.FlowRemoved) -> None:
        number = pipeline.cookie_function(msg.cookie)
        for app in self.apps:
            if app.function == number:
                self._call(app, "flow_removed", dp, msg)
                return
        self.dispatch("flow_removed", dp, msg)

    def error(self, dp: Datapath, origin: Any, msg: ofp.ErrorMsg, request: ofp.Message | None) -> None:
        if isinstance(origin, App):
            self._call(origin, "error", dp, msg, request)
        else:
            origin(msg)

    # --- dispatch to apps ------------------------------------------------------------------

    def dispatch(self, handler: str, *args: Any) -> None:
        """Call `handler` on every app that has it (events: app.py EVENTS)."""
        for app in self.apps:
            if handler in EVENTS and app.handles(handler):
                self._call(app, handler, *args)
        for listener in self.listeners:
            try:
                listener(handler, args)
            except Exception:
                log.exception("listener %r failed on %s", listener, handler)

    def _call(self, app: App, handler: str, *args: Any) -> None:
        """Run an app handler; a failing app is logged and never takes a switch down."""
        method = getattr(app, handler)
        try:
            if inspect.iscoroutinefunction(method):
                self.spawn(_guard(app, handler, method(*args)))
            else:
                method(*args)
        except Exception:
            log.exception("app %s failed in %s", app.name, handler)


class _Batch:
    __slots__ = ("core",)

    def __init__(self, core: Core) -> None:
        self.core = core

    def __enter__(self) -> None:
        self.core._depth += 1

    def __exit__(self, *exc: object) -> None:
        core = self.core
        core._depth -= 1
        if not core._depth:
            core._end_batch()


async def _guard(app: App, handler: str, coro: Coroutine) -> None:
    try:
        await coro
    except Exception:
        log.exception("app %s failed in %s", app.name, handler)


def _no_loop(coro: Coroutine) -> None:
    coro.close()
    raise RuntimeError("coroutine handlers need the asyncio runtime")


def _name(source: Any) -> str:
    return getattr(source, "name", "the pipeline")


def _describe(owner: Owner) -> str:
    return f"{_name(owner[0])}:{owner[1]!r}"
