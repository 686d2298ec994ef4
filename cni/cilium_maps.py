"""Cilium's BPF map entries as plain frozen data, with the constants Cilium names them by.

Layouts follow Cilium v1.16 (pkg/maps/ipcache, lxcmap, lbmap, policymap, ctmap, nat;
bpf/lib/common.h, policy.h, conntrack.h), restated in ../shared/reference/cni.md 2.2.
Addresses are strings and ports host-order integers: the emulator never packs bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- map names (v1.16)

IPCACHE_MAP = "cilium_ipcache"
LXC_MAP = "cilium_lxc"
LB4_SERVICES_MAP = "cilium_lb4_services_v2"
LB4_BACKENDS_MAP = "cilium_lb4_backends_v3"
LB4_REVNAT_MAP = "cilium_lb4_reverse_nat"
CT4_TCP_MAP = "cilium_ct4_global"
CT4_ANY_MAP = "cilium_ct_any4_global"
SNAT4_MAP = "cilium_snat_v4_external"


def policy_map_name(endpoint_id: int) -> str:
    """bpf.LocalMapName(policymap.MapName, id): cilium_policy_ plus the 5-digit endpoint id."""
    return f"cilium_policy_{endpoint_id:05d}"


# ---------------------------------------------------------------- protocols (u8proto)

PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP = 0, 1, 6, 17, 58, 132
PROTO_NUMBERS = {"ANY": PROTO_ANY, "ICMP": PROTO_ICMP, "TCP": PROTO_TCP, "UDP": PROTO_UDP,
                 "ICMPV6": PROTO_ICMPV6, "SCTP": PROTO_SCTP}
PROTO_NAMES = {PROTO_ANY: "ANY", PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP",
               PROTO_ICMPV6: "ICMPv6", PROTO_SCTP: "SCTP"}  # u8proto.String()


def proto_number(protocol: str | int) -> int:
    return protocol if isinstance(protocol, int) else PROTO_NUMBERS[protocol.upper()]


def proto_name(number: int) -> str:
    return PROTO_NAMES.get(number, str(number))


# ---------------------------------------------------------------- drop reasons

DROP_POLICY = 133  # "Policy denied": no policy entry allows the traffic
DROP_SERVICE_BACKEND_NOT_FOUND = 158
DROP_POLICY_DENY = 181  # "Policy denied by denylist": a deny entry matched
DROP_REASONS = {DROP_POLICY: "Policy denied",
                DROP_SERVICE_BACKEND_NOT_FOUND: "Service backend not found",
                DROP_POLICY_DENY: "Policy denied by denylist"}


# ---------------------------------------------------------------- ipcache


@dataclass(frozen=True, slots=True)
class IpcacheEntry:
    """cilium_ipcache: LPM prefix -> {sec_identity, tunnel_endpoint, encrypt key, flags}.

    tunnel_endpoint is None where Cilium stores 0 (local endpoints, node addresses, world,
    CIDR prefixes); `cilium-dbg bpf ipcache list` prints that as 0.0.0.0. v1.16 keeps no
    node id in the value; node_id is netsim's number of the owning node (0: none).
    """

    prefix: str
    identity: int
    tunnel_endpoint: str | None = None
    encrypt_key: int = 0
    node_id: int = 0
    flags: int = 0  # FlagSkipTunnel = 1 is the only v1.16 flag; never set here

    @property
    def tunnel_text(self) -> str:
        return self.tunnel_endpoint or "0.0.0.0"


# ---------------------------------------------------------------- endpoints (cilium_lxc)

ENDPOINT_FLAG_HOST = 1  # lxcmap.EndpointFlagHost: the entry is one of the node's own IPs


@dataclass(frozen=True, slots=True)
class EndpointEntry:
    """cilium_lxc: endpoint IP -> {ifindex, lxc_id, flags, mac, node_mac, sec_id}."""

    ip: str
    id: int  # the endpoint id (lxc_id); 0 for host entries
    ifindex: int = 0
    interface: str | None = None  # host-side veth, "lxc" + 12 hex digits
    mac: str = "00:00:00:00:00:00"  # the pod's eth0
    node_mac: str = "00:00:00:00:00:00"  # the host-side veth
    sec_id: int = 0
    flags: int = 0
    pod_key: str | None = None  # "ns/name"; None for the host's own addresses

    @property
    def is_host(self) -> bool:
        return bool(self.flags & ENDPOINT_FLAG_HOST)


# ---------------------------------------------------------------- load balancing

# pkg/loadbalancer ServiceFlags (lb4_service.flags | flags2 << 8).
SVC_FLAG_EXTERNAL_IPS = 1 << 0
SVC_FLAG_NODEPORT = 1 << 1
SVC_FLAG_EXT_LOCAL_SCOPE = 1 << 2
SVC_FLAG_HOSTPORT = 1 << 3
SVC_FLAG_SESSION_AFFINITY = 1 << 4
SVC_FLAG_LOADBALANCER = 1 << 5
SVC_FLAG_ROUTABLE = 1 << 6
SVC_FLAG_SOURCE_RANGE = 1 << 7
SVC_FLAG_LOCAL_REDIRECT = 1 << 8
SVC_FLAG_NAT_46X64 = 1 << 9
SVC_FLAG_L7_LOADBALANCER = 1 << 10
SVC_FLAG_LOOPBACK = 1 << 11
SVC_FLAG_INT_LOCAL_SCOPE = 1 << 12
SVC_FLAG_TWO_SCOPES = 1 << 13
CLUSTER_IP, NODE_PORT, EXTERNAL_IPS, LOAD_BALANCER, HOST_PORT = (
    "ClusterIP", "NodePort", "ExternalIPs", "LoadBalancer", "HostPort")
SCOPE_EXTERNAL, SCOPE_INTERNAL = "external", "internal"  # lb4_key.scope 0 / 1
BACKEND_ACTIVE, BACKEND_TERMINATING = "active", "terminating"  # lb4_backend.flags 0 / 1


def service_type(flags: int) -> str:
    """ServiceFlags.SVCType(): the first type bit set, ClusterIP when none."""
    for bit, name in ((SVC_FLAG_EXTERNAL_IPS, EXTERNAL_IPS), (SVC_FLAG_NODEPORT, NODE_PORT),
                      (SVC_FLAG_LOADBALANCER, LOAD_BALANCER), (SVC_FLAG_HOSTPORT, HOST_PORT),
                      (SVC_FLAG_LOCAL_REDIRECT, "LocalRedirect")):
        if flags & bit:
            return name
    return CLUSTER_IP


def service_flag_words(flags: int) -> tuple[str, ...]:
    """ServiceFlags.String() split at ", " (pkg/loadbalancer/loadbalancer.go)."""
    words = [service_type(flags)]
    for bit, word in ((SVC_FLAG_EXT_LOCAL_SCOPE, "Local"),
                      (SVC_FLAG_INT_LOCAL_SCOPE, "InternalLocal"),
                      (SVC_FLAG_TWO_SCOPES, "two-scopes"),
                      (SVC_FLAG_SESSION_AFFINITY, "sessionAffinity")):
        if flags & bit:
            words.append(word)
    if not flags & SVC_FLAG_ROUTABLE:
        words.append("non-routable")
    for bit, word in ((SVC_FLAG_SOURCE_RANGE, "check source-range"),
                      (SVC_FLAG_NAT_46X64, "46x64"),
                      (SVC_FLAG_L7_LOADBALANCER, "l7-load-balancer"),
                      (SVC_FLAG_LOOPBACK, "loopback")):
        if flags & bit:
            words.append(word)
    return tuple(words)


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """The master (slot 0) entry of cilium_lb4_services_v2 for one frontend and scope.

    count is the number of slots a new connection may pick (1..count); backend_ids lists
    every slot in order, so slots past count hold terminating backends that established
    connections still use. affinity_timeout shares the master's backend_id field.
    """

    frontend: tuple[str, int, str]  # (address, port, protocol)
    rev_nat_index: int
    count: int
    flags: int
    backend_ids: tuple[int, ...]
    service: str  # "ns/name"
    scope: str = SCOPE_EXTERNAL
    affinity_timeout: int = 0

    @property
    def type(self) -> str:
        return service_type(self.flags)

    @property
    def flag_words(self) -> tuple[str, ...]:
        return service_flag_words(self.flags)

    @property
    def local(self) -> bool:
        """Traffic policy Local in this entry's scope (eTP for external, iTP for internal)."""
        return bool(self.flags & (SVC_FLAG_EXT_LOCAL_SCOPE if self.scope == SCOPE_EXTERNAL
                                  and self.type != CLUSTER_IP else SVC_FLAG_INT_LOCAL_SCOPE))

    @property
    def two_scopes(self) -> bool:
        return bool(self.flags & SVC_FLAG_TWO_SCOPES)


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """cilium_lb4_backends_v3: backend id -> {address, port, proto, flags (state)}."""

    id: int
    address: str
    port: int
    protocol: str
    state: str = BACKEND_ACTIVE
    pod_key: str | None = None
    node: str | None = None


