"""The NetsimConfig document (netsim/v1alpha1): which CNI, proxy mode, CIDRs and mesh to emulate."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from netsim.errors import Source
from netsim.fields import Fields

API_VERSION = "netsim/v1alpha1"
KIND = "NetsimConfig"
CNIS = ("calico", "cilium")
CALICO_ENCAPSULATIONS = ("None", "IPIP", "IPIPCrossSubnet", "VXLAN", "VXLANCrossSubnet")
CILIUM_ROUTING_MODES = ("tunnel", "native")
CILIUM_TUNNEL_PROTOCOLS = ("vxlan", "geneve")
PROXY_MODES = ("iptables", "ipvs", "none")
# The two behaviours the NetworkPolicy docs allow for hostNetwork pods: "node" treats their
# traffic as node traffic that only ipBlock matches (the common case); "pod" selects them
# like any other pod.
HOST_NETWORK_MODES = ("node", "pod")
DEFAULT_POD_CIDRS = {"IPv4": "10.244.0.0/16", "IPv6": "fd00:10:244::/56"}
DEFAULT_SERVICE_CIDRS = {"IPv4": "10.96.0.0/12", "IPv6": "fd00:10:96::/112"}
DEFAULT_NODE_CIDRS = {"IPv4": "172.18.0.0/16", "IPv6": "fc00:f853:ccd:e793::/64"}
DEFAULT_LB_CIDRS = ("198.18.0.0/24", "2001:db8:18::/120")  # benchmark/documentation ranges


@dataclass(frozen=True, slots=True)
class Settings:
    """What to emulate. Empty CIDR tuples mean "infer from the manifests, else the default"."""

    cni: str = "calico"
    calico_encapsulation: str = "IPIP"
    calico_block_size: int = 26
    cilium_routing_mode: str = "tunnel"
    cilium_tunnel_protocol: str = "vxlan"
    cilium_node_mask_size: int = 24
    # socketLB.hostNamespaceOnly: socket LB only for host processes, so that pods' sidecars
    # see Service addresses (Cilium's Istio integration guide asks for it)
    cilium_socket_lb_host_only: bool = False
    proxy_mode: str = "iptables"
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    node_cidrs: tuple[str, ...] = ()
    load_balancer_cidrs: tuple[str, ...] = DEFAULT_LB_CIDRS
    node_port_range: tuple[int, int] = (30000, 32767)
    nodes: int = 3  # how many nodes to create when the input holds none
    mesh: bool = False
    host_network_policy: str = "node"
    kernel_nfacct: bool = True  # the kernel has the nfacct counters kube-proxy probes for
    cluster_domain: str = "cluster.local"  # kubelet clusterDomain: the zone CoreDNS serves
    # kubeadm's dns.disabled inverted: add the CoreDNS addon when the manifests hold none
    dns_addon: bool = True
    source: Source | None = None
    flags: tuple[str, ...] = ()  # fields set by command-line flags, for error messages
    proxy_mode_set: bool = False  # the NetsimConfig named a proxy mode

    def override(self, **changes: object) -> Settings:
        """Settings with CLI flags applied (None means "flag not given")."""
        given = {k: v for k, v in changes.items() if v is not None}
        if given.get("cni") == "cilium" and "proxy_mode" not in given \
                and not self.proxy_mode_set:
            given["proxy_mode"] = "none"  # Cilium replaces kube-proxy unless told otherwise
        return dataclasses.replace(self, **given, flags=self.flags + tuple(given))


def parse_settings(f: Fields, source: Source | None = None) -> Settings:
    """Validate a NetsimConfig's spec."""
    spec = f.sub("spec")
    cni = spec.sub("cni")
    calico, cilium = cni.sub("calico"), cni.sub("cilium")
    proxy = spec.sub("proxy")
    ports = spec.sub("nodePortRange")
    lo = ports.int("from", default=30000, lo=1, hi=65535)
    hi = ports.int("to", default=32767, lo=1, hi=65535)
    if lo > hi:
        raise ports.error("to", f"must not be below from ({lo}), got {hi}")
    name = cni.enum("name", CNIS, default="calico")
    default_proxy = "none" if name == "cilium" and proxy.data.get("mode") is None else "iptables"
    return Settings(
        cni=name,
        calico_encapsulation=calico.enum("encapsulation", CALICO_ENCAPSULATIONS, default="IPIP"),
        calico_block_size=calico.int("blockSize", default=26, lo=20, hi=32),
        cilium_routing_mode=cilium.enum("routingMode", CILIUM_ROUTING_MODES, default="tunnel"),
        cilium_tunnel_protocol=cilium.enum("tunnelProtocol", CILIUM_TUNNEL_PROTOCOLS,
                                           default="vxlan"),
        cilium_node_mask_size=cilium.int("podCIDRMaskSize", default=24, lo=8, hi=30),
        cilium_socket_lb_host_only=cilium.sub("socketLB").bool("hostNamespaceOnly",
                                                               default=False),
        proxy_mode=proxy.enum("mode", PROXY_MODES, default=default_proxy),
        pod_cidrs=spec.cidr_list("podCIDRs"),
        service_cidrs=spec.cidr_list("serviceCIDRs"),
        node_cidrs=spec.cidr_list("nodeCIDRs"),
        load_balancer_cidrs=spec.cidr_list("loadBalancerCIDRs") or DEFAULT_LB_CIDRS,
        node_port_range=(lo, hi),
        nodes=spec.int("nodes", default=3, lo=1, hi=100_000),
        mesh=spec.sub("mesh").bool("enabled", default=False),
        proxy_mode_set=proxy.has("mode"),
        host_network_policy=spec.sub("networkPolicy").enum("hostNetwork", HOST_NETWORK_MODES,
                                                           default="node"),
        kernel_nfacct=spec.sub("kernel").bool("nfacct", default=True),
        cluster_domain=_cluster_domain(spec),
        dns_addon=not spec.sub("dns").bool("disabled", default=False),
        source=source,
    )


def _cluster_domain(spec: Fields) -> str:
    """spec.clusterDomain: a lowercase DNS subdomain (a trailing dot is accepted and dropped)."""
    from netsim.fields import DNS1123_SUBDOMAIN

    value = spec.str("clusterDomain", default="cluster.local").removesuffix(".")
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value) \
            or any(len(label) > 63 for label in value.split(".")):
        raise spec.error("clusterDomain", f"must be a lowercase DNS name, got {value!r}")
    return value
