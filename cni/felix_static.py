"""felix's static chains and its hooks into the built-in chains, per table.

felix/rules/static.go (StaticFilterForwardChains, filterInputChain, filterWorkloadToHostChain,
filterOutputChain, StaticFilterForwardAppendRules, StaticRawPreroutingChain,
StaticRawOutputChain, StaticManglePreroutingChain, StaticManglePostroutingChain,
StaticNAT*Chains), felix/rules/nat.go (NATOutgoingChain) and the hooks of
felix/dataplane/linux/int_dataplane.go setUpIptablesNormal: jumps inserted at the top of the
built-in chains, except nat POSTROUTING and filter FORWARD's accept rules, which are appended.
Host endpoints, failsafe ports and floating IPs have no configuration here, so their chains
are empty (or unreferenced, and felix does not program unreferenced chains).
"""

from __future__ import annotations

from .felix_text import (
    ALL_HOSTS,
    ALL_MARKS,
    ALL_POOLS,
    ALL_VXLAN,
    CIDR_BLOCK,
    FILTER_FORWARD,
    FILTER_INPUT,
    FILTER_OUTPUT,
    FIP_DNAT,
    FIP_SNAT,
    FROM_HEP_FORWARD,
    FROM_HOST_ENDPOINT,
    FROM_WORKLOAD_DISPATCH,
    IFACE_WILDCARD,
    MARK_ACCEPT,
    MARK_SCRATCH0,
    MASQ_POOLS,
    NAT_OUTGOING,
    OUTPUT,
    POSTROUTING,
    PREROUTING,
    PROTO_IPIP,
    RPF_SKIP,
    TO_HEP_FORWARD,
    TO_HOST_ENDPOINT,
    TO_WORKLOAD_DISPATCH,
    VXLAN_PORT,
    WORKLOAD_TO_HOST,
    R,
    Table,
    clear_mark,
    ctstate,
    ipset_name,
    mark_clear,
    mark_set,
    match_set,
    multiport,
    protocol_name,
    set_mark,
)

ICMPV6_ROUTER_TYPES = (130, 131, 132, 133, 135, 136)  # static.go ICMPv6Filter
HOST_ACCEPTED = "Host endpoint policy accepted packet."
IPIP = protocol_name(PROTO_IPIP)


def _vxlan_dport() -> str:
    return multiport("dports", [(VXLAN_PORT, VXLAN_PORT)])


def filter_table(family: int, ipip: bool, vxlan: bool) -> Table:
    """The filter table's static chains and hooks (the dispatch chains are added later)."""
    t = Table("filter")
    t.chain(FILTER_FORWARD, [
        R(target=clear_mark(ALL_MARKS & ~MARK_ACCEPT)),
        R((mark_clear(MARK_ACCEPT),), f"-j {FROM_HEP_FORWARD}"),
        R(target=f"-j {FROM_WORKLOAD_DISPATCH}", in_iface=IFACE_WILDCARD),
        R(target=f"-j {TO_WORKLOAD_DISPATCH}", out_iface=IFACE_WILDCARD),
        R(target=f"-j {TO_HEP_FORWARD}"),
        R(target=f"-j {CIDR_BLOCK}"),
    ])
    inp = t.chain(FILTER_INPUT)
    if ipip:
        inp += [R((match_set(ipset_name(4, ALL_HOSTS), "src"), "-m addrtype --dst-type LOCAL"),
                  "-j ACCEPT", proto=IPIP, comments=("Allow IPIP packets from Calico hosts",)),
                R(target="-j DROP", proto=IPIP,
                  comments=("Drop IPIP packets from non-Calico hosts",))]
    if vxlan:
        v = "IPv4" if family == 4 else "IPv6"
        inp += [R((_vxlan_dport(), match_set(ipset_name(family, ALL_VXLAN), "src"),
                   "-m addrtype --dst-type LOCAL"), "-j ACCEPT", proto="udp",
                  comments=(f"Allow {v} VXLAN packets from allowed hosts",)),
                R((_vxlan_dport(), "-m addrtype --dst-type LOCAL"), "-j DROP", proto="udp",
                  comments=(f"Drop {v} VXLAN packets from non-allowed hosts",))]
    inp += [R(target=f"-g {WORKLOAD_TO_HOST}", in_iface=IFACE_WILDCARD),
            R((mark_set(MARK_ACCEPT),), "-j ACCEPT"),
            R(target=clear_mark(ALL_MARKS)),
            R(target=f"-j {FROM_HOST_ENDPOINT}"),
            R((mark_set(MARK_ACCEPT),), "-j ACCEPT", comments=(HOST_ACCEPTED,))]
    to_host = t.chain(WORKLOAD_TO_HOST)
    if family == 6:
        to_host += [R((f"-m icmp6 --icmpv6-type {kind}",), "-j ACCEPT",
                      proto=protocol_name(58)) for kind in ICMPV6_ROUTER_TYPES]
    # DefaultEndpointToHostAction=ACCEPT, as Calico's install manifests set it.
    to_host += [R(target=f"-j {FROM_WORKLOAD_DISPATCH}"),
                R(target="-j ACCEPT", comments=("Configured DefaultEndpointToHostAction",))]
    out = t.chain(FILTER_OUTPUT, [R((mark_set(MARK_ACCEPT),), "-j ACCEPT"),
                                  R(target="-j RETURN", out_iface=IFACE_WILDCARD)])
    if ipip:
        out.append(R((match_set(ipset_name(4, ALL_HOSTS), "dst"),
                      "-m addrtype --src-type LOCAL"), "-j ACCEPT", proto=IPIP,
                     comments=("Allow IPIP packets to other Calico hosts",)))
    if vxlan:
        v = "IPv4" if family == 4 else "IPv6"
        out.append(R((_vxlan_dport(), "-m addrtype --src-type LOCAL",
                      match_set(ipset_name(family, ALL_VXLAN), "dst")), "-j ACCEPT",
                     proto="udp", comments=(f"Allow {v} VXLAN packets to other allowed hosts",)))
    out += [R(target=clear_mark(ALL_MARKS)),
            R((ctstate("DNAT", negated=True),), f"-j {TO_HOST_ENDPOINT}"),
            R((mark_set(MARK_ACCEPT),), "-j ACCEPT", comments=(HOST_ACCEPTED,))]
    for name in (FROM_HEP_FORWARD, TO_HEP_FORWARD, FROM_HOST_ENDPOINT, TO_HOST_ENDPOINT,
                 CIDR_BLOCK):
        t.chain(name)
    t.inserts += [("INPUT", R(target=f"-j {FILTER_INPUT}")),
                  ("FORWARD", R(target=f"-j {FILTER_FORWARD}")),
                  ("OUTPUT", R(target=f"-j {FILTER_OUTPUT}"))]
    t.appends += [("FORWARD", R((mark_set(MARK_ACCEPT),), "-j ACCEPT",
                                comments=("Policy explicitly accepted packet.",))),
                  ("FORWARD", R(target=set_mark(MARK_ACCEPT)))]
    return t


