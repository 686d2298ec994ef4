"""The topology graph and its renderers, on small clusters built straight from the model."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections import Counter

import networkx as nx
import pytest
from matplotlib import image as mpimg
from rich.console import Console

from netsim.addressing import AddressPlan
from netsim.cluster import Cluster
from netsim.fields import FrozenDict
from netsim.model import Meta, Node, NodeAddress, Pod, PodTemplate, Service, ServicePort, Taint
from netsim.settings import Settings
from netsim.topology import (
    Interface,
    build_topology,
    calico_veth_name,
    cilium_lxc_name,
    edge_ends,
    pod_mac,
    vxlan_vtep_mac,
)
from netsim.topology_export import to_dot, to_graphml, to_json, to_png, to_tree

NODES = {"node1": "172.18.0.2", "node2": "172.18.0.3", "node3": "172.18.0.4"}
BLOCKS = {"node1": "10.244.1.64/26", "node2": "10.244.2.0/26", "node3": "10.244.3.128/26"}
TUNNEL_IPS = {"node1": "10.244.1.64", "node2": "10.244.2.0", "node3": "10.244.3.128"}
# (namespace, name, node, ip, hostNetwork)
PODS = (
    ("default", "nginx", "node1", "10.244.1.65", False),
    ("shop", "cart-7d9f", "node1", "10.244.1.66", False),
    ("shop", "redis-0", "node2", "10.244.2.1", False),
    ("kube-system", "kube-proxy-abcde", "node2", "172.18.0.3", True),
    ("shop", "web-pending", None, None, False),
)


def _template(host_network: bool = False) -> PodTemplate:
    return PodTemplate(
        labels=FrozenDict(), annotations=FrozenDict(), containers=(), host_network=host_network
    )


def _node(name: str) -> Node:
    labels = {"topology.kubernetes.io/zone": "zone-a"}
    taints: tuple[Taint, ...] = ()
    if name == "node1":
        labels["node-role.kubernetes.io/control-plane"] = ""
        taints = (Taint("node-role.kubernetes.io/control-plane", "NoSchedule"),)
    return Node(
        Meta("Node", name, labels=FrozenDict(labels)),
        (NodeAddress("InternalIP", NODES[name]), NodeAddress("Hostname", name)),
        taints=taints,
    )


def _pod(ns: str, name: str, node: str | None, ip: str | None, host_net: bool) -> Pod:
    return Pod(
        Meta("Pod", name, ns, FrozenDict({"app": name.split("-")[0]})),
        _template(host_net),
        node,
        (ip,) if ip else (),
        phase="Running" if node else "Pending",
        workload=f"Deployment/{name}",
    )


def make_cluster(services: tuple[Service, ...] = (), **settings: object) -> Cluster:
    plan = AddressPlan(
        pod_cidrs=("10.244.0.0/16",),
        service_cidrs=("10.96.0.0/12",),
        node_cidrs=("172.18.0.0/16",),
        blocks=FrozenDict({b: n for n, b in BLOCKS.items()}),
        tunnel_ips=FrozenDict({n: (ip,) for n, ip in TUNNEL_IPS.items()}),
    )
    return Cluster(
        settings=Settings(**settings),
        addressing=plan,
        nodes=tuple(_node(n) for n in NODES),
        pods=tuple(_pod(*p) for p in PODS),
        services=services,
    )


def _service(
    name: str,
    type_: str = "ClusterIP",
    ingress: tuple[str, ...] = (),
    external_ips: tuple[str, ...] = (),
) -> Service:
    return Service(
        Meta("Service", name, "shop"),
        type_,
        FrozenDict({"app": name}),
        (ServicePort(80),),
        ("10.96.0.50",),
        external_ips=external_ips,
        load_balancer_ingress=ingress,
    )


def _kinds(graph: nx.Graph) -> tuple[Counter, Counter]:
    nodes = Counter(kind for _, kind in graph.nodes(data="kind"))
    edges = Counter(kind for _, _, kind in graph.edges(data="kind"))
    return nodes, edges


def _iface(graph: nx.Graph, node: str, name: str) -> Interface:
    return next(i for i in graph.nodes[node]["interfaces"] if i.name == name)


# ---------------------------------------------------------------- names from upstream


def test_calico_veth_name_matches_libcalico_go() -> None:
    # cni.md 1.2: default.nginx -> calic440f455693 (workload_endpoint_default.go)
    assert calico_veth_name("default", "nginx") == "calic440f455693"


def test_vxlan_vtep_mac_matches_felix() -> None:
    # cni.md 1.3: 66:2d:bf:44:a6:8b for node2 (felix calc/vxlan_resolver.go)
    assert vxlan_vtep_mac("node2") == "66:2d:bf:44:a6:8b"


def test_cilium_lxc_name_fits_ifnamsiz() -> None:
    name = cilium_lxc_name("default/nginx")
    assert name.startswith("lxc") and len(name) == 15  # IFNAMSIZ - 1
    assert int(name[3:], 16) >= 0


# ---------------------------------------------------------------- graph shape per CNI mode

# 3 hosts + 5 pods + underlay (+ overlay); edges: 3 underlay, 3 veth, 1 host-network (+3 tunnel)
MODES = [
    (dict(cni="calico", calico_encapsulation="None"), None, None),
    (dict(cni="calico", calico_encapsulation="IPIP"), "overlay:ipip", "tunl0"),
    (dict(cni="calico", calico_encapsulation="IPIPCrossSubnet"), "overlay:ipip", "tunl0"),
    (dict(cni="calico", calico_encapsulation="VXLAN"), "overlay:vxlan", "vxlan.calico"),
    (dict(cni="calico", calico_encapsulation="VXLANCrossSubnet"), "overlay:vxlan", "vxlan.calico"),
    (dict(cni="cilium", cilium_routing_mode="tunnel"), "overlay:vxlan", "cilium_vxlan"),
    (
        dict(cni="cilium", cilium_routing_mode="tunnel", cilium_tunnel_protocol="geneve"),
        "overlay:geneve",
        "cilium_geneve",
    ),
    (dict(cni="cilium", cilium_routing_mode="native"), None, None),
]


@pytest.mark.parametrize(
    ("settings", "overlay", "device"),
    MODES,
    ids=[f"{s['cni']}-{o or 'routed'}-{d}" for s, o, d in MODES],
)
def test_counts_and_kinds(settings: dict, overlay: str | None, device: str | None) -> None:
    graph = build_topology(make_cluster(**settings))
    nodes, edges = _kinds(graph)
    tunnels = 3 if overlay else 0
    assert nodes == Counter(
        {"host": 3, "pod": 5, "network": 1, **({"overlay": 1} if overlay else {})}
    )
    assert edges == Counter(
        {"underlay": 3, "veth": 3, "host-network": 1, **({"tunnel": tunnels} if overlay else {})}
    )
    assert graph.number_of_edges() == 7 + tunnels  # one overlay node, not a host mesh
    for host in ("host:node1", "host:node2", "host:node3"):
        assert graph.nodes[host]["tunnel"] == device
        if overlay:
            assert graph.edges[host, overlay] == {"kind": "tunnel", "ifaces": (device, None)}


def test_calico_ipip_host() -> None:
    graph = build_topology(make_cluster(cni="calico", calico_encapsulation="IPIP"))
    host = graph.nodes["host:node1"]
    assert host["name"] == "node1"
    assert host["addresses"] == ("172.18.0.2",)
    assert host["pod_blocks"] == ("10.244.1.64/26",)
    assert host["zone"] == "zone-a"
    assert host["roles"] == ("control-plane",)
    assert host["taints"] == (Taint("node-role.kubernetes.io/control-plane", "NoSchedule"),)
    names = [i.name for i in host["interfaces"]]
    assert names == ["eth0", "tunl0", "calic440f455693", calico_veth_name("shop", "cart-7d9f")]
    eth0 = _iface(graph, "host:node1", "eth0")
    assert eth0.addresses == ("172.18.0.2/16",) and eth0.peer == ("underlay", None)
    assert _iface(graph, "host:node1", "tunl0").addresses == ("10.244.1.64/32",)
    assert graph.nodes["overlay:ipip"]["port"] is None
    assert graph.edges["host:node1", "underlay"] == {"kind": "underlay", "ifaces": ("eth0", None)}


def test_calico_vxlan_device() -> None:
    graph = build_topology(make_cluster(cni="calico", calico_encapsulation="VXLAN"))
    vtep = _iface(graph, "host:node2", "vxlan.calico")
    assert vtep.mac == "66:2d:bf:44:a6:8b"
    assert vtep.addresses == ("10.244.2.0/32",)
    overlay = graph.nodes["overlay:vxlan"]
    assert (overlay["vni"], overlay["port"]) == (4096, 4789)


def test_calico_bgp_has_no_tunnel_device() -> None:
    graph = build_topology(make_cluster(cni="calico", calico_encapsulation="None"))
    kinds = {i.kind for i in graph.nodes["host:node1"]["interfaces"]}
    assert kinds == {"ethernet", "veth"}


def test_calico_veth_pair() -> None:
    graph = build_topology(make_cluster(cni="calico"))
    pod = graph.nodes["pod:default/nginx"]
    assert pod["node"] == "node1" and pod["ips"] == ("10.244.1.65",)
    (eth0,) = pod["interfaces"]
    assert eth0.name == "eth0" and eth0.addresses == ("10.244.1.65/32",)
    assert eth0.peer == ("host:node1", "calic440f455693")
    first = int(eth0.mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered unicast
    host_side = _iface(graph, "host:node1", "calic440f455693")
    assert host_side.mac == "ee:ee:ee:ee:ee:ee"
    assert host_side.peer == ("pod:default/nginx", "eth0")
    assert graph.edges["pod:default/nginx", "host:node1"] == {
        "kind": "veth",
        "ifaces": ("eth0", "calic440f455693"),
    }


def test_calico_mac_annotations_override() -> None:
    cluster = make_cluster(cni="calico", calico_encapsulation="VXLAN")
    node = _node("node2")
    node2 = Node(
        Meta(
            "Node",
            "node2",
            annotations=FrozenDict({"projectcalico.org/VXLANTunnelMACAddr": "66:00:00:00:00:02"}),
        ),
        node.addresses,
    )
    nginx = cluster.pods[0]
    pinned = Pod(
        Meta(
            "Pod",
            "nginx",
            "default",
            annotations=FrozenDict({"cni.projectcalico.org/hwAddr": "0a:58:0a:f4:01:41"}),
        ),
        nginx.spec,
        "node1",
        nginx.ips,
    )
    cluster = Cluster(
        settings=cluster.settings,
        addressing=cluster.addressing,
        nodes=(cluster.nodes[0], node2, cluster.nodes[2]),
        pods=(pinned, *cluster.pods[1:]),
    )
    graph = build_topology(cluster)
    assert _iface(graph, "host:node2", "vxlan.calico").mac == "66:00:00:00:00:02"
    assert graph.nodes["pod:default/nginx"]["interfaces"][0].mac == "0a:58:0a:f4:01:41"
    assert graph.nodes["pod:shop/cart-7d9f"]["interfaces"][0].mac == pod_mac("shop", "cart-7d9f")


def test_cilium_devices() -> None:
    graph = build_topology(make_cluster(cni="cilium", cilium_routing_mode="tunnel"))
    names = [i.name for i in graph.nodes["host:node1"]["interfaces"]]
    assert names[:4] == ["eth0", "cilium_host", "cilium_net", "cilium_vxlan"]
    assert all(n.startswith("lxc") and len(n) == 15 for n in names[4:]) and len(names) == 6
    assert _iface(graph, "host:node1", "cilium_host").addresses == ("10.244.1.64/32",)
    assert graph.nodes["overlay:vxlan"]["port"] == 8472  # Cilium's default, cni.md 2.3
    native = build_topology(make_cluster(cni="cilium", cilium_routing_mode="native"))
    assert [i.name for i in native.nodes["host:node1"]["interfaces"]][:3] == [
        "eth0",
        "cilium_host",
        "cilium_net",
    ]
    veth = graph.edges["pod:default/nginx", "host:node1"]["ifaces"][1]
    assert veth == cilium_lxc_name("default/nginx")


def test_host_network_pod_has_no_veth() -> None:
    graph = build_topology(make_cluster())
    pod = graph.nodes["pod:kube-system/kube-proxy-abcde"]
    assert pod["host_network"] is True and pod["interfaces"] == ()
    assert list(graph.adj["pod:kube-system/kube-proxy-abcde"]) == ["host:node2"]
    assert graph.edges["pod:kube-system/kube-proxy-abcde", "host:node2"]["kind"] == "host-network"
    peers = {i.peer[0] for i in graph.nodes["host:node2"]["interfaces"] if i.peer}
    assert "pod:kube-system/kube-proxy-abcde" not in peers


def test_pending_pod_has_no_edges() -> None:
    graph = build_topology(make_cluster())
    assert graph.degree("pod:shop/web-pending") == 0
    assert graph.nodes["pod:shop/web-pending"]["node"] is None


def test_edge_ends_follow_ifaces_order() -> None:
    graph = build_topology(
        make_cluster(services=(_service("web", "LoadBalancer", ("203.0.113.10",)),))
    )
    assert edge_ends(graph, "host:node1", "pod:default/nginx") == (
        "pod:default/nginx",
        "host:node1",
    )
    assert edge_ends(graph, "underlay", "host:node1") == ("host:node1", "underlay")
    assert edge_ends(graph, "underlay", "cloud-lb") == ("cloud-lb", "underlay")


# ---------------------------------------------------------------- the world outside


def test_no_outside_for_cluster_ip_services() -> None:
    graph = build_topology(make_cluster(services=(_service("web"),)))
    assert "external" not in graph and "cloud-lb" not in graph


@pytest.mark.parametrize(
    "service",
    [
        _service("web", "NodePort"),
        _service("web", external_ips=("198.51.100.50",)),
        _service("web", "LoadBalancer"),  # no status yet: clients, but no cloud LB to draw
    ],
)
def test_external_without_cloud_lb(service: Service) -> None:
    graph = build_topology(make_cluster(services=(service,)))
    assert graph.nodes["external"]["kind"] == "external"
    assert graph.nodes["external"]["services"] == ("shop/web",)
    assert graph.edges["external", "underlay"]["kind"] == "uplink"
    assert "cloud-lb" not in graph


def test_cloud_lb_holds_ingress_ips() -> None:
    services = (
        _service("web", "LoadBalancer", ("203.0.113.10", "203.0.113.11")),
        _service("api", "LoadBalancer", ("203.0.113.12",)),
        _service("db"),
    )
    graph = build_topology(make_cluster(services=services))
    lb = graph.nodes["cloud-lb"]
    assert lb["kind"] == "load-balancer"
    assert lb["addresses"] == ("203.0.113.10", "203.0.113.11", "203.0.113.12")
    assert lb["services"] == ("shop/web", "shop/api")
    assert set(graph.adj["cloud-lb"]) == {"external", "underlay"}
    client = graph.nodes["external"]["addresses"][0]
    assert client not in lb["addresses"] and not client.startswith(("10.", "172.18."))


# ---------------------------------------------------------------- renderers


def _full() -> tuple[Cluster, nx.Graph]:
    cluster = make_cluster(
        services=(_service("web", "LoadBalancer", ("203.0.113.10",)),),
        cni="calico",
        calico_encapsulation="VXLAN",
    )
    return cluster, build_topology(cluster)


def test_json_round_trip() -> None:
    _, graph = _full()
    text = to_json(graph)
    data = json.loads(text)
    back = nx.node_link_graph(data, edges="links")
    assert back.number_of_nodes() == graph.number_of_nodes()
    assert back.number_of_edges() == graph.number_of_edges()
    eth0 = data["nodes"][[n["id"] for n in data["nodes"]].index("pod:default/nginx")]
    assert eth0["interfaces"][0]["peer"] == ["host:node1", "calic440f455693"]
    assert text == to_json(build_topology(_full()[0]))  # stable


def test_dot_has_a_cluster_per_host() -> None:
    _, graph = _full()
    dot = to_dot(graph)
    assert dot.startswith("graph netsim {") and dot.rstrip().endswith("}")
    for name in NODES:
        assert f'subgraph "cluster_{name}" {{' in dot
    assert '"pod:default/nginx" -- "host:node1"' in dot
    assert "style=dashed" in dot and "style=bold" in dot
    assert dot.count("{") == dot.count("}")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_dot_is_accepted_by_graphviz() -> None:
    _, graph = _full()
    done = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(graph), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "cluster_node1" in done.stdout and "calic440f455693" in done.stdout


def test_graphml_parses() -> None:
    _, graph = _full()
    back = nx.parse_graphml(to_graphml(graph))
    assert back.number_of_nodes() == graph.number_of_nodes()
    assert back.number_of_edges() == graph.number_of_edges()
    assert back.nodes["overlay:vxlan"]["vni"] == 4096
    assert "10.244.1.65/32" in back.nodes["pod:default/nginx"]["interfaces"]


def test_png_is_a_readable_picture() -> None:
    cluster, graph = _full()
    png = to_png(graph, cluster)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    height, width = mpimg.imread(io.BytesIO(png)).shape[:2]
    assert width >= 600 and height >= 300


def test_png_aggregates_large_clusters() -> None:
    nodes = tuple(
        Node(Meta("Node", f"n{i}"), (NodeAddress("InternalIP", f"172.18.1.{i}"),))
        for i in range(1, 21)
    )
    pods = tuple(
        _pod("team", f"p{i}", f"n{i % 20 + 1}", f"10.244.9.{i}", False) for i in range(1, 201)
    )
    plan = AddressPlan(("10.244.0.0/16",), ("10.96.0.0/12",), ("172.18.0.0/16",))
    graph = build_topology(Cluster(settings=Settings(), addressing=plan, nodes=nodes, pods=pods))
    png = to_png(graph)
    height, width = mpimg.imread(io.BytesIO(png)).shape[:2]
    assert width < 6000 and height < 3000  # twelve host columns, not twenty


def test_tree_renders_hosts_and_pod_ips() -> None:
    _, graph = _full()
    console = Console(record=True, width=120)
    console.print(to_tree(graph))
    text = console.export_text()
    for name in NODES:
        assert name in text
    for _, _, _, ip, _ in PODS:
        if ip:
            assert ip in text
    assert "calic440f455693" in text and "unscheduled" in text
    assert "vxlan.calico" in text and "cloud-lb" in text


def test_empty_cluster_renders() -> None:
    plan = AddressPlan(("10.244.0.0/16",), ("10.96.0.0/12",), ("172.18.0.0/16",))
    graph = build_topology(Cluster(settings=Settings(), addressing=plan))
    assert list(graph.nodes) == ["underlay", "overlay:ipip"]
    assert graph.number_of_edges() == 0
    assert to_png(graph).startswith(b"\x89PNG")
    assert nx.parse_graphml(to_graphml(graph)).number_of_nodes() == 2
    assert "graph netsim {" in to_dot(graph)
    assert json.loads(to_json(graph))["links"] == []
