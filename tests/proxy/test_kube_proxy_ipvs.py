"""kube-proxy's IPVS mode: virtual servers, kube-ipvs0, ipsets and iptables rules.

Expectations come from kubernetes pkg/proxy/ipvs (proxier_test.go cases restated in
tests/data/kube_proxy_ipvs/upstream_cases.yaml, proxier.go's rule and set tables), from
ipvsadm's and ipset's output formats, and from the kernel (the `kernel` test loads the
rules and sets into a network namespace and compares iptables-save and ipset list).
"""

from __future__ import annotations

import difflib
import io
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from netsim.cluster import Cluster, load
from proxy.kube_proxy import ipvs_sets as S
from proxy.kube_proxy.constants import IPVS_JUMP_CHAINS
from proxy.kube_proxy.ipvs import (
    FLAG_PERSISTENT,
    FLAG_SOURCE_HASH,
    IpvsState,
    RealServer,
    VirtualServer,
    compile_ipvs,
    ipvsadm_order,
)
from proxy.kube_proxy.ipvs_sets import IpSet
from proxy.kube_proxy.options import options_for

DATA = Path(__file__).resolve().parents[1] / "data" / "kube_proxy_ipvs"


def load_text(*parts: str) -> Cluster:
    """Load manifests given as YAML parts, each dedented on its own, without the DNS addon
    (the expected tables, like upstream's fake proxier, hold only the Services given)."""
    text = "".join(textwrap.dedent(p) for p in parts)
    return load(["-"], stdin=io.StringIO(text), overrides={"dns_addon": False})


def compiled(cluster: Cluster, node: str, fam: str = "IPv4") -> IpvsState:
    return compile_ipvs(cluster, options_for(cluster, node, fam))


def table(state: IpvsState) -> dict[str, list[str]]:
    """Virtual servers as "PROT address:port" -> real server endpoints."""
    return {v.label.replace("  ", " "): [r.endpoint for r in v.real_servers]
            for v in state.virtual_servers}


def chain(state: IpvsState, name: str) -> list[list[str]]:
    return [[r.target, r.match_set or ""] for r in state.rules if r.chain == name]


def assert_text(actual: str, expected: str) -> None:
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            "expected", "netsim"))
        pytest.fail(f"text differs:\n{diff}")


def node_doc(name: str, *addresses: tuple[str, str], pod_cidr: str | None = None) -> str:
    lines = "".join(f"\n  - {{type: {t}, address: \"{a}\"}}" for t, a in addresses)
    spec = f"spec: {{podCIDR: {pod_cidr}}}\n" if pod_cidr else ""
    return (f"apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n{spec}"
            f"status:\n  addresses:{lines}\n---\n")


def proxy_config(**fields: object) -> str:
    body = yaml.safe_dump({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                           "kind": "KubeProxyConfiguration", "mode": "ipvs", **fields})
    return body + "---\n"


def slice_doc(service: str, *endpoints: tuple[str, str | None], port: int = 8080,
              protocol: str = "TCP", namespace: str = "default", name: str = "",
              ready: bool = True) -> str:
    eps = "".join(f"\n- addresses: [\"{ip}\"]" + (f"\n  nodeName: {node}" if node else "")
                  + ("" if ready else "\n  conditions: {ready: false}")
                  for ip, node in endpoints)
    family = "IPv6" if ":" in endpoints[0][0] else "IPv4"
    return (f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
            f"  name: {name or service + '-x'}\n  namespace: {namespace}\n"
            f"  labels: {{kubernetes.io/service-name: {service}}}\naddressType: {family}\n"
            f"endpoints:{eps}\nports: [{{port: {port}, protocol: {protocol}}}]\n---\n")


NODES = (node_doc("n1", ("InternalIP", "172.18.0.3")) +
         node_doc("n2", ("InternalIP", "172.18.0.4")))


# ---------------------------------------------------------------- upstream proxier_test.go


def _upstream_cases() -> list[dict]:
    return yaml.safe_load((DATA / "upstream_cases.yaml").read_text())


