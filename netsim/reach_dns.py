"""Can each pod resolve names at all? Its DNS queries (UDP and TCP 53) to the cluster's CoreDNS
pods, under its egress policy and CoreDNS's ingress policy: the check users most need after
adding a default-deny egress.

Evaluated at the policy level (policies.engine), like `netsim reach`, for every pod and every
CoreDNS endpoint; a pod resolves over a protocol when at least one CoreDNS pod is reachable
(the Service's load balancing will pick among them). Pods with dnsPolicy Default use the
node's resolver and are reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.dns import dns_service
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
        if pod.host_network:
            out.append(DnsReach(pod.key, True, True, "hostNetwork: the node's resolver"))
            continue
        key = (pod.namespace, pod.labels, pod.node_name)
        found = cache.get(key)
        if found is None:
            found = cache[key] = _reach(ps, pod, targets)
        out.append(DnsReach(pod.key, found.udp, found.tcp, found.reason))
    return label, tuple(out)


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
