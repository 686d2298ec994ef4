"""Kubernetes and admin-tier policies converted into Calico's model, as libcalico-go does.

- NetworkPolicy: lib/backend/k8s/conversion/conversion.go K8sNetworkPolicyToCalico -- tier
  `default`, order 1000, one Allow rule per protocol (sorted) x peer, the ports of one
  protocol merged by SimplifyPorts, ipBlock as nets/notNets, selectors scoped to the
  policy's namespace unless a namespaceSelector is given.
- AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy:
  conversion/clusternetworkpolicy.go -- tiers `kube-admin`/`kube-baseline`, order =
  priority, Accept -> Allow, Deny, Pass; types from which directions have rules. Peers and
  ports Calico cannot express (nodes, domain names, named ports) make the rule fail closed:
  a Deny or Pass rule becomes "deny everything", an Accept rule is dropped
  (k8sClusterNetPolHandleFailedRules).

Selector membership keeps the Kubernetes label selector semantics (netsim.model.
LabelSelector); the Calico selector text only names the IP set.
"""

from __future__ import annotations

from dataclasses import replace

from netsim.model import LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyRule
from policies import calico_selector as sel
from policies.admin import ADMIN, DENY, PASS, AdminPeer, AdminPolicy
from policies.calico import (
    ALLOW,
    DEFAULT_TIER,
    DENY_,
    EGRESS,
    INGRESS,
    KIND_ANP,
    KIND_BANP,
    KIND_CNP,
    KIND_KNP,
    KUBE_ADMIN_TIER,
    KUBE_BASELINE_TIER,
    PASS_,
    EndpointSelector,
    EntityRule,
    Policy,
    Port,
    Rule,
    canonical_cidr,
    k8s_selector_text,
    namespace_selector_text,
    ns_eq,
    scoped_text,
)

# ---------------------------------------------------------------- Kubernetes NetworkPolicy


def from_network_policy(np: NetworkPolicy) -> Policy:
    """K8sNetworkPolicyToCalico."""
    ns = np.namespace
    pod_text = k8s_selector_text(np.pod_selector, pods=True)
    selector = EndpointSelector(scoped_text(pod_text, ns_eq(ns)), namespace=ns,
                                pods=np.pod_selector)
    ingress = tuple(r for i, rule in enumerate(np.ingress)
                    for r in _k8s_rule(rule, ns, INGRESS, f"ingress[{i}]"))
    egress = tuple(r for i, rule in enumerate(np.egress)
                   for r in _k8s_rule(rule, ns, EGRESS, f"egress[{i}]"))
    types = tuple(t for t in (INGRESS, EGRESS) if t in np.policy_types) or (INGRESS,)
    return Policy(KIND_KNP, np.name, ns, DEFAULT_TIER.name, 1000.0, selector, types,
                  ingress, egress)


def simplify_ports(ports: list[Port]) -> tuple[Port, ...]:
    """conversion.go SimplifyPorts: named ports first as given, then merged numeric ranges."""
    if len(ports) <= 1:
        return tuple(ports)
    named = [p for p in ports if p.name is not None]
    numeric = sorted((p.first, p.last) for p in ports if p.name is None)
    if sum(last - first + 1 for first, last in numeric) <= 1:
        return tuple(ports)
    merged: list[list[int]] = []
    for first, last in numeric:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return tuple(named) + tuple(Port(a, b) for a, b in merged)


def _k8s_rule(rule: NetworkPolicyRule, ns: str, direction: str, origin: str) -> list[Rule]:
    """k8sRuleToCalico: one Allow rule per protocol (sorted) x peer."""
    by_protocol: dict[str, list[Port] | None] = {}
    for p in rule.ports:
        ports = None if p.port is None else [
            Port(name=p.port) if isinstance(p.port, str)
            else Port(p.port, p.end_port if p.end_port is not None else p.port)]
        if ports is None:
            by_protocol[p.protocol] = None
        elif by_protocol.get(p.protocol, []) is not None:
            by_protocol[p.protocol] = [*by_protocol.get(p.protocol, []), *ports]
    if not rule.ports:
        by_protocol = {"": None}
    peers: list[NetworkPolicyPeer | None] = list(rule.peers) or [None]
    out = []
    key = "from" if direction == INGRESS else "to"
    for protocol in sorted(by_protocol):
        ports = simplify_ports(by_protocol[protocol] or [])
        for j, peer in enumerate(peers):
            entity = _k8s_peer(peer, ns)
            where = f"{origin} {key}[{j}]" if peer is not None else origin
            if direction == INGRESS:
                out.append(Rule(ALLOW, protocol or None, source=entity,
                                destination=EntityRule(ports=ports), origin=where))
            else:
                out.append(Rule(ALLOW, protocol or None,
                                destination=replace(entity, ports=ports), origin=where))
    return out


