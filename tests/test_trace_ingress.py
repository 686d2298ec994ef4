"""Traces through the ingress controller (examples/shop): client -> cloud LB -> node ->
controller pod -> backend pod, under Calico and Cilium; what the controller answers itself;
what the Service's firewall and the NetworkPolicies do on the way.

examples/shop: Ingress shop.example.com routes / to web:80 (3 pods) and /api to api:80; the
controller's LoadBalancer 203.0.113.10 (externalTrafficPolicy Local) only admits
198.51.100.0/24 and 203.0.113.0/24 (loadBalancerSourceRanges); default-deny in `shop` lets
ingress-nginx reach web but not api (examples/README.md)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.dataplane import build
from netsim.packet import TracePacket, parse_http
from netsim.walk import walk

SHOP = str(Path(__file__).parents[1] / "examples" / "shop")
CLIENT = "198.51.100.7"
DATAPLANES = [{}, {"calico_encapsulation": "VXLAN", "proxy_mode": "ipvs"},
              {"cni": "cilium", "proxy_mode": "none"}, {"cni": "cilium"}]


@functools.cache
def dataplane(key: int):
    return build(load([SHOP], overrides=DATAPLANES[key]))


def request(key: int, line: str, client: str = CLIENT, mode: str = "all"):
    http = parse_http(line)
    port = 443 if http.scheme == "https" else 80
    packet = TracePacket(client, "203.0.113.10", "tcp", 40000, port, http=http)
    return walk(dataplane(key), packet, "external", mode=mode)


@pytest.mark.parametrize("key", range(len(DATAPLANES)))
def test_root_reaches_every_web_pod_through_the_controller(key):
    t = request(key, "GET https://shop.example.com/")
    assert [b.delivered_to.split("-")[0] for b in t.branches] == ["shop/web"] * 3
    assert sum(b.probability for b in t.branches) == pytest.approx(1.0)
    for b in t.branches:
        nginx = next(h for h in b.hops if h.component == "ingress-nginx")
        assert nginx.netns.startswith("ingress-nginx/ingress-nginx-controller-")
        assert "TLS terminated with Secret shop/shop-tls" in nginx.detail
        # eTP Local keeps the client address: nginx forwards it in X-Forwarded-For
        assert f"X-Forwarded-For: {CLIENT}" in nginx.detail
        # the web pod's sidecar takes nginx's own plaintext connection (port 8080 is
        # PERMISSIVE for exactly this) and hands it to the app from 127.0.0.6
        inbound = next(h for h in b.hops if h.component == "envoy")
        assert inbound.netns == b.delivered_to
        assert inbound.packet.src == nginx.packet.dst  # the controller pod's address
        assert "peer plaintext (no identity)" in inbound.detail
        delivered = next(h for h in b.hops if h.action == "delivered")
        assert (delivered.packet.src, delivered.packet.dport) == ("127.0.0.6", 8080)
        assert delivered.packet.http.headers[2] == ("X-Forwarded-For", CLIENT)
        last = b.hops[-1]  # the client's reply comes from the load balancer address
        assert (last.netns, last.packet.src, last.packet.sport) == ("external",
                                                                     "203.0.113.10", 443)


@pytest.mark.parametrize("key", range(len(DATAPLANES)))
def test_unknown_host_gets_404_from_the_controller(key):
    t = request(key, "GET http://www.example.com/", mode="sample")
    assert (t.result, t.reason) == ("rejected", "http-error")
    assert t.detail.startswith("the ingress controller answers 404")


@pytest.mark.parametrize("key", [0, 1])
def test_api_path_is_blocked_by_networkpolicy(key):
    t = request(key, "GET https://shop.example.com/api/orders", mode="sample")
    assert (t.result, t.reason) == ("dropped", "policy-denied")
    assert "KubernetesNetworkPolicy shop/api-from-web ingress" in t.detail


def test_api_path_is_blocked_by_cilium_policy_map():
    t = request(2, "GET https://shop.example.com/api/orders", mode="sample")
    assert (t.result, t.reason) == ("dropped", "policy-denied")
    assert "Policy denied (133) at ingress of shop/api-" in t.detail


def test_source_outside_load_balancer_source_ranges_is_dropped():
    t = request(0, "GET https://shop.example.com/", client="192.0.2.100", mode="sample")
    assert (t.result, t.reason) == ("dropped", "lb-source-range")
    assert "KUBE-PROXY-FIREWALL" in t.detail and "traffic not accepted by KUBE-FW-" in t.detail
    t = request(2, "GET https://shop.example.com/", client="192.0.2.100", mode="sample")
    assert (t.result, t.reason) == ("dropped", "lb-source-range")
    assert "DENIED_BY_LB_SRC_RANGE_CHECK" in t.detail


def test_external_ip_is_routed_to_the_nodes_and_closed_by_policy():
    # api-external's externalIP 198.51.100.50 (examples/README.md: closed to the outside)
    packet = TracePacket(CLIENT, "198.51.100.50", "tcp", 40000, 80)
    t = walk(dataplane(0), packet, "external", mode="all")
    assert len(t.branches) == 6  # 3 nodes x 2 endpoints
    assert {b.reason for b in t.branches} == {"policy-denied"}
    assert sum(b.probability for b in t.branches) == pytest.approx(1.0)
