"""Istio's routing resources read for sidecars: VirtualService, DestinationRule, protocols.

Who has a sidecar is proxy.istio_inject's answer, and PeerAuthentication's mode
policies.istio_peerauthn's; this module reads what only the sidecar's config needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.fields import EMPTY, Fields, FrozenDict, thaw
from netsim.model import UDP, RawObject, ServicePort
from proxy.sidecar_types import (
    MESH_GATEWAY,
    UNLIMITED,
    ConnectionPool,
    Fault,
    OutlierDetection,
    Redirect,
    Rewrite,
    StringMatch,
    is_duration,
)

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


# ---------------------------------------------------------------- shared helpers


def fqdn(host: str, namespace: str, suffix: str = "cluster.local") -> str:
    """A host as Istio resolves it: a short name takes the resource's namespace.

    Names with a dot are taken as written (model.ResolveShortnameToFQDN).
    """
    if "*" in host or "." in host:
        return host.lower()
    return f"{host}.{namespace}.svc.{suffix}".lower()


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, or a leading "*" wildcard over any suffix."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def exported_to(export_to: tuple[str, ...], owner_ns: str, client_ns: str) -> bool:
    """exportTo: empty or "*" means everywhere, "." the resource's own namespace."""
    if not export_to or "*" in export_to:
        return True
    return ("." in export_to and owner_ns == client_ns) or client_ns in export_to



def _fields(obj: RawObject) -> Fields:
    ref = f"{obj.kind} {obj.namespace or 'default'}/{obj.name}"
    return Fields(thaw(obj.body), obj.meta.source, ref).sub("spec")


def _duration(f: Fields, key: str) -> str | None:
    value = f.str(key)
    if value is not None and not is_duration(value):
        raise f.error(key, f"must be a duration such as 2s or 100ms, got {value!r}")
    return value


def _string_match(f: Fields, key: str) -> StringMatch:
    """An Istio StringMatch: exact, prefix or regex; {} (or regex "*") tests presence."""
    sub = f.sub(key)
    kinds = [k for k in ("exact", "prefix", "regex") if sub.has(k)]
    if len(kinds) > 1:
        raise sub.error(None, f"only one of exact, prefix, regex may be set, got "
                        f"{', '.join(kinds)}")
    if not kinds:
        return StringMatch("present")
    value = sub.str(kinds[0])
    if kinds[0] == "regex":
        if value == "*":  # route.go canBeConvertedToPresentMatch
            return StringMatch("present")
        import re

        try:
            re.compile(value)
        except re.error as exc:
            raise sub.error("regex", f"invalid regular expression {value!r}: {exc}") from None
    return StringMatch(kinds[0], value)


