"""The state a rollout moves through: pods per version, a clock, and what each moment puts on
the wire (the Service's EndpointSlices, kube-proxy's endpoint choice, the mesh's weights).

Mutable only inside one simulation; each moment is recorded as a frozen Step. Endpoints come
from netsim.endpoints.derive_slices (the EndpointSlice controller) and kube-proxy's choice from
proxy.kube_proxy.serviceports.categorize (ready endpoints, else serving terminating ones), so a
rollout is judged by the same code that builds the dataplane.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter
from dataclasses import dataclass, replace

from netsim.cluster import Cluster
from netsim.endpoints import derive_slices
from netsim.fields import EMPTY, FrozenDict
from netsim.model import Meta, OwnerRef, Pod, PodTemplate, Service, ServicePort, family
from netsim.rollout_mesh import MeshEndpoint, MeshRoute, split
from netsim.scheduler import schedule
from netsim.workloads import safe_encode
from proxy.kube_proxy.serviceports import categorize, endpoints, service_ports

KUBE_PROXY, MESH, DNS = "kube-proxy", "mesh", "dns"


@dataclass(frozen=True, slots=True)
class Version:
    """One version of the workload: a ReplicaSet or Deployment, and its part in the rollout."""

    name: str
    role: str  # old / new, blue / green, stable / canary, or other (selected, not rolled)
    workload: str  # "Deployment/web"
    detail: str = ""  # what tells it apart: images, labels


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """A pod of the rollout as its Service's EndpointSlice shows it."""

    pod: str  # "ns/name"
    version: str
    address: str | None  # ip:port for the chosen Service port
    node: str | None
    ready: bool
    serving: bool
    terminating: bool
    selected: bool  # matches the Service's selector (so it is in the EndpointSlice)
    share: FrozenDict = EMPTY  # balancer -> expected fraction of its traffic


@dataclass(frozen=True, slots=True)
class VersionShare:
    version: str
    role: str
    fraction: float
    endpoints: int  # endpoints of this version that receive traffic


@dataclass(frozen=True, slots=True)
class Traffic:
    """How one kind of client spreads over the versions at one moment."""

    balancer: str  # kube-proxy, mesh or dns
    unit: str  # what is balanced: connection or request
    shares: tuple[VersionShare, ...]
    failed: float = 0.0
    reason: str | None = None
    weights: tuple[tuple[str, int], ...] = ()  # mesh: route destination -> weight
    fallback: bool = False  # only serving terminating endpoints are left, and they are used


@dataclass(frozen=True, slots=True)
class ReplicaCount:
    version: str
    desired: int  # spec.replicas
    pods: int  # not terminating
    ready: int


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    title: str
    events: tuple[str, ...]
    selector: FrozenDict
    replicas: tuple[ReplicaCount, ...]
    endpoints: tuple[EndpointRow, ...]
    traffic: tuple[Traffic, ...]  # the headline first


@dataclass(slots=True)
class _SimPod:
    pod: Pod
    version: str
    order: int
    ready_at: int | None  # the tick it is Ready from; None: never
    deleted_at: int | None = None


@dataclass(slots=True)
class Group:
    """A ReplicaSet-like set of pods the rollout scales."""

    version: Version
    template: PodTemplate
    owner: str  # ReplicaSet or Deployment name the pods say they belong to
    replicas: int
    labels: FrozenDict = EMPTY  # extra pod labels (pod-template-hash)
    display: str = ""  # how events name it: "replica set web-5d8f" (default), "Deployment web"


