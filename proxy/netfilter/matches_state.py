"""Stateful `-m` matches: conntrack, state, connmark, statistic, recent and ipvs."""

from __future__ import annotations

from typing import ClassVar

from .addr import Net, int_to_ip, ip_to_int
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
    parse_address,
    parse_port_range,
    parse_uint,
    register,
    words,
)
from .matches import Match, mark_option

# conntrack states in the order iptables-save prints them (libxt_conntrack print_state)
CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
CT_STATUSES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "icmpv6": 58, "ipv6-icmp": 58,
                 "udplite": 136, "esp": 50, "ah": 51, "gre": 47, "all": 0}


def _parse_list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    given = set()
    for name in text.split(","):
        upper = name.upper()
        if upper not in allowed:
            raise ExtensionError(f"bad {what} {name!r}")
        given.add(upper)
    return tuple(s for s in allowed if s in given)


def _state_words(w) -> set[str]:
    """The state words a conntrack match sees for the packet (SNAT/DNAT from the entry)."""
    found = {w.ct_state}
    entry = w.ct
    if entry is not None:
        if "SRC_NAT" in entry.status:
            found.add("SNAT")
        if "DST_NAT" in entry.status:
            found.add("DNAT")
    return found


@register(MATCHES, "conntrack")
@frozen
class ConntrackMatch(Match):
    name: ClassVar[str] = "conntrack"
    options: ClassVar[tuple[Option, ...]] = (
        Option("ctstate", invertible=True),
        Option("ctproto", invertible=True),
        Option("ctorigsrc", invertible=True),
        Option("ctorigdst", invertible=True),
        Option("ctreplsrc", invertible=True),
        Option("ctrepldst", invertible=True),
        Option("ctorigsrcport", invertible=True),
        Option("ctorigdstport", invertible=True),
        Option("ctreplsrcport", invertible=True),
        Option("ctrepldstport", invertible=True),
        Option("ctstatus", invertible=True),
        Option("ctexpire", invertible=True),
        Option("ctdir"),
    )
    state: tuple[str, ...] | None = None
    state_inv: bool = False
    proto: int | None = None
    proto_inv: bool = False
    # address criteria: option name -> (invert, Net), kept in iptables-save order
    addrs: tuple[tuple[str, bool, Net], ...] = ()
    ports: tuple[tuple[str, bool, PortRange], ...] = ()
    status: tuple[str, ...] | None = None
    status_inv: bool = False
    direction: str | None = None

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> ConntrackMatch:
        kw: dict = {}
        addrs: dict[str, tuple[bool, Net]] = {}
        ports: dict[str, tuple[bool, PortRange]] = {}
        for item in given:
            arg = item.args[0]
            if item.name == "ctstate":
                kw.update(state=_parse_list(arg, CT_STATES, "ctstate"), state_inv=item.invert)
            elif item.name == "ctproto":
                number = PROTO_NUMBERS.get(arg.lower())
                number = parse_uint(arg, 255, "protocol") if number is None else number
                if number == 0:
                    raise ExtensionError("conntrack: --ctproto 0 is not allowed")
                kw.update(proto=number, proto_inv=item.invert)
            elif item.name in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
                addrs[item.name] = (item.invert, parse_address(arg, facts.family, item.name))
            elif item.name.endswith("port"):
                ports[item.name] = (item.invert, parse_port_range(arg))
            elif item.name == "ctstatus":
                statuses = () if arg.upper() == "NONE" else _parse_list(arg, CT_STATUSES,
                                                                        "ctstatus")
                kw.update(status=statuses, status_inv=item.invert)
            elif item.name == "ctexpire":
                raise Unsupported("conntrack option --ctexpire (timeouts are not modelled)")
            else:
                if arg.upper() not in ("ORIGINAL", "REPLY"):
                    raise ExtensionError(f"conntrack: bad --ctdir {arg!r}")
                kw["direction"] = arg.upper()
        if not kw and not addrs and not ports:
            raise ExtensionError("conntrack match needs an option")
        order = ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst")
        kw["addrs"] = tuple((n, *addrs[n]) for n in order if n in addrs)
        order = ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport")
        kw["ports"] = tuple((n, *ports[n]) for n in order if n in ports)
        return cls(**kw)

    def save(self, family: int) -> str:
        parts = []
        if self.state is not None:
            parts.append(f"{inv(self.state_inv)}--ctstate {','.join(self.state)}")
        if self.proto is not None:
            parts.append(f"{inv(self.proto_inv)}--ctproto {self.proto}")
        for option, invert, net in self.addrs:
            parts.append(f"{inv(invert)}--{option} {net.text(masked=False, host_suffix=False)}")
        for option, invert, rng in self.ports:
            parts.append(f"{inv(invert)}--{option} {rng.text()}")
        if self.status is not None:
            parts.append(f"{inv(self.status_inv)}--ctstatus {','.join(self.status) or 'NONE'}")
        if self.direction is not None:
            parts.append(f"--ctdir {self.direction}")
        return words(*parts)

    def test(self, w) -> bool:
        if self.state is not None:
            hit = bool(_state_words(w).intersection(self.state))
            if hit == self.state_inv:
                return False
        entry = w.ct
        if entry is None:
            # xt_conntrack: without a connection only a state criterion can match
            return self.state is not None
        orig, reply = entry.orig, entry.reply
        if self.proto is not None and (orig.proto == self.proto) == self.proto_inv:
            return False
        for option, invert, net in self.addrs:
            tup = orig if "orig" in option else reply
            addr = tup.src if option.endswith("src") else tup.dst
            if net.contains(ip_to_int(addr)) == invert:
                return False
        for option, invert, rng in self.ports:
            tup = orig if "orig" in option else reply
            port = tup.sport if "src" in option else tup.dport
            if (rng.lo <= port <= rng.hi) == invert:
                return False
        if self.status is not None:
            hit = bool(entry.status.intersection(self.status))
            if hit == self.status_inv:
                return False
        return self.direction is None or w.ct_reply == (self.direction == "REPLY")


