"""AuthorizationPolicy parsed into attribute constraints, validated as Istio's webhook does.

Every field of a rule names an Istio attribute (istio.io "Authorization Policy Conditions";
istio/api security/v1beta1/authorization_policy.proto): `principals` is `source.principal`,
`methods` is `request.method`, and so on. A rule becomes sources (ORed), operations (ORed) and
conditions (ANDed); each source, operation or condition is a list of constraints (ANDed), a
constraint a list of values (ORed) that may be negated (`notPrincipals`, `notValues`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netsim.fields import Fields, FrozenDict
from netsim.model import RawObject
from policies.istio_mesh import parse_workload_selector, raw_fields

KIND = "AuthorizationPolicy"
ALLOW, DENY, AUDIT, CUSTOM = "ALLOW", "DENY", "AUDIT", "CUSTOM"
ACTIONS = (ALLOW, DENY, AUDIT, CUSTOM)
DRY_RUN_ANNOTATION = "istio.io/dry-run"
GATEWAY_GROUP, GATEWAY_KIND = "gateway.networking.k8s.io", "Gateway"

# field -> attribute (Source and Operation messages)
SOURCE_FIELDS = {
    "principals": "source.principal",
    "requestPrincipals": "request.auth.principal",
    "namespaces": "source.namespace",
    "serviceAccounts": "source.serviceAccount",
    "ipBlocks": "source.ip",
    "remoteIpBlocks": "remote.ip",
}
OPERATION_FIELDS = {
    "hosts": "request.host",
    "ports": "destination.port",
    "methods": "request.method",
    "paths": "request.path",
}
# `when` keys (istio.io/latest/docs/reference/config/security/conditions/)
CONDITION_KEYS = ("source.ip", "remote.ip", "source.namespace", "source.principal",
                  "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
                  "destination.ip", "destination.port", "connection.sni")
CONDITION_PATTERNS = (re.compile(r"request\.headers\[[^\[\]]+\]"),
                      re.compile(r"request\.auth\.claims(\[[^\[\]]+\])+"))
IP_ATTRIBUTES = frozenset({"source.ip", "remote.ip", "destination.ip"})
# What TCP traffic cannot carry (pilot/pkg/security/authz/model: not supported for TCP)
HTTP_ONLY_PREFIX = "request."


@dataclass(frozen=True, slots=True)
class Constraint:
    attribute: str  # request.headers[...] keys are lower-cased
    values: tuple[str, ...]
    negate: bool = False
    field: str = ""  # where it was written, e.g. "rules[0].from[1].source.notPrincipals"

    @property
    def http_only(self) -> bool:
        return self.attribute.startswith(HTTP_ONLY_PREFIX)


@dataclass(frozen=True, slots=True)
class Rule:
    """Empty sources or operations mean any; an empty rule matches every request."""

    sources: tuple[tuple[Constraint, ...], ...] = ()
    operations: tuple[tuple[Constraint, ...], ...] = ()
    conditions: tuple[Constraint, ...] = ()

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        return (*(c for s in self.sources for c in s), *(c for o in self.operations for c in o),
                *self.conditions)


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    namespace: str
    name: str
    action: str
    rules: tuple[Rule, ...]  # empty: never matches (an ALLOW policy then allows nothing)
    selector: FrozenDict | None = None
    target_refs: tuple[tuple[str, str, str], ...] = ()  # (group, kind, name)
    provider: str | None = None  # CUSTOM's extension provider
    dry_run: bool = False
    created: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rule_key(self, index: int) -> str:
        """The policy name Istio gives the rule in Envoy's RBAC config (and its access log)."""
        return f"ns[{self.namespace}]-policy[{self.name}]-rule[{index}]"


def parse_authorization_policy(obj: RawObject) -> AuthorizationPolicy:
    """Validate one AuthorizationPolicy (security.istio.io v1 or v1beta1); InputError if bad."""
    spec = raw_fields(obj).sub("spec")
    action = spec.enum("action", ACTIONS, default=ALLOW)
    provider = spec.sub("provider").str("name") if spec.has("provider") else None
    if action == CUSTOM and not provider:
        raise spec.error("provider", "CUSTOM action needs provider.name")
    if action != CUSTOM and spec.has("provider"):
        raise spec.error("provider", "provider must be used only with the CUSTOM action")
    selector = parse_workload_selector(spec)
    refs = [spec.sub("targetRef")] if spec.has("targetRef") else []
    refs += list(spec.items("targetRefs"))
    if selector is not None and refs:
        raise spec.error("selector", "selector and targetRef(s) cannot both be set")
    target_refs = tuple((r.str("group", default=""), r.str("kind", required=True),
                         r.str("name", required=True)) for r in refs)
    rules = tuple(_rule(r) for r in spec.items("rules"))
    dry_run = obj.meta.annotations.get(DRY_RUN_ANNOTATION, "").lower() == "true"
    return AuthorizationPolicy(obj.namespace or "default", obj.name, action, rules, selector,
                               target_refs, provider, dry_run, obj.meta.created)


