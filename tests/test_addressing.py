"""IPAM: determinism, Calico blocks and affinity, Cilium per-node CIDRs, Service IPs, pools."""

from __future__ import annotations

import ipaddress

import pytest

from netsim.errors import InputError
from tests.helpers import config, load_yaml, node, pod

# IPAM mechanics on the given objects alone: no CoreDNS addon (tests/test_dns_addon.py).
CALICO_NO_ENCAP = config("cni: {name: calico, calico: {encapsulation: None}}\n"
                         "podCIDRs: [10.10.0.0/24]\nserviceCIDRs: [10.20.0.0/24]\n"
                         "dns: {disabled: true}")


def _ips(cluster, prefix=""):
    return {p.name: p.ip for p in cluster.pods if p.name.startswith(prefix)}


def test_calico_pods_take_the_lowest_ordinals_of_one_affine_block():
    text = CALICO_NO_ENCAP + node("a") + node("b") + "".join(
        pod(f"p{i}", node_name="a") for i in range(3))
    cluster = load_yaml(text)
    ips = sorted(ipaddress.ip_address(ip) for ip in _ips(cluster).values())
    block = ipaddress.ip_network(f"{ips[0]}/26", strict=False)
    # Calico hands out every ordinal of a /26, the network address included.
    assert [int(ip) - int(block.network_address) for ip in ips] == [0, 1, 2]
    assert cluster.addressing.blocks[str(block)] == "a"
    assert cluster.addressing.tunnel_ips == {}


def test_calico_tunnel_address_is_the_first_ordinal_of_the_nodes_block():
    text = config("cni: {name: calico, calico: {encapsulation: VXLAN}}\n"
                  "podCIDRs: [10.10.0.0/24]") + node("a") + pod("p", node_name="a")
    cluster = load_yaml(text)
    (block,) = cluster.addressing.node_blocks("a")
    net = ipaddress.ip_network(block)
    assert cluster.addressing.tunnel_ips["a"] == (str(net.network_address),)
    assert cluster.pod("default", "p").ip == str(net.network_address + 1)


def test_a_full_block_makes_the_node_claim_another():
    text = CALICO_NO_ENCAP + node("a") + "".join(pod(f"p{i:02}", node_name="a")
                                                   for i in range(70))
    cluster = load_yaml(text)
    blocks = cluster.addressing.node_blocks("a")
    assert len(blocks) == 2
    assert all(ipaddress.ip_network(b).prefixlen == 26 for b in blocks)
    assert len(set(_ips(cluster).values())) == 70
    for ip in _ips(cluster).values():
        assert any(ipaddress.ip_address(ip) in ipaddress.ip_network(b) for b in blocks)


def test_an_exhausted_pool_is_a_clear_error():
    # A /24 pool holds four /26 blocks: the fifth node cannot get one.
    text = CALICO_NO_ENCAP + "".join(node(n) for n in "abcde") + "".join(
        pod(f"p{n}", node_name=n) for n in "abcde")
    with pytest.raises(InputError, match=r"pod CIDR 10\.10\.0\.0/24 is exhausted"):
        load_yaml(text)


def test_existing_pod_ips_keep_their_block_on_their_node():
    text = CALICO_NO_ENCAP + node("a") + node("b") + pod("old", node_name="b", ip="10.10.0.70") \
        + pod("new", node_name="b")
    cluster = load_yaml(text)
    assert cluster.pod("default", "old").ip == "10.10.0.70"
    assert cluster.addressing.blocks["10.10.0.64/26"] == "b"
    assert cluster.pod("default", "new").ip == "10.10.0.64"  # lowest free ordinal of b's block


def test_addresses_do_not_depend_on_input_order_or_on_other_nodes():
    nodes = node("a") + node("b")
    pods_a = "".join(pod(f"a{i}", node_name="a") for i in range(4))
    pods_b = "".join(pod(f"b{i}", node_name="b") for i in range(4))
    first = load_yaml(CALICO_NO_ENCAP + nodes + pods_a + pods_b)
    reordered = load_yaml(CALICO_NO_ENCAP + pods_b + nodes + pods_a)
    assert _ips(first) == _ips(reordered)
    more_on_b = load_yaml(CALICO_NO_ENCAP + nodes + pods_a + pods_b + pod("b9", node_name="b"))
    assert _ips(more_on_b, "a") == _ips(first, "a")


