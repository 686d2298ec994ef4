"""Rollouts step by step: endpoints and traffic shares, against hand-computed sequences.

Expectations come from the Kubernetes Deployment documentation (the nginx example's events, the
25% fenceposts), the comments of kubernetes deployment_util.go ResolveFenceposts (the order of
scale-ups and scale-downs for 1 and 2 replicas), the Kubernetes canary pattern (3 stable + 1
canary = 25%), Argo Rollouts (setWeight arithmetic, previous weight until the canary is
available) and Istio (weights independent of replica counts; 503 NC / UH).
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.errors import InputError
from netsim.rollout import RolloutOptions, simulate
from netsim.rollout_deploy import DeploymentStrategy

DATA = Path(__file__).parent / "data" / "rollout"


def cluster(*names: str, extra: str = ""):
    paths = [str(DATA / n) for n in names]
    if extra:
        return load([*paths, "-"], stdin=io.StringIO(textwrap.dedent(extra)))
    return load(paths)


def shares(step, balancer: str = "kube-proxy") -> dict[str, float]:
    traffic = next(t for t in step.traffic if t.balancer == balancer)
    return {s.version: round(s.fraction, 4) for s in traffic.shares if s.fraction}


def by_role(rollout, step, balancer: str = "kube-proxy") -> dict[str, float]:
    roles = {v.name: v.role for v in rollout.versions}
    out: dict[str, float] = {}
    for version, fraction in shares(step, balancer).items():
        out[roles.get(version, version)] = round(out.get(roles.get(version, version), 0)
                                                  + fraction, 4)
    return out


def scaled(rollout) -> list[list[tuple[str, str, int]]]:
    """Per step, each scale event as (up/down, role, new replica count)."""
    roles = {v.name: v.role for v in rollout.versions}
    out = []
    for step in rollout.steps:
        found = []
        for event in step.events:
            m = re.match(r"Scaled (up|down) (?:replica set|Deployment) (\S+) from \d+ to (\d+)",
                         event)
            if m:
                found.append((m.group(1), roles[m.group(2)], int(m.group(3))))
        out.append(found)
    return out


def live_pods(step) -> int:
    return sum(1 for e in step.endpoints if not e.terminating)


def available(step) -> int:
    return sum(1 for e in step.endpoints if e.ready and not e.terminating)


# ---------------------------------------------------------------- rolling update


def test_nginx_example_scales_as_the_documented_events():
    """Deployment docs: up new to 1; down old to 2 and up new to 2 (same second); down old to 1
    and up new to 3 (same second); down old to 0. At least 3 available, at most 4 pods."""
    r = simulate(cluster("nginx.yaml"), "default", "nginx",
                 RolloutOptions(to_image="nginx:1.16.1"))
    assert r.strategy == "rolling" and r.complete
    assert [s for s in scaled(r) if s] == [
        [("up", "new", 1)],
        [("down", "old", 2), ("up", "new", 2)],
        [("down", "old", 1), ("up", "new", 3)],
        [("down", "old", 0)],
    ]
    for step in r.steps:
        assert live_pods(step) <= 4 and available(step) >= 3
    assert by_role(r, r.steps[0]) == {"old": 1.0}
    assert by_role(r, r.steps[2]) == {"old": 0.6667, "new": 0.3333}
    assert by_role(r, r.steps[3]) == {"old": 0.3333, "new": 0.6667}
    assert by_role(r, r.steps[-1]) == {"new": 1.0}
    assert r.parameters["surge"] == 1 and r.parameters["unavailable"] == 0


def test_ten_replicas_at_most_13_pods_at_least_8_available():
    """25% of 10: surge 3 (rounded up), unavailable 2 (rounded down). Hand-computed:
    step 1: new 0->3, old 10->8, new 3->5; step 2 (5 new Ready): old 8->3, new 5->10;
    step 3 (10 new Ready): old 3->0."""
    r = simulate(cluster("web10.yaml"), "demo", "web", RolloutOptions(to_image="example/web:2"))
    assert r.parameters["maxPods"] == 13 and r.parameters["minAvailable"] == 8
    assert [s for s in scaled(r) if s] == [
        [("up", "new", 3), ("down", "old", 8), ("up", "new", 5)],
        [("down", "old", 3), ("up", "new", 10)],
        [("down", "old", 0)],
    ]
    for step in r.steps:
        assert live_pods(step) <= 13 and available(step) >= 8
    assert by_role(r, r.steps[1]) == {"old": 1.0}
    assert by_role(r, r.steps[2]) == {"old": 0.375, "new": 0.625}  # 3 and 5 ready endpoints
    assert sum(1 for e in r.steps[2].endpoints if e.terminating) == 5
    assert by_role(r, r.steps[3]) == {"new": 1.0}
    assert r.steps[-1].title == "rollout complete"


def _two(replicas: int) -> str:
    return f"""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: app, namespace: demo}}
    spec:
      replicas: {replicas}
      selector: {{matchLabels: {{app: app}}}}
      template:
        metadata: {{labels: {{app: app}}}}
        spec: {{containers: [{{name: app, image: app:1, ports: [{{containerPort: 80}}]}}]}}
    ---
    apiVersion: v1
    kind: Service
    metadata: {{name: app, namespace: demo}}
    spec: {{selector: {{app: app}}, ports: [{{port: 80}}]}}
    """


@pytest.mark.parametrize("replicas, surge, unavailable, order", [
    # kubernetes deployment_util.go, the comment above ResolveFenceposts
    (2, "0%", "1%", ["old-", "new+", "old-", "new+"]),
    (1, "0%", "1%", ["old-", "new+"]),
    (2, "1%", "25%", ["new+", "old-", "new+", "old-"]),
    (1, "1%", "25%", ["new+", "old-"]),
    (2, "1%", "0%", ["new+", "old-", "new+", "old-"]),
    (1, "1%", "0%", ["new+", "old-"]),
])
def test_fencepost_examples_scale_in_the_documented_order(replicas, surge, unavailable,
                                                         order):
    c = load(["-"], stdin=io.StringIO(textwrap.dedent(_two(replicas))))
    strategy = DeploymentStrategy("RollingUpdate", surge, unavailable)
    r = simulate(c, "demo", "app", RolloutOptions(to_image="app:2",
                                                  strategies={"demo/app": strategy}))
    got = [f"{role}{'+' if d == 'up' else '-'}" for step in scaled(r) for d, role, _ in step]
    assert got == order
    assert r.complete


def test_ready_delay_holds_each_state_for_more_steps():
    fast = simulate(cluster("nginx.yaml"), "default", "nginx", RolloutOptions(to_image="x:2"))
    slow = simulate(cluster("nginx.yaml"), "default", "nginx",
                    RolloutOptions(to_image="x:2", ready_delay=1))
    assert [s for s in scaled(slow) if s] == [s for s in scaled(fast) if s]
    assert len(slow.steps) > len(fast.steps)
    wait = slow.steps[2]
    assert wait.events == ("waiting: 1 pod of " + slow.versions[1].name + " not Ready yet",)
    assert shares(wait) == shares(slow.steps[1])


def test_recreate_leaves_the_service_without_endpoints_in_between():
    r = simulate(cluster("web10.yaml"), "demo", "web",
                 RolloutOptions(strategies={"demo/web": DeploymentStrategy("Recreate", 0, 0)}))
    assert r.strategy == "recreate" and r.complete
    assert [s for s in scaled(r) if s] == [[("down", "old", 0)], [("up", "new", 10)]]
    down = r.steps[1]  # every old pod terminating but still serving: kube-proxy falls back
    kube_proxy = down.traffic[0]
    assert kube_proxy.fallback and by_role(r, down) == {"old": 1.0}
    gap = r.steps[2]
    assert gap.traffic[0].failed == 1.0 and "no endpoints" in gap.traffic[0].reason
    assert by_role(r, r.steps[3]) == {"new": 1.0}


def test_rollout_restart_without_a_change_and_a_noop_update_is_refused():
    r = simulate(cluster("nginx.yaml"), "default", "nginx")
    assert "restart" in r.versions[1].detail
    with pytest.raises(InputError, match="equals the current one"):
        simulate(cluster("nginx.yaml"), "default", "nginx",
                 RolloutOptions(to_image="nginx:1.14.2"))


# ---------------------------------------------------------------- blue-green


def test_blue_green_flips_from_100_to_0_at_the_switch():
    r = simulate(cluster("bluegreen.yaml"), "demo", "shop",
                 RolloutOptions(strategy="blue-green"))
    roles = [by_role(r, s) for s in r.steps]
    assert roles[0] == {"blue": 1.0}
    switch = next(i for i, s in enumerate(r.steps) if s.title.startswith("switch"))
    assert all(x == {"blue": 1.0} for x in roles[:switch])
    assert all(x == {"green": 1.0} for x in roles[switch:])
    assert dict(r.steps[switch].selector) == {"app": "shop", "version": "green"}
    assert r.complete and r.steps[-1].title == "complete"


def test_blue_green_creates_green_and_previews_it_unselected():
    r = simulate(cluster("bluegreen.yaml"), "demo", "shop",
                 RolloutOptions(strategy="blue-green", deployment="shop-blue",
                                new_version=("version", "purple")))
    assert [v.name for v in r.versions if v.role == "green"] == ["shop-purple"]
    preview = r.steps[1]
    green = [e for e in preview.endpoints if e.version == "shop-purple"]
    assert len(green) == 3 and not any(e.selected or e.ready for e in green)
    assert by_role(r, preview) == {"blue": 1.0}
    assert by_role(r, r.steps[2]) == {"green": 1.0}


def test_blue_green_needs_a_green_version():
    with pytest.raises(InputError, match="--new-version"):
        simulate(cluster("nginx.yaml"), "default", "nginx",
                 RolloutOptions(strategy="blue-green"))


# ---------------------------------------------------------------- canary by replicas


def test_canary_by_replica_ratio_follows_ready_endpoints():
    """Kubernetes' canary pattern: 3 stable + 1 canary behind one Service is 25%."""
    r = simulate(cluster("guestbook-canary.yaml"), "guestbook", "frontend",
                 RolloutOptions(weights=(50, 100)))
    assert r.strategy == "canary" and r.canary_by == "replicas"
    assert by_role(r, r.steps[0]) == {"stable": 0.75, "canary": 0.25}
    reached = {s.title: s for s in r.steps if s.title.endswith("reached")}
    assert by_role(r, reached["setWeight 50 reached"]) == {"stable": 0.5, "canary": 0.5}
    assert by_role(r, reached["setWeight 100 reached"]) == {"canary": 1.0}
    assert scaled(r)[1] == [("down", "stable", 2), ("up", "canary", 2)]
    assert r.complete


