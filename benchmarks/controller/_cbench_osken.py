"""Run os-ken apps the way the classic `osken-manager` command does (os-ken 4.x ships no such script).

    python benchmarks/controller/_cbench_osken.py benchmarks/controller/_osken_simple_switch_13.py \\
        --ofp-listen-host 127.0.0.1 --ofp-tcp-listen-port 6653

It patches the standard library for eventlet, parses os-ken's command-line
options (every option osken-manager takes: --ofp-tcp-listen-port,
--echo-request-interval, --verbose, ...), sets up logging, then loads and
runs the apps until interrupted. An `osken-manager` on PATH, where os-ken
still installs one, is equivalent.
"""

import sys


def main(argv=None):
    from os_ken.lib import hub

    hub.patch(thread=False)

    import importlib

    from os_ken import cfg, log
    from os_ken.base.app_manager import AppManager

    # Importing these registers their options (listen ports, echo interval, ...).
    for module in ("os_ken.controller.controller", "os_ken.flags"):
        importlib.import_module(module)

    log.early_init_log()
    cfg.CONF.register_cli_opts([cfg.MultiStrOpt("app", positional=True, default=[], help="application module name to run")])
    cfg.CONF(args=sys.argv[1:] if argv is None else argv, project="os_ken")
    log.init_log()
    apps = cfg.CONF.app or ["os_ken.controller.ofp_handler"]
    try:
        AppManager.run_apps(apps)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
