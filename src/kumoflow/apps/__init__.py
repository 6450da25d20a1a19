"""Network applications, one module per network function.

`load_app("l2")` finds a bundled app by name; "package.module:Class" loads
any other App subclass.
"""

from __future__ import annotations

import importlib

from kumoflow.controller.app import App

BUNDLED = {
    "bgp": "kumoflow.apps.bgp:BgpApp",
    "fabric": "kumoflow.apps.fabric:Fabric",
    "firewall": "kumoflow.apps.firewall:FirewallApp",
    "l2": "kumoflow.apps.l2:LearningSwitch",
    "lb": "kumoflow.apps.lb:LoadBalancerApp",
    "qos": "kumoflow.apps.qos:QosApp",
    "router": "kumoflow.apps.router:RouterApp",
    "tenants": "kumoflow.apps.tenants:TenantsApp",
    "usage": "kumoflow.apps.usage:UsageApp",
}


def load_app(spec: str, **options) -> App:
    target = BUNDLED.get(spec, spec)
    module_name, sep, class_name = target.partition(":")
    if not sep:
        raise ValueError(f"unknown app {spec!r}: bundled apps are {', '.join(sorted(BUNDLED))}, "
                         "others are given as package.module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load app {spec!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, App)):
        raise ValueError(f"{target} is not a kumoflow App")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:   # an unknown option, a bad value (kumoflow.apps.options)
        raise ValueError(f"app {spec!r}: {exc}") from None
