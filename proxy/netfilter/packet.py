"""What the interpreter is given: the packet, and the node facts its matches need (Context)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .addr import canonical_ip, family_of, ip_to_int, parse_net
from .conntrack import (
    EMPTY_CONNTRACK,
    EMPTY_COUNTERS,
    EMPTY_RECENT,
    ConntrackTable,
    CtRef,
    FlowTuple,
    NthCounters,
    RecentTable,
)
from .ipset import IPSet
from .model import PROTOCOL_NUMBERS

TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")
_FLAG_BITS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32}
ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}


def protocol_number(protocol: str | int) -> int:
    if isinstance(protocol, int):
        return protocol
    number = PROTOCOL_NUMBERS.get(protocol.lower())
    if number is None:
        if not protocol.isdigit():
            raise ValueError(f"unknown protocol {protocol!r}")
        number = int(protocol)
    return number


@dataclass(frozen=True, slots=True)
class Packet:
    """One packet as the hooks see it. Addresses are canonicalised; protocol is a name.

    `tcp_flags` defaults to a SYN (a new connection). For ICMP, `icmp_type` defaults to an echo
    request and `sport` carries the echo id. `related_to` is the flow an ICMP error quotes.
    `conntrack` is the connection the packet is already attached to (set on rewritten packets
    that the interpreter returns, as the kernel keeps skb->_nfct between hooks).
    """

    src: str
    dst: str
    protocol: str = "tcp"
    sport: int = 0
    dport: int = 0
    in_iface: str | None = None
    out_iface: str | None = None
    mark: int = 0
    tcp_flags: frozenset[str] = frozenset({"SYN"})
    icmp_type: int | None = None
    icmp_code: int = 0
    length: int | None = None
    fragment: bool = False
    related_to: FlowTuple | None = None
    conntrack: CtRef | None = None

    def __post_init__(self) -> None:
        try:
            src, dst = canonical_ip(self.src), canonical_ip(self.dst)
        except ValueError as err:
            raise ValueError(f"packet: {err}") from None
        if family_of(src) != family_of(dst):
            raise ValueError("packet: source and destination are of different families")
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "dst", dst)
        number = protocol_number(self.protocol)
        object.__setattr__(self, "protocol", _PROTOCOL_TEXT.get(number, str(number)))
        flags = self.tcp_flags
        if isinstance(flags, str):
            flags = frozenset(f for f in flags.upper().replace("|", ",").split(",") if f)
        else:
            flags = frozenset(f.upper() for f in flags)
        if flags - _FLAG_BITS.keys():
            raise ValueError(f"packet: unknown TCP flags {sorted(flags - _FLAG_BITS.keys())}")
        object.__setattr__(self, "tcp_flags", flags)
        if self.icmp_type is None and number in (1, 58):
            object.__setattr__(self, "icmp_type", ECHO_REQUEST[self.family])

    @property
    def family(self) -> int:
        return family_of(self.src)

    @property
    def proto(self) -> int:
        return protocol_number(self.protocol)

    @property
    def flow(self) -> FlowTuple:
        return FlowTuple(self.proto, self.src, self.sport, self.dst, self.dport)

    def flag_bits(self) -> int:
        bits = 0
        for name in self.tcp_flags:
            bits |= _FLAG_BITS[name]
        return bits

    def reply(self, **changes) -> Packet:
        """The answer to this packet: addresses and ports swapped, a SYN-ACK for a SYN, an echo
        reply for an echo request; interfaces swapped and the conntrack attachment dropped."""
        flags = self.tcp_flags
        if flags == {"SYN"}:
            flags = frozenset({"SYN", "ACK"})
        icmp_type = self.icmp_type
        if icmp_type == ECHO_REQUEST.get(self.family):
            icmp_type = ECHO_REPLY[self.family]
        values = dict(src=self.dst, dst=self.src, sport=self.dport, dport=self.sport,
                      in_iface=self.out_iface, out_iface=self.in_iface, mark=0,
                      tcp_flags=flags, icmp_type=icmp_type, conntrack=None, related_to=None)
        values.update(changes)
        return replace(self, **values)


_PROTOCOL_TEXT = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6", 0: "all"}


@dataclass(frozen=True, slots=True)
class Socket:
    """A socket on the node, for `-m socket` and TPROXY: a listener (remote None) or a
    connected socket (remote = (address, port))."""

    address: str
    port: int
    protocol: str = "tcp"
    transparent: bool = False
    mark: int = 0
    remote: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Physdev:
    """The bridge ports a bridged packet crossed (`-m physdev`); absent for routed packets."""

    in_port: str | None = None
    out_port: str | None = None


@dataclass(frozen=True, slots=True)
class VirtualService:
    """An IPVS virtual service, for `-m ipvs`."""

    address: str
    port: int
    protocol: str = "tcp"
    method: str = "MASQ"

    @property
    def proto(self) -> int:
        return protocol_number(self.protocol)


_LOOPBACK = (parse_net("127.0.0.0/8"), parse_net("::1/128"))
_MULTICAST = (parse_net("224.0.0.0/4"), parse_net("ff00::/8"))


# the Context fields its __post_init__ parses into _local and _broadcast
_PARSED = frozenset({"local_addresses", "interfaces", "broadcast_addresses"})


@dataclass(frozen=True, slots=True)
class Context:
    """Node facts the matches need and the state carried from earlier traces.

    local_addresses: the node's addresses or prefixes (`addrtype LOCAL`; loopback always is).
    interfaces: interface -> its addresses, primary first (MASQUERADE, REDIRECT, limit-iface).
    address_of: iface -> primary address; defaults to the first of `interfaces[iface]`.
    route: packet -> out interface, asked after PREROUTING/OUTPUT when NAT moved the packet.
    ipsets, nfacct, sockets, ipvs: None means "not supplied": rules that need them are
    reported as unsupported in the trace (and do not match).
    uid/gid/groups: the local sender's credentials (`-m owner`, OUTPUT/POSTROUTING only).
    conntrack/recent/counters: state from earlier traces (see `advance`); never mutated.
    seed: picks one branch in sample mode. now: the clock (seconds) for `-m recent`.
    tcp_loose: nf_conntrack_tcp_loose (default on: mid-stream TCP packets start connections).
    """

    local_addresses: tuple[str, ...] = ()
    interfaces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    broadcast_addresses: tuple[str, ...] = ()
    address_of: Callable[[str], str | None] | None = None
    route: Callable[[Packet], str | None] | None = None
    ipsets: Mapping[str, IPSet] | None = None
    nfacct: frozenset[str] | None = None
    sockets: tuple[Socket, ...] | None = None
    ipvs: tuple[VirtualService, ...] | None = None
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    physdev: Physdev | None = None
    conntrack: ConntrackTable = EMPTY_CONNTRACK
    recent: RecentTable = EMPTY_RECENT
    counters: NthCounters = EMPTY_COUNTERS
    seed: int = 0
    now: float = 0.0
    tcp_loose: bool = True
    _local: tuple = field(default=(), init=False, repr=False, compare=False)
    _broadcast: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interfaces", MappingProxyType(dict(self.interfaces)))
        nets = [parse_net(a) for a in self.local_addresses]
        for addresses in self.interfaces.values():
            nets.extend(parse_net(a.split("/")[0]) for a in addresses)
        hosts = frozenset((n.family, n.addr) for n in nets if n.is_host())
        prefixes = tuple(n for n in nets if not n.is_host()) + _LOOPBACK
        object.__setattr__(self, "_local", (hosts, prefixes))
        bcast = {(4, 0xFFFFFFFF)} | {(family_of(a), ip_to_int(a)) for a in self.broadcast_addresses}
        object.__setattr__(self, "_broadcast", frozenset(bcast))

    def evolve(self, **changes: object) -> Context:
        """A copy with per-packet fields changed (conntrack, seed, uid), keeping the parsed
        local addresses that `replace` would parse again for every packet."""
        new = copy.copy(self)
        for name, value in changes.items():
            if name.startswith("_") or name in _PARSED:
                raise ValueError(f"{name} is derived from the addresses: use replace()")
            object.__setattr__(new, name, value)
        return new

    def primary_address(self, iface: str | None) -> str | None:
        """The address MASQUERADE and REDIRECT use for an interface."""
        if iface is None:
            return None
        if self.address_of is not None:
            return self.address_of(iface)
        addresses = self.interfaces.get(iface)
        return addresses[0].split("/")[0] if addresses else None

    def address_type(self, address: str, iface: str | None = None,
                     limited: bool = False) -> str:
        """The route type `-m addrtype` sees: LOCAL, BROADCAST, MULTICAST, UNSPEC or UNICAST.

        With limited (`--limit-iface-in/out`), LOCAL only for addresses of that interface.
        """
        family = family_of(address)
        value = ip_to_int(address)
        if value == 0:
            return "UNSPEC"
        if limited:
            own = self.interfaces.get(iface or "", ())
            if any(ip_to_int(a.split("/")[0]) == value for a in own) or (
                    iface == "lo" and _LOOPBACK[0 if family == 4 else 1].contains(value)):
                return "LOCAL"
        else:
            hosts, prefixes = self._local
            if (family, value) in hosts or any(
                    n.family == family and n.contains(value) for n in prefixes):
                return "LOCAL"
        if (family, value) in self._broadcast:
            return "BROADCAST"
        if _MULTICAST[0 if family == 4 else 1].contains(value):
            return "MULTICAST"
        return "UNICAST"

    def is_local(self, address: str) -> bool:
        return self.address_type(address) == "LOCAL"

    def find_socket(self, p, wildcard: bool = True) -> Socket | None:
        """The socket a packet belongs to: a connected one first, then a listener."""
        if not self.sockets:
            return None
        proto = p.proto if isinstance(p.proto, int) else protocol_number(p.proto)
        any_addr = "0.0.0.0" if p.family == 4 else "::"
        listener = None
        for sock in self.sockets:
            if protocol_number(sock.protocol) != proto or sock.port != p.dport:
                continue
            if sock.remote is not None:
                if sock.address == p.dst and tuple(sock.remote) == (p.src, p.sport):
                    return sock
            elif sock.address == p.dst or (wildcard and sock.address == any_addr):
                listener = listener or sock
        return listener

    def advance(self, branch) -> Context:
        """This context with the state a branch left: conntrack, recent lists, nth counters."""
        return replace(self, conntrack=branch.conntrack, recent=branch.recent,
                       counters=branch.counters)
