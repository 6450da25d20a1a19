"""A MAC-learning switch written against os-ken's application API -- a
third-party controller for kumoflow's interoperability tests.

Run it as os-ken apps are run::

    osken-manager --ofp-tcp-listen-port 6653 osken_l2_app.py

or, where os-ken no longer ships ``osken-manager`` (os-ken 3 and later),
with this file's own entry point, which does what the manager did
(parse os-ken's options, load the app and the OpenFlow handler it
depends on, run them)::

    python osken_l2_app.py --ofp-tcp-listen-port 6653 --ofp-listen-host 127.0.0.1

The entry point also takes ``--status-file PATH`` (before os-ken's own
options): once listening, it writes ``{"pid": .., "listen": ["tcp:HOST:PORT"]}``
there, so that ``--ofp-tcp-listen-port 0`` (a port of the kernel's choosing)
can be used.

What it does with each switch, all through os-ken's own message classes:

* on SwitchFeatures: a table-miss entry sending whole packets to the
  controller (OFPCML_NO_BUFFER) and a port description request; it logs
  ``OSKEN-PORTS dpid=<n> ports=[...]`` when the reply comes;
* on PacketIn: learn source MAC -> in_port; a known destination gets a
  flow entry (in_port, eth_src, eth_dst -> output) plus a packet-out of the
  packet in hand, an unknown one is flooded; logs ``OSKEN-FLOW`` for each
  flow it installs;
* on PortStatus: logs ``OSKEN-PORT-STATUS``;
* on ErrorMsg: logs ``OSKEN-ERROR type=.. code=..``.
"""

from __future__ import annotations

import logging

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import ethernet, ether_types, packet
from os_ken.ofproto import ofproto_v1_3

LOG = logging.getLogger("osken_l2_app")


class LearningSwitch13(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tables: dict[int, dict[str, int]] = {}

    # --- switch comes up -----------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self.tables[dp.id] = {}
        miss = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]
        self.flow(dp, priority=0, match=parser.OFPMatch(), actions=miss)
        dp.send_msg(parser.OFPPortDescStatsRequest(dp, 0))
        LOG.info("OSKEN-SWITCH dpid=%d n_tables=%d", dp.id, ev.msg.n_tables)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def on_port_desc(self, ev):
        ports = sorted(p.port_no for p in ev.msg.body if p.port_no < ev.msg.datapath.ofproto.OFPP_MAX)
        LOG.info("OSKEN-PORTS dpid=%d ports=%s", ev.msg.datapath.id, ports)

    def flow(self, dp, priority, match, actions, buffer_id=None, idle_timeout=0):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        extra = {} if buffer_id is None else {"buffer_id": buffer_id}
        dp.send_msg(parser.OFPFlowMod(datapath=dp, priority=priority, match=match, instructions=inst,
                                      idle_timeout=idle_timeout, **extra))

    # --- packets ---------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        in_port = msg.match["in_port"]
        eth = packet.Packet(msg.data).get_protocol(ethernet.ethernet)
        if eth is None or eth.ethertype == ether_types.ETH_TYPE_LLDP:
            return
        table = self.tables.setdefault(dp.id, {})
        if not int(eth.src.split(":")[0], 16) & 1:
            table[eth.src] = in_port
        out_port = table.get(eth.dst, ofp.OFPP_FLOOD)
        if out_port == in_port:
            return
        actions = [parser.OFPActionOutput(out_port)]
        buffered = msg.buffer_id != ofp.OFP_NO_BUFFER
        if out_port != ofp.OFPP_FLOOD:
            match = parser.OFPMatch(in_port=in_port, eth_src=eth.src, eth_dst=eth.dst)
            self.flow(dp, 1, match, actions, buffer_id=msg.buffer_id if buffered else None, idle_timeout=60)
            LOG.info("OSKEN-FLOW dpid=%d %s->%s out %d", dp.id, eth.src, eth.dst, out_port)
            if buffered:
                return
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id, in_port=in_port, actions=actions,
                                        data=None if buffered else msg.data))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def on_port_status(self, ev):
        LOG.info("OSKEN-PORT-STATUS dpid=%d reason=%d port=%d state=%d", ev.msg.datapath.id, ev.msg.reason,
                 ev.msg.desc.port_no, ev.msg.desc.state)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_error(self, ev):
        LOG.info("OSKEN-ERROR type=%d code=%d", ev.msg.type, ev.msg.code)


def main(argv: list[str] | None = None) -> None:
    """What osken-manager did: os-ken's options, this app, run until killed."""
    import json
    import os
    import sys

    from os_ken.lib import hub

    hub.patch(thread=False)
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    import os_ken.controller.controller as osken_controller  # registers the --ofp-* options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    args = list(sys.argv[1:] if argv is None else argv)
    status_file = None
    if args[:1] == ["--status-file"]:
        status_file, args = args[1], args[2:]
    cfg.CONF(args=args, project="os_ken")
    if cfg.CONF.ofp_tcp_listen_port == 0 and not cfg.CONF.ofp_ssl_listen_port:
        # os-ken reads a TCP port of 0 as none given, and then listens on
        # 6653 and 6633. Naming an SSL port keeps it to the one TCP port; that
        # port is not opened without a certificate (--ctl-privkey, --ctl-cert).
        cfg.CONF.set_override("ofp_ssl_listen_port", 6653)
    if status_file is not None:
        real = osken_controller.StreamServer

        class ReportingStreamServer(real):
            """os-ken's listener, which writes the address it bound to the status file."""

            def __init__(self, listen_info, *rest, **kwargs):
                super().__init__(listen_info, *rest, **kwargs)
                host, port = self.server.getsockname()[:2]
                LOG.info("OSKEN-LISTENING tcp:%s:%d", host, port)
                tmp = status_file + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"pid": os.getpid(), "listen": [f"tcp:{host}:{port}"]}, f)
                os.replace(tmp, status_file)

        osken_controller.StreamServer = ReportingStreamServer
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    AppManager.run_apps(["osken_l2_app"])


if __name__ == "__main__":
    main()
