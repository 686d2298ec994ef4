"""What Calico programs in each node's and each pod's network namespace: devices, routes,
neighbours and FDB entries (reference: shared/reference/cni.md sections 1.1-1.3).

Version emulated: Calico before v3.33, where BIRD programs the no-encap and IPIP routes
(`proto bird`) and Felix programs VXLAN routes and the VXLAN-mode blackholes (`proto 80`);
workload routes keep the kernel's default protocol (boot), which `ip route` does not print
(felix routetable: RTPROT_BOOT stayed the workload-route default; proto 80 marks the routes
added with VXLAN). From v3.33 Felix also programs IPIP routes, as `proto 80 onlink`.

Assumptions where manifests are silent, each stated once here:
- The node's subnet is the one Calico recorded in the Node annotation
  projectcalico.org/IPv4Address (IPv6Address), which is what CrossSubnet compares peers
  against; without it, the node CIDR holding the InternalIP (as netsim.topology assumes).
- The node's default gateway is the subnet's first address (kind's Docker network and most
  cloud VPCs use it); nothing in the manifests records the real one.
- The host MTU is 1500; Calico's tunnel and pod MTUs follow from it (cni.md 1.3).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

import networkx as nx

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import IPV4, Node, Pod
from netsim.netns import FdbEntry, Interface, Namespace, Neighbour, Route, dump_order
from netsim.topology import (
    CALICO_HOST_VETH_MAC,
    CALICO_IPIP_DEVICE,
    CALICO_VTEP_MAC_ANNOTATION,
    CALICO_VXLAN_DEVICE,
    CALICO_VXLAN_PORT,
    CALICO_VXLAN_VNI,
    POD_DEVICE,
    UNDERLAY_DEVICE,
    build_topology,
    calico_veth_name,
    host_id,
    pod_id,
    vxlan_vtep_mac,
)

# felix dataplanedefs/dataplane_defs.go
CALICO_VXLAN_V6_DEVICE = "vxlan-v6.calico"
CALICO_VTEP_MAC_V6_ANNOTATION = "projectcalico.org/VXLANTunnelMACAddrV6"
# libcalico-go k8s conversion: where calico-node records the node's address and subnet.
NODE_ADDRESS_ANNOTATIONS = {4: "projectcalico.org/IPv4Address", 6: "projectcalico.org/IPv6Address"}
PROTO_BIRD = "bird"
PROTO_FELIX = "80"  # felix routetable defs: RTPROT 80, printed as "proto 80"
# cni-plugin dataplane_linux.go: the pod's gateway. IPv4 uses a link-local address the host
# veth answers by proxy ARP; IPv6 uses the host veth's own link-local address, which is the
# EUI-64 of ee:ee:ee:ee:ee:ee.
POD_GATEWAY_V4 = "169.254.1.1"
POD_GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"
LINK_LOCAL_V6 = "fe80::/64"
LOOPBACK = "lo"
HOST_MTU = 1500
IPIP_OVERHEAD = 20
VXLAN_OVERHEAD = {4: 50, 6: 70}
FAILED_PHASES = ("Succeeded", "Failed")  # sandbox gone: no veth route any more


@dataclass(frozen=True, slots=True)
class _Peer:
    """What one node's routes need to know about another: its address, subnet and VTEP."""

    ip: str
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    vtep_ip: str | None
    vtep_mac: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """Cluster-wide facts every node's routes share, computed once."""

    versions: tuple[int, ...]
    encapsulation: dict[int, str]  # per family: None | IPIP… | VXLAN…
    peers: dict[str, dict[int, _Peer]]  # node -> family -> peer facts
    blocks: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]
    borrowed: dict[str, list[str]]  # node -> pod IPs it hosts outside its own blocks
    pod_mtu: int


def _version(cidr: str) -> int:
    return 6 if ":" in cidr else 4


