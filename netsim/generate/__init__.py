"""Deterministic synthetic Kubernetes clusters for benchmarks and capacity planning.

``generate`` returns a ``v1 List`` shaped like a real production cluster: zoned nodes with a
control plane and a tainted GPU pool, team namespaces, long-tailed Deployments, StatefulSets
with governing headless Services, a realistic Service type mix and a NetworkPolicy mix that
exercises every peer/port feature.  Nothing that netsim derives itself is emitted (pod IPs,
cluster IPs, node ports, pod CIDRs, scheduling), so the output measures netsim's own work.

Every random choice comes from one ``random.Random(seed)`` and every collection is iterated in
insertion order, so the same arguments always give byte-identical JSON.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Manifest = dict[str, Any]

BLOCK_PREFIX = 26  # Calico's default IPAM block
BLOCK_SIZE = 2 ** (32 - BLOCK_PREFIX)
POD_POOL_BASE = "10.128.0.0"
POD_POOL_MIN_PREFIX = 9  # 10.128.0.0/9 is the whole space we may carve pools from
SERVICE_CIDR_BASE = "10.96.0.0"
SERVICE_CIDR_PREFIX = 12
KUBE_DNS_IP = "10.96.0.10"
NODE_CIDR = "172.16.0.0/12"
NODE_IP_BASE = int(ipaddress.ip_network(NODE_CIDR).network_address)
NODE_IP_OFFSET = 10
MAX_NODES = ipaddress.ip_network(NODE_CIDR).num_addresses - NODE_IP_OFFSET - 2
NODE_PORT_RANGE = 32767 - 30000 + 1
NODE_PORT_BUDGET = NODE_PORT_RANGE - 68  # keep headroom for anything netsim adds itself
LB_RANGES = ("203.0.113.0/24", "198.51.100.0/24")
DEFAULT_MAX_PODS = 110
GPUS_PER_NODE = 8
KUBELET_VERSION = "v1.30.4"
PREVIOUS_KUBELET_VERSION = "v1.29.8"

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
REGION = "us-east-1"
WORKER_TYPES = (
    # (instance type, vCPU, memory GiB, weight)
    ("m6i.4xlarge", 16, 64, 50),
    ("m6i.8xlarge", 32, 128, 20),
    ("c6i.4xlarge", 16, 32, 15),
    ("r6i.4xlarge", 16, 128, 15),
)
CONTROL_PLANE_TYPE = ("m6i.2xlarge", 8, 32)
GPU_TYPES = (("p4d.24xlarge", 96, 1152, 1), ("g5.48xlarge", 192, 768, 2))

TEAMS = (
    "payments",
    "checkout",
    "search",
    "identity",
    "platform",
    "data",
    "ml",
    "growth",
    "messaging",
    "observability",
)
TEAM_WEIGHTS = (12, 10, 9, 8, 14, 10, 6, 9, 7, 5)
ENVS = ("prod", "staging", "dev")
ENV_WEIGHTS = (50, 30, 20)
TIERS = ("frontend", "backend", "cache")
TIER_WEIGHTS = (30, 60, 10)

NOUNS = (
    "cart",
    "checkout",
    "payment",
    "order",
    "inventory",
    "user",
    "auth",
    "search",
    "catalog",
    "pricing",
    "shipping",
    "review",
    "recommend",
    "notify",
    "email",
    "ledger",
    "invoice",
    "profile",
    "session",
    "media",
    "upload",
    "report",
    "billing",
    "fraud",
    "loyalty",
    "promo",
    "geo",
    "ads",
    "feed",
    "chat",
    "audit",
    "config",
    "feature",
    "quota",
    "tenant",
    "webhook",
    "export",
    "import",
    "ingest",
    "stream",
)
ROLES = {
    "frontend": ("web", "ui", "gateway", "bff", "portal"),
    "backend": ("api", "svc", "worker", "processor", "consumer", "scheduler"),
    "db": ("postgres", "mysql", "mongo", "cassandra"),
    "cache": ("redis", "memcached"),
}
GPU_NOUNS = ("inference", "model-server", "embedding", "trainer", "feature-extractor")
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


class Port(NamedTuple):
    """A named container port; services and policies refer to it by name."""

    name: str
    number: int
    protocol: str


PRIMARY_PORTS: dict[str, tuple[tuple[Port, int], ...]] = {
    "frontend": ((Port("http", 8080, "TCP"), 80), (Port("https", 8443, "TCP"), 20)),
    "backend": (
        (Port("http", 8080, "TCP"), 50),
        (Port("grpc", 9090, "TCP"), 30),
        (Port("http", 8000, "TCP"), 10),
        (Port("http", 3000, "TCP"), 10),
    ),
    "postgres": ((Port("postgres", 5432, "TCP"), 1),),
    "mysql": ((Port("mysql", 3306, "TCP"), 1),),
    "mongo": ((Port("mongodb", 27017, "TCP"), 1),),
    "cassandra": ((Port("cql", 9042, "TCP"), 1),),
    "redis": ((Port("redis", 6379, "TCP"), 1),),
    "memcached": ((Port("memcache", 11211, "TCP"), 1),),
}
EXTRA_PORTS: tuple[tuple[Port, int], ...] = (
    (Port("metrics", 9100, "TCP"), 40),
    (Port("grpc", 9090, "TCP"), 10),
    (Port("admin", 8081, "TCP"), 10),
    (Port("health", 8086, "TCP"), 8),
    (Port("statsd", 8125, "UDP"), 8),
    (Port("https", 8443, "TCP"), 6),
    (Port("syslog", 5514, "UDP"), 3),
    (Port("quic", 8443, "UDP"), 3),
    (Port("mdns", 5353, "UDP"), 2),
)
SERVICE_PORT_NUMBER = {"http": 80, "https": 443}
DB_IMAGES = {
    "postgres": "postgres:16.3",
    "mysql": "mysql:8.4",
    "mongo": "mongo:7.0",
    "cassandra": "cassandra:4.1",
    "redis": "redis:7.2",
    "memcached": "memcached:1.6",
}
EXPORTER_PORTS = {  # data stores expose metrics through a Prometheus exporter sidecar
    "postgres": Port("metrics", 9187, "TCP"),
    "mysql": Port("metrics", 9104, "TCP"),
    "mongo": Port("metrics", 9216, "TCP"),
    "cassandra": Port("metrics", 9500, "TCP"),
    "redis": Port("metrics", 9121, "TCP"),
    "memcached": Port("metrics", 9150, "TCP"),
}


@dataclass
class _Namespace:
    """A team namespace plus the names already taken in it, so generated names never clash."""

    name: str
    team: str
    env: str
    used_names: dict[str, set[str]] = field(default_factory=dict)

    def claim(self, kind: str, base: str) -> str:
        """Reserve a unique name per kind, because generated names collide in big namespaces."""
        used = self.used_names.setdefault(kind, set())
        name, n = _dns_label(base), 2
        while name in used:
            suffix = f"-{n}"
            name, n = _dns_label(base, len(suffix)) + suffix, n + 1
        used.add(name)
        return name


@dataclass
class _Workload:
    """The plan for one app controller, shared by its manifest, Services and policies."""

    namespace: _Namespace
    kind: str
    tier: str
    flavor: str  # db/cache engine for data stores, tier otherwise
    gpu: bool
    services: int
    name: str = ""
    version: str = ""
    ports: list[Port] = field(default_factory=list)
    replicas: int = 1


@dataclass
class _NodeLayout:
    """How many nodes of each role, which decides where pods can land."""

    control_plane: int
    gpu: int
    total: int

    @property
    def general(self) -> int:
        """Untainted workers, where ordinary workloads land."""
        return self.total - self.control_plane - self.gpu


@dataclass
class _DaemonSets:
    """Node agents and the share of the pod budget they consume."""

    manifests: list[Manifest]
    pods: int
    per_node_max: int


def generate(
    *,
    nodes: int,
    namespaces: int,
    pods: int,
    services: int,
    policies: int,
    seed: int = 0,
) -> dict:
    """Build a realistic synthetic cluster as a Kubernetes ``v1 List``.

    Counts are exact: ``nodes`` Nodes, ``namespaces`` team namespaces plus kube-system,
    controllers expanding to ``pods`` Pods (coredns and DaemonSets included), ``services``
    Services (kube-dns included) and ``policies`` NetworkPolicies.
    """
    _check_args(nodes=nodes, namespaces=namespaces, pods=pods, services=services, policies=policies)
    rng = random.Random(seed)
    layout = _node_layout(nodes)
    node_items = _nodes(rng, layout)
    spaces = _namespaces(rng, namespaces)
    daemonsets = _daemonsets(layout, pods - 2)
    app_pods = pods - 2 - daemonsets.pods
    workloads = _plan_workloads(rng, spaces, app_pods, services - 1, layout)
    per_node = _pods_per_node_max(workloads, layout, daemonsets)
    _set_max_pods(node_items, max(DEFAULT_MAX_PODS, per_node))
    items: list[Manifest] = [_config(nodes, pods, services, seed, per_node)]
    items.append(_namespace_manifest("kube-system", {}))
    items.extend(_namespace_manifest(ns.name, {"team": ns.team, "env": ns.env}) for ns in spaces)
    items.extend(node_items)
    items.append(_coredns())
    items.extend(daemonsets.manifests)
    items.extend(_workload_manifest(rng, w) for w in workloads)
    items.append(_kube_dns())
    items.extend(_services(rng, workloads))
    items.extend(_policies(rng, policies, spaces, workloads))
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def _check_args(**counts: int) -> None:
    """Reject sizes that cannot hold the fixed system objects (coredns, kube-dns)."""
    minimum = {"nodes": 1, "namespaces": 1, "pods": 2, "services": 1, "policies": 0}
    if counts["services"] > 1:
        minimum["pods"] = 3  # app services need at least one app pod to select
    if counts["nodes"] > MAX_NODES:
        raise ValueError(f"nodes must be <= {MAX_NODES} (addresses in {NODE_CIDR})")
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum[name]:
            raise ValueError(f"{name} must be an int >= {minimum[name]}, got {value!r}")


# --------------------------------------------------------------------------- helpers


def _dns_label(text: str, reserve: int = 0) -> str:
    """Trim to a DNS-1123 label, leaving room for a uniqueness suffix."""
    return text[: 63 - reserve].rstrip("-")


def _weighted(rng: random.Random, pairs: tuple[tuple[Any, int], ...]) -> Any:
    """Pick from (value, weight) pairs; the order of pairs is part of the determinism."""
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into ints >= 1 proportional to weights, exactly, by largest remainder."""
    n = len(weights)
    if n == 0:
        if total:
            raise ValueError("cannot apportion pods over zero workloads")
        return []
    extra, scale = total - n, sum(weights)
    if extra < 0:
        raise ValueError("fewer pods than workloads")
    parts = [divmod(extra * w, scale) for w in weights]
    shares = [1 + q for q, _ in parts]
    leftover = extra - sum(q for q, _ in parts)
    for i in sorted(range(n), key=lambda i: (-parts[i][1], i))[:leftover]:
        shares[i] += 1
    return shares


