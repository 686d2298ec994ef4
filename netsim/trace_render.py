"""A Trace as people and programs read it: ovn-trace-like text, JSON, and pcap."""

from __future__ import annotations

from netsim.packet import TracePacket
from netsim.trace_types import DNS, REPLY, Hop, Trace

VERBOSITIES = ("detailed", "summary", "minimal")
# hops minimal output keeps even when they rewrite nothing: sockets and proxies
_ALWAYS = frozenset({"socket", "ingress-nginx", "envoy", "dns"})


def packet_json(p: TracePacket) -> dict:
    outer = None
    if p.outer is not None:
        o = p.outer
        outer = {"kind": o.kind, "src": o.src, "dst": o.dst, "sport": o.sport or None,
                 "dport": o.dport or None, "vni": o.vni}
    return {"src": p.src, "dst": p.dst, "proto": p.protocol.upper(), "sport": p.sport,
            "dport": p.dport, "outer": outer}


def hop_json(h: Hop) -> dict:
    return {"node": h.node, "netns": h.netns, "interface": h.interface,
            "component": h.component, "action": h.action, "detail": list(h.detail),
            "direction": h.direction, "changed": list(h.changed), "packet": packet_json(h.packet)}


def trace_json(t: Trace) -> dict:
    """The documented JSON form: result, delivered_to, probability, hops and branches."""
    out = _path_json(t)
    out["branches"] = [_path_json(b) for b in t.branches]
    return out


def _path_json(t: Trace) -> dict:
    return {"result": t.result, "reason": t.reason, "detail": t.detail,
            "delivered_to": t.delivered_to, "probability": round(t.probability, 12),
            "packet": packet_json(t.packet), "hops": [hop_json(h) for h in t.hops]}


def trace_text(t: Trace, verbosity: str = "summary", header: str = "") -> str:
    """One block per namespace the packet visits, its hops indented beneath; rewritten
    fields shown as old -> new."""
    lines = [header] if header else []
    lines.append(f"result: {_result(t)}")
    if t.branches:
        lines.append(f"paths: {len(t.branches)} (probabilities sum to "
                     f"{sum(b.probability for b in t.branches):.4f})")
        for i, b in enumerate(t.branches, 1):
            lines.append(f"  path {i}: p={b.probability:.4f} {_result(b, False)}")
        lines.append("")
        lines.append("path 1 (the most likely):" if t.branches else "")
    lines += _hops_text(t.hops, verbosity)
    if t.branches and verbosity != "minimal":
        for i, b in enumerate(t.branches[1:], 2):
            lines += ["", f"path {i}: p={b.probability:.4f} {_result(b, False)}"]
            lines += _hops_text(b.hops, verbosity)
    return "\n".join(lines).rstrip() + "\n"


def _result(t: Trace, probability: bool = True) -> str:
    p = f" (p={t.probability:.4f})" if probability else ""
    if t.result == "delivered":
        return f"delivered to {t.delivered_to}{p}"
    return f"{t.result} ({t.reason}): {t.detail}{p}"


def _hops_text(hops: tuple[Hop, ...], verbosity: str) -> list[str]:
    lines: list[str] = []
    where = None
    direction = None
    previous: TracePacket | None = None
    for h in hops:
        if verbosity == "minimal" and not h.changed and h.component not in _ALWAYS:
            previous = h.packet
            continue
        if h.direction == DNS and verbosity != "detailed" and h.component != "dns":
            continue  # the lookup's own packet walk: summarised unless asked for
        if h.direction != direction:
            direction = h.direction
            title = {REPLY: "reply", DNS: "dns lookup"}.get(direction, "request")
            lines += ["", title, "-" * (len(title) + 2)]
            where = None
        place = h.netns + (f" (node {h.node})" if h.node and not h.netns.startswith("node/")
                           else "")
        if place != where:
            where = place
            lines.append(place)
        iface = f" [{h.interface}]" if h.interface else ""
        lines.append(f"  {h.component}{iface}: {h.action}")
        if h.changed and previous is not None:
            lines.append(f"    * {_changes(previous, h.packet, h.changed)}")
        if verbosity == "detailed":
            lines += [f"      {d}" for d in h.detail]
        previous = h.packet
    return lines


def _changes(old: TracePacket, new: TracePacket, changed: tuple[str, ...]) -> str:
    parts = []
    for name in changed:
        if name == "outer":
            parts.append(f"outer header: {_outer(old)} -> {_outer(new)}")
        else:
            parts.append(f"{name} {getattr(old, name)} -> {getattr(new, name)}")
    return "; ".join(parts) + f"  => {new.text()}"


def _outer(p: TracePacket) -> str:
    if p.outer is None:
        return "none"
    return p.text().split(" | ")[0]


def write_pcap(t: Trace, path: str) -> int:
    """Every hop's packet, in order (the followed path and its reply), as a pcap file."""
    from scapy.utils import wrpcap

    packets = []
    for i, h in enumerate(t.hops):
        pkt = h.packet.to_scapy()
        pkt.time = 1_700_000_000 + i / 1000  # monotonic stamps, one millisecond apart
        packets.append(pkt)
    wrpcap(path, packets)
    return len(packets)
