"""OpenFlow 1.3.5 constants (numbers from the specification, section 7).

Enums are IntEnum so they compare equal to the plain ints the codec stores:
decoding keeps raw ints (fast, and unknown values survive a round trip) and
the text formatter turns them into names.
"""

from enum import IntEnum, IntFlag

OFP_VERSION = 0x04
OFP_TCP_PORT = 6653
OFP_SSL_PORT = 6653
OFP_HEADER_LEN = 8
OFP_MAX_TABLE_NAME_LEN = 32
OFP_MAX_PORT_NAME_LEN = 16
DESC_STR_LEN = 256
SERIAL_NUM_LEN = 32
OFP_DEFAULT_MISS_SEND_LEN = 128
OFP_NO_BUFFER = 0xFFFFFFFF
OFP_DEFAULT_PRIORITY = 0x8000


class OFPT(IntEnum):
    HELLO = 0
    ERROR = 1
    ECHO_REQUEST = 2
    ECHO_REPLY = 3
    EXPERIMENTER = 4
    FEATURES_REQUEST = 5
    FEATURES_REPLY = 6
    GET_CONFIG_REQUEST = 7
    GET_CONFIG_REPLY = 8
    SET_CONFIG = 9
    PACKET_IN = 10
    FLOW_REMOVED = 11
    PORT_STATUS = 12
    PACKET_OUT = 13
    FLOW_MOD = 14
    GROUP_MOD = 15
    PORT_MOD = 16
    TABLE_MOD = 17
    MULTIPART_REQUEST = 18
    MULTIPART_REPLY = 19
    BARRIER_REQUEST = 20
    BARRIER_REPLY = 21
    QUEUE_GET_CONFIG_REQUEST = 22
    QUEUE_GET_CONFIG_REPLY = 23
    ROLE_REQUEST = 24
    ROLE_REPLY = 25
    GET_ASYNC_REQUEST = 26
    GET_ASYNC_REPLY = 27
    SET_ASYNC = 28
    METER_MOD = 29


class OFPHET(IntEnum):
    """Hello element types."""
    VERSIONBITMAP = 1


class OFPP(IntEnum):
    """Reserved port numbers."""
    MAX = 0xFFFFFF00
    IN_PORT = 0xFFFFFFF8
    TABLE = 0xFFFFFFF9
    NORMAL = 0xFFFFFFFA
    FLOOD = 0xFFFFFFFB
    ALL = 0xFFFFFFFC
    CONTROLLER = 0xFFFFFFFD
    LOCAL = 0xFFFFFFFE
    ANY = 0xFFFFFFFF


class OFPPC(IntFlag):
    """Port config flags."""
    PORT_DOWN = 1 << 0
    NO_RECV = 1 << 2
    NO_FWD = 1 << 5
    NO_PACKET_IN = 1 << 6


class OFPPS(IntFlag):
    """Port state flags."""
    LINK_DOWN = 1 << 0
    BLOCKED = 1 << 1
    LIVE = 1 << 2


class OFPPF(IntFlag):
    """Port features (curr, advertised, supported, peer)."""
    F_10MB_HD = 1 << 0
    F_10MB_FD = 1 << 1
    F_100MB_HD = 1 << 2
    F_100MB_FD = 1 << 3
    F_1GB_HD = 1 << 4
    F_1GB_FD = 1 << 5
    F_10GB_FD = 1 << 6
    F_40GB_FD = 1 << 7
    F_100GB_FD = 1 << 8
    F_1TB_FD = 1 << 9
    OTHER = 1 << 10
    COPPER = 1 << 11
    FIBER = 1 << 12
    AUTONEG = 1 << 13
    PAUSE = 1 << 14
    PAUSE_ASYM = 1 << 15


class OFPPR(IntEnum):
    """Port status reasons."""
    ADD = 0
    DELETE = 1
    MODIFY = 2


class OFPC(IntFlag):
    """Switch capabilities (features reply)."""
    FLOW_STATS = 1 << 0
    TABLE_STATS = 1 << 1
    PORT_STATS = 1 << 2
    GROUP_STATS = 1 << 3
    IP_REASM = 1 << 5
    QUEUE_STATS = 1 << 6
    PORT_BLOCKED = 1 << 8


class OFPC_FRAG(IntEnum):
    """Switch config flags (fragment handling)."""
    NORMAL = 0
    DROP = 1
    REASM = 2
    MASK = 3


class OFPTT(IntEnum):
    MAX = 0xFE
    ALL = 0xFF


class OFPTC(IntFlag):
    DEPRECATED_MASK = 3


class OFPCML(IntEnum):
    """Controller max_len values."""
    MAX = 0xFFE5
    NO_BUFFER = 0xFFFF


class OFPAT(IntEnum):
    OUTPUT = 0
    COPY_TTL_OUT = 11
    COPY_TTL_IN = 12
    SET_MPLS_TTL = 15
    DEC_MPLS_TTL = 16
    PUSH_VLAN = 17
    POP_VLAN = 18
    PUSH_MPLS = 19
    POP_MPLS = 20
    SET_QUEUE = 21
    GROUP = 22
    SET_NW_TTL = 23
    DEC_NW_TTL = 24
    SET_FIELD = 25
    PUSH_PBB = 26
    POP_PBB = 27
    EXPERIMENTER = 0xFFFF


