"""CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2): parsed into rules that
carry Cilium's semantics, so that the CNI can compile them into per-endpoint policy maps.

Facts from Cilium's policy API (pkg/policy/api rule.go, ingress.go, egress.go, l4.go,
entity.go, http.go; pkg/k8s/apis/cilium.io/utils/utils.go; docs.cilium.io
security/policy/language and intro), restated in ../shared/reference/cni.md section 2.4:

- A spec (or each entry of `specs`) is one rule. `endpointSelector` picks the endpoints it
  applies to; in a namespaced CiliumNetworkPolicy Cilium adds
  `k8s:io.kubernetes.pod.namespace=<ns>` to it, a clusterwide policy selects cluster-wide.
- fromEndpoints/toEndpoints are label selectors over *identity* labels. Keys may carry a
  source prefix (`k8s:`, `reserved:`, `any:`); without one they match any source. In a
  namespaced policy a selector that names no namespace (and no reserved label) is confined to
  the policy's namespace, which makes `fromEndpoints: [{}]` mean "my namespace", while an
  empty selector in a clusterwide policy selects every identity.
- A rule with L3 peers and no toPorts allows every port; a rule with toPorts and no L3 peer
  applies to every peer; a rule with neither selects nothing, which is how `ingress: [{}]`
  puts an endpoint into default deny.
- Any rule with an ingress (or ingressDeny) section makes the direction default-deny for
  the endpoints it selects, unless `enableDefaultDeny.ingress: false`.
- ports default to protocol ANY; `port: "0"` or no port means every port; a port may be an
  IANA name resolved on the endpoints; `endPort` gives a range.
- rules.http entries (method, path, host: extended POSIX regexes on the whole value;
  headers; headerMatches) send the traffic to the L7 proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from netsim.fields import EMPTY, Fields, FrozenDict, thaw
from netsim.model import LabelSelector, NetworkPolicyPeer, RawObject, Requirement
from netsim.parse.meta import SELECTOR_OPERATORS, parse_requirements
from policies.endpoints import Peer
from policies.networkpolicy import peer_matches

CNP, CCNP = "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"
KINDS = (CNP, CCNP)
PORT_PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP", "ICMPV6", "ANY")
# Label keys Cilium gives every pod identity (pkg/k8s/apis/cilium.io/const.go).
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
SERVICE_ACCOUNT_LABEL = "io.cilium.k8s.policy.serviceaccount"
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
SOURCES = ("k8s", "reserved", "any", "cidr", "unspec", "container", "cilium-generated")
# pkg/policy/api/entity.go. "cluster" also takes every endpoint of the local cluster.
ENTITY_LABELS = {
    "world": ("reserved:world", "reserved:world-ipv4", "reserved:world-ipv6"),
    "world-ipv4": ("reserved:world-ipv4",),
    "world-ipv6": ("reserved:world-ipv6",),
    "host": ("reserved:host",),
    "remote-node": ("reserved:remote-node",),
    "kube-apiserver": ("reserved:kube-apiserver",),
    "ingress": ("reserved:ingress",),
    "init": ("reserved:init",),
    "health": ("reserved:health",),
    "unmanaged": ("reserved:unmanaged",),
    "none": (),
    "cluster": ("reserved:host", "reserved:remote-node", "reserved:init", "reserved:ingress",
                "reserved:health", "reserved:unmanaged", "reserved:kube-apiserver"),
    "all": (),
}
ENTITIES = tuple(ENTITY_LABELS)
# Fields the emulator reads but does not model (DNS proxy, kvstore groups, requirements).
UNMODELLED = ("fromRequires", "toRequires", "fromGroups", "toGroups", "toServices", "toFQDNs",
              "fromNodes", "toNodes", "icmps")


# ---------------------------------------------------------------- peers


def label_key(key: str) -> str:
    """A selector key in the form identity label maps use: "k8s:app", or "app" for any source.

    Cilium splits a key at the first ':' when the part before it is a known source
    (pkg/labels ParseSelectLabel); `any:` is the default source and is dropped here.
    """
    source, sep, rest = key.partition(":")
    if sep and source in SOURCES:
        return rest if source == "any" else f"{source}:{rest}"
    return key


@dataclass(frozen=True, slots=True)
class EndpointSelector:
    """api.EndpointSelector: a label selector over identity labels (keys as label_key gives)."""

    selector: LabelSelector = field(default_factory=LabelSelector)

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> EndpointSelector:
        """A selector requiring each label (keys in label_key form, e.g. "reserved:host")."""
        return cls(LabelSelector(FrozenDict(labels)))

    @property
    def is_wildcard(self) -> bool:
        return self.selector.is_empty

    def has_key(self, key: str) -> bool:
        return key in self.selector.match_labels or any(
            r.key == key for r in self.selector.match_expressions)

    def has_reserved(self) -> bool:
        keys = list(self.selector.match_labels) + [r.key for r in self.selector.match_expressions]
        return any(k.startswith("reserved:") for k in keys)

    def confined_to(self, namespace: str) -> EndpointSelector:
        """The selector with `k8s:io.kubernetes.pod.namespace=<ns>` added (Cilium's AddMatch)."""
        labels = dict(self.selector.match_labels)
        labels[f"k8s:{NAMESPACE_LABEL}"] = namespace
        return EndpointSelector(LabelSelector(FrozenDict(labels),
                                              self.selector.match_expressions))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.selector.matches(labels)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return "{}" if self.is_wildcard else str(self.selector)


WILDCARD = EndpointSelector()  # selects every identity, reserved ones and world included


@dataclass(frozen=True, slots=True)
class K8sPeer:
    """A Kubernetes NetworkPolicy selector peer (no ipBlock), as Cilium translates it.

    Matching is NetworkPolicy's own (policies.networkpolicy.peer_matches) applied to a pod of
    the identity, so only pod identities can match, as Cilium's namespace-label selectors do.
    """

    peer: NetworkPolicyPeer
    namespace: str

    def matches(self, pod_peer: Peer) -> bool:
        return peer_matches(self.peer, self.namespace, pod_peer) is not None

    def __str__(self) -> str:
        parts = []
        if self.peer.namespace_selector is not None:
            parts.append(f"namespaceSelector {_sel(self.peer.namespace_selector)}")
        if self.peer.pod_selector is not None:
            parts.append(f"podSelector {_sel(self.peer.pod_selector)}")
        where = "" if self.peer.namespace_selector is not None else f" in {self.namespace}"
        return " AND ".join(parts) + where


@dataclass(frozen=True, slots=True)
class Entity:
    name: str

    def __str__(self) -> str:
        return f"entity {self.name}"


@dataclass(frozen=True, slots=True)
class CIDRSet:
    """A CIDR with the sub-ranges it does not cover (toCIDR, toCIDRSet, ipBlock)."""

    cidr: str
    except_: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.cidr + (f" except {', '.join(self.except_)}" if self.except_ else "")


PeerSelector = EndpointSelector | K8sPeer | Entity | CIDRSet


def _sel(selector: LabelSelector) -> str:
    return "{}" if selector.is_empty else str(selector)


# ---------------------------------------------------------------- ports and L7


@dataclass(frozen=True, slots=True)
class PortProtocol:
    """One toPorts.ports entry; port None means every port of the protocol."""

    protocol: str = "ANY"
    port: int | str | None = None
    end_port: int | None = None

    def __str__(self) -> str:
        port = "ANY" if self.port is None else str(self.port)
        if self.end_port is not None:
            port += f"-{self.end_port}"
        return f"{port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    value: str | None = None
    mismatch: str | None = None  # LOG, ADD, DELETE, REPLACE: a mismatch is not a denial


@dataclass(frozen=True, slots=True)
class HTTPRule:
    """One rules.http entry; every field that is set must match. An empty rule matches all."""

    method: str | None = None
    path: str | None = None
    host: str | None = None
    headers: tuple[str, ...] = ()  # "Name" (present) or "Name: value"
    header_matches: tuple[HeaderMatch, ...] = ()

    def __str__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("method", self.method), ("path", self.path),
                                            ("host", self.host)) if v is not None]
        parts += [f"header {h!r}" for h in self.headers]
        parts += [f"headerMatch {m.name}={m.value!r}" for m in self.header_matches]
        return "{" + ", ".join(parts) + "}" if parts else "{}"


