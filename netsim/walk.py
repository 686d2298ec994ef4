"""The walk: a packet through the cluster's network namespaces in the Linux order, and back.

Locally generated packets take OUTPUT, routing and POSTROUTING; received ones PREROUTING,
routing, then INPUT or FORWARD and POSTROUTING; devices move them on (a veth to its peer
namespace, a tunnel device wraps them in an outer header, the NIC puts them on the
underlay). Each hook runs the station's own artifacts: its parsed netfilter ruleset, its
IPVS table, Cilium's BPF programs. Random choices fork the walk; `mode="sample"` follows
one, seeded. After delivery the socket answers and the reply walks back through the
connection-tracking state the request left.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from cni.felix_text import MARK_ACCEPT as FELIX_ACCEPT_MARK
from netsim.dataplane import EXTERNAL_NETNS, Dataplane, Station
from netsim.netns import Route
from netsim.packet import Outer, TracePacket
from netsim.trace_types import (
    DELIVERED,
    DROPPED,
    REJECTED,
    REPLY,
    REQUEST,
    Hop,
    Trace,
)
from proxy import netfilter

MAX_HOPS = 1000  # a safety net: real loops end by TTL; proxied traces are long
EPHEMERAL_PORTS = (32768, 60999)  # net.ipv4.ip_local_port_range default
_FLAG_NAMES = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", "A": "ACK", "U": "URG"}
_FLAG_LETTERS = {v: k for k, v in _FLAG_NAMES.items()}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where one branch of the walk is: namespace, packet and the state it carries."""

    netns: str
    packet: TracePacket
    direction: str = REQUEST
    in_iface: str | None = None
    nf: netfilter.Packet | None = None  # the packet as netfilter holds it here (ct attached)
    probability: float = 1.0
    hops: tuple[Hop, ...] = ()
    conntrack: tuple[tuple[str, netfilter.ConntrackTable], ...] = ()
    ipvs_conns: tuple[tuple[str, tuple, tuple], ...] = ()  # (netns, reply key, (vip, port))
    bpf: tuple[tuple[str, object], ...] = ()  # CNI datapath state (Cilium CT, NAT)
    route: Route | None = None
    delivered_to: str | None = None
    connected: tuple[str, int] | None = None  # the backend socket LB connected to
    tunnel_id: int | None = None  # the VNI of the tunnel the packet came out of
    # the connection being traced: who opened it and what it sent; proxies (sidecars,
    # ingress controllers) open further connections, stacked in `legs` until replies unwind
    origin: str = ""
    sent: TracePacket | None = None
    uid: int | None = None  # the sending process's uid (-m owner), None when unknown
    # before this namespace's REDIRECT/DNAT: (netns, address, port), what SO_ORIGINAL_DST reads
    original_dst: tuple[str, str, int] | None = None
    legs: tuple[Leg, ...] = ()
    mtls: bool = False  # the connection is Istio mTLS (a sidecar originated it)
    peer_principal: str | None = None  # the client certificate's identity, with mTLS


@dataclass(frozen=True, slots=True)
class Leg:
    """A connection a proxy accepted while it opens the next one: where it was opened, what
    was sent, and the packet as the proxy's socket received it (its reply starts there)."""

    origin: str
    sent: TracePacket
    arrived: TracePacket
    connected: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class End:
    cursor: Cursor
    result: str
    reason: str
    detail: str
    delivered_to: str | None = None


Step = tuple[Cursor, Callable]


