"""Istio routing for rollouts: the VirtualService route and DestinationRule subsets a Service's
meshed clients follow, and the request share each weighted destination gets.

From istio/api networking/v1alpha3 virtual_service.proto and destination_rule.proto, restated in
../shared/reference/mesh-ingress.md sections 5, 6 and 15: short hosts take the rule's namespace;
`gateways` without `mesh` leaves the sidecars alone; http routes are first-match; a destination
gets weight/sum of weights (a lone one 100%); a subset filters endpoints by pod labels; a subset
the DestinationRule does not define is 503 NC, a subset without a healthy endpoint 503 UH.
The resources are parsed by proxy.istio_resources and proxy.istio_destination_rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from netsim.cluster import Cluster
from netsim.fields import EMPTY, FrozenDict
from netsim.model import Service
from proxy.istio_destination_rule import DestinationRule, parse_destination_rule
from proxy.istio_resources import (
    RouteDestination,
    VirtualService,
    host_matches,
    parse_virtual_service,
)

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True)
class Destination:
    """One weighted destination of a route."""

    host: str  # as resolved to an FQDN
    subset: str | None
    weight: int
    labels: FrozenDict | None = EMPTY  # the subset's labels; None: the subset is not defined
    local: bool = True  # the host is the Service being rolled out

    @property
    def name(self) -> str:
        return self.subset or self.host


@dataclass(frozen=True, slots=True)
class MeshRoute:
    """The route a Service's meshed clients take: where it comes from and its destinations."""

    virtual_service: str  # "ns/name", or "(none)" when netsim made the route up
    route: str  # "http[1]", "tcp[0]"
    destinations: tuple[Destination, ...]
    subsets: FrozenDict = EMPTY  # every subset of the DestinationRule: name -> labels
    destination_rule: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(d.weight for d in self.destinations)

    def weights(self) -> tuple[tuple[str, int], ...]:
        return tuple((d.name, d.weight) for d in self.destinations)


@dataclass(frozen=True, slots=True)
class MeshEndpoint:
    """A ready endpoint as Envoy's EDS would hold it: the pod, its version and labels."""

    pod: str
    version: str
    labels: FrozenDict


@dataclass(frozen=True, slots=True)
class MeshSplit:
    """Where a route sends requests: per version and per endpoint, and what fails."""

    versions: FrozenDict  # version (or "svc/host" for other hosts) -> fraction
    endpoints: FrozenDict  # pod -> fraction
    failed: float = 0.0
    reason: str | None = None


def service_fqdn(service: Service) -> str:
    return f"{service.name}.{service.namespace}.svc.{CLUSTER_DOMAIN}"


def _age(obj: VirtualService | DestinationRule) -> tuple[str, str, str]:
    return obj.created, obj.namespace, obj.name


def find_route(cluster: Cluster, service: Service) -> MeshRoute | None:
    """The route the sidecars use for this Service, or None when no VirtualService binds it."""
    host = service_fqdn(service)
    parsed = (parse_virtual_service(o, require_route=False) for o in cluster.raw("VirtualService"))
    bound = sorted((vs for vs in parsed
                    if vs.for_sidecars and any(host_matches(h, host) for h in vs.hosts)),
                   key=_age)
    if not bound:
        return None
    vs = bound[0]
    notes = []
    if len(bound) > 1:
        notes.append(f"{len(bound)} VirtualServices name {host}; sidecars use the oldest, "
                     f"{vs.key}")
    rule, subsets = _destination_rule(cluster, service, vs.namespace)
    label, entry, more = _default_route(vs)
    notes += more
    weights = [d.weight for d in entry]
    if len(entry) == 1 and weights[0] == 0:
        weights = [100]  # a lone destination takes everything
    elif entry and sum(weights) == 0:
        notes.append(f"{label}: every weight is 0; shown split evenly")
        weights = [1] * len(entry)
    destinations = []
    for d, weight in zip(entry, weights, strict=True):
        local = d.host == host
        labels: FrozenDict | None = EMPTY
        if d.subset:
            labels = subsets.get(d.subset) if local else EMPTY
        destinations.append(Destination(d.host, d.subset or None, weight, labels, local))
    return MeshRoute(vs.key, label, tuple(destinations), FrozenDict(subsets), rule, tuple(notes))


