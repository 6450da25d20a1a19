"""`usage`: per-tenant usage metering, the cloud's "measured service": bytes
and packets each tenant port sent and was delivered, and their sums per
network, read from the counters of the flows the `tenants` app installs.

Nothing here installs a flow. Every ``interval`` seconds each switch is asked
for the statistics of the tenant ports' flows only (one FLOW_STATS request
filtered by cookie: the `tenants` function and ``KIND_PORT``); the reply is
handled when it comes, 1,000 flows at a time with other events in between
(as the core applies an audit's read), so neither a switch slow to answer
nor one holding many ports' flows stalls the controller; a switch whose
last reply is still being counted, or not come, is skipped.

What is counted, from the VM's point of view (as a cloud's meters have it;
the switch's own port counters, ``kumoflow_port_*``, count the other way):

``tx``       what the port sent that port security admitted: its ``classify``
             admission flows on its own switch (every frame, unicast or not,
             routed or not, DHCP and ARP included).
``rx``       unicast delivered to the port: its ``forward`` flows on its own
             switch, ``eth_dst`` its MAC (or an allowed pair's) in its network,
             whether the frame came from a local VM, out of a tunnel or from
             a router.
``dropped``  what the port sent that port security refused (its drop flow).

Not counted: broadcast, multicast and unknown unicast delivered to a port
(they leave through the network's flood group, shared by all its ports); what
the controller itself sends to a VM (ARP and DHCP answers are packet-outs);
the port's flows on other switches (the tunnel towards it: the same frames
are counted again where they are delivered); the ARP requests for its
addresses that the controller answers (they are counted as the asker's tx).
A frame between two ports of one network is the sender's tx and the
receiver's rx; a network's usage is the sum of its ports'.

Totals never go backwards. Each flow's counters are remembered per switch
with the time it was installed (the poll's time minus its duration): a flow
modified in place keeps both and adds only what it counted since; a flow
installed again (deleted and re-added: an audit's repair, a switch that
restarted, a port moved back) restarts from 0 and all it counted is added;
a counter that went backwards without that is taken as restarted too. What a
flow counted between the last poll and its deletion is lost (at most one
interval's worth), and the totals live in the controller's memory: a
controller started again counts from what the flows on the switches hold.

A cookie names its port by a crc32 of the port's id, which two ports may
share: a flow is a port's only if it is also where that port is (the
switch, and the ``in_port`` of a classify flow; the network and ``eth_dst``
of a forward flow). Flows of no known port are ignored.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Iterable, Iterator

from kumoflow import ofp
from kumoflow.apps import options as check
from kumoflow.apps.overlay import Overlay, Port
from kumoflow.apps.tenants import ADMIT_PRIORITY, KIND_PORT, NETWORK, PORT_DROP_PRIORITY
from kumoflow.controller import App, pipeline

DEFAULT_INTERVAL = 10.0
#: a flow whose install time moved later by more than this (seconds) is another flow
REINSTALLED = 1.0
CRC_MASK = 0xFFFFFFFF
#: flows counted in one step of the event loop
STEP = 1000
_DONE = object()
FIELDS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "dropped_packets", "dropped_bytes")


@dataclasses.dataclass
class Usage:
    """Totals of a port or a network; times are the core's clock."""

    since: float
    updated: float
    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    dropped_packets: int = 0
    dropped_bytes: int = 0

    def add(self, direction: str, packets: int, nbytes: int, now: float) -> None:
        setattr(self, f"{direction}_packets", getattr(self, f"{direction}_packets") + packets)
        setattr(self, f"{direction}_bytes", getattr(self, f"{direction}_bytes") + nbytes)
        self.updated = now


