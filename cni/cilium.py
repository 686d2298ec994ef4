"""What Cilium's agents hold for a cluster: identities, and per node the BPF maps the datapath
reads (ipcache, endpoints, load balancing, per-endpoint policy), as plain data with lookups.

Version emulated: Cilium v1.16 with kube-proxy replacement, cluster-pool IPAM, IPv4 tunnel
(VXLAN/Geneve) or native routing, default policy enforcement mode, allow-localhost=auto,
identity allocation in CRD mode. Sources: cilium/cilium pkg/maps/*, pkg/identity,
pkg/policy, pkg/service, bpf/lib/policy.h and lb.h, cilium-dbg/cmd (v1.16 era), summarised
in ../shared/reference/cni.md section 2; each module says which parts it follows.

The cluster-wide parts (identities, rules, the shared LB plan, the ipcache contents) are
computed once; a node's view is built when first asked for and cached, because a node's
maps differ only in what is local to it (its endpoints, its NodePorts, which addresses are
"host"). Assumptions where the manifests are silent:
- endpoint ids are per node in 1..4095 as Cilium's, derived from a hash of the pod key
  (Cilium leases them at random), so a pod keeps its id when others come and go;
- interface indexes follow lo 1, eth0 2, cilium_net 3, cilium_host 4, the tunnel device 5
  (tunnel mode), then the pods' veths in pod order; veth names and MACs are the ones
  netsim.topology gives (lxc + 12 hex digits of SHA-256, connector.Endpoint2IfName);
- the host's own addresses are its InternalIP/ExternalIP and cilium_host address;
- the health endpoint, host firewall, kube-apiserver identity, FQDN policy, clustermesh,
  IPsec/WireGuard and Maglev are not modelled.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from cni.cilium_identity import (
    HOST,
    REMOTE_NODE,
    UNKNOWN,
    Identity,
    IdentityTable,
    allocate,
    world_identity,
)
from cni.cilium_lb import LbPlan, NodeLb, plan_lb
from cni.cilium_maps import (
    ENDPOINT_FLAG_HOST,
    SCOPE_EXTERNAL,
    BackendEntry,
    EndpointEntry,
    IpcacheEntry,
    PolicyDecision,
    PolicyEntry,
    ServiceEntry,
)
from cni.cilium_policy import (
    EndpointPolicy,
    PolicyInputs,
    SelectorCache,
    cluster_named_ports,
    compile_endpoint,
    own_named_ports,
)
from netsim.cluster import Cluster
from netsim.model import IPV4, Pod
from netsim.topology import cilium_lxc_name, local_mac, pod_mac
from policies.cilium import CCNP, CNP, CIDRSet, HTTPRule, PolicyRule, cilium_policy_rules
from policies.cilium_http import HttpVerdict, evaluate_http
from policies.cilium_k8s import translate_network_policy

MAX_ENDPOINT_ID = 4095  # pkg/endpointmanager/idallocator maxID
FIRST_LXC_IFINDEX = 5  # lo, eth0, cilium_net, cilium_host come first
_POD, _NODE, _ROUTER, _FIXED = "pod", "node", "router", "fixed"


@dataclass(frozen=True, slots=True)
class _Owner:
    """Who an ipcache prefix belongs to; a node's view turns this into identity + tunnel."""

    kind: str
    identity: int = 0
    node: str | None = None


