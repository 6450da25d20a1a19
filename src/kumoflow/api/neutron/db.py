"""The Neutron resources' view of the desired-state store.

`NeutronDB` reads the store once (a snapshot) and then follows its change
feed (`store.watch`), keeping every record in memory with the indexes the
API needs to answer and to check a write without scanning: who refers to
what (a network's ports and subnets, a security group's rules and ports...),
the addresses taken in each subnet, the MAC addresses taken, the
segmentation ids taken per network type, each project's default security
group. Reads never touch the store.

Writes go to the store as one commit per request (a port and the default
security group it needed, a network and its subnets deleted together...),
under `lock`: a request's checks and its commit are never interleaved with
another request's, so "address free" is still true when it is written.
The SQLite store delivers a commit to its watchers before ``commit``
returns, so a request sees its own writes at once.

Kinds: ``network``, ``subnet``, ``port``, ``router``, ``floatingip``,
``security_group``, ``security_group_rule``, ``qos_policy``, ``qos_rule``, ``l2_gateway``,
``l2_gateway_connection``, ``address_group``, ``firewall_rule``, ``firewall_policy``,
``firewall_group``, and Octavia's ``loadbalancer``, ``listener``, ``pool``, ``member``,
``healthmonitor`` (lbaas.py). A record's body holds
the resource's stored attributes (not ``id``, ``project_id``/``tenant_id``,
``created_at``, ``updated_at``: those are the record's own); attributes
computed at read time (a network's ``subnets``, a port's ``status``) are not
stored. Keys starting with ``_`` are kumoflow's own and never shown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from kumoflow.store import Change, Record

log = logging.getLogger("kumoflow.api.neutron")

KINDS = ("network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule", "qos_policy",
         "qos_rule", "l2_gateway", "l2_gateway_connection", "address_group", "firewall_rule", "firewall_policy",
         "firewall_group", "loadbalancer", "listener", "pool", "member", "healthmonitor")

Key = tuple[str, str]


def references(record: Record) -> list[Key]:
    """The records this one refers to (and which therefore cannot go while it exists)."""
    body, kind = record.body, record.kind
    refs: list[Key] = []
    if body.get("qos_policy_id"):
        refs.append(("qos_policy", body["qos_policy_id"]))
    if body.get("remote_address_group_id"):          # a rule on an address group's addresses
        refs.append(("address_group", body["remote_address_group_id"]))
    if kind == "subnet":
        refs.append(("network", body["network_id"]))
    elif kind == "port":
        refs.append(("network", body["network_id"]))
        refs += [("subnet", ip["subnet_id"]) for ip in body.get("fixed_ips", ())]
        refs += [("security_group", sg) for sg in body.get("security_groups", ())]
        if body.get("device_owner", "").startswith("network:router_") and body.get("device_id"):
            refs.append(("router", body["device_id"]))
        elif body.get("device_owner") == "network:floatingip" and body.get("device_id"):
            refs.append(("floatingip", body["device_id"]))
    elif kind == "router":
        gateway = body.get("external_gateway_info") or {}
        if gateway.get("network_id"):
            refs.append(("network", gateway["network_id"]))
    elif kind == "floatingip":            # its network; the port and router of its association
        refs.append(("network", body["floating_network_id"]))
        if body.get("port_id"):
            refs.append(("port", body["port_id"]))
        if body.get("router_id"):
            refs.append(("router", body["router_id"]))
    elif kind == "security_group_rule":
        refs.append(("security_group", body["security_group_id"]))
        if body.get("remote_group_id"):
            refs.append(("security_group", body["remote_group_id"]))
    elif kind == "qos_rule":
        refs.append(("qos_policy", body["qos_policy_id"]))
    elif kind == "l2_gateway_connection":
        refs += [("l2_gateway", body["l2_gateway_id"]), ("network", body["network_id"])]
    elif kind == "firewall_rule":
        refs += [("address_group", body[k]) for k in ("source_address_group_id", "destination_address_group_id")
                 if body.get(k)]
    elif kind == "firewall_policy":
        refs += [("firewall_rule", rule) for rule in body.get("firewall_rules", ())]
    elif kind == "firewall_group":
        refs += [("firewall_policy", body[k]) for k in ("ingress_firewall_policy_id", "egress_firewall_policy_id")
                 if body.get(k)]
        refs += [("port", port) for port in body.get("ports", ())]
    elif kind == "loadbalancer":          # its VIP: the port that holds the address, its subnet and network
        refs += [("port", body["vip_port_id"]), ("subnet", body["vip_subnet_id"]),
                 ("network", body["vip_network_id"])]
    elif kind == "listener":
        refs.append(("loadbalancer", body["loadbalancer_id"]))
        if body.get("default_pool_id"):
            refs.append(("pool", body["default_pool_id"]))
    elif kind == "pool":
        refs.append(("loadbalancer", body["loadbalancer_id"]))
        refs += [("listener", listener) for listener in body.get("listeners", ())]
    elif kind == "member":
        refs += [("pool", body["pool_id"]), ("subnet", body["subnet_id"])]
    elif kind == "healthmonitor":
        refs.append(("pool", body["pool_id"]))
    return list(dict.fromkeys(refs))


def segment_key(body: dict) -> tuple | None:
    """What must be unique among networks: (type, physical network, id) for vlan, (type, id) for
    the overlays, (flat, physical network) for flat."""
    kind = body.get("provider:network_type")
    if kind == "flat":
        return ("flat", body.get("provider:physical_network"))
    if kind == "vlan":
        return ("vlan", body.get("provider:physical_network"), body.get("provider:segmentation_id"))
    if kind in ("vxlan", "nvgre"):
        return (kind, body.get("provider:segmentation_id"))
    return None


class NeutronDB:
    """Records of the Neutron kinds, in memory, following one store."""

    def __init__(self, store: Any = None, open_own: bool = True) -> None:
        self.store = store
        self._open_own = open_own
        self.own_store = False
        self.lock = asyncio.Lock()
        self._ready = False
        self._starting: asyncio.Lock | None = None
        self.records: dict[str, dict[str, Record]] = {kind: {} for kind in KINDS}
        #: (kind, id) -> the kinds of what refers to it -> their ids (in the order they came)
        self.referrers: dict[Key, dict[str, dict[str, None]]] = {}
        self.ips: dict[str, dict[str, str]] = {}          # subnet id -> address -> port id
        self.macs: dict[str, set[str]] = {}               # mac -> ids of ports that have it
        self.segments: dict[tuple, str] = {}              # segment_key -> network id
        self.default_groups: dict[str, str] = {}          # project -> its default security group
        self.alloc_hints: dict[str, int] = {}             # subnet id -> where to look for a free address next
        self.alloc_spans: dict[str, tuple[int, list]] = {}  # subnet id -> (its revision, its pools as ints)
        #: (segment key less its id, low, high) -> every id from low up to it is taken (where a search starts)
        self.segment_floors: dict[tuple, int] = {}

    # --- following the store ----------------------------------------------------------------

    async def ready(self) -> "NeutronDB":
        if self._ready:
            return self
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._ready:
                return self
            if self.store is None:
                from kumoflow.store.sqlite import SQLiteStore
                log.warning("no desired-state store: Neutron resources are kept in memory and lost at exit")
                self.store = await SQLiteStore.open(":memory:")
                self.own_store = True
            snapshot = await self.store.snapshot()
            self.apply([Change(snapshot.revision, r.kind, r.id, r, None) for r in snapshot.records])
            self.store.watch(self.apply)
            self._ready = True
        return self

    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.kind not in self.records:
                continue
            old = self.records[change.kind].get(change.id)
            if old is not None:
                self._unindex(old)
            if change.record is None:
                self.records[change.kind].pop(change.id, None)
            else:
                self.records[change.kind][change.id] = change.record
                self._index(change.record)

    def _index(self, r: Record) -> None:
        for ref in references(r):
            self.referrers.setdefault(ref, {}).setdefault(r.kind, {})[r.id] = None
        if r.kind == "port":
            for ip in r.body.get("fixed_ips", ()):
                self.ips.setdefault(ip["subnet_id"], {})[ip["ip_address"]] = r.id
            self.macs.setdefault(r.body["mac_address"], set()).add(r.id)
        elif r.kind == "network":
            segment = segment_key(r.body)
            if segment is not None:
                self.segments[segment] = r.id
        elif r.kind == "security_group" and r.body.get("_default"):
            self.default_groups[r.project_id] = r.id

    def _unindex(self, r: Record) -> None:
        for ref in references(r):
            found = self.referrers.get(ref)
            if found is not None and r.kind in found:
                found[r.kind].pop(r.id, None)
                if not found[r.kind]:
                    del found[r.kind]
                if not found:
                    del self.referrers[ref]
        if r.kind == "port":
            for ip in r.body.get("fixed_ips", ()):
                taken = self.ips.get(ip["subnet_id"], {})
                if taken.get(ip["ip_address"]) == r.id:
                    del taken[ip["ip_address"]]
            ids = self.macs.get(r.body["mac_address"])
            if ids is not None:
                ids.discard(r.id)
                if not ids:
                    del self.macs[r.body["mac_address"]]
        elif r.kind == "network":
            segment = segment_key(r.body)
            if segment is not None and self.segments.get(segment) == r.id:
                del self.segments[segment]
                self.segment_floors.clear()
        elif r.kind == "security_group" and self.default_groups.get(r.project_id) == r.id:
            del self.default_groups[r.project_id]

    # --- reading ------------------------------------------------------------------------------

    def get(self, kind: str, id: str) -> Record | None:
        return self.records[kind].get(id)

    def all(self, kind: str) -> list[Record]:
        return list(self.records[kind].values())

    def referring(self, kind: str, id: str, of_kind: str | None = None) -> list[Record]:
        """The records that refer to (kind, id), optionally of one kind, in the order they came."""
        by_kind = self.referrers.get((kind, id), {})
        found = []
        for ref_kind in ([of_kind] if of_kind is not None else list(by_kind)):
            records = self.records[ref_kind]
            found += [records[i] for i in by_kind.get(ref_kind, ()) if i in records]
        return found

    async def commit(self, ops: list[tuple]) -> list[Change]:
        return await self.store.commit(ops)

    async def close(self) -> None:
        if self.own_store and self.store is not None:
            await self.store.close()
