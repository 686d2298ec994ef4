"""Istio routing for rollouts: the VirtualService route and DestinationRule subsets a Service's
meshed clients follow, and the request share each weighted destination gets.

From istio/api networking/v1alpha3 virtual_service.proto and destination_rule.proto, restated in
../shared/reference/mesh-ingress.md sections 5, 6 and 15: short hosts take the rule's namespace;
`gateways` without `mesh` leaves the sidecars alone; http routes are first-match; a destination
gets weight/sum of weights (a lone one 100%); a subset filters endpoints by pod labels; a subset
the DestinationRule does not define is 503 NC, a subset without a healthy endpoint 503 UH.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from netsim.cluster import Cluster
from netsim.fields import EMPTY, FrozenDict
from netsim.model import RawObject, Service

CLUSTER_DOMAIN = "cluster.local"
MESH_GATEWAY = "mesh"


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


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: a host without a dot is `<host>.<namespace>.svc.<domain>`."""
    return host if "." in host or host == "*" else f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"


def service_fqdn(service: Service) -> str:
    return f"{service.name}.{service.namespace}.svc.{CLUSTER_DOMAIN}"


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _age(obj: RawObject) -> tuple[str, str, str]:
    return obj.meta.created or "", obj.namespace or "", obj.name


def find_route(cluster: Cluster, service: Service) -> MeshRoute | None:
    """The route the sidecars use for this Service, or None when no VirtualService binds it."""
    host = service_fqdn(service)
    bound = []
    for vs in cluster.raw("VirtualService"):
        spec = vs.body.get("spec") or EMPTY
        ns = vs.namespace or "default"
        gateways = spec.get("gateways") or (MESH_GATEWAY,)
        if MESH_GATEWAY not in gateways:
            continue
        if any(_host_matches(fqdn(str(h), ns), host) for h in spec.get("hosts") or ()):
            bound.append(vs)
    if not bound:
        return None
    bound.sort(key=_age)
    vs = bound[0]
    notes = []
    if len(bound) > 1:
        notes.append(f"{len(bound)} VirtualServices name {host}; sidecars use the oldest, "
                     f"{vs.namespace}/{vs.name}")
    rule, subsets = _destination_rule(cluster, service, vs.namespace or "default")
    spec = vs.body.get("spec") or EMPTY
    label, entry, more = _default_route(spec)
    notes += more
    ns = vs.namespace or "default"
    raw = [d for d in (entry.get("route") or ()) if isinstance(d, FrozenDict)]
    weights = [int(d.get("weight") or 0) for d in raw]
    if len(raw) == 1 and weights[0] == 0:
        weights = [100]  # a lone destination takes everything
    elif raw and sum(weights) == 0:
        notes.append(f"{label}: every weight is 0; shown split evenly")
        weights = [1] * len(raw)
    destinations = []
    for d, weight in zip(raw, weights, strict=True):
        target = d.get("destination") or EMPTY
        dhost = fqdn(str(target.get("host", "")), ns)
        subset = target.get("subset")
        local = dhost == host
        labels: FrozenDict | None = EMPTY
        if subset is not None:
            labels = subsets.get(subset) if local else EMPTY
        destinations.append(Destination(dhost, subset, weight, labels, local))
    return MeshRoute(f"{vs.namespace}/{vs.name}", label, tuple(destinations),
                     FrozenDict(subsets), rule, tuple(notes))


def _default_route(spec: FrozenDict) -> tuple[str, FrozenDict, list[str]]:
    """The route requests take when no match condition selects them: the first without `match`."""
    for kind in ("http", "tcp", "tls"):
        routes = [r for r in (spec.get(kind) or ()) if isinstance(r, FrozenDict)]
        if not routes:
            continue
        for i, r in enumerate(routes):
            if not r.get("match") or any(not m for m in r.get("match")):
                notes = [f"{kind}[{j}] has match conditions: requests it matches go where it "
                         "says, whatever the weights below" for j in range(i)]
                return f"{kind}[{i}]", r, notes
        return f"{kind}[0]", routes[0], [f"every {kind} route has match conditions; shown: "
                                         f"{kind}[0], for the requests it matches"]
    return "http", EMPTY, ["the VirtualService has no routes"]


def _destination_rule(cluster: Cluster, service: Service,
                      near: str) -> tuple[str | None, dict[str, FrozenDict]]:
    """The DestinationRule for the host (the VirtualService's namespace first, then the
    Service's) and its subsets."""
    host = service_fqdn(service)
    found = [dr for dr in cluster.raw("DestinationRule")
             if _host_matches(fqdn(str((dr.body.get("spec") or EMPTY).get("host", "")),
                                   dr.namespace or "default"), host)]
    if not found:
        return None, {}
    found.sort(key=lambda dr: (dr.namespace != near, dr.namespace != service.namespace,
                               *_age(dr)))
    dr = found[0]
    subsets = {}
    for s in (dr.body.get("spec") or EMPTY).get("subsets") or ():
        if isinstance(s, FrozenDict) and s.get("name"):
            subsets[str(s["name"])] = FrozenDict(s.get("labels") or {})
    return f"{dr.namespace}/{dr.name}", subsets


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
