"""kube-proxy's IPVS mode for one node and family: virtual servers, kube-ipvs0, ipsets, rules.

Compiled as kubernetes pkg/proxy/ipvs/proxier.go syncProxyRules and syncEndpoint do on a
fresh node (restated in ../shared/reference/kube-proxy.md section 10); text renderers print
what `ipvsadm -Ln`, `ipset list`, iptables-restore input and iptables-save would show.

Where netsim's input cannot say what kube-proxy sees, it assumes:
* the node's local addresses are its status.addresses of the family (InternalIP and
  ExternalIP). kube-proxy also opens NodePorts on every other local address it finds
  (127.0.0.1, docker0, tunnel devices) when nodePortAddresses is empty; those are left out.
* the node IP (for "does a source range cover the node") is the node's InternalIP, else
  127.0.0.1 / ::1 as kube-proxy falls back to.
* the state is that of a first sync: no real servers draining with weight 0 after graceful
  termination, no stale virtual servers or addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from netsim.cluster import Cluster
from netsim.model import IPV6
from proxy.kube_proxy import ipvs_sets as S
from proxy.kube_proxy.constants import PROTOCOL_NUMBERS
from proxy.kube_proxy.ipvs_rules import (
    NoNodeAccess,
    Rule,
    build_rules,
    hook_rules,
    restore_text,
    save_text,
)
from proxy.kube_proxy.ipvs_sets import IpSet
from proxy.kube_proxy.nodelocal import contains, local_detector, node_port_addresses
from proxy.kube_proxy.options import KubeProxyOptions
from proxy.kube_proxy.serviceports import (
    EndpointInfo,
    ServicePortInfo,
    categorize,
    endpoints,
    node_addresses,
    service_ports,
)

DUMMY_DEVICE = "kube-ipvs0"
DEFAULT_SCHEDULER = "rr"
# IPVS service flags (pkg/proxy/ipvs/util FlagPersistent, FlagSourceHash = IP_VS_SVC_F_SCHED2)
FLAG_PERSISTENT = 0x1
FLAG_SOURCE_HASH = 0x10
_SCHED_FLAGS = (0x8, 0x10, 0x20)  # IP_VS_SVC_F_SCHED1..3

CLUSTER_IP, EXTERNAL_IP, LOAD_BALANCER, NODE_PORT = (
    "ClusterIP", "ExternalIP", "LoadBalancer", "NodePort")


@dataclass(frozen=True, slots=True)
class RealServer:
    """An IPVS destination: kube-proxy adds every endpoint with weight 1 and masquerading
    (the zero connection flags, IP_VS_CONN_F_MASQ)."""

    address: str
    port: int
    weight: int = 1
    forward: str = "Masq"

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class VirtualServer:
    """An IPVS virtual service and the service port it was made for."""

    address: str
    port: int
    protocol: str  # TCP, UDP or SCTP, as ipvsadm prints it
    scheduler: str
    flags: int = 0
    timeout: int = 0  # persistence timeout, seconds (with FLAG_PERSISTENT)
    real_servers: tuple[RealServer, ...] = ()
    service: str = ""  # svcPortName, e.g. ns1/svc1:p80
    kind: str = CLUSTER_IP  # ClusterIP, ExternalIP, LoadBalancer or NodePort
    local: bool = False  # the real servers follow a Local traffic policy

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)

    @property
    def key(self) -> tuple[str, str, int]:
        return self.protocol, self.address, self.port

    @property
    def label(self) -> str:
        """ipvsadm's "PROT  address:port" column."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol}  {host}:{self.port}"


