"""`kumoflow switch`: run the software OpenFlow 1.3 switch on Linux interfaces."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Iterable


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "switch", help="run the software OpenFlow switch",
        description="Run kumoflow's OpenFlow 1.3 switch with ports on Linux interfaces (needs root).",
        epilog="Example: kumoflow switch --dpid 0x1 --port 1=veth1 --port 2=veth2 "
               "--controller tcp:127.0.0.1:6653 --listen ptcp:6634 "
               "[--port-rate 2:20000 --queue 2:1:min=15000,max=20000]. "
               "Interface offloads may stay on: the ports complete partial checksums and segment "
               "GSO frames themselves (PACKET_VNET_HDR). See docs/switch-runtime.md.")
    p.add_argument("--dpid", type=_dpid, default=1, metavar="ID",
                   help="datapath id: decimal, 0x-hex, or 16 hex digits with or without colons (default 1)")
    p.add_argument("--name", metavar="NAME",
                   help="the switch's name, reported in its DESC reply (dp_desc), by which the controller's "
                        "API finds it (binding:host_id, /sdn/switches/NAME): letters, digits and _.-, up to 64 "
                        "(default: none; dp_desc is then 'kumoflow datapath ID')")
    p.add_argument("--port", action="append", default=[], metavar="N=IFACE",
                   help="OpenFlow port N on interface IFACE (repeatable; IFACE alone takes the next number)")
    p.add_argument("--tunnel", action="append", default=[], metavar="N=KIND:LOCAL_IP:REMOTE_IP",
                   help="OpenFlow port N a tunnel to one remote endpoint: KIND vxlan (UDP 4789) or nvgre "
                        "(GRE key VSID<<8), from LOCAL_IP (configured on an interface) to REMOTE_IP; named "
                        "KIND-<REMOTE_IP in 8 hex digits>, e.g. vxlan-0a000002; the VNI/VSID is the tunnel_id "
                        "field (repeatable; see docs/overlays.md)")
    p.add_argument("--port-rate", action="append", default=[], metavar="PORT:KBPS",
                   help="the rate port PORT sends at most, in kbit/s, which its queues share (like Open "
                        "vSwitch's QoS max-rate); without it a port with queue rates shares its link's speed "
                        "(repeatable; see docs/switch-runtime.md, Egress queues)")
    p.add_argument("--queue", action="append", default=[], metavar="PORT:QUEUE[:min=KBPS,max=KBPS]",
                   help="queue QUEUE (0..4294967294; 0 is the default queue) on port PORT for set_queue, "
                        "with a guaranteed min rate and a max rate in kbit/s, each optional (repeatable)")
    p.add_argument("--controller", action="append", default=[], metavar="tcp:HOST:PORT",
                   help="controller to connect to, reconnecting with backoff: tcp:HOST:PORT, or ssl:HOST:PORT "
                        "for TLS with the --tls-* files (repeatable)")
    p.add_argument("--tls-key", metavar="PATH", help="the switch's private key (PEM) for ssl: controllers")
    p.add_argument("--tls-cert", metavar="PATH", help="the switch's certificate (PEM), presented to the controller")
    p.add_argument("--tls-ca", metavar="PATH",
                   help="the CA certificate (PEM) the controller's certificate must be signed by; the controller's "
                        "certificate must also name the HOST of ssl:HOST:PORT (docs/tls.md). The three files are "
                        "re-read at each connection attempt when they change")
    p.add_argument("--listen", action="append", default=[], metavar="ptcp:PORT[:HOST]",
                   help="accept OpenFlow clients such as ovs-ofctl here (repeatable)")
    p.add_argument("--tables", type=int, default=64, metavar="N", help="number of flow tables (1-254, default 64)")
    p.add_argument("--buffers", type=int, default=256, metavar="N",
                   help="packet buffers for packet-in (0..65536; 0 sends whole packets; default 256)")
    p.add_argument("--fail-mode", choices=["secure", "standalone"], default="secure",
                   help="without a controller: keep the installed flows (secure, default) "
                        "or act as a learning switch (standalone)")
    p.add_argument("--echo-interval", type=float, default=5.0, metavar="SECONDS",
                   help="echo an idle controller after this long (more than 0); give up after 3 times it "
                        "(default 5)")
    p.add_argument("--max-backoff", type=float, default=8.0, metavar="SECONDS",
                   help="retry a lost or unreachable controller after 0.5 s, then doubling the wait "
                        "up to this (at least 0.5; default 8)")
    p.add_argument("--status-file", metavar="PATH",
                   help="keep a JSON status (pid, connected, listen addresses) in PATH while running")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def _dpid(text: str) -> int:
    t = text.strip().lower()
    try:
        if ":" in t:
            value = int(t.replace(":", ""), 16)
        elif t.startswith("0x"):
            value = int(t, 16)
        elif len(t) == 16:
            value = int(t, 16)
        else:
            value = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad datapath id {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"datapath id {text!r} does not fit in 64 bits")
    return value


def parse_ports(specs: list[str]) -> dict[int, str]:
    """['1=veth1', 'veth2'] -> {1: 'veth1', 2: 'veth2'}; ValueError says what is wrong."""
    ports: dict[int, str] = {}
    pending = []
    for spec in specs:
        number, sep, ifname = spec.partition("=")
        if not sep:
            pending.append(spec)
            continue
        try:
            n = int(number, 0)
        except ValueError:
            raise ValueError(f"--port {spec}: {number!r} is not a port number") from None
        if not 1 <= n <= 0xFFFFFF00:
            raise ValueError(f"--port {spec}: port number must be 1..{0xFFFFFF00}")
        if n in ports:
            raise ValueError(f"--port {spec}: port {n} is given twice")
        if not ifname:
            raise ValueError(f"--port {spec}: no interface name")
        ports[n] = ifname
    for ifname in pending:
        n = 1
        while n in ports:
            n += 1
        ports[n] = ifname
    names = list(ports.values())
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"interface {name} is given for two ports")
    return ports


def parse_tunnels(specs: list[str], ports: dict[int, str] | None = None) -> dict[int, tuple[str, str, str]]:
    """['10=vxlan:192.0.2.1:192.0.2.2'] -> {10: ('vxlan', '192.0.2.1', '192.0.2.2')}; ValueError says
    what is wrong. `ports`: the --port numbers already taken."""
    import ipaddress

    from kumoflow.tunnels import KINDS, port_name

    taken = dict(ports or {})
    tunnels: dict[int, tuple[str, str, str]] = {}
    names: dict[str, int] = {}
    for spec in specs:
        number, sep, rest = spec.partition("=")
        if not sep:
            raise ValueError(f"--tunnel {spec}: expected N=KIND:LOCAL_IP:REMOTE_IP")
        try:
            n = int(number, 0)
        except ValueError:
            raise ValueError(f"--tunnel {spec}: {number!r} is not a port number") from None
        if not 1 <= n <= 0xFFFFFF00:
            raise ValueError(f"--tunnel {spec}: port number must be 1..{0xFFFFFF00}")
        if n in tunnels or n in taken:
            raise ValueError(f"--tunnel {spec}: port {n} is given twice")
        parts = rest.split(":")
        if len(parts) != 3:
            raise ValueError(f"--tunnel {spec}: expected N=KIND:LOCAL_IP:REMOTE_IP (IPv4 addresses)")
        kind, local, remote = parts
        if kind not in KINDS:
            raise ValueError(f"--tunnel {spec}: tunnel kind {kind!r}: expected {' or '.join(KINDS)}")
        addrs = []
        for what, text in (("local", local), ("remote", remote)):
            try:
                addr = ipaddress.IPv4Address(text)
            except ValueError:
                raise ValueError(f"--tunnel {spec}: {what} address {text!r} is not an IPv4 address") from None
            if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
                raise ValueError(f"--tunnel {spec}: {what} address {addr} must be a unicast address")
            addrs.append(addr)
        if addrs[0] == addrs[1]:
            raise ValueError(f"--tunnel {spec}: the remote endpoint is the local address")
        name = port_name(kind, addrs[1])
        if name in names:
            raise ValueError(f"--tunnel {spec}: ports {names[name]} and {n} are both {kind} tunnels to "
                             f"{addrs[1]} ({name}): one port per remote endpoint")
        names[name] = n
        tunnels[n] = (kind, str(addrs[0]), str(addrs[1]))
    return tunnels


def _kbps(spec: str, what: str, text: str, low: int) -> int:
    from kumoflow.switch.qos import MAX_KBPS

    try:
        value = int(text, 10)
    except ValueError:
        raise ValueError(f"{spec}: {what} {text!r} is not a whole number of kbit/s") from None
    if not low <= value <= MAX_KBPS:
        raise ValueError(f"{spec}: {what} {value} kbit/s is out of range {low}..{MAX_KBPS}")
    return value


def _port_of(spec: str, text: str, ports: Iterable[int]) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise ValueError(f"{spec}: {text!r} is not a port number") from None
    if n not in ports:
        raise ValueError(f"{spec}: no port {n} (give it with --port or --tunnel)")
    return n


def parse_qos(queue_specs: list[str], rate_specs: list[str], ports: Iterable[int]) -> dict:
    """--queue and --port-rate values -> {port: qos.PortQos}; ValueError says what
    is wrong. `ports`: the port numbers (--port and --tunnel)."""
    from kumoflow.switch.qos import MAX_QUEUE_ID, PortQos, QueueRates, qos_problems

    ports = set(ports)
    rates: dict[int, int] = {}
    for spec in rate_specs:
        where = f"--port-rate {spec}"
        number, sep, kbps = spec.partition(":")
        if not sep:
            raise ValueError(f"{where}: expected PORT:KBPS")
        n = _port_of(where, number, ports)
        if n in rates:
            raise ValueError(f"{where}: port {n} has a rate already")
        rates[n] = _kbps(where, "rate", kbps, 1)
    queues: dict[int, dict[int, QueueRates]] = {}
    for spec in queue_specs:
        where = f"--queue {spec}"
        parts = spec.split(":", 2)
        if len(parts) < 2:
            raise ValueError(f"{where}: expected PORT:QUEUE[:min=KBPS,max=KBPS]")
        n = _port_of(where, parts[0], ports)
        try:
            qid = int(parts[1], 0)
        except ValueError:
            raise ValueError(f"{where}: {parts[1]!r} is not a queue id") from None
        if not 0 <= qid <= MAX_QUEUE_ID:
            raise ValueError(f"{where}: queue id {qid} is out of range 0..{MAX_QUEUE_ID}")
        if qid in queues.get(n, {}):
            raise ValueError(f"{where}: queue {qid} of port {n} is given twice")
        given: dict[str, int] = {}
        for item in parts[2].split(",") if len(parts) == 3 and parts[2] else []:
            key, sep, value = item.partition("=")
            if key not in ("min", "max") or not sep:
                raise ValueError(f"{where}: {item!r}: expected min=KBPS or max=KBPS")
            if key in given:
                raise ValueError(f"{where}: {key} is given twice")
            given[key] = _kbps(where, key, value, 0 if key == "min" else 1)
        queues.setdefault(n, {})[qid] = QueueRates(given.get("min"), given.get("max"))
    result = {}
    for n in sorted(set(rates) | set(queues)):
        qos = PortQos(rates.get(n), queues.get(n, {}))
        problems = qos_problems(qos)
        if problems:
            qid, _, why = problems[0]
            raise ValueError(f"port {n}" + (f" queue {qid}" if qid is not None else "") + f": {why}")
        result[n] = qos
    return result


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kumoflow import cliargs
    from kumoflow.ofp.address import parse_address
    from kumoflow.switch import name_problem

    try:
        if args.name is not None and (problem := name_problem(args.name)):
            raise ValueError(f"--name {args.name!r}: {problem}")
        ports = parse_ports(args.port)
        tunnels = parse_tunnels(args.tunnel, ports)
        qos = parse_qos(args.queue, args.port_rate, [*ports, *tunnels])
        for target in args.controller:
            if parse_address(target, default_host="127.0.0.1").scheme not in ("tcp", "ssl"):
                raise ValueError(f"--controller {target}: expected tcp:HOST:PORT or ssl:HOST:PORT")
        from kumoflow.tls import from_args as tls_from_args

        tls = tls_from_args(args, args.controller, "--controller", server_side=False)
        for target in args.listen:
            if parse_address(target).scheme != "ptcp":
                raise ValueError(f"--listen {target}: expected ptcp:PORT[:HOST]")
        if not 1 <= args.tables <= 254:
            raise ValueError(f"--tables {args.tables}: must be 1..254")
        if not 0 <= args.buffers <= 0x10000:
            raise ValueError(f"--buffers {args.buffers}: must be 0..65536")
        cliargs.positive("--echo-interval", args.echo_interval)
        cliargs.at_least("--max-backoff", args.max_backoff, 0.5)
    except ValueError as exc:
        logging.error("%s", exc)
        return 2
    from kumoflow.eventloop import run as run_loop

    return run_loop(_serve(args, ports, tunnels, qos, tls))


async def _serve(args: argparse.Namespace, ports: dict[int, str], tunnels: dict[int, tuple[str, str, str]],
                 qos: dict, tls=None) -> int:
    from kumoflow.switch.linuxport import PortError
    from kumoflow.switch.runtime import Switch, configure_gc
    from kumoflow.switch.tunnelport import TunnelPort

    ports = {**ports, **{n: TunnelPort(n, *spec) for n, spec in tunnels.items()}}

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        switch = Switch(args.dpid, ports, controllers=args.controller, listen=args.listen,
                        n_tables=args.tables, n_buffers=args.buffers, fail_mode=args.fail_mode,
                        echo_interval=args.echo_interval, max_backoff=args.max_backoff,
                        status_file=args.status_file, name=args.name, qos=qos, tls=tls)
        configure_gc()                  # process-wide: before any port, listener or channel exists
        await switch.start()
    except (PortError, OSError, ValueError) as exc:
        logging.error("cannot start the switch: %s", exc)
        return 1
    await stop.wait()
    logging.info("shutting down")
    await switch.stop()
    return 0
