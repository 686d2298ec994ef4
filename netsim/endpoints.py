"""Derive EndpointSlices for selector Services, as the EndpointSlice controller would."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

from netsim.fields import FrozenDict
from netsim.model import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Meta,
    Node,
    Pod,
    Service,
    family,
)
from netsim.workloads import safe_encode

MAX_ENDPOINTS_PER_SLICE = 100  # the controller's default --max-endpoints-per-slice
MANAGED_BY = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"


def derive_slices(services: Iterable[Service], pods: Iterable[Pod],
                  nodes: Iterable[Node], have: set[tuple[str, str]]) -> list[EndpointSlice]:
    """Slices for every Service with a selector and no slices in `have` ((namespace, name))."""
    index = _LabelIndex(pods)
    zones = {n.name: n.labels.get(ZONE_LABEL) for n in nodes}
    out: list[EndpointSlice] = []
    for s in services:
        if s.selector is None or (s.namespace, s.name) in have or s.type == "ExternalName":
            continue
        members = sorted((p for p in index.select(s.namespace, s.selector)
                          if p.ips and p.phase not in ("Succeeded", "Failed")),
                         key=lambda p: p.name)
        out += _slices_for(s, members, zones)
    return out


class _LabelIndex:
    """Pods by namespace and label pair, so a selector costs its smallest match, not a scan."""

    def __init__(self, pods: Iterable[Pod]) -> None:
        self.by_pair: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
        for p in pods:
            for key, value in p.labels.items():
                self.by_pair[p.namespace, key, value].append(p)

    def select(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        lists = [self.by_pair.get((namespace, k, v), []) for k, v in selector.items()]
        smallest = min(lists, key=len)
        return [p for p in smallest if all(p.labels.get(k) == v for k, v in selector.items())]


def _slices_for(s: Service, pods: list[Pod], zones: dict[str, str | None]) -> list[EndpointSlice]:
    """One group per distinct port mapping and family, up to 100 endpoints per slice."""
    groups: dict[tuple[str, tuple[EndpointPort, ...]], list[Endpoint]] = defaultdict(list)
    for p in pods:
        ports = _resolved_ports(s, p)
        ready = s.publish_not_ready_addresses or (p.ready and not p.terminating)
        serving = s.publish_not_ready_addresses or p.ready
        hostname = p.spec.hostname if p.spec.hostname and p.spec.subdomain == s.name else None
        for fam in s.ip_families or (family(p.ips[0]),):
            ip = p.ip_of(fam)
            if ip is None:
                continue
            groups[fam, ports].append(Endpoint(
                addresses=(ip,), ready=ready, serving=serving, terminating=p.terminating,
                node_name=p.node_name, zone=zones.get(p.node_name or ""), hostname=hostname,
                target=p.key))
    if not groups:  # the controller keeps one empty slice per Service ("placeholder")
        fam = (s.ip_families or ("IPv4",))[0]
        groups[fam, ()] = []
    labels = FrozenDict({"kubernetes.io/service-name": s.name,
                         "endpointslice.kubernetes.io/managed-by": MANAGED_BY})
    slices = []
    for (fam, ports), endpoints in sorted(groups.items(), key=lambda g: (g[0][0], str(g[0][1]))):
        for start in range(0, max(len(endpoints), 1), MAX_ENDPOINTS_PER_SLICE):
            chunk = endpoints[start:start + MAX_ENDPOINTS_PER_SLICE]
            seed = f"{s.key}/{fam}/{ports}/{start}".encode()
            suffix = safe_encode(int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(),
                                                "big"), 5)
            meta = Meta(kind="EndpointSlice", name=f"{s.name}-{suffix}", namespace=s.namespace,
                        labels=labels, source=s.meta.source)
            slices.append(EndpointSlice(meta=meta, service_name=s.name, address_type=fam,
                                        endpoints=tuple(chunk), ports=ports, derived=True))
    return slices


def _resolved_ports(s: Service, pod: Pod) -> tuple[EndpointPort, ...]:
    """Each Service port's target for this pod; a named port the pod lacks is left out."""
    out = []
    for sp in s.ports:
        target = sp.target
        number = pod.named_port(target, sp.protocol) if isinstance(target, str) else target
        if number is None:
            continue
        out.append(EndpointPort(port=number, protocol=sp.protocol, name=sp.name or "",
                                app_protocol=sp.app_protocol))
    return tuple(out)
