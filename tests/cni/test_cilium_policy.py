"""Cilium policy maps against the specification: the NetworkPolicy conformance suite and the
CiliumNetworkPolicy semantics of docs.cilium.io (security/policy/language, intro, deny) and
bpf/lib/policy.h.

Expectations are written by hand from those documents. Where Cilium deviates from the
NetworkPolicy specification (ipBlock never matches pod addresses: cilium/cilium#9209,
docs.cilium.io network/kubernetes/policy "known missing features"), the Cilium outcome is
written here next to the suite's.
"""

from __future__ import annotations

import textwrap

import pytest

from cni.cilium import compile_cilium
from cni.cilium_identity import HOST, REMOTE_NODE, WORLD
from cni.cilium_maps import DROP_POLICY, DROP_POLICY_DENY, PolicyEntry, PolicyKey
from cni.cilium_policy import EndpointPolicy, port_blocks
from netsim.cluster import load_inputs
from netsim.conformance.base import NAMESPACES, base_objects
from netsim.conformance.expect import expected_table
from netsim.conformance.runner import load_suite
from netsim.errors import Source
from netsim.sources import RawDoc
from tests.helpers import load_yaml

# ---------------------------------------------------------------- the conformance suite

# Every suite case whose allows come only from an ipBlock naming pod addresses. Cilium turns
# ipBlock into CIDR selectors, which select CIDR identities only; pod addresses resolve to
# pod identities in the ipcache, so those allows never match and the isolated pod is cut
# off. Written by hand from each case: x/a is the isolated pod in all of them.
CILIUM_IPBLOCK_OUTCOME = {
    "egress-ipblock-pod-cidr": [("x/a", "*", False)],
    "egress-ipblock-except": [("x/a", "*", False)],
    "egress-ipblock-except-overlap-replaced": [("x/a", "*", False)],
    "egress-ipblock-pod-network-except": [("x/a", "*", False)],
    "egress-ipblock-except-union-with-second-policy": [("x/a", "*", False)],
    "ingress-ipblock-pod-cidr": [("*", "x/a", False)],
    "ingress-ipblock-except": [("*", "x/a", False)],
}
_FILENAME, CASES = load_suite("networkpolicy")
BASE = [RawDoc(o, Source("<base cluster>", i + 1)) for i, o in enumerate(base_objects())]


def _matches(selector: str, key: str) -> bool:
    """"ns/pod", "ns/*", "*/pod" or "*" against a pod key, as the suite's expect rules."""
    if selector == "*":
        return True
    (ns, name), (pod_ns, pod_name) = selector.split("/"), key.split("/")
    return ns in ("*", pod_ns) and name in ("*", pod_name)


def _allowed(state, cluster, src, dst, port: int, protocol: str) -> bool:
    """Egress at the source's endpoint AND ingress at the destination's, each looking up
    the peer's identity in its own node's ipcache (as bpf_lxc does)."""
    sn, dn = state.node(src.node_name), state.node(dst.node_name)
    egress = sn.policy_lookup(sn.endpoint(src.ip).id, sn.ipcache_lookup(dst.ip).identity,
                              "egress", protocol, port)
    ingress = dn.policy_lookup(dn.endpoint(dst.ip).id, dn.ipcache_lookup(src.ip).identity,
                               "ingress", protocol, port)
    return egress.allowed and ingress.allowed


def test_the_ipblock_list_names_exactly_the_suites_ipblock_cases():
    tagged = {c.str("name") for c in CASES if "ipblock" in c.list("tags")}
    assert tagged == set(CILIUM_IPBLOCK_OUTCOME)


