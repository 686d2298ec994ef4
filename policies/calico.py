"""Calico's policy model: tiers, ordered policies and rules, and which endpoints they select.

Policies come from Kubernetes NetworkPolicy and the admin tiers (converted in
policies.calico_k8s as libcalico-go's converters do) and from Calico's own NetworkPolicy,
GlobalNetworkPolicy and Tier resources (projectcalico.org/v3), parsed here.

Selectors are scoped as libcalico-go's update processors scope them
(syncersv1/updateprocessors/rules.go): a namespaced policy's selectors are ANDed with
`projectcalico.org/namespace == '<ns>'`, a namespaceSelector's keys get the `pcns.` prefix
(namespace labels as a workload endpoint inherits them from its kns.<ns> profile) and its
`all()` means "any namespaced endpoint". The canonical selector text names felix's IP sets.
No packets here: cni.felix compiles this model into iptables chains.

Not modelled: `http` matches (enforced by the application layer policy proxy, not by
felix's iptables rules: ignored, as felix ignores them), `services` matches (InputError),
and preDNAT / doNotTrack policies, which apply to host endpoints only (skipped).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from netsim.errors import InputError
from netsim.fields import Fields, thaw
from netsim.model import LabelSelector, RawObject
from policies import calico_selector as sel

# Actions (api/pkg/apis/projectcalico/v3/policy_common.go)
ALLOW, DENY_, LOG, PASS_ = "Allow", "Deny", "Log", "Pass"
ACTIONS = (ALLOW, DENY_, LOG, PASS_)
INGRESS, EGRESS = "Ingress", "Egress"

# Labels every workload endpoint carries (libcalico-go k8s conversion constants.go) and the
# prefixes of the labels it inherits from its namespace and service account profiles.
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
NAME_LABEL = "projectcalico.org/name"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
ORCHESTRATOR_K8S = "k8s"

# Policy kinds as felix names them (felix/types/policy_id.go KindShortName).
KIND_KNP = "KubernetesNetworkPolicy"
KIND_NP = "NetworkPolicy"
KIND_GNP = "GlobalNetworkPolicy"
KIND_ANP = "KubernetesAdminNetworkPolicy"
KIND_BANP = "KubernetesBaselineAdminNetworkPolicy"
KIND_CNP = "KubernetesClusterNetworkPolicy"
SHORT_KINDS = {KIND_KNP: "knp", KIND_NP: "np", KIND_GNP: "gnp", KIND_CNP: "kcnp",
               KIND_ANP: "kanp", KIND_BANP: "kbanp"}


@dataclass(frozen=True, slots=True)
class Tier:
    """A tier: lower order runs first; defaultAction applies when no policy in it decided."""

    name: str
    order: float | None
    default_action: str = DENY_


DEFAULT_TIER = Tier("default", 1_000_000.0, DENY_)
KUBE_ADMIN_TIER = Tier("kube-admin", 1_000.0, PASS_)
KUBE_BASELINE_TIER = Tier("kube-baseline", 10_000_000.0, PASS_)
BUILTIN_TIERS = {t.name: t for t in (DEFAULT_TIER, KUBE_ADMIN_TIER, KUBE_BASELINE_TIER)}


# ---------------------------------------------------------------- endpoints and selectors


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload endpoint as selectors see it: its pod's labels plus what Calico adds."""

    namespace: str
    labels: Mapping[str, str]  # the pod's own labels
    namespace_labels: Mapping[str, str]
    service_account: str = "default"
    service_account_labels: Mapping[str, str] = field(default_factory=dict)

    def calico_labels(self) -> dict[str, str]:
        """The labels a Calico selector is evaluated on (the WorkloadEndpoint's, with its
        profiles' labels inherited)."""
        out = dict(self.labels)
        out[LABEL_NAMESPACE] = self.namespace
        out[LABEL_ORCHESTRATOR] = ORCHESTRATOR_K8S
        out[LABEL_SERVICE_ACCOUNT] = self.service_account
        for k, v in self.namespace_labels.items():
            out[NAMESPACE_PREFIX + k] = v
        out[NAMESPACE_PREFIX + NAME_LABEL] = self.namespace
        for k, v in self.service_account_labels.items():
            out[SERVICE_ACCOUNT_PREFIX + k] = v
        out[SERVICE_ACCOUNT_PREFIX + NAME_LABEL] = self.service_account
        return out