STATE_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED")


@register(MATCHES, "state")
@frozen
class StateMatch(Match):
    name: ClassVar[str] = "state"
    options: ClassVar[tuple[Option, ...]] = (Option("state", invertible=True),)
    states: tuple[str, ...] = ()
    invert: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> StateMatch:
        item = one(given, "state")
        if item is None:
            raise ExtensionError("state match needs --state")
        return cls(_parse_list(item.args[0], STATE_STATES, "state"), item.invert)

    def save(self, family: int) -> str:
        return f"{inv(self.invert)}--state {','.join(self.states)}"

    def test(self, w) -> bool:
        return (w.ct_state in self.states) != self.invert


@register(MATCHES, "connmark")
@frozen
class ConnmarkMatch(Match):
    name: ClassVar[str] = "connmark"
    options: ClassVar[tuple[Option, ...]] = (Option("mark", invertible=True),)
    value: int = 0
    mask: int = 0xFFFFFFFF
    invert: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> ConnmarkMatch:
        return cls(*mark_option(given, "connmark"))

    def save(self, family: int) -> str:
        return f"{inv(self.invert)}--mark {hexmark(self.value, self.mask)}"

    def test(self, w) -> bool:
        if w.ct is None:
            return False
        return ((w.ct.mark & self.mask) == self.value) != self.invert


RANDOM_SCALE = 1 << 31  # xt_statistic compares 31 random bits with round(p * 2^31)


@register(MATCHES, "statistic")
@frozen
class StatisticMatch(Match):
    """`--mode random` forks the trace; `--mode nth` counts packets per rule."""

    name: ClassVar[str] = "statistic"
    options: ClassVar[tuple[Option, ...]] = (
        Option("mode"),
        Option("probability", invertible=True),
        Option("every", invertible=True),
        Option("packet"),
    )
    mode: str = "random"
    stored: int = 0  # random: probability as the kernel stores it (round(p * 2^31))
    every: int = 0  # nth: n
    packet: int = 0
    invert: bool = False

    @property
    def forks(self) -> bool:  # type: ignore[override]
        return self.mode == "random"

    def probability(self) -> float:
        """The chance this match holds, as the kernel computes it (stored / 2^31)."""
        p = self.stored / RANDOM_SCALE
        return 1.0 - p if self.invert else p

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> StatisticMatch:
        mode = one(given, "mode")
        if mode is None or mode.args[0] not in ("random", "nth"):
            raise ExtensionError("statistic needs --mode random or --mode nth")
        if mode.args[0] == "random":
            item = one(given, "probability")
            if item is None:
                raise ExtensionError("statistic: --mode random needs --probability")
            try:
                value = float(item.args[0])
            except ValueError:
                raise ExtensionError(f"bad --probability {item.args[0]!r}") from None
            if not 0.0 <= value <= 1.0:
                raise ExtensionError("--probability must be between 0 and 1")
            # libxt_statistic: lround(0x80000000 * p)
            stored = int(RANDOM_SCALE * value + 0.5)
            return cls("random", stored=stored, invert=item.invert)
        every = one(given, "every")
        packet = one(given, "packet")
        if every is None or packet is None:
            raise ExtensionError('statistic: option "--every" also requires "--packet"')
        n = parse_uint(every.args[0], what="--every")
        k = parse_uint(packet.args[0], what="--packet")
        if n == 0 or k > n - 1:
            raise ExtensionError("statistic: --packet must be below --every")
        return cls("nth", every=n, packet=k, invert=every.invert)

    def save(self, family: int) -> str:
        if self.mode == "random":
            return (f"--mode random {inv(self.invert)}--probability "
                    f"{self.stored / RANDOM_SCALE:.11f}")
        return f"--mode nth {inv(self.invert)}--every {self.every} --packet {self.packet}"

    def test(self, w) -> bool:
        # nth (xt_statistic): a per-rule counter cycling 0 .. every-1, matching when it wraps
        # to 0; libxt_statistic starts it at (every-1) - packet, so the (packet+1)-th packet
        # matches first (verified against the kernel: every 3 packet 1 takes packets 2, 5, ...)
        last = self.every - 1
        count = w.nth_counter(last - self.packet)
        count = 0 if count == last else count + 1
        w.set_nth_counter(count)
        return (count == 0) != self.invert


