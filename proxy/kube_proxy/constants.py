"""kube-proxy's names: chains, chain-name prefixes, fixed comments, nfacct counters, tables.

The one place they live, for the iptables and the IPVS proxier alike, as kube-proxy keeps them
in one const block (pkg/proxy/iptables/proxier.go, pkg/proxy/ipvs/proxier.go; restated in
../shared/reference/kube-proxy.md sections 2, 3 and 10). The IPVS ipset names live with the
sets, in ipvs_sets.py (kube-proxy's pkg/proxy/ipvs/ipset.go).
"""

from __future__ import annotations

# ---------------------------------------------------------------- tables and built-in chains

FILTER, NAT, MANGLE = "filter", "nat", "mangle"

# Built-in chains in the order iptables-save lists them (netfilter hook order).
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    MANGLE: ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    FILTER: ("INPUT", "FORWARD", "OUTPUT"),
    NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
# The order iptables-save (nft backend, 1.8.9) prints the tables in, those present only:
# xtables-save walks its builtin table array, indexed by enum nft_table_type (mangle, security,
# raw, filter, nat). iptables-legacy-save instead lists /proc/net/ip_tables_names, newest table
# in the namespace first, so its order depends on which table the node touched first.
SAVE_TABLE_ORDER = (MANGLE, FILTER, NAT)

# ---------------------------------------------------------------- kube-proxy's fixed chains

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
# A duplicate of kubelet's chain holding the anti-martian rule for localhost NodePorts.
KUBE_FIREWALL = "KUBE-FIREWALL"

# IPVS mode's own chains (pkg/proxy/ipvs/proxier.go).
KUBE_NODE_PORT = "KUBE-NODE-PORT"  # sic: IPVS mode's name, not iptables mode's KUBE-NODEPORTS
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_SOURCE_RANGES_FIREWALL = "KUBE-SOURCE-RANGES-FIREWALL"
KUBE_IPVS_FILTER = "KUBE-IPVS-FILTER"
KUBE_IPVS_OUT_FILTER = "KUBE-IPVS-OUT-FILTER"

# Chains declared at the top of every full-sync restore payload, in the order written.
FILTER_TOP_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS,
                     KUBE_PROXY_FIREWALL)
NAT_TOP_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)

# Tables the iptables monitor creates its canary chain in.
CANARY_TABLES = (MANGLE, NAT, FILTER)

# ---------------------------------------------------------------- per-service chain prefixes

SVC_PREFIX = "KUBE-SVC-"  # cluster-policy endpoints
SVL_PREFIX = "KUBE-SVL-"  # local-policy endpoints
EXT_PREFIX = "KUBE-EXT-"  # external destinations (NodePort, LB, externalIP)
FW_PREFIX = "KUBE-FW-"  # loadBalancerSourceRanges
SEP_PREFIX = "KUBE-SEP-"  # one endpoint
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)

# ---------------------------------------------------------------- hook rules (iptablesJumpChains)

COMMENT_EXTERNAL_PORTALS = "kubernetes externally-visible service portals"
COMMENT_HEALTH_CHECK_PORTS = "kubernetes health check service ports"
COMMENT_SERVICE_PORTALS = "kubernetes service portals"
COMMENT_FORWARDING = "kubernetes forwarding rules"
COMMENT_LB_FIREWALL = "kubernetes load balancer firewall"
COMMENT_POSTROUTING = "kubernetes postrouting rules"
COMMENT_HEALTH_CHECK_RULES = "kubernetes health check rules"  # IPVS mode
COMMENT_PROXY_FIREWALL = "kube-proxy firewall rules"  # IPVS mode
COMMENT_IPVS_ACCESS_FILTER = "kubernetes ipvs access filter"  # IPVS mode

_NEW = ("-m", "conntrack", "--ctstate", "NEW")