@pytest.mark.parametrize("case", _upstream_cases(), ids=lambda c: c["name"])
def test_upstream_proxier_cases(case: dict) -> None:
    text = ("apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nmetadata: {name: netsim}\n"
            "spec:\n  nodePortRange: {from: 1, to: 32767}\n---\n"
            + node_doc("test-node", *(("InternalIP", ip) for ip in case["node_ips"]))
            + node_doc("other-node", ("InternalIP", "100.101.102.200")))
    if case.get("node_port_addresses"):
        text += proxy_config(nodePortAddresses=case["node_port_addresses"])
    cluster = load_text(text + case["manifests"])
    state = compiled(cluster, "test-node", case.get("family", "IPv4"))
    expect, got = case["expect"], table(state)
    if "virtual_servers" in expect:
        assert got == expect["virtual_servers"]
    if "vs_count" in expect:
        assert len(got) == expect["vs_count"], got
    for vs, real in expect.get("some_virtual_servers", {}).items():
        assert got.get(vs) == real, vs
    for name, entries in expect.get("ipsets", {}).items():
        assert list(state.ipset(name).entries) == entries, name
    for name, rules in expect.get("chains", {}).items():
        assert chain(state, name) == rules, name


# ---------------------------------------------------------------- whole texts (kind fixture)


@pytest.fixture(scope="module")
def kind_worker() -> IpvsState:
    cluster = load([str(DATA / "kind.yaml")])
    return compiled(cluster, "kind-worker")


@pytest.mark.parametrize("renderer, fixture", [
    ("ipvsadm_text", "kind-worker.ipvsadm.txt"),
    ("restore_text", "kind-worker.restore.txt"),
    ("save_text", "kind-worker.save.txt"),
    ("ipset_text", "kind-worker.ipset.txt"),
])
def test_kind_worker_texts(kind_worker: IpvsState, renderer: str, fixture: str) -> None:
    assert_text(getattr(kind_worker, renderer)(), (DATA / fixture).read_text())


def test_kind_worker_dummy_device_holds_every_cluster_ip(kind_worker: IpvsState) -> None:
    assert kind_worker.dummy_addresses == ("10.96.0.1", "10.96.0.10", "10.96.100.50",
                                           "10.96.200.1")
    assert kind_worker.ipset(S.IPVS_IPS).entries == kind_worker.dummy_addresses


# ---------------------------------------------------------------- virtual and real servers


def test_cluster_ip_virtual_server_has_both_endpoints_weight_one_masq() -> None:
    cluster = load_text(NODES, """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec: {clusterIP: 10.96.0.50, ports: [{port: 80, targetPort: 8080}]}
        ---
        """, slice_doc("web", ("10.244.2.7", "n2"), ("10.244.1.5", "n1")))
    vs = compiled(cluster, "n1").virtual_server("10.96.0.50", "TCP", 80)
    assert vs is not None and vs.kind == "ClusterIP" and vs.scheduler == "rr"
    assert vs.real_servers == (RealServer("10.244.1.5", 8080), RealServer("10.244.2.7", 8080))
    assert all(r.weight == 1 and r.forward == "Masq" for r in vs.real_servers)


def test_node_port_listens_on_every_node_address_and_fills_the_bitmap() -> None:
    cluster = load_text(node_doc("n1", ("InternalIP", "172.18.0.3"),
                                 ("ExternalIP", "203.0.113.3")), """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          type: NodePort
          clusterIP: 10.96.0.50
          ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
        ---
        """, slice_doc("web", ("10.244.1.5", "n1")))
    state = compiled(cluster, "n1")
    assert table(state) == {"TCP 172.18.0.3:30080": ["10.244.1.5:8080"],
                            "TCP 203.0.113.3:30080": ["10.244.1.5:8080"],
                            "TCP 10.96.0.50:80": ["10.244.1.5:8080"]}
    assert state.ipset(S.NODE_PORT_TCP).entries == ("30080",)
    assert state.dummy_addresses == ("10.96.0.50",)  # node addresses are never bound


