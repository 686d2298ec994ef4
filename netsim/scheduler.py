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

    `placed` counts pods already on each node; it is updated as pods are placed. Pods are
    taken in namespace/name order so the result does not depend on input order.
    """
    order = {n.name: i for i, n in enumerate(sorted(nodes, key=lambda n: n.name))}
    heaps: dict[object, list[tuple[int, int, str]]] = {}
    result: dict[tuple[str, str], str] = {}
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        template = pod.spec
        signature = (template.node_selector, template.node_affinity, template.tolerations)
        heap = heaps.get(signature)
        if heap is None:
            heap = [(placed.get(n.name, 0), order[n.name], n.name) for n in nodes
                    if fits(template, n)]
            heapq.heapify(heap)
            heaps[signature] = heap
        while heap:
            count, rank, name = heap[0]
            current = placed.get(name, 0)
            if count != current:  # another signature placed pods here since: refresh
                heapq.heapreplace(heap, (current, rank, name))
                continue
            placed[name] = current + 1
            heapq.heapreplace(heap, (current + 1, rank, name))
            result[pod.namespace, pod.name] = name
            break
    return result
