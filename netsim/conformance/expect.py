"""Expected reachability written like upstream's Reachability: a default, then overrides."""

from __future__ import annotations

from collections.abc import Iterable

from netsim.fields import Fields

ANY = "*"


def _matches(selector: str, key: str) -> bool:
    """"x/a", "x/*", "*/a" or "*" against a pod key "ns/name"."""
    if selector == ANY:
        return True
    ns, _, name = selector.partition("/")
    pod_ns, _, pod_name = key.partition("/")
    return ns in (ANY, pod_ns) and name in (ANY, pod_name)


def expected_table(expect: Fields, pods: Iterable[str]) -> dict[tuple[str, str], bool]:
    """(from, to) -> allowed for every ordered pair of distinct pods."""
    keys = list(pods)
    default = expect.enum("default", ("allow", "deny"), required=True) == "allow"
    table = {(a, b): default for a in keys for b in keys if a != b}
    for rule in expect.items("rules"):
        src, dst = rule.str("from", default=ANY), rule.str("to", default=ANY)
        for sel, key in ((src, "from"), (dst, "to")):
            if sel != ANY and "/" not in sel:
                raise rule.error(key, f"must be ns/pod, ns/*, */pod or *, got {sel!r}")
        allow = rule.bool("allow")
        if rule.data.get("allow") is None:
            raise rule.error("allow", "required field is missing")
        for a, b in table:
            if _matches(src, a) and _matches(dst, b):
                table[a, b] = allow
    return table
