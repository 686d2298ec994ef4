"""One pod's sidecar config, as istiod would push it: the context, clusters and endpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netsim.errors import InputError
from netsim.fields import FrozenDict
from netsim.model import Pod, Service, ServicePort, family
from proxy.sidecar_istio import (
    DestinationRuleSpec,
    TrafficPolicySpec,
    VirtualServiceSpec,
    exported_to,
    host_matches,
    parse_destination_rule,
    parse_virtual_service,
    port_protocol,
)
from proxy.sidecar_types import (
    BLACKHOLE,
    DISABLE,
    INBOUND_PASSTHROUGH,
    PASSTHROUGH,
    ConnectionPool,
    LbEndpoint,
    MeshOptions,
    SidecarConfig,
)
from proxy.sidecar_types import Cluster as EnvoyCluster

# The bootstrap's static clusters (pilot-agent's envoy_bootstrap.json): name, endpoint.
BOOTSTRAP_CLUSTERS = (
    ("agent", "127.0.0.1", 15020),
    ("prometheus_stats", "127.0.0.1", 15000),
    ("sds-grpc", "unix://./var/run/secrets/workload-spiffe-uds/socket", None),
    ("xds-grpc", "unix://./etc/istio/proxy/XDS", None),
)


@dataclass(frozen=True, slots=True)
class MeshService:
    """A Service as the mesh registry holds it: its FQDN and its ports with protocols."""

    service: Service
    fqdn: str
    ports: tuple[tuple[ServicePort, str], ...]  # UDP ports left out: Envoy does not proxy UDP

    @property
    def headless(self) -> bool:
        return not self.service.cluster_ips

    def port(self, number: int) -> tuple[ServicePort, str] | None:
        return next((p for p in self.ports if p[0].port == number), None)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    ip: str
    port: int
    ready: bool
    pod: Pod | None


@dataclass
class Context:
    """What building one sidecar's config reads: the pod, the registry and the Istio config."""

    cluster: Any
    pod: Pod
    options: MeshOptions
    sidecars: Callable[[Pod], bool]
    mtls_mode: Callable[[Pod, int | None], str]
    services: list[MeshService] = field(default_factory=list)
    by_fqdn: dict[str, MeshService] = field(default_factory=dict)
    virtual_services: list[VirtualServiceSpec] = field(default_factory=list)
    destination_rules: list[DestinationRuleSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _endpoints: dict = field(default_factory=dict)

    def fqdn(self, service: Service) -> str:
        return f"{service.name}.{service.namespace}.svc.{self.options.domain_suffix}"

    def destination_rule(self, host: str) -> DestinationRuleSpec | None:
        """The DestinationRule for a host: the client's namespace, then the service's, then
        the root namespace; an exact host beats a wildcard (push_context.go)."""
        svc_ns = host.split(".")[1] if host.count(".") >= 2 else None
        for ns in (self.pod.namespace, svc_ns, self.options.root_namespace):
            found = [d for d in self.destination_rules if d.namespace == ns
                     and host_matches(d.host, host)]
            if found:
                return min(found, key=lambda d: (d.host != host, -len(d.host), d.created,
                                                 d.key))
        return None

    def endpoints(self, svc: MeshService, port: ServicePort) -> list[_Endpoint]:
        """The EndpointSlice endpoints behind a service port, in the pod's address family."""
        key = (svc.fqdn, port.port)
        if key in self._endpoints:
            return self._endpoints[key]
        fam = family(self.pod.ip) if self.pod.ip else "IPv4"
        out: dict[tuple[str, int], _Endpoint] = {}
        for sl in self.cluster.slices_for(svc.service):
            if sl.address_type != fam:
                continue
            eport = next((p for p in sl.ports if p.name == port.name
                          and p.protocol == port.protocol), None)
            if eport is None or eport.port is None:
                continue
            for ep in sl.endpoints:
                if not ep.addresses:
                    continue
                pod = None
                if ep.target and "/" in ep.target:
                    pod = self.cluster.pod(*ep.target.split("/", 1))
                out.setdefault((ep.addresses[0], eport.port),
                               _Endpoint(ep.addresses[0], eport.port, ep.ready, pod))
        result = sorted(out.values(), key=lambda e: (e.ip, e.port))
        self._endpoints[key] = result
        return result


def default_sidecars(cluster: Any) -> Callable[[Pod], bool]:
    """Who has a sidecar, as Istio's injector decides (proxy.istio_inject)."""
    from proxy.istio_inject import injected

    return lambda pod: injected(cluster, pod).injected


def default_mtls_mode(cluster: Any) -> Callable[[Pod, int | None], str]:
    """The PeerAuthentication mode a workload enforces on a port (None: the workload's)."""
    from policies.istio_peerauthn import PeerAuthentications

    policies = PeerAuthentications(cluster)
    return lambda pod, port: policies.mode(pod, port).mode


def default_options(cluster: Any) -> MeshOptions:
    """MeshOptions with the root namespace and trust domain of the cluster's MeshConfig."""
    from policies.istio_mesh import mesh_config

    mesh = mesh_config(cluster)
    return MeshOptions(root_namespace=mesh.root_namespace, trust_domain=mesh.trust_domain)


def build_context(cluster: Any, pod: Pod, *, sidecars: Callable[[Pod], bool] | None,
                  mtls_mode: Callable[[Pod, int | None], str] | None,
                  options: MeshOptions) -> Context:
    """Check the pod has a sidecar and read what its config derives from."""
    if sidecars is None:
        from proxy.istio_inject import injected

        decision = injected(cluster, pod)
        if not decision.injected:
            raise InputError(f"no Istio sidecar: {decision.reason}", obj=f"Pod {pod.key}")
        sidecars = default_sidecars(cluster)
    elif not sidecars(pod):
        raise InputError("no Istio sidecar", obj=f"Pod {pod.key}")
    ctx = Context(cluster, pod, options, sidecars, mtls_mode or default_mtls_mode(cluster))
    for svc in cluster.services:
        if svc.type == "ExternalName":
            continue
        export = tuple(x.strip() for x in svc.meta.annotations.get(
            "networking.istio.io/exportTo", "").split(",") if x.strip())
        if not exported_to(export, svc.namespace, pod.namespace):
            continue
        ports = tuple((p, port_protocol(p)) for p in svc.ports if port_protocol(p) != "UDP")
        if ports:
            ms = MeshService(svc, ctx.fqdn(svc), ports)
            ctx.services.append(ms)
            ctx.by_fqdn[ms.fqdn] = ms
    suffix = options.domain_suffix
    for obj in cluster.raw("VirtualService"):
        vs = parse_virtual_service(obj, suffix)
        if vs.for_sidecars and exported_to(vs.export_to, vs.namespace, pod.namespace):
            ctx.virtual_services.append(vs)
        if obj.body.get("spec", {}).get("tcp") or obj.body.get("spec", {}).get("tls"):
            ctx.warnings.append(f"VirtualService {vs.key}: tcp and tls routes are not "
                                "modelled; only http routes apply")
    ctx.virtual_services.sort(key=lambda v: (v.created, v.key))
    for obj in cluster.raw("DestinationRule"):
        dr = parse_destination_rule(obj, suffix)
        selected = dr.workload_selector is None or (
            dr.namespace == pod.namespace
            and all(pod.labels.get(k) == v for k, v in dr.workload_selector.items()))
        if selected and exported_to(dr.export_to, dr.namespace, pod.namespace):
            ctx.destination_rules.append(dr)
    if any(o.namespace in (pod.namespace, options.root_namespace)
           for o in cluster.raw("Sidecar")):
        ctx.warnings.append("Sidecar resources are not modelled: every service stays visible")
    return ctx


def sidecar_config(cluster: Any, pod: Pod, *, sidecars: Callable[[Pod], bool] | None = None,
                   mtls_mode: Callable[[Pod, int | None], str] | None = None,
                   options: MeshOptions | None = None) -> SidecarConfig:
    """The Envoy listeners, routes, clusters and endpoints of a pod's Istio sidecar.

    `sidecars` says which pods have a sidecar (default: proxy.istio_inject);
    `mtls_mode(pod, port)` is the PeerAuthentication mode a workload enforces on a port
    (default: policies.istio_peerauthn); `options` default to the cluster's MeshConfig.
    Raises InputError for a pod without a sidecar or for invalid Istio resources.
    """
    from proxy.sidecar_listeners import build_listeners
    from proxy.sidecar_vhosts import build_route_configs

    ctx = build_context(cluster, pod, sidecars=sidecars, mtls_mode=mtls_mode,
                        options=options or default_options(cluster))
    clusters = outbound_clusters(ctx) + inbound_clusters(ctx) + static_clusters(ctx)
    listeners = build_listeners(ctx)
    routes = build_route_configs(ctx, listeners)
    return SidecarConfig(
        pod=pod.key, pod_ip=pod.ip, listeners=tuple(listeners), routes=tuple(routes),
        clusters=tuple(clusters), options=ctx.options, warnings=tuple(ctx.warnings),
        pods_by_ip=FrozenDict({ip: p.key for p in cluster.pods if not p.host_network
                               for ip in p.ips}))


# ---------------------------------------------------------------- outbound clusters


def _merged(base: TrafficPolicySpec, over: TrafficPolicySpec | None) -> TrafficPolicySpec:
    """A subset's policy over the rule's, field by field (cluster_builder MergeTrafficPolicy)."""
    if over is None:
        return base
    return TrafficPolicySpec(over.tls_mode or base.tls_mode, over.lb_policy or base.lb_policy,
                             over.connection_pool or base.connection_pool,
                             over.outlier_detection or base.outlier_detection)


def outbound_clusters(ctx: Context) -> list[EnvoyCluster]:
    """outbound|port|subset|fqdn for every visible service port and DestinationRule subset."""
    out = []
    for svc in ctx.services:
        dr = ctx.destination_rule(svc.fqdn)
        for sp, proto in svc.ports:
            policy = dr.policy.for_port(sp.port) if dr else TrafficPolicySpec()
            endpoints = ctx.endpoints(svc, sp)
            out.append(_cluster(ctx, svc, sp, proto, "", policy, endpoints, dr))
            for subset in dr.subsets if dr else ():
                sub_policy = _merged(policy, subset.policy.for_port(sp.port)
                                     if subset.policy else None)
                members = [e for e in endpoints if e.pod is not None and all(
                    e.pod.labels.get(k) == v for k, v in subset.labels.items())]
                out.append(_cluster(ctx, svc, sp, proto, subset.name, sub_policy, members, dr))
    return out


def _cluster(ctx: Context, svc: MeshService, sp: ServicePort, proto: str, subset: str,
             policy: TrafficPolicySpec, endpoints: list[_Endpoint],
             dr: DestinationRuleSpec | None) -> EnvoyCluster:
    headless = svc.headless
    lb = "CLUSTER_PROVIDED" if headless else (policy.lb_policy or "LEAST_REQUEST")
    if lb in ("UNSPECIFIED", "LEAST_CONN"):
        lb = "LEAST_REQUEST"  # Istio maps LEAST_CONN to Envoy's LEAST_REQUEST
    return EnvoyCluster(
        name=f"outbound|{sp.port}|{subset}|{svc.fqdn}",
        type="ORIGINAL_DST" if headless else "EDS", direction="outbound", port=sp.port,
        subset=subset, fqdn=svc.fqdn, protocol=proto,
        destination_rule=dr.key if dr else None, tls_mode=policy.tls_mode,
        sni=f"outbound_.{sp.port}_.{subset}_.{svc.fqdn}", lb_policy=lb,
        connection_pool=policy.connection_pool or ConnectionPool(),
        outlier_detection=policy.outlier_detection,
        endpoints=() if headless else tuple(
            LbEndpoint(e.ip, e.port, "HEALTHY" if e.ready else "UNHEALTHY",
                       pod=e.pod.key if e.pod else None,
                       mtls=endpoint_mtls(ctx, policy.tls_mode, e.pod, e.port))
            for e in endpoints))


def endpoint_mtls(ctx: Context, tls_mode: str | None, pod: Pod | None, port: int) -> bool:
    """Whether the client sidecar speaks Istio mTLS to an endpoint.

    A DestinationRule tls mode decides; without one, auto mTLS: only to pods with a sidecar
    whose PeerAuthentication does not DISABLE mTLS (cluster_tls.go, auto mTLS).
    """
    if tls_mode is not None:
        return tls_mode == "ISTIO_MUTUAL"
    return pod is not None and ctx.sidecars(pod) and ctx.mtls_mode(pod, port) != DISABLE


# ---------------------------------------------------------------- inbound and static clusters


def service_targets(ctx: Context) -> list[tuple[int, str, MeshService]]:
    """(target port, protocol, service) for each port of the Services selecting this pod.

    One entry per target port: the oldest Service wins a conflict (listener_inbound.go).
    """
    pod, seen, out = ctx.pod, set(), []
    mine = [s for s in ctx.services if s.service.namespace == pod.namespace
            and s.service.selector and all(pod.labels.get(k) == v
                                           for k, v in s.service.selector.items())]
    mine.sort(key=lambda s: (s.service.meta.created or "", s.service.name))
    for svc in mine:
        for sp, proto in svc.ports:
            target = sp.target
            if isinstance(target, str):
                target = pod.named_port(target, sp.protocol)
            if target is None or target in seen:
                continue
            seen.add(target)
            out.append((target, proto, svc))
    return sorted(out, key=lambda t: t[0])


def inbound_clusters(ctx: Context) -> list[EnvoyCluster]:
    """inbound|port|| per target port: ORIGINAL_DST to the app on the pod's IP."""
    return [EnvoyCluster(name=f"inbound|{port}||", type="ORIGINAL_DST", direction="inbound",
                         port=port, protocol=proto, lb_policy="CLUSTER_PROVIDED",
                         endpoints=(LbEndpoint(ctx.pod.ip or "", port, pod=ctx.pod.key),))
            for port, proto, _ in service_targets(ctx)]


def static_clusters(ctx: Context) -> list[EnvoyCluster]:
    """The clusters every sidecar has: passthrough, blackhole and the bootstrap's."""
    del ctx
    out = [EnvoyCluster(BLACKHOLE, "STATIC"),
           EnvoyCluster(INBOUND_PASSTHROUGH, "ORIGINAL_DST", lb_policy="CLUSTER_PROVIDED"),
           EnvoyCluster(PASSTHROUGH, "ORIGINAL_DST", lb_policy="CLUSTER_PROVIDED")]
    out += [EnvoyCluster(name, "STATIC", endpoints=(LbEndpoint(addr, port),))
            for name, addr, port in BOOTSTRAP_CLUSTERS]
    return out

