"""`bgp`: the cloud speaks BGP with the routers outside, through an FRR
instance of its own (kumoflow.bgp.Speaker; docs/routing.md says why FRR).

What it follows: the BGP speakers of the desired state
(``/v2.0/bgp-speakers``, neutron-dynamic-routing's shape), their peers
(``/v2.0/bgp-peers``) and their gateway networks (external networks), and
the routers whose external gateway is on one of those networks.

What it announces, for each such router, with the router's gateway address
as the next hop (the peer sends the traffic straight to the router): its
tenant subnets (``advertise_tenant_networks``) and its floating IPs as host
routes (``advertise_floating_ip_host_routes``).

What it learns: every route a peer announces whose next hop lies on a
router's external subnet becomes a route of that router (`RouterApp.learn`:
compiled one prefix at a time, so a full table arrives as fast as the
switches take the flows). A session lost withdraws them after the hold
time; the speaker stopping withdraws them all.

Where the speaker runs: in the network namespace given as ``namespace``
(the network node whose interface sits on the external network; in the
emulator, a host), or in the controller's own. Its router id is
``router_id``, else the first IPv4 address of that namespace. One FRR
instance speaks for one AS: with several speakers in the desired state,
the oldest is served and the others are logged.

    kumoflow controller --app bgp --api ... --set bgp.namespace=netnode
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any, Iterable

from kumoflow.apps import options as check
from kumoflow.apps.routing import Router
from kumoflow.controller import App

log = logging.getLogger("kumoflow.app.bgp")

#: records whose change may change what is announced or to whom
_WATCHED = frozenset(("bgp_speaker", "bgp_peer", "router", "port", "subnet", "floatingip", "network"))


class BgpApp(App):
    name = "bgp"
    requires = ("router",)

    def __init__(self, namespace: str | None = None, router_id: str | None = None, hold_time: int = 180,
                 **options: Any) -> None:
        super().__init__(**options)
        self.namespace = namespace or None
        if router_id is not None:
            ipaddress.IPv4Address(str(router_id))
        self.router_id = router_id
        self.hold_time = check.integer("hold_time", hold_time, 3, 65535)
        self._changed = asyncio.Event()
        self._task = None
        self.speaker = None
        self.applied: dict | None = None     # the configuration the speaker has
        self._learned: dict[str, dict] = {}   # router id -> prefix -> next hop, as handed to the router app

    @property
    def router(self):
        return self.peers["router"]

    def start(self) -> None:
        self._task = self.core.spawn(self._run())
        self._changed.set()

    def record_changed(self, change) -> None:
        if change.kind in _WATCHED:
            self._changed.set()

    # --- what the speaker should do ------------------------------------------------------

    def wanted(self) -> dict | None:
        """The speaker's configuration from the desired state, or None (no speaker)."""
        state = self.core.state
        speakers = sorted(state.all("bgp_speaker"), key=lambda r: (r.created_at, r.id))
        if not speakers:
            return None
        if len(speakers) > 1:
            log.warning("%d BGP speakers: serving %s, the oldest (one FRR instance speaks for one AS)",
                        len(speakers), speakers[0].id)
        speaker = speakers[0].body
        peers = []
        for peer_id in speaker.get("peers", ()):
            peer = state.get("bgp_peer", peer_id)
            if peer is not None:
                body = peer.body
                password = body.get("_password") if body.get("auth_type") == "md5" else None
                peers.append((body["peer_ip"], int(body["remote_as"]), *([password] if password else [])))
        return {"local_as": int(speaker["local_as"]), "peers": sorted(peers),
                "announced": advertised(speaker, self.router.routers.values())}

    def _gateway_routers(self, networks: set[str]) -> list[Router]:
        return gateway_routers(networks, self.router.routers.values())

    # --- the speaker's life ----------------------------------------------------------------

    async def _run(self) -> None:
        from kumoflow.bgp.speaker import Speaker, SpeakerError
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                await asyncio.sleep(0.2)          # a burst of API changes: one reconfiguration
                wanted = self.wanted()
                try:
                    if wanted is None:
                        if self.speaker is not None:
                            await self.speaker.stop()
                            self.speaker, self.applied = None, None
                        continue
                    if self.speaker is None:
                        self.speaker = Speaker(self._routes, namespace=self.namespace)
                        await self.speaker.start()
                        log.info("BGP speaker started (namespace %s)", self.namespace or "of the controller")
                    if wanted != self.applied:
                        router_id = self.router_id or await self._first_address()
                        await self.speaker.configure(wanted["local_as"], router_id, peers=wanted["peers"],
                                                     announced=wanted["announced"],
                                                     timers=(max(1, self.hold_time // 3), self.hold_time))
                        self.applied = wanted
                        log.info("BGP speaker: AS %d, %d peers, %d prefixes announced", wanted["local_as"],
                                 len(wanted["peers"]), len(wanted["announced"]))
                except (SpeakerError, ValueError, OSError) as exc:
                    log.error("BGP speaker: %s", exc)
                    self.applied = None
        finally:
            if self.speaker is not None:
                await self.speaker.stop()

    async def _first_address(self) -> str:
        argv = ["ip", "-j", "-4", "addr", "show"]
        if self.namespace:
            argv = ["ip", "netns", "exec", self.namespace, *argv]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        for link in json.loads(out or b"[]"):
            for info in link.get("addr_info", ()):
                if not ipaddress.IPv4Address(info["local"]).is_loopback:
                    return info["local"]
        raise ValueError("no IPv4 address to take as the BGP router id: give bgp.router_id")

    def _routes(self, adds: list, deletes: list) -> None:
        """Learned routes, from the speaker: to the routers whose external subnet holds their next hop."""
        with self.core.batch():
            speaker = self.applied is not None
            routers = self._gateway_routers({n for s in self.core.state.all("bgp_speaker")
                                             for n in s.body.get("networks", ())}) if speaker else []
            for router in routers:
                subnet = router.external.subnet
                mine = self._learned.setdefault(router.id, {})
                gone = [r.prefix for r in deletes if r.prefix in mine]
                for prefix in gone:
                    del mine[prefix]
                taken = {}
                inside: dict = {}     # next hop -> on the external subnet? (a few next hops, 100,000 routes)
                for route in adds:
                    hop = None
                    for nexthop in route.nexthops:
                        gateway = nexthop.gateway
                        if gateway is not None:
                            known = inside.get(gateway)
                            if known is None:
                                known = inside[gateway] = gateway.version == subnet.version and gateway in subnet
                            if known:
                                hop = gateway
                                break
                    if hop is not None:
                        taken[route.prefix] = hop
                    elif route.prefix in mine:
                        gone.append(route.prefix)
                        del mine[route.prefix]
                mine.update(taken)
                self.router.learn(router.id, taken, gone)


def gateway_routers(networks: set[str], routers: Iterable[Router]) -> list[Router]:
    """The routers up whose external gateway is on one of `networks`."""
    return [r for r in routers if r.up and r.external is not None and r.external.network_id in networks]


def advertised(speaker: dict, routers: Iterable[Router]) -> list[tuple[str, str]]:
    """(prefix, next hop) a BGP speaker (its record's body) announces: for each
    router whose gateway is on one of its networks, its IPv4 tenant subnets and
    floating IPs, by the router's gateway address."""
    out = set()
    for router in gateway_routers(set(speaker.get("networks", ())), routers):
        hop = str(router.external.ip)
        if speaker.get("advertise_tenant_networks", True):
            out |= {(str(i.subnet), hop) for i in router.interfaces if not i.external and i.ip.version == 4}
        if speaker.get("advertise_floating_ip_host_routes", True):
            out |= {(f"{fip}/32", hop) for fip in router.floating.values()}
    return sorted(out)