class World:
    """Pods per version over time; `snapshot` records what the wire sees now."""

    def __init__(self, cluster: Cluster, service: Service, port: ServicePort,
                 ready_delay: int = 0, route: MeshRoute | None = None,
                 mesh_first: bool = False) -> None:
        self.cluster, self.service, self.port = cluster, service, port
        self.ready_delay = ready_delay
        self.route, self.mesh_first = route, mesh_first
        self.selector: dict[str, str] = dict(service.selector or {})
        self.tick = 0
        self.groups: dict[str, Group] = {}
        self.static: dict[str, Version] = {}  # versions of pods nobody scales
        self.pods: list[_SimPod] = []
        self.notes: list[str] = []
        self._count = 0
        self._used = {ip for p in cluster.pods for ip in p.ips}
        self._used |= {ip for ips in cluster.addressing.tunnel_ips.values() for ip in ips}
        self._placed = Counter(p.node_name for p in cluster.pods if p.node_name)
        self._steps = 0

    # ------------------------------------------------------------ membership

    def add_pod(self, pod: Pod, version: Version) -> None:
        """An input pod, Ready (or not) as the input says."""
        if version.name not in self.groups:
            self.static.setdefault(version.name, version)
        self._count += 1
        self.pods.append(_SimPod(pod, version.name, self._count, -1 if pod.ready else None))

    def add_group(self, group: Group) -> None:
        self.groups[group.version.name] = group
        self.static.pop(group.version.name, None)

    def versions(self) -> list[Version]:
        return [g.version for g in self.groups.values()] + list(self.static.values())

    def live(self, version: str) -> list[_SimPod]:
        return [p for p in self.pods if p.version == version and p.deleted_at is None]

    def is_ready(self, p: _SimPod) -> bool:
        return p.ready_at is not None and p.ready_at <= self.tick

    def available(self, version: str) -> int:
        return sum(1 for p in self.live(version) if self.is_ready(p))

    def running(self, version: str) -> bool:
        """Any pod of the version still exists, terminating ones included."""
        return any(p.version == version for p in self.pods)

    # ------------------------------------------------------------ time and scaling

    def advance(self) -> list[str]:
        """The next moment: pods deleted earlier are gone, pods due become Ready."""
        self.tick += 1
        changes = []
        gone = Counter(p.version for p in self.pods
                       if p.deleted_at is not None and p.deleted_at < self.tick)
        self.pods = [p for p in self.pods if p.deleted_at is None or p.deleted_at >= self.tick]
        ready = Counter(p.version for p in self.pods
                        if p.ready_at == self.tick and p.deleted_at is None)
        for version, n in ready.items():
            changes.append(f"{_count(n, 'pod')} of {version} became Ready")
        for version, n in gone.items():
            changes.append(f"{_count(n, 'terminating pod')} of {version} gone")
        return changes

    def waiting(self) -> list[str]:
        """What will change later on its own: pods that become Ready at a later tick."""
        later = Counter(p.version for p in self.pods if p.deleted_at is None
                        and p.ready_at is not None and p.ready_at > self.tick)
        return [f"waiting: {_count(n, 'pod')} of {v} not Ready yet" for v, n in later.items()]

    def scale(self, version: str, count: int) -> str:
        """Set a group's replicas and create or delete pods as its ReplicaSet controller would;
        returns the event the controller records."""
        group = self.groups[version]
        before = group.replicas
        group.replicas = count
        live = self.live(version)
        if len(live) < count:
            self._create(group, count - len(live))
        elif len(live) > count:
            for p in self._doomed(live, len(live) - count):
                p.deleted_at = self.tick
        verb = "up" if count > before else "down"
        name = group.display or f"replica set {group.owner}"
        return f"Scaled {verb} {name} from {before} to {count}"

    def _doomed(self, live: list[_SimPod], n: int) -> list[_SimPod]:
        """The pods a ReplicaSet deletes first (controller.ActivePodsWithRanks, simplified):
        unscheduled, then not Ready, then those sharing a node with more siblings, then the
        most recently Ready, then the newest."""
        on_node = Counter(p.pod.node_name for p in live)
        ranked = sorted(live, key=lambda p: (p.pod.node_name is not None, self.is_ready(p),
                                             -on_node[p.pod.node_name],
                                             -(p.ready_at if p.ready_at is not None else -1),
                                             -p.order))
        return ranked[:n]

    def _create(self, group: Group, n: int) -> None:
        ns = self.service.namespace
        labels = FrozenDict({**group.template.labels, **group.labels})
        template = replace(group.template, labels=labels)
        taken = {p.pod.name for p in self.pods}
        fresh = []
        for _ in range(n):
            salt = 0
            while True:
                seed = f"{ns}/{group.owner}/{self._count}/{salt}".encode()
                suffix = safe_encode(int.from_bytes(hashlib.blake2b(seed, digest_size=8)
                                                    .digest(), "big"), 5)
                if f"{group.owner}-{suffix}" not in taken:
                    break
                salt += 1
            name = f"{group.owner}-{suffix}"
            taken.add(name)
            meta = Meta(kind="Pod", name=name, namespace=ns, labels=labels,
                        annotations=template.annotations)
            fresh.append(Pod(meta=meta, spec=template, phase="Pending", ready=False,
                             owner=OwnerRef("ReplicaSet", group.owner),
                             workload=group.version.workload, generated=True))
        placed = schedule(fresh, self.cluster.nodes, self._placed)
        for pod in fresh:
            node = placed.get((pod.namespace, pod.name))
            if node is not None:
                ip = self._address(node, pod.spec.host_network)
                pod = replace(pod, node_name=node, phase="Running", scheduled=True,
                              ips=(ip,) if ip else (), addressed=True)
            self._count += 1
            ready_at = self.tick + 1 + self.ready_delay if node is not None else None
            self.pods.append(_SimPod(pod, group.version.name, self._count, ready_at))

    def _address(self, node: str, host_network: bool) -> str | None:
        """The lowest free address of the node's pod blocks (the node's own for hostNetwork)."""
        if host_network:
            n = self.cluster.node(node)
            return n.internal_ips[0] if n and n.internal_ips else None
        want = family(self.service.cluster_ip) if self.service.cluster_ip else "IPv4"
        for block in sorted(self.cluster.addressing.node_blocks(node)):
            net = ipaddress.ip_network(block)
            if ("IPv6" if net.version == 6 else "IPv4") != want:
                continue
            for ip in net.hosts():
                text = str(ip)
                if text not in self._used:
                    self._used.add(text)
                    return text
        return None

    # ------------------------------------------------------------ what the wire sees

    def snapshot(self, title: str, events: list[str]) -> Step:
        service = replace(self.service, selector=FrozenDict(self.selector))
        pods = {p.pod.key: replace(p.pod, ready=self.is_ready(p),
                                   terminating=p.deleted_at is not None) for p in self.pods}
        version_of = {p.pod.key: p.version for p in self.pods}
        slices = derive_slices([service], pods.values(), self.cluster.nodes, set())
        rows: dict[str, EndpointRow] = {}
        ip_to_pod: dict[str, str] = {}
        for sl in slices:
            port = next((p.port for p in sl.ports if (p.name or "") == (self.port.name or "")
                         and p.protocol == self.port.protocol), None)
            for e in sl.endpoints:
                if e.target is None or e.target not in pods:
                    continue
                ip_to_pod[e.addresses[0]] = e.target
                address = f"{e.addresses[0]}:{port}" if port else e.addresses[0]
                rows[e.target] = EndpointRow(e.target, version_of[e.target], address,
                                             e.node_name, e.ready, e.serving, e.terminating,
                                             True)
        for p in self.pods:  # pods of the rollout the Service does not select (or not yet)
            if p.pod.key in rows or p.version not in self.groups:
                continue
            pod = pods[p.pod.key]
            rows[p.pod.key] = EndpointRow(pod.key, p.version, pod.ip, pod.node_name,
                                          pod.ready and not pod.terminating, pod.ready,
                                          pod.terminating, False)
        results = [self._kube_proxy(service, slices, rows, ip_to_pod)]
        if self.route is not None:
            mesh = self._mesh(rows, pods)
            results = [mesh, *results] if self.mesh_first else [*results, mesh]
        traffic = tuple(t for t, _ in results)
        out = [replace(row, share=FrozenDict({t.balancer: per[key] for t, per in results
                                              if key in per}))
               for key, row in rows.items()]
        order = {v.name: i for i, v in enumerate(self.versions())}
        out.sort(key=lambda r: (order.get(r.version, len(order)), r.terminating, r.pod))
        replicas = tuple(ReplicaCount(v, g.replicas,
                                      len(self.live(v)), self.available(v))
                         for v, g in self.groups.items())
        step = Step(self._steps, title, tuple(events), FrozenDict(self.selector), replicas,
                    tuple(out), traffic)
        self._steps += 1
        return step

    def _role(self, version: str) -> str:
        group = self.groups.get(version)
        return group.version.role if group else "other"

    def _shares(self, balancer: str, unit: str, per_pod: dict[str, float],
                versions: dict[str, float], failed: float, reason: str | None,
                weights: tuple[tuple[str, int], ...] = (),
                fallback: bool = False) -> tuple[Traffic, dict[str, float]]:
        counts = Counter(self._version_of_pods(per_pod).values())
        order = {v.name: i for i, v in enumerate(self.versions())}
        versions = {**{v: 0.0 for v in self.groups}, **versions}  # rolled versions even at 0
        shares = tuple(VersionShare(v, self._role(v), f, counts.get(v, 0))
                       for v, f in sorted(versions.items(),
                                          key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
        return Traffic(balancer, unit, shares, failed, reason, weights, fallback), per_pod

    def _version_of_pods(self, per_pod: dict[str, float]) -> dict[str, str]:
        version_of = {p.pod.key: p.version for p in self.pods}
        return {pod: version_of[pod] for pod in per_pod if pod in version_of}

    def _kube_proxy(self, service: Service, slices, rows: dict[str, EndpointRow],
                    ip_to_pod: dict[str, str]) -> tuple[Traffic, dict[str, float]]:
        version_of = {p.pod.key: p.version for p in self.pods}
        if service.headless:
            chosen = [r.pod for r in rows.values() if r.selected and r.ready]
            balancer, unit, fallback = DNS, "connection", False
            reason = "no ready endpoints: the headless Service's name resolves to no address"
        else:
            step_cluster = replace(self.cluster, services=(service,),
                                   endpoint_slices=tuple(slices))
            fam = family(service.cluster_ip) if service.cluster_ip else "IPv4"
            spi = next(s for s in service_ports(step_cluster, fam)
                       if s.port_name == (self.port.name or "")
                       and s.protocol == self.port.protocol.lower())
            picked = categorize(spi, endpoints(step_cluster, service, spi, "", fam)).cluster
            chosen = [ip_to_pod[e.ip] for e in picked if e.ip in ip_to_pod]
            fallback = bool(picked) and all(e.terminating for e in picked)
            balancer, unit = KUBE_PROXY, "connection"
            reason = "no endpoints: kube-proxy rejects connections (ICMP port unreachable)"
            if spi.itp_local and not spi.externally_accessible:
                self._note("internalTrafficPolicy: Local: each client reaches only its own "
                           "node's endpoints; the shares are cluster-wide")
        per_pod = {pod: 1 / len(chosen) for pod in chosen}
        versions: dict[str, float] = {}
        for pod, f in per_pod.items():
            versions[version_of[pod]] = versions.get(version_of[pod], 0.0) + f
        return self._shares(balancer, unit, per_pod, versions, 0.0 if chosen else 1.0,
                            None if chosen else reason, fallback=fallback)

    def _mesh(self, rows: dict[str, EndpointRow],
              pods: dict[str, Pod]) -> tuple[Traffic, dict[str, float]]:
        assert self.route is not None
        eps = [MeshEndpoint(r.pod, r.version, pods[r.pod].labels)
               for r in rows.values() if r.selected and r.ready]
        result = split(self.route, eps)
        return self._shares(MESH, "request", dict(result.endpoints), dict(result.versions),
                            result.failed, result.reason, self.route.weights())

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
