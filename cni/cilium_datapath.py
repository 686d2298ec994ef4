"""Cilium's BPF programs as hook functions the walk calls (reference: cni.md 2.3 and 3.2c).

Each program reads the node's maps (cni.cilium: ipcache, lxc, lb4 services/backends/revnat,
per-endpoint policy maps) and returns the walk's next steps: redirect to an endpoint,
encapsulate to the overlay, pass to the stack, or drop with Cilium's drop reason. Hops carry
Hubble facts (observation point, verdict, identities, drop reason) for `-o hubble`.

Programs: cil_sock4_connect (socket load balancing: a pod's connect() to a ClusterIP is
rewritten to a backend, so no packet carries the VIP), cil_from_container (bpf_lxc: egress
policy, ipcache lookup, local delivery or the tunnel), cil_from_overlay (bpf_overlay: the
VNI is the source identity), cil_from_netdev (bpf_host: NodePort/LoadBalancer with SNAT for
remote backends, reverse NAT of replies, native-routed pod traffic). Ingress policy runs on
the way into the destination endpoint (the tail call to its policy program).
"""

from __future__ import annotations

from dataclasses import replace

from cni.cilium import CiliumState, compile_cilium
from cni.cilium_identity import HOST, REMOTE_NODE, WORLD
from cni.cilium_maps import (
    DROP_REASONS,
    DROP_SERVICE_BACKEND_NOT_FOUND,
    EGRESS,
    INGRESS,
    SCOPE_EXTERNAL,
    SCOPE_INTERNAL,
)
from netsim.packet import Outer
from netsim.topology import CILIUM_TUNNEL_PORTS, host_id

BPF_LXC, BPF_OVERLAY, BPF_HOST, BPF_SOCK = "bpf_lxc", "bpf_overlay", "bpf_host", "bpf_sock"
IPV4_LOOPBACK = "169.254.42.1"  # bpf/lib/common.h: the SNAT address of a hairpin connection
# --service-no-backend-response=reject (the default): the client gets ICMP unreachable
NO_BACKEND_REPLY = "ICMP destination unreachable (service-no-backend-response reject)"


def state_for(dp) -> CiliumState:
    found = getattr(dp, "_cilium", None)
    if found is None:
        found = dp._cilium = compile_cilium(dp.cluster)
    return found


def attach(dp, station) -> None:
    """Install the programs on a station: socket LB in pods, tc ingress on the host."""
    kpr = dp.proxy_mode == "none"
    if station.kind == "pod":
        if kpr and not dp.cluster.settings.cilium_socket_lb_host_only:
            station.connect_hooks = (sock4_connect,)
        return
    if station.kind != "host":
        return
    if kpr:  # socket LB covers host processes (and hostNetwork pods) too
        station.connect_hooks = (sock4_connect,)
    for iface in station.namespace.interfaces:
        if iface.name.startswith("lxc"):
            station.tc_ingress[iface.name] = from_container
        elif iface.name in ("cilium_vxlan", "cilium_geneve"):
            station.tc_ingress[iface.name] = from_overlay
        elif iface.name == "eth0":
            station.tc_ingress[iface.name] = from_netdev
        elif iface.name == "cilium_net":  # what the stack sends out of cilium_host
            station.tc_ingress[iface.name] = from_host


def _node(walker, c):
    st = walker.station(c)
    return state_for(walker.dp).node(st.node)


def _event(observation: str, verdict: str, src_id: int | None, dst_id: int | None,
           **more) -> dict:
    return {"observation": observation, "verdict": verdict, "src_identity": src_id,
            "dst_identity": dst_id, **more}


# ---------------------------------------------------------------- socket load balancing