def _smallest_pool(base: str, needed: int, min_prefix: int) -> str:
    """Smallest CIDR at ``base`` holding ``needed`` addresses, never wider than ``min_prefix``."""
    for prefix in range(32, min_prefix - 1, -1):
        if 2 ** (32 - prefix) >= needed:
            return str(ipaddress.ip_network(f"{base}/{prefix}", strict=False))
    raise ValueError(f"{needed} addresses do not fit in {base}/{min_prefix}")


# --------------------------------------------------------------------------- config


def _pods_per_node_max(
    workloads: list[_Workload], layout: _NodeLayout, daemonsets: _DaemonSets
) -> int:
    """Estimate the busiest node so IPAM blocks and maxPods are sized with headroom."""
    gpu_pods = sum(w.replicas for w in workloads if w.gpu)
    general_pods = sum(w.replicas for w in workloads if not w.gpu) + 2
    busiest = math.ceil(general_pods / max(1, layout.general))
    if layout.gpu:
        busiest = max(busiest, math.ceil(gpu_pods / layout.gpu))
    return math.ceil((busiest + daemonsets.per_node_max) * 1.25)


def _config(nodes: int, pods: int, services: int, seed: int, per_node: int) -> Manifest:
    """netsim settings with pools sized for this cluster (2x slack over busy-node blocks)."""
    blocks = math.ceil(per_node / BLOCK_SIZE) * nodes * 2
    pod_pool = _smallest_pool(POD_POOL_BASE, blocks * BLOCK_SIZE, POD_POOL_MIN_PREFIX)
    service_pool = f"{SERVICE_CIDR_BASE}/{SERVICE_CIDR_PREFIX}"
    if services > 1_000_000:
        service_pool = _smallest_pool(SERVICE_CIDR_BASE, services + 16, 9)
    return {
        "apiVersion": "netsim/v1alpha1",
        "kind": "NetsimConfig",
        "metadata": {"name": f"synthetic-n{nodes}-p{pods}-s{seed}"},
        "spec": {
            "cni": {"name": "calico", "calico": {"encapsulation": "VXLAN"}},
            "proxy": {"mode": "iptables"},
            "podCIDRs": [pod_pool],
            "serviceCIDRs": [service_pool],
            "nodeCIDRs": [NODE_CIDR],
            "loadBalancerCIDRs": list(LB_RANGES),
        },
    }


