"""The load balancers as a pure model: what the `lb` app compiles and
balances over, made from the desired state (Octavia's records: load
balancers, listeners, pools, members, health monitors) and the tenants
app's overlay (where each port is). Nothing here talks to a switch.

A load balancer's VIP is an address of a tenant network (its Neutron port
holds the address and the MAC the VIP answers ARP with). Clients reach it
from that network, or routed from a network a router joins to it
(``reach``). A member is an address of a port on a tenant network: its own
network and the VIP's, or one a router joins to the VIP's. Anything the
model cannot place (a member whose address is no bound port's, a member's
network no router joins to the VIP's, an IPv6 VIP) is left out with a
reason in ``problems``, and its status says so.

How a frame is rewritten depends on where client, VIP and member are
(``Rewrite``): a member beside its client gets the frame at L2 (its MAC);
a member elsewhere gets it routed, the client's frame sent on to the
router of the VIP's network when it was addressed to the VIP's MAC.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable

from kumoflow.apps.overlay import Overlay, Port
from kumoflow.apps.routing import ROUTER_INTERFACE
from kumoflow.store import Record

TCP, UDP = 6, 17
PROTOCOLS = {"TCP": TCP, "HTTP": TCP, "UDP": UDP}
ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT")
#: Octavia's defaults (ms) for a listener's idle client
DEFAULT_CLIENT_DATA_MS = 50_000


@dataclass(frozen=True)
class Monitor:
    id: str
    type: str                  # PING, TCP, HTTP, UDP-CONNECT
    delay: float
    timeout: float
    rise: int                  # max_retries: successes in a row that bring a member back
    fall: int                  # max_retries_down: failures in a row that take it out
    method: str = "GET"
    path: str = "/"
    codes: tuple[tuple[int, int], ...] = ((200, 200),)    # expected_codes as ranges
    domain: str | None = None

    def expects(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.codes)


@dataclass(frozen=True)
class Member:
    id: str
    pool: str
    address: ipaddress.IPv4Address
    port: int
    weight: int
    enabled: bool
    backup: bool
    target: Port               # the port the address is on
    monitor: tuple[ipaddress.IPv4Address, int]       # where probes go (monitor_address/port, else its own)
    monitor_port: Port         # ... and that address's port


@dataclass(frozen=True)
class Pool:
    id: str
    algorithm: str
    persistence: str | None    # SOURCE_IP (HTTP_COOKIE and APP_COOKIE are not seen: docs/lb.md)
    persistence_timeout: int
    enabled: bool
    members: tuple[str, ...]
    monitor: Monitor | None


@dataclass(frozen=True)
class Listener:
    id: str
    balancer: str
    protocol: int              # TCP or UDP (an HTTP listener balances TCP connections)
    port: int
    pool: str | None
    idle: int                  # seconds: a connection's flows' idle timeout
    limit: int | None          # connection_limit
    enabled: bool


@dataclass(frozen=True)
class Balancer:
    id: str
    project: str
    vip: ipaddress.IPv4Address
    mac: str
    network: str               # the VIP's network (overlay id)
    enabled: bool
    listeners: tuple[str, ...]
    #: the networks whose clients reach the VIP: its own, and those a router joins to it
    reach: tuple[str, ...]
    #: network -> the MAC of the router interface on it that joins it to the VIP's network
    routers: tuple[tuple[str, str], ...] = ()

    def router_mac(self, network: str) -> str | None:
        return dict(self.routers).get(network)


@dataclass(frozen=True)
class Rewrite:
    """What the connection's flows rewrite besides addresses and ports."""
    dst_mac: str | None        # forward: the frame's new destination MAC (None: as the client sent it)
    src_mac: str | None        # back: the answer's new source MAC (None: as the member sent it)


