"""ipsets supplied by the caller (hash:ip, hash:net, hash:ip,port[,ip|,net], bitmap:port, list:set)
and the `-m set --match-set NAME dirs` match that looks packets up in them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .addr import Net, parse_net
from .ext import (
    MATCHES,
    ExtensionError,
    Given,
    Option,
    RuleFacts,
    Unsupported,
    frozen,
    inv,
    register,
    words,
)
from .lexer import tokenize
from .matches import Match

SET_TYPES = {
    # type -> the kind of each dimension (ip: address, net: address/prefix, port: proto:port)
    "hash:ip": ("ip",),
    "hash:net": ("net",),
    "hash:ip,port": ("ip", "port"),
    "hash:net,port": ("net", "port"),
    "hash:ip,port,ip": ("ip", "port", "ip"),
    "hash:ip,port,net": ("ip", "port", "net"),
    "bitmap:port": ("port",),
    "list:set": ("set",),
}
PORT_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}
MATCH, NOMATCH, MISS = "match", "nomatch", "miss"


@dataclass(frozen=True, slots=True)
class IPSet:
    """One ipset: name, type and members written as `ipset add` takes them.

    Members: `10.0.0.1`, `10.0.0.0/24`, `10.0.0.1-10.0.0.9`, `10.96.0.1,tcp:443`,
    `10.0.0.1,udp:53,10.0.0.0/8`, `30000-32767` (bitmap:port), or set names (list:set).
    A trailing ` nomatch` marks an exception entry (hash:net types).
    """

    name: str
    type: str
    members: tuple[str, ...] = ()
    family: int = 4
    _exact: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    _ranged: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dims = SET_TYPES.get(self.type)
        if dims is None:
            raise ValueError(f"ipset {self.name}: type {self.type!r} is not modelled")
        exact, ranged = set(), []
        for member in self.members:
            entry, nomatch = _parse_member(member, dims, self.family, self.name)
            if not nomatch and all(not isinstance(part, Net) and not _is_range(part)
                                   for part in entry):
                exact.add(entry)
            else:
                ranged.append((entry, nomatch))
        object.__setattr__(self, "_exact", frozenset(exact))
        # most specific first, so the first hit decides between an entry and a nomatch exception
        ranged.sort(key=lambda item: -sum(_specificity(part) for part in item[0]))
        object.__setattr__(self, "_ranged", tuple(ranged))

    @property
    def dimensions(self) -> tuple[str, ...]:
        return SET_TYPES[self.type]

    def lookup(self, key: tuple) -> str:
        """MATCH, NOMATCH (an exception entry decided) or MISS for one element tuple."""
        if key in self._exact:
            return MATCH
        for entry, nomatch in self._ranged:
            if all(_part_holds(part, value) for part, value in zip(entry, key, strict=False)):
                return NOMATCH if nomatch else MATCH
        return MISS


def _is_range(part) -> bool:
    return isinstance(part, tuple) and len(part) == 3 and part[0] == "range"


def _specificity(part) -> int:
    if isinstance(part, Net):
        return part.prefix or 0
    if _is_range(part):
        return 0
    return 128


def _part_holds(part, value) -> bool:
    if isinstance(part, Net):
        return isinstance(value, int) and part.contains(value)
    if _is_range(part):
        lo, hi = part[1], part[2]
        if isinstance(lo, tuple):  # port range with protocol: (proto, lo), (proto, hi)
            return (isinstance(value, tuple) and value[0] == lo[0]
                    and lo[1] <= value[1] <= hi[1])
        return lo <= value <= hi
    return part == value


def _parse_member(text: str, dims: tuple[str, ...], family: int, set_name: str):
    body, _, flags = text.strip().partition(" ")
    nomatch = "nomatch" in flags.split()
    if dims == ("set",):
        return (body,), nomatch
    parts = body.split(",")
    if len(parts) != len(dims):
        raise ValueError(f"ipset {set_name}: member {text!r} does not fit type {dims}")
    entry = []
    for kind, part in zip(dims, parts, strict=True):
        if kind in ("ip", "net"):
            entry.append(_parse_addr(part, family, set_name))
        else:
            entry.append(_parse_port(part, set_name, bitmap=len(dims) == 1))
    return tuple(entry), nomatch


def _parse_addr(text: str, family: int, set_name: str):
    try:
        if "-" in text and "/" not in text:
            lo, hi = text.split("-", 1)
            lo_net, hi_net = parse_net(lo), parse_net(hi)
            return ("range", lo_net.addr, hi_net.addr)
        net = parse_net(text)
    except ValueError:
        raise ValueError(f"ipset {set_name}: bad address {text!r}") from None
    if net.family != family:
        raise ValueError(f"ipset {set_name}: {text!r} is not IPv{family}")
    return net.addr if net.is_host() else net


def _parse_port(text: str, set_name: str, bitmap: bool):
    proto_text, colon, port_text = text.rpartition(":")
    if bitmap:
        proto = None
    elif not colon:
        proto = 6  # ipset: a bare port means tcp
    elif proto_text.lower() in PORT_PROTOCOLS:
        proto = PORT_PROTOCOLS[proto_text.lower()]
    else:
        raise ValueError(f"ipset {set_name}: protocol {proto_text!r} is not modelled")
    lo_text, dash, hi_text = port_text.partition("-")
    if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
        raise ValueError(f"ipset {set_name}: bad port {text!r}")
    lo, hi = int(lo_text), int(hi_text) if dash else int(lo_text)
    if bitmap:
        return lo if lo == hi else ("range", lo, hi)
    return (proto, lo) if lo == hi else ("range", (proto, lo), (proto, hi))


def parse_ipset_save(text: str) -> dict[str, IPSet]:
    """The sets of `ipset save` (create/add lines) or `ipset list` (Name:/Type:/Members:)
    output, by name. ValueError on text that is neither."""
    if any(line.startswith("Name:") for line in text.splitlines()[:5]):
        return _parse_ipset_list(text)
    types: dict[str, tuple[str, int]] = {}
    members: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words_ = tokenize(line)
        if words_[0] in ("create", "-N", "-exist") and len(words_) >= 3:
            family = 6 if "inet6" in words_[3:] else 4
            types[words_[1]] = (words_[2], family)
            members.setdefault(words_[1], [])
        elif words_[0] in ("add", "-A") and len(words_) >= 3:
            if words_[1] not in types:
                raise ValueError(f"line {number}: add to undeclared set {words_[1]!r}")
            flags = " nomatch" if "nomatch" in words_[3:] else ""
            members[words_[1]].append(words_[2] + flags)
        else:
            raise ValueError(f"line {number}: cannot read {line!r}")
    return {name: IPSet(name, kind, tuple(members[name]), family)
            for name, (kind, family) in types.items()}


def _parse_ipset_list(text: str) -> dict[str, IPSet]:
    sets: dict[str, IPSet] = {}
    fields: dict[str, str] = {}
    members: list[str] | None = None

    def close() -> None:
        if "Name" in fields:
            family = 6 if "inet6" in fields.get("Header", "").split() else 4
            sets[fields["Name"]] = IPSet(fields["Name"], fields.get("Type", ""),
                                         tuple(members or ()), family)

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Name:"):
            close()
            fields, members = {}, None
        if members is not None:
            if line:
                body = line.split()
                members.append(body[0] + (" nomatch" if "nomatch" in body[1:] else ""))
            continue
        key, colon, value = line.partition(":")
        if colon:
            fields[key] = value.strip()
            if key == "Members":
                members = []
    close()
    return sets


@register(MATCHES, "set")
@frozen
class SetMatch(Match):
    name: ClassVar[str] = "set"
    options: ClassVar[tuple[Option, ...]] = (
        Option("match-set", nargs=2, invertible=True, aliases=("set",)),
        Option("return-nomatch", nargs=0),
        Option("update-counters", nargs=0, invertible=True),
        Option("update-subcounters", nargs=0, invertible=True),
        Option("packets-eq", invertible=True),
        Option("packets-lt"),
        Option("packets-gt"),
        Option("bytes-eq", invertible=True),
        Option("bytes-lt"),
        Option("bytes-gt"),
    )
    set_name: str = ""
    dirs: tuple[str, ...] = ()
    invert: bool = False
    return_nomatch: bool = False
    no_update_counters: bool = False
    no_update_subcounters: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> SetMatch:
        kw: dict = {}
        for item in given:
            if item.name == "match-set":
                dirs = tuple(item.args[1].split(","))
                if not 1 <= len(dirs) <= 6 or any(d not in ("src", "dst") for d in dirs):
                    raise ExtensionError(f"set: bad direction list {item.args[1]!r}")
                kw.update(set_name=item.args[0], dirs=dirs, invert=item.invert)
            elif item.name == "return-nomatch":
                kw["return_nomatch"] = True
            elif item.name == "update-counters":
                kw["no_update_counters"] = item.invert
            elif item.name == "update-subcounters":
                kw["no_update_subcounters"] = item.invert
            else:
                raise Unsupported(f"set option --{item.name} (set counters are not modelled)")
        if "set_name" not in kw:
            raise ExtensionError("set match needs --match-set")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(
            f"{inv(self.invert)}--match-set {self.set_name} {','.join(self.dirs)}",
            "--return-nomatch" if self.return_nomatch else "",
            "! --update-counters" if self.no_update_counters else "",
            "! --update-subcounters" if self.no_update_subcounters else "",
        )

    def test(self, w) -> bool:
        sets = w.ctx.ipsets
        if sets is None or self.set_name not in sets:
            w.runtime_unsupported(f"-m set: ipset {self.set_name!r} was not supplied")
            return False
        result = lookup_set(sets, sets[self.set_name], self.dirs, w.p, 0)
        hit = result == MATCH or (result == NOMATCH and self.return_nomatch)
        return hit != self.invert


def lookup_set(sets, ipset: IPSet, dirs: tuple[str, ...], p, depth: int) -> str:
    """Look the packet up in a set using the direction flags (src/dst per dimension)."""
    if ipset.type == "list:set":
        if depth > 8:
            return MISS
        for member in ipset.members:
            inner = sets.get(member.split()[0])
            if inner is not None:
                result = lookup_set(sets, inner, dirs, p, depth + 1)
                if result != MISS:
                    return result
        return MISS
    dims = ipset.dimensions
    if len(dirs) < len(dims) or p.family != ipset.family:
        return MISS
    key = []
    for kind, direction in zip(dims, dirs, strict=False):
        src = direction == "src"
        if kind in ("ip", "net"):
            key.append(p.src_i if src else p.dst_i)
        else:
            port = p.sport if src else p.dport
            if kind == "port" and len(dims) == 1:
                key.append(port)
            else:
                key.append((p.proto, port))
    return ipset.lookup(tuple(key))

