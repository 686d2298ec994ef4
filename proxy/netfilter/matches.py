"""Packet-header `-m` matches: ports, TCP flags, ICMP types, multiport, comment, mark.

Each match is a frozen dataclass built from the options of one `-m NAME` and printed back in
iptables-save's order (verified against iptables 1.8.9); `test(walk)` answers for one packet.
"""

from __future__ import annotations

from typing import ClassVar

from . import ext
from .ext import (
    MATCHES,
    ExtensionError,
    Given,
    Option,
    PortRange,
    RuleFacts,
    Unsupported,
    frozen,
    hexmark,
    inv,
    one,
    parse_markmask,
    parse_port_range,
    parse_uint,
    register,
    words,
)
from .lexer import save_string

TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58

TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10),
             ("URG", 0x20))
TCP_FLAG_BITS = dict(TCP_FLAGS) | {"ALL": 0x3F, "NONE": 0}


class Match(ext.Extension):
    """A `-m` module. `forks` is True for matches that split a trace (statistic random)."""

    __slots__ = ()
    forks: ClassVar[bool] = False

    def test(self, w) -> bool:
        raise NotImplementedError


def _needs_protocol(facts: RuleFacts, allowed: tuple[int, ...], name: str) -> None:
    if facts.protocol not in allowed or facts.protocol_inverted:
        raise ExtensionError(f"{name} match requires '-p {name}'")


def _range_test(rng: PortRange | None, inverted: bool, value: int) -> bool:
    return rng is None or ((rng.lo <= value <= rng.hi) != inverted)


def _range_save(option: str, rng: PortRange | None, inverted: bool) -> str:
    if rng is None or (rng.full() and not inverted):
        return ""
    return f"{inv(inverted)}--{option} {rng.text()}"


def _parse_flags(text: str) -> int:
    bits = 0
    for name in text.split(","):
        if name.upper() not in TCP_FLAG_BITS:
            raise ExtensionError(f"unknown TCP flag {name!r}")
        bits |= TCP_FLAG_BITS[name.upper()]
    return bits


def _flags_text(bits: int) -> str:
    if not bits:
        return "NONE"
    return ",".join(name for name, bit in TCP_FLAGS if bits & bit)


@register(MATCHES, "tcp")
@frozen
class TcpMatch(Match):
    name: ClassVar[str] = "tcp"
    options: ClassVar[tuple[Option, ...]] = (
        Option("sport", invertible=True, aliases=("source-port",)),
        Option("dport", invertible=True, aliases=("destination-port",)),
        Option("tcp-flags", nargs=2, invertible=True),
        Option("syn", nargs=0, invertible=True),
        Option("tcp-option", invertible=True),
    )
    sport: PortRange | None = None
    sport_inv: bool = False
    dport: PortRange | None = None
    dport_inv: bool = False
    flags: tuple[int, int] | None = None  # (mask, compare)
    flags_inv: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> TcpMatch:
        _needs_protocol(facts, (TCP,), "tcp")
        kw: dict = {}
        for item in given:
            if item.name == "sport":
                kw.update(sport=parse_port_range(item.args[0]), sport_inv=item.invert)
            elif item.name == "dport":
                kw.update(dport=parse_port_range(item.args[0]), dport_inv=item.invert)
            elif item.name == "tcp-flags":
                kw.update(flags=(_parse_flags(item.args[0]), _parse_flags(item.args[1])),
                          flags_inv=item.invert)
            elif item.name == "syn":
                kw.update(flags=(0x17, 0x02), flags_inv=item.invert)
            else:
                raise Unsupported("tcp option --tcp-option (TCP options are not modelled)")
        return cls(**kw)

    def save(self, family: int) -> str:
        flags = ""
        if self.flags is not None:
            flags = (f"{inv(self.flags_inv)}--tcp-flags {_flags_text(self.flags[0])} "
                     f"{_flags_text(self.flags[1])}")
        return words(_range_save("sport", self.sport, self.sport_inv),
                     _range_save("dport", self.dport, self.dport_inv), flags)

    def test(self, w) -> bool:
        p = w.p
        if p.fragment:
            return False
        if not _range_test(self.sport, self.sport_inv, p.sport):
            return False
        if not _range_test(self.dport, self.dport_inv, p.dport):
            return False
        if self.flags is not None:
            mask, comp = self.flags
            if ((p.flags & mask) == comp) == self.flags_inv:
                return False
        return True


class _PortsMatch(Match):
    """udp and sctp: source and destination port ranges."""

    __slots__ = ()
    proto: ClassVar[int] = UDP
    sport: PortRange | None
    sport_inv: bool
    dport: PortRange | None
    dport_inv: bool

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> _PortsMatch:
        _needs_protocol(facts, (cls.proto,), cls.name)
        kw: dict = {}
        for item in given:
            if item.name == "sport":
                kw.update(sport=parse_port_range(item.args[0]), sport_inv=item.invert)
            elif item.name == "dport":
                kw.update(dport=parse_port_range(item.args[0]), dport_inv=item.invert)
            else:
                raise Unsupported(f"{cls.name} option --{item.name}")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(_range_save("sport", self.sport, self.sport_inv),
                     _range_save("dport", self.dport, self.dport_inv))

    def test(self, w) -> bool:
        p = w.p
        return (not p.fragment and _range_test(self.sport, self.sport_inv, p.sport)
                and _range_test(self.dport, self.dport_inv, p.dport))