# (table, built-in chain, target chain, comment, extra match args) in the order kube-proxy
# ensures them; each is inserted at position 1, so the last one ensured ends up first.
# The last two are kubelet's KUBE-FIREWALL jumps (iptablesKubeletJumpChains, no comment).
JUMP_CHAINS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    (FILTER, "INPUT", KUBE_EXTERNAL_SERVICES, COMMENT_EXTERNAL_PORTALS, _NEW),
    (FILTER, "FORWARD", KUBE_EXTERNAL_SERVICES, COMMENT_EXTERNAL_PORTALS, _NEW),
    (FILTER, "INPUT", KUBE_NODEPORTS, COMMENT_HEALTH_CHECK_PORTS, ()),
    (FILTER, "FORWARD", KUBE_SERVICES, COMMENT_SERVICE_PORTALS, _NEW),
    (FILTER, "OUTPUT", KUBE_SERVICES, COMMENT_SERVICE_PORTALS, _NEW),
    (FILTER, "FORWARD", KUBE_FORWARD, COMMENT_FORWARDING, ()),
    (FILTER, "INPUT", KUBE_PROXY_FIREWALL, COMMENT_LB_FIREWALL, _NEW),
    (FILTER, "OUTPUT", KUBE_PROXY_FIREWALL, COMMENT_LB_FIREWALL, _NEW),
    (FILTER, "FORWARD", KUBE_PROXY_FIREWALL, COMMENT_LB_FIREWALL, _NEW),
    (NAT, "OUTPUT", KUBE_SERVICES, COMMENT_SERVICE_PORTALS, ()),
    (NAT, "PREROUTING", KUBE_SERVICES, COMMENT_SERVICE_PORTALS, ()),
    (NAT, "POSTROUTING", KUBE_POSTROUTING, COMMENT_POSTROUTING, ()),
    (FILTER, "INPUT", KUBE_FIREWALL, "", ()),
    (FILTER, "OUTPUT", KUBE_FIREWALL, "", ()),
)

# IPVS mode's iptablesJumpChain: (table, built-in chain, target chain, comment), in the order
# ensured, each inserted at position 1 as in iptables mode.
IPVS_JUMP_CHAINS: tuple[tuple[str, str, str, str], ...] = (
    (NAT, "OUTPUT", KUBE_SERVICES, COMMENT_SERVICE_PORTALS),
    (NAT, "PREROUTING", KUBE_SERVICES, COMMENT_SERVICE_PORTALS),
    (NAT, "POSTROUTING", KUBE_POSTROUTING, COMMENT_POSTROUTING),
    (FILTER, "FORWARD", KUBE_FORWARD, COMMENT_FORWARDING),
    (FILTER, "INPUT", KUBE_NODE_PORT, COMMENT_HEALTH_CHECK_RULES),
    (FILTER, "INPUT", KUBE_PROXY_FIREWALL, COMMENT_PROXY_FIREWALL),
    (FILTER, "FORWARD", KUBE_PROXY_FIREWALL, COMMENT_PROXY_FIREWALL),
    (FILTER, "INPUT", KUBE_IPVS_FILTER, COMMENT_IPVS_ACCESS_FILTER),
    (FILTER, "OUTPUT", KUBE_IPVS_OUT_FILTER, COMMENT_IPVS_ACCESS_FILTER),
)

# IPVS mode's iptablesChains: declared (and so flushed) in every restore payload, in this order.
IPVS_CHAINS: dict[str, tuple[str, ...]] = {
    NAT: (KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER, KUBE_MARK_MASQ),
    FILTER: (KUBE_FORWARD, KUBE_NODE_PORT, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL,
             KUBE_IPVS_FILTER, KUBE_IPVS_OUT_FILTER),
}

# ---------------------------------------------------------------- fixed rule comments

COMMENT_SNAT = "kubernetes service traffic requiring SNAT"
COMMENT_LOCALNET = "block incoming localnet connections"
COMMENT_FORWARD_CONNTRACK = "kubernetes forwarding conntrack rule"
COMMENT_NODEPORTS_LAST = ("kubernetes service nodeports; NOTE: this must be the last rule in "
                          "this chain")

# nfacct counters kube-proxy creates at full sync (pkg/proxy/metrics).
NFACCT_INVALID_DROPPED = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NODEPORTS = "localhost_nps_accepted_pkts"

IPV4_LOOPBACK_NET = "127.0.0.0/8"
IPV6_LOOPBACK_NET = "::1/128"

# IP protocol numbers, by kube-proxy's lowercase protocol names (libxt_ipvs prints --vproto
# as one; libipvs sorts virtual services by it).
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
