"""The dataplane's skeleton: a NetworkX graph of hosts, pods, links, tunnels and external peers.

Later stages hang their state (routes, rule tables, BPF maps) on this graph, so it names every
interface the way the real CNI names it on a node.

Graph schema (node ids are strings; every node and edge has a ``kind``):

- ``underlay`` (kind ``network``): the node network; ``cidrs``.
- ``host:<node>`` (kind ``host``): ``name``, ``addresses`` (InternalIPs), ``interfaces``
  (tuple of :class:`Interface`), ``tunnel`` (tunnel device name or None), ``pod_blocks``,
  ``taints``, ``zone``, ``roles``.
- ``pod:<ns>/<name>`` (kind ``pod``): ``namespace``, ``name``, ``node``, ``ips``, ``labels``,
  ``workload``, ``host_network``, ``interfaces`` (``eth0``, or empty for hostNetwork and
  unscheduled pods).
- ``overlay:<ipip|vxlan|geneve>`` (kind ``overlay``), only when the CNI encapsulates:
  ``protocol``, ``device``, ``transport``, ``port``, ``vni``, ``cross_subnet``.
- ``external`` (kind ``external``) and ``cloud-lb`` (kind ``load-balancer``), only when some
  Service is reachable from outside the cluster.

Edges (``ifaces`` names the interface at each end, in the order given here; edge_ends
returns the ends in that order):

- ``veth``: pod -- host, ``ifaces=("eth0", <host-side veth>)``.
- ``host-network``: hostNetwork pod -- host, ``ifaces=(None, None)`` (one shared namespace).
- ``underlay``: host -- underlay, ``ifaces=("eth0", None)``.
- ``tunnel``: host -- overlay, ``ifaces=(<tunnel device>, None)``.
- ``uplink``: external -- underlay; ``lb-frontend``: external -- cloud-lb;
  ``lb-backend``: cloud-lb -- underlay; all with ``ifaces=(None, None)``.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import networkx as nx

from netsim.addressing import AddressPlan
from netsim.cluster import Cluster
from netsim.model import Node, Pod, Service
from netsim.settings import Settings

# Device names: Calico felix dataplanedefs/dataplane_defs.go; Cilium pkg/defaults.
CALICO_IPIP_DEVICE = "tunl0"
CALICO_VXLAN_DEVICE = "vxlan.calico"
CALICO_VETH_PREFIX = "cali"  # FELIX_INTERFACEPREFIX default
CALICO_HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"  # cni-plugin dataplane_linux.go
CALICO_VXLAN_VNI = 4096
CALICO_VXLAN_PORT = 4789
CALICO_VTEP_MAC_ANNOTATION = "projectcalico.org/VXLANTunnelMACAddr"
CALICO_POD_MAC_ANNOTATION = "cni.projectcalico.org/hwAddr"
CILIUM_HOST_DEVICE = "cilium_host"
CILIUM_NET_DEVICE = "cilium_net"
CILIUM_VETH_PREFIX = "lxc"
CILIUM_TUNNEL_DEVICES = {"vxlan": "cilium_vxlan", "geneve": "cilium_geneve"}
CILIUM_TUNNEL_PORTS = {"vxlan": 8472, "geneve": 6081}  # Cilium's defaults, not IANA's 4789
UNDERLAY_DEVICE = "eth0"
POD_DEVICE = "eth0"
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")

UNDERLAY = "underlay"
EXTERNAL = "external"
CLOUD_LB = "cloud-lb"

# RFC 5737 documentation ranges: never a real peer, and the first one outside every cluster
# range is taken so an external client can't be mistaken for a pod, node, VIP or LB address.
EXTERNAL_CLIENT_CANDIDATES = ("192.0.2.100", "198.51.100.100", "203.0.113.100")

_NO_IFACES = (None, None)
_UNDERLAY_IFACES = (UNDERLAY_DEVICE, None)
# An edge's ``ifaces`` lists its ends in this order of their kinds (see edge_ends).
_END_ORDER = {"pod": 0, "host": 1, "external": 2, "load-balancer": 3, "overlay": 4, "network": 5}


@dataclass(frozen=True, slots=True)
class Interface:
    """One network device as `ip link`/`ip addr` would list it in a host or pod namespace.

    ``addresses`` are CIDR-form interface addresses (a pod's are /32 or /128, as the CNI
    plugin configures them); ``peer`` is (graph node id, interface name) of the other end of
    a veth or link, with a None name where the other end is a network rather than a device.
    """

    name: str
    kind: str  # ethernet | veth | ipip | vxlan | geneve
    addresses: tuple[str, ...] = ()
    mac: str | None = None
    peer: tuple[str, str | None] | None = None


# ---------------------------------------------------------------- names and MACs


def host_id(node: str) -> str:
    return f"host:{node}"


def pod_id(namespace: str, name: str) -> str:
    return f"pod:{namespace}/{name}"


def overlay_id(protocol: str) -> str:
    return f"overlay:{protocol}"


def _pod_digest(namespace: str, pod: str) -> bytes:
    """SHA-1 of "<namespace>.<pod>": Calico names the veth from it; netsim's pod MACs too."""
    return hashlib.sha1(f"{namespace}.{pod}".encode()).digest()