@dataclass(frozen=True, slots=True)
class EndpointSelector:
    """Which workload endpoints a policy (or a rule's peer) selects.

    `text` is the selector as felix receives it (canonical form); it names the IP set.
    Matching: `namespace` restricts to one namespace by name; `namespaces` is a
    LabelSelector on namespace labels (Kubernetes-derived) or a Calico expression; `pods`
    is a LabelSelector on the pod's labels or a Calico expression on the endpoint's Calico
    labels. None means "no restriction".
    """

    text: str
    namespace: str | None = None
    namespaces: LabelSelector | sel.Expr | None = None
    pods: LabelSelector | sel.Expr | None = None

    def namespace_matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.namespace is not None and name != self.namespace:
            return False
        m = self.namespaces
        if m is None:
            return True
        if isinstance(m, LabelSelector):
            return m.matches(labels)
        return m.matches({**labels, NAME_LABEL: name})

    def pod_matches(self, ep: Workload, calico_labels: Mapping[str, str] | None = None) -> bool:
        m = self.pods
        if m is None:
            return True
        if isinstance(m, LabelSelector):
            return m.matches(ep.labels)
        return m.matches(calico_labels if calico_labels is not None else ep.calico_labels())

    def matches(self, ep: Workload) -> bool:
        return self.namespace_matches(ep.namespace, ep.namespace_labels) and \
            self.pod_matches(ep)


@dataclass(frozen=True, slots=True)
class Port:
    """One entry of ports/notPorts: a numeric range or a named port."""

    first: int = 0
    last: int = 0
    name: str | None = None

    def __str__(self) -> str:
        if self.name is not None:
            return self.name
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


