"""kumoflow: an OpenFlow 1.3 SDN platform."""

__version__ = "0.1.0"
