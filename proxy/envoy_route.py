"""The route one request takes through the client sidecar: which VirtualService, which http[]
entry its match conditions select, the weighted clusters, the retry policy and the timeout.

Match blocks are turned into Envoy routes by the sidecar config's own builder
(proxy.sidecar_vhosts.vs_routes: a block for another port, gateway or client is left out, as
route.go BuildHTTPRoutesForVirtualService does) and tested by the sidecar's matcher
(proxy.sidecar_routing.route_matches), so `netsim mesh load` and `netsim trace` pick the same
route. Retries restate pilot/pkg/networking/core/route/retry/retry.go (DefaultPolicy,
ConvertPolicy) and pilot/pkg/features (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, default true).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from netsim.cluster import Cluster
from netsim.model import Pod
from netsim.packet import HttpRequest
from proxy.istio_destination_rule import DestinationRule
from proxy.istio_resources import (
    HTTPRetry,
    VirtualService,
    duration_ms,
    exported_to,
    host_matches,
)
from proxy.sidecar_config import Context, MeshService
from proxy.sidecar_routing import route_matches
from proxy.sidecar_types import DISABLE, MeshOptions
from proxy.sidecar_vhosts import vs_routes

CLUSTER_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"  # Istio's default meshConfig.rootNamespace
# retry.go defaultPolicy. Since Istio 1.23 (istio/istio#52111) 503 is not in its
# retriable_status_codes: EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY defaults to true.
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled",
                    "retriable-status-codes")


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
class Route:
    """The route a request takes: its retry policy (None: retries off) and timeout, or the
    answer the sidecar gives itself (404 NR when no route matches, a redirect, a direct
    response)."""

    retry: RetryPolicy | None = RetryPolicy()
    timeout_ms: int | None = None  # Istio's default route timeout is off
    virtual_service: str | None = None  # "ns/name"
    index: int | None = None  # which http[] entry
    answer: int | None = None  # a status the sidecar answers with, without an upstream
    answer_flag: str | None = None  # Envoy's response flag for that answer (NR)


@dataclass(frozen=True, slots=True)
class RouteResult:
    """A route with the Envoy clusters it sends to, (outbound|port|subset|host, weight)."""

    route: Route
    clusters: tuple[tuple[str, int], ...]
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------- which objects apply


def specificity(pattern: str, fqdn: str) -> int:
    """How specifically a resolved host names the Service: 0 no match, else higher is more
    specific (an exact name beats any wildcard, a longer wildcard a shorter one)."""
    if pattern == fqdn:
        return 1000
    return len(pattern) if pattern.startswith("*") and host_matches(pattern, fqdn) else 0


def applicable(objects: list, client: Pod, fqdn: str) -> list[tuple[int, object]]:
    """VirtualServices or DestinationRules that apply to the client and name the host, each
    with its specificity: exported to the client's namespace, bound to the mesh (VS), and
    selecting the client (a DestinationRule's workloadSelector)."""
    out = []
    for obj in objects:
        if not exported_to(obj.export_to, obj.namespace, client.namespace):
            continue
        if isinstance(obj, DestinationRule):
            selector = obj.workload_selector
            if selector and any(client.labels.get(k) != v for k, v in selector.items()):
                continue
            hosts: tuple[str, ...] = (obj.host,)
        else:
            if not obj.for_sidecars:
                continue
            hosts = obj.hosts
        score = max((specificity(h, fqdn) for h in hosts), default=0)
        if score:
            out.append((score, obj))
    return out


def pick(found: list[tuple[int, object]], client_ns: str, svc_ns: str):
    """Istio's lookup order: the client's namespace, the Service's, then the root namespace;
    the most specific host within one namespace, then the oldest (by name here)."""
    for ns in (client_ns, svc_ns, ROOT_NAMESPACE):
        here = [(score, o) for score, o in found if o.namespace == ns]
        if here:
            return sorted(here, key=lambda so: (-so[0], so[1].name))[0][1]
    return None


# ---------------------------------------------------------------- the route


def http_route(cluster: Cluster, vs: VirtualService | None, client: Pod, port: int, fqdn: str,
               request: HttpRequest) -> RouteResult:
    """The route the request takes: the first http[] entry with a match block the request
    passes. A VirtualService with no route for this port and client leaves the Service its
    default route; one whose routes all fail the request answers 404 NR."""
    default = RouteResult(Route(), ((f"outbound|{port}||{fqdn}", 100),))
    if vs is None:
        return default
    ctx = _context(cluster, client)
    any_route = False
    for i, http in enumerate(vs.http):
        routes = vs_routes(ctx, replace(vs, http=(http,)), port)
        any_route = any_route or bool(routes)
        hit = next((r for r in routes if route_matches(r.match, request)), None)
        if hit is None:
            continue
        answer = hit.redirect.code if hit.redirect else \
            hit.direct_response[0] if hit.direct_response else None
        route = Route(retry=retry_policy(http.retries), timeout_ms=duration_ms(http.timeout)
                      or None, virtual_service=vs.key, index=i, answer=answer)
        notes = []
        if http.matches or len(vs.http) > 1:
            notes.append(f"VirtualService {vs.key}: http[{i}] used" + (
                f" ({describe(request)} passes its match)" if http.matches else ""))
        if http.fault:
            notes.append(f"VirtualService {vs.key} http[{i}].fault is not simulated")
        return RouteResult(route, tuple((c.cluster, c.weight) for c in hit.clusters),
                           tuple(notes))
    if not any_route:
        return replace(default, notes=(f"VirtualService {vs.key} has no http route for port "
                                       f"{port} from {client.key}: the default route",))
    return RouteResult(Route(virtual_service=vs.key, answer=404, answer_flag="NR"), (),
                       (f"VirtualService {vs.key}: no http route matches {describe(request)}: "
                        "the sidecar answers 404 NR",))


def describe(request: HttpRequest) -> str:
    """The request as the notes name it: method, URL and any headers."""
    headers = ", ".join(f"{k}: {v}" for k, v in request.headers)
    return f"{request}" + (f" with {headers}" if headers else "")


def _context(cluster: Cluster, client: Pod) -> Context:
    """A sidecar Context holding what vs_routes reads: the client (for sourceLabels and
    sourceNamespace) and the Services by FQDN (for a destination's default port)."""
    ctx = Context(cluster, client, MeshOptions(), sidecars=lambda _: True,
                  mtls_mode=lambda *_: DISABLE)
    for svc in cluster.services:
        name = f"{svc.name}.{svc.namespace}.svc.{CLUSTER_DOMAIN}"
        ctx.by_fqdn[name] = MeshService(svc, name, ())
    return ctx


def retry_policy(retries: HTTPRetry | None) -> RetryPolicy | None:
    """ConvertPolicy: no retries block gives the default; attempts 0 (or unset) turns retries
    off; bare status codes in retryOn become retriable_status_codes."""
    if retries is None:
        return RetryPolicy()
    if retries.attempts <= 0:
        return None
    retry_on, codes = DEFAULT_RETRY_ON, ()
    if retries.retry_on:
        parts = [p.strip() for p in retries.retry_on.split(",") if p.strip()]
        codes = tuple(int(p) for p in parts if p.isdigit() and 100 <= int(p) <= 599)
        retry_on = tuple(p for p in parts if not p.isdigit())
        if codes and "retriable-status-codes" not in retry_on:
            retry_on += ("retriable-status-codes",)
    base = duration_ms(retries.backoff) or 25
    previous = retries.ignore_previous_hosts
    return RetryPolicy(
        num_retries=retries.attempts, retry_on=retry_on,
        retriable_status_codes=codes,
        per_try_timeout_ms=duration_ms(retries.per_try_timeout) or None,
        previous_hosts=True if previous is None else previous,
        base_interval_ms=base, max_interval_ms=10 * base)
