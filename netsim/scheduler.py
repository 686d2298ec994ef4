"""A small deterministic scheduler: place Pods that have no spec.nodeName, as kube-scheduler would.

Filters follow kube-scheduler's NodeUnschedulable, TaintToleration (NoSchedule, NoExecute),
NodeAffinity (nodeSelector and required node affinity) plugins; among feasible nodes the one
with the fewest pods wins (ties by name), which spreads replicas like the default scoring.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from netsim.model import Node, NodeSelectorTerm, Pod, PodTemplate, Taint

NOT_READY_TAINT = Taint("node.kubernetes.io/not-ready", "NoSchedule")
UNSCHEDULABLE_TAINT = Taint("node.kubernetes.io/unschedulable", "NoSchedule")


def node_taints(node: Node) -> tuple[Taint, ...]:
    """The node's taints plus those the node lifecycle controller adds for its conditions."""
    extra = ((NOT_READY_TAINT,) if not node.ready else ()) + \
        ((UNSCHEDULABLE_TAINT,) if node.unschedulable else ())
    return node.taints + extra


def tolerates(template: PodTemplate, node: Node) -> bool:
    return all(
        taint.effect == "PreferNoSchedule"
        or any(t.tolerates(taint) for t in template.tolerations)
        for taint in node_taints(node)
    )


def _term_matches(term: NodeSelectorTerm, node: Node) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False  # an empty term matches no objects (NodeSelectorTerm docs)
    fields = {"metadata.name": node.name}
    return all(r.matches(node.labels) for r in term.match_expressions) and \
        all(r.matches(fields) for r in term.match_fields)


def fits(template: PodTemplate, node: Node) -> bool:
    """Whether a pod with this template may run on the node."""
    for key, value in template.node_selector.items():
        if node.labels.get(key) != value:
            return False
    if template.node_affinity and not any(_term_matches(t, node)
                                          for t in template.node_affinity):
        return False
    return tolerates(template, node)


def schedule(pods: Iterable[Pod], nodes: tuple[Node, ...],
             placed: dict[str, int]) -> dict[tuple[str, str], str]:
    """(namespace, name) -> node for each unplaced pod that fits somewhere.

    Replicas of one workload go to distinct nodes, least-loaded first (ties by name), as the
    default topology spreading and least-allocated scoring tend to do. `placed` counts pods
    already on each node and is updated. Groups are taken in namespace/workload order, so the
    result does not depend on input order.
    """
    order = {n.name: i for i, n in enumerate(sorted(nodes, key=lambda n: n.name))}
    heaps: dict[object, list[tuple[int, int, str]]] = {}
    groups: dict[tuple, list[Pod]] = {}
    for pod in pods:
        t = pod.spec
        signature = (t.node_selector, t.node_affinity, t.tolerations)
        groups.setdefault((pod.namespace, pod.workload or pod.name, signature), []).append(pod)
    result: dict[tuple[str, str], str] = {}
    for key in sorted(groups, key=lambda k: (k[0], k[1])):
        members = sorted(groups[key], key=lambda p: p.name)
        heap = heaps.get(key[2])
        if heap is None:
            heap = [(placed.get(n.name, 0), order[n.name], n.name) for n in nodes
                    if fits(members[0].spec, n)]
            heapq.heapify(heap)
            heaps[key[2]] = heap
        chosen = _least_loaded(heap, placed, len(members))
        if not chosen:
            continue
        for i, pod in enumerate(members):
            name = chosen[i % len(chosen)]
            placed[name] = placed.get(name, 0) + 1
            result[pod.namespace, pod.name] = name
        for name in chosen:
            heapq.heappush(heap, (placed[name], order[name], name))
    return result


def _least_loaded(heap: list[tuple[int, int, str]], placed: dict[str, int],
                  want: int) -> list[str]:
    """Pop up to `want` distinct nodes with the fewest pods (entries may be stale)."""
    chosen: list[str] = []
    while heap and len(chosen) < want:
        count, rank, name = heapq.heappop(heap)
        current = placed.get(name, 0)
        if count != current:  # pods placed here since this entry was pushed: refresh
            heapq.heappush(heap, (current, rank, name))
            continue
        chosen.append(name)
    return chosen
