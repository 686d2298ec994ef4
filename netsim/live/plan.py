"""What `netsim live up` builds, as plain data taken from the emulated dataplane: a namespace
per node and pod with exactly the devices, addresses, routes, neighbour and FDB entries, rules
and IP sets netsim computed, the veth pairs between them, and the underlay that joins the nodes.

Nothing here touches the kernel; netsim.live.realize applies a LivePlan. What live mode adds
to the emulator's state, each stated once:
- The underlay is a bridge (br0) in its own namespace, with the nodes' default gateway
  addresses (the routers netsim assumes) on it; each node's eth0 is a veth whose other end is
  a bridge port. The external client (netsim's "external" namespace) hangs off the same
  namespace on its own veth, which answers ARP by proxy as a router would. What the underlay
  cannot route it drops silently (a blackhole default), as the walk's underlay does
  ("unroutable"); a Linux router with no route would answer ICMP net-unreachable instead.
- Sysctls: what the Calico CNI plugin sets on a host veth (proxy_arp, proxy_delay 0,
  forwarding, route_localnet; cni.md 1.2), felix's strict rp_filter on it (endpoint_mgr.go),
  ip_forward on nodes and the underlay, route_localnet for kube-proxy's localhost NodePorts,
  and rp_filter 0 elsewhere so that the host's defaults do not leak in.
- kube-proxy's nfacct counters exist before its rules name them (it creates them at start).
- The kernel's ICMP rate limits are lifted on nodes and the underlay (icmp_ratelimit 0, a
  large icmp_msgs_burst): probes run by the hundred at once, and the per-host limit (one
  error a second, a burst of six, shared with ICMP redirects) would swallow the ICMP error of
  a kube-proxy REJECT that a lone connection receives. Seen on Service hairpin: the node
  sends the pod an ICMP redirect (the packet leaves by the veth it came in on), and a
  REJECT for the same pod within the second went unanswered.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netsim.dataplane import EXTERNAL_NETNS, Dataplane, Station
from netsim.live.state import UNDERLAY, LiveError
from netsim.netns import Interface, Namespace, Route
from proxy.netfilter import IPSet

BRIDGE = "br0"
EXTERNAL_PORT = "ext0"  # the underlay's side of the external client's veth
HOST_VETH_SYSCTLS = (("conf", "proxy_arp", "1"), ("neigh", "proxy_delay", "0"),
                     ("conf", "forwarding", "1"), ("conf", "route_localnet", "1"),
                     ("conf", "rp_filter", "1"))
# per-namespace ICMP rate limits (older kernels keep the two msgs_ keys global: then skipped)
ICMP_UNLIMITED = (("net/ipv4/icmp_ratelimit", "0"), ("net/ipv4/icmp_msgs_per_sec", "100000"),
                  ("net/ipv4/icmp_msgs_burst", "100000"))
OPTIONAL_SYSCTLS = frozenset(k for k, _ in ICMP_UNLIMITED[1:])
NFACCT = re.compile(r"--nfacct-name\s+(\S+)")
PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True)
class Listener:
    """A server socket live mode opens: it answers with `label` (who owns the socket)."""

    protocol: str  # tcp | udp | sctp
    port: int
    label: str


@dataclass(frozen=True, slots=True)
class LiveNamespace:
    """One namespace to build: its L3 state (netsim.netns.Namespace, as the emulator holds
    it), the sysctls, bridge ports, rules, IP sets and servers that go with it."""

    id: str  # netsim id: "host:<node>", "pod:<ns>/<name>", "underlay", "external"
    state: Namespace
    sysctls: tuple[tuple[str, str], ...] = ()
    bridge_ports: tuple[tuple[str, str], ...] = ()  # (port, bridge)
    rules: tuple[tuple[int, str], ...] = ()  # (family, iptables-restore --noflush text)
    ipsets: tuple[IPSet, ...] = ()
    nfacct: tuple[str, ...] = ()
    listeners: tuple[Listener, ...] = ()

    @property
    def families(self) -> tuple[int, ...]:
        found = {ipaddress.ip_interface(a).version for i in self.state.interfaces
                 for a in i.addresses if i.kind != "loopback"}
        return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class VethEnd:
    netns: str  # netsim id
    name: str
    mac: str | None = None
    mtu: int = 1500


@dataclass(frozen=True, slots=True)
class LivePlan:
    namespaces: tuple[LiveNamespace, ...]  # underlay, external, nodes, pods
    veths: tuple[tuple[VethEnd, VethEnd], ...]  # created from the first end's namespace

    def namespace(self, netsim_id: str) -> LiveNamespace:
        return next(n for n in self.namespaces if n.id == netsim_id)

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(sorted({f for n in self.namespaces for f in n.families}))

    @property
    def uses_ipip(self) -> bool:
        return any(i.kind == "ipip" for n in self.namespaces for i in n.state.interfaces)

    def fingerprint(self) -> tuple:
        """Everything but rules, sets and servers: two plans with the same fingerprint can
        share one built topology (the conformance cases only change policies and labels)."""
        return tuple((n.id, n.state, n.sysctls, n.bridge_ports) for n in self.namespaces) + \
            self.veths


def plan(dp: Dataplane) -> LivePlan:
    """The plan for a dataplane, or LiveError for what live mode does not realise."""
    _check_supported(dp)
    hosts = [dp.host_station(n.name) for n in dp.cluster.nodes]
    pods: list[Station] = []
    veths: list[tuple[VethEnd, VethEnd]] = []
    for host in hosts:
        for iface in host.namespace.interfaces:
            if iface.kind != "veth" or not iface.peer or not iface.peer[0].startswith("pod:"):
                continue
            pod = dp.station(iface.peer[0])
            eth0 = pod.namespace.interface(iface.peer[1] or "eth0")
            pods.append(pod)
            veths.append((VethEnd(host.id, iface.name, iface.mac, iface.mtu),
                          VethEnd(pod.id, eth0.name, eth0.mac, eth0.mtu)))
    kube_proxy = dp.proxy_mode == "iptables"
    namespaces = [_host(h, kube_proxy) for h in hosts] + [_pod(p) for p in pods]
    underlay, external, links = _underlay(dp, hosts)
    return LivePlan((underlay, external, *namespaces), (*links, *veths))


def _check_supported(dp: Dataplane) -> None:
    settings = dp.cluster.settings
    if dp.cni != "calico":
        raise LiveError(f"live mode realises Calico's dataplane; this cluster's CNI is "
                        f"{dp.cni} (use --cni calico)")
    if settings.mesh:
        raise LiveError("live mode realises L3/L4 only and runs no Envoy sidecars: use "
                        "--no-mesh")
    if dp.proxy_mode == "ipvs":
        raise LiveError("kube-proxy's IPVS mode is not realised live: use --proxy-mode "
                        "iptables (or none)")
    if not dp.cluster.nodes:
        raise LiveError("the cluster has no nodes")


def _host(st: Station, kube_proxy: bool) -> LiveNamespace:
    sysctls = [("net/ipv4/ip_forward", "1"), ("net/ipv6/conf/all/forwarding", "1"),
               *_no_rp_filter(), *ICMP_UNLIMITED]
    if kube_proxy:
        # kube-proxy NewProxier: localhost NodePorts need route_localnet
        sysctls.append(("net/ipv4/conf/all/route_localnet", "1"))
    for iface in st.namespace.interfaces:
        if iface.kind == "veth":
            sysctls += [(f"net/ipv4/{where}/{iface.name}/{key}", value)
                        for where, key, value in HOST_VETH_SYSCTLS]
    rules = tuple(sorted(st.sources.items()))
    ipsets = tuple(s for fam in sorted(st.contexts) for _, s in
                   sorted(st.contexts[fam].ipsets.items()))
    counters = tuple(dict.fromkeys(m for _, text in rules for m in NFACCT.findall(text)))
    return LiveNamespace(st.id, st.namespace, tuple(sysctls), (), rules, ipsets, counters,
                         _listeners(st))


def _pod(st: Station) -> LiveNamespace:
    if st.sources:
        raise LiveError(f"pod {st.owner} has its own iptables rules (a sidecar's): not "
                        "realised live")
    return LiveNamespace(st.id, st.namespace, tuple(_no_rp_filter()),
                         listeners=_listeners(st))


def _no_rp_filter() -> list[tuple[str, str]]:
    return [("net/ipv4/conf/all/rp_filter", "0"), ("net/ipv4/conf/default/rp_filter", "0")]


def _listeners(st: Station) -> tuple[Listener, ...]:
    found = {}
    for sock in st.listeners:
        if sock.protocol in PROTOCOLS:
            found.setdefault((sock.protocol, sock.port), Listener(sock.protocol, sock.port,
                                                                  sock.owner))
    return tuple(found[k] for k in sorted(found))


def _underlay(dp: Dataplane, hosts: list[Station]):
    """The bridge joining the nodes' eth0s, the gateways the nodes route through, and the
    external client behind it."""
    gateways: dict[str, str] = {}
    node_ips = {ip for h in hosts for ip in h.addresses()}
    ports, links = [], []
    for i, host in enumerate(hosts):
        eth0 = host.namespace.interface("eth0")
        if eth0 is None:
            raise LiveError(f"node {host.node} has no eth0 in the emulated dataplane")
        port = f"n{i}-{host.node}"[:15]
        ports.append((port, BRIDGE))
        links.append((VethEnd(UNDERLAY, port, None, eth0.mtu),
                      VethEnd(host.id, "eth0", eth0.mac, eth0.mtu)))
        for route in host.namespace.routes:
            if route.network.prefixlen == 0 and route.via and route.dev == "eth0":
                net = _subnet_of(eth0, route.via)
                if net is not None:
                    gateways[route.via] = f"{route.via}/{net.prefixlen}"
    clash = sorted(node_ips & set(gateways))
    if clash:
        raise LiveError(f"node address {clash[0]} is also the subnet's first address, which "
                        "netsim takes as the nodes' default gateway: not realisable live")
    ext = dp.station(EXTERNAL_NETNS)
    ext_ip = ext.addresses()[0]
    ext_eth0 = ext.namespace.interface("eth0")
    fam = ipaddress.ip_address(ext_ip).version
    links.append((VethEnd(UNDERLAY, EXTERNAL_PORT), VethEnd(EXTERNAL_NETNS, "eth0",
                                                           ext_eth0.mac if ext_eth0 else None)))
    bridge = Interface(BRIDGE, "bridge", tuple(gateways.values()), mtu=1500)
    interfaces = (Interface("lo", "loopback", ("127.0.0.1/8",)), bridge,
                  *(Interface(p, "veth") for p, _ in ports),
                  Interface(EXTERNAL_PORT, "veth"))
    families = sorted({ipaddress.ip_interface(g).version for g in gateways.values()} | {fam})
    routes = (Route(ext_ip, dev=EXTERNAL_PORT, scope="link"),
              *(Route("0.0.0.0/0" if f == 4 else "::/0", type="blackhole") for f in families))
    underlay = LiveNamespace(
        UNDERLAY, Namespace(UNDERLAY, None, interfaces, routes),
        (("net/ipv4/ip_forward", "1"), ("net/ipv6/conf/all/forwarding", "1"),
         *_no_rp_filter(), *ICMP_UNLIMITED, (f"net/ipv4/conf/{EXTERNAL_PORT}/proxy_arp", "1"),
         (f"net/ipv4/neigh/{EXTERNAL_PORT}/proxy_delay", "0")),
        tuple(ports))
    # The emulator's external namespace holds a default route per family; only the client's
    # own family is realised (a route for a family without addresses would be dead weight).
    ext_state = ext.namespace
    ext_routes = tuple(r for r in ext_state.routes if r.family == fam)
    external = LiveNamespace(
        EXTERNAL_NETNS, Namespace(EXTERNAL_NETNS, None, ext_state.interfaces, ext_routes),
        tuple(_no_rp_filter()))
    return underlay, external, links


def _subnet_of(eth0: Interface, gateway: str):
    addr = ipaddress.ip_address(gateway)
    for cidr in eth0.addresses:
        iface = ipaddress.ip_interface(cidr)
        if iface.version == addr.version and addr in iface.network:
            return iface.network
    return None

