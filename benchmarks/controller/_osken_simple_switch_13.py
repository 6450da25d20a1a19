"""A MAC-learning switch for os-ken (OpenFlow 1.3): the benchmark peer of kumoflow's `l2` app.

Written for cbench.py against os-ken's public API, with the same behaviour
as kumoflow's l2 so both controllers do the same work per packet-in:

- on switch features: a table-miss flow sending packets to the controller
  (max_len 128, as kumoflow installs);
- on packet-in: learn source MAC -> in_port per datapath; for a known
  destination install (in_port, eth_dst, eth_src) -> output with idle
  timeout 60 and priority 10, carrying the buffer id when the switch
  buffered the packet, plus a packet-out when it did not; unknown or group
  destinations are flooded with a packet-out; LLDP is ignored; a destination
  behind the in_port gets nothing.

MACs are read from the frame's first 12 bytes, as kumoflow's l2 does. Set
OSKEN_SS13_PACKET_LIB=1 to parse frames with os_ken.lib.packet instead (the
style of os-ken's tutorials; slower).

    osken-manager benchmarks/controller/_osken_simple_switch_13.py --ofp-tcp-listen-port 6653
    python benchmarks/controller/_cbench_osken.py benchmarks/controller/_osken_simple_switch_13.py --ofp-tcp-listen-port 6653

(os-ken 4.x installs no osken-manager; _cbench_osken.py does the same job.
OSKEN_HUB_TYPE=eventlet selects the eventlet hub instead of native threads.)
"""

import os

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3

USE_PACKET_LIB = os.environ.get("OSKEN_SS13_PACKET_LIB") == "1"
if USE_PACKET_LIB:
    from os_ken.lib.packet import ethernet, packet

ETH_TYPE_LLDP = 0x88CC
IDLE_TIMEOUT = 60
PRIORITY = 10


class LearningSwitch13(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.macs = {}          # dpid -> {mac: port}

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_features(self, ev):
        dp = ev.msg.datapath
        ofproto, parser = dp.ofproto, dp.ofproto_parser
        self.macs[ev.msg.datapath_id] = {}
        to_controller = [parser.OFPActionOutput(ofproto.OFPP_CONTROLLER, 128)]
        self._flow(dp, 0, parser.OFPMatch(), to_controller)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def on_state(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.logger.info("switch %016x up", dp.id)
        else:
            self.macs.pop(dp.id, None)
            self.logger.info("switch %016x down", dp.id)

    def _flow(self, dp, priority, match, actions, buffer_id=None, idle_timeout=0):
        ofproto, parser = dp.ofproto, dp.ofproto_parser
        inst = [parser.OFPInstructionActions(ofproto.OFPIT_APPLY_ACTIONS, actions)]
        kwargs = {}
        if buffer_id is not None:
            kwargs["buffer_id"] = buffer_id
        dp.send_msg(parser.OFPFlowMod(datapath=dp, priority=priority, match=match, instructions=inst,
                                      idle_timeout=idle_timeout, **kwargs))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofproto, parser = dp.ofproto, dp.ofproto_parser
        in_port = msg.match["in_port"]
        data = msg.data
        if USE_PACKET_LIB:
            eth = packet.Packet(data).get_protocols(ethernet.ethernet)[0]
            if eth.ethertype == ETH_TYPE_LLDP:
                return
            dst, src = eth.dst, eth.src
            dst_group = int(dst[:2], 16) & 1
            src_group = int(src[:2], 16) & 1
        else:
            if len(data) < 14 or data[12:14] == b"\x88\xcc":
                return
            dst, src = data[0:6].hex(":"), data[6:12].hex(":")
            dst_group, src_group = data[0] & 1, data[6] & 1
        table = self.macs.setdefault(dp.id, {})
        if not src_group:
            table[src] = in_port
        out_port = None if dst_group else table.get(dst)
        if out_port == in_port:
            return
        buffered = msg.buffer_id != ofproto.OFP_NO_BUFFER
        if out_port is None:
            out_port = ofproto.OFPP_FLOOD
        else:
            match = parser.OFPMatch(in_port=in_port, eth_dst=dst, eth_src=src)
            actions = [parser.OFPActionOutput(out_port)]
            if buffered:
                self._flow(dp, PRIORITY, match, actions, msg.buffer_id, IDLE_TIMEOUT)
                return
            self._flow(dp, PRIORITY, match, actions, idle_timeout=IDLE_TIMEOUT)
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id, in_port=in_port,
                                        actions=[parser.OFPActionOutput(out_port)],
                                        data=None if buffered else data))