def _rule(f: Fields) -> Rule:
    _known(f, ("from", "to", "when"))
    sources = []
    for item in f.items("from"):
        _known(item, ("source",))
        if not item.has("source"):
            raise item.error("source", "`from.source` must not be nil")
        sources.append(_fields(item.sub("source"), SOURCE_FIELDS, "`from.source`"))
    operations = []
    for item in f.items("to"):
        _known(item, ("operation",))
        if not item.has("operation"):
            raise item.error("operation", "`to.operation` must not be nil")
        operations.append(_fields(item.sub("operation"), OPERATION_FIELDS, "`to.operation`"))
    conditions: list[Constraint] = []
    for item in f.items("when"):
        conditions += _condition(item)
    return Rule(tuple(sources), tuple(operations), tuple(conditions))


def _fields(f: Fields, mapping: dict[str, str], what: str) -> tuple[Constraint, ...]:
    allowed = {*mapping, *(f"not{k[0].upper()}{k[1:]}" for k in mapping)}
    _known(f, tuple(sorted(allowed)))
    out = []
    for name, attribute in mapping.items():
        negative = f"not{name[0].upper()}{name[1:]}"
        for key, negate in ((name, False), (negative, True)):
            values = f.str_list(key)
            if values:
                _check_values(f, key, attribute, values)
                out.append(Constraint(attribute, values, negate, _path(f, key)))
    if not out:
        raise f.error(None, f"{what} must not be empty")
    return tuple(out)


def _condition(f: Fields) -> list[Constraint]:
    _known(f, ("key", "values", "notValues"))
    key = f.str("key", required=True)
    if key not in CONDITION_KEYS and not any(p.fullmatch(key) for p in CONDITION_PATTERNS):
        raise f.error("key", f"unknown attribute {key!r} (netsim models the keys of istio.io's "
                             "Authorization Policy Conditions page except experimental.*)")
    attribute = key
    if key.startswith("request.headers["):
        attribute = f"request.headers[{key[len('request.headers['):-1].lower()}]"
    values, not_values = f.str_list("values"), f.str_list("notValues")
    if not values and not not_values:
        raise f.error(None, "at least one of values or notValues must be set")
    out = []
    for name, items, negate in (("values", values, False), ("notValues", not_values, True)):
        if items:
            _check_values(f, name, attribute, items)
            out.append(Constraint(attribute, items, negate, _path(f, name)))
    return out


def _check_values(f: Fields, key: str, attribute: str, values: tuple[str, ...]) -> None:
    for i, value in enumerate(values):
        if attribute in IP_ATTRIBUTES:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise f.error(f"{key}[{i}]", f"must be an IP or CIDR, got {value!r}") from None
        elif attribute == "destination.port" and not (value.isdigit() and int(value) <= 65535):
            raise f.error(f"{key}[{i}]", f"must be a port number, got {value!r}")
        elif attribute == "request.path" and "{" in value:
            _check_template(f, f"{key}[{i}]", value)


def _check_template(f: Fields, key: str, value: str) -> None:
    """Path templates: {*} is one segment, {**} any (last operator only), nothing else."""
    segments = value.split("/")
    for i, segment in enumerate(segments):
        if ("{" in segment or "}" in segment) and segment not in ("{*}", "{**}"):
            raise f.error(key, f"a path template segment must be {{*}} or {{**}}, got {value!r}")
        if segment == "{**}" and any(s in ("{*}", "{**}") for s in segments[i + 1:]):
            raise f.error(key, f"{{**}} must be the last operator in {value!r}")


def _path(f: Fields, key: str) -> str:
    return f"{f.path}.{key}" if f.path else key


def _known(f: Fields, keys: tuple[str, ...]) -> None:
    """Istio's CRD schema rejects unknown fields; ignoring one could widen or narrow a rule."""
    for key in f.data:
        if key not in keys:
            raise f.error(key, f"unknown field (expected one of {', '.join(keys)})")


__all__ = ["ACTIONS", "ALLOW", "AUDIT", "CUSTOM", "DENY", "KIND", "AuthorizationPolicy",
           "Constraint", "Rule", "parse_authorization_policy"]
