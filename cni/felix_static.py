"""felix's static chains and its hooks into the built-in chains, per table.

felix/rules/static.go (StaticFilterForwardChains, filterInputChain, filterWorkloadToHostChain,
filterOutputChain, StaticFilterForwardAppendRules, StaticRawPreroutingChain,
StaticRawOutputChain, StaticManglePreroutingChain, StaticManglePostroutingChain,
StaticNAT*Chains), felix/rules/nat.go (NATOutgoingChain) and the hooks of
felix/dataplane/linux/int_dataplane.go setUpIptablesNormal: jumps inserted at the top of the
built-in chains, except nat POSTROUTING and filter FORWARD's accept rules, which are appended.
Host endpoints, failsafe ports and floating IPs have no configuration here, so their chains
are empty (or unreferenced, and felix does not program unreferenced chains).

With KubeIPVSSupportEnabled (felix turns it on when kube-ipvs0 exists, i.e. kube-proxy runs
in IPVS mode) a packet to a Service reaches INPUT, not FORWARD, and IPVS sends it on through
OUTPUT: cali-INPUT marks it with its ingress endpoint (StaticFilterInputForwardCheckChain:
cali-forward-check) and returns, and cali-OUTPUT sends marked packets to
cali-forward-endpoint-mark (StaticFilterOutputForwardEndpointMarkChain), which runs the
source workload's egress policy (by its mark) and the destination workload's ingress policy
as FORWARD would, after IPVS chose the backend.
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
    FORWARD_CHECK,
    FORWARD_ENDPOINT_MARK,
    FROM_ENDPOINT_MARK_DISPATCH,
    FROM_HEP_FORWARD,
    FROM_HOST_ENDPOINT,
    FROM_WORKLOAD_DISPATCH,
    IFACE_WILDCARD,
    KUBE_NODE_PORT_RANGE,
    MARK_ACCEPT,
    MARK_ENDPOINT,
    MARK_NON_CALI_ENDPOINT,
    MARK_SCRATCH0,
    MASQ_POOLS,
    NAT_OUTGOING,
    OUTPUT,
    POSTROUTING,
    PREROUTING,
    PROTO_IPIP,
    RPF_SKIP,
    SET_ENDPOINT_MARK_DISPATCH,
    THIS_HOST,
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
    mark_matches,
    mark_not_clear,
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


def filter_table(family: int, ipip: bool, vxlan: bool, ipvs: bool = False) -> Table:
    """The filter table's static chains and hooks (the dispatch chains are added later);
    `ipvs`: KubeIPVSSupportEnabled."""
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
    if ipvs:
        # Packets forwarded by IPVS (to a Service) get their endpoint mark and skip the
        # "to local host" rules.
        inp += [R(target=clear_mark(MARK_ENDPOINT)),
                R(target=f"-j {FORWARD_CHECK}"),
                R((mark_not_clear(MARK_ENDPOINT),), "-j RETURN")]
        t.chain(FORWARD_CHECK, forward_check_chain(family))
        t.chain(FORWARD_ENDPOINT_MARK, forward_endpoint_mark_chain())
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
    out = t.chain(FILTER_OUTPUT, [R((mark_set(MARK_ACCEPT),), "-j ACCEPT")])
    if ipvs:
        # Forwarded through IPVS: handled as FORWARD would (a goto, so that a RETURN goes
        # back to OUTPUT).
        out.append(R((mark_not_clear(MARK_ENDPOINT),), f"-g {FORWARD_ENDPOINT_MARK}"))
    out.append(R(target="-j RETURN", out_iface=IFACE_WILDCARD))
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


def forward_check_chain(family: int) -> list[R]:
    """StaticFilterInputForwardCheckChain: mark packets that IPVS will forward, i.e. new
    connections to a NodePort of this host or to an address that is not the host's own
    (a Service address on kube-ipvs0)."""
    host = ipset_name(family, THIS_HOST)
    node_ports = multiport("dports", [KUBE_NODE_PORT_RANGE])
    return [R((ctstate("RELATED,ESTABLISHED"),), "-j RETURN"),
            *(R((node_ports, match_set(host, "dst")), f"-g {SET_ENDPOINT_MARK_DISPATCH}",
                proto=proto, comments=("To kubernetes NodePort service",))
              for proto in ("tcp", "udp")),
            R((match_set(host, "dst", negated=True),), f"-j {SET_ENDPOINT_MARK_DISPATCH}",
              comments=("To kubernetes service",))]


def forward_endpoint_mark_chain() -> list[R]:
    """StaticFilterOutputForwardEndpointMarkChain: a packet IPVS forwarded, in OUTPUT: the
    egress policy of the endpoint it came from (by its mark; not for non-Calico sources),
    the ingress policy of the workload it goes to, then accept it if policy did."""
    return [R((mark_matches(MARK_NON_CALI_ENDPOINT, MARK_ENDPOINT, negated=True),),
              f"-j {FROM_ENDPOINT_MARK_DISPATCH}"),
            R(target=f"-j {TO_WORKLOAD_DISPATCH}", out_iface=IFACE_WILDCARD),
            R(target=f"-j {TO_HEP_FORWARD}"),
            # cleared before the ACCEPT: an encapsulated copy would inherit it
            R(target=clear_mark(MARK_ENDPOINT)),
            R((mark_set(MARK_ACCEPT),), "-j ACCEPT",
              comments=("Policy explicitly accepted packet.",))]


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


def mangle_table(ipvs: bool = False) -> Table:
    t = Table("mangle")
    t.chain(PREROUTING, [
        R((ctstate("RELATED,ESTABLISHED"),), "-j ACCEPT"),
        R((mark_set(MARK_ACCEPT),), "-j ACCEPT"),
        R(target=f"-j {FROM_HOST_ENDPOINT}"),
        R((mark_set(MARK_ACCEPT),), "-j ACCEPT", comments=(HOST_ACCEPTED,)),
    ])
    post = t.chain(POSTROUTING, [R((mark_set(MARK_ACCEPT),), "-j RETURN")])
    if ipvs:  # no host endpoint policy for IPVS-forwarded packets either
        post.append(R((mark_not_clear(MARK_ENDPOINT),), "-j RETURN"))
    post += [
        R(target=clear_mark(ALL_MARKS)),
        R((ctstate("DNAT"),), f"-j {TO_HOST_ENDPOINT}"),
        R((mark_set(MARK_ACCEPT),), "-j RETURN", comments=(HOST_ACCEPTED,)),
    ]
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
