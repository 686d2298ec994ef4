"""The Envoy-like configuration one Istio sidecar holds: listeners, routes, clusters, endpoints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netsim.fields import EMPTY, FrozenDict

# Names and ports as istiod gives them (pilot/pkg/networking/util, pilot/pkg/model/listener.go,
# pkg/config/constants). Keep every name the real Envoy config carries here, in one place.
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
HEALTH_PORT = 15021
PROMETHEUS_PORT = 15090
PASSTHROUGH = "PassthroughCluster"
BLACKHOLE = "BlackHoleCluster"
INBOUND_PASSTHROUGH = "InboundPassthroughCluster"
ALLOW_ANY = "allow_any"  # catch-all virtual host (and its route) under ALLOW_ANY
BLOCK_ALL = "block_all"  # catch-all virtual host under REGISTRY_ONLY: direct 502
DEFAULT_ROUTE = "default"  # route name when no VirtualService applies (route.go)
OUTBOUND_BLACKHOLE_CHAIN = "virtualOutbound-blackhole"
OUTBOUND_CATCHALL_CHAIN = "virtualOutbound-catchall-tcp"
INBOUND_BLACKHOLE_CHAIN = "virtualInbound-blackhole"
INBOUND_CATCHALL_HTTP_CHAIN = "virtualInbound-catchall-http"
PASSTHROUGH_CHAIN = "PassthroughFilterChain"
INBOUND_SOURCE = "127.0.0.6"  # Envoy dials the app from here (listener_address.go)
MESH_GATEWAY = "mesh"
TLS, RAW_BUFFER = "tls", "raw_buffer"
HTTP, TCP = "http", "tcp"  # a filter chain's protocol: HTTP connection manager or tcp_proxy
# ALPNs (pilot/pkg/networking/core/listener.go). HTTP/1.0 is off unless features.HTTP10.
PLAINTEXT_HTTP_ALPNS = ("http/1.1", "h2c")
MTLS_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
ALL_ISTIO_MTLS_ALPNS = ("istio", "istio-peer-exchange", *MTLS_HTTP_ALPNS)
MTLS_TCP_ALPNS = ("istio-peer-exchange", "istio")
# Default route retries (pilot/pkg/networking/core/route/retry/retry.go defaultPolicy).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2
UNLIMITED = 2**32 - 1  # Istio's default circuit-breaker thresholds
# Response flags in the order Envoy prints several of them (StreamInfo ResponseFlag enum).
RESPONSE_FLAG_ORDER = ("LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL",
                       "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF",
                       "DT", "UPE", "NC", "OM", "DF")
# Peer authentication modes (istio/api security/v1beta1/peer_authentication.proto).
STRICT, PERMISSIVE, DISABLE = "STRICT", "PERMISSIVE", "DISABLE"

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def is_duration(text: str) -> bool:
    """A duration as Istio's CRDs take it (Go syntax: 2s, 0.5s, 100ms, 1h30m)."""
    return bool(_DURATION.match(text))


def seconds(duration: str) -> float:
    """A duration string in seconds."""
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(duration))


@dataclass(frozen=True, slots=True)
class MeshOptions:
    """Mesh-wide settings (MeshConfig) that shape every sidecar's config."""

    outbound_traffic_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    trust_domain: str = "cluster.local"
    root_namespace: str = "istio-system"
    domain_suffix: str = "cluster.local"
    # Istio now builds virtual-host domains without ":port" and sets
    # ignore_port_in_host_matching (httproute.go SidecarIgnorePort); older releases listed
    # each domain with and without the port. True reproduces the older lists.
    port_in_domains: bool = False
    # PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN (on by default): "fqdn." is a domain too.
    absolute_fqdn: bool = True


# ---------------------------------------------------------------- listeners


@dataclass(frozen=True, slots=True)
class FilterChainMatch:
    """Envoy's FilterChainMatch, in the fields Istio sets."""

    destination_port: int | None = None
    prefix_ranges: tuple[str, ...] = ()
    transport_protocol: str | None = None
    application_protocols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FilterChain:
    """One filter chain: an HTTP connection manager (RDS or an inline route) or a tcp_proxy."""

    name: str
    match: FilterChainMatch
    protocol: str  # HTTP or TCP
    route_config: str | None = None  # RDS route config name (outbound HTTP chains)
    cluster: str | None = None  # tcp_proxy cluster, or the inline route's only cluster
    inline_prefix: str | None = None  # an inline route matching this prefix (15021, 15090)
    tls: bool = False  # terminates (m)TLS: the chain's transport socket


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    address: str
    port: int
    direction: str  # OUTBOUND or INBOUND (Envoy's traffic_direction)
    chains: tuple[FilterChain, ...] = ()
    default_chain: FilterChain | None = None
    use_original_dst: bool = False
    bind_to_port: bool = True
    additional_addresses: tuple[str, ...] = ()


# ---------------------------------------------------------------- routes


@dataclass(frozen=True, slots=True)
class StringMatch:
    """An Envoy StringMatcher (exact, prefix, regex as RE2 full match) or a presence test."""

    kind: str  # exact | prefix | regex | present
    value: str = ""
    ignore_case: bool = False

    def matches(self, text: str | None) -> bool:
        if text is None:
            return False
        if self.kind == "present":
            return True
        value, text_ = (self.value.lower(), text.lower()) if self.ignore_case else \
            (self.value, text)
        if self.kind == "exact":
            return text_ == value
        if self.kind == "prefix":
            return text_.startswith(value)
        return re.fullmatch(self.value, text, re.IGNORECASE if self.ignore_case else 0) \
            is not None

    def __str__(self) -> str:
        return "present" if self.kind == "present" else f"{self.kind} {self.value}"


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str  # lower case; ":method", ":authority", ":scheme" for the pseudo-headers
    match: StringMatch
    invert: bool = False  # withoutHeaders


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Envoy's RouteMatch: one path specifier, headers and query parameters, all ANDed."""

    path_kind: str = "prefix"  # prefix | path | regex
    path: str = "/"
    case_sensitive: bool = True
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[tuple[str, StringMatch], ...] = ()

    @property
    def is_catch_all(self) -> bool:
        """Matches every request (route.go IsCatchAllRoute)."""
        return (self.path_kind == "prefix" and self.path == "/" and not self.headers
                and not self.query)


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int
    retry_on: str = DEFAULT_RETRY_ON
    per_try_timeout: str | None = None
    status_codes: tuple[int, ...] = ()  # Istio 1.23+ no longer retries 503 (istio#52111)


