"""Host fields for routed networks: address lists, IPv6 gateways, slaac,
loopback addresses, run: commands and FRR routers (the YAML, the plan and
the state record; no root needed)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from kumoflow.net.errors import TopologyError
from kumoflow.net.hosts import host_sysctls
from kumoflow.net.network import Network, _host_from_record
from kumoflow.net.plan import make_plan
from kumoflow.net.topology import DEFAULT_FRR_DAEMONS, load_topology, parse_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEFAULT_DAEMONS = ("zebra", *DEFAULT_FRR_DAEMONS)

HEAD = """\
switches: [{name: s1}]
links:
  - {src: h1, dst: s1}
hosts:
"""


def host_file(host_yaml: str) -> str:
    """A topology with one switch and host h1 given as ``host_yaml`` (indented list item)."""
    return HEAD + textwrap.dedent(host_yaml)


def errors_of(text: str, filename: str = "topo.yaml") -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, filename)
    return [str(issue) for issue in info.value.issues]


def line_with(text: str, content: str) -> int:
    """1-based number of the line that is ``content`` (indentation aside)."""
    return [line.strip() for line in text.splitlines()].index(content) + 1


def marked_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if "#!" in line:
            return number
    raise AssertionError("no #! marker")


# -- good files ------------------------------------------------------------------


def test_one_string_still_works():
    topo = parse_topology(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, gateway: 10.0.0.254}
        """))
    h1 = topo.host("h1")
    assert [str(a) for a in h1.addresses] == ["10.0.0.1/24"]
    assert str(h1.ip) == "10.0.0.1/24" and str(h1.gateway) == "10.0.0.254"
    assert (h1.slaac, h1.loopback, h1.run, h1.frr) == (False, (), None, None)


def test_dual_stack_addresses_and_gateways():
    topo = parse_topology(host_file("""\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.1/24, "2001:db8::1/64", 10.1.0.1/16]
          gateway: [10.1.0.254, "2001:db8::fe"]
        """))
    h1 = topo.host("h1")
    assert [str(a) for a in h1.addresses] == ["10.0.0.1/24", "2001:db8::1/64", "10.1.0.1/16"]
    assert [str(g) for g in h1.gateways] == ["10.1.0.254", "2001:db8::fe"]
    assert str(h1.ip) == "10.0.0.1/24"


def test_ipv6_gateway_may_be_link_local():
    topo = parse_topology(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: "2001:db8::1/64", gateway: "fe80::1"}
        """))
    assert [str(g) for g in topo.host("h1").gateways] == ["fe80::1"]


def test_slaac_host_needs_no_address():
    topo = parse_topology(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", slaac: true}
        """))
    h1 = topo.host("h1")
    assert h1.slaac and h1.addresses == () and h1.ip is None
    both = parse_topology(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, gateway: 10.0.0.254, slaac: true}
        """)).host("h1")
    assert both.slaac and [str(g) for g in both.gateways] == ["10.0.0.254"]


def test_loopback_run_and_inline_frr():
    text = host_file("""\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          loopback: [198.51.100.1/24, "2001:db8:ff::1/128"]
          run: python3 -m http.server 8000
          frr:
            daemons: [bgpd]
            config: |
              router bgp 65001
               no bgp ebgp-requires-policy
        """)
    h1 = parse_topology(text, "lab.yaml").host("h1")
    assert [str(a) for a in h1.loopback] == ["198.51.100.1/24", "2001:db8:ff::1/128"]
    assert h1.run == "python3 -m http.server 8000"
    assert h1.frr.daemons == ("zebra", "bgpd")
    assert h1.frr.text == "router bgp 65001\n no bgp ebgp-requires-policy\n"
    # the config's first line is the line after `config: |`
    assert h1.frr.first_line == line_with(text, "router bgp 65001")
    assert (h1.frr.source, h1.frr.field) == ("lab.yaml", "hosts[0].frr.config")


def test_run_as_a_list_keeps_numbers_as_written():
    h1 = parse_topology(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, run: [iperf3, -s, -p, 05201]}
        """)).host("h1")
    assert h1.run == ("iperf3", "-s", "-p", "05201")


