"""The outbound Envoy clusters and route a load run uses, as istiod builds them from
DestinationRule and VirtualService.

Sources (restated in ../shared/reference/mesh-ingress.md sections 5 and 6):
istio/istio pilot/pkg/networking/core/cluster_traffic_policy.go (applyConnectionPool,
applyOutlierDetection, applyLoadBalancer, getDefaultCircuitBreakerThresholds) and Envoy's
outlier_detection_impl.h defaults. The route (match conditions, weights, retries) is
proxy.envoy_route's. A route to a subset gets the cluster `outbound|port|subset|host`: the ready
endpoints whose pods carry the subset's labels, under the subset's trafficPolicy over the
host's (MergeTrafficPolicy, proxy.istio_destination_rule); a subset the DestinationRule does not
define, or a host that is no Service, has no cluster (503 NC).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.fields import FrozenDict
from netsim.model import Pod, Service, ServicePort
from netsim.packet import HttpRequest
from proxy.envoy_route import (
    CLUSTER_DOMAIN,
    DEFAULT_RETRY_ON,
    RetryPolicy,
    Route,
    applicable,
    http_route,
    pick,
)
from proxy.istio_destination_rule import (
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetectionSettings,
    TrafficPolicy,
    parse_destination_rule,
)
from proxy.istio_resources import (
    UINT32_MAX,
    duration_ms,
    parse_duration_ms,
    parse_virtual_service,
)

# The load run's whole config, the route's parts included, is importable from here.
__all__ = ["DEFAULT_RETRY_ON", "UINT32_MAX", "Backend", "CircuitBreakers", "Host", "LoadTarget",
           "OutlierDetection", "RetryPolicy", "Route", "UpstreamCluster", "parse_duration_ms",
           "resolve_target"]

HTTP2_APP_PROTOCOLS = ("http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c")


@dataclass(frozen=True, slots=True)
class Host:
    """One EDS endpoint of the cluster: the ready pod address the sidecar dials."""

    address: str  # "ip:port" ("[ip]:port" for IPv6)
    pod: str | None  # "ns/name" of the targetRef pod


@dataclass(frozen=True, slots=True)
class CircuitBreakers:
    """Envoy's cluster thresholds and per-connection limits from connectionPool."""

    max_connections: int = UINT32_MAX  # tcp.maxConnections
    max_pending_requests: int = UINT32_MAX  # http.http1MaxPendingRequests
    max_requests: int = UINT32_MAX  # http.http2MaxRequests
    max_retries: int = UINT32_MAX  # http.maxRetries
    max_requests_per_connection: int = 0  # http.maxRequestsPerConnection; 0 is unlimited
    max_concurrent_streams: int = 2**31 - 1  # http.maxConcurrentStreams (HTTP/2 only)


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Envoy's OutlierDetection as applyOutlierDetection writes it (0 thresholds are off)."""

    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 0  # Envoy counts 5 but enforces 0% unless Istio sets it
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failure: int = 5  # only in split mode
    interval_ms: int = 10_000
    base_ejection_time_ms: int = 30_000
    max_ejection_time_ms: int = 300_000  # Envoy: max(300s, base_ejection_time)
    max_ejection_percent: int = 10
    healthy_panic_threshold: int = 0  # minHealthPercent; Istio writes 0 (panic off) by default


@dataclass(frozen=True, slots=True)
class UpstreamCluster:
    """What the client sidecar holds for `outbound|port|subset|fqdn`."""

    name: str
    hosts: tuple[Host, ...]
    lb_policy: str = "LEAST_REQUEST"
    http2: bool = False
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    outlier: OutlierDetection | None = None
    destination_rule: str | None = None  # "ns/name" of the rule whose policy applies
    defined: bool = True  # False: istiod built no such cluster, requests get 503 NC


