"""BGP for the cloud: an FRR instance of kumoflow's own as the speaker (speaker.py), its
selected routes streamed to the controller over zebra's FPM interface (fpm.py).
The design is docs/routing.md."""
