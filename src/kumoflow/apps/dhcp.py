"""DHCP for tenant subnets, answered by the controller: what to say to a
DHCP client, as a frame. Pure functions, no I/O; the `tenants` app punts a
port's DHCP requests to the controller and sends back what ``answer``
returns.

The API owns addresses, so there is no pool and no lease table: a port's
lease is its first IPv4 fixed IP on a subnet with ``enable_dhcp``, with that
subnet's prefix, gateway (router option), DNS servers, host routes
(classless static routes, RFC 3442, with the default route added in front,
as a client that takes option 121 ignores the router option), the network's
MTU (option 26: the API sets a tunnelled network's MTU to the underlay's
less the encapsulation) and the port's ``dns_name`` as host name. The
server identifier is the subnet's gateway address, or the configured
``server_ip`` for a subnet without a gateway (no identifier: no answer).

What each message gets (RFC 2131 4.3):

DISCOVER  an OFFER of the port's address, whatever address it asks for.
REQUEST   selecting (server identifier present): silence when it names
          another server; else, and in init-reboot (requested address
          option), renewing and rebinding (ciaddr), an ACK when the address
          is the port's, a NAK when it is not.
INFORM    an ACK with the configuration and no lease, for the port's address.
DECLINE, RELEASE  nothing: the address stays the port's (the API's to change).

A request is answered only when it comes from the port's MAC (frame source
and chaddr), is a BOOTREQUEST from an Ethernet client, and was not relayed
(giaddr 0: there is no relay support). Replies are addressed as RFC 2131
4.1 says for giaddr 0: a NAK to broadcast; to ciaddr when the client has
one; to broadcast when the client set the broadcast flag; else to the
offered address at the client's MAC. Options the client did not ask for
(option 55) are left out, last first, when a reply would exceed the size the
client accepts (option 57, at least 576 bytes).

What the app around it must do: send the port's UDP to port 67 to the
controller whatever its destination addresses (a renewing client unicasts
to the server identifier, at the MAC its ARP for that address got), and
answer ARP for a configured ``server_ip`` with the server MAC (else a
renewal fails and the client rebinds by broadcast at 7/8 of the lease).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping

from kumoflow.packet import UDP, Ethernet, IPv4, Packet, PacketError, parse
from kumoflow.packet import dhcp as d
from kumoflow.packet.consts import UDP_PORT_DHCP_CLIENT, UDP_PORT_DHCP_SERVER

DEFAULT_LEASE_TIME = 86400
BROADCAST_MAC, BROADCAST_IP, ANY = "ff:ff:ff:ff:ff:ff", "255.255.255.255", "0.0.0.0"
MIN_MESSAGE = 576                    # what every client accepts (RFC 2131 2), IP and UDP headers included
_IP_UDP = 28
#: options every reply keeps, whatever its size
_ESSENTIAL = frozenset((d.OPT_MESSAGE_TYPE, d.OPT_SERVER_ID, d.OPT_LEASE_TIME, d.OPT_SUBNET_MASK))


@dataclass(frozen=True)
class Lease:
    """What a port gets by DHCP: its address and its subnet's configuration."""
    ip: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network
    server_id: ipaddress.IPv4Address | None
    gateway: ipaddress.IPv4Address | None = None
    dns: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()      # (destination CIDR, next hop), the default route first
    mtu: int | None = None
    hostname: str | None = None
    domain: str | None = None
    subnet_id: str = field(default="", compare=False)


def _v4(text) -> ipaddress.IPv4Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except (TypeError, ValueError):
        return None
    return ip if ip.version == 4 else None


