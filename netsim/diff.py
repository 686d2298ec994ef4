"""What a change to the manifests opens or closes, by workload, port and protocol.

Both sides are evaluated over one set of pod classes when the change leaves the pods alone
(a policy change), and the class inputs are worked out once for every port; per port only
the listening destination classes are evaluated, and verdicts go to workloads through
(class, workload) units, never through pod pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netsim.cluster import Cluster
from netsim.model import Pod
from netsim.reach import PodClasses, node_traffic, own_node
from policies.engine import PolicySet

ROWS_PER_BLOCK = 1 << 25  # units x units cells gathered at once: bounds temporary memory


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


class Workloads:
    """One side of a comparison: pods as workload numbers, over classes under one policy set."""

    def __init__(self, classes: PodClasses, ps: PolicySet, index: dict[str, int]) -> None:
        self.classes = classes
        self.verdicts = classes.verdicts(ps)
        self.group = np.array([index[workload_of(p)] for p in classes.pods], dtype=np.int64)
        self.rows = len(index)
        self.special = node_traffic(classes.node_of, classes.node_peer_of)

    def listening(self, port: int, protocol: str) -> np.ndarray:
        """The workloads with a pod listening on port/protocol (sorted numbers)."""
        return np.unique(self.group[self.classes.listeners.get((port, protocol), [])])

    def class_verdicts(self, port: int, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        """(the destination classes of listening pods, allowed[source class, those])."""
        listen = self.classes.listeners.get((port, protocol), np.empty(0, dtype=np.int64))
        needed = np.unique(self.classes.dst_class[listen])
        return needed, self.verdicts.matrix(port, protocol, needed)

    def reach(self, port: int, protocol: str, columns: np.ndarray,
              verdicts: tuple[np.ndarray, np.ndarray] | None = None,
              clients: np.ndarray | None = None) -> np.ndarray:
        """reach[client, k]: some pod of the client workload reaches some other pod of
        workload columns[k] (sorted numbers) that listens on port/protocol. Only rows of
        `clients` (sorted numbers; None: all) are filled in."""
        out = np.zeros((self.rows, columns.size), dtype=bool)
        listen = self.classes.listeners.get((port, protocol))
        if listen is None or not columns.size:
            return out
        listen = listen[np.isin(self.group[listen], columns)]
        col = np.searchsorted(columns, self.group[listen])
        needed, verdicts = verdicts or self.class_verdicts(port, protocol)
        d_of = np.searchsorted(needed, self.classes.dst_class[listen])
        sources = np.ones(self.group.size, dtype=bool) if clients is None else \
            np.isin(self.group, clients)
        plain = np.flatnonzero(sources & ~self.special)
        # column units: listening pods of one workload and destination class
        c_col, c_dst, c_pod, c_count = _units(col, d_of, listen)
        s_grp, s_src, s_pod, s_count = _units(self.group[plain],
                                              self.classes.src_class[plain], plain)
        cuts = np.flatnonzero(np.r_[True, c_col[1:] != c_col[:-1]])
        step = max(1, ROWS_PER_BLOCK // max(1, c_col.size))
        for a in range(0, s_grp.size, step):
            rows = slice(a, a + step)
            cells = verdicts[s_src[rows]][:, c_dst]
            by_col = np.logical_or.reduceat(cells, cuts, axis=1)
            firsts = np.flatnonzero(np.r_[True, s_grp[rows][1:] != s_grp[rows][:-1]])
            out[np.ix_(s_grp[rows][firsts], c_col[cuts])] |= \
                np.logical_or.reduceat(by_col, firsts, axis=0)
        # a workload reaching itself needs two different pods: redo those cells exactly
        own = np.searchsorted(columns, s_grp).clip(max=columns.size - 1)
        lo = np.searchsorted(c_col, own, "left")
        n = np.where(columns[own] == s_grp, np.searchsorted(c_col, own, "right") - lo, 0)
        p = np.repeat(np.arange(s_grp.size), n)
        k = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(p.size)
        ok = verdicts[s_src[p], c_dst[k]] & ((s_count[p] > 1) | (c_count[k] > 1)
                                              | (s_pod[p] != c_pod[k]))
        out[s_grp[n > 0], own[n > 0]] = False
        out[s_grp[p[ok]], own[p[ok]]] = True
        for i in np.flatnonzero(sources & self.special):  # node traffic: exact, pod by pod
            row = verdicts[self.classes.src_class[i], d_of]
            node = own_node(self.classes.node_of[listen], self.classes.node_peer_of[listen],
                            self.classes.node_of[i], self.classes.node_peer_of[i])
            if node is not None:
                row = row | node
            out[self.group[i], col[row & (listen != i)]] = True
        return out


def _units(major: np.ndarray, minor: np.ndarray, pods: np.ndarray):
    """Distinct (major, minor) pairs sorted by major: (major, minor, first pod, pod count)."""
    key = major * (int(minor.max(initial=0)) + 1) + minor
    _, first, count = np.unique(key, return_index=True, return_counts=True)
    return major[first], minor[first], pods[first], count


def connections(cluster: Cluster, port: int, protocol: str,
                ps: PolicySet | None = None) -> set[tuple[str, str]]:
    """Workload pairs (client, server) where some client pod reaches some server pod that
    listens on port/protocol (a pod reaching itself does not count)."""
    ps = ps or PolicySet.from_cluster(cluster)
    classes = PodClasses(cluster, ps)
    names = sorted({workload_of(p) for p in classes.pods})
    side = Workloads(classes, ps, {w: i for i, w in enumerate(names)})
    columns = side.listening(port, protocol)
    reach = side.reach(port, protocol, columns)
    return {(names[a], names[columns[b]]) for a, b in zip(*np.nonzero(reach), strict=True)}


def _changed(sides: tuple[Workloads, Workloads], port: int,
             protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(servers, before, after): reach over shared classes, worked out only where it can
    differ, for the clients and servers of a class pair whose verdict the change flips."""
    old, new = sides
    (needed, was), (_, now) = (s.class_verdicts(port, protocol) for s in sides)
    flipped = was != now
    if not flipped.any():
        none = np.empty(0, dtype=np.int64)
        return none, np.zeros((old.rows, 0), dtype=bool), np.zeros((old.rows, 0), dtype=bool)
    clients = np.unique(old.group[np.isin(old.classes.src_class,
                                          np.flatnonzero(flipped.any(axis=1)))])
    listen = old.classes.listeners[(port, protocol)]
    servers = np.unique(old.group[listen[np.isin(old.classes.dst_class[listen],
                                                 needed[flipped.any(axis=0)])]])
    return (servers, old.reach(port, protocol, servers, (needed, was), clients),
            new.reach(port, protocol, servers, (needed, now), clients))


