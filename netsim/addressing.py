"""IPAM: node, pod and service addresses where the manifests lack them, as the CNI would assign.

Every address the manifests give is kept. The rest is filled deterministically:
- nodes from the underlay CIDR in name order;
- pods as Calico's IPAM does (per-node affine /26 blocks, a block claimed by a walk seeded
  by the hostname, the lowest free ordinal first) or Cilium's cluster-pool (one podCIDR per
  node, handed out in order);
- Service clusterIPs the way the API server's allocator picks a free address in the upper
  (dynamic) band of the range, seeded by the Service's name so that adding one Service does not
  move another; NodePorts likewise; LoadBalancer addresses from an emulated cloud's pool.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from netsim.errors import InputError
from netsim.fields import EMPTY, FrozenDict
from netsim.model import IPV4, IPV6, Node, NodeAddress, Pod, Service, family
from netsim.settings import (
    DEFAULT_LB_CIDRS,
    DEFAULT_NODE_CIDRS,
    DEFAULT_POD_CIDRS,
    DEFAULT_SERVICE_CIDRS,
    Settings,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MIN_INFERRED_PREFIX = {IPV4: 16, IPV6: 64}  # an inferred pool is widened to at least this
CALICO_IPV6_BLOCK = 122
CILIUM_IPV6_MASK = 120
TUNNEL_ANNOTATIONS = {  # where Calico and Cilium record a node's tunnel/router address
    IPV4: ("projectcalico.org/IPv4IPIPTunnelAddr", "projectcalico.org/IPv4VXLANTunnelAddr",
           "network.cilium.io/ipv4-cilium-host", "io.cilium.network.ipv4-cilium-host"),
    IPV6: ("projectcalico.org/IPv6VXLANTunnelAddr", "network.cilium.io/ipv6-cilium-host",
           "io.cilium.network.ipv6-cilium-host"),
}


@dataclass(frozen=True, slots=True)
class AddressPlan:
    """What the CNI's IPAM decided: pod address blocks per node and per-node tunnel addresses.

    Calico: /26 IPAM blocks with node affinity; Cilium (cluster-pool): one podCIDR per node.
    """

    pod_cidrs: tuple[str, ...]  # the cluster's pod pools (one per family)
    service_cidrs: tuple[str, ...]
    node_cidrs: tuple[str, ...]  # the underlay subnets nodes were addressed from
    blocks: FrozenDict = EMPTY  # block CIDR -> node name (Calico affinity / Cilium podCIDR)
    tunnel_ips: FrozenDict = EMPTY  # node -> tuple of tunnel/router addresses (per family)
    inferred: tuple[str, ...] = ()  # human notes on which CIDRs were inferred and from what

    def node_blocks(self, node: str) -> tuple[str, ...]:
        return tuple(b for b, n in self.blocks.items() if n == node)


# ---------------------------------------------------------------- pools


@dataclass(frozen=True, slots=True)
class Pools:
    """The cluster's address pools per family, and which of them the user named."""

    families: tuple[str, ...]  # primary first
    pod: dict[str, Network]
    service: dict[str, Network]
    node: dict[str, Network]
    explicit: frozenset[str]  # "pod", "service", "node": named in the settings
    notes: tuple[str, ...]


def _by_family(cidrs: Iterable[str]) -> dict[str, Network]:
    out: dict[str, Network] = {}
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        out.setdefault(IPV6 if net.version == 6 else IPV4, net)
    return out


def _covering(addresses: list[Network], fam: str) -> Network:
    """The smallest network holding every address, widened to a plausible pool size."""
    lo = min(int(a.network_address) for a in addresses)
    hi = max(int(a.broadcast_address) for a in addresses)
    bits = 32 if fam == IPV4 else 128
    prefix = min(bits - (lo ^ hi).bit_length(), MIN_INFERRED_PREFIX[fam])
    return ipaddress.ip_network((lo, prefix), strict=False)


