"""Expectations run on the small trace and mesh clusters: each kind of end, the result over
every path (allow / deny / partial), and the via, deliveredTo and clientIPPreserved checks
passing and failing. Expected outcomes are stated by hand from Kubernetes' rules.

tests/data/trace/cluster.yaml (see tests/test_trace.py): demo/client 10.244.1.10 and
demo/web-1 on n1 (172.18.0.2), demo/web-2 on n2 (172.18.0.3), n3 empty; web 10.96.0.50:80
-> http (8080); web-cluster NodePort 30082; web-lb 198.18.0.10 (eTP Local); empty (no
endpoints); the external client 192.0.2.100. "policed" adds tests/data/expectations/
policies.yaml: the web pods admit only demo/client (8080) and 192.0.2.0/24 (port http).

tests/data/mesh/cluster.yaml (see tests/test_trace_mesh.py): mesh/client -> mesh/server
(Service server:80 -> 8080), STRICT mTLS, AuthorizationPolicy mesh/server-allow-client
allowing GET /ok* from the client's identity only; outside/stranger has no sidecar.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from netsim.cluster import load
from netsim.dataplane import build
from netsim.errors import Source
from netsim.expectations import parse_document
from netsim.expectations_run import run

DATA = Path(__file__).parent / "data"
CLUSTERS = {
    "plain": [DATA / "trace" / "cluster.yaml"],
    "policed": [DATA / "trace" / "cluster.yaml", DATA / "expectations" / "policies.yaml"],
    "mesh": [DATA / "mesh" / "cluster.yaml"],
    "shop": [Path(__file__).resolve().parents[1] / "examples" / "shop"],
}


@functools.cache
def dataplane(name: str):
    return build(load([str(p) for p in CLUSTERS[name]]))


def cases(cluster: str, *expectations: str):
    """The cases of expectations written as YAML flow mappings, on one cluster."""
    items = [yaml.safe_load(e) for e in expectations]
    for i, item in enumerate(items):
        item.setdefault("name", f"e{i}")
    doc = {"apiVersion": "netsim/v1alpha1", "kind": "ConnectivityExpectations",
           "metadata": {"name": "t"}, "spec": {"expectations": items}}
    (result,) = run(dataplane(cluster), (parse_document(doc, Source("t.yaml")),))
    return list(result.cases)


def one(cluster: str, expectation: str):
    (case,) = cases(cluster, expectation)
    return case


def outcome(case):
    return case.got, case.passed


# ---------------------------------------------------------------- ends, and the result


def test_pod_to_service_every_path_delivered():
    c = one("policed", "{from: {pod: demo/client}, to: {service: demo/web, port: http}, "
            "expect: allow}")
    assert outcome(c) == ("allow", True)
    assert (c.source, c.destination, c.suffix) == ("demo/client", "svc/demo/web:http",
                                                   "[demo/client]")
    assert sorted((p.delivered_to, p.probability) for p in c.paths) == [
        ("demo/web-1", 0.5), ("demo/web-2", 0.5)]
    assert c.summary == "delivered; allowed by NetworkPolicy demo/web-from-client"


def test_a_glob_is_one_case_per_pod_and_a_pod_is_never_its_own_destination():
    found = cases("policed", "{from: {pod: demo/web-*}, to: {pod: 'demo/*', port: 8080}, "
                  "expect: deny}")
    assert [(c.source, c.destination, c.got, c.passed) for c in found] == [
        ("demo/web-1", "demo/client:8080", "allow", False),  # the client's ingress is open
        ("demo/web-1", "demo/web-2:8080", "deny", True),
        ("demo/web-2", "demo/client:8080", "allow", False),
        ("demo/web-2", "demo/web-1:8080", "deny", True)]
    assert found[1].name == "e0 [demo/web-1 -> demo/web-2:8080]"
    assert found[1].summary == ("policy-denied: NetworkPolicy demo/web-from-client, "
                                "NetworkPolicy demo/web-from-outside")


def test_namespace_and_selector_with_a_named_container_port():
    found = cases("policed", "{from: {namespace: demo, selector: {app: client}}, "
                  "to: {namespace: demo, selector: {app: web}, port: http}, expect: allow}")
    assert [(c.source, c.destination, c.got) for c in found] == [
        ("demo/client", "demo/web-1:8080", "allow"), ("demo/client", "demo/web-2:8080", "allow")]


def test_workload_source_and_ingress_destination():
    found = cases("shop", "{from: {workload: Deployment/ingress-nginx/ingress-nginx-controller}, "
                  "to: {service: shop/web, port: http}, expect: allow, "
                  "via: shop/allow-ingress-to-web, deliveredTo: {workload: shop/web}}")
    assert [(c.source, c.got, c.passed) for c in found] == [
        ("ingress-nginx/ingress-nginx-controller-79f57789f5-m5l9m", "allow", True)]
    c = one("shop", "{from: {external: 198.51.100.7}, to: {ingress: {host: shop.example.com, "
            "path: /api/orders, scheme: https}}, expect: deny, via: shop/api-from-web}")
    assert (c.destination, outcome(c)) == ("GET https://shop.example.com/api/orders",
                                           ("deny", True))
    assert {p.reason for p in c.paths} == {"policy-denied"}


def test_node_and_address_ends():
    assert outcome(one("policed", "{from: {node: n3}, to: {pod: demo/web-1, port: 8080}, "
                       "expect: deny}")) == ("deny", True)
    # a pod's own node may always reach it (the NetworkPolicy specification)
    c = one("policed", "{from: {node: n1}, to: {pod: demo/web-1, port: 8080}, expect: allow}")
    assert outcome(c) == ("allow", True)
    assert c.summary == "delivered; traffic from the pod's own node n1 is always allowed"
    c = one("policed", "{from: {pod: demo/client}, to: {address: '10.96.0.50:80'}, "
            "expect: allow}")
    assert (c.destination, outcome(c)) == ("10.96.0.50:80", ("allow", True))


def test_partial_fails_allow_and_deny():
    """NodePort 30082 on n1 (eTP Cluster): kube-proxy masquerades, so web-1 sees its own node
    (allowed) and web-2 sees n1's tunnel address (not admitted): half the paths deliver."""
    for expect in ("allow", "deny"):
        c = one("policed", f"{{from: {{external: 192.0.2.100}}, to: {{address: "
                f"'172.18.0.2:30082'}}, expect: {expect}}}")
        assert outcome(c) == ("partial", False)
        assert c.failures[0].startswith(f"expected {expect}, got partial: path 1/2 "
                                        "(p=0.5000) dropped (policy-denied): DROP in filter:")
        assert c.summary.startswith("1 of 2 paths delivered (p=0.5000); policy-denied: ")


