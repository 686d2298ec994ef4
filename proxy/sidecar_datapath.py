"""Istio sidecars as hops of the walk (reference: mesh-ingress.md sections 1-4).

A meshed pod's namespace gets istio-init's capture rules (parsed and interpreted like every
other ruleset) and Envoy listening on 15001 (outbound) and 15006 (inbound). The app's
connection is REDIRECTed to 15001; Envoy reads the original destination, routes the request
(proxy.sidecar.route_outbound: VirtualService match, weights, faults, subsets) and opens its
own connection (uid 1337, so capture skips it), with mTLS when the endpoint has a sidecar.
At the server the inbound connection is REDIRECTed to 15006; Envoy picks the filter chain
for the port and the peer's transport (PeerAuthentication STRICT resets plaintext), applies
AuthorizationPolicy (403 "RBAC: access denied") and connects to the app from 127.0.0.6.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

from netsim.packet import TracePacket
from policies.istio import AuthzRequest, authorize, workload_principal
from proxy import netfilter
from proxy.istio_inject import injected
from proxy.istio_iptables import capture_rules
from proxy.sidecar import route_inbound, route_outbound, sidecar_config

PROXY_UID = 1337
APP_UID = 0  # containers run as root unless securityContext says otherwise
OUTBOUND_PORT, INBOUND_PORT = 15001, 15006
EPHEMERAL = (32768, 60999)


def attach(dp, station) -> None:
    """Give a meshed pod's namespace its capture rules and its Envoy."""
    pod = station.pod
    if pod is None or not dp.cluster.settings.mesh:
        return
    inj = injected(dp.cluster, pod)
    if not inj.injected or inj.capture is None:
        return
    for fam in sorted({6 if ":" in ip else 4 for ip in pod.ips}):
        text = capture_rules(inj, pod, fam)
        if not text:
            continue
        station.sources[fam] = text
        station.rulesets[fam] = netfilter.parse_ruleset(text, f"{pod.key} istio-init rules")
        interfaces = {i.name: tuple(i.addresses) for i in station.namespace.interfaces}
        station.contexts[fam] = netfilter.Context(
            local_addresses=(*(a.split("/")[0] for addrs in interfaces.values() for a in addrs),
                             "127.0.0.6" if fam == 4 else "::6"),
            interfaces=interfaces)
    station.socket_programs[("tcp", OUTBOUND_PORT)] = outbound
    station.socket_programs[("tcp", INBOUND_PORT)] = inbound
    station.sidecar = True
    station.app_uid = APP_UID


def _config(walker, pod):
    cache = walker.dp.__dict__.setdefault("_sidecar_configs", {})
    found = cache.get(pod.key)
    if found is None:
        found = cache[pod.key] = sidecar_config(walker.dp.cluster, pod)
    return found


def _sport(key: str) -> int:
    lo, hi = EPHEMERAL
    return lo + zlib.crc32(key.encode()) % (hi - lo + 1)


