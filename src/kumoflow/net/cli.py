"""``kumoflow up``, ``kumoflow down`` and ``kumoflow exec``.

::

    kumoflow up examples/single.yaml [--name N] [--fail-mode standalone] [--no-controller]
    kumoflow up examples/single.yaml --check      # validate only, no root needed
    kumoflow up topo.yaml --api http://127.0.0.1:9696   # and bind hosts' API ports (port: on a host)
    kumoflow down examples/single.yaml            # or: kumoflow down single / --all
    kumoflow exec h1 -- ping -c1 10.0.0.2         # --topo NAME when several have h1
    kumoflow exec r1 vtysh -c 'show bgp summary'  # an FRR host: vtysh reaches its daemons
    kumoflow net show [NAME | TOPO.yaml]          # plans of running topologies, tunnels included

``up`` leaves the topology running and returns; ``down`` removes it, also
after a crash (from the state record in /run/kumoflow and by name). ``up
--check`` and ``up`` share one path up to creating anything, so they refuse
the same files with the same messages. The user's reference is
docs/emulator.md.
Heavy imports (pyroute2, rich) happen only when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="bring up an emulated network from a YAML topology",
        description="Create the namespaces, links and switches of a topology file and leave them running.",
    )
    up.add_argument("topology", metavar="TOPO.yaml", help="topology file")
    up.add_argument("--name", help="topology name (default: the file's name:, else its file name)")
    up.add_argument("--fail-mode", choices=("secure", "standalone"), help="override every switch's fail mode")
    up.add_argument("--controller", action="append", metavar="TARGET",
                    help="override every switch's controllers (repeatable), e.g. tcp:127.0.0.1:6653")
    up.add_argument("--no-controller", action="store_true", help="switches get no controller")
    up.add_argument("--check", action="store_true",
                    help="check the file (and the options above) as up does, show the plan, create nothing; "
                         "needs no root")
    up.add_argument("--api", metavar="URL",
                    help="after up, bind each host that names an API port (port: in the file) to its switch port "
                         "through the controller's API at URL (docs/emulator.md)")
    up.add_argument("--token", metavar="TOKEN",
                    help="X-Auth-Token for --api ($KUMOFLOW_TOKEN; else the admin token file)")
    up.add_argument("--token-file", metavar="PATH", help="read the token for --api from here")
    up.set_defaults(func=_up)

    down = subparsers.add_parser(
        "down",
        help="remove an emulated network (also after a crash)",
        description="Remove everything a topology made: switches, links, namespaces and their processes.",
    )
    down.add_argument("topology", nargs="?", metavar="TOPO.yaml|NAME", help="topology file or name")
    down.add_argument("--name", help="topology name, when it was brought up with --name")
    down.add_argument("--all", action="store_true", help="remove every recorded topology")
    down.set_defaults(func=_down)

    net = subparsers.add_parser(
        "net",
        help="show emulated networks: switches, hosts, hypervisors and their tunnels",
        description="Inspect emulated networks.",
    )
    net_commands = net.add_subparsers(dest="net_command", required=True, metavar="COMMAND")
    show = net_commands.add_parser(
        "show", help="a topology's plan: switches, hosts, hypervisors, tunnel ports (running or from a file)",
        description="Show a running topology (by name; all of them without one) or a topology file's plan.")
    show.add_argument("topology", nargs="?", metavar="NAME|TOPO.yaml")
    show.set_defaults(func=_net_show)

    exe = subparsers.add_parser(
        "exec",
        help="run a command in an emulated host",
        description="Run COMMAND (default: your shell) in host HOST's network namespace.",
    )
    exe.add_argument("--topo", metavar="NAME", help="the topology, when several running ones have HOST")
    exe.add_argument("host", metavar="HOST")
    exe.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    exe.set_defaults(func=_exec)


def _fail(message: str, code: int = 1) -> int:
    print(f"kumoflow: {message}", file=sys.stderr)
    return code


def _up(args: argparse.Namespace) -> int:
    from kumoflow.net.errors import NetError, TopologyError
    from kumoflow.net.topology import load_topology

    controllers = [] if args.no_controller else args.controller
    try:
        topology = load_topology(args.topology).with_overrides(
            name=args.name, fail_mode=args.fail_mode, controllers=controllers
        )
    except TopologyError as exc:
        return _fail(f"invalid topology\n{exc}", 2)
    from kumoflow.net.network import Network
    from kumoflow.net.show import print_plan

    try:
        net = Network(topology)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.check:
        issues = _frr_dry_run(net.plan)
        if issues:
            return _fail(f"invalid topology\n{TopologyError(issues)}", 2)
        print_plan(net.plan, title=f"topology {net.name!r} is valid")
        return 0
    try:
        net.up()
    except TopologyError as exc:  # FRR refused a configuration line
        return _fail(f"invalid topology\n{exc}", 2)
    except NetError as exc:
        return _fail(str(exc))
    print_plan(net.plan, title=f"topology {net.name!r} is up")
    if args.api:
        return _bind(net.plan, args)
    return 0


def _frr_dry_run(plan) -> list:
    """FRR's own check of each router host's configuration (``vtysh
    --dryrun``), when FRR is installed; ``up`` runs it too."""
    import shutil

    from kumoflow.net.services import frr_config_issues

    routers = [h for h in plan.hosts if h.frr is not None]
    if routers and shutil.which("vtysh") is None:
        print("note: FRR is not installed here: the frr: configurations are not checked", file=sys.stderr)
        return []
    return [issue for h in routers for issue in frr_config_issues(h.name, h.frr)]


def _bind(plan, args: argparse.Namespace) -> int:
    """Bind the hosts' API ports (kumoflow.net.binding); the network stays up whatever happens."""
    from kumoflow.net.binding import BindingError, bind_ports
    from kumoflow.show import ShowError, resolve_token

    try:
        token = resolve_token(args.token, args.token_file)
        lines = bind_ports(plan, args.api, token)
    except (ShowError, BindingError) as exc:
        return _fail(f"topology {plan.name!r} is up, but its ports could not be bound: {exc}")
    for line in lines:
        print(line)
    if not lines:
        print("no host names an API port (port: in the topology): nothing to bind")
    return 0