def sock4_connect(walker, c) -> list:
    """cil_sock4_connect: look the destination up as a service frontend; pick a backend."""
    p = c.packet
    node = _node(walker, c)
    svc = node.service_lookup(p.dst, p.dport, p.protocol.upper(), SCOPE_INTERNAL) or \
        node.service_lookup(p.dst, p.dport, p.protocol.upper(), SCOPE_EXTERNAL)
    if svc is None:
        return [(c, walker.send)]
    master = _master_line(p, svc)
    if svc.count == 0:
        c = walker.hop(c, "cilium", f"{BPF_SOCK} cil_sock4_connect: no backend", [master],
                       event=_event("sock", "DROPPED", None, None,
                                    drop_reason=DROP_SERVICE_BACKEND_NOT_FOUND))
        return walker.end(c, "rejected", "service-backend-not-found",
                          f"{svc.service} has no backend: connect() fails "
                          f"({DROP_REASONS.get(DROP_SERVICE_BACKEND_NOT_FOUND)})")
    out = []
    for nc, slot, backend in _slots(walker, c, node, svc):
        new = replace(p, dst=backend.address, dport=backend.port)
        nc = replace(nc, connected=(backend.address, backend.port))
        nc = walker.hop(nc, "cilium", f"{BPF_SOCK} cil_sock4_connect: {p.dst}:{p.dport} -> "
                        f"{backend.address}:{backend.port}",
                        [master, f"slot {slot} -> lb4_backends_v3[{backend.id}] = "
                         f"{backend.address}:{backend.port}/{backend.protocol} {backend.state}"
                         + (f" ({backend.pod_key})" if backend.pod_key else ""),
                         f"lb4_reverse_sk[cookie, {backend.address}:{backend.port}] = "
                         f"{p.dst}:{p.dport} rev_nat={svc.rev_nat_index}"],
                        new, event=_event("sock", "TRANSLATED", None, None,
                                          sock_xlate="post-xlate-fwd",
                                          original=(p.dst, p.dport)))
        out.append((nc, walker.send))
    return out


def _master_line(p, svc, flags: bool = False) -> str:
    """The service map's slot-0 entry a lookup found, as the hop's detail shows it."""
    words = f", {', '.join(svc.flag_words)}" if flags else ""
    return (f"lb4_services_v2[{p.dst}:{p.dport}/{p.protocol.upper()} slot 0] = "
            f"count={svc.count} rev_nat={svc.rev_nat_index} ({svc.service}{words})")


def _slots(walker, c, node, svc) -> list:
    """(cursor with its share, slot, backend) for each backend slot the lookup may pick:
    every one (all paths), or one drawn by the walk's seed (sample), before forwarding."""
    return walker.choose([(replace(c, probability=c.probability / svc.count), slot,
                           node.backend(svc.backend_ids[slot - 1]))
                          for slot in range(1, svc.count + 1)])


def _nat_entry(node, new, p) -> tuple:
    """What reverses a translation for the reply: (node, reply's key, (vip, vport, client,
    client port))."""
    return ("nat", (node.name, (new.protocol, new.dst, new.dport, new.src, new.sport),
                    (p.dst, p.dport, p.src, p.sport)))


# ---------------------------------------------------------------- bpf_lxc


