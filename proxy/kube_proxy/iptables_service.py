"""The rules kube-proxy's iptables proxier writes for one service port (syncProxyRules' loop).

Restated from kubernetes pkg/proxy/iptables/proxier.go (syncProxyRules,
writeServiceToEndpointRules) in ../shared/reference/kube-proxy.md sections 4 and 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.kube_proxy.constants import (
    EXT_PREFIX,
    FW_PREFIX,
    IPV4_LOOPBACK_NET,
    KUBE_EXTERNAL_SERVICES,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    NFACCT_LOCALHOST_NODEPORTS,
    SVC_PREFIX,
    SVL_PREFIX,
)
from proxy.kube_proxy.nodelocal import LocalDetector, contains
from proxy.kube_proxy.serviceports import Categorized, EndpointInfo, ServicePortInfo


@dataclass(frozen=True, slots=True)
class SyncContext:
    """What one sync knows beyond the service port itself."""

    ipv6: bool
    masquerade_all: bool
    detector: LocalDetector | None
    node_ip: str | None
    large_cluster: bool
    localhost_node_ports: bool
    nfacct: bool


@dataclass(slots=True)
class Writer:
    """The four line buffers of one sync (filterChains/Rules, natChains/Rules)."""

    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def filter(self, chain: str, *args: str) -> None:
        self.filter_rules.append((chain, args))

    def nat(self, chain: str, *args: str) -> None:
        self.nat_rules.append((chain, args))


def _comment(text: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", text)


def write_service_port(w: Writer, ctx: SyncContext, spi: ServicePortInfo,
                       cat: Categorized) -> None:
    """Append the rules for one service port, in the order kube-proxy writes them."""
    name, proto = spi.name, spi.protocol
    p = ("-m", proto, "-p", proto)
    port = str(spi.port)
    suffix = spi.chain_suffix
    svc_chain, svl_chain = SVC_PREFIX + suffix, SVL_PREFIX + suffix
    ext_chain, fw_chain = EXT_PREFIX + suffix, FW_PREFIX + suffix
    # Each endpoint's KUBE-SEP chain, hashed once for the SVC, SVL and SEP rules that name it
    # (cat.all is the union of cat.cluster and cat.local: allReachableEndpoints).
    seps = {ep.endpoint: ep.chain(spi) for ep in cat.all}
    has_any = cat.has_any
    uses_svc = bool(cat.cluster) and spi.uses_cluster_endpoints
    uses_svl = bool(cat.local) and spi.uses_local_endpoints
    internal_chain, has_internal = svc_chain, has_any
    if spi.itp_local:
        internal_chain, has_internal = svl_chain, has_any and bool(cat.local)
    external_policy_chain, has_external = svc_chain, has_any
    if spi.etp_local:
        external_policy_chain, has_external = svl_chain, has_any and bool(cat.local)
    uses_ext = has_any and spi.externally_accessible
    uses_fw = has_any and bool(spi.lb_ips) and bool(spi.source_ranges)
    lb_chain = fw_chain if uses_fw else ext_chain

    if not has_any:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f"{name} has no endpoints"
    else:
        int_target = ext_target = "DROP"
        int_comment = ext_comment = f"{name} has no local endpoints"

    # ClusterIP
    if has_internal:
        w.nat(KUBE_SERVICES, *_comment(f"{name} cluster IP"), *p, "-d", spi.cluster_ip,
              "--dport", port, "-j", internal_chain)
    else:
        w.filter(KUBE_SERVICES, *_comment(int_comment), *p, "-d", spi.cluster_ip,
                 "--dport", port, "-j", int_target)

    # externalIPs
    for ip in spi.external_ips:
        if has_any:
            w.nat(KUBE_SERVICES, *_comment(f"{name} external IP"), *p, "-d", ip,
                  "--dport", port, "-j", ext_chain)
        if not has_external:
            w.filter(KUBE_EXTERNAL_SERVICES, *_comment(ext_comment), *p, "-d", ip,
                     "--dport", port, "-j", ext_target)

    # LoadBalancer ingress IPs
    for ip in spi.lb_ips:
        if has_any:
            w.nat(KUBE_SERVICES, *_comment(f"{name} loadbalancer IP"), *p, "-d", ip,
                  "--dport", port, "-j", lb_chain)
        if uses_fw:
            w.filter(KUBE_PROXY_FIREWALL, *_comment(f"{name} traffic not accepted by {fw_chain}"),
                     *p, "-d", ip, "--dport", port, "-j", "DROP")
    if not has_external:
        for ip in spi.lb_ips:
            w.filter(KUBE_EXTERNAL_SERVICES, *_comment(ext_comment), *p, "-d", ip,
                     "--dport", port, "-j", ext_target)

    # NodePort (not subject to loadBalancerSourceRanges)
    if spi.node_port:
        node_port = str(spi.node_port)
        if has_any:
            if ctx.localhost_node_ports and not ctx.ipv6 and ctx.nfacct:
                w.nat(KUBE_NODEPORTS, *_comment(name), *p, "-d", IPV4_LOOPBACK_NET,
                      "--dport", node_port, "-m", "nfacct", "--nfacct-name",
                      NFACCT_LOCALHOST_NODEPORTS, "-j", ext_chain)
            w.nat(KUBE_NODEPORTS, *_comment(name), *p, "--dport", node_port, "-j", ext_chain)
        if not has_external:
            w.filter(KUBE_EXTERNAL_SERVICES, *_comment(ext_comment),
                     "-m", "addrtype", "--dst-type", "LOCAL", *p, "--dport", node_port,
                     "-j", ext_target)

    # health-check node port: accepted whether or not this node has endpoints
    if spi.health_check_node_port:
        w.filter(KUBE_NODEPORTS, *_comment(f"{name} health check node port"),
                 "-m", "tcp", "-p", "tcp", "--dport", str(spi.health_check_node_port),
                 "-j", "ACCEPT")

    # masquerade off-cluster traffic to the ClusterIP, in the internal chain
    if has_internal:
        args = (*_comment(f"{name} cluster IP"), *p, "-d", spi.cluster_ip, "--dport", port)
        if ctx.masquerade_all:
            w.nat(internal_chain, *args, "-j", KUBE_MARK_MASQ)
        elif ctx.detector is not None:
            w.nat(internal_chain, *args, *ctx.detector.if_not_local, "-j", KUBE_MARK_MASQ)

    # external destinations
    if uses_ext:
        w.nat_chains.append(ext_chain)
        if not spi.etp_local:
            w.nat(ext_chain, *_comment(f"masquerade traffic for {name} external destinations"),
                  "-j", KUBE_MARK_MASQ)
        else:
            # Pod and host traffic to an external destination short-circuits to the
            # cluster-policy chain, as if it went out to the load balancer and came back.
            if ctx.detector is not None:
                w.nat(ext_chain, *_comment(f"pod traffic for {name} external destinations"),
                      *ctx.detector.if_local, "-j", svc_chain)
            w.nat(ext_chain,
                  *_comment(f"masquerade LOCAL traffic for {name} external destinations"),
                  "-m", "addrtype", "--src-type", "LOCAL", "-j", KUBE_MARK_MASQ)
            w.nat(ext_chain, *_comment(f"route LOCAL traffic for {name} external destinations"),
                  "-m", "addrtype", "--src-type", "LOCAL", "-j", svc_chain)
        if has_external:
            w.nat(ext_chain, "-j", external_policy_chain)

    # loadBalancerSourceRanges
    if uses_fw:
        w.nat_chains.append(fw_chain)
        head = _comment(f"{name} loadbalancer IP")
        allow_from_node = False
        for cidr in spi.source_ranges:
            w.nat(fw_chain, *head, "-s", cidr, "-j", ext_chain)
            if ctx.node_ip is not None and contains(cidr, ctx.node_ip):
                allow_from_node = True
        if allow_from_node:  # node-to-VIP traffic loops back with the VIP as source
            for ip in spi.lb_ips:
                w.nat(fw_chain, *head, "-s", ip, "-j", ext_chain)
        w.nat(fw_chain, *_comment(f"other traffic to {name} will be dropped by "
                                  f"{KUBE_PROXY_FIREWALL}"))

    if uses_svc:
        w.nat_chains.append(svc_chain)
        _write_endpoint_jumps(w, ctx, spi, svc_chain, cat.cluster, seps)
    if uses_svl:
        w.nat_chains.append(svl_chain)
        _write_endpoint_jumps(w, ctx, spi, svl_chain, cat.local, seps)

    for ep in cat.all:
        sep = seps[ep.endpoint]
        w.nat_chains.append(sep)
        head = () if ctx.large_cluster else _comment(name)
        w.nat(sep, *head, "-s", ep.ip, "-j", KUBE_MARK_MASQ)  # hairpin
        affinity = ("-m", "recent", "--name", sep, "--set") if spi.sticky_seconds else ()
        w.nat(sep, *head, *affinity, *p, "-j", "DNAT", "--to-destination", ep.endpoint)


def _write_endpoint_jumps(w: Writer, ctx: SyncContext, spi: ServicePortInfo, chain: str,
                          endpoints: tuple[EndpointInfo, ...], seps: dict[str, str]) -> None:
    """writeServiceToEndpointRules: affinity checks first, then 1/(n-i) random picks;
    `seps` maps each endpoint to its KUBE-SEP chain."""
    def head(ep: EndpointInfo) -> tuple[str, ...]:
        return () if ctx.large_cluster else _comment(f"{spi.name} -> {ep.endpoint}")

    if spi.sticky_seconds:
        for ep in endpoints:
            sep = seps[ep.endpoint]
            w.nat(chain, *head(ep), "-m", "recent", "--name", sep, "--rcheck",
                  "--seconds", str(spi.sticky_seconds), "--reap", "-j", sep)
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        pick = ("-m", "statistic", "--mode", "random", "--probability",
                probability(n - i)) if i < n - 1 else ()
        w.nat(chain, *head(ep), *pick, "-j", seps[ep.endpoint])


def probability(n: int) -> str:
    """computeProbability: 1/n printed with %0.10f."""
    return f"{1.0 / n:0.10f}"

