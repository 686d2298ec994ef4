"""The parsed ruleset as frozen data: tables, chains, rules, and their iptables-save text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from .addr import Net
from .index import ChainIndex

# Built-in chains per table, in the order iptables-save prints them (= hook order).
TABLE_CHAINS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
})
HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

# Protocol names as iptables-save prints them (getprotobynumber with Debian's /etc/protocols).
PROTOCOL_NAMES: Mapping[int, str] = MappingProxyType({
    1: "icmp", 2: "igmp", 4: "ipencap", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp",
    51: "ah", 58: "ipv6-icmp", 89: "ospf", 94: "ipip", 103: "pim", 112: "vrrp", 132: "sctp",
    136: "udplite",
})
PROTOCOL_NUMBERS: Mapping[str, int] = MappingProxyType(
    {name: number for number, name in PROTOCOL_NAMES.items()}
    | {"all": 0, "icmpv6": 58, "icmp6": 58, "ipv4": 4, "dccp": 33, "mh": 135, "ipv6-mh": 135}
)
# The match iptables loads by itself for `-p X --opt` (and names in `-m X`).
PROTOCOL_MATCH = MappingProxyType({6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmp6"})


class Rule(NamedTuple):
    """One rule of a chain (an immutable tuple: a big ruleset has hundreds of thousands).

    `text` is the rule as iptables-save prints it; `original` the line as written. An opaque
    rule (`unsupported` set; only with strict=False) never matches and is reported in traces;
    its text is the original line.
    """

    table: str
    chain: str
    line: int
    original: str
    family: int = 4
    src: Net | None = None  # address already masked, as the kernel keeps it
    src_inv: bool = False
    dst: Net | None = None
    dst_inv: bool = False
    in_iface: str | None = None
    in_inv: bool = False
    out_iface: str | None = None
    out_inv: bool = False
    protocol: int | None = None  # None: any protocol
    proto_inv: bool = False
    fragment: bool | None = None  # True: -f, False: ! -f
    matches: tuple = ()
    target: object | None = None  # a targets.Target, or None for jumps and target-less rules
    jump: str | None = None  # user chain jumped (or gone) to
    goto: bool = False
    counters: tuple[int, int] | None = None
    unsupported: str | None = None

    @property
    def text(self) -> str:
        """`-A CHAIN ...` in iptables-save's canonical form (the original line if opaque)."""
        if self.unsupported is not None:
            return self.original
        return f"-A {self.chain}{self.spec()}"

    def spec(self) -> str:
        parts: list[str] = []
        add = parts.append
        if self.src is not None:
            add(f"{'! ' if self.src_inv else ''}-s {self.src.text()}")
        if self.dst is not None:
            add(f"{'! ' if self.dst_inv else ''}-d {self.dst.text()}")
        if self.in_iface is not None:
            add(f"{'! ' if self.in_inv else ''}-i {self.in_iface}")
        if self.out_iface is not None:
            add(f"{'! ' if self.out_inv else ''}-o {self.out_iface}")
        if self.protocol is not None:
            name = PROTOCOL_NAMES.get(self.protocol, str(self.protocol))
            add(f"{'! ' if self.proto_inv else ''}-p {name}")
        if self.fragment is not None:
            add("-f" if self.fragment else "! -f")
        for match in self.matches:
            options = match.save(self.family)
            add(f"-m {match.name} {options}" if options else f"-m {match.name}")
        if self.jump is not None:
            add(f"{'-g' if self.goto else '-j'} {self.jump}")
        elif self.target is not None:
            options = self.target.save(self.family)
            add(f"-j {self.target.name} {options}" if options else f"-j {self.target.name}")
        return "".join(" " + part for part in parts)


class Chain(NamedTuple):
    """A chain: built-ins carry a policy (ACCEPT/DROP), user chains None."""

    name: str
    rules: tuple[Rule, ...] = ()
    policy: str | None = None
    counters: tuple[int, int] = (0, 0)
    index: ChainIndex | None = None  # built for long chains: rules bucketed by destination

    @property
    def builtin(self) -> bool:
        return self.policy is not None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: Mapping[str, Chain]
    # for each chain, the built-in chains (hooks) whose traversal can reach it
    reached_from: Mapping[str, frozenset[str]]

    def chain(self, name: str) -> Chain:
        return self.chains[name]

    def save_order(self) -> list[Chain]:
        """Built-ins in hook order, then user chains sorted by name (as iptables-save lists)."""
        builtins = [self.chains[n] for n in TABLE_CHAINS[self.name]]
        users = sorted((c for c in self.chains.values() if not c.builtin), key=lambda c: c.name)
        return builtins + users


@dataclass(frozen=True, slots=True)
class OpaqueRule:
    """A rule kept without being understood (strict=False), and why."""

    table: str
    chain: str
    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Every table of one iptables-save/-restore text, for one address family."""

    family: int
    source: str
    tables: Mapping[str, Table]
    unsupported: tuple[OpaqueRule, ...] = ()

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def rule(self, table: str, chain: str, number: int) -> Rule:
        """A rule by its 1-based number in its chain, as `iptables -L --line-numbers` counts."""
        return self.tables[table].chains[chain].rules[number - 1]

    def dump(self, *, counters: bool = False) -> str:
        """The ruleset re-printed as iptables-save prints it (without the `#` header lines)."""
        out: list[str] = []
        for table in self.tables.values():
            out.append(f"*{table.name}")
            order = table.save_order()
            for chain in order:
                packets, octets = chain.counters if counters else (0, 0)
                out.append(f":{chain.name} {chain.policy or '-'} [{packets}:{octets}]")
            for chain in order:
                for rule in chain.rules:
                    prefix = ""
                    if counters:
                        packets, octets = rule.counters or (0, 0)
                        prefix = f"[{packets}:{octets}] "
                    out.append(prefix + rule.text)
            out.append("COMMIT")
        return "\n".join(out) + "\n"