@dataclass(frozen=True, slots=True)
class IpvsState:
    """Everything kube-proxy in IPVS mode programs on one node for one IP family."""

    node: str
    family: str
    virtual_servers: tuple[VirtualServer, ...]  # in `ipvsadm -Ln` order
    dummy_addresses: tuple[str, ...]  # bound to kube-ipvs0, sorted
    ipsets: tuple[IpSet, ...]  # in kube-proxy's ipsetInfo order
    rules: tuple[Rule, ...]  # the restore payload's rules: nat, then filter
    hooks: tuple[Rule, ...]  # jump rules from the built-in chains, in their final order
    sysctls: tuple[tuple[str, str], ...] = ()

    @property
    def ipv6(self) -> bool:
        return self.family == IPV6

    def ipset(self, base: str) -> IpSet:
        """A set by kube-proxy's (IPv4) name, e.g. KUBE-CLUSTER-IP, whatever the family."""
        return next(s for s in self.ipsets if s.base == base)

    def virtual_server(self, address: str, protocol: str, port: int) -> VirtualServer | None:
        wanted = (protocol.upper(), str(ipaddress.ip_address(address)), port)
        return next((v for v in self.virtual_servers if v.key == wanted), None)

    def references(self, set_name: str) -> int:
        """How many installed rules match on a set (what `ipset list` shows as References)."""
        return sum(1 for r in self.rules if r.match_set == set_name)

    def ipvsadm_text(self) -> str:
        return ipvsadm_text(self.virtual_servers)

    def ipset_text(self) -> str:
        """`ipset list`: every set in kube-proxy's creation order, blank-line separated."""
        return "\n".join(s.list_text(self.references(s.name)) for s in self.ipsets)

    def restore_text(self) -> str:
        return restore_text(self.rules)

    def save_text(self) -> str:
        return save_text(self.rules, self.hooks, self.ipv6)


# ---------------------------------------------------------------- compile


def compile_ipvs(cluster: Cluster, options: KubeProxyOptions) -> IpvsState:
    """What kube-proxy in IPVS mode programs on options.node for options.family."""
    fam, node = options.family, options.node
    ipv6 = fam == IPV6
    local_ips = node_addresses(node, fam)
    node_ip = node.ip(fam) or ("::1" if ipv6 else "127.0.0.1")
    nodeport_ips = _nodeport_ips(options, local_ips)
    scheduler = options.ipvs_scheduler or DEFAULT_SCHEDULER
    base_flags = FLAG_SOURCE_HASH if scheduler == "mh" else 0
    entries: dict[str, set[str]] = {info.name: set() for info in S.SET_INFO}
    servers: dict[tuple[str, str, int], VirtualServer] = {}
    bound: set[str] = set()
    no_node_access: list[NoNodeAccess] = []

    for spi in service_ports(cluster, fam):
        eps = endpoints(cluster, cluster.service(spi.namespace, spi.service), spi, node.name,
                        fam)
        proto = spi.protocol
        for e in eps:  # hairpin: every local endpoint, whatever its readiness
            if e.local:
                entries[S.LOOP_BACK].add(S.hash_ip_port_ip(e.ip, proto, e.port, e.ip))
        pick = _real_servers(spi, eps)
        flags = base_flags | (FLAG_PERSISTENT if spi.sticky_seconds else 0)

        def add(address: str, port: int, kind: str, local: bool,
                spi: ServicePortInfo = spi, flags: int = flags,
                pick: Callable[[bool], tuple[RealServer, ...]] = pick) -> None:
            vs = VirtualServer(address=address, port=port, protocol=spi.protocol.upper(),
                               scheduler=scheduler, flags=flags, timeout=spi.sticky_seconds,
                               real_servers=pick(local), service=spi.name, kind=kind,
                               local=local)
            servers[vs.key] = vs  # the same address:port twice: the later service port wins

        entries[S.CLUSTER_IP].add(S.hash_ip_port(spi.cluster_ip, proto, spi.port))
        add(spi.cluster_ip, spi.port, CLUSTER_IP, spi.itp_local)
        bound.add(spi.cluster_ip)

        for ip in spi.external_ips:
            entry = S.hash_ip_port(ip, proto, spi.port)
            entries[S.EXTERNAL_IP_LOCAL if spi.etp_local else S.EXTERNAL_IP].add(entry)
            add(ip, spi.port, EXTERNAL_IP, spi.etp_local)
            if ip not in local_ips:  # an address already on another interface is not bound
                bound.add(ip)

        for ip in spi.lb_ips:
            entry = S.hash_ip_port(ip, proto, spi.port)
            entries[S.LOAD_BALANCER].add(entry)
            if spi.etp_local:
                entries[S.LOAD_BALANCER_LOCAL].add(entry)
            if spi.source_ranges:
                entries[S.LOAD_BALANCER_FW].add(entry)
                allow_from_node = False
                for cidr in spi.source_ranges:
                    entries[S.LOAD_BALANCER_SOURCE_CIDR].add(
                        S.hash_ip_port_net(ip, proto, spi.port, cidr))
                    if contains(cidr, node_ip):
                        allow_from_node = True
                if allow_from_node:  # the node reaches its own VIP with the VIP as source
                    entries[S.LOAD_BALANCER_SOURCE_IP].add(
                        S.hash_ip_port_ip(ip, proto, spi.port, ip))
                else:
                    no_node_access.append(NoNodeAccess(ip, proto, spi.port))
            add(ip, spi.port, LOAD_BALANCER, spi.etp_local)
            if ip not in local_ips:
                bound.add(ip)

        if spi.node_port:
            if not nodeport_ips:
                continue  # kube-proxy skips the rest of this port, health check included
            if proto == "sctp":  # hash:ip,port: one entry per node address
                port_entries = [S.hash_ip_port(ip, proto, spi.node_port) for ip in nodeport_ips]
            else:
                port_entries = [str(spi.node_port)]
            entries[_NODE_PORT_SETS[proto][0]].update(port_entries)
            if spi.etp_local:
                entries[_NODE_PORT_SETS[proto][1]].update(port_entries)
            for ip in nodeport_ips:
                add(ip, spi.node_port, NODE_PORT, spi.etp_local)

        if spi.health_check_node_port:
            entries[S.HEALTH_CHECK_NODE_PORT].add(str(spi.health_check_node_port))

    entries[S.IPVS_IPS] = bound
    sets = {info.name: IpSet(base=info.name, name=S.set_name(info.name, ipv6), type=info.type,
                             comment=info.comment, family="inet6" if ipv6 else "inet",
                             entries=tuple(sorted(entries[info.name], key=S.entry_key)))
            for info in S.SET_INFO}
    detector = local_detector(options)
    rules = build_rules(sets, ipv6=ipv6, mark=options.mark,
                        masquerade_all=options.masquerade_all,
                        not_local=detector.if_not_local if detector else (),
                        random_fully=options.random_fully, no_node_access=no_node_access)
    return IpvsState(
        node=node.name, family=fam,
        virtual_servers=tuple(ipvsadm_order(servers.values())),
        dummy_addresses=tuple(sorted(bound, key=ipaddress.ip_address)),
        ipsets=tuple(sets[info.name] for info in S.SET_INFO),
        rules=rules, hooks=hook_rules(), sysctls=_sysctls(options))