@pytest.mark.parametrize("addresses, expected", [
    (["172.18.0.0/16"], ["TCP 172.18.0.3:30080"]),
    (["primary"], ["TCP 172.18.0.3:30080"]),
    (["0.0.0.0/0"], ["TCP 172.18.0.3:30080", "TCP 192.168.9.3:30080"]),
    (["10.0.0.0/8"], []),
])
def test_node_port_addresses_select_listening_addresses(addresses: list[str],
                                                        expected: list[str]) -> None:
    cluster = load_text(proxy_config(nodePortAddresses=addresses)
                        + node_doc("n1", ("InternalIP", "172.18.0.3"),
                                   ("InternalIP", "192.168.9.3")), """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          type: LoadBalancer
          clusterIP: 10.96.0.50
          externalTrafficPolicy: Local
          healthCheckNodePort: 32100
          ports: [{port: 80, nodePort: 30080}]
        """)
    state = compiled(cluster, "n1")
    assert [k for k in table(state) if k.endswith(":30080")] == expected
    # kube-proxy `continue`s past a NodePort with no address to listen on, skipping the
    # port's ipset entries and its health-check port with it
    assert state.ipset(S.NODE_PORT_TCP).entries == (("30080",) if expected else ())
    assert state.ipset(S.HEALTH_CHECK_NODE_PORT).entries == (("32100",) if expected else ())


LB = """
    apiVersion: v1
    kind: Service
    metadata: {name: lb, namespace: default}
    spec:
      type: LoadBalancer
      allocateLoadBalancerNodePorts: false
      clusterIP: 10.96.0.60
      loadBalancerSourceRanges: RANGES
      ports: [{port: 443, targetPort: 8443}]
    status:
      loadBalancer:
        ingress: [{ip: 198.51.100.9}]
    ---
    """


def test_load_balancer_source_ranges_that_cover_the_node() -> None:
    cluster = load_text(NODES, LB.replace("RANGES", "[172.18.0.0/16, 203.0.113.0/24]"),
                        slice_doc("lb", ("10.244.2.7", "n2"), port=8443))
    state = compiled(cluster, "n1")
    assert table(state)["TCP 198.51.100.9:443"] == ["10.244.2.7:8443"]
    assert state.ipset(S.LOAD_BALANCER).entries == ("198.51.100.9,tcp:443",)
    assert state.ipset(S.LOAD_BALANCER_FW).entries == ("198.51.100.9,tcp:443",)
    assert state.ipset(S.LOAD_BALANCER_SOURCE_CIDR).entries == (
        "198.51.100.9,tcp:443,172.18.0.0/16", "198.51.100.9,tcp:443,203.0.113.0/24")
    # the node's own address is in a range: it may reach the VIP, which it does with the
    # VIP as source address
    assert state.ipset(S.LOAD_BALANCER_SOURCE_IP).entries == (
        "198.51.100.9,tcp:443,198.51.100.9",)
    assert chain(state, "KUBE-SOURCE-RANGES-FIREWALL") == [
        ["RETURN", "KUBE-LOAD-BALANCER-SOURCE-CIDR"], ["RETURN", "KUBE-LOAD-BALANCER-SOURCE-IP"],
        ["DROP", ""]]
    assert chain(state, "KUBE-IPVS-OUT-FILTER") == []
    assert "198.51.100.9" in state.dummy_addresses


def test_load_balancer_source_ranges_that_exclude_the_node_block_it_in_output() -> None:
    cluster = load_text(NODES, LB.replace("RANGES", "[203.0.113.0/24]"),
                        slice_doc("lb", ("10.244.2.7", "n2"), port=8443))
    state = compiled(cluster, "n1")
    assert state.ipset(S.LOAD_BALANCER_SOURCE_IP).entries == ()
    out = [r.restore_line() for r in state.rules if r.chain == "KUBE-IPVS-OUT-FILTER"]
    assert out == ["-A KUBE-IPVS-OUT-FILTER -s 198.51.100.9 -m ipvs --vaddr 198.51.100.9 "
                   "--vproto tcp --vport 443 -j DROP"]
    # libxt_ipvs saves the protocol as a number, before the address
    assert ("-A KUBE-IPVS-OUT-FILTER -s 198.51.100.9/32 -m ipvs --vproto 6 --vaddr "
            "198.51.100.9/32 --vport 443 -j DROP") in state.save_text().splitlines()


