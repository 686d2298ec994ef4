"""App workloads: kind, namespace, tier, ports and replicas of each controller, and its manifest."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from netsim.generate.common import Manifest, Port, _weighted
from netsim.generate.namespaces import _Namespace
from netsim.generate.nodes import GPUS_PER_NODE, _NodeLayout

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