@register(MATCHES, "udp")
@frozen
class UdpMatch(_PortsMatch):
    name: ClassVar[str] = "udp"
    proto: ClassVar[int] = UDP
    options: ClassVar[tuple[Option, ...]] = (
        Option("sport", invertible=True, aliases=("source-port",)),
        Option("dport", invertible=True, aliases=("destination-port",)),
    )
    sport: PortRange | None = None
    sport_inv: bool = False
    dport: PortRange | None = None
    dport_inv: bool = False


@register(MATCHES, "sctp")
@frozen
class SctpMatch(_PortsMatch):
    name: ClassVar[str] = "sctp"
    proto: ClassVar[int] = SCTP
    options: ClassVar[tuple[Option, ...]] = (
        Option("sport", invertible=True, aliases=("source-port",)),
        Option("dport", invertible=True, aliases=("destination-port",)),
        Option("chunk-types", nargs=2, invertible=True),
    )
    sport: PortRange | None = None
    sport_inv: bool = False
    dport: PortRange | None = None
    dport_inv: bool = False


# ICMP type names (libipt_icmp / libip6t_icmp6): name -> (type, code_lo, code_hi)
ICMP_TYPES = {
    "any": (255, 0, 255), "echo-reply": (0, 0, 255), "pong": (0, 0, 255),
    "destination-unreachable": (3, 0, 255), "network-unreachable": (3, 0, 0),
    "host-unreachable": (3, 1, 1), "protocol-unreachable": (3, 2, 2),
    "port-unreachable": (3, 3, 3), "fragmentation-needed": (3, 4, 4),
    "source-route-failed": (3, 5, 5), "network-unknown": (3, 6, 6), "host-unknown": (3, 7, 7),
    "network-prohibited": (3, 9, 9), "host-prohibited": (3, 10, 10),
    "TOS-network-unreachable": (3, 11, 11), "TOS-host-unreachable": (3, 12, 12),
    "communication-prohibited": (3, 13, 13), "host-precedence-violation": (3, 14, 14),
    "precedence-cutoff": (3, 15, 15), "source-quench": (4, 0, 255), "redirect": (5, 0, 255),
    "network-redirect": (5, 0, 0), "host-redirect": (5, 1, 1),
    "TOS-network-redirect": (5, 2, 2), "TOS-host-redirect": (5, 3, 3),
    "echo-request": (8, 0, 255), "ping": (8, 0, 255), "router-advertisement": (9, 0, 255),
    "router-solicitation": (10, 0, 255), "time-exceeded": (11, 0, 255),
    "ttl-exceeded": (11, 0, 255),
    "ttl-zero-during-transit": (11, 0, 0), "ttl-zero-during-reassembly": (11, 1, 1),
    "parameter-problem": (12, 0, 255), "ip-header-bad": (12, 0, 0),
    "required-option-missing": (12, 1, 1), "timestamp-request": (13, 0, 255),
    "timestamp-reply": (14, 0, 255), "address-mask-request": (17, 0, 255),
    "address-mask-reply": (18, 0, 255),
}
ICMPV6_TYPES = {
    "destination-unreachable": (1, 0, 255), "no-route": (1, 0, 0),
    "communication-prohibited": (1, 1, 1), "beyond-scope": (1, 2, 2),
    "address-unreachable": (1, 3, 3), "port-unreachable": (1, 4, 4),
    "failed-policy": (1, 5, 5), "reject-route": (1, 6, 6), "packet-too-big": (2, 0, 255),
    "time-exceeded": (3, 0, 255), "ttl-exceeded": (3, 0, 255),
    "ttl-zero-during-transit": (3, 0, 0), "ttl-zero-during-reassembly": (3, 1, 1),
    "parameter-problem": (4, 0, 255), "bad-header": (4, 0, 0),
    "unknown-header-type": (4, 1, 1), "unknown-option": (4, 2, 2),
    "echo-request": (128, 0, 255), "ping": (128, 0, 255), "echo-reply": (129, 0, 255),
    "pong": (129, 0, 255), "router-solicitation": (133, 0, 255),
    "router-advertisement": (134, 0, 255), "neighbour-solicitation": (135, 0, 255),
    "neighbor-solicitation": (135, 0, 255), "neighbour-advertisement": (136, 0, 255),
    "neighbor-advertisement": (136, 0, 255), "redirect": (137, 0, 255),
}


def _parse_icmp(text: str, names: dict) -> tuple[int, int, int]:
    if text in names:
        return names[text]
    kind, slash, code = text.partition("/")
    typ = parse_uint(kind, 255, "ICMP type")
    if slash:
        value = parse_uint(code, 255, "ICMP code")
        return typ, value, value
    return typ, 0, 255