def test_zero_prefix_source_range_keeps_its_rule_but_not_its_member() -> None:
    cluster = load_text(NODES, LB.replace("RANGES", "[0.0.0.0/0]"),
                        slice_doc("lb", ("10.244.2.7", "n2"), port=8443))
    cidrs = compiled(cluster, "n1").ipset(S.LOAD_BALANCER_SOURCE_CIDR)
    assert cidrs.entries == ("198.51.100.9,tcp:443,0.0.0.0/0",)
    assert cidrs.members == ()  # `ipset add` refuses a zero prefix; the set stays empty
    state = compiled(cluster, "n1")
    assert ["RETURN", "KUBE-LOAD-BALANCER-SOURCE-CIDR"] in chain(
        state, "KUBE-SOURCE-RANGES-FIREWALL")
    assert "Number of entries: 0" in cidrs.list_text(1)


def test_external_ips_get_virtual_servers_and_only_foreign_ones_are_bound() -> None:
    cluster = load_text(NODES, """
        apiVersion: v1
        kind: Service
        metadata: {name: ext, namespace: default}
        spec:
          clusterIP: 10.96.0.70
          externalIPs: [203.0.113.7, 172.18.0.3]
          ports: [{port: 80, targetPort: 8080}]
        ---
        """, slice_doc("ext", ("10.244.2.7", "n2")))
    state = compiled(cluster, "n1")
    assert table(state) == {"TCP 172.18.0.3:80": ["10.244.2.7:8080"],
                            "TCP 203.0.113.7:80": ["10.244.2.7:8080"],
                            "TCP 10.96.0.70:80": ["10.244.2.7:8080"]}
    assert state.dummy_addresses == ("10.96.0.70", "203.0.113.7")
    assert state.ipset(S.EXTERNAL_IP).entries == ("172.18.0.3,tcp:80", "203.0.113.7,tcp:80")
    assert chain(state, "KUBE-SERVICES") == [
        ["RETURN", ""], ["KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"],
        ["KUBE-MARK-MASQ", "KUBE-EXTERNAL-IP"], ["ACCEPT", "KUBE-EXTERNAL-IP"],
        ["ACCEPT", "KUBE-EXTERNAL-IP"], ["KUBE-NODE-PORT", ""], ["ACCEPT", "KUBE-CLUSTER-IP"]]


ETP_LOCAL = """
    apiVersion: v1
    kind: Service
    metadata: {name: lb, namespace: default}
    spec:
      type: LoadBalancer
      externalTrafficPolicy: Local
      healthCheckNodePort: 32100
      clusterIP: 10.96.0.80
      externalIPs: [203.0.113.8]
      ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
    status:
      loadBalancer:
        ingress: [{ip: 198.51.100.8}]
    ---
    """


def test_external_traffic_policy_local_uses_local_endpoints_and_local_sets() -> None:
    cluster = load_text(NODES, ETP_LOCAL, slice_doc(
        "lb", ("10.244.1.5", "n1"), ("10.244.2.7", "n2"), ("10.244.2.8", "n2")))
    state = compiled(cluster, "n1")
    assert table(state) == {
        "TCP 172.18.0.3:30090": ["10.244.1.5:8080"],
        "TCP 198.51.100.8:80": ["10.244.1.5:8080"],
        "TCP 203.0.113.8:80": ["10.244.1.5:8080"],
        "TCP 10.96.0.80:80": ["10.244.1.5:8080", "10.244.2.7:8080", "10.244.2.8:8080"]}
    assert all(v.local for v in state.virtual_servers if v.kind != "ClusterIP")
    assert state.ipset(S.EXTERNAL_IP_LOCAL).entries == ("203.0.113.8,tcp:80",)
    assert state.ipset(S.EXTERNAL_IP).entries == ()
    assert state.ipset(S.LOAD_BALANCER_LOCAL).entries == ("198.51.100.8,tcp:80",)
    assert state.ipset(S.NODE_PORT_LOCAL_TCP).entries == ("30090",)
    assert state.ipset(S.NODE_PORT_TCP).entries == ("30090",)
    assert state.ipset(S.HEALTH_CHECK_NODE_PORT).entries == ("32100",)
    assert state.ipset(S.LOOP_BACK).entries == ("10.244.1.5,tcp:8080,10.244.1.5",)
    assert chain(state, "KUBE-NODE-PORT") == [
        ["RETURN", "KUBE-NODE-PORT-LOCAL-TCP"], ["KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"],
        ["ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"]]