_PLANS: dict[int, tuple[Cluster, _Plan]] = {}  # the last clusters' plans, by identity
_PLANS_KEPT = 2


def _plan(cluster: Cluster) -> _Plan:
    """The cluster-wide facts, computed once per cluster (a trace builds nodes one by one)."""
    found = _PLANS.get(id(cluster))
    if found is not None and found[0] is cluster:
        return found[1]
    plan = _compute_plan(cluster)
    while len(_PLANS) >= _PLANS_KEPT:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[id(cluster)] = (cluster, plan)
    return plan


def _compute_plan(cluster: Cluster) -> _Plan:
    if cluster.settings.cni != "calico":
        raise InputError(f"the cluster's CNI is {cluster.settings.cni}, not calico")
    plan = cluster.addressing
    versions = tuple(dict.fromkeys(_version(c) for c in plan.pod_cidrs))
    v4 = cluster.settings.calico_encapsulation
    # IPIP is IPv4-only (cni.md 1.1): an IPv6 pool beside an IPIP one routes unencapsulated.
    encapsulation = {4: v4, 6: v4 if v4.startswith("VXLAN") else "None"}
    networks = [ipaddress.ip_network(c, strict=False) for c in plan.node_cidrs]
    peers: dict[str, dict[int, _Peer]] = {}
    for node in cluster.nodes:
        tunnels = plan.tunnel_ips.get(node.name, ())
        if isinstance(tunnels, str):
            tunnels = (tunnels,)
        facts = {}
        for ip in node.internal_ips:
            version = _version(ip)
            if version in facts:
                continue
            vtep_ip = next((t for t in tunnels if _version(t) == version), None)
            facts[version] = _Peer(
                ip, _subnet(node, ip, networks), vtep_ip, _vtep_mac(node, version)
            )
        peers[node.name] = facts
    blocks: dict[str, list] = defaultdict(list)
    owner: dict[tuple[int, int], str] = {}  # (family, block number) -> node
    shifts: dict[int, int] = {}  # family -> host bits of a block (one block size per family)
    for cidr, node in plan.blocks.items():
        net = ipaddress.ip_network(cidr)
        blocks[node].append(net)
        shifts[net.version] = net.max_prefixlen - net.prefixlen
        owner[net.version, int(net.network_address) >> shifts[net.version]] = node
    borrowed: dict[str, list[str]] = defaultdict(list)
    for pod in cluster.pods:
        if not _wired(pod):
            continue
        for ip in pod.ips:
            addr = ipaddress.ip_address(ip)
            shift = shifts.get(addr.version)
            block_owner = (
                owner.get((addr.version, int(addr) >> shift)) if shift is not None else None
            )
            if block_owner is not None and block_owner != pod.node_name:
                borrowed[pod.node_name].append(ip)
    if v4.startswith("VXLAN"):
        mtu = min(HOST_MTU - VXLAN_OVERHEAD[v] for v in versions)
    elif v4.startswith("IPIP") and 4 in versions:
        mtu = HOST_MTU - IPIP_OVERHEAD
    else:
        mtu = HOST_MTU
    return _Plan(versions, encapsulation, peers, dict(blocks), dict(borrowed), mtu)


def _wired(pod: Pod) -> bool:
    """The pod has a Calico veth: scheduled, not hostNetwork, addressed, sandbox alive."""
    return bool(
        pod.node_name and not pod.host_network and pod.ips and pod.phase not in FAILED_PHASES
    )