@pytest.mark.parametrize("case", CASES, ids=[c.str("name") for c in CASES])
def test_networkpolicy_suite(case):
    objects = [[RawDoc(o, Source("suite", i + 1))] for i, o in enumerate(case.list("objects"))]
    cluster = load_inputs([BASE, *objects], overrides={"cni": "cilium"})
    state = compile_cilium(cluster)
    pods = {p.key: p for p in cluster.pods if p.ip and p.namespace in NAMESPACES}  # not CoreDNS
    for probe in case.items("probes"):
        port, protocol = probe.int("port"), probe.str("protocol", default="TCP")
        want = expected_table(probe.sub("expect"), list(pods))
        for src_sel, dst_sel, allow in CILIUM_IPBLOCK_OUTCOME.get(case.str("name"), ()):
            for a, b in want:
                if _matches(src_sel, a) and _matches(dst_sel, b):
                    want[a, b] = allow
        wrong = [(a, b, w) for (a, b), w in want.items()
                 if _allowed(state, cluster, pods[a], pods[b], port, protocol) != w]
        assert not wrong, f"{protocol}/{port}: (from, to, expected) differs: {wrong[:5]}"


# ---------------------------------------------------------------- a small cluster

NODES = """
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 192.168.0.12}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: blue}}
"""


def _pod(ns: str, name: str, node: str, ip: str, app: str, ports: str = "") -> str:
    return textwrap.dedent(f"""
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
        spec:
          nodeName: {node}
          containers: [{{name: c, image: i{', ports: ' + ports if ports else ''}}}]
        status: {{phase: Running, podIP: {ip}}}
        """)


PODS = (_pod("a", "web", "n1", "10.244.0.10", "web",
             "[{name: http, containerPort: 8080}, {name: dns, containerPort: 53, "
             "protocol: UDP}]")
        + _pod("a", "client", "n1", "10.244.0.11", "client")
        + _pod("a", "db", "n2", "10.244.1.20", "db", "[{name: http, containerPort: 9090}]")
        + _pod("b", "client", "n2", "10.244.1.11", "client"))


def cluster_with(*policies: str):
    docs = "\n---\n".join(textwrap.dedent(p) for p in policies)
    text = NODES + PODS + ("---\n" + docs if docs else "")
    cluster = load_yaml(text, overrides={"cni": "cilium"})
    return cluster, compile_cilium(cluster)


def cnp(name: str, spec: str, ns: str = "a", kind: str = "CiliumNetworkPolicy") -> str:
    meta = f"{{name: {name}, namespace: {ns}}}" if kind == "CiliumNetworkPolicy" else \
        f"{{name: {name}}}"
    return (f"apiVersion: cilium.io/v2\nkind: {kind}\nmetadata: {meta}\nspec:\n"
            + textwrap.indent(textwrap.dedent(spec), "  "))


class Probe:
    """Lookups at one pod's endpoint, the peer given as a pod key, a reserved id or an IP."""

    def __init__(self, cluster, state, pod_key: str):
        ns, name = pod_key.split("/")
        self.cluster, self.state = cluster, state
        self.pod = cluster.pod(ns, name)
        self.node = state.node(self.pod.node_name)
        self.ep = self.node.endpoint(self.pod.ip).id

    def _id(self, peer) -> int:
        if isinstance(peer, int):
            return peer
        if "/" in peer:
            return self.state.identity_of_pod(self.cluster.pod(*peer.split("/")))
        return self.node.ipcache_lookup(peer).identity

    def ingress(self, peer, port: int = 8080, protocol: str = "TCP"):
        return self.node.policy_lookup(self.ep, self._id(peer), "ingress", protocol, port)

    def egress(self, peer, port: int = 8080, protocol: str = "TCP"):
        return self.node.policy_lookup(self.ep, self._id(peer), "egress", protocol, port)


def probe(policies: tuple[str, ...], pod: str = "a/web") -> Probe:
    return Probe(*cluster_with(*policies), pod)


# ---------------------------------------------------------------- default allow and deny


