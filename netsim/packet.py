"""Flow specs as users type them ("tcp 10.0.0.5:40000 -> 10.96.0.10:80") and back."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netsim.errors import InputError

PROTOCOLS = ("tcp", "udp", "sctp", "icmp")
_ENDPOINT = re.compile(r"^\[(?P<v6>[0-9a-fA-F:.]+)\](?::(?P<p6>\d+))?$|"
                       r"^(?P<v4>[0-9.]+)(?::(?P<p4>\d+))?$|^(?P<bare6>[0-9a-fA-F:]+)$")


@dataclass(frozen=True, slots=True)
class Flow:
    """One direction of a connection: protocol, source and destination address and port."""

    protocol: str
    src: str
    dst: str
    sport: int = 0
    dport: int = 0

    def __str__(self) -> str:
        return f"{self.protocol} {_join(self.src, self.sport)} -> {_join(self.dst, self.dport)}"


def _join(ip: str, port: int) -> str:
    if not port:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def parse_flow(text: str, field: str = "--packet") -> Flow:
    """"tcp 10.0.0.5:40000 -> 10.96.0.10:80" (IPv6 in brackets; ports optional for icmp)."""
    def fail(why: str) -> InputError:
        return InputError(f"{why}; expected e.g. 'tcp 10.0.0.5:40000 -> 10.96.0.10:80', got "
                          f"{text!r}", obj="command line", field=field)

    parts = text.replace("->", " -> ").split()
    if len(parts) != 4 or parts[2] != "->":
        raise fail("not a flow")
    protocol = parts[0].lower()
    if protocol not in PROTOCOLS:
        raise fail(f"unknown protocol {parts[0]!r} (one of {', '.join(PROTOCOLS)})")
    (src, sport), (dst, dport) = (_endpoint(p, fail) for p in (parts[1], parts[3]))
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        raise fail("source and destination are of different families")
    if protocol != "icmp" and not dport:
        raise fail("the destination needs a port")
    return Flow(protocol, src, dst, sport, dport)


def _endpoint(text: str, fail) -> tuple[str, int]:
    m = _ENDPOINT.match(text)
    if not m:
        raise fail(f"bad address {text!r}")
    ip = m.group("v6") or m.group("v4") or m.group("bare6")
    port = m.group("p6") or m.group("p4")
    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        raise fail(f"bad address {text!r}") from None
    number = int(port) if port else 0
    if port and not 0 < number <= 65535:
        raise fail(f"port out of range in {text!r}")
    return ip, number
