"""Kubernetes NetworkPolicy (networking.k8s.io/v1) semantics, with the rule that decides.

Facts from the API reference and the upstream e2e tests (../shared/reference/netpol.md):
a direction is isolated only by policies of the pod's own namespace that select it and list
that direction; the allowed set is then the union of their rules; selectors in one peer are
ANDed, peers are ORed; ipBlock matches by address (pods included); named ports resolve on the
destination pod by name and protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.model import (
    LabelSelector,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicyRule,
)
from policies.endpoints import Peer, in_cidr, named_port

INGRESS, EGRESS = "Ingress", "Egress"


@dataclass(frozen=True, slots=True)
class Match:
    """One rule that matched a connection, in words a reviewer can paste into a ticket."""

    policy: str  # "NetworkPolicy ns/name", "AdminNetworkPolicy name", ...
    rule: str  # "ingress[0]" or the rule's name
    peer: str  # which peer matched and why
    port: str  # which port entry matched
    action: str = "Allow"

    def __str__(self) -> str:
        return f"{self.policy} {self.rule}: {self.action} {self.peer}, {self.port}"


def selects(policy: NetworkPolicy, pod_labels: dict, direction: str) -> bool:
    """Whether the policy isolates a pod (of its namespace) in this direction."""
    return direction in policy.policy_types and policy.pod_selector.matches(pod_labels)


def peer_matches(peer: NetworkPolicyPeer, policy_namespace: str, other: Peer) -> str | None:
    """Why the peer matches the other end, or None."""
    if peer.ip_block is not None:
        block = peer.ip_block
        if not in_cidr(other.ip, block.cidr):
            return None
        if any(in_cidr(other.ip, e) for e in block.except_):
            return None
        return f"ipBlock {block.cidr}" + (f" except {', '.join(block.except_)}"
                                          if block.except_ else "")
    pod = other.pod
    if pod is None:  # selectors match only pods (not nodes, not outside addresses)
        return None
    parts = []
    if peer.namespace_selector is None:
        if pod.namespace != policy_namespace:
            return None
    else:
        if not peer.namespace_selector.matches(other.namespace_labels):
            return None
        parts.append(f"namespaceSelector {_sel(peer.namespace_selector)}")
    if peer.pod_selector is not None:
        if not peer.pod_selector.matches(pod.labels):
            return None
        parts.append(f"podSelector {_sel(peer.pod_selector)}")
    where = "" if peer.namespace_selector is not None else f" in namespace {policy_namespace}"
    return " AND ".join(parts) + where


def _sel(selector: LabelSelector) -> str:
    return "{}" if selector.is_empty else str(selector)


def port_matches(p: NetworkPolicyPort, port: int, protocol: str, dst: Peer) -> str | None:
    """Why a ports entry matches, or None. Named ports resolve on the destination pod."""
    if p.protocol != protocol:
        return None
    if p.port is None:
        return f"any {protocol} port"
    if isinstance(p.port, str):
        number = named_port(dst.pod, p.port, protocol)
        if number != port:
            return None
        return f"port {p.port} ({port}/{protocol} on {dst.pod.key})"
    if p.end_port is not None:
        return f"ports {p.port}-{p.end_port}/{protocol}" if p.port <= port <= p.end_port else None
    return f"port {port}/{protocol}" if p.port == port else None


def rule_matches(rule: NetworkPolicyRule, policy_namespace: str, other: Peer, port: int,
                 protocol: str, dst: Peer, peers_key: str) -> tuple[str, str] | None:
    """(peer reason, port reason) when the rule allows the connection, else None."""
    if rule.ports:
        port_reason = next((r for p in rule.ports
                            if (r := port_matches(p, port, protocol, dst)) is not None), None)
        if port_reason is None:
            return None
    else:
        port_reason = "every port"
    if not rule.peers:
        return f"every {'source' if peers_key == 'from' else 'destination'}", port_reason
    for i, peer in enumerate(rule.peers):
        reason = peer_matches(peer, policy_namespace, other)
        if reason is not None:
            return f"{peers_key}[{i}] {reason}", port_reason
    return None


def evaluate_direction(policies: list[NetworkPolicy], subject: Peer, other: Peer, port: int,
                       protocol: str, direction: str, misses: list[str] | None = None,
                       ) -> tuple[list[str], list[Match]]:
    """(policies isolating the subject, rules allowing the connection) for one direction.

    `policies` are those of the subject pod's namespace; the subject is the destination for
    Ingress and the source for Egress. When `misses` is a list, it receives why each rule
    of an isolating policy did not match (for explanations).
    """
    assert subject.pod is not None
    dst = subject if direction == INGRESS else other
    key, peers_key = ("ingress", "from") if direction == INGRESS else ("egress", "to")
    isolating, matches = [], []
    for policy in policies:
        if not selects(policy, subject.pod.labels, direction):
            continue
        name = f"NetworkPolicy {policy.namespace}/{policy.name}"
        isolating.append(name)
        rules = policy.ingress if direction == INGRESS else policy.egress
        if not rules and misses is not None:
            misses.append(f"{name} has no {key} rules: it only isolates")
        for i, rule in enumerate(rules):
            found = rule_matches(rule, policy.namespace, other, port, protocol, dst, peers_key)
            if found is not None:
                matches.append(Match(name, f"{key}[{i}]", found[0], found[1]))
            elif misses is not None:
                misses.append(f"{name} {key}[{i}]: " + why_not(rule, policy.namespace, other,
                                                               port, protocol, dst, peers_key))
    return isolating, matches


def why_not(rule: NetworkPolicyRule, policy_namespace: str, other: Peer, port: int,
            protocol: str, dst: Peer, peers_key: str) -> str:
    """Why a rule does not allow a connection: the first part that fails, in words."""
    if rule.ports and all(port_matches(p, port, protocol, dst) is None for p in rule.ports):
        wanted = ", ".join(f"{p.port if p.port is not None else 'any'}"
                           f"{'-' + str(p.end_port) if p.end_port else ''}/{p.protocol}"
                           for p in rule.ports)
        return f"ports {wanted} do not include {port}/{protocol}" + (
            f" on {dst}" if any(isinstance(p.port, str) for p in rule.ports) else "")
    parts = []
    for i, peer in enumerate(rule.peers):
        parts.append(f"{peers_key}[{i}] {_describe_peer(peer, policy_namespace)}")
    return f"{other} matches none of its peers: " + "; ".join(parts)


def _describe_peer(peer: NetworkPolicyPeer, policy_namespace: str) -> str:
    if peer.ip_block is not None:
        return f"ipBlock {peer.ip_block.cidr}" + (
            f" except {', '.join(peer.ip_block.except_)}" if peer.ip_block.except_ else "")
    parts = []
    if peer.namespace_selector is not None:
        parts.append(f"namespaceSelector {_sel(peer.namespace_selector)}")
    if peer.pod_selector is not None:
        parts.append(f"podSelector {_sel(peer.pod_selector)}")
    where = f" in namespace {policy_namespace}" if peer.namespace_selector is None else ""
    return " AND ".join(parts) + where