@dataclass
class Walker:
    """One trace's walk over a dataplane: its mode, seed and the request's origin."""

    dp: Dataplane
    mode: str = "sample"
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # ------------------------------------------------------------------ helpers

    def station(self, c: Cursor) -> Station:
        return self.dp.station(c.netns)

    def hop(self, c: Cursor, component: str, action: str, detail: Iterable[str] = (),
            packet: TracePacket | None = None, interface: str | None = None,
            event: dict | None = None) -> Cursor:
        st = self.station(c)
        new = packet or c.packet
        changed = _changed(c.packet, new)
        hop = Hop(st.node, st.owner if st.kind != "host" else f"node/{st.node}",
                  interface if interface is not None else c.in_iface, component, action,
                  tuple(detail), new, c.direction, changed, tuple((event or {}).items()))
        nf = c.nf
        if nf is not None and changed:
            view = _nf_packet(new, nf.in_iface)
            nf = replace(nf, src=view.src, dst=view.dst, sport=view.sport, dport=view.dport)
        return replace(c, packet=new, hops=(*c.hops, hop), nf=nf)

    def choose(self, options: list) -> list:
        """Every option (mode all) or one drawn by probability (mode sample)."""
        if self.mode == "all" or len(options) <= 1:
            return options
        weights = [o[0].probability if isinstance(o, tuple) else o.probability
                   for o in options]
        return [self.rng.choices(options, weights=weights)[0]]

    def end(self, c: Cursor, result: str, reason: str, detail: str,
            to: str | None = None) -> list:
        return [End(c, result, reason, detail, to)]

    # ------------------------------------------------------------------ netfilter

    def netfilter(self, c: Cursor, hooks: tuple[str, ...], out_iface: str | None = None
                  ) -> list[tuple[Cursor, netfilter.Branch | None]]:
        """Run the station's ruleset over some hooks: one cursor per branch."""
        st = self.station(c)
        fam = c.packet.family
        ruleset = st.rulesets.get(fam)
        if ruleset is None:
            return [(c, None)]
        table = dict(c.conntrack).get(c.netns, netfilter.ConntrackTable())
        ctx = st.contexts[fam].evolve(conntrack=table, seed=self.rng.randrange(1 << 30))
        pkt = c.nf or _nf_packet(c.packet, c.in_iface)
        if out_iface is not None:
            pkt = replace(pkt, out_iface=out_iface)
        if c.uid is not None and hooks[0] in ("OUTPUT", "POSTROUTING"):
            ctx = ctx.evolve(uid=c.uid, gid=c.uid)
        branches = netfilter.traverse(ruleset, pkt, hooks, ctx,
                                      mode="all" if self.mode == "all" else "sample")
        out = []
        for b in branches:
            new = _from_nf(c.packet, b.packet)
            tables = {**dict(c.conntrack), c.netns: b.conntrack}
            nc = replace(c, nf=b.packet, probability=c.probability * b.probability,
                         conntrack=tuple(tables.items()))
            if c.direction == REQUEST and (c.original_dst is None or
                                           c.original_dst[0] != c.netns) and \
                    (new.dst, new.dport) != (c.packet.dst, c.packet.dport):
                nc = replace(nc, original_dst=(c.netns, c.packet.dst, c.packet.dport))
            nc = self.hop(nc, "netfilter", _nf_action(hooks, b),
                          _nf_detail(b, st.entry_texts, fam), new,
                          interface=out_iface if hooks[0] in ("FORWARD", "OUTPUT",
                                                              "POSTROUTING") else None)
            out.append((nc, b))
        return out

    # ------------------------------------------------------------------ the steps

    def connect(self, c: Cursor) -> list:
        """The sender's connect(): socket programs (Cilium's socket LB) run before the send."""
        hooks = self.station(c).connect_hooks
        return hooks[0](self, c) if hooks else [(c, self.send)]

    def send(self, c: Cursor) -> list:
        """A packet a local process sends: route, OUTPUT, reroute, POSTROUTING, transmit."""
        route = self.lookup(c)
        if route is None:
            return self.end(c, REJECTED, "no-route", f"{self.station(c).owner} has no route "
                            f"to {c.packet.dst} (connect fails: network unreachable)")
        if route.drops:
            return self.end(c, REJECTED if route.type != "blackhole" else DROPPED,
                            "blackhole", f"route {route.dst} is {route.type}")
        c = self.hop(c, "routing", f"route {_dst(c.packet)}", [_route_text(route)],
                     interface=route.dev)
        steps = []
        out_dev = "lo" if route.type == "local" else route.dev  # local traffic leaves by lo
        for nc, b in self.netfilter(replace(c, in_iface=None), ("OUTPUT",), out_dev):
            if b is not None and not b.accepted:
                steps += self._nf_end(nc, b)
                continue
            again = route
            if nc.packet.dst != c.packet.dst:
                again = self.lookup(nc)
                if again is None:
                    steps += self.end(nc, REJECTED, "no-route", f"no route to {nc.packet.dst}")
                    continue
                nc = self.hop(nc, "routing", f"reroute {nc.packet.dst}",
                              [_route_text(again)], interface=again.dev)
            steps.append((replace(nc, route=again), self.postrouting))
        return steps

    def postrouting(self, c: Cursor) -> list:
        route = c.route
        steps = []
        for nc, b in self.netfilter(c, ("POSTROUTING",), route.dev):
            if b is not None and not b.accepted:
                steps += self._nf_end(nc, b)
                continue
            steps.append((nc, self.transmit))
        return steps

    def receive(self, c: Cursor) -> list:
        """A packet arriving on c.in_iface: PREROUTING, routing, INPUT or FORWARD."""
        if len(c.hops) > MAX_HOPS:
            return self.end(c, DROPPED, "ttl-exceeded", "the packet loops")
        st = self.station(c)
        hook = st.tc_ingress.get(c.in_iface) if st.tc_ingress else None
        if hook is not None:
            return hook(self, c)
        return self.stack_receive(c)

    def stack_receive(self, c: Cursor) -> list:
        steps = []
        for nc, b in self.netfilter(c, ("PREROUTING",)):
            if b is not None and not b.accepted:
                steps += self._nf_end(nc, b)
                continue
            steps.append((nc, self.route_received))
        return steps

    def route_received(self, c: Cursor) -> list:
        route = self.lookup(c)
        if route is None:
            return self.end(c, REJECTED, "no-route", f"{self.station(c).owner} has no route "
                            f"to {c.packet.dst}")
        c = self.hop(c, "routing", f"route {_dst(c.packet)}", [_route_text(route)])
        if route.type == "local":
            return [(c, self.local_in)]
        if route.drops:
            return self.end(c, DROPPED, "blackhole", f"route {route.dst} is {route.type}: "
                            "the kernel drops the packet")
        st = self.station(c)
        if st.kind == "pod":
            return self.end(c, DROPPED, "no-route", f"{st.owner} does not forward packets "
                            f"for {c.packet.dst}")
        if c.packet.ttl <= 1:
            return self.end(c, DROPPED, "ttl-exceeded", "TTL exceeded in transit")
        c = replace(c, packet=replace(c.packet, ttl=c.packet.ttl - 1))
        steps = []
        for nc, b in self.netfilter(c, ("FORWARD",), route.dev):
            if b is not None and not b.accepted:
                steps += self._nf_end(nc, b)
                continue
            steps.append((replace(nc, route=route), self.postrouting))
        return steps

    def local_in(self, c: Cursor) -> list:
        """INPUT, then IPVS, decapsulation, or the socket."""
        steps = []
        for nc, b in self.netfilter(c, ("INPUT",)):
            if b is not None and not b.accepted:
                steps += self._nf_end(nc, b)
                continue
            steps += self.after_input(nc)
        return steps

    def after_input(self, c: Cursor) -> list:
        st = self.station(c)
        c = self.ipvs_reply(c)  # ip_vs_reply4 runs at LOCAL_IN after the filter table
        p = c.packet
        if p.outer is not None:
            return self.decapsulate(c)
        ipvs = st.ipvs.get(p.family)
        if ipvs is not None and c.direction == REQUEST:
            vs = ipvs.virtual_server(p.dst, p.protocol.upper(), p.dport)
            if vs is not None:
                return self.ipvs_forward(c, vs)
        return self.deliver(c)

    def deliver(self, c: Cursor) -> list:
        st = self.station(c)
        p = c.packet
        if c.direction == REPLY:
            return self.reply_arrived(c)
        program = st.socket_programs.get((p.protocol, p.dport)) if st.socket_programs else None
        if program is not None:  # a proxy listens here (a sidecar, an ingress controller)
            return program(self, c)
        return self.deliver_socket(c)

    def deliver_socket(self, c: Cursor) -> list:
        """The listening socket takes the packet; its reply starts back."""
        st = self.station(c)
        p = c.packet
        if p.protocol == "icmp":
            sock, what = None, "the kernel answers the echo request"
        else:
            sock = st.listener(p.protocol, p.dport)
            what = (f"socket {p.protocol}/{p.dport}" +
                    (f" ({sock.name})" if sock and sock.name else "") + f" of {st.owner}")
        if p.protocol != "icmp" and sock is None:
            if not st.assume_listening:
                return self.end(c, REJECTED, "no-socket", f"nothing listens on {p.protocol}/"
                                f"{p.dport} in {st.owner}: "
                                f"{'TCP RST' if p.protocol == 'tcp' else 'ICMP port unreachable'}")
            what = (f"{p.protocol}/{p.dport} in {st.owner} (not a declared containerPort: "
                    "netsim assumes the application listens)")
        c = self.hop(c, "socket", "delivered", [what])
        reply = replace(c, direction=REPLY, packet=c.packet.reply(), nf=None, in_iface=None,
                        route=None)
        return [(replace(reply, delivered_to=st.owner), self.send)]

    def original_destination(self, c: Cursor) -> tuple[str, int]:
        """SO_ORIGINAL_DST: the destination before this namespace's own NAT."""
        if c.original_dst is not None and c.original_dst[0] == c.netns:
            return c.original_dst[1], c.original_dst[2]
        return c.packet.dst, c.packet.dport

    def open_leg(self, c: Cursor, packet: TracePacket, uid: int | None = None) -> Cursor:
        """A proxy in c.netns, having accepted c's connection, opens the next one."""
        leg = Leg(c.origin, c.sent, c.packet, c.connected)
        return replace(c, origin=c.netns, sent=packet, packet=packet, uid=uid, nf=None,
                       in_iface=None, route=None, original_dst=None, connected=None,
                       legs=(*c.legs, leg))

    def reply_arrived(self, c: Cursor) -> list:
        sent = c.sent
        p = c.packet
        if c.netns != c.origin:
            return self.end(c, DROPPED, "reply-mismatch", f"the reply reached {c.netns}, not "
                            "the sender")
        # socket LB connected the socket to the backend itself (getpeername() still
        # answers the VIP, from lb4_reverse_sk)
        peer = c.connected[:2] if c.connected else (sent.dst, sent.dport)
        if (p.src, p.sport, p.dst, p.dport) != (*peer, sent.src, sent.sport):
            return self.end(c, DROPPED, "reply-mismatch",
                            f"the reply comes from {_ep(p.src, p.sport)} but the sender "
                            f"connected to {_ep(sent.dst, sent.dport)}: its socket resets it")
        c = self.hop(c, "socket", "reply received", [f"the sender's socket accepts the reply "
                                                     f"from {_ep(p.src, p.sport)}"])
        if c.legs:  # the proxy answers the connection it accepted, from its own socket
            leg = c.legs[-1]
            back = replace(c, origin=leg.origin, sent=leg.sent, connected=leg.connected,
                           legs=c.legs[:-1], packet=leg.arrived.reply(), nf=None,
                           in_iface=None, route=None, uid=None)
            return [(back, self.send)]
        return self.end(c, DELIVERED, "delivered", REASONS_DELIVERED, c.delivered_to)

    # ------------------------------------------------------------------ devices

    def transmit(self, c: Cursor) -> list:
        c = self.ipvs_reply(c)  # ip_vs_out: after FORWARD/POSTROUTING's NAT, before the device
        st = self.station(c)
        route = c.route
        dev = st.namespace.interface(route.dev) if route.dev else None
        if route.type == "local" or (dev is not None and dev.kind == "loopback"):
            return [(replace(c, in_iface="lo", nf=c.nf, route=None), self.receive)]
        if dev is None:
            return self.end(c, DROPPED, "no-route", f"route names no device: {route}")
        if dev.kind == "veth" and dev.peer is not None:
            peer_ns, peer_if = dev.peer
            target = self.dp.station(peer_ns)
            peer_dev = target.namespace.interface(peer_if or "eth0")
            packet = replace(c.packet, src_mac=dev.mac,
                             dst_mac=peer_dev.mac if peer_dev else None)
            c = self.hop(c, "veth", f"{dev.name} -> {target.owner} {peer_if}", (), packet,
                         interface=dev.name)
            return [(replace(c, netns=target.id, in_iface=peer_if, nf=None, route=None),
                     self.receive)]
        if dev.kind in ("ipip", "vxlan", "geneve"):
            return self.encapsulate(c, dev, route)
        if dev.kind == "ethernet":
            hop_ip = route.via or (c.packet.outer.dst if c.packet.outer else c.packet.dst)
            return self.wire(c, dev, hop_ip)
        return self.end(c, DROPPED, "no-route", f"device {dev.name} ({dev.kind}) is not "
                        "emulated")

    def encapsulate(self, c: Cursor, dev, route: Route) -> list:
        st = self.station(c)
        p = c.packet
        if dev.kind == "ipip":
            remote = route.via
            detail = [f"{dev.name}: IPIP to {remote}"]
            outer = Outer("ipip", _local_of(st, dev), remote)
        else:
            neigh = st.namespace.neighbour(dev.name, route.via) if route.via else None
            fdb = next((f for f in st.namespace.fdb
                        if neigh is not None and f.mac == neigh.lladdr), None)
            if neigh is None or fdb is None:
                return self.end(c, DROPPED, "no-route", f"{dev.name}: no neighbour/FDB entry "
                                f"for {route.via}")
            remote = fdb.dst
            detail = [f"neighbour {route.via} lladdr {neigh.lladdr} dev {dev.name}",
                      f"fdb {fdb.mac} dst {fdb.dst} (VNI {dev.vni}, UDP {dev.port})"]
            local_vtep = dev.mac
            outer = Outer(dev.kind, _local_of(st, dev), remote, _flow_port(p), dev.port or 0,
                          dev.vni, local_vtep, neigh.lladdr)
        packet = replace(p, outer=outer)
        c = self.hop(c, dev.kind, f"encapsulate on {dev.name}", detail, packet,
                     interface=dev.name)
        # the outer packet is locally generated: OUTPUT, routing, POSTROUTING on the uplink
        return [(replace(c, nf=None, in_iface=None, route=None), self.send)]

    def decapsulate(self, c: Cursor) -> list:
        st = self.station(c)
        o = c.packet.outer
        dev = next((i for i in st.namespace.interfaces if i.kind == o.kind and
                    (o.kind == "ipip" or i.port == o.dport)), None)
        if dev is None:
            return self.end(c, DROPPED, "no-socket", f"{st.owner} has no {o.kind} device for "
                            "the encapsulated packet")
        inner = replace(c.packet, outer=None)
        c = self.hop(c, o.kind, f"decapsulate on {dev.name}",
                     [f"outer {o.src} -> {o.dst}" + (f" VNI {o.vni}" if o.vni else "")], inner,
                     interface=dev.name)
        return [(replace(c, in_iface=dev.name, nf=None, tunnel_id=o.vni), self.receive)]

    def wire(self, c: Cursor, dev, hop_ip: str) -> list:
        """The underlay: the next hop's NIC, the subnet's router, or the cloud load balancer."""
        dp = self.dp
        p = c.packet
        dst = p.outer.dst if p.outer else p.dst
        node = dp.node_by_ip.get(hop_ip)
        if node is None:  # the router: it knows the nodes, the LB and the outside
            node = dp.node_by_ip.get(dst)
        if node is not None:
            target = dp.host_station(node)
            eth0 = target.namespace.interface("eth0")
            packet = replace(p, src_mac=dev.mac, dst_mac=eth0.mac if eth0 else None)
            c = self.hop(c, "underlay", f"{dev.name} -> node {node}", [f"next hop {hop_ip}"],
                         packet, interface=dev.name)
            return [(replace(c, netns=target.id, in_iface="eth0", nf=None, route=None),
                     self.receive)]
        if dp.is_external(dst):
            c = self.hop(c, "underlay", f"{dev.name} -> outside the cluster ({dst})",
                         [f"next hop {hop_ip}"], interface=dev.name)
            return [(replace(c, netns=EXTERNAL_NETNS, in_iface="eth0", nf=None, route=None),
                     self.receive)]
        if dst in dp.load_balancer_ips:
            return self.cloud_lb(c, dst)
        if dst in dp.external_service_ips:
            return self.to_nodes(c, dst, "the network routes the Service's externalIP to the "
                                 "nodes (Kubernetes leaves this to the cluster administrator)")
        return self.end(c, DROPPED, "unroutable", f"the underlay has no route to {dst} "
                        f"(next hop {hop_ip})")

    def cloud_lb(self, c: Cursor, ip: str) -> list:
        """The cloud load balancer in front of a LoadBalancer Service: it sends the packet,
        unchanged, to a node; for externalTrafficPolicy Local only to nodes whose health
        check passes (nodes with a ready local endpoint)."""
        dp = self.dp
        services = dp.load_balancer_ips[ip]
        nodes, why = list(dp.ready_nodes), "every node"
        if all(s.external_traffic_policy == "Local" for s in services):
            local = {p.node_name for s in services for p in _ready_pods(dp, s)}
            nodes = [n for n in nodes if n in local]
            why = "nodes passing the healthCheckNodePort probe (a ready local endpoint)"
        if not nodes:
            return self.end(c, DROPPED, "no-local-endpoints", f"the load balancer for {ip} "
                            "has no healthy node")
        out = []
        share = 1.0 / len(nodes)
        for node in nodes:
            nc = replace(c, probability=c.probability * share)
            target = dp.host_station(node)
            nc = self.hop(nc, "cloud-lb", f"{ip} -> node {node}",
                          [f"{len(nodes)} backend node(s): {why}"], interface=None)
            out.append((replace(nc, netns=target.id, in_iface="eth0", nf=None, route=None),
                        self.receive))
        return self.choose(out)

    def to_nodes(self, c: Cursor, ip: str, why: str) -> list:
        """An address the underlay delivers to any node (externalIPs): one branch per node."""
        nodes = list(self.dp.ready_nodes)
        out = []
        for node in nodes:
            nc = replace(c, probability=c.probability / len(nodes))
            nc = self.hop(nc, "underlay", f"{ip} -> node {node}", [why], interface=None)
            out.append((replace(nc, netns=self.dp.host_station(node).id, in_iface="eth0",
                                nf=None, route=None), self.receive))
        return self.choose(out)

    # ------------------------------------------------------------------ IPVS

    def ipvs_forward(self, c: Cursor, vs) -> list:
        p = c.packet
        label = f"{vs.protocol} {_ep(vs.address, vs.port)} {vs.scheduler}"
        if not vs.real_servers:
            return self.end(c, REJECTED, "no-endpoints", f"IPVS virtual server {label} has no "
                            "real server: ICMP port unreachable")
        out = []
        share = 1.0 / len(vs.real_servers)
        for rs in vs.real_servers:
            new = replace(p, dst=rs.address, dport=rs.port)
            nc = replace(c, probability=c.probability * share)
            nc = self.hop(nc, "ipvs", f"{label} -> {_ep(rs.address, rs.port)}",
                          [f"service {vs.service}", f"{len(vs.real_servers)} real server(s), "
                           f"scheduler {vs.scheduler}, forward {rs.forward}"], new)
            key = (new.protocol, new.dst, new.dport, new.src, new.sport)
            conns = (*nc.ipvs_conns, (c.netns, key, (vs.address, vs.port)))
            # the skb keeps its mark (KUBE-MARK-MASQ) but IPVS sends it as a new flow
            mark = c.nf.mark if c.nf is not None else 0
            nf = replace(_nf_packet(new, None), mark=mark)
            out.append((replace(nc, ipvs_conns=conns, nf=nf, in_iface=None), self.send))
        return self.choose(out)

    def ipvs_reply(self, c: Cursor) -> Cursor:
        """A real server's answer through the IPVS connection: source back to the VIP."""
        if not c.ipvs_conns or c.direction != REPLY:
            return c
        p = c.packet
        key = (p.protocol, p.src, p.sport, p.dst, p.dport)
        for netns, reply_key, (vip, vport) in c.ipvs_conns:
            if netns == c.netns and reply_key == key:
                new = replace(p, src=vip, sport=vport)
                return self.hop(c, "ipvs", f"reply: source {_ep(p.src, p.sport)} -> "
                                f"{_ep(vip, vport)}", ["IPVS connection (Masq)"], new)
        return c

    # ------------------------------------------------------------------ lookups

    def lookup(self, c: Cursor) -> Route | None:
        st = self.station(c)
        p = c.packet
        dst = p.outer.dst if p.outer else p.dst
        ipvs = st.ipvs.get(p.family)
        if ipvs is not None and dst in ipvs.dummy_addresses:
            return Route(dst, dev="kube-ipvs0", type="local", table="local", scope="host")
        if st.kind == "external" and self.dp.is_external(dst):  # the world owns the rest
            return Route(dst, dev="eth0", type="local", table="local", scope="host")
        return st.fib.lookup(dst)

    def _nf_end(self, c: Cursor, b: netfilter.Branch) -> list:
        v = b.verdict
        entry = v.by
        chain = entry.chain if entry else ""
        ruleset = self.station(c).rulesets.get(c.packet.family)
        policies = [_chain_title(ruleset, chain) for chain in _policies_in(b)]
        where = f"{entry.table}:{entry.chain} rule {entry.number}" if entry else v.hook
        comment = _comment(entry)
        text = f"{v.kind} in {where}" + (f" ({comment})" if comment else "")
        if policies:
            text += f"; policies evaluated: {', '.join(policies)}"
        if chain.startswith("cali-"):
            reason = "policy-denied"
        elif chain == "KUBE-SOURCE-RANGES-FIREWALL" or (
                comment and "traffic not accepted by KUBE-FW-" in comment):
            reason = "lb-source-range"
        elif comment and comment.endswith("has no local endpoints"):
            reason = "no-local-endpoints"
        elif comment and comment.endswith("has no endpoints"):
            reason = "no-endpoints"
        else:
            reason = "netfilter-reject" if v.kind == "REJECT" else "netfilter-drop"
        result = REJECTED if v.kind == "REJECT" else DROPPED
        return self.end(c, result, reason, text)


