"""kube-proxy's iptables mode: compile a cluster into the rules one node's proxier writes.

compile_iptables(cluster, options) returns, for one node and one IP family, what kube-proxy
hands to `iptables-restore --noflush` on a full sync, the hook rules it ensures outside the
restore, and what `iptables-save` shows on the node afterwards. Restated from kubernetes
pkg/proxy/iptables/proxier.go (syncProxyRules, iptablesJumpChains) in
../shared/reference/kube-proxy.md sections 1-9 and 12.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import NamedTuple

from netsim.cluster import Cluster
from netsim.model import IPV6, family
from proxy.kube_proxy.constants import (
    BUILTIN_CHAINS,
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
from proxy.kube_proxy.iptables_service import (
    LocalDetector,
    SyncContext,
    Writer,
    write_service_port,
)
from proxy.kube_proxy.iptables_text import restore_line, save_args, sort_rules_text
from proxy.kube_proxy.options import LARGE_CLUSTER_ENDPOINTS, KubeProxyOptions
from proxy.kube_proxy.serviceports import (
    ServicePortInfo,
    categorize,
    endpoints,
    node_addresses,
    service_ports,
)

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
            lines.append(f"*{table.name}")
            lines += [f":{chain} - [0:0]" for chain in table.chains]
            lines += [restore_line(r.chain, r.args) for r in table.rules]
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def sorted_text(self) -> str:
        """restore_text() normalised with upstream's sortIPTablesRules (proxier_test.go)."""
        return sort_rules_text(self.restore_text())

    def save_text(self) -> str:
        """What iptables-save prints on the node afterwards (without its timestamp comment
        lines): mangle, filter, nat; built-in chains with policy ACCEPT, then user chains by
        name; every rule in iptables-save's canonical form."""
        out: list[str] = []
        for name in SAVE_TABLE_ORDER:
            table = self.table(name) if name in (FILTER, NAT) else Table(name, (), ())
            builtins = BUILTIN_CHAINS[name]
            hooks = [h for h in self.jump_rules if h.table == name]
            users = {h.args[-1] for h in hooks} | set(table.chains)  # EnsureChain / restore
            if name in CANARY_TABLES:
                users.add(KUBE_PROXY_CANARY)
            by_chain: dict[str, list[tuple[str, ...]]] = defaultdict(list)
            for chain, args in [*((h.chain, h.args) for h in hooks),
                                *((r.chain, r.args) for r in table.rules)]:
                by_chain[chain].append(args)
            out.append(f"*{name}")
            out += [f":{c} ACCEPT [0:0]" for c in builtins]
            out += [f":{c} - [0:0]" for c in sorted(users)]
            for chain in (*builtins, *sorted(users)):
                out += [f"-A {chain} {save_args(args, self.ipv6)}" for args in by_chain[chain]]
            out.append("COMMIT")
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the compiler


def compile_iptables(cluster: Cluster, options: KubeProxyOptions) -> IptablesRules:
    """The rules kube-proxy's iptables proxier on options.node writes for options.family on
    a full sync of a fresh node (no stale chains to delete). Services are processed in
    service-port-name order; real kube-proxy uses Go map order, which the §12 sort hides."""
    fam = options.family
    ipv6 = fam == IPV6
    node = options.node
    match_all, cidrs = _node_port_cidrs(options)
    # NewProxier turns localhost NodePorts off unless nodePortAddresses covers IPv4 loopback;
    # the IPv6 proxier never has them.
    localhost = options.localhost_node_ports and not ipv6 and (
        match_all or any(_contains_ipv4_loopback(c) for c in cidrs))

    ports = sorted((_canonical(spi) for spi in service_ports(cluster, fam)),
                   key=lambda s: (s.name, s.protocol))
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
    if match_all:
        dest = ["-m", "addrtype", "--dst-type", "LOCAL"]
        if ipv6:
            dest += ["!", "-d", IPV6_LOOPBACK_NET]
        elif not localhost:
            dest += ["!", "-d", IPV4_LOOPBACK_NET]
        w.nat(KUBE_SERVICES, *tail, *dest, "-j", KUBE_NODEPORTS)
    else:
        loopback = "::1" if ipv6 else "127.0.0.1"
        for ip in _node_port_ips(cidrs, (loopback, *node_addresses(node, fam))):
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
    out = []
    for table in SAVE_TABLE_ORDER:
        for chain in BUILTIN_CHAINS[table]:
            ensured = [(target, comment, extra) for t, c, target, comment, extra in JUMP_CHAINS
                       if t == table and c == chain]
            for target, comment, extra in reversed(ensured):
                args = (*extra, *(("-m", "comment", "--comment", comment) if comment else ()),
                        "-j", target)
                out.append(HookRule(table, chain, args))
    return tuple(out)