DEFAULT_RETRY = Retry(DEFAULT_RETRY_ATTEMPTS)


@dataclass(frozen=True, slots=True)
class Fault:
    """The HTTP fault filter's per-route config: independent delay and abort."""

    delay: str | None = None
    delay_percent: float = 0.0
    abort_status: int | None = None
    abort_grpc: str | None = None
    abort_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Mirror:
    cluster: str
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Rewrite:
    uri: str | None = None  # prefix rewrite
    authority: str | None = None
    uri_regex: tuple[str, str] | None = None  # (match, substitution)


@dataclass(frozen=True, slots=True)
class Redirect:
    code: int = 301
    uri: str | None = None
    authority: str | None = None
    scheme: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    cluster: str
    weight: int = 100


@dataclass(frozen=True, slots=True)
class Route:
    """One Envoy route: a match and what it does (forward to weighted clusters or reply)."""

    name: str
    match: RouteMatch
    clusters: tuple[WeightedCluster, ...] = ()
    timeout: str | None = None  # None: no timeout (Istio's default)
    retry: Retry | None = DEFAULT_RETRY
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    direct_response: tuple[int, str] | None = None  # (status, body)
    virtual_service: str | None = None  # "ns/name" of the VirtualService that made it


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...] = ()
    ignore_port_in_host_matching: bool = True


# ---------------------------------------------------------------- clusters and endpoints


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """DestinationRule connectionPool as Envoy circuit breakers; Istio's defaults."""

    max_connections: int = UNLIMITED
    connect_timeout: str = "10s"
    http1_max_pending_requests: int = UNLIMITED
    http2_max_requests: int = UNLIMITED
    max_requests_per_connection: int = 0  # 0: unlimited
    max_retries: int = UNLIMITED
    idle_timeout: str | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Only present when a DestinationRule sets it (cluster_traffic_policy.go)."""

    consecutive_5xx_errors: int | None = 5
    consecutive_gateway_errors: int | None = None
    interval: str = "10s"
    base_ejection_time: str = "30s"
    max_ejection_percent: int = 10
    min_health_percent: int = 0


@dataclass(frozen=True, slots=True)
class LbEndpoint:
    address: str  # an IP, or "unix://path" for the bootstrap's pipes
    port: int | None
    health: str = "HEALTHY"  # HEALTHY | UNHEALTHY
    weight: int = 1
    pod: str | None = None  # "ns/name" of the pod behind it
    mtls: bool = False  # the sidecar originates Istio mTLS to it (auto mTLS or DestinationRule)


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    type: str  # EDS | ORIGINAL_DST | STATIC
    direction: str = ""  # outbound | inbound | "" (static clusters)
    port: int | None = None
    subset: str = ""
    fqdn: str = ""
    protocol: str | None = None  # Istio's protocol for the port (HTTP, TCP, ...)
    destination_rule: str | None = None  # "ns/name"
    tls_mode: str | None = None  # the DestinationRule's tls.mode; None: auto mTLS
    sni: str | None = None  # SNI of Istio mTLS to this cluster
    lb_policy: str = "LEAST_REQUEST"
    connection_pool: ConnectionPool = ConnectionPool()
    outlier_detection: OutlierDetection | None = None
    endpoints: tuple[LbEndpoint, ...] = ()

    @property
    def healthy_endpoints(self) -> tuple[LbEndpoint, ...]:
        return tuple(e for e in self.endpoints if e.health == "HEALTHY")


# ---------------------------------------------------------------- the whole config


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    """What `istioctl proxy-config` would show for one pod's sidecar, and what it executes."""

    pod: str  # "ns/name"
    pod_ip: str | None
    listeners: tuple[Listener, ...]
    routes: tuple[RouteConfig, ...]
    clusters: tuple[Cluster, ...]
    options: MeshOptions = MeshOptions()
    warnings: tuple[str, ...] = ()
    pods_by_ip: FrozenDict = field(default=EMPTY, repr=False, compare=False)
    _clusters: FrozenDict = field(default=EMPTY, repr=False, compare=False)
    _routes: FrozenDict = field(default=EMPTY, repr=False, compare=False)
    _listeners: FrozenDict = field(default=EMPTY, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_clusters", FrozenDict({c.name: c for c in self.clusters}))
        object.__setattr__(self, "_routes", FrozenDict({r.name: r for r in self.routes}))
        object.__setattr__(self, "_listeners", FrozenDict(
            {(a, lst.port): lst for lst in self.listeners
             for a in (lst.address, *lst.additional_addresses)}))

    def cluster(self, name: str) -> Cluster | None:
        return self._clusters.get(name)

    def route_config(self, name: str) -> RouteConfig | None:
        return self._routes.get(name)

    def listener(self, address: str, port: int) -> Listener | None:
        return self._listeners.get((address, port))

    def listener_named(self, name: str) -> Listener | None:
        return next((lst for lst in self.listeners if lst.name == name), None)
