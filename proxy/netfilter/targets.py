"""`-j` targets other than NAT: verdicts, REJECT, MARK, CONNMARK, CT/NOTRACK, LOG/NFLOG and
TRACE, printed as iptables-save prints them (the NAT family and TPROXY are in nat.py)."""

from __future__ import annotations

from typing import ClassVar

from . import ext
from .ext import (
    TARGETS,
    UINT32,
    ExtensionError,
    Given,
    Option,
    RuleFacts,
    Unsupported,
    frozen,
    one,
    parse_markmask,
    parse_uint,
    register,
    words,
)
from .lexer import save_string

ACCEPT, DROP, REJECT = "ACCEPT", "DROP", "REJECT"


class Target(ext.Extension):
    """A `-j` target. `apply(walk)` returns None (go on with the next rule) or a verdict."""

    __slots__ = ()

    def apply(self, w) -> str | None:
        raise NotImplementedError

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Target:
        if given:
            raise ExtensionError(f"{cls.name} takes no options")
        return cls()

    def save(self, family: int) -> str:
        return ""


@frozen
class Standard(Target):
    """ACCEPT, DROP and RETURN (the engine acts on `verdict`)."""

    verdict: str = ACCEPT

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.verdict

    def apply(self, w) -> str | None:
        return self.verdict


STANDARD = {name: Standard(name) for name in (ACCEPT, DROP, "RETURN")}

