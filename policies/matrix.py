"""Verdicts for whole classes of endpoints at once: the policy engine at cluster scale.

Callers group pods that policy cannot tell apart (namespace, labels, address range, the
named ports that resolve to the probed port) and pass one representative Peer per class.
This module evaluates the same semantics as policies.engine, but as boolean vectors over
classes, so the cost grows with classes x rules, never with pod pairs x policies. The
self and own-node exceptions are per pod, so callers apply them when expanding to pods.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from netsim.model import LabelSelector, NetworkPolicy, NetworkPolicyPeer
from policies.admin import ACCEPT, DENY, PASS, AdminPeer, AdminPolicy, subject_matches
from policies.endpoints import Peer, named_port
from policies.engine import PolicySet
from policies.networkpolicy import EGRESS, INGRESS, selects


class Side:
    """One side's classes (sources or destinations) with cached selector and address masks."""

    def __init__(self, peers: list[Peer], ps: PolicySet) -> None:
        self.peers = peers
        self.ps = ps
        n = len(peers)
        self.is_pod = np.array([p.pod is not None for p in peers], dtype=bool)
        # Admin policies never select hostNetwork pods, as subjects or as peers (NPAPI).
        self.admin_pod = np.array([p.pod is not None and not p.pod.host_network
                                   for p in peers], dtype=bool)
        self.namespaces = sorted({p.pod.namespace for p in peers if p.pod is not None})
        ns_index = {ns: i for i, ns in enumerate(self.namespaces)}
        self.ns_id = np.array([ns_index[p.pod.namespace] if p.pod is not None else -1
                               for p in peers], dtype=np.int64)
        self.postings: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.keys: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(peers):
            if p.pod is not None:
                for kv in p.pod.labels.items():
                    self.postings[kv].append(i)
                    self.keys[kv[0]].append(i)
        addresses = [ipaddress.ip_address(p.ip) if p.ip else None for p in peers]
        self.v4 = np.array([int(a) if a is not None and a.version == 4 else -1
                            for a in addresses], dtype=np.int64)
        self.v6 = [int(a) if a is not None and a.version == 6 else None for a in addresses]
        self.node_mask = np.array([p.is_node for p in peers], dtype=bool)
        self.all = np.ones(n, dtype=bool)
        self.none = np.zeros(n, dtype=bool)
        self._cache: dict[object, np.ndarray] = {}

    def cached(self, key: object, build: Callable[[], np.ndarray]) -> np.ndarray:
        mask = self._cache.get(key)
        if mask is None:
            mask = self._cache[key] = build()
        return mask

    # -------------------------------------------------------- building blocks

    def pods_matching(self, selector: LabelSelector) -> np.ndarray:
        """Pod classes whose labels the selector matches (postings first, then a check)."""
        def build() -> np.ndarray:
            candidates = self._candidates(selector)
            mask = np.zeros(len(self.peers), dtype=bool)
            for i in candidates:
                if selector.matches(self.peers[i].pod.labels):
                    mask[i] = True
            return mask
        return self.cached(("pods", selector), build)

    def _candidates(self, selector: LabelSelector) -> list[int] | range:
        lists = [self.postings.get(kv, []) for kv in selector.match_labels.items()]
        for r in selector.match_expressions:
            if r.operator == "In":
                lists.append(sorted({i for v in r.values for i in self.postings.get((r.key, v),
                                                                                  [])}))
            elif r.operator == "Exists":
                lists.append(self.keys.get(r.key, []))
        if lists:
            return min(lists, key=len)
        return [i for i in range(len(self.peers)) if self.is_pod[i]]

    def in_namespaces(self, selector: LabelSelector) -> np.ndarray:
        def build() -> np.ndarray:
            labels = self.ps.namespace_labels
            ids = [i for i, ns in enumerate(self.namespaces)
                   if selector.matches(labels.get(ns, {}))]
            return np.isin(self.ns_id, np.array(ids, dtype=np.int64)) & self.is_pod
        return self.cached(("ns", selector), build)

    def in_namespace(self, namespace: str) -> np.ndarray:
        def build() -> np.ndarray:
            if namespace not in self.namespaces:
                return self.none
            return self.ns_id == self.namespaces.index(namespace)
        return self.cached(("ns=", namespace), build)

    def in_cidr(self, cidr: str, excepts: tuple[str, ...] = ()) -> np.ndarray:
        def build() -> np.ndarray:
            mask = self._cidr(cidr)
            for e in excepts:
                mask = mask & ~self._cidr(e)
            return mask
        return self.cached(("cidr", cidr, excepts), build)

    def _cidr(self, cidr: str) -> np.ndarray:
        net = ipaddress.ip_network(cidr, strict=False)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.version == 4:
            return (self.v4 >= lo) & (self.v4 <= hi)
        return np.array([a is not None and lo <= a <= hi for a in self.v6], dtype=bool)

    def named(self, name: str, port: int, protocol: str) -> np.ndarray:
        """Classes whose (representative) pod resolves the named port to the probed port."""
        def build() -> np.ndarray:
            return np.array([named_port(p.pod, name, protocol) == port for p in self.peers],
                            dtype=bool)
        return self.cached(("named", name, port, protocol), build)

    # -------------------------------------------------------- peers

    def np_peer(self, peer: NetworkPolicyPeer, policy_namespace: str) -> np.ndarray:
        """Classes a NetworkPolicy peer matches (selectors: pods only; ipBlock: addresses)."""
        def build() -> np.ndarray:
            if peer.ip_block is not None:
                return self.in_cidr(peer.ip_block.cidr, peer.ip_block.except_)
            mask = self.in_namespace(policy_namespace) if peer.namespace_selector is None \
                else self.in_namespaces(peer.namespace_selector)
            if peer.pod_selector is not None:
                mask = mask & self.pods_matching(peer.pod_selector)
            return mask
        return self.cached(("np-peer", peer, policy_namespace), build)

    def admin_peer(self, peer: AdminPeer, action: str) -> np.ndarray:
        def build() -> np.ndarray:
            if peer.empty:
                return self.none if action == ACCEPT else self.all
            if peer.namespaces is not None:
                return self.in_namespaces(peer.namespaces) & self.admin_pod
            if peer.pods is not None:
                return self.in_namespaces(peer.pods.namespaces) & \
                    self.pods_matching(peer.pods.pods) & self.admin_pod
            if peer.nodes is not None:
                return np.array([p.is_node and peer.nodes.matches(p.node_labels)
                                 for p in self.peers], dtype=bool)
            mask = self.none
            for cidr in peer.networks:
                mask = mask | self.in_cidr(cidr)
            return mask
        return self.cached(("admin-peer", peer, action), build)


