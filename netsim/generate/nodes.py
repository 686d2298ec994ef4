"""Nodes: a control plane, zoned general workers and a tainted GPU pool, as kubelets report them."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from netsim.generate.common import Manifest, _weighted

NODE_CIDR = "172.16.0.0/12"
NODE_IP_BASE = int(ipaddress.ip_network(NODE_CIDR).network_address)
NODE_IP_OFFSET = 10
MAX_NODES = ipaddress.ip_network(NODE_CIDR).num_addresses - NODE_IP_OFFSET - 2
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
