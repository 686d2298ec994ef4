"""Placement: kube-scheduler's filters (selectors, affinity, taints) and spreading."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.helpers import load_yaml, node

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{spec}      containers: [{{name: c, image: nginx}}]
---
"""


def deploy(name: str, replicas: int = 1, spec: str = "") -> str:
    return DEPLOY.format(name=name, replicas=replicas, spec=spec)


def placement(cluster, prefix):
    return sorted(p.node_name or "-" for p in cluster.pods if p.name.startswith(prefix))


NODES = (node("cp", labels={"node-role.kubernetes.io/control-plane": ""},
              taints=[("node-role.kubernetes.io/control-plane", "NoSchedule")])
         + node("gpu", labels={"pool": "gpu", "cores": "64"},
                taints=[("nvidia.com/gpu", "NoExecute")])
         + node("w1", labels={"pool": "general", "cores": "8", "zone": "a"})
         + node("w2", labels={"pool": "general", "cores": "16", "zone": "b"},
                taints=[("noisy", "PreferNoSchedule")]))

CASES = [
    # (name, pod spec lines, expected nodes for 2 replicas)
    ("plain", "", ["w1", "w2"]),  # untainted + PreferNoSchedule only; spread
    ("selector", "      nodeSelector: {pool: general}\n", ["w1", "w2"]),
    ("selector-gpu-untolerated", "      nodeSelector: {pool: gpu}\n", ["-", "-"]),
    ("gpu", "      nodeSelector: {pool: gpu}\n      tolerations: [{key: nvidia.com/gpu, "
     "operator: Exists}]\n", ["gpu", "gpu"]),
    ("wrong-effect", "      nodeSelector: {pool: gpu}\n      tolerations: [{key: "
     "nvidia.com/gpu, operator: Exists, effect: NoSchedule}]\n", ["-", "-"]),
    ("everything", "      tolerations: [{operator: Exists}]\n", ["cp", "gpu"]),
    ("affinity-in", "      affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuring"
     "Execution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: "
     "[b]}]}]}}}\n", ["w2", "w2"]),
    ("affinity-gt", "      tolerations: [{operator: Exists}]\n      affinity: {nodeAffinity: "
     "{requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: "
     "[{key: cores, operator: Gt, values: ['10']}]}]}}}\n", ["gpu", "w2"]),
    ("affinity-notin", "      affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuring"
     "Execution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: NotIn, values: "
     "[a]}]}]}}}\n", ["w2", "w2"]),
    ("affinity-or-terms", "      affinity: {nodeAffinity: {requiredDuringSchedulingIgnored"
     "DuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, "
     "values: [a]}]}, {matchFields: [{key: metadata.name, operator: In, values: [w2]}]}]}}}\n",
     ["w1", "w2"]),
]


@pytest.mark.parametrize(("name", "spec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filters(name, spec, expected):
    cluster = load_yaml(NODES + deploy(name, 2, spec))
    assert placement(cluster, name) == expected
    if "-" in expected:
        assert any("stay Pending" in w for w in cluster.warnings)
        assert all(p.phase == "Pending" and not p.ips for p in cluster.pods_in("default"))


def test_unschedulable_and_not_ready_nodes_are_skipped():
    text = node("a", extra="\nspec:\n  unschedulable: true") + \
        node("b", extra="\nstatus:\n  conditions: [{type: Ready, status: 'False'}]") + \
        node("c") + deploy("web", 3)
    assert placement(load_yaml(text), "web") == ["c", "c", "c"]


def test_replicas_spread_and_fill_the_emptiest_nodes_first():
    text = node("a") + node("b") + node("c") + deploy("one", 1) + deploy("two", 5)
    cluster = load_yaml(text)
    # "one" lands on a; "two" then spreads over all three, emptiest (b, c) first.
    assert placement(cluster, "one") == ["a"]
    assert Counter(placement(cluster, "two")) == {"a": 1, "b": 2, "c": 2}


def test_daemonset_runs_on_every_node_it_tolerates():
    ds = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}, namespace: kube-system}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{spec}      containers: [{{name: c, image: agent}}]
---
"""
    text = NODES + ds.format(name="agent", spec="") + ds.format(
        name="cp-agent", spec="      tolerations: [{key: node-role.kubernetes.io/control-plane, "
        "operator: Exists, effect: NoSchedule}]\n") + ds.format(
        name="general", spec="      nodeSelector: {pool: general}\n")
    cluster = load_yaml(text)
    assert placement(cluster, "agent") == ["w1", "w2"]
    assert placement(cluster, "cp-agent") == ["cp", "w1", "w2"]
    assert placement(cluster, "general") == ["w1", "w2"]
    assert all(p.phase == "Running" for p in cluster.pods)
