"""veth pairs: create them, turn their offloads off, find and delete them.

All of this runs in the root network namespace through pyroute2 (netlink
for links, the ethtool ioctl for features). A host's end is configured here
too -- offloads, alias -- and only then moved into the host's namespace
under its final name, so nothing has to run inside the namespace for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyroute2 import Ethtool, IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kumoflow.net.errors import NetError
from kumoflow.net.plan import LinkPlan, Names

ENODEV = 19
EEXIST = 17

#: feature-name prefixes turned off when offloads are disabled: what
#: ``ethtool -K IF tx off rx off sg off tso off gso off gro off lro off``
#: switches off, named the way the kernel lists them.
OFFLOAD_FEATURE_PREFIXES = (
    "tx-checksum",          # tx: checksums the stack leaves to the "NIC"
    "tx-scatter-gather",    # sg
    "tx-gso",               # gso partial / list
    "tx-generic-segmentation",
    "rx-checksum",          # rx
    "rx-gro",               # gro, gro-list
    "rx-udp-gro",
    "rx-lro",
)
OFFLOAD_FEATURE_SUFFIXES = ("-segmentation",)  # tso and friends


def offload_features(names: Iterable[str]) -> list[str]:
    """The features among ``names`` that disabling offloads turns off."""
    return [
        n
        for n in names
        if n.startswith(OFFLOAD_FEATURE_PREFIXES) or n.endswith(OFFLOAD_FEATURE_SUFFIXES)
    ]


def disable_offloads(ethtool: Ethtool, ifname: str) -> None:
    features = ethtool.get_features(ifname)
    changed = False
    for name in offload_features(features.features):
        feature = features.features[name]
        if feature.available and feature.enable:
            feature.enable = False
            changed = True
    if changed:
        ethtool.set_features(ifname, features)


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def create_link(ipr: IPRoute, ethtool: Ethtool, link: LinkPlan, names: Names, offloads: bool) -> None:
    """Create the veth pair of ``link`` (MACs and MTU as planned); an end
    with a namespace is moved there (still down, under its final name), an
    end without is left up in the root namespace."""
    try:
        ipr.link("add", ifname=link.a.ifname, kind="veth", peer={"ifname": link.b.ifname})
    except NetlinkError as exc:
        if exc.code == EEXIST:
            raise NetError(
                f"interface {link.a.ifname} or {link.b.ifname} already exists "
                f"(is topology {names.topology!r} already up? `kumoflow down` removes it)"
            ) from exc
        raise NetError(f"cannot create veth {link.a.ifname}/{link.b.ifname}: {exc}") from exc
    for end in (link.a, link.b):
        index = _index(ipr, end.ifname)
        ipr.link("set", index=index, ifalias=names.alias)
        if not offloads:
            try:
                disable_offloads(ethtool, end.ifname)
            except Exception as exc:  # pyroute2 raises plain OSError/others here
                raise NetError(f"cannot turn off offloads on {end.ifname}: {exc}") from exc
    for end in (link.a, link.b):
        index = _index(ipr, end.ifname)
        if end.mac:
            ipr.link("set", index=index, address=end.mac)
        if link.mtu:
            ipr.link("set", index=index, mtu=link.mtu)
    for end in (link.b, link.a):
        if end.netns is not None:
            try:
                ipr.link("set", index=_index(ipr, end.ifname), net_ns_fd=end.netns, ifname=end.final_ifname)
            except NetlinkError as exc:
                raise NetError(f"cannot move {end.ifname} into namespace {end.netns}: {exc}") from exc
        else:
            _no_ipv6(end.ifname)
            ipr.link("set", index=_index(ipr, end.ifname), state="up")


def _no_ipv6(ifname: str) -> None:
    """Switch ports are not hosts: without this the kernel sends IPv6
    autoconfiguration and MLD packets from them, which a learning switch
    would learn as phantom hosts."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass   # no IPv6 in this kernel: nothing to silence


def delete_links(ipr: IPRoute, ifnames: Iterable[str]) -> list[str]:
    """Delete the named root-namespace interfaces that exist (deleting one
    veth end deletes its peer too). Returns what was deleted."""
    removed = []
    for ifname in ifnames:
        index = _index(ipr, ifname)
        if index is None:
            continue
        try:
            ipr.link("del", index=index)
            removed.append(f"link {ifname}")
        except NetlinkError as exc:
            if exc.code != ENODEV:  # its peer went first
                raise
    return removed


def owned_links(ipr: IPRoute, names: Names) -> list[str]:
    """Root-namespace veths of the topology: marked with its alias, or named
    with its prefix."""
    found = []
    for msg in ipr.get_links():
        ifname = msg.get_attr("IFLA_IFNAME")
        alias = msg.get_attr("IFLA_IFALIAS")
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if alias == names.alias or (kind == "veth" and names.owns_ifname(ifname)):
            found.append(ifname)
    return found


def existing(ipr: IPRoute, ifnames: Iterable[str]) -> list[str]:
    return [n for n in ifnames if _index(ipr, n) is not None]