def test_canary_by_replicas_created_from_the_stable():
    """Argo's basic canary on 10 replicas: setWeight 10 is 1 canary + 9 stable."""
    r = simulate(cluster("web10.yaml"), "demo", "web",
                 RolloutOptions(strategy="canary", to_image="example/web:2", weights=(10,)))
    final = r.steps[-1]
    counts = {c.version: (c.desired, c.ready) for c in final.replicas}
    assert counts == {"web": (9, 9), "web-canary": (1, 1)}
    assert by_role(r, final) == {"stable": 0.9, "canary": 0.1}


# ---------------------------------------------------------------- canary by mesh weight


def test_mesh_weights_are_independent_of_replica_counts():
    r = simulate(cluster("bookinfo-reviews.yaml"), "default", "reviews",
                 RolloutOptions(weights=(25, 100)))
    assert r.canary_by == "mesh" and r.steps[0].traffic[0].balancer == "mesh"
    first = r.steps[0]
    assert shares(first, "mesh") == {"reviews-v1": 0.9, "reviews-v2": 0.1}
    # clients without a sidecar: 5 ready endpoints (3 v1, 1 v2, 1 v3), one fifth each
    assert shares(first) == {"reviews-v1": 0.6, "reviews-v2": 0.2, "reviews-v3": 0.2}
    v1 = next(e for e in first.endpoints if e.version == "reviews-v1")
    assert round(v1.share["mesh"], 4) == 0.3 and round(v1.share["kube-proxy"], 4) == 0.2
    reached = {s.title: s for s in r.steps if s.title.endswith("reached")}
    assert shares(reached["setWeight 25 reached"], "mesh") == {"reviews-v1": 0.75,
                                                                "reviews-v2": 0.25}
    assert shares(reached["setWeight 100 reached"], "mesh") == {"reviews-v2": 1.0}
    assert all(shares(s) == shares(first) for s in r.steps)  # the replicas never change
    assert r.complete


