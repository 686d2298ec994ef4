"""Can each pod resolve names at all? Its DNS queries (UDP and TCP 53) to the cluster's CoreDNS
pods, under its egress policy and CoreDNS's ingress policy: the check users most need after
adding a default-deny egress.

Evaluated at the policy level (policies.engine), like `netsim reach`, for every pod and every
CoreDNS endpoint; a pod resolves over a protocol when at least one CoreDNS pod is reachable
(the Service's load balancing will pick among them). Pods whose resolv.conf points elsewhere
(dnsPolicy Default, hostNetwork without ClusterFirstWithHostNet, a dnsConfig nameserver) are
reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.dns import dns_service, resolv_conf
from netsim.model import Pod
from policies.engine import PolicySet, evaluate

DNS_PORT = 53
PROTOCOLS = ("UDP", "TCP")


@dataclass(frozen=True, slots=True)
class DnsReach:
    """One pod's DNS: per protocol whether some CoreDNS pod answers, and why not."""

    pod: str
    udp: bool
    tcp: bool
    reason: str

    @property
    def resolves(self) -> bool:
        return self.udp or self.tcp


def dns_reach(cluster: Cluster, pods: tuple[Pod, ...] | None = None,
              ps: PolicySet | None = None) -> tuple[str, tuple[DnsReach, ...]]:
    """(what the DNS server is, each pod's DnsReach)."""
    server = dns_service(cluster)
    ps = ps or PolicySet.from_cluster(cluster)
    targets = [cluster.pod(*key.split("/", 1)) for key in server.pods]
    targets = [t for t in targets if t is not None and t.ip]
    label = (f"{server.key} ({', '.join(server.cluster_ips)}): "
             f"{', '.join(t.key for t in targets) or 'no ready CoreDNS pod'}")
    if server.emulated:
        label += " [not in the cluster: spec.dns.disabled]"
    pods = pods if pods is not None else tuple(p for p in cluster.pods if p.ip)
    out = []
    cache: dict[tuple, DnsReach] = {}
    for pod in pods:
        conf = resolv_conf(cluster, pod, server=server)
        if not conf.nameservers or conf.nameservers[0] not in server.cluster_ips:
            out.append(DnsReach(pod.key, True, True, _elsewhere(pod, conf)))
            continue
        key = (pod.namespace, pod.labels, pod.node_name, pod.host_network)
        found = cache.get(key)
        if found is None:
            found = cache[key] = _reach(ps, pod, targets)
        out.append(DnsReach(pod.key, found.udp, found.tcp, found.reason))
    return label, tuple(out)


def _elsewhere(pod: Pod, conf) -> str:
    """Why a pod's queries do not go to the cluster DNS (so its policy does not matter here)."""
    if conf.nameservers:
        return f"dnsConfig nameserver {conf.nameservers[0]}: not the cluster DNS"
    if pod.host_network and pod.spec.dns_policy == "ClusterFirst":  # kubelet's fallback
        return "hostNetwork, dnsPolicy ClusterFirst: the node's resolver"
    return f"dnsPolicy {conf.dns_policy}: the node's resolver"


def _reach(ps: PolicySet, pod: Pod, targets: list[Pod]) -> DnsReach:
    if not targets:
        return DnsReach(pod.key, False, False, "no ready CoreDNS pod answers")
    src = ps.pod_peer(pod)
    result: dict[str, bool] = {}
    why = ""
    for protocol in PROTOCOLS:
        result[protocol] = False
        for target in targets:
            v = evaluate(ps, src, ps.pod_peer(target), DNS_PORT, protocol)
            if v.allowed:
                result[protocol] = True
                break
            if not why:
                side = v.egress if not v.egress.allowed else v.ingress
                by = ", ".join(side.isolating) if side.isolating else side.reason
                why = f"{side.direction.lower()} {protocol}/53 to {target.key} denied: {by}"
    reason = "allowed" if all(result.values()) else why
    return DnsReach(pod.key, result["UDP"], result["TCP"], reason)
