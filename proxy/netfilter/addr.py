"""IPv4/IPv6 addresses and prefixes as integers, parsed and printed the way iptables does."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from typing import NamedTuple

V4_ALL = (1 << 32) - 1
V6_ALL = (1 << 128) - 1


class Net(NamedTuple):
    """An address with a mask (`-s`, `-d`, `--ctorigdst`, ipset members): all ints."""

    family: int  # 4 or 6
    addr: int  # the address as given (iptables keeps host bits in some places)
    mask: int
    prefix: int | None  # None for a non-contiguous mask (`/255.0.255.0`)

    @property
    def network(self) -> int:
        return self.addr & self.mask

    def contains(self, value: int) -> bool:
        return (value & self.mask) == (self.addr & self.mask)

    def is_host(self) -> bool:
        return self.mask == (V4_ALL if self.family == 4 else V6_ALL)

    def text(self, *, masked: bool = True, host_suffix: bool = True) -> str:
        """`a.b.c.d/len` as iptables-save prints `-s`/`-d` (masked, hosts get /32 or /128).

        With masked=False the address keeps its host bits (conntrack `--ctorigdst 1.1.1.1/24`);
        with host_suffix=False a host prints bare (`--ctorigdst 1.1.1.1`).
        """
        addr = self.network if masked else self.addr
        text = int_to_ip(addr, self.family)
        if self.is_host() and not host_suffix:
            return text
        if self.prefix is None:
            return f"{text}/{int_to_ip(self.mask, self.family)}"
        return f"{text}/{self.prefix}"


def family_of(text: str) -> int:
    return 6 if ":" in text else 4


@lru_cache(maxsize=1 << 16)
def ip_to_int(text: str) -> int:
    """An IPv4 or IPv6 address as an int (ValueError if it is not one)."""
    if ":" not in text:
        parts = text.split(".")
        if len(parts) == 4:
            try:
                a, b, c, d = (int(p) for p in parts)
            except ValueError:
                pass
            else:
                if 0 <= a < 256 and 0 <= b < 256 and 0 <= c < 256 and 0 <= d < 256 and all(
                    p.isdigit() for p in parts
                ):
                    return (a << 24) | (b << 16) | (c << 8) | d
        raise ValueError(f"invalid IPv4 address {text!r}")
    return int(ipaddress.IPv6Address(text.split("%", 1)[0]))


@lru_cache(maxsize=1 << 16)
def int_to_ip(value: int, family: int) -> str:
    if family == 4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(ipaddress.IPv6Address(value))


@lru_cache(maxsize=1 << 16)
def canonical_ip(text: str) -> str:
    """The address printed canonically (`fd00:0::1` -> `fd00::1`); ValueError if invalid."""
    return int_to_ip(ip_to_int(text), family_of(text))


def prefix_mask(prefix: int, family: int) -> int:
    bits = 32 if family == 4 else 128
    return ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)


def mask_prefix(mask: int, family: int) -> int | None:
    """The prefix length of a contiguous mask, else None."""
    bits = 32 if family == 4 else 128
    inverted = ((1 << bits) - 1) ^ mask
    if inverted & (inverted + 1):
        return None
    return bits - inverted.bit_length()


@lru_cache(maxsize=1 << 16)
def parse_net(text: str) -> Net:
    """`a.b.c.d[/len|/mask]` or `v6[/len]`; ValueError if it is not an address."""
    addr_text, slash, mask_text = text.partition("/")
    family = family_of(addr_text)
    addr = ip_to_int(addr_text)
    bits = 32 if family == 4 else 128
    if not slash:
        return Net(family, addr, (1 << bits) - 1, bits)
    if mask_text.isdigit():
        prefix = int(mask_text)
        if prefix > bits:
            raise ValueError(f"invalid prefix length in {text!r}")
        return Net(family, addr, prefix_mask(prefix, family), prefix)
    mask = ip_to_int(mask_text)
    if family_of(mask_text) != family:
        raise ValueError(f"invalid mask in {text!r}")
    return Net(family, addr, mask, mask_prefix(mask, family))


_V4_MASKS = tuple(prefix_mask(p, 4) for p in range(33))


def fast_v4_net(text: str) -> Net | None:
    """parse_net for the common IPv4 forms (`a.b.c.d`, `a.b.c.d/len`), masked; None otherwise."""
    addr, slash, plen = text.partition("/")
    try:
        packed = socket.inet_pton(socket.AF_INET, addr)
    except OSError:
        return None
    if socket.inet_ntop(socket.AF_INET, packed) != addr:
        return None  # leading zeros and the like: the slow path decides
    value = int.from_bytes(packed, "big")
    if not slash:
        return Net(4, value, V4_ALL, 32)
    if not plen.isdigit() or int(plen) > 32:
        return None
    prefix = int(plen)
    mask = _V4_MASKS[prefix]
    return Net(4, value & mask, mask, prefix)


def is_canonical_v4(text: str) -> bool:
    """Whether text is an IPv4 address already written canonically (fast check)."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text
    except OSError:
        return False