def local_detector(options: KubeProxyOptions) -> LocalDetector | None:
    """The LocalTrafficDetector for options.detect_local_mode, or None (no-op detector)."""
    mode = options.detect_local_mode
    if mode == "ClusterCIDR" and options.cluster_cidr:
        return _cidr_detector(options.cluster_cidr)
    if mode == "NodeCIDR":
        cidr = next((c for c in options.node.pod_cidrs
                     if family(c.split("/")[0]) == options.family), None)
        return _cidr_detector(cidr) if cidr else None
    if mode == "BridgeInterface" and options.bridge_interface:
        name = options.bridge_interface
        return LocalDetector(("-i", name), ("!", "-i", name))
    if mode == "InterfaceNamePrefix" and options.interface_name_prefix:
        name = options.interface_name_prefix + "+"
        return LocalDetector(("-i", name), ("!", "-i", name))
    return None


def _cidr_detector(cidr: str) -> LocalDetector:
    net = str(ipaddress.ip_network(cidr, strict=False))
    return LocalDetector(("-s", net), ("!", "-s", net))


def _node_port_cidrs(options: KubeProxyOptions) -> tuple[bool, tuple[str, ...]]:
    """NodePortAddresses (pkg/proxy/util): (match all, CIDRs of this family). "primary" is
    the node's IP of the family; with no CIDR of the family left it matches every address."""
    bits = 128 if options.ipv6 else 32
    cidrs: list[str] = []
    for entry in options.node_port_addresses:
        if entry == "primary":
            ip = options.node.ip(options.family)
            if ip:
                cidrs.append(f"{ip}/{bits}")
        elif family(entry.split("/")[0]) == options.family:
            cidrs.append(str(ipaddress.ip_network(entry, strict=False)))
    if not cidrs or any(ipaddress.ip_network(c).prefixlen == 0 for c in cidrs):
        return (True, ())
    return (False, tuple(cidrs))


def _contains_ipv4_loopback(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr)
    return net.version == 4 and (net.network_address.is_loopback
                                 or ipaddress.ip_address("127.0.0.0") in net)


def _node_port_ips(cidrs: tuple[str, ...], interface_ips: tuple[str, ...]) -> list[str]:
    """GetNodeIPs: the node's interface addresses inside any of the CIDRs, in order."""
    out: list[str] = []
    for ip in interface_ips:
        if ip not in out and any(_contains(c, ip) for c in cidrs):
            out.append(ip)
    return out


def _contains(cidr: str, ip: str) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    addr = ipaddress.ip_address(ip)
    return addr.version == net.version and addr in net


@functools.lru_cache(maxsize=1 << 18)
def _ip(text: str) -> str:
    """ParseIPSloppy then String(): IPv4 octets with leading zeros read as decimal."""
    text = text.strip()
    if ":" not in text and "." in text:
        text = ".".join(str(int(part, 10)) for part in text.split("."))
    return str(ipaddress.ip_address(text))


def _canonical(spi: ServicePortInfo) -> ServicePortInfo:
    """The port's addresses re-printed as kube-proxy prints them (net.IP / IPNet String)."""
    return replace(
        spi, cluster_ip=_ip(spi.cluster_ip),
        external_ips=tuple(_ip(ip) for ip in spi.external_ips),
        lb_ips=tuple(_ip(ip) for ip in spi.lb_ips),
        source_ranges=tuple(str(ipaddress.ip_network(r.strip(), strict=False))
                            for r in spi.source_ranges))