def _np_port_mask(rule, port: int, protocol: str, dst: Peer | Side) -> np.ndarray | bool:
    """Where a NetworkPolicy rule's ports match: a bool (ingress) or a mask over dst classes."""
    if not rule.ports:
        return True
    out: np.ndarray | bool = False
    for p in rule.ports:
        if p.protocol != protocol:
            continue
        if p.port is None:
            return True
        if isinstance(p.port, str):
            hit = dst.named(p.port, port, protocol) if isinstance(dst, Side) else \
                named_port(dst.pod, p.port, protocol) == port
        elif p.end_port is not None:
            hit = p.port <= port <= p.end_port
        else:
            hit = p.port == port
        if hit is True:
            return True
        out = out | hit
    return out


def _admin_port_mask(ports, port: int, protocol: str, dst: Peer | Side) -> np.ndarray | bool:
    if ports is None:
        return True
    out: np.ndarray | bool = False
    for p in ports:
        if p.name is not None:
            hit = dst.named(p.name, port, protocol) if isinstance(dst, Side) else \
                named_port(dst.pod, p.name, protocol) == port
        elif p.protocol != protocol:
            continue
        else:
            hit = p.start is None or p.start <= port <= p.end
        if hit is True:
            return True
        out = out | hit
    return out


def _tier(policies: list[AdminPolicy], direction: str, other: Side, ports_dst: Peer | Side,
          port: int, protocol: str, open_: np.ndarray, result: np.ndarray,
          decided: np.ndarray) -> np.ndarray:
    """First-match evaluation of one admin tier over the still-open classes.

    Sets result/decided for Accept and Deny; returns the classes a Pass sent onwards.
    """
    passed = np.zeros(len(other.peers), dtype=bool)
    for policy in policies:
        for rule in policy.ingress if direction == INGRESS else policy.egress:
            ports = _admin_port_mask(rule.ports, port, protocol, ports_dst)
            if ports is False:
                continue
            peers = other.none
            for peer in rule.peers:
                peers = peers | other.admin_peer(peer, rule.action)
            hit = open_ & peers & ports
            if not hit.any():
                continue
            if rule.action == PASS:
                passed |= hit
            else:
                result[hit] = rule.action == ACCEPT
                decided |= hit
            open_ = open_ & ~hit
    return passed