@dataclass(frozen=True)
class CiliumState:
    """The cluster as every Cilium agent sees it; `node(name)` gives one agent's maps."""

    cluster: Cluster
    table: IdentityTable
    rules: tuple[PolicyRule, ...]
    warnings: tuple[str, ...]
    _ipcache: Mapping[tuple[int, int], Mapping[int, tuple[str, _Owner]]] = field(repr=False)
    _lengths: Mapping[int, tuple[int, ...]] = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def identities(self) -> Mapping[int, Identity]:
        return self.table.identities

    def identity_of_pod(self, pod: Pod, from_node: str | None = None) -> int:
        """A pod's security identity. A hostNetwork pod is its node: host on that node
        (and when no viewpoint is given), remote-node anywhere else. 0 for pods without an
        endpoint (not scheduled, no address, finished)."""
        if pod.host_network:
            return HOST if from_node in (None, pod.node_name) else REMOTE_NODE
        return self.table.of_pod.get((pod.namespace, pod.name), UNKNOWN)

    def node(self, name: str) -> CiliumNode:
        """One node's maps (built on first use, then cached). KeyError for unknown nodes."""
        nodes = self._cache.setdefault("nodes", {})
        found = nodes.get(name)
        if found is None:
            if self.cluster.node(name) is None:
                raise KeyError(name)
            found = nodes[name] = _build_node(self, name)
        return found

    def lb_plan(self) -> LbPlan:
        if "lb" not in self._cache:
            self._cache["lb"] = plan_lb(self.cluster)
        return self._cache["lb"]

    def policy_inputs(self) -> PolicyInputs:
        if "policy" not in self._cache:
            ns_labels = {n.name: n.labels for n in self.cluster.namespaces}
            self._cache["policy"] = PolicyInputs(self.rules, SelectorCache(self.table, ns_labels),
                                                 cluster_named_ports(self.cluster.pods))
        return self._cache["policy"]

    def node_id(self, name: str) -> int:
        ids = self._cache.get("node_ids")
        if ids is None:
            ids = self._cache["node_ids"] = {n.name: i for i, n in
                                             enumerate(self.cluster.nodes, 1)}
        return ids.get(name, 0)

    def ipcache_owner(self, ip: str) -> tuple[str, _Owner] | None:
        """The longest prefix holding an address and its owner (node-independent)."""
        addr = ipaddress.ip_address(ip)
        value = int(addr)
        bits = 32 if addr.version == 4 else 128
        for plen in self._lengths.get(addr.version, ()):
            shift = bits - plen
            hit = self._ipcache[addr.version, plen].get(value >> shift << shift)
            if hit is not None:
                return hit
        return None


def compile_cilium(cluster: Cluster) -> CiliumState:
    """Identities, rules and the ipcache contents of a cluster (per-node maps come lazily)."""
    rules = tuple(translate_network_policy(np) for np in cluster.network_policies)
    more, warnings = cilium_policy_rules(cluster.raw(CNP) + cluster.raw(CCNP))
    rules += more
    cidrs = {c for r in rules for pr in (*r.ingress, *r.egress, *r.ingress_deny, *r.egress_deny)
             for p in pr.peers if isinstance(p, CIDRSet) for c in (p.cidr, *p.except_)}
    versions = {ipaddress.ip_network(c).version for c in cluster.addressing.pod_cidrs}
    dual = len(versions) > 1
    table = allocate(cluster.pods, cluster.namespaces, cidrs, dual)
    index: dict[tuple[int, int], dict[int, tuple[str, _Owner]]] = {}

    def put(prefix: str, owner: _Owner) -> None:
        net = ipaddress.ip_network(prefix, strict=False)
        index.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = \
            (str(net), owner)

    for version in sorted(versions):
        put("0.0.0.0/0" if version == 4 else "::/0", _Owner(_FIXED, world_identity(version,
                                                                                    dual)))
    for prefix, number in table.cidr_ids.items():
        put(prefix, _Owner(_FIXED, number))
    for node in cluster.nodes:
        for a in node.addresses:
            if a.type in ("InternalIP", "ExternalIP"):
                put(a.address, _Owner(_NODE, node=node.name))
        routers = cluster.addressing.tunnel_ips.get(node.name, ())
        for ip in (routers,) if isinstance(routers, str) else routers:
            put(ip, _Owner(_ROUTER, node=node.name))
    for (ns, name), number in table.of_pod.items():
        pod = cluster.pod(ns, name)
        for ip in pod.ips:
            put(ip, _Owner(_POD, number, pod.node_name))
    lengths = {v: tuple(sorted((p for (fam, p) in index if fam == v), reverse=True))
               for v in (4, 6)}
    return CiliumState(cluster, table, rules, warnings, index, lengths)


# ---------------------------------------------------------------- one node


