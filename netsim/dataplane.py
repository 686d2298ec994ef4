"""Assembly: the dataplane a cluster's components build, one station per network namespace.

A station is what one namespace holds: its interfaces, routes and neighbours (from the CNI),
the netfilter ruleset its components installed (kube-proxy's and felix's chains, parsed by
the same interpreter a user's iptables-save goes through), IPVS state, ipsets, Cilium's BPF
programs, and its listening sockets. Stations are built on first use and cached: a trace
touches a handful of the cluster's namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import IPV4, IPV6, Pod
from netsim.netns import Fib, Namespace
from netsim.topology import build_topology, external_client_ip, host_id, pod_id
from proxy import netfilter

EXTERNAL_NETNS = "external"
FAMILIES = {4: IPV4, 6: IPV6}
PROXY_MODES = ("iptables", "ipvs", "none")
# Sockets every node has open whatever the manifests say: kubelet and kube-proxy's healthz.
NODE_LISTENERS = (("tcp", 10250, "kubelet"), ("tcp", 10256, "kube-proxy healthz"))


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket: protocol, port, the address it is bound to (None: any) and who
    owns it ("ns/pod" or "node/NAME"). `declared` is False for an assumed listener."""

    protocol: str
    port: int
    owner: str
    name: str | None = None
    declared: bool = True


@dataclass
class Station:
    """One network namespace's dataplane: L3 state, netfilter, IPVS, sockets."""

    id: str
    kind: str  # pod | host | external
    node: str | None
    namespace: Namespace
    owner: str  # "ns/pod", "node/NAME" or "external"
    pod: Pod | None = None
    listeners: tuple[Listener, ...] = ()
    assume_listening: bool = False
    rulesets: dict[int, netfilter.Ruleset] = field(default_factory=dict)
    contexts: dict[int, netfilter.Context] = field(default_factory=dict)
    ipvs: dict[int, object] = field(default_factory=dict)  # family -> IpvsState
    sources: dict[int, str] = field(default_factory=dict)  # family -> the rules text
    # eBPF-style hook points (Cilium): tc ingress programs by interface, and the programs a
    # connect() runs (socket load balancing); each is step(walker, cursor) -> steps.
    tc_ingress: dict[str, object] = field(default_factory=dict)
    connect_hooks: tuple = ()
    # proxies listening in the namespace: (protocol, port) -> step(walker, cursor)
    socket_programs: dict[tuple[str, int], object] = field(default_factory=dict)
    sidecar: bool = False  # an Istio sidecar captures the namespace's traffic
    app_uid: int | None = None  # the uid apps send as, where rules match on it

    @cached_property
    def fib(self) -> Fib:
        return self.namespace.fib()

    @cached_property
    def entry_texts(self) -> dict:
        """Netfilter trace entries already formatted here, for the walk to reuse."""
        return {}

    def addresses(self) -> tuple[str, ...]:
        return tuple(a.split("/")[0] for i in self.namespace.interfaces for a in i.addresses)

    def listener(self, protocol: str, port: int) -> Listener | None:
        for sock in self.listeners:
            if sock.protocol == protocol and sock.port == port:
                return sock
        return None