@dataclass(frozen=True, slots=True)
class PortRule:
    """toPorts entry: ports plus, when rules.http is given, the HTTP rules (None: no L7)."""

    ports: tuple[PortProtocol, ...] = ()
    http: tuple[HTTPRule, ...] | None = None


# ---------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class PeerRule:
    """One ingress/egress (or deny) rule: peers x ports. No peers + ports means every peer."""

    peers: tuple[PeerSelector, ...]
    to_ports: tuple[PortRule, ...] = ()
    where: str = ""  # "ingress[0]": the rule's place, for provenance


@dataclass(frozen=True, slots=True)
class K8sSubject:
    """A NetworkPolicy's podSelector inside its namespace."""

    pod_selector: LabelSelector
    namespace: str


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One api.Rule: what it selects and its four rule lists, with where it came from."""

    source: str  # "CiliumNetworkPolicy default/rule1", "NetworkPolicy x/deny-all"
    namespace: str | None  # None for clusterwide rules
    subject: EndpointSelector | K8sSubject
    ingress: tuple[PeerRule, ...] = ()
    egress: tuple[PeerRule, ...] = ()
    ingress_deny: tuple[PeerRule, ...] = ()
    egress_deny: tuple[PeerRule, ...] = ()
    ingress_section: bool = False  # an ingress or ingressDeny section is present
    egress_section: bool = False
    default_deny_ingress: bool = True  # enableDefaultDeny.ingress
    default_deny_egress: bool = True

    def selects(self, labels: Mapping[str, str], namespace: str | None,
                pod_labels: Mapping[str, str]) -> bool:
        """Whether the rule applies to an endpoint with these identity labels."""
        if isinstance(self.subject, K8sSubject):
            return namespace == self.subject.namespace and \
                self.subject.pod_selector.matches(pod_labels)  # type: ignore[arg-type]
        return self.subject.matches(labels)

    def rules(self, direction: str, deny: bool) -> tuple[PeerRule, ...]:
        if direction == "ingress":
            return self.ingress_deny if deny else self.ingress
        return self.egress_deny if deny else self.egress

    def section(self, direction: str) -> bool:
        return self.ingress_section if direction == "ingress" else self.egress_section

    def default_deny(self, direction: str) -> bool:
        return self.default_deny_ingress if direction == "ingress" else \
            self.default_deny_egress


# ---------------------------------------------------------------- parsing


def parse_cilium_policy(obj: RawObject) -> tuple[tuple[PolicyRule, ...], tuple[str, ...]]:
    """The rules of one CNP/CCNP and warnings about fields netsim does not model.

    Raises InputError naming the field for invalid input.
    """
    namespace = obj.namespace if obj.kind == CNP else None
    label = f"{obj.kind} {namespace}/{obj.name}" if namespace else f"{obj.kind} {obj.name}"
    f = Fields(thaw(obj.body), obj.meta.source, label)
    specs = []
    if f.has("spec"):
        specs.append(f.sub("spec"))
    specs += list(f.items("specs"))
    if not specs:
        raise f.error("spec", "required: spec or specs")
    rules, warnings = [], []
    for i, spec in enumerate(specs):
        source = label if len(specs) == 1 else f"{label} specs[{i}]"
        rule = _parse_spec(spec, source, namespace, warnings)
        if rule is not None:
            rules.append(rule)
    return tuple(rules), tuple(warnings)



def _parse_spec(spec: Fields, source: str, namespace: str | None,
                warnings: list[str]) -> PolicyRule | None:
    if spec.has("nodeSelector") and not spec.has("endpointSelector"):
        warnings.append(f"{source}: nodeSelector (host firewall) policies are not modelled; "
                        "skipped")
        return None
    if not spec.has("endpointSelector"):
        raise spec.error("endpointSelector", "required field is missing")
    subject = _selector(spec.sub("endpointSelector"))
    if namespace is not None:
        user = subject.selector.match_labels.get(f"k8s:{NAMESPACE_LABEL}",
                                                 subject.selector.match_labels.get(
                                                     NAMESPACE_LABEL))
        if user is not None and user != namespace:
            raise spec.error("endpointSelector", f"selects namespace {user!r}, but the policy "
                             f"lives in {namespace!r}")
        subject = subject.confined_to(namespace)
    lists = {}
    for key in ("ingress", "egress", "ingressDeny", "egressDeny"):
        peers_key = "from" if key.startswith("ingress") else "to"
        lists[key] = tuple(_peer_rule(r, peers_key, namespace, key.endswith("Deny"),
                                      f"{key}[{i}]", source, warnings)
                           for i, r in enumerate(spec.items(key)))
    defaults = spec.sub("enableDefaultDeny")
    return PolicyRule(
        source=source, namespace=namespace, subject=subject,
        ingress=lists["ingress"], egress=lists["egress"],
        ingress_deny=lists["ingressDeny"], egress_deny=lists["egressDeny"],
        ingress_section=bool(lists["ingress"] or lists["ingressDeny"]),
        egress_section=bool(lists["egress"] or lists["egressDeny"]),
        default_deny_ingress=defaults.bool("ingress", default=True),
        default_deny_egress=defaults.bool("egress", default=True),
    )


def _selector(f: Fields) -> EndpointSelector:
    labels = {label_key(k): v for k, v in f.string_map("matchLabels").items()}
    expressions = tuple(Requirement(label_key(r.key), r.operator, r.values)
                        for r in parse_requirements(f, "matchExpressions", SELECTOR_OPERATORS))
    return EndpointSelector(LabelSelector(FrozenDict(labels) if labels else EMPTY, expressions))


def _peer_rule(r: Fields, peers_key: str, namespace: str | None, deny: bool, where: str,
               source: str, warnings: list[str]) -> PeerRule:
    peers: list[PeerSelector] = []
    for sel in r.items(f"{peers_key}Endpoints"):
        es = _selector(sel)
        if namespace is not None and not es.has_reserved() and \
                not es.has_key(f"k8s:{NAMESPACE_LABEL}") and not es.has_key(NAMESPACE_LABEL):
            es = es.confined_to(namespace)  # utils.go getEndpointSelector
        peers.append(es)
    for i, name in enumerate(r.str_list(f"{peers_key}Entities")):
        if name not in ENTITY_LABELS:
            raise r.error(f"{peers_key}Entities[{i}]", f"must be one of {', '.join(ENTITIES)}, "
                          f"got {name!r}")
        peers.append(Entity(name))
    for i, cidr in enumerate(r.str_list(f"{peers_key}CIDR")):
        peers.append(CIDRSet(_cidr(r, f"{peers_key}CIDR[{i}]", cidr)))
    for s in r.items(f"{peers_key}CIDRSet"):
        if s.has("cidrGroupRef") and not s.has("cidr"):
            warnings.append(f"{source} {where}: cidrGroupRef (CiliumCIDRGroup) is not "
                            "modelled; the peer selects nothing")
            continue
        cidr = _cidr(s, "cidr", s.str("cidr", required=True))
        excepts = tuple(_cidr(s, f"except[{j}]", e) for j, e in enumerate(s.str_list("except")))
        for j, e in enumerate(excepts):
            net, sub = ipaddress.ip_network(cidr), ipaddress.ip_network(e)
            if sub.version != net.version or not sub.subnet_of(net):
                raise s.error(f"except[{j}]", f"must lie inside cidr {cidr}, got {e}")
        peers.append(CIDRSet(cidr, excepts))
    for key in UNMODELLED:
        if r.has(key):
            warnings.append(f"{source} {where}: {key} is not modelled; that part of the rule "
                            "selects nothing")
    to_ports = tuple(_port_rule(p, deny) for p in r.items("toPorts"))
    l3_keys = [f"{peers_key}{k}" for k in ("Endpoints", "Entities", "CIDR", "CIDRSet")]
    has_l3 = any(r.data.get(k) for k in l3_keys + list(UNMODELLED))
    if not has_l3 and to_ports:
        peers = [WILDCARD]  # an L4-only rule applies to every peer on these ports
    return PeerRule(tuple(peers), to_ports, where)


def _cidr(f: Fields, key: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise f.error(key, f"must be a CIDR or an IP address, got {value!r}") from None


def _port_rule(p: Fields, deny: bool) -> PortRule:
    ports = tuple(_port(q) for q in p.items("ports"))
    rules = p.sub("rules")
    http = None
    if rules.data:
        if deny:
            raise rules.error(None, "L7 rules are not allowed in deny rules")
        http = tuple(_http(h) for h in rules.items("http"))
        if not rules.has("http"):
            http = None  # dns/kafka/l7proto: not modelled, treated as L3/L4 only
    return PortRule(ports, http)


def _port(q: Fields) -> PortProtocol:
    raw = q.data.get("port")
    protocol = q.enum("protocol", PORT_PROTOCOLS, default="ANY")
    port: int | str | None = None
    if raw is not None and raw != "":
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise q.error("port", f"must be a port number or name, got {raw!r}")
        text = str(raw)
        if text.isdigit():
            number = int(text)
            if not 0 <= number <= 65535:
                raise q.error("port", f"must be between 0 and 65535, got {number}")
            port = number or None
        else:
            port = q.int_or_str("port")
    end = q.int("endPort", lo=0, hi=65535)
    if end is not None and end != 0:
        if not isinstance(port, int):
            raise q.error("endPort", "may only be set with a numeric port")
        if end < port:
            raise q.error("endPort", f"must be greater than or equal to port ({port})")
    return PortProtocol(protocol, port, end or None)


def _http(h: Fields) -> HTTPRule:
    for key in ("method", "path", "host"):
        value = h.str(key)
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise h.error(key, f"invalid regular expression {value!r}: {exc}") from None
    matches = tuple(HeaderMatch(m.str("name", required=True), m.str("value"),
                                m.enum("mismatch", ("LOG", "ADD", "DELETE", "REPLACE")))
                    for m in h.items("headerMatches"))
    return HTTPRule(h.str("method"), h.str("path"), h.str("host"), h.str_list("headers"), matches)


def cilium_policy_rules(objects: tuple[RawObject, ...]) -> tuple[tuple[PolicyRule, ...],
                                                                  tuple[str, ...]]:
    """Every rule of the given CNP/CCNP objects, in object order, plus warnings."""
    rules: list[PolicyRule] = []
    warnings: list[str] = []
    for obj in objects:
        got, warned = parse_cilium_policy(obj)
        rules += got
        warnings += warned
    return tuple(rules), tuple(warnings)
