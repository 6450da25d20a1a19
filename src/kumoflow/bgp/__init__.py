"""BGP for the cloud: an FRR instance of kumoflow's own as the speaker (speaker.py), its selected
routes streamed to the controller over zebra's FPM interface (fpm.py); a plain FRR router for
tests and benchmarks (frr.py). The design is docs/routing.md."""

from .fpm import FpmError, Nexthop, Route
from .speaker import Speaker, SpeakerError

__all__ = ["FpmError", "Nexthop", "Route", "Speaker", "SpeakerError"]