class UsageApp(App):
    name = "usage"
    requires = ("tenants",)

    def __init__(self, interval: float = DEFAULT_INTERVAL, **options: Any) -> None:
        super().__init__(**options)
        self.interval = check.seconds("interval", interval)
        self.ports: dict[str, Usage] = {}       # port id -> totals
        self.networks: dict[str, Usage] = {}    # network id -> totals
        self.polls = 0                          # replies handled
        #: dpid -> flow key -> (install time, packets, bytes) at the last poll
        self._seen: dict[int, dict[tuple, tuple[float, int, int]]] = {}
        self._asking: set[int] = set()
        self._index: tuple[Overlay | None, dict[int, list[Port]]] = (None, {})

    def start(self) -> None:
        self.core.call_every(self.interval, self.poll)

    @property
    def cookie_filter(self) -> tuple[int, int]:
        """(cookie, cookie_mask) of every tenant port's flows."""
        tenants = self.peers["tenants"]
        return tenants.cookie(KIND_PORT << 48), pipeline.FUNCTION_MASK | 0xFF << 48

    # --- polling -------------------------------------------------------------------

    def poll(self) -> None:
        """Ask every switch up for its tenant ports' flow counters."""
        cookie, mask = self.cookie_filter
        for dp in list(self.core.datapaths.values()):
            if dp.is_up and dp.id not in self._asking:
                self._asking.add(dp.id)
                request = ofp.FlowStatsRequest(table_id=ofp.OFPTT.ALL, cookie=cookie, cookie_mask=mask)
                dp.expect(request, lambda reply, dp=dp: self._reply(dp, reply))

    def _reply(self, dp, reply: Any) -> None:
        """Count a reply a step at a time (STEP flows, each step a timer of its own, as the
        core applies an audit's read): a switch holding many ports' flows stalls nothing."""
        if isinstance(reply, Exception):
            self._asking.discard(dp.id)
            self.log.debug("%s: no flow counters this time: %s", dp.name, reply)
            return
        steps = self._count(dp.id, reply.body, self.core.now())

        def step() -> None:
            if next(steps, _DONE) is _DONE:
                self._asking.discard(dp.id)     # done: the switch may be asked again
            else:
                self.core.call_later(0.001, step)
        step()

    def _count(self, dpid: int, flows: list[ofp.FlowStats], now: float) -> Iterator[None]:
        """Add what each flow counted since the switch's last reply to its port's totals;
        yields between steps."""
        seen, kept = self._seen.get(dpid, {}), {}
        classify, forward = self.table("classify"), self.table("forward")
        for at in range(0, len(flows), STEP):
            if at:
                yield
            by_crc = self._ports_by_crc()
            for flow in flows[at:at + STEP]:
                key = (flow.table_id, flow.priority, tuple(flow.match.items()))   # as the switch reports it
                installed = now - flow.duration_sec - flow.duration_nsec / 1e9
                packets, nbytes = flow.packet_count, flow.byte_count
                before = seen.get(key)
                if (before is None or installed > before[0] + REINSTALLED
                        or packets < before[1] or nbytes < before[2]):
                    new = (packets, nbytes)                       # another flow, or its counters restarted
                else:
                    installed = before[0]
                    new = (packets - before[1], nbytes - before[2])
                kept[key] = (installed, packets, nbytes)      # every flow, mapped or not: never counted twice
                if flow.table_id == classify:
                    direction = {ADMIT_PRIORITY: "tx", PORT_DROP_PRIORITY: "dropped"}.get(flow.priority)
                else:
                    direction = "rx" if flow.table_id == forward else None
                port = self._port_of(dpid, flow, direction, by_crc) if direction else None
                if port is None:
                    continue
                for totals in (self.ports.setdefault(port.id, Usage(installed, now)),
                               self.networks.setdefault(port.network, Usage(installed, now))):
                    if before is None:          # all a new flow counted: counted since it was installed
                        totals.since = min(totals.since, installed)
                    totals.add(direction, *new, now)
        self._seen[dpid] = kept
        self.polls += 1

    def _ports_by_crc(self) -> dict[int, list[Port]]:
        """The bound ports of the tenants' overlay by the crc32 their cookies carry (rebuilt
        when the tenants app rebuilds its model)."""
        overlay = self.peers["tenants"].overlay
        if self._index[0] is not overlay:
            index: dict[int, list[Port]] = {}
            for port in overlay.ports.values():
                if not port.remote and self.core.state.get("port", port.id) is not None:
                    index.setdefault(zlib.crc32(port.id.encode()), []).append(port)
            self._index = (overlay, index)
        return self._index[1]

    def _port_of(self, dpid: int, flow: ofp.FlowStats, direction: str, by_crc: dict[int, list[Port]]) -> Port | None:
        """The port the flow counts for: named by its cookie, and where the flow says it is."""
        overlay = self.peers["tenants"].overlay
        for port in by_crc.get(flow.cookie & CRC_MASK, ()):
            if port.place[0] != dpid:
                continue
            match = flow.match
            if direction != "rx":
                if match.get("in_port") == port.place[1]:
                    return port
                continue
            metadata = match.get("metadata")
            value = metadata[0] if isinstance(metadata, tuple) else metadata
            net = overlay.networks.get(port.network)
            macs = {port.mac, *(mac for mac, _ in port.pairs)}
            if (net is not None and isinstance(value, int) and NETWORK.of(value) == net.number
                    and str(match.get("eth_dst", "")).lower() in macs):
                return port
        return None

    # --- records and switches -------------------------------------------------------

    def record_changed(self, change) -> None:
        """A port or network deleted: its totals go (its meters' series end)."""
        if change.record is None:
            if change.kind == "port":
                self.ports.pop(change.id, None)
            elif change.kind == "network":
                self.networks.pop(change.id, None)

    def switch_down(self, dp) -> None:
        self._asking.discard(dp.id)    # its request failed with the channel; its flows' counters are kept

    def metrics(self) -> Iterable[tuple[str, str, str, float]]:
        yield "polls", "Flow counter replies of switches handled by usage metering", "counter", self.polls
        yield "ports", "Tenant ports with usage totals", "gauge", len(self.ports)
