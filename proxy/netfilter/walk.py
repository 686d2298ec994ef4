"""The mutable state of one branch while it walks the hooks (never shared between branches)."""

from __future__ import annotations

from dataclasses import replace

from .addr import ip_to_int
from .conntrack import ConntrackEntry, CtRef, FlowTuple
from .targets import ACCEPT, DROP

_MISSING = object()


class PacketView:
    """The packet being walked, with addresses also as ints for the matches."""

    __slots__ = ("dport", "dst", "dst_i", "family", "flags", "fragment", "icmp_code",
                 "icmp_type", "in_iface", "length", "mark", "out_iface", "proto", "sport",
                 "src", "src_i")

    def copy(self) -> PacketView:
        other = PacketView.__new__(PacketView)
        for name in PacketView.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def flow(self) -> FlowTuple:
        return FlowTuple(self.proto, self.src, self.sport, self.dst, self.dport)


class Walk:
    """One branch in progress: packet, position in the stage program, state changes, trace."""

    __slots__ = (
        "base",
        "ct",
        "ct_attached",
        "ct_changes",
        "ct_created",
        "ct_reply",
        "ct_state",
        "ctx",
        "decided_by",
        "filter_decision",
        "hook",
        "hooks",
        "initial_ref",
        "initial_related",
        "notes",
        "nth_changes",
        "order",
        "original",
        "p",
        "prob",
        "recent_changes",
        "reject_with",
        "resume",
        "rule_key",
        "stack",
        "stage",
        "stages",
        "tproxy_to",
        "trace",
        "unsupported",
        "untracked",
        "zone",
        "zone_dir",
    )

    def __init__(self, ctx, p: PacketView, stages: tuple) -> None:
        self.ctx = ctx
        self.p = p
        self.stages = stages
        self.stage = 0
        self.stack: list[list] = []
        self.resume = None  # (rule, next match index) after a statistic fork
        self.hook = ""
        self.hooks: list[str] = []
        self.prob = 1.0
        self.trace: list = []
        self.notes: list[str] = []
        self.unsupported: list[str] = []
        self.ct: ConntrackEntry | None = None
        self.ct_reply = False
        self.ct_state = "UNTRACKED"
        self.ct_attached = False
        self.ct_changes: dict = {}
        self.ct_created: list = []
        self.recent_changes: dict = {}
        self.nth_changes: dict = {}
        self.untracked = False
        self.zone = 0
        self.zone_dir = ""
        self.reject_with: str | None = None
        self.decided_by = None
        self.filter_decision = None
        self.tproxy_to: tuple[str, int] | None = None
        self.rule_key = None
        self.base = None  # (table, built-in chain) of the table being walked
        self.order: tuple = ()
        self.initial_ref = None
        self.initial_related = None
        self.original = None

    def fork(self) -> Walk:
        """A copy that can go its own way (lists and dicts copied, frozen values shared)."""
        other = Walk.__new__(Walk)
        for name in Walk.__slots__:
            setattr(other, name, getattr(self, name))
        other.p = self.p.copy()
        other.stack = [list(frame) for frame in self.stack]
        other.hooks = list(self.hooks)
        other.trace = list(self.trace)
        other.notes = list(self.notes)
        other.unsupported = list(self.unsupported)
        other.ct_changes = dict(self.ct_changes)
        other.ct_created = list(self.ct_created)
        other.recent_changes = dict(self.recent_changes)
        other.nth_changes = dict(self.nth_changes)
        return other

    # --- services for matches and targets ----------------------------------------------------

    def note(self, text: str) -> None:
        if not self.notes or self.notes[-1] != text:
            self.notes.append(text)

    def runtime_unsupported(self, reason: str) -> None:
        self.unsupported.append(reason)
        self.note(f"unsupported: {reason} (treated as not matching)")

    def recent_get(self, key):
        value = self.recent_changes.get(key, _MISSING)
        if value is _MISSING:
            return self.ctx.recent.get(key)
        return value

    def recent_set(self, key, stamps) -> None:
        self.recent_changes[key] = stamps

    def nth_counter(self, initial: int) -> int:
        value = self.nth_changes.get(self.rule_key, _MISSING)
        if value is _MISSING:
            value = self.ctx.counters.get(self.rule_key, initial)
        return value

    def set_nth_counter(self, value: int) -> None:
        self.nth_changes[self.rule_key] = value

    def ipvs_service(self):
        """The IPVS virtual service the packet's connection was addressed to, if any."""
        flow = self.ct.orig if self.ct is not None else self.p.flow()
        for service in self.ctx.ipvs or ():
            if (service.address, service.port, service.proto) == (flow.dst, flow.dport,
                                                                  flow.proto):
                return service
        return None

    # --- conntrack ---------------------------------------------------------------------------

    def store_entry(self, old: ConntrackEntry | None, new: ConntrackEntry) -> None:
        """Record a new version of the current connection under both of its tuples."""
        zone = new.zone
        if old is not None and old.reply != new.reply:
            self.ct_changes[(zone, old.reply)] = None
        self.ct_changes[(zone, new.orig)] = new
        self.ct_changes[(zone, new.reply)] = new
        self.ct = new

    def set_ct_mark(self, mark: int) -> None:
        if self.ct is not None and self.ct.mark != mark:
            self.store_entry(self.ct, replace(self.ct, mark=mark))

    def untrack(self) -> None:
        """CT --notrack / NOTRACK: the packet gets no connection (state UNTRACKED)."""
        if self.ct_attached:
            self.note("NOTRACK after conntrack lookup: no effect")
            return
        self.untracked = True

    def set_zone(self, zone: int, direction: str) -> None:
        if self.ct_attached:
            self.note("CT --zone after conntrack lookup: no effect")
            return
        self.zone = zone
        self.zone_dir = direction

    def nat(self, manip: str, address: str, port: int) -> str:
        """Bind source or destination NAT for the connection and rewrite the packet."""
        entry = self.ct
        p = self.p
        if entry is None:
            self.note("NAT target on a packet without a connection: ignored")
            return ACCEPT
        proto = entry.orig.proto
        port = port if p.proto in (6, 17, 132, 33, 136) else (p.dport if manip == "dst"
                                                               else p.sport)
        status = set(entry.status)
        reply = entry.reply
        if manip == "dst":
            changed = (address, port) != (p.dst, p.dport)
            reply = FlowTuple(proto, address, port, reply.dst, reply.dport)
            if changed:
                status.add("DST_NAT")
            p.dst, p.dst_i, p.dport = address, ip_to_int(address), port
        else:
            changed = (address, port) != (p.src, p.sport)
            reply = FlowTuple(proto, reply.src, reply.sport, address, port)
            if changed:
                status.add("SRC_NAT")
            p.src, p.src_i, p.sport = address, ip_to_int(address), port
        self.store_entry(entry, replace(entry, reply=reply, status=frozenset(status),
                                        nat_done=entry.nat_done | {manip}))
        return ACCEPT

    def apply_recorded_nat(self, manip: str) -> None:
        """Translate a later packet of a connection as its NAT binding says (both directions)."""
        entry = self.ct
        if entry is None:
            return
        target = entry.orig.inverted() if self.ct_reply else entry.reply.inverted()
        p = self.p
        if manip == "dst" and (target.dst, target.dport) != (p.dst, p.dport):
            self.note(f"conntrack {manip} NAT: {p.dst}:{p.dport} -> {target.dst}:{target.dport}")
            p.dst, p.dst_i, p.dport = target.dst, ip_to_int(target.dst), target.dport
        elif manip == "src" and (target.src, target.sport) != (p.src, p.sport):
            self.note(f"conntrack {manip} NAT: {p.src}:{p.sport} -> {target.src}:{target.sport}")
            p.src, p.src_i, p.sport = target.src, ip_to_int(target.src), target.sport

    def tproxy(self, target) -> str:
        """TPROXY: hand the packet to a transparent socket (ACCEPT) or drop it."""
        p = self.p
        ctx = self.ctx
        any_addr = "0.0.0.0" if p.family == 4 else "::"
        laddr = target.ip if target.ip != any_addr else (ctx.primary_address(p.in_iface)
                                                          or p.dst)
        lport = target.port or p.dport
        if ctx.sockets is None:
            self.note(f"TPROXY: no socket table given; a transparent listener on "
                      f"{laddr}:{lport} is assumed")
            found = (laddr, lport)
        else:
            sock = None
            for cand in ctx.sockets:
                if (cand.remote is not None and cand.address == p.dst and cand.port == p.dport
                        and tuple(cand.remote) == (p.src, p.sport)):
                    sock = cand
                    break
            if sock is None:
                for cand in ctx.sockets:
                    if cand.remote is None and cand.port == lport and cand.address in (
                            laddr, any_addr):
                        sock = cand
                        break
            if sock is None or not sock.transparent:
                self.note(f"TPROXY: no transparent socket for {laddr}:{lport}; dropped")
                return DROP
            found = (sock.address, sock.port)
        p.mark = (p.mark & ~target.mask & 0xFFFFFFFF) ^ target.value
        self.tproxy_to = found
        return ACCEPT


def ct_ref(w: Walk) -> CtRef | None:
    if w.ct is None:
        return None
    return CtRef(w.ct.zone, w.ct.orig, w.ct_reply)