def test_frr_file_is_relative_to_the_topology_file(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "r1.conf").write_text("router bgp 65001\n")
    topo_file = tmp_path / "lab.yaml"
    topo_file.write_text(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, frr: {file: conf/r1.conf}}
        """))
    h1 = load_topology(topo_file).host("h1")
    assert h1.frr.text == "router bgp 65001\n"
    assert h1.frr.daemons == ("zebra", *DEFAULT_FRR_DAEMONS)
    assert (h1.frr.source, h1.frr.first_line) == (str(tmp_path / "conf" / "r1.conf"), 1)


def test_bgp_example_is_valid():
    topo = load_topology(EXAMPLES / "bgp.yaml")
    r1, r2, h1, web = (topo.host(n) for n in ("r1", "r2", "h1", "web"))
    assert [str(a) for a in r1.addresses] == ["10.0.0.1/24", "2001:db8:1::1/64"]
    assert "neighbor 10.0.0.2 remote-as 65002" in r1.frr.text
    assert "neighbor 10.0.0.1 remote-as 65001" in r2.frr.text
    assert [str(a) for a in r2.loopback] == ["203.0.113.1/24"]
    assert h1.slaac and web.run.startswith("python3 -m http.server")


# -- the plan, the record and the namespace's settings ------------------------------------


def test_plan_and_record_carry_the_new_fields():
    topo = parse_topology(host_file("""\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.1/24, "2001:db8::1/64"]
          gateway: ["2001:db8::fe", 10.0.0.254]
          loopback: 192.0.2.1/32
          run: [sleep, "600"]
          frr: {config: "router bgp 1\\n"}
        """), "lab.yaml")
    [host] = make_plan(topo).hosts
    assert host.topology == topo.name and host.forwarding
    record = host.record()
    assert record["ip"] == "10.0.0.1/24" and record["gateway"] == "2001:db8::fe"
    assert record["addresses"] == ["10.0.0.1/24", "2001:db8::1/64"]
    assert record["gateways"] == ["2001:db8::fe", "10.0.0.254"]
    assert record["loopback"] == ["192.0.2.1/32"] and record["slaac"] is False
    full = Network(topo)._record("up")["hosts"]["h1"]
    assert full["run"]["command"] == ["sleep", "600"] and full["run"]["log"].endswith("/h1/run.log")
    assert full["frr"]["pathspace"] == host.netns and full["frr"]["daemons"] == list(DEFAULT_DAEMONS)
    back = _host_from_record(full)
    assert back.addresses == host.addresses and back.gateways == host.gateways
    assert back.loopback == host.loopback and back.frr.daemons == DEFAULT_DAEMONS
    assert back.run == ("sleep", "600")


def test_a_record_from_before_lists_still_reads():
    old = {"name": "h1", "netns": "lab-h1", "ifname": "eth0", "mac": "00:00:00:00:00:01",
           "ip": "10.0.0.1/24", "gateway": "10.0.0.254", "switch": "s1", "port": 1}
    host = _host_from_record(old)
    assert host.addresses == (ipaddress.ip_interface("10.0.0.1/24"),)
    assert host.gateways == (ipaddress.ip_address("10.0.0.254"),)
    assert host.topology == "lab" and host.frr is None


def test_sysctls_slaac_router_and_plain_host():
    topo = parse_topology(HEAD.replace("links:\n  - {src: h1, dst: s1}\n", "links:\n"
                                       "  - {src: h1, dst: s1}\n  - {src: r1, dst: s1}\n") + textwrap.dedent("""\
        - {name: h1, mac: "00:00:00:00:00:01", slaac: true}
        - {name: r1, mac: "00:00:00:00:00:02", ip: 10.0.0.1/24, frr: {config: "router bgp 1"}}
        """))
    h1, r1 = make_plan(topo).hosts
    assert host_sysctls(h1) == ["net.ipv6.conf.eth0.accept_ra=2", "net.ipv6.conf.eth0.autoconf=1",
                                "net.ipv6.conf.eth0.accept_dad=0",
                                "net.ipv6.conf.eth0.router_solicitation_delay=0"]
    assert host_sysctls(r1) == ["net.ipv6.conf.eth0.accept_ra=0", "net.ipv6.conf.eth0.autoconf=0",
                                "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]


# -- bad input: file:line: field: message ----------------------------------------------

CASES = {
    "bad address in a list": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip:
            - 10.0.0.1/24
            - 10.0.0.300/24   #!
        """,
        "hosts[0].ip[1]: '10.0.0.300/24' is not an IP address with prefix length",
    ),
    "ipv6 without prefix": (
        """\
        - {name: h1, mac: "00:00:00:00:00:01", ip: ["2001:db8::1"]}   #!
        """,
        "hosts[0].ip[0]: '2001:db8::1' needs a prefix length, e.g. 2001:db8::1/64",
    ),
    "same address twice in one host": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.1/24,
               10.0.0.1/16]   #!
        """,
        "hosts[0].ip[1]: address 10.0.0.1 is already used by hosts[0]",
    ),
    "link-local address": (
        """\
        - {name: h1, mac: "00:00:00:00:00:01", ip: "fe80::5/64"}   #!
        """,
        "hosts[0].ip: fe80::5 is link-local",
    ),
    "empty address list": (
        """\
        - {name: h1, mac: "00:00:00:00:00:01", ip: []}   #!
        """,
        "hosts[0].ip: at least one address is needed (or slaac: true)",
    ),
    "no address and no slaac": (
        """\
        - {name: h1, mac: "00:00:00:00:00:01"}   #!
        """,
        "hosts[0].ip: missing required field (an address, or slaac: true)",
    ),
    "ip is a mapping": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: {v4: 10.0.0.1/24}   #!
        """,
        "hosts[0].ip: expected a list, got a mapping",
    ),
    "ipv6 gateway of an ipv4-only host": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          gateway: "2001:db8::1"   #!
        """,
        "hosts[0].gateway: 2001:db8::1: the host has no IPv6 address",
    ),
    "gateway outside every subnet of its family": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.1/24, 10.1.0.1/24, "2001:db8::1/64"]
          gateway: [10.2.0.1]   #!
        """,
        "hosts[0].gateway[0]: 10.2.0.1 is not in any of the host's IPv4 subnets (10.0.0.0/24, 10.1.0.0/24)",
    ),
    "ipv6 gateway outside the subnet": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.1/24, "2001:db8::1/64"]
          gateway: [10.0.0.254, "2001:db9::1"]   #!
        """,
        "hosts[0].gateway[1]: 2001:db9::1 is not in the host's subnet 2001:db8::/64",
    ),
    "two gateways of one family": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          gateway:
            - 10.0.0.253
            - 10.0.0.254   #!
        """,
        "hosts[0].gateway[1]: a second IPv4 gateway (the first is 10.0.0.253)",
    ),
    "gateway is the host's own second address": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.1/24, 10.0.0.2/24]
          gateway: 10.0.0.2   #!
        """,
        "hosts[0].gateway: 10.0.0.2 is the host's own address",
    ),
    "ipv6 gateway with slaac": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          slaac: true
          gateway: "fe80::1"   #!
        """,
        "hosts[0].gateway: fe80::1: with slaac: true the IPv6 default route comes from router advertisements",
    ),
    "slaac not a boolean": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          slaac: yes please   #!
        """,
        "hosts[0].slaac: expected true or false, got 'yes please'",
    ),
    "loopback address taken by another host": (
        """\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24}
        - name: h2
          mac: "00:00:00:00:00:02"
          ip: 10.0.0.2/24
          loopback: [10.0.0.1/32]   #!
        """,
        "hosts[1].loopback[0]: address 10.0.0.1 is already used by hosts[0]",
    ),
    "loopback overlapping eth0": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          loopback: 10.0.0.200/32   #!
        """,
        "hosts[0].loopback: 10.0.0.200/32 overlaps eth0's subnet 10.0.0.0/24",
    ),
    "loopback is 127.0.0.1": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          loopback: [192.0.2.1/32, 127.0.0.2/8]   #!
        """,
        "hosts[0].loopback[1]: 127.0.0.2 cannot be a host address",
    ),
    "empty run": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          run: "  "   #!
        """,
        "hosts[0].run: an empty command",
    ),
    "empty run list": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          run: []   #!
        """,
        "hosts[0].run: an empty command",
    ),
    "run list with a mapping": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          run:
            - python3
            - {m: http.server}   #!
        """,
        "hosts[0].run[1]: expected a string, got a mapping",
    ),
    "frr as a string": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr: r1.conf   #!
        """,
        "hosts[0].frr: expected a mapping: config: (the frr.conf text) or file: (a path to it)",
    ),
    "frr with both config and file": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr: {config: "router bgp 1", file: r1.conf}   #!
        """,
        "hosts[0].frr: give the configuration once: config: (frr.conf text) or file: (a path to it)",
    ),
    "frr with neither": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr: {daemons: [bgpd]}   #!
        """,
        "hosts[0].frr: give the configuration once",
    ),
    "frr misspelt key": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr:
            confg: "router bgp 1"   #!
        """,
        "hosts[0].frr.confg: unknown field (allowed: config, file, daemons); did you mean 'config'?",
    ),
    "frr unknown daemon": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr:
            config: "router bgp 1"
            daemons: [bgpd, bgp]   #!
        """,
        "hosts[0].frr.daemons[1]: 'bgp' is not an FRR daemon",
    ),
    "frr file missing": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr: {file: no-such-r1.conf}   #!
        """,
        "hosts[0].frr.file: cannot read",
    ),
    "frr empty config": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr: {config: ""}   #!
        """,
        "hosts[0].frr: the FRR configuration is empty",
    ),
    "misspelt host field": (
        """\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          loopbak: 192.0.2.1/32   #!
        """,
        "hosts[0].loopbak: unknown field (allowed: name, mac, ip, gateway, slaac, loopback, run, frr, port); "
        "did you mean 'loopback'?",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_names_file_line_and_field(case):
    host_yaml, expected = CASES[case]
    text = host_file(host_yaml)
    if "h2" in host_yaml:
        text = text.replace("  - {src: h1, dst: s1}\n", "  - {src: h1, dst: s1}\n  - {src: h2, dst: s1}\n")
    issues = errors_of(text, "topo.yaml")
    wanted = f"topo.yaml:{marked_line(text)}: {expected}"
    assert any(issue.startswith(wanted) for issue in issues), "\n".join(issues)


def test_a_config_line_for_a_daemon_not_running_is_refused(tmp_path):
    # vtysh would drop such a line silently: the route or the session would just be missing
    text = host_file("""\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr:
            daemons: []
            config: |
              router bgp 65001
               neighbor 10.0.0.2 remote-as 65002
              ip route 192.0.2.0/24 blackhole
              ipv6 route 2001:db8:9::/48 blackhole
        """)
    issues = errors_of(text, "lab.yaml")
    assert issues == [
        f"lab.yaml:{line_with(text, 'router bgp 65001')}: hosts[0].frr.config: "
        "line 1 ('router bgp 65001') needs bgpd, which is not in hosts[0].frr.daemons",
        f"lab.yaml:{line_with(text, 'ip route 192.0.2.0/24 blackhole')}: hosts[0].frr.config: "
        "line 3 ('ip route 192.0.2.0/24 blackhole') needs staticd, which is not in hosts[0].frr.daemons",
        f"lab.yaml:{line_with(text, 'ipv6 route 2001:db8:9::/48 blackhole')}: hosts[0].frr.config: "
        "line 4 ('ipv6 route 2001:db8:9::/48 blackhole') needs staticd, which is not in hosts[0].frr.daemons",
    ]
    # the default daemons take both; a file is named with its own line numbers
    assert parse_topology(text.replace("    daemons: []\n", "")).host("h1").frr.daemons == DEFAULT_DAEMONS
    (tmp_path / "r1.conf").write_text("!\nrouter ospf\n")
    (tmp_path / "lab.yaml").write_text(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, frr: {file: r1.conf}}
        """))
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "lab.yaml")
    assert str(info.value) == (f"{tmp_path / 'r1.conf'}:2: hosts[0].frr.file: line 2 ('router ospf') needs ospfd, "
                               "which is not in hosts[0].frr.daemons")