def rewrite(balancer: Balancer, client_network: str, member: Member) -> Rewrite:
    """How a connection's frames are rewritten, by where client, VIP and member are."""
    beside = member.target.network == client_network
    if beside:      # L2 to the member; its answer comes from the VIP (or the client's gateway, when routed)
        src = balancer.mac if client_network == balancer.network else balancer.router_mac(client_network)
        return Rewrite(member.target.mac, src)
    if client_network == balancer.network:      # addressed to the VIP's MAC: to the router instead
        return Rewrite(balancer.router_mac(balancer.network), None)
    return Rewrite(None, None)                  # addressed to the client's router already


@dataclass
class Model:
    balancers: dict[str, Balancer] = field(default_factory=dict)
    listeners: dict[str, Listener] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    #: record id -> why it is left out
    problems: dict[str, str] = field(default_factory=dict)
    #: pool id -> the load balancer it belongs to
    pool_balancer: dict[str, str] = field(default_factory=dict)


def build(state: Any, overlay: Overlay) -> Model:
    model = Model()
    ports = {r.id: r for r in state.all("port")}
    subnets = {r.id: r for r in state.all("subnet")}
    by_address = {(p.network, ip): p for p in overlay.ports.values() if not p.remote for ip in p.ips}
    interfaces = _router_interfaces(ports.values())
    listeners_of: dict[str, list[str]] = {}
    for record in state.all("listener"):
        listener = _listener(record)
        if isinstance(listener, str):
            model.problems[record.id] = listener
            continue
        model.listeners[listener.id] = listener
        listeners_of.setdefault(listener.balancer, []).append(listener.id)
    for record in state.all("loadbalancer"):
        balancer = _balancer(record, ports, overlay, interfaces, tuple(sorted(listeners_of.get(record.id, ()))))
        if isinstance(balancer, str):
            model.problems[record.id] = balancer
        else:
            model.balancers[balancer.id] = balancer
    monitors = {}
    for record in state.all("healthmonitor"):
        monitor = _monitor(record)
        if monitor is not None:
            monitors[record.body.get("pool_id")] = monitor
    members_of: dict[str, list[str]] = {}
    for record in state.all("member"):
        pool_id = record.body.get("pool_id", "")
        members_of.setdefault(pool_id, []).append(record.id)
    for record in state.all("pool"):
        body = record.body
        algorithm = body.get("lb_algorithm", "ROUND_ROBIN")
        persistence = body.get("session_persistence") or {}
        balancer_id = body.get("loadbalancer_id") or ""
        if algorithm not in ALGORITHMS:
            model.problems[record.id] = f"lb_algorithm {algorithm} is not one kumoflow balances by"
            continue
        model.pools[record.id] = Pool(record.id, algorithm, persistence.get("type"),
                                      int(persistence.get("persistence_timeout") or 360),
                                      bool(body.get("admin_state_up", True)),
                                      tuple(sorted(members_of.get(record.id, ()))), monitors.get(record.id))
        model.pool_balancer[record.id] = balancer_id
    for record in state.all("member"):
        pool = model.pools.get(record.body.get("pool_id", ""))
        balancer = model.balancers.get(model.pool_balancer.get(pool.id, "")) if pool is not None else None
        if balancer is None:
            continue
        member = _member(record, balancer, subnets, by_address)
        if isinstance(member, str):
            model.problems[record.id] = member
        else:
            model.members[member.id] = member
    return model


def _router_interfaces(ports: Iterable[Record]) -> dict[str, dict[str, str]]:
    """router id -> network id -> the MAC of its interface there."""
    out: dict[str, dict[str, str]] = {}
    for port in ports:
        body = port.body
        if body.get("device_owner") == ROUTER_INTERFACE and body.get("mac_address"):
            out.setdefault(body.get("device_id", ""), {})[body.get("network_id", "")] = body["mac_address"].lower()
    return out