def _percent(f: Fields, key: str, legacy: str | None = None) -> float:
    """percentage.value (0-100), else the deprecated integer `percent`, else 0."""
    if f.has(key):
        value = f.sub(key).data.get("value", 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 <= value <= 100:
            raise f.sub(key).error("value", f"must be a number from 0 to 100, got {value!r}")
        return float(value)
    if legacy and f.has(legacy):
        return float(f.int(legacy, lo=0, hi=100))
    return 0.0


# ---------------------------------------------------------------- VirtualService


@dataclass(frozen=True, slots=True)
class HttpMatchSpec:
    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    query: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    port: int | None = None
    source_labels: FrozenDict = EMPTY
    source_namespace: str | None = None
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    host: str  # as Istio resolves it (fqdn)
    subset: str = ""
    port: int | None = None
    weight: int = 0


@dataclass(frozen=True, slots=True)
class HttpRouteSpec:
    name: str
    matches: tuple[HttpMatchSpec, ...]
    destinations: tuple[DestinationSpec, ...]
    timeout: str | None = None
    retries: tuple[int, str | None, str | None] | None = None  # attempts, perTry, retryOn
    fault: Fault | None = None
    mirrors: tuple[tuple[DestinationSpec, float], ...] = ()
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    direct_response: tuple[int, str] | None = None


@dataclass(frozen=True, slots=True)
class VirtualServiceSpec:
    key: str  # "ns/name"
    namespace: str
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    export_to: tuple[str, ...]
    http: tuple[HttpRouteSpec, ...]
    created: str

    @property
    def for_sidecars(self) -> bool:
        return not self.gateways or MESH_GATEWAY in self.gateways


def parse_virtual_service(obj: RawObject, suffix: str = "cluster.local") -> VirtualServiceSpec:
    """A VirtualService's HTTP routes with hosts resolved; InputError names bad fields."""
    ns = obj.namespace or "default"
    f = _fields(obj)
    hosts = f.str_list("hosts")
    if not hosts:
        raise f.error("hosts", "required: at least one host")
    http = tuple(_http_route(r, ns, suffix) for r in f.items("http"))
    return VirtualServiceSpec(
        key=f"{ns}/{obj.name}", namespace=ns, hosts=tuple(fqdn(h, ns, suffix) for h in hosts),
        gateways=f.str_list("gateways"), export_to=f.str_list("exportTo"), http=http,
        created=obj.meta.created or "")


def _destination(f: Fields, ns: str, suffix: str, weight: int = 0) -> DestinationSpec:
    port = f.sub("port").int("number", lo=1, hi=65535) if f.has("port") else None
    return DestinationSpec(fqdn(f.str("host", required=True), ns, suffix),
                           f.str("subset", default=""), port, weight)


def _http_route(f: Fields, ns: str, suffix: str) -> HttpRouteSpec:
    destinations = tuple(_destination(d.sub("destination"), ns, suffix,
                                      d.int("weight", default=0, lo=0, hi=100))
                         for d in f.items("route"))
    redirect = direct = None
    if f.has("redirect"):
        r = f.sub("redirect")
        redirect = Redirect(code=r.int("redirectCode", default=301, lo=300, hi=399),
                            uri=r.str("uri"), authority=r.str("authority"),
                            scheme=r.str("scheme"), port=r.int("port", lo=1, hi=65535))
    if f.has("directResponse"):
        d = f.sub("directResponse")
        body = d.sub("body")
        direct = (d.int("status", required=True, lo=200, hi=599),
                  body.str("string", default="") or "")
    if not destinations and redirect is None and direct is None:
        raise f.error("route", "required: a route, redirect or directResponse")
    return HttpRouteSpec(
        name=f.str("name", default=""), matches=tuple(_match(m) for m in f.items("match")),
        destinations=destinations, timeout=_duration(f, "timeout"),
        retries=_retries(f.opt_sub("retries")), fault=_fault(f.opt_sub("fault")),
        mirrors=_mirrors(f, ns, suffix), rewrite=_rewrite(f.opt_sub("rewrite")),
        redirect=redirect, direct_response=direct)


def _match(f: Fields) -> HttpMatchSpec:
    def opt(key: str) -> StringMatch | None:
        return _string_match(f, key) if f.has(key) else None

    def named(key: str) -> tuple[tuple[str, StringMatch], ...]:
        sub = f.sub(key)
        return tuple((k.lower() if key != "queryParams" else k, _string_match(sub, k))
                     for k in sorted(sub.data))

    return HttpMatchSpec(
        name=f.str("name", default=""), uri=opt("uri"), scheme=opt("scheme"),
        method=opt("method"), authority=opt("authority"), headers=named("headers"),
        without_headers=named("withoutHeaders"), query=named("queryParams"),
        ignore_uri_case=f.bool("ignoreUriCase"), port=f.int("port", lo=1, hi=65535),
        source_labels=f.string_map("sourceLabels"), source_namespace=f.str("sourceNamespace"),
        gateways=f.str_list("gateways"))


def _retries(f: Fields | None) -> tuple[int, str | None, str | None] | None:
    if f is None:
        return None
    return (f.int("attempts", default=0, lo=0, hi=UNLIMITED), _duration(f, "perTryTimeout"),
            f.str("retryOn"))


def _fault(f: Fields | None) -> Fault | None:
    if f is None:
        return None
    delay, abort = f.opt_sub("delay"), f.opt_sub("abort")
    fault = Fault()
    if delay is not None:
        fixed = _duration(delay, "fixedDelay")
        if fixed is None:  # exponentialDelay is not supported by Istio (route.go)
            raise delay.error("fixedDelay", "required field is missing")
        fault = Fault(delay=fixed, delay_percent=_percent(delay, "percentage", "percent"))
    if abort is not None:
        status, grpc = abort.int("httpStatus", lo=200, hi=599), abort.str("grpcStatus")
        if status is None and grpc is None:
            raise abort.error("httpStatus", "required: httpStatus or grpcStatus")
        fault = Fault(fault.delay, fault.delay_percent, status, grpc,
                      _percent(abort, "percentage"))
    return fault if (fault.delay or fault.abort_status or fault.abort_grpc) else None


def _mirrors(f: Fields, ns: str, suffix: str) -> tuple[tuple[DestinationSpec, float], ...]:
    out = []
    if f.has("mirror"):
        pct = _percent(f, "mirrorPercentage") if f.has("mirrorPercentage") else 100.0
        out.append((_destination(f.sub("mirror"), ns, suffix), pct))
    for m in f.items("mirrors"):
        pct = _percent(m, "percentage") if m.has("percentage") else 100.0
        out.append((_destination(m.sub("destination"), ns, suffix), pct))
    return tuple(out)


def _rewrite(f: Fields | None) -> Rewrite | None:
    if f is None:
        return None
    regex = f.opt_sub("uriRegexRewrite")
    pair = (regex.str("match", required=True), regex.str("rewrite", default="")) \
        if regex is not None else None
    return Rewrite(uri=f.str("uri"), authority=f.str("authority"), uri_regex=pair)


# ---------------------------------------------------------------- DestinationRule


@dataclass(frozen=True, slots=True)
class TrafficPolicySpec:
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


_TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
_LB_SIMPLE = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN",
              "LEAST_REQUEST")