def calico_veth_name(namespace: str, pod: str) -> str:
    """The host-side veth Calico creates for a pod, so routes and chains name the real device.

    libcalico-go workload_endpoint_default.go: prefix + first 11 hex chars of SHA-1("ns.pod").
    """
    return _calico_veth(_pod_digest(namespace, pod))


def _calico_veth(digest: bytes) -> str:
    return CALICO_VETH_PREFIX + digest.hex()[:11]


def pod_mac(namespace: str, pod: str) -> str:
    """A stable MAC for a pod's eth0, where the kernel would pick a random one (cni.md 1.2).

    Bytes 6-11 of the SHA-1 that names Calico's veth, made locally administered unicast;
    under Calico the cni.projectcalico.org/hwAddr pod annotation overrides it (build_topology
    honours that).
    """
    return local_mac(_pod_digest(namespace, pod)[6:12])


def cilium_lxc_name(endpoint_id: str) -> str:
    """The host-side veth Cilium creates for an endpoint (connector.Endpoint2IfName).

    Cilium takes "lxc" + the first 12 hex chars of SHA-256(endpoint id), 12 being
    IFNAMSIZ - len("tmp") - 1. The endpoint id there is the CNI container (sandbox) ID,
    which manifests never carry; :func:`build_topology` passes "<namespace>/<pod>" instead,
    so names have Cilium's shape and are stable, but do not match a live node's.
    """
    return CILIUM_VETH_PREFIX + hashlib.sha256(endpoint_id.encode()).hexdigest()[:12]


def vxlan_vtep_mac(node: str) -> str:
    """Calico's VXLAN VTEP MAC for a node: 0x66 then the first 5 bytes of SHA-1(node name).

    felix calc/vxlan_resolver.go; the Node annotation projectcalico.org/VXLANTunnelMACAddr
    overrides it (build_topology honours that).
    """
    return _mac(b"\x66" + hashlib.sha1(node.encode()).digest()[:5])


def local_mac(six: bytes) -> str:
    """Six hash bytes as a unicast, locally administered MAC (no vendor's OUI is claimed)."""
    return _mac(bytes(((six[0] & 0xFC) | 0x02,)) + six[1:6])


def _mac(six: bytes) -> str:
    return six.hex(":")


def _host_mac(node: str) -> str:
    """A stable stand-in for the node NIC's MAC, which manifests don't record."""
    return local_mac(hashlib.sha1(f"host:{node}".encode()).digest())


def edge_ends(graph: nx.Graph, u: str, v: str) -> tuple[str, str]:
    """The edge's two ends in the order its ``ifaces`` names them.

    An undirected graph forgets which end an edge was added from, so the order is fixed by
    kind instead: pod, host, external, load-balancer, overlay, network.
    """
    order = _END_ORDER
    first = order[graph.nodes[u]["kind"]] <= order[graph.nodes[v]["kind"]]
    return (u, v) if first else (v, u)


# ---------------------------------------------------------------- the CNI's choices


@dataclass(frozen=True, slots=True)
class _Tunnel:
    """The overlay a CNI configuration builds, or none for routed (BGP / native) modes."""

    protocol: str
    device: str
    device_kind: str
    transport: str
    port: int | None
    vni: int | None
    cross_subnet: bool