def test_an_unselected_endpoint_allows_everything_with_the_allow_all_entry():
    p = probe(())
    d = p.ingress("8.8.8.8", 22)
    assert (d.allowed, d.key, d.match) == (True, PolicyKey(0, "ingress"), "all")
    assert d.derived_from == ("reserved:allow-any-ingress",)
    assert p.egress("a/db", 5432).derived_from == ("reserved:allow-any-egress",)


def test_an_ingress_rule_isolates_ingress_only_and_the_host_stays_allowed():
    p = probe((cnp("web-from-client", """
        endpointSelector: {matchLabels: {app: web}}
        ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
        """),))
    assert p.ingress("a/client").allowed
    denied = p.ingress("a/db")
    assert (denied.allowed, denied.drop_reason, denied.match) == (False, DROP_POLICY, "none")
    assert denied.derived_from == ("CiliumNetworkPolicy a/web-from-client",)  # who isolated it
    host = p.ingress(HOST, 22)  # allow-localhost
    assert host.allowed and host.derived_from == ("reserved:allow-localhost-ingress",)
    assert not p.ingress(REMOTE_NODE, 22).allowed
    assert p.egress("8.8.8.8", 443).allowed  # egress not selected: allow-all


def test_fromendpoints_in_a_namespaced_policy_stays_in_its_namespace():
    p = probe((cnp("same-ns", """
        endpointSelector: {}
        ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
        """),))
    assert p.ingress("a/client").allowed
    assert not p.ingress("b/client").allowed  # same labels, other namespace
    everyone_here = probe((cnp("ns", """
        endpointSelector: {}
        ingress: [{fromEndpoints: [{}]}]
        """),))
    assert everyone_here.ingress("a/db").allowed and not everyone_here.ingress("b/client").allowed
    assert not everyone_here.ingress("8.8.8.8").allowed
    other = probe((cnp("from-b", """
        endpointSelector: {}
        ingress:
        - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: b}}]
        """),))
    assert other.ingress("b/client").allowed and not other.ingress("a/client").allowed


def test_a_clusterwide_selector_is_not_confined_and_namespace_labels_select():
    p = probe((cnp("from-clients", """
        endpointSelector: {matchLabels: {app: web}}
        ingress:
        - fromEndpoints:
          - matchLabels: {app: client, io.cilium.k8s.namespace.labels.team: blue}
        """, kind="CiliumClusterwideNetworkPolicy"),))
    assert p.ingress("b/client").allowed
    assert not p.ingress("a/client").allowed


def test_an_empty_rule_only_isolates():
    p = probe((cnp("deny-egress", """
        endpointSelector: {matchLabels: {app: web}}
        egress: [{}]
        """),))
    assert not p.egress("a/db", 9090).allowed and not p.egress("8.8.8.8", 53, "UDP").allowed
    assert p.ingress("b/client").allowed


def test_enable_default_deny_false_adds_rules_without_isolating():
    p = probe((cnp("audit-only", """
        endpointSelector: {matchLabels: {app: web}}
        enableDefaultDeny: {ingress: false}
        ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
        ingressDeny: [{fromEntities: [world]}]
        """),))
    assert p.ingress("a/db").allowed  # not isolated
    assert p.ingress("a/client").match == "L3-Only"
    world = p.ingress("8.8.8.8")
    assert (world.allowed, world.drop_reason) == (False, DROP_POLICY_DENY)


# ---------------------------------------------------------------- deny precedence


