"""The Speaker's logic without FRR (no root): what the callback gets from a batch of FPM routes
(net effect per prefix, the speaker's own routes left out, a learned prefix taken over by one of
ours handed on as a delete), the configuration lines a change produces (only the differences;
nothing for the same arguments), and bad arguments refused before anything is sent. The
daemons themselves are tests/integration/test_bgp_speaker.py."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from kumoflow.bgp.fpm import ADD, DELETE, Nexthop, Route
from kumoflow.bgp.speaker import Speaker

N = ipaddress.ip_network
HOP = (Nexthop(ipaddress.ip_address("192.0.2.254"), 2),)
OTHER = (Nexthop(ipaddress.ip_address("192.0.2.253"), 2),)


def bgp(prefix, hops=HOP, action=ADD):
    return Route(action, N(prefix), hops if action == ADD else (), 254, 186, 20)


def static(prefix):
    return Route(ADD, N(prefix), (), 254, 196, 0, 6)


def batches(*groups):
    got = []
    speaker = Speaker(lambda adds, deletes: got.append(([str(r.prefix) for r in adds],
                                                        [str(r.prefix) for r in deletes])))

    async def body():
        for group in groups:
            await speaker._deliver(group)
        await speaker._flush_learned()
    asyncio.run(body())
    return got


def test_the_net_effect_of_a_batch():
    assert batches([bgp("10.1.0.0/16"), bgp("10.1.0.0/16", action=DELETE), bgp("10.2.0.0/16"),
                    bgp("10.2.0.0/16", OTHER)]) == [(["10.2.0.0/16"], []), ([], ["10.2.0.0/16"])]


def test_own_routes_are_not_handed_on_and_one_taking_over_a_learned_prefix_deletes_it():
    assert batches([static("10.9.0.0/16"), bgp("10.1.0.0/16")], [static("10.1.0.0/16")]) == [
        (["10.1.0.0/16"], []), ([], ["10.1.0.0/16"])]


def test_the_same_route_again_is_not_a_change_but_new_next_hops_are():
    assert batches([bgp("10.1.0.0/16")], [bgp("10.1.0.0/16")], [bgp("10.1.0.0/16", OTHER)],
                   [bgp("10.3.0.0/16", action=DELETE)]) == [
        (["10.1.0.0/16"], []), (["10.1.0.0/16"], []), ([], ["10.1.0.0/16"])]


def test_an_async_callback_is_awaited_and_a_failing_one_does_not_stop_the_stream():
    seen = []

    async def slow(adds, deletes):
        await asyncio.sleep(0)
        seen.append(len(adds))
        raise RuntimeError("app bug")

    speaker = Speaker(slow)

    async def body():
        await speaker._deliver([bgp("10.1.0.0/16")])
        await speaker._deliver([bgp("10.2.0.0/16")])
    asyncio.run(body())
    assert seen == [1, 1] and len(speaker.learned) == 2


def config(**change):
    args = dict(local_as=65002, router_id="192.0.2.1", peers=[("192.0.2.254", 65001, None), ("2001:db8::1", 65001)],
                announced=[("10.50.0.0/24", "192.0.2.10"), ("2001:db8:50::/64", "2001:db8::10")], timers=(1, 3))
    args.update(change)
    return Speaker._desired(**args)


def test_the_first_configuration():
    lines = Speaker._commands(None, config())
    assert lines[:2] == ["ip route 10.50.0.0/24 192.0.2.10", "ipv6 route 2001:db8:50::/64 2001:db8::10"]
    text = "\n".join(lines)
    for expected in ("router bgp 65002", " no bgp ebgp-requires-policy", " bgp router-id 192.0.2.1",
                     " timers bgp 1 3", " neighbor 192.0.2.254 remote-as 65001", " neighbor 2001:db8::1 remote-as 65001",
                     " address-family ipv4 unicast\n  redistribute static\n  neighbor 192.0.2.254 activate\n"
                     "  neighbor 192.0.2.254 filter-list KUMOFLOW-LOCAL-ONLY out",
                     " address-family ipv6 unicast\n  redistribute static\n  neighbor 2001:db8::1 activate"):
        assert expected in text


def test_changes_are_only_the_differences():
    have = config()
    assert Speaker._commands(have, config()) == []
    assert Speaker._commands(have, config(peers=[("192.0.2.254", 65001, "pw"), ("2001:db8::1", 65001)])) == [
        "router bgp 65002", " neighbor 192.0.2.254 password pw", "exit"]
    assert Speaker._commands(have, config(announced=[("10.50.0.0/24", "192.0.2.10")])) == [
        "no ipv6 route 2001:db8:50::/64 2001:db8::10"]
    lines = Speaker._commands(have, config(peers=[("192.0.2.254", 65009)]))
    assert " no neighbor 2001:db8::1" in lines and " no neighbor 192.0.2.254" in lines
    assert " neighbor 192.0.2.254 remote-as 65009" in lines
    lines = Speaker._commands(have, config(local_as=65003))
    assert lines[0] == "no router bgp 65002" and "router bgp 65003" in lines and " timers bgp 1 3" in lines


@pytest.mark.parametrize("change", [
    {"local_as": 0}, {"local_as": 2**32}, {"router_id": "2001:db8::1"}, {"peers": [("10.0.0.300", 1)]},
    {"peers": [("10.0.0.1", 0)]}, {"peers": [("10.0.0.1", 1, "two words")]}, {"peers": [("10.0.0.1", 1)] * 2},
    {"announced": [("10.0.0.0/8", "2001:db8::1")]}, {"announced": [("10.0.0.1/8", "10.0.0.1")]},
    {"timers": (1, 2)}])
def test_bad_arguments_are_refused(change):
    with pytest.raises(ValueError):
        config(**change)