def diff(old: Cluster, new: Cluster) -> Diff:
    """Connections between workloads present in both that the change opens or closes."""
    old_w = {workload_of(p) for p in old.pods}
    new_w = {workload_of(p) for p in new.pods}
    ports = tuple(sorted(listening_ports(old) | listening_ports(new)))
    old_ps, new_ps = PolicySet.from_cluster(old), PolicySet.from_cluster(new)
    before = PodClasses(old, old_ps, also=(new_ps,))
    after = before if before.serves(new, new_ps) else PodClasses(new, new_ps, also=(old_ps,))
    names = sorted(old_w | new_w)
    index = {w: i for i, w in enumerate(names)}
    sides = Workloads(before, old_ps, index), Workloads(after, new_ps, index)
    both = np.array([w in old_w and w in new_w for w in names], dtype=bool)
    changes = []
    for port, protocol in ports:
        if after is before:  # one set of classes: only cells whose class verdict changed
            columns, was, now = _changed(sides, port, protocol)
        else:
            columns = np.union1d(*(s.listening(port, protocol) for s in sides))
            was, now = (s.reach(port, protocol, columns) for s in sides)
        changed = (was != now) & both[:, None] & both[columns][None, :]
        for a, b in zip(*np.nonzero(changed), strict=True):
            changes.append(Change(names[a], names[columns[b]], protocol, port, bool(now[a, b])))
    changes.sort(key=lambda c: (c.src, c.dst, c.protocol, c.port, c.opened))  # Change order
    return Diff(tuple(changes), tuple(sorted(new_w - old_w)),
                tuple(sorted(old_w - new_w)), ports)
