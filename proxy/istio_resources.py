"""Istio's VirtualService read once into frozen data, for every part of netsim that routes by it.

The sidecar config (proxy.sidecar_istio), `netsim mesh load` (proxy.envoy_policy) and `netsim
rollout` (netsim.rollout_mesh) each translate this parsed form into their own view, so a field is
validated in one place and a bad one is one InputError naming the file, object and field path.
Field names follow istio/api networking/v1alpha3 virtual_service.proto; DestinationRule is read
by proxy.istio_destination_rule with the helpers here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from netsim.fields import EMPTY, Fields, FrozenDict, thaw
from netsim.model import RawObject
from proxy.sidecar_types import (
    MESH_GATEWAY,
    Fault,
    Redirect,
    Rewrite,
    StringMatch,
    is_duration,
    seconds,
)

UINT32_MAX = 2**32 - 1  # the largest value Istio's uint32 fields take

# ---------------------------------------------------------------- shared helpers


def resource_fields(obj: RawObject) -> Fields:
    """The object's spec, with "Kind ns/name" for error messages."""
    ref = f"{obj.kind} {obj.namespace or 'default'}/{obj.name}"
    return Fields(thaw(obj.body), obj.meta.source, ref).sub("spec")


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


def duration(f: Fields, key: str) -> str | None:
    """A duration field as written (Go syntax: 2s, 0.5s, 100ms, 1h30m), checked."""
    value = f.str(key)
    if value is not None and not is_duration(value):
        raise f.error(key, f"must be a duration such as 10s, 500ms or 1m, got {value!r}")
    return value


def duration_ms(text: str | None) -> int | None:
    """A checked duration in whole milliseconds, as Envoy's config holds it."""
    return None if text is None else round(seconds(text) * 1000)


def parse_duration_ms(f: Fields, key: str) -> int | None:
    """A duration field in milliseconds (None when unset)."""
    return duration_ms(duration(f, key))


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
class HTTPMatchRequest:
    """One `match` block: its conditions are ANDed; a route's blocks are ORed."""

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

    @property
    def matches_everything(self) -> bool:
        """No condition at all (`{}`, or only a name): every request passes."""
        return replace(self, name="") == HTTPMatchRequest()


@dataclass(frozen=True, slots=True)
class RouteDestination:
    """A route's `destination` with its `weight` (0 when unset)."""

    host: str  # as Istio resolves it (fqdn)
    subset: str = ""
    port: int | None = None
    weight: int = 0


@dataclass(frozen=True, slots=True)
class HTTPRetry:
    """`retries` as written; each consumer applies retry.go ConvertPolicy in its own units."""

    attempts: int
    per_try_timeout: str | None = None
    retry_on: str | None = None
    backoff: str | None = None
    ignore_previous_hosts: bool | None = None  # retryIgnorePreviousHosts; unset means true

    def __iter__(self):
        """(attempts, perTryTimeout, retryOn): the triple the sidecar route builder reads."""
        return iter((self.attempts, self.per_try_timeout, self.retry_on))


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    name: str
    matches: tuple[HTTPMatchRequest, ...]
    destinations: tuple[RouteDestination, ...]
    timeout: str | None = None
    retries: HTTPRetry | None = None
    fault: Fault | None = None
    mirrors: tuple[tuple[RouteDestination, float], ...] = ()
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    direct_response: tuple[int, str] | None = None


@dataclass(frozen=True, slots=True)
class L4MatchAttributes:
    """A `tcp` or `tls` route's match block (sniHosts only on tls)."""

    port: int | None = None
    destination_subnets: tuple[str, ...] = ()
    source_labels: FrozenDict = EMPTY
    source_namespace: str | None = None
    gateways: tuple[str, ...] = ()
    sni_hosts: tuple[str, ...] = ()

    @property
    def matches_everything(self) -> bool:
        return self == L4MatchAttributes()


@dataclass(frozen=True, slots=True)
class L4Route:
    """A `tcp` or `tls` route: first match wins, then weighted destinations."""

    matches: tuple[L4MatchAttributes, ...]
    destinations: tuple[RouteDestination, ...]


@dataclass(frozen=True, slots=True)
class VirtualService:
    key: str  # "ns/name"
    namespace: str
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    export_to: tuple[str, ...]
    http: tuple[HTTPRoute, ...]
    created: str
    name: str = ""
    tcp: tuple[L4Route, ...] = ()
    tls: tuple[L4Route, ...] = ()

    @property
    def for_sidecars(self) -> bool:
        """`gateways` unset means the mesh; a list without `mesh` leaves sidecars alone."""
        return not self.gateways or MESH_GATEWAY in self.gateways