def from_container(walker, c) -> list:
    """cil_from_container on the pod's lxc device: conntrack, egress policy, forwarding."""
    node = _node(walker, c)
    nat = _nat_reverse(c, node.name)
    if nat is not None:  # a local backend answering a NodePort/LoadBalancer connection
        return _reverse_nodeport(walker, c, node, nat, BPF_LXC)
    p = c.packet
    src_ep = node.endpoint(p.src)
    src_id = src_ep.sec_id if src_ep else WORLD
    if c.direction == "request" and c.connected is None and not _ct_reply(c, node.name):
        svc = node.service_lookup(p.dst, p.dport, p.protocol.upper(), SCOPE_INTERNAL)
        if svc is not None:  # per-packet east-west LB (no socket LB: kube-proxy is running)
            return _per_packet_lb(walker, c, node, svc)
    dst_entry = node.ipcache_lookup(p.dst)
    dst_id = dst_entry.identity if dst_entry else WORLD
    reply = _ct_reply(c, node.name)
    detail = [f"endpoint {src_ep.id if src_ep else '?'} identity {src_id}",
              f"ct4_global: {'reply' if reply else 'new'}",
              f"ipcache[{p.dst}] = identity {dst_id}" +
              (f" tunnelendpoint {dst_entry.tunnel_endpoint}"
               if dst_entry and dst_entry.tunnel_endpoint else "")]
    if not reply and src_ep is not None:
        d = node.policy_lookup(src_ep.id, dst_id, EGRESS, p.protocol.upper(), p.dport)
        detail.append(_policy_line(src_ep.id, d, EGRESS, dst_id, p))
        if not d.allowed:
            c = walker.hop(c, "cilium", f"{BPF_LXC} cil_from_container: {d.drop_text}",
                           detail, event=_event("drop", "DROPPED", src_id, dst_id,
                                                drop_reason=d.drop_reason,
                                                policy=f"policy-verdict:{d.match} EGRESS "
                                                "DENIED"))
            return walker.end(c, "dropped", "policy-denied",
                              f"{d.drop_text} ({d.drop_reason}) at egress of "
                              f"{src_ep.pod_key}: {_provenance(d)}")
        c = walker.hop(c, "cilium", f"{BPF_LXC} policy-verdict:{d.match} EGRESS ALLOWED",
                       detail, event=_event("policy-verdict", "FORWARDED", src_id, dst_id,
                                            policy=f"policy-verdict:{d.match} EGRESS "
                                            "ALLOWED"))
        detail = []
        if d.proxy_port:
            c, end = _l7(walker, c, node, src_ep.id, dst_id, EGRESS, d, src_id, dst_id)
            if end is not None:
                return end
    c = _ct_record(c, node.name)
    return _forward(walker, c, node, src_id, dst_id, dst_entry, detail, reply)


def _forward(walker, c, node, src_id, dst_id, dst_entry, detail, reply) -> list:
    p = c.packet
    local = node.endpoint(p.dst)
    if local is not None and not local.is_host:
        return _to_endpoint(walker, c, node, local, src_id, detail, reply)
    tunnel = walker.dp.cluster.settings.cilium_routing_mode == "tunnel"
    remote = dst_entry.tunnel_endpoint if dst_entry else None
    if tunnel and remote and remote != "0.0.0.0":
        return _to_overlay(walker, c, node, src_id, dst_id, remote, detail, reply)
    if reply and walker.dp.proxy_mode == "none":
        # BPF host routing: a FIB lookup and a redirect to the device, past netfilter (with
        # kube-proxy running, replies go through the stack where its conntrack un-NATs them)
        route = walker.lookup(c)
        if route is None:
            return walker.end(c, "dropped", "no-route", f"no route to {p.dst}")
        c = walker.hop(c, "cilium", f"fib redirect -> {route.dev}", detail,
                       event=_event("to-network", "FORWARDED", src_id, dst_id, is_reply=reply))
        return [(replace(c, route=route), walker.transmit)]
    c = walker.hop(c, "cilium", f"{BPF_LXC} -> stack", detail,
                   event=_event("to-stack", "FORWARDED", src_id, dst_id, is_reply=reply))
    return walker.stack_receive(c)


def _to_overlay(walker, c, node, src_id, dst_id, remote, detail, reply) -> list:
    st = walker.station(c)
    proto = walker.dp.cluster.settings.cilium_tunnel_protocol
    dev = f"cilium_{proto}"
    p = c.packet
    from netsim.walk import _flow_port

    outer = Outer(proto, node.node_ip or "0.0.0.0", remote, _flow_port(p),
                  CILIUM_TUNNEL_PORTS[proto], src_id)
    c = walker.hop(c, "cilium", f"{BPF_LXC} -> overlay {dev}: tunnel key remote {remote}, "
                   f"VNI {src_id} (the source identity)", detail, replace(p, outer=outer),
                   interface=dev, event=_event("to-overlay", "FORWARDED", src_id, dst_id,
                                               is_reply=reply))
    del st
    return [(replace(c, nf=None, in_iface=None, route=None), walker.send)]


