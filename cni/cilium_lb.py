"""Cilium's kube-proxy replacement maps: services (frontends and slots), backends, reverse NAT.

From pkg/service/service.go, pkg/maps/lbmap and pkg/loadbalancer (v1.16), restated in
../shared/reference/cni.md 2.2:
- every Service port gets a ClusterIP frontend; ExternalIPs, LoadBalancer ingress IPs and,
  for NodePort/LoadBalancer, the NodePort on each of the node's addresses plus the surrogate
  0.0.0.0:<nodePort> get their own frontends; hostPort containers get HostPort frontends on
  their node. Each frontend (and scope) has its own reverse-NAT id.
- a frontend is a master entry at slot 0 (count, rev_nat_index, flags; the backend_id field
  holds the affinity timeout) and one entry per slot 1..N naming a backend id.
- externalTrafficPolicy=Local (NodePort, LoadBalancer, ExternalIPs) keeps only the node's
  own backends and sets Local; internalTrafficPolicy=Local does the same for in-cluster
  traffic and sets InternalLocal. When the two differ the frontend is "two-scopes": the
  external scope holds the eTP backends, a second, internal-scope entry (printed with /i)
  the iTP ones, and in-cluster lookups switch to it (lb4_lookup_service).
- backends are ready endpoints, or the serving terminating ones when none is ready (as
  kube-proxy falls back; proxy/kube_proxy/serviceports.categorize decides); terminating
  backends that are not selectable sit in slots after count for existing connections.
Backend ids and reverse-NAT ids are per agent in Cilium, handed out as objects appear;
netsim numbers backends cluster-wide in Service order, and frontends in Service order with
node-specific frontends (NodePort on node addresses, HostPort) numbered after the shared
ones, so every node gets the same numbers for the same shared frontends.
v1.16 keys services by address and port only (protocol differentiation came in v1.17);
netsim keys them by protocol too, so a Service's TCP and UDP ports stay distinct.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from cni.cilium_maps import (
    BACKEND_ACTIVE,
    BACKEND_TERMINATING,
    CLUSTER_IP,
    EXTERNAL_IPS,
    HOST_PORT,
    LOAD_BALANCER,
    NODE_PORT,
    SCOPE_EXTERNAL,
    SCOPE_INTERNAL,
    SVC_FLAG_EXT_LOCAL_SCOPE,
    SVC_FLAG_EXTERNAL_IPS,
    SVC_FLAG_HOSTPORT,
    SVC_FLAG_INT_LOCAL_SCOPE,
    SVC_FLAG_LOADBALANCER,
    SVC_FLAG_NODEPORT,
    SVC_FLAG_ROUTABLE,
    SVC_FLAG_SESSION_AFFINITY,
    SVC_FLAG_SOURCE_RANGE,
    SVC_FLAG_TWO_SCOPES,
    BackendEntry,
    ServiceEntry,
)
from netsim.cluster import Cluster
from netsim.model import family
from proxy.kube_proxy.serviceports import (
    EndpointInfo,
    ServicePortInfo,
    categorize,
    endpoints,
    node_addresses,
    service_ports,
)

_TYPE_BIT = {CLUSTER_IP: 0, NODE_PORT: SVC_FLAG_NODEPORT, EXTERNAL_IPS: SVC_FLAG_EXTERNAL_IPS,
             LOAD_BALANCER: SVC_FLAG_LOADBALANCER, HOST_PORT: SVC_FLAG_HOSTPORT}
SURROGATE = {"IPv4": "0.0.0.0", "IPv6": "::"}


@dataclass(frozen=True, slots=True)
class _PortPlan:
    """One Service port of one family with its endpoints (node-independent)."""

    spi: ServicePortInfo
    fam: str
    eps: tuple[EndpointInfo, ...]

    @property
    def key(self) -> str:
        return f"{self.spi.namespace}/{self.spi.service}"


@dataclass(frozen=True, slots=True)
class _Frontend:
    address: str
    port: int
    protocol: str
    type: str
    scope: str
    routable: bool
    rev_nat: int
    plan: _PortPlan | None  # None for HostPort frontends
    hostport_backend: tuple[str, int, str, str] | None = None  # ip, port, proto, pod key

    def flags(self) -> int:
        """NewSvcFlag for this frontend (svcInfo.isExtLocal / isIntLocal)."""
        spi = self.plan.spi if self.plan else None
        flags = _TYPE_BIT[self.type]
        ext = bool(spi and spi.etp_local and self.type in (NODE_PORT, LOAD_BALANCER,
                                                           EXTERNAL_IPS))
        internal = bool(spi and spi.itp_local and self.type != HOST_PORT)
        flags |= (SVC_FLAG_EXT_LOCAL_SCOPE if ext else 0) | \
            (SVC_FLAG_INT_LOCAL_SCOPE if internal else 0)
        if spi and spi.sticky_seconds:
            flags |= SVC_FLAG_SESSION_AFFINITY
        if self.routable:
            flags |= SVC_FLAG_ROUTABLE
        if spi and spi.source_ranges and self.type == LOAD_BALANCER:
            flags |= SVC_FLAG_SOURCE_RANGE
        if ext != internal and self.type != CLUSTER_IP:
            flags |= SVC_FLAG_TWO_SCOPES
        return flags

    def local_only(self) -> bool:
        """Whether this scope keeps node-local backends only (svcInfo.filterBackends)."""
        flags = self.flags()
        if self.type == CLUSTER_IP or self.scope == SCOPE_INTERNAL:
            return bool(flags & SVC_FLAG_INT_LOCAL_SCOPE)
        return bool(flags & SVC_FLAG_EXT_LOCAL_SCOPE)


@dataclass(frozen=True)
class NodeLb:
    """One node's LB maps: master entries by (address, port, protocol, scope), backends,
    reverse NAT."""

    services: Mapping[tuple[str, int, str, str], ServiceEntry]
    backends: Mapping[int, BackendEntry]
    revnat: Mapping[int, tuple[str, int]]

    def lookup(self, address: str, port: int, protocol: str,
               scope: str = SCOPE_EXTERNAL) -> ServiceEntry | None:
        """lb4_lookup_service: the external-scope entry, switched to the internal one for
        in-cluster traffic (scope="internal") when the service has two scopes."""
        ext = self.services.get((address, port, protocol.upper(), SCOPE_EXTERNAL))
        if ext is not None and scope == SCOPE_INTERNAL and ext.two_scopes:
            return self.services.get((address, port, protocol.upper(), SCOPE_INTERNAL), ext)
        return ext


@dataclass(frozen=True)
class LbPlan:
    """The cluster-wide part of the LB maps, computed once; nodes add their own frontends."""

    cluster: Cluster
    plans: tuple[_PortPlan, ...]
    shared: tuple[_Frontend, ...]
    backend_ids: Mapping[tuple[str, int, str], int]
    backend_pods: Mapping[str, tuple[str | None, str | None]]  # ip -> (pod key, node)
    _nodes: dict = field(default_factory=dict, repr=False)

    def node(self, name: str) -> NodeLb:
        found = self._nodes.get(name)
        if found is None:
            found = self._nodes[name] = self._build(name)
        return found

    def _build(self, node: str) -> NodeLb:
        services: dict[tuple[str, int, str, str], ServiceEntry] = {}
        backends: dict[int, BackendEntry] = {}
        revnat: dict[int, tuple[str, int]] = {}
        for fe in (*self.shared, *self._node_frontends(node)):
            chosen, extra = self._backends(fe, node)
            ids = []
            for e, state in chosen + extra:
                bid = self.backend_ids[e]
                ids.append(bid)
                pod, where = self.backend_pods.get(e[0], (None, None))
                backends.setdefault(bid, BackendEntry(bid, e[0], e[1], e[2], state, pod, where))
            spi = fe.plan.spi if fe.plan else None
            services[fe.address, fe.port, fe.protocol, fe.scope] = ServiceEntry(
                frontend=(fe.address, fe.port, fe.protocol), rev_nat_index=fe.rev_nat,
                count=len(chosen), flags=fe.flags(), backend_ids=tuple(ids),
                service=fe.plan.key if fe.plan else fe.hostport_backend[3],  # type: ignore[index]
                scope=fe.scope, affinity_timeout=spi.sticky_seconds if spi else 0)
            revnat[fe.rev_nat] = (fe.address, fe.port)
        return NodeLb(services, backends, revnat)

    def _backends(self, fe: _Frontend, node: str) -> tuple[list, list]:
        """(selectable, terminating-only) backends as ((ip, port, proto), state) pairs."""
        if fe.plan is None:
            ip, port, proto, _ = fe.hostport_backend  # type: ignore[misc]
            return [((ip, port, proto), BACKEND_ACTIVE)], []
        plan, proto = fe.plan, fe.protocol
        eps = list(plan.eps)
        if fe.local_only():
            where = self.backend_pods
            eps = [replace(e, local=where.get(e.ip, (None, None))[1] == node) for e in eps]
            view = replace(plan.spi, etp_local=False, itp_local=True, node_port=0,
                           external_ips=(), lb_ips=())
            pool = [e for e in eps if e.local]
            chosen = list(categorize(view, eps).local)
        else:
            view = replace(plan.spi, etp_local=False, itp_local=False)
            pool = eps
            chosen = list(categorize(view, eps).cluster)
        picked = {e.endpoint for e in chosen}
        selectable = [((e.ip, e.port, proto), BACKEND_ACTIVE if e.ready else BACKEND_TERMINATING)
                      for e in chosen]
        extra = [((e.ip, e.port, proto), BACKEND_TERMINATING) for e in pool
                 if e.endpoint not in picked and e.serving and e.terminating]
        return selectable, extra

    def _node_frontends(self, node: str) -> Iterator[_Frontend]:
        n = self.cluster.node(node)
        rev = max((f.rev_nat for f in self.shared), default=0)
        for plan in self.plans:
            if not plan.spi.node_port:
                continue
            for ip in node_addresses(n, plan.fam):
                for scope in _scopes(plan.spi, NODE_PORT):
                    rev += 1
                    yield _Frontend(ip, plan.spi.node_port, plan.spi.protocol.upper(), NODE_PORT,
                                    scope, True, rev, plan)
        for pod in self.cluster.pods_on(node):
            if pod.host_network or not pod.ips:
                continue
            for c in sorted(pod.container_ports, key=lambda c: (c.host_port or 0, c.protocol)):
                if not c.host_port:
                    continue
                for pod_ip in pod.ips:
                    fam = family(pod_ip)
                    backend = (pod_ip, c.container_port, c.protocol, pod.key)
                    for ip in (SURROGATE[fam], *node_addresses(n, fam)):
                        rev += 1
                        yield _Frontend(ip, c.host_port, c.protocol, HOST_PORT, SCOPE_EXTERNAL,
                                        ip != SURROGATE[fam], rev, None, backend)


def _scopes(spi: ServicePortInfo, kind: str) -> tuple[str, ...]:
    ext = spi.etp_local and kind in (NODE_PORT, LOAD_BALANCER, EXTERNAL_IPS)
    return (SCOPE_EXTERNAL, SCOPE_INTERNAL) if ext != spi.itp_local else (SCOPE_EXTERNAL,)


def plan_lb(cluster: Cluster) -> LbPlan:
    """Number the cluster's backends and shared frontends (ClusterIP, ExternalIPs,
    LoadBalancer, NodePort surrogate)."""
    plans: list[_PortPlan] = []
    for fam in _families(cluster):
        for spi in service_ports(cluster, fam):
            svc = cluster.service(spi.namespace, spi.service)
            plans.append(_PortPlan(spi, fam, tuple(endpoints(cluster, svc, spi, "", fam))))
    plans.sort(key=lambda p: (p.spi.namespace, p.spi.service, p.fam != "IPv4"))
    backend_pods: dict[str, tuple[str | None, str | None]] = {}
    for sl in cluster.endpoint_slices:
        for e in sl.endpoints:
            for ip in e.addresses:
                backend_pods.setdefault(ip, (e.target, e.node_name))
    backend_ids: dict[tuple[str, int, str], int] = {}
    shared: list[_Frontend] = []
    rev = 0
    for plan in plans:
        spi, proto = plan.spi, plan.spi.protocol.upper()
        for e in plan.eps:
            if e.ready or e.serving:
                backend_ids.setdefault((e.ip, e.port, proto), len(backend_ids) + 1)
        kinds = [(spi.cluster_ip, CLUSTER_IP, spi.port, False)]
        kinds += [(ip, EXTERNAL_IPS, spi.port, True) for ip in spi.external_ips]
        kinds += [(ip, LOAD_BALANCER, spi.port, True) for ip in spi.lb_ips]
        if spi.node_port:
            kinds.append((SURROGATE[plan.fam], NODE_PORT, spi.node_port, False))
        for ip, kind, port, routable in kinds:
            for scope in _scopes(spi, kind):
                rev += 1
                shared.append(_Frontend(ip, port, proto, kind, scope, routable, rev, plan))
    for pod in cluster.pods:  # hostPort backends get ids too, after the services'
        if pod.host_network or not pod.node_name:
            continue
        for c in pod.container_ports:
            if c.host_port:
                for ip in pod.ips:
                    backend_ids.setdefault((ip, c.container_port, c.protocol),
                                           len(backend_ids) + 1)
                    backend_pods.setdefault(ip, (pod.key, pod.node_name))
    return LbPlan(cluster, tuple(plans), tuple(shared), backend_ids, backend_pods)


def _families(cluster: Cluster) -> tuple[str, ...]:
    return tuple(dict.fromkeys(family(c.split("/")[0]) for c in cluster.addressing.service_cidrs))
