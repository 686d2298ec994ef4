"""Matches that ask the node: address types, bridge ports, sockets, owners, nfacct, limit."""

from __future__ import annotations

from typing import ClassVar

from .ext import (
    MATCHES,
    ExtensionError,
    Given,
    Option,
    RuleFacts,
    Unsupported,
    frozen,
    inv,
    one,
    parse_uint,
    register,
    words,
)
from .matches import Match

# addrtype (xt_addrtype.h bit order, which is also iptables-save's print order)
ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
              "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")
MODELLED_TYPES = frozenset({"UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "MULTICAST"})


def _parse_types(text: str) -> tuple[str, ...]:
    found = []
    for name in text.split(","):
        upper = name.upper()
        if upper not in ADDR_TYPES:
            raise ExtensionError(f"addrtype: unknown type {name!r}")
        if upper not in MODELLED_TYPES:
            raise Unsupported(f"addrtype type {upper} (route types other than "
                              "LOCAL/UNICAST/BROADCAST/MULTICAST/UNSPEC are not modelled)")
        found.append(upper)
    return tuple(t for t in ADDR_TYPES if t in found)


@register(MATCHES, "addrtype")
@frozen
class AddrtypeMatch(Match):
    name: ClassVar[str] = "addrtype"
    options: ClassVar[tuple[Option, ...]] = (
        Option("src-type", invertible=True),
        Option("dst-type", invertible=True),
        Option("limit-iface-in", nargs=0),
        Option("limit-iface-out", nargs=0),
    )
    src_types: tuple[str, ...] = ()
    src_inv: bool = False
    dst_types: tuple[str, ...] = ()
    dst_inv: bool = False
    limit_in: bool = False
    limit_out: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> AddrtypeMatch:
        kw: dict = {}
        for item in given:
            if item.name == "src-type":
                kw.update(src_types=_parse_types(item.args[0]), src_inv=item.invert)
            elif item.name == "dst-type":
                kw.update(dst_types=_parse_types(item.args[0]), dst_inv=item.invert)
            elif item.name == "limit-iface-in":
                kw["limit_in"] = True
            else:
                kw["limit_out"] = True
        if kw.get("limit_in") and kw.get("limit_out"):
            raise ExtensionError("addrtype: --limit-iface-in and --limit-iface-out exclude "
                                 "each other")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(
            f"{inv(self.src_inv)}--src-type {','.join(self.src_types)}" if self.src_types else "",
            f"{inv(self.dst_inv)}--dst-type {','.join(self.dst_types)}" if self.dst_types else "",
            "--limit-iface-in" if self.limit_in else "",
            "--limit-iface-out" if self.limit_out else "",
        )

    def test(self, w) -> bool:
        p = w.p
        iface = p.in_iface if self.limit_in else p.out_iface if self.limit_out else None
        limited = self.limit_in or self.limit_out
        if self.src_types:
            kind = w.ctx.address_type(p.src, iface, limited)
            if (kind in self.src_types) == self.src_inv:
                return False
        if self.dst_types:
            kind = w.ctx.address_type(p.dst, iface, limited)
            if (kind in self.dst_types) == self.dst_inv:
                return False
        return True


def _iface_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


@register(MATCHES, "physdev")
@frozen
class PhysdevMatch(Match):
    name: ClassVar[str] = "physdev"
    options: ClassVar[tuple[Option, ...]] = (
        Option("physdev-in", invertible=True),
        Option("physdev-out", invertible=True),
        Option("physdev-is-in", nargs=0, invertible=True),
        Option("physdev-is-out", nargs=0, invertible=True),
        Option("physdev-is-bridged", nargs=0, invertible=True),
    )
    # each: None (not given) or (invert, value)
    physdev_in: tuple[bool, str] | None = None
    physdev_out: tuple[bool, str] | None = None
    is_in: bool | None = None  # the invert flag when given
    is_out: bool | None = None
    is_bridged: bool | None = None

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> PhysdevMatch:
        kw: dict = {}
        for item in given:
            key = item.name.removeprefix("physdev-").replace("-", "_")
            if item.name in ("physdev-in", "physdev-out"):
                kw["physdev_" + key] = (item.invert, item.args[0])
            else:
                kw[key] = item.invert
        return cls(**kw)

    def save(self, family: int) -> str:
        def flag(invert: bool | None, option: str) -> str:
            return "" if invert is None else f"{inv(invert)}--{option}"

        def dev(value: tuple[bool, str] | None, option: str) -> str:
            return "" if value is None else f"{inv(value[0])}--{option} {value[1]}"

        return words(flag(self.is_in, "physdev-is-in"), dev(self.physdev_in, "physdev-in"),
                     flag(self.is_out, "physdev-is-out"), dev(self.physdev_out, "physdev-out"),
                     flag(self.is_bridged, "physdev-is-bridged"))

    def test(self, w) -> bool:
        bridge = w.ctx.physdev
        if bridge is None:
            # xt_physdev: a packet that did not cross a bridge matches only negated criteria.
            return all(v is None or v for v in (self.is_in, self.is_out, self.is_bridged)) and all(
                v is None or v[0] for v in (self.physdev_in, self.physdev_out))
        port_in = bridge.in_port or ""
        port_out = bridge.out_port or ""
        checks = (
            (self.is_bridged, bool(port_out)),
            (self.is_in, bool(port_in)),
            (self.is_out, bool(port_out)),
        )
        for invert, present in checks:
            if invert is not None and present == invert:
                return False
        for value, port in ((self.physdev_in, port_in), (self.physdev_out, port_out)):
            if value is not None and _iface_matches(value[1], port) == value[0]:
                return False
        return True


@register(MATCHES, "socket")
@frozen
class SocketMatch(Match):
    name: ClassVar[str] = "socket"
    options: ClassVar[tuple[Option, ...]] = (
        Option("transparent", nargs=0),
        Option("nowildcard", nargs=0),
        Option("restore-skmark", nargs=0),
    )
    hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING", "INPUT"})
    transparent: bool = False
    nowildcard: bool = False
    restore_skmark: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> SocketMatch:
        names = {item.name for item in given}
        return cls("transparent" in names, "nowildcard" in names, "restore-skmark" in names)

    def save(self, family: int) -> str:
        return words("--transparent" if self.transparent else "",
                     "--nowildcard" if self.nowildcard else "",
                     "--restore-skmark" if self.restore_skmark else "")

    def test(self, w) -> bool:
        sockets = w.ctx.sockets
        if sockets is None:
            w.runtime_unsupported("-m socket: no socket table given in the context")
            return False
        p = w.p
        found = w.ctx.find_socket(p, wildcard=not self.nowildcard)
        if found is None or (self.transparent and not found.transparent):
            return False
        if self.restore_skmark:
            w.p.mark = found.mark
        return True


def _id_range(text: str) -> tuple[int, int]:
    lo_text, dash, hi_text = text.partition("-")
    if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
        raise ExtensionError(f"owner: {text!r} is not a numeric id (names are not resolved)")
    lo = int(lo_text)
    hi = int(hi_text) if dash else lo
    return lo, hi


@register(MATCHES, "owner")
@frozen
class OwnerMatch(Match):
    name: ClassVar[str] = "owner"
    options: ClassVar[tuple[Option, ...]] = (
        Option("uid-owner", invertible=True),
        Option("gid-owner", invertible=True),
        Option("socket-exists", nargs=0, invertible=True),
        Option("suppl-groups", nargs=0),
    )
    hooks: ClassVar[frozenset[str] | None] = frozenset({"OUTPUT", "POSTROUTING"})
    uid: tuple[int, int] | None = None
    uid_inv: bool = False
    gid: tuple[int, int] | None = None
    gid_inv: bool = False
    socket_exists: bool | None = None  # the invert flag when given
    suppl_groups: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> OwnerMatch:
        kw: dict = {}
        for item in given:
            if item.name == "uid-owner":
                kw.update(uid=_id_range(item.args[0]), uid_inv=item.invert)
            elif item.name == "gid-owner":
                kw.update(gid=_id_range(item.args[0]), gid_inv=item.invert)
            elif item.name == "socket-exists":
                kw["socket_exists"] = item.invert
            else:
                if "gid" not in kw:
                    raise ExtensionError("owner: --suppl-groups needs --gid-owner first")
                kw["suppl_groups"] = True
        if not kw:
            raise ExtensionError("owner match needs an option")
        return cls(**kw)

    def save(self, family: int) -> str:
        def ids(rng: tuple[int, int]) -> str:
            return str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"

        return words(
            "" if self.socket_exists is None else f"{inv(self.socket_exists)}--socket-exists",
            f"{inv(self.uid_inv)}--uid-owner {ids(self.uid)}" if self.uid else "",
            f"{inv(self.gid_inv)}--gid-owner {ids(self.gid)}" if self.gid else "",
            "--suppl-groups" if self.suppl_groups else "",
        )

    def test(self, w) -> bool:
        ctx = w.ctx
        if ctx.uid is None:
            # xt_owner: a packet without a local socket matches only if every criterion given
            # is negated ((match ^ invert) == 0).
            return all(
                invert for given, invert in ((self.uid, self.uid_inv), (self.gid, self.gid_inv),
                                             (self.socket_exists is not None,
                                              bool(self.socket_exists)))
                if given
            )
        if self.socket_exists:  # `! --socket-exists` with a socket
            return False
        if self.uid is not None and (self.uid[0] <= ctx.uid <= self.uid[1]) == self.uid_inv:
            return False
        if self.gid is not None:
            gids = (ctx.gid, *ctx.groups) if self.suppl_groups else (ctx.gid,)
            hit = any(g is not None and self.gid[0] <= g <= self.gid[1] for g in gids)
            if hit == self.gid_inv:
                return False
        return True


# limit: rates are kept as iptables keeps them (XT_LIMIT_SCALE units per packet)
_LIMIT_SCALE = 10000
_RATE_UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
_RATE_PRINT = (("day", _LIMIT_SCALE * 86400), ("hour", _LIMIT_SCALE * 3600),
               ("min", _LIMIT_SCALE * 60), ("sec", _LIMIT_SCALE))


def _parse_rate(text: str) -> int:
    count, slash, unit = text.partition("/")
    mult = 1
    if slash:
        for name, seconds in _RATE_UNITS:
            if unit and name.startswith(unit.lower()):
                mult = seconds
                break
        else:
            raise ExtensionError(f"bad rate {text!r}")
    if not count.isdigit() or int(count) == 0:
        raise ExtensionError(f"bad rate {text!r}")
    return _LIMIT_SCALE * mult // int(count)


def _print_rate(period: int) -> str:
    # libxt_limit print_rate: the largest unit in which the rate is still a whole number
    i = 1
    while i < len(_RATE_PRINT):
        mult = _RATE_PRINT[i][1]
        if period > mult or mult // period < mult % period:
            break
        i += 1
    name, mult = _RATE_PRINT[i - 1]
    return f"{mult // period}/{name}"


@register(MATCHES, "limit")
@frozen
class LimitMatch(Match):
    name: ClassVar[str] = "limit"
    options: ClassVar[tuple[Option, ...]] = (Option("limit"), Option("limit-burst"))
    period: int = _LIMIT_SCALE * 3600 // 3
    burst: int = 5

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> LimitMatch:
        kw: dict = {}
        for item in given:
            if item.name == "limit":
                kw["period"] = _parse_rate(item.args[0])
            else:
                kw["burst"] = parse_uint(item.args[0], 10000, "burst")
        return cls(**kw)

    def save(self, family: int) -> str:
        burst = f"--limit-burst {self.burst}" if self.burst != 5 else ""
        return words(f"--limit {_print_rate(self.period)}", burst)

    def test(self, w) -> bool:
        w.note(f"-m limit --limit {_print_rate(self.period)}: assumed under the rate (matches)")
        return True


@register(MATCHES, "nfacct")
@frozen
class NfacctMatch(Match):
    name: ClassVar[str] = "nfacct"
    options: ClassVar[tuple[Option, ...]] = (Option("nfacct-name"),)
    object: str = ""

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> NfacctMatch:
        item = one(given, "nfacct-name")
        if item is None:
            raise ExtensionError("nfacct match needs --nfacct-name")
        return cls(item.args[0])

    def save(self, family: int) -> str:
        # libxt_nfacct prints two spaces after the option (kube-proxy reference §12)
        return f"--nfacct-name  {self.object}"

    def test(self, w) -> bool:
        present = w.ctx.nfacct
        if present is not None and self.object not in present:
            # the kernel refuses to load a rule naming a missing counter
            w.runtime_unsupported(f"-m nfacct: counter {self.object!r} does not exist on the node")
            return False
        return True



@register(MATCHES, "rpfilter")
@frozen
class RpfilterMatch(Match):
    """xt_rpfilter: would the reply to this packet leave by the interface it came in on?

    Answered with the context's route function (no routes: reported, never matches).
    --loose accepts any route back; --accept-local accepts sources that are local addresses;
    --validmark (use the mark in the lookup) has no effect here, as routes ignore marks.
    """

    name: ClassVar[str] = "rpfilter"
    options: ClassVar[tuple[Option, ...]] = (
        Option("loose", nargs=0),
        Option("validmark", nargs=0),
        Option("accept-local", nargs=0),
        Option("invert", nargs=0),
    )
    hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING"})
    loose: bool = False
    validmark: bool = False
    accept_local: bool = False
    invert: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> RpfilterMatch:
        names = {item.name for item in given}
        return cls("loose" in names, "validmark" in names, "accept-local" in names,
                   "invert" in names)

    def save(self, family: int) -> str:
        return words("--loose" if self.loose else "", "--validmark" if self.validmark else "",
                     "--accept-local" if self.accept_local else "",
                     "--invert" if self.invert else "")

    def test(self, w) -> bool:
        from .packet import Packet

        route = w.ctx.route
        if route is None:
            w.runtime_unsupported("-m rpfilter: no routes given in the context")
            return False
        p = w.p
        if self.accept_local and w.ctx.is_local(p.src):
            passed = True
        else:
            back = route(Packet(src=p.dst, dst=p.src, protocol=p.proto))
            passed = back is not None and (self.loose or p.in_iface is None
                                           or back == p.in_iface)
        return passed != self.invert
