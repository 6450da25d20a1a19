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
