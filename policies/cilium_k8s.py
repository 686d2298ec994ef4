"""Kubernetes NetworkPolicy as Cilium's agent reads it: one Cilium rule per NetworkPolicy.

Cilium translates each NetworkPolicy into an api.Rule (pkg/k8s/network_policy.go
ParseNetworkPolicy; the translated JSON is quoted in cilium/cilium#9209):
- the podSelector becomes the endpointSelector plus `k8s:io.kubernetes.pod.namespace=<ns>`;
- a podSelector/namespaceSelector peer becomes a label selector on the peer's identity (the
  namespace's labels are identity labels `io.cilium.k8s.namespace.labels.*`), so selectors
  only ever match pod identities, never the host, remote nodes or the world;
- an ipBlock peer becomes fromCIDRSet/toCIDRSet, which selects CIDR identities only: Cilium
  does not match pod or node addresses by ipBlock (cilium/cilium#9209, #35212; listed as a
  known gap in docs.cilium.io network/kubernetes/policy "ipBlock set with a pod IP");
- a rule without from/to selects every peer (the wildcard selector, world included);
- a direction listed in policyTypes is default-deny even without rules.
Selector peers keep NetworkPolicy's own matching (policies.networkpolicy), applied to a pod
of the peer identity.
"""

from __future__ import annotations

from netsim.model import NetworkPolicy, NetworkPolicyRule
from policies.cilium import (
    WILDCARD,
    CIDRSet,
    K8sPeer,
    K8sSubject,
    PeerRule,
    PeerSelector,
    PolicyRule,
    PortProtocol,
    PortRule,
)
from policies.networkpolicy import EGRESS, INGRESS


def translate_network_policy(np: NetworkPolicy) -> PolicyRule:
    """The Cilium rule a NetworkPolicy becomes (API-server defaulting already applied)."""
    ns = np.namespace
    ingress = tuple(_rule(r, ns, f"ingress[{i}]") for i, r in enumerate(np.ingress)) \
        if INGRESS in np.policy_types else ()
    egress = tuple(_rule(r, ns, f"egress[{i}]") for i, r in enumerate(np.egress)) \
        if EGRESS in np.policy_types else ()
    return PolicyRule(
        source=f"NetworkPolicy {ns}/{np.name}", namespace=ns,
        subject=K8sSubject(np.pod_selector, ns), ingress=ingress, egress=egress,
        ingress_section=INGRESS in np.policy_types, egress_section=EGRESS in np.policy_types)


def _rule(rule: NetworkPolicyRule, namespace: str, where: str) -> PeerRule:
    peers: tuple[PeerSelector, ...]
    if not rule.peers:
        peers = (WILDCARD,)
    else:
        peers = tuple(CIDRSet(p.ip_block.cidr, p.ip_block.except_) if p.ip_block is not None
                      else K8sPeer(p, namespace) for p in rule.peers)
    to_ports = ()
    if rule.ports:
        to_ports = (PortRule(tuple(PortProtocol(p.protocol, p.port, p.end_port)
                                   for p in rule.ports)),)
    return PeerRule(peers, to_ports, where)
