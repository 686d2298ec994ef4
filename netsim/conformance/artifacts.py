"""Checks a single trace cannot make, asked of the artifacts the dataplane compiled.

ClientIP session affinity is state that one connection leaves for the next; the walk starts
every trace from empty state, so it cannot show the second connection sticking. Where the
Service proxy is kube-proxy in iptables mode the check replays the translation in netsim's
netfilter interpreter, which carries `-m recent` lists in its Context: the first connection
through the node's real ruleset, then a second one from the same client with the state the
first left, then one after timeoutSeconds. IPVS keeps affinity in its persistence table and
Cilium in its LB affinity map, neither of which netsim carries between traces: there the
check reads the artifact (the virtual server's persistent flag and timeout, the lb4 service
entry's sessionAffinity flag and timeout).

Headless Services have no virtual IP: no proxy may hold state for them.
"""

from __future__ import annotations

import re
from dataclasses import replace

from netsim.dataplane import Dataplane
from netsim.topology import host_id, pod_id
from netsim.trace_types import REQUEST, Trace
from proxy import netfilter


def _station_id(owner: str) -> str:
    """A hop's namespace label ("node/n1", "ns/pod") as the dataplane's station id."""
    if owner.startswith("node/"):
        return host_id(owner[5:])
    ns, _, name = owner.partition("/")
    return pod_id(ns, name)


def affinity_difference(dp: Dataplane, trace: Trace, sent, timeout: int) -> str | None:
    """How ClientIP affinity with `timeout` seconds fails to hold for this connection."""
    paths = trace.branches or (trace,)
    hops = [h for p in paths for h in p.hops if h.direction == REQUEST]
    if any(h.component == "cilium" and any(d.startswith("lb4_services_v2[") for d in h.detail)
           for h in hops):
        return _cilium_affinity(dp, hops, sent, timeout)
    if any(h.component == "ipvs" for h in hops):
        return _ipvs_affinity(dp, hops, sent, timeout)
    return _iptables_affinity(dp, paths, sent, timeout)


def _cilium_affinity(dp: Dataplane, hops, sent, timeout: int) -> str | None:
    from cni.cilium_datapath import state_for
    from cni.cilium_maps import SCOPE_INTERNAL, SVC_FLAG_SESSION_AFFINITY

    hop = next(h for h in hops if h.component == "cilium"
               and any(d.startswith("lb4_services_v2[") for d in h.detail))
    entry = state_for(dp).node(hop.node).service_lookup(sent.dst, sent.dport,
                                                        sent.protocol.upper(), SCOPE_INTERNAL)
    where = f"lb4_services_v2[{sent.dst}:{sent.dport}/{sent.protocol.upper()}] on {hop.node}"
    if entry is None:
        return f"{where}: no entry"
    if not entry.flags & SVC_FLAG_SESSION_AFFINITY:
        return f"{where} lacks the sessionAffinity flag ({', '.join(entry.flag_words)})"
    if entry.affinity_timeout != timeout:
        return f"{where} holds affinity timeout {entry.affinity_timeout}s, not {timeout}s"
    return None


def _ipvs_affinity(dp: Dataplane, hops, sent, timeout: int) -> str | None:
    hop = next(h for h in hops if h.component == "ipvs")
    station = dp.station(_station_id(hop.netns))
    state = station.ipvs.get(sent.family)
    vs = state.virtual_server(sent.dst, sent.protocol.upper(), sent.dport) if state else None
    where = f"IPVS virtual server {sent.protocol.upper()} {sent.dst}:{sent.dport} on {hop.node}"
    if vs is None:
        return f"{where}: not found"
    if not vs.persistent:
        return f"{where} is not persistent (ClientIP affinity needs `-p`)"
    if vs.timeout != timeout:
        return f"{where} persists {vs.timeout}s, not {timeout}s"
    return None


