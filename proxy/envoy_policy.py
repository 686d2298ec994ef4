"""One outbound Envoy cluster and route, as istiod builds them from DestinationRule and VS.

Sources (restated in ../shared/reference/mesh-ingress.md sections 5 and 6):
istio/istio pilot/pkg/networking/core/cluster_traffic_policy.go (applyConnectionPool,
applyOutlierDetection, applyLoadBalancer, getDefaultCircuitBreakerThresholds),
pilot/pkg/networking/core/route/retry/retry.go (DefaultPolicy, ConvertPolicy),
pilot/pkg/features (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, default true), and Envoy's
outlier_detection_impl.h defaults. Subsets are not modelled: every ready endpoint of the Service
port is a host and the host-level trafficPolicy (with portLevelSettings for the port) applies.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.fields import Fields, thaw
from netsim.model import Pod, RawObject, Service, ServicePort

UINT32_MAX = 2**32 - 1  # Istio's default for every circuit breaker threshold
CLUSTER_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"  # Istio's default meshConfig.rootNamespace
LB_POLICIES = ("LEAST_REQUEST", "ROUND_ROBIN", "RANDOM")
# retry.go defaultPolicy. Since Istio 1.23 (istio/istio#52111) 503 is not in its
# retriable_status_codes: EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY defaults to true.
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled",
                    "retriable-status-codes")
HTTP2_APP_PROTOCOLS = ("http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


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
class RetryPolicy:
    """The route's Envoy retry policy (retry.go ConvertPolicy)."""

    num_retries: int = 2
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    retriable_status_codes: tuple[int, ...] = ()
    per_try_timeout_ms: int | None = None
    previous_hosts: bool = True  # envoy.retry_host_predicates.previous_hosts
    host_selection_max_attempts: int = 5
    base_interval_ms: int = 25  # Envoy's default retry back-off base
    max_interval_ms: int = 250  # 10 x base


@dataclass(frozen=True, slots=True)
class UpstreamCluster:
    """What the client sidecar holds for `outbound|port||fqdn`."""

    name: str
    hosts: tuple[Host, ...]
    lb_policy: str = "LEAST_REQUEST"
    http2: bool = False
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    outlier: OutlierDetection | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """The route a plain request takes: its retry policy (None: retries off) and timeout."""

    retry: RetryPolicy | None = RetryPolicy()
    timeout_ms: int | None = None  # Istio's default route timeout is off
    virtual_service: str | None = None  # "ns/name"
    index: int | None = None  # which http[] entry


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """The client, the Service port and the Envoy config a load run exercises."""

    client: str  # "ns/pod"
    service: str  # "ns/name"
    port: int
    cluster: UpstreamCluster
    route: Route
    destination_rule: str | None = None  # "ns/name"
    notes: tuple[str, ...] = ()


def resolve_target(cluster: Cluster, client: str, namespace: str, name: str,
                   port: int | str) -> LoadTarget:
    """The Envoy cluster and route the client's sidecar uses for the Service port.

    Raises InputError when the client pod, the Service or the port does not exist.
    """
    pod = _pod(cluster, client)
    service = cluster.service(namespace, name)
    if service is None:
        raise InputError(f"no Service {namespace}/{name}", obj="command line", field="--to")
    sport = _service_port(service, port)
    fqdn = f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"
    notes: list[str] = []
    if not _has_sidecar(cluster, pod):
        notes.append(f"{client} does not look injected (no istio-injection=enabled namespace "
                     "label, no istio-proxy container): simulated as if it had a sidecar")
    dr = _pick(_visible(cluster.raw("DestinationRule"), pod, namespace, fqdn, "host"),
               pod.namespace, namespace)
    policy = _traffic_policy(dr, sport.port) if dr else {}
    outlier = policy.get("outlierDetection")
    upstream = UpstreamCluster(
        name=f"outbound|{sport.port}||{fqdn}", hosts=_hosts(cluster, service, sport),
        lb_policy=_lb_policy(policy.get("loadBalancer"), notes),
        http2=_http2(sport, policy.get("connectionPool")),
        circuit_breakers=_circuit_breakers(policy.get("connectionPool")),
        outlier=_outlier(outlier) if outlier is not None else None)
    if dr is not None and _spec(dr).list("subsets"):
        notes.append(f"DestinationRule {dr.namespace}/{dr.name} subsets are not simulated: "
                     "every ready endpoint, host-level trafficPolicy")
    vs = _pick(_visible(cluster.raw("VirtualService"), pod, namespace, fqdn, "hosts"),
               pod.namespace, namespace)
    route = _route(vs, notes) if vs else Route()
    return LoadTarget(client=pod.key, service=service.key, port=sport.port, cluster=upstream,
                      route=route, destination_rule=f"{dr.namespace}/{dr.name}" if dr else None,
                      notes=tuple(notes))


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


