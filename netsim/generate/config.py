"""The NetsimConfig document: pod and service pools sized for the generated cluster."""

from __future__ import annotations

import ipaddress
import math

from netsim.generate.common import Manifest
from netsim.generate.nodes import NODE_CIDR, _NodeLayout
from netsim.generate.services import LB_RANGES
from netsim.generate.system import _DaemonSets
from netsim.generate.workloads import _Workload

BLOCK_PREFIX = 26  # Calico's default IPAM block
BLOCK_SIZE = 2 ** (32 - BLOCK_PREFIX)
POD_POOL_BASE = "10.128.0.0"
POD_POOL_MIN_PREFIX = 9  # 10.128.0.0/9 is the whole space we may carve pools from
SERVICE_CIDR_BASE = "10.96.0.0"
SERVICE_CIDR_PREFIX = 12


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


def _smallest_pool(base: str, needed: int, min_prefix: int) -> str:
    """Smallest CIDR at ``base`` holding ``needed`` addresses, never wider than ``min_prefix``."""
    for prefix in range(32, min_prefix - 1, -1):
        if 2 ** (32 - prefix) >= needed:
            return str(ipaddress.ip_network(f"{base}/{prefix}", strict=False))
    raise ValueError(f"{needed} addresses do not fit in {base}/{min_prefix}")