RECENT_MODES = ("set", "rcheck", "update", "remove")
RECENT_MAX_STAMPS = 255  # ip_pkt_list_tot default


@register(MATCHES, "recent")
@frozen
class RecentMatch(Match):
    name: ClassVar[str] = "recent"
    options: ClassVar[tuple[Option, ...]] = (
        Option("set", nargs=0, invertible=True),
        Option("rcheck", nargs=0, invertible=True),
        Option("update", nargs=0, invertible=True),
        Option("remove", nargs=0, invertible=True),
        Option("seconds"),
        Option("reap", nargs=0),
        Option("hitcount"),
        Option("rttl", nargs=0),
        Option("name"),
        Option("rsource", nargs=0),
        Option("rdest", nargs=0),
        Option("mask"),
    )
    mode: str = "set"
    invert: bool = False
    table: str = "DEFAULT"
    seconds: int = 0
    reap: bool = False
    hitcount: int = 0
    rdest: bool = False
    mask: int = 0xFFFFFFFF
    family: int = 4

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> RecentMatch:
        bits = 32 if facts.family == 4 else 128
        kw: dict = {"family": facts.family, "mask": (1 << bits) - 1}
        modes = [item for item in given if item.name in RECENT_MODES]
        if len(modes) != 1:
            raise ExtensionError("recent needs exactly one of --set, --rcheck, --update, --remove")
        kw.update(mode=modes[0].name, invert=modes[0].invert)
        for item in given:
            if item.name == "seconds":
                kw["seconds"] = parse_uint(item.args[0], what="--seconds")
            elif item.name == "reap":
                kw["reap"] = True
            elif item.name == "hitcount":
                kw["hitcount"] = parse_uint(item.args[0], RECENT_MAX_STAMPS, "--hitcount")
            elif item.name == "rttl":
                raise Unsupported("recent option --rttl (TTL is not modelled)")
            elif item.name == "name":
                kw["table"] = item.args[0]
            elif item.name == "rdest":
                kw["rdest"] = True
            elif item.name == "rsource":
                kw["rdest"] = False
            elif item.name == "mask":
                kw["mask"] = parse_address(item.args[0], facts.family, "--mask").addr
        if kw.get("reap") and not kw.get("seconds"):
            raise ExtensionError("recent: --reap needs --seconds")
        if kw["mode"] in ("set", "remove") and (kw.get("seconds") or kw.get("hitcount")):
            raise ExtensionError("recent: --seconds and --hitcount need --rcheck or --update")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(
            f"{inv(self.invert)}--{self.mode}",
            f"--seconds {self.seconds}" if self.seconds else "",
            "--reap" if self.reap else "",
            f"--hitcount {self.hitcount}" if self.hitcount else "",
            f"--name {self.table}",
            f"--mask {int_to_ip(self.mask, self.family)}",
            "--rdest" if self.rdest else "--rsource",
        )

    def key(self, w) -> tuple:
        p = w.p
        addr = (p.dst_i if self.rdest else p.src_i) & self.mask
        return (self.table, self.family, addr)

    def test(self, w) -> bool:
        # xt_recent recent_mt, with time in seconds from the context clock
        now = w.ctx.now
        key = self.key(w)
        stamps = w.recent_get(key)
        hit = self.invert
        if stamps is None:
            if self.mode == "set":
                w.recent_set(key, (now,))
                return not hit
            return hit
        if self.mode == "set":
            hit = not hit
        elif self.mode == "remove":
            w.recent_set(key, None)
            return not hit
        elif self.seconds or self.hitcount:
            since = now - self.seconds
            count = 0
            for stamp in stamps:
                if self.seconds and stamp < since:
                    continue
                count += 1
                if not self.hitcount or count >= self.hitcount:
                    hit = not hit
                    break
            if self.reap and stamps[-1] < since:
                # recent_entry_reap: the entry goes once its latest stamp is too old
                w.recent_set(key, None)
                return hit
        else:
            hit = not hit
        if self.mode == "set" or (self.mode == "update" and hit):
            w.recent_set(key, (*stamps, now)[-RECENT_MAX_STAMPS:])
        return hit