REASONS_DELIVERED = "a socket accepted the packet and its reply reached the sender"


# ---------------------------------------------------------------- the entry point


def walk(dp: Dataplane, packet: TracePacket, origin: str, *, mode: str = "sample",
         seed: int = 0) -> Trace:
    """Trace `packet` sent by a process in namespace `origin` (a netsim.topology id, or
    "external"): the followed path (mode "sample"), or every path (mode "all", in
    `Trace.branches`, probabilities summing to 1)."""
    if mode not in ("sample", "all"):
        raise ValueError("mode must be 'sample' or 'all'")
    walker = Walker(dp, mode, seed)
    start = dp.station(origin)
    first = Cursor(origin, packet, origin=origin, sent=packet, uid=start.app_uid)
    first = walker.hop(first, "socket", "send", [f"{start.owner} sends {packet.text()}"],
                       interface=None)
    work: list = [(first, walker.connect)]
    ends: list[End] = []
    while work:
        cursor, step = work.pop()
        for item in step(cursor):
            if isinstance(item, End):
                ends.append(item)
            else:
                work.append(item)
    traces = [Trace(e.result, e.reason, e.detail, e.delivered_to if e.result == DELIVERED
                    else None, e.cursor.probability, e.cursor.hops, packet) for e in ends]
    traces.sort(key=lambda t: (-round(t.probability, 9), t.delivered_to or "", t.reason))
    if mode == "sample" or len(traces) == 1:
        return traces[0]
    return replace(traces[0], branches=tuple(traces))