def _choose(kind: str, fam: str, explicit: dict[str, Network], hints: dict[str, Network],
            seen: list[Network], default: str, notes: list[str]) -> Network:
    if fam in explicit:
        return explicit[fam]
    default_net = ipaddress.ip_network(default)
    for candidate, origin in ((hints.get(fam), "KubeProxyConfiguration clusterCIDR"),
                              (default_net, "default")):
        if candidate is not None and all(s.subnet_of(candidate) for s in seen):
            if origin != "default" or seen:
                notes.append(f"{kind} CIDR {candidate} ({origin})")
            return candidate
    chosen = _covering(seen, fam)
    notes.append(f"{kind} CIDR {chosen} (inferred from {len(seen)} addresses in the input)")
    return chosen


def choose_pools(settings: Settings, nodes: Iterable[Node], pods: Iterable[Pod],
                 services: Iterable[Service], cluster_cidrs: tuple[str, ...]) -> Pools:
    """The pod, service and node CIDRs: the settings', else inferred from the input."""
    seen: dict[tuple[str, str], list[Network]] = defaultdict(list)
    requested: set[str] = set()
    for n in nodes:
        for ip in n.internal_ips:
            seen["node", family(ip)].append(ipaddress.ip_network(ip))
        for c in n.pod_cidrs:
            seen["pod", family(c)].append(ipaddress.ip_network(c))
    for p in pods:
        if not p.host_network:
            for ip in p.ips:
                seen["pod", family(ip)].append(ipaddress.ip_network(ip))
    for s in services:
        for ip in s.cluster_ips:
            seen["service", family(ip)].append(ipaddress.ip_network(ip))
        requested.update(s.ip_families)
    explicit = {"pod": _by_family(settings.pod_cidrs),
                "service": _by_family(settings.service_cidrs),
                "node": _by_family(settings.node_cidrs)}
    present = {fam for (_, fam) in seen} | requested
    for kind in explicit:
        present |= set(explicit[kind])
    primary = family(settings.pod_cidrs[0]) if settings.pod_cidrs else \
        (IPV4 if IPV4 in present or not present else IPV6)
    families = (primary,) + tuple(f for f in (IPV4, IPV6) if f in present and f != primary)
    notes: list[str] = []
    hints = _by_family(cluster_cidrs)
    pools = {kind: {fam: _choose(kind, fam, explicit[kind], hints if kind == "pod" else {},
                                 seen.get((kind, fam), []), defaults[fam], notes)
                    for fam in families}
             for kind, defaults in (("pod", DEFAULT_POD_CIDRS),
                                    ("service", DEFAULT_SERVICE_CIDRS),
                                    ("node", DEFAULT_NODE_CIDRS))}
    _check_overlaps(pools, explicit, settings)
    return Pools(families=families, pod=pools["pod"], service=pools["service"],
                 node=pools["node"], explicit=frozenset(k for k, v in explicit.items() if v),
                 notes=tuple(notes))


def _check_overlaps(pools: dict[str, dict[str, Network]], explicit: dict[str, dict],
                    settings: Settings) -> None:
    for a, b in (("pod", "service"), ("pod", "node"), ("service", "node")):
        if b == "node" and not explicit["node"]:
            # An inferred node CIDR only spans the nodes' own addresses (a VPC's, say); it
            # is no pool to keep pods and Services out of.
            continue
        for fam, net in pools[a].items():
            other = pools[b].get(fam)
            if other is not None and net.overlaps(other):
                how = {k: "" if explicit[k] else " (inferred)" for k in (a, b)}
                blamed = b if _SETTING[b][0] in settings.flags or not explicit[a] else a
                raise InputError(f"{a} CIDR {net}{how[a]} overlaps {b} CIDR {other}{how[b]}; "
                                 "pools must not overlap", **_origin(blamed, explicit, settings))


_SETTING = {"pod": ("pod_cidrs", "spec.podCIDRs", "--pod-cidr"),
            "service": ("service_cidrs", "spec.serviceCIDRs", "--service-cidr"),
            "node": ("node_cidrs", "spec.nodeCIDRs", None)}


