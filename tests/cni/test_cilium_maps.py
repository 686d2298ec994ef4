"""Identities, ipcache, endpoint and load-balancing maps of the Cilium emulation.

Expectations come from Cilium's documented behaviour (../shared/reference/cni.md 2.1-2.2,
docs.cilium.io network/kubernetes/kubeproxy-free, pkg/labelsfilter defaults) and are written
by hand for the small clusters below.
"""

from __future__ import annotations

import textwrap

import pytest

from cni.cilium import compile_cilium
from cni.cilium_identity import (
    HOST,
    LOCAL_IDENTITY_FLAG,
    REMOTE_NODE,
    WORLD,
    WORLD_IPV4,
    WORLD_IPV6,
    identity_relevant,
)
from cni.cilium_maps import ENDPOINT_FLAG_HOST, SCOPE_INTERNAL, SVC_FLAG_ROUTABLE
from netsim.topology import build_topology, host_id
from tests.helpers import load_yaml

NODES = """
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 192.168.0.12}]}
"""


def pod(ns: str, name: str, node: str, ip: str, labels: str, extra: str = "",
        meta: str = "") -> str:
    return textwrap.dedent(f"""
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {ns}, labels: {labels}{meta}}}
        spec:
          nodeName: {node}
          containers: [{{name: c, image: i, ports: [{{name: http, containerPort: 8080}}]}}]
        {extra}
        status: {{phase: Running, podIP: {ip}}}
        """)


def build(*docs: str, **overrides):
    text = NODES + "".join(docs)
    cluster = load_yaml(text, overrides={"cni": "cilium", **overrides})
    return cluster, compile_cilium(cluster)


# ---------------------------------------------------------------- identities


def test_equal_label_sets_share_an_identity_and_numbers_start_at_256():
    cluster, state = build(
        pod("a", "web-1", "n1", "10.244.0.10", "{app: web, pod-template-hash: 5d8f}"),
        pod("a", "web-2", "n2", "10.244.1.10", "{app: web, pod-template-hash: 77aa}"),
        pod("b", "web", "n1", "10.244.0.11", "{app: web}"),
        pod("a", "api", "n2", "10.244.1.11", "{app: api}"))
    ids = {p.key: state.identity_of_pod(p) for p in cluster.pods}
    # pod-template-hash is not identity-relevant, so both replicas share one identity;
    # the same labels in another namespace are another identity.
    assert ids["a/web-1"] == ids["a/web-2"] != ids["b/web"]
    # sorted label sets: a/api ("k8s:app=api" first), a/web, b/web
    assert (ids["a/api"], ids["a/web-1"], ids["b/web"]) == (256, 257, 258)
    labels = state.identities[257].labels
    assert "k8s:io.kubernetes.pod.namespace=a" in labels
    assert "k8s:io.cilium.k8s.policy.serviceaccount=default" in labels
    assert "k8s:io.cilium.k8s.policy.cluster=default" in labels
    assert "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=a" in labels
    assert not any("pod-template-hash" in label for label in labels)
    assert list(labels) == sorted(labels)


def test_the_numbering_does_not_depend_on_input_order():
    docs = [pod("a", f"p{i}", "n1", f"10.244.0.{10 + i}", f"{{app: a{i}}}") for i in range(4)]
    _, forward = build(*docs)
    _, backward = build(*reversed(docs))
    assert {k: v.labels for k, v in forward.identities.items()} == \
        {k: v.labels for k, v in backward.identities.items()}


@pytest.mark.parametrize(("key", "kept"), [
    ("app", True), ("app.kubernetes.io/name", True), ("tier", True),
    ("pod-template-hash", False), ("controller-revision-hash", False),
    ("statefulset.kubernetes.io/pod-name", False), ("apps.kubernetes.io/pod-index", False),
    ("batch.kubernetes.io/controller-uid", False), ("controller-uid", False),
    ("kubernetes.io/hostname", False), ("io.kubernetes.container.name", False),
    ("beta.kubernetes.io/arch", False), ("pod-template-generation", False),
])
def test_default_label_filter(key, kept):
    assert identity_relevant(key) is kept