def parse_destination_rule(obj: RawObject, suffix: str = "cluster.local") \
        -> DestinationRuleSpec:
    ns = obj.namespace or "default"
    f = _fields(obj)
    subsets = []
    for s in f.items("subsets"):
        subsets.append(SubsetSpec(s.str("name", required=True), s.string_map("labels"),
                                  _policy(s.opt_sub("trafficPolicy"))))
    selector = f.sub("workloadSelector").string_map("matchLabels") \
        if f.has("workloadSelector") else None
    return DestinationRuleSpec(
        key=f"{ns}/{obj.name}", namespace=ns, host=fqdn(f.str("host", required=True), ns,
                                                        suffix),
        subsets=tuple(subsets), policy=_policy(f.opt_sub("trafficPolicy")) or
        TrafficPolicySpec(), export_to=f.str_list("exportTo"), created=obj.meta.created or "",
        workload_selector=selector)


def _policy(f: Fields | None, nested: bool = False) -> TrafficPolicySpec | None:
    if f is None:
        return None
    tls = f.sub("tls").enum("mode", _TLS_MODES) if f.has("tls") else None
    lb = f.sub("loadBalancer")
    lb_policy = lb.enum("simple", _LB_SIMPLE) if lb.has("simple") else \
        ("RING_HASH" if lb.has("consistentHash") else None)
    port_level = []
    if not nested:
        for p in f.items("portLevelSettings"):
            number = p.sub("port").int("number", required=True, lo=1, hi=65535)
            port_level.append((number, _policy(p, nested=True)))
    return TrafficPolicySpec(tls, lb_policy, _pool(f.opt_sub("connectionPool")),
                             _outlier(f.opt_sub("outlierDetection")), tuple(port_level))


def _pool(f: Fields | None) -> ConnectionPool | None:
    if f is None:
        return None
    tcp, http = f.sub("tcp"), f.sub("http")
    return ConnectionPool(
        max_connections=tcp.int("maxConnections", default=UNLIMITED, lo=0) or UNLIMITED,
        connect_timeout=_duration(tcp, "connectTimeout") or "10s",
        http1_max_pending_requests=http.int("http1MaxPendingRequests", default=UNLIMITED,
                                            lo=0) or UNLIMITED,
        http2_max_requests=http.int("http2MaxRequests", default=UNLIMITED, lo=0) or UNLIMITED,
        max_requests_per_connection=http.int("maxRequestsPerConnection", default=0, lo=0),
        max_retries=http.int("maxRetries", default=UNLIMITED, lo=0) or UNLIMITED,
        idle_timeout=_duration(http, "idleTimeout"))


def _outlier(f: Fields | None) -> OutlierDetection | None:
    if f is None:
        return None
    errors = f.int("consecutive5xxErrors", lo=0)
    if errors is None:
        errors = f.int("consecutiveErrors", default=5, lo=0)  # deprecated spelling
    return OutlierDetection(
        consecutive_5xx_errors=errors or None,
        consecutive_gateway_errors=f.int("consecutiveGatewayErrors", lo=0) or None,
        interval=_duration(f, "interval") or "10s",
        base_ejection_time=_duration(f, "baseEjectionTime") or "30s",
        max_ejection_percent=f.int("maxEjectionPercent", default=10, lo=0, hi=100),
        min_health_percent=f.int("minHealthPercent", default=0, lo=0, hi=100))