def _origin(kind: str, explicit: dict[str, dict], settings: Settings) -> dict:
    """Where the user set a pool: a command-line flag, the NetsimConfig, or nowhere."""
    name, field, flag = _SETTING[kind]
    if not explicit[kind]:
        return {}
    if name in settings.flags:
        return {"obj": "command line", "field": flag}
    return {"source": settings.source, "obj": "NetsimConfig", "field": field}


# ---------------------------------------------------------------- nodes


def address_nodes(nodes: list[Node], pools: Pools) -> list[Node]:
    """Give every node an InternalIP per family, taken in name order from the node CIDR."""
    out = list(nodes)
    for fam in pools.families:
        used = {ip for n in nodes for ip in n.internal_ips if family(ip) == fam}
        free = _hosts(pools.node[fam], used, skip=2)  # .0 network, .1 gateway
        for i, n in enumerate(out):
            if n.ip(fam) is None:
                ip = next(free, None)
                if ip is None:
                    raise InputError(f"node CIDR {pools.node[fam]} has no address left for "
                                     f"node {n.name}; set spec.nodeCIDRs in NetsimConfig")
                out[i] = replace(n, addresses=(*n.addresses, NodeAddress("InternalIP", ip)))
    return out


def _hosts(net: Network, used: set[str], skip: int = 1) -> Iterator[str]:
    base, size = int(net.network_address), net.num_addresses
    last = size - 1 if net.version == 4 and size > 2 else size
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    for offset in range(skip, last):
        ip = str(make(base + offset))
        if ip not in used:
            yield ip


# ---------------------------------------------------------------- pods


class _BlockAllocator:
    """Hands out per-node blocks of a pool and addresses inside them."""

    def __init__(self, pool: Network, prefix: int, walk: bool, skip_edges: bool) -> None:
        if prefix < pool.prefixlen:
            prefix = pool.prefixlen
        self.pool, self.prefix, self.walk, self.skip_edges = pool, prefix, walk, skip_edges
        self.count = 1 << (prefix - pool.prefixlen)
        self.size = 1 << ((32 if pool.version == 4 else 128) - prefix)
        self.make = ipaddress.IPv4Address if pool.version == 4 else ipaddress.IPv6Address
        self.owner: dict[int, str] = {}  # block index -> node
        self.node_blocks: dict[str, list[int]] = defaultdict(list)
        self.used: set[int] = set()
        self.cursor: dict[int, int] = {}
        self.next_free = 0

    def index(self, ip: int) -> int:
        return (ip - int(self.pool.network_address)) // self.size

    def cidr(self, index: int) -> str:
        base = int(self.pool.network_address) + index * self.size
        return f"{self.make(base)}/{self.prefix}"

    def adopt(self, index: int, node: str) -> None:
        if index not in self.owner:
            self.owner[index] = node
            self.node_blocks[node].append(index)

    def claim(self, node: str) -> int:
        """A free block for the node: Calico walks from a hostname-seeded start, Cilium's
        cluster-pool takes the next free one."""
        start = self.next_free
        if self.walk:
            start = int.from_bytes(hashlib.sha256(node.encode()).digest()[:8], "big") % self.count
        for step in range(self.count):
            index = (start + step) % self.count
            if index not in self.owner:
                self.adopt(index, node)
                if not self.walk:
                    self.next_free = index + 1
                return index
        raise InputError(f"pod CIDR {self.pool} is exhausted: no free /{self.prefix} block for "
                         f"node {node}; set a larger spec.podCIDRs in NetsimConfig")

    def allocate(self, node: str) -> str:
        """The lowest free address in the node's blocks, claiming a block when they are full."""
        blocks = self.node_blocks[node]
        for index in blocks:
            ip = self._take(index)
            if ip is not None:
                return ip
        while True:
            ip = self._take(self.claim(node))
            if ip is not None:
                return ip

    def _take(self, index: int) -> str | None:
        base = int(self.pool.network_address) + index * self.size
        first = 1 if self.skip_edges else 0
        last = self.size - 1 if self.skip_edges and self.pool.version == 4 else self.size
        for offset in range(self.cursor.get(index, first), last):
            if base + offset not in self.used:
                self.used.add(base + offset)
                self.cursor[index] = offset + 1
                return str(self.make(base + offset))
        self.cursor[index] = last
        return None


