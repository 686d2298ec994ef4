"""What a Cilium node's and pod's network namespaces hold: devices, addresses and routes
(reference: shared/reference/cni.md 2.3).

Emulated layout (Cilium 1.16, cluster-pool IPAM, legacy host routing for host traffic):
- the node: eth0, cilium_host (the router IP from the node's pod CIDR) paired with
  cilium_net, the tunnel device (cilium_vxlan, UDP 8472, or cilium_geneve, UDP 6081) in
  tunnel mode, and an lxc veth per endpoint. Routes: the node's own pod CIDR and, in tunnel
  mode, every remote pod CIDR via the router IP on cilium_host (only host-originated traffic
  uses them; endpoints' packets are redirected by BPF); in native routing mode with
  autoDirectNodeRoutes, remote pod CIDRs via the peer node on eth0.
- a pod: eth0 with its /32, a scope-link route to the router IP and the default route via
  it; the lxc peer answers ARP for it.
Assumptions: the node's default gateway is its subnet's first address and the host MTU 1500,
as netsim's Calico emulation assumes.
"""

from __future__ import annotations

import ipaddress

import networkx as nx

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import Pod
from netsim.netns import Interface, Namespace, Neighbour, Route, dump_order
from netsim.topology import (
    CILIUM_HOST_DEVICE,
    CILIUM_TUNNEL_DEVICES,
    CILIUM_TUNNEL_PORTS,
    POD_DEVICE,
    UNDERLAY_DEVICE,
    build_topology,
    host_id,
    pod_id,
)

HOST_MTU = 1500
TUNNEL_OVERHEAD = 50
LOOPBACK = Interface("lo", "loopback", ("127.0.0.1/8",), mtu=65536)


def _version(ip: str) -> int:
    return 6 if ":" in ip else 4


def _tunnel(cluster: Cluster) -> str | None:
    s = cluster.settings
    return s.cilium_tunnel_protocol if s.cilium_routing_mode == "tunnel" else None


def _router_ips(cluster: Cluster, node: str) -> tuple[str, ...]:
    ips = cluster.addressing.tunnel_ips.get(node, ())
    return (ips,) if isinstance(ips, str) else tuple(ips)


def node_namespace(cluster: Cluster, node: str, graph: nx.Graph | None = None) -> Namespace:
    """The node's root namespace as cilium-agent leaves it."""
    if cluster.settings.cni != "cilium":
        raise InputError(f"the cluster's CNI is {cluster.settings.cni}, not cilium")
    found = cluster.node(node)
    if found is None:
        raise InputError(f"no Node named {node!r}")
    graph = graph if graph is not None else build_topology(cluster)
    host = graph.nodes[host_id(node)]
    tunnel = _tunnel(cluster)
    mtu = HOST_MTU - TUNNEL_OVERHEAD if tunnel else HOST_MTU
    interfaces = [LOOPBACK]
    routes: list[Route] = []
    local_routes: list[Route] = [Route("127.0.0.0/8", dev="lo", type="local", table="local",
                                       scope="host")]
    eth0_addresses = ()
    for iface in host["interfaces"]:
        if iface.name == UNDERLAY_DEVICE:
            eth0_addresses = iface.addresses
            interfaces.append(Interface(iface.name, "ethernet", iface.addresses, iface.mac,
                                        iface.peer, HOST_MTU))
        elif iface.name in CILIUM_TUNNEL_DEVICES.values():
            interfaces.append(Interface(iface.name, "geneve" if tunnel == "geneve" else "vxlan",
                                        (), iface.mac, iface.peer, mtu,
                                        port=CILIUM_TUNNEL_PORTS[tunnel or "vxlan"]))
        else:
            interfaces.append(Interface(iface.name, iface.kind, iface.addresses, iface.mac,
                                        iface.peer, mtu))
    for address in eth0_addresses:
        ip, _, plen = address.partition("/")
        net = ipaddress.ip_network(address, strict=False)
        if int(plen or 32) < net.max_prefixlen:
            routes.append(Route(str(net), dev=UNDERLAY_DEVICE, proto="kernel", scope="link",
                                src=ip))
            gateway = str(next(net.hosts()))
            routes.append(Route("0.0.0.0/0" if net.version == 4 else "::/0", via=gateway,
                                dev=UNDERLAY_DEVICE))
        local_routes.append(Route(ip, dev=UNDERLAY_DEVICE, type="local", table="local",
                                  scope="host", src=ip))
    routers = {_version(ip): ip for ip in _router_ips(cluster, node)}
    for ip in routers.values():
        local_routes.append(Route(ip, dev=CILIUM_HOST_DEVICE, type="local", table="local",
                                  scope="host", src=ip))
        routes.append(Route(ip, dev=CILIUM_HOST_DEVICE, proto="kernel", scope="link"))
    peers = {n.name: n for n in cluster.nodes}
    for block, owner in sorted(cluster.addressing.blocks.items()):
        version = _version(block)
        router = routers.get(version)
        if router is None:
            continue
        if owner == node or tunnel:
            routes.append(Route(block, via=router, dev=CILIUM_HOST_DEVICE, proto="kernel",
                                src=router, metrics=(("mtu", str(mtu)),) if owner != node
                                else ()))
        else:  # native routing, autoDirectNodeRoutes: straight to the peer node
            peer = next((ip for ip in peers[owner].internal_ips if _version(ip) == version),
                        None)
            if peer is not None:
                routes.append(Route(block, via=peer, dev=UNDERLAY_DEVICE, proto="kernel"))
    return Namespace(host_id(node), node, tuple(interfaces), tuple(dump_order(routes)),
                     tuple(local_routes))


def pod_namespace(cluster: Cluster, pod: Pod, graph: nx.Graph | None = None) -> Namespace:
    """The pod's namespace as the Cilium CNI plugin sets it up."""
    if not pod.node_name or not pod.ips:
        raise InputError("has no network namespace (not scheduled or no address)",
                         obj=f"Pod {pod.key}")
    graph = graph if graph is not None else build_topology(cluster)
    found = graph.nodes[pod_id(pod.namespace, pod.name)]["interfaces"]
    eth0 = next(i for i in found if i.name == POD_DEVICE)
    mtu = HOST_MTU - TUNNEL_OVERHEAD if _tunnel(cluster) else HOST_MTU
    eth0 = Interface(eth0.name, "veth", eth0.addresses, eth0.mac, eth0.peer, mtu)
    host = graph.nodes[host_id(pod.node_name)]["interfaces"]
    peer_mac = next((i.mac for i in host if eth0.peer and i.name == eth0.peer[1]), None)
    routes, neighbours = [], []
    local_routes = [Route("127.0.0.0/8", dev="lo", type="local", table="local", scope="host")]
    for ip in pod.ips:
        local_routes.append(Route(ip, dev=POD_DEVICE, type="local", table="local",
                                  scope="host", src=ip))
    for router in _router_ips(cluster, pod.node_name):
        default = "0.0.0.0/0" if _version(router) == 4 else "::/0"
        routes += [Route(default, via=router, dev=POD_DEVICE, metrics=(("mtu", str(mtu)),)),
                   Route(router, dev=POD_DEVICE, scope="link")]
        if peer_mac:
            neighbours.append(Neighbour(router, POD_DEVICE, peer_mac, "REACHABLE"))
    return Namespace(pod_id(pod.namespace, pod.name), pod.node_name, (LOOPBACK, eth0),
                     tuple(dump_order(routes)), tuple(local_routes), tuple(neighbours))
