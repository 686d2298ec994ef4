"""Workload and namespace aggregates equal what the full pod matrix says, pair by pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netsim.cluster import load
from netsim.diff import connections, diff, workload_of
from netsim.reach import matrix
from netsim.reach_views import group_key, grouped
from tests.helpers import load_yaml, node, pod
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


# ------------------------------------------------------------------ diff on a hand-computed case

def _deployment(name: str, namespace: str, replicas: int, port: str) -> str:
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: "
            f"{namespace}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: "
            f"{{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
            f"    spec:\n      containers:\n      - name: c\n        image: nginx\n"
            f"        ports: [{port}]\n---\n")


SHOP_OPS = (node("n1", "172.18.0.2")
            + "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
            + "apiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: ops}}\n---\n"
            + _deployment("web", "shop", 2, "{name: http, containerPort: 8080}")
            + _deployment("db", "shop", 1, "{name: pg, containerPort: 5432}")
            + _deployment("agent", "ops", 2, "{name: metrics, containerPort: 9100}")
            + pod("monitor", "ops", "n1", {"app": "monitor"},
                  ports="    - {name: metrics, containerPort: 9100}\n")
            + netpol("shop", "default-deny", "{podSelector: {}, policyTypes: [Ingress]}"))
DB_FROM_WEB = netpol("shop", "db-from-web", """{podSelector: {matchLabels: {app: db}},
    ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: pg}]}]}""")
WEB_FROM_OPS = netpol("shop", "web-from-ops", """{podSelector: {matchLabels: {app: web}},
    ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}],
               ports: [{port: http}]}]}""")
AGENT_DENY = netpol("ops", "agent-deny", "{podSelector: {matchLabels: {app: agent}}, "
                    "policyTypes: [Ingress]}")
PROBE = pod("probe", "ops", "n1", {"app": "probe"}, ports="    - {containerPort: 7000}\n")
AGENT, MONITOR = "ops/Deployment/agent", "ops/Pod/monitor"
DB, WEB = "shop/Deployment/db", "shop/Deployment/web"
# By the NetworkPolicy spec, before: db admits web on pg (5432); web admits nobody (isolated
# by default-deny); ops is not isolated, so every workload reaches agent and monitor on 9100
# (agent's two pods reach each other; monitor is one pod, and a pod reaching itself does not
# count). After: db admits nobody; web admits the namespace labelled team=ops on http
# (8080); agent is isolated for ingress with no rule, so nobody reaches it.
HAND_CHANGES = [
    (AGENT, AGENT, "TCP", 9100, False),
    (AGENT, WEB, "TCP", 8080, True),
    (MONITOR, AGENT, "TCP", 9100, False),
    (MONITOR, WEB, "TCP", 8080, True),
    (DB, AGENT, "TCP", 9100, False),
    (WEB, AGENT, "TCP", 9100, False),
    (WEB, DB, "TCP", 5432, False),
]


@pytest.mark.parametrize("extra", ["", PROBE], ids=["same pods", "a pod added"])
def test_diff_matches_the_spec_on_a_hand_computed_change(extra):
    before = load_yaml(SHOP_OPS + DB_FROM_WEB, overrides={"dns_addon": False})
    after = load_yaml(SHOP_OPS + WEB_FROM_OPS + AGENT_DENY + extra,
                      overrides={"dns_addon": False})
    result = diff(before, after)
    assert [(c.src, c.dst, c.protocol, c.port, c.opened) for c in result.changes] \
        == HAND_CHANGES
    assert result.added_workloads == (("ops/Pod/probe",) if extra else ())
    assert result.removed_workloads == ()
    assert result.ports == ((5432, "TCP"),) + (((7000, "TCP"),) if extra else ()) \
        + ((8080, "TCP"), (9100, "TCP"))
