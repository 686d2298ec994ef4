"""What a trace records: hops, each with the packet as it left, and the path's outcome.

Results are a closed set (as Hubble verdicts or Batfish dispositions): delivered (a socket
accepted the packet and the reply made it back), dropped, rejected (the sender got an RST or
an ICMP error). Every outcome carries the reason from REASONS and names what decided it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netsim.packet import TracePacket

DELIVERED, DROPPED, REJECTED = "delivered", "dropped", "rejected"
RESULTS = (DELIVERED, DROPPED, REJECTED)
REQUEST, REPLY, DNS = "request", "reply", "dns"  # DNS: the name lookup before a connection

# The documented reasons a path ends; the detail names the rule, route or map entry.
REASONS = {
    "delivered": "a socket accepted the packet and its reply reached the sender",
    "policy-denied": "a NetworkPolicy (or the CNI's policy) dropped the packet",
    "no-endpoints": "the Service has no ready endpoint: kube-proxy rejects the connection",
    "no-local-endpoints": "externalTrafficPolicy/internalTrafficPolicy Local and no endpoint "
                          "on this node",
    "no-route": "no route to the destination",
    "blackhole": "the route is a blackhole (or unreachable/prohibit)",
    "netfilter-drop": "an iptables rule dropped the packet",
    "netfilter-reject": "an iptables rule rejected the packet",
    "no-socket": "nothing listens on the destination port",
    "reply-mismatch": "the reply did not come back through the translation the request took, "
                      "so the sender's socket does not recognise it",
    "reply-dropped": "the request was delivered but its reply was dropped",
    "ttl-exceeded": "the packet looped until its TTL ran out",
    "service-backend-not-found": "Cilium's load balancer found no backend for the Service",
    "lb-source-range": "the client is outside the LoadBalancer's loadBalancerSourceRanges",
    "mtls-required": "the server's sidecar accepts only mTLS on this port (PeerAuthentication "
                     "STRICT) and resets a plaintext connection",
    "authz-denied": "an AuthorizationPolicy closed the TCP connection",
    "envoy-response": "the client's sidecar answered itself (no route, no healthy upstream, "
                      "an injected fault)",
    "dns-failed": "the name could not be resolved: the DNS query was dropped or the name "
                  "does not exist",
    "http-denied": "an L7 proxy answered the request itself (403) under an HTTP policy rule",
    "http-error": "a proxy (the ingress controller) answered the request itself with an HTTP "
                  "error or redirect (404, 503, 308)",
    "unroutable": "the underlay has no route for the destination",
}


@dataclass(frozen=True, slots=True)
class Hop:
    """One step of the path: where the packet is, which component acted, what it looked up
    and what decided, and the packet as it left (`changed` names the rewritten fields)."""

    node: str | None
    netns: str
    interface: str | None
    component: str
    action: str
    detail: tuple[str, ...]
    packet: TracePacket
    direction: str = REQUEST
    changed: tuple[str, ...] = ()
    event: tuple[tuple[str, object], ...] = ()  # Hubble-style facts (observation point, ids)

    @property
    def facts(self) -> dict:
        return dict(self.event)


@dataclass(frozen=True, slots=True)
class Trace:
    """One path of a packet and its reply, with its probability among all paths."""

    result: str
    reason: str
    detail: str
    delivered_to: str | None
    probability: float
    hops: tuple[Hop, ...]
    packet: TracePacket  # the packet as sent
    branches: tuple[Trace, ...] = field(default=())  # with --all-paths: every path

    @property
    def request_hops(self) -> tuple[Hop, ...]:
        return tuple(h for h in self.hops if h.direction == REQUEST)

    @property
    def reply_hops(self) -> tuple[Hop, ...]:
        return tuple(h for h in self.hops if h.direction == REPLY)
