"""Istio's routing resources as the sidecar config reads them: protocols, and the sidecar's view
of a DestinationRule (istiod's defaults applied).

VirtualService and DestinationRule are parsed by proxy.istio_resources and
proxy.istio_destination_rule; who has a sidecar is proxy.istio_inject's answer, and
PeerAuthentication's mode policies.istio_peerauthn's.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.fields import FrozenDict
from netsim.model import UDP, RawObject, ServicePort
from proxy import istio_destination_rule as dr_parse
from proxy.istio_destination_rule import (
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetectionSettings,
    TrafficPolicy,
)
from proxy.istio_resources import (
    HTTPMatchRequest,
    HTTPRoute,
    RouteDestination,
    VirtualService,
    exported_to,
    host_matches,
    parse_virtual_service,
)
from proxy.sidecar_types import UNLIMITED, ConnectionPool, OutlierDetection

# Re-exported for sidecar_config and sidecar_vhosts, which read them from here.
__all__ = ["SNIFFED", "DestinationRuleSpec", "DestinationSpec", "HttpMatchSpec",
           "HttpRouteSpec", "SubsetSpec", "TrafficPolicySpec", "VirtualServiceSpec",
           "exported_to", "host_matches", "is_http", "parse_destination_rule",
           "parse_virtual_service", "port_protocol"]

# ---------------------------------------------------------------- protocols

# protocol.Parse (pkg/config/protocol/instance.go): names Istio recognises, case-insensitive.
_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "grpc": "GRPC", "grpc-web": "GRPC-Web",
              "http": "HTTP", "http_proxy": "HTTP_PROXY", "http2": "HTTP2", "https": "HTTPS",
              "tls": "TLS", "mongo": "Mongo", "redis": "Redis", "mysql": "MySQL"}
# Kubernetes' standard appProtocol values (KEP-3726).
_K8S_APP_PROTOCOLS = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP",
                      "kubernetes.io/wss": "HTTPS"}
# Ports never sniffed: an unnamed port here is TCP (pkg/config/kube/conversion.go).
_WELL_KNOWN_TCP_PORTS = {25, 53, 3306, 27017}
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
SNIFFED = "UnsupportedProtocol"  # no declared protocol: Envoy sniffs (HTTP or TCP)


def port_protocol(port: ServicePort) -> str:
    """Istio's protocol for a Service port: appProtocol, else the port name's prefix.

    `http`, `http-web`, `grpc-x`, `tcp-db` declare; anything else is sniffed, except the
    well-known server-first ports (conversion.go ConvertProtocol).
    """
    if port.protocol == UDP:
        return "UDP"
    name = port.app_protocol or port.name or ""
    if name.lower() in _K8S_APP_PROTOCOLS:
        return _K8S_APP_PROTOCOLS[name.lower()]
    if name.lower().startswith("grpc-web"):
        return "GRPC-Web"
    found = _PROTOCOLS.get(name.split("-", 1)[0].lower())
    if found is None:
        return "TCP" if port.port in _WELL_KNOWN_TCP_PORTS else SNIFFED
    return found


def is_http(protocol: str) -> bool:
    return protocol in HTTP_PROTOCOLS


# ---------------------------------------------------------------- VirtualService

# The sidecar modules' names for the parsed VirtualService (proxy.istio_resources).
VirtualServiceSpec = VirtualService
HttpRouteSpec = HTTPRoute
HttpMatchSpec = HTTPMatchRequest
DestinationSpec = RouteDestination


# ---------------------------------------------------------------- DestinationRule


@dataclass(frozen=True, slots=True)
class TrafficPolicySpec:
    """A trafficPolicy as the sidecar's Envoy cluster takes it: istiod's defaults filled in."""

    tls_mode: str | None = None
    lb_policy: str | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    port_level: tuple[tuple[int, TrafficPolicySpec], ...] = ()

    def for_port(self, port: int) -> TrafficPolicySpec:
        """Port-level settings replace the top-level ones field by field."""
        found = next((p for n, p in self.port_level if n == port), None)
        if found is None:
            return self
        return TrafficPolicySpec(found.tls_mode or self.tls_mode,
                                 found.lb_policy or self.lb_policy,
                                 found.connection_pool or self.connection_pool,
                                 found.outlier_detection or self.outlier_detection)


@dataclass(frozen=True, slots=True)
class SubsetSpec:
    name: str
    labels: FrozenDict
    policy: TrafficPolicySpec | None = None


@dataclass(frozen=True, slots=True)
class DestinationRuleSpec:
    key: str
    namespace: str
    host: str
    subsets: tuple[SubsetSpec, ...]
    policy: TrafficPolicySpec
    export_to: tuple[str, ...]
    created: str
    workload_selector: FrozenDict | None = None

    def subset(self, name: str) -> SubsetSpec | None:
        return next((s for s in self.subsets if s.name == name), None)


def parse_destination_rule(obj: RawObject, suffix: str = "cluster.local") \
        -> DestinationRuleSpec:
    """The sidecar's view of a DestinationRule; InputError names bad fields."""
    dr = dr_parse.parse_destination_rule(obj, suffix)
    return DestinationRuleSpec(
        key=dr.key, namespace=dr.namespace, host=dr.host,
        subsets=tuple(SubsetSpec(s.name, s.labels, _policy(s.policy)) for s in dr.subsets),
        policy=_policy(dr.policy) or TrafficPolicySpec(), export_to=dr.export_to,
        created=dr.created, workload_selector=dr.workload_selector)


def _policy(p: TrafficPolicy | None) -> TrafficPolicySpec | None:
    if p is None:
        return None
    return TrafficPolicySpec(p.tls_mode, _lb_policy(p.load_balancer), _pool(p.connection_pool),
                             _outlier(p.outlier_detection),
                             tuple((n, _policy(level)) for n, level in p.port_level))


def _lb_policy(lb: LoadBalancerSettings | None) -> str | None:
    if lb is None:
        return None
    return lb.simple or ("RING_HASH" if lb.consistent_hash else None)


def _pool(p: ConnectionPoolSettings | None) -> ConnectionPool | None:
    """applyConnectionPool: unset or 0 keeps Istio's 2^32-1 thresholds."""
    if p is None:
        return None
    return ConnectionPool(
        max_connections=p.max_connections or UNLIMITED,
        connect_timeout=p.connect_timeout or "10s",
        http1_max_pending_requests=p.http1_max_pending_requests or UNLIMITED,
        http2_max_requests=p.http2_max_requests or UNLIMITED,
        max_requests_per_connection=p.max_requests_per_connection or 0,
        max_retries=p.max_retries or UNLIMITED, idle_timeout=p.idle_timeout)


def _outlier(od: OutlierDetectionSettings | None) -> OutlierDetection | None:
    if od is None:
        return None
    errors = od.consecutive_5xx_errors
    if errors is None:  # the deprecated spelling, else Envoy's default
        errors = 5 if od.consecutive_errors is None else od.consecutive_errors
    return OutlierDetection(
        consecutive_5xx_errors=errors or None,
        consecutive_gateway_errors=od.consecutive_gateway_errors or None,
        interval=od.interval or "10s", base_ejection_time=od.base_ejection_time or "30s",
        max_ejection_percent=10 if od.max_ejection_percent is None else od.max_ejection_percent,
        min_health_percent=od.min_health_percent or 0)
