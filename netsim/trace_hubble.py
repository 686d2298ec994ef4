"""A Cilium trace as `hubble observe` prints it: one compact line per flow event.

Format (hubble/pkg/printer compact): `<time> [<node>]: <src> (<identity>) <-> <dst>
(<identity>) <type> <VERDICT> (<summary>)`; `->` for requests, `<-` for replies with source
and destination swapped back; reserved identities by name, others as ID:n. Times are
synthetic (one millisecond apart from a fixed start) since netsim has no clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from netsim.trace_types import REPLY, Trace

START = datetime(2026, 1, 1, 12, 0, 0)
RESERVED = {1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node",
            7: "kube-apiserver", 8: "ingress", 9: "world-ipv4", 10: "world-ipv6"}
_TCP_FLAGS = {"S": "SYN", "A": "ACK", "F": "FIN", "R": "RST", "P": "PSH", "U": "URG"}
_TYPES = {"to-endpoint", "to-overlay", "to-stack", "from-network", "to-network", "drop",
          "policy-verdict", "sock", "to-proxy", "http-request"}


def _identity(ident) -> str:
    if ident is None:
        return ""
    return f" ({RESERVED[ident]})" if ident in RESERVED else f" (ID:{ident})"


def _summary(p) -> str:
    if p.protocol == "tcp":
        flags = ", ".join(_TCP_FLAGS[f] for f in p.tcp_flags if f in _TCP_FLAGS)
        return f"TCP Flags: {flags}"
    if p.protocol == "icmp":
        return f"ICMPv4 {'EchoRequest' if p.icmp_type == 8 else 'EchoReply'}"
    return p.protocol.upper()


def hubble_lines(dp, t: Trace) -> list[str]:
    """The flow events of a trace's Cilium hops, in order."""
    names = _names(dp)
    lines = []
    for i, h in enumerate(t.hops):
        facts = h.facts
        kind = facts.get("observation")
        if kind not in _TYPES:
            continue
        p = h.packet
        stamp = (START + timedelta(milliseconds=i)).strftime("%b %d %H:%M:%S.%f")[:-3]
        reply = h.direction == REPLY
        src, dst = _host(names, p.src, p.sport), _host(names, p.dst, p.dport)
        src_id, dst_id = facts.get("src_identity"), facts.get("dst_identity")
        if reply:
            arrow = "<-"
            src, dst, src_id, dst_id = dst, src, dst_id, src_id
        else:
            arrow = "->"
        verdict = facts.get("verdict", "FORWARDED")
        if kind == "drop":
            reason = facts.get("drop_reason")
            what = {133: "Policy denied", 181: "Policy denied by denylist",
                    158: "Service backend not found",
                    177: "Denied by LB src range check"}.get(reason, f"drop reason {reason}")
            if facts.get("policy"):
                lines.append(_line(stamp, h.node, src, src_id, arrow, dst, dst_id,
                                   facts["policy"].rsplit(" ", 1)[0], "DENIED", _summary(p)))
            lines.append(_line(stamp, h.node, src, src_id, arrow, dst, dst_id, what, "DROPPED",
                               _summary(p)))
            continue
        if kind == "policy-verdict":
            words = facts.get("policy", "policy-verdict:none INGRESS ALLOWED").rsplit(" ", 1)
            lines.append(_line(stamp, h.node, src, src_id, arrow, dst, dst_id, words[0],
                               words[1], _summary(p)))
            continue
        if kind == "http-request":
            lines.append(_line(stamp, h.node, src, src_id, arrow, dst, dst_id, "http-request",
                               verdict, f"HTTP/1.1 {facts.get('http')}"))
            continue
        if kind == "sock":
            original = facts.get("original")
            if original:
                vip = _host(names, original[0], original[1])
                lines.append(_line(stamp, h.node, src, src_id, arrow, vip, dst_id,
                                   "pre-xlate-fwd", "TRACED", "TCP" if p.protocol == "tcp"
                                   else p.protocol.upper()))
            lines.append(_line(stamp, h.node, src, src_id, arrow, dst, dst_id,
                               facts.get("sock_xlate", "post-xlate-fwd"), verdict, "TCP"
                               if p.protocol == "tcp" else p.protocol.upper()))
            continue
        lines.append(_line(stamp, h.node, src, src_id, arrow, dst, dst_id, kind, verdict,
                           _summary(p)))
    return lines


def _line(stamp, node, src, src_id, arrow, dst, dst_id, kind, verdict, summary) -> str:
    where = f" [{node}]" if node else ""
    return (f"{stamp}{where}: {src}{_identity(src_id)} {arrow} {dst}{_identity(dst_id)} "
            f"{kind} {verdict} ({summary})")


def _names(dp) -> dict[str, str]:
    """Addresses Hubble can name: pods as ns/pod, Service VIPs as ns/service."""
    names = {ip: f"{s.namespace}/{s.name}" for s in dp.cluster.services
             for ip in s.cluster_ips}
    names.update({ip: p.key for p in dp.cluster.pods if not p.host_network for ip in p.ips})
    return names


def _host(names: dict[str, str], ip: str, port: int) -> str:
    name = names.get(ip)
    base = name if name else (f"[{ip}]" if ":" in ip else ip)
    return f"{base}:{port}" if port else base