def lease_for(port: Mapping, subnets: Mapping[str, Mapping], network: Mapping | None = None,
              server_ip: str | None = None, domain: str | None = None) -> Lease | None:
    """The lease of an API port (its body), or None when it has no IPv4
    address on a subnet with DHCP enabled. ``subnets``: subnet id -> body;
    ``network``: the port's network body (for ``mtu``, ``dns_domain``).
    Entries that do not read as IPv4 (a bad route, server) are left out."""
    for fixed in port.get("fixed_ips") or ():
        subnet = subnets.get(fixed.get("subnet_id"))
        ip = _v4(fixed.get("ip_address"))
        if not subnet or ip is None or not subnet.get("enable_dhcp", True):
            continue
        try:
            net = ipaddress.IPv4Network(subnet.get("cidr"))
        except (TypeError, ValueError):
            continue
        if ip not in net:
            continue
        gateway = _v4(subnet.get("gateway_ip"))
        routes = []
        for route in subnet.get("host_routes") or ():
            try:
                dest = ipaddress.IPv4Network(route["destination"])
            except (KeyError, TypeError, ValueError):
                continue
            hop = _v4(route.get("nexthop"))
            if hop is not None:
                routes.append((str(dest), str(hop)))
        if routes and gateway is not None and not any(dest == "0.0.0.0/0" for dest, _ in routes):
            routes.insert(0, ("0.0.0.0/0", str(gateway)))
        mtu = (network or {}).get("mtu")
        return Lease(ip=ip, subnet=net, server_id=gateway or _v4(server_ip), gateway=gateway,
                     dns=tuple(str(a) for a in map(_v4, subnet.get("dns_nameservers") or ()) if a is not None),
                     routes=tuple(routes), mtu=mtu if isinstance(mtu, int) and 68 <= mtu <= 0xFFFF else None,
                     hostname=port.get("dns_name") or None,
                     domain=(network or {}).get("dns_domain") or domain or None,
                     subnet_id=fixed.get("subnet_id"))
    return None


def _packet(packet: bytes | Packet) -> Packet | None:
    if isinstance(packet, Packet):
        return packet
    try:
        return parse(packet)
    except PacketError:
        return None


def client_message(packet: bytes | Packet) -> d.DHCP | None:
    """The DHCP message a client sent in an Ethernet frame (bytes or parsed):
    UDP to port 67 over IPv4; None when the frame is not that or is malformed."""
    pkt = _packet(packet)
    udp = pkt.get(UDP) if pkt is not None else None
    if udp is None or pkt.get(IPv4) is None or udp.dport != UDP_PORT_DHCP_SERVER:
        return None
    try:
        return d.parse_dhcp(pkt.payload)
    except PacketError:
        return None


def answer(packet: bytes | Packet, port: Mapping | None, subnets: Mapping[str, Mapping],
           network: Mapping | None, server_mac: str, *, lease_time: int = DEFAULT_LEASE_TIME,
           server_ip: str | None = None, domain: str | None = None) -> bytes | None:
    """The reply frame to a client's DHCP frame (bytes or parsed), or None.

    ``port``: the API port (body) whose MAC sent it, None if unknown;
    ``subnets``: subnet id -> body; ``network``: the port's network body;
    ``server_mac``: the reply's source MAC; ``lease_time`` in seconds;
    ``server_ip``: the server identifier for subnets without a gateway;
    ``domain``: option 15 when the network has no ``dns_domain``."""
    pkt = _packet(packet)
    msg = client_message(pkt) if pkt is not None else None
    if msg is None or port is None:
        return None
    mac, eth = str(port.get("mac_address", "")).lower(), pkt.get(Ethernet)
    if (msg.op != d.BOOTREQUEST or msg.htype != d.HTYPE_ETHERNET or msg.chaddr != mac
            or eth is None or eth.src != mac or msg.giaddr != ANY):
        return None
    lease = lease_for(port, subnets, network, server_ip, domain)
    if lease is None or lease.server_id is None:
        return None
    reply = decide(msg, lease, lease_time)
    return None if reply is None else frame(reply, msg, server_mac)