# --------------------------------------------------------------------------- nodes


def _node_layout(nodes: int) -> _NodeLayout:
    """Three control-plane nodes and a 5% GPU pool once the cluster is big enough for them."""
    control_plane = 3 if nodes >= 20 else 1 if nodes >= 3 else 0
    gpu = round(nodes * 0.05) if nodes >= 20 else 0
    return _NodeLayout(control_plane=control_plane, gpu=gpu, total=nodes)


def _nodes(rng: random.Random, layout: _NodeLayout) -> list[Manifest]:
    """Control plane first, then general workers, then the GPU pool (as node groups are added)."""
    width = max(5, len(str(layout.total)))
    items = []
    for i in range(1, layout.total + 1):
        if i <= layout.control_plane:
            role = "control-plane"
        elif i > layout.total - layout.gpu:
            role = "gpu"
        else:
            role = "worker"
        items.append(_node(rng, i, f"node-{i:0{width}d}", role))
    return items


def _node_shape(rng: random.Random, role: str) -> tuple[str, int, int]:
    """Instance type, vCPU and GiB for a node of the given role."""
    if role == "control-plane":
        return CONTROL_PLANE_TYPE
    pool = GPU_TYPES if role == "gpu" else WORKER_TYPES
    return _weighted(rng, tuple((t[:3], t[3]) for t in pool))


def _node(rng: random.Random, index: int, name: str, role: str) -> Manifest:
    """One Node with the labels, taints and status a kubelet would report."""
    instance, cpu, mem = _node_shape(rng, role)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": ZONES[(index - 1) % len(ZONES)],
        "node.kubernetes.io/instance-type": instance,
    }
    taints = []
    if role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
    elif role == "gpu":
        labels["pool"] = "gpu"
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    capacity = {"cpu": str(cpu), "memory": f"{mem}Gi", "pods": str(DEFAULT_MAX_PODS)}
    if role == "gpu":
        capacity["nvidia.com/gpu"] = str(GPUS_PER_NODE)
    allocatable = dict(capacity, cpu=f"{cpu * 1000 - 250}m", memory=f"{mem * 1024 - 1024}Mi")
    version = PREVIOUS_KUBELET_VERSION if rng.random() < 0.1 else KUBELET_VERSION
    spec: Manifest = {"taints": taints} if taints else {}
    address = str(ipaddress.IPv4Address(NODE_IP_BASE + index + NODE_IP_OFFSET))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": _node_conditions(),
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": version,
                "containerRuntimeVersion": "containerd://1.7.20",
                "osImage": "Ubuntu 22.04.4 LTS",
                "kernelVersion": "6.5.0-1024-aws",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def _node_conditions() -> list[Manifest]:
    """A healthy kubelet's conditions (fresh dicts: consumers may mutate them)."""
    pressure = [
        {"type": t, "status": "False", "reason": f"KubeletHas{r}"}
        for t, r in (
            ("MemoryPressure", "SufficientMemory"),
            ("DiskPressure", "NoDiskPressure"),
            ("PIDPressure", "SufficientPID"),
        )
    ]
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
    }
    return [*pressure, ready]


