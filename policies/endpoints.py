"""The two ends of a connection as policy sees them: a pod, a node, or an outside address."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from netsim.fields import EMPTY, FrozenDict
from netsim.model import TCP, Pod


@dataclass(frozen=True, slots=True)
class Peer:
    """One end of a connection.

    `pod` is set only when selectors may match it (hostNetwork pods in "node" mode are node
    traffic instead); `node` names the node whose address this is, or the pod's node.
    """

    ip: str
    pod: Pod | None = None
    namespace_labels: FrozenDict = EMPTY
    node: str | None = None
    node_labels: FrozenDict | None = None  # set when the address is a node's own

    @property
    def is_node(self) -> bool:
        return self.node_labels is not None

    def __str__(self) -> str:
        if self.pod is not None:
            return self.pod.key
        if self.is_node:
            return f"node {self.node} ({self.ip})"
        return self.ip


@lru_cache(maxsize=65536)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


@lru_cache(maxsize=262144)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


def in_cidr(ip: str, cidr: str) -> bool:
    """Whether an address lies in a CIDR (of the same family)."""
    net, addr = _network(cidr), _address(ip)
    return addr.version == net.version and addr in net


def named_port(pod: Pod | None, name: str, protocol: str = TCP) -> int | None:
    """A container port by name and protocol on the destination pod (None: no such port)."""
    return pod.named_port(name, protocol) if pod is not None else None