def _to_endpoint(walker, c, node, ep, src_id, detail, reply) -> list:
    """Into a local endpoint: its ingress policy (unless a reply), then the redirect."""
    p = c.packet
    if not reply:
        d = node.policy_lookup(ep.id, src_id, INGRESS, p.protocol.upper(), p.dport)
        detail = [*detail, _policy_line(ep.id, d, INGRESS, src_id, p)]
        if not d.allowed:
            c = walker.hop(c, "cilium", f"policy {d.drop_text}", detail,
                           event=_event("drop", "DROPPED", src_id, ep.sec_id,
                                        drop_reason=d.drop_reason,
                                        policy=f"policy-verdict:{d.match} INGRESS DENIED"))
            return walker.end(c, "dropped", "policy-denied",
                              f"{d.drop_text} ({d.drop_reason}) at ingress of "
                              f"{ep.pod_key}: {_provenance(d)}")
        c = walker.hop(c, "cilium", f"policy-verdict:{d.match} INGRESS ALLOWED", detail,
                       event=_event("policy-verdict", "FORWARDED", src_id, ep.sec_id,
                                    policy=f"policy-verdict:{d.match} INGRESS ALLOWED"))
        detail = []
        if d.proxy_port:
            c, end = _l7(walker, c, node, ep.id, src_id, INGRESS, d, src_id, ep.sec_id)
            if end is not None:
                return end
    st = walker.station(c)
    peer_ns = f"pod:{ep.pod_key}"
    c = walker.hop(c, "cilium", f"-> endpoint {ep.id} ({ep.pod_key}) via {ep.interface}",
                   [*detail, f"lxc[{p.dst}] = id={ep.id} sec_id={ep.sec_id} "
                    f"ifindex={ep.ifindex}"], replace(p, src_mac=ep.node_mac, dst_mac=ep.mac),
                   interface=ep.interface,
                   event=_event("to-endpoint", "FORWARDED", src_id, ep.sec_id, is_reply=reply,
                                endpoint=ep.id))
    del st
    return [(replace(c, netns=peer_ns, in_iface="eth0", nf=None, route=None),
             walker.receive)]


def _per_packet_lb(walker, c, node, svc) -> list:
    p = c.packet
    master = _master_line(p, svc)
    if svc.count == 0:
        c = walker.hop(c, "cilium", f"{BPF_LXC} lb4_lookup_service: no backend", [master],
                       event=_event("drop", "DROPPED", None, None,
                                    drop_reason=DROP_SERVICE_BACKEND_NOT_FOUND))
        return walker.end(c, "rejected", "service-backend-not-found",
                          f"{svc.service}: {DROP_REASONS[DROP_SERVICE_BACKEND_NOT_FOUND]}; "
                          f"{NO_BACKEND_REPLY}")
    out = []
    for nc, slot, backend in _slots(walker, c, node, svc):
        new = replace(p, dst=backend.address, dport=backend.port)
        loopback = backend.address == p.src
        if loopback:  # lb4_local: a pod reaching itself through its Service is SNATed
            new = replace(new, src=IPV4_LOOPBACK)
        nc = walker.hop(nc, "cilium", f"{BPF_LXC} lb4_lookup_service: {p.dst}:{p.dport} -> "
                        f"{backend.address}:{backend.port}",
                        [master, f"slot {slot} -> lb4_backends_v3[{backend.id}] = "
                         f"{backend.address}:{backend.port} ({backend.pod_key})",
                         f"ct4_global CT_SERVICE entry, rev_nat_index {svc.rev_nat_index}"]
                        + ([f"loopback: the backend is the client itself, source -> "
                            f"{IPV4_LOOPBACK} (IPV4_LOOPBACK)"] if loopback else []),
                        new, event=_event("to-stack", "TRANSLATED", None, None))
        # connected: the VIP, so the packet is not balanced again and the reply, reversed
        # to the VIP, is what the socket expects
        nc = replace(nc, bpf=(*nc.bpf, _nat_entry(node, new, p)), connected=(p.dst, p.dport))
        out += from_container(walker, nc)
    return out