REJECT_V4 = {
    "icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
    "icmp-proto-unreachable": "icmp-proto-unreachable",
    "proto-unreach": "icmp-proto-unreachable",
    "icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
    "icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
    "icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
    "icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}
REJECT_V6 = {
    "icmp6-no-route": "icmp6-no-route", "no-route": "icmp6-no-route",
    "icmp6-adm-prohibited": "icmp6-adm-prohibited", "adm-prohibited": "icmp6-adm-prohibited",
    "icmp6-addr-unreachable": "icmp6-addr-unreachable", "addr-unreach": "icmp6-addr-unreachable",
    "icmp6-port-unreachable": "icmp6-port-unreachable", "port-unreach": "icmp6-port-unreachable",
    "icmp6-policy-fail": "icmp6-policy-fail", "policy-fail": "icmp6-policy-fail",
    "icmp6-reject-route": "icmp6-reject-route", "reject-route": "icmp6-reject-route",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}


@register(TARGETS, "REJECT")
@frozen
class Reject(Target):
    name: ClassVar[str] = "REJECT"
    options: ClassVar[tuple[Option, ...]] = (Option("reject-with"),)
    hooks: ClassVar[frozenset[str] | None] = frozenset({"INPUT", "FORWARD", "OUTPUT"})
    with_: str = "icmp-port-unreachable"

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Reject:
        names = REJECT_V4 if facts.family == 4 else REJECT_V6
        item = one(given, "reject-with")
        if item is None:
            return cls(names["port-unreach"])
        if item.args[0] not in names:
            raise ExtensionError(f"REJECT: unknown --reject-with {item.args[0]!r}")
        kind = names[item.args[0]]
        if kind == "tcp-reset" and (facts.protocol != 6 or facts.protocol_inverted):
            raise ExtensionError("REJECT: tcp-reset is only valid with -p tcp")
        return cls(kind)

    def save(self, family: int) -> str:
        return f"--reject-with {self.with_}"

    def apply(self, w) -> str | None:
        w.reject_with = self.with_
        return REJECT


@register(TARGETS, "MARK")
@frozen
class Mark(Target):
    """nfmark = (nfmark & ~mask) ^ value; every spelling is kept as --set-xmark (xt_MARK rev 2)."""

    name: ClassVar[str] = "MARK"
    options: ClassVar[tuple[Option, ...]] = (
        Option("set-xmark"), Option("set-mark"), Option("and-mark"), Option("or-mark"),
        Option("xor-mark"),
    )
    value: int = 0
    mask: int = UINT32

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Mark:
        if len(given) != 1:
            raise ExtensionError("MARK needs exactly one of --set-xmark, --{set,and,or,xor}-mark")
        return cls(*_xmark(given[0]))

    def save(self, family: int) -> str:
        return f"--set-xmark 0x{self.value:x}/0x{self.mask:x}"

    def apply(self, w) -> str | None:
        w.p.mark = (w.p.mark & ~self.mask & UINT32) ^ self.value
        return None


def _xmark(item: Given) -> tuple[int, int]:
    """(value, mask) of a MARK/CONNMARK spelling, as libxt_MARK mark_tg_parse computes it."""
    arg = item.args[0]
    if item.name == "set-xmark":
        return parse_markmask(arg)
    if item.name == "set-mark":
        value, mask = parse_markmask(arg)
        return value, mask | value
    bits = parse_uint(arg, what="mark")
    if item.name == "and-mark":
        return 0, ~bits & UINT32
    if item.name == "or-mark":
        return bits, bits
    return bits, 0  # xor-mark


@register(TARGETS, "CONNMARK")
@frozen
class Connmark(Target):
    name: ClassVar[str] = "CONNMARK"
    options: ClassVar[tuple[Option, ...]] = (
        Option("set-xmark"), Option("set-mark"), Option("and-mark"), Option("or-mark"),
        Option("xor-mark"), Option("save-mark", nargs=0), Option("restore-mark", nargs=0),
        Option("nfmask"), Option("ctmask"), Option("mask"),
        Option("left-shift-mark"), Option("right-shift-mark"),
    )
    mode: str = "set"  # set | save | restore
    value: int = 0
    mask: int = UINT32  # set: ctmark mask
    nfmask: int = UINT32
    ctmask: int = UINT32

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Connmark:
        kw: dict = {}
        for item in given:
            if item.name in ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"):
                value, mask = _xmark(item)
                kw.update(mode="set", value=value, mask=mask)
            elif item.name in ("save-mark", "restore-mark"):
                kw["mode"] = item.name.removesuffix("-mark")
            elif item.name in ("nfmask", "ctmask"):
                kw[item.name] = parse_uint(item.args[0], what=item.name)
            elif item.name == "mask":
                kw["nfmask"] = kw["ctmask"] = parse_uint(item.args[0], what="mask")
            else:
                raise Unsupported(f"CONNMARK option --{item.name}")
        if "mode" not in kw:
            raise ExtensionError("CONNMARK needs --set-xmark, --save-mark or --restore-mark")
        return cls(**kw)

    def save(self, family: int) -> str:
        if self.mode == "set":
            return f"--set-xmark 0x{self.value:x}/0x{self.mask:x}"
        return f"--{self.mode}-mark --nfmask 0x{self.nfmask:x} --ctmask 0x{self.ctmask:x}"

    def apply(self, w) -> str | None:
        entry = w.ct
        if entry is None:
            return None
        if self.mode == "set":
            w.set_ct_mark((entry.mark & ~self.mask & UINT32) ^ self.value)
        elif self.mode == "save":
            w.set_ct_mark((entry.mark & ~self.ctmask & UINT32) ^ (w.p.mark & self.nfmask))
        else:
            w.p.mark = (w.p.mark & ~self.nfmask & UINT32) ^ (entry.mark & self.ctmask)
        return None


LOG_LEVELS = {"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3,
              "warning": 4, "warn": 4, "notice": 5, "info": 6, "debug": 7}
LOG_FLAGS = ("log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid",
             "log-macdecode")


@register(TARGETS, "LOG")
@frozen
class Log(Target):
    name: ClassVar[str] = "LOG"
    options: ClassVar[tuple[Option, ...]] = (
        Option("log-level"), Option("log-prefix"),
        *(Option(flag, nargs=0) for flag in LOG_FLAGS),
    )
    prefix: str | None = None
    level: int = 4
    flags: tuple[str, ...] = ()

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Log:
        kw: dict = {}
        flags = set()
        for item in given:
            if item.name == "log-level":
                arg = item.args[0].lower()
                kw["level"] = LOG_LEVELS[arg] if arg in LOG_LEVELS else parse_uint(arg, 7, "level")
            elif item.name == "log-prefix":
                if len(item.args[0]) > 29:
                    raise ExtensionError("LOG: --log-prefix is limited to 29 characters")
                kw["prefix"] = item.args[0]
            else:
                flags.add(item.name)
        kw["flags"] = tuple(f for f in LOG_FLAGS if f in flags)
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(
            f"--log-prefix {save_string(self.prefix)}" if self.prefix is not None else "",
            f"--log-level {self.level}" if self.level != 4 else "",
            *(f"--{flag}" for flag in self.flags),
        )

    def apply(self, w) -> str | None:
        w.note(f"LOG {self.prefix or ''}".rstrip())
        return None


@register(TARGETS, "NFLOG")
@frozen
class Nflog(Target):
    name: ClassVar[str] = "NFLOG"
    options: ClassVar[tuple[Option, ...]] = (
        Option("nflog-group"), Option("nflog-prefix"), Option("nflog-range"),
        Option("nflog-size"), Option("nflog-threshold"),
    )
    group: int = 0
    prefix: str | None = None
    size: int | None = None
    threshold: int = 0

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Nflog:
        kw: dict = {}
        for item in given:
            if item.name == "nflog-group":
                kw["group"] = parse_uint(item.args[0], 65535, "--nflog-group")
            elif item.name == "nflog-prefix":
                kw["prefix"] = item.args[0]
            elif item.name in ("nflog-size", "nflog-range"):
                kw["size"] = parse_uint(item.args[0], what=item.name)
            else:
                kw["threshold"] = parse_uint(item.args[0], what="--nflog-threshold")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(
            f"--nflog-prefix {save_string(self.prefix)}" if self.prefix is not None else "",
            f"--nflog-group {self.group}" if self.group else "",
            f"--nflog-size {self.size}" if self.size is not None else "",
            f"--nflog-threshold {self.threshold}" if self.threshold else "",
        )

    def apply(self, w) -> str | None:
        w.note(f"NFLOG group {self.group} {self.prefix or ''}".rstrip())
        return None


CT_EVENTS = ("new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark",
             "natseqinfo", "secmark")


@register(TARGETS, "CT")
@frozen
class Ct(Target):
    name: ClassVar[str] = "CT"
    options: ClassVar[tuple[Option, ...]] = (
        Option("notrack", nargs=0), Option("helper"), Option("timeout"), Option("ctevents"),
        Option("expevents"), Option("zone"), Option("zone-orig"), Option("zone-reply"),
    )
    tables: ClassVar[frozenset[str] | None] = frozenset({"raw"})
    notrack: bool = False
    helper: str | None = None
    timeout: str | None = None
    ctevents: tuple[str, ...] = ()
    expevents: tuple[str, ...] = ()
    zone: int | None = None
    zone_dir: str = ""  # "", "orig" or "reply"

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Ct:
        kw: dict = {}
        for item in given:
            if item.name == "notrack":
                kw["notrack"] = True
            elif item.name in ("helper", "timeout"):
                kw[item.name] = item.args[0]
            elif item.name in ("ctevents", "expevents"):
                names = item.args[0].split(",")
                if any(n not in CT_EVENTS for n in names):
                    raise ExtensionError(f"CT: bad --{item.name} {item.args[0]!r}")
                kw[item.name] = tuple(e for e in CT_EVENTS if e in names)
            else:
                kw["zone"] = parse_uint(item.args[0], 65535, "zone")
                kw["zone_dir"] = item.name.removeprefix("zone").removeprefix("-")
        if kw.get("notrack") and len(kw) > 1:
            raise ExtensionError("CT: --notrack excludes the other options")
        return cls(**kw)

    def save(self, family: int) -> str:
        if self.notrack:
            return "--notrack"
        zone = ""
        if self.zone is not None:
            zone = f"--zone{'-' + self.zone_dir if self.zone_dir else ''} {self.zone}"
        return words(
            f"--helper {save_string(self.helper)}" if self.helper else "",
            f"--timeout {save_string(self.timeout)}" if self.timeout else "",
            f"--ctevents {','.join(self.ctevents)}" if self.ctevents else "",
            f"--expevents {','.join(self.expevents)}" if self.expevents else "",
            zone,
        )

    def apply(self, w) -> str | None:
        if self.notrack:
            w.untrack()
            return None
        if self.zone is not None:
            w.set_zone(self.zone, self.zone_dir)
        if self.helper or self.timeout:
            w.note("CT --helper/--timeout: no effect modelled")
        return None


@register(TARGETS, "NOTRACK")
@frozen
class Notrack(Target):
    name: ClassVar[str] = "NOTRACK"
    tables: ClassVar[frozenset[str] | None] = frozenset({"raw"})

    def apply(self, w) -> str | None:
        w.untrack()
        return None


@register(TARGETS, "TRACE")
@frozen
class Trace(Target):
    name: ClassVar[str] = "TRACE"

    def apply(self, w) -> str | None:
        return None