def _set_max_pods(node_items: list[Manifest], max_pods: int) -> None:
    """Raise kubelet maxPods when the requested density needs it (tiny, dense clusters)."""
    if max_pods == DEFAULT_MAX_PODS:
        return
    for node in node_items:
        node["status"]["capacity"]["pods"] = str(max_pods)
        node["status"]["allocatable"]["pods"] = str(max_pods)


# --------------------------------------------------------------------------- namespaces


def _namespaces(rng: random.Random, count: int) -> list[_Namespace]:
    """Team namespaces; prod dominates, as in most shared clusters."""
    width = max(4, len(str(count)))
    return [
        _Namespace(
            name=f"ns-{i:0{width}d}",
            team=rng.choices(TEAMS, weights=TEAM_WEIGHTS)[0],
            env=rng.choices(ENVS, weights=ENV_WEIGHTS)[0],
        )
        for i in range(1, count + 1)
    ]


def _namespace_manifest(name: str, labels: dict[str, str]) -> Manifest:
    """A Namespace carrying the immutable metadata.name label like the API server sets."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**labels, "kubernetes.io/metadata.name": name}},
    }


# --------------------------------------------------------------------------- system workloads


def _coredns() -> Manifest:
    """kube-system DNS, tolerating the control plane like kubeadm's addon."""
    labels = {"k8s-app": "kube-dns"}
    container = {
        "name": "coredns",
        "image": "registry.k8s.io/coredns/coredns:v1.11.1",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
    }
    pod_spec = {
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
        ],
        "containers": [container],
    }
    return _controller("Deployment", "kube-system", "coredns", labels, pod_spec, replicas=2)


def _kube_dns() -> Manifest:
    """The kube-dns Service at the conventional tenth address of the service range."""
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
        {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
    ]
    spec = {
        "selector": {"k8s-app": "kube-dns"},
        "clusterIP": KUBE_DNS_IP,
        "ports": ports,
        "type": "ClusterIP",
    }
    return _service_manifest("kube-system", "kube-dns", {"k8s-app": "kube-dns"}, spec)