def test_reserved_identities_and_host_network_pods():
    cluster, state = build(
        pod("kube-system", "agent", "n1", "192.168.0.11", "{app: agent}",
            extra="  hostNetwork: true"))
    names = {i: state.identities[i].labels for i in range(1, 12)}
    assert names[HOST] == ("reserved:host",) and names[WORLD] == ("reserved:world",)
    assert names[REMOTE_NODE] == ("reserved:remote-node",)
    assert names[WORLD_IPV4] == ("reserved:world-ipv4",)
    assert names[11] == ("reserved:encrypted-overlay",)
    agent = cluster.pod("kube-system", "agent")
    assert state.identity_of_pod(agent) == HOST
    assert state.identity_of_pod(agent, from_node="n1") == HOST
    assert state.identity_of_pod(agent, from_node="n2") == REMOTE_NODE
    assert state.node("n1").endpoint("192.168.0.11").is_host  # no endpoint of its own


def test_cidr_identities_are_node_local():
    _, state = build("""
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: out}
spec:
  endpointSelector: {}
  egress: [{toCIDRSet: [{cidr: 198.51.100.0/24, except: [198.51.100.0/28]}]}]
""")
    cidr = {i.cidr: i.id for i in state.identities.values() if i.cidr}
    assert cidr == {"198.51.100.0/24": LOCAL_IDENTITY_FLAG | 1,
                    "198.51.100.0/28": LOCAL_IDENTITY_FLAG | 2}
    assert state.identities[LOCAL_IDENTITY_FLAG | 1].labels == ("cidr:198.51.100.0/24",
                                                                "reserved:world")


# ---------------------------------------------------------------- ipcache


@pytest.mark.parametrize("routing", ["tunnel", "native"])
def test_ipcache_on_each_node(routing):
    cluster, state = build(pod("a", "x", "n1", "10.244.0.10", "{app: x}"),
                           pod("a", "y", "n2", "10.244.1.10", "{app: y}"),
                           cilium_routing_mode=routing)
    n1, n2 = state.node("n1"), state.node("n2")
    x = state.identity_of_pod(cluster.pod("a", "x"))
    local, remote = n1.ipcache_lookup("10.244.0.10"), n2.ipcache_lookup("10.244.0.10")
    assert (local.prefix, local.identity, local.tunnel_endpoint) == ("10.244.0.10/32", x, None)
    # The hosting node's address is the tunnel endpoint on every other node, in native
    # routing too (the ipcache listener writes the host IP whenever it is not the local one).
    assert (remote.identity, remote.tunnel_endpoint) == (x, "192.168.0.11")
    assert n1.ipcache_lookup("192.168.0.11").identity == HOST
    assert n2.ipcache_lookup("192.168.0.11").identity == REMOTE_NODE
    assert n2.ipcache_lookup("192.168.0.11").tunnel_endpoint is None
    world = n1.ipcache_lookup("1.1.1.1")
    assert (world.prefix, world.identity, world.tunnel_text) == ("0.0.0.0/0", WORLD, "0.0.0.0")


def test_dual_stack_world_is_split_per_family():
    _, state = build(pod("a", "x", "n1", "10.244.0.10", "{app: x}"),
                     pod_cidrs=("10.244.0.0/16", "fd00:10:244::/56"))
    node = state.node("n1")
    assert node.ipcache_lookup("1.1.1.1").identity == WORLD_IPV4
    assert node.ipcache_lookup("2001:db8::1").identity == WORLD_IPV6


# ---------------------------------------------------------------- endpoints


def test_endpoints_follow_the_topology_and_keep_their_ids():
    docs = [pod("a", "x", "n1", "10.244.0.10", "{app: x}"),
            pod("a", "y", "n1", "10.244.0.11", "{app: y}"),
            pod("a", "z", "n2", "10.244.1.10", "{app: z}")]
    cluster, state = build(*docs)
    n1 = state.node("n1")
    graph = build_topology(cluster)
    veths = {i.peer[0]: i for i in graph.nodes[host_id("n1")]["interfaces"]
             if i.name.startswith("lxc")}
    for name in ("x", "y"):
        entry = n1.endpoint(cluster.pod("a", name).ip)
        pod_eth0 = graph.nodes[f"pod:a/{name}"]["interfaces"][0]
        assert entry.interface == pod_eth0.peer[1]
        assert entry.node_mac == veths[f"pod:a/{name}"].mac and entry.mac == pod_eth0.mac
        assert 1 <= entry.id <= 4095 and len(entry.interface) == 15
    assert n1.endpoint("10.244.1.10") is None  # a remote pod: no lxc entry
    hosts = [e for e in n1.endpoints_by_ip.values() if e.flags & ENDPOINT_FLAG_HOST]
    assert {e.ip for e in hosts} >= {"192.168.0.11"}
    _, more = build(*docs, pod("a", "w", "n1", "10.244.0.12", "{app: w}"))
    assert more.node("n1").endpoint("10.244.0.10").id == n1.endpoint("10.244.0.10").id