def direction_vector(ps: PolicySet, subject: Peer, other: Side, direction: str, port: int,
                     protocol: str, dst_side: Side | None = None) -> np.ndarray:
    """Whether each class of `other` passes the subject's policy for this direction."""
    n = len(other.peers)
    if subject.pod is None:
        return other.all
    ports_dst: Peer | Side = subject if direction == INGRESS else dst_side  # type: ignore
    result = np.ones(n, dtype=bool)
    decided = np.zeros(n, dtype=bool)
    admin = [a for a in ps.admin if subject_matches(a, subject)]
    passed = _tier(admin, direction, other, ports_dst, port, protocol, other.all.copy(), result,
                   decided) if admin else other.none
    remaining = ~decided | passed
    isolating = [p for p in ps.by_namespace.get(subject.pod.namespace, [])
                 if selects(p, subject.pod.labels, direction)]
    if isolating:
        allowed = _np_union(isolating, direction, other, ports_dst, port, protocol)
        result[remaining] = allowed[remaining]
        return result
    baseline = [a for a in ps.baseline if subject_matches(a, subject)]
    if baseline:
        base_decided = np.zeros(n, dtype=bool)
        _tier(baseline, direction, other, ports_dst, port, protocol, remaining.copy(), result,
              base_decided)
    return result


def _np_union(policies: list[NetworkPolicy], direction: str, other: Side,
              ports_dst: Peer | Side, port: int, protocol: str) -> np.ndarray:
    allowed = other.none.copy()
    for policy in policies:
        for rule in policy.ingress if direction == INGRESS else policy.egress:
            ports = _np_port_mask(rule, port, protocol, ports_dst)
            if ports is False:
                continue
            if rule.peers:
                peers = other.none
                for peer in rule.peers:
                    peers = peers | other.np_peer(peer, policy.namespace)
            else:
                peers = other.all
            allowed |= peers & ports
    return allowed


def _subject_key(ps: PolicySet, subject: Peer, direction: str) -> object:
    """Everything a direction vector depends on besides the port, so equal subjects share one
    computation (for ingress, every named port: a rule's named port resolves on the subject)."""
    pod = subject.pod
    if pod is None:
        return None
    tiers = tuple(i for i, a in enumerate(ps.admin + ps.baseline) if subject_matches(a, subject))
    isolating = tuple(id(p) for p in ps.by_namespace.get(pod.namespace, [])
                      if selects(p, pod.labels, direction))
    names = tuple((c.name, c.container_port, c.protocol) for c in pod.container_ports
                  if c.name) if direction == INGRESS else None
    return pod.namespace, tiers, isolating, names


class ClassVerdicts:
    """One policy set over fixed source and destination classes, for any port: which classes
    share a direction vector is worked out once, so each port only evaluates the distinct
    subjects (and only the destination columns asked for)."""

    def __init__(self, ps: PolicySet, src: Side, dst: Side) -> None:
        self.ps, self.src, self.dst = ps, src, dst
        self._egress = _distinct(ps, src.peers, EGRESS)
        self._ingress = _distinct(ps, dst.peers, INGRESS)

    def matrix(self, port: int, protocol: str, columns: np.ndarray | None = None) -> np.ndarray:
        """allowed[s, d] for every source class and the destination classes `columns` (all
        when None); self and own-node exceptions not applied."""
        cols = np.arange(len(self.dst.peers)) if columns is None else columns
        firsts, of_src = self._egress
        egress = np.stack([direction_vector(self.ps, self.src.peers[i], self.dst, EGRESS, port,
                                            protocol, self.dst)[cols] for i in firsts]) \
            if firsts else np.zeros((0, cols.size), dtype=bool)
        firsts, of_dst = self._ingress
        needed, inverse = np.unique(of_dst[cols], return_inverse=True)
        # ingress vectors as columns (sources down), so the result is built row-contiguous
        ingress = np.stack([direction_vector(self.ps, self.dst.peers[firsts[k]], self.src,
                                             INGRESS, port, protocol) for k in needed],
                           axis=1) if needed.size else np.zeros((len(self.src.peers), 0),
                                                                dtype=bool)
        return np.take(egress, of_src, axis=0) & np.take(ingress, inverse.reshape(-1), axis=1)


def _distinct(ps: PolicySet, peers: list[Peer], direction: str) -> tuple[list[int], np.ndarray]:
    """(first class of each distinct subject key, the key's number for every class)."""
    numbers, firsts = first_seen([_subject_key(ps, peer, direction) for peer in peers])
    return firsts, numbers


def first_seen(keys: list) -> tuple[np.ndarray, list[int]]:
    """(number of each key in order of first appearance, the first index of each number)."""
    numbers: dict[object, int] = {}
    firsts: list[int] = []
    ids = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        k = numbers.get(key)
        if k is None:
            k = numbers[key] = len(firsts)
            firsts.append(i)
        ids[i] = k
    return ids, firsts


def class_matrix(ps: PolicySet, srcs: list[Peer], dsts: list[Peer], port: int,
                 protocol: str) -> np.ndarray:
    """allowed[s, d] for class representatives (self and own-node exceptions not applied)."""
    return ClassVerdicts(ps, Side(srcs, ps), Side(dsts, ps)).matrix(port, protocol)


__all__ = ["DENY", "ClassVerdicts", "Side", "class_matrix", "direction_vector",
           "first_seen"]