def _daemonsets(layout: _NodeLayout, budget: int) -> _DaemonSets:
    """Node agents that fit in ~15% of the pod budget; the GPU plugin runs on the pool only."""
    agents = (
        ("fluent-bit", "cr.fluentbit.io/fluent/fluent-bit:3.0.7", Port("http", 2020, "TCP")),
        (
            "node-problem-detector",
            "registry.k8s.io/node-problem-detector/node-problem-detector:v0.8.19",
            Port("metrics", 20257, "TCP"),
        ),
    )
    full = 0
    while full < len(agents) and (full + 1) * layout.total <= 0.15 * budget:
        full += 1
    manifests = [
        _daemonset(name, image, [port], [{"operator": "Exists"}], None)
        for name, image, port in agents[:full]
    ]
    pods, per_node = full * layout.total, full
    if layout.gpu and layout.gpu <= 0.05 * (budget - pods):
        manifests.append(
            _daemonset(
                "nvidia-device-plugin",
                "nvcr.io/nvidia/k8s-device-plugin:v0.15.0",
                [],
                [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                {"pool": "gpu"},
            )
        )
        pods, per_node = pods + layout.gpu, per_node + 1
    return _DaemonSets(manifests=manifests, pods=pods, per_node_max=per_node)


def _daemonset(
    name: str,
    image: str,
    ports: list[Port],
    tolerations: list[Manifest],
    node_selector: dict[str, str] | None,
) -> Manifest:
    """A kube-system node agent (pod network, not hostNetwork, so netsim addresses it)."""
    labels = {"app": name, "app.kubernetes.io/name": name, "tier": "system", "version": "v1"}
    container = {
        "name": name,
        "image": image,
        "ports": [_container_port(p) for p in ports],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    pod_spec: Manifest = {"tolerations": tolerations, "containers": [container]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return _controller("DaemonSet", "kube-system", name, labels, pod_spec)


def _controller(
    kind: str,
    namespace: str,
    name: str,
    labels: dict[str, str],
    pod_spec: Manifest,
    replicas: int | None = None,
    extra_spec: Manifest | None = None,
) -> Manifest:
    """The apps/v1 wrapper shared by every controller kind."""
    selector_key = "k8s-app" if "k8s-app" in labels else "app"
    spec: Manifest = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {selector_key: labels[selector_key]}}
    spec.update(extra_spec or {})
    spec["template"] = {"metadata": {"labels": labels}, "spec": pod_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def _container_port(port: Port) -> Manifest:
    """Container port entry in API field naming."""
    return {"name": port.name, "containerPort": port.number, "protocol": port.protocol}


# --------------------------------------------------------------------------- app workloads


def _workload_count(app_pods: int, app_services: int) -> int:
    """Roughly one workload per Service, more when pods outnumber services ~20:1."""
    if app_pods <= 0:
        return 0
    wanted = max(round(app_services / 0.95), math.ceil(app_pods / 20), 1)
    return min(wanted, app_pods)


def _service_counts(rng: random.Random, workloads: int, services: int) -> list[int]:
    """Services per workload: ~12% none (workers), some two, exact total."""
    if workloads == 0:
        return []
    if services >= 2 * workloads:
        base, rest = divmod(services, workloads)
        return [base + (1 if i < rest else 0) for i in range(workloads)]
    with_service = min(
        max(round(workloads * 0.88), math.ceil(services / 2)), min(workloads, services)
    )
    twos = services - with_service
    counts = [2] * twos + [1] * (with_service - twos) + [0] * (workloads - with_service)
    rng.shuffle(counts)
    return counts


def _plan_workloads(
    rng: random.Random,
    spaces: list[_Namespace],
    app_pods: int,
    app_services: int,
    layout: _NodeLayout,
) -> list[_Workload]:
    """Decide kind, namespace, tier, ports and replicas of every app workload."""
    counts = _service_counts(rng, _workload_count(app_pods, app_services), app_services)
    kinds = _kinds(rng, counts, layout)
    homes = _homes(rng, len(counts), len(spaces))
    workloads = []
    for i, (count, kind) in enumerate(zip(counts, kinds, strict=True)):
        workloads.append(_new_workload(rng, spaces[homes[i]], kind, count))
    _assign_replicas(rng, workloads, app_pods, layout)
    order = sorted(range(len(workloads)), key=lambda i: (homes[i], i))
    return [workloads[i] for i in order]


def _kinds(rng: random.Random, counts: list[int], layout: _NodeLayout) -> list[str]:
    """~5% StatefulSets (each needs a governing Service) and ~1% GPU Deployments."""
    kinds = ["Deployment"] * len(counts)
    served = [i for i, c in enumerate(counts) if c > 0]
    for i in rng.sample(served, min(round(len(counts) * 0.05), len(served))):
        kinds[i] = "StatefulSet"
    plain = [i for i, k in enumerate(kinds) if k == "Deployment"]
    if layout.gpu and len(plain) >= 2:
        wanted = min(
            max(1, round(len(counts) * 0.01)), layout.gpu * GPUS_PER_NODE // 2, len(plain) - 1
        )
        for i in rng.sample(plain, wanted):
            kinds[i] = "GPU"
    return kinds


def _homes(rng: random.Random, workloads: int, spaces: int) -> list[int]:
    """Namespace index per workload: every namespace used once, then a Zipf-like skew."""
    first = list(range(min(workloads, spaces)))
    weights = [1 / (rank**0.8) for rank in range(1, spaces + 1)]
    rng.shuffle(weights)
    rest = rng.choices(range(spaces), weights=weights, k=workloads - len(first))
    return first + rest


def _new_workload(rng: random.Random, ns: _Namespace, kind: str, services: int) -> _Workload:
    """Name, tier, version and ports for one workload."""
    gpu = kind == "GPU"
    kind = "Deployment" if gpu else kind
    if kind == "StatefulSet":
        tier = rng.choice(("db", "db", "cache"))
        flavor = rng.choice(ROLES[tier])
        base = f"{rng.choice(NOUNS)}-{flavor}"
    elif gpu:
        tier, flavor = "backend", "backend"
        base = f"{rng.choice(GPU_NOUNS)}"
    else:
        tier = rng.choices(TIERS, weights=TIER_WEIGHTS)[0]
        flavor = rng.choice(ROLES["cache"]) if tier == "cache" else tier
        role = flavor if tier == "cache" else rng.choice(ROLES[tier])
        base = f"{rng.choice(NOUNS)}-{role}"
    w = _Workload(namespace=ns, kind=kind, tier=tier, flavor=flavor, gpu=gpu, services=services)
    w.name = ns.claim("workload", base)
    if services:
        ns.claim("service", w.name)  # reserved now so a StatefulSet's serviceName stays exact
    w.version = f"v{rng.randint(1, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    w.ports = _ports(rng, flavor)
    return w


def _ports(rng: random.Random, flavor: str) -> list[Port]:
    """1-3 named ports: the flavor's primary port plus common extras (metrics, statsd, ...)."""
    ports = [_weighted(rng, PRIMARY_PORTS[flavor])]
    if flavor in EXPORTER_PORTS:
        return [*ports, EXPORTER_PORTS[flavor]]
    wanted = _weighted(rng, ((1, 45), (2, 35), (3, 20)))
    for _ in range(10):
        if len(ports) >= wanted:
            break
        extra = _weighted(rng, EXTRA_PORTS)
        if all(p.name != extra.name and p[1:] != extra[1:] for p in ports):
            ports.append(extra)
    return ports


def _assign_replicas(
    rng: random.Random, workloads: list[_Workload], app_pods: int, layout: _NodeLayout
) -> None:
    """Small fixed sizes for stateful and GPU sets, a long tail for Deployments, exact total."""
    fixed = [w for w in workloads if w.kind == "StatefulSet" or w.gpu]
    flexible = [w for w in workloads if not (w.kind == "StatefulSet" or w.gpu)]
    for w in fixed:
        w.replicas = rng.randint(1, 4) if w.gpu else rng.choice((1, 3, 3, 3, 5))
    gpu_pods = sum(w.replicas for w in fixed if w.gpu)
    if gpu_pods > layout.gpu * GPUS_PER_NODE // 2:
        for w in fixed:
            w.replicas = 1 if w.gpu else w.replicas
    remaining = app_pods - sum(w.replicas for w in fixed)
    if remaining < len(flexible):
        for w in fixed:
            w.replicas = 1
        remaining = app_pods - len(fixed)
    # Pods beyond the first go by (natural - 1), so singletons stay singletons at any scale.
    weights = [_natural_replicas(rng) - 1 for _ in flexible]
    if not any(weights):
        weights = [1] * len(flexible)
    for w, replicas in zip(flexible, _apportion(remaining, weights), strict=True):
        w.replicas = replicas


def _natural_replicas(rng: random.Random) -> int:
    """Replica counts seen in practice: mostly 1-3, a tail to a few hundred."""
    r = rng.random()
    if r < 0.55:
        return rng.randint(1, 3)
    if r < 0.80:
        return rng.randint(4, 9)
    if r < 0.97:
        return rng.randint(10, 50)
    return rng.randint(51, 200)


def _resources(rng: random.Random, w: _Workload) -> Manifest:
    """Modest requests so densely packed nodes still fit; memory limits as best practice."""
    if w.kind == "StatefulSet":
        cpu, mem = rng.choice((("250m", "512Mi"), ("500m", "1Gi")))
    else:
        cpu = _weighted(rng, (("25m", 30), ("50m", 35), ("100m", 25), ("250m", 10)))
        mem = _weighted(rng, (("64Mi", 25), ("128Mi", 35), ("256Mi", 30), ("512Mi", 10)))
    resources: Manifest = {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": mem}}
    if w.gpu:
        resources["limits"]["nvidia.com/gpu"] = "1"
    return resources


def _workload_manifest(rng: random.Random, w: _Workload) -> Manifest:
    """Deployment or StatefulSet for a planned workload."""
    labels = {"app": w.name, "app.kubernetes.io/name": w.name, "tier": w.tier, "version": w.version}
    image = DB_IMAGES.get(w.flavor, f"registry.example.com/{w.namespace.team}/{w.name}:{w.version}")
    exporter = EXPORTER_PORTS.get(w.flavor)
    containers = [
        {
            "name": w.flavor if exporter else "app",
            "image": image,
            "ports": [_container_port(p) for p in w.ports if p is not exporter],
            "resources": _resources(rng, w),
        }
    ]
    if exporter:
        containers.append(
            {
                "name": "exporter",
                "image": f"quay.io/prometheuscommunity/{w.flavor}-exporter:v0.15.0",
                "ports": [_container_port(exporter)],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
            }
        )
    pod_spec: Manifest = {"containers": containers}
    if w.gpu:
        pod_spec["nodeSelector"] = {"pool": "gpu"}
        pod_spec["tolerations"] = [
            {
                "key": "nvidia.com/gpu",
                "operator": "Equal",
                "value": "present",
                "effect": "NoSchedule",
            }
        ]
    extra = None
    if w.kind == "StatefulSet":
        extra = {"serviceName": w.name, "podManagementPolicy": "Parallel"}
    manifest = _controller(w.kind, w.namespace.name, w.name, labels, pod_spec, w.replicas, extra)
    if w.kind == "StatefulSet":
        manifest["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "20Gi"}},
                },
            }
        ]
    return manifest


# --------------------------------------------------------------------------- services


def _service_types(rng: random.Random, workloads: list[_Workload]) -> list[list[str]]:
    """Per-workload service types: ~80% ClusterIP, 10% headless, 7% NodePort, 3% LoadBalancer."""
    slots = [(wi, j) for wi, w in enumerate(workloads) for j in range(w.services)]
    types = [["ClusterIP"] * w.services for w in workloads]
    others = []
    for wi, j in slots:
        if workloads[wi].kind == "StatefulSet" and j == 0:
            types[wi][j] = "Headless"  # the StatefulSet's governing service
        else:
            others.append((wi, j))
    rng.shuffle(others)
    total = len(slots)
    governing = total - len(others)
    headless = max(0, round(total * 0.10) - governing)
    lbs = min(round(total * 0.03), _lb_pool_size())
    nodeports = round(total * 0.07)
    quotas = [("Headless", headless), ("LoadBalancer", lbs), ("NodePort", nodeports)]
    start = 0
    for kind, n in quotas:
        for wi, j in others[start : start + n]:
            types[wi][j] = kind
        start += n
    return types


def _lb_pool_size() -> int:
    """Usable documentation addresses for LoadBalancer ingress (.1-.254 of each /24)."""
    return sum(ipaddress.ip_network(r).num_addresses - 2 for r in LB_RANGES)


def _lb_addresses() -> list[str]:
    """All LoadBalancer ingress IPs in allocation order."""
    return [str(ip) for r in LB_RANGES for ip in ipaddress.ip_network(r).hosts()]


def _services(rng: random.Random, workloads: list[_Workload]) -> list[Manifest]:
    """Every app Service, in workload order, within the node-port budget."""
    types = _service_types(rng, workloads)
    lb_ips = iter(_lb_addresses())
    node_ports_left = NODE_PORT_BUDGET
    items = []
    for w, kinds in zip(workloads, types, strict=True):
        for j, kind in enumerate(kinds):
            ports = _service_ports(rng, w, kind, j)
            if kind in ("NodePort", "LoadBalancer"):
                local = rng.random() < (0.3 if kind == "LoadBalancer" else 0.15)
                cost = len(ports) + (1 if local and kind == "LoadBalancer" else 0)
                if cost > node_ports_left:
                    kind, local = "ClusterIP", False
                    ports = _service_ports(rng, w, kind, j)
                else:
                    node_ports_left -= cost
            else:
                local = False
            name = w.name if j == 0 else w.namespace.claim("service", _service_name(w, kind, j))
            items.append(_app_service(rng, w, name, kind, ports, local, lb_ips))
    return items


def _service_name(w: _Workload, kind: str, index: int) -> str:
    """The primary service shares the workload's name; extras get a purpose suffix."""
    if index == 0:
        return w.name
    if kind == "ClusterIP":
        suffix = "metrics" if any(p.name == "metrics" for p in w.ports) else "internal"
    else:
        suffix = {"Headless": "headless", "NodePort": "nodeport", "LoadBalancer": "public"}[kind]
    return f"{_dns_label(w.name, len(suffix) + 4)}-{suffix}"


def _service_ports(rng: random.Random, w: _Workload, kind: str, index: int) -> list[Manifest]:
    """Service ports targeting container ports, usually by name."""
    if kind == "Headless":
        chosen = list(w.ports)
    elif kind == "ClusterIP" and index > 0:
        metrics = [p for p in w.ports if p.name == "metrics"]
        chosen = metrics or w.ports[:1]
    elif kind in ("NodePort", "LoadBalancer"):
        chosen = w.ports[:1] + [p for p in w.ports[1:] if p.name == "https"]
    else:
        chosen = w.ports[:1]
        if len(w.ports) > 1 and rng.random() < 0.3:
            chosen = list(w.ports)
    return [
        {
            "name": p.name,
            "port": SERVICE_PORT_NUMBER.get(p.name, p.number),
            "protocol": p.protocol,
            "targetPort": p.name if rng.random() < 0.85 else p.number,
        }
        for p in chosen
    ]


def _app_service(
    rng: random.Random,
    w: _Workload,
    name: str,
    kind: str,
    ports: list[Manifest],
    local: bool,
    lb_ips: Iterator[str],
) -> Manifest:
    """A Service manifest; clusterIP and nodePort are left for netsim to allocate."""
    spec: Manifest = {"selector": {"app": w.name}, "ports": ports}
    if kind == "Headless":
        spec["type"] = "ClusterIP"
        spec["clusterIP"] = "None"
        if w.kind == "StatefulSet":
            spec["publishNotReadyAddresses"] = True
    else:
        spec["type"] = kind
        if rng.random() < 0.05:
            spec["sessionAffinity"] = "ClientIP"
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    labels = {"app": w.name, "app.kubernetes.io/name": w.name, "tier": w.tier}
    service = _service_manifest(w.namespace.name, name, labels, spec)
    if kind == "LoadBalancer":
        service["status"] = {"loadBalancer": {"ingress": [{"ip": next(lb_ips)}]}}
    return service


def _service_manifest(
    namespace: str, name: str, labels: dict[str, str], spec: Manifest
) -> Manifest:
    """The v1 Service wrapper."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }


# --------------------------------------------------------------------------- network policies


def _policies(
    rng: random.Random, count: int, spaces: list[_Namespace], workloads: list[_Workload]
) -> list[Manifest]:
    """Namespaces adopt policies as a bundle (deny, allow-same-ns, DNS, per-app rules)."""
    by_ns: dict[str, list[_Workload]] = {ns.name: [] for ns in spaces}
    for w in workloads:
        by_ns[w.namespace.name].append(w)
    order = list(spaces)
    rng.shuffle(order)
    items: list[Manifest] = []
    round_no = 0
    while len(items) < count:
        for ns in order:
            for name, spec in _bundle(rng, ns, by_ns[ns.name], round_no, spaces):
                items.append(_policy_manifest(ns.name, ns.claim("policy", name), spec))
                if len(items) == count:
                    return items
        round_no += 1
    return items


def _bundle(
    rng: random.Random,
    ns: _Namespace,
    apps: list[_Workload],
    round_no: int,
    spaces: list[_Namespace],
) -> list[tuple[str, Manifest]]:
    """Baseline policies on first adoption, then app-specific rules on every round."""
    bundle: list[tuple[str, Manifest]] = []
    if round_no == 0:
        bundle.extend(_baseline(rng))
    for _ in range(rng.randint(1, 5) if round_no == 0 else rng.randint(1, 3)):
        bundle.append(_app_policy(rng, ns, apps, spaces))
    return bundle


def _baseline(rng: random.Random) -> list[tuple[str, Manifest]]:
    """Default deny (ingress, sometimes egress too) and the allows it makes necessary."""
    if rng.random() < 0.3:
        deny = ("default-deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        return [deny, _allow_dns(), _allow_same_namespace()]
    deny = ("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    return [deny, _allow_same_namespace()]


def _allow_dns() -> tuple[str, Manifest]:
    """Egress to kube-dns over UDP and TCP 53, needed once egress is denied."""
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [peer], "ports": ports}],
    }
    return "allow-dns-egress", spec


def _allow_same_namespace() -> tuple[str, Manifest]:
    """Pods of the namespace may talk to each other."""
    spec = {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
    }
    return "allow-same-namespace", spec


def _app_policy(
    rng: random.Random, ns: _Namespace, apps: list[_Workload], spaces: list[_Namespace]
) -> tuple[str, Manifest]:
    """One per-app rule drawn from the mix of features real policies use."""
    if not apps:
        return _tier_policy(rng)
    w = rng.choice(apps)
    builders = (
        _from_team,
        _external_egress,
        _port_range,
        _monitoring,
        _not_dev,
        _from_nodes,
        _db_clients,
        _egress_to_app,
    )
    name, spec = rng.choice(builders)(rng, w, spaces)
    return _dns_label(name), spec


def _target(w: _Workload) -> Manifest:
    """The policy's subject: one app's pods."""
    return {"matchLabels": {"app": w.name}}


def _ingress(w: _Workload, peers: list[Manifest], ports: list[Manifest]) -> Manifest:
    """Ingress-only policy spec for one app."""
    rule: Manifest = {"from": peers}
    if ports:
        rule["ports"] = ports
    return {"podSelector": _target(w), "policyTypes": ["Ingress"], "ingress": [rule]}


def _egress(w: _Workload, peers: list[Manifest], ports: list[Manifest]) -> Manifest:
    """Egress-only policy spec for one app."""
    return {
        "podSelector": _target(w),
        "policyTypes": ["Egress"],
        "egress": [{"to": peers, "ports": ports}],
    }


def _named(port: Port) -> Manifest:
    """A policy port referring to a container port by name."""
    return {"protocol": port.protocol, "port": port.name}


def _from_team(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """namespaceSelector AND podSelector in one peer: frontends of another team."""
    team = rng.choice(TEAMS)
    peer = {
        "namespaceSelector": {"matchLabels": {"team": team}},
        "podSelector": {"matchLabels": {"tier": "frontend"}},
    }
    return f"allow-{w.name}-from-{team}", _ingress(w, [peer], [_named(w.ports[0])])


def _external_egress(
    rng: random.Random, w: _Workload, spaces: list[_Namespace]
) -> tuple[str, Manifest]:
    """HTTPS to the internet but not to private ranges: ipBlock with except."""
    peer = {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}
    return f"allow-{w.name}-internet", _egress(w, [peer], [{"protocol": "TCP", "port": 443}])


def _port_range(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """endPort ranges: node ports on node IPs, or a UDP media range from prod/staging."""
    if rng.random() < 0.5:
        peer = {"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.16.0.0/28"]}}
        ports = [{"protocol": "TCP", "port": 30000, "endPort": 32767}]
        return f"allow-{w.name}-nodeports", _egress(w, [peer], ports)
    peer = {
        "namespaceSelector": {
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]
        }
    }
    ports = [{"protocol": "UDP", "port": 10000, "endPort": 10999}]
    return f"allow-{w.name}-media", _ingress(w, [peer], ports)


def _monitoring(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Prometheus scrapes from observability/platform namespaces (In, Exists)."""
    peer = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "team", "operator": "In", "values": ["observability", "platform"]}
            ]
        },
        "podSelector": {
            "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "Exists"}]
        },
    }
    metrics = [p for p in w.ports if p.name == "metrics"]
    ports = (
        [_named(metrics[0])]
        if metrics
        else [{"protocol": w.ports[0].protocol, "port": w.ports[0].number}]
    )
    return f"allow-{w.name}-scrape", _ingress(w, [peer], ports)