def from_host(walker, c) -> list:
    """cil_from_host: what the stack routes into cilium_host (remote pod CIDRs, local
    endpoints): forward it by the ipcache like an endpoint's packet, without egress policy."""
    node = _node(walker, c)
    p = c.packet
    dst_entry = node.ipcache_lookup(p.dst)
    dst_id = dst_entry.identity if dst_entry else WORLD
    src_entry = node.ipcache_lookup(p.src)
    src_id = src_entry.identity if src_entry else WORLD
    if src_id == WORLD and p.src in walker.station(c).addresses():
        src_id = HOST
    reply = _ct_reply(c, node.name)
    c = _ct_record(c, node.name)
    detail = [f"{BPF_HOST} cil_from_host: ipcache[{p.dst}] = identity {dst_id}"]
    return _forward(walker, c, node, src_id, dst_id, dst_entry, detail, reply)


def _l7(walker, c, node, ep_id, remote, direction, d, src_id, dst_id):
    """The redirect to the node's L7 proxy (Envoy) that an HTTP rule puts on a policy-map
    entry: the proxy judges the request and answers 403 itself when no rule allows it."""
    p = c.packet
    rules = node.http_rules(ep_id, remote, direction, p.protocol.upper(), p.dport) or ()
    shown = [f"proxy_port {d.proxy_port}: {len(rules)} HTTP rule(s)"] + [
        f"  {r}" for r in rules]
    c = walker.hop(c, "cilium", f"-> proxy port {d.proxy_port} ({direction} L7 policy)",
                   shown, event=_event("to-proxy", "FORWARDED", src_id, dst_id))
    if p.http is None:
        c = walker.hop(c, "envoy", "HTTP rules not evaluated (no --http request)",
                       ["the connection is proxied; each request is judged by the rules above"])
        return c, None
    req = p.http
    verdict = node.evaluate_http(ep_id, remote, direction, p.protocol.upper(), p.dport,
                                 req.method, req.path, req.host, dict(req.headers))
    if verdict is None or verdict.allowed:
        c = walker.hop(c, "envoy", f"{req} allowed", [verdict.reason if verdict else ""],
                       event=_event("http-request", "FORWARDED", src_id, dst_id,
                                    http=str(req)))
        return c, None
    c = walker.hop(c, "envoy", f"{req} -> {verdict.status} {verdict.body}",
                   [verdict.reason], event=_event("http-request", "DROPPED", src_id, dst_id,
                                                  http=str(req)))
    return c, walker.end(c, "rejected", "http-denied",
                         f"the L7 proxy answers {verdict.status} {verdict.body!r} to {req} "
                         f"({verdict.reason})")


# ---------------------------------------------------------------- bpf_overlay


def from_overlay(walker, c) -> list:
    """cil_from_overlay: the VNI names the source identity; deliver to the endpoint."""
    node = _node(walker, c)
    nat = _nat_reverse(c, node.name)
    if nat is not None:  # a remote backend's answer to a load-balanced connection
        return _reverse_nodeport(walker, c, node, nat, BPF_OVERLAY)
    vni = c.tunnel_id if c.tunnel_id is not None else WORLD
    # the sender's own host is another node's remote-node (bpf_overlay.c handle_ipv4)
    src_id = REMOTE_NODE if vni == HOST else vni
    p = c.packet
    reply = _ct_reply(c, node.name)
    local = node.endpoint(p.dst)
    detail = [f"tunnel key: VNI {vni} -> source identity {src_id}",
              f"ct4_global: {'reply' if reply else 'new'}"]
    c = _ct_record(c, node.name)
    if local is not None and not local.is_host:
        return _to_endpoint(walker, c, node, local, src_id, detail, reply)
    c = walker.hop(c, "cilium", f"{BPF_OVERLAY} -> stack", detail,
                   event=_event("to-stack", "FORWARDED", src_id, None, is_reply=reply))
    return walker.stack_receive(c)