def _hosts(cluster: Cluster, service: Service, sport: ServicePort) -> tuple[Host, ...]:
    """Ready endpoints of the port, deduplicated, in address order (Istio sends only ready
    endpoints to EDS unless PILOT_SEND_UNHEALTHY_ENDPOINTS)."""
    found: dict[str, Host] = {}
    for sl in cluster.slices_for(service):
        ep_port = next((p for p in sl.ports if (p.name or None) == (sport.name or None)
                        and p.protocol == sport.protocol), None)
        if ep_port is None or not ep_port.port:
            continue
        for e in sl.endpoints:
            if e.addresses and e.ready:
                ip = e.addresses[0]
                address = f"[{ip}]:{ep_port.port}" if ":" in ip else f"{ip}:{ep_port.port}"
                found.setdefault(address, Host(address=address, pod=e.target))
    return tuple(sorted(found.values(), key=_address_key))


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


# ---------------------------------------------------------------- which objects apply



def _spec(obj: RawObject) -> Fields:
    return Fields(thaw(obj.body), obj.meta.source, obj.meta.ref).sub("spec")


def _host_matches(pattern: str, namespace: str, fqdn: str) -> int:
    """How specifically a DestinationRule host or VirtualService host names the Service: 0 no
    match, else higher is more specific (short names take the object's namespace)."""
    if "." not in pattern and pattern != "*":
        pattern = f"{pattern}.{namespace}.svc.{CLUSTER_DOMAIN}"
    if pattern == fqdn:
        return 1000
    if pattern.startswith("*") and fqdn.endswith(pattern[1:]):
        return len(pattern)
    return 0


def _visible(objects: tuple[RawObject, ...], client: Pod, svc_ns: str, fqdn: str,
             field: str) -> list[tuple[int, RawObject]]:
    """Objects that apply to the client and name the host, with how specifically."""
    out = []
    for obj in objects:
        spec = _spec(obj)
        ns = obj.namespace or "default"
        export = spec.str_list("exportTo")
        if export and not ("*" in export or client.namespace in export
                           or ("." in export and ns == client.namespace)):
            continue
        if field == "hosts":
            gateways = spec.str_list("gateways")
            if gateways and "mesh" not in gateways:
                continue
            hosts = spec.str_list("hosts")
        else:
            hosts = (spec.str("host", required=True),)
            selector = spec.sub("workloadSelector").string_map("matchLabels")
            if selector and any(client.labels.get(k) != v for k, v in selector.items()):
                continue
        score = max((_host_matches(h, ns, fqdn) for h in hosts), default=0)
        if score:
            out.append((score, obj))
    return out


def _pick(found: list[tuple[int, RawObject]], client_ns: str, svc_ns: str) -> RawObject | None:
    """Istio's lookup order: the client's namespace, the Service's, then the root namespace;
    the most specific host within one namespace, then the oldest (by name here)."""
    for ns in (client_ns, svc_ns, ROOT_NAMESPACE):
        here = [(score, o) for score, o in found if (o.namespace or "default") == ns]
        if here:
            return sorted(here, key=lambda so: (-so[0], so[1].name))[0][1]
    return None


# ---------------------------------------------------------------- DestinationRule


def _traffic_policy(dr: RawObject, port: int) -> dict[str, Fields | None]:
    """The trafficPolicy parts for the port: a portLevelSettings entry replaces the top-level
    connectionPool, outlierDetection or loadBalancer it sets (Istio MergeTrafficPolicy)."""
    top = _spec(dr).sub("trafficPolicy")
    parts = {k: top.opt_sub(k) for k in ("connectionPool", "outlierDetection", "loadBalancer")}
    for level in top.items("portLevelSettings"):
        if level.sub("port").int("number") == port:
            parts.update({k: level.opt_sub(k) for k in parts if level.has(k)})
    return parts


def parse_duration_ms(f: Fields, key: str) -> int | None:
    """A protobuf Duration as Istio's YAML takes it ("10s", "1m", "1.5s", "500ms")."""
    text = f.str(key)
    if text is None:
        return None
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise f.error(key, f"must be a duration such as 10s, 500ms or 1m, got {text!r}")
    return round(sum(float(n) * _UNIT_MS[u] for n, u in parts))


def _circuit_breakers(pool: Fields | None) -> CircuitBreakers:
    """applyConnectionPool: only values above zero replace Istio's 2^32-1 defaults."""
    if pool is None:
        return CircuitBreakers()
    tcp, http = pool.sub("tcp"), pool.sub("http")

    def positive(f: Fields, key: str, default: int) -> int:
        value = f.int(key, lo=0, hi=UINT32_MAX)
        return value if value else default

    return CircuitBreakers(
        max_connections=positive(tcp, "maxConnections", UINT32_MAX),
        max_pending_requests=positive(http, "http1MaxPendingRequests", UINT32_MAX),
        max_requests=positive(http, "http2MaxRequests", UINT32_MAX),
        max_retries=positive(http, "maxRetries", UINT32_MAX),
        max_requests_per_connection=positive(http, "maxRequestsPerConnection", 0),
        max_concurrent_streams=positive(http, "maxConcurrentStreams", 2**31 - 1))


