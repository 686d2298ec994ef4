"""Reachability: pod-to-pod matrices at scale, one-pair explanations, and what-if diffs.

Pods that policy cannot tell apart share a class (namespace, labels, the address range
their IP falls in among all ipBlocks, the named ports that resolve to the probed port);
policies.matrix computes class-to-class verdicts and this module expands them to pods
only for output.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from typing import Any

import numpy as np

from netsim.cluster import Cluster
from netsim.model import Pod
from policies.admin import AdminPolicy
from policies.endpoints import Peer
from policies.engine import PolicySet, Verdict, evaluate
from policies.matrix import class_matrix


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
        if self.node_peer_of[i] >= 0:  # node traffic to pods on that node is always allowed
            vec |= self.node_of == self.node_peer_of[i]
        if self.node_of[i] >= 0:
            vec |= self.node_peer_of == self.node_of[i]
        return vec

    def rows_by_class(self):
        """(row, sources) pairs covering every pod once: pods whose row depends only on their
        source class share one row (self cells are the caller's to mask); pods next to node
        traffic get their own exact row. Aggregations loop over classes, not pods."""
        hosts = set(self.node_of[self.node_peer_of >= 0].tolist())
        special = (self.node_peer_of >= 0) | np.isin(self.node_of, list(hosts))
        for i in np.flatnonzero(special):
            yield self.row(int(i)), np.array([i])
        plain = np.flatnonzero(~special)
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
    pods = tuple(p for p in cluster.pods if p.ip and (namespaces is None
                                                       or p.namespace in namespaces))
    classes = _Classes(ps, cluster, port, protocol)
    src_ids = np.array([classes.src(p) for p in pods], dtype=np.int64)
    dst_ids = np.array([classes.dst(p) for p in pods], dtype=np.int64)
    verdicts = class_matrix(ps, classes.src_peers, classes.dst_peers, port, protocol)
    node_ids = {n.name: i for i, n in enumerate(cluster.nodes)}
    node_of = np.array([node_ids.get(p.node_name or "", -1) for p in pods], dtype=np.int64)
    node_peer = np.array([node_ids.get(p.node_name or "", -1)
                          if p.host_network and ps.host_network_mode == "node" else -1
                          for p in pods], dtype=np.int64)
    return Matrix(port, protocol, pods, src_ids, dst_ids, verdicts, node_of, node_peer)


class _Classes:
    """Assigns pods to source and destination classes and keeps one representative each."""

    def __init__(self, ps: PolicySet, cluster: Cluster, port: int, protocol: str) -> None:
        self.ps, self.port, self.protocol = ps, port, protocol
        self.bounds = _ip_bounds(cluster, ps)
        self.names = _named_ports(cluster, ps)
        self.src_peers: list[Peer] = []
        self.dst_peers: list[Peer] = []
        self._src: dict[object, int] = {}
        self._dst: dict[object, int] = {}

    def _base(self, pod: Pod) -> tuple[object, Peer]:
        peer = self.ps.pod_peer(pod)
        ip = ipaddress.ip_address(pod.ip)
        segment = (ip.version, bisect.bisect_right(self.bounds[ip.version], int(ip)))
        if peer.pod is None:  # node traffic: its node matters for node peers
            return ("node", peer.node, segment), peer
        return ("pod", pod.namespace, pod.labels, pod.host_network, segment), peer

    def src(self, pod: Pod) -> int:
        key, peer = self._base(pod)
        return self._index(self._src, self.src_peers, key, peer)

    def dst(self, pod: Pod) -> int:
        key, peer = self._base(pod)
        named = frozenset(c.name for c in pod.container_ports
                          if c.name in self.names and c.container_port == self.port
                          and c.protocol == self.protocol)
        return self._index(self._dst, self.dst_peers, (key, named), peer)

    @staticmethod
    def _index(table: dict, peers: list[Peer], key: object, peer: Peer) -> int:
        i = table.get(key)
        if i is None:
            i = table[key] = len(peers)
            peers.append(peer)
        return i


def _ip_bounds(cluster: Cluster, ps: PolicySet) -> dict[int, list[int]]:
    """Every ipBlock/network edge: pods between two edges are alike to every address rule."""
    cidrs = {b for p in cluster.network_policies for rule in p.ingress + p.egress
             for peer in rule.peers if peer.ip_block
             for b in (peer.ip_block.cidr, *peer.ip_block.except_)}
    cidrs |= {c for a in ps.admin + ps.baseline for c in _admin_networks(a)}
    bounds: dict[int, set[int]] = {4: set(), 6: set()}
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        bounds[net.version] |= {int(net.network_address), int(net.broadcast_address) + 1}
    return {v: sorted(b) for v, b in bounds.items()}


def _admin_networks(policy: AdminPolicy) -> list[str]:
    return [c for rule in policy.ingress + policy.egress for peer in rule.peers
            for c in peer.networks]


def _named_ports(cluster: Cluster, ps: PolicySet) -> set[str]:
    """Port names some policy refers to: the only names that can split classes."""
    names = {port.port for p in cluster.network_policies for rule in p.ingress + p.egress
             for port in rule.ports if isinstance(port.port, str)}
    names |= {port.name for a in ps.admin + ps.baseline for rule in a.ingress + a.egress
              for port in rule.ports or () if port.name}
    return names


# ---------------------------------------------------------------- explain


def explain(cluster: Cluster, src: Pod, dst: Pod, port: int, protocol: str = "TCP",
            ps: PolicySet | None = None) -> Verdict:
    """The verdict for one connection and everything that decided it."""
    ps = ps or PolicySet.from_cluster(cluster)
    return evaluate(ps, ps.pod_peer(src), ps.pod_peer(dst), port, protocol, explain=True)
