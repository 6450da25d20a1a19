"""A developer's measure of address-set aggregation (kumoflow.apps.addresses): N random
country-like CIDRs (runs of /16../24 allocations inside a few /8s, as registries hand them out)
-> how many prefixes the aggregate has, how long parsing and aggregating take; Python's
``ipaddress.collapse_addresses`` on the same input as a cross-check (same prefixes) and a
reference time. Not an entry point (no peer switch): ``python benchmarks/firewall/_aggregate.py
[--count 10000] [--seed 16]``."""

from __future__ import annotations

import argparse
import ipaddress
import random
import time

from kumoflow.apps.addresses import aggregate, parse_lines, subtract

FIRST_OCTETS = (2, 5, 31, 46, 77, 78, 79, 80, 85, 87, 91, 109, 176, 185, 188, 193, 194, 212, 217)
LENGTHS = (24, 24, 24, 23, 22, 22, 21, 20, 19, 16)


def country_like(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        length = rng.choice(LENGTHS)
        rest = rng.getrandbits(24) >> (32 - length) << (32 - length)
        lines.append(f"{ipaddress.IPv4Address((rng.choice(FIRST_OCTETS) << 24) | rest)}/{length}")
    return lines


def best_of(fn, runs: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=16)
    args = p.parse_args()
    lines = country_like(args.count, args.seed)
    t_parse, networks = best_of(lambda: parse_lines(lines, "random"))
    t_agg, merged = best_of(lambda: aggregate(networks))
    t_std, collapsed = best_of(lambda: list(ipaddress.collapse_addresses(networks)))
    assert merged == collapsed, "aggregate and ipaddress.collapse_addresses differ"
    t_sub, rest = best_of(lambda: subtract([ipaddress.ip_network("0.0.0.0/0")], networks))
    print(f"{args.count} CIDRs -> {len(merged)} prefixes ({len(set(networks))} distinct given)")
    print(f"parse      {t_parse * 1e3:8.1f} ms")
    print(f"aggregate  {t_agg * 1e3:8.1f} ms   (ipaddress.collapse_addresses {t_std * 1e3:.1f} ms, same prefixes)")
    print(f"everything except them: {len(rest)} prefixes in {t_sub * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