MESH = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: demo}
spec:
  host: web.demo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v5, labels: {version: v5}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo}
spec:
  hosts: [web]
  http:
  - route:
%s
"""


def _vs(*routes: tuple[str, int]) -> str:
    lines = "".join(f"    - destination: {{host: web, subset: {s}}}\n      weight: {w}\n"
                    for s, w in routes)
    return MESH % lines.rstrip("\n")


@pytest.mark.parametrize("subset, flag", [("v4", "503 NC"), ("v5", "503 UH")])
def test_mesh_failures_for_undefined_and_empty_subsets(subset, flag):
    c = cluster("web10.yaml", extra=_vs(("v1", 80), (subset, 20)))
    r = simulate(c, "demo", "web", RolloutOptions(strategy="rolling", to_image="x:2"))
    mesh = next(t for t in r.steps[0].traffic if t.balancer == "mesh")
    assert round(mesh.failed, 4) == 0.2 and mesh.reason.startswith(flag)


def test_rolling_a_new_version_label_under_a_subset_route_ends_in_503_uh():
    c = cluster("web10.yaml", extra=_vs(("v1", 100)))
    r = simulate(c, "demo", "web", RolloutOptions(new_version=("version", "v2")))
    last = next(t for t in r.steps[-1].traffic if t.balancer == "mesh")
    assert last.failed == 1.0 and last.reason.startswith("503 UH")
    assert by_role(r, r.steps[-1]) == {"new": 1.0}  # kube-proxy clients still reach them


def test_mesh_canary_keeps_the_previous_weight_until_the_canary_is_ready():
    c = cluster("web10.yaml", extra=_vs(("v1", 100)))
    r = simulate(c, "demo", "web", RolloutOptions(strategy="canary", to_image="x:2",
                                                  new_version=("version", "v2"),
                                                  weights=(20, 100)))
    assert any("assumed subset v2" in n for n in r.notes)
    created = r.steps[1]  # ceil(20% of 10) = 2 canary pods, not Ready: weight stays 0
    assert [(c.version, c.desired) for c in created.replicas] == [("web", 10), ("web-v2", 2)]
    assert by_role(r, created, "mesh") == {"stable": 1.0}
    ready = r.steps[2]
    assert ready.title == "setWeight 20 reached"
    assert by_role(r, ready, "mesh") == {"stable": 0.8, "canary": 0.2}
    assert by_role(r, ready) == {"stable": round(10 / 12, 4), "canary": round(2 / 12, 4)}
    assert by_role(r, r.steps[-1], "mesh") == {"canary": 1.0}


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("namespace, name, options, message", [
    ("default", "nope", RolloutOptions(), "no Service default/nope"),
    ("default", "reviews", RolloutOptions(strategy="rolling"), "choose one with --deployment"),
    ("default", "reviews", RolloutOptions(strategy="rolling", deployment="reviews-v1",
                                          to_image="nope=x:1"), "no container 'nope'"),
    ("default", "reviews", RolloutOptions(weights=(10, 120)), "from 0 to 100"),
    ("default", "reviews", RolloutOptions(port="grpc"), "has no port 'grpc'"),
])
def test_bad_input_is_an_input_error(namespace, name, options, message):
    with pytest.raises(InputError, match=message):
        simulate(cluster("bookinfo-reviews.yaml"), namespace, name, options)


def test_a_headless_service_is_balanced_by_its_dns_answers():
    text = (DATA / "nginx.yaml").read_text().replace("    targetPort: 80\n",
                                                     "    targetPort: 80\n  clusterIP: None\n")
    c = load(["-"], stdin=io.StringIO(text))
    r = simulate(c, "default", "nginx", RolloutOptions(to_image="nginx:1.16.1"))
    assert r.steps[2].traffic[0].balancer == "dns"
    assert by_role(r, r.steps[2], "dns") == {"old": 0.6667, "new": 0.3333}
