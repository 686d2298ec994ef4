"""Walk packets through the hooks of a Ruleset: tables in kernel order, conntrack and NAT.

The order of tables and conntrack inside each hook is data (HOOK_STAGES, from the kernel's
hook priorities: raw -300, conntrack -200, mangle -150, nat dst -100, filter 0, security 50,
nat src 100, confirm last). A `statistic --mode random` rule forks the walk: every branch is
followed (mode "all") or one is drawn with the context's seed (mode "sample").
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from .addr import ip_to_int
from .conntrack import ConntrackEntry
from .model import HOOKS, Ruleset
from .packet import Context, Packet
from .trace import ACCEPT, CONTINUE, DROP, REJECT, Branch, TraceEntry, Verdict
from .walk import PacketView, Walk, ct_ref

HOOK_STAGES: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType({
    "PREROUTING": (("table", "raw"), ("conntrack",), ("table", "mangle"), ("nat", "dst")),
    "INPUT": (("conntrack",), ("table", "mangle"), ("table", "filter"), ("table", "security"),
              ("nat", "src"), ("confirm",)),
    "FORWARD": (("conntrack",), ("table", "mangle"), ("table", "filter"), ("table", "security")),
    "OUTPUT": (("table", "raw"), ("conntrack",), ("table", "mangle"), ("nat", "dst"),
               ("table", "filter"), ("table", "security")),
    "POSTROUTING": (("conntrack",), ("table", "mangle"), ("nat", "src"), ("confirm",)),
})
# Named paths through the hooks. "inbound" routes after PREROUTING: to INPUT when the
# (possibly DNATed) destination is local, else FORWARD then POSTROUTING. "local" is a packet
# sent to the node itself over loopback.
PATHS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "input": ("PREROUTING", "INPUT"),
    "forward": ("PREROUTING", "FORWARD", "POSTROUTING"),
    "output": ("OUTPUT", "POSTROUTING"),
    "local": ("OUTPUT", "POSTROUTING", "PREROUTING", "INPUT"),
    "inbound": ("PREROUTING",),
})
_ROUTED_AFTER = frozenset({"PREROUTING", "OUTPUT"})
_NEW_ICMP = {4: frozenset({8, 13, 15, 17}), 6: frozenset({128, 139})}
_ICMP_ERRORS = {4: frozenset({3, 4, 5, 11, 12}), 6: frozenset({1, 2, 3, 4})}
_MISSING = object()
_MAX_DEPTH = 1024


def evaluate_hook(ruleset: Ruleset, hook: str, packet: Packet, ctx: Context | None = None, *,
                  mode: str = "all") -> list[Branch]:
    """The branches of one packet through one hook (all of them, or one in mode "sample")."""
    return traverse(ruleset, packet, (hook,), ctx, mode=mode)


def traverse(ruleset: Ruleset, packet: Packet, path: str | Sequence[str],
             ctx: Context | None = None, *, mode: str = "all") -> list[Branch]:
    """The branches of one packet through a sequence of hooks (or a named path in PATHS).

    Between hooks the packet keeps its connection; after PREROUTING and OUTPUT the context's
    `route` (if any) may set the out interface. Branches come in rule order (the first
    statistic rule's branch first); in mode "all" their probabilities sum to 1, in mode
    "sample" the single branch is drawn with `ctx.seed`.
    """
    ctx = ctx or Context()
    if mode not in ("all", "sample"):
        raise ValueError("mode must be 'all' or 'sample'")
    if packet.family != ruleset.family:
        raise ValueError(f"IPv{packet.family} packet for an IPv{ruleset.family} ruleset")
    stages = program(path)
    rng = random.Random(ctx.seed) if mode == "sample" else None
    return _run_all(ruleset, packet, ctx, stages, rng)


def evaluate_chain(ruleset: Ruleset, table: str, chain: str, packet: Packet,
                   ctx: Context | None = None, *, hook: str | None = None,
                   mode: str = "all") -> list[Branch]:
    """The branches of a packet through one chain on its own (after the conntrack lookup).

    A user chain that falls through or RETURNs ends with verdict CONTINUE; a built-in chain
    ends with its policy. `hook` defaults to a hook that reaches the chain.
    """
    ctx = ctx or Context()
    tab = ruleset.tables.get(table)
    if tab is None or chain not in tab.chains:
        raise KeyError(f"no chain {table}:{chain}")
    if hook is None:
        reached = sorted(tab.reached_from.get(chain, ()), key=HOOKS.index)
        hook = reached[0] if reached else ("PREROUTING" if chain not in HOOKS else chain)
    stages = (("enter", hook), ("conntrack",), ("chain", table, chain))
    rng = random.Random(ctx.seed) if mode == "sample" else None
    return _run_all(ruleset, packet, ctx, stages, rng)


def program(path: str | Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The stage program for a path: each hook's stages, with routing between hooks."""
    hooks = PATHS.get(path) if isinstance(path, str) else tuple(path)
    if hooks is None:
        raise ValueError(f"unknown path {path!r}; use one of {sorted(PATHS)} or hook names")
    stages: list[tuple[str, ...]] = []
    for i, hook in enumerate(hooks):
        if hook not in HOOK_STAGES:
            raise ValueError(f"unknown hook {hook!r}")
        if i and hooks[i - 1] == "POSTROUTING" and hook == "PREROUTING":
            stages.append(("loopback",))
        stages.append(("enter", hook))
        stages.extend(HOOK_STAGES[hook])
        if hook in _ROUTED_AFTER and i + 1 < len(hooks):
            stages.append(("route",))
    if path == "inbound":
        stages.append(("route",))
        stages.append(("decide",))
    return tuple(stages)


# --- the engine -------------------------------------------------------------------------------


def _run_all(ruleset: Ruleset, packet: Packet, ctx: Context, stages: tuple,
             rng: random.Random | None) -> list[Branch]:
    first = Walk(ctx, _view(packet), stages)
    first.initial_ref = packet.conntrack
    first.initial_related = packet.related_to
    first.original = packet
    work = [first]
    results: list[tuple[tuple, Branch]] = []
    while work:
        w = work.pop()
        kind = _run(ruleset, w, work, rng)
        results.append((w.order, _finish(w, kind, packet)))
    results.sort(key=lambda item: item[0])
    return [branch for _, branch in results]


def _view(packet: Packet) -> PacketView:
    p = PacketView()
    p.family = packet.family
    p.proto = packet.proto
    p.src, p.dst = packet.src, packet.dst
    p.src_i, p.dst_i = ip_to_int(packet.src), ip_to_int(packet.dst)
    p.sport, p.dport = packet.sport, packet.dport
    p.in_iface, p.out_iface = packet.in_iface, packet.out_iface
    p.mark = packet.mark
    p.flags = packet.flag_bits()
    p.icmp_type, p.icmp_code = packet.icmp_type, packet.icmp_code
    p.fragment = packet.fragment
    p.length = packet.length
    return p


def _packet(w: Walk, original: Packet) -> Packet:
    p = w.p
    return replace(original, src=p.src, dst=p.dst, sport=p.sport, dport=p.dport, mark=p.mark,
                   in_iface=p.in_iface, out_iface=p.out_iface, conntrack=ct_ref(w))


def _run(ruleset: Ruleset, w: Walk, work: list[Walk], rng) -> str:
    """Run a walk's stages to the end; forks are pushed on `work`. Returns the verdict kind."""
    stages = w.stages
    while w.stage < len(stages):
        stage = stages[w.stage]
        kind = stage[0]
        verdict = None
        if kind == "table":
            if not w.stack:
                table = ruleset.tables.get(stage[1])
                if table is not None:
                    chain = table.chains[w.hook]
                    w.base = chain
                    w.stack.append([table, chain, _candidates(chain, w.p), 0])
            if w.stack:
                verdict = _loop(w, work, rng)
        elif kind == "nat":
            verdict = _nat_stage(ruleset, w, work, rng, stage[1])
        elif kind == "conntrack":
            _attach(w)
        elif kind == "enter":
            w.hook = stage[1]
            w.hooks.append(stage[1])
        elif kind == "confirm":
            _confirm(w)
        elif kind == "route":
            if w.ctx.route is not None:
                out = w.ctx.route(_packet(w, w.original))
                if out is not None:
                    w.p.out_iface = out
        elif kind == "decide":
            more = ("INPUT",) if w.ctx.is_local(w.p.dst) else ("FORWARD", "POSTROUTING")
            stages = w.stages = stages[:w.stage + 1] + program(more)
        elif kind == "loopback":
            w.p.in_iface, w.p.out_iface = w.p.out_iface or "lo", None
        elif kind == "chain":
            if not w.stack:
                table = ruleset.tables[stage[1]]
                chain = table.chains[stage[2]]
                w.base = chain if chain.policy is not None else None
                w.stack.append([table, chain, _candidates(chain, w.p), 0])
            verdict = _loop(w, work, rng)
            if verdict != ACCEPT:
                return verdict
        if verdict in (DROP, REJECT):
            return verdict
        w.stage += 1
    return ACCEPT


def _candidates(chain, p: PacketView):
    index = chain.index
    if index is None:
        return range(len(chain.rules))
    return index.candidates(p.dst_i, p.proto, p.dport)


def _iface_ok(pattern: str, name: str | None) -> bool:
    name = name or ""
    if pattern[-1] == "+":
        return name.startswith(pattern[:-1])
    return name == pattern


def _loop(w: Walk, work: list[Walk], rng) -> str:
    """Walk the chain stack of one table until a verdict (resumable after a fork)."""
    stack = w.stack
    p = w.p
    hook = w.hook
    trace = w.trace
    while stack:
        frame = stack[-1]
        table, chain, cands, i = frame
        if w.resume is not None:
            rule, start, pos = w.resume
            w.resume = None
            if not _matches(w, rule, start, pos, work, rng):
                continue
        else:
            if i >= len(cands):
                end = len(chain.rules) + 1
                if chain.policy is None:
                    trace.append(TraceEntry(hook, table.name, chain.name, "return", end))
                    if len(stack) > 1:
                        stack.pop()
                        continue
                return _underflow(w, table)
            pos = cands[i]
            frame[3] = i + 1
            rule = chain.rules[pos]
            if rule.unsupported is not None:
                trace.append(TraceEntry(hook, table.name, chain.name, "unsupported", pos + 1,
                                        rule))
                w.unsupported.append(f"{table.name}:{chain.name}:{pos + 1}: {rule.unsupported}")
                continue
            # the rule header (-s -d -p -i -o -f), inline for speed
            net = rule.src
            if net is not None and ((p.src_i & net.mask) == net.addr) == rule.src_inv:
                continue
            net = rule.dst
            if net is not None and ((p.dst_i & net.mask) == net.addr) == rule.dst_inv:
                continue
            if rule.protocol is not None and (p.proto == rule.protocol) == rule.proto_inv:
                continue
            if rule.in_iface is not None and _iface_ok(rule.in_iface, p.in_iface) == rule.in_inv:
                continue
            if rule.out_iface is not None and (
                    _iface_ok(rule.out_iface, p.out_iface) == rule.out_inv):
                continue
            if rule.fragment is not None and p.fragment != rule.fragment:
                continue
            if rule.matches and not _matches(w, rule, 0, pos, work, rng):
                continue
        entry = TraceEntry(hook, table.name, chain.name, "rule", pos + 1, rule)
        trace.append(entry)
        if rule.jump is not None:
            target = table.chains[rule.jump]
            frame_new = [table, target, _candidates(target, p), 0]
            if rule.goto:
                stack[-1] = frame_new
            else:
                stack.append(frame_new)
                if len(stack) > _MAX_DEPTH:  # only an unreachable chain evaluated alone
                    raise ValueError(f"jump loop through {table.name}:{rule.jump}")
            continue
        target = rule.target
        if target is None:
            continue
        verdict = target.apply(w)
        if verdict is None:
            continue
        if verdict == "RETURN":
            if len(stack) > 1:
                stack.pop()
                continue
            return _underflow(w, table)
        stack.clear()
        _decided(w, entry)
        return verdict
    return ACCEPT


def _decided(w: Walk, entry: TraceEntry) -> None:
    w.decided_by = entry
    if entry.table in ("filter", "security"):
        w.filter_decision = entry


def _underflow(w: Walk, table) -> str:
    """The walk left the base chain of a table: the built-in chain's policy decides (or the
    user chain evaluated on its own simply ends)."""
    w.stack.clear()
    base = w.base
    if base is None or base.policy is None:
        return CONTINUE
    entry = TraceEntry(w.hook, table.name, base.name, "policy", len(base.rules) + 1, None,
                       base.policy)
    w.trace.append(entry)
    _decided(w, entry)
    return base.policy


def _matches(w: Walk, rule, start: int, pos: int, work: list[Walk], rng) -> bool:
    """Whether the rule's `-m` matches hold (in order, stopping at the first that fails).

    A `statistic --mode random` match forks: the matching branch is pushed on `work` to resume
    after this match, the current walk goes on as "not matched".
    """
    matches = rule.matches
    w.rule_key = (rule.table, rule.chain, pos + 1)
    for k in range(start, len(matches)):
        match = matches[k]
        if match.forks:
            chance = match.probability()
            if chance <= 0.0:
                return False
            if chance >= 1.0:
                continue
            if rng is not None:
                hit = (rng.getrandbits(31) < match.stored) != match.invert
                w.prob *= chance if hit else 1.0 - chance
                if not hit:
                    return False
                continue
            child = w.fork()
            child.prob *= chance
            child.resume = (rule, k + 1, pos)
            child.order = w.order + (0,)
            work.append(child)
            w.prob *= 1.0 - chance
            w.order = w.order + (1,)
            return False
        if not match.test(w):
            return False
    return True


# --- conntrack ------------------------------------------------------------------------------


def _ct_get(w: Walk, key):
    value = w.ct_changes.get(key, _MISSING)
    if value is _MISSING:
        return w.ctx.conntrack.get(key)
    return value


def _attach(w: Walk) -> None:
    """Find or create the packet's connection and its state (nf_conntrack_in)."""
    if w.ct_attached:
        return
    w.ct_attached = True
    p = w.p
    if w.untracked:
        w.ct, w.ct_state = None, "UNTRACKED"
        return
    ref = w.initial_ref
    if ref is not None:
        entry = _ct_get(w, (ref.zone, ref.orig))
        if entry is not None:
            w.ct, w.ct_reply = entry, ref.reply_direction
            seen = ref.reply_direction or "SEEN_REPLY" in entry.status
            w.ct_state = "ESTABLISHED" if seen else "NEW"
            return
    flow = p.flow()
    entry = _ct_get(w, (w.zone, flow))
    if entry is not None and "CONFIRMED" not in entry.status:
        # only confirmed connections are in the kernel's hash table; an unconfirmed one
        # belongs to the packet that created it (found through its CtRef above)
        entry = None
    if entry is not None:
        reply = flow != entry.orig
        w.ct, w.ct_reply = entry, reply
        if reply:
            w.ct_state = "ESTABLISHED"
            if "SEEN_REPLY" not in entry.status:
                w.store_entry(entry, replace(entry, status=entry.status | {"SEEN_REPLY",
                                                                           "ASSURED"}))
        else:
            w.ct_state = "ESTABLISHED" if "SEEN_REPLY" in entry.status else "NEW"
        return
    state = _new_state(w, p)
    if state == "RELATED":
        return
    if state == "INVALID":
        w.ct, w.ct_state = None, "INVALID"
        w.note("conntrack: INVALID (no connection, and the packet cannot start one)")
        return
    entry = ConntrackEntry(flow, flow.inverted(), zone=w.zone)
    w.store_entry(None, entry)
    w.ct_created.append(entry.orig)
    w.ct_state = "NEW"


def _new_state(w: Walk, p: PacketView) -> str:
    """NEW, INVALID or RELATED for a packet that no connection knows."""
    family = p.family
    if p.proto in (1, 58):
        if p.icmp_type in _ICMP_ERRORS[family]:
            related = w.initial_related
            if related is not None:
                for flow in (related, related.inverted()):
                    entry = _ct_get(w, (w.zone, flow))
                    if entry is not None:
                        w.ct, w.ct_reply = entry, related == entry.orig
                        w.ct_state = "RELATED"
                        return "RELATED"
            return "INVALID"
        return "NEW" if p.icmp_type in _NEW_ICMP[family] else "INVALID"
    if p.proto == 6:
        flags = p.flags
        syn, ack, rst, fin = flags & 2, flags & 16, flags & 4, flags & 1
        if rst or fin or (syn and ack):
            return "INVALID"
        if syn:
            return "NEW"
        return "NEW" if (ack and w.ctx.tcp_loose) else "INVALID"
    return "NEW"


def _confirm(w: Walk) -> None:
    entry = w.ct
    if entry is not None and "CONFIRMED" not in entry.status:
        w.store_entry(entry, replace(entry, status=entry.status | {"CONFIRMED"}))
        w.ct_created.clear()


def _nat_stage(ruleset: Ruleset, w: Walk, work: list[Walk], rng, manip: str) -> str | None:
    """nat table for a new connection (once per manip), else the recorded translation."""
    if not w.stack:
        entry = w.ct
        if entry is None:
            return None
        table = ruleset.tables.get("nat")
        if manip in entry.nat_done or w.ct_state != "NEW" or w.ct_reply or table is None:
            w.apply_recorded_nat(manip)
            return None
        chain = table.chains[w.hook]
        w.base = chain
        w.stack.append([table, chain, _candidates(chain, w.p), 0])
    verdict = _loop(w, work, rng)
    if verdict in (DROP, REJECT):
        return verdict
    entry = w.ct
    if entry is not None and manip not in entry.nat_done:  # no NAT rule: a null binding
        w.store_entry(entry, replace(entry, nat_done=entry.nat_done | {manip}))
    return None


def _finish(w: Walk, kind: str, original: Packet) -> Branch:
    ctx = w.ctx
    if kind in (DROP, REJECT) and w.ct_created and w.ct is not None:
        # an unconfirmed connection dies with its first packet
        w.ct_changes[(w.ct.zone, w.ct.orig)] = None
        w.ct_changes[(w.ct.zone, w.ct.reply)] = None
    by = w.decided_by
    if kind == ACCEPT and w.filter_decision is not None:
        by = w.filter_decision  # what let the packet through: the filter table's say
    verdict = Verdict(kind, w.hook or None, by, w.reject_with if kind == REJECT else None)
    return Branch(
        verdict=verdict,
        packet=_packet(w, original),
        probability=w.prob,
        trace=tuple(w.trace),
        conntrack_entry=w.ct,
        ct_state=w.ct_state,
        conntrack=ctx.conntrack.updated(w.ct_changes),
        recent=ctx.recent.updated(w.recent_changes),
        counters=ctx.counters.updated(w.nth_changes),
        hooks=tuple(w.hooks),
        notes=tuple(w.notes),
        unsupported=tuple(w.unsupported),
        tproxy=w.tproxy_to,
    )