def test_cilium_cluster_pool_gives_each_node_the_next_cidr_and_a_router_ip():
    text = config("cni: {name: cilium}\npodCIDRs: [10.0.0.0/16]") + node("a") + node("b") + \
        pod("pa", node_name="a") + pod("pb", node_name="b")
    cluster = load_yaml(text)
    assert cluster.addressing.blocks == {"10.0.0.0/24": "a", "10.0.1.0/24": "b"}
    assert cluster.addressing.tunnel_ips == {"a": ("10.0.0.1",), "b": ("10.0.1.1",)}
    assert cluster.pod("default", "pa").ip == "10.0.0.2"
    assert cluster.pod("default", "pb").ip == "10.0.1.2"
    assert cluster.settings.proxy_mode == "none"  # kube-proxy replacement by default


def test_cilium_uses_the_nodes_pod_cidr_when_it_has_one():
    text = config("cni: {name: cilium}\npodCIDRs: [10.0.0.0/16]") + \
        node("a", extra="\nspec:\n  podCIDR: 10.0.7.0/24") + pod("p", node_name="a")
    cluster = load_yaml(text)
    assert cluster.addressing.blocks == {"10.0.7.0/24": "a"}
    assert cluster.pod("default", "p").ip == "10.0.7.2"


def test_host_network_pods_take_the_node_address():
    text = CALICO_NO_ENCAP + node("a", ip="192.168.5.5") + pod(
        "h", node_name="a", spec="  hostNetwork: true\n")
    cluster = load_yaml(text)
    assert cluster.pod("default", "h").ips == ("192.168.5.5",)
    assert cluster.addressing.blocks == {}


def test_nodes_without_addresses_get_them_in_name_order_from_the_node_cidr():
    text = config("nodeCIDRs: [192.168.9.0/24]") + node("b") + node("a") + \
        node("c", ip="192.168.9.2")
    cluster = load_yaml(text)
    assert [n.internal_ips for n in cluster.nodes] == [("192.168.9.3",), ("192.168.9.4",),
                                                        ("192.168.9.2",)]


SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: {type}
  selector: {{app: x}}
  ports: [{{port: 80}}]
---
"""


def test_service_ips_are_in_range_unique_and_avoid_the_reserved_addresses():
    text = CALICO_NO_ENCAP + node("a") + "".join(
        SERVICE.format(name=f"s{i}", type="ClusterIP") for i in range(200))
    cluster = load_yaml(text)
    ips = [s.cluster_ip for s in cluster.services]
    net = ipaddress.ip_network("10.20.0.0/24")
    assert len(set(ips)) == 200
    assert all(ipaddress.ip_address(ip) in net for ip in ips)
    assert not {"10.20.0.0", "10.20.0.1", "10.20.0.10", "10.20.0.255"} & set(ips)


def test_a_service_keeps_its_address_when_another_is_added():
    base = CALICO_NO_ENCAP + node("a") + SERVICE.format(name="web", type="ClusterIP")
    before = load_yaml(base).service("default", "web").cluster_ip
    after = load_yaml(base + SERVICE.format(name="api", type="ClusterIP"))
    assert after.service("default", "web").cluster_ip == before


def test_node_ports_and_load_balancer_addresses_are_allocated():
    text = CALICO_NO_ENCAP + node("a") + SERVICE.format(name="np", type="NodePort") + \
        SERVICE.format(name="lb", type="LoadBalancer")
    cluster = load_yaml(text)
    ports = [s.ports[0].node_port for s in cluster.services]
    assert all(30000 <= p <= 32767 for p in ports) and len(set(ports)) == 2
    lb = cluster.service("default", "lb")
    assert lb.load_balancer_ingress == ("198.18.0.1",)
    assert lb.health_check_node_port is None  # only for externalTrafficPolicy Local


def test_dual_stack_pods_and_services_get_both_families():
    text = config("podCIDRs: [10.10.0.0/16, 'fd00:10::/56']\n"
                  "serviceCIDRs: [10.20.0.0/16, 'fd00:20::/112']\n"
                  "cni: {name: calico, calico: {encapsulation: None}}") + node("a") + \
        pod("p", node_name="a") + """