@dataclass(frozen=True)
class CiliumNode:
    """One agent's maps. Directions are "ingress"/"egress"; protocols names like "TCP"."""

    name: str
    state: CiliumState
    node_ip: str | None
    endpoints_by_ip: Mapping[str, EndpointEntry]
    endpoints_by_id: Mapping[int, EndpointEntry]
    pods: Mapping[int, Pod]  # endpoint id -> pod
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ ipcache

    def ipcache_lookup(self, ip: str) -> IpcacheEntry | None:
        """cilium_ipcache LPM lookup as this node's datapath does it."""
        hit = self.state.ipcache_owner(ip)
        return None if hit is None else self._resolve(*hit)

    def ipcache_entries(self) -> tuple[IpcacheEntry, ...]:
        """Every ipcache entry of this node (what `cilium-dbg bpf ipcache list` dumps)."""
        out = [self._resolve(prefix, owner)
               for table in self.state._ipcache.values() for prefix, owner in table.values()]
        return tuple(sorted(out, key=_prefix_order))

    def _resolve(self, prefix: str, owner: _Owner) -> IpcacheEntry:
        if owner.kind == _FIXED:
            return IpcacheEntry(prefix, owner.identity)
        local = owner.node == self.name
        node_id = 0 if local else self.state.node_id(owner.node or "")
        if owner.kind == _POD:
            tunnel = None if local else self._node_ip(owner.node)
            return IpcacheEntry(prefix, owner.identity, tunnel, node_id=node_id)
        if owner.kind == _NODE:
            return IpcacheEntry(prefix, HOST if local else REMOTE_NODE, node_id=node_id)
        # A remote cilium_host address is reached through the tunnel (manager.go
        # nodeAddressHasTunnelIP: NodeCiliumInternalIP).
        return IpcacheEntry(prefix, HOST if local else REMOTE_NODE,
                            None if local else self._node_ip(owner.node), node_id=node_id)

    def _node_ip(self, node: str | None) -> str | None:
        n = self.state.cluster.node(node or "")
        return n.ip(IPV4) if n is not None else None

    # ------------------------------------------------------------ endpoints

    def endpoint(self, ip: str) -> EndpointEntry | None:
        """cilium_lxc lookup: a local endpoint, or a host entry for the node's own IPs."""
        return self.endpoints_by_ip.get(ip)

    def endpoint_by_id(self, endpoint_id: int) -> EndpointEntry | None:
        return self.endpoints_by_id.get(endpoint_id)

    def endpoint_of_pod(self, pod: Pod) -> EndpointEntry | None:
        return next((self.endpoints_by_ip[ip] for ip in pod.ips if ip in self.endpoints_by_ip
                     and self.endpoints_by_ip[ip].pod_key == pod.key), None)

    # ------------------------------------------------------------ load balancing

    @property
    def lb(self) -> NodeLb:
        return self.state.lb_plan().node(self.name)

    def service_lookup(self, address: str, port: int, protocol: str,
                       scope: str = SCOPE_EXTERNAL) -> ServiceEntry | None:
        """The master (slot 0) entry for a frontend; scope "internal" is the switch
        lb4_lookup_service makes for in-cluster sources of a two-scopes service."""
        return self.lb.lookup(address, port, protocol, scope)

    def backend(self, backend_id: int) -> BackendEntry:
        return self.lb.backends[backend_id]

    def revnat(self, index: int) -> tuple[str, int]:
        return self.lb.revnat[index]

    # ------------------------------------------------------------ policy

    def policy(self, endpoint_id: int) -> EndpointPolicy:
        """The endpoint's policy map (KeyError for an id that is not a local endpoint)."""
        pod = self.pods[endpoint_id]
        ident = self.state.identities[self.endpoints_by_id[endpoint_id].sec_id]
        key = (ident.id, frozenset(own_named_ports(pod).items()))
        cache = self._cache.setdefault("policy", {})
        found = cache.get(key)
        if found is None:
            found = cache[key] = compile_endpoint(self.state.policy_inputs(), endpoint_id,
                                                  ident, pod, self.name)
        return found if found.endpoint_id == endpoint_id else \
            EndpointPolicy(endpoint_id, found.entries, found.enforcing, found._index)

    def policy_entries(self, endpoint_id: int) -> tuple[PolicyEntry, ...]:
        return self.policy(endpoint_id).entries

    def policy_lookup(self, endpoint_id: int, remote_identity: int, direction: str,
                      protocol: str, dport: int) -> PolicyDecision:
        """__policy_can_access for a packet of this endpoint (egress) or to it (ingress)."""
        return self.policy(endpoint_id).lookup(remote_identity, direction.lower(), protocol,
                                               dport)

    def http_rules(self, endpoint_id: int, remote_identity: int, direction: str,
                   protocol: str, dport: int) -> tuple[HTTPRule, ...] | None:
        """The HTTP rules the proxy applies when the lookup redirects, else None."""
        policy = self.policy(endpoint_id)
        decision = policy.lookup(remote_identity, direction.lower(), protocol, dport)
        entry = policy.entry(decision)
        return entry.http if entry is not None and entry.proxy_port and not entry.deny else None

    def evaluate_http(self, endpoint_id: int, remote_identity: int, direction: str,
                      protocol: str, dport: int, method: str, path: str, host: str = "",
                      headers: Mapping[str, str] | None = None) -> HttpVerdict | None:
        """The proxy's verdict on one request (None when the traffic is not redirected)."""
        rules = self.http_rules(endpoint_id, remote_identity, direction, protocol, dport)
        return None if rules is None else evaluate_http(rules, method, path, host, headers)