def test_a_deny_wins_over_any_allow_in_any_policy_kind():
    p = probe((
        cnp("allow-all-from-client", """
            endpointSelector: {matchLabels: {app: web}}
            ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
            """),
        """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: k8s-allow, namespace: a}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress: [{ports: [{port: 8080}]}]
        """,
        cnp("no-8080-from-clients", """
            endpointSelector: {}
            ingressDeny:
            - fromEndpoints: [{matchLabels: {app: client}}]
              toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
            """, kind="CiliumClusterwideNetworkPolicy"),
    ))
    d = p.ingress("a/client", 8080)
    assert (d.allowed, d.deny, d.drop_reason) == (False, True, DROP_POLICY_DENY)
    assert d.derived_from == ("CiliumClusterwideNetworkPolicy no-8080-from-clients",)
    assert p.ingress("a/client", 9000).allowed  # the L3 allow still covers other ports
    assert p.ingress("a/db", 8080).allowed  # the NetworkPolicy's any-peer rule on 8080
    # The deny key exists; the allow key it covers was dropped (mapstate deny precedence).
    ident = p.state.identity_of_pod(p.cluster.pod("a", "client"))
    keys = {(e.key, e.deny) for e in p.node.policy_entries(p.ep)}
    assert (PolicyKey(ident, "ingress", 6, 8080, 24), True) in keys


def test_a_wildcard_deny_beats_a_more_specific_allow():
    p = probe((
        cnp("allow", """
            endpointSelector: {matchLabels: {app: web}}
            ingress:
            - fromEndpoints: [{matchLabels: {app: client}}]
              toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
            """),
        cnp("deny-tcp", """
            endpointSelector: {matchLabels: {app: web}}
            ingressDeny: [{toPorts: [{ports: [{protocol: TCP}]}]}]
            """),
    ))
    d = p.ingress("a/client", 8080)
    assert (d.allowed, d.drop_reason, d.key) == (False, DROP_POLICY_DENY,
                                                 PolicyKey(0, "ingress", 6, 0, 8))


# ---------------------------------------------------------------- entities and CIDRs


def test_entities():
    p = probe((cnp("entities", """
        endpointSelector: {matchLabels: {app: web}}
        ingress: [{fromEntities: [cluster]}]
        egress: [{toEntities: [world]}, {toEntities: [host]}]
        """),))
    assert p.ingress("b/client").allowed and p.ingress(REMOTE_NODE).allowed
    assert p.ingress(HOST).allowed
    assert not p.ingress("8.8.8.8").allowed
    assert p.egress("8.8.8.8", 443).allowed
    assert p.egress(HOST, 10250).allowed and not p.egress(REMOTE_NODE, 10250).allowed
    assert not p.egress("a/db", 9090).allowed


def test_cidr_set_with_except_and_pod_addresses_inside_the_cidr():
    cluster, state = cluster_with(cnp("egress-cidr", """
        endpointSelector: {matchLabels: {app: web}}
        egress:
        - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]
        """))
    p = Probe(cluster, state, "a/web")
    outside = p.node.ipcache_lookup("10.2.3.4")
    inside_except = p.node.ipcache_lookup("10.1.2.3")
    assert outside.prefix == "10.0.0.0/8" and inside_except.prefix == "10.1.0.0/16"
    assert outside.identity != inside_except.identity and outside.identity > 1 << 24
    assert p.egress("10.2.3.4", 443).allowed
    assert not p.egress("10.1.2.3", 443).allowed
    assert not p.egress("8.8.8.8", 443).allowed  # world is outside 10/8
    # 10.244.1.20 (a/db) lies in 10.0.0.0/8 but is a pod: CIDR rules never select pods.
    assert p.node.ipcache_lookup("10.244.1.20").identity < 1 << 24
    assert not p.egress("10.244.1.20", 9090).allowed


def test_cidr_zero_selects_world():
    p = probe((cnp("to-anywhere", """
        endpointSelector: {matchLabels: {app: web}}
        egress: [{toCIDR: [0.0.0.0/0]}]
        """),))
    assert p.node.ipcache_lookup("8.8.8.8").identity == WORLD
    assert p.egress("8.8.8.8", 443).allowed and not p.egress("a/db", 9090).allowed


# ---------------------------------------------------------------- ports and precedence