def _subnet(node: Node, ip: str, networks: list) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The node's underlay subnet: Calico's Node annotation, else the node CIDR holding it."""
    addr = ipaddress.ip_address(ip)
    key = NODE_ADDRESS_ANNOTATIONS[addr.version]
    value = node.meta.annotations.get(key)
    if value:
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            raise InputError(
                f"must be an address with its prefix (e.g. 192.168.1.11/24), got {value!r}",
                source=node.meta.source,
                obj=f"Node {node.name}",
                field=f"metadata.annotations.{key}",
            ) from None
        if iface.ip == addr:
            return iface.network
    net = next((n for n in networks if n.version == addr.version and addr in n), None)
    return net or ipaddress.ip_network(ip)


def _vtep_mac(node: Node, version: int) -> str:
    """felix calc/vxlan_resolver.go vtepMACForHost: the annotation, else 0x66 + SHA-1 bytes
    of the node name ("<name>-v6" for the IPv6 VTEP)."""
    if version == 4:
        return node.meta.annotations.get(CALICO_VTEP_MAC_ANNOTATION) or vxlan_vtep_mac(node.name)
    return node.meta.annotations.get(CALICO_VTEP_MAC_V6_ANNOTATION) or vxlan_vtep_mac(
        f"{node.name}-v6"
    )


def _gateway(subnet) -> str | None:
    """The subnet's first address, taken as the node's default gateway (see module doc)."""
    if subnet.num_addresses < 4:
        return None
    return str(subnet.network_address + 1)


def _v6(route_kwargs: dict, version: int, metric: int = 1024) -> dict:
    """IPv6 routes carry the kernel's default metric and router preference when printed."""
    if version == 6:
        return {"metric": metric, "pref": "medium", **route_kwargs}
    return route_kwargs


# ---------------------------------------------------------------- node


def node_namespaces(cluster: Cluster, graph: nx.Graph | None = None) -> dict[str, Namespace]:
    """Every node's namespace, sharing the cluster-wide work (peers, blocks, borrowed IPs)."""
    graph = graph if graph is not None else build_topology(cluster)
    plan = _plan(cluster)
    return {n.name: _node_namespace(cluster, n, graph, plan) for n in cluster.nodes}


def node_namespace(cluster: Cluster, node: str, graph: nx.Graph | None = None) -> Namespace:
    """The root namespace of one node as Calico leaves it: eth0 and its default route, the
    tunnel device, a veth and a /32 route per local pod, a blackhole per own block, a route
    per remote block (and VXLAN neighbour and FDB entries per remote VTEP).

    ``graph`` is the cluster's netsim.topology graph, whose interface names and MACs are
    reused; it is built when not given. Raises InputError for an unknown node or a cluster
    whose CNI is not Calico.
    """
    found = cluster.node(node)
    if found is None:
        raise InputError(f"no Node named {node!r}")
    plan = _plan(cluster)
    graph = graph if graph is not None else build_topology(cluster)
    return _node_namespace(cluster, found, graph, plan)


def _node_namespace(cluster: Cluster, node: Node, graph: nx.Graph, plan: _Plan) -> Namespace:
    me = plan.peers.get(node.name, {})
    versions = plan.versions
    host = graph.nodes[host_id(node.name)]
    ifaces = {i.name: i for i in host["interfaces"]}
    eth0 = _interface(
        ifaces[UNDERLAY_DEVICE],
        addresses=tuple(f"{p.ip}/{p.subnet.prefixlen}" for p in me.values()),
        mtu=HOST_MTU,
    )
    devices = _tunnel_devices(plan, me)
    veths = tuple(
        _interface(i, mtu=plan.pod_mtu, proxy_arp=True)
        for i in host["interfaces"]
        if i.kind == "veth"
    )
    loopback = Interface(
        LOOPBACK, "loopback", ("127.0.0.1/8",) + (("::1/128",) if 6 in versions else ()), mtu=65536
    )
    interfaces = (loopback, eth0, *devices, *veths)

    routes = _connected_routes(interfaces, versions) + _default_routes(me)
    neighbours: list[Neighbour] = []
    for pod in cluster.pods_on(node.name):
        if _wired(pod):
            routes += _workload_routes(pod)
            mac, ip = _pod_mac(graph, pod), pod.ip_of(IPV4)
            if mac is not None and ip is not None:
                # Felix's static ARP entry for the workload (felix routetable, IPv4 only).
                neighbours.append(Neighbour(ip, calico_veth_name(pod.namespace, pod.name), mac))
    routes += _blackholes(plan, node.name)
    fdb: list[FdbEntry] = []
    for peer_name, peer in sorted(plan.peers.items()):
        if peer_name != node.name:
            routes += _peer_routes(plan, peer_name, me, peer)
            for version in versions:
                if plan.encapsulation[version].startswith("VXLAN") and version in me:
                    vtep = peer.get(version)
                    if vtep is not None and vtep.vtep_ip is not None:
                        dev = _vxlan_device(version)
                        neighbours.append(Neighbour(vtep.vtep_ip, dev, vtep.vtep_mac))
                        fdb.append(FdbEntry(vtep.vtep_mac, dev, dst=vtep.ip))
    return Namespace(
        name=host_id(node.name),
        node=node.name,
        interfaces=interfaces,
        routes=tuple(dump_order(routes)),
        local_routes=_local_routes(interfaces),
        neighbours=tuple(neighbours),
        fdb=tuple(fdb),
    )


