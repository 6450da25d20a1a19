"""The kumoflow controller: a sans-IO core (core.py) compiling apps' desired
state into flows and reconciling switches, under a thin asyncio runtime."""

from kumoflow.ofp.address import Address, parse_address

from .app import App, ModelApp
from .core import Core
from .datapath import Datapath, OpenFlowError
from .flows import Flow, Group, Meter
from .runtime import Controller

__all__ = ["Address", "App", "Controller", "Core", "Datapath", "Flow", "Group", "Meter", "ModelApp",
           "OpenFlowError", "parse_address"]