IPVS_METHODS = ("GATE", "IPIP", "MASQ")


@register(MATCHES, "ipvs")
@frozen
class IpvsMatch(Match):
    """Matches packets of connections IPVS handles, against a caller-supplied IPVS table."""

    name: ClassVar[str] = "ipvs"
    options: ClassVar[tuple[Option, ...]] = (
        Option("ipvs", nargs=0, invertible=True),
        Option("vproto", invertible=True),
        Option("vaddr", invertible=True),
        Option("vport", invertible=True),
        Option("vdir"),
        Option("vmethod", invertible=True),
        Option("vportctl", invertible=True),
    )
    ipvs_inv: bool = False
    vproto: tuple[bool, int] | None = None
    vaddr: tuple[bool, Net] | None = None
    vport: tuple[bool, int] | None = None
    vdir: str | None = None
    vmethod: tuple[bool, str] | None = None

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> IpvsMatch:
        kw: dict = {}
        for item in given:
            if item.name == "ipvs":
                kw["ipvs_inv"] = item.invert
            elif item.name == "vproto":
                arg = item.args[0].lower()
                number = PROTO_NUMBERS.get(arg)
                kw["vproto"] = (item.invert, parse_uint(arg, 255, "--vproto")
                                if number is None else number)
            elif item.name == "vaddr":
                kw["vaddr"] = (item.invert, parse_address(item.args[0], facts.family, "--vaddr"))
            elif item.name == "vport":
                kw["vport"] = (item.invert, parse_port_range(item.args[0]).lo)
            elif item.name == "vdir":
                if item.args[0].upper() not in ("ORIGINAL", "REPLY"):
                    raise ExtensionError(f"ipvs: bad --vdir {item.args[0]!r}")
                kw["vdir"] = item.args[0].upper()
            elif item.name == "vmethod":
                if item.args[0].upper() not in IPVS_METHODS:
                    raise ExtensionError(f"ipvs: bad --vmethod {item.args[0]!r}")
                kw["vmethod"] = (item.invert, item.args[0].upper())
            else:
                raise Unsupported("ipvs option --vportctl")
        if kw.get("ipvs_inv") and len(kw) > 1:
            raise ExtensionError("! --ipvs cannot be together with other options")
        return cls(**kw)

    def save(self, family: int) -> str:
        only_flag = not (self.vproto or self.vaddr or self.vport or self.vdir or self.vmethod)
        parts = [f"{inv(self.ipvs_inv)}--ipvs" if only_flag else ""]
        if self.vproto:
            parts.append(f"{inv(self.vproto[0])}--vproto {self.vproto[1]}")
        if self.vaddr:
            parts.append(f"{inv(self.vaddr[0])}--vaddr {self.vaddr[1].text(masked=False)}")
        if self.vport:
            parts.append(f"{inv(self.vport[0])}--vport {self.vport[1]}")
        if self.vdir:
            parts.append(f"--vdir {self.vdir}")
        if self.vmethod:
            parts.append(f"{inv(self.vmethod[0])}--vmethod {self.vmethod[1]}")
        return words(*parts)

    def test(self, w) -> bool:
        table = w.ctx.ipvs
        if table is None:
            w.runtime_unsupported("-m ipvs: no IPVS table given in the context")
            return False
        service = w.ipvs_service()
        if not (self.vproto or self.vaddr or self.vport or self.vdir or self.vmethod):
            return (service is not None) != self.ipvs_inv
        if service is None:
            return False
        if self.vproto and (service.proto == self.vproto[1]) == self.vproto[0]:
            return False
        if self.vaddr and self.vaddr[1].contains(ip_to_int(service.address)) == self.vaddr[0]:
            return False
        if self.vport and (service.port == self.vport[1]) == self.vport[0]:
            return False
        if self.vdir and (self.vdir == "REPLY") != w.ct_reply:
            return False
        return not (self.vmethod and (service.method == self.vmethod[1]) == self.vmethod[0])