def _default_routes(me: dict[int, _Peer]) -> list[Route]:
    routes = []
    for version, local in me.items():
        gateway = _gateway(local.subnet)
        if gateway is not None:
            dst = "0.0.0.0/0" if version == 4 else "::/0"
            routes.append(Route(dst, **_v6({"via": gateway, "dev": UNDERLAY_DEVICE}, version)))
    return routes


def _workload_routes(pod: Pod) -> list[Route]:
    """`<podIP> dev cali<hash> scope link` (cni-plugin and Felix); IPv6 has no link scope."""
    veth = calico_veth_name(pod.namespace, pod.name)
    return [
        Route(ip, dev=veth, scope="link")
        if _version(ip) == 4
        else Route(ip, **_v6({"dev": veth}, 6))
        for ip in pod.ips
    ]


def _blackholes(plan: _Plan, node: str) -> list[Route]:
    """One per own block: BIRD's static in BGP modes, Felix's (proto 80) in VXLAN mode."""
    routes = []
    for block in plan.blocks.get(node, ()):
        encap = plan.encapsulation[block.version]
        proto = PROTO_FELIX if encap.startswith("VXLAN") else PROTO_BIRD
        if block.version == 4:
            routes.append(Route(str(block), type="blackhole", proto=proto))
        else:  # the kernel hangs IPv6 reject routes on the loopback device
            routes.append(
                Route(str(block), type="blackhole", **_v6({"dev": LOOPBACK, "proto": proto}, 6))
            )
    return routes


def _peer_routes(
    plan: _Plan, peer_name: str, me: dict[int, _Peer], peer: dict[int, _Peer]
) -> list[Route]:
    """Routes to another node's blocks and to the addresses its pods borrowed elsewhere."""
    routes = []
    for dst in [*map(str, plan.blocks.get(peer_name, ())), *plan.borrowed.get(peer_name, ())]:
        version = _version(dst)
        if version in peer and version in me:
            route = _remote_route(
                dst, version, plan.encapsulation[version], me[version], peer[version]
            )
            if route is not None:
                routes.append(route)
    return routes


def _interface(device, **changes) -> Interface:
    """A netsim.topology interface (name, kind, addresses, MAC, peer) as a namespace's."""
    fields = {
        "name": device.name,
        "kind": device.kind,
        "addresses": device.addresses,
        "mac": device.mac,
        "peer": device.peer,
    }
    return Interface(**{**fields, **changes})


def _vxlan_device(version: int) -> str:
    return CALICO_VXLAN_DEVICE if version == 4 else CALICO_VXLAN_V6_DEVICE


