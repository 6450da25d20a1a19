"""OpenFlow 1.3.5 wire protocol, sans-IO.

    from kumoflow import ofp
    msg = ofp.parse(data)                 # one complete message -> Message
    data = msg.pack()                     # Message -> bytes
    conn = ofp.Connection()               # framing, hello, xids, echo

Bad bytes raise `ofp.CodecError` only; it carries the OpenFlow error type
and code to answer with and the offset where decoding failed.
"""

from . import (actions, base, connection, consts, errors, instructions, messages, multipart, oxm,
               structs, table_features)
from .base import parse  # noqa: F401


def _export(module) -> None:
    """Re-export what a module defines: classes, functions, UPPER_CASE constants."""
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if getattr(obj, "__module__", None) == module.__name__ or (name.isupper() and isinstance(obj, (int, dict, list, frozenset))):
            globals()[name] = obj


for _module in (consts, errors, base, oxm, actions, instructions, structs, messages, multipart,
                table_features, connection):
    _export(_module)