def address_pods(pods: list[Pod], nodes: list[Node], pools: Pools, settings: Settings,
                 late: frozenset[str] = frozenset(),
                 ) -> tuple[list[Pod], dict[str, str], dict[str, tuple]]:
    """Pod IPs per family; returns (pods, block -> node, node -> tunnel/router IPs).

    Pods keyed in `late` ("ns/name") are addressed after all others, so that adding them
    (netsim's own addons) moves no other pod's IP or block.
    """
    node_by_name = {n.name: n for n in nodes}
    calico = settings.cni == "calico"
    tunnels = calico and settings.calico_encapsulation != "None"
    blocks: dict[str, str] = {}
    tunnel_ips: dict[str, list[str]] = defaultdict(list)
    assigned: dict[int, list[str]] = defaultdict(list)  # pod index -> new IPs
    for fam in pools.families:
        pool = pools.pod[fam]
        if calico:
            prefix = settings.calico_block_size if fam == IPV4 else CALICO_IPV6_BLOCK
        else:
            prefix = settings.cilium_node_mask_size if fam == IPV4 else CILIUM_IPV6_MASK
        alloc = _BlockAllocator(pool, prefix, walk=calico, skip_edges=not calico)
        _adopt_existing(alloc, pods, nodes, fam, pool, pools, calico)
        for n in sorted(nodes, key=lambda n: n.name):  # tunnel / router address first
            # Calico's IPv6 tunnels are VXLAN only (IPIP is IPv4-only): no v6 tunl0 address
            if not calico or (tunnels and (fam == IPV4
                                           or "VXLAN" in settings.calico_encapsulation)):
                ip = _annotated_tunnel_ip(node_by_name[n.name], fam, pool)
                if ip is not None:
                    alloc.used.add(int(ipaddress.ip_address(ip)))
                    alloc.adopt(alloc.index(int(ipaddress.ip_address(ip))), n.name)
                else:
                    ip = alloc.allocate(n.name)
                tunnel_ips[n.name].append(ip)
        waiting = sorted((p.key in late, p.node_name, p.namespace, p.name, i)
                         for i, p in enumerate(pods)
                         if p.node_name and not p.host_network and p.ip_of(fam) is None
                         and p.phase in ("Running", "Pending", "Unknown"))
        for _, node, _, _, i in waiting:
            assigned[i].append(alloc.allocate(node))
        blocks.update({alloc.cidr(i): node for i, node in alloc.owner.items()})
    node_ips = {n.name: n.internal_ips for n in nodes}
    out = list(pods)
    for i, p in enumerate(pods):
        host_ips = p.host_ips or node_ips.get(p.node_name or "", ())
        if p.host_network and p.node_name in node_ips and not p.ips:
            out[i] = replace(p, ips=host_ips, host_ips=host_ips, addressed=True)
        elif i in assigned:
            out[i] = replace(p, ips=p.ips + tuple(assigned[i]), host_ips=host_ips,
                             addressed=True)
        elif host_ips != p.host_ips:
            out[i] = replace(p, host_ips=host_ips)
    return out, blocks, {k: tuple(v) for k, v in tunnel_ips.items()}


def _adopt_existing(alloc: _BlockAllocator, pods: list[Pod], nodes: list[Node], fam: str,
                    pool: Network, pools: Pools, calico: bool) -> None:
    """Blocks already in use belong to the node whose pods use them (a dump's IPAM state)."""
    if not calico:
        for n in sorted(nodes, key=lambda n: n.name):
            for c in n.pod_cidrs:
                net = ipaddress.ip_network(c)
                if family(c) == fam and net.subnet_of(pool) and net.prefixlen == alloc.prefix:
                    alloc.adopt(alloc.index(int(net.network_address)), n.name)
    for p in sorted(pods, key=lambda p: (p.namespace, p.name)):
        ip = p.ip_of(fam)
        if ip is None or p.host_network:
            continue
        addr = ipaddress.ip_address(ip)
        if addr not in pool:
            if "pod" in pools.explicit:
                raise InputError(f"{ip} is outside the pod CIDR {pool} set in NetsimConfig",
                                 source=p.meta.source, obj=f"Pod {p.key}", field="status.podIP")
            continue
        if int(addr) in alloc.used:
            raise InputError(f"{ip} is used by another Pod too", source=p.meta.source,
                             obj=f"Pod {p.key}", field="status.podIP")
        alloc.used.add(int(addr))
        if p.node_name:
            alloc.adopt(alloc.index(int(addr)), p.node_name)