_NODE_PORT_SETS = {"tcp": (S.NODE_PORT_TCP, S.NODE_PORT_LOCAL_TCP),
                   "udp": (S.NODE_PORT_UDP, S.NODE_PORT_LOCAL_UDP),
                   "sctp": (S.NODE_PORT_SCTP, S.NODE_PORT_LOCAL_SCTP)}


def _real_servers(spi: ServicePortInfo,
                  eps: list[EndpointInfo]) -> Callable[[bool], tuple[RealServer, ...]]:
    """syncEndpoint: cluster endpoints, or for a Local policy the local ones, falling back to
    the cluster list when the node has none (kubernetes#97081: pods on this node can still
    reach the service; external replies are lost)."""
    cat = categorize(spi, eps)

    def pick(local: bool) -> tuple[RealServer, ...]:
        chosen = cat.local if local and cat.local else cat.cluster
        return tuple(RealServer(e.ip, e.port) for e in chosen)

    return pick


def _nodeport_ips(options: KubeProxyOptions, local_ips: tuple[str, ...]) -> tuple[str, ...]:
    """The addresses NodePort virtual servers listen on: all local addresses when
    nodePortAddresses matches all, else those inside its CIDRs, loopback excluded."""
    node_ports = node_port_addresses(options)
    if node_ports.match_all:
        return local_ips
    return tuple(ip for ip in node_ports.node_ips(local_ips)
                 if not ipaddress.ip_address(ip).is_loopback)


def _sysctls(options: KubeProxyOptions) -> tuple[tuple[str, str], ...]:
    """The sysctls NewProxier ensures (conn_reuse_mode depends on the kernel: left out)."""
    out = [("net/ipv4/vs/conntrack", "1"), ("net/ipv4/vs/expire_nodest_conn", "1"),
           ("net/ipv4/vs/expire_quiescent_template", "1"), ("net/ipv4/ip_forward", "1")]
    if options.ipvs_strict_arp:
        out += [("net/ipv4/conf/all/arp_ignore", "1"), ("net/ipv4/conf/all/arp_announce", "2")]
    return tuple(out)


