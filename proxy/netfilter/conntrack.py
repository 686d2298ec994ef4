"""Connection tracking state handed from one trace to the next: conntrack, `recent` lists and
`statistic --mode nth` counters, as persistent (copy-on-write) tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .addr import family_of, int_to_ip

_MISSING = object()
_GONE = object()
_MAX_DEPTH = 16


class PersistentMap:
    """An immutable mapping; `updated(changes)` returns a new one sharing this one's data.

    Layers stack up to a small depth and are then flattened, so a table threaded through many
    traces costs O(changes) per trace most of the time. A change to None deletes the key.
    """

    __slots__ = ("_data", "_depth", "_parent")

    def __init__(self, data: dict | None = None, parent: PersistentMap | None = None,
                 depth: int = 0) -> None:
        self._data = data or {}
        self._parent = parent
        self._depth = depth

    def get(self, key, default=None):
        node = self
        while node is not None:
            value = node._data.get(key, _MISSING)
            if value is not _MISSING:
                return default if value is _GONE else value
            node = node._parent
        return default

    def __contains__(self, key) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def _flat(self) -> dict:
        layers = []
        node = self
        while node is not None:
            layers.append(node._data)
            node = node._parent
        merged: dict = {}
        for layer in reversed(layers):
            merged.update(layer)
        return {k: v for k, v in merged.items() if v is not _GONE}

    def items(self) -> Iterator[tuple]:
        return iter(self._flat().items())

    def __iter__(self) -> Iterator:
        return iter(self._flat())

    def __len__(self) -> int:
        return len(self._flat())

    def updated(self, changes: dict):
        """A new map with `changes` applied (values of None delete their keys)."""
        if not changes:
            return self
        delta = {k: (_GONE if v is None else v) for k, v in changes.items()}
        if self._depth >= _MAX_DEPTH:
            data = self._flat()
            for key, value in delta.items():
                if value is _GONE:
                    data.pop(key, None)
                else:
                    data[key] = value
            return type(self)(data)
        return type(self)(delta, self, self._depth + 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} entries)"


class FlowTuple(NamedTuple):
    """One direction of a connection: protocol number, source, source port, destination, port."""

    proto: int
    src: str
    sport: int
    dst: str
    dport: int

    def inverted(self) -> FlowTuple:
        return FlowTuple(self.proto, self.dst, self.dport, self.src, self.sport)

    def __str__(self) -> str:
        def ep(addr: str, port: int) -> str:
            return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

        return f"{_PROTO_NAMES.get(self.proto, self.proto)} {ep(self.src, self.sport)} -> " \
               f"{ep(self.dst, self.dport)}"


_PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    """A tracked connection: both tuples (the reply one NATed), status bits, connmark, zone.

    status holds the kernel's names: CONFIRMED, SEEN_REPLY, ASSURED, EXPECTED, SRC_NAT, DST_NAT.
    nat_done lists the NAT manips ("dst", "src") already set up, after which the nat table is
    no longer consulted for this connection and the recorded translation is applied instead.
    """

    orig: FlowTuple
    reply: FlowTuple
    status: frozenset[str] = frozenset()
    mark: int = 0
    zone: int = 0
    nat_done: frozenset[str] = frozenset()

    @property
    def dnat(self) -> bool:
        return "DST_NAT" in self.status

    @property
    def snat(self) -> bool:
        return "SRC_NAT" in self.status

    def __str__(self) -> str:
        flags = ",".join(sorted(self.status)) or "-"
        return f"{self.orig} | reply {self.reply} [{flags}] mark=0x{self.mark:x}"


class CtRef(NamedTuple):
    """A packet's attachment to a connection (the kernel's skb->_nfct): its key and direction."""

    zone: int
    orig: FlowTuple
    reply_direction: bool


class ConntrackTable(PersistentMap):
    """Connections keyed by (zone, tuple) for both directions' tuples."""

    __slots__ = ()

    def lookup(self, zone: int, flow: FlowTuple) -> tuple[ConntrackEntry, bool] | None:
        """The entry a tuple belongs to and whether it is the reply direction."""
        entry = self.get((zone, flow))
        if entry is None:
            return None
        return entry, flow != entry.orig

    def entries(self) -> list[ConntrackEntry]:
        """Each connection once, in no particular order."""
        found = {}
        for (zone, _), entry in self.items():
            found[(zone, entry.orig)] = entry
        return list(found.values())


class RecentTable(PersistentMap):
    """`-m recent` lists: (list name, family, address int) -> time stamps (seconds)."""

    __slots__ = ()

    def addresses(self, name: str) -> dict[str, tuple[float, ...]]:
        """The addresses in one list with their time stamps."""
        return {int_to_ip(addr, family): stamps for (list_name, family, addr), stamps
                in self.items() if list_name == name}

    def with_address(self, name: str, address: str, *stamps: float,
                     mask: str | None = None) -> RecentTable:
        """A table with one more entry (for setting up affinity state in tests and tools)."""
        from .addr import ip_to_int

        family = family_of(address)
        value = ip_to_int(address) & (ip_to_int(mask) if mask else (1 << (32 if family == 4
                                                                             else 128)) - 1)
        return self.updated({(name, family, value): tuple(stamps) or (0.0,)})


class NthCounters(PersistentMap):
    """`statistic --mode nth` counters: (table, chain, rule number) -> counter."""

    __slots__ = ()


EMPTY_CONNTRACK = ConntrackTable()
EMPTY_RECENT = RecentTable()
EMPTY_COUNTERS = NthCounters()
