"""The controllers' replica arithmetic, against the numbers upstream documents and tests.

Sources of the expectations:
- Kubernetes docs, Deployment concept page: maxSurge is "calculated from the percentage by
  rounding up", maxUnavailable "by rounding down"; 30% of 10 lets the total reach 13 and the
  old ReplicaSet drop to 7.
- kubernetes/kubernetes apps validation: both fenceposts 0 is rejected ("may not be 0 when
  `maxSurge` is 0"); Recreate takes no rollingUpdate.
- argoproj/argo-rollouts utils/replicaset/canary_test.go TestCalculateReplicaCountsForCanary
  (rows without older ReplicaSets or setCanaryScale) and docs/features/canary.md (10 replicas at
  setWeight 10 is 1 + 9; 41% is 4 canary and 6 stable); the mesh-ingress reference note (15% of
  10 rounds up to 2 + 9).
"""

from __future__ import annotations

import pytest

from netsim.errors import InputError
from netsim.fields import Fields
from netsim.rollout_deploy import (
    RECREATE,
    DeploymentStrategy,
    ReplicaSetState,
    approximate_canary_counts,
    argo_fenceposts,
    basic_canary_counts,
    max_unavailable,
    parse_strategy,
    resolve_fenceposts,
    scaled_value,
    traffic_routed_canary_counts,
)


@pytest.mark.parametrize("value, total, up, expected", [
    ("25%", 10, True, 3),   # 2.5 rounds up for maxSurge
    ("25%", 10, False, 2),  # and down for maxUnavailable
    ("30%", 10, True, 3),   # the docs: "does not exceed 130% of desired Pods"
    ("30%", 10, False, 3),  # "scaled down to 70% of desired Pods"
    ("25%", 3, True, 1),
    ("25%", 3, False, 0),
    ("100%", 4, False, 4),
    (2, 10, True, 2),       # an absolute number is taken as is
])
def test_scaled_value_rounding(value, total, up, expected):
    assert scaled_value(value, total, up) == expected


@pytest.mark.parametrize("surge, unavailable, desired, expected", [
    ("25%", "25%", 10, (3, 2)),  # at most 13 pods, at least 8 available
    ("25%", "25%", 3, (1, 0)),   # the docs' nginx example: at most 4, at least 3
    ("0%", "1%", 2, (0, 1)),     # both resolve to 0: one may be unavailable
    ("1%", "25%", 2, (1, 0)),
    (0, "20%", 4, (0, 1)),       # 0.8 rounds down to 0, then the fencepost rule
])
def test_resolve_fenceposts(surge, unavailable, desired, expected):
    assert resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_is_capped_at_replicas_and_zero_without_replicas():
    assert max_unavailable(DeploymentStrategy(max_unavailable=5), 3) == 3
    assert max_unavailable(DeploymentStrategy(), 0) == 0
    assert max_unavailable(DeploymentStrategy(RECREATE, 0, 0), 10) == 0


def _strategy(spec: dict) -> DeploymentStrategy:
    return parse_strategy(Fields(spec, None, "Deployment demo/web", "spec.strategy"))


def test_strategy_defaults_as_the_api_server():
    assert _strategy({}) == DeploymentStrategy("RollingUpdate", "25%", "25%")
    assert _strategy({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}) == \
        DeploymentStrategy("RollingUpdate", 1, "25%")
    assert _strategy({"type": "Recreate"}).type == RECREATE


@pytest.mark.parametrize("spec, field, message", [
    ({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
     "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    ({"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "0%"}},
     "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    ({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}, "spec.strategy.rollingUpdate",
     "may not be specified when strategy `type` is 'Recreate'"),
    ({"rollingUpdate": {"maxUnavailable": "110%"}},
     "spec.strategy.rollingUpdate.maxUnavailable", "must not be greater than 100%"),
    ({"rollingUpdate": {"maxSurge": "a lot"}}, "spec.strategy.rollingUpdate.maxSurge",
     "must be an integer or a percentage"),
    ({"rollingUpdate": {"maxSurge": -1}}, "spec.strategy.rollingUpdate.maxSurge",
     "must be greater than or equal to 0"),
    ({"type": "BlueGreen"}, "spec.strategy.type", "must be one of RollingUpdate, Recreate"),
])
def test_invalid_strategies_are_rejected_with_the_field(spec, field, message):
    with pytest.raises(InputError) as err:
        _strategy(spec)
    assert err.value.field == field
    assert message in err.value.message


