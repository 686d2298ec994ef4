"""The ipsets kube-proxy's IPVS mode keeps: names, types, comments, entries, `ipset list` text.

From kubernetes pkg/proxy/ipvs: ipset.go (names and comments, NewIPSet's IPv6 naming),
proxier.go ipsetInfo (the set list) and ipset/ipset.go (Entry.String, CreateSet's defaults:
hashsize 1024, maxelem 65536, bitmap range 0-65535; sets are created without the ipset
`comment` extension, so the comments only ever appear as iptables rule comments).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# ---------------------------------------------------------------- kube-proxy's set names

LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
EXTERNAL_IP = "KUBE-EXTERNAL-IP"
EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
LOAD_BALANCER = "KUBE-LOAD-BALANCER"
LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
IPVS_IPS = "KUBE-IPVS-IPS"

HASH_IP, HASH_IP_PORT = "hash:ip", "hash:ip,port"
HASH_IP_PORT_IP, HASH_IP_PORT_NET = "hash:ip,port,ip", "hash:ip,port,net"
BITMAP_PORT = "bitmap:port"


@dataclass(frozen=True, slots=True)
class SetInfo:
    name: str  # the IPv4 name, kube-proxy's constant
    type: str
    comment: str


# ipsetInfo, in kube-proxy's order (proxier.go); the comments are ipset.go's.
SET_INFO: tuple[SetInfo, ...] = (
    SetInfo(LOOP_BACK, HASH_IP_PORT_IP,
            "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    SetInfo(CLUSTER_IP, HASH_IP_PORT,
            "Kubernetes service cluster ip + port for masquerade purpose"),
    SetInfo(EXTERNAL_IP, HASH_IP_PORT,
            "Kubernetes service external ip + port for masquerade and filter purpose"),
    SetInfo(EXTERNAL_IP_LOCAL, HASH_IP_PORT,
            "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER, HASH_IP_PORT, "Kubernetes service lb portal"),
    SetInfo(LOAD_BALANCER_FW, HASH_IP_PORT,
            "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    SetInfo(LOAD_BALANCER_LOCAL, HASH_IP_PORT,
            "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER_SOURCE_IP, HASH_IP_PORT_IP,
            "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    SetInfo(LOAD_BALANCER_SOURCE_CIDR, HASH_IP_PORT_NET,
            "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    SetInfo(NODE_PORT_TCP, BITMAP_PORT, "Kubernetes nodeport TCP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_TCP, BITMAP_PORT,
            "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_UDP, BITMAP_PORT, "Kubernetes nodeport UDP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_UDP, BITMAP_PORT,
            "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_SCTP, HASH_IP_PORT,
            "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    SetInfo(NODE_PORT_LOCAL_SCTP, HASH_IP_PORT,
            "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type "
            "'hash ip:port'"),
    SetInfo(HEALTH_CHECK_NODE_PORT, BITMAP_PORT, "Kubernetes health check node port"),
    SetInfo(IPVS_IPS, HASH_IP, "Addresses on the ipvs interface"),
)
SET_INFO_BY_NAME = {s.name: s for s in SET_INFO}

MAX_NAME = 31  # the kernel's IPSET_MAXNAMELEN - 1


def set_name(name: str, ipv6: bool) -> str:
    """NewIPSet: IPv6 sets swap the "KUBE-" prefix for "KUBE-6-" (all types, bitmap ones too)
    and are cut to 31 characters, so KUBE-LOAD-BALANCER-SOURCE-CIDR becomes
    KUBE-6-LOAD-BALANCER-SOURCE-CID."""
    if ipv6 and name.startswith("KUBE-"):
        name = ("KUBE-6-" + name[len("KUBE-"):])[:MAX_NAME]
    return name


# ---------------------------------------------------------------- what `ipset list` shows

# Revisions as a kernel before 5.11 reports them (hash:ip 4, the hash:ip,port family 5,
# hash:ip,port,net 7, bitmap:port 3; real `ipset list` output from such nodes shows exactly
# these). Kernels from 5.11 add a revision (bucketsize/initval) and print
# "bucketsize 12 initval 0x<random>" in the header, which cannot be reproduced.
REVISIONS = {HASH_IP: 4, HASH_IP_PORT: 5, HASH_IP_PORT_IP: 5, HASH_IP_PORT_NET: 7,
             BITMAP_PORT: 3}
# "Size in memory": the kernel's allocation, not reproducible; base + per-entry bytes fitted
# to real listings (hash:ip,port 88 + 64n, hash:ip,port,ip 96 + 80n, bitmap:port 8268).
_MEMORY = {HASH_IP: (88, 56), HASH_IP_PORT: (88, 64), HASH_IP_PORT_IP: (96, 80),
           HASH_IP_PORT_NET: (456, 88), BITMAP_PORT: (8268, 0)}


@dataclass(frozen=True, slots=True)
class IpSet:
    """One kube-proxy ipset for one family: `entries` are kube-proxy's active entries in its
    entry syntax (Entry.String), sorted; they decide which set-match rules are written."""

    base: str  # kube-proxy's (IPv4) name: the key to SET_INFO
    name: str  # the name in the kernel (KUBE-6-… for IPv6)
    type: str
    comment: str
    family: str  # "inet" or "inet6"
    entries: tuple[str, ...] = ()

    @property
    def header(self) -> str:
        if self.type == BITMAP_PORT:
            return "range 0-65535"
        return f"family {self.family} hashsize 1024 maxelem 65536"

    @property
    def members(self) -> tuple[str, ...]:
        """The entries the kernel holds. A hash:ip,port,net set cannot store a network with
        a zero prefix (ipset/types.go: "Network address with zero prefix size cannot be
        stored"): kube-proxy's `ipset add` for a 0.0.0.0/0 source range fails, the entry
        stays in its active list (so the RETURN rule is written) and the set stays empty."""
        if self.type != HASH_IP_PORT_NET:
            return self.entries
        return tuple(e for e in self.entries if not e.endswith("/0"))

    def contains(self, ip: str | None = None, protocol: str | None = None,
                 port: int | None = None, other: str | None = None) -> bool:
        """Membership as the kernel tests it: `ip` and `port`/`protocol` are the first two
        dimensions, `other` the third (an address; matched against the net for ,net sets)."""
        for member in self.members:
            if _matches(self.type, member, ip, protocol, port, other):
                return True
        return False

    def list_text(self, references: int) -> str:
        """This set as `ipset list NAME` prints it (members in sorted order, as with
        `ipset list -sorted`; plain `ipset list` prints a hash set in bucket order)."""
        base, per_entry = _MEMORY[self.type]
        members = self.members
        lines = [f"Name: {self.name}", f"Type: {self.type}",
                 f"Revision: {REVISIONS[self.type]}", f"Header: {self.header}",
                 f"Size in memory: {base + per_entry * len(members)}",
                 f"References: {references}", f"Number of entries: {len(members)}",
                 "Members:", *(_display(self.type, m) for m in members)]
        return "\n".join(lines) + "\n"


def hash_ip_port(ip: str, protocol: str, port: int) -> str:
    """Entry{IP, Protocol, Port}.String(): 10.96.0.10,udp:53."""
    return f"{ip},{protocol}:{port}"


def hash_ip_port_ip(ip: str, protocol: str, port: int, ip2: str) -> str:
    return f"{ip},{protocol}:{port},{ip2}"


def hash_ip_port_net(ip: str, protocol: str, port: int, net: str) -> str:
    """The net as kube-proxy prints the parsed *net.IPNet (host bits cleared)."""
    return f"{ip},{protocol}:{port},{ipaddress.ip_network(net, strict=False)}"


def entry_key(entry: str) -> tuple:
    """A sort key for entries of any type: addresses numerically, then protocol and port."""
    parts = entry.split(",")
    key: list = []
    for part in parts:
        if ":" in part and part.split(":")[0] in ("tcp", "udp", "sctp"):
            proto, port = part.split(":")
            key.append((1, proto, int(port)))
        elif part.isdigit():
            key.append((1, "", int(part)))
        else:
            net = ipaddress.ip_network(part, strict=False)
            key.append((0, net.version, int(net.network_address), net.prefixlen))
    return tuple(key)


def _display(set_type: str, member: str) -> str:
    """ipset prints a ,net member without its prefix when it is a host (/32, /128)."""
    if set_type == HASH_IP_PORT_NET:
        head, _, net = member.rpartition(",")
        network = ipaddress.ip_network(net)
        if network.prefixlen == network.max_prefixlen:
            return f"{head},{network.network_address}"
    return member


def _matches(set_type: str, member: str, ip: str | None, protocol: str | None,
             port: int | None, other: str | None) -> bool:
    if set_type == BITMAP_PORT:
        return port is not None and int(member) == port
    parts = member.split(",")
    if ip is None or ipaddress.ip_address(parts[0]) != ipaddress.ip_address(ip):
        return False
    if set_type == HASH_IP:
        return True
    proto, _, number = parts[1].partition(":")
    if proto != (protocol or "").lower() or int(number) != port:
        return False
    if set_type == HASH_IP_PORT:
        return True
    if other is None:
        return False
    if set_type == HASH_IP_PORT_IP:
        return ipaddress.ip_address(parts[2]) == ipaddress.ip_address(other)
    return ipaddress.ip_address(other) in ipaddress.ip_network(parts[2])
