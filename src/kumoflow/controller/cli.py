"""`kumoflow controller`: run the controller with a set of apps."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from kumoflow.eventloop import quiet_gc, run as run_loop

DEFAULT_STORE = "sqlite:/var/lib/kumoflow/kumoflow.db"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("controller", help="run the OpenFlow controller",
                              description="Run the OpenFlow 1.3 controller with the given apps.")
    p.add_argument("--listen", action="append", metavar="tcp:HOST:PORT",
                   help="address to listen on: tcp:HOST:PORT, or ssl:HOST:PORT for TLS with the --tls-* files "
                        "(repeatable; default tcp:0.0.0.0:6653)")
    g = p.add_argument_group("TLS (ssl: listeners; docs/tls.md)")
    g.add_argument("--tls-key", metavar="PATH", help="the controller's private key (PEM), e.g. from kumoflow pki cert")
    g.add_argument("--tls-cert", metavar="PATH", help="the controller's certificate (PEM)")
    g.add_argument("--tls-ca", metavar="PATH",
                   help="the CA certificate (PEM) that every switch's certificate must be signed by; switches "
                        "without one are refused. The three files are re-read for new connections when they change")
    p.add_argument("--app", action="append", metavar="NAME",
                   help="app to run, in pipeline order (repeatable; default l2)")
    p.add_argument("--set", action="append", default=[], metavar="APP.OPTION=VALUE", dest="options",
                   help="an app option, e.g. fabric.lldp_interval=0.5 or fabric.fast_failover=false (repeatable)")
    p.add_argument("--echo-interval", type=float, default=5.0, metavar="SECONDS",
                   help="echo a switch idle this long (more than 0); drop one silent for 3 times it (default 5)")
    p.add_argument("--settle", type=float, default=3.0, metavar="SECONDS",
                   help="after a switch comes up, only add missing flows for this long, while links and "
                        "hosts are discovered; then reconcile it in full (default 3)")
    p.add_argument("--audit-interval", type=float, default=30.0, metavar="SECONDS",
                   help="read every switch again this often and repair drift (0: never; default 30)")
    p.add_argument("--store", default=DEFAULT_STORE, metavar="sqlite:PATH",
                   help=f"the desired-state store, created if missing (default {DEFAULT_STORE}); "
                        "none: no store")
    p.add_argument("--status-file", metavar="PATH",
                   help="once listening, write a JSON status (pid, listen addresses with the ports "
                        "bound, so that port 0 can be used) to PATH; removed on exit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _add_api_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kumoflow import cliargs
    from kumoflow.apps import load_app
    from kumoflow.controller import Controller
    from kumoflow.tls import from_args as tls_from_args

    try:
        cliargs.positive("--echo-interval", args.echo_interval)
        cliargs.non_negative("--settle", args.settle)
        cliargs.non_negative("--audit-interval", args.audit_interval)
        options = parse_options(args.options)
        apps = [load_app(name, **options.pop(name, {})) for name in (args.app or ["l2"])]
        if options:
            raise ValueError(f"--set for apps not given with --app: {', '.join(sorted(options))}")
        tls = tls_from_args(args, args.listen or [], "--listen", server_side=True)
        controller = Controller(apps, echo_interval=args.echo_interval, echo_timeout=3 * args.echo_interval,
                                settle=args.settle, audit_interval=args.audit_interval, tls=tls)
        controller.api_options = _api_options(args)
    except ValueError as exc:
        logging.error("%s", exc)
        return 2
    quiet_gc()
    return run_loop(_serve(controller, args.listen or ["tcp:0.0.0.0:6653"], args.status_file, args.store))


def parse_options(items: list[str]) -> dict[str, dict[str, object]]:
    """["fabric.lldp_interval=0.5"] -> {"fabric": {"lldp_interval": 0.5}}; numbers and
    true/false are converted, anything else stays text."""
    options: dict[str, dict[str, object]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        app, dot, option = name.partition(".")
        if not (eq and dot and app and option.isidentifier()):
            raise ValueError(f"--set {item!r}: expected APP.OPTION=VALUE")
        options.setdefault(app, {})[option] = _value(value)
    return options


def _value(text: str) -> object:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _write_status(path: Path, bound, api=None) -> None:
    """Atomically: a reader sees the whole file or none."""
    status = {"pid": os.getpid(), "listen": [f"{a.scheme}:{a.host}:{a.port}" for a in bound]}
    if api is not None:
        status["api"] = api.url
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(status, indent=1) + "\n")
    os.replace(tmp, path)


async def _serve(controller, listen: list[str], status_file: str | None = None, store: str = "none") -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if store != "none":
        from kumoflow.store import StoreCorrupt, StoreError, open_store
        try:
            controller.store = await open_store(store)
        except ValueError as exc:
            logging.error("--store: %s", exc)
            return 2
        except StoreCorrupt as exc:   # the file is left as it is
            logging.error("%s", exc)
            return 1
        except StoreError as exc:
            logging.error("%s (--store sqlite:PATH names another file; --store none runs without one)", exc)
            return 1
    try:
        bound = await controller.start(listen)
    except (OSError, ValueError) as exc:
        logging.error("cannot listen: %s", exc)
        return 1
    try:
        api = await _start_api(controller)
    except OSError as exc:
        logging.error("cannot serve the API: %s", exc)
        await controller.stop()
        return 1
    status = Path(status_file) if status_file else None
    if status is not None:
        try:
            _write_status(status, bound, api)
        except OSError as exc:
            logging.error("cannot write the status file: %s", exc)
            await _stop_api(api)
            await controller.stop()
            return 1
    await stop.wait()
    logging.info("shutting down")
    if status is not None:
        status.unlink(missing_ok=True)
    await _stop_api(api)
    await controller.stop()
    return 0


# --- the northbound API (kumoflow.api, docs/api.md): off unless --api is given ----------------


def _add_api_arguments(p: argparse.ArgumentParser) -> None:
    from kumoflow.api.options import add_arguments
    add_arguments(p)


def _api_options(args: argparse.Namespace):
    from kumoflow.api.options import parse
    return parse(args)


async def _start_api(controller):
    """The running API server, or None without --api."""
    options = getattr(controller, "api_options", None)
    if options is None:
        return None
    from kumoflow.api.options import start
    return await start(controller, options)


async def _stop_api(api) -> None:
    if api is not None:
        await api.stop()