class Dataplane:
    """The emulated dataplane of one cluster under one CNI and proxy mode."""

    def __init__(self, cluster: Cluster, proxy_mode: str | None = None) -> None:
        self.cluster = cluster
        self.cni = cluster.settings.cni
        mode = proxy_mode or _configured_proxy_mode(cluster)
        if mode not in PROXY_MODES:
            raise InputError(f"proxy mode {mode!r} is not emulated (one of "
                             f"{', '.join(PROXY_MODES)})", obj="command line",
                             field="--proxy-mode")
        self.proxy_mode = mode
        self._stations: dict[str, Station] = {}

    # ------------------------------------------------------------------ cluster-wide facts

    @cached_property
    def graph(self) -> nx.Graph:
        return build_topology(self.cluster)

    @cached_property
    def external_ip(self) -> str:
        return external_client_ip(self.cluster)

    @cached_property
    def node_by_ip(self) -> dict[str, str]:
        return {ip: n.name for n in self.cluster.nodes for ip in n.internal_ips}

    @cached_property
    def ready_nodes(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.cluster.nodes)

    @cached_property
    def load_balancer_ips(self) -> dict[str, tuple]:
        """LB ingress address -> the Services announcing it."""
        out: dict[str, list] = {}
        for s in self.cluster.services:
            for ip in s.load_balancer_ingress:
                out.setdefault(ip, []).append(s)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def _cluster_networks(self) -> tuple:
        import ipaddress

        a = self.cluster.addressing
        return tuple(ipaddress.ip_network(c, strict=False)
                     for c in (*a.pod_cidrs, *a.service_cidrs, *a.node_cidrs))

    @cached_property
    def external_service_ips(self) -> dict[str, tuple]:
        """Service externalIPs -> the Services: the network routes them to the nodes."""
        out: dict[str, list] = {}
        for s in self.cluster.services:
            for ip in s.external_ips:
                out.setdefault(ip, []).append(s)
        return {k: tuple(v) for k, v in out.items()}

    def is_external(self, ip: str) -> bool:
        """An address outside every range the cluster uses: the world beyond the gateway."""
        import ipaddress

        if ip in self.load_balancer_ips or ip in self.node_by_ip or \
                ip in self.external_service_ips:
            return False
        addr = ipaddress.ip_address(ip)
        return not any(addr.version == n.version and addr in n for n in self._cluster_networks)

    def netns_of(self, ip: str) -> str | None:
        """The namespace that owns an address: a pod's, a node's, or the external client's."""
        pod = self.cluster.pod_by_ip(ip)
        if pod is not None and pod.node_name:
            return pod_id(pod.namespace, pod.name)
        node = self.node_by_ip.get(ip)
        if node is not None:
            return host_id(node)
        if ip == self.external_ip:
            return EXTERNAL_NETNS
        return None

    # ------------------------------------------------------------------ stations

    def station(self, netns: str) -> Station:
        found = self._stations.get(netns)
        if found is None:
            found = self._stations[netns] = self._build(netns)
        return found

    def host_station(self, node: str) -> Station:
        return self.station(host_id(node))

    def _build(self, netns: str) -> Station:
        if netns == EXTERNAL_NETNS:
            return _external_station(self)
        kind, _, name = netns.partition(":")
        if kind == "pod":
            namespace, _, pod_name = name.partition("/")
            pod = self.cluster.pod(namespace, pod_name)
            if pod is None:
                raise KeyError(netns)
            if pod.host_network:
                return self.host_station(pod.node_name or "")
            return self._pod_station(pod)
        if kind == "host":
            return self._host_station(name)
        raise KeyError(netns)

    def _pod_station(self, pod: Pod) -> Station:
        ns = self._cni().pod_namespace(self.cluster, pod, self.graph)
        listeners = tuple(Listener(p.protocol.lower(), p.container_port, pod.key, p.name)
                          for p in pod.container_ports)
        station = Station(ns.name, "pod", pod.node_name, ns, pod.key, pod, listeners,
                          assume_listening=True)
        self._attach_programs(station)
        return station

    def _host_station(self, node: str) -> Station:
        ns = self._cni().node_namespace(self.cluster, node, self.graph)
        listeners = [Listener(proto, port, f"node/{node}", name)
                     for proto, port, name in NODE_LISTENERS]
        for pod in self.cluster.pods_on(node):
            if pod.host_network:
                listeners += [Listener(p.protocol.lower(), p.container_port, pod.key, p.name)
                              for p in pod.container_ports]
        station = Station(ns.name, "host", node, ns, f"node/{node}", None, tuple(listeners))
        for fam in sorted({r.family for r in ns.routes}):
            self._install_netfilter(station, fam)
        self._attach_programs(station)
        return station

    def _attach_programs(self, station: Station) -> None:
        """The CNI's eBPF-style programs (Cilium: socket LB, bpf_lxc, bpf_overlay, bpf_host)."""
        if self.cni == "cilium":
            from cni.cilium_datapath import attach

            attach(self, station)
        if self.cluster.ingresses:
            from proxy.ingress_datapath import attach as attach_ingress

            attach_ingress(self, station)
        if self.cluster.settings.mesh and station.kind == "pod":
            from proxy.sidecar_datapath import attach as attach_sidecar

            attach_sidecar(self, station)

    def _cni(self):
        if self.cni == "calico":
            from cni import calico

            return calico
        from cni import cilium_netns

        return cilium_netns

    # ------------------------------------------------------------------ netfilter

    def _install_netfilter(self, station: Station, fam: int) -> None:
        """Parse the rules every component installed on the node into one ruleset."""
        from proxy.kube_proxy.options import options_for

        node = station.node or ""
        texts: list[str] = []
        ipsets: dict[str, netfilter.IPSet] = {}
        local = list(station.addresses())
        ipvs = None
        if self.proxy_mode in ("iptables", "ipvs") and self._has_service_cidr(fam):
            options = options_for(self.cluster, node, FAMILIES[fam], self.proxy_mode)
            if options.mode == "ipvs":
                from proxy.kube_proxy.ipvs import compile_ipvs

                ipvs = compile_ipvs(self.cluster, options)
                texts.append(ipvs.save_text())
                ipsets.update(netfilter.parse_ipset_save(ipvs.ipset_text()))
                local += ipvs.dummy_addresses
                station.ipvs[fam] = ipvs
            else:
                from proxy.kube_proxy.iptables import compile_iptables

                texts.append(compile_iptables(self.cluster, options).save_text())
        for text, sets in self._cni_rules(node, fam):
            texts.append(text)
            ipsets.update(sets)
        if not texts:
            return
        text = "".join(texts)
        station.sources[fam] = text
        station.rulesets[fam] = netfilter.parse_ruleset(text, f"{station.owner} IPv{fam} rules")
        interfaces = {i.name: tuple(i.addresses) for i in station.namespace.interfaces}
        virtual = None
        if ipvs is not None:
            interfaces["kube-ipvs0"] = tuple(ipvs.dummy_addresses)
            virtual = tuple(netfilter.VirtualService(v.address, v.port, v.protocol.lower())
                            for v in ipvs.virtual_servers)
        station.contexts[fam] = netfilter.Context(
            local_addresses=tuple(local), interfaces=interfaces, ipsets=ipsets,
            address_of=_source_address(interfaces, fam),
            ipvs=virtual, nfacct=frozenset() if not self.cluster.settings.kernel_nfacct
            else None)

    def _cni_rules(self, node: str, fam: int) -> list[tuple[str, dict]]:
        """The CNI's own netfilter rules on a node (felix's cali-* chains under Calico)."""
        if self.cni != "calico":
            return []
        from cni.felix import compile_felix

        rules = compile_felix(self.cluster, node, fam, ipvs=self.proxy_mode == "ipvs")
        return [(rules.restore_text, dict(rules.ipsets))]

    def _has_service_cidr(self, fam: int) -> bool:
        return any((":" in c) == (fam == 6) for c in self.cluster.addressing.service_cidrs)