def _k8s_peer(peer: NetworkPolicyPeer | None, ns: str) -> EntityRule:
    if peer is None:
        return EntityRule()
    if peer.ip_block is not None:
        return EntityRule(nets=(canonical_cidr(peer.ip_block.cidr),),
                          not_nets=tuple(canonical_cidr(c) for c in peer.ip_block.except_))
    pod_text = k8s_selector_text(peer.pod_selector, pods=True)
    if peer.namespace_selector is None:
        scope, namespace = ns_eq(ns), ns
    else:
        scope = namespace_selector_text(k8s_selector_text(peer.namespace_selector, pods=False))
        namespace = None
    return EntityRule(selector=EndpointSelector(scoped_text(pod_text, scope),
                                                namespace=namespace,
                                                namespaces=peer.namespace_selector,
                                                pods=peer.pod_selector))


# ---------------------------------------------------------------- admin tiers


_ADMIN_KINDS = {"AdminNetworkPolicy": KIND_ANP, "BaselineAdminNetworkPolicy": KIND_BANP,
                "ClusterNetworkPolicy": KIND_CNP}


class _Unconvertible(Exception):
    """A rule Calico's converter rejects (it then fails closed)."""


def from_admin_policy(ap: AdminPolicy) -> Policy:
    """K8sClusterNetworkPolicyToCalico (and the same mapping for v1alpha1 ANP/BANP)."""
    tier = KUBE_ADMIN_TIER.name if ap.tier == ADMIN else KUBE_BASELINE_TIER.name
    if ap.subject_namespaces is not None:
        selector = _admin_selector(ap.subject_namespaces, None)
    else:
        selector = _admin_selector(ap.subject_pods.namespaces, ap.subject_pods.pods)
    ingress = tuple(r for i, rule in enumerate(ap.ingress)
                    for r in _admin_rule(rule, INGRESS, f"ingress[{i}]"))
    egress = tuple(r for i, rule in enumerate(ap.egress)
                   for r in _admin_rule(rule, EGRESS, f"egress[{i}]"))
    types = tuple(t for t, rules in ((INGRESS, ingress), (EGRESS, egress)) if rules)
    return Policy(_ADMIN_KINDS[ap.kind], ap.name, None, tier, float(ap.priority), selector,
                  types, ingress, egress)


def _admin_selector(namespaces: LabelSelector, pods: LabelSelector | None) -> EndpointSelector:
    scope = namespace_selector_text(k8s_selector_text(namespaces, pods=False))
    return EndpointSelector(scoped_text(k8s_selector_text(pods, pods=True), scope),
                            namespaces=namespaces, pods=pods)


def _admin_rule(rule, direction: str, origin: str) -> list[Rule]:
    action = {"Accept": ALLOW, DENY: DENY_, PASS: PASS_}[rule.action]
    label = origin + (f" ({rule.name})" if rule.name else "")
    try:
        by_protocol: dict[str, list[Port] | None] = {}
        for p in rule.ports if rule.ports else ():
            if p.name is not None:
                raise _Unconvertible("named ports are not supported")
            ports = None if p.start is None else [Port(p.start, p.end)]
            if ports is None:
                by_protocol[p.protocol] = None
            elif by_protocol.get(p.protocol, []) is not None:
                by_protocol[p.protocol] = [*by_protocol.get(p.protocol, []), *ports]
        if not rule.ports:
            by_protocol = {"": None}
        entities = [_admin_peer(peer, direction) for peer in rule.peers]
    except _Unconvertible:
        # clusternetworkpolicy.go k8sClusterNetPolHandleFailedRules: fail closed.
        return [Rule(DENY_, origin=label + " (fails closed)")] if action != ALLOW else []
    out = []
    for protocol in sorted(by_protocol):
        ports = simplify_ports(by_protocol[protocol] or [])
        for entity in entities:
            if direction == INGRESS:
                out.append(Rule(action, protocol or None, source=entity,
                                destination=EntityRule(ports=ports), origin=label))
            else:
                out.append(Rule(action, protocol or None,
                                destination=replace(entity, ports=ports), origin=label))
    return out


def _admin_peer(peer: AdminPeer, direction: str) -> EntityRule:
    if peer.pods is not None:
        return EntityRule(selector=_admin_selector(peer.pods.namespaces, peer.pods.pods))
    if peer.namespaces is not None:
        scope = namespace_selector_text(k8s_selector_text(peer.namespaces, pods=False))
        return EntityRule(selector=EndpointSelector(sel.canonical(scope),
                                                    namespaces=peer.namespaces))
    if peer.networks and direction == EGRESS:
        return EntityRule(nets=tuple(canonical_cidr(n) for n in peer.networks))
    raise _Unconvertible("none of the supported peer fields is set")


