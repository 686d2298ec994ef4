"""The walk under Calico and kube-proxy: each scenario's hops, rewrites and result, stated by
hand from how the kernel, kube-proxy and Calico handle the packet (shared/reference/cni.md
section 3.2, kube-proxy.md), on tests/data/trace/cluster.yaml:

    n1 172.18.0.2 (tunl0 10.244.1.0): demo/client 10.244.1.10, demo/web-1 10.244.1.11
    n2 172.18.0.3 (tunl0 10.244.2.0): demo/web-2 10.244.2.11
    n3 172.18.0.4: no pods
    web 10.96.0.50:80 -> :8080; web-local NodePort 30081 (eTP Local); web-cluster NodePort
    30082; web-lb 198.18.0.10:80 (eTP Local, NodePort 30083); empty 10.96.0.60:80 (no
    endpoints). The external client is 192.0.2.100.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.dataplane import build
from netsim.packet import TracePacket
from netsim.walk import walk

CLUSTER = str(Path(__file__).parent / "data" / "trace" / "cluster.yaml")
EXTERNAL = "192.0.2.100"
CLIENT, WEB1, WEB2 = "10.244.1.10", "10.244.1.11", "10.244.2.11"


@functools.cache
def dataplane(encapsulation: str = "IPIP", proxy_mode: str = "iptables"):
    cluster = load([CLUSTER], overrides={"calico_encapsulation": encapsulation,
                                         "proxy_mode": proxy_mode})
    return build(cluster)


def trace(src: str, dst: str, dport: int, origin: str, *, mode: str = "sample", seed: int = 0,
          protocol: str = "tcp", **kwargs):
    dp = dataplane(**kwargs)
    return walk(dp, TracePacket(src, dst, protocol, 40000, dport), origin, mode=mode, seed=seed)


def delivered_packet(t):
    """The request as the destination socket received it."""
    return next(h.packet for h in t.hops if h.action == "delivered")


def netns_sequence(t, direction="request"):
    seq = []
    for h in t.hops:
        if h.direction == direction and (not seq or seq[-1] != h.netns):
            seq.append(h.netns)
    return seq


@pytest.mark.parametrize("proxy_mode", ["iptables", "ipvs"])
@pytest.mark.parametrize("encapsulation", ["IPIP", "VXLAN", "None"])
def test_pod_to_pod_same_node(encapsulation, proxy_mode):
    t = trace(CLIENT, WEB1, 8080, "pod:demo/client", encapsulation=encapsulation,
              proxy_mode=proxy_mode)
    assert (t.result, t.delivered_to) == ("delivered", "demo/web-1")
    assert netns_sequence(t) == ["demo/client", "node/n1", "demo/web-1"]
    assert netns_sequence(t, "reply") == ["demo/web-1", "node/n1", "demo/client"]
    assert all(h.packet.outer is None for h in t.hops)
    veth = [h.action for h in t.hops if h.component == "veth" and h.direction == "request"]
    assert veth == ["eth0 -> node/n1 cali0e8ee4fc632",
                    "cali9beb1ed9b53 -> demo/web-1 eth0"]


def test_pod_to_pod_across_nodes_ipip():
    t = trace(CLIENT, WEB2, 8080, "pod:demo/client")
    assert (t.result, t.delivered_to) == ("delivered", "demo/web-2")
    assert netns_sequence(t) == ["demo/client", "node/n1", "node/n2", "demo/web-2"]
    encap = next(h for h in t.hops if h.action == "encapsulate on tunl0")
    o = encap.packet.outer
    assert (o.kind, o.src, o.dst) == ("ipip", "172.18.0.2", "172.18.0.3")
    assert encap.changed == ("outer",)
    decap = next(h for h in t.hops if h.action == "decapsulate on tunl0")
    assert decap.node == "n2" and decap.packet.outer is None
    route = next(h for h in t.hops if h.component == "routing" and h.node == "n1"
                 and h.direction == "request" and h.netns == "node/n1")
    assert route.detail == ("10.244.2.0/26 via 172.18.0.3 dev tunl0 proto bird onlink",)
    # the inner packet is untouched end to end (no NAT between pods)
    p = delivered_packet(t)
    assert (p.src, p.sport, p.dst, p.dport) == (CLIENT, 40000, WEB2, 8080)


def test_pod_to_pod_across_nodes_vxlan():
    t = trace(CLIENT, WEB2, 8080, "pod:demo/client", encapsulation="VXLAN")
    assert t.result == "delivered"
    encap = next(h for h in t.hops if h.action == "encapsulate on vxlan.calico")
    o = encap.packet.outer
    # felix: VNI 4096, UDP 4789, next hop the remote VTEP (n2's tunnel address 10.244.2.0)
    assert (o.kind, o.src, o.dst, o.dport, o.vni) == ("vxlan", "172.18.0.2", "172.18.0.3",
                                                      4789, 4096)
    assert 32768 <= o.sport <= 60999
    assert any(d.startswith("neighbour 10.244.2.0 lladdr 66:") for d in encap.detail)
    assert o.dst_mac.startswith("66:")
    assert any(h.action == "decapsulate on vxlan.calico" and h.node == "n2" for h in t.hops)


def test_pod_to_pod_across_nodes_bgp_no_encapsulation():
    t = trace(CLIENT, WEB2, 8080, "pod:demo/client", encapsulation="None")
    assert t.result == "delivered"
    assert all(h.packet.outer is None for h in t.hops)
    wire = next(h for h in t.hops if h.component == "underlay" and h.direction == "request")
    assert wire.action == "eth0 -> node n2"
    # TTL: one hop per router namespace (n1, n2)
    assert delivered_packet(t).ttl == 62


@pytest.mark.parametrize("proxy_mode", ["iptables", "ipvs"])
def test_pod_to_cluster_ip_all_paths(proxy_mode):
    t = trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", mode="all", proxy_mode=proxy_mode)
    assert sorted(b.delivered_to for b in t.branches) == ["demo/web-1", "demo/web-2"]
    assert sum(b.probability for b in t.branches) == pytest.approx(1.0)
    for b in t.branches:
        assert b.probability == pytest.approx(0.5)
        p = delivered_packet(b)
        backend = WEB1 if b.delivered_to == "demo/web-1" else WEB2
        # DNAT to the endpoint and targetPort; the client address is kept inside the cluster
        assert (p.src, p.dst, p.dport) == (CLIENT, backend, 8080)
        last = b.hops[-1]
        # the reply reaches the client from the ClusterIP (conntrack reverses the DNAT)
        assert (last.action, last.packet.src, last.packet.sport) == ("reply received",
                                                                      "10.96.0.50", 80)


def test_cluster_ip_dnat_is_kube_proxy_rule():
    t = trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", seed=1)
    dnat = next(h for h in t.hops if "dst" in h.changed)
    assert dnat.node == "n1" and dnat.action.startswith("PREROUTING: ACCEPT (DNAT "
                                                          "--to-destination 10.244.")
    assert '"demo/web:http"' in dnat.action
    assert any(d.startswith("nat:KUBE-SERVICES:rule:") and "10.96.0.50/32" in d
               for d in dnat.detail)


def test_service_without_endpoints_is_rejected():
    t = trace(CLIENT, "10.96.0.60", 80, "pod:demo/client")
    assert (t.result, t.reason) == ("rejected", "no-endpoints")
    assert "REJECT in filter:KUBE-SERVICES" in t.detail
    assert "demo/empty has no endpoints" in t.detail
    assert t.delivered_to is None


def test_service_without_endpoints_ipvs_is_rejected():
    t = trace(CLIENT, "10.96.0.60", 80, "pod:demo/client", proxy_mode="ipvs")
    assert (t.result, t.reason) == ("rejected", "no-endpoints")


def test_nodeport_cluster_policy_masquerades():
    t = trace(EXTERNAL, "172.18.0.4", 30082, "external", mode="all")
    assert sorted(b.delivered_to for b in t.branches) == ["demo/web-1", "demo/web-2"]
    for b in t.branches:
        p = delivered_packet(b)
        # n3 has no endpoint: it DNATs, forwards over IPIP and MASQUERADEs to its tunl0
        # address, so the backend sees n3, not the client
        assert p.src == "10.244.90.128" and p.dport == 8080
        last = b.hops[-1]
        assert (last.netns, last.packet.src, last.packet.sport) == ("external", "172.18.0.4",
                                                                     30082)


@pytest.mark.parametrize("proxy_mode", ["iptables", "ipvs"])
def test_nodeport_local_policy_keeps_client_ip(proxy_mode):
    t = trace(EXTERNAL, "172.18.0.3", 30081, "external", proxy_mode=proxy_mode)
    assert (t.result, t.delivered_to) == ("delivered", "demo/web-2")
    assert delivered_packet(t).src == EXTERNAL


def test_nodeport_local_policy_drops_without_local_endpoint():
    t = trace(EXTERNAL, "172.18.0.4", 30081, "external")
    assert (t.result, t.reason) == ("dropped", "no-local-endpoints")
    assert t.hops[-1].node == "n3"
    assert "demo/web-local:http has no local endpoints" in t.detail


def test_load_balancer_local_policy_goes_to_healthy_nodes():
    t = trace(EXTERNAL, "198.18.0.10", 80, "external", mode="all")
    lb = [h for b in t.branches for h in b.hops if h.component == "cloud-lb"]
    # only n1 and n2 pass the health check; n3 has no endpoint
    assert sorted({h.action for h in lb}) == ["198.18.0.10 -> node n1",
                                             "198.18.0.10 -> node n2"]
    assert sum(b.probability for b in t.branches) == pytest.approx(1.0)
    for b in t.branches:
        assert b.result == "delivered"
        assert delivered_packet(b).src == EXTERNAL  # eTP Local: client IP preserved
        assert b.hops[-1].packet.src == "198.18.0.10"


def test_hairpin_to_own_service_is_masqueraded():
    t = trace(WEB1, "10.96.0.50", 80, "pod:demo/web-1", mode="all")
    own = next(b for b in t.branches if b.delivered_to == "demo/web-1")
    # KUBE-SEP's hairpin rule marks for masquerade; MASQUERADE picks the node's address,
    # so the pod's reply goes back through the node and un-NATs to the ClusterIP
    assert delivered_packet(own).src == "172.18.0.2"
    assert own.result == "delivered"
    assert own.hops[-1].packet.src == "10.96.0.50"


def test_no_route_for_unknown_destination():
    t = trace(CLIENT, "10.244.1.50", 8080, "pod:demo/client")
    # an unallocated address in n1's own block: Calico's blackhole route drops it
    assert (t.result, t.reason) == ("dropped", "blackhole")
    assert t.hops[-1].node == "n1"


def test_sample_mode_is_reproducible_and_follows_one_path():
    a = trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", seed=7)
    b = trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", seed=7)
    assert a.delivered_to == b.delivered_to and a.branches == ()
    seen = {trace(CLIENT, "10.96.0.50", 80, "pod:demo/client", seed=s).delivered_to
            for s in range(12)}
    assert seen == {"demo/web-1", "demo/web-2"}


def test_udp_and_icmp():
    t = trace(CLIENT, WEB2, 8080, "pod:demo/client", protocol="udp")
    assert t.result == "delivered"
    t = walk(dataplane(), TracePacket(CLIENT, WEB2, "icmp", 1, 0, "", icmp_type=8),
             "pod:demo/client")
    assert t.result == "delivered"
    assert t.hops[-1].packet.icmp_type == 0  # echo reply


def test_policy_drop_names_felix_chain_and_policies():
    # examples/shop: redis accepts only the cart (shop/redis-from-cart over a default deny)
    cluster = load([str(Path(__file__).parents[1] / "examples" / "shop")])
    dp = build(cluster)
    src = cluster.pod("data", "postgres-0")
    redis = next(p for p in cluster.pods_in("shop") if p.name.startswith("redis-"))
    t = walk(dp, TracePacket(src.ip, redis.ip, "tcp", 40000, 6379), "pod:data/postgres-0")
    assert (t.result, t.reason) == ("dropped", "policy-denied")
    assert t.hops[-1].node == redis.node_name and t.hops[-1].action.startswith("FORWARD: DROP")
    assert "End of tier default. Drop if no policies passed packet" in t.detail
    assert "KubernetesNetworkPolicy shop/default-deny-all ingress" in t.detail
    assert "KubernetesNetworkPolicy shop/redis-from-cart ingress" in t.detail