def test_service_protocol_comes_from_the_named_port():
    c = one("shop", "{from: {pod: data/postgres-0}, to: {service: kube-system/kube-dns, "
            "port: dns}, expect: allow}")
    assert (c.destination, outcome(c)) == ("svc/kube-system/kube-dns:dns (UDP)", ("allow", True))
    assert all(p.delivered_to.startswith("kube-system/coredns-") for p in c.paths)


def test_without_endpoints_kube_proxy_rejects():
    c = one("policed", "{from: {pod: demo/client}, to: {service: demo/empty}, expect: deny, "
            "via: demo/empty}")
    assert outcome(c) == ("deny", True)
    assert c.summary == ("no-endpoints: the Service has no ready endpoint: kube-proxy rejects "
                         "the connection")


@pytest.mark.parametrize(("expectation", "message"), [
    ("{from: {pod: demo/nothing-*}, to: {service: demo/web, port: 80}, expect: allow}",
     "from: no pod matches demo/nothing-*"),
    ("{from: {workload: demo/web}, to: {service: demo/web, port: 80}, expect: allow}",
     "from: no pod matches demo/web"),  # bare pods belong to no workload
    ("{from: {pod: demo/client}, to: {service: demo/nope, port: 80}, expect: allow}",
     "to: no Service demo/nope"),
    ("{from: {pod: demo/client}, to: {service: demo/web, port: 81}, expect: allow}",
     "to: Service demo/web has no port '81' (ports: 80/TCP)"),
    ("{from: {pod: demo/client}, to: {pod: demo/web-1, port: grpc}, expect: allow}",
     "to: pod demo/web-1 has no container port named 'grpc' (TCP)"),
    ("{from: {pod: demo/client}, to: {pod: demo/client, port: 80}, expect: allow}",
     "to: no pod matches demo/client (other than the sender)"),
    ("{from: {external: 10.244.1.99}, to: {service: demo/web-lb, port: 80}, expect: allow}",
     "from: 10.244.1.99 is inside the cluster's ranges (pods, Services, nodes, load "
     "balancers): not an external client"),
    ("{from: {node: n9}, to: {service: demo/web, port: 80}, expect: allow}",
     "from: no Node named 'n9'"),
    ("{from: {pod: demo/client}, to: {ingress: {host: a.example}}, expect: allow}",
     "to: the cluster has no Ingress and no ingress controller"),
])
def test_what_the_cluster_cannot_resolve_is_an_error_result(expectation, message):
    (c,) = cases("plain", expectation)
    assert (c.got, c.passed, c.error) == ("error", False, True)
    assert c.summary.removeprefix("to: ") == message.removeprefix("to: ")
    assert c.failures == (c.summary,)


