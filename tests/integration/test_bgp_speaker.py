"""The BGP speaker against a real FRR peer (root): two namespaces joined by a veth, a peer FRR
(AS 65001) in one announcing prefixes from static blackhole routes and network statements, the
kumoflow Speaker (AS 65002, FRR with FPM to this process) in the other. The callback receives
the peer's prefixes with the peer as next hop and the deletes once the peer withdraws them; the
peer learns the cloud's prefixes with the cloud router's address as next hop (third party),
not the speaker's; a peer that stops answering loses its routes after the hold time (3 s)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kumoflow.bgp.frr import FrrRouter
from kumoflow.bgp.speaker import FRR_DIR, Speaker, SpeakerError, listen_in_namespace

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not (FRR_DIR / "bgpd").exists(), reason="needs Debian's frr package")]

PEER_V4, CLOUD_V4, GATEWAY_V4 = "10.200.0.1", "10.200.0.2", "10.200.0.10"
PEER_V6, CLOUD_V6, GATEWAY_V6 = "fd00:200::1", "fd00:200::2", "fd00:200::10"
PEER_PREFIXES = ["203.0.113.0/24", "198.51.100.0/25", "2001:db8:1::/48"]
CLOUD_PREFIXES = [("10.50.0.0/24", GATEWAY_V4), ("10.51.0.0/16", GATEWAY_V4), ("2001:db8:50::/64", GATEWAY_V6)]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def pair(unique_name):
    """(peer namespace, speaker namespace, veth name in the speaker's) joined by a veth."""
    peer_ns, cloud_ns, veth = unique_name("bgpp"), unique_name("bgpc"), unique_name("vb")
    try:
        sh("ip", "netns", "add", peer_ns)
        sh("ip", "netns", "add", cloud_ns)
        sh("ip", "link", "add", veth + "a", "netns", peer_ns, "type", "veth", "peer", "name", veth + "b",
           "netns", cloud_ns)
        for ns, dev, v4, v6 in ((peer_ns, veth + "a", PEER_V4, PEER_V6), (cloud_ns, veth + "b", CLOUD_V4, CLOUD_V6)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", v4 + "/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", v6 + "/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield peer_ns, cloud_ns, veth + "b"
    finally:
        for ns in (peer_ns, cloud_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def peer_configs(cloud_v4: str = CLOUD_V4, cloud_v6: str = CLOUD_V6) -> dict[str, str]:
    return {
        "staticd": "\n".join(f"{'ipv6' if ':' in p else 'ip'} route {p} blackhole" for p in PEER_PREFIXES),
        "bgpd": f"""router bgp 65001
 bgp router-id {PEER_V4}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 timers bgp 1 3
 neighbor {cloud_v4} remote-as 65002
 neighbor {cloud_v6} remote-as 65002
 address-family ipv4 unicast
  network 203.0.113.0/24
  network 198.51.100.0/25
  neighbor {cloud_v4} activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:1::/48
  neighbor {cloud_v6} activate
 exit-address-family
exit
"""}


class Recorder:
    """The callback: every batch kept, the learned set followed."""

    def __init__(self) -> None:
        self.batches: list[tuple[list, list]] = []
        self.now: dict = {}
        self.changed = asyncio.Event()

    def __call__(self, adds, deletes) -> None:
        self.batches.append((adds, deletes))
        for r in deletes:
            assert r.action == "delete"
            self.now.pop(r.prefix, None)
        for r in adds:
            assert r.action == "add" and r.protocol == 186
            self.now[r.prefix] = r
        self.changed.set()

    async def until(self, test, timeout: float = 30.0, what: str = "") -> float:
        t0 = time.monotonic()
        while not test(self.now):
            self.changed.clear()
            remaining = timeout - (time.monotonic() - t0)
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}: learned now {sorted(map(str, self.now))}")
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
        return time.monotonic() - t0


async def until(coro_fn, timeout: float = 30.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        result = await coro_fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def test_the_fpm_socket_is_made_in_the_namespace(pair):
    peer_ns, cloud_ns, _ = pair
    sock = listen_in_namespace(cloud_ns, "127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        listening = sh("ip", "netns", "exec", cloud_ns, "ss", "-Hltn")
        assert f"127.0.0.1:{port}" in listening
        assert f"127.0.0.1:{port}" not in sh("ss", "-Hltn")            # not in ours
    finally:
        sock.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_learns_withdraws_announces_and_loses_on_hold_time(pair, loop):
    """Under the standard event loop and under uvloop (the controller's)."""
    peer_ns, cloud_ns, cloud_dev = pair

    async def body():
        ifindex = int(sh("ip", "netns", "exec", cloud_ns, "cat", f"/sys/class/net/{cloud_dev}/ifindex"))
        peer_ll = sh("ip", "-n", peer_ns, "-6", "-o", "addr", "show", "scope", "link").split()[3].split("/")[0]
        got = Recorder()
        peer = FrrRouter(peer_ns, peer_configs())
        speaker = Speaker(got, namespace=cloud_ns)
        try:
            await peer.start()
            await speaker.start()
            await speaker.configure(65002, CLOUD_V4, peers=[(PEER_V4, 65001), (PEER_V6, 65001, None)],
                                    announced=CLOUD_PREFIXES, timers=(1, 3))
            await speaker.configure(65002, CLOUD_V4, peers=[(PEER_V4, 65001), (PEER_V6, 65001, None)],
                                    announced=CLOUD_PREFIXES, timers=(1, 3))        # again: nothing changes
            wanted = {ipaddress.ip_network(p) for p in PEER_PREFIXES}
            await got.until(lambda now: set(now) == wanted, what="the peer's prefixes")
            for prefix, route in got.now.items():
                [hop] = route.nexthops
                if prefix.version == 4:
                    assert hop.gateway == ipaddress.ip_address(PEER_V4)
                else:                    # FRR prefers the peer's link-local address on a shared link
                    assert hop.gateway in (ipaddress.ip_address(PEER_V6), ipaddress.ip_address(peer_ll))
                assert hop.ifindex == ifindex
                assert route.table == 254
            sessions = await speaker.peers()
            assert [(p["peer_ip"], p["remote_as"], p["state"]) for p in sessions] == [
                (PEER_V4, 65001, "Established"), (PEER_V6, 65001, "Established")]
            assert sum(p["received"] for p in sessions) == 3

            # the peer learns the cloud's prefixes, the cloud router's address as next hop
            async def peer_sees():
                seen = {}
                for af in ("ipv4", "ipv6"):
                    table = (await peer.vtysh_json(f"show bgp {af} unicast json")).get("routes", {})
                    for prefix, paths in table.items():
                        seen[prefix] = sorted({h["ip"] for path in paths for h in path.get("nexthops", [])
                                               if h.get("scope", "global") == "global"})
                return seen if all(p in seen for p, _ in CLOUD_PREFIXES) else None
            seen = await until(peer_sees, what="the peer learning the cloud's prefixes")
            for prefix, hop in CLOUD_PREFIXES:
                assert seen[prefix] == [hop], (prefix, seen[prefix])
            assert not any(p in seen for p in ("10.200.0.0/24",))     # nothing but what was announced

            # a change: one prefix less announced, one peer's password set on both sides later
            await speaker.configure(65002, CLOUD_V4, peers=[(PEER_V4, 65001), (PEER_V6, 65001)],
                                    announced=CLOUD_PREFIXES[1:], timers=(1, 3))
            async def peer_dropped():
                table = (await peer.vtysh_json("show bgp ipv4 unicast json")).get("routes", {})
                return "10.50.0.0/24" not in table and "10.51.0.0/16" in table
            await until(peer_dropped, what="the peer losing 10.50.0.0/24")

            # the peer withdraws: the callback gets the deletes
            got.batches.clear()
            await peer.vtysh("configure terminal", "router bgp 65001", "address-family ipv4 unicast",
                             "no network 198.51.100.0/25")
            await got.until(lambda now: ipaddress.ip_network("198.51.100.0/25") not in now, what="the withdrawal")
            deleted = [r.prefix for adds, deletes in got.batches for r in deletes]
            assert deleted == [ipaddress.ip_network("198.51.100.0/25")]
            assert len(got.now) == 2

            # the peer stops answering: its routes go after the hold time (3 s), not before
            os.kill(peer.pid("bgpd"), signal.SIGSTOP)
            t0 = time.monotonic()
            await got.until(lambda now: not now, timeout=20, what="the hold timer")
            waited = time.monotonic() - t0
            assert 1.5 < waited < 10, waited
            os.kill(peer.pid("bgpd"), signal.SIGCONT)
            # it comes back: the routes come back
            await got.until(lambda now: len(now) == 2, timeout=30, what="the session back")
        finally:
            await speaker.stop()
            await peer.stop()
        assert not got.now          # stop hands every learned route on as a delete
        assert not speaker.pathspace.exists() and not speaker.run_dir.exists()

    if loop == "uvloop":
        import uvloop
        uvloop.run(body())
    else:
        asyncio.run(body())


def test_a_refused_configuration_is_an_error_and_a_bad_one_is_not_sent(pair):
    peer_ns, cloud_ns, _ = pair

    async def body():
        speaker = Speaker(lambda adds, deletes: None, namespace=cloud_ns)
        await speaker.start()
        try:
            with pytest.raises(ValueError):
                await speaker.configure(65002, "not-an-address")
            with pytest.raises(ValueError):
                await speaker.configure(65002, CLOUD_V4, announced=[("10.0.0.0/8", "fd00::1")])
            await speaker.configure(65002, CLOUD_V4, peers=[(PEER_V4, 65001, "s3cret")])
            assert [p["state"] for p in await speaker.peers()] != []
            pids = dict(speaker._pids)
            with pytest.raises(SpeakerError):          # a second speaker on the same pathspace
                await Speaker(lambda a, d: None, namespace=cloud_ns).start()
            assert all(os.path.exists(f"/proc/{pid}") for pid in pids.values())   # it stopped nothing of ours
        finally:
            await speaker.stop()
        assert not any(os.path.exists(f"/proc/{pid}") and str(speaker.run_dir) in open(f"/proc/{pid}/cmdline").read()
                       for pid in pids.values())

    asyncio.run(body())


def test_no_namespace_is_an_error_and_leaves_nothing(unique_name):
    async def body():
        with pytest.raises(SpeakerError, match="does not exist"):
            await Speaker(lambda a, d: None, namespace=unique_name("none")).start()

    asyncio.run(body())


def test_an_md5_session_and_the_session_view(pair):
    peer_ns, cloud_ns, _ = pair

    async def body():
        configs = peer_configs()
        configs["bgpd"] = configs["bgpd"].replace(f" neighbor {CLOUD_V4} remote-as 65002\n",
                                                  f" neighbor {CLOUD_V4} remote-as 65002\n"
                                                  f" neighbor {CLOUD_V4} password k3y-0f-the-day\n")
        peer = FrrRouter(peer_ns, configs)
        speaker = Speaker(lambda adds, deletes: None, namespace=cloud_ns)
        try:
            await peer.start()
            await speaker.start()
            await speaker.configure(65002, CLOUD_V4, peers=[(PEER_V4, 65001, "k3y-0f-the-day")], timers=(1, 3))

            async def established():
                [session] = await speaker.peers()
                return session if session["state"] == "Established" and session["received"] == 2 else None
            session = await until(established, what="the MD5 session")
            assert session["peer_ip"] == PEER_V4 and session["remote_as"] == 65001
            assert session["established_s"] is not None and session["established_s"] >= 0
            # the password is nowhere in the run directory once applied
            assert not any("k3y" in p.read_text(errors="replace") for p in speaker.run_dir.iterdir() if p.is_file())
        finally:
            await speaker.stop()
            await peer.stop()

    asyncio.run(body())


SPEAKER_HERE = r'''
import asyncio, json, os, signal, sys
from kumoflow.bgp.speaker import Speaker

async def main():
    events = []
    def on_routes(adds, deletes):
        events.append(([str(r.prefix) for r in adds], [str(r.prefix) for r in deletes]))
    speaker = Speaker(on_routes, name=sys.argv[1])          # no namespace: this process's own
    await speaker.start()
    try:
        await speaker.configure(65002, sys.argv[2], peers=[(sys.argv[3], 65001)], timers=(1, 3))
        for _ in range(300):
            if len(speaker.learned) == 2:
                break
            await asyncio.sleep(0.1)
        learned = sorted(str(p) for _, p in speaker.learned)
        os.kill(speaker._pids["zebra"], signal.SIGKILL)     # zebra dies: the FPM stream ends
        for _ in range(100):
            if not speaker.learned:
                break
            await asyncio.sleep(0.1)
        print(json.dumps({"learned": learned, "after_zebra": sorted(str(p) for _, p in speaker.learned),
                          "events": events, "pids": list(speaker._pids.values())}))
    finally:
        await speaker.stop()

asyncio.run(main())
'''


def test_without_a_namespace_the_speaker_runs_in_the_controllers_own(pair, tmp_path):
    """The controller itself in the second namespace (ip netns exec), the Speaker given none; zebra
    killed: every learned route is handed on as a delete, and stop still stops the others."""
    peer_ns, cloud_ns, _ = pair

    async def body():
        peer = FrrRouter(peer_ns, peer_configs())
        try:
            await peer.start()
            script = tmp_path / "speaker_here.py"
            script.write_text(SPEAKER_HERE)
            name = f"kf-{cloud_ns}"
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", cloud_ns, sys.executable, str(script), name, CLOUD_V4, PEER_V4,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            return json.loads(out)
        finally:
            await peer.stop()

    result = asyncio.run(body())
    assert result["learned"] == ["198.51.100.0/25", "203.0.113.0/24"]
    assert result["after_zebra"] == []
    assert sorted(result["events"][-1][1]) == ["198.51.100.0/25", "203.0.113.0/24"]
    assert not any(os.path.exists(f"/proc/{pid}") and "frr" in open(f"/proc/{pid}/cmdline").read()
                   for pid in result["pids"])


def test_an_fpm_connection_that_is_not_zebras_is_closed(pair):
    peer_ns, cloud_ns, _ = pair

    async def body():
        got = []
        speaker = Speaker(lambda adds, deletes: got.append(adds), namespace=cloud_ns)
        await speaker.start()
        try:
            port = speaker._server.sockets[0].getsockname()[1]
            from kumoflow.bgp.fpm import ADD, Nexthop, Route, encode_route, frame
            forged = frame(encode_route(Route(ADD, ipaddress.ip_network("0.0.0.0/0"),
                                              (Nexthop(ipaddress.ip_address("10.200.0.66"), 2),))))
            code = (f"import socket, time\ns = socket.create_connection(('127.0.0.1', {port}))\n"
                    f"s.sendall(bytes.fromhex('{forged.hex()}'))\ntime.sleep(1)\n"
                    f"try:\n    print('closed' if s.recv(10) == b'' else 'open')\n"
                    f"except ConnectionResetError:\n    print('closed')\n")
            proc = await asyncio.create_subprocess_exec("ip", "netns", "exec", cloud_ns, sys.executable, "-c", code,
                                                        stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            assert out.strip() == b"closed"
            assert got == [] and not speaker.learned
            assert speaker._connected.is_set()          # zebra's own connection is still served
        finally:
            await speaker.stop()

    asyncio.run(body())


def test_two_peers_announcing_one_prefix_give_one_route_with_two_next_hops(unique_name):
    """ECMP from real FRR: zebra sends the route with RTA_MULTIPATH; then one peer withdraws and
    the route is handed on again with the other next hop alone."""
    p1, p2, cloud = unique_name("bgpp"), unique_name("bgpq"), unique_name("bgpc")
    va, vb = unique_name("vm"), unique_name("vn")
    nets = {p1: ("10.210.0.1", "10.210.0.2", va, 65001), p2: ("10.211.0.1", "10.211.0.2", vb, 65003)}

    async def body():
        got = Recorder()
        routers, speaker = [], Speaker(got, namespace=cloud)
        try:
            for ns, (peer_ip, cloud_ip, veth, asn) in nets.items():
                routers.append(FrrRouter(ns, {"staticd": "ip route 203.0.113.0/24 blackhole", "bgpd": f"""router bgp {asn}
 bgp router-id {peer_ip}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 timers bgp 1 3
 neighbor {cloud_ip} remote-as 65002
 address-family ipv4 unicast
  network 203.0.113.0/24
  neighbor {cloud_ip} activate
 exit-address-family
exit"""}))
                await routers[-1].start()
            await speaker.start()
            await speaker.configure(65002, "10.210.0.2", peers=[("10.210.0.1", 65001), ("10.211.0.1", 65003)],
                                    timers=(1, 3))
            prefix = ipaddress.ip_network("203.0.113.0/24")
            await got.until(lambda now: prefix in now and len(now[prefix].nexthops) == 2, what="two next hops")
            hops = got.now[prefix].nexthops
            assert sorted(str(h.gateway) for h in hops) == ["10.210.0.1", "10.211.0.1"]
            assert [h.weight for h in hops] == [1, 1] and len({h.ifindex for h in hops}) == 2
            await routers[1].vtysh("configure terminal", "router bgp 65003", "address-family ipv4 unicast",
                                   "no network 203.0.113.0/24")
            await got.until(lambda now: len(now[prefix].nexthops) == 1, what="one next hop left")
            assert str(got.now[prefix].nexthops[0].gateway) == "10.210.0.1"
        finally:
            await speaker.stop()
            for router in routers:
                await router.stop()

    try:
        for ns in (p1, p2, cloud):
            sh("ip", "netns", "add", ns)
        for ns, (peer_ip, cloud_ip, veth, _) in nets.items():
            sh("ip", "link", "add", veth + "a", "netns", ns, "type", "veth", "peer", "name", veth + "b", "netns", cloud)
            sh("ip", "-n", ns, "addr", "add", peer_ip + "/24", "dev", veth + "a")
            sh("ip", "-n", cloud, "addr", "add", cloud_ip + "/24", "dev", veth + "b")
            sh("ip", "-n", ns, "link", "set", veth + "a", "up")
            sh("ip", "-n", cloud, "link", "set", veth + "b", "up")
        asyncio.run(body())
    finally:
        for ns in (p1, p2, cloud):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