# ---------------------------------------------------------------- bpf_host


def from_netdev(walker, c) -> list:
    """cil_from_netdev on the NIC: NodePort/LoadBalancer, reverse NAT, native routing."""
    node = _node(walker, c)
    p = c.packet
    if p.outer is not None:
        return walker.stack_receive(c)  # tunnelled: the kernel's VXLAN socket decapsulates
    nat = _nat_reverse(c, node.name)
    if nat is not None:
        return _reverse_nodeport(walker, c, node, nat)
    if walker.dp.proxy_mode == "none" and c.direction == "request":
        svc = node.service_lookup(p.dst, p.dport, p.protocol.upper(), SCOPE_EXTERNAL)
        if svc is not None and (p.dst in walker.station(c).addresses()
                                or svc.type != "ClusterIP"):
            return _nodeport(walker, c, node, svc)
    src_entry = node.ipcache_lookup(p.src)
    src_id = src_entry.identity if src_entry else WORLD
    local = node.endpoint(p.dst)
    if local is not None and not local.is_host and walker.dp.proxy_mode == "none":
        # BPF host routing redirects straight to the endpoint; with kube-proxy running Cilium
        # uses legacy host routing: through the stack (and kube-proxy's conntrack), then
        # cilium_host into the endpoint
        reply = _ct_reply(c, node.name)
        c = _ct_record(c, node.name)
        detail = [f"ipcache[{p.src}] = identity {src_id}"]
        return _to_endpoint(walker, c, node, local, src_id, detail, reply)
    return walker.stack_receive(c)


DROP_LB_SOURCE_RANGE = 177  # DENIED_BY_LB_SRC_RANGE_CHECK


def _source_range_denied(walker, svc, p) -> bool:
    """lb4_src_range_ok: a LoadBalancer frontend admits only its loadBalancerSourceRanges."""
    import ipaddress

    if svc.type != "LoadBalancer":
        return False
    ns, _, name = svc.service.partition("/")
    service = walker.dp.cluster.service(ns, name)
    ranges = service.load_balancer_source_ranges if service is not None else ()
    if not ranges:
        return False
    addr = ipaddress.ip_address(p.src)
    return not any(addr in ipaddress.ip_network(r, strict=False) for r in ranges
                   if (":" in r) == (addr.version == 6))


def _nodeport(walker, c, node, svc) -> list:
    p = c.packet
    if _source_range_denied(walker, svc, p):
        c = walker.hop(c, "cilium", f"{BPF_HOST} lb4_src_range_ok: {p.src} not allowed",
                       [f"{svc.service} loadBalancerSourceRanges"],
                       event=_event("drop", "DROPPED", WORLD, None,
                                    drop_reason=DROP_LB_SOURCE_RANGE))
        return walker.end(c, "dropped", "lb-source-range",
                          f"{p.src} is outside {svc.service}'s loadBalancerSourceRanges "
                          f"(Cilium drop reason {DROP_LB_SOURCE_RANGE}, "
                          "DENIED_BY_LB_SRC_RANGE_CHECK)")
    master = _master_line(p, svc, flags=True)
    if svc.count == 0:
        reason = "no-local-endpoints" if svc.local else "service-backend-not-found"
        c = walker.hop(c, "cilium", f"{BPF_HOST} nodeport: no backend", [master],
                       event=_event("drop", "DROPPED", WORLD, None,
                                    drop_reason=DROP_SERVICE_BACKEND_NOT_FOUND))
        if svc.local:
            return walker.end(c, "dropped", reason, f"{svc.service}: "
                              f"{DROP_REASONS[DROP_SERVICE_BACKEND_NOT_FOUND]} "
                              "(externalTrafficPolicy Local: no backend on this node)")
        return walker.end(c, "rejected", reason, f"{svc.service}: "
                          f"{DROP_REASONS[DROP_SERVICE_BACKEND_NOT_FOUND]}; {NO_BACKEND_REPLY}")
    out = []
    for nc, slot, backend in _slots(walker, c, node, svc):
        new = replace(p, dst=backend.address, dport=backend.port)
        detail = [master, f"slot {slot} -> lb4_backends_v3[{backend.id}] = "
                  f"{backend.address}:{backend.port} ({backend.pod_key})"]
        snat = backend.node != node.name and not svc.local
        if snat:
            new = replace(new, src=node.node_ip, sport=p.sport)
            detail.append(f"snat_v4_external: {p.src}:{p.sport} -> {node.node_ip}:{p.sport} "
                          "(SNAT for a remote backend)")
        nc = walker.hop(nc, "cilium", f"{BPF_HOST} nodeport: {p.dst}:{p.dport} -> "
                        f"{backend.address}:{backend.port}", detail, new,
                        event=_event("from-network", "TRANSLATED", WORLD, None))
        nc = replace(nc, bpf=(*nc.bpf, _nat_entry(node, new, p)))
        dst_entry = node.ipcache_lookup(new.dst)
        dst_id = dst_entry.identity if dst_entry else WORLD
        client = node.ipcache_lookup(p.src)  # a CIDR identity when a policy names the range
        src_id = REMOTE_NODE if snat else (client.identity if client else WORLD)
        nc = _ct_record(nc, node.name)
        out += _forward(walker, nc, node, src_id, dst_id, dst_entry, [], False)
    return out


