"""NAT targets (DNAT, SNAT, MASQUERADE, REDIRECT) and TPROXY: the rewrites conntrack records."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from .addr import canonical_ip, family_of, is_canonical_v4
from .ext import (
    TARGETS,
    ExtensionError,
    Given,
    Option,
    RuleFacts,
    frozen,
    parse_markmask,
    parse_uint,
    register,
    words,
)
from .targets import DROP, Target


class NatRange(NamedTuple):
    """`[addr[-addr]][:port[-port]]` of DNAT/SNAT (IPv6 addresses in brackets when ports follow)."""

    family: int
    lo: str | None = None
    hi: str | None = None
    port_lo: int | None = None
    port_hi: int | None = None

    @classmethod
    def parse(cls, text: str, family: int) -> NatRange:
        if family == 4:
            addr, _, port = text.partition(":")
            if port.isdigit() and len(port) < 6 and int(port) < 65536 and is_canonical_v4(addr):
                value = int(port)
                return cls(4, addr, addr, value, value)
        addrs, ports = text, ""
        if text.startswith("["):
            close = text.find("]")
            if close < 0:
                raise ExtensionError(f"bad address range {text!r}")
            addrs, rest = text[1:close], text[close + 1:]
            if rest.startswith("-["):  # [a]-[b]:port
                close2 = rest.find("]")
                addrs += "-" + rest[2:close2]
                rest = rest[close2 + 1:]
            if rest and not rest.startswith(":"):
                raise ExtensionError(f"bad address range {text!r}")
            ports = rest[1:]
        elif family == 4 and ":" in text:
            addrs, _, ports = text.partition(":")
        lo = hi = None
        if addrs:
            lo_text, dash, hi_text = addrs.partition("-")
            try:
                lo = lo_text if is_canonical_v4(lo_text) else canonical_ip(lo_text)
                hi = (canonical_ip(hi_text) if dash else lo)
            except ValueError:
                raise ExtensionError(f"bad IP address in {text!r}") from None
            if family_of(lo) != family or family_of(hi) != family:
                raise ExtensionError(f"{text!r} is not IPv{family}")
        port_lo = port_hi = None
        if ports:
            lo_text, dash, hi_text = ports.partition("-")
            port_lo = parse_uint(lo_text, 65535, "port")
            port_hi = parse_uint(hi_text, 65535, "port") if dash else port_lo
            if port_hi < port_lo:
                raise ExtensionError(f"bad port range {text!r}")
        if lo is None and port_lo is None:
            raise ExtensionError(f"bad NAT range {text!r}")
        return cls(family, lo, hi, port_lo, port_hi)

    def text(self) -> str:
        addr = ""
        if self.lo is not None:
            addr = self.lo if self.hi == self.lo else f"{self.lo}-{self.hi}"
        if self.port_lo is None:
            return addr
        ports = str(self.port_lo) if self.port_hi == self.port_lo else (
            f"{self.port_lo}-{self.port_hi}")
        if self.family == 6 and addr:
            addr = f"[{addr}]"
        return f"{addr}:{ports}"

    def pick_port(self, current: int) -> int:
        """The port NAT gives: unchanged when already inside the range, else the first port."""
        if self.port_lo is None or self.port_lo <= current <= self.port_hi:
            return current
        return self.port_lo


def _ports_range(text: str) -> tuple[int, int]:
    lo_text, dash, hi_text = text.partition("-")
    lo = parse_uint(lo_text, 65535, "port")
    hi = parse_uint(hi_text, 65535, "port") if dash else lo
    if hi < lo:
        raise ExtensionError(f"bad port range {text!r}")
    return lo, hi


def _ports_text(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def _needs_ports_protocol(facts: RuleFacts, what: str) -> None:
    if facts.protocol not in (6, 17, 132, 33, 136) or facts.protocol_inverted:
        raise ExtensionError(f"{what}: ports need -p tcp, udp, sctp or dccp")


@register(TARGETS, "DNAT")
@frozen
class Dnat(Target):
    name: ClassVar[str] = "DNAT"
    options: ClassVar[tuple[Option, ...]] = (
        Option("to-destination"), Option("random", nargs=0), Option("persistent", nargs=0),
    )
    tables: ClassVar[frozenset[str] | None] = frozenset({"nat"})
    hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING", "OUTPUT"})
    cacheable: ClassVar[bool] = False
    to: NatRange | None = None
    random: bool = False
    persistent: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Dnat:
        if len(given) == 1 and given[0].name == "to-destination":
            to = NatRange.parse(given[0].args[0], facts.family)
            if to.port_lo is not None:
                _needs_ports_protocol(facts, "DNAT")
            return cls(to)
        kw: dict = {}
        for item in given:
            if item.name == "to-destination":
                if "to" in kw:
                    raise ExtensionError("DNAT: only one --to-destination is supported")
                kw["to"] = NatRange.parse(item.args[0], facts.family)
                if kw["to"].port_lo is not None:
                    _needs_ports_protocol(facts, "DNAT")
            else:
                kw[item.name] = True
        if "to" not in kw:
            raise ExtensionError("DNAT needs --to-destination")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(f"--to-destination {self.to.text()}", "--random" if self.random else "",
                     "--persistent" if self.persistent else "")

    def apply(self, w) -> str | None:
        return _nat_to_range(w, self.to, "dst")


def _nat_to_range(w, rng: NatRange, side: str) -> str | None:
    """DNAT (side "dst") or SNAT ("src") to a range: its first address, a port from it."""
    dst = side == "dst"
    addr = rng.lo if rng.lo is not None else (w.p.dst if dst else w.p.src)
    if rng.lo != rng.hi:
        w.note(f"{'DNAT' if dst else 'SNAT'} range {rng.text()}: the first address was taken "
               "(the kernel hashes)")
    return w.nat(side, addr, rng.pick_port(w.p.dport if dst else w.p.sport))


@register(TARGETS, "SNAT")
@frozen
class Snat(Target):
    name: ClassVar[str] = "SNAT"
    options: ClassVar[tuple[Option, ...]] = (
        Option("to-source"), Option("random", nargs=0), Option("random-fully", nargs=0),
        Option("persistent", nargs=0),
    )
    tables: ClassVar[frozenset[str] | None] = frozenset({"nat"})
    hooks: ClassVar[frozenset[str] | None] = frozenset({"POSTROUTING", "INPUT"})
    to: NatRange | None = None
    random: bool = False
    random_fully: bool = False
    persistent: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Snat:
        kw: dict = {}
        for item in given:
            if item.name == "to-source":
                if "to" in kw:
                    raise ExtensionError("SNAT: only one --to-source is supported")
                kw["to"] = NatRange.parse(item.args[0], facts.family)
                if kw["to"].port_lo is not None:
                    _needs_ports_protocol(facts, "SNAT")
            else:
                kw[item.name.replace("-", "_")] = True
        if "to" not in kw:
            raise ExtensionError("SNAT needs --to-source")
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(f"--to-source {self.to.text()}", "--random" if self.random else "",
                     "--random-fully" if self.random_fully else "",
                     "--persistent" if self.persistent else "")

    def apply(self, w) -> str | None:
        return _nat_to_range(w, self.to, "src")


@register(TARGETS, "MASQUERADE")
@frozen
class Masquerade(Target):
    name: ClassVar[str] = "MASQUERADE"
    options: ClassVar[tuple[Option, ...]] = (
        Option("to-ports"), Option("random", nargs=0), Option("random-fully", nargs=0),
    )
    tables: ClassVar[frozenset[str] | None] = frozenset({"nat"})
    hooks: ClassVar[frozenset[str] | None] = frozenset({"POSTROUTING"})
    ports: tuple[int, int] | None = None
    random: bool = False
    random_fully: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Masquerade:
        kw: dict = {}
        for item in given:
            if item.name == "to-ports":
                _needs_ports_protocol(facts, "MASQUERADE")
                kw["ports"] = _ports_range(item.args[0])
            else:
                kw[item.name.replace("-", "_")] = True
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(f"--to-ports {_ports_text(self.ports)}" if self.ports else "",
                     "--random" if self.random else "",
                     "--random-fully" if self.random_fully else "")

    def apply(self, w) -> str | None:
        iface = w.p.out_iface
        addr = w.ctx.primary_address(iface) if iface else None
        if addr is None:
            # nf_nat_masquerade: no address on the out interface -> the packet is dropped
            w.note(f"MASQUERADE: no address on out interface {iface!r}; dropped")
            return DROP
        port = w.p.sport
        if self.ports and not self.ports[0] <= port <= self.ports[1]:
            port = self.ports[0]
        if self.random or self.random_fully:
            w.note("MASQUERADE --random/--random-fully: source port kept (the kernel randomises)")
        return w.nat("src", addr, port)


@register(TARGETS, "REDIRECT")
@frozen
class Redirect(Target):
    name: ClassVar[str] = "REDIRECT"
    options: ClassVar[tuple[Option, ...]] = (Option("to-ports"), Option("random", nargs=0))
    tables: ClassVar[frozenset[str] | None] = frozenset({"nat"})
    hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING", "OUTPUT"})
    ports: tuple[int, int] | None = None
    random: bool = False

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Redirect:
        kw: dict = {}
        for item in given:
            if item.name == "to-ports":
                _needs_ports_protocol(facts, "REDIRECT")
                kw["ports"] = _ports_range(item.args[0])
            else:
                kw["random"] = True
        return cls(**kw)

    def save(self, family: int) -> str:
        return words(f"--to-ports {_ports_text(self.ports)}" if self.ports else "",
                     "--random" if self.random else "")

    def apply(self, w) -> str | None:
        p = w.p
        if w.hook == "OUTPUT":
            addr = "127.0.0.1" if p.family == 4 else "::1"
        else:
            # nf_nat_redirect: the primary address of the interface the packet came in on
            addr = w.ctx.primary_address(p.in_iface) if p.in_iface else None
            if addr is None:
                w.note(f"REDIRECT: no address on in interface {p.in_iface!r}; dropped")
                return DROP
        port = p.dport
        if self.ports:
            port = self.ports[0] if not self.ports[0] <= port <= self.ports[1] else port
            if self.ports[0] == self.ports[1]:
                port = self.ports[0]
        return w.nat("dst", addr, port)


@register(TARGETS, "TPROXY")
@frozen
class Tproxy(Target):
    name: ClassVar[str] = "TPROXY"
    options: ClassVar[tuple[Option, ...]] = (
        Option("on-port"), Option("on-ip"), Option("tproxy-mark"),
    )
    tables: ClassVar[frozenset[str] | None] = frozenset({"mangle"})
    hooks: ClassVar[frozenset[str] | None] = frozenset({"PREROUTING"})
    port: int = 0
    ip: str = "0.0.0.0"
    value: int = 0
    mask: int = 0

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Tproxy:
        if facts.protocol not in (6, 17) or facts.protocol_inverted:
            raise ExtensionError("TPROXY can be used only with -p tcp or -p udp")
        kw: dict = {"ip": "0.0.0.0" if facts.family == 4 else "::"}
        for item in given:
            if item.name == "on-port":
                kw["port"] = parse_uint(item.args[0], 65535, "--on-port")
            elif item.name == "on-ip":
                try:
                    kw["ip"] = canonical_ip(item.args[0])
                except ValueError:
                    raise ExtensionError(f"TPROXY: bad --on-ip {item.args[0]!r}") from None
            else:
                kw["value"], kw["mask"] = parse_markmask(item.args[0])
        if "port" not in kw:
            raise ExtensionError("TPROXY needs --on-port")
        return cls(**kw)

    def save(self, family: int) -> str:
        return (f"--on-port {self.port} --on-ip {self.ip} "
                f"--tproxy-mark 0x{self.value:x}/0x{self.mask:x}")

    def apply(self, w) -> str | None:
        return w.tproxy(self)
