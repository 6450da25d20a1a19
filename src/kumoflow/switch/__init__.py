"""kumoflow's software OpenFlow 1.3 switch.

Two layers with one contract between them:

The datapath (sans-IO, no sockets, no asyncio) -- `kumoflow.switch.datapath`:

    dp = Datapath(dpid=1, n_tables=64, n_buffers=256)
    dp.add_port(port)          # any PortBase: port_no, name, hw_addr, config,
                               # state, features, speeds, counters, send(frame)
    dp.remove_port(port_no)
    dp.port_changed(port_no)   # link/config changed: PORT_STATUS out, group liveness
    replies = dp.handle(msg)   # one controller request -> its replies (same xid,
                               # multipart already split to fit 64 KB); raises
                               # SwitchError(type, code) when the spec names an error
    dp.receive(in_port, frame) # a frame arrived: run the pipeline
    dp.tick(now)               # idle/hard timeouts -> FLOW_REMOVED
    dp.on_async = callback     # receives PacketIn, FlowRemoved, PortStatus to send

It owns flow tables, the pipeline, instructions and actions, groups, meters,
packet buffers, counters, and every controller-to-switch message except
HELLO, ECHO, ROLE_REQUEST and GET/SET_ASYNC.

The runtime (asyncio) -- `kumoflow.switch.runtime`: Linux ports on AF_PACKET
sockets, channels to controllers (active with reconnect and backoff,
passive listener), roles and generation ids, per-controller async config,
fail-secure / fail-standalone, and the `kumoflow switch` command.
"""

import re

#: A switch's name (``kumoflow switch --name NAME``): letters, digits and ``_.-``, up to 64,
#: the first a letter or digit, and not a datapath id's spelling (all digits, ``0x...`` or 16
#: hex digits), so that a name and a datapath id never mean two switches. The switch reports
#: it as its DESC reply's ``dp_desc``; the controller's API reads it from there (a kumoflow
#: switch has no LOCAL port, whose name is how Open vSwitch names its bridges).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: the DESC reply's ``mfr_desc`` of a kumoflow switch
MANUFACTURER = "kumoflow"


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a switch, or None when it can."""
    if not NAME.fullmatch(name):
        return "expected letters, digits and _.- (up to 64, the first a letter or digit)"
    low = name.lower()
    if low.isdigit() or re.fullmatch(r"0x[0-9a-f]+", low) or re.fullmatch(r"[0-9a-f]{16}", low):
        return "that is how a datapath id is written; a name must not look like one"
    return None