# ---------------------------------------------------------------- conversions


def _nf_packet(p: TracePacket, in_iface: str | None) -> netfilter.Packet:
    o = p.outer
    if o is not None:
        return netfilter.Packet(o.src, o.dst, o.protocol, o.sport, o.dport, in_iface=in_iface,
                                tcp_flags=frozenset())
    flags = frozenset(_FLAG_NAMES[f] for f in p.tcp_flags if f in _FLAG_NAMES)
    return netfilter.Packet(p.src, p.dst, p.protocol, p.sport, p.dport, in_iface=in_iface,
                            tcp_flags=flags if p.protocol == "tcp" else frozenset(),
                            icmp_type=p.icmp_type)


def _from_nf(p: TracePacket, n: netfilter.Packet) -> TracePacket:
    if p.outer is not None:
        outer = replace(p.outer, src=n.src, dst=n.dst, sport=n.sport, dport=n.dport)
        return replace(p, outer=outer) if outer != p.outer else p
    if (n.src, n.dst, n.sport, n.dport) == (p.src, p.dst, p.sport, p.dport):
        return p
    return replace(p, src=n.src, dst=n.dst, sport=n.sport, dport=n.dport)


def _changed(old: TracePacket, new: TracePacket) -> tuple[str, ...]:
    fields = ("src", "dst", "sport", "dport", "outer")
    return tuple(f for f in fields if getattr(old, f) != getattr(new, f))