# ---------------------------------------------------------------- via


CLIENT_TO_WEB = "{from: {pod: demo/client}, to: {service: demo/web, port: http}, expect: allow"


@pytest.mark.parametrize(("via", "passed"), [
    ("demo/web-from-client", True),
    ("NetworkPolicy demo/web-from-client", True),
    ("KubernetesNetworkPolicy demo/web-from-client", True),
    ("AuthorizationPolicy demo/web-from-client", False),  # the kind narrows the match
    ("demo/web-from-outside", False),  # isolates web, but did not admit the client
    ("demo/web", False),  # a name is matched whole, never as a prefix
])
def test_via_for_allow_names_an_allowing_policy(via, passed):
    c = one("policed", CLIENT_TO_WEB + f", via: {via}}}")
    assert (c.got, c.passed) == ("allow", passed)
    if not passed:
        assert c.failures == (f"via {via}: path 1/2 was allowed by NetworkPolicy "
                              "demo/web-from-client",)


def test_via_for_allow_fails_when_no_policy_decides():
    c = one("plain", CLIENT_TO_WEB + ", via: demo/web-from-client}")
    assert c.failures == ("via demo/web-from-client: path 1/2 was allowed by no policy",)


@pytest.mark.parametrize(("via", "passed"), [
    ("demo/web-from-client", True),  # each isolating policy is named by the drop
    ("demo/web-from-outside", True),
    ("NetworkPolicy demo/web-from-outside", True),
    ("demo/default-deny", False),
    ("AuthorizationPolicy demo/web-from-client", False),
])
def test_via_for_deny_names_the_isolating_policy(via, passed):
    c = one("policed", "{from: {pod: demo/web-1}, to: {pod: demo/web-2, port: 8080}, "
            f"expect: deny, via: {via}}}")
    assert (c.got, c.passed) == ("deny", passed)
    if not passed:
        assert c.failures[0].startswith(f"via {via}: path 1/1 was dropped (policy-denied): "
                                        "DROP in filter:cali-tw-")


def test_via_for_a_drop_no_policy_makes_matches_its_words():
    c = one("shop", "{from: {external: 192.0.2.1}, to: {ingress: {host: shop.example.com}}, "
            "expect: deny, via: ingress-nginx/ingress-nginx-controller}")
    assert outcome(c) == ("deny", True)
    assert c.summary == ("lb-source-range: the client is outside the LoadBalancer's "
                         "loadBalancerSourceRanges")
    c = one("shop", "{from: {external: 192.0.2.1}, to: {ingress: {host: shop.example.com}}, "
            "expect: deny, via: ingress-nginx/ingress-nginx}")
    assert not c.passed