@dataclass(frozen=True, slots=True)
class EntityRule:
    """A rule's source or destination match (all given fields must match)."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    selector: EndpointSelector | None = None
    not_selector: EndpointSelector | None = None
    ports: tuple[Port, ...] = ()
    not_ports: tuple[Port, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    protocol: str | int | None = None  # "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "UDPLite", n
    not_protocol: str | int | None = None
    icmp: tuple[int, int | None] | None = None  # (type, code)
    not_icmp: tuple[int, int | None] | None = None
    ip_version: int | None = None
    source: EntityRule = EntityRule()
    destination: EntityRule = EntityRule()
    origin: str = ""  # where the rule came from, e.g. "ingress[0] from[1]"


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy as felix sees it."""

    kind: str
    name: str
    namespace: str | None
    tier: str
    order: float | None
    selector: EndpointSelector
    types: tuple[str, ...]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def id(self) -> str:
        """felix types.PolicyID.ID(): <kind short>/<namespace>/<name> (no namespace: 2 parts)."""
        short = SHORT_KINDS.get(self.kind, self.kind)
        return f"{short}/{self.namespace}/{self.name}" if self.namespace else \
            f"{short}/{self.name}"

    @property
    def ref(self) -> str:
        """The policy as a user names it: kind namespace/name."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else \
            f"{self.kind} {self.name}"

    def applies(self, direction: str) -> bool:
        return direction in self.types

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress


def sort_key(policy: Policy) -> tuple:
    """Order within a tier: `order` ascending (unset last), then name (felix calc
    PolicySorter), then namespace and kind to make the order total."""
    order = policy.order if policy.order is not None else float("inf")
    return (order, policy.name, policy.namespace or "", policy.kind)


def tier_key(tier: Tier) -> tuple:
    return (tier.order if tier.order is not None else float("inf"), tier.name)


# ---------------------------------------------------------------- selector text helpers


def _quote(value: str) -> str:
    return "'" + value + "'"


def k8s_selector_text(s: LabelSelector | None, *, pods: bool) -> str:
    """conversion.go k8sSelectorToCalico: the Calico selector for a Kubernetes one."""
    terms = [f"{LABEL_ORCHESTRATOR} == 'k8s'"] if pods else []
    if s is None:
        return " && ".join(terms)
    if not pods and s.is_empty:
        return "all()"
    for k in sorted(s.match_labels):
        terms.append(f"{k} == {_quote(s.match_labels[k])}")
    for r in s.match_expressions:
        values = "', '".join(r.values)
        if r.operator == "In":
            terms.append(f"{r.key} in {{ '{values}' }}")
        elif r.operator == "NotIn":
            terms.append(f"{r.key} not in {{ '{values}' }}")
        elif r.operator == "Exists":
            terms.append(f"has({r.key})")
        elif r.operator == "DoesNotExist":
            terms.append(f"! has({r.key})")
    return " && ".join(terms)


def prefix_keys(expr: sel.Expr, prefix: str) -> sel.Expr:
    """libcalico-go PrefixVisitor: every label key in the expression gets the prefix."""
    if isinstance(expr, sel.Has):
        return sel.Has(prefix + expr.key)
    if isinstance(expr, sel.Compare):
        return replace(expr, key=prefix + expr.key)
    if isinstance(expr, sel.InSet):
        return replace(expr, key=prefix + expr.key)
    if isinstance(expr, sel.Not):
        return sel.Not(prefix_keys(expr.inner, prefix))
    if isinstance(expr, sel.And | sel.Or):
        return type(expr)(tuple(prefix_keys(p, prefix) for p in expr.parts))
    return expr


def namespace_selector_text(text: str) -> str:
    """A namespaceSelector as the update processor rewrites it: keys prefixed with pcns.,
    all() meaning "any endpoint in a namespace"."""
    expr = prefix_keys(sel.parse(text), NAMESPACE_PREFIX)
    return str(expr).replace("all()", f"has({LABEL_NAMESPACE})")


def scoped_text(selector: str, ns_selector: str) -> str:
    """`(<namespace part>) && (<selector>)`, as updateprocessors/rules.go combines them."""
    if not ns_selector:
        return sel.canonical(selector) if selector else ""
    if not selector:
        return sel.canonical(ns_selector)
    return sel.canonical(f"({ns_selector}) && ({selector})")


def ns_eq(namespace: str) -> str:
    return f"{LABEL_NAMESPACE} == '{namespace}'"


def canonical_cidr(cidr: str) -> str:
    """cnet.ParseCIDR(...).String(): host bits cleared."""
    return str(ipaddress.ip_network(cidr, strict=False))


# ---------------------------------------------------------------- Calico's own policies


CALICO_KINDS = (KIND_NP, KIND_GNP)
_PROTOCOL_NAMES = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP", "UDPLite", 6, 17, 132, 136)


def parse_tier(obj: RawObject) -> Tier:
    """A projectcalico.org/v3 Tier."""
    f = Fields(thaw(obj.body), obj.meta.source, f"Tier {obj.name}")
    spec = f.sub("spec")
    order = spec.data.get("order")
    if order is not None and not isinstance(order, int | float):
        raise spec.error("order", f"must be a number, got {order!r}")
    action = spec.enum("defaultAction", (DENY_, PASS_), default=DENY_)
    return Tier(obj.name, None if order is None else float(order), action)


def parse_calico_policy(obj: RawObject) -> Policy | None:
    """A projectcalico.org/v3 NetworkPolicy or GlobalNetworkPolicy (None: one that applies
    only to host endpoints: preDNAT or doNotTrack). Raises InputError naming the field."""
    namespaced = obj.kind == KIND_NP
    ref = f"{obj.kind} {obj.namespace}/{obj.name}" if namespaced else f"{obj.kind} {obj.name}"
    f = Fields(thaw(obj.body), obj.meta.source, ref)
    spec = f.sub("spec")
    if spec.bool("preDNAT") or spec.bool("doNotTrack"):
        return None
    ns = (obj.namespace or "default") if namespaced else None
    selector = _policy_selector(spec, ns)
    order = spec.data.get("order")
    if order is not None and not isinstance(order, int | float):
        raise spec.error("order", f"must be a number, got {order!r}")
    ingress = tuple(_calico_rule(r, ns, f"ingress[{i}]")
                    for i, r in enumerate(spec.items("ingress")))
    egress = tuple(_calico_rule(r, ns, f"egress[{i}]")
                   for i, r in enumerate(spec.items("egress")))
    types = tuple(spec.str_list("types"))
    for t in types:
        if t not in (INGRESS, EGRESS):
            raise spec.error("types", f"must list Ingress and/or Egress, got {t!r}")
    if not types:  # policy_common.go: Ingress unless only egress rules; Egress with them
        types = tuple(t for t, on in ((INGRESS, bool(ingress) or not egress),
                                      (EGRESS, bool(egress))) if on)
    tier = spec.str("tier", default=DEFAULT_TIER.name)
    return Policy(obj.kind, obj.name, ns, tier, None if order is None else float(order),
                  selector, types, ingress, egress)



def _parse_sel(f: Fields, key: str) -> str:
    text = f.str(key, default="")
    try:
        sel.parse(text)
    except sel.SelectorError as err:
        raise f.error(key, f"is not a valid selector: {err}") from None
    return text


def _policy_selector(spec: Fields, ns: str | None) -> EndpointSelector:
    text = _parse_sel(spec, "selector") or "all()"
    parts = [text]
    if ns is not None:
        parts.insert(0, ns_eq(ns))
    elif spec.has("namespaceSelector"):
        parts.insert(0, namespace_selector_text(_parse_sel(spec, "namespaceSelector")))
    if spec.has("serviceAccountSelector"):
        sa = prefix_keys(sel.parse(_parse_sel(spec, "serviceAccountSelector")),
                         SERVICE_ACCOUNT_PREFIX)
        parts.append(str(sa))
    combined = parts[0]
    for p in parts[1:]:
        combined = f"({combined}) && ({p})"
    expr = sel.parse(combined)
    return EndpointSelector(str(expr), pods=expr)


def _calico_rule(r: Fields, ns: str | None, origin: str) -> Rule:
    action = r.enum("action", ACTIONS, required=True)
    if r.has("services") or r.sub("source").has("services") or \
            r.sub("destination").has("services"):
        raise r.error("destination.services", "Service matches are not modelled by netsim")
    protocol = _protocol(r, "protocol")
    not_protocol = _protocol(r, "notProtocol")
    version = r.int("ipVersion", default=None)
    if version not in (None, 4, 6):
        raise r.error("ipVersion", f"must be 4 or 6, got {version}")
    source = _entity(r.sub("source"), ns, protocol)
    destination = _entity(r.sub("destination"), ns, protocol)
    return Rule(action, protocol, not_protocol, _icmp(r.sub("icmp")) if r.has("icmp") else None,
                _icmp(r.sub("notICMP")) if r.has("notICMP") else None, version, source,
                destination, origin)


def _protocol(r: Fields, key: str) -> str | int | None:
    value = r.data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 255:
        return value
    if isinstance(value, str):
        for name in _PROTOCOL_NAMES:
            if value.lower() == name.lower():
                return name
        if value.isdigit() and 1 <= int(value) <= 255:
            return int(value)
    raise r.error(key, f"must be one of {', '.join(_PROTOCOL_NAMES)} or 1-255, got {value!r}")


def _icmp(f: Fields) -> tuple[int, int | None]:
    return f.int("type", required=True, lo=0, hi=254), f.int("code", default=None, lo=0, hi=255)


def _ports(f: Fields, key: str, protocol) -> tuple[Port, ...]:
    out = []
    for i, value in enumerate(f.list(key)):
        where = f"{key}[{i}]"
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 65535:
                raise f.error(where, f"must be 0-65535, got {value}")
            out.append(Port(value, value))
        elif isinstance(value, str) and ":" in value:
            lo, _, hi = value.partition(":")
            if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi) or int(hi) > 65535:
                raise f.error(where, f"must be a range like 8000:8080, got {value!r}")
            out.append(Port(int(lo), int(hi)))
        elif isinstance(value, str) and value.isdigit():
            out.append(Port(int(value), int(value)))
        elif isinstance(value, str) and value:
            out.append(Port(name=value))
        else:
            raise f.error(where, f"must be a port, a range or a port name, got {value!r}")
    if out and protocol not in _PORT_PROTOCOLS:
        raise f.error(key, "ports need protocol TCP, UDP, SCTP or UDPLite")
    return tuple(out)


def _entity(f: Fields, ns: str | None, protocol) -> EntityRule:
    selector_text = _parse_sel(f, "selector")
    not_selector_text = _parse_sel(f, "notSelector")
    ns_text = _parse_sel(f, "namespaceSelector")
    if ns_text:
        scope = namespace_selector_text(ns_text)
    elif ns is not None:
        scope = ns_eq(ns)
    else:
        scope = ""
    accounts = f.sub("serviceAccounts")
    sa_parts = []
    names = accounts.str_list("names")
    if names:
        sa_parts.append(f"{LABEL_SERVICE_ACCOUNT} in {{ " +
                        ", ".join(_quote(n) for n in names) + " }")
    if accounts.has("selector"):
        sa_parts.append(str(prefix_keys(sel.parse(_parse_sel(accounts, "selector")),
                                        SERVICE_ACCOUNT_PREFIX)))
    # updateprocessors/rules.go: the namespace part is added when the rule has a selector,
    # a notSelector or a namespaceSelector (nets-only rules stay cluster-wide).
    text = selector_text
    if scope and (selector_text or not_selector_text or ns_text):
        text = f"({scope}) && ({selector_text})" if selector_text else scope
    for part in sa_parts:
        text = f"({text}) && ({part})" if text else part
    selector = None
    if text:
        expr = sel.parse(text)
        selector = EndpointSelector(str(expr), pods=expr)
    not_selector = None
    if not_selector_text:
        expr = sel.parse(not_selector_text)
        not_selector = EndpointSelector(str(expr), pods=expr)
    return EntityRule(
        nets=tuple(canonical_cidr(f.cidr("nets", c)) for c in f.str_list("nets")),
        not_nets=tuple(canonical_cidr(f.cidr("notNets", c)) for c in f.str_list("notNets")),
        selector=selector, not_selector=not_selector,
        ports=_ports(f, "ports", protocol), not_ports=_ports(f, "notPorts", protocol))


# ---------------------------------------------------------------- a cluster's policies


@dataclass(frozen=True, slots=True)
class CalicoPolicies:
    """Every policy of a cluster in felix's model, and the tiers they sit in."""

    policies: tuple[Policy, ...]
    tiers: Mapping[str, Tier]


def cluster_policies(cluster) -> CalicoPolicies:
    """The cluster's Kubernetes, admin-tier and Calico policies, converted as Calico does.

    Raises InputError for an invalid Calico policy or a policy naming an unknown tier.
    """
    from policies.admin import KINDS, parse_admin_policy
    from policies.calico_k8s import from_admin_policy, from_network_policy

    out = [from_network_policy(np) for np in cluster.network_policies]
    for kind in KINDS:
        out += [from_admin_policy(parse_admin_policy(o)) for o in cluster.raw(kind)]
    for kind in CALICO_KINDS:
        for obj in cluster.raw(kind):
            if obj.api_version.split("/")[0] not in ("projectcalico.org",
                                                     "crd.projectcalico.org"):
                continue
            policy = parse_calico_policy(obj)
            if policy is not None:
                out.append(policy)
    tiers = dict(BUILTIN_TIERS)
    for obj in cluster.raw("Tier"):
        tiers[obj.name] = parse_tier(obj)
    for p in out:
        if p.tier not in tiers:
            raise InputError(f"names tier {p.tier!r}, which does not exist", obj=p.ref,
                             field="spec.tier")
    return CalicoPolicies(tuple(out), tiers)