def test_external_traffic_policy_local_without_local_endpoints_falls_back() -> None:
    """syncEndpoint (kubernetes#97081): no local endpoint means the cluster list, so pods on
    this node still reach the service through its external addresses."""
    cluster = load_text(NODES, ETP_LOCAL, slice_doc("lb", ("10.244.2.7", "n2")))
    state = compiled(cluster, "n1")
    assert set(map(tuple, table(state).values())) == {("10.244.2.7:8080",)}
    assert state.ipset(S.LOOP_BACK).entries == ()


@pytest.mark.parametrize("node, expected", [("n1", ["10.244.1.5:8080"]), ("n3", [])])
def test_internal_traffic_policy_local(node: str, expected: list[str]) -> None:
    cluster = load_text(NODES + node_doc("n3", ("InternalIP", "172.18.0.5")), """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          clusterIP: 10.96.0.90
          internalTrafficPolicy: Local
          ports: [{port: 80, targetPort: 8080}]
        ---
        """, slice_doc("web", ("10.244.1.5", "n1"), ("10.244.2.7", "n2")))
    vs = compiled(cluster, node).virtual_server("10.96.0.90", "tcp", 80)
    assert vs is not None and vs.local
    assert [r.endpoint for r in vs.real_servers] == expected


def test_client_ip_affinity_makes_every_virtual_server_persistent() -> None:
    cluster = load_text(NODES, """
        apiVersion: v1
        kind: Service
        metadata: {name: sticky, namespace: default}
        spec:
          type: NodePort
          clusterIP: 10.96.0.100
          sessionAffinity: ClientIP
          sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
          ports: [{port: 80, targetPort: 8080, nodePort: 30100}]
        ---
        """, slice_doc("sticky", ("10.244.1.5", "n1")))
    state = compiled(cluster, "n1")
    assert {(v.flags, v.timeout) for v in state.virtual_servers} == {(FLAG_PERSISTENT, 600)}
    assert "TCP  10.96.0.100:80 rr persistent 600" in state.ipvsadm_text().splitlines()


def test_service_without_endpoints_has_a_virtual_server_without_real_servers() -> None:
    cluster = load_text(NODES, """
        apiVersion: v1
        kind: Service
        metadata: {name: idle, namespace: default}
        spec: {clusterIP: 10.96.0.110, ports: [{port: 8080}]}
        """)
    state = compiled(cluster, "n1")
    assert table(state) == {"TCP 10.96.0.110:8080": []}
    assert state.ipvsadm_text().splitlines()[3:] == ["TCP  10.96.0.110:8080 rr"]
    assert state.ipset(S.CLUSTER_IP).entries == ("10.96.0.110,tcp:8080",)