def _balancer(record: Record, ports: dict[str, Record], overlay: Overlay, interfaces: dict[str, dict[str, str]],
              listeners: tuple[str, ...]) -> Balancer | str:
    body = record.body
    try:
        vip = ipaddress.ip_address(body.get("vip_address") or "")
    except ValueError:
        return "no VIP address"
    if vip.version != 4:
        return "an IPv6 VIP is not balanced yet (docs/lb.md)"
    port = ports.get(body.get("vip_port_id") or "")
    network = body.get("vip_network_id") or (port.body.get("network_id") if port is not None else None)
    if port is None or not port.body.get("mac_address"):
        return "its VIP port is missing"
    if network not in overlay.networks:
        return f"its VIP's network {network} is not a tenant overlay network"
    routers = {}
    for macs in interfaces.values():
        if network in macs:
            for joined, mac in macs.items():
                routers.setdefault(joined, mac)
    reach = tuple(sorted({network, *(n for n in routers if n in overlay.networks)}))
    return Balancer(record.id, record.project_id, vip, port.body["mac_address"].lower(), network,
                    bool(body.get("admin_state_up", True)), listeners, reach, tuple(sorted(routers.items())))


def _listener(record: Record) -> Listener | str:
    body = record.body
    protocol = PROTOCOLS.get(str(body.get("protocol", "")).upper())
    if protocol is None:
        return f"protocol {body.get('protocol')} is not balanced"
    client_ms = body.get("timeout_client_data")
    idle = max(1, min(65535, int(client_ms if isinstance(client_ms, int) and client_ms > 0
                                 else DEFAULT_CLIENT_DATA_MS) // 1000))
    limit = body.get("connection_limit")
    return Listener(record.id, body.get("loadbalancer_id", ""), protocol, int(body.get("protocol_port", 0)),
                    body.get("default_pool_id"), idle, limit if isinstance(limit, int) and limit > 0 else None,
                    bool(body.get("admin_state_up", True)))


def _monitor(record: Record) -> Monitor | None:
    body = record.body
    if not body.get("admin_state_up", True):
        return None
    delay = float(body.get("delay") or 5)
    return Monitor(record.id, str(body.get("type", "TCP")).upper(), delay,
                   min(delay, float(body.get("timeout") or delay)), int(body.get("max_retries") or 3),
                   int(body.get("max_retries_down") or 3), str(body.get("http_method") or "GET"),
                   str(body.get("url_path") or "/"), expected_codes(body.get("expected_codes") or "200"),
                   body.get("domain_name"))


def expected_codes(value: Any) -> tuple[tuple[int, int], ...]:
    """Octavia's expected_codes ("200", "200,202", "200-204"), stored as text or as ranges."""
    if isinstance(value, (list, tuple)):
        return tuple((int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v)) for v in value)
    out = []
    for part in str(value).split(","):
        low, _, high = part.strip().partition("-")
        out.append((int(low), int(high or low)))
    return tuple(out)


def _member(record: Record, balancer: Balancer, subnets: dict[str, Record],
            by_address: dict[tuple[str, Any], Port]) -> Member | str:
    body = record.body
    try:
        address = ipaddress.ip_address(body.get("address") or "")
    except ValueError:
        return "no address"
    subnet = subnets.get(body.get("subnet_id") or "")
    network = subnet.body.get("network_id") if subnet is not None else balancer.network
    if network not in balancer.reach:
        return f"its network {network} is neither the VIP's nor routed to it"
    target = by_address.get((network, address))
    if target is None:
        return f"{address} is no bound port's address on network {network}"
    monitor = (address, int(body.get("protocol_port", 0)))
    monitor_port = target
    if body.get("monitor_address") or body.get("monitor_port"):
        try:
            probe_address = ipaddress.ip_address(body.get("monitor_address") or address)
        except ValueError:
            probe_address = address
        monitor = (probe_address, int(body.get("monitor_port") or monitor[1]))
        monitor_port = by_address.get((network, probe_address), target)
    weight = body.get("weight", 1)
    return Member(record.id, body.get("pool_id", ""), address, int(body.get("protocol_port", 0)),
                  int(weight) if isinstance(weight, int) else 1, bool(body.get("admin_state_up", True)),
                  bool(body.get("backup", False)), target, monitor, monitor_port)
