"""A Linux-like network namespace's L3 state: interfaces, routes, neighbours and FDB entries.

The state is plain frozen data that prints (and parses) exactly as iproute2 does, so a user can
diff what netsim computed against `ip route`, `ip neigh` and `bridge fdb` on a real node, and a
route lookup here is a lookup in those same lines. Formats follow iproute2's print_route
(ip/iproute.c), print_neigh (ip/ipneigh.c) and print_fdb (bridge/fdb.c).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# rtnetlink route types (rtnl_rtntype_n2a). `ip route` prints the type unless it is unicast.
ROUTE_TYPES = (
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
)
# Types whose match ends the packet's journey: the kernel drops it (blackhole silently,
# unreachable with ICMP host-unreachable, prohibit with ICMP admin-prohibited).
DROP_TYPES = frozenset({"blackhole", "unreachable", "prohibit"})
SCOPES = ("global", "universe", "site", "link", "host", "nowhere")
# Route flags in the order print_rt_flags prints them.
ROUTE_FLAGS = (
    "dead",
    "onlink",
    "pervasive",
    "offload",
    "trap",
    "notify",
    "linkdown",
    "unresolved",
    "rt_offload",
    "rt_trap",
    "rt_offload_failed",
)
# RTAX_* metrics that `ip route` prints after the flags, by their iproute2 names.
ROUTE_METRICS = frozenset(
    {
        "mtu",
        "window",
        "rtt",
        "rttvar",
        "ssthresh",
        "cwnd",
        "advmss",
        "reordering",
        "hoplimit",
        "initcwnd",
        "features",
        "rto_min",
        "initrwnd",
        "quickack",
        "congctl",
        "fastopen_no_cookie",
    }
)
# The kernel's default metric when a route is added without one: 0 for IPv4,
# IP6_RT_PRIO_USER (1024) for IPv6.
DEFAULT_METRIC = {4: 0, 6: 1024}
NEIGH_STATES = (
    "PERMANENT",
    "NOARP",
    "REACHABLE",
    "STALE",
    "DELAY",
    "PROBE",
    "FAILED",
    "INCOMPLETE",
    "NONE",
)


def _network(dst: str, family: int | None) -> IPNetwork:
    if dst == "default":
        return ipaddress.ip_network("::/0" if family == 6 else "0.0.0.0/0")
    return ipaddress.ip_network(dst, strict=False)


@dataclass(frozen=True, slots=True)
class Route:
    """One route as `ip route` lists it.

    ``dst`` is a CIDR, a bare address (a host route) or "default"; it is kept in canonical
    CIDR form ("10.244.1.65/32", "0.0.0.0/0"). "default" is IPv4 unless ``via`` or ``src`` is
    IPv6 (write "::/0" for an IPv6 default without either). ``proto`` is the name or number
    iproute2 prints ("bird", "80", "kernel"; None is "boot", which it does not print);
    ``scope`` None is universe. ``metrics`` are RTAX values such as ("mtu", "1450").
    """

    dst: str
    via: str | None = None
    dev: str | None = None
    proto: str | None = None
    scope: str | None = None
    src: str | None = None
    metric: int | None = None
    onlink: bool = False
    type: str = "unicast"
    table: str | None = None  # None: main
    flags: tuple[str, ...] = ()  # other route flags (linkdown, dead, ...)
    metrics: tuple[tuple[str, str], ...] = ()
    expires: str | None = None  # e.g. "298sec" (IPv6 RA routes)
    error: str | None = None  # e.g. "-101" (IPv6 reject routes)
    pref: str | None = None  # IPv6 router preference: low | medium | high
    network: IPNetwork = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in ROUTE_TYPES:
            raise ValueError(f"unknown route type {self.type!r}")
        hint = next((ipaddress.ip_address(a).version for a in (self.via, self.src) if a), None)
        net = _network(self.dst, hint)
        object.__setattr__(self, "network", net)
        object.__setattr__(self, "dst", str(net))

    @property
    def family(self) -> int:
        """4 or 6."""
        return self.network.version

    @property
    def drops(self) -> bool:
        """The kernel drops what matches this route (blackhole, unreachable, prohibit)."""
        return self.type in DROP_TYPES

    @property
    def effective_metric(self) -> int:
        return self.metric if self.metric is not None else DEFAULT_METRIC[self.family]


def _dst_text(net: IPNetwork) -> str:
    if net.prefixlen == 0:
        return "default"
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def format_route(route: Route) -> str:
    """The route as one `ip route` line, fields in print_route's order (without the trailing
    space iproute2 leaves)."""
    parts = [] if route.type == "unicast" else [route.type]
    parts.append(_dst_text(route.network))
    if route.via:
        parts += ["via", route.via]
    if route.dev:
        parts += ["dev", route.dev]
    if route.table and route.table != "main":
        parts += ["table", route.table]
    if route.proto:
        parts += ["proto", route.proto]
    if route.scope and route.scope not in ("global", "universe"):
        parts += ["scope", route.scope]
    if route.src:
        parts += ["src", route.src]
    if route.metric is not None:
        parts += ["metric", str(route.metric)]
    flags = set(route.flags) | ({"onlink"} if route.onlink else set())
    parts += [f for f in ROUTE_FLAGS if f in flags]
    parts += sorted(flags - set(ROUTE_FLAGS))
    if route.expires:
        parts += ["expires", route.expires]
    if route.error:
        parts += ["error", route.error]
    for name, value in route.metrics:
        parts += [name, value]
    if route.pref:
        parts += ["pref", route.pref]
    return " ".join(parts)


def parse_route(line: str, family: int | None = None) -> Route:
    """A Route from one `ip route` line (as printed, or as given to `ip route add`).

    ``family`` (4 or 6) says what "default" means when the line has no via or src, as in
    `ip -6 route` output. Raises ValueError naming the word it does not understand;
    multipath routes (`nexthop` lines) are not supported.
    """
    words = line.split()
    if words[:1] == ["Deleted"]:
        words = words[1:]
    if not words:
        raise ValueError("empty route line")
    kind = "unicast"
    if words[0] in ROUTE_TYPES:
        kind, words = words[0], words[1:]
    if not words:
        raise ValueError(f"no destination in {line.strip()!r}")
    dst, rest = words[0], words[1:]
    if dst == "to":
        if not rest:
            raise ValueError(f"no destination in {line.strip()!r}")
        dst, rest = rest[0], rest[1:]
    values: dict = {}
    flags: list[str] = []
    metrics: list[tuple[str, str]] = []
    single = {
        "via": "via",
        "dev": "dev",
        "table": "table",
        "proto": "proto",
        "protocol": "proto",
        "scope": "scope",
        "src": "src",
        "expires": "expires",
        "error": "error",
        "pref": "pref",
    }
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in single or word in ("metric", "priority", "preference") or word in ROUTE_METRICS:
            if i + 1 >= len(rest):
                raise ValueError(f"{word!r} needs a value in {line.strip()!r}")
            value = rest[i + 1]
            i += 2
            if word in ROUTE_METRICS:
                if value == "lock" and i < len(rest):
                    value, i = f"lock {rest[i]}", i + 1
                metrics.append((word, value))
            elif word in ("metric", "priority", "preference"):
                values["metric"] = _int(value, word, line)
            elif word == "via" and value in ("inet", "inet6"):
                raise ValueError(
                    f"'via {value}' (a gateway of another family) is not "
                    f"supported: {line.strip()!r}"
                )
            else:
                values[single[word]] = value
        elif word in ROUTE_FLAGS:
            flags.append(word)
            i += 1
        elif word == "nexthop":
            raise ValueError(f"multipath routes are not supported: {line.strip()!r}")
        else:
            raise ValueError(f"unexpected {word!r} in route {line.strip()!r}")
    if dst == "default" and family == 6 and not (values.get("via") or values.get("src")):
        dst = "::/0"
    values = {k: v for k, v in values.items() if k != "scope" or v not in ("global", "universe")}
    onlink = "onlink" in flags
    try:
        return Route(
            dst,
            type=kind,
            onlink=onlink,
            flags=tuple(f for f in flags if f != "onlink"),
            metrics=tuple(metrics),
            **values,
        )
    except ValueError as exc:
        raise ValueError(f"{exc} in route {line.strip()!r}") from None


def parse_routes(text: str, family: int | None = None) -> tuple[Route, ...]:
    """Every route in an `ip route` dump (blank lines and # comments skipped)."""
    return tuple(
        parse_route(line, family)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def _int(value: str, word: str, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{word} must be a number, got {value!r} in {line.strip()!r}") from None


def dump_order(routes: Iterable[Route]) -> list[Route]:
    """Routes in the order the kernel dumps them: IPv4 then IPv6.

    IPv4 walks the FIB trie by key, the longest prefix first for equal keys. IPv6 walks the
    fib6 radix tree children-first, so a prefix comes after the prefixes inside it and
    "default" comes last. Equal prefixes go by metric, then by the order given.
    """

    def key(r: Route) -> tuple:
        net = r.network
        if net.version == 4:
            return 4, int(net.network_address), -net.prefixlen, r.effective_metric
        return 6, int(net.broadcast_address), -net.prefixlen, r.effective_metric

    return sorted(routes, key=key)


# ---------------------------------------------------------------- lookup


class RoutingTable:
    """One routing table with longest-prefix-match lookup.

    Routes are indexed by (family, prefix length) and masked destination, so a lookup costs
    one dict probe per distinct prefix length present (a handful on a Kubernetes node,
    however many remote blocks it routes). Equal prefixes: lowest metric, then first given.
    """

    __slots__ = ("_index", "_lengths", "routes")

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        index: dict[tuple[int, int], dict[int, Route]] = {}
        for r in self.routes:
            net = r.network
            bucket = index.setdefault((net.version, net.prefixlen), {})
            key = int(net.network_address)
            best = bucket.get(key)
            if best is None or r.effective_metric < best.effective_metric:
                bucket[key] = r
        self._index = index
        self._lengths = {
            v: sorted((p for (fam, p) in index if fam == v), reverse=True) for v in (4, 6)
        }

    def lookup(self, dst: str | IPAddress) -> Route | None:
        """The route the kernel would pick in this table for ``dst``, or None.

        Blackhole, unreachable, prohibit and throw routes are returned like any other; the
        caller reads ``route.type`` (see :attr:`Route.drops`, :class:`Fib`).
        """
        addr = ipaddress.ip_address(dst) if isinstance(dst, str) else dst
        version, value = addr.version, int(addr)
        bits = 32 if version == 4 else 128
        index = self._index
        for plen in self._lengths[version]:
            shift = bits - plen
            route = index[version, plen].get(value >> shift << shift)
            if route is not None:
                return route
        return None

    def __len__(self) -> int:
        return len(self.routes)


class Fib:
    """The namespace's tables in `ip rule` order (local, then main, by default).

    A ``throw`` route ends the lookup in its table and moves on to the next, as the kernel's
    rule walk does.
    """

    __slots__ = ("tables",)

    def __init__(self, tables: Sequence[RoutingTable]) -> None:
        self.tables = tuple(tables)

    def lookup(self, dst: str | IPAddress) -> Route | None:
        addr = ipaddress.ip_address(dst) if isinstance(dst, str) else dst
        for table in self.tables:
            route = table.lookup(addr)
            if route is not None and route.type != "throw":
                return route
        return None


# ---------------------------------------------------------------- neighbours and FDB


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One `ip neigh` entry: an L3 address resolved to a link-layer address on a device."""

    ip: str
    dev: str
    lladdr: str | None = None
    state: str = "PERMANENT"
    router: bool = False


def format_neighbour(n: Neighbour) -> str:
    """The entry as `ip neigh` prints it (print_neigh order: dst, dev, lladdr, router, state)."""
    parts = [n.ip, "dev", n.dev]
    if n.lladdr:
        parts += ["lladdr", n.lladdr]
    if n.router:
        parts.append("router")
    parts.append(n.state)
    return " ".join(parts)


def parse_neighbour(line: str) -> Neighbour:
    """A Neighbour from one `ip neigh` line. Raises ValueError on words it does not know."""
    words = line.split()
    if len(words) < 2:
        raise ValueError(f"not an ip neigh line: {line.strip()!r}")
    ip, rest = words[0], words[1:]
    values: dict = {}
    states: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in ("dev", "lladdr") and i + 1 < len(rest):
            values[word] = rest[i + 1]
            i += 2
        elif word == "router":
            values["router"] = True
            i += 1
        elif word in NEIGH_STATES:
            states.append(word)
            i += 1
        else:
            raise ValueError(f"unexpected {word!r} in neighbour {line.strip()!r}")
    if "dev" not in values:
        raise ValueError(f"no dev in neighbour {line.strip()!r}")
    return Neighbour(ip=str(ipaddress.ip_address(ip)), state=" ".join(states) or "NONE", **values)


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """One `bridge fdb` entry: where frames to a MAC go. On a VXLAN device, ``dst`` is the
    remote VTEP's underlay address; ``is_self`` is the `self` flag (the device's own table)."""

    mac: str
    dev: str
    dst: str | None = None
    vlan: int | None = None
    port: int | None = None
    vni: int | None = None
    master: str | None = None
    is_self: bool = True
    state: str = "permanent"  # permanent | static | "" (learned)


def format_fdb(e: FdbEntry) -> str:
    """The entry as `bridge fdb show` prints it (print_fdb order)."""
    parts = [e.mac, "dev", e.dev]
    for name in ("vlan", "dst", "port", "vni"):
        value = getattr(e, name)
        if value is not None:
            parts += [name, str(value)]
    if e.is_self:
        parts.append("self")
    if e.master:
        parts += ["master", e.master]
    if e.state:
        parts.append(e.state)
    return " ".join(parts)


def parse_fdb(line: str, dev: str | None = None) -> FdbEntry:
    """An FdbEntry from one `bridge fdb` line; ``dev`` for `bridge fdb show dev X` output,
    which leaves the device out."""
    words = line.split()
    if not words:
        raise ValueError("empty fdb line")
    mac, rest = words[0], words[1:]
    values: dict = {"is_self": False, "state": ""}
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in ("dev", "dst", "master") and i + 1 < len(rest):
            values[word] = rest[i + 1]
            i += 2
        elif word in ("vlan", "port", "vni") and i + 1 < len(rest):
            values[word] = _int(rest[i + 1], word, line)
            i += 2
        elif word == "self":
            values["is_self"] = True
            i += 1
        elif word in ("permanent", "static", "stale"):
            values["state"] = word
            i += 1
        else:
            raise ValueError(f"unexpected {word!r} in fdb entry {line.strip()!r}")
    values.setdefault("dev", dev)
    if values["dev"] is None:
        raise ValueError(f"no dev in fdb entry {line.strip()!r}")
    return FdbEntry(mac=mac.lower(), **values)


# ---------------------------------------------------------------- interfaces and namespaces


@dataclass(frozen=True, slots=True)
class Interface:
    """One device in a namespace, as `ip -d addr` would describe it.

    ``addresses`` are CIDR-form; ``peer`` is (graph node id, interface name) of a veth's other
    end (the netsim.topology convention). Tunnel devices carry ``vni``, ``port`` and ``local``
    (the underlay address they encapsulate from) and ``link`` (their parent device).
    """

    name: str
    kind: str  # loopback | ethernet | veth | ipip | vxlan
    addresses: tuple[str, ...] = ()
    mac: str | None = None
    peer: tuple[str, str | None] | None = None
    mtu: int = 1500
    vni: int | None = None
    port: int | None = None
    local: str | None = None
    link: str | None = None
    proxy_arp: bool = False


@dataclass(frozen=True, slots=True)
class Namespace:
    """A network namespace's L3 state as plain data.

    ``name`` is the netsim.topology graph id ("host:<node>", "pod:<ns>/<name>"); ``routes``
    is the main table in dump order, ``local_routes`` the local table (the addresses the
    namespace owns), which the kernel consults first.
    """

    name: str
    node: str | None
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    local_routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def fib(self) -> Fib:
        """The lookup structure for this namespace: local table first, then main."""
        return Fib((RoutingTable(self.local_routes), RoutingTable(self.routes)))

    def neighbour(self, dev: str, ip: str) -> Neighbour | None:
        return next((n for n in self.neighbours if n.dev == dev and n.ip == ip), None)
