"""Istio's DestinationRule read once into frozen data: host, trafficPolicy, subsets.

Values stay as written (None when unset): the sidecar config and `netsim mesh load` apply
istiod's defaults in their own Envoy views. The merge of port-level and subset policies is here,
once: istio/istio pilot/pkg/networking/core MergeTrafficPolicy, restated in
../shared/reference/mesh-ingress.md section 6 and the DestinationRule reference ("Settings
specified at the subset level will override the corresponding settings specified at the
DestinationRule level"; port-level settings replace the destination-level part they set).
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.fields import Fields, FrozenDict
from netsim.model import RawObject
from proxy.istio_resources import UINT32_MAX, duration, fqdn, resource_fields

TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
LB_SIMPLE = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN",
             "LEAST_REQUEST")
H2_UPGRADE_POLICIES = ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE")


@dataclass(frozen=True, slots=True)
class ConnectionPoolSettings:
    """connectionPool.tcp and .http as written."""

    max_connections: int | None = None
    connect_timeout: str | None = None
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: str | None = None
    h2_upgrade_policy: str | None = None
    max_concurrent_streams: int | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetectionSettings:
    """outlierDetection as written."""

    consecutive_5xx_errors: int | None = None
    consecutive_errors: int | None = None  # the deprecated spelling
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval: str | None = None
    base_ejection_time: str | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancerSettings:
    simple: str | None = None
    consistent_hash: bool = False


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """A trafficPolicy; each part is None when not set, so a merge can tell."""

    tls_mode: str | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetectionSettings | None = None
    port_level: tuple[tuple[int, TrafficPolicy], ...] = ()

    def over(self, base: TrafficPolicy) -> TrafficPolicy:
        """This policy's parts replacing `base`'s, whole parts at a time (MergeTrafficPolicy)."""
        return TrafficPolicy(
            self.tls_mode if self.tls_mode is not None else base.tls_mode,
            self.load_balancer if self.load_balancer is not None else base.load_balancer,
            self.connection_pool if self.connection_pool is not None else base.connection_pool,
            self.outlier_detection if self.outlier_detection is not None
            else base.outlier_detection)

    def for_port(self, port: int) -> TrafficPolicy:
        """The policy on one port: its portLevelSettings entry over the top level."""
        level = next((p for n, p in self.port_level if n == port), TrafficPolicy())
        return level.over(self)


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: FrozenDict
    policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True)
class DestinationRule:
    key: str  # "ns/name"
    namespace: str
    host: str  # as Istio resolves it (fqdn)
    subsets: tuple[Subset, ...]
    policy: TrafficPolicy
    export_to: tuple[str, ...]
    created: str
    workload_selector: FrozenDict | None = None
    name: str = ""

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)

    def policy_for(self, subset: str, port: int) -> TrafficPolicy | None:
        """The policy of traffic to `subset` ("" for the whole host) on `port`: the subset's
        parts over the host's, each level's port settings over its own top level. None when
        the rule defines no such subset."""
        host = self.policy.for_port(port)
        if not subset:
            return host
        found = self.subset(subset)
        if found is None:
            return None
        return found.policy.for_port(port).over(host) if found.policy else host


def parse_destination_rule(obj: RawObject, suffix: str = "cluster.local") -> DestinationRule:
    """A DestinationRule with its host resolved; InputError names bad fields."""
    ns = obj.namespace or "default"
    f = resource_fields(obj)
    subsets = tuple(Subset(s.str("name", required=True), s.string_map("labels"),
                           _policy(s.opt_sub("trafficPolicy"))) for s in f.items("subsets"))
    selector = f.sub("workloadSelector").string_map("matchLabels") \
        if f.has("workloadSelector") else None
    return DestinationRule(
        key=f"{ns}/{obj.name}", namespace=ns,
        host=fqdn(f.str("host", required=True), ns, suffix), subsets=subsets,
        policy=_policy(f.opt_sub("trafficPolicy")) or TrafficPolicy(),
        export_to=f.str_list("exportTo"), created=obj.meta.created or "",
        workload_selector=selector, name=obj.name)


def _policy(f: Fields | None, nested: bool = False) -> TrafficPolicy | None:
    if f is None:
        return None
    tls = f.sub("tls").enum("mode", TLS_MODES) if f.has("tls") else None
    lb = f.opt_sub("loadBalancer")
    balancer = LoadBalancerSettings(lb.enum("simple", LB_SIMPLE), lb.has("consistentHash")) \
        if lb is not None else None
    port_level = []
    if not nested:
        for p in f.items("portLevelSettings"):
            number = p.sub("port").int("number", required=True, lo=1, hi=65535)
            port_level.append((number, _policy(p, nested=True)))
    return TrafficPolicy(tls, balancer, _pool(f.opt_sub("connectionPool")),
                         _outlier(f.opt_sub("outlierDetection")), tuple(port_level))


def _count(f: Fields, key: str) -> int | None:
    return f.int(key, lo=0, hi=UINT32_MAX)


def _pool(f: Fields | None) -> ConnectionPoolSettings | None:
    if f is None:
        return None
    tcp, http = f.sub("tcp"), f.sub("http")
    return ConnectionPoolSettings(
        max_connections=_count(tcp, "maxConnections"),
        connect_timeout=duration(tcp, "connectTimeout"),
        http1_max_pending_requests=_count(http, "http1MaxPendingRequests"),
        http2_max_requests=_count(http, "http2MaxRequests"),
        max_requests_per_connection=_count(http, "maxRequestsPerConnection"),
        max_retries=_count(http, "maxRetries"), idle_timeout=duration(http, "idleTimeout"),
        h2_upgrade_policy=http.enum("h2UpgradePolicy", H2_UPGRADE_POLICIES),
        max_concurrent_streams=_count(http, "maxConcurrentStreams"))


def _outlier(f: Fields | None) -> OutlierDetectionSettings | None:
    if f is None:
        return None
    return OutlierDetectionSettings(
        consecutive_5xx_errors=_count(f, "consecutive5xxErrors"),
        consecutive_errors=_count(f, "consecutiveErrors"),
        consecutive_gateway_errors=_count(f, "consecutiveGatewayErrors"),
        consecutive_local_origin_failures=_count(f, "consecutiveLocalOriginFailures"),
        split_external_local_origin_errors=f.bool("splitExternalLocalOriginErrors"),
        interval=duration(f, "interval"), base_ejection_time=duration(f, "baseEjectionTime"),
        max_ejection_percent=f.int("maxEjectionPercent", lo=0, hi=100),
        min_health_percent=f.int("minHealthPercent", lo=0, hi=100))
