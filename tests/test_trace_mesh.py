"""Traces through Istio sidecars, under Calico and Cilium: capture by istio-init's rules,
the client sidecar's routing and mTLS origination, the server sidecar's mTLS termination and
AuthorizationPolicy, and the replies unwinding through every proxied connection.

tests/data/mesh/cluster.yaml: mesh/client (n1) and mesh/server (n2, :8080 behind Service
server 10.96.0.80:80), namespace mesh STRICT, AuthorizationPolicy allowing GET /ok* from
cluster.local/ns/mesh/sa/client only; outside/stranger has no sidecar."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.dataplane import build
from netsim.packet import TracePacket, parse_http
from netsim.walk import walk

CLUSTER = str(Path(__file__).parent / "data" / "mesh" / "cluster.yaml")
BOOKINFO = Path(__file__).resolve().parents[2] / "shared" / "realworld" / "istio-bookinfo"
CNIS = {"calico": {}, "cilium": {"cni": "cilium", "cilium_socket_lb_host_only": True}}
CLIENT, STRANGER, VIP = "10.244.1.10", "10.244.1.20", "10.96.0.80"


@functools.cache
def dataplane(cni: str):
    return build(load([CLUSTER], overrides=CNIS[cni]))


def request(cni: str, src: str, origin: str, line: str):
    packet = TracePacket(src, VIP, "tcp", 40000, 80, http=parse_http(line))
    return walk(dataplane(cni), packet, origin)


@pytest.mark.parametrize("cni", CNIS)
def test_allowed_request_goes_sidecar_to_sidecar_with_mtls(cni):
    t = request(cni, CLIENT, "pod:mesh/client", "GET http://server.mesh/ok")
    assert (t.result, t.delivered_to) == ("delivered", "mesh/server")
    envoy = [h for h in t.hops if h.component == "envoy"]
    assert [h.netns for h in envoy] == ["mesh/client", "mesh/server"]
    assert envoy[0].action == ("outbound: outbound|80||server.mesh.svc.cluster.local -> "
                               "10.244.2.10:8080 (mTLS)")
    assert "original destination 10.96.0.80:80 (SO_ORIGINAL_DST)" in envoy[0].detail
    assert envoy[1].action == "inbound: inbound|8080|| -> 10.244.2.10:8080 (mTLS terminated)"
    assert "peer cluster.local/ns/mesh/sa/client" in envoy[1].detail
    redirect = [h for h in t.hops if "REDIRECT --to-ports" in h.action]
    assert [(h.netns, h.action.split("(")[1].split(" in ")[0]) for h in redirect] == [
        ("mesh/client", "REDIRECT --to-ports 15001"),
        ("mesh/server", "REDIRECT --to-ports 15006")]
    delivered = next(h for h in t.hops if h.action == "delivered")
    assert (delivered.packet.src, delivered.packet.dport) == ("127.0.0.6", 8080)
    last = t.hops[-1]  # the app's own socket gets the answer from the Service address
    assert (last.netns, last.packet.src, last.packet.sport) == ("mesh/client", VIP, 80)


@pytest.mark.parametrize("cni", CNIS)
def test_authorization_policy_denies_other_paths(cni):
    t = request(cni, CLIENT, "pod:mesh/client", "GET http://server.mesh/admin")
    assert (t.result, t.reason) == ("rejected", "http-denied")
    assert t.detail.endswith("403 RBAC: access denied")
    assert t.hops[-1].netns == "mesh/server"


@pytest.mark.parametrize("cni", CNIS)
def test_plaintext_from_outside_the_mesh_is_reset_by_strict(cni):
    t = request(cni, STRANGER, "pod:outside/stranger", "GET http://server.mesh/ok")
    assert (t.result, t.reason) == ("rejected", "mtls-required")
    assert "plaintext on port 8080" in t.detail
    assert all(h.netns != "outside/stranger" or h.component != "envoy" for h in t.hops)


def test_cilium_socket_lb_in_pods_bypasses_the_sidecars_service_routing():
    # Cilium's default socket LB rewrites connect() before istio-init's capture sees it
    dp = build(load([CLUSTER], overrides={"cni": "cilium"}))
    packet = TracePacket(CLIENT, VIP, "tcp", 40000, 80, http=parse_http("GET http://x/ok"))
    t = walk(dp, packet, "pod:mesh/client")
    assert (t.result, t.reason) == ("rejected", "mtls-required")
    envoy = next(h for h in t.hops if h.component == "envoy")
    assert "PassthroughCluster" in envoy.action
    assert any("socketLB.hostNamespaceOnly" in d for d in envoy.detail)


@pytest.mark.skipif(not BOOKINFO.exists(), reason="shared/realworld is not beside the checkout")
@pytest.mark.parametrize("virtual_service,headers,want", [
    ("virtual-service-reviews-80-20.yaml", {}, {"v1": 0.8, "v2": 0.2}),
    ("virtual-service-reviews-jason-v2-v3.yaml", {"end-user": "jason"}, {"v2": 1.0}),
    ("virtual-service-reviews-jason-v2-v3.yaml", {}, {"v3": 1.0}),
])
def test_bookinfo_reviews_routing(tmp_path, virtual_service, headers, want):
    ns = tmp_path / "ns.yaml"  # Bookinfo's docs: label the namespace for injection first
    ns.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels:\n"
                  "    istio-injection: enabled\n")
    cluster = load([str(BOOKINFO / "bookinfo.yaml"), str(ns),
                    str(BOOKINFO / "destination-rule-all.yaml"),
                    str(BOOKINFO / virtual_service)], overrides={"mesh": True})
    dp = build(cluster)
    page = next(p for p in cluster.pods if p.name.startswith("productpage-v1"))
    reviews = cluster.service("default", "reviews")
    http = parse_http("GET http://reviews:9080/reviews/0")
    http = type(http)(http.method, http.host, http.path, http.scheme, tuple(headers.items()))
    t = walk(dp, TracePacket(page.ip, reviews.cluster_ips[0], "tcp", 40000, 9080, http=http),
             f"pod:{page.key}", mode="all")
    paths = t.branches or (t,)
    got: dict[str, float] = {}
    for b in paths:
        assert b.result == "delivered"
        version = b.delivered_to.split("/")[1].split("-")[1]
        got[version] = got.get(version, 0) + b.probability
    assert got == pytest.approx(want)
