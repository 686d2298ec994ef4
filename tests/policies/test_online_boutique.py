"""Online Boutique with its NetworkPolicies, checked against what the demo documents.

GoogleCloudPlatform/microservices-demo kustomize/components/network-policies/README.md: a
`deny-all` policy (podSelector {}, Ingress and Egress) plus "fine granular NetworkPolicies
(one per Deployment)", and "Egress is wide open in these NetworkPolicies". Each per-service
policy admits only that service's callers on its container port; frontend admits everyone
(`ingress: [{}]`); loadgenerator's policy is Egress only, so deny-all leaves it unreachable.
Callers and ports below are transcribed from network-policy-<service>.yaml.

The release manifests ship no cluster DNS, so netsim adds kubeadm's CoreDNS addon
(kube-system/kube-dns, two kube-system/coredns pods), as a real cluster has. The call-graph
tables cover the demo's namespace (default); DNS is checked on its own: deny-all denies egress
too, but every app's own policy has `egress: [{}]`, so each app pod still reaches CoreDNS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cluster import Cluster, load
from netsim.model import Pod
from netsim.reach import explain, matrix
from netsim.reach_dns import dns_reach
from policies.engine import PolicySet, evaluate

BOUTIQUE = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "online-boutique"

# service: (container port its policy opens, the callers allowed on it)
SERVICES: dict[str, tuple[int | None, frozenset[str]]] = {
    "adservice": (9555, frozenset({"frontend"})),
    "cartservice": (7070, frozenset({"frontend", "checkoutservice"})),
    "checkoutservice": (5050, frozenset({"frontend"})),
    "currencyservice": (7000, frozenset({"frontend", "checkoutservice"})),
    "emailservice": (8080, frozenset({"checkoutservice"})),
    "paymentservice": (50051, frozenset({"checkoutservice"})),
    "productcatalogservice": (3550, frozenset({"frontend", "checkoutservice",
                                               "recommendationservice"})),
    "recommendationservice": (8080, frozenset({"frontend"})),
    "redis-cart": (6379, frozenset({"cartservice"})),
    "shippingservice": (50051, frozenset({"frontend", "checkoutservice"})),
    "loadgenerator": (None, frozenset()),
    "frontend": (None, frozenset()),  # ingress: [{}] -- everyone, every port
}
PORTS = sorted({p for p, _ in SERVICES.values() if p})
# The policies and Deployments name no namespace: all of the demo lands in `default`.
DEMO_NAMESPACES = {"default"}


def expected(src: str, dst: str, port: int) -> bool:
    if src == dst or dst == "frontend":
        return True
    opened, callers = SERVICES[dst]
    return port == opened and src in callers


@pytest.fixture(scope="module")
def boutique() -> Cluster:
    if not BOUTIQUE.is_dir():
        pytest.skip(f"{BOUTIQUE} is not present (shared/ sits beside the checkout in CI)")
    return load([str(BOUTIQUE)])


def app_pod(cluster: Cluster, app: str) -> Pod:
    (found,) = [p for p in cluster.pods if p.labels.get("app") == app]
    return found


def app_pods(cluster: Cluster) -> tuple[Pod, ...]:
    """The demo's pods (one per app), without the CoreDNS addon's pods in kube-system."""
    pods = tuple(p for p in cluster.pods if p.namespace in DEMO_NAMESPACES)
    assert sorted(p.labels["app"] for p in pods) == sorted(SERVICES)
    return pods


def coredns_pods(cluster: Cluster) -> list[Pod]:
    return [p for p in cluster.pods if p.namespace == "kube-system"
            and p.labels.get("k8s-app") == "kube-dns"]


@pytest.mark.parametrize(("src", "dst", "port", "allowed", "rule"), [
    ("frontend", "cartservice", 7070, True, "default/cartservice ingress[0]"),
    ("checkoutservice", "cartservice", 7070, True, "default/cartservice ingress[0]"),
    ("loadgenerator", "frontend", 8080, True, "default/frontend ingress[0]"),
    ("loadgenerator", "cartservice", 7070, False, None),
    ("checkoutservice", "paymentservice", 50051, True, "default/paymentservice ingress[0]"),
    ("frontend", "paymentservice", 50051, False, None),
    ("checkoutservice", "paymentservice", 8080, False, None),
    ("cartservice", "redis-cart", 6379, True, "default/redis-cart ingress[0]"),
    ("frontend", "redis-cart", 6379, False, None),
    ("recommendationservice", "productcatalogservice", 3550, True,
     "default/productcatalogservice ingress[0]"),
    ("frontend", "emailservice", 8080, False, None),
    ("checkoutservice", "emailservice", 8080, True, "default/emailservice ingress[0]"),
    ("frontend", "loadgenerator", 8080, False, None),
])
def test_documented_flows(boutique: Cluster, src: str, dst: str, port: int, allowed: bool,
                          rule: str | None) -> None:
    ps = PolicySet.from_cluster(boutique)
    v = evaluate(ps, ps.pod_peer(app_pod(boutique, src)), ps.pod_peer(app_pod(boutique, dst)),
                 port, "TCP")
    assert v.allowed is allowed
    # "Egress is wide open": every pod's own policy has `egress: [{}]`.
    assert v.egress.allowed and v.egress.decided_by == "networkpolicy"
    assert v.ingress.decided_by == "networkpolicy"
    assert "NetworkPolicy default/deny-all" in v.ingress.isolating
    rules = {f"{m.policy.removeprefix('NetworkPolicy ')} {m.rule}" for m in v.ingress.matches}
    assert rules == ({rule} if rule else set())


@pytest.mark.parametrize(("port", "allowed"), [(8080, True), (7070, False)])
def test_outside_reaches_frontend_only(boutique: Cluster, port: int, allowed: bool) -> None:
    ps = PolicySet.from_cluster(boutique)
    outside = ps.ip_peer("203.0.113.7")
    dst = "frontend" if allowed else "cartservice"
    v = evaluate(ps, outside, ps.pod_peer(app_pod(boutique, dst)), port, "TCP")
    assert (v.allowed, v.egress.decided_by, v.ingress.decided_by) == (
        allowed, "not-a-pod", "networkpolicy")


@pytest.mark.parametrize("port", PORTS)
def test_matrix_follows_the_call_graph(boutique: Cluster, port: int) -> None:
    m = matrix(boutique, port, "TCP", namespaces=DEMO_NAMESPACES)
    apps = [p.labels["app"] for p in m.pods]
    assert sorted(apps) == sorted(SERVICES)
    got = m.dense()
    wrong = [f"{s} -> {d}:{port}" for i, s in enumerate(apps) for j, d in enumerate(apps)
             if bool(got[i, j]) != expected(s, d, port)]
    assert not wrong


def test_paymentservice_only_from_checkout_on_50051(boutique: Cluster) -> None:
    callers = {}
    for port in [*PORTS, 80, 443]:
        m = matrix(boutique, port, "TCP", namespaces=DEMO_NAMESPACES)
        j = [p.labels["app"] for p in m.pods].index("paymentservice")
        callers[port] = {p.labels["app"] for i, p in enumerate(m.pods)
                         if m.dense()[i, j] and p.labels["app"] != "paymentservice"}
    assert callers == {port: {"checkoutservice"} if port == 50051 else set()
                       for port in callers}


def test_frontend_open_on_every_port_and_protocol(boutique: Cluster) -> None:
    # frontend's `ingress: [{}]` has no ports: any port, any protocol.
    m = matrix(boutique, 9999, "UDP", namespaces=DEMO_NAMESPACES)
    j = [p.labels["app"] for p in m.pods].index("frontend")
    assert m.dense()[:, j].all()
    others = [i for i, p in enumerate(m.pods) if p.labels["app"] != "frontend"]
    assert sum(m.dense()[i, k] for i in others for k in others) == len(others)  # self only


# ------------------------------------------------------------------ DNS


def test_the_demo_gets_kubeadms_coredns(boutique: Cluster) -> None:
    # kubernetes-manifests.yaml holds no kube-dns Service: netsim adds kubeadm's addon.
    svc = boutique.service("kube-system", "kube-dns")
    assert svc is not None and svc.cluster_ips == ("10.96.0.10",)  # 10th of 10.96.0.0/12
    assert {(p.port, p.protocol) for p in svc.ports} >= {(53, "UDP"), (53, "TCP")}
    assert len(coredns_pods(boutique)) == 2
    assert any("no cluster DNS" in w for w in boutique.warnings)


def test_every_app_resolves_dns_despite_deny_all(boutique: Cluster) -> None:
    # deny-all (podSelector {}, Ingress and Egress) egress-isolates every pod in default; each
    # app's own policy (Egress among its policyTypes) adds `egress: [{}]`, which allows every
    # destination and port. No policy selects kube-system, so CoreDNS accepts the query. Hence
    # every app pod reaches CoreDNS on UDP and TCP 53.
    _, rows = dns_reach(boutique, app_pods(boutique))
    assert len(rows) == len(SERVICES)
    assert all((r.udp, r.tcp, r.reason) == (True, True, "allowed") for r in rows), rows
    coredns = coredns_pods(boutique)
    for pod in app_pods(boutique):
        app = pod.labels["app"]
        for target in coredns:
            for protocol in ("UDP", "TCP"):
                v = explain(boutique, pod, target, 53, protocol)
                assert v.allowed, (app, target.key, protocol)
                assert v.egress.decided_by == "networkpolicy"
                assert set(v.egress.isolating) == {"NetworkPolicy default/deny-all",
                                                   f"NetworkPolicy default/{app}"}
                assert [(m.policy, m.rule) for m in v.egress.matches] == [
                    (f"NetworkPolicy default/{app}", "egress[0]")]
                assert v.ingress.decided_by == "default"


def test_deny_all_alone_would_cut_dns() -> None:
    # The control: without the per-app policies, deny-all's Egress type with no egress rules
    # leaves every app pod unable to reach CoreDNS over either protocol.
    if not BOUTIQUE.is_dir():
        pytest.skip(f"{BOUTIQUE} is not present (shared/ sits beside the checkout in CI)")
    c = load([str(BOUTIQUE / "kubernetes-manifests.yaml"),
              str(BOUTIQUE / "network-policy-deny-all.yaml")])
    _, rows = dns_reach(c, app_pods(c))
    assert len(rows) == len(SERVICES)
    for r in rows:
        assert (r.udp, r.tcp) == (False, False), r
        assert r.reason.startswith("egress ") and "default/deny-all" in r.reason, r