def parse_virtual_service(obj: RawObject, suffix: str = "cluster.local", *,
                          require_route: bool = True) -> VirtualService:
    """A VirtualService with hosts resolved; InputError names bad fields.

    Istio's validation rejects an http route with no route, redirect or directResponse;
    require_route=False lets one through (its retries and timeout still read), as
    `netsim mesh load` and `netsim rollout` always have.
    """
    ns = obj.namespace or "default"
    f = resource_fields(obj)
    hosts = f.str_list("hosts")
    if not hosts:
        raise f.error("hosts", "required: at least one host")
    http = tuple(_http_route(r, ns, suffix, require_route) for r in f.items("http"))
    tcp = tuple(_l4_route(r, ns, suffix, tls=False) for r in f.items("tcp"))
    tls = tuple(_l4_route(r, ns, suffix, tls=True) for r in f.items("tls"))
    return VirtualService(
        key=f"{ns}/{obj.name}", namespace=ns, hosts=tuple(fqdn(h, ns, suffix) for h in hosts),
        gateways=f.str_list("gateways"), export_to=f.str_list("exportTo"), http=http,
        created=obj.meta.created or "", name=obj.name, tcp=tcp, tls=tls)


def _destination(f: Fields, ns: str, suffix: str, weight: int = 0) -> RouteDestination:
    port = f.sub("port").int("number", lo=1, hi=65535) if f.has("port") else None
    return RouteDestination(fqdn(f.str("host", required=True), ns, suffix),
                            f.str("subset", default=""), port, weight)


def _destinations(f: Fields, ns: str, suffix: str) -> tuple[RouteDestination, ...]:
    return tuple(_destination(d.sub("destination"), ns, suffix,
                              d.int("weight", default=0, lo=0, hi=100))
                 for d in f.items("route"))


def _http_route(f: Fields, ns: str, suffix: str, require_route: bool) -> HTTPRoute:
    destinations = _destinations(f, ns, suffix)
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
    if require_route and not destinations and redirect is None and direct is None:
        raise f.error("route", "required: a route, redirect or directResponse")
    return HTTPRoute(
        name=f.str("name", default=""), matches=tuple(_match(m) for m in f.items("match")),
        destinations=destinations, timeout=duration(f, "timeout"),
        retries=_retries(f.opt_sub("retries")), fault=_fault(f.opt_sub("fault")),
        mirrors=_mirrors(f, ns, suffix), rewrite=_rewrite(f.opt_sub("rewrite")),
        redirect=redirect, direct_response=direct)


def _match(f: Fields) -> HTTPMatchRequest:
    def opt(key: str) -> StringMatch | None:
        return _string_match(f, key) if f.has(key) else None

    def named(key: str) -> tuple[tuple[str, StringMatch], ...]:
        sub = f.sub(key)
        return tuple((k.lower() if key != "queryParams" else k, _string_match(sub, k))
                     for k in sorted(sub.data))

    return HTTPMatchRequest(
        name=f.str("name", default=""), uri=opt("uri"), scheme=opt("scheme"),
        method=opt("method"), authority=opt("authority"), headers=named("headers"),
        without_headers=named("withoutHeaders"), query=named("queryParams"),
        ignore_uri_case=f.bool("ignoreUriCase"), port=f.int("port", lo=1, hi=65535),
        source_labels=f.string_map("sourceLabels"), source_namespace=f.str("sourceNamespace"),
        gateways=f.str_list("gateways"))


def _retries(f: Fields | None) -> HTTPRetry | None:
    if f is None:
        return None
    return HTTPRetry(attempts=f.int("attempts", default=0, lo=0, hi=UINT32_MAX),
                     per_try_timeout=duration(f, "perTryTimeout"), retry_on=f.str("retryOn"),
                     backoff=duration(f, "backoff"),
                     ignore_previous_hosts=f.bool("retryIgnorePreviousHosts", default=None))


def _fault(f: Fields | None) -> Fault | None:
    if f is None:
        return None
    delay, abort = f.opt_sub("delay"), f.opt_sub("abort")
    fault = Fault()
    if delay is not None:
        fixed = duration(delay, "fixedDelay")
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


def _mirrors(f: Fields, ns: str, suffix: str) -> tuple[tuple[RouteDestination, float], ...]:
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


def _l4_route(f: Fields, ns: str, suffix: str, *, tls: bool) -> L4Route:
    matches = tuple(L4MatchAttributes(
        port=m.int("port", lo=1, hi=65535), destination_subnets=m.str_list("destinationSubnets"),
        source_labels=m.string_map("sourceLabels"), source_namespace=m.str("sourceNamespace"),
        gateways=m.str_list("gateways"), sni_hosts=m.str_list("sniHosts") if tls else ())
        for m in f.items("match"))
    return L4Route(matches, _destinations(f, ns, suffix))