apiVersion: v1
kind: Service
metadata: {name: dual}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: p}
  ports: [{port: 80}]
"""
    cluster = load_yaml(text)
    p = cluster.pod("default", "p")
    assert [ipaddress.ip_address(ip).version for ip in p.ips] == [4, 6]
    assert ipaddress.ip_network(cluster.addressing.node_blocks("a")[1]).prefixlen == 122
    svc = cluster.service("default", "dual")
    assert svc.ip_families == ("IPv4", "IPv6")
    assert [ipaddress.ip_address(ip).version for ip in svc.cluster_ips] == [4, 6]
    slices = cluster.slices_for(svc)
    assert sorted(s.address_type for s in slices) == ["IPv4", "IPv6"]


def test_pod_and_service_cidrs_are_inferred_from_a_dump():
    text = node("a", ip="10.1.0.5") + pod("p", node_name="a", ip="100.64.3.7") + """
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {clusterIP: 172.30.5.9, ports: [{port: 80}]}
"""
    cluster = load_yaml(text)
    assert cluster.addressing.pod_cidrs == ("100.64.0.0/16",)
    assert cluster.addressing.service_cidrs == ("172.30.0.0/16",)
    assert any("inferred" in note for note in cluster.addressing.inferred)


def test_a_services_ports_with_the_same_number_share_one_node_port():
    # kube-apiserver initNodePorts: one nodePort per service port number (TCP and UDP 53).
    text = CALICO_NO_ENCAP + node("a") + """
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  type: NodePort
  selector: {app: dns}
  ports: [{name: udp, port: 53, protocol: UDP}, {name: tcp, port: 53, protocol: TCP},
          {name: metrics, port: 9153}]
"""
    ports = load_yaml(text).service("default", "dns").ports
    assert ports[0].node_port == ports[1].node_port != ports[2].node_port


def test_node_ports_are_allocated_by_number_across_protocols():
    # The NodePort allocator is per number: another Service may not take 30080 for UDP.
    text = CALICO_NO_ENCAP + node("a") + """
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {type: NodePort, ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec: {type: NodePort, ports: [{port: 80, protocol: UDP, nodePort: 30080}]}
"""
    with pytest.raises(InputError, match="provided port 30080 is already allocated"):
        load_yaml(text)


@pytest.mark.parametrize(("encapsulation", "v6_tunnel"), [("IPIP", False), ("VXLAN", True)])
def test_ipv6_tunnel_addresses_only_with_vxlan(encapsulation, v6_tunnel):
    text = config(f"podCIDRs: [10.10.0.0/16, 'fd00:10::/56']\n"
                  f"serviceCIDRs: [10.20.0.0/16, 'fd00:20::/112']\n"
                  f"cni: {{name: calico, calico: {{encapsulation: {encapsulation}}}}}") + node("a")
    tunnels = load_yaml(text).addressing.tunnel_ips["a"]
    assert [":" in ip for ip in tunnels] == ([False, True] if v6_tunnel else [False])


def test_load_balancer_addresses_follow_the_service_family():
    text = config("podCIDRs: ['fd00:10::/56']\nserviceCIDRs: ['fd00:20::/112']") + node("a") + """
apiVersion: v1
kind: Service
metadata: {name: lb6}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"""
    lb = load_yaml(text).service("default", "lb6")
    assert lb.ip_families == ("IPv6",)
    assert lb.load_balancer_ingress == ("2001:db8:18::1",)


def test_nodes_spread_over_a_wide_range_do_not_clash_with_pod_addresses():
    # Nodes in a VPC-wide 10/8 and pods in 10.244/16: a real, valid layout.
    text = node("a", ip="10.0.1.5") + node("b", ip="10.250.3.4") + \
        pod("p", node_name="a", ip="10.244.1.7")
    cluster = load_yaml(text)
    assert cluster.pod("default", "p").ip == "10.244.1.7"
    assert cluster.addressing.node_cidrs == ("10.0.0.0/8",)


def test_an_explicit_node_cidr_overlapping_the_pods_is_still_an_error():
    text = config("nodeCIDRs: [10.244.0.0/16]") + node("a")
    with pytest.raises(InputError, match=r"overlaps node CIDR 10\.244\.0\.0/16"):
        load_yaml(text)
