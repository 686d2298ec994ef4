"""What kube-proxy treats as local to its node: the local-traffic detector, nodePortAddresses.

Shared by the iptables and IPVS proxiers, as upstream shares them (kubernetes pkg/proxy/util
localdetector.go and nodeport_addresses.go; restated in ../shared/reference/kube-proxy.md
sections 6, 7 and 10).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netsim.model import family
from proxy.kube_proxy.options import KubeProxyOptions


@dataclass(frozen=True, slots=True)
class LocalDetector:
    """kube-proxy's LocalTrafficDetector: the match args for "from a local pod" and its
    negation (IfLocal / IfNotLocal)."""

    if_local: tuple[str, ...]
    if_not_local: tuple[str, ...]


def local_detector(options: KubeProxyOptions) -> LocalDetector | None:
    """The LocalTrafficDetector for options.detect_local_mode, or None (no-op detector)."""
    mode = options.detect_local_mode
    if mode == "ClusterCIDR" and options.cluster_cidr:
        return _cidr_detector(options.cluster_cidr)
    if mode == "NodeCIDR":
        cidr = next((c for c in options.node.pod_cidrs
                     if family(c.split("/")[0]) == options.family), None)
        return _cidr_detector(cidr) if cidr else None
    if mode == "BridgeInterface" and options.bridge_interface:
        return _interface_detector(options.bridge_interface)
    if mode == "InterfaceNamePrefix" and options.interface_name_prefix:
        return _interface_detector(options.interface_name_prefix + "+")
    return None


def _cidr_detector(cidr: str) -> LocalDetector:
    net = str(ipaddress.ip_network(cidr, strict=False))
    return LocalDetector(("-s", net), ("!", "-s", net))


def _interface_detector(name: str) -> LocalDetector:
    return LocalDetector(("-i", name), ("!", "-i", name))


@dataclass(frozen=True, slots=True)
class NodePortAddresses:
    """NodePortAddresses for one family: every local address (match_all), or those inside
    `cidrs`."""

    match_all: bool
    cidrs: tuple[str, ...] = ()

    def contains_ipv4_loopback(self) -> bool:
        """ContainsIPv4Loopback: does any CIDR (or match-all) cover IPv4 loopback?"""
        return self.match_all or any(_covers_ipv4_loopback(c) for c in self.cidrs)

    def node_ips(self, interface_ips: tuple[str, ...]) -> tuple[str, ...]:
        """GetNodeIPs: the interface addresses inside any of the CIDRs, in order, once each
        (all of them when matching all)."""
        out: list[str] = []
        for ip in interface_ips:
            if ip not in out and (self.match_all or any(contains(c, ip) for c in self.cidrs)):
                out.append(ip)
        return tuple(out)


def node_port_addresses(options: KubeProxyOptions) -> NodePortAddresses:
    """NewNodePortAddresses: the CIDRs of options.family ("primary" is the node's IP of the
    family); with none left, or a zero-length prefix among them, it matches every address."""
    bits = 128 if options.ipv6 else 32
    cidrs: list[str] = []
    for entry in options.node_port_addresses:
        if entry == "primary":
            ip = options.node.ip(options.family)
            if ip:
                cidrs.append(f"{ip}/{bits}")
        elif family(entry.split("/")[0]) == options.family:
            cidrs.append(str(ipaddress.ip_network(entry, strict=False)))
    if not cidrs or any(ipaddress.ip_network(c).prefixlen == 0 for c in cidrs):
        return NodePortAddresses(match_all=True)
    return NodePortAddresses(match_all=False, cidrs=tuple(cidrs))


def _covers_ipv4_loopback(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr)
    return net.version == 4 and (net.network_address.is_loopback
                                 or ipaddress.ip_address("127.0.0.0") in net)


def contains(cidr: str, ip: str) -> bool:
    """Is `ip` inside `cidr` (host bits of the CIDR ignored; another family never is)?"""
    net = ipaddress.ip_network(cidr, strict=False)
    addr = ipaddress.ip_address(ip)
    return addr.version == net.version and addr in net
