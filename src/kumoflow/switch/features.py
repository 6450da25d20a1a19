"""What the datapath reports it can do: table, group and meter features."""

from __future__ import annotations

from kumoflow import ofp
from kumoflow.ofp.consts import OFPAT, OFPGFC, OFPGT, OFPIT, OFPMBT, OFPMF, OFPTFPT
from kumoflow.ofp.oxm import FIELDS
from kumoflow.ofp.table_features import oxm_id

from .actions import SETTABLE
from .groups import MAX_GROUPS
from .meters import MAX_BANDS, MAX_METERS

ACTIONS = [OFPAT.OUTPUT, OFPAT.COPY_TTL_OUT, OFPAT.COPY_TTL_IN, OFPAT.SET_MPLS_TTL, OFPAT.DEC_MPLS_TTL,
           OFPAT.PUSH_VLAN, OFPAT.POP_VLAN, OFPAT.PUSH_MPLS, OFPAT.POP_MPLS, OFPAT.SET_QUEUE, OFPAT.GROUP,
           OFPAT.SET_NW_TTL, OFPAT.DEC_NW_TTL, OFPAT.SET_FIELD, OFPAT.PUSH_PBB, OFPAT.POP_PBB]
ACTION_BITMAP = sum(1 << int(a) for a in ACTIONS)
INSTRUCTIONS = [OFPIT.GOTO_TABLE, OFPIT.WRITE_METADATA, OFPIT.WRITE_ACTIONS, OFPIT.APPLY_ACTIONS,
                OFPIT.CLEAR_ACTIONS, OFPIT.METER]


def table_features(table_id: int, n_tables: int, name: str, max_entries: int, config: int = 0
                   ) -> ofp.TableFeatures:
    instructions = [int(i) for i in INSTRUCTIONS if i != OFPIT.GOTO_TABLE or table_id < n_tables - 1]
    next_tables = list(range(table_id + 1, n_tables))
    actions = [int(a) for a in ACTIONS]
    # tcp_flags, an experimenter OXM: its id is 8 bytes, the header and the
    # experimenter id; maskable, not settable, as Open vSwitch lists it
    match = [f.header(f.maskable) for f in FIELDS] + [oxm_id("tcp_flags", masked=True)]
    wildcards = [f.header(False) for f in FIELDS] + [oxm_id("tcp_flags")]
    setfields = [f.header(False) for f in FIELDS if f.code in SETTABLE]
    props = [
        ofp.InstructionsProp(OFPTFPT.INSTRUCTIONS, instructions),
        ofp.InstructionsProp(OFPTFPT.INSTRUCTIONS_MISS, list(instructions)),
        ofp.NextTablesProp(OFPTFPT.NEXT_TABLES, next_tables),
        ofp.NextTablesProp(OFPTFPT.NEXT_TABLES_MISS, list(next_tables)),
        ofp.ActionsProp(OFPTFPT.WRITE_ACTIONS, actions),
        ofp.ActionsProp(OFPTFPT.WRITE_ACTIONS_MISS, list(actions)),
        ofp.ActionsProp(OFPTFPT.APPLY_ACTIONS, list(actions)),
        ofp.ActionsProp(OFPTFPT.APPLY_ACTIONS_MISS, list(actions)),
        ofp.OxmProp(OFPTFPT.MATCH, match),
        ofp.OxmProp(OFPTFPT.WILDCARDS, wildcards),
        ofp.OxmProp(OFPTFPT.WRITE_SETFIELD, setfields),
        ofp.OxmProp(OFPTFPT.WRITE_SETFIELD_MISS, list(setfields)),
        ofp.OxmProp(OFPTFPT.APPLY_SETFIELD, list(setfields)),
        ofp.OxmProp(OFPTFPT.APPLY_SETFIELD_MISS, list(setfields)),
    ]
    return ofp.TableFeatures(table_id, name, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, config, max_entries, props)


def group_features() -> ofp.GroupFeaturesReply:
    types = sum(1 << int(t) for t in (OFPGT.ALL, OFPGT.SELECT, OFPGT.INDIRECT, OFPGT.FF))
    caps = int(OFPGFC.SELECT_WEIGHT | OFPGFC.SELECT_LIVENESS | OFPGFC.CHAINING | OFPGFC.CHAINING_CHECKS)
    return ofp.GroupFeaturesReply(types, caps, (MAX_GROUPS,) * 4, (ACTION_BITMAP,) * 4)


def meter_features() -> ofp.MeterFeaturesReply:
    return ofp.MeterFeaturesReply(MAX_METERS, (1 << OFPMBT.DROP) | (1 << OFPMBT.DSCP_REMARK),
                                  int(OFPMF.KBPS | OFPMF.PKTPS | OFPMF.BURST | OFPMF.STATS), MAX_BANDS, 0)
