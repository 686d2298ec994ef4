"""kube-system objects: CoreDNS, the kube-dns Service and the node-agent DaemonSets."""

from __future__ import annotations

from dataclasses import dataclass

from netsim.generate.common import Manifest, Port
from netsim.generate.nodes import _NodeLayout
from netsim.generate.services import _service_manifest
from netsim.generate.workloads import _container_port, _controller

KUBE_DNS_IP = "10.96.0.10"


@dataclass
class _DaemonSets:
    """Node agents and the share of the pod budget they consume."""

    manifests: list[Manifest]
    pods: int
    per_node_max: int


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