def test_port_range_blocks_cover_exactly_the_range():
    # 8000-8010: 8000/29 covers 8000-8007, 8008/30 covers 8008-8011 would overshoot, so
    # 8008/31 (8008-8009) and 8010/32; prefix lengths count the 8 protocol bits too.
    assert list(port_blocks(8000, 8010)) == [(8000, 21), (8008, 23), (8010, 24)]
    assert list(port_blocks(80, 80)) == [(80, 24)]
    assert list(port_blocks(0, 65535)) == [(0, 8)]
    p = probe((cnp("range", """
        endpointSelector: {matchLabels: {app: web}}
        ingress:
        - toPorts: [{ports: [{port: "8000", endPort: 8010, protocol: TCP}]}]
        """),))
    assert [p.ingress("a/db", port).allowed for port in (7999, 8000, 8007, 8008, 8010, 8011)] \
        == [False, True, True, True, True, False]
    assert not p.ingress("a/db", 8000, "UDP").allowed
    assert p.ingress("a/db", 8005).match == "L4-Only"


def test_protocol_any_with_a_port_means_tcp_udp_and_sctp():
    p = probe((cnp("any", """
        endpointSelector: {matchLabels: {app: web}}
        ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
          toPorts: [{ports: [{port: "53"}]}]
        """),))
    assert all(p.ingress("a/client", 53, proto).allowed for proto in ("TCP", "UDP", "SCTP"))
    assert not p.ingress("a/client", 54, "UDP").allowed


def test_named_ports_resolve_on_the_endpoint_for_ingress_and_cluster_wide_for_egress():
    p = probe((cnp("named", """
        endpointSelector: {matchLabels: {app: web}}
        ingress:
        - toPorts: [{ports: [{port: dns, protocol: UDP}, {port: http, protocol: UDP}]}]
        egress:
        - toPorts: [{ports: [{port: http, protocol: TCP}]}]
        """),))
    assert p.ingress("a/db", 53, "UDP").allowed  # web's own dns port
    assert not p.ingress("a/db", 8080, "UDP").allowed  # http is a TCP port: no match
    # "http" is 8080 on a/web and 9090 on a/db: ambiguous cluster-wide, so skipped.
    assert not p.egress("a/db", 9090).allowed and not p.egress("a/db", 8080).allowed


def test_lookup_precedence_longer_prefix_then_exact_identity():
    p = probe((
        cnp("l3", """
            endpointSelector: {matchLabels: {app: web}}
            ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
            """),
        cnp("l4", """
            endpointSelector: {matchLabels: {app: web}}
            ingress:
            - toPorts:
              - ports: [{port: "8080", protocol: TCP}]
                rules: {http: [{method: GET}]}
            """),
    ))
    on_8080 = p.ingress("a/client", 8080)  # ANY/TCP/8080 (24 bits) beats client/ANY (0 bits)
    assert (on_8080.match, on_8080.key.identity, on_8080.proxy_port > 0) == ("L4-Only", 0, True)
    assert p.ingress("a/client", 9000).match == "L3-Only"
    tie = probe((
        cnp("l3l4", """
            endpointSelector: {matchLabels: {app: web}}
            ingress:
            - fromEndpoints: [{matchLabels: {app: client}}]
              toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
            """),
        cnp("l4", """
            endpointSelector: {matchLabels: {app: web}}
            ingress:
            - toPorts:
              - ports: [{port: "8080", protocol: TCP}]
                rules: {http: [{method: GET}]}
            """),
    ))
    d = tie.ingress("a/client", 8080)  # equal prefixes: the exact identity wins
    assert (d.match, d.key.identity != 0) == ("L3-L4", True)
    # ... and is redirected too, with every request allowed (its rule has no L7 part)
    assert d.proxy_port > 0
    ep = tie.ep
    verdict = tie.node.evaluate_http(ep, d.key.identity, "ingress", "TCP", 8080, "DELETE", "/x")
    assert verdict.allowed
    db = tie.state.identity_of_pod(tie.cluster.pod("a", "db"))
    assert not tie.node.evaluate_http(ep, db, "ingress", "TCP", 8080, "DELETE", "/x").allowed


