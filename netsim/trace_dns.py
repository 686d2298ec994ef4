"""A trace to a name: first the DNS lookup as the pod makes it (a UDP query to its nameserver,
walked through kube-proxy or Cilium and NetworkPolicy like any packet), then the connection
to the address the name resolved to.

When the query cannot get through (a default-deny egress without a DNS allow rule, say) the
lookup fails, the connection never starts, and the result names what dropped the query.
"""

from __future__ import annotations

from dataclasses import replace

from netsim.dataplane import Dataplane
from netsim.dns import resolve
from netsim.packet import TracePacket
from netsim.trace_types import DNS, DROPPED, REJECTED, Hop, Trace
from netsim.walk import walk

DNS_PORT = 53
DNS_SPORT = 53000  # the query's source port: fixed, so traces are reproducible


def lookup(dp: Dataplane, origin: str, source_ip: str, name: str, family: int = 4,
           *, seed: int = 0):
    """(addresses, the lookup as hops, a failed Trace or None) for `name` asked from
    `origin`. Hops are marked with direction DNS."""
    cluster = dp.cluster
    station = dp.station(origin)
    pod = station.pod if station.kind == "pod" else None
    qtype = "AAAA" if family == 6 else "A"
    res = resolve(cluster, name, qtype, from_pod=pod)
    tried = [f"{a.name} {a.qtype}: {a.status}" for a in res.attempts]
    head = Hop(station.node, station.owner if station.kind != "host" else f"node/{station.node}",
               None, "dns", f"resolve {name} ({qtype})",
               (f"nameserver {res.nameserver or 'the node resolver'}", *tried, *res.notes),
               TracePacket(source_ip, res.nameserver or source_ip, "udp", DNS_SPORT, DNS_PORT,
                           ""), DNS)
    hops = [head]
    if res.nameserver and not res.server.emulated:
        query = TracePacket(source_ip, res.nameserver, "udp", DNS_SPORT, DNS_PORT, "")
        t = walk(dp, query, origin, seed=seed)
        hops += [replace(h, direction=DNS) for h in t.hops]
        if t.result != "delivered":
            # the result's probability is the lookup's: every CoreDNS path that fails
            every = walk(dp, query, origin, mode="all")
            failing = sum(b.probability for b in every.branches or (every,)
                          if b.result != "delivered")
            fail = Trace(t.result, "dns-failed", f"the DNS query to {res.nameserver}:53/UDP "
                         f"never got an answer: {t.reason}: {t.detail}", None, failing,
                         tuple(hops), query)
            return (), tuple(hops), fail
    elif res.nameserver:
        hops.append(replace(head, action="query not traced", detail=(
            res.server.note or "the cluster has no DNS Service",)))
    if not res.addresses:
        answer = Hop(head.node, head.netns, None, "dns", f"{name}: {res.status}",
                     (f"rcode {res.rcode or '-'}",), head.packet, DNS)
        result = REJECTED if res.status in ("nxdomain", "nodata") else DROPPED
        why = ("the name does not exist" if res.status == "nxdomain" else
               "no record of that type" if res.status == "nodata" else
               "the name is outside the cluster: netsim does not know what upstream answers")
        fail = Trace(result, "dns-failed", f"{name}: {why}", None, 1.0,
                     (*hops, answer), head.packet)
        return (), (*hops, answer), fail
    answer = Hop(head.node, head.netns, None, "dns", f"{res.name} -> "
                 f"{', '.join(res.addresses)}", tuple(r.text() for r in res.records),
                 head.packet, DNS)
    return res.addresses, (*hops, answer), None


def with_lookup(trace: Trace, hops: tuple[Hop, ...]) -> Trace:
    """The connection's trace with the lookup's hops in front (and in each path's)."""
    branches = tuple(replace(b, hops=(*hops, *b.hops)) for b in trace.branches)
    return replace(trace, hops=(*hops, *trace.hops), branches=branches)
