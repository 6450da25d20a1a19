"""OpenFlow 1.3.5 error types and codes, and the codec's one exception.

`CodecError` is the only exception the decoder raises for bad bytes. It
carries the error type and code a switch must answer with (section 7.5.4 of
the specification) and the byte offset in the message where decoding failed,
so the receiving end can reply with an ERROR and keep the channel up.
"""

from __future__ import annotations

from enum import IntEnum


class OFPET(IntEnum):
    HELLO_FAILED = 0
    BAD_REQUEST = 1
    BAD_ACTION = 2
    BAD_INSTRUCTION = 3
    BAD_MATCH = 4
    FLOW_MOD_FAILED = 5
    GROUP_MOD_FAILED = 6
    PORT_MOD_FAILED = 7
    TABLE_MOD_FAILED = 8
    QUEUE_OP_FAILED = 9
    SWITCH_CONFIG_FAILED = 10
    ROLE_REQUEST_FAILED = 11
    METER_MOD_FAILED = 12
    TABLE_FEATURES_FAILED = 13
    EXPERIMENTER = 0xFFFF


class OFPHFC(IntEnum):
    INCOMPATIBLE = 0
    EPERM = 1


class OFPBRC(IntEnum):
    BAD_VERSION = 0
    BAD_TYPE = 1
    BAD_MULTIPART = 2
    BAD_EXPERIMENTER = 3
    BAD_EXP_TYPE = 4
    EPERM = 5
    BAD_LEN = 6
    BUFFER_EMPTY = 7
    BUFFER_UNKNOWN = 8
    BAD_TABLE_ID = 9
    IS_SLAVE = 10
    BAD_PORT = 11
    BAD_PACKET = 12
    MULTIPART_BUFFER_OVERFLOW = 13


class OFPBAC(IntEnum):
    BAD_TYPE = 0
    BAD_LEN = 1
    BAD_EXPERIMENTER = 2
    BAD_EXP_TYPE = 3
    BAD_OUT_PORT = 4
    BAD_ARGUMENT = 5
    EPERM = 6
    TOO_MANY = 7
    BAD_QUEUE = 8
    BAD_OUT_GROUP = 9
    MATCH_INCONSISTENT = 10
    UNSUPPORTED_ORDER = 11
    BAD_TAG = 12
    BAD_SET_TYPE = 13
    BAD_SET_LEN = 14
    BAD_SET_ARGUMENT = 15


class OFPBIC(IntEnum):
    UNKNOWN_INST = 0
    UNSUP_INST = 1
    BAD_TABLE_ID = 2
    UNSUP_METADATA = 3
    UNSUP_METADATA_MASK = 4
    BAD_EXPERIMENTER = 5
    BAD_EXP_TYPE = 6
    BAD_LEN = 7
    EPERM = 8


class OFPBMC(IntEnum):
    BAD_TYPE = 0
    BAD_LEN = 1
    BAD_TAG = 2
    BAD_DL_ADDR_MASK = 3
    BAD_NW_ADDR_MASK = 4
    BAD_WILDCARDS = 5
    BAD_FIELD = 6
    BAD_VALUE = 7
    BAD_MASK = 8
    BAD_PREREQ = 9
    DUP_FIELD = 10
    EPERM = 11


class OFPFMFC(IntEnum):
    UNKNOWN = 0
    TABLE_FULL = 1
    BAD_TABLE_ID = 2
    OVERLAP = 3
    EPERM = 4
    BAD_TIMEOUT = 5
    BAD_COMMAND = 6
    BAD_FLAGS = 7


class OFPGMFC(IntEnum):
    GROUP_EXISTS = 0
    INVALID_GROUP = 1
    WEIGHT_UNSUPPORTED = 2
    OUT_OF_GROUPS = 3
    OUT_OF_BUCKETS = 4
    CHAINING_UNSUPPORTED = 5
    WATCH_UNSUPPORTED = 6
    LOOP = 7
    UNKNOWN_GROUP = 8
    CHAINED_GROUP = 9
    BAD_TYPE = 10
    BAD_COMMAND = 11
    BAD_BUCKET = 12
    BAD_WATCH = 13
    EPERM = 14


class OFPPMFC(IntEnum):
    BAD_PORT = 0
    BAD_HW_ADDR = 1
    BAD_CONFIG = 2
    BAD_ADVERTISE = 3
    EPERM = 4


class OFPTMFC(IntEnum):
    BAD_TABLE = 0
    BAD_CONFIG = 1
    EPERM = 2


class OFPQOFC(IntEnum):
    BAD_PORT = 0
    BAD_QUEUE = 1
    EPERM = 2


class OFPSCFC(IntEnum):
    BAD_FLAGS = 0
    BAD_LEN = 1
    EPERM = 2


class OFPRRFC(IntEnum):
    STALE = 0
    UNSUP = 1
    BAD_ROLE = 2


class OFPMMFC(IntEnum):
    UNKNOWN = 0
    METER_EXISTS = 1
    INVALID_METER = 2
    UNKNOWN_METER = 3
    BAD_COMMAND = 4
    BAD_FLAGS = 5
    BAD_RATE = 6
    BAD_BURST = 7
    BAD_BAND = 8
    BAD_BAND_VALUE = 9
    OUT_OF_METERS = 10
    OUT_OF_BANDS = 11


class OFPTFFC(IntEnum):
    BAD_TABLE = 0
    BAD_METADATA = 1
    BAD_TYPE = 2
    BAD_LEN = 3
    BAD_ARGUMENT = 4
    EPERM = 5


# The code enum for each error type, for naming codes in text output.
ERROR_CODES: dict[int, type[IntEnum]] = {
    OFPET.HELLO_FAILED: OFPHFC,
    OFPET.BAD_REQUEST: OFPBRC,
    OFPET.BAD_ACTION: OFPBAC,
    OFPET.BAD_INSTRUCTION: OFPBIC,
    OFPET.BAD_MATCH: OFPBMC,
    OFPET.FLOW_MOD_FAILED: OFPFMFC,
    OFPET.GROUP_MOD_FAILED: OFPGMFC,
    OFPET.PORT_MOD_FAILED: OFPPMFC,
    OFPET.TABLE_MOD_FAILED: OFPTMFC,
    OFPET.QUEUE_OP_FAILED: OFPQOFC,
    OFPET.SWITCH_CONFIG_FAILED: OFPSCFC,
    OFPET.ROLE_REQUEST_FAILED: OFPRRFC,
    OFPET.METER_MOD_FAILED: OFPMMFC,
    OFPET.TABLE_FEATURES_FAILED: OFPTFFC,
}


def error_name(err_type: int, code: int) -> str:
    """'BAD_MATCH/BAD_FIELD' style name; numbers where the spec has no name."""
    try:
        type_name = OFPET(err_type).name
    except ValueError:
        return f"{err_type}/{code}"
    codes = ERROR_CODES.get(err_type)
    try:
        code_name = codes(code).name if codes else str(code)
    except ValueError:
        code_name = str(code)
    return f"{type_name}/{code_name}"


class CodecError(Exception):
    """Bytes that are not a valid OpenFlow 1.3 message.

    `type` and `code` are what a switch answers with in an ERROR message;
    `offset` is where in the message decoding failed (None when unknown).
    """

    def __init__(self, err_type: int, code: int, detail: str, offset: int | None = None):
        self.type = err_type
        self.code = code
        self.detail = detail
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{error_name(err_type, code)}{where}: {detail}")