def _tunnel(settings: Settings) -> _Tunnel | None:
    """Which tunnel device each host gets; Cilium's VNI carries the source identity (None)."""
    if settings.cni == "cilium":
        if settings.cilium_routing_mode != "tunnel":
            return None
        proto = settings.cilium_tunnel_protocol
        return _Tunnel(
            proto,
            CILIUM_TUNNEL_DEVICES[proto],
            proto,
            "UDP",
            CILIUM_TUNNEL_PORTS[proto],
            None,
            False,
        )
    encap = settings.calico_encapsulation
    cross = encap.endswith("CrossSubnet")
    if encap.startswith("IPIP"):
        return _Tunnel("ipip", CALICO_IPIP_DEVICE, "ipip", "IP protocol 4", None, None, cross)
    if encap.startswith("VXLAN"):
        return _Tunnel(
            "vxlan", CALICO_VXLAN_DEVICE, "vxlan", "UDP", CALICO_VXLAN_PORT, CALICO_VXLAN_VNI, cross
        )
    return None


def _mode(settings: Settings) -> str:
    if settings.cni == "cilium":
        if settings.cilium_routing_mode == "tunnel":
            return f"tunnel ({settings.cilium_tunnel_protocol})"
        return settings.cilium_routing_mode
    return settings.calico_encapsulation


# ---------------------------------------------------------------- pods


@dataclass(frozen=True, slots=True)
class _Plumbed:
    """One pod's graph node, its link to the host, and the host-side device it adds."""

    node: tuple[str, dict]
    edge: tuple[str, str, dict] | None
    host_iface: Interface | None