# ---------------------------------------------------------------- ipvsadm -Ln


def _wrapped(a: int, b: int) -> int:
    """C's `int r = ntohl(a) - ntohl(b)`: the unsigned difference read as a signed int."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d & 0x80000000 else d


def _address_cmp(a: str, b: str) -> int:
    """libipvs ipvs_cmp_services/ipvs_cmp_dests on addresses: 32-bit words compared by
    wrapped subtraction, so 172.18.0.2 sorts before 10.96.0.1 (the difference overflows)."""
    x, y = int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b))
    words = 4 if ":" in a else 1
    for i in reversed(range(words)):
        r = _wrapped((x >> (32 * i)) & 0xFFFFFFFF, (y >> (32 * i)) & 0xFFFFFFFF)
        if r:
            return r
    return 0


def _glibc_msort(items: list, cmp: Callable[[object, object], int]) -> list:
    """glibc qsort's merge sort (msort_with_tmp): with libipvs' comparator, which is not a
    total order when addresses lie more than 2^31 apart, the result depends on the
    algorithm, so it is reproduced rather than replaced by sorted()."""
    if len(items) <= 1:
        return list(items)
    half = len(items) // 2
    left, right = _glibc_msort(items[:half], cmp), _glibc_msort(items[half:], cmp)
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def _service_cmp(a: VirtualServer, b: VirtualServer) -> int:
    return (PROTOCOL_NUMBERS[a.protocol.lower()] - PROTOCOL_NUMBERS[b.protocol.lower()]
            or _address_cmp(a.address, b.address) or a.port - b.port)


def _dest_cmp(a: RealServer, b: RealServer) -> int:
    return _address_cmp(a.address, b.address) or a.port - b.port


def _numeric(address: str, port: int) -> tuple[int, int]:
    return int(ipaddress.ip_address(address)), port


def ipvsadm_order(servers: Iterable[VirtualServer]) -> list[VirtualServer]:
    """Virtual servers (and their real servers) in `ipvsadm -Ln` order: by protocol number
    (TCP, UDP, SCTP), address, port, with libipvs' comparators and glibc's merge sort.
    The kernel hands ipvsadm its hash-table order, which netsim does not know; the input
    here is numeric order. The two can only disagree when a family's addresses span more
    than half the address space (then the comparator has cycles)."""
    listed = sorted(servers, key=lambda v: (PROTOCOL_NUMBERS[v.protocol.lower()],
                                            *_numeric(v.address, v.port)))
    out = []
    for vs in _glibc_msort(listed, _service_cmp):
        dests = sorted(vs.real_servers, key=lambda r: _numeric(r.address, r.port))
        out.append(replace(vs, real_servers=tuple(_glibc_msort(dests, _dest_cmp))))
    return out


def _sched_flags(vs: VirtualServer) -> str:
    """ipvsadm's print_sched_flags: named for sh and mh, flag-N otherwise."""
    names = {"sh": ("sh-fallback", "sh-port", "flag-3"),
             "mh": ("mh-fallback", "mh-port", "flag-3")}.get(vs.scheduler,
                                                             ("flag-1", "flag-2", "flag-3"))
    return ",".join(n for n, bit in zip(names, _SCHED_FLAGS, strict=True) if vs.flags & bit)


def ipvsadm_text(servers: Iterable[VirtualServer]) -> str:
    """`ipvsadm -Ln` (ipvsadm 1.31 print_title/print_service_entry, kernel IPVS 1.2.1 with
    the default 4096-entry connection table). Destination lines keep printf's padding,
    trailing spaces included."""
    lines = ["IP Virtual Server version 1.2.1 (size=4096)",
             "Prot LocalAddress:Port Scheduler Flags",
             "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
    for vs in ipvsadm_order(servers):
        line = f"{vs.label} {vs.scheduler}"
        flags = _sched_flags(vs)
        if flags:
            line += f" ({flags})"
        if vs.persistent:
            line += f" persistent {vs.timeout}"
        lines.append(line)
        for rs in vs.real_servers:
            lines.append(f"  -> {rs.endpoint:<28} {rs.forward:<7} {rs.weight:<6} {0:<10} "
                         f"{0:<10}")
    return "\n".join(lines) + "\n"
