"""The iptables rules kube-proxy's IPVS mode still installs, and their restore and save text.

From kubernetes pkg/proxy/ipvs/proxier.go: iptablesChains, iptablesJumpChain,
ipsetWithIptablesChain, writeIptablesRules, acceptIPVSTraffic, createAndLinkKubeChain
(restated in ../shared/reference/kube-proxy.md section 10). Set-match rules are written only
for non-empty sets, except the fixed KUBE-IPVS-FILTER and health-check rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.kube_proxy import ipvs_sets as S
from proxy.kube_proxy.constants import (
    COMMENT_FORWARD_CONNTRACK,
    COMMENT_FORWARDING,
    COMMENT_SNAT,
    FILTER,
    IPV4_LOOPBACK_NET,
    IPV6_LOOPBACK_NET,
    IPVS_CHAINS,
    IPVS_JUMP_CHAINS,
    KUBE_FORWARD,
    KUBE_IPVS_FILTER,
    KUBE_IPVS_OUT_FILTER,
    KUBE_LOAD_BALANCER,
    KUBE_MARK_MASQ,
    KUBE_NODE_PORT,
    KUBE_POSTROUTING,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    KUBE_SOURCE_RANGES_FIREWALL,
    NAT,
    SAVE_TABLE_ORDER,
)
from proxy.kube_proxy.iptables_text import (
    ensured_jumps,
    restore_line,
    restore_table,
    save_table,
)
from proxy.kube_proxy.ipvs_sets import IpSet

# The tables IPVS mode writes to, in the order iptables-save prints them.
_SAVED_TABLES = tuple(t for t in SAVE_TABLE_ORDER if t in IPVS_CHAINS)

# ipsetWithIptablesChain: (set, table, from chain, target, match flags, -p protocol).
# The -LOCAL node-port sets come before their masquerading counterparts on purpose.
SET_CHAINS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (S.LOOP_BACK, NAT, KUBE_POSTROUTING, "MASQUERADE", "dst,dst,src", ""),
    (S.LOAD_BALANCER, NAT, KUBE_SERVICES, KUBE_LOAD_BALANCER, "dst,dst", ""),
    (S.LOAD_BALANCER_LOCAL, NAT, KUBE_LOAD_BALANCER, "RETURN", "dst,dst", ""),
    (S.NODE_PORT_LOCAL_TCP, NAT, KUBE_NODE_PORT, "RETURN", "dst", "tcp"),
    (S.NODE_PORT_TCP, NAT, KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "tcp"),
    (S.NODE_PORT_LOCAL_UDP, NAT, KUBE_NODE_PORT, "RETURN", "dst", "udp"),
    (S.NODE_PORT_UDP, NAT, KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "udp"),
    (S.NODE_PORT_LOCAL_SCTP, NAT, KUBE_NODE_PORT, "RETURN", "dst,dst", "sctp"),
    (S.NODE_PORT_SCTP, NAT, KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst,dst", "sctp"),
    (S.LOAD_BALANCER_FW, FILTER, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, "dst,dst",
     ""),
    (S.LOAD_BALANCER_SOURCE_CIDR, FILTER, KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src",
     ""),
    (S.LOAD_BALANCER_SOURCE_IP, FILTER, KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src",
     ""),
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: its arguments after `-A CHAIN` as kube-proxy writes them, a comment as one
    unquoted argument."""

    table: str
    chain: str
    args: tuple[str, ...]

    @property
    def target(self) -> str:
        return self.args[self.args.index("-j") + 1]

    @property
    def match_set(self) -> str | None:
        return self.args[self.args.index("--match-set") + 1] if "--match-set" in self.args \
            else None

    def restore_line(self) -> str:
        return restore_line(self.chain, self.args)


@dataclass(frozen=True, slots=True)
class NoNodeAccess:
    """A load-balancer VIP:port whose source ranges exclude the node (lbNoNodeAccess…)."""

    ip: str
    protocol: str
    port: int