def test_kubernetes_networkpolicy_and_cilium_policies_add_up():
    p = probe((
        """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web-from-client, namespace: a}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress: [{from: [{podSelector: {matchLabels: {app: client}}}],
                     ports: [{port: http}]}]
        """,
        cnp("db", """
            endpointSelector: {matchLabels: {app: web}}
            ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
            """),
    ))
    allowed = p.ingress("a/client", 8080)
    assert allowed.allowed and allowed.derived_from == ("NetworkPolicy a/web-from-client",)
    assert not p.ingress("a/client", 8081).allowed
    assert p.ingress("a/db", 1234).allowed
    assert p.ingress("a/db", 1).derived_from == ("CiliumNetworkPolicy a/db",)
    assert not p.ingress("b/client", 8080).allowed
    enforcing = p.ingress("b/client", 8080).derived_from
    assert set(enforcing) == {"NetworkPolicy a/web-from-client", "CiliumNetworkPolicy a/db"}


# ---------------------------------------------------------------- the datapath lookup

X, Y = 300, 301  # two remote identities; X has entries of its own, Y has none
SIX_STEPS = EndpointPolicy.of(1, tuple(PolicyEntry(PolicyKey(i, "ingress", proto, port, plen),
                                                   derived_from=(name,))
                                       for i, proto, port, plen, name in (
    (X, 6, 80, 24, "1 id/proto/port"), (0, 6, 80, 24, "2 ANY/proto/port"),
    (X, 6, 0, 8, "3 id/proto/ANY"), (0, 6, 0, 8, "4 ANY/proto/ANY"),
    (X, 0, 0, 0, "5 id/ANY/ANY"), (0, 0, 0, 0, "6 ANY/ANY/ANY"))))


@pytest.mark.parametrize(("remote", "protocol", "port", "step", "match"), [
    (X, "TCP", 80, "1 id/proto/port", "L3-L4"),  # equal prefixes: the identity's entry
    (Y, "TCP", 80, "2 ANY/proto/port", "L4-Only"),
    (X, "TCP", 81, "3 id/proto/ANY", "L3-L4"),
    (Y, "TCP", 81, "4 ANY/proto/ANY", "L4-Only"),
    (X, "UDP", 53, "5 id/ANY/ANY", "L3-Only"),
    (Y, "UDP", 53, "6 ANY/ANY/ANY", "all"),
])
def test_the_six_step_precedence(remote, protocol, port, step, match):
    """cni.md 2.2 / bpf/lib/policy.h: the most specific of the six key shapes decides."""
    d = SIX_STEPS.lookup(remote, "ingress", protocol, port)
    assert (d.allowed, d.derived_from, d.match) == (True, (step,), match)


def test_an_any_identity_key_with_a_longer_prefix_beats_the_identitys_own():
    policy = EndpointPolicy.of(1, (PolicyEntry(PolicyKey(X, "ingress")),
                                   PolicyEntry(PolicyKey(0, "ingress", 6, 80, 24), proxy_port=9)))
    assert policy.lookup(X, "ingress", "TCP", 80).proxy_port == 9  # step 2 before step 5
    assert policy.lookup(X, "ingress", "TCP", 81).key == PolicyKey(X, "ingress")
    nothing = policy.lookup(X, "egress", "TCP", 80)
    assert (nothing.allowed, nothing.drop_reason, nothing.match) == (False, DROP_POLICY, "none")


def test_entity_all_is_the_wildcard():
    p = probe((cnp("all", """
        endpointSelector: {matchLabels: {app: web}}
        ingress: [{fromEntities: [all], toPorts: [{ports: [{port: "8080", protocol: TCP}]}]}]
        """),))
    d = p.ingress("8.8.8.8")
    assert (d.allowed, d.key.identity, d.match) == (True, 0, "L4-Only")
    assert not p.ingress("8.8.8.8", 22).allowed