def raw_table(family: int, vxlan: bool) -> Table:
    t = Table("raw")
    pre = t.chain(PREROUTING, [R(target=clear_mark(ALL_MARKS))])
    if vxlan:
        pre.append(R((_vxlan_dport(),), "-j NOTRACK", proto="udp"))
    pre += [R(target=set_mark(MARK_SCRATCH0), in_iface=IFACE_WILDCARD),
            R((mark_set(MARK_SCRATCH0),), f"-j {RPF_SKIP}"),
            R((mark_set(MARK_SCRATCH0), "-m rpfilter --validmark --invert"), "-j DROP"),
            R((mark_clear(MARK_SCRATCH0),), f"-j {FROM_HOST_ENDPOINT}"),
            R((mark_set(MARK_ACCEPT),), "-j ACCEPT")]
    out = t.chain(OUTPUT, [R(target=clear_mark(ALL_MARKS)), R(target=f"-j {TO_HOST_ENDPOINT}")])
    if vxlan:
        out.append(R((_vxlan_dport(),), "-j NOTRACK", proto="udp"))
    out.append(R((mark_set(MARK_ACCEPT),), "-j ACCEPT"))
    for name in (RPF_SKIP, FROM_HOST_ENDPOINT, TO_HOST_ENDPOINT):
        t.chain(name)
    t.inserts += [("PREROUTING", R(target=f"-j {PREROUTING}")),
                  ("OUTPUT", R(target=f"-j {OUTPUT}"))]
    return t


def mangle_table() -> Table:
    t = Table("mangle")
    t.chain(PREROUTING, [
        R((ctstate("RELATED,ESTABLISHED"),), "-j ACCEPT"),
        R((mark_set(MARK_ACCEPT),), "-j ACCEPT"),
        R(target=f"-j {FROM_HOST_ENDPOINT}"),
        R((mark_set(MARK_ACCEPT),), "-j ACCEPT", comments=(HOST_ACCEPTED,)),
    ])
    t.chain(POSTROUTING, [
        R((mark_set(MARK_ACCEPT),), "-j RETURN"),
        R(target=clear_mark(ALL_MARKS)),
        R((ctstate("DNAT"),), f"-j {TO_HOST_ENDPOINT}"),
        R((mark_set(MARK_ACCEPT),), "-j RETURN", comments=(HOST_ACCEPTED,)),
    ])
    t.chain(FROM_HOST_ENDPOINT)
    t.chain(TO_HOST_ENDPOINT)
    t.inserts += [("PREROUTING", R(target=f"-j {PREROUTING}")),
                  ("POSTROUTING", R(target=f"-j {POSTROUTING}"))]
    return t


def nat_table(family: int, tunnels: list[str], nat_outgoing: bool) -> Table:
    """`tunnels`: the devices with a tunnel address on this node (their MASQUERADE rule)."""
    t = Table("nat")
    t.chain(PREROUTING, [R(target=f"-j {FIP_DNAT}")])
    post = t.chain(POSTROUTING, [R(target=f"-j {FIP_SNAT}"), R(target=f"-j {NAT_OUTGOING}")])
    post += [R(("-m addrtype ! --src-type LOCAL --limit-iface-out",
                "-m addrtype --src-type LOCAL"), "-j MASQUERADE", out_iface=dev)
             for dev in tunnels]
    t.chain(OUTPUT, [R(target=f"-j {FIP_DNAT}")])
    t.chain(NAT_OUTGOING, [R((match_set(ipset_name(family, MASQ_POOLS), "src"),
                              match_set(ipset_name(family, ALL_POOLS), "dst", negated=True)),
                             "-j MASQUERADE")] if nat_outgoing else [])
    t.chain(FIP_DNAT)
    t.chain(FIP_SNAT)
    t.inserts += [("PREROUTING", R(target=f"-j {PREROUTING}")),
                  ("OUTPUT", R(target=f"-j {OUTPUT}"))]
    t.appends.append(("POSTROUTING", R(target=f"-j {POSTROUTING}")))
    return t