class _IcmpMatch(Match):
    __slots__ = ()
    names: ClassVar[dict] = ICMP_TYPES
    proto: ClassVar[int] = ICMP
    option_name: ClassVar[str] = "icmp-type"
    type: int
    code_lo: int
    code_hi: int
    invert: bool

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> _IcmpMatch:
        _needs_protocol(facts, (cls.proto,), cls.name)
        item = one(given, cls.option_name)
        if item is None:
            return cls(255, 0, 255, False)
        typ, lo, hi = _parse_icmp(item.args[0], cls.names)
        return cls(typ, lo, hi, item.invert)

    def save(self, family: int) -> str:
        if self.type == 255 and self.proto == ICMP:
            text = "any"
        elif (self.code_lo, self.code_hi) == (0, 255):
            text = str(self.type)
        else:
            text = f"{self.type}/{self.code_lo}"
        return f"{inv(self.invert)}--{self.option_name} {text}"

    def test(self, w) -> bool:
        p = w.p
        if p.fragment:
            return False
        if self.type == 255 and self.proto == ICMP:
            hit = True
        else:
            hit = p.icmp_type == self.type and self.code_lo <= p.icmp_code <= self.code_hi
        return hit != self.invert


@register(MATCHES, "icmp")
@frozen
class IcmpMatch(_IcmpMatch):
    name: ClassVar[str] = "icmp"
    options: ClassVar[tuple[Option, ...]] = (Option("icmp-type", invertible=True),)
    type: int = 255
    code_lo: int = 0
    code_hi: int = 255
    invert: bool = False


@register(MATCHES, "icmp6", "icmpv6")
@frozen
class Icmp6Match(_IcmpMatch):
    name: ClassVar[str] = "icmp6"
    names: ClassVar[dict] = ICMPV6_TYPES
    proto: ClassVar[int] = ICMPV6
    option_name: ClassVar[str] = "icmpv6-type"
    options: ClassVar[tuple[Option, ...]] = (Option("icmpv6-type", invertible=True),)
    type: int = 0
    code_lo: int = 0
    code_hi: int = 255
    invert: bool = False


@register(MATCHES, "multiport")
@frozen
class MultiportMatch(Match):
    name: ClassVar[str] = "multiport"
    options: ClassVar[tuple[Option, ...]] = (
        Option("sports", invertible=True, aliases=("source-ports",)),
        Option("dports", invertible=True, aliases=("destination-ports",)),
        Option("ports", invertible=True),
    )
    which: str  # sports | dports | ports
    ports: tuple[PortRange, ...]
    invert: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> MultiportMatch:
        _needs_protocol(facts, (TCP, UDP, SCTP, 33, 136), "multiport")
        if len(given) != 1:
            raise ExtensionError("multiport needs exactly one of --sports, --dports, --ports")
        item = given[0]
        ports = tuple(parse_port_range(part) for part in item.args[0].split(","))
        if sum(1 if p.lo == p.hi else 2 for p in ports) > 15:
            raise ExtensionError("too many ports specified (multiport takes at most 15)")
        return cls(item.name, ports, item.invert)

    def save(self, family: int) -> str:
        return f"{inv(self.invert)}--{self.which} {','.join(p.text() for p in self.ports)}"

    def test(self, w) -> bool:
        p = w.p
        if p.fragment:
            return False
        if self.which == "sports":
            hit = any(r.lo <= p.sport <= r.hi for r in self.ports)
        elif self.which == "dports":
            hit = any(r.lo <= p.dport <= r.hi for r in self.ports)
        else:
            hit = any(r.lo <= p.sport <= r.hi or r.lo <= p.dport <= r.hi for r in self.ports)
        return hit != self.invert


@register(MATCHES, "comment")
@frozen
class CommentMatch(Match):
    name: ClassVar[str] = "comment"
    options: ClassVar[tuple[Option, ...]] = (Option("comment"),)
    text: str = ""

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> CommentMatch:
        item = one(given, "comment")
        if item is None:
            raise ExtensionError("comment match needs --comment")
        if len(item.args[0]) > 255:
            raise ExtensionError("comment may not exceed 255 characters")
        return cls(item.args[0])

    def save(self, family: int) -> str:
        return f"--comment {save_string(self.text)}"

    def test(self, w) -> bool:
        return True


def mark_option(given: list[Given], match: str) -> tuple[int, int, bool]:
    """(value, mask, invert) of the --mark option that the mark and connmark matches share."""
    item = one(given, "mark")
    if item is None:
        raise ExtensionError(f"{match} match needs --mark")
    value, mask = parse_markmask(item.args[0])
    return value, mask, item.invert


@register(MATCHES, "mark")
@frozen
class MarkMatch(Match):
    name: ClassVar[str] = "mark"
    options: ClassVar[tuple[Option, ...]] = (Option("mark", invertible=True),)
    value: int
    mask: int
    invert: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> MarkMatch:
        return cls(*mark_option(given, "mark"))

    def save(self, family: int) -> str:
        return f"{inv(self.invert)}--mark {hexmark(self.value, self.mask)}"

    def test(self, w) -> bool:
        return ((w.p.mark & self.mask) == self.value) != self.invert