def _source_address(interfaces: dict[str, tuple[str, ...]], fam: int):
    """MASQUERADE's address choice (inet_select_addr): the out device's primary address,
    else a global address of another device, as for Calico's address-less cali veths."""
    def own(addresses) -> list[str]:
        return [a.split("/")[0] for a in addresses if (":" in a) == (fam == 6)
                and not a.startswith(("127.", "::1", "fe80"))]
    fallback = next((a for name in interfaces for a in own(interfaces[name])), None)

    def address_of(iface: str) -> str | None:
        found = own(interfaces.get(iface, ()))
        return found[0] if found else fallback
    return address_of


def _external_station(dp: Dataplane) -> Station:
    from netsim.netns import Interface, Route

    # The outside world as one namespace: every address beyond the cluster's ranges is one
    # of its hosts (the client netsim picks by default, or one named with external:IP).
    ip = dp.external_ip
    fam = 6 if ":" in ip else 4
    prefix = 128 if fam == 6 else 32
    iface = Interface("eth0", "ethernet", (f"{ip}/{prefix}",))
    routes = (Route("0.0.0.0/0", dev="eth0"), Route("::/0", dev="eth0"))
    ns = Namespace(EXTERNAL_NETNS, None, (iface,), routes,
                   (Route(ip, dev="eth0", type="local", table="local"),))
    return Station(EXTERNAL_NETNS, "external", None, ns, "external", assume_listening=True)


def _configured_proxy_mode(cluster: Cluster) -> str:
    """--proxy-mode, else the KubeProxyConfiguration's mode, else the NetsimConfig's."""
    settings, kp = cluster.settings, cluster.kube_proxy
    if "proxy_mode" in settings.flags or not (kp and kp.mode):
        return settings.proxy_mode
    return kp.mode


def build(cluster: Cluster, proxy_mode: str | None = None) -> Dataplane:
    """The cluster's dataplane under its CNI and proxy mode (stations built on demand)."""
    return Dataplane(cluster, proxy_mode)