def _nat_reverse(c, node: str):
    p = c.packet
    key = (p.protocol, p.src, p.sport, p.dst, p.dport)
    for kind, item in c.bpf:
        if kind == "nat" and item[0] == node and item[1] == key:
            return item
    return None


def _reverse_nodeport(walker, c, node, nat, program: str = BPF_HOST) -> list:
    p = c.packet
    vip, vport, client, cport = nat[2]
    new = replace(p, src=vip, sport=vport, dst=client, dport=cport)
    c = walker.hop(c, "cilium", f"{program} reply: reverse NAT to "
                   f"{vip}:{vport} -> {client}:{cport}",
                   [f"rev_nat / snat_v4_external for {p.src}:{p.sport}"], new,
                   event=_event("to-network", "TRANSLATED", None, WORLD, is_reply=True))
    dst_entry = node.ipcache_lookup(new.dst)
    dst_id = dst_entry.identity if dst_entry else WORLD
    return _forward(walker, replace(c, nf=None), node, None, dst_id, dst_entry, [], True)


# ---------------------------------------------------------------- conntrack


def _ct_reply(c, node: str) -> bool:
    p = c.packet
    reverse = (node, p.protocol, p.dst, p.dport, p.src, p.sport)
    return any(kind == "ct" and item == reverse for kind, item in c.bpf)


def _ct_record(c, node: str):
    p = c.packet
    key = (node, p.protocol, p.src, p.sport, p.dst, p.dport)
    if any(kind == "ct" and item == key for kind, item in c.bpf):
        return c
    return replace(c, bpf=(*c.bpf, ("ct", key)))


def _policy_line(ep_id: int, d, direction: str, remote: int, p) -> str:
    key = d.key
    found = (f"{key.identity or 'ANY'}/{key.port_proto}" if key is not None else "no entry")
    verdict = "allow" if d.allowed else "deny" if d.deny else "drop"
    proxy = f" proxy_port={d.proxy_port}" if d.proxy_port else ""
    return (f"cilium_policy_{ep_id:05d} [{direction} identity {remote} "
            f"{p.dport}/{p.protocol.upper()}]: entry {found} -> {verdict}{proxy}"
            + (f" (derived from {', '.join(d.derived_from)})" if d.derived_from else ""))


def _provenance(d) -> str:
    if d.derived_from:
        return "decided by " + ", ".join(d.derived_from)
    return "no policy-map entry allows it (the endpoint is selected by a policy that " \
        "enables default deny)"


__all__ = [
    "HOST",
    "attach",
    "from_container",
    "from_netdev",
    "from_overlay",
    "host_id",
    "sock4_connect",
    "state_for",
]