# ---------------------------------------------------------------- load balancing


def service(name: str, spec: str, status: str = "") -> str:
    return (f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: a}}\n"
            "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ") + status)


WEB = (pod("a", "web-1", "n1", "10.244.0.10", "{app: web}")
       + pod("a", "web-2", "n2", "10.244.1.10", "{app: web}"))


def test_service_layout_master_slots_backends_revnat():
    _, state = build(WEB, service("web", """
        clusterIP: 10.96.0.50
        selector: {app: web}
        ports: [{port: 80, targetPort: 8080}]
        """))
    node = state.node("n1")
    master = node.service_lookup("10.96.0.50", 80, "TCP")
    assert (master.count, len(master.backend_ids), master.flag_words) == \
        (2, 2, ("ClusterIP", "non-routable"))
    backends = [node.backend(b) for b in master.backend_ids]
    assert [(b.address, b.port, b.protocol, b.state) for b in backends] == [
        ("10.244.0.10", 8080, "TCP", "active"), ("10.244.1.10", 8080, "TCP", "active")]
    assert backends[0].pod_key == "a/web-1"
    assert node.revnat(master.rev_nat_index) == ("10.96.0.50", 80)
    assert node.service_lookup("10.96.0.50", 81, "TCP") is None


def test_a_service_without_endpoints_has_count_zero():
    _, state = build(service("empty", """
        clusterIP: 10.96.0.51
        selector: {app: nothing}
        ports: [{port: 80}]
        """))
    master = state.node("n1").service_lookup("10.96.0.51", 80, "TCP")
    assert (master.count, master.backend_ids) == (0, ())


def test_session_affinity_sets_the_flag_and_the_timeout():
    _, state = build(WEB, service("sticky", """
        clusterIP: 10.96.0.52
        selector: {app: web}
        sessionAffinity: ClientIP
        sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
        ports: [{port: 80, targetPort: 8080}]
        """))
    master = state.node("n1").service_lookup("10.96.0.52", 80, "TCP")
    assert "sessionAffinity" in master.flag_words and master.affinity_timeout == 600


def test_nodeport_with_external_traffic_policy_local_has_two_scopes():
    _, state = build(WEB, service("np", """
        type: NodePort
        clusterIP: 10.96.0.53
        externalTrafficPolicy: Local
        selector: {app: web}
        ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
        """))
    n1, n2 = state.node("n1"), state.node("n2")
    ext = n1.service_lookup("192.168.0.11", 30080, "TCP")
    assert ext.flag_words == ("NodePort", "Local", "two-scopes")
    assert [n1.backend(b).address for b in ext.backend_ids] == ["10.244.0.10"]  # own only
    internal = n1.service_lookup("192.168.0.11", 30080, "TCP", scope=SCOPE_INTERNAL)
    assert internal.scope == SCOPE_INTERNAL and internal.count == 2  # iTP Cluster: all
    surrogate = n1.service_lookup("0.0.0.0", 30080, "TCP")
    assert "non-routable" in surrogate.flag_words
    assert n1.service_lookup("192.168.0.12", 30080, "TCP") is None  # n2's address: not here
    assert [n2.backend(b).address
            for b in n2.service_lookup("192.168.0.12", 30080, "TCP").backend_ids] == \
        ["10.244.1.10"]
    cluster_ip = n1.service_lookup("10.96.0.53", 80, "TCP")
    assert cluster_ip.flag_words == ("ClusterIP", "non-routable") and cluster_ip.count == 2


