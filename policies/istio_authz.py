"""AuthorizationPolicy at the server sidecar: is this request allowed, and which rule decides?

Evaluation order (istio/api authorization_policy.proto): a matching CUSTOM policy sends the
request to its extension provider, whose deny is final; then any matching DENY policy denies;
with no ALLOW policy on the workload the request is allowed; a matching ALLOW policy allows;
otherwise it is denied. AUDIT only marks; policies annotated `istio.io/dry-run: "true"` are
not enforced.

Scope: the policy's namespace, narrowed by `selector`; a policy in the root namespace applies
in every namespace. `targetRef(s)` attach a policy to a Gateway API Gateway (its pods carry
`gateway.networking.k8s.io/gateway-name`) or to waypoints, never to sidecars.

Matching (authorization_policy.proto `Rule`): one source, one operation and every condition;
string values match exactly, as `prefix*`, `*suffix` or `*` (any non-empty value); hosts
ignore case; paths are matched after normalization, and `{*}` / `{**}` templates match path
segments. Principals, namespaces and service accounts come from the peer certificate, so a
plaintext request never matches them (but matches their `not*` forms). On TCP, HTTP-only
attributes (`request.*`) cannot be read: an ALLOW rule using one is dropped (allowing less),
while DENY, CUSTOM and AUDIT rules just lose those constraints (denying more)
(pilot/pkg/security/authz/model/model.go checkError; istio.io "TCP Traffic" task).

A denied HTTP request gets 403 `RBAC: access denied`; Envoy logs the deciding rule as
`rbac_access_denied_matched_policy[ns[N]-policy[P]-rule[I]]` (`[none]` when no ALLOW matched).
When several rules match, Envoy reports the first of its policy map, i.e. the smallest such
name, and so does netsim.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from netsim.cluster import Cluster
from netsim.fields import EMPTY, FrozenDict
from netsim.model import Pod
from policies.istio_authz_model import (
    ALLOW,
    AUDIT,
    CUSTOM,
    DENY,
    GATEWAY_GROUP,
    GATEWAY_KIND,
    IP_ATTRIBUTES,
    KIND,
    AuthorizationPolicy,
    Constraint,
    Rule,
    parse_authorization_policy,
)
from policies.istio_mesh import mesh_config, principal_parts, selects

RBAC_DENIED_BODY = "RBAC: access denied"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
EXT_AUTHZ_FLAG = "UAEX"  # Envoy response flag for an ext_authz deny
CUSTOM_VERDICTS = ("allow", "deny")


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    """What the server sidecar knows about one request (or TCP connection).

    `source_principal` is the peer's certificate identity (`cluster.local/ns/N/sa/S`, with or
    without `spiffe://`), None for plaintext; `source_namespace` defaults to its namespace and
    is ignored without it. `remote_ip` is the original client (X-Forwarded-For), defaulting
    to `source_ip`. `port` is the destination port at the workload. Header names are matched
    without regard to case. `http=False` is a TCP connection: method, path, host, headers and
    JWT fields are then unknown.
    """

    source_ip: str
    port: int
    source_principal: str | None = None
    source_namespace: str | None = None
    remote_ip: str | None = None
    destination_ip: str | None = None
    http: bool = True
    method: str | None = "GET"
    host: str | None = None
    path: str | None = "/"
    headers: FrozenDict = EMPTY
    request_principal: str | None = None  # JWT <iss>/<sub>, from RequestAuthentication
    claims: FrozenDict = EMPTY
    sni: str | None = None


@dataclass(frozen=True, slots=True)
class AuthzDecision:
    """The verdict, the policy and rule that decided it (None when no rule did), and why.

    `status`/`body`/`details` are what Envoy answers and logs for a denied HTTP request
    (a denied TCP connection is closed: status None). `custom` lists the CUSTOM policies
    whose rules matched, i.e. that would consult their extension provider.
    """

    allowed: bool
    action: str | None
    policy: str | None
    rule_index: int | None
    reason: str
    status: int | None = None
    body: str | None = None
    details: str | None = None
    response_flag: str | None = None
    custom: tuple[str, ...] = ()
    applicable: tuple[str, ...] = ()  # "ns/name (ACTION)" of every policy on the workload


class AuthorizationPolicies:
    """A cluster's AuthorizationPolicies, parsed once and indexed by namespace."""

    def __init__(self, cluster: Cluster) -> None:
        self.root = mesh_config(cluster).root_namespace
        self.by_namespace: dict[str, list[AuthorizationPolicy]] = defaultdict(list)
        for obj in cluster.raw(KIND):
            policy = _parse(obj)
            self.by_namespace[policy.namespace].append(policy)

    def for_workload(self, pod: Pod) -> list[AuthorizationPolicy]:
        """The policies that apply to the pod's proxy, in the order Envoy reports them."""
        namespaces = [pod.namespace] if pod.namespace == self.root else [pod.namespace,
                                                                         self.root]
        found = [p for ns in namespaces for p in self.by_namespace.get(ns, ())
                 if _applies(p, pod)]
        return sorted(found, key=lambda p: p.rule_key(0))


