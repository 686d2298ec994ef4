"""The class-compressed reachability matrix (netsim.reach.matrix) against pairwise evaluate.

The matrix groups pods that policy cannot tell apart and evaluates classes; its only
specification is that it says exactly what policies.engine.evaluate says for every pod pair
(module docstrings of policies/matrix.py and netsim/reach.py), plus the documented JSON shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.cluster import Cluster, load
from netsim.reach import explain, matrix
from policies.engine import PolicySet, evaluate
from tests.helpers import config, load_yaml, node, pod
from tests.policies import test_admin, test_networkpolicy
from tests.policies.fixtures import N2_IP, base_yaml, cluster_with, doc, netpol

SHARED = Path(__file__).resolve().parents[3] / "shared"
BOUTIQUE = SHARED / "realworld" / "online-boutique"
PROBES = [(80, "TCP"), (81, "UDP"), (8080, "TCP")]
# The JSON-shape and ordering tests list every pod by hand: they are about the matrix's
# mechanics, so they leave out the CoreDNS addon netsim adds to manifests without cluster DNS.
NO_DNS_ADDON = {"dns_addon": False}


def pairwise(cluster: Cluster, keys: list[str], port: int, protocol: str,
             ps: PolicySet | None = None) -> np.ndarray:
    """allowed[i, j] from one evaluate call per ordered pod pair (the reference)."""
    ps = ps or PolicySet.from_cluster(cluster)
    pods = [cluster.pod(*k.split("/", 1)) for k in keys]
    return np.array([[evaluate(ps, ps.pod_peer(s), ps.pod_peer(d), port, protocol).allowed
                      for d in pods] for s in pods], dtype=bool)


def assert_matches_pairwise(cluster: Cluster, port: int, protocol: str) -> None:
    ps = PolicySet.from_cluster(cluster)
    m = matrix(cluster, port, protocol, ps=ps)
    got, want = m.dense(), pairwise(cluster, m.keys, port, protocol, ps)
    wrong = [f"{m.keys[i]} -> {m.keys[j]}: matrix {bool(got[i, j])}, evaluate {bool(want[i, j])}"
             for i, j in zip(*np.nonzero(got != want), strict=True)]
    assert not wrong, f"{port}/{protocol}:\n" + "\n".join(wrong[:20])
    for i in range(len(m.keys)):  # row() is the per-source view of the same matrix
        assert (m.row(i) == got[i]).all(), m.keys[i]


# ------------------------------------------------------------------ (a) the fixture clusters

def _policy_sets() -> list:
    seen: dict[tuple[str, str | None], str] = {}
    for module in (test_networkpolicy, test_admin):
        for p in module.ROWS:
            r = p.values[0]
            for mode in ("node", "pod"):
                seen.setdefault((r.policies, mode), p.id)
    params = []
    for (policies, mode), first in seen.items():
        params.append(pytest.param(policies, mode, id=f"{first}-{mode}"))
    return params


@pytest.mark.parametrize(("policies", "mode"), _policy_sets())
def test_fixture_matrix_equals_pairwise(policies: str, mode: str) -> None:
    cluster = cluster_with(policies, mode)
    for port, protocol in PROBES:
        assert_matches_pairwise(cluster, port, protocol)


def test_hostnetwork_pod_mode_never_admin_peer() -> None:
    # NPAPI: namespaces/pods peers never include host-networked pods, in any hostNetwork mode.
    cluster = cluster_with(test_admin.anp("deny-x", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}"]), "pod")
    m = matrix(cluster, 80, "TCP")
    k = m.keys
    assert m.dense()[k.index("x/b"), k.index("x/c")] == 0  # a normal pod is a peer
    assert m.dense()[k.index("x/host"), k.index("x/c")] == 1


def test_hostnetwork_pod_mode_never_admin_subject_even_with_twin_labels() -> None:
    twin = pod("twin", "x", "n2", {"pod": "a", "tier": "web"}, N2_IP,
               spec="  hostNetwork: true\n")
    cluster = cluster_with(twin + test_admin.DENY_Y, "pod")
    m = matrix(cluster, 80, "TCP")
    k = m.keys
    assert m.dense()[k.index("y/a"), k.index("x/a")] == 0  # x/a is a subject: denied
    assert m.dense()[k.index("y/a"), k.index("x/twin")] == 1  # x/twin never is


# ------------------------------------------------------------------ (a) Online Boutique


@pytest.fixture(scope="module")
def boutique() -> Cluster:
    if not BOUTIQUE.is_dir():
        pytest.skip(f"{BOUTIQUE} is not present (shared/ sits beside the checkout in CI)")
    return load([str(BOUTIQUE)])


@pytest.mark.parametrize(("port", "protocol"), [
    (8080, "TCP"), (7070, "TCP"), (50051, "TCP"), (5050, "TCP"), (6379, "TCP"), (9555, "TCP"),
    (3550, "TCP"), (7000, "TCP"), (8080, "UDP")])
def test_boutique_matrix_equals_pairwise(boutique: Cluster, port: int, protocol: str) -> None:
    assert_matches_pairwise(boutique, port, protocol)


# ------------------------------------------------------------------ (b) random clusters

NAMESPACES = ["ns0", "ns1", "ns2"]
LABEL_VALUES = {"app": ["web", "db"], "tier": ["f", "b"], "team": ["a", "b"], "env": ["p", "d"]}
NODE_IPS = {"n1": "172.18.0.2", "n2": "172.18.0.3"}
CIDRS = ["10.244.0.0/16", "10.244.0.0/24", "10.244.1.0/25", "172.18.0.2/32", "0.0.0.0/0",
         "10.244.0.8/29"]
EXCEPTS = {"10.244.0.0/16": ["10.244.1.0/24"], "10.244.0.0/24": ["10.244.0.0/28"],
           "0.0.0.0/0": ["10.244.1.0/24", "172.18.0.0/16"]}
NP_PORTS = ["{port: 80}", "{protocol: UDP, port: 53}", "{port: http}", "{protocol: UDP, port: dns}",
            "{port: 80, endPort: 81}", "{protocol: SCTP}", "{}", "{protocol: TCP, port: dns}",
            "{port: 8080}"]
ADMIN_PORTS = ["{portNumber: {port: 80}}", "{portNumber: {protocol: UDP, port: 53}}",
               "{namedPort: http}", "{portRange: {start: 80, end: 8080}}"]
PROBE_CHOICES = [(80, "TCP"), (81, "TCP"), (8080, "TCP"), (53, "UDP"), (80, "SCTP")]


def labels(keys: list[str]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional={k: st.sampled_from(LABEL_VALUES[k]) for k in keys})


def flow(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


@st.composite
def selectors(draw, keys: list[str]) -> str:
    kind = draw(st.sampled_from(["empty", "labels", "expr"]))
    if kind == "empty":
        return "{}"
    key = draw(st.sampled_from(keys))
    if kind == "labels":
        return f"{{matchLabels: {{{key}: {draw(st.sampled_from(LABEL_VALUES[key]))}}}}}"
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    values = f", values: [{draw(st.sampled_from(LABEL_VALUES[key]))}]" if op in ("In", "NotIn") \
        else ""
    return f"{{matchExpressions: [{{key: {key}, operator: {op}{values}}}]}}"


POD_KEYS, NS_KEYS = ["app", "tier"], ["team", "env"]


@st.composite
def np_peers(draw) -> str:
    kind = draw(st.sampled_from(["pod", "ns", "both", "ip"]))
    if kind == "pod":
        return f"{{podSelector: {draw(selectors(POD_KEYS))}}}"
    if kind == "ns":
        return f"{{namespaceSelector: {draw(selectors(NS_KEYS))}}}"
    if kind == "both":
        return (f"{{namespaceSelector: {draw(selectors(NS_KEYS))}, "
                f"podSelector: {draw(selectors(POD_KEYS))}}}")
    cidr = draw(st.sampled_from(CIDRS))
    excepts = EXCEPTS.get(cidr) if draw(st.booleans()) else None
    return f"{{ipBlock: {{cidr: {cidr}" + (f", except: [{excepts[0]}]" if excepts else "") + "}}"


@st.composite
def np_rules(draw, peers_key: str) -> str:
    parts = {}
    if draw(st.booleans()):
        parts[peers_key] = "[" + ", ".join(draw(st.lists(np_peers(), max_size=2))) + "]"
    if draw(st.booleans()):
        parts["ports"] = "[" + ", ".join(draw(st.lists(st.sampled_from(NP_PORTS),
                                                       max_size=2))) + "]"
    return flow(parts)


@st.composite
def network_policies(draw, i: int) -> str:
    lines = [f"podSelector: {draw(selectors(POD_KEYS))}"]
    types = draw(st.sampled_from([None, "[Ingress]", "[Egress]", "[Ingress, Egress]"]))
    if types:
        lines.append(f"policyTypes: {types}")
    for direction, key in (("ingress", "from"), ("egress", "to")):
        if draw(st.booleans()):
            lines.append(f"{direction}: [" + ", ".join(
                draw(st.lists(np_rules(key), max_size=2))) + "]")
    return netpol(draw(st.sampled_from(NAMESPACES)), f"np{i}", "\n".join(lines))


@st.composite
def admin_rules(draw, peers_key: str, actions: list[str], networks: bool) -> str:
    kinds = ["namespaces", "pods"] + (["networks"] if networks else [])
    peers = []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=2)):
        if kind == "namespaces":
            peers.append(f"{{namespaces: {draw(selectors(NS_KEYS))}}}")
        elif kind == "pods":
            peers.append(f"{{pods: {{namespaceSelector: {draw(selectors(NS_KEYS))}, "
                         f"podSelector: {draw(selectors(POD_KEYS))}}}}}")
        else:
            peers.append(f"{{networks: [{draw(st.sampled_from(CIDRS))}]}}")
    rule = {"action": draw(st.sampled_from(actions)), peers_key: "[" + ", ".join(peers) + "]"}
    if draw(st.booleans()):
        rule["ports"] = "[" + draw(st.sampled_from(ADMIN_PORTS)) + "]"
    return flow(rule)


@st.composite
def admin_spec(draw, actions: list[str]) -> str:
    if draw(st.booleans()):
        subject = f"{{namespaces: {draw(selectors(NS_KEYS))}}}"
    else:
        subject = (f"{{pods: {{namespaceSelector: {draw(selectors(NS_KEYS))}, "
                   f"podSelector: {draw(selectors(POD_KEYS))}}}}}")
    text = f"subject: {subject}\n"
    ingress = draw(st.lists(admin_rules("from", actions, False), max_size=2))
    egress = draw(st.lists(admin_rules("to", actions, True), max_size=2))
    if ingress:
        text += "ingress: [" + ", ".join(ingress) + "]\n"
    if egress:
        text += "egress: [" + ", ".join(egress) + "]\n"
    return text


@st.composite
def random_clusters(draw) -> tuple[str, int, str]:
    mode = draw(st.sampled_from(["node", "pod"]))
    admin = draw(st.booleans())
    text = node("n1", NODE_IPS["n1"]) + node("n2", NODE_IPS["n2"])
    text += config(f"networkPolicy:\n  hostNetwork: {mode}\n")
    namespaces = NAMESPACES[:draw(st.integers(2, 3))]
    for ns in namespaces:
        text += (f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
                 f"  labels: {flow(draw(labels(NS_KEYS)))}\n---\n")
    n_pods = draw(st.integers(3, 8))
    hosts = draw(st.lists(st.integers(1, 60), min_size=n_pods, max_size=n_pods, unique=True))
    for i, host in enumerate(hosts):
        where = draw(st.sampled_from(["n1", "n2"]))
        host_network = draw(st.integers(0, 5)) == 0
        ip = NODE_IPS[where] if host_network else f"10.244.{host // 30}.{host % 30 + 1}"
        ports = []
        http = draw(st.sampled_from([None, 80, 8080]))
        if http:
            ports.append(f"    - {{name: http, containerPort: {http}}}\n")
        if draw(st.booleans()):
            ports.append("    - {name: dns, containerPort: 53, protocol: UDP}\n")
        if draw(st.booleans()):
            ports.append("    - {containerPort: 81}\n")
        if draw(st.booleans()):
            ports.append("    - {name: sctp, containerPort: 80, protocol: SCTP}\n")
        text += pod(f"p{i}", draw(st.sampled_from(namespaces)), where,
                    draw(labels(POD_KEYS)) or {"other": "x"}, ip,
                    spec="  hostNetwork: true\n" if host_network else "", ports="".join(ports))
    for i in range(draw(st.integers(1, 5))):
        text += draw(network_policies(i))
    if admin:
        text += doc("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", "anp",
                    f"priority: {draw(st.integers(0, 1000))}\n"
                    + draw(admin_spec(["Allow", "Deny", "Pass"])))
        if draw(st.booleans()):
            text += doc("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy",
                        "default", draw(admin_spec(["Allow", "Deny"])))
    port, protocol = draw(st.sampled_from(PROBE_CHOICES))
    return text, port, protocol


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_clusters())
def test_random_cluster_matrix_equals_pairwise(case: tuple[str, int, str]) -> None:
    text, port, protocol = case
    assert_matches_pairwise(load_yaml(text), port, protocol)


# ------------------------------------------------------------------ (c) JSON shape


def test_json_shape() -> None:
    cluster = load_yaml(base_yaml() + test_networkpolicy.DENY_BOTH_X, overrides=NO_DNS_ADDON)
    m = matrix(cluster, 80, "TCP")
    out = json.loads(json.dumps(m.as_json()))  # plain JSON types only
    assert set(out) == {"port", "protocol", "pods", "allowed"}
    assert (out["port"], out["protocol"]) == (80, "TCP")
    expected_pods = ["x/a", "x/alt", "x/b", "x/c", "x/host", "y/a", "y/b", "y/c",
                     "z/a", "z/b", "z/c"]
    assert out["pods"] == expected_pods == m.keys
    n = len(expected_pods)
    assert len(out["allowed"]) == n and all(len(r) == n for r in out["allowed"])
    assert all(v in (0, 1) and type(v) is int for r in out["allowed"] for v in r)
    assert all(out["allowed"][i][i] == 1 for i in range(n))  # self always allowed
    # x isolated both ways: x/a reaches nothing but itself and its node's hostNetwork pod
    # (x/host is node traffic in the default mode); y/a reaches x/host (not a pod) only in x.
    row = dict(zip(expected_pods, out["allowed"][0], strict=True))
    assert {k for k, v in row.items() if v} == {"x/a", "x/host"}
    row = dict(zip(expected_pods, out["allowed"][5], strict=True))
    assert {k for k, v in row.items() if v} == {"x/host", "y/a", "y/b", "y/c", "z/a", "z/b",
                                                 "z/c"}


def test_pods_sorted_by_namespace_then_name() -> None:
    # Namespace "a" is a prefix of "a-b": (namespace, name) order puts a/z first, although the
    # plain string "a-b/a" sorts before "a/z" ('-' < '/').
    text = node("n1", "172.18.0.2")
    for ns, name in [("a-b", "a"), ("a", "z"), ("a", "b"), ("b", "a")]:
        text += pod(name, ns, "n1", ip=None)
    m = matrix(load_yaml(text, overrides=NO_DNS_ADDON), 80)
    assert m.keys == ["a/b", "a/z", "a-b/a", "b/a"]
    assert m.as_json()["pods"] == m.keys


def test_namespace_filter_and_explain() -> None:
    cluster = cluster_with(test_networkpolicy.DENY_IN_X)
    m = matrix(cluster, 80, "TCP", namespaces={"y"})
    assert m.keys == ["y/a", "y/b", "y/c"]
    assert m.dense().all()
    v = explain(cluster, cluster.pod("y", "a"), cluster.pod("x", "b"), 80)
    assert (v.allowed, v.ingress.decided_by) == (False, "networkpolicy")
