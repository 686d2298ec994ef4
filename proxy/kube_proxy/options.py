"""kube-proxy's options for one node: KubeProxyConfiguration plus what it probes on the host."""

from __future__ import annotations

from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import IPV4, IPV6, Node, family

LARGE_CLUSTER_ENDPOINTS = 1000  # above this many endpoints kube-proxy drops SEP comments


@dataclass(frozen=True, slots=True)
class KubeProxyOptions:
    node: Node
    family: str = IPV4
    mode: str = "iptables"
    cluster_cidr: str | None = None  # the first clusterCIDR of this family
    masquerade_all: bool = False
    masquerade_bit: int = 14
    localhost_node_ports: bool = True
    node_port_addresses: tuple[str, ...] = ()  # CIDRs (or "primary") of this family
    detect_local_mode: str = "ClusterCIDR"
    bridge_interface: str | None = None
    interface_name_prefix: str | None = None
    ipvs_scheduler: str = "rr"
    ipvs_strict_arp: bool = False
    nfacct: bool = True  # the kernel has nfacct: kube-proxy's counter rules are emitted
    random_fully: bool = True  # iptables supports MASQUERADE --random-fully

    @property
    def mark(self) -> str:
        """The masquerade mark as kube-proxy formats it (Go %#08x: 0x00004000)."""
        return f"0x{1 << self.masquerade_bit:08x}"

    @property
    def ipv6(self) -> bool:
        return self.family == IPV6


def options_for(cluster: Cluster, node_name: str, fam: str = IPV4,
                mode: str | None = None) -> KubeProxyOptions:
    """The options kube-proxy on `node_name` runs with, from the input's
    KubeProxyConfiguration (defaults as kube-proxy's when absent) and NetsimConfig."""
    node = cluster.node(node_name)
    if node is None:
        raise InputError(f"no Node named {node_name!r} in the cluster (nodes: "
                         f"{', '.join(n.name for n in cluster.nodes[:5])}"
                         f"{'…' if len(cluster.nodes) > 5 else ''})", obj="command line",
                         field="--node")
    kp = cluster.kube_proxy
    cidrs = kp.cluster_cidrs if kp and kp.cluster_cidrs else ()
    cidr = next((c for c in cidrs if family(c.split("/")[0]) == fam), None)
    detect = (kp.detect_local_mode if kp else "") or ("ClusterCIDR" if cidr else "")
    chosen = _mode(cluster, mode)
    addresses = tuple(a for a in (kp.node_port_addresses if kp else ())
                      if a == "primary" or family(a.split("/")[0]) == fam)
    return KubeProxyOptions(
        node=node, family=fam, mode=chosen, cluster_cidr=cidr,
        masquerade_all=kp.masquerade_all if kp else False,
        masquerade_bit=kp.masquerade_bit if kp else 14,
        localhost_node_ports=kp.local_localhost_node_ports if kp else True,
        node_port_addresses=addresses, detect_local_mode=detect,
        bridge_interface=kp.bridge_interface if kp else None,
        interface_name_prefix=kp.interface_name_prefix if kp else None,
        ipvs_scheduler=(kp.ipvs_scheduler if kp else "") or "rr",
        ipvs_strict_arp=kp.ipvs_strict_arp if kp else False,
        nfacct=cluster.settings.kernel_nfacct,
    )


def _mode(cluster: Cluster, flag: str | None) -> str:
    """--mode, then --proxy-mode, then the KubeProxyConfiguration's, then the NetsimConfig's."""
    settings, kp = cluster.settings, cluster.kube_proxy
    if flag:
        return flag
    if "proxy_mode" in settings.flags or not (kp and kp.mode):
        chosen = settings.proxy_mode
    else:
        chosen = kp.mode
    if chosen == "none":
        raise InputError("no kube-proxy runs on this cluster (proxy mode none: Cilium's "
                         "kube-proxy replacement); --mode iptables|ipvs shows what kube-proxy "
                         "would program", obj="command line", field="--mode")
    if chosen not in ("iptables", "ipvs"):
        raise InputError(f"kube-proxy mode {chosen!r} is not emulated; --mode iptables|ipvs",
                         obj="command line", field="--mode")
    return chosen
