"""netsim: a Kubernetes network dataplane emulator.

    import netsim
    from scapy.layers.inet import IP, TCP

    cluster = netsim.load(["examples/shop"])
    t = netsim.trace(cluster, IP(src="10.244.193.197", dst="10.102.174.48") / TCP(dport=6379),
                     from_="shop/cart-dbf884cbc-97wsf")
    t.result, t.delivered_to, [h.action for h in t.hops]
"""

from __future__ import annotations

__version__ = "0.1.0"

_DATAPLANES: dict = {}  # the last clusters' dataplanes, by (cluster identity, proxy mode)
_KEPT = 2


def load(paths, **kwargs):
    """The cluster in these manifests (see netsim.cluster.load)."""
    from netsim.cluster import load as _load

    return _load(list(paths), **kwargs)


def trace(cluster, packet, from_: str, *, proxy_mode: str | None = None,
          all_paths: bool = False, seed: int = 0):
    """Trace a packet (a Scapy packet or a netsim.packet.TracePacket) sent by `from_`
    ("NS/POD", "node/NAME" or "external") through the cluster's dataplane; returns a
    netsim.trace_types.Trace. The dataplane is built once per cluster and reused."""
    from netsim.dataplane import build
    from netsim.packet import TracePacket, from_scapy
    from netsim.trace_spec import resolve_source
    from netsim.walk import walk

    key = (id(cluster), proxy_mode)
    found = _DATAPLANES.get(key)
    if found is None or found[0] is not cluster:
        while len(_DATAPLANES) >= _KEPT:
            _DATAPLANES.pop(next(iter(_DATAPLANES)))
        found = _DATAPLANES[key] = (cluster, build(cluster, proxy_mode))
    dp = found[1]
    p = packet if isinstance(packet, TracePacket) else from_scapy(packet)
    source = resolve_source(dp, from_, 6 if ":" in p.src else 4)
    if source.address != p.src:
        raise ValueError(f"the packet's source {p.src} is not {from_}'s address "
                         f"{source.address}")
    return walk(dp, p, source.netns, mode="all" if all_paths else "sample", seed=seed)