# ---------------------------------------------------------------- policy maps

INGRESS, EGRESS = "ingress", "egress"
LPM_PROTO_PREFIX_BITS = 8  # bpf/lib/policy.h: protocol specified, port wildcarded
LPM_FULL_PREFIX_BITS = 24  # protocol and port specified
# Hubble policy_match_type words (hubble printer), as the v1.16 datapath reports them.
MATCH_NONE, MATCH_L3_ONLY, MATCH_L3_L4, MATCH_L4_ONLY, MATCH_ALL = (
    "none", "L3-Only", "L3-L4", "L4-Only", "all")
# pkg/policy labels for entries no user policy wrote (DerivedFromRules).
ALLOW_LOCALHOST_INGRESS = "reserved:allow-localhost-ingress"
ALLOW_ANY = {INGRESS: "reserved:allow-any-ingress", EGRESS: "reserved:allow-any-egress"}


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """policy_key: {sec_label (0 = ANY), egress, protocol, dport} with an LPM prefix length
    over protocol and port (0: both wildcarded, 8: protocol only, 24: exact port)."""

    identity: int
    direction: str
    protocol: int = PROTO_ANY
    dport: int = 0
    prefix_len: int = 0

    def covers(self, protocol: int, dport: int) -> bool:
        """Whether a packet's protocol and port fall in this key's LPM prefix."""
        if self.prefix_len == 0:
            return True
        shift = LPM_FULL_PREFIX_BITS - self.prefix_len
        return ((protocol << 16 | dport) >> shift) == ((self.protocol << 16 | self.dport) >> shift)

    def covers_key(self, other: PolicyKey) -> bool:
        return self.prefix_len <= other.prefix_len and self.covers(other.protocol, other.dport)

    @property
    def port_proto(self) -> str:
        """PolicyKey.PortProtoString(): ANY, TCP, 80/TCP or 80-83/TCP."""
        proto = proto_name(self.protocol)
        if self.prefix_len in (0, LPM_PROTO_PREFIX_BITS):
            return proto
        if self.prefix_len < LPM_FULL_PREFIX_BITS:
            span = 0xFFFF >> (self.prefix_len - LPM_PROTO_PREFIX_BITS)
            return f"{self.dport}-{self.dport + span}/{proto}"
        return f"{self.dport}/{proto}"


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """policy_entry: {proxy_port, deny, auth_type, lpm prefix}, with its provenance.

    http holds the L7 rules the proxy enforces for this key (None: no L7 redirect).
    """

    key: PolicyKey
    deny: bool = False
    proxy_port: int = 0
    auth_type: int = 0
    derived_from: tuple[str, ...] = ()
    http: tuple = ()  # tuple[policies.cilium.HTTPRule, ...] when proxy_port != 0


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What __policy_can_access decides for one packet, and which entry (if any) decided."""

    allowed: bool
    deny: bool
    proxy_port: int
    key: PolicyKey | None
    drop_reason: int | None
    match: str
    derived_from: tuple[str, ...]

    @property
    def drop_text(self) -> str | None:
        return DROP_REASONS.get(self.drop_reason) if self.drop_reason else None


# ---------------------------------------------------------------- conntrack and NAT

TUPLE_F_OUT, TUPLE_F_IN, TUPLE_F_RELATED, TUPLE_F_SERVICE = 0, 1, 2, 4
# ct_entry flags (pkg/maps/ctmap: RxClosing ... FromTunnel), printed in this order.
CT_ENTRY_FLAGS = ("RxClosing", "TxClosing", "Nat64", "LBLoopback", "SeenNonSyn", "NodePort",
                  "ProxyRedirect", "DSRInternal", "FromL7LB", "Reserved1", "FromTunnel")
CT_RX_CLOSING, CT_TX_CLOSING, CT_SEEN_NON_SYN, CT_NODE_PORT, CT_PROXY_REDIRECT = (
    1 << 0, 1 << 1, 1 << 4, 1 << 5, 1 << 6)
# bpf/lib/conntrack.h defaults (seconds): CT_CONNECTION_LIFETIME_TCP/NONTCP, CT_SYN_TIMEOUT.
CT_LIFETIME_TCP, CT_LIFETIME_NONTCP, CT_SYN_TIMEOUT = 21600, 60, 60


@dataclass(frozen=True, slots=True)
class CtKey:
    """ipv4_ct_tuple in forward order as cilium-dbg prints it (saddr:sport -> daddr:dport).

    flags: TUPLE_F_OUT (0) for egress entries, TUPLE_F_IN for ingress, TUPLE_F_SERVICE for
    the CT_SERVICE entry of a load-balanced connection (client -> VIP), plus RELATED.
    """

    saddr: str
    daddr: str
    sport: int
    dport: int
    proto: int = PROTO_TCP
    flags: int = TUPLE_F_OUT

    @property
    def map_name(self) -> str:
        return CT4_TCP_MAP if self.proto == PROTO_TCP else CT4_ANY_MAP


@dataclass(frozen=True, slots=True)
class CtEntry:
    """ct_entry, v1.16 field set (ctmap.CtEntry)."""

    lifetime: int = CT_LIFETIME_TCP
    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_flags_seen: int = 0
    tx_flags_seen: int = 0
    last_rx_report: int = 0
    last_tx_report: int = 0
    flags: int = 0
    rev_nat_index: int = 0
    src_sec_id: int = 0
    ifindex: int = 0
    backend_id: int = 0


@dataclass(frozen=True, slots=True)
class NatEntry:
    """cilium_snat_v4_external: a CT-style tuple -> {to address, to port, created, needs_ct}.

    An OUT key rewrites the source (XLATE_SRC); its IN twin, keyed by the reply tuple,
    rewrites the destination back (XLATE_DST).
    """

    key: CtKey
    addr: str
    port: int
    created: int = 0  # seconds before the dump
    needs_ct: int = 1