def test_hosts_that_are_api_ports_may_share_addresses():
    # two projects with the same subnets (the API keeps addresses unique per network)
    text = """\
switches: [{name: s1}]
hosts:
  - {name: h1, mac: "fa:16:3e:01:00:05", ip: 10.0.1.5/24, gateway: 10.0.1.1, port: red-h1}
  - {name: b1, mac: "fa:16:3e:0b:01:05", ip: 10.0.1.5/24, gateway: 10.0.1.1, port: blue-b1}
  - {name: x1, mac: "fa:16:3e:0c:01:05", ip: 10.0.1.6/24}
links: [{src: h1, dst: s1}, {src: b1, dst: s1}, {src: x1, dst: s1}]
"""
    topo = parse_topology(text)
    assert topo.host("h1").ip == topo.host("b1").ip
    # a host that is no API port still may not repeat an address, nor repeat its own
    clash = text.replace("ip: 10.0.1.6/24}", "ip: 10.0.1.5/24}   #!")
    assert errors_of(clash) == [f"topo.yaml:{marked_line(clash)}: hosts[2].ip: address 10.0.1.5 is already used by hosts[0]"]
    twice = text.replace("ip: 10.0.1.5/24, gateway: 10.0.1.1, port: blue-b1}",
                         "ip: [10.0.1.5/24, 10.0.1.5/16], port: blue-b1}   #!")
    assert errors_of(twice) == [
        f"topo.yaml:{marked_line(twice)}: hosts[1].ip[1]: address 10.0.1.5 is already used by hosts[1]"]