def _not_dev(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Only owned, non-dev namespaces may connect (NotIn, Exists)."""
    peer = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"},
            ]
        }
    }
    return f"deny-{w.name}-from-dev", _ingress(w, [peer], [_named(p) for p in w.ports])


def _from_nodes(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Kubelet probes and NodePort traffic from node IPs, minus a bastion subnet."""
    peer = {"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.31.255.0/24"]}}
    return f"allow-{w.name}-from-nodes", _ingress(w, [peer], [_named(w.ports[0])])


def _db_clients(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Backends of the same namespace reach the data store (pod selector only)."""
    peer = {"podSelector": {"matchLabels": {"tier": "backend"}}}
    return f"allow-{w.name}-clients", _ingress(w, [peer], [_named(w.ports[0])])


def _egress_to_app(
    rng: random.Random, w: _Workload, spaces: list[_Namespace]
) -> tuple[str, Manifest]:
    """Egress to a named namespace's API pods on numbered ports."""
    other = rng.choice(spaces)
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other.name}},
        "podSelector": {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["backend", "frontend"]}
            ]
        },
    }
    ports = [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 9090}]
    return f"allow-{w.name}-to-{other.name}", _egress(w, [peer], ports)


def _tier_policy(rng: random.Random) -> tuple[str, Manifest]:
    """For namespaces without apps: a tier-wide rule (DoesNotExist guards canaries)."""
    tier = rng.choice(TIERS)
    selector = {
        "matchLabels": {"tier": tier},
        "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}],
    }
    spec = {
        "podSelector": selector,
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}]}],
    }
    return f"allow-{tier}-from-frontend", spec


def _policy_manifest(namespace: str, name: str, spec: Manifest) -> Manifest:
    """The networking.k8s.io/v1 wrapper."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
