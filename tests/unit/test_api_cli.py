"""`kumoflow show` and `kumoflow dump-flows` against a real API server
(uvicorn on 127.0.0.1, port 0) over a controller core joined to switches in
memory (memnet.py); and the API's command-line options.

The server and the network run on one event loop in a thread of their own
(everything that touches the core runs there); the commands run in the test's
thread as a user would run them, through kumoflow.cli.main.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading

import pytest

from kumoflow.api import options as api_options
from kumoflow.api.server import serve
from kumoflow.cli import build_parser, main
from kumoflow.ofp import text

from test_api import ADMIN, network, settle


class Served:
    """serve(net.core) on a loop in a thread, with a pump for the network."""

    def __init__(self, net) -> None:
        self.net = net
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "the API server did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.loop.run_forever()

    async def _start(self) -> None:
        self.api = await serve(self.net.core, "127.0.0.1", 0, admin_token=ADMIN)
        self.pump = asyncio.ensure_future(self._pump())
        self.ready.set()

    async def _pump(self) -> None:
        while True:
            self.net.run()
            await asyncio.sleep(0.001)

    @property
    def url(self) -> str:
        return self.api.url

    def stop(self) -> None:
        async def stopping():
            self.pump.cancel()
            await self.api.stop()
        asyncio.run_coroutine_threadsafe(stopping(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)


@pytest.fixture(scope="module")
def served():
    net = settle(network())
    expected = {"flows": sorted(net.switches[1].flows(), key=lambda f: (f.table_id, -f.priority))}
    server = Served(net)
    server.expected = expected
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_token_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("KUMOFLOW_TOKEN", raising=False)
    monkeypatch.delenv("KUMOFLOW_API", raising=False)
    monkeypatch.setenv("KUMOFLOW_TOKEN_FILE", str(tmp_path / "no-such-token-file"))
    monkeypatch.setenv("COLUMNS", "200")


def kf(served, capsys, *argv, token=ADMIN):
    args = [argv[0], "--api", served.url, *(["--token", token] if token else []), *argv[1:]]
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_the_server_binds_a_free_loopback_port(served):
    assert served.api.host == "127.0.0.1" and served.api.port > 0
    assert served.url == f"http://127.0.0.1:{served.api.port}"


def test_show_switches_links_and_hosts_as_tables(served, capsys):
    status, out, _ = kf(served, capsys, "show", "switches")
    assert status == 0
    assert "switches" in out and "0x1" in out and "0x2" in out and "br-s1" in out and "mem:1" in out
    status, out, _ = kf(served, capsys, "show", "switches", "br-s1")
    assert status == 0
    assert "switch 0x1 (dpid 0000000000000001) br-s1" in out and "s1-eth1" in out and "0x2 port 1" in out
    status, out, _ = kf(served, capsys, "show", "links")
    assert status == 0 and "br-s1" in out and "1 (s1-eth1)" in out and "1 (s2-eth1)" in out
    status, out, _ = kf(served, capsys, "show", "hosts")
    assert status == 0
    for host in served.net.hosts.values():
        assert host.mac in out and host.ip in out


def test_show_json_is_the_apis_json(served, capsys):
    status, out, _ = kf(served, capsys, "show", "links", "--json")
    assert status == 0
    assert json.loads(out) == {"links": [
        {"a": {"dpid": "0000000000000001", "switch": "br-s1", "port_no": 1, "port_name": "s1-eth1"},
         "b": {"dpid": "0000000000000002", "switch": None, "port_no": 1, "port_name": "s2-eth1"}}]}
    status, out, _ = kf(served, capsys, "show", "flows", "--json")
    assert status == 0
    per_switch = json.loads(out)["switches"]
    assert [s["dpid"] for s in per_switch] == ["0000000000000001", "0000000000000002"]
    assert [f["text"] for f in per_switch[0]["flows"]] == \
        [text.format_flow_stats(f).strip() for f in served.expected["flows"]]


def test_show_flows_groups_meters_and_diff_of_a_switch(served, capsys):
    status, out, _ = kf(served, capsys, "show", "flows", "0x1")
    assert status == 0 and "flows of 0x1" in out and "dl_type=0x88cc" in out and "CONTROLLER:65535" in out
    status, out, _ = kf(served, capsys, "show", "groups", "2")
    assert status == 0 and "groups of 0x2" in out and "ff" in out and "output:1" in out
    status, out, _ = kf(served, capsys, "show", "meters", "1")
    assert status == 0 and "meters of 0x1" in out
    status, out, _ = kf(served, capsys, "show", "diff")
    assert status == 0
    assert "desired vs installed of 0x1 (br-s1): in sync" in out and "desired vs installed of 0x2: in sync" in out


def test_dump_flows_prints_ovs_ofctl_lines(served, capsys):
    status, out, _ = kf(served, capsys, "dump-flows", "0x1")
    assert status == 0
    assert out.splitlines() == [text.format_flow_stats(f) for f in served.expected["flows"]]
    status, out, _ = kf(served, capsys, "dump-flows", "1", "--table", "40")
    assert status == 0
    assert out.splitlines() == [text.format_flow_stats(f) for f in served.expected["flows"] if f.table_id == 40]


def test_errors_are_sentences_with_an_exit_status(served, capsys, tmp_path, monkeypatch):
    status, _, err = kf(served, capsys, "show", "flows", "0x9")
    assert status == 1 and "404" in err and "could not be found" in err
    status, _, err = kf(served, capsys, "show", "links", token="wrong")
    assert status == 1 and "401" in err and "not valid" in err
    status, _, err = kf(served, capsys, "show", "groups")
    assert status == 2 and "needs a SWITCH" in err
    status, _, err = kf(served, capsys, "show", "hosts", "0x1")
    assert status == 2 and "takes no SWITCH" in err
    status, _, err = kf(served, capsys, "show", "links", token=None)
    assert status == 2 and "no token" in err and "no-such-token-file" in err
    status = main(["show", "links", "--api", "http://127.0.0.1:9", "--token", "x"])
    assert status == 1 and "cannot reach the kumoflow API" in capsys.readouterr().err


def test_the_token_comes_from_the_environment_or_the_token_file(served, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KUMOFLOW_TOKEN", ADMIN)
    assert kf(served, capsys, "show", "links", token=None)[0] == 0
    monkeypatch.delenv("KUMOFLOW_TOKEN")
    path = tmp_path / "admin-token"
    path.write_text(ADMIN + "\n")
    assert kf(served, capsys, "show", "links", "--token-file", str(path), token=None)[0] == 0
    monkeypatch.setenv("KUMOFLOW_TOKEN_FILE", str(path))
    monkeypatch.setenv("KUMOFLOW_API", served.url)
    assert main(["show", "links"]) == 0


# --- the controller's API options ---------------------------------------------------------------


def controller_args(*argv):
    return build_parser().parse_args(["controller", *argv])


def test_the_api_is_off_unless_asked_and_never_public_by_accident(tmp_path):
    assert api_options.parse(controller_args()) is None
    opts = api_options.parse(controller_args("--api", "127.0.0.1:0"))
    assert (opts.host, opts.port, opts.public) == ("127.0.0.1", 0, False)
    assert str(opts.token_file) == api_options.DEFAULT_TOKEN_FILE == "/var/lib/kumoflow/admin-token"
    assert api_options.parse(controller_args("--api", "[::1]:9696")).host == "::1"
    assert api_options.parse(controller_args("--api", "localhost:9696")).host == "localhost"
    for public in ("0.0.0.0:9696", "10.1.2.3:9696", "[::]:9696", "example.org:9696"):
        with pytest.raises(ValueError, match="--api-public"):
            api_options.parse(controller_args("--api", public))
    assert api_options.parse(controller_args("--api", "0.0.0.0:9696", "--api-public")).public
    for bad in ("9696", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", ":9696"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            api_options.parse(controller_args("--api", bad))


def test_the_admin_token_is_given_or_generated_once_into_a_private_file(tmp_path):
    path = tmp_path / "state" / "admin-token"
    opts = api_options.parse(controller_args("--api", "127.0.0.1:0", "--admin-token-file", str(path)))
    token = api_options.admin_token(opts)
    assert len(token) >= 32 and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert api_options.admin_token(opts) == token            # kept across restarts
    given = api_options.parse(controller_args("--api", "127.0.0.1:0", "--admin-token", "mine",
                                              "--admin-token-file", str(path)))
    assert api_options.admin_token(given) == "mine"
    with pytest.raises(ValueError, match="empty"):
        api_options.parse(controller_args("--api", "127.0.0.1:0", "--admin-token", " "))