def test_every_bad_address_is_reported_at_once():
    text = host_file("""\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: [10.0.0.0/24, "2001:db8::1"]
          loopback: [300.0.0.1/32]
        """)
    issues = errors_of(text)
    assert [i.split(": ", 2)[1] for i in issues] == ["hosts[0].ip[0]", "hosts[0].ip[1]", "hosts[0].loopback[0]"]


# -- FRR's own check of a configuration (vtysh --dryrun), when FRR is installed ----------

_STRICT = any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"} for v in ("CI", "KUMOFLOW_STRICT"))


@pytest.fixture
def vtysh():
    """FRR's vtysh on PATH, or the test skips (fails in CI, like the suite's markers)."""
    if shutil.which("vtysh") is None:
        message = "FRR's vtysh is not installed (`make test` installs the frr package)"
        if _STRICT:
            pytest.fail(f"requirement not met in CI, refusing to skip: {message}", pytrace=False)
        pytest.skip(message)


needs_vtysh = pytest.mark.usefixtures("vtysh")


@needs_vtysh
def test_frr_dry_run_reports_the_refused_lines_in_the_topology_file():
    from kumoflow.net.services import frr_config_issues

    text = host_file("""\
        - name: h1
          mac: "00:00:00:00:00:01"
          ip: 10.0.0.1/24
          frr:
            config: |
              router bgp 65001
               neighbour 10.0.0.2 remote-as 65002
               no bgp ebgp-requires-policy
        """)
    h1 = parse_topology(text, "lab.yaml").host("h1")
    issues = [str(i) for i in frr_config_issues("h1", h1.frr)]
    line = line_with(text, "neighbour 10.0.0.2 remote-as 65002")
    assert len(issues) == 1, issues
    assert issues[0].startswith(f"lab.yaml:{line}: hosts[0].frr.config: FRR refuses line 2 (h1): ")
    assert "neighbour 10.0.0.2" in issues[0]
    good = parse_topology(text.replace("neighbour", "neighbor"), "lab.yaml").host("h1")
    assert frr_config_issues("h1", good.frr) == []
    example = load_topology(EXAMPLES / "bgp.yaml")
    assert [frr_config_issues(h.name, h.frr) for h in example.hosts if h.frr] == [[], []]


@needs_vtysh
def test_frr_dry_run_of_a_file_names_the_file(tmp_path):
    from kumoflow.net.services import frr_config_issues

    conf = tmp_path / "r1.conf"
    conf.write_text("! r1\nrouter bgp 65001\n bogus command\n")
    (tmp_path / "lab.yaml").write_text(host_file("""\
        - {name: h1, mac: "00:00:00:00:00:01", ip: 10.0.0.1/24, frr: {file: r1.conf}}
        """))
    h1 = load_topology(tmp_path / "lab.yaml").host("h1")
    [issue] = frr_config_issues("h1", h1.frr)
    assert str(issue).startswith(f"{conf}:3: hosts[0].frr.file: FRR refuses line 3 (h1): ")