class OFPIT(IntEnum):
    GOTO_TABLE = 1
    WRITE_METADATA = 2
    WRITE_ACTIONS = 3
    APPLY_ACTIONS = 4
    CLEAR_ACTIONS = 5
    METER = 6
    EXPERIMENTER = 0xFFFF


class OFPMT(IntEnum):
    """Match types."""
    STANDARD = 0
    OXM = 1


class OFPXMC(IntEnum):
    """OXM classes."""
    NXM_0 = 0x0000
    NXM_1 = 0x0001
    OPENFLOW_BASIC = 0x8000
    EXPERIMENTER = 0xFFFF


class OFPVID(IntEnum):
    NONE = 0x0000
    PRESENT = 0x1000


class OFPIEH(IntFlag):
    """IPv6 extension header pseudo-field flags."""
    NONEXT = 1 << 0
    ESP = 1 << 1
    AUTH = 1 << 2
    DEST = 1 << 3
    FRAG = 1 << 4
    ROUTER = 1 << 5
    HOP = 1 << 6
    UNREP = 1 << 7
    UNSEQ = 1 << 8


class OFPFC(IntEnum):
    """Flow mod commands."""
    ADD = 0
    MODIFY = 1
    MODIFY_STRICT = 2
    DELETE = 3
    DELETE_STRICT = 4


class OFPFF(IntFlag):
    """Flow mod flags."""
    SEND_FLOW_REM = 1 << 0
    CHECK_OVERLAP = 1 << 1
    RESET_COUNTS = 1 << 2
    NO_PKT_COUNTS = 1 << 3
    NO_BYT_COUNTS = 1 << 4


class OFPG(IntEnum):
    """Group numbering."""
    MAX = 0xFFFFFF00
    ALL = 0xFFFFFFFC
    ANY = 0xFFFFFFFF


class OFPGC(IntEnum):
    """Group mod commands."""
    ADD = 0
    MODIFY = 1
    DELETE = 2


class OFPGT(IntEnum):
    """Group types."""
    ALL = 0
    SELECT = 1
    INDIRECT = 2
    FF = 3


class OFPGFC(IntFlag):
    """Group capabilities."""
    SELECT_WEIGHT = 1 << 0
    SELECT_LIVENESS = 1 << 1
    CHAINING = 1 << 2
    CHAINING_CHECKS = 1 << 3


class OFPM(IntEnum):
    """Meter numbering."""
    MAX = 0xFFFF0000
    SLOWPATH = 0xFFFFFFFD
    CONTROLLER = 0xFFFFFFFE
    ALL = 0xFFFFFFFF


class OFPMC(IntEnum):
    """Meter mod commands."""
    ADD = 0
    MODIFY = 1
    DELETE = 2


class OFPMF(IntFlag):
    """Meter flags."""
    KBPS = 1 << 0
    PKTPS = 1 << 1
    BURST = 1 << 2
    STATS = 1 << 3


class OFPMBT(IntEnum):
    """Meter band types."""
    DROP = 1
    DSCP_REMARK = 2
    EXPERIMENTER = 0xFFFF


class OFPR(IntEnum):
    """Packet-in reasons."""
    NO_MATCH = 0
    ACTION = 1
    INVALID_TTL = 2


class OFPRR(IntEnum):
    """Flow removed reasons."""
    IDLE_TIMEOUT = 0
    HARD_TIMEOUT = 1
    DELETE = 2
    GROUP_DELETE = 3


class OFPMP(IntEnum):
    """Multipart types."""
    DESC = 0
    FLOW = 1
    AGGREGATE = 2
    TABLE = 3
    PORT_STATS = 4
    QUEUE = 5
    GROUP = 6
    GROUP_DESC = 7
    GROUP_FEATURES = 8
    METER = 9
    METER_CONFIG = 10
    METER_FEATURES = 11
    TABLE_FEATURES = 12
    PORT_DESC = 13
    EXPERIMENTER = 0xFFFF


class OFPMPF(IntFlag):
    REQ_MORE = 1 << 0
    REPLY_MORE = 1 << 0


class OFPTFPT(IntEnum):
    """Table feature property types."""
    INSTRUCTIONS = 0
    INSTRUCTIONS_MISS = 1
    NEXT_TABLES = 2
    NEXT_TABLES_MISS = 3
    WRITE_ACTIONS = 4
    WRITE_ACTIONS_MISS = 5
    APPLY_ACTIONS = 6
    APPLY_ACTIONS_MISS = 7
    MATCH = 8
    WILDCARDS = 10
    WRITE_SETFIELD = 12
    WRITE_SETFIELD_MISS = 13
    APPLY_SETFIELD = 14
    APPLY_SETFIELD_MISS = 15
    EXPERIMENTER = 0xFFFE
    EXPERIMENTER_MISS = 0xFFFF


class OFPQT(IntEnum):
    """Queue property types."""
    MIN_RATE = 1
    MAX_RATE = 2
    EXPERIMENTER = 0xFFFF


OFPQ_ALL = 0xFFFFFFFF
OFPQ_MIN_RATE_UNCFG = 0xFFFF
OFPQ_MAX_RATE_UNCFG = 0xFFFF


class OFPCR(IntEnum):
    """Controller roles."""
    ROLE_NOCHANGE = 0
    ROLE_EQUAL = 1
    ROLE_MASTER = 2
    ROLE_SLAVE = 3