def _http2(sport: ServicePort, pool: Fields | None) -> bool:
    """HTTP/2 upstream: an http2/grpc port, or h2UpgradePolicy UPGRADE (the mesh default is
    DO_NOT_UPGRADE)."""
    upgrade = pool.sub("http").enum("h2UpgradePolicy", ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"),
                                    default="DEFAULT") if pool else "DEFAULT"
    if upgrade != "DEFAULT":
        return upgrade == "UPGRADE"
    proto = (sport.app_protocol or (sport.name or "").split("-")[0]).lower()
    return proto in HTTP2_APP_PROTOCOLS


def _lb_policy(lb: Fields | None, notes: list[str]) -> str:
    """applyLoadBalancer: LEAST_CONN is LEAST_REQUEST; unset is LEAST_REQUEST."""
    if lb is None:
        return "LEAST_REQUEST"
    simple = lb.enum("simple", ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH",
                                "ROUND_ROBIN", "LEAST_REQUEST"), default="UNSPECIFIED")
    if lb.has("consistentHash") or simple == "PASSTHROUGH":
        notes.append("consistentHash and PASSTHROUGH load balancing are not simulated: "
                     "LEAST_REQUEST used")
        return "LEAST_REQUEST"
    return {"UNSPECIFIED": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST"}.get(simple, simple)


def _outlier(od: Fields) -> OutlierDetection:
    """applyOutlierDetection: thresholds only when set (0 disables), percent only above 0,
    panic threshold from minHealthPercent (0 unless set)."""
    base = parse_duration_ms(od, "baseEjectionTime")
    base = 30_000 if base is None else base
    c5xx = od.int("consecutive5xxErrors", lo=0, hi=UINT32_MAX)
    gateway = od.int("consecutiveGatewayErrors", default=0, lo=0, hi=UINT32_MAX)
    local = od.int("consecutiveLocalOriginFailures", lo=0, hi=UINT32_MAX)
    percent = od.int("maxEjectionPercent", lo=0, hi=100)
    return OutlierDetection(
        consecutive_5xx=5 if c5xx is None else c5xx,
        consecutive_gateway_failure=gateway,
        split_external_local_origin_errors=od.bool("splitExternalLocalOriginErrors"),
        consecutive_local_origin_failure=local if local else 5,
        interval_ms=parse_duration_ms(od, "interval") or 10_000,
        base_ejection_time_ms=base,
        max_ejection_time_ms=max(300_000, base),
        max_ejection_percent=percent if percent else 10,
        healthy_panic_threshold=od.int("minHealthPercent", default=0, lo=0, hi=100))


# ---------------------------------------------------------------- VirtualService


def _route(vs: RawObject, notes: list[str]) -> Route:
    """The first http route without match conditions (else the first), as a plain GET / takes
    it; its retries and timeout."""
    routes = list(_spec(vs).items("http"))
    ref = f"{vs.namespace or 'default'}/{vs.name}"
    if not routes:
        return Route(virtual_service=ref)
    index = next((i for i, r in enumerate(routes) if not r.list("match")), 0)
    r = routes[index]
    if r.list("match") or len(routes) > 1:
        notes.append(f"VirtualService {ref}: http[{index}] used"
                     + (" (its match conditions are not evaluated)" if r.list("match") else ""))
    if r.has("fault"):
        notes.append(f"VirtualService {ref} http[{index}].fault is not simulated")
    if any(d.sub("destination").has("subset") for d in r.items("route")):
        notes.append(f"VirtualService {ref} http[{index}] routes to subsets: not simulated, "
                     "every endpoint of the host is used")
    return Route(retry=_retry(r.opt_sub("retries")), timeout_ms=parse_duration_ms(r, "timeout")
                 or None, virtual_service=ref, index=index)


def _retry(retries: Fields | None) -> RetryPolicy | None:
    """ConvertPolicy: no retries block gives the default; attempts 0 (or unset) turns retries
    off; bare status codes in retryOn become retriable_status_codes."""
    if retries is None:
        return RetryPolicy()
    attempts = retries.int("attempts", default=0, lo=0, hi=UINT32_MAX)
    if attempts <= 0:
        return None
    retry_on, codes = DEFAULT_RETRY_ON, ()
    text = retries.str("retryOn")
    if text:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        codes = tuple(int(p) for p in parts if p.isdigit() and 100 <= int(p) <= 599)
        retry_on = tuple(p for p in parts if not p.isdigit())
        if codes and "retriable-status-codes" not in retry_on:
            retry_on += ("retriable-status-codes",)
    base = parse_duration_ms(retries, "backoff")
    previous = retries.data.get("retryIgnorePreviousHosts")
    return RetryPolicy(
        num_retries=attempts, retry_on=retry_on, retriable_status_codes=codes,
        per_try_timeout_ms=parse_duration_ms(retries, "perTryTimeout") or None,
        previous_hosts=True if previous is None else bool(previous),
        base_interval_ms=base or 25, max_interval_ms=10 * (base or 25))