def _annotated_tunnel_ip(node: Node, fam: str, pool: Network) -> str | None:
    for key in TUNNEL_ANNOTATIONS[fam]:
        value = node.meta.annotations.get(key)
        if value:
            try:
                if ipaddress.ip_address(value) in pool:
                    return str(ipaddress.ip_address(value))
            except ValueError:
                raise InputError(f"must be an IP address, got {value!r}",
                                 source=node.meta.source, obj=f"Node {node.name}",
                                 field=f"metadata.annotations.{key}") from None
    return None


# ---------------------------------------------------------------- services


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _static_band(size: int, lo: int, hi: int, step: int) -> int:
    """The lower band the API server keeps for static allocation (KEP-3070 / KEP-3668)."""
    return min(max(lo, size // step), hi)


def address_services(services: list[Service], pools: Pools, settings: Settings) -> list[Service]:
    """clusterIPs, NodePorts, health-check ports and LoadBalancer addresses where missing."""
    used_ips = _used_cluster_ips(services, pools)
    used_ports = _used_node_ports(services, settings)
    lb_free = {fam: _lb_addresses(services, settings, fam) for fam in (IPV4, IPV6)}
    out = []
    for s in sorted(services, key=lambda s: s.key):
        changes: dict = {}
        fams = _service_families(s, pools)
        if fams != s.ip_families:
            changes["ip_families"] = fams
        if s.type != "ExternalName" and not s.headless and not s.cluster_ips:
            changes["cluster_ips"] = tuple(_pick_ip(s, pools.service[f], used_ips) for f in fams)
        if s.type in ("NodePort", "LoadBalancer") and (
                s.type == "NodePort" or s.allocate_load_balancer_node_ports):
            ports = _node_ports(s, used_ports, settings)
            if ports != s.ports:
                changes["ports"] = ports
        if (s.type == "LoadBalancer" and s.external_traffic_policy == "Local"
                and s.health_check_node_port is None):
            changes["health_check_node_port"] = _pick_port(s, used_ports, settings,
                                                           "health")
        if s.type == "LoadBalancer" and not s.load_balancer_ingress \
                and not s.load_balancer_hostnames:
            fam = (changes.get("ip_families") or s.ip_families or (pools.families[0],))[0]
            ip = s.load_balancer_ip or next(lb_free[fam], None)
            if ip is not None:
                changes["load_balancer_ingress"] = (ip,)
        out.append(replace(s, addressed=True, **changes) if changes else s)
    return out


def _service_families(s: Service, pools: Pools) -> tuple[str, ...]:
    if s.type == "ExternalName":
        return ()
    if s.cluster_ips:
        return tuple(family(ip) for ip in s.cluster_ips)
    wanted = s.ip_families or (pools.families[0],)
    for i, f in enumerate(wanted):
        if f not in pools.families:
            raise InputError(f"{f} is not configured on this cluster (families: "
                             f"{', '.join(pools.families)})", source=s.meta.source,
                             obj=f"Service {s.key}", field=f"spec.ipFamilies[{i}]")
    policy = s.ip_family_policy or "SingleStack"
    if policy == "SingleStack":
        return wanted[:1]
    if policy == "RequireDualStack" and len(pools.families) < 2:
        raise InputError("RequireDualStack needs a dual-stack cluster (pod and service CIDRs "
                         "of both families)", source=s.meta.source, obj=f"Service {s.key}",
                         field="spec.ipFamilyPolicy")
    return wanted + tuple(f for f in pools.families if f not in wanted)


def _used_cluster_ips(services: list[Service], pools: Pools) -> set[str]:
    used: dict[str, Service] = {}
    for s in services:
        for i, ip in enumerate(s.cluster_ips):
            where = dict(source=s.meta.source, obj=f"Service {s.key}",
                         field=f"spec.clusterIPs[{i}]")
            net = pools.service.get(family(ip))
            if "service" in pools.explicit and (net is None or ipaddress.ip_address(ip)
                                                not in net):
                raise InputError(f"{ip} is outside the service CIDR set in NetsimConfig "
                                 f"({', '.join(map(str, pools.service.values()))})", **where)
            if ip in used:
                raise InputError(f"{ip} is already allocated to Service {used[ip].key}", **where)
            used[ip] = s
    return set(used)


def _pick_ip(s: Service, net: Network, used: set[str]) -> str:
    size = net.num_addresses
    reserved = 2 if net.version == 4 else 1  # network and broadcast address
    usable = size - reserved
    band = _static_band(usable, 16, 256, 16)
    dynamic = usable - band if usable > band else usable
    start = _seed(s.key) % max(dynamic, 1)
    base = int(net.network_address) + 1
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    for step in range(usable):
        offset = (band + start + step) % usable if dynamic != usable else (start + step) % usable
        ip = str(make(base + offset))
        if ip not in used and offset not in (0, 9):  # .1 kubernetes, .10 cluster DNS
            used.add(ip)
            return ip
    raise InputError(f"service CIDR {net} is full", source=s.meta.source,
                     obj=f"Service {s.key}", field="spec.clusterIP")


def _used_node_ports(services: list[Service], settings: Settings) -> set[int]:
    """NodePorts the input gives. The allocator is one per cluster, by port number: one
    Service may use a number for several protocols, two Services may not share it."""
    lo, hi = settings.node_port_range
    used: dict[int, Service] = {}
    for s in services:
        ports = [(f"spec.ports[{i}].nodePort", p.node_port)
                 for i, p in enumerate(s.ports) if p.node_port]
        if s.health_check_node_port:
            ports.append(("spec.healthCheckNodePort", s.health_check_node_port))
        for path, port in ports:
            where = dict(source=s.meta.source, obj=f"Service {s.key}", field=path)
            if not lo <= port <= hi:
                raise InputError(f"{port} is not in the valid range {lo}-{hi}", **where)
            if port in used and used[port] is not s:
                raise InputError(f"provided port {port} is already allocated to Service "
                                 f"{used[port].key}", **where)
            used[port] = s
    return set(used)


def _node_ports(s: Service, used: set[int], settings: Settings) -> tuple:
    """Fill missing nodePorts; ports with the same number share one (initNodePorts)."""
    by_number = {p.port: p.node_port for p in s.ports if p.node_port}
    out = []
    for p in s.ports:
        if p.node_port is None:
            if p.port not in by_number:
                by_number[p.port] = _pick_port(s, used, settings, str(p.port))
            p = replace(p, node_port=by_number[p.port])
        out.append(p)
    return tuple(out)


def _pick_port(s: Service, used: set[int], settings: Settings, salt: str) -> int:
    lo, hi = settings.node_port_range
    size = hi - lo + 1
    band = _static_band(size, 16, 128, 32)
    start = _seed(f"{s.key}/{salt}") % max(size - band, 1)
    for step in range(size):
        port = lo + (band + start + step) % size
        if port not in used:
            used.add(port)
            return port
    raise InputError(f"no free NodePort in {lo}-{hi}", source=s.meta.source,
                     obj=f"Service {s.key}", field="spec.ports")


def _lb_addresses(services: list[Service], settings: Settings, fam: str) -> Iterator[str]:
    """The emulated cloud's free addresses of one family (its configured pools of that
    family, else the default one)."""
    taken = {ip for s in services for ip in s.load_balancer_ingress} | \
        {s.load_balancer_ip for s in services if s.load_balancer_ip}
    cidrs = [c for c in settings.load_balancer_cidrs if family(c.split("/")[0]) == fam] or \
        [c for c in DEFAULT_LB_CIDRS if family(c.split("/")[0]) == fam]
    for cidr in cidrs:
        yield from _hosts(ipaddress.ip_network(cidr), taken, skip=1)