_NOTABLE = ("DNAT", "SNAT", "MASQUERADE", "REDIRECT", "REJECT", "DROP", "TPROXY")


def _nf_action(hooks: tuple[str, ...], b: netfilter.Branch) -> str:
    """The hook and what decided in it: the NAT or verdict rule, with its chain and comment."""
    hook = "+".join(hooks)
    notable = [e for e in b.trace if e.rule is not None and e.rule.target is not None
               and e.rule.target.name in _NOTABLE]
    parts = []
    for e in notable:
        target = e.rule.target
        options = target.save(e.rule.family)
        comment = _comment(e)
        parts.append(f"{target.name}{' ' + options if options else ''} in {e.chain}"
                     + (f' "{comment}"' if comment else ""))
    ct_nat = [n for n in b.notes if n.startswith("conntrack")]
    parts += ct_nat
    accepted_by = [e for e in b.trace if e.rule is not None and e.chain.startswith("cali-")
                   and e.rule.target is not None and e.rule.target.name == "MARK"
                   and e.rule.target.value & FELIX_ACCEPT_MARK]
    if b.verdict.kind == "ACCEPT" and accepted_by:
        parts.append(f"policy accept mark set in {accepted_by[-1].chain}")
    text = f"{hook}: {b.verdict.kind}"
    return text + (f" ({'; '.join(parts)})" if parts else "")