@dataclass(frozen=True, slots=True)
class Backend:
    """One weighted cluster of the route: it gets weight/sum of weights of the requests."""

    cluster: UpstreamCluster
    weight: int


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """The client, the Service port and the Envoy config a load run exercises."""

    client: str  # "ns/pod"
    service: str  # "ns/name"
    port: int
    cluster: UpstreamCluster  # the route's first cluster (its only one unless it splits)
    route: Route
    destination_rule: str | None = None  # "ns/name", of the first cluster
    notes: tuple[str, ...] = ()
    split: tuple[Backend, ...] = ()  # every weighted cluster, when the route has several
    request: HttpRequest | None = None  # what the route was matched against

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The weighted clusters requests go to: the split, else `cluster` alone."""
        return self.split or (Backend(self.cluster, 100),)


def resolve_target(cluster: Cluster, client: str, namespace: str, name: str,
                   port: int | str, request: HttpRequest | None = None) -> LoadTarget:
    """The Envoy clusters and route the client's sidecar uses for a request to the Service
    port (GET / with the Service's FQDN as Host unless `request` says otherwise).

    Raises InputError when the client pod, the Service or the port does not exist, or when a
    VirtualService or DestinationRule is invalid.
    """
    pod = _pod(cluster, client)
    service = cluster.service(namespace, name)
    if service is None:
        raise InputError(f"no Service {namespace}/{name}", obj="command line", field="--to")
    sport = _service_port(service, port)
    fqdn = f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"
    request = request or HttpRequest("GET", fqdn, "/")
    notes: list[str] = []
    if not _has_sidecar(cluster, pod):
        notes.append(f"{client} does not look injected (no istio-injection=enabled namespace "
                     "label, no istio-proxy container): simulated as if it had a sidecar")
    rules = [parse_destination_rule(o) for o in cluster.raw("DestinationRule")]
    services = [parse_virtual_service(o, require_route=False)
                for o in cluster.raw("VirtualService")]
    vs = pick(applicable(services, pod, fqdn), pod.namespace, namespace)
    found = http_route(cluster, vs, pod, sport.port, fqdn, request)
    notes += found.notes
    clusters = found.clusters or ((f"outbound|{sport.port}||{fqdn}", 100),)
    backends = tuple(Backend(_upstream(cluster, pod, rules, c, notes), w) for c, w in clusters)
    first = backends[0].cluster
    return LoadTarget(client=pod.key, service=service.key, port=sport.port, cluster=first,
                      route=found.route, destination_rule=first.destination_rule,
                      notes=tuple(notes), split=backends if len(backends) > 1 else (),
                      request=request)


# ---------------------------------------------------------------- the cluster model side


def _pod(cluster: Cluster, client: str) -> Pod:
    ns, _, name = client.partition("/")
    pod = cluster.pod(ns, name) if name else None
    if pod is None:
        raise InputError(f"no pod {client!r} (give NS/POD)", obj="command line", field="--from")
    return pod


def _service_port(service: Service, port: int | str) -> ServicePort:
    for p in service.ports:
        if p.port == port or (p.name is not None and p.name == port):
            return p
    have = ", ".join(f"{p.port}" + (f" ({p.name})" if p.name else "") for p in service.ports)
    raise InputError(f"Service {service.key} has no port {port} (ports: {have or 'none'})",
                     obj="command line", field="--to")


def _hosts(cluster: Cluster, service: Service, sport: ServicePort,
           labels: FrozenDict | None) -> tuple[Host, ...]:
    """Ready endpoints of the port, deduplicated, in address order (Istio sends only ready
    endpoints to EDS unless PILOT_SEND_UNHEALTHY_ENDPOINTS); with subset labels, only those
    whose pod carries them."""
    found: dict[str, Host] = {}
    for sl in cluster.slices_for(service):
        ep_port = next((p for p in sl.ports if (p.name or None) == (sport.name or None)
                        and p.protocol == sport.protocol), None)
        if ep_port is None or not ep_port.port:
            continue
        for e in sl.endpoints:
            if e.addresses and e.ready and (labels is None or _carries(cluster, e.target,
                                                                       labels)):
                ip = e.addresses[0]
                address = f"[{ip}]:{ep_port.port}" if ":" in ip else f"{ip}:{ep_port.port}"
                found.setdefault(address, Host(address=address, pod=e.target))
    return tuple(sorted(found.values(), key=_address_key))


def _carries(cluster: Cluster, target: str | None, labels: FrozenDict) -> bool:
    """The endpoint's pod has every subset label (an endpoint without a pod is in no subset)."""
    ns, _, name = (target or "").partition("/")
    pod = cluster.pod(ns, name) if name else None
    return pod is not None and all(pod.labels.get(k) == v for k, v in labels.items())


def _address_key(host: Host) -> tuple:
    ip, _, port = host.address.rpartition(":")
    addr = ipaddress.ip_address(ip.strip("[]"))
    return (addr.version, addr, int(port))


def _has_sidecar(cluster: Cluster, pod: Pod) -> bool:
    if any(c.name == "istio-proxy" for c in pod.spec.containers):
        return True
    ns = cluster.namespace(pod.namespace)
    labels = ns.labels if ns else {}
    opt_out = (pod.labels.get("sidecar.istio.io/inject")
               or pod.meta.annotations.get("sidecar.istio.io/inject")) == "false"
    return (labels.get("istio-injection") == "enabled" or "istio.io/rev" in labels) \
        and not opt_out


# ---------------------------------------------------------------- one Envoy cluster


def _upstream(cluster: Cluster, client: Pod, rules: list, name: str,
              notes: list[str]) -> UpstreamCluster:
    """`outbound|port|subset|host` as the client's sidecar holds it, or an undefined cluster
    (with a note saying why) when istiod would build none."""
    _, number, subset, host = name.split("|")
    svc_name, _, rest = host.partition(".")
    svc_ns = rest.partition(".")[0]
    service = cluster.service(svc_ns, svc_name) if host == \
        f"{svc_name}.{svc_ns}.svc.{CLUSTER_DOMAIN}" else None
    sport = next((p for p in service.ports if p.port == int(number)), None) if service else None
    if sport is None:
        notes.append(f"{name}: {host} has no Service port {number} in the input: 503 NC")
        return UpstreamCluster(name, (), defined=False)
    dr = pick(applicable(rules, client, host), client.namespace, svc_ns)
    if dr is not None:
        policy = dr.policy_for(subset, sport.port)
    else:  # subset clusters exist only for a DestinationRule's subsets
        policy = None if subset else TrafficPolicy()
    if policy is None:
        where = f"DestinationRule {dr.key}" if dr else "no DestinationRule"
        notes.append(f"{name}: {where} defines no subset {subset!r}: 503 NC")
        return UpstreamCluster(name, (), defined=False)
    labels = dr.subset(subset).labels if dr and subset else None
    outlier = policy.outlier_detection
    return UpstreamCluster(
        name=name, hosts=_hosts(cluster, service, sport, labels),
        lb_policy=_lb_policy(policy.load_balancer, notes),
        http2=_http2(sport, policy.connection_pool),
        circuit_breakers=_circuit_breakers(policy.connection_pool),
        outlier=_outlier(outlier) if outlier is not None else None,
        destination_rule=dr.key if dr else None)


def _circuit_breakers(pool: ConnectionPoolSettings | None) -> CircuitBreakers:
    """applyConnectionPool: only values above zero replace Istio's 2^32-1 defaults."""
    if pool is None:
        return CircuitBreakers()
    return CircuitBreakers(
        max_connections=pool.max_connections or UINT32_MAX,
        max_pending_requests=pool.http1_max_pending_requests or UINT32_MAX,
        max_requests=pool.http2_max_requests or UINT32_MAX,
        max_retries=pool.max_retries or UINT32_MAX,
        max_requests_per_connection=pool.max_requests_per_connection or 0,
        max_concurrent_streams=pool.max_concurrent_streams or 2**31 - 1)


def _http2(sport: ServicePort, pool: ConnectionPoolSettings | None) -> bool:
    """HTTP/2 upstream: an http2/grpc port, or h2UpgradePolicy UPGRADE (the mesh default is
    DO_NOT_UPGRADE)."""
    upgrade = (pool.h2_upgrade_policy if pool else None) or "DEFAULT"
    if upgrade != "DEFAULT":
        return upgrade == "UPGRADE"
    proto = (sport.app_protocol or (sport.name or "").split("-")[0]).lower()
    return proto in HTTP2_APP_PROTOCOLS


def _lb_policy(lb: LoadBalancerSettings | None, notes: list[str]) -> str:
    """applyLoadBalancer: LEAST_CONN is LEAST_REQUEST; unset is LEAST_REQUEST."""
    if lb is None:
        return "LEAST_REQUEST"
    simple = lb.simple or "UNSPECIFIED"
    if lb.consistent_hash or simple == "PASSTHROUGH":
        note = ("consistentHash and PASSTHROUGH load balancing are not simulated: "
                "LEAST_REQUEST used")
        if note not in notes:
            notes.append(note)
        return "LEAST_REQUEST"
    return {"UNSPECIFIED": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST"}.get(simple, simple)


def _outlier(od: OutlierDetectionSettings) -> OutlierDetection:
    """applyOutlierDetection: thresholds only when set (0 disables), percent only above 0,
    panic threshold from minHealthPercent (0 unless set)."""
    base = duration_ms(od.base_ejection_time)
    base = 30_000 if base is None else base
    c5xx, local = od.consecutive_5xx_errors, od.consecutive_local_origin_failures
    return OutlierDetection(
        consecutive_5xx=5 if c5xx is None else c5xx,
        consecutive_gateway_failure=od.consecutive_gateway_errors or 0,
        split_external_local_origin_errors=od.split_external_local_origin_errors,
        consecutive_local_origin_failure=local if local else 5,
        interval_ms=duration_ms(od.interval) or 10_000,
        base_ejection_time_ms=base,
        max_ejection_time_ms=max(300_000, base),
        max_ejection_percent=od.max_ejection_percent or 10,
        healthy_panic_threshold=od.min_health_percent or 0)