@lru_cache(maxsize=4096)
def _parse(obj) -> AuthorizationPolicy:
    return parse_authorization_policy(obj)


def _applies(policy: AuthorizationPolicy, pod: Pod) -> bool:
    if policy.target_refs:
        return any(group == GATEWAY_GROUP and kind == GATEWAY_KIND
                   and policy.namespace == pod.namespace
                   and pod.labels.get(GATEWAY_NAME_LABEL) == name
                   for group, kind, name in policy.target_refs)
    return selects(policy.selector, pod.labels)


def authorize(cluster: Cluster, pod: Pod, request: AuthzRequest, *, custom: str = "allow",
              policies: AuthorizationPolicies | None = None) -> AuthzDecision:
    """The server sidecar's verdict on `request` to `pod`.

    netsim cannot call an external authorizer: when a CUSTOM policy matches, `custom`
    ("allow" or "deny") stands for the provider's answer, and the decision lists the policy.
    Pass `policies` to reuse one index for many requests.
    """
    if custom not in CUSTOM_VERDICTS:
        raise ValueError(f"custom must be one of {CUSTOM_VERDICTS}, got {custom!r}")
    index = policies or AuthorizationPolicies(cluster)
    found = index.for_workload(pod)
    enforced = [p for p in found if not p.dry_run]
    applicable = tuple(f"{p.key} ({p.action}{', dry-run' if p.dry_run else ''})"
                       for p in found)
    if request.destination_ip is None and pod.ip:
        request = replace(request, destination_ip=pod.ip)
    view = _View(request)
    dry = [p.key for p in found if p.dry_run]
    note = f"; dry-run (not enforced): {', '.join(dry)}" if dry else ""

    customs = _matches(enforced, CUSTOM, view)
    custom_keys = tuple(f"{p.key} -> provider {p.provider}" for p, _ in customs)
    if customs and custom == "deny":
        policy, rule = customs[0]
        return _denied(request, CUSTOM, policy, rule, applicable, custom_keys,
                       f"CUSTOM policy {policy.key} rule {rule} sends the request to extension "
                       f"provider {policy.provider!r}, which denies it (as asked){note}",
                       ext_authz=True)
    denies = _matches(enforced, DENY, view)
    if denies:
        policy, rule = denies[0]
        return _denied(request, DENY, policy, rule, applicable, custom_keys,
                       f"DENY policy {policy.key} rule {rule} matches{note}")
    allows = [p for p in enforced if p.action == ALLOW]
    if not allows:
        why = ("no AuthorizationPolicy applies to the workload: allowed by default" if not found
               else "no ALLOW policy applies and no DENY rule matches: allowed")
        return AuthzDecision(True, None, None, None, why + note, custom=custom_keys,
                             applicable=applicable)
    matched = _matches(allows, ALLOW, view)
    if matched:
        policy, rule = matched[0]
        return AuthzDecision(True, ALLOW, policy.key, rule,
                             f"ALLOW policy {policy.key} rule {rule} matches{note}",
                             custom=custom_keys, applicable=applicable)
    names = ", ".join(p.key for p in allows)
    empty = [p.key for p in allows if not p.rules]
    why = f"ALLOW policies apply ({names}) but no rule matches"
    if empty:
        why += f"; {', '.join(empty)} has no rules and allows nothing"
    return _denied(request, ALLOW, None, None, applicable, custom_keys, why + note)


def _denied(request: AuthzRequest, action: str, policy: AuthorizationPolicy | None,
            rule: int | None, applicable: tuple[str, ...], custom: tuple[str, ...],
            reason: str, ext_authz: bool = False) -> AuthzDecision:
    if ext_authz:
        details, flag, body = "ext_authz_denied", EXT_AUTHZ_FLAG, ""
    else:
        matched = policy.rule_key(rule) if policy is not None and rule is not None else "none"
        details, flag, body = f"rbac_access_denied_matched_policy[{matched}]", None, \
            RBAC_DENIED_BODY
    if not request.http:
        reason += " (TCP: the connection is closed)"
        return AuthzDecision(False, action, policy.key if policy else None, rule, reason,
                             details=details, response_flag=flag, custom=custom,
                             applicable=applicable)
    return AuthzDecision(False, action, policy.key if policy else None, rule, reason,
                         status=403, body=body, details=details, response_flag=flag,
                         custom=custom, applicable=applicable)


def _matches(policies: list[AuthorizationPolicy], action: str,
             view: _View) -> list[tuple[AuthorizationPolicy, int]]:
    """Matching (policy, rule index) pairs of one action, smallest Envoy policy name first."""
    hits = [(p, i) for p in policies if p.action == action
            for i, rule in enumerate(p.rules) if _rule_matches(rule, action, view)]
    return sorted(hits, key=lambda hit: hit[0].rule_key(hit[1]))


