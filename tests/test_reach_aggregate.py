"""Workload and namespace aggregates equal what the full pod matrix says, pair by pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netsim.cluster import load
from netsim.diff import connections, workload_of
from netsim.reach import matrix
from netsim.reach_views import group_key, grouped
from tests.policies.fixtures import cluster_with, netpol

ROOT = Path(__file__).resolve().parents[1]
DENY_X = netpol("x", "deny", "{podSelector: {}, policyTypes: [Ingress]}")


def clusters():
    yield "shop", load([str(ROOT / "examples" / "shop")])
    for mode in ("node", "pod"):  # the fixture has a hostNetwork pod: node traffic rows
        yield f"fixture-{mode}", cluster_with(DENY_X, mode)


@pytest.mark.parametrize(("name", "cluster"), list(clusters()), ids=lambda v: v
                         if isinstance(v, str) else "")
@pytest.mark.parametrize("port", [80, 8080, 6379])
def test_grouped_counts_match_the_dense_matrix(name, cluster, port):
    m = matrix(cluster, port, "TCP")
    dense = m.dense()
    for by in ("workload", "namespace"):
        names, allowed, total = grouped(m, by)
        keys = [group_key(p, by) for p in m.pods]
        want = np.zeros_like(allowed)
        for i, a in enumerate(keys):
            for j, b in enumerate(keys):
                if i != j and dense[i, j]:
                    want[names.index(a), names.index(b)] += 1
        assert (allowed == want).all(), by
        assert total.sum() == len(m.pods) * (len(m.pods) - 1)


@pytest.mark.parametrize(("name", "cluster"), list(clusters()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_diff_connections_match_the_dense_matrix(name, cluster):
    for port in (80, 8080, 6379):
        m = matrix(cluster, port, "TCP")
        dense = m.dense()
        listening = [any(c.container_port == port and c.protocol == "TCP"
                         for c in p.container_ports) for p in m.pods]
        want = {(workload_of(a), workload_of(b)) for i, a in enumerate(m.pods)
                for j, b in enumerate(m.pods) if i != j and dense[i, j] and listening[j]}
        assert connections(cluster, port, "TCP") == want
