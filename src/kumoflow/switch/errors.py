"""The datapath's one exception: a request the specification answers with an ERROR."""

from __future__ import annotations

from kumoflow.ofp.errors import error_name


class SwitchError(Exception):
    """A controller request failed with OpenFlow error `type`/`code`.

    The runtime answers the request with an OFPT_ERROR carrying these two
    numbers and the first bytes of the request; the datapath's state is
    unchanged unless the spec says otherwise (a flow-mod whose buffer_id is
    unknown is still applied, as if flow-mod and packet-out had been sent
    separately).
    """

    def __init__(self, err_type: int, code: int, detail: str = "") -> None:
        self.type = int(err_type)
        self.code = int(code)
        self.detail = detail
        text = error_name(err_type, code)
        super().__init__(f"{text}: {detail}" if detail else text)
