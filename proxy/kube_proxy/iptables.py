"""kube-proxy's iptables mode: compile a cluster into the rules one node's proxier writes.

compile_iptables(cluster, options) returns, for one node and one IP family, what kube-proxy
hands to `iptables-restore --noflush` on a full sync, the hook rules it ensures outside the
restore, and what `iptables-save` shows on the node afterwards. Restated from kubernetes
pkg/proxy/iptables/proxier.go (syncProxyRules, iptablesJumpChains) in
../shared/reference/kube-proxy.md sections 1-9 and 12.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from netsim.cluster import Cluster
from netsim.model import IPV6
from proxy.kube_proxy.constants import (
    CANARY_TABLES,
    COMMENT_FORWARD_CONNTRACK,
    COMMENT_FORWARDING,
    COMMENT_LOCALNET,
    COMMENT_NODEPORTS_LAST,
    COMMENT_SNAT,
    FILTER,
    FILTER_TOP_CHAINS,
    IPV4_LOOPBACK_NET,
    IPV6_LOOPBACK_NET,
    JUMP_CHAINS,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_CANARY,
    KUBE_SERVICES,
    NAT,
    NAT_TOP_CHAINS,
    NFACCT_INVALID_DROPPED,
    SAVE_TABLE_ORDER,
)
from proxy.kube_proxy.iptables_service import SyncContext, Writer, write_service_port
from proxy.kube_proxy.iptables_text import (
    ensured_jumps,
    restore_table,
    save_table,
    sort_rules_text,
)
from proxy.kube_proxy.nodelocal import local_detector, node_port_addresses
from proxy.kube_proxy.options import LARGE_CLUSTER_ENDPOINTS, KubeProxyOptions
from proxy.kube_proxy.serviceports import categorize, endpoints, node_addresses, service_ports

# ---------------------------------------------------------------- the artifact


@dataclass(frozen=True, slots=True)
class Rule:
    """One `-A chain args...` line; args are argv words (comment text unquoted)."""

    chain: str
    args: tuple[str, ...]

    @property
    def comment(self) -> str | None:
        for i, arg in enumerate(self.args[:-1]):
            if arg == "--comment":
                return self.args[i + 1]
        return None


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the restore payload: chain lines and rules in the order written."""

    name: str
    chains: tuple[str, ...]
    rules: tuple[Rule, ...]

    def chain_rules(self, chain: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.chain == chain)


class HookRule(NamedTuple):
    """A jump from a built-in chain that kube-proxy ensures outside iptables-restore."""

    table: str
    chain: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IptablesRules:
    """One node's kube-proxy iptables state for one IP family."""

    family: str
    filter: Table
    nat: Table
    jump_rules: tuple[HookRule, ...]  # in the order they end up in the built-in chains

    @property
    def ipv6(self) -> bool:
        return self.family == IPV6

    def table(self, name: str) -> Table:
        return {FILTER: self.filter, NAT: self.nat}[name]

    def restore_text(self) -> str:
        """The full-sync payload for `iptables-restore --noflush` (ip6tables for IPv6)."""
        lines: list[str] = []
        for table in (self.filter, self.nat):
            lines += restore_table(table.name, table.chains,
                                  ((r.chain, r.args) for r in table.rules))
        return "\n".join(lines) + "\n"

    def sorted_text(self) -> str:
        """restore_text() normalised with upstream's sortIPTablesRules (proxier_test.go)."""
        return sort_rules_text(self.restore_text())

    def save_text(self) -> str:
        """What iptables-save (nft backend) prints on the node afterwards, without its `#`
        lines: mangle, filter, nat; built-in chains with policy ACCEPT, then user chains by
        name; every rule in iptables-save's canonical form."""
        out: list[str] = []
        for name in SAVE_TABLE_ORDER:
            table = self.table(name) if name in (FILTER, NAT) else Table(name, (), ())
            hooks = [h for h in self.jump_rules if h.table == name]
            users = {h.args[-1] for h in hooks} | set(table.chains)  # EnsureChain / restore
            if name in CANARY_TABLES:
                users.add(KUBE_PROXY_CANARY)
            out += save_table(name, users, [*((h.chain, h.args) for h in hooks),
                                            *((r.chain, r.args) for r in table.rules)],
                              self.ipv6)
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the compiler