def decide(msg: d.DHCP, lease: Lease, lease_time: int = DEFAULT_LEASE_TIME) -> d.DHCP | None:
    """The reply to a client's message about `lease` (see the module), or None."""
    kind, ours = msg.message_type, str(lease.ip)
    if kind == d.DISCOVER:
        return _reply(msg, lease, d.OFFER, yiaddr=ours, lease_time=lease_time)
    if kind == d.REQUEST:
        server = msg.options.get(d.OPT_SERVER_ID)
        if server is not None and server != str(lease.server_id):
            return None                              # the client chose another server
        wanted = msg.options.get(d.OPT_REQUESTED_IP) or (msg.ciaddr if msg.ciaddr != ANY else None)
        if wanted is None:
            return None
        if wanted != ours:
            return _answering(msg, ANY, ANY, {d.OPT_MESSAGE_TYPE: d.NAK, d.OPT_SERVER_ID: str(lease.server_id),
                                              d.OPT_MESSAGE: f"{wanted} is not this port's address"})
        return _reply(msg, lease, d.ACK, yiaddr=ours, ciaddr=msg.ciaddr, lease_time=lease_time)
    if kind == d.INFORM and msg.ciaddr == ours:
        return _reply(msg, lease, d.ACK, ciaddr=msg.ciaddr)
    return None


def _reply(msg: d.DHCP, lease: Lease, kind: int, yiaddr: str = ANY, ciaddr: str = ANY,
           lease_time: int | None = None) -> d.DHCP:
    options = {d.OPT_MESSAGE_TYPE: kind, d.OPT_SERVER_ID: str(lease.server_id)}
    if lease_time is not None:
        options[d.OPT_LEASE_TIME] = lease_time
        if lease_time < 0xFFFFFFFF:                 # no renewal of an infinite lease
            options[d.OPT_RENEWAL_TIME] = lease_time // 2
            options[d.OPT_REBINDING_TIME] = lease_time * 7 // 8
    options[d.OPT_SUBNET_MASK] = str(lease.subnet.netmask)
    options[d.OPT_BROADCAST] = str(lease.subnet.broadcast_address)
    if lease.gateway is not None:
        options[d.OPT_ROUTER] = [str(lease.gateway)]
    if lease.dns:
        options[d.OPT_DNS] = list(lease.dns)
    if lease.mtu is not None:
        options[d.OPT_MTU] = lease.mtu
    if lease.routes:
        options[d.OPT_CLASSLESS_ROUTES] = list(lease.routes)
    if lease.domain:
        options[d.OPT_DOMAIN] = lease.domain
    if lease.hostname:
        options[d.OPT_HOSTNAME] = lease.hostname
    return _answering(msg, yiaddr, ciaddr, options)


def _answering(msg: d.DHCP, yiaddr: str, ciaddr: str, options: dict) -> d.DHCP:
    return d.DHCP(op=d.BOOTREPLY, xid=msg.xid, chaddr=msg.chaddr, htype=msg.htype, flags=msg.flags,
                  ciaddr=ciaddr, yiaddr=yiaddr, giaddr=msg.giaddr, options=options)


def frame(reply: d.DHCP, request: d.DHCP, server_mac: str) -> bytes:
    """The Ethernet frame carrying `reply` (from ``decide``) to the client
    that sent `request`: cut to the size it accepts, addressed per RFC 2131 4.1."""
    limit = max(request.options.get(d.OPT_MAX_SIZE) or 0, MIN_MESSAGE) - _IP_UDP
    wanted = request.options.get(d.OPT_PARAMETERS, ())
    optional = [c for c in reversed(reply.options) if c not in _ESSENTIAL and c not in wanted]
    while optional and len(bytes(reply)) > limit:
        reply = reply.copy(options={c: v for c, v in reply.options.items() if c != optional[0]})
        optional.pop(0)
    if reply.message_type == d.NAK or (reply.ciaddr == ANY and reply.broadcast):
        mac, ip = BROADCAST_MAC, BROADCAST_IP
    else:
        mac, ip = reply.chaddr, reply.ciaddr if reply.ciaddr != ANY else reply.yiaddr
    return bytes(Ethernet(src=server_mac, dst=mac) / IPv4(src=reply.options[d.OPT_SERVER_ID], dst=ip, ttl=64)
                 / UDP(sport=UDP_PORT_DHCP_SERVER, dport=UDP_PORT_DHCP_CLIENT) / reply)