# ---------------------------------------------------------------- deliveredTo


@pytest.mark.parametrize(("delivered_to", "passed"), [
    ("{namespace: demo, selector: {app: web}}", True),
    ("{pod: 'demo/web-?'}", True),
    ("{pod: demo/web-1}", False),
    ("{selector: {app: client}}", False),
])
def test_delivered_to_every_path(delivered_to, passed):
    c = one("policed", CLIENT_TO_WEB + f", deliveredTo: {delivered_to}}}")
    assert c.passed == passed
    if not passed:
        assert c.failures[0].startswith("deliveredTo ") and c.failures[0].endswith(
            "was delivered to demo/web-2" if "web-1" in delivered_to else
            "path 1/2 was delivered to demo/web-1")


# ---------------------------------------------------------------- clientIPPreserved


def test_client_ip_preserved_by_external_traffic_policy_local():
    c = one("policed", "{from: {external: 192.0.2.100}, to: {service: demo/web-lb, port: 80}, "
            "expect: allow, clientIPPreserved: true, via: demo/web-from-outside}")
    assert outcome(c) == ("allow", True)
    assert {p.client_address for p in c.paths} == {"192.0.2.100"}
    assert sorted(p.delivered_to for p in c.paths) == ["demo/web-1", "demo/web-2"]


@pytest.mark.parametrize(("preserved", "passed"), [(False, True), (True, False)])
def test_client_ip_masqueraded_by_a_cluster_nodeport(preserved, passed):
    """eTP Cluster: kube-proxy masquerades external NodePort traffic (KUBE-MARK-MASQ)."""
    c = one("plain", "{from: {external: 192.0.2.100}, to: {address: '172.18.0.2:30082'}, "
            f"expect: allow, clientIPPreserved: {str(preserved).lower()}}}")
    assert (c.got, c.passed) == ("allow", passed)
    assert sorted((p.delivered_to, p.client_address) for p in c.paths) == [
        ("demo/web-1", "172.18.0.2"), ("demo/web-2", "10.244.1.0")]
    if not passed:
        assert c.failures[0].startswith("clientIPPreserved true: path ")
        assert "(the sender is 192.0.2.100)" in c.failures[0]


# ---------------------------------------------------------------- through sidecars


MESH = "{from: {pod: mesh/client}, to: {service: mesh/server, port: http}"


def test_mesh_allow_names_the_authorization_policy():
    c = one("mesh", MESH + ", http: GET /ok, expect: allow, deliveredTo: {pod: mesh/server}, "
            "clientIPPreserved: true, via: AuthorizationPolicy mesh/server-allow-client}")
    assert outcome(c) == ("allow", True), c.failures
    assert c.destination == "svc/mesh/server:http GET /ok"
    assert c.paths[0].allowed_by == ("AuthorizationPolicy mesh/server-allow-client",)


def test_mesh_deny_by_authorization_policy():
    c = one("mesh", MESH + ", http: GET /admin, expect: deny, via: mesh/server-allow-client}")
    assert outcome(c) == ("deny", True)
    assert c.summary == "http-denied: AuthorizationPolicy mesh/server-allow-client"


def test_mesh_strict_mtls_resets_a_client_without_sidecar():
    c = one("mesh", "{from: {pod: outside/stranger}, to: {service: mesh/server, port: http}, "
            "http: GET /ok, expect: deny, via: mesh/server-allow-client}")
    assert c.got == "deny" and {p.reason for p in c.paths} == {"mtls-required"}
    assert not c.passed  # the reset happens before authorization: no policy is named
    assert c.failures[0].startswith("via mesh/server-allow-client: path 1/1 was rejected "
                                    "(mtls-required): ")
