"""The cluster model: load manifests into a typed, validated, addressed, read-only Cluster."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO, Any

from netsim import dns_addon
from netsim.addressing import (
    AddressPlan,
    address_nodes,
    address_pods,
    address_services,
    choose_pools,
)
from netsim.dns_server import find_dns_service
from netsim.endpoints import derive_slices
from netsim.errors import InputError, Source
from netsim.fields import FrozenDict
from netsim.model import (
    EndpointSlice,
    Ingress,
    IngressClass,
    KubeProxyConfiguration,
    Meta,
    Namespace,
    NetworkPolicy,
    Node,
    Pod,
    RawObject,
    Service,
    Workload,
)
from netsim.parse import object_key, parse_doc
from netsim.parse.pods import with_name_label
from netsim.scheduler import fits, schedule
from netsim.settings import API_VERSION, Settings
from netsim.sources import RawDoc, read_inputs
from netsim.workloads import expand, workload_of


@dataclass(frozen=True, slots=True)
class Cluster:
    """Everything netsim knows about one cluster, after defaulting, expansion and addressing."""

    settings: Settings
    addressing: AddressPlan
    nodes: tuple[Node, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    workloads: tuple[Workload, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    network_policies: tuple[NetworkPolicy, ...] = ()
    ingresses: tuple[Ingress, ...] = ()
    ingress_classes: tuple[IngressClass, ...] = ()
    kube_proxy: KubeProxyConfiguration | None = None
    others: tuple[RawObject, ...] = ()
    warnings: tuple[str, ...] = ()
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ------------------------------------------------------------ lookups (built once, lazily)

    def _lookup(self, name: str) -> Any:
        table = self._index.get(name)
        if table is None:
            table = self._index[name] = _BUILDERS[name](self)
        return table

    def node(self, name: str) -> Node | None:
        return self._lookup("nodes").get(name)

    def namespace(self, name: str) -> Namespace | None:
        return self._lookup("namespaces").get(name)

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._lookup("pods").get((namespace, name))

    def service(self, namespace: str, name: str) -> Service | None:
        return self._lookup("services").get((namespace, name))

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return self._lookup("pods_by_node").get(node, ())

    def pods_in(self, namespace: str) -> tuple[Pod, ...]:
        return self._lookup("pods_by_namespace").get(namespace, ())

    def slices_for(self, service: Service) -> tuple[EndpointSlice, ...]:
        return self._lookup("slices").get((service.namespace, service.name), ())

    def pod_by_ip(self, ip: str) -> Pod | None:
        return self._lookup("pods_by_ip").get(ip)

    def raw(self, kind: str) -> tuple[RawObject, ...]:
        """Objects of one kind that netsim keeps raw (CNI, mesh and admin policy resources)."""
        return self._lookup("raw").get(kind, ())

    def derived(self, name: str, build: Callable[[Cluster], Any]) -> Any:
        """What `build(cluster)` returns, built once per cluster: a table another module
        derives from the model (the DNS server, say), which traces would otherwise rebuild."""
        key = ("derived", name)
        if key not in self._index:
            self._index[key] = build(self)
        return self._index[key]


def _group(items: Any, key: Any) -> dict:
    out: dict = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return {k: tuple(v) for k, v in out.items()}


_BUILDERS = {
    "nodes": lambda c: {n.name: n for n in c.nodes},
    "namespaces": lambda c: {n.name: n for n in c.namespaces},
    "pods": lambda c: {(p.namespace, p.name): p for p in c.pods},
    "services": lambda c: {(s.namespace, s.name): s for s in c.services},
    "pods_by_node": lambda c: _group((p for p in c.pods if p.node_name), lambda p: p.node_name),
    "pods_by_namespace": lambda c: _group(c.pods, lambda p: p.namespace),
    "slices": lambda c: _group(c.endpoint_slices, lambda s: (s.namespace, s.service_name)),
    "pods_by_ip": lambda c: {ip: p for p in c.pods if not p.host_network for ip in p.ips},
    "raw": lambda c: _group(c.others, lambda o: o.kind),
}




def load(paths: list[str], *, settings_path: str | None = None,
         overrides: dict[str, Any] | None = None, stdin: IO[str] | None = None) -> Cluster:
    """Load manifests (files, directories, "-" for stdin) into an addressed Cluster.

    Several inputs layer like `kubectl apply`: a later object with the same kind, namespace
    and name replaces an earlier one; the same object twice in one input is an error.
    `overrides` are CLI flags, which beat the NetsimConfig. Raises InputError for bad input.
    """
    return load_inputs(read_inputs(paths, stdin), settings_path=settings_path,
                       overrides=overrides)


def load_inputs(inputs: list[list[RawDoc]], *, settings_path: str | None = None,
                overrides: dict[str, Any] | None = None) -> Cluster:
    """Load already-read inputs (one list of documents per input, layered in order)."""
    warnings: list[str] = []
    docs = _layer(inputs)
    typed: dict[type, list] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    for doc in docs:
        obj = parse_doc(doc)
        if obj is None:
            skipped[f"{doc.data.get('apiVersion')}/{doc.data.get('kind')}"] += 1
        elif isinstance(obj, tuple):  # legacy Endpoints become EndpointSlices
            typed[EndpointSlice].extend(obj)
        else:
            typed[type(obj)].append(obj)
    if skipped:
        kinds = ", ".join(f"{k} ({n})" if n > 1 else k for k, n in sorted(skipped.items()))
        warnings.append(f"skipped kinds netsim does not model: {kinds}")
    settings = _settings(typed.pop(Settings, []), settings_path, overrides or {})
    kube_proxy = (typed.get(KubeProxyConfiguration) or [None])[-1]
    return _build(settings, kube_proxy, typed, warnings)


def _layer(inputs: list[list[RawDoc]]) -> list[RawDoc]:
    merged: dict[Any, RawDoc] = {}
    anonymous: list[RawDoc] = []
    for docs in inputs:
        seen: dict[Any, RawDoc] = {}
        for doc in docs:
            key = object_key(doc)
            if key is None or not key[3]:
                anonymous.append(doc)  # parse_doc reports the missing kind or name
                continue
            if key in seen and key[1] not in ("KubeProxyConfiguration", "NetsimConfig"):
                first = seen[key].source
                where = f"{key[1]} {key[2]}/{key[3]}" if key[2] else f"{key[1]} {key[3]}"
                raise InputError(f"the same object appears twice in one input (first at "
                                 f"{first})", source=doc.source, obj=where,
                                 field="metadata.name")
            seen[key] = doc
            merged.pop(key, None)  # a replaced object moves to its new place
            merged[key] = doc
    return anonymous + list(merged.values())


def _settings(found: list[Settings], path: str | None, overrides: dict[str, Any]) -> Settings:
    settings = found[-1] if found else Settings()
    if path is not None:
        from_file = [parse_doc(d) for docs in read_inputs([path]) for d in docs]
        configs = [s for s in from_file if isinstance(s, Settings)]
        if len(configs) != 1:
            raise InputError(f"must hold exactly one {API_VERSION} NetsimConfig, found "
                             f"{len(configs)}", source=Source(path))
        settings = configs[0]
    return settings.override(**overrides)


def _build(settings: Settings, kube_proxy: KubeProxyConfiguration | None,
           typed: dict[type, list], warnings: list[str]) -> Cluster:
    """Expand controllers, schedule, address and derive endpoints: the cluster as it would run."""
    nodes = sorted(typed[Node], key=lambda n: n.name)
    input_pods: list[Pod] = typed[Pod]
    if not nodes:
        nodes = _default_nodes(input_pods, settings)
        warnings.append(f"the input holds no Node: created {len(nodes)} "
                        f"({', '.join(n.name for n in nodes[:5])}{'…' if len(nodes) > 5 else ''})")
    known = {n.name for n in nodes}
    for p in input_pods:
        if p.node_name and p.node_name not in known:
            raise InputError(f"no Node named {p.node_name!r} in the input",
                             source=p.meta.source, obj=f"Pod {p.key}", field="spec.nodeName")
    workloads: list[Workload] = typed[Workload]
    rs_owners = {(w.namespace, w.name): w.owner for w in workloads
                 if w.meta.kind == "ReplicaSet" and w.owner}
    pods = [replace(p, workload=workload_of(p, rs_owners)) if p.owner else p
            for p in input_pods]
    pods += expand(workloads, input_pods, tuple(nodes), fits)
    pods = _placed(pods, nodes, warnings)

    services: list[Service] = typed[Service]
    pools = choose_pools(settings, nodes, pods, services,
                         kube_proxy.cluster_cidrs if kube_proxy else ())
    addon = _dns_addon(settings, pools, pods, workloads, services, nodes, warnings)
    late = frozenset(p.key for p in addon)
    pods += _placed(addon, nodes, warnings, placed=pods)
    nodes = address_nodes(nodes, pools)
    pods, blocks, tunnel_ips = address_pods(pods, nodes, pools, settings, late=late)
    services = address_services(services, pools, settings)

    given_slices: list[EndpointSlice] = typed[EndpointSlice]
    have = {(s.namespace, s.service_name) for s in given_slices if s.service_name}
    slices = given_slices + derive_slices(services, pods, nodes, have)

    plan = AddressPlan(
        pod_cidrs=tuple(str(pools.pod[f]) for f in pools.families),
        service_cidrs=tuple(str(pools.service[f]) for f in pools.families),
        node_cidrs=tuple(str(pools.node[f]) for f in pools.families),
        blocks=FrozenDict(sorted(blocks.items(), key=lambda b: _cidr_key(b[0]))),
        tunnel_ips=FrozenDict(tunnel_ips), inferred=pools.notes)
    return Cluster(
        settings=settings,
        addressing=plan,
        nodes=tuple(nodes),
        namespaces=_namespaces(typed[Namespace], pods, services, typed),
        pods=tuple(sorted(pods, key=_by_key)),
        workloads=tuple(sorted(workloads, key=lambda w: (w.namespace, w.meta.kind, w.name))),
        services=tuple(sorted(services, key=_by_key)),
        endpoint_slices=tuple(sorted(slices, key=_by_key)),
        network_policies=tuple(sorted(typed[NetworkPolicy], key=_by_key)),
        ingresses=tuple(sorted(typed[Ingress], key=_by_key)),
        ingress_classes=tuple(sorted(typed[IngressClass], key=lambda c: c.name)),
        kube_proxy=kube_proxy,
        others=tuple(sorted(typed[RawObject], key=lambda o: (o.kind, o.namespace or "",
                                                             o.name))),
        warnings=tuple(warnings),
    )


def _by_key(obj: Any) -> tuple[str, str]:
    return obj.namespace, obj.name


def _cidr_key(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address)


def _default_nodes(pods: list[Pod], settings: Settings) -> list[Node]:
    """Nodes for an input without any: those its Pods name, then node-1… up to the setting."""
    names = sorted({p.node_name for p in pods if p.node_name})
    i = 0
    while len(names) < settings.nodes:
        i += 1
        if f"node-{i}" not in names:
            names.append(f"node-{i}")
    return [Node(meta=Meta(kind="Node", name=n, labels=FrozenDict({
        "kubernetes.io/hostname": n, "kubernetes.io/os": "linux"})), generated=True)
        for n in sorted(names)]


def _dns_addon(settings: Settings, pools: Any, pods: list[Pod], workloads: list[Workload],
               services: list[Service], nodes: list[Node], warnings: list[str]) -> list[Pod]:
    """kubeadm's CoreDNS addon where the manifests hold no DNS Service; returns its pods (the
    Service and Deployment are appended to `services` and `workloads`)."""
    if not settings.dns_addon or find_dns_service(services) is not None:
        return []
    taken = {ip for s in services for ip in s.cluster_ips}
    ip = dns_addon.dns_ip(str(pools.service[pools.families[0]]), taken)
    services.append(dns_addon.kube_dns_service(ip))
    where = ip or "the tenth address of the service range is taken or missing: a free one"
    made = [f"Service kube-system/kube-dns ({where})"]
    new: list[Pod] = []
    if not dns_addon.has_dns_pods(pods, workloads):
        deployment = dns_addon.coredns_deployment()
        workloads.append(deployment)
        new = expand([deployment], [], tuple(nodes), fits)
        made.append(f"Deployment kube-system/coredns ({len(new)} pods)")
    warnings.append(f"the input holds no cluster DNS: created {' and '.join(made)} as kubeadm "
                    f"does; NetsimConfig spec.dns.disabled: true leaves them out")
    return new


def _placed(pods: list[Pod], nodes: list[Node], warnings: list[str],
            placed: list[Pod] = ()) -> list[Pod]:
    """`pods` with a node chosen for each unplaced one; `placed` are already on their nodes."""
    counts: dict[str, int] = defaultdict(int)
    for p in [*placed, *pods]:
        if p.node_name:
            counts[p.node_name] += 1
    waiting = [p for p in pods if not p.node_name and p.phase in ("Pending", "Running")]
    chosen = schedule(waiting, tuple(nodes), counts)
    out, stuck = [], []
    for p in pods:
        node = chosen.get((p.namespace, p.name)) if not p.node_name else None
        if node:
            p = replace(p, node_name=node, phase="Running", scheduled=True)
        elif not p.node_name and p.phase in ("Pending", "Running"):
            p = replace(p, phase="Pending", ready=False)
            stuck.append(p.key)
        out.append(p)
    if stuck:
        warnings.append(f"{len(stuck)} pod(s) fit no node (nodeSelector, affinity or taints) "
                        f"and stay Pending: {', '.join(stuck[:5])}{'…' if len(stuck) > 5 else ''}")
    return out


def _namespaces(given: list[Namespace], pods: list[Pod], services: list[Service],
                typed: dict[type, list]) -> tuple[Namespace, ...]:
    """The input's Namespaces plus every one that objects use (as the cluster would have)."""
    out = {n.name: n for n in given}
    used = {"default"} | {p.namespace for p in pods} | {s.namespace for s in services}
    for kind in (NetworkPolicy, Ingress, Workload, EndpointSlice):
        used |= {o.namespace for o in typed[kind]}
    used |= {o.namespace for o in typed[RawObject] if o.namespace}
    for name in used - set(out):
        out[name] = Namespace(meta=with_name_label(Meta(kind="Namespace", name=name)),
                              implicit=True)
    return tuple(out[n] for n in sorted(out))