def build_rules(sets: Mapping[str, IpSet], *, ipv6: bool, mark: str, masquerade_all: bool,
                not_local: Sequence[str], random_fully: bool,
                no_node_access: Sequence[NoNodeAccess]) -> tuple[Rule, ...]:
    """writeIptablesRules: the nat rules, then the filter rules, each in the order written.
    `not_local` is the local-traffic detector's IfNotLocal() (empty when none)."""
    nat: list[Rule] = []
    filt: list[Rule] = []

    def add(out: list[Rule], chain: str, *args: str) -> None:
        out.append(Rule(NAT if out is nat else FILTER, chain, args))

    def name(base: str) -> str:
        return sets[base].name

    def comment(base: str) -> tuple[str, str, str]:
        return ("-m", "comment", "--comment", sets[base].comment)

    def full(base: str) -> bool:
        return bool(sets[base].entries)

    add(nat, KUBE_SERVICES, "-s", IPV6_LOOPBACK_NET if ipv6 else IPV4_LOOPBACK_NET,
        "-j", "RETURN")
    for base, table, chain, target, flags, proto in SET_CHAINS:
        if full(base):
            add(nat if table == NAT else filt, chain, *(("-p", proto) if proto else ()),
                *comment(base), "-m", "set", "--match-set", name(base), flags, "-j", target)
    if full(S.CLUSTER_IP):
        head = (*comment(S.CLUSTER_IP), "-m", "set", "--match-set", name(S.CLUSTER_IP))
        if masquerade_all:
            add(nat, KUBE_SERVICES, *head, "dst,dst", "-j", KUBE_MARK_MASQ)
        elif not_local:
            add(nat, KUBE_SERVICES, *head, "dst,dst", *not_local, "-j", KUBE_MARK_MASQ)
        else:  # masquerade node-originated traffic whose source is a VIP on kube-ipvs0
            add(nat, KUBE_SERVICES, *head, "src,dst", "-j", KUBE_MARK_MASQ)
    for base, masquerade in ((S.EXTERNAL_IP, True), (S.EXTERNAL_IP_LOCAL, False)):
        if full(base):
            head = (*comment(base), "-m", "set", "--match-set", name(base), "dst,dst")
            if masquerade:
                add(nat, KUBE_SERVICES, *head, "-j", KUBE_MARK_MASQ)
            add(nat, KUBE_SERVICES, *head, "-m", "physdev", "!", "--physdev-is-in",
                "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "ACCEPT")
            add(nat, KUBE_SERVICES, *head, "-m", "addrtype", "--dst-type", "LOCAL",
                "-j", "ACCEPT")
    add(nat, KUBE_SERVICES, "-m", "addrtype", "--dst-type", "LOCAL", "-j", KUBE_NODE_PORT)
    add(nat, KUBE_LOAD_BALANCER, "-j", KUBE_MARK_MASQ)
    add(filt, KUBE_SOURCE_RANGES_FIREWALL, "-j", "DROP")
    for entry in no_node_access:  # the node reaches the VIP with the VIP as source
        add(filt, KUBE_IPVS_OUT_FILTER, "-s", entry.ip, "-m", "ipvs", "--vaddr", entry.ip,
            "--vproto", entry.protocol, "--vport", str(entry.port), "-j", "DROP")
    for base in (S.CLUSTER_IP, S.LOAD_BALANCER):  # acceptIPVSTraffic
        if full(base):
            add(nat, KUBE_SERVICES, "-m", "set", "--match-set", name(base), "dst,dst",
                "-j", "ACCEPT")
    add(filt, KUBE_FORWARD, "-m", "comment", "--comment", COMMENT_FORWARDING,
        "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT")
    add(filt, KUBE_FORWARD, "-m", "comment", "--comment", COMMENT_FORWARD_CONNTRACK,
        "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    add(filt, KUBE_NODE_PORT, *comment(S.HEALTH_CHECK_NODE_PORT), "-m", "set", "--match-set",
        name(S.HEALTH_CHECK_NODE_PORT), "dst", "-j", "ACCEPT")
    for base in (S.LOAD_BALANCER, S.CLUSTER_IP, S.EXTERNAL_IP, S.EXTERNAL_IP_LOCAL,
                 S.HEALTH_CHECK_NODE_PORT):
        flags = "dst" if base == S.HEALTH_CHECK_NODE_PORT else "dst,dst"
        add(filt, KUBE_IPVS_FILTER, "-m", "set", "--match-set", name(base), flags,
            "-j", "RETURN")
    add(filt, KUBE_IPVS_FILTER, "-m", "conntrack", "--ctstate", "NEW", "-m", "set",
        "--match-set", name(S.IPVS_IPS), "dst", "-j", "REJECT")
    add(nat, KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    add(nat, KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    add(nat, KUBE_POSTROUTING, "-m", "comment", "--comment", COMMENT_SNAT, "-j", "MASQUERADE",
        *(("--random-fully",) if random_fully else ()))
    add(nat, KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    return tuple(nat + filt)


def hook_rules() -> tuple[Rule, ...]:
    """The jump rules from the built-in chains, in the order they end up: each is ensured
    with "insert at position 1", so within one built-in chain the last ensured comes first."""
    rows = ((table, chain, target, comment, ()) for table, chain, target, comment
            in IPVS_JUMP_CHAINS)
    return tuple(Rule(*jump) for jump in ensured_jumps(rows, _SAVED_TABLES))


def restore_text(rules: Sequence[Rule]) -> str:
    """The iptables-restore --noflush payload: *nat (chains, rules, COMMIT), then *filter."""
    lines: list[str] = []
    for table in (NAT, FILTER):
        lines += restore_table(table, IPVS_CHAINS[table],
                               ((r.chain, r.args) for r in rules if r.table == table))
    return "\n".join(lines) + "\n"


def save_text(rules: Sequence[Rule], hooks: Sequence[Rule], ipv6: bool) -> str:
    """What iptables-save (nft backend) prints for kube-proxy's part of a fresh node
    (counters zero, no `#` comment lines): built-in chains in hook order, user chains by
    name, then the rules chain by chain in that order, each in canonical spelling."""
    lines: list[str] = []
    for table in _SAVED_TABLES:
        lines += save_table(table, IPVS_CHAINS[table],
                            ((r.chain, r.args) for r in (*hooks, *rules) if r.table == table),
                            ipv6)
    return "\n".join(lines) + "\n"
