"""Chain indexes: long chains bucket their rules by exact destination, protocol and port.

A rule with a non-negated host `-d` (/32 or /128) can only match packets to that address, so a
packet need only look at the rules of its own bucket(s) merged, in rule order, with the rules
that carry no such address (the "rest"). This is what keeps a 10,000-service KUBE-SERVICES
chain from being scanned linearly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from heapq import merge
from types import MappingProxyType

INDEX_MIN_RULES = 16
_PORT_MATCHES = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True)
class ChainIndex:
    by_dst_proto_port: Mapping[tuple[int, int, int], tuple[int, ...]]
    by_dst_proto: Mapping[tuple[int, int], tuple[int, ...]]
    by_dst: Mapping[int, tuple[int, ...]]
    rest: tuple[int, ...]

    def candidates(self, dst: int, proto: int, dport: int) -> tuple[int, ...]:
        """Positions of the rules that may match a packet, in rule order."""
        found = [
            bucket for bucket in (
                self.by_dst_proto_port.get((dst, proto, dport)) if self.by_dst_proto_port else None,
                self.by_dst_proto.get((dst, proto)) if self.by_dst_proto else None,
                self.by_dst.get(dst) if self.by_dst else None,
                self.rest,
            ) if bucket
        ]
        if not found:
            return ()
        if len(found) == 1:
            return found[0]
        return tuple(merge(*found))


def _index_key(rule) -> tuple | None:
    if rule.unsupported is not None or rule.dst is None or rule.dst_inv or not rule.dst.is_host():
        return None
    dst = rule.dst.addr
    if rule.protocol is None or rule.proto_inv:
        return (dst,)
    for match in rule.matches:
        if match.name in _PORT_MATCHES and match.dport is not None and not match.dport_inv \
                and match.dport.lo == match.dport.hi:
            return (dst, rule.protocol, match.dport.lo)
    return (dst, rule.protocol)


def build_index(rules) -> ChainIndex | None:
    """An index for a long chain, or None when the chain is short or nothing can be indexed."""
    if len(rules) < INDEX_MIN_RULES:
        return None
    buckets: list[dict] = [{}, {}, {}]
    rest: list[int] = []
    for position, rule in enumerate(rules):
        key = _index_key(rule)
        if key is None:
            rest.append(position)
        elif len(key) == 3:
            buckets[0].setdefault(key, []).append(position)
        elif len(key) == 2:
            buckets[1].setdefault(key, []).append(position)
        else:
            buckets[2].setdefault(key[0], []).append(position)
    if len(rest) == len(rules):
        return None
    return ChainIndex(
        *(MappingProxyType({k: tuple(v) for k, v in b.items()}) for b in buckets),
        tuple(rest),
    )