def _down(args: argparse.Namespace) -> int:
    from kumoflow.net import state
    from kumoflow.net.errors import NetError, TopologyError
    from kumoflow.net.network import Network
    from kumoflow.net.topology import load_topology

    if os.geteuid() != 0:
        return _fail("removing a topology needs root")
    targets: list[tuple[str, object]] = []
    if args.all:
        targets = [(r["name"], None) for r in state.all_records()]
        if not targets:
            print("no recorded topologies")
            return 0
    elif args.topology and Path(args.topology).is_file():
        try:
            topology = load_topology(args.topology)
        except TopologyError as exc:
            # still clean up by name: the file may have been edited since `up`
            from kumoflow.net.topology import default_name

            name = args.name or _name_in_file(args.topology) or default_name(args.topology)
            print(f"kumoflow: warning: {exc}\nremoving {name!r} by its record and name only", file=sys.stderr)
            targets = [(name, None)]
        else:
            targets = [(args.name or topology.name, topology)]
    elif args.topology or args.name:
        targets = [(args.name or args.topology, None)]
    else:
        return _fail("say which topology: a file, a name, or --all", 2)
    status = 0
    for name, topology in targets:
        try:
            report = Network.teardown(name, topology)  # type: ignore[arg-type]
        except NetError as exc:
            status = _fail(str(exc))
            continue
        except ValueError as exc:
            status = _fail(str(exc), 2)
            continue
        if report.removed:
            print(f"topology {name!r} removed: {len(report.removed)} items")
        else:
            print(f"topology {name!r}: nothing to remove")
        for err in report.errors:
            print(f"  note: {err}", file=sys.stderr)
    return status


def _net_show(args: argparse.Namespace) -> int:
    """The plan of each running topology (or of one, or of a file), tunnels included."""
    from kumoflow.net import state
    from kumoflow.net.errors import NetError, TopologyError
    from kumoflow.net.network import Network
    from kumoflow.net.show import print_plan

    target = args.topology
    if target and Path(target).is_file():
        try:
            net = Network.from_file(target)
        except (TopologyError, ValueError) as exc:
            return _fail(f"invalid topology\n{exc}", 2)
        print_plan(net.plan, title=f"topology {net.name!r} (from {target}, not necessarily running)")
        return 0
    names = [target] if target else [r["name"] for r in state.all_records()]
    if not names:
        print("no running topologies")
        return 0
    status = 0
    for name in names:
        try:
            net = Network.attach(name)
        except (NetError, TopologyError, ValueError) as exc:
            status = _fail(str(exc))
            continue
        print_plan(net.plan, title=f"topology {name!r} ({'up' if state.read(name) else 'not running'})")
    return status


def _name_in_file(path: str) -> str | None:
    """The ``name:`` of a file that may not validate any more."""
    try:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        name = data.get("name") if isinstance(data, dict) else None
        return name if isinstance(name, str) else None
    except Exception:
        return None


def _exec(args: argparse.Namespace) -> int:
    from kumoflow.net import state
    from kumoflow.net.hosts import namespace_exists, netns_command

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
    found = state.find_host(args.host, args.topo)
    if not found:
        where = f"topology {args.topo!r}" if args.topo else "any running topology"
        return _fail(f"no host {args.host!r} in {where}")
    if len(found) > 1:
        names = ", ".join(r["name"] for r in found)
        return _fail(f"host {args.host!r} is in several topologies ({names}); choose one with --topo", 2)
    host = found[0]["hosts"][args.host]
    netns = host["netns"]
    if not namespace_exists(netns):
        return _fail(f"host {args.host!r} of topology {found[0]['name']!r} is not running (no namespace {netns})")
    frr = host.get("frr")
    if frr and Path(command[0]).name == "vtysh" and not {"-N", "--pathspace", "--vty_socket"} & set(command):
        # this host's FRR daemons, not the machine's default pathspace
        from kumoflow.net.services import vtysh_argv

        command = [command[0], *vtysh_argv(frr["pathspace"], frr["dir"])[1:], *command[1:]]
    argv = netns_command(netns, command)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        return _fail(f"cannot run {argv[0]}: {exc}")
    return 0  # not reached
