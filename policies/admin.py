"""Cluster-admin policy tiers: AdminNetworkPolicy and BaselineAdminNetworkPolicy
(policy.networking.k8s.io/v1alpha1) and their successor ClusterNetworkPolicy (v1alpha2).

All three become one form: a tier (Admin above NetworkPolicy, Baseline below it), a
priority (lower wins), a subject, and ordered rules whose action is Accept, Deny or Pass
(v1alpha1's Allow is Accept). Sources: kubernetes-sigs/network-policy-api apis/v1alpha1,
apis/v1alpha2 and ../shared/reference/netpol.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.fields import Fields, thaw
from netsim.model import PROTOCOLS, TCP, LabelSelector, RawObject
from netsim.parse.meta import parse_selector
from policies.endpoints import Peer, in_cidr, named_port
from policies.networkpolicy import Match

ADMIN, BASELINE = "Admin", "Baseline"
ACCEPT, DENY, PASS = "Accept", "Deny", "Pass"
KINDS = ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy")


@dataclass(frozen=True, slots=True)
class PodsSelector:
    """NamespacedPod: pods matching podSelector inside namespaces matching namespaceSelector."""

    namespaces: LabelSelector
    pods: LabelSelector


@dataclass(frozen=True, slots=True)
class AdminPeer:
    """Exactly one kind of peer; an empty one makes the rule fail closed."""

    namespaces: LabelSelector | None = None
    pods: PodsSelector | None = None
    nodes: LabelSelector | None = None
    networks: tuple[str, ...] = ()
    domain_names: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return (self.namespaces is None and self.pods is None and self.nodes is None
                and not self.networks and not self.domain_names)


@dataclass(frozen=True, slots=True)
class AdminPort:
    protocol: str | None = TCP  # None: any protocol (a named port)
    start: int | None = None
    end: int | None = None
    name: str | None = None  # a container port name on the destination pod


@dataclass(frozen=True, slots=True)
class AdminRule:
    name: str
    action: str
    peers: tuple[AdminPeer, ...]
    ports: tuple[AdminPort, ...] | None  # None: every port


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    kind: str
    name: str
    tier: str
    priority: int
    subject_namespaces: LabelSelector | None
    subject_pods: PodsSelector | None
    ingress: tuple[AdminRule, ...] = ()
    egress: tuple[AdminRule, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


# ---------------------------------------------------------------- parsing


def parse_admin_policy(obj: RawObject) -> AdminPolicy:
    """The common form of one ANP, BANP or CNP; raises InputError naming the field."""
    f = Fields(dict(thaw(obj.body)), obj.meta.source, f"{obj.kind} {obj.name}")
    spec = f.sub("spec")
    version = obj.api_version.rpartition("/")[2]
    if obj.kind == "ClusterNetworkPolicy":
        tier = spec.enum("tier", (ADMIN, BASELINE), required=True)
        priority = spec.int("priority", required=True, lo=0, hi=1000)
        actions = (ACCEPT, DENY, PASS)
    elif obj.kind == "AdminNetworkPolicy":
        tier, priority, actions = ADMIN, spec.int("priority", required=True, lo=0, hi=1000), \
            ("Allow", DENY, PASS)
    else:
        if obj.name != "default":
            raise f.error("metadata.name", "a BaselineAdminNetworkPolicy must be named default")
        tier, priority, actions = BASELINE, 0, ("Allow", DENY)
    if version not in ("v1alpha1", "v1alpha2"):
        raise f.error("apiVersion", f"{obj.api_version} is not supported")
    subject = spec.sub("subject")
    if subject.has("namespaces") == subject.has("pods"):
        raise subject.error(None, "must set exactly one of namespaces or pods")
    v2 = obj.kind == "ClusterNetworkPolicy"
    return AdminPolicy(
        kind=obj.kind, name=obj.name, tier=tier, priority=priority,
        subject_namespaces=parse_selector(subject.sub("namespaces"))
        if subject.has("namespaces") else None,
        subject_pods=_pods(subject.sub("pods")) if subject.has("pods") else None,
        ingress=tuple(_rule(r, "from", actions, v2) for r in spec.items("ingress")),
        egress=tuple(_rule(r, "to", actions, v2) for r in spec.items("egress")),
    )



def _pods(f: Fields) -> PodsSelector:
    return PodsSelector(parse_selector(f.sub("namespaceSelector")),
                        parse_selector(f.sub("podSelector")))


def _rule(r: Fields, peers_key: str, actions: tuple[str, ...], v2: bool) -> AdminRule:
    action = r.enum("action", actions, required=True)
    peers = tuple(_peer(p) for p in r.items(peers_key, required=True))
    if not peers:
        raise r.error(peers_key, "must list at least one peer")
    if v2:
        ports = tuple(_v2_port(p) for p in r.items("protocols")) if r.has("protocols") else None
    else:
        ports = tuple(_v1_port(p) for p in r.items("ports")) if r.has("ports") else None
    return AdminRule(name=r.str("name", default=""), action=ACCEPT if action == "Allow" else
                     action, peers=peers, ports=ports)


def _peer(p: Fields) -> AdminPeer:
    return AdminPeer(
        namespaces=parse_selector(p.sub("namespaces")) if p.has("namespaces") else None,
        pods=_pods(p.sub("pods")) if p.has("pods") else None,
        nodes=parse_selector(p.sub("nodes")) if p.has("nodes") else None,
        networks=p.cidr_list("networks"),
        domain_names=p.str_list("domainNames"),
    )


def _v1_port(p: Fields) -> AdminPort:
    if p.has("portNumber"):
        n = p.sub("portNumber")
        port = n.int("port", required=True, lo=1, hi=65535)
        return AdminPort(n.enum("protocol", PROTOCOLS, default=TCP), port, port)
    if p.has("portRange"):
        n = p.sub("portRange")
        return AdminPort(n.enum("protocol", PROTOCOLS, default=TCP), *_range(n))
    if p.has("namedPort"):
        return AdminPort(None, name=p.str("namedPort"))
    raise p.error(None, "must set one of portNumber, portRange or namedPort")


def _range(f: Fields) -> tuple[int, int]:
    """A port range's start and end (start must be below end, as the CRDs validate)."""
    start = f.int("start", required=True, lo=1, hi=65535)
    end = f.int("end", required=True, lo=1, hi=65535)
    if start >= end:
        raise f.error("end", f"must be greater than start ({start})")
    return start, end


