"""Object metadata and label selectors, shared by every kind's parser."""

from __future__ import annotations

from netsim.fields import DNS1123_LABEL, DNS1123_SUBDOMAIN, Fields
from netsim.model import LabelSelector, Meta, OwnerRef, Requirement

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NODE_SELECTOR_OPERATORS = (*SELECTOR_OPERATORS, "Gt", "Lt")


def parse_meta(f: Fields, kind: str, *, namespaced: bool, dns_label: bool = False) -> Meta:
    """metadata: a valid name, the namespace (default "default"), labels and annotations."""
    m = f.sub("metadata")
    name = m.str("name", required=True)
    pattern = DNS1123_LABEL if dns_label else DNS1123_SUBDOMAIN
    if len(name) > (63 if dns_label else 253) or not pattern.match(name):
        raise m.error("name", f"invalid name {name!r}: must be a lowercase RFC 1123 "
                      f"{'label' if dns_label else 'subdomain'}")
    namespace = None
    if namespaced:
        namespace = m.str("namespace") or "default"  # "" too, as kubectl reads it
        if len(namespace) > 63 or not DNS1123_LABEL.match(namespace):
            raise m.error("namespace", f"invalid namespace {namespace!r}")
    ref = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    f.obj = ref  # later errors in this object name it
    m.obj = ref
    return Meta(kind=kind, name=name, namespace=namespace, labels=m.labels("labels"),
                annotations=m.string_map("annotations"), uid=m.str("uid"),
                created=_timestamp(m, "creationTimestamp"),
                deleted=_timestamp(m, "deletionTimestamp"), source=f.source)


def _timestamp(m: Fields, key: str) -> str | None:
    value = m.data.get(key)
    return None if value is None else str(value)


def parse_owner(f: Fields) -> OwnerRef | None:
    """The controller owner reference (the one with controller: true, else the first)."""
    owners = list(f.sub("metadata").items("ownerReferences"))
    if not owners:
        return None
    chosen = next((o for o in owners if o.data.get("controller") is True), owners[0])
    return OwnerRef(kind=chosen.str("kind", required=True), name=chosen.str("name", required=True),
                    uid=chosen.str("uid"), controller=chosen.bool("controller", default=False))


def parse_requirements(f: Fields, key: str, operators: tuple[str, ...]) -> tuple[Requirement, ...]:
    out = []
    for r in f.items(key):
        op = r.enum("operator", operators, required=True)
        values = r.str_list("values")
        if op in ("In", "NotIn") and not values:
            raise r.error("values", f"must be non-empty when operator is {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise r.error("values", f"must be empty when operator is {op}")
        if op in ("Gt", "Lt") and (len(values) != 1 or not values[0].lstrip("-").isdigit()):
            raise r.error("values", f"must be a single integer when operator is {op}")
        out.append(Requirement(r.str("key", required=True), op, values))
    return tuple(out)


def parse_selector(f: Fields) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels + matchExpressions)."""
    return LabelSelector(match_labels=f.labels("matchLabels"),
                         match_expressions=parse_requirements(f, "matchExpressions",
                                                              SELECTOR_OPERATORS))