def test_loop_back_set_holds_every_local_endpoint_ready_or_not() -> None:
    cluster = load_text(NODES, """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec: {clusterIP: 10.96.0.120, ports: [{port: 80, targetPort: 8080}]}
        ---
        """, slice_doc("web", ("10.244.1.6", "n1"), ready=False, name="a"),
        slice_doc("web", ("10.244.1.5", "n1"), ("10.244.2.7", "n2"), name="b"))
    state = compiled(cluster, "n1")
    assert state.ipset(S.LOOP_BACK).entries == ("10.244.1.5,tcp:8080,10.244.1.5",
                                                "10.244.1.6,tcp:8080,10.244.1.6")
    assert table(state)["TCP 10.96.0.120:80"] == ["10.244.1.5:8080", "10.244.2.7:8080"]


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("config, expected", [
    ({"masqueradeAll": True}, "dst,dst -j KUBE-MARK-MASQ"),
    ({}, "src,dst -j KUBE-MARK-MASQ"),
    ({"clusterCIDR": "10.244.0.0/16"}, "dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ"),
    ({"detectLocalMode": "NodeCIDR"}, "dst,dst ! -s 10.244.1.0/24 -j KUBE-MARK-MASQ"),
    ({"detectLocalMode": "InterfaceNamePrefix", "detectLocal": {"interfaceNamePrefix": "cali"}},
     "dst,dst ! -i cali+ -j KUBE-MARK-MASQ"),
])
def test_cluster_ip_masquerade_rule_follows_the_local_detector(config: dict,
                                                               expected: str) -> None:
    if "masqueradeAll" in config:
        config = {"iptables": {"masqueradeAll": True}}
    cluster = load_text(proxy_config(**config)
                        + node_doc("n1", ("InternalIP", "172.18.0.3"), pod_cidr="10.244.1.0/24")
                       , """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec: {clusterIP: 10.96.0.130, ports: [{port: 80}]}
        """)
    rule = next(r for r in compiled(cluster, "n1").rules
                if r.target == "KUBE-MARK-MASQ" and r.match_set == "KUBE-CLUSTER-IP")
    assert rule.restore_line().endswith("--match-set KUBE-CLUSTER-IP " + expected)


@pytest.mark.parametrize("scheduler, flags, shown", [
    ("lc", 0, "TCP  10.96.0.140:80 lc"),
    ("mh", FLAG_SOURCE_HASH, "TCP  10.96.0.140:80 mh (mh-port)"),
])
def test_scheduler_comes_from_kube_proxy_configuration(scheduler: str, flags: int,
                                                        shown: str) -> None:
    cluster = load_text(proxy_config(ipvs={"scheduler": scheduler}) + NODES, """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec: {clusterIP: 10.96.0.140, ports: [{port: 80}]}
        """)
    state = compiled(cluster, "n1")
    assert [(v.scheduler, v.flags) for v in state.virtual_servers] == [(scheduler, flags)]
    assert shown in state.ipvsadm_text().splitlines()


def test_strict_arp_adds_the_arp_sysctls() -> None:
    cluster = load_text(proxy_config(ipvs={"strictARP": True}) + NODES)
    assert ("net/ipv4/conf/all/arp_ignore", "1") in compiled(cluster, "n1").sysctls
    assert ("net/ipv4/conf/all/arp_ignore", "1") not in compiled(
        load_text(NODES), "n1").sysctls


# ---------------------------------------------------------------- IPv6


@pytest.fixture(scope="module")
def dualstack() -> Cluster:
    return load([str(DATA / "dualstack.yaml")])


def test_ipv6_set_names_carry_the_kube_6_prefix_cut_to_31(dualstack: Cluster) -> None:
    state = compiled(dualstack, "n1", "IPv6")
    assert [s.name for s in state.ipsets] == [
        "KUBE-6-LOOP-BACK", "KUBE-6-CLUSTER-IP", "KUBE-6-EXTERNAL-IP",
        "KUBE-6-EXTERNAL-IP-LOCAL", "KUBE-6-LOAD-BALANCER", "KUBE-6-LOAD-BALANCER-FW",
        "KUBE-6-LOAD-BALANCER-LOCAL", "KUBE-6-LOAD-BALANCER-SOURCE-IP",
        "KUBE-6-LOAD-BALANCER-SOURCE-CID", "KUBE-6-NODE-PORT-TCP", "KUBE-6-NODE-PORT-LOCAL-TCP",
        "KUBE-6-NODE-PORT-UDP", "KUBE-6-NODE-PORT-LOCAL-UDP", "KUBE-6-NODE-PORT-SCTP-HASH",
        "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS", "KUBE-6-HEALTH-CHECK-NODE-PORT", "KUBE-6-IPVS-IPS"]
    assert {s.family for s in state.ipsets} == {"inet6"}
    assert state.ipset(S.NODE_PORT_SCTP).entries == ("fc00:f853:ccd:e793::3,sctp:30009",)
    cidrs = state.ipset(S.LOAD_BALANCER_SOURCE_CIDR)  # ::/0 cannot be stored
    assert len(cidrs.entries) == 6
    assert set(cidrs.members) == {"2001:db8:2::9,tcp:80,2001:db8::/32",
                                  "2001:db8:2::9,udp:53,2001:db8::/32",
                                  "2001:db8:2::9,sctp:9,2001:db8::/32"}
    assert state.rules[0].restore_line() == "-A KUBE-SERVICES -s ::1/128 -j RETURN"
    ipv4 = compiled(dualstack, "n1")
    assert ipv4.ipset(S.LOAD_BALANCER_SOURCE_CIDR).name == "KUBE-LOAD-BALANCER-SOURCE-CIDR"