def _tunnel_devices(plan: _Plan, me: dict[int, _Peer]) -> tuple[Interface, ...]:
    out = []
    encap = plan.encapsulation
    if encap[4].startswith("IPIP") and 4 in plan.versions:
        local = me.get(4)
        addresses = (f"{local.vtep_ip}/32",) if local and local.vtep_ip else ()
        out.append(Interface(CALICO_IPIP_DEVICE, "ipip", addresses, mtu=HOST_MTU - IPIP_OVERHEAD))
    for version in plan.versions:
        local = me.get(version)
        if not encap[version].startswith("VXLAN") or local is None:
            continue
        bits = 32 if version == 4 else 128
        addresses = (f"{local.vtep_ip}/{bits}",) if local.vtep_ip else ()
        out.append(
            Interface(
                _vxlan_device(version),
                "vxlan",
                addresses,
                local.vtep_mac,
                mtu=HOST_MTU - VXLAN_OVERHEAD[version],
                vni=CALICO_VXLAN_VNI,
                port=CALICO_VXLAN_PORT,
                local=local.ip,
                link=UNDERLAY_DEVICE,
            )
        )
    return tuple(out)


def _connected_routes(interfaces: tuple[Interface, ...], versions) -> list[Route]:
    """The routes the kernel adds with each address: its subnet (IPv4, unless /32), its
    prefix (IPv6, /128 included) and fe80::/64 on every device with a MAC when IPv6 is on."""
    routes = []
    for iface in interfaces:
        if iface.kind == "loopback":
            continue
        for cidr in iface.addresses:
            addr = ipaddress.ip_interface(cidr)
            if addr.version == 4 and addr.network.prefixlen < 32:
                routes.append(
                    Route(
                        str(addr.network),
                        dev=iface.name,
                        proto="kernel",
                        scope="link",
                        src=str(addr.ip),
                    )
                )
            elif addr.version == 6:
                routes.append(
                    Route(
                        str(addr.network), dev=iface.name, proto="kernel", metric=256, pref="medium"
                    )
                )
        if 6 in versions and iface.mac:
            routes.append(
                Route(LINK_LOCAL_V6, dev=iface.name, proto="kernel", metric=256, pref="medium")
            )
    return routes


def _remote_route(dst: str, version: int, encap: str, local: _Peer, peer: _Peer) -> Route | None:
    """The route to another node's block (or borrowed address), by encapsulation mode."""
    same_subnet = ipaddress.ip_address(peer.ip) in local.subnet
    cross_subnet = encap.endswith("CrossSubnet")
    if encap.startswith("VXLAN"):
        if cross_subnet and same_subnet:
            return Route(
                dst, **_v6({"via": peer.ip, "dev": UNDERLAY_DEVICE, "proto": PROTO_FELIX}, version)
            )
        if peer.vtep_ip is None:
            return None  # Felix waits for the VTEP before programming the route
        return Route(
            dst,
            onlink=True,
            **_v6(
                {"via": peer.vtep_ip, "dev": _vxlan_device(version), "proto": PROTO_FELIX}, version
            ),
        )
    if encap.startswith("IPIP") and not (cross_subnet and same_subnet):
        # bird_ipam.cfg: krt_tunnel = "tunl0" gives `dev tunl0 onlink`.
        return Route(dst, via=peer.ip, dev=CALICO_IPIP_DEVICE, proto=PROTO_BIRD, onlink=True)
    via = peer.ip
    if not same_subnet:
        # BIRD's iBGP mesh uses `gateway recursive`: a next hop off the local subnet is
        # resolved through the kernel table, i.e. the default gateway.
        via = _gateway(local.subnet) or peer.ip
    return Route(dst, **_v6({"via": via, "dev": UNDERLAY_DEVICE, "proto": PROTO_BIRD}, version))


