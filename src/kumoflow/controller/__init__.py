"""The kumoflow controller: an asyncio runtime hosting network applications."""

from .address import Address, parse_address
from .app import App
from .datapath import Datapath, OpenFlowError
from .runtime import Controller

__all__ = ["Address", "App", "Controller", "Datapath", "OpenFlowError", "parse_address"]