def _host_prefix(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def _pod_node(pod: Pod, pid: str, interfaces: tuple[Interface, ...]) -> tuple[str, dict]:
    return pid, {
        "kind": "pod",
        "namespace": pod.namespace,
        "name": pod.name,
        "node": pod.node_name,
        "ips": pod.ips,
        "labels": pod.labels,
        "workload": pod.workload,
        "host_network": pod.host_network,
        "interfaces": interfaces,
    }


def _plumb(pod: Pod, cni: str, hosts: set[str]) -> _Plumbed:
    """The veth pair a CNI ADD creates for one pod (none for hostNetwork or unscheduled)."""
    ns, name = pod.namespace, pod.name
    pid = pod_id(ns, name)
    node = pod.node_name
    if node is None or node not in hosts:
        return _Plumbed(_pod_node(pod, pid, ()), None, None)
    hid = host_id(node)
    if pod.host_network:
        edge = (pid, hid, {"kind": "host-network", "ifaces": _NO_IFACES})
        return _Plumbed(_pod_node(pod, pid, ()), edge, None)
    digest = _pod_digest(ns, name)
    mac = local_mac(digest[6:12])
    if cni == "cilium":
        veth, veth_mac = cilium_lxc_name(f"{ns}/{name}"), local_mac(digest[12:18])
    else:
        veth, veth_mac = _calico_veth(digest), CALICO_HOST_VETH_MAC
        mac = pod.meta.annotations.get(CALICO_POD_MAC_ANNOTATION) or mac
    eth0 = Interface(POD_DEVICE, "veth", tuple(map(_host_prefix, pod.ips)), mac, (hid, veth))
    host_side = Interface(veth, "veth", (), veth_mac, (pid, POD_DEVICE))
    edge = (pid, hid, {"kind": "veth", "ifaces": (POD_DEVICE, veth)})
    return _Plumbed(_pod_node(pod, pid, (eth0,)), edge, host_side)


# ---------------------------------------------------------------- hosts


def _eth0_addresses(node: Node, networks: tuple) -> tuple[str, ...]:
    """InternalIPs with the prefix of the node subnet they sit in, as `ip addr` shows them."""
    out = []
    for ip in node.internal_ips:
        addr = ipaddress.ip_address(ip)
        net = next((n for n in networks if addr.version == n.version and addr in n), None)
        out.append(f"{ip}/{net.prefixlen}" if net else _host_prefix(ip))
    return tuple(out)


def _tunnel_addresses(plan: AddressPlan, node: str) -> tuple[str, ...]:
    ips = plan.tunnel_ips.get(node, ())
    if isinstance(ips, str):
        ips = (ips,)
    return tuple(map(_host_prefix, ips))


def _cni_devices(
    node: Node, settings: Settings, plan: AddressPlan, tunnel: _Tunnel | None
) -> tuple[Interface, ...]:
    """The devices the CNI agent creates on every node (felix / cilium-agent), veths aside."""
    hid = host_id(node.name)
    tunnel_peer = (overlay_id(tunnel.protocol), None) if tunnel else None
    if settings.cni == "cilium":
        devices = [
            Interface(
                CILIUM_HOST_DEVICE,
                "veth",
                _tunnel_addresses(plan, node.name),
                local_mac(hashlib.sha1(f"cilium_host:{node.name}".encode()).digest()),
                (hid, CILIUM_NET_DEVICE),
            ),
            Interface(CILIUM_NET_DEVICE, "veth", (), None, (hid, CILIUM_HOST_DEVICE)),
        ]
        if tunnel:
            devices.append(Interface(tunnel.device, tunnel.device_kind, (), None, tunnel_peer))
        return tuple(devices)
    if tunnel is None:
        return ()
    mac = None
    if tunnel.protocol == "vxlan":
        mac = node.meta.annotations.get(CALICO_VTEP_MAC_ANNOTATION) or vxlan_vtep_mac(node.name)
    return (
        Interface(
            tunnel.device, tunnel.device_kind, _tunnel_addresses(plan, node.name), mac, tunnel_peer
        ),
    )


def _host_node(
    node: Node,
    devices: tuple[Interface, ...],
    veths: list[Interface],
    blocks: tuple[str, ...],
    networks: tuple,
    tunnel: _Tunnel | None,
) -> tuple[str, dict]:
    eth0 = Interface(
        UNDERLAY_DEVICE,
        "ethernet",
        _eth0_addresses(node, networks),
        _host_mac(node.name),
        (UNDERLAY, None),
    )
    labels = node.labels
    return host_id(node.name), {
        "kind": "host",
        "name": node.name,
        "addresses": node.internal_ips,
        "interfaces": (eth0, *devices, *veths),
        "tunnel": tunnel.device if tunnel else None,
        "pod_blocks": blocks,
        "taints": node.taints,
        "zone": next((labels[k] for k in ZONE_LABELS if k in labels), None),
        "roles": node.roles,
    }


def _blocks_by_node(plan: AddressPlan) -> dict[str, tuple[str, ...]]:
    """AddressPlan.node_blocks for every node in one pass (calling it per node is quadratic)."""
    out: dict[str, list[str]] = defaultdict(list)
    for block, node in plan.blocks.items():
        out[node].append(block)
    return {n: tuple(b) for n, b in out.items()}


# ---------------------------------------------------------------- outside the cluster


def _exposed(services: Iterable[Service]) -> tuple[str, ...]:
    """Services a client outside the cluster can address (NodePort, LoadBalancer, externalIPs)."""
    return tuple(
        s.key for s in services if s.type in ("NodePort", "LoadBalancer") or s.external_ips
    )


def _frontends(services: Iterable[Service]) -> tuple[tuple[str, str], ...]:
    """(ingress IP, service) for every LoadBalancer status ingress IP the cloud LB answers."""
    return tuple(
        (ip, s.key) for s in services if s.type == "LoadBalancer" for ip in s.load_balancer_ingress
    )


def external_client_ip(cluster: Cluster) -> str:
    """A client address outside every range the cluster uses (pods, services, nodes, LBs)."""
    ranges = [
        *cluster.addressing.pod_cidrs,
        *cluster.addressing.service_cidrs,
        *cluster.addressing.node_cidrs,
        *cluster.settings.load_balancer_cidrs,
    ]
    taken = {ip for s in cluster.services for ip in (*s.external_ips, *s.load_balancer_ingress)}
    nets = [ipaddress.ip_network(c, strict=False) for c in ranges]
    for ip in EXTERNAL_CLIENT_CANDIDATES:
        addr = ipaddress.ip_address(ip)
        if ip not in taken and not any(addr.version == n.version and addr in n for n in nets):
            return ip
    return EXTERNAL_CLIENT_CANDIDATES[0]


def _outside(cluster: Cluster) -> tuple[list, list]:
    """The external client and the cloud load balancer, when some Service needs them."""
    exposed = _exposed(cluster.services)
    if not exposed:
        return [], []
    nodes: list = [
        (
            EXTERNAL,
            {"kind": "external", "addresses": (external_client_ip(cluster),), "services": exposed},
        )
    ]
    edges: list = [(EXTERNAL, UNDERLAY, {"kind": "uplink", "ifaces": _NO_IFACES})]
    frontends = _frontends(cluster.services)
    if frontends:
        nodes.append(
            (
                CLOUD_LB,
                {
                    "kind": "load-balancer",
                    "addresses": tuple(dict.fromkeys(ip for ip, _ in frontends)),
                    "services": tuple(dict.fromkeys(key for _, key in frontends)),
                    "frontends": frontends,
                },
            )
        )
        edges.append((EXTERNAL, CLOUD_LB, {"kind": "lb-frontend", "ifaces": _NO_IFACES}))
        edges.append((CLOUD_LB, UNDERLAY, {"kind": "lb-backend", "ifaces": _NO_IFACES}))
    return nodes, edges


# ---------------------------------------------------------------- assembly


def _overlay_node(tunnel: _Tunnel) -> tuple[str, dict]:
    return overlay_id(tunnel.protocol), {
        "kind": "overlay",
        "protocol": tunnel.protocol,
        "device": tunnel.device,
        "transport": tunnel.transport,
        "port": tunnel.port,
        "vni": tunnel.vni,
        "cross_subnet": tunnel.cross_subnet,
    }


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cycle collector while a large graph is allocated.

    Creating ~1M containers sets off repeated full collections that rescan the whole cluster
    model: at 150,000 pods that more than doubled the build time. Nothing built here forms
    reference cycles, so there is nothing for the collector to find.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_topology(cluster: Cluster) -> nx.Graph:
    """The graph of hosts, pods and networks that the dataplane's artifacts attach to.

    Tunnels are one ``overlay:<protocol>`` node that every host's tunnel device links to,
    not host-to-host edges: every host is a peer of every other through the overlay, so a
    full mesh would say nothing more and cost n(n-1)/2 edges (12.5M at 5,000 nodes). Which
    peer a packet is sent to is the routes' and FDB/ipcache's business, not the graph's.

    Unscheduled pods, and pods bound to a node the input doesn't hold, are nodes without
    edges: they have no network namespace yet.
    """
    with _gc_paused():
        return _build(cluster)


def _build(cluster: Cluster) -> nx.Graph:
    settings, plan = cluster.settings, cluster.addressing
    tunnel = _tunnel(settings)
    hosts = {n.name for n in cluster.nodes}
    networks = tuple(ipaddress.ip_network(c, strict=False) for c in plan.node_cidrs)

    pod_nodes, edges = [], []
    veths: dict[str, list[Interface]] = defaultdict(list)
    for pod in cluster.pods:
        plumbed = _plumb(pod, settings.cni, hosts)
        pod_nodes.append(plumbed.node)
        if plumbed.edge is not None:
            edges.append(plumbed.edge)
        if plumbed.host_iface is not None:
            veths[pod.node_name].append(plumbed.host_iface)

    blocks = _blocks_by_node(plan)
    host_nodes = []
    for node in cluster.nodes:
        devices = _cni_devices(node, settings, plan, tunnel)
        host_nodes.append(
            _host_node(
                node, devices, veths.get(node.name, []), blocks.get(node.name, ()), networks, tunnel
            )
        )
        hid = host_id(node.name)
        edges.append((hid, UNDERLAY, {"kind": "underlay", "ifaces": _UNDERLAY_IFACES}))
        if tunnel:
            edges.append(
                (
                    hid,
                    overlay_id(tunnel.protocol),
                    {"kind": "tunnel", "ifaces": (tunnel.device, None)},
                )
            )

    net_nodes: list = [(UNDERLAY, {"kind": "network", "cidrs": plan.node_cidrs})]
    if tunnel:
        net_nodes.append(_overlay_node(tunnel))
    outside_nodes, outside_edges = _outside(cluster)

    graph = nx.Graph(
        cni=settings.cni,
        mode=_mode(settings),
        pod_cidrs=plan.pod_cidrs,
        service_cidrs=plan.service_cidrs,
        node_cidrs=plan.node_cidrs,
    )
    graph.add_nodes_from(net_nodes + outside_nodes)
    graph.add_nodes_from(host_nodes)
    graph.add_nodes_from(pod_nodes)
    graph.add_edges_from(outside_edges)
    graph.add_edges_from(edges)
    return graph
