"""The extension framework: how `-m` matches and `-j` targets declare, parse and print options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from .addr import Net, parse_net

UINT32 = 0xFFFFFFFF


class ExtensionError(ValueError):
    """A bad option value; the parser turns it into an InputError naming the line."""


class Unsupported(ExtensionError):
    """An option, match or target the interpreter does not model (named, never guessed)."""


@dataclass(frozen=True, slots=True)
class Option:
    """One `--name` an extension accepts: how many words follow and whether `!` may precede it."""

    name: str
    nargs: int = 1
    invertible: bool = False
    aliases: tuple[str, ...] = ()


class Given(NamedTuple):
    """One option as written in a rule: canonical name, `!` before it, its words."""

    name: str
    invert: bool
    args: tuple[str, ...]


class RuleFacts(NamedTuple):
    """What an extension may check while parsing: family, table and the rule's `-p`."""

    family: int
    table: str
    protocol: int | None  # None when the rule has no -p (or -p all)
    protocol_inverted: bool


class Extension:
    """Base of every match and target: a frozen dataclass built from the options it was given."""

    __slots__ = ()
    name: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    _lookup: ClassVar[dict[str, Option]] = {}
    _exact: ClassVar[dict[str, Option]] = {}
    # netfilter hooks the kernel lets this extension run in (None: all); checked on the chains
    # that reach the rule, as the kernel does when the table is loaded.
    hooks: ClassVar[frozenset[str] | None] = None
    tables: ClassVar[frozenset[str] | None] = None
    # parsed instances are shared between rules with the same options (not worth it for
    # targets whose options are almost always unique, such as DNAT's address)
    cacheable: ClassVar[bool] = True

    @classmethod
    def option(cls, word: str, exact: bool = False) -> Option | None:
        """The option `--word` names: exact, or an unambiguous prefix as getopt_long allows."""
        return (cls._exact if exact else cls._lookup).get(word)

    @classmethod
    def build(cls, given: list[Given], facts: RuleFacts) -> Extension:
        raise NotImplementedError

    def save(self, family: int) -> str:
        """The options as iptables-save prints them (without `-m NAME` / `-j NAME`)."""
        raise NotImplementedError


def _option_lookup(options: tuple[Option, ...]) -> dict[str, Option]:
    lookup: dict[str, Option] = {}
    names: dict[str, Option] = {}
    for opt in options:
        for spelled in (opt.name, *opt.aliases):
            names[spelled] = opt
    prefixes: dict[str, set[str]] = {}
    for spelled, opt in names.items():
        for end in range(1, len(spelled) + 1):
            prefixes.setdefault(spelled[:end], set()).add(opt.name)
    for prefix, owners in prefixes.items():
        if len(owners) == 1:
            lookup[prefix] = next(opt for opt in options if opt.name in owners)
    for spelled, opt in names.items():
        lookup[spelled] = opt
    return lookup


MATCHES: dict[str, type] = {}
TARGETS: dict[str, type] = {}


def register(kind: dict[str, type], *names: str) -> Callable[[type], type]:
    """Class decorator: file an extension under its `-m`/`-j` names and index its options."""

    def deco(cls: type) -> type:
        cls._lookup = _option_lookup(cls.options)
        cls._exact = {spelled: opt for opt in cls.options for spelled in (opt.name, *opt.aliases)}
        for name in names:
            kind[name] = cls
        return cls

    return deco


# --- value parsers shared by extensions ---------------------------------------------------------


def parse_uint(text: str, limit: int = UINT32, what: str = "value") -> int:
    """An unsigned number as strtoul(base 0) reads it: 0x.. hex, 0.. octal, else decimal."""
    try:
        if text.lower().startswith("0x"):
            value = int(text[2:], 16)
        elif len(text) > 1 and text.startswith("0"):
            value = int(text[1:], 8)
        else:
            value = int(text, 10)
    except ValueError:
        raise ExtensionError(f"invalid {what} {text!r}") from None
    if value < 0 or value > limit:
        raise ExtensionError(f"{what} {text!r} out of range")
    return value


def parse_markmask(text: str) -> tuple[int, int]:
    """`value[/mask]` (mask defaults to 0xffffffff)."""
    value, slash, mask = text.partition("/")
    return parse_uint(value, what="mark"), parse_uint(mask, what="mask") if slash else UINT32


def hexmark(value: int, mask: int | None = None) -> str:
    """A mark as iptables prints it: minimal hex, `/mask` only when the mask is not all ones."""
    if mask is None or mask == UINT32:
        return f"0x{value:x}"
    return f"0x{value:x}/0x{mask:x}"


# Well-known service names iptables resolves through /etc/services (Debian netbase), so that a
# rule written `--dport http` parses without reading files.
SERVICES = {
    "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "www": 80,
    "pop3": 110, "ntp": 123, "imap": 143, "snmp": 161, "bgp": 179, "ldap": 389, "https": 443,
    "syslog": 514, "submission": 587, "ldaps": 636, "imaps": 993, "pop3s": 995,
    "mysql": 3306, "postgresql": 5432, "http-alt": 8080,
}


def parse_port(text: str) -> int:
    if text in SERVICES:
        return SERVICES[text]
    if not text.isdigit():
        raise ExtensionError(f"invalid port/service {text!r} specified")
    value = int(text)
    if value > 65535:
        raise ExtensionError(f"port {text!r} out of range")
    return value


class PortRange(NamedTuple):
    lo: int
    hi: int

    def text(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}:{self.hi}"

    def full(self) -> bool:
        return self.lo == 0 and self.hi == 65535


def parse_port_range(text: str) -> PortRange:
    """`p`, `a:b`, `a:` (to 65535) or `:b` (from 0), as libxt_tcp accepts them."""
    if ":" not in text:
        port = parse_port(text)
        return PortRange(port, port)
    lo_text, _, hi_text = text.partition(":")
    lo = parse_port(lo_text) if lo_text else 0
    hi = parse_port(hi_text) if hi_text else 65535
    if lo > hi:
        raise ExtensionError(f"invalid port range {text!r}")
    return PortRange(lo, hi)


def parse_address(text: str, family: int, what: str = "address") -> Net:
    try:
        net = parse_net(text)
    except ValueError:
        raise ExtensionError(f"invalid {what} {text!r} (host names are not resolved)") from None
    if net.family != family:
        raise ExtensionError(f"{what} {text!r} is not IPv{family}")
    return net


def one(given: list[Given], name: str) -> Given | None:
    """The last occurrence of an option (most extensions reject repeats; last wins is harmless)."""
    found = None
    for item in given:
        if item.name == name:
            found = item
    return found


def inv(flag: bool) -> str:
    return "! " if flag else ""


def words(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def frozen(cls: type) -> type:
    return dataclass(frozen=True, slots=True)(cls)


def reject_unknown(given: list[Given], supported: set[str], ext: str) -> None:
    for item in given:
        if item.name not in supported:
            raise Unsupported(f"{ext} option --{item.name}")