def compile_iptables(cluster: Cluster, options: KubeProxyOptions) -> IptablesRules:
    """The rules kube-proxy's iptables proxier on options.node writes for options.family on
    a full sync of a fresh node (no stale chains to delete). Services are processed in
    service-port-name order; real kube-proxy uses Go map order, which the §12 sort hides."""
    fam = options.family
    ipv6 = fam == IPV6
    node = options.node
    node_ports = node_port_addresses(options)
    # NewProxier turns localhost NodePorts off unless nodePortAddresses covers IPv4 loopback;
    # the IPv6 proxier never has them.
    localhost = (options.localhost_node_ports and not ipv6
                 and node_ports.contains_ipv4_loopback())

    ports = sorted(service_ports(cluster, fam), key=lambda s: (s.name, s.protocol))
    found = []
    for spi in ports:
        service = cluster.service(spi.namespace, spi.service)
        found.append((spi, endpoints(cluster, service, spi, node.name, fam)))
    total = sum(len(eps) for _, eps in found)

    ctx = SyncContext(
        ipv6=ipv6, masquerade_all=options.masquerade_all, detector=local_detector(options),
        node_ip=node.ip(fam), large_cluster=total > LARGE_CLUSTER_ENDPOINTS,
        localhost_node_ports=localhost, nfacct=options.nfacct)
    mark = options.mark
    w = Writer(filter_chains=list(FILTER_TOP_CHAINS), nat_chains=list(NAT_TOP_CHAINS))

    w.nat(KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    w.nat(KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)  # don't masquerade twice
    w.nat(KUBE_POSTROUTING, "-m", "comment", "--comment", COMMENT_SNAT, "-j", "MASQUERADE",
          *(("--random-fully",) if options.random_fully else ()))
    w.nat(KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    if localhost:
        # route_localnet opens a hole (issues.k8s.io/90259) that this rule closes.
        w.filter_chains.append(KUBE_FIREWALL)
        w.filter(KUBE_FIREWALL, "-m", "comment", "--comment", COMMENT_LOCALNET,
                 "-d", IPV4_LOOPBACK_NET, "!", "-s", IPV4_LOOPBACK_NET, "-m", "conntrack",
                 "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")

    for spi, eps in found:
        write_service_port(w, ctx, spi, categorize(spi, eps))

    tail = ("-m", "comment", "--comment", COMMENT_NODEPORTS_LAST)
    if node_ports.match_all:
        dest = ["-m", "addrtype", "--dst-type", "LOCAL"]
        if ipv6:
            dest += ["!", "-d", IPV6_LOOPBACK_NET]
        elif not localhost:
            dest += ["!", "-d", IPV4_LOOPBACK_NET]
        w.nat(KUBE_SERVICES, *tail, *dest, "-j", KUBE_NODEPORTS)
    else:
        loopback = "::1" if ipv6 else "127.0.0.1"
        for ip in node_ports.node_ips((loopback, *node_addresses(node, fam))):
            if ipaddress.ip_address(ip).is_loopback and (ipv6 or not localhost):
                continue  # localhost NodePorts: never on IPv6, and only when enabled
            w.nat(KUBE_SERVICES, *tail, "-d", ip, "-j", KUBE_NODEPORTS)

    w.filter(KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID",
             *(("-m", "nfacct", "--nfacct-name", NFACCT_INVALID_DROPPED)
               if options.nfacct else ()), "-j", "DROP")
    w.filter(KUBE_FORWARD, "-m", "comment", "--comment", COMMENT_FORWARDING,
             "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT")
    w.filter(KUBE_FORWARD, "-m", "comment", "--comment", COMMENT_FORWARD_CONNTRACK,
             "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

    return IptablesRules(
        family=fam,
        filter=Table(FILTER, tuple(w.filter_chains),
                     tuple(Rule(c, a) for c, a in w.filter_rules)),
        nat=Table(NAT, tuple(w.nat_chains), tuple(Rule(c, a) for c, a in w.nat_rules)),
        jump_rules=jump_rules(),
    )


def jump_rules() -> tuple[HookRule, ...]:
    """iptablesJumpChains plus kubelet's KUBE-FIREWALL jumps, each ensured at position 1,
    listed in the order they end up in: per table and built-in chain, last ensured first."""
    return tuple(HookRule(*jump) for jump in ensured_jumps(JUMP_CHAINS, SAVE_TABLE_ORDER))