def _local_routes(interfaces: tuple[Interface, ...]) -> tuple[Route, ...]:
    """The local table the kernel fills from the interfaces' addresses."""
    out = []
    for iface in interfaces:
        for cidr in iface.addresses:
            addr = ipaddress.ip_interface(cidr)
            ip = str(addr.ip)
            if addr.version == 6:
                out.append(
                    Route(
                        ip,
                        type="local",
                        dev=iface.name,
                        table="local",
                        proto="kernel",
                        metric=0,
                        pref="medium",
                    )
                )
                continue
            if iface.kind == "loopback" and addr.network.prefixlen < 32:
                out.append(
                    Route(
                        str(addr.network),
                        type="local",
                        dev=iface.name,
                        table="local",
                        proto="kernel",
                        scope="host",
                        src=ip,
                    )
                )
            out.append(
                Route(
                    ip,
                    type="local",
                    dev=iface.name,
                    table="local",
                    proto="kernel",
                    scope="host",
                    src=ip,
                )
            )
    return tuple(dump_order(out))


def _pod_mac(graph: nx.Graph, pod: Pod) -> str | None:
    node = graph.nodes.get(pod_id(pod.namespace, pod.name))
    if not node:
        return None
    return next((i.mac for i in node["interfaces"] if i.name == POD_DEVICE), None)


# ---------------------------------------------------------------- pod


def pod_namespace(cluster: Cluster, pod: Pod, graph: nx.Graph | None = None) -> Namespace:
    """The pod's namespace as the Calico CNI plugin sets it up: eth0 with the pod's /32 (and
    /128), a scope-link route to 169.254.1.1 and the default route through it, and the host
    veth's ee:ee:ee:ee:ee:ee as that gateway's neighbour (answered by proxy ARP).

    A hostNetwork pod shares its node's namespace, which is returned. Raises InputError for
    a pod without a network namespace (unscheduled, finished or unaddressed).
    """
    if pod.host_network and pod.node_name:
        return node_namespace(cluster, pod.node_name, graph)
    if not pod.node_name:
        raise InputError(
            "is not scheduled to a node: it has no network namespace yet", obj=f"Pod {pod.key}"
        )
    if not _wired(pod):
        why = f"is {pod.phase}" if pod.phase in FAILED_PHASES else "has no IP address"
        raise InputError(f"{why}: Calico has no veth for it", obj=f"Pod {pod.key}")
    plan = _plan(cluster)
    graph = graph if graph is not None else build_topology(cluster)
    found = graph.nodes[pod_id(pod.namespace, pod.name)]["interfaces"]
    eth0 = _interface(next(i for i in found if i.name == POD_DEVICE), mtu=plan.pod_mtu)
    versions = sorted({_version(ip) for ip in pod.ips})
    loopback = Interface(
        LOOPBACK, "loopback", ("127.0.0.1/8",) + (("::1/128",) if 6 in versions else ()), mtu=65536
    )
    interfaces = (loopback, eth0)
    routes = _connected_routes(interfaces, versions)
    neighbours: list[Neighbour] = []
    for version in versions:
        if version == 4:
            routes += [
                Route("0.0.0.0/0", via=POD_GATEWAY_V4, dev=POD_DEVICE),
                Route(POD_GATEWAY_V4, dev=POD_DEVICE, scope="link"),
            ]
            # Learned by ARP, answered by the host veth's proxy_arp: not a static entry.
            neighbours.append(
                Neighbour(POD_GATEWAY_V4, POD_DEVICE, CALICO_HOST_VETH_MAC, "REACHABLE")
            )
        else:
            routes.append(
                Route("::/0", via=POD_GATEWAY_V6, dev=POD_DEVICE, metric=1024, pref="medium")
            )
            neighbours.append(
                Neighbour(
                    POD_GATEWAY_V6, POD_DEVICE, CALICO_HOST_VETH_MAC, "REACHABLE", router=True
                )
            )
    return Namespace(
        name=pod_id(pod.namespace, pod.name),
        node=pod.node_name,
        interfaces=interfaces,
        routes=tuple(dump_order(routes)),
        local_routes=_local_routes(interfaces),
        neighbours=tuple(neighbours),
    )