def test_internal_traffic_policy_local_keeps_local_backends_for_the_cluster_ip():
    _, state = build(WEB, service("itp", """
        clusterIP: 10.96.0.54
        internalTrafficPolicy: Local
        selector: {app: web}
        ports: [{port: 80, targetPort: 8080}]
        """))
    node = state.node("n2")
    master = node.service_lookup("10.96.0.54", 80, "TCP")
    assert master.flag_words == ("ClusterIP", "InternalLocal", "non-routable")
    assert [node.backend(b).address for b in master.backend_ids] == ["10.244.1.10"]


def test_loadbalancer_and_external_ips_are_routable_frontends():
    _, state = build(WEB, service("lb", """
        type: LoadBalancer
        clusterIP: 10.96.0.55
        externalIPs: [198.51.100.7]
        selector: {app: web}
        ports: [{port: 443, targetPort: 8080, nodePort: 30443}]
        """, "status: {loadBalancer: {ingress: [{ip: 203.0.113.9}]}}\n"))
    node = state.node("n1")
    lb = node.service_lookup("203.0.113.9", 443, "TCP")
    ext = node.service_lookup("198.51.100.7", 443, "TCP")
    assert lb.type == "LoadBalancer" and lb.flags & SVC_FLAG_ROUTABLE and lb.count == 2
    assert ext.type == "ExternalIPs" and ext.flags & SVC_FLAG_ROUTABLE
    assert node.service_lookup("192.168.0.11", 30443, "TCP").type == "NodePort"
    assert len({lb.rev_nat_index, ext.rev_nat_index,
                node.service_lookup("10.96.0.55", 443, "TCP").rev_nat_index}) == 3


def test_terminating_endpoints_are_a_fallback_only():
    gone = ", deletionTimestamp: '2024-01-01T00:00:00Z'"
    _, state = build(
        pod("a", "web-1", "n1", "10.244.0.10", "{app: web}", meta=gone),
        pod("a", "web-2", "n2", "10.244.1.10", "{app: web}"),
        pod("a", "old-1", "n1", "10.244.0.20", "{app: old}", meta=gone),
        service("web", """
            clusterIP: 10.96.0.56
            selector: {app: web}
            ports: [{port: 80, targetPort: 8080}]
            """),
        service("old", """
            clusterIP: 10.96.0.57
            selector: {app: old}
            ports: [{port: 80, targetPort: 8080}]
            """))
    node = state.node("n1")
    web = node.service_lookup("10.96.0.56", 80, "TCP")
    # a ready backend exists: only it is selectable; the terminating one sits after count
    assert web.count == 1
    assert [(node.backend(b).address, node.backend(b).state) for b in web.backend_ids] == \
        [("10.244.1.10", "active"), ("10.244.0.10", "terminating")]
    old = node.service_lookup("10.96.0.57", 80, "TCP")
    assert old.count == 1 and node.backend(old.backend_ids[0]).state == "terminating"


def test_host_port_frontends_live_on_the_pods_node():
    _, state = build(pod("a", "hp", "n1", "10.244.0.10", "{app: hp}").replace(
        "containerPort: 8080}", "containerPort: 8080, hostPort: 8888}"))
    n1, n2 = state.node("n1"), state.node("n2")
    hp = n1.service_lookup("192.168.0.11", 8888, "TCP")
    assert hp.type == "HostPort" and n1.backend(hp.backend_ids[0]).port == 8080
    assert n1.service_lookup("0.0.0.0", 8888, "TCP") is not None
    assert n2.service_lookup("192.168.0.12", 8888, "TCP") is None


def test_tcp_and_udp_ports_of_one_service_stay_apart():
    _, state = build(WEB, service("dns", """
        clusterIP: 10.96.0.10
        selector: {app: web}
        ports: [{name: udp, port: 53, protocol: UDP, targetPort: 8080},
                {name: tcp, port: 53, protocol: TCP, targetPort: 8080}]
        """))
    node = state.node("n1")
    udp, tcp = (node.service_lookup("10.96.0.10", 53, proto) for proto in ("UDP", "TCP"))
    assert udp.rev_nat_index != tcp.rev_nat_index
    assert {node.backend(b).protocol for b in udp.backend_ids} == {"UDP"}
