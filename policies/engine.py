"""Policy verdicts for one connection: Admin tier, then NetworkPolicy, then Baseline tier.

Each direction is decided on its own (egress at the source, ingress at the destination) and a
connection needs both. Every verdict names what decided it, implicit decisions included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from netsim.cluster import Cluster
from netsim.fields import EMPTY, FrozenDict
from netsim.model import NetworkPolicy, Pod
from policies.admin import ACCEPT, ADMIN, DENY, KINDS, AdminPolicy, first_match, parse_admin_policy
from policies.endpoints import Peer
from policies.networkpolicy import EGRESS, INGRESS, Match, evaluate_direction

# How a direction was decided: the closed set explain and JSON output use.
SELF, NODE, ADMIN_TIER, NETWORK_POLICY, BASELINE_TIER, DEFAULT, NOT_A_POD = (
    "self", "node", "admin", "networkpolicy", "baseline", "default", "not-a-pod")


@dataclass(frozen=True, slots=True)
class DirectionVerdict:
    direction: str
    allowed: bool
    decided_by: str
    reason: str
    isolating: tuple[str, ...] = ()  # NetworkPolicies selecting the pod for this direction
    matches: tuple[Match, ...] = ()  # the rules that allowed, or the admin rule that decided
    passed: tuple[Match, ...] = ()  # admin Pass rules on the way
    misses: tuple[str, ...] = ()  # why isolating rules did not match (explain only)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict


@dataclass(frozen=True)
class PolicySet:
    """The cluster's policies indexed for evaluation, plus what peers need to know."""

    by_namespace: dict[str, list[NetworkPolicy]]
    admin: tuple[AdminPolicy, ...]
    baseline: tuple[AdminPolicy, ...]
    namespace_labels: dict[str, FrozenDict]
    node_labels: dict[str, FrozenDict]
    node_by_ip: dict[str, str]
    host_network_mode: str = "node"
    _pods_by_ip: dict[str, Pod] = field(default_factory=dict, repr=False)

    @classmethod
    def from_cluster(cls, cluster: Cluster) -> PolicySet:
        by_namespace: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for p in cluster.network_policies:
            by_namespace[p.namespace].append(p)
        admin = [parse_admin_policy(o) for kind in KINDS for o in cluster.raw(kind)]
        order = sorted(admin, key=lambda a: (a.priority, a.name))
        return cls(
            by_namespace=dict(by_namespace),
            admin=tuple(a for a in order if a.tier == ADMIN),
            baseline=tuple(a for a in order if a.tier != ADMIN),
            namespace_labels={n.name: n.labels for n in cluster.namespaces},
            node_labels={n.name: n.labels for n in cluster.nodes},
            node_by_ip={ip: n.name for n in cluster.nodes for a in n.addresses
                        if a.type in ("InternalIP", "ExternalIP") for ip in (a.address,)},
            host_network_mode=cluster.settings.host_network_policy,
            _pods_by_ip={ip: p for p in cluster.pods if not p.host_network for ip in p.ips},
        )

    def pod_peer(self, pod: Pod, ip: str | None = None) -> Peer:
        """A pod as one end of a connection (hostNetwork pods may count as their node)."""
        ip = ip or pod.ip or ""
        if pod.host_network and self.host_network_mode == "node":
            return self.node_peer(pod.node_name or "", ip)
        return Peer(ip=ip, pod=pod, namespace_labels=self.namespace_labels.get(pod.namespace,
                                                                               EMPTY),
                    node=pod.node_name)

    def node_peer(self, node: str, ip: str) -> Peer:
        return Peer(ip=ip, node=node, node_labels=self.node_labels.get(node, EMPTY))

    def ip_peer(self, ip: str) -> Peer:
        """Whatever owns an address: a pod, a node, or the outside world."""
        pod = self._pods_by_ip.get(ip)
        if pod is not None:
            return self.pod_peer(pod, ip)
        node = self.node_by_ip.get(ip)
        return self.node_peer(node, ip) if node else Peer(ip=ip)


def evaluate(ps: PolicySet, src: Peer, dst: Peer, port: int, protocol: str, *,
             explain: bool = False) -> Verdict:
    """Whether src may open a connection to dst:port/protocol, and why.

    With `explain`, denials also list why each rule of the isolating policies missed.
    """
    egress = _direction(ps, src, dst, port, protocol, EGRESS, explain)
    ingress = _direction(ps, dst, src, port, protocol, INGRESS, explain)
    return Verdict(egress.allowed and ingress.allowed, egress, ingress)


def _direction(ps: PolicySet, subject: Peer, other: Peer, port: int, protocol: str,
               direction: str, explain: bool = False) -> DirectionVerdict:
    if subject.pod is None:
        what = "a node" if subject.is_node else "outside the cluster"
        return DirectionVerdict(direction, True, NOT_A_POD,
                                f"{subject} is {what}: no pod policy applies to its "
                                f"{direction.lower()}")
    if other.pod is subject.pod and other.ip == subject.ip:
        return DirectionVerdict(direction, True, SELF, "a pod can always reach itself")
    if other.is_node and other.node == subject.pod.node_name:
        way = "from" if direction == INGRESS else "to"
        return DirectionVerdict(direction, True, NODE, f"traffic {way} the pod's own node "
                                f"{other.node} is always allowed")
    passed: list[Match] = []
    decided = first_match(list(ps.admin), subject, other, port, protocol, direction)
    if decided is not None:
        if decided.action != "Pass":
            return DirectionVerdict(direction, decided.action == ACCEPT, ADMIN_TIER,
                                    f"{decided.policy} decides: {decided.action}",
                                    matches=(decided,))
        passed.append(decided)
    policies = ps.by_namespace.get(subject.pod.namespace, [])
    misses: list[str] | None = [] if explain else None
    isolating, matches = evaluate_direction(policies, subject, other, port, protocol, direction,
                                            misses)
    if isolating:
        allowed = bool(matches)
        reason = (f"{subject.pod.key} is isolated for {direction.lower()}; "
                  f"{len(matches)} rule(s) allow this connection" if allowed else
                  f"{subject.pod.key} is isolated for {direction.lower()} and no rule of its "
                  "policies allows this connection")
        return DirectionVerdict(direction, allowed, NETWORK_POLICY, reason, tuple(isolating),
                                tuple(matches), tuple(passed),
                                tuple(misses or ()) if not allowed else ())
    decided = first_match(list(ps.baseline), subject, other, port, protocol, direction)
    if decided is not None and decided.action in (ACCEPT, DENY):
        return DirectionVerdict(direction, decided.action == ACCEPT, BASELINE_TIER,
                                f"{decided.policy} decides: {decided.action}",
                                matches=(decided,), passed=tuple(passed))
    if decided is not None:
        passed.append(decided)
    return DirectionVerdict(direction, True, DEFAULT,
                            f"no policy isolates {subject.pod.key} for "
                            f"{direction.lower()}: allowed by default", passed=tuple(passed))