def _nf_detail(b: netfilter.Branch, texts: dict, fam: int) -> list[str]:
    """The branch's trace entries as text; `texts` memoises them per station (a rule's text is
    the same on every packet, and formatting it was a tenth of a walk)."""
    lines = []
    for e in b.trace:
        key = (fam, e.table, e.chain, e.kind, e.number, e.policy)
        text = texts.get(key)
        if text is None:
            text = texts[key] = str(e)
        lines.append(text)
    if b.ct_state:
        lines.insert(0, f"conntrack: {b.ct_state}")
    lines += [f"note: {n}" for n in b.notes]
    return lines


def _policies_in(b: netfilter.Branch) -> list[str]:
    """The felix policy chains a packet went through, in order."""
    seen: list[str] = []
    for e in b.trace:
        if e.chain.startswith(("cali-pi-", "cali-po-")) and e.chain not in seen:
            seen.append(e.chain)
    return seen


def _chain_title(ruleset, chain: str) -> str:
    """A felix policy chain by the policy it holds: its first rule's comment names it
    ("KubernetesNetworkPolicy shop/default-deny-all ingress"), else the chain name."""
    table = ruleset.tables.get("filter") if ruleset is not None else None
    found = table.chains.get(chain) if table is not None else None
    if found is not None and found.rules:
        comment = _comment(netfilter.TraceEntry("", "filter", chain, "rule", 1,
                                                found.rules[0]))
        if comment:
            return f"{comment} ({chain})"
    return chain


