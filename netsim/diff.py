"""What a change to the manifests opens or closes, by workload, port and protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netsim.cluster import Cluster
from netsim.model import Pod
from netsim.reach import matrix
from policies.engine import PolicySet


@dataclass(frozen=True, slots=True, order=True)
class Change:
    src: str  # "namespace/Kind/name" of the client workload
    dst: str
    protocol: str
    port: int
    opened: bool  # False: closed


@dataclass(frozen=True, slots=True)
class Diff:
    changes: tuple[Change, ...]
    added_workloads: tuple[str, ...]
    removed_workloads: tuple[str, ...]
    ports: tuple[tuple[int, str], ...]  # every (port, protocol) compared


def workload_of(pod: Pod) -> str:
    return f"{pod.namespace}/{pod.workload or 'Pod/' + pod.name}"


def listening_ports(cluster: Cluster) -> set[tuple[int, str]]:
    return {(c.container_port, c.protocol) for p in cluster.pods for c in p.container_ports}


def connections(cluster: Cluster, port: int, protocol: str,
                ps: PolicySet | None = None) -> set[tuple[str, str]]:
    """Workload pairs (client, server) where some client pod reaches some server pod that
    listens on port/protocol (a pod reaching itself does not count)."""
    m = matrix(cluster, port, protocol, ps=ps)
    listening = np.array([any(c.container_port == port and c.protocol == protocol
                              for c in p.container_ports) for p in m.pods], dtype=bool)
    if not listening.any():
        return set()
    workloads = [workload_of(p) for p in m.pods]
    names = sorted(set(workloads))
    index = {w: i for i, w in enumerate(names)}
    group = np.array([index[w] for w in workloads], dtype=np.int64)
    reach = np.zeros((len(names), len(names)), dtype=bool)
    for row, sources in m.rows_by_class():
        hit_pods = np.flatnonzero(row & listening)
        if not hit_pods.size:
            continue
        hit_groups, first, counts = np.unique(group[hit_pods], return_index=True,
                                              return_counts=True)
        for g in np.unique(group[sources]):
            targets = hit_groups
            k = np.searchsorted(hit_groups, g)
            if k < hit_groups.size and hit_groups[k] == g and counts[k] == 1:
                # the only listener of its own workload: a pod reaching itself does not count
                members = sources[group[sources] == g]
                if not (members != hit_pods[first[k]]).any():
                    targets = hit_groups[hit_groups != g]
            reach[g, targets] = True
    return {(names[a], names[b]) for a, b in zip(*np.nonzero(reach), strict=True)}


def diff(old: Cluster, new: Cluster) -> Diff:
    """Connections between workloads present in both that the change opens or closes."""
    old_w = {workload_of(p) for p in old.pods}
    new_w = {workload_of(p) for p in new.pods}
    both = old_w & new_w
    ports = tuple(sorted(listening_ports(old) | listening_ports(new)))
    old_ps, new_ps = PolicySet.from_cluster(old), PolicySet.from_cluster(new)
    changes = []
    for port, protocol in ports:
        before = connections(old, port, protocol, old_ps)
        after = connections(new, port, protocol, new_ps)
        for (src, dst), opened in [(pair, True) for pair in after - before] + \
                [(pair, False) for pair in before - after]:
            if src in both and dst in both:
                changes.append(Change(src, dst, protocol, port, opened))
    return Diff(tuple(sorted(changes)), tuple(sorted(new_w - old_w)),
                tuple(sorted(old_w - new_w)), ports)
