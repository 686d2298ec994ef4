"""Services and endpoints as kube-proxy sees them for one node and one IP family.

From kubernetes pkg/proxy: serviceport.go newBaseServiceInfo, endpointslicecache.go
addEndpoints, topology.go CategorizeEndpoints (restated in ../shared/reference/kube-proxy.md
sections 1 and 8). Topology hints are not modelled: the EndpointSlices netsim reads carry none.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.model import IPV4, Node, Service, family


@functools.lru_cache(maxsize=1 << 18)  # the same names recur on every node compiled
def hash16(text: str) -> str:
    """kube-proxy's chain-name hash: base32 of SHA-256, first 16 characters (portProtoHash)."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


@dataclass(frozen=True, slots=True)
class ServicePortInfo:
    """One entry of a Service's spec.ports, for one IP family."""

    namespace: str
    service: str
    port_name: str
    protocol: str  # lowercase, as kube-proxy writes it: tcp, udp, sctp
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    health_check_node_port: int = 0
    etp_local: bool = False
    itp_local: bool = False
    sticky_seconds: int = 0  # 0: no ClientIP affinity

    @property
    def name(self) -> str:
        """svcPortName: "ns/svc:port" (":port" only when the port is named)."""
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def chain_suffix(self) -> str:
        return hash16(self.name + self.protocol)

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.lb_ips or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.itp_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.itp_local or (self.etp_local and self.externally_accessible)


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    local: bool = False

    @property
    def endpoint(self) -> str:
        """"ip:port", or "[ip]:port" for IPv6: the string endpoints are sorted and hashed by."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def chain(self, spi: ServicePortInfo) -> str:
        return "KUBE-SEP-" + hash16(spi.name + spi.protocol + self.endpoint)


def service_ports(cluster: Cluster, fam: str = IPV4) -> list[ServicePortInfo]:
    """Every service port with a clusterIP of this family (headless, ExternalName skipped)."""
    out = []
    for s in cluster.services:
        ip = next((c for c in s.cluster_ips if family(c) == fam), None)
        if ip is None or s.type == "ExternalName" or s.headless:
            continue
        # ExternalPolicyLocal: externally accessible (NodePort, LoadBalancer, or ClusterIP
        # with externalIPs; the parser sets the policy only then) and Local.
        etp_local = s.external_traffic_policy == "Local"
        for p in s.ports:
            out.append(ServicePortInfo(
                namespace=s.namespace, service=s.name, port_name=p.name or "",
                protocol=p.protocol.lower(), cluster_ip=ip, port=p.port,
                node_port=p.node_port or 0,
                external_ips=tuple(e for e in s.external_ips if family(e) == fam),
                lb_ips=tuple(e for e in s.load_balancer_ingress if family(e) == fam
                             and e not in s.load_balancer_proxied)
                if s.type == "LoadBalancer" else (),
                source_ranges=tuple(r.strip() for r in s.load_balancer_source_ranges
                                    if family(r.split("/")[0]) == fam)
                if s.type == "LoadBalancer" else (),
                health_check_node_port=(s.health_check_node_port or 0)
                if s.type == "LoadBalancer" and etp_local else 0,
                etp_local=etp_local, itp_local=s.internal_traffic_policy == "Local",
                sticky_seconds=s.affinity_timeout if s.session_affinity == "ClientIP" else 0,
            ))
    return out


def endpoints(cluster: Cluster, service: Service | None, spi: ServicePortInfo, node: str,
              fam: str = IPV4) -> list[EndpointInfo]:
    """The port's endpoints from its EndpointSlices, deduplicated and sorted as kube-proxy does
    (by endpoint string, plain string order)."""
    if service is None:
        return []
    found: dict[str, EndpointInfo] = {}
    for sl in cluster.slices_for(service):
        if sl.address_type != fam:
            continue
        port = next((p for p in sl.ports if (p.name or "") == spi.port_name
                     and p.protocol.lower() == spi.protocol), None)
        if port is None or not port.port:
            continue
        for e in sl.endpoints:
            if not e.addresses:
                continue
            info = EndpointInfo(ip=e.addresses[0], port=port.port, ready=e.ready,
                                serving=e.serving, terminating=e.terminating,
                                local=e.node_name == node)
            current = found.get(info.endpoint)
            if current is None or (current.terminating and not info.terminating):
                found[info.endpoint] = info
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True, slots=True)
class Categorized:
    """CategorizeEndpoints: which endpoints cluster-policy and local-policy traffic use."""

    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    all: tuple[EndpointInfo, ...]
    has_any: bool


def categorize(spi: ServicePortInfo, eps: list[EndpointInfo]) -> Categorized:
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    if spi.uses_cluster_endpoints:
        cluster = [e for e in eps if e.ready]
        if not cluster:  # fall back to terminating endpoints that still serve
            cluster = [e for e in eps if e.serving and e.terminating]
        has_any = bool(cluster)
    if spi.uses_local_endpoints:
        local = [e for e in eps if e.local and e.ready]
        if not local:
            local = [e for e in eps if e.local and e.serving and e.terminating]
        has_any = has_any or any(e.ready or (e.serving and e.terminating) for e in eps)
    if not spi.uses_local_endpoints:
        everything = cluster
    elif not spi.uses_cluster_endpoints:
        everything = local
    elif all(e.ready for e in local):
        everything = cluster
    else:
        merged = {e.endpoint: e for e in cluster + local}
        everything = [merged[k] for k in sorted(merged)]
    return Categorized(tuple(cluster), tuple(local), tuple(everything), has_any)


def node_addresses(node: Node, fam: str = IPV4) -> tuple[str, ...]:
    """Every status.addresses IP of the node in this family (all are on its interface)."""
    return tuple(a.address for a in node.addresses
                 if a.type in ("InternalIP", "ExternalIP") and family(a.address) == fam)
