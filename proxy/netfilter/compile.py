"""From parsed chains to a frozen Table: hook reachability, the kernel's per-hook checks, and
the chain indexes."""

from __future__ import annotations

from types import MappingProxyType

from .index import build_index
from .model import TABLE_CHAINS, Chain, OpaqueRule, Rule, Table

_new = tuple.__new__  # NamedTuple instances without the keyword-handling constructor


class CompileError(ValueError):
    """A table the kernel would refuse; the parser adds the source name."""

    def __init__(self, message: str, line: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.name = name


def compile_table(name: str, chains: dict[str, tuple[list[Rule], str | None, tuple[int, int]]],
                  edges: dict[str, set[str]] | None, restricted: dict[str, frozenset[str]],
                  strict: bool) -> tuple[Table, list[OpaqueRule]]:
    """The frozen table, and the rules made opaque (strict=False) for a hook they may not run in.

    chains: name -> (rules, policy or None, counters). edges: the jumps seen while parsing
    (None: recompute from the rules). restricted: chain -> the hooks its hook-restricted
    matches and targets allow (owner, socket, REJECT, NAT targets, TPROXY).
    """
    reached = reachability(name, chains, edges)
    opaque: list[OpaqueRule] = []
    frozen: dict[str, Chain] = {}
    for chain, (rules, policy, counters) in chains.items():
        allowed = restricted.get(chain)
        if allowed is not None:
            hooks = reached.get(chain)
            if hooks is not None and not hooks <= allowed:
                rules = check_hooks(chain, rules, hooks, strict, opaque)
        frozen[chain] = _new(Chain, (chain, tuple(rules), policy, counters, build_index(rules)))
    return Table(name, MappingProxyType(frozen), MappingProxyType(reached)), opaque


def reachability(table: str, chains: dict, edges: dict[str, set[str]] | None
                 ) -> dict[str, frozenset[str]]:
    """The hooks from which each chain can be reached; a loop reachable from a hook is an error
    (the kernel refuses it: "Too many links"); unreachable loops are allowed, as there."""
    hooks = TABLE_CHAINS[table]
    children = edges
    if children is None:
        children = {}
        for chain, (rules, _, _) in chains.items():
            targets = {r.jump for r in rules if r.jump is not None}
            if targets:
                children[chain] = targets
    # propagate hook bits down the jump graph in topological order (Kahn); only chains that
    # jump further need an in-degree
    indegree = dict.fromkeys(children, 0)
    for kids in children.values():
        for kid in kids:
            if kid in indegree:
                indegree[kid] += 1
    masks: dict[str, int] = {hook: 1 << bit for bit, hook in enumerate(hooks)}
    ready = [chain for chain, count in indegree.items() if count == 0]
    while ready:
        chain = ready.pop()
        mask = masks.get(chain, 0)
        for kid in children[chain]:
            masks[kid] = masks.get(kid, 0) | mask
            if kid in indegree:
                indegree[kid] -= 1
                if indegree[kid] == 0:
                    ready.append(kid)
    stuck = {c for c, count in indegree.items() if count}
    if stuck:  # left over by Kahn: loops, and chains below loops
        _order_below_loops(table, stuck, children, masks)
    names = {mask: frozenset(h for bit, h in enumerate(hooks) if mask >> bit & 1)
             for mask in set(masks.values())}
    return {chain: names[mask] for chain, mask in masks.items() if mask and chain in chains}


def _order_below_loops(table: str, stuck: set[str], children: dict[str, set[str]],
                       masks: dict[str, int]) -> None:
    """Finish the hook propagation for chains Kahn could not order: an error if one of their
    loops is reachable from a hook, else the reachable ones are ordered among themselves."""
    reach = {c for c in stuck if masks.get(c)}
    frontier = list(reach)
    while frontier:
        for kid in children[frontier.pop()]:
            if kid in stuck and kid not in reach:
                reach.add(kid)
                frontier.append(kid)
    indegree = dict.fromkeys(reach, 0)
    for chain in reach:
        for kid in children[chain]:
            if kid in indegree:
                indegree[kid] += 1
    ready = [c for c, count in indegree.items() if count == 0]
    while ready:
        chain = ready.pop()
        mask = masks.get(chain, 0)
        for kid in children[chain]:
            masks[kid] = masks.get(kid, 0) | mask
            if kid in indegree:
                indegree[kid] -= 1
                if indegree[kid] == 0:
                    ready.append(kid)
    looped = {c for c, count in indegree.items() if count}
    if looped:
        raise CompileError(f"jump loop in table {table}: {' -> '.join(_cycle(looped, children))} "
                           "(the kernel refuses it: Too many links)")


def _cycle(stuck: set[str], children: dict[str, set[str]]) -> list[str]:
    """One loop among the chains Kahn's algorithm could not order.

    Every such chain still has an unordered parent, so walking up through parents cannot
    dead-end and must come round.
    """
    parents: dict[str, list[str]] = {}
    for parent in stuck:
        for kid in children[parent]:
            if kid in stuck:
                parents.setdefault(kid, []).append(parent)
    path: list[str] = []
    seen: dict[str, int] = {}
    chain = min(stuck)
    while chain not in seen:
        seen[chain] = len(path)
        path.append(chain)
        chain = min(parents[chain])
    loop = [*path[seen[chain]:], chain]
    return loop[::-1]


def check_hooks(chain: str, rules: list[Rule], hooks: frozenset[str], strict: bool,
                opaque: list[OpaqueRule]) -> list[Rule]:
    """The rules, with those whose match or target the kernel refuses in a hook reaching the
    chain made opaque (or a CompileError when strict)."""
    checked = rules
    for position, rule in enumerate(rules):
        for ext in (*rule.matches, rule.target):
            allowed = getattr(ext, "hooks", None)
            if allowed is None or hooks <= allowed:
                continue
            label = f"-j {ext.name}" if ext is rule.target else f"-m {ext.name}"
            message = (f"only valid in {'/'.join(sorted(allowed))}; chain {chain} is reached "
                       f"from {'/'.join(sorted(hooks - allowed))}")
            if strict:
                raise CompileError(message, rule.line, label)
            reason = f"{label} is {message}"
            opaque.append(OpaqueRule(rule.table, rule.chain, rule.line, rule.original, reason))
            checked = list(checked) if checked is rules else checked
            checked[position] = rule._replace(unsupported=reason)
            break
    return checked