# Argo Rollouts' TestCalculateReplicaCountsForCanary rows (no older RS, no setCanaryScale):
# replicas, weight, maxSurge, maxUnavailable, stable spec/available, canary spec/available,
# expected stable, expected canary.
ARGO_ROWS = [
    (10, 100, 3, 0, 7, 8, 6, 3, 7, 6),
    (10, 20, 2, 0, 10, 10, 0, 0, 10, 2),
    (10, 20, "20%", 0, 10, 10, 0, 0, 10, 2),
    (10, 20, "20%", 0, 10, 10, 2, 2, 8, 2),
    (10, 30, 2, 0, 10, 10, 0, 0, 10, 2),
    (10, 20, 0, 2, 10, 10, 0, 0, 8, 0),
    (10, 20, 0, "20%", 10, 10, 0, 0, 8, 0),
    (10, 30, 0, 2, 10, 10, 0, 0, 8, 0),
    (10, 50, 2, 1, 10, 10, 0, 0, 9, 2),
    (10, 0, 1, 1, 10, 10, 1, 1, 10, 0),
    (10, 100, 1, 1, 1, 1, 10, 10, 0, 10),
    (1, 20, 1, 0, 1, 1, 0, 0, 1, 1),
    (1, 90, 1, 0, 1, 1, 0, 0, 1, 1),
    (1, 49, 0, 1, 1, 1, 0, 0, 1, 0),
    (1, 51, 0, 1, 1, 1, 0, 0, 0, 0),
    (1, 51, 0, 1, 0, 0, 0, 0, 0, 1),
    (10, 30, 0, 3, 8, 5, 4, 4, 7, 3),
    (10, 100, 1, 0, 10, 2, 10, 8, 2, 9),
    (10, 5, 0, 1, 10, 10, 0, 0, 9, 0),
    (10, 5, 0, 1, 9, 9, 0, 0, 9, 1),
    (10, 10, "0%", "0%", 10, 10, 0, 0, 9, 0),
    (4, 100, 1, 0, 4, 1, 0, 0, 4, 1),
    (3, 99, 0, 2, 3, 3, 0, 0, 1, 0),
    (3, 99, 0, 2, 1, 1, 0, 0, 1, 2),
]


@pytest.mark.parametrize("replicas, weight, surge, unavailable, stable_spec, stable_ready, "
                         "canary_spec, canary_ready, want_stable, want_canary", ARGO_ROWS)
def test_basic_canary_counts_match_argo(replicas, weight, surge, unavailable, stable_spec,
                                        stable_ready, canary_spec, canary_ready, want_stable,
                                        want_canary):
    s, u = argo_fenceposts(surge, unavailable, replicas)
    got = basic_canary_counts(replicas, weight, ReplicaSetState("canary", canary_spec,
                                                                canary_ready),
                              ReplicaSetState("stable", stable_spec, stable_ready), s, u)
    assert got == (want_canary, want_stable)


@pytest.mark.parametrize("replicas, weight, expected", [
    (10, 10, (1, 9)),   # docs/features/canary.md
    (10, 41, (4, 6)),   # "41% of 10 is closer to 4/10 than 5/10"
    (10, 15, (2, 9)),   # a tie rounds the canary up; the surge option 2/11 is nearest
    (10, 100, (10, 0)),
    (10, 0, (0, 10)),
])
def test_approximate_canary_counts(replicas, weight, expected):
    surge, _ = argo_fenceposts("25%", "25%", replicas)
    assert approximate_canary_counts(replicas, weight, surge) == expected


def test_traffic_routed_canary_keeps_the_stable_fully_scaled():
    assert traffic_routed_canary_counts(5, 20) == (1, 5)
    assert traffic_routed_canary_counts(5, 30) == (2, 5)  # 1.5 rounds up
    assert traffic_routed_canary_counts(5, 100) == (5, 5)


def test_the_model_keeps_each_deployments_strategy(load_text):
    c = load_text("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: demo}
    spec:
      replicas: 4
      strategy: {rollingUpdate: {maxSurge: 1}}
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: c}]}
    ---
    apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: db, namespace: demo}
    spec:
      serviceName: db
      selector: {matchLabels: {app: db}}
      template:
        metadata: {labels: {app: db}}
        spec: {containers: [{name: c}]}
    """)
    kinds = {w.name: w.strategy for w in c.workloads if w.namespace == "demo"}
    assert kinds == {"web": DeploymentStrategy("RollingUpdate", 1, "25%"), "db": None}


def test_a_bad_strategy_fails_loading_with_its_field(load_error):
    err = load_error("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: demo}
    spec:
      strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: c}]}
    """)
    assert "Deployment demo/web: spec.strategy.rollingUpdate: may not be specified" in err
