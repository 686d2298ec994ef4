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

import random

from netsim.generate.common import Manifest
from netsim.generate.config import _config, _pods_per_node_max
from netsim.generate.namespaces import _namespace_manifest, _namespaces
from netsim.generate.nodes import (
    DEFAULT_MAX_PODS,
    MAX_NODES,
    NODE_CIDR,
    _node_layout,
    _nodes,
    _set_max_pods,
)
from netsim.generate.policies import _policies
from netsim.generate.services import _services
from netsim.generate.system import _coredns, _daemonsets, _kube_dns
from netsim.generate.workloads import _plan_workloads, _workload_manifest

__all__ = ["generate"]


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