def endpoint_id_for(pod_key: str, taken: set[int]) -> int:
    """A per-node endpoint id from a hash of the pod key, probing upward on collisions."""
    start = int.from_bytes(hashlib.sha256(pod_key.encode()).digest()[:4], "big")
    for step in range(MAX_ENDPOINT_ID):
        candidate = (start + step) % MAX_ENDPOINT_ID + 1
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    raise ValueError("more than 4095 endpoints on one node")


def veth_mac(namespace: str, name: str) -> str:
    """The host-side veth MAC netsim.topology gives Cilium pods (bytes 12-17 of the SHA-1
    that names pods' MACs)."""
    return local_mac(hashlib.sha1(f"{namespace}.{name}".encode()).digest()[12:18])


def _build_node(state: CiliumState, name: str) -> CiliumNode:
    cluster = state.cluster
    node = cluster.node(name)
    by_ip: dict[str, EndpointEntry] = {}
    by_id: dict[int, EndpointEntry] = {}
    pods: dict[int, Pod] = {}
    taken: set[int] = set()
    tunnel = cluster.settings.cilium_routing_mode == "tunnel"
    ifindex = FIRST_LXC_IFINDEX + (1 if tunnel else 0)
    for pod in cluster.pods_on(name):
        sec_id = state.table.of_pod.get((pod.namespace, pod.name))
        if sec_id is None:
            continue
        eid = endpoint_id_for(pod.key, taken)
        entry = EndpointEntry(pod.ip or "", eid, ifindex, cilium_lxc_name(pod.key),
                              pod_mac(pod.namespace, pod.name), veth_mac(pod.namespace, pod.name),
                              sec_id, 0, pod.key)
        ifindex += 1
        by_id[eid] = entry
        pods[eid] = pod
        for ip in pod.ips:
            by_ip[ip] = EndpointEntry(ip, eid, entry.ifindex, entry.interface, entry.mac,
                                      entry.node_mac, sec_id, 0, pod.key)
    own = [a.address for a in node.addresses if a.type in ("InternalIP", "ExternalIP")]
    routers = cluster.addressing.tunnel_ips.get(name, ())
    own += [routers] if isinstance(routers, str) else list(routers)
    for ip in own:
        by_ip.setdefault(ip, EndpointEntry(ip, 0, flags=ENDPOINT_FLAG_HOST))
    return CiliumNode(name, state, node.ip(IPV4), by_ip, by_id, pods)


def _prefix_order(e: IpcacheEntry) -> tuple[int, int, int]:
    net = ipaddress.ip_network(e.prefix)
    return net.version, int(net.network_address), net.prefixlen