def outbound(walker, c) -> list:
    """Envoy's virtualOutbound listener: route the captured connection, open the next one."""
    st = walker.station(c)
    p = c.packet
    dst, dport = walker.original_destination(c)
    decision = route_outbound(_config(walker, st.pod), dst, dport, p.http)
    detail = [f"original destination {dst}:{dport} (SO_ORIGINAL_DST)",
              f"listener {decision.listener}, chain {decision.filter_chain}",
              f"protocol {decision.protocol}" + (f", route config {decision.route_config}, "
                                                 f"virtual host {decision.virtual_host}"
                                                 if decision.route_config else "")]
    out = []
    for choice in decision.choices:
        nc = replace(c, probability=c.probability * choice.probability)
        where = [*detail, f"cluster {choice.cluster or '-'}"
                 + (f" (VirtualService {choice.virtual_service})" if choice.virtual_service
                    else "")]
        if choice.fault:
            where.append(f"fault injection: {choice.fault}")
        if c.connected is not None and choice.cluster and "Passthrough" in choice.cluster:
            where.append("Cilium's socket LB translated the Service address at connect(), "
                         "before the sidecar: it sees a pod address and passes it through "
                         "(set cni.cilium.socketLB.hostNamespaceOnly: true, as Cilium's "
                         "Istio guide says)")
        if choice.retries is not None:
            r = choice.retries
            where.append(f"retries: {r.attempts} attempt(s) on {r.retry_on}"
                         + (f", per try {r.per_try_timeout}" if r.per_try_timeout else ""))
        if choice.timeout:
            where.append(f"timeout {choice.timeout}")
        for m in choice.mirror:
            where.append(f"mirrors {m.percent:g}% of requests to {m.cluster} (responses "
                         "ignored)")
        if choice.status is not None or not choice.endpoints:
            flag = choice.response_flag or "UH"
            nc = walker.hop(nc, "envoy", f"outbound: {choice.status or 503} ({flag})", where,
                            event={"response_flag": flag})
            out += walker.end(nc, "rejected", "envoy-response",
                              f"the client sidecar answers {choice.status or 503} with response "
                              f"flag {flag} ({_flag_text(flag)})")
            continue
        share = 1.0 / len(choice.endpoints)
        for ip, port, pod_key in choice.endpoints:
            leg = replace(nc, probability=nc.probability * share)
            packet = TracePacket(p.src, ip, "tcp", _sport(f"{p.src}|{p.sport}|{ip}|{port}"),
                                 port, "S", http=p.http)
            leg = walker.hop(leg, "envoy", f"outbound: {choice.cluster} -> {ip}:{port}"
                             + (" (mTLS)" if choice.mtls else " (plaintext)"),
                             [*where, f"endpoint {ip}:{port} {pod_key or ''}".rstrip(),
                              "ISTIO_MUTUAL: the client sidecar originates mTLS"
                              if choice.mtls else "no sidecar at the endpoint (or TLS "
                              "disabled): plaintext"])
            leg = walker.open_leg(leg, packet, uid=PROXY_UID)
            out.append((replace(leg, mtls=choice.mtls,
                                peer_principal=_principal(walker, st.pod)), walker.send))
    return walker.choose([o for o in out if isinstance(o, tuple)]) + \
        [o for o in out if not isinstance(o, tuple)]


def inbound(walker, c) -> list:
    """Envoy's virtualInbound listener: mTLS per PeerAuthentication, authorization, the app."""
    st = walker.station(c)
    p = c.packet
    port = walker.original_destination(c)[1]
    http = p.http is not None
    choice = route_inbound(_config(walker, st.pod), port, mtls=c.mtls, http=http)
    detail = [f"original port {port}", f"listener {choice.listener}, chain "
              f"{choice.filter_chain or 'none'}", f"cluster {choice.cluster or '-'}"]
    if choice.reset:
        c = walker.hop(c, "envoy", "inbound: connection reset", detail)
        return walker.end(c, "rejected", "mtls-required",
                          f"{st.owner}'s sidecar has no filter chain for "
                          f"{'mTLS' if c.mtls else 'plaintext'} on port {port} "
                          "(PeerAuthentication STRICT): the connection is reset")
    principal = c.peer_principal if c.mtls else None
    req = p.http
    decision = authorize(walker.dp.cluster, st.pod, AuthzRequest(
        source_ip=p.src, port=port, source_principal=principal, destination_ip=p.dst,
        http=http, method=req.method if req else None, host=req.host if req else None,
        path=req.path if req else None,
        headers=dict(req.headers) if req else {}))
    detail += [f"peer {principal or 'plaintext (no identity)'}", f"authorization: "
               f"{decision.reason}"]
    if not decision.allowed:
        c = walker.hop(c, "envoy", f"inbound: {decision.status or 'reset'} "
                       f"{decision.body or ''}".rstrip(), detail)
        return walker.end(c, "rejected", "http-denied" if http else "authz-denied",
                          f"AuthorizationPolicy {decision.policy or '(none matches an ALLOW)'}"
                          f": {decision.status or 'connection closed'} "
                          f"{decision.body or ''}".rstrip())
    app = choice.app_address or p.dst
    packet = TracePacket(choice.source, app, "tcp", _sport(f"{p.src}|{p.sport}|{app}"),
                         choice.app_port, "S", http=req)
    c = walker.hop(c, "envoy", f"inbound: {choice.cluster} -> {app}:{choice.app_port}"
                   + (" (mTLS terminated)" if c.mtls else ""), detail)
    c = walker.open_leg(c, packet, uid=PROXY_UID)
    return [(replace(c, mtls=False, peer_principal=None), walker.send)]


def _principal(walker, pod) -> str:
    return workload_principal(walker.dp.cluster, pod)


_FLAGS = {"UH": "no healthy upstream", "NR": "no route configured", "NC": "no cluster",
          "UF": "upstream connection failure", "UO": "upstream overflow",
          "URX": "retry limit exceeded", "DC": "downstream connection termination",
          "FI": "fault injected", "DI": "delay injected"}


def _flag_text(flags: str) -> str:
    return ", ".join(_FLAGS.get(f, f) for f in flags.split(","))