def test_ipv6_ipvsadm_lines_bracket_addresses(dualstack: Cluster) -> None:
    lines = compiled(dualstack, "n1", "IPv6").ipvsadm_text().splitlines()
    assert lines[3] == "TCP  [fc00:f853:ccd:e793::3]:30080 mh (mh-port)"
    assert lines[4] == "  -> [fd00:10:244:1::5]:8080      Masq    1      0          0         "
    assert "SCTP  [2001:db8:2::9]:9 mh (mh-port)" in lines


def test_ipv6_dummy_addresses_skip_node_addresses(dualstack: Cluster) -> None:
    assert compiled(dualstack, "n1", "IPv6").dummy_addresses == (
        "2001:db8:1::7", "2001:db8:2::9", "fd00:10:96::20")


# ---------------------------------------------------------------- ipvsadm ordering, hooks, sets


def test_ipvsadm_order_matches_a_real_listing() -> None:
    """The order of a real `ipvsadm -Ln` on a kubeadm v1.20 node (published in a blog post):
    the docker0 NodePort 172.17.0.1 lists before 10.10.110.190 because libipvs subtracts
    addresses as unsigned 32-bit numbers and reads the result as an int. (Its 127.0.0.1
    NodePort is left out: netsim does not open NodePorts on loopback.)"""
    listed = [("172.17.0.1", 30023), ("10.10.110.190", 30023), ("10.96.0.1", 443),
              ("10.96.0.10", 53), ("10.96.0.10", 9153), ("10.97.105.36", 80),
              ("10.98.47.133", 443), ("10.110.221.168", 8000), ("10.244.235.192", 30023)]
    shuffled = [listed[i] for i in (4, 8, 0, 6, 2, 7, 1, 5, 3)]
    servers = [VirtualServer(a, p, "TCP", "rr") for a, p in shuffled]
    servers.append(VirtualServer("10.96.0.10", 53, "UDP", "rr"))
    order = [(v.protocol, v.address, v.port) for v in ipvsadm_order(servers)]
    assert order == [("TCP", a, p) for a, p in listed] + [("UDP", "10.96.0.10", 53)]


def test_hook_rules_end_up_in_reverse_order_of_ensuring() -> None:
    state = compiled(load_text(NODES), "n1")
    hooks = [(r.table, r.chain, r.target) for r in state.hooks]
    assert hooks == [
        ("filter", "INPUT", "KUBE-IPVS-FILTER"), ("filter", "INPUT", "KUBE-PROXY-FIREWALL"),
        ("filter", "INPUT", "KUBE-NODE-PORT"), ("filter", "FORWARD", "KUBE-PROXY-FIREWALL"),
        ("filter", "FORWARD", "KUBE-FORWARD"), ("filter", "OUTPUT", "KUBE-IPVS-OUT-FILTER"),
        ("nat", "PREROUTING", "KUBE-SERVICES"), ("nat", "OUTPUT", "KUBE-SERVICES"),
        ("nat", "POSTROUTING", "KUBE-POSTROUTING")]