def _rule_matches(rule: Rule, action: str, view: _View) -> bool:
    if not view.request.http and any(c.http_only for c in rule.constraints):
        if action == ALLOW:
            return False  # the whole ALLOW rule is dropped for TCP
        rule = Rule(tuple(_tcp(s) for s in rule.sources),
                    tuple(_tcp(o) for o in rule.operations), _tcp(rule.conditions))
    return ((not rule.sources or any(all(view.satisfies(c) for c in s) for s in rule.sources))
            and (not rule.operations
                 or any(all(view.satisfies(c) for c in o) for o in rule.operations))
            and all(view.satisfies(c) for c in rule.conditions))


def _tcp(constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    return tuple(c for c in constraints if not c.http_only)


class _View:
    """The request's value(s) for each attribute; several values match if any does."""

    def __init__(self, request: AuthzRequest) -> None:
        self.request = request
        principal = request.source_principal
        if principal and principal.startswith("spiffe://"):
            principal = principal[len("spiffe://"):]
        parts = principal_parts(principal)
        namespace = (request.source_namespace or (parts[0] if parts else None)) \
            if principal else None
        headers = {str(k).lower(): v for k, v in request.headers.items()}
        host = request.host if request.host is not None else headers.get("host")
        self.values: dict[str, tuple[str, ...]] = {
            "source.principal": _tuple(principal),
            "source.namespace": _tuple(namespace),
            "source.serviceAccount": _tuple(f"{parts[0]}/{parts[1]}" if parts else None),
            "source.ip": _tuple(request.source_ip),
            "remote.ip": _tuple(request.remote_ip or request.source_ip),
            "destination.ip": _tuple(request.destination_ip),
            "destination.port": _tuple(str(request.port)),
            "connection.sni": _tuple(request.sni),
            "request.host": _tuple(host),
            "request.method": _tuple(request.method),
            "request.path": _tuple(normalize_path(request.path)),
            "request.auth.principal": _tuple(request.request_principal),
            "request.auth.audiences": _tuple(request.claims.get("aud")),
            "request.auth.presenter": _tuple(request.claims.get("azp")),
        }
        self.headers = headers

    def get(self, attribute: str) -> tuple[str, ...]:
        if attribute in self.values:
            return self.values[attribute]
        if attribute.startswith("request.headers["):
            return _tuple(self.headers.get(attribute[len("request.headers["):-1]))
        if attribute.startswith("request.auth.claims["):
            path = attribute[len("request.auth.claims["):-1].split("][")
            value: Any = self.request.claims
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            return _tuple(value)
        raise KeyError(attribute)

    def satisfies(self, c: Constraint) -> bool:
        values = self.get(c.attribute)
        hit = any(value_matches(c.attribute, pattern, value)
                  for pattern in c.values for value in values)
        return hit != c.negate


def value_matches(attribute: str, pattern: str, value: str) -> bool:
    """One policy value against one request value, by the attribute's kind."""
    if attribute in IP_ATTRIBUTES:
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    if attribute == "destination.port":
        return value.isdigit() and int(value) == int(pattern)
    if attribute == "request.host":
        return string_matches(pattern.lower(), value.lower())
    if attribute == "request.path" and "{" in pattern:
        return _template(pattern).fullmatch(value) is not None
    return string_matches(pattern, value)


def string_matches(pattern: str, value: str) -> bool:
    """Istio's string match: exact, `prefix*`, `*suffix`, or `*` for any non-empty value."""
    if not value:
        return False
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def normalize_path(path: str | None) -> str | None:
    """The path Envoy's RBAC sees (pathNormalization BASE): no query, dot segments removed."""
    if path is None:
        return None
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    if not path.startswith("/"):
        path = "/" + path
    normal = posixpath.normpath(path)
    if normal.startswith("//"):  # posixpath keeps a leading double slash
        normal = "/" + normal.lstrip("/")
    if path.endswith("/") and normal != "/":
        normal += "/"
    return normal


@lru_cache(maxsize=512)
def _template(pattern: str) -> re.Pattern[str]:
    parts = pattern.split("/")
    out = []
    for i, part in enumerate(parts):
        if part == "{*}":
            out.append("[^/]+")
        elif part == "{**}":
            out.append(".*" if i == len(parts) - 1 else "[^/]+(?:/[^/]+)*")
        else:
            out.append(re.escape(part))
    return re.compile("/".join(out))


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)


__all__ = ["ALLOW", "AUDIT", "CUSTOM", "DENY", "RBAC_DENIED_BODY", "AuthorizationPolicies",
           "AuthzDecision", "AuthzRequest", "authorize", "normalize_path", "string_matches",
           "value_matches"]