def _comment(entry) -> str | None:
    rule = getattr(entry, "rule", None)
    if rule is None:
        return None
    found = next((m for m in rule.matches if m.name == "comment"), None)
    return getattr(found, "text", None) or None if found is not None else None


def _route_text(route: Route) -> str:
    from netsim.netns import format_route

    return format_route(route)


def _local_of(st: Station, dev) -> str:
    if dev.local:
        return dev.local
    eth0 = st.namespace.interface("eth0")
    return eth0.addresses[0].split("/")[0] if eth0 and eth0.addresses else "0.0.0.0"


def _flow_port(p: TracePacket) -> int:
    """The outer UDP source port: a hash of the inner flow in the ephemeral range, as the
    kernel's udp_flow_src_port spreads tunnelled flows."""
    lo, hi = EPHEMERAL_PORTS
    key = f"{p.protocol}|{p.src}|{p.sport}|{p.dst}|{p.dport}".encode()
    return lo + zlib.crc32(key) % (hi - lo + 1)


def _dst(p: TracePacket) -> str:
    return p.outer.dst if p.outer else p.dst


def _ep(ip: str, port: int) -> str:
    if not port:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ready_pods(dp: Dataplane, service) -> list:
    pods = []
    for s in dp.cluster.slices_for(service):
        for e in s.endpoints:
            if e.ready and e.target:
                pod = dp.cluster.pod(*e.target.split("/", 1))
                if pod is not None:
                    pods.append(pod)
    return pods