def _v2_port(p: Fields) -> AdminPort:
    if p.has("destinationNamedPort"):
        return AdminPort(None, name=p.str("destinationNamedPort"))
    for key in ("tcp", "udp", "sctp"):
        if p.has(key):
            dest = p.sub(key).sub("destinationPort")
            if dest.has("number"):
                n = dest.int("number", lo=1, hi=65535)
                return AdminPort(key.upper(), n, n)
            if dest.has("range"):
                return AdminPort(key.upper(), *_range(dest.sub("range")))
            return AdminPort(key.upper())
    raise p.error(None, "must set one of tcp, udp, sctp or destinationNamedPort")


# ---------------------------------------------------------------- evaluation


def subject_matches(policy: AdminPolicy, pod_peer: Peer) -> bool:
    """Whether a pod is a subject (hostNetwork pods never are)."""
    pod = pod_peer.pod
    if pod is None or pod.host_network:
        return False
    if policy.subject_namespaces is not None:
        return policy.subject_namespaces.matches(pod_peer.namespace_labels)
    sel = policy.subject_pods
    return sel.namespaces.matches(pod_peer.namespace_labels) and sel.pods.matches(pod.labels)


def _peer_reason(peer: AdminPeer, other: Peer, action: str) -> str | None:
    if peer.empty:  # an unknown peer kind fails closed (API doc of the peer types)
        return None if action == ACCEPT else "an empty peer (fails closed: matches everything)"
    pod = other.pod if other.pod is not None and not other.pod.host_network else None
    if peer.namespaces is not None:
        if pod is not None and peer.namespaces.matches(other.namespace_labels):
            return f"namespaces {_s(peer.namespaces)}"
        return None
    if peer.pods is not None:
        if pod is not None and peer.pods.namespaces.matches(other.namespace_labels) and \
                peer.pods.pods.matches(pod.labels):
            return f"pods {_s(peer.pods.namespaces)} / {_s(peer.pods.pods)}"
        return None
    if peer.nodes is not None:
        if other.is_node and peer.nodes.matches(other.node_labels):
            return f"nodes {_s(peer.nodes)}"
        return None
    for cidr in peer.networks:
        if in_cidr(other.ip, cidr):
            return f"networks {cidr}"
    return None  # domainNames need DNS answers; an address alone never matches them


def _s(selector: LabelSelector) -> str:
    return "{}" if selector.is_empty else str(selector)


def _port_reason(ports: tuple[AdminPort, ...] | None, port: int, protocol: str,
                 dst: Peer) -> str | None:
    if ports is None:
        return "every port"
    for p in ports:
        if p.name is not None:
            if named_port(dst.pod, p.name, protocol) == port:
                return f"named port {p.name} ({port}/{protocol})"
            continue
        if p.protocol != protocol:
            continue
        if p.start is None:
            return f"any {protocol} port"
        if p.start <= port <= p.end:
            return f"port {port}/{protocol}" if p.start == p.end else \
                f"ports {p.start}-{p.end}/{protocol}"
    return None


def first_match(policies: list[AdminPolicy], subject: Peer, other: Peer, port: int,
                protocol: str, direction: str) -> Match | None:
    """The first rule, in precedence order, of a tier's policies that matches the connection.

    `policies` are one tier's, sorted by priority (name breaks ties, which the API leaves
    to the implementation).
    """
    dst = subject if direction == "Ingress" else other
    for policy in policies:
        if not subject_matches(policy, subject):
            continue
        rules = policy.ingress if direction == "Ingress" else policy.egress
        for i, rule in enumerate(rules):
            port_reason = _port_reason(rule.ports, port, protocol, dst)
            if port_reason is None:
                continue
            for peer in rule.peers:
                reason = _peer_reason(peer, other, rule.action)
                if reason is not None:
                    key = "ingress" if direction == "Ingress" else "egress"
                    label = f"{key}[{i}]" + (f" ({rule.name})" if rule.name else "")
                    return Match(f"{policy.label} (priority {policy.priority})", label,
                                 ("from " if direction == "Ingress" else "to ") + reason,
                                 port_reason, rule.action)
    return None