@pytest.mark.parametrize("set_type, member, probe, expected", [
    (S.HASH_IP_PORT, "10.96.0.10,udp:53", ("10.96.0.10", "udp", 53, None), True),
    (S.HASH_IP_PORT, "10.96.0.10,udp:53", ("10.96.0.10", "tcp", 53, None), False),
    (S.HASH_IP_PORT_IP, "10.244.1.5,tcp:80,10.244.1.5", ("10.244.1.5", "tcp", 80, "10.244.1.5"),
     True),
    (S.HASH_IP_PORT_IP, "10.244.1.5,tcp:80,10.244.1.5", ("10.244.1.5", "tcp", 80, "10.0.0.1"),
     False),
    (S.HASH_IP_PORT_NET, "1.2.3.4,tcp:80,10.0.0.0/8", ("1.2.3.4", "tcp", 80, "10.9.9.9"), True),
    (S.HASH_IP_PORT_NET, "1.2.3.4,tcp:80,10.0.0.0/8", ("1.2.3.4", "tcp", 80, "11.0.0.1"), False),
    (S.BITMAP_PORT, "30080", (None, None, 30080, None), True),
    (S.HASH_IP, "10.96.0.1", ("10.96.0.1", None, None, None), True),
])
def test_ipset_membership(set_type: str, member: str, probe: tuple, expected: bool) -> None:
    ipset = IpSet(base="X", name="X", type=set_type, comment="", family="inet",
                  entries=(member,))
    assert ipset.contains(*probe) is expected


# ---------------------------------------------------------------- against the kernel


def _kernel_unavailable() -> str | None:
    for tool in ("ip", "ipset", "iptables-restore", "ip6tables-restore", "iptables-save"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        return "needs root for network namespaces"
    return None


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_unavailable() is not None, reason=str(_kernel_unavailable()))
@pytest.mark.parametrize("fixture, node, fam", [("kind.yaml", "kind-worker", "IPv4"),
                                                ("dualstack.yaml", "n1", "IPv4"),
                                                ("dualstack.yaml", "n1", "IPv6")])
def test_kernel_agrees_with_save_text_and_ipset_list(fixture: str, node: str, fam: str) -> None:
    """Create the sets, restore the payload and ensure the hooks as kube-proxy does, in a
    fresh network namespace; iptables-save must print save_text() and ipset list the same
    sets, references and members (member order, revisions, headers and sizes aside)."""
    state = compiled(load([str(DATA / fixture)]), node, fam)
    if any(r.chain == "KUBE-IPVS-OUT-FILTER" for r in state.rules):
        pytest.skip("the ipvs match needs the xt_ipvs module")
    ns = f"netsim-ipvs-{uuid.uuid4().hex[:8]}"
    tool = "ip6tables" if state.ipv6 else "iptables"

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["ip", "netns", "exec", ns, *args], input=stdin,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
        return done.stdout

    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        pytest.skip("cannot create a network namespace")
    try:
        creates = []
        for s in state.ipsets:
            header = "range 0-65535" if s.type == S.BITMAP_PORT else \
                f"family {s.family} hashsize 1024 maxelem 65536"
            creates.append(f"create {s.name} {s.type} {header}")
            creates += [f"add {s.name} {m}" for m in s.members]
        run("ipset", "restore", stdin="\n".join(creates) + "\n")
        run(f"{tool}-restore", "--noflush", stdin=state.restore_text())
        for table_name, builtin, target, text in IPVS_JUMP_CHAINS:
            run(tool, "-t", table_name, "-I", builtin, "1", "-m", "comment", "--comment", text,
                "-j", target)
        saved = "".join(line for line in run(f"{tool}-save").splitlines(True)
                        if not line.startswith("#"))
        assert_text(saved, state.save_text())
        assert _comparable(run("ipset", "list")) == _comparable(state.ipset_text())
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _comparable(listing: str) -> list[list[str]]:
    out = []
    for block in listing.strip().split("\n\n"):
        lines = [ln for ln in block.splitlines()
                 if not ln.startswith(("Revision:", "Header:", "Size in memory:"))]
        cut = lines.index("Members:") + 1
        out.append(lines[:cut] + sorted(lines[cut:]))
    return out