def _iptables_affinity(dp: Dataplane, paths, sent, timeout: int) -> str | None:
    dnat = []
    for p in paths:
        hit = next(((i, h) for i, h in enumerate(p.hops)
                    if h.direction == REQUEST and h.component == "netfilter"
                    and "dst" in h.changed and "DNAT" in h.action), None)
        if hit is None:
            return f"the path to {p.delivered_to or p.result} has no DNAT by kube-proxy"
        if not any("-m recent --set --name KUBE-SEP-" in d for d in hit[1].detail):
            return (f"the path to {p.delivered_to} DNATs without `-m recent --set` (no "
                    "affinity entry is recorded)")
        dnat.append((p, *hit))
    path, i, hop = dnat[0]
    before = path.hops[i - 1].packet
    station = dp.station(_station_id(hop.netns))
    fam = before.family
    ruleset, ctx = station.rulesets[fam], station.contexts[fam]
    hooks = (hop.action.split(":", 1)[0].split("+")[0],)
    packet = netfilter.Packet(before.src, before.dst, before.protocol, before.sport,
                              before.dport, in_iface=hop.interface if hooks[0] != "OUTPUT"
                              else None)
    first = netfilter.traverse(ruleset, packet, hooks, ctx, mode="all")
    everywhere = {(b.packet.dst, b.packet.dport) for b in first}
    for b in first:
        pinned = (b.packet.dst, b.packet.dport)
        after = ctx.advance(b)
        second = replace(packet, sport=packet.sport + 1)
        got = {(a.packet.dst, a.packet.dport)
               for a in netfilter.traverse(ruleset, second, hooks, after, mode="all")}
        if got != {pinned}:
            return (f"a second connection from {sent.src} after one to {_ep(pinned)} goes to "
                    f"{', '.join(_ep(g) for g in sorted(got))} (kube-proxy's recent rules on "
                    f"{hop.node} do not pin it)")
        edge = replace(after, now=after.now + timeout)  # xt_recent: age <= --seconds
        got = {(a.packet.dst, a.packet.dport)
               for a in netfilter.traverse(ruleset, second, hooks, edge, mode="all")}
        if got != {pinned}:
            return (f"{timeout}s after a connection to {_ep(pinned)} the next one goes to "
                    f"{', '.join(_ep(g) for g in sorted(got))}: the affinity ends before "
                    f"timeoutSeconds {timeout}")
        later = replace(after, now=after.now + timeout + 1)
        got = {(a.packet.dst, a.packet.dport)
               for a in netfilter.traverse(ruleset, second, hooks, later, mode="all")}
        if got != everywhere:
            return (f"{timeout + 1}s after a connection to {_ep(pinned)} the next one still "
                    f"goes to {', '.join(_ep(g) for g in sorted(got))}: the affinity outlives "
                    f"timeoutSeconds {timeout}")
    return None


def _ep(ep: tuple[str, int]) -> str:
    return f"{ep[0]}:{ep[1]}"


# ---------------------------------------------------------------- headless Services


def service_difference(dp: Dataplane, key: str, expect: dict) -> str | None:
    """`cluster_ip: none` and `proxy_rules: none|present` for one Service ("ns/name")."""
    ns, _, name = key.partition("/")
    svc = dp.cluster.service(ns, name)
    if svc is None:
        return f"no Service {key}"
    if expect.get("cluster_ip") == "none" and svc.cluster_ips:
        return f"expected no cluster IP, got {', '.join(svc.cluster_ips)}"
    want = expect.get("proxy_rules")
    if want is None:
        return None
    found = proxy_state(dp, key)
    if want == "none" and found:
        return f"expected no Service proxy state for {key}, found {found[0]}"
    if want == "present" and not found:
        return f"expected Service proxy state for {key}, found none"
    return None


def proxy_state(dp: Dataplane, key: str) -> list[str]:
    """What the dataplane's Service proxies hold for a Service, on every node: kube-proxy's
    rules (their comments name the service port) or IPVS virtual servers, Cilium's lb4
    service entries."""
    found: list[str] = []
    for node in dp.cluster.nodes:
        station = dp.host_station(node.name)
        comment = re.compile(rf'--comment "?{re.escape(key)}[:" ]')
        for text in station.sources.values():
            line = next((ln for ln in text.splitlines() if comment.search(ln)), None)
            if line is not None:
                found.append(f"{node.name}: {line.strip()}")
        for state in station.ipvs.values():
            for vs in state.virtual_servers:
                if vs.service.split(":")[0] == key:
                    found.append(f"{node.name}: IPVS {vs.protocol} {vs.address}:{vs.port}")
        if dp.cni == "cilium":
            from cni.cilium_datapath import state_for

            lb = state_for(dp).node(node.name).lb
            for entry in lb.services.values():
                if entry.service == key:
                    a, p, proto = entry.frontend
                    found.append(f"{node.name}: lb4_services_v2[{a}:{p}/{proto}]")
    return found
