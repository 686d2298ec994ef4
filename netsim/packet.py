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


# ---------------------------------------------------------------- packets on the wire

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
DEFAULT_TTL = 64


@dataclass(frozen=True, slots=True)
class Outer:
    """An encapsulation header around the packet: IPIP (proto 4), VXLAN or Geneve over UDP.

    `src_mac`/`dst_mac` are the inner Ethernet header VXLAN and Geneve carry (VTEP MACs).
    """

    kind: str  # ipip | vxlan | geneve
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    vni: int | None = None
    src_mac: str | None = None
    dst_mac: str | None = None
    ttl: int = DEFAULT_TTL

    @property
    def protocol(self) -> str:
        return "4" if self.kind == "ipip" else "udp"


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The HTTP request a connection carries, for the hops that read L7 (proxies)."""

    method: str
    host: str
    path: str
    scheme: str = "http"
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.method} {self.scheme}://{self.host}{self.path}"


def parse_http(text: str, field: str = "--http") -> HttpRequest:
    """"GET http://host/path" (method optional, GET by default; scheme optional, http)."""
    from urllib.parse import urlsplit

    parts = text.split()
    if not parts or len(parts) > 2:
        raise InputError(f"expected e.g. 'GET http://shop.example/cart', got {text!r}",
                         obj="command line", field=field)
    method = parts[0].upper() if len(parts) == 2 else "GET"
    if method not in HTTP_METHODS:
        raise InputError(f"unknown HTTP method {parts[0]!r}", obj="command line", field=field)
    url = parts[-1] if "://" in parts[-1] else f"http://{parts[-1]}"
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise InputError(f"not an http(s) URL: {parts[-1]!r}", obj="command line",
                         field=field)
    host = split.hostname + (f":{split.port}" if split.port else "")
    path = split.path or "/"
    if split.query:
        path += f"?{split.query}"
    return HttpRequest(method, host, path, split.scheme)


@dataclass(frozen=True, slots=True)
class TracePacket:
    """The packet a trace carries: L3/L4 header fields, TCP flags, TTL and any outer header.

    Plain data so that hops can record it as it leaves them; `to_scapy` builds the real
    packet for pcap files and `from_scapy` reads one a user hands in.
    """

    src: str
    dst: str
    protocol: str = "tcp"
    sport: int = 0
    dport: int = 0
    tcp_flags: str = "S"
    ttl: int = DEFAULT_TTL
    icmp_type: int | None = None
    outer: Outer | None = None
    src_mac: str | None = None
    dst_mac: str | None = None
    http: HttpRequest | None = None  # the request this connection carries (L7 hops)

    @property
    def family(self) -> int:
        return 6 if ":" in self.src else 4

    @property
    def flow(self) -> Flow:
        return Flow(self.protocol, self.src, self.dst, self.sport, self.dport)

    def reply(self) -> TracePacket:
        """The answer a listening socket sends: ends swapped, SYN-ACK, echo reply."""
        flags = "SA" if self.tcp_flags == "S" else self.tcp_flags
        icmp = 0 if self.icmp_type == 8 else 129 if self.icmp_type == 128 else self.icmp_type
        return TracePacket(self.dst, self.src, self.protocol, self.dport, self.sport, flags,
                           DEFAULT_TTL, icmp, http=self.http)

    def text(self) -> str:
        flags = f" [{self.tcp_flags}]" if self.protocol == "tcp" else ""
        inner = f"{self.flow}{flags}"
        if self.outer is None:
            return inner
        o = self.outer
        head = f"{o.kind} {o.src} -> {o.dst}"
        if o.kind != "ipip":
            head += f" udp {o.sport}->{o.dport} vni {o.vni}"
        return f"{head} | {inner}"

    def to_scapy(self):
        """This packet as a Scapy packet: Ether/IP(v6)/L4, inside its outer headers."""
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
        from scapy.layers.l2 import Ether
        from scapy.layers.sctp import SCTP

        ip = (IP(src=self.src, dst=self.dst, ttl=self.ttl) if self.family == 4 else
              IPv6(src=self.src, dst=self.dst, hlim=self.ttl))
        if self.protocol == "tcp":
            l4 = TCP(sport=self.sport, dport=self.dport, flags=self.tcp_flags)
        elif self.protocol == "udp":
            l4 = UDP(sport=self.sport, dport=self.dport)
        elif self.protocol == "sctp":
            l4 = SCTP(sport=self.sport, dport=self.dport)
        elif self.family == 4:
            l4 = ICMP(type=self.icmp_type if self.icmp_type is not None else 8, id=self.sport)
        else:
            l4 = (ICMPv6EchoReply if self.icmp_type == 129 else ICMPv6EchoRequest)(id=self.sport)
        inner = ip / l4
        o = self.outer
        if o is None:
            return Ether(src=self.src_mac or "00:00:00:00:00:00",
                         dst=self.dst_mac or "00:00:00:00:00:00") / inner
        from scapy.layers.vxlan import VXLAN

        outer_ip = IP(src=o.src, dst=o.dst, ttl=o.ttl)
        eth = Ether(src=self.src_mac or "00:00:00:00:00:00",
                    dst=self.dst_mac or "00:00:00:00:00:00")
        if o.kind == "ipip":
            return eth / outer_ip / inner
        inner_eth = Ether(src=o.src_mac or "00:00:00:00:00:00",
                          dst=o.dst_mac or "00:00:00:00:00:00")
        if o.kind == "geneve":
            from scapy.contrib.geneve import GENEVE

            return eth / outer_ip / UDP(sport=o.sport, dport=o.dport) / GENEVE(
                vni=o.vni or 0, proto=0x6558) / inner_eth / inner
        return eth / outer_ip / UDP(sport=o.sport, dport=o.dport) / VXLAN(
            flags=0x08, vni=o.vni or 0) / inner_eth / inner


def from_scapy(pkt) -> TracePacket:
    """A user's Scapy packet (Ether optional; IP or IPv6; TCP, UDP, SCTP or ICMP) as a
    TracePacket. Raises ValueError for anything else."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.sctp import SCTP

    layers = [layer for layer in pkt.iterpayloads() if isinstance(layer, (IP, IPv6))]
    ip = layers[-1] if layers else None  # the innermost: an encapsulated packet's own
    if ip is None:
        raise ValueError("the packet has no IP or IPv6 layer")
    ttl = ip.ttl if ip.version == 4 else ip.hlim
    base = dict(src=ip.src, dst=ip.dst, ttl=ttl)
    tcp = ip.getlayer(TCP)
    if tcp is not None:
        return TracePacket(protocol="tcp", sport=tcp.sport, dport=tcp.dport,
                           tcp_flags=str(tcp.flags) or "S", **base)
    for layer, name in ((UDP, "udp"), (SCTP, "sctp")):
        found = ip.getlayer(layer)
        if found is not None:
            return TracePacket(protocol=name, sport=found.sport, dport=found.dport,
                               tcp_flags="", **base)
    icmp = ip.getlayer(ICMP)
    if icmp is not None:
        return TracePacket(protocol="icmp", sport=getattr(icmp, "id", 0) or 0,
                           icmp_type=icmp.type, tcp_flags="", **base)
    if ip.version == 6 and ip.nh == 58:
        layer = ip.payload
        return TracePacket(protocol="icmp", sport=getattr(layer, "id", 0) or 0,
                           icmp_type=layer.type, tcp_flags="", **base)
    raise ValueError("the packet carries no TCP, UDP, SCTP or ICMP")
