"""The walk under Cilium (reference: cni.md 3.2c): socket LB, bpf_lxc, the overlay with the
source identity as VNI, NodePort with SNAT, Local traffic policy, policy drops with Cilium's
drop reasons and Hubble lines. Cluster: tests/data/trace/cluster.yaml (see test_trace.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.dataplane import build
from netsim.packet import TracePacket
from netsim.trace_hubble import hubble_lines
from netsim.walk import walk

CLUSTER = str(Path(__file__).parent / "data" / "trace" / "cluster.yaml")
REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"
CLIENT, WEB1, WEB2, EXTERNAL = "10.244.1.10", "10.244.1.11", "10.244.2.11", "192.0.2.100"


@functools.cache
def dataplane(routing: str = "tunnel", proxy_mode: str = "none"):
    return build(load([CLUSTER], overrides={"cni": "cilium", "cilium_routing_mode": routing,
                                            "proxy_mode": proxy_mode}))


def trace(src, dst, dport, origin, mode="sample", **kw):
    return walk(dataplane(**kw), TracePacket(src, dst, "tcp", 40000, dport), origin, mode=mode)


def delivered(t):
    return next(h.packet for h in t.hops if h.action == "delivered")


def test_pod_to_pod_tunnel_uses_identity_as_vni():
    dp = dataplane()
    t = trace(CLIENT, WEB2, 8080, "pod:demo/client")
    assert (t.result, t.delivered_to) == ("delivered", "demo/web-2")
    over = next(h for h in t.hops if "-> overlay" in h.action)
    o = over.packet.outer
    client_id = dp._cilium.node("n1").endpoint(CLIENT).sec_id
    assert (o.kind, o.src, o.dst, o.dport, o.vni) == ("vxlan", "172.18.0.2", "172.18.0.3",
                                                      8472, client_id)
    assert any(h.action.startswith("policy-verdict:") and "INGRESS ALLOWED" in h.action
               and h.node == "n2" for h in t.hops)


def test_pod_to_pod_native_routing_has_no_outer_header():
    t = trace(CLIENT, WEB2, 8080, "pod:demo/client", routing="native")
    assert t.result == "delivered"
    assert all(h.packet.outer is None for h in t.hops)


def test_socket_lb_translates_at_connect():
    t = trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", mode="all")
    assert sorted(b.delivered_to for b in t.branches) == ["demo/web-1", "demo/web-2"]
    for b in t.branches:
        connect = b.hops[1]
        assert connect.action.startswith("bpf_sock cil_sock4_connect: 10.96.0.50:80 -> ")
        # from the connect on, no request packet carries the VIP
        assert all(h.packet.dst != "10.96.0.50" for h in b.hops[1:] if h.direction == "request")
        assert b.result == "delivered"


def test_service_without_backends_is_rejected_at_connect():
    t = trace(CLIENT, "10.96.0.60", 80, "pod:demo/client")
    assert (t.result, t.reason) == ("rejected", "service-backend-not-found")


def test_nodeport_cluster_snat_and_reverse_nat():
    t = trace(EXTERNAL, "172.18.0.4", 30082, "external", mode="all")
    for b in t.branches:
        assert b.result == "delivered"
        assert delivered(b).src == "172.18.0.4"  # SNAT to n3 for a remote backend
        last = b.hops[-1]
        assert (last.packet.src, last.packet.sport) == ("172.18.0.4", 30082)


def test_nodeport_local_without_backend_is_dropped():
    t = trace(EXTERNAL, "172.18.0.4", 30081, "external")
    assert (t.result, t.reason) == ("dropped", "no-local-endpoints")


def test_load_balancer_local_keeps_client_ip():
    t = trace(EXTERNAL, "198.18.0.10", 80, "external", mode="all")
    for b in t.branches:
        assert b.result == "delivered" and delivered(b).src == EXTERNAL
        assert b.hops[-1].packet.src == "198.18.0.10"


@pytest.mark.parametrize("proxy_mode", ["iptables", "none"])
def test_cluster_ip_with_and_without_kube_proxy(proxy_mode):
    t = trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", mode="all", proxy_mode=proxy_mode)
    assert {b.result for b in t.branches} == {"delivered"}


@pytest.mark.skipif(not REALWORLD.exists(), reason="shared/realworld is not beside the checkout")
def test_star_wars_xwing_dropped_with_hubble_lines():
    demo = REALWORLD / "cilium-star-wars"
    cluster = load([str(demo / "http-sw-app.yaml"), str(demo / "sw_l3_l4_policy.yaml")],
                   overrides={"cni": "cilium"})
    dp = build(cluster)
    xwing = next(p for p in cluster.pods if p.name.startswith("xwing"))
    tie = next(p for p in cluster.pods if p.name.startswith("tiefighter"))
    svc = cluster.service("default", "deathstar")
    t = walk(dp, TracePacket(xwing.ip, svc.cluster_ips[0], "tcp", 40000, 80),
             f"pod:{xwing.key}")
    assert (t.result, t.reason) == ("dropped", "policy-denied")
    assert "Policy denied (133)" in t.detail
    lines = hubble_lines(dp, t)
    assert lines[-1].endswith("Policy denied DROPPED (TCP Flags: SYN)")
    assert "policy-verdict:none INGRESS DENIED" in lines[-2]
    t = walk(dp, TracePacket(tie.ip, svc.cluster_ips[0], "tcp", 40000, 80), f"pod:{tie.key}")
    assert t.result == "delivered"


def test_geneve_tunnel():
    dp = build(load([CLUSTER], overrides={"cni": "cilium", "cilium_tunnel_protocol": "geneve",
                                          "proxy_mode": "none"}))
    t = walk(dp, TracePacket(CLIENT, WEB2, "tcp", 40000, 8080), "pod:demo/client")
    assert t.result == "delivered"
    over = next(h for h in t.hops if "-> overlay" in h.action)
    assert (over.packet.outer.kind, over.packet.outer.dport) == ("geneve", 6081)
    assert any(h.action == "decapsulate on cilium_geneve" for h in t.hops)
    assert over.packet.to_scapy().summary().startswith("Ether / IP / UDP / GENEVE")


def test_host_process_uses_socket_lb_and_arrives_as_remote_node():
    t = trace("172.18.0.4", "10.96.0.50", 80, "host:n3", mode="all")
    assert sorted(b.delivered_to for b in t.branches) == ["demo/web-1", "demo/web-2"]
    for b in t.branches:
        assert b.hops[1].action.startswith("bpf_sock cil_sock4_connect: 10.96.0.50:80 -> ")
        assert any("tunnel key: VNI 1 -> source identity 6" in d
                   for h in b.hops for d in h.detail)


def test_external_client_admitted_by_an_ipblock_keeps_its_cidr_identity():
    overlay = Path(__file__).parent / "data" / "expectations" / "policies.yaml"
    dp = build(load([CLUSTER, str(overlay)], overrides={"cni": "cilium", "proxy_mode": "none"}))
    t = walk(dp, TracePacket(EXTERNAL, "198.18.0.10", "tcp", 40000, 80), "external",
             mode="all")
    assert {b.result for b in t.branches} == {"delivered"}
    verdict = next(h for h in t.branches[0].hops if "INGRESS ALLOWED" in h.action)
    assert any("identity 167772" in d for d in verdict.detail)  # a local CIDR identity (1<<24)