def _default_route(vs: VirtualService) -> tuple[str, tuple[RouteDestination, ...], list[str]]:
    """The route requests take when no match condition selects them: the first without `match`
    (or with a block that has no condition)."""
    for kind, routes in (("http", vs.http), ("tcp", vs.tcp), ("tls", vs.tls)):
        if not routes:
            continue
        for i, r in enumerate(routes):
            if not r.matches or any(m.matches_everything for m in r.matches):
                notes = [f"{kind}[{j}] has match conditions: requests it matches go where it "
                         "says, whatever the weights below" for j in range(i)]
                return f"{kind}[{i}]", r.destinations, notes
        return f"{kind}[0]", routes[0].destinations, [
            f"every {kind} route has match conditions; shown: {kind}[0], for the requests it "
            "matches"]
    return "http", (), ["the VirtualService has no routes"]


def _destination_rule(cluster: Cluster, service: Service,
                      near: str) -> tuple[str | None, dict[str, FrozenDict]]:
    """The DestinationRule for the host (the VirtualService's namespace first, then the
    Service's) and its subsets."""
    host = service_fqdn(service)
    found = [dr for dr in map(parse_destination_rule, cluster.raw("DestinationRule"))
             if host_matches(dr.host, host)]
    if not found:
        return None, {}
    found.sort(key=lambda dr: (dr.namespace != near, dr.namespace != service.namespace,
                               *_age(dr)))
    dr = found[0]
    return dr.key, {s.name: s.labels for s in dr.subsets}


def with_weight(route: MeshRoute, canary: str, labels: FrozenDict, weight: int,
                host: str) -> MeshRoute:
    """The route with `weight` (of 100) on the canary subset and the rest spread over the other
    destinations in proportion to their weights, as Argo Rollouts rewrites it at setWeight."""
    others = [d for d in route.destinations if d.subset != canary or not d.local]
    rest = 100 - weight
    current = sum(d.weight for d in others)
    shares = [d.weight * rest / current if current else rest / len(others) for d in others] \
        if others else []
    floors = [int(s) for s in shares]
    order = sorted(range(len(others)), key=lambda i: (floors[i] - shares[i], i))
    for i in order[:rest - sum(floors)]:  # largest remainder keeps the total at 100
        floors[i] += 1
    out = [replace(d, weight=w) for d, w in zip(others, floors, strict=True)]
    index = next((i for i, d in enumerate(route.destinations)
                  if d.subset == canary and d.local), len(out))
    out.insert(min(index, len(out)), Destination(host, canary, weight, labels, True))
    return replace(route, destinations=tuple(out))


def split(route: MeshRoute, endpoints: Iterable[MeshEndpoint]) -> MeshSplit:
    """The share of requests each version and endpoint gets under the route's weights."""
    eps = list(endpoints)
    total = route.total
    versions: dict[str, float] = {}
    per_pod: dict[str, float] = {}
    failed, reasons = 0.0, []
    for d in route.destinations:
        if d.weight <= 0 or total <= 0:
            continue
        part = d.weight / total
        if not d.local:
            versions[f"svc/{d.host}"] = versions.get(f"svc/{d.host}", 0.0) + part
            continue
        if d.labels is None:
            failed += part
            reasons.append(f"503 NC: no DestinationRule subset {d.subset!r}")
            continue
        members = [e for e in eps if all(e.labels.get(k) == v for k, v in d.labels.items())]
        if not members:
            failed += part
            reasons.append(f"503 UH: no healthy endpoint in {d.name}")
            continue
        for e in members:
            per_pod[e.pod] = per_pod.get(e.pod, 0.0) + part / len(members)
            versions[e.version] = versions.get(e.version, 0.0) + part / len(members)
    return MeshSplit(FrozenDict(versions), FrozenDict(per_pod), failed,
                     "; ".join(reasons) or None)
