"""OpenStack Neutron's resources over the desired-state store (kumoflow.store):

    /v2.0/networks  /v2.0/subnets  /v2.0/ports  /v2.0/routers (+ add_router_interface, remove_router_interface)
    /v2.0/floatingips
    /v2.0/security-groups  /v2.0/security-group-rules
    /v2.0/qos/policies (+ bandwidth_limit_rules, dscp_marking_rules, minimum_bandwidth_rules)
    /v2.0/l2-gateways  /v2.0/l2-gateway-connections (networking-l2gw's shapes)
    /v2.0/address-groups (+ add_addresses, remove_addresses)
    /v2.0/fwaas/firewall_rules  /v2.0/fwaas/firewall_policies (+ insert_rule, remove_rule)
    /v2.0/fwaas/firewall_groups (FWaaS v2's shapes)
    /v2/lbaas/loadbalancers  /v2/lbaas/listeners  /v2/lbaas/pools (+ members)
    /v2/lbaas/healthmonitors (Octavia v2's shapes, and its error body: lbaas.py)

Singular keys on create/show/update (``{"network": {...}}``), plural on list
and on bulk create (``{"networks": [...]}``: all or none); 201 on create, 200
on show/list/update, 204 on delete. Lists take filters by attribute in the
query string (``?name=a&name=b&shared=false``: repeated keys are OR, different
keys AND; ``tags``, ``tags-any``, ``not-tags``, ``not-tags-any``), and
``fields=`` (show and list) selects attributes. A project sees and changes
its own resources, and sees shared ones (networks that are ``shared`` or
``router:external``, shared QoS policies, shared firewall rules, policies and
groups); another project's resource is
404; the admin sees all. Errors have Neutron's types (NetworkNotFound,
NetworkInUse, IpAddressAlreadyAllocated, ...). Each request's writes are one
store commit. The user's guide is docs/api.md.

The store is the controller's (``--store``); a controller without one keeps
the resources in an in-memory store, lost at exit.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from . import (address_groups, bgp, floatingips, fwaas, l2gateways, lbaas, networks, ports, qos, routers,
               security_groups, subnets)
from .db import NeutronDB

router = APIRouter()
for _module in (networks, subnets, ports, routers, floatingips, security_groups, qos, bgp, l2gateways, address_groups,
                fwaas, lbaas):
    router.include_router(_module.router)


def setup(app: Any, ctx: Any) -> None:
    ctx.extra["neutron"] = NeutronDB(getattr(ctx.controller, "store", None))
    ctx.error_shapes[lbaas.PREFIX + "/"] = lbaas.ERROR_SHAPE


__all__ = ["router", "setup", "NeutronDB"]
