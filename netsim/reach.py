"""Reachability: pod-to-pod matrices at scale, one-pair explanations, and what-if diffs.

Pods that policy cannot tell apart share a class (namespace, labels, the address range
their IP falls in among all ipBlocks, the named ports that resolve to the probed port);
policies.matrix computes class-to-class verdicts and this module expands them to pods
only for output.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from netsim.cluster import Cluster
from netsim.model import Pod
from policies.admin import AdminPolicy
from policies.endpoints import Peer
from policies.engine import PolicySet, Verdict, evaluate
from policies.matrix import ClassVerdicts, Side, class_matrix, first_seen


@dataclass(frozen=True)
class Matrix:
    """allowed(i, j): pods[i] can open a connection to pods[j] on port/protocol."""

    port: int
    protocol: str
    pods: tuple[Pod, ...]  # sorted by namespace/name; pods with an address only
    src_class: np.ndarray  # class of each pod as a source
    dst_class: np.ndarray  # class of each pod as a destination
    classes: np.ndarray  # bool [source classes, destination classes]
    node_of: np.ndarray  # node id of each pod (-1: none)
    node_peer_of: np.ndarray  # node id when the pod's traffic counts as its node's, else -1

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.pods]

    def row(self, i: int) -> np.ndarray:
        """Whether pods[i] reaches each pod."""
        vec = self.classes[self.src_class[i], self.dst_class].copy()
        vec[i] = True  # a pod can always reach itself
        node = own_node(self.node_of, self.node_peer_of, self.node_of[i], self.node_peer_of[i])
        if node is not None:
            vec |= node
        return vec

    def rows_by_class(self):
        """(row, sources) pairs covering every pod once: pods whose row depends only on their
        source class share one row (self cells are the caller's to mask); pods next to node
        traffic get their own exact row. Aggregations loop over classes, not pods."""
        special = node_traffic(self.node_of, self.node_peer_of)
        for i in np.flatnonzero(special):
            yield self.row(int(i)), np.array([i])
        plain = np.flatnonzero(~special)
        if not plain.size:  # every pod is next to node traffic
            return
        order = plain[np.argsort(self.src_class[plain], kind="stable")]
        classes = self.src_class[order]
        starts = np.flatnonzero(np.r_[True, classes[1:] != classes[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True):
            yield self.classes[classes[a], self.dst_class], order[a:b]

    def dense(self) -> np.ndarray:
        """The whole pods x pods matrix (for clusters small enough to print)."""
        m = self.classes[np.ix_(self.src_class, self.dst_class)]
        np.fill_diagonal(m, True)
        hosts = np.flatnonzero(self.node_peer_of >= 0)
        if hosts.size:
            same = self.node_of[None, :] == self.node_peer_of[hosts][:, None]
            m[hosts] |= same & (self.node_of[None, :] >= 0)
            m[:, hosts] |= same.T & (self.node_of[:, None] >= 0)
        return m

    def as_json(self) -> dict[str, Any]:
        """The documented shape scripts depend on."""
        return {"port": self.port, "protocol": self.protocol, "pods": self.keys,
                "allowed": self.dense().astype(int).tolist()}


def matrix(cluster: Cluster, port: int, protocol: str = "TCP",
           namespaces: set[str] | None = None, ps: PolicySet | None = None) -> Matrix:
    """The pod-to-pod reachability matrix (optionally only pods of some namespaces)."""
    ps = ps or PolicySet.from_cluster(cluster)
    classes = PodClasses(cluster, ps, namespaces)
    dst_ids, dst_peers = classes.dst_classes(port, protocol)
    verdicts = class_matrix(ps, classes.src_peers, dst_peers, port, protocol)
    return Matrix(port, protocol, classes.pods, classes.src_class, dst_ids, verdicts,
                  classes.node_of, classes.node_peer_of)


def own_node(node_of: np.ndarray, node_peer_of: np.ndarray, src_node: int,
             src_node_peer: int) -> np.ndarray | None:
    """Where traffic between a source (its node, its node-peer node) and each pod counts as
    node traffic to or from the pod's own node, which policy always allows; None: nowhere."""
    mask = None
    if src_node_peer >= 0:
        mask = node_of == src_node_peer
    if src_node >= 0:
        mask = node_peer_of == src_node if mask is None else mask | (node_peer_of == src_node)
    return mask


def node_traffic(node_of: np.ndarray, node_peer_of: np.ndarray) -> np.ndarray:
    """Pods whose rows own_node changes: node traffic, and pods on a node that has some."""
    return (node_peer_of >= 0) | np.isin(node_of, node_of[node_peer_of >= 0])


class PodClasses:
    """Pods as policy classes, with everything that does not depend on the port or on one
    policy set worked out once: source classes, destination classes, the listening pods of
    each port, and the class-level Sides that cache selector and address masks.

    Address ranges and named ports of every policy set in `also` split classes too, so one
    PodClasses serves the policy sets before and after a change when the pods are the same.
    """

    def __init__(self, cluster: Cluster, ps: PolicySet, namespaces: set[str] | None = None,
                 also: tuple[PolicySet, ...] = ()) -> None:
        self.ps = ps
        self.pods = tuple(p for p in cluster.pods if p.ip and (namespaces is None
                                                               or p.namespace in namespaces))
        bounds = _ip_bounds((ps, *also))
        names = _named_ports((ps, *also))
        keys = [self._base(p, bounds) for p in self.pods]
        self.src_class, self._src_firsts = first_seen(keys)
        self.src_peers = [ps.pod_peer(self.pods[i]) for i in self._src_firsts]
        self._named = [tuple((c.name, c.container_port, c.protocol) for c in p.container_ports
                             if c.name in names) for p in self.pods]
        node_ids = {n.name: i for i, n in enumerate(cluster.nodes)}
        self.node_of = np.array([node_ids.get(p.node_name or "", -1) for p in self.pods],
                                dtype=np.int64)
        self.node_peer_of = np.where([p.host_network and ps.host_network_mode == "node"
                                      for p in self.pods], self.node_of, -1)

    def _base(self, pod: Pod, bounds: dict[int, list[int]]) -> tuple:
        version, address = _address(pod.ip)
        segment = (version, bisect.bisect_right(bounds[version], address))
        if pod.host_network and self.ps.host_network_mode == "node":
            return ("node", pod.node_name or "", segment)  # node traffic: its node matters
        return ("pod", pod.namespace, pod.labels, pod.host_network, segment)

    def dst_classes(self, port: int | None = None,
                    protocol: str | None = None) -> tuple[np.ndarray, list[Peer]]:
        """(class of each pod as a destination, one representative Peer per class). For one
        port only the named ports that resolve to it split classes; without a port every
        policy-named port does, so the classes hold for all ports."""
        if port is None:
            keys = list(zip(self.src_class.tolist(), self._named, strict=True))
        else:
            keys = [(c, frozenset(n for n, p, proto in named if p == port and proto == protocol))
                    for c, named in zip(self.src_class.tolist(), self._named, strict=True)]
        ids, firsts = first_seen(keys)
        if firsts == self._src_firsts:  # no named port splits a class
            return ids, self.src_peers
        return ids, [self.ps.pod_peer(self.pods[i]) for i in firsts]

    @cached_property
    def listeners(self) -> dict[tuple[int, str], np.ndarray]:
        """The pods listening on each (port, protocol)."""
        out: dict[tuple[int, str], list[int]] = {}
        for i, pod in enumerate(self.pods):
            for c in {(c.container_port, c.protocol) for c in pod.container_ports}:
                out.setdefault(c, []).append(i)
        return {k: np.array(v, dtype=np.int64) for k, v in out.items()}

    @cached_property
    def dst_class(self) -> np.ndarray:
        """The destination class of each pod valid for every port: ClassVerdicts columns."""
        return self._all_ports[0]

    @cached_property
    def _all_ports(self) -> tuple[np.ndarray, Side, Side]:
        ids, peers = self.dst_classes()
        src = Side(self.src_peers, self.ps)
        return ids, src, src if peers is self.src_peers else Side(peers, self.ps)

    def verdicts(self, ps: PolicySet) -> ClassVerdicts:
        """A policy set (this one, or one these classes serve) over these classes, any port."""
        return ClassVerdicts(ps, *self._all_ports[1:])

    def serves(self, cluster: Cluster, ps: PolicySet) -> bool:
        """Whether these classes are also those of `cluster` under `ps`: the same pods, and
        the same namespace and node labels and hostNetwork mode that peers carry."""
        pods = tuple(p for p in cluster.pods if p.ip)
        return (len(pods) == len(self.pods)
                and all(map(_same_to_policy, pods, self.pods))
                and ps.namespace_labels == self.ps.namespace_labels
                and ps.node_labels == self.ps.node_labels
                and ps.host_network_mode == self.ps.host_network_mode)


def _address(ip: str) -> tuple[int, int]:
    """(IP version, the address as an integer): inet_pton is ten times faster than
    ipaddress, which counts at 150,000 pods."""
    family, version = (socket.AF_INET6, 6) if ":" in ip else (socket.AF_INET, 4)
    return version, int.from_bytes(socket.inet_pton(family, ip), "big")


def _same_to_policy(a: Pod, b: Pod) -> bool:
    """Whether two pods are alike to policies and to these classes (where they were read
    from aside)."""
    return (a is b or (a.key, a.workload, a.labels, a.ips, a.host_network, a.node_name,
                       a.container_ports) == (b.key, b.workload, b.labels, b.ips,
                                              b.host_network, b.node_name, b.container_ports))


def _ip_bounds(sets: tuple[PolicySet, ...]) -> dict[int, list[int]]:
    """Every ipBlock/network edge: pods between two edges are alike to every address rule."""
    cidrs = {b for ps in sets for policies in ps.by_namespace.values() for p in policies
             for rule in p.ingress + p.egress for peer in rule.peers if peer.ip_block
             for b in (peer.ip_block.cidr, *peer.ip_block.except_)}
    cidrs |= {c for ps in sets for a in ps.admin + ps.baseline for c in _admin_networks(a)}
    bounds: dict[int, set[int]] = {4: set(), 6: set()}
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        bounds[net.version] |= {int(net.network_address), int(net.broadcast_address) + 1}
    return {v: sorted(b) for v, b in bounds.items()}


def _admin_networks(policy: AdminPolicy) -> list[str]:
    return [c for rule in policy.ingress + policy.egress for peer in rule.peers
            for c in peer.networks]


def _named_ports(sets: tuple[PolicySet, ...]) -> set[str]:
    """Port names some policy refers to: the only names that can split classes."""
    names = {port.port for ps in sets for policies in ps.by_namespace.values()
             for p in policies for rule in p.ingress + p.egress for port in rule.ports
             if isinstance(port.port, str)}
    names |= {port.name for ps in sets for a in ps.admin + ps.baseline
              for rule in a.ingress + a.egress for port in rule.ports or () if port.name}
    return names


# ---------------------------------------------------------------- explain


def explain(cluster: Cluster, src: Pod, dst: Pod, port: int, protocol: str = "TCP",
            ps: PolicySet | None = None) -> Verdict:
    """The verdict for one connection and everything that decided it."""
    ps = ps or PolicySet.from_cluster(cluster)
    return evaluate(ps, ps.pod_peer(src), ps.pod_peer(dst), port, protocol, explain=True)
