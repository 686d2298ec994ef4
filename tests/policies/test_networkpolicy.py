"""NetworkPolicy (networking.k8s.io/v1) verdicts on the x/y/z fixture, one row per semantic point.

Every expectation is computed by hand from the cluster in fixtures.py and the source cited on
the row group: DOCS = kubernetes/website network-policies.md, E2E = kubernetes/kubernetes
test/e2e/network/netpol/network_policy.go (test titles quoted), defaults.go =
pkg/apis/networking/v1/defaults.go, NETPOL = /work/shared/reference/netpol.md section 1.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from netsim.errors import InputError
from policies.engine import PolicySet, evaluate
from tests.policies.fixtures import N1, N2, OUT, cluster_with, netpol, peer

NP, DEF, NOTPOD, NODE, SELF = "networkpolicy", "default", "not-a-pod", "node", "self"


class Row(NamedTuple):
    policies: str
    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    egress: str  # expected egress decided_by (at the source)
    ingress: str  # expected ingress decided_by (at the destination)
    rules: tuple[str, ...] | None = None  # "ns/policy ingress[i]" rules that allowed it
    mode: str | None = None  # NetsimConfig spec.networkPolicy.hostNetwork


# ------------------------------------------------------------------ policy builders


def to_pod(target: str, peers: str, namespace: str = "x", name: str = "p") -> str:
    """Isolates <namespace>/<target> for ingress; one rule allowing `from: <peers>`."""
    return netpol(namespace, name, f"""
        podSelector: {{matchLabels: {{pod: {target}}}}}
        policyTypes: [Ingress]
        ingress:
        - from: {peers}
        """)


def to_xa(peers: str) -> str:
    return to_pod("a", peers)


def ports_xa(ports: str) -> str:
    """Isolates x/a for ingress; one rule allowing every source on `ports: <ports>`."""
    return netpol("x", "p", f"""
        podSelector: {{matchLabels: {{pod: a}}}}
        policyTypes: [Ingress]
        ingress:
        - ports: {ports}
        """)


def egress_xa(rules: str, name: str = "p") -> str:
    """Isolates x/a for egress with the given egress rule list (flow YAML)."""
    return netpol("x", name, f"""
        podSelector: {{matchLabels: {{pod: a}}}}
        policyTypes: [Egress]
        egress: {rules}
        """)


def deny(namespace: str, types: str = "[Ingress]", name: str = "deny") -> str:
    return netpol(namespace, name, f"podSelector: {{}}\npolicyTypes: {types}\n")


DENY_IN_X = deny("x")
DENY_OUT_X = deny("x", "[Egress]", "deny-out")
DENY_BOTH_X = deny("x", "[Ingress, Egress]", "deny-both")
ALLOW_ALL_IN_X = netpol("x", "p", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]\n")
NAMED_80_X = netpol("x", "p", """
    podSelector: {}
    policyTypes: [Ingress]
    ingress:
    - ports: [{port: serve-80-tcp}]
    """)
EXCEPT_21 = egress_xa("[{to: [{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.21/32]}}]}]")


def row(id_: str, *values, **named) -> pytest.param:
    return pytest.param(Row(*values, **named), id=id_)


ROWS = [
    # -- isolation and defaults (DOCS "The two sorts of pod isolation"; NETPOL 1.1) ------------
    row("no-policy-allows", "", "x/a", "y/b", 80, "TCP", True, DEF, DEF, ()),
    row("deny-ingress-podSelector-empty", DENY_IN_X, "y/a", "x/b", 80, "TCP", False, DEF, NP, ()),
    row("deny-ingress-same-namespace-too", DENY_IN_X, "x/a", "x/b", 80, "TCP", False, DEF, NP, ()),
    row("deny-ingress-leaves-egress-open", DENY_IN_X, "x/b", "y/a", 80, "TCP", True, DEF, DEF),
    row("ingress-empty-list-denies", netpol("x", "p", """
        podSelector: {}
        policyTypes: [Ingress]
        ingress: []
        """), "y/a", "x/b", 80, "TCP", False, DEF, NP, ()),
    # defaults.go: no policyTypes and no egress rules -> [Ingress], nothing allowed.
    row("no-policyTypes-no-rules-denies-ingress", netpol("x", "p", "podSelector: {}"),
        "y/a", "x/b", 80, "TCP", False, DEF, NP, ()),
    row("no-policyTypes-no-rules-egress-open", netpol("x", "p", "podSelector: {}"),
        "x/b", "y/a", 80, "TCP", True, DEF, DEF),
    # NETPOL 1.1: `ingress: [{}]` allows everything, cluster-external sources and every port.
    row("ingress-one-empty-rule-allows", ALLOW_ALL_IN_X, "y/a", "x/b", 80, "TCP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("ingress-one-empty-rule-outside", ALLOW_ALL_IN_X, OUT, "x/b", 80, "TCP", True, NOTPOD, NP,
        ("x/p ingress[0]",)),
    row("ingress-one-empty-rule-any-port", ALLOW_ALL_IN_X, "y/a", "x/b", 81, "SCTP", True, DEF,
        NP, ("x/p ingress[0]",)),
    # DOCS: a policy isolates pods of its own namespace only.
    row("policy-other-namespace-ignored", deny("y"), "x/a", "x/b", 80, "TCP", True, DEF, DEF),
    row("policy-own-namespace-applies", deny("y"), "x/a", "y/b", 80, "TCP", False, DEF, NP, ()),
    row("podSelector-picks-target-not", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Ingress]
        """), "y/a", "x/b", 80, "TCP", True, DEF, DEF),
    row("podSelector-picks-target", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Ingress]
        """), "y/a", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("target-selector-DoesNotExist-isolates-c", netpol("x", "p", """
        podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}
        policyTypes: [Ingress]
        """), "y/a", "x/c", 80, "TCP", False, DEF, NP, ()),
    row("target-selector-DoesNotExist-skips-a", netpol("x", "p", """
        podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}
        policyTypes: [Ingress]
        """), "y/a", "x/a", 80, "TCP", True, DEF, DEF),

    # -- peers: null vs empty selectors, AND vs OR (DOCS "Behavior of to and from selectors";
    #    NETPOL 1.3 table) ------------------------------------------------------------------
    row("podSelector-empty-own-namespace", to_xa("[{podSelector: {}}]"), "x/b", "x/a", 80, "TCP",
        True, DEF, NP, ("x/p ingress[0]",)),
    row("podSelector-empty-not-other-namespace", to_xa("[{podSelector: {}}]"), "y/b", "x/a", 80,
        "TCP", False, DEF, NP, ()),
    row("podSelector-labels", to_xa("[{podSelector: {matchLabels: {pod: b}}}]"), "x/b", "x/a",
        80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("podSelector-labels-other-pod", to_xa("[{podSelector: {matchLabels: {pod: b}}}]"),
        "x/c", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("podSelector-only-policy-namespace", to_xa("[{podSelector: {matchLabels: {pod: b}}}]"),
        "y/b", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("namespaceSelector-empty-other-ns", to_xa("[{namespaceSelector: {}}]"), "y/b", "x/a", 80,
        "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("namespaceSelector-empty-third-ns", to_xa("[{namespaceSelector: {}}]"), "z/c", "x/a", 80,
        "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("namespaceSelector-empty-own-ns", to_xa("[{namespaceSelector: {}}]"), "x/c", "x/a", 80,
        "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("namespaceSelector-empty-not-outside", to_xa("[{namespaceSelector: {}}]"), OUT, "x/a", 80,
        "TCP", False, NOTPOD, NP, ()),
    row("namespaceSelector-empty-not-other-node", to_xa("[{namespaceSelector: {}}]"), N2, "x/a",
        80, "TCP", False, NOTPOD, NP, ()),
    row("namespaceSelector-labels", to_xa("[{namespaceSelector: {matchLabels: {ns: y}}}]"),
        "y/c", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("namespaceSelector-labels-other-ns", to_xa("[{namespaceSelector: {matchLabels: {ns: y}}}]"),
        "z/c", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("namespaceSelector-excludes-own-ns", to_xa("[{namespaceSelector: {matchLabels: {ns: y}}}]"),
        "x/b", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("and-one-peer-match", to_xa(
        "[{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]"),
        "y/b", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("and-one-peer-wrong-pod", to_xa(
        "[{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]"),
        "y/c", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("and-one-peer-wrong-ns", to_xa(
        "[{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]"),
        "x/b", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("or-two-peers-namespace", to_xa(
        "[{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]"),
        "y/c", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("or-two-peers-pod", to_xa(
        "[{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]"),
        "x/b", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("or-two-peers-neither", to_xa(
        "[{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]"),
        "z/b", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("all-namespaces-and-pod", to_xa(
        "[{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]"),
        "z/b", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("all-namespaces-and-pod-other", to_xa(
        "[{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]"),
        "z/c", "x/a", 80, "TCP", False, DEF, NP, ()),
    # NETPOL 1.1: `from` absent or [] means every source, cluster-external included.
    row("from-absent-outside", ports_xa("[{port: 80}]"), OUT, "x/a", 80, "TCP", True, NOTPOD, NP,
        ("x/p ingress[0]",)),
    row("from-absent-pod", ports_xa("[{port: 80}]"), "z/c", "x/a", 80, "TCP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("from-empty-list-pod", to_xa("[]"), "z/c", "x/a", 80, "TCP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("from-empty-list-outside", to_xa("[]"), OUT, "x/a", 80, "TCP", True, NOTPOD, NP,
        ("x/p ingress[0]",)),
    # DOCS "Targeting a Namespace by its name": kubernetes.io/metadata.name is always set.
    row("namespace-name-label", to_xa(
        "[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]"),
        "z/a", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("namespace-name-label-other", to_xa(
        "[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]"),
        "y/a", "x/a", 80, "TCP", False, DEF, NP, ()),

    # -- label selector operators (apimachinery labels.Requirement; NETPOL 1.3) ----------------
    *[row(f"nsSelector-{op}-{src.replace('/', '')}", to_xa(
        f"[{{namespaceSelector: {{matchExpressions: [{expr}]}}}}]"),
        src, "x/a", 80, "TCP", ok, DEF, NP, ("x/p ingress[0]",) if ok else ())
      for op, expr, src, ok in [
          ("In", "{key: env, operator: In, values: [dev]}", "y/b", True),
          ("In", "{key: env, operator: In, values: [dev]}", "z/b", False),  # key missing
          ("In", "{key: env, operator: In, values: [dev]}", "x/b", False),
          ("NotIn", "{key: env, operator: NotIn, values: [prod]}", "y/b", True),
          ("NotIn", "{key: env, operator: NotIn, values: [prod]}", "z/b", True),  # key missing
          ("NotIn", "{key: env, operator: NotIn, values: [prod]}", "x/b", False),
          ("Exists", "{key: env, operator: Exists}", "y/b", True),
          ("Exists", "{key: env, operator: Exists}", "x/b", True),
          ("Exists", "{key: env, operator: Exists}", "z/b", False),
          ("DoesNotExist", "{key: env, operator: DoesNotExist}", "z/b", True),
          ("DoesNotExist", "{key: env, operator: DoesNotExist}", "y/b", False),
      ]],
    *[row(f"podSelector-{op}-{src.replace('/', '')}", to_xa(
        f"[{{podSelector: {{matchExpressions: [{expr}]}}}}]"),
        src, "x/a", 80, "TCP", ok, DEF, NP, ("x/p ingress[0]",) if ok else ())
      for op, expr, src, ok in [
          ("In", "{key: tier, operator: In, values: [db, cache]}", "x/b", True),
          ("In", "{key: tier, operator: In, values: [db, cache]}", "x/c", False),
          ("NotIn", "{key: tier, operator: NotIn, values: [db]}", "x/c", True),  # key missing
          ("NotIn", "{key: tier, operator: NotIn, values: [db]}", "x/b", False),
          ("Exists", "{key: tier, operator: Exists}", "x/b", True),
          ("Exists", "{key: tier, operator: Exists}", "x/c", False),
          ("DoesNotExist", "{key: tier, operator: DoesNotExist}", "x/c", True),
          ("DoesNotExist", "{key: tier, operator: DoesNotExist}", "x/b", False),
      ]],
    # matchLabels AND matchExpressions (metav1.LabelSelector).
    row("matchLabels-and-expressions-conflict", to_xa(
        "[{podSelector: {matchLabels: {pod: b}, "
        "matchExpressions: [{key: tier, operator: In, values: [web]}]}}]"),
        "x/b", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("matchLabels-and-expressions-agree", to_xa(
        "[{podSelector: {matchLabels: {pod: b}, "
        "matchExpressions: [{key: tier, operator: In, values: [db]}]}}]"),
        "x/b", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),

    # -- ipBlock (NETPOL 1.4; DOCS "ipBlock") ----------------------------------------------
    *[row(f"ipBlock-except-{src.replace('/', '')}", to_xa(
        "[{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.16/28]}}]"),
        src, "x/a", 80, "TCP", ok, NOTPOD if src == OUT else DEF, NP,
        ("x/p ingress[0]",) if ok else ())
      for src, ok in [
          ("x/c", True),   # 10.244.2.12: in cidr, below the except range .16-.31
          ("z/c", True),   # 10.244.2.32: just above the except range
          ("y/b", False),  # 10.244.2.21: excepted
          ("z/b", False),  # 10.244.2.31: last address of the except range
          ("y/a", False),  # 10.244.1.20: outside the cidr
          (OUT, False),
      ]],
    # An IPv6 block never matches an IPv4 address (ipaddress families differ).
    row("ipBlock-v6-not-v4-pod", to_xa("[{ipBlock: {cidr: '::/0'}}]"), "y/b", "x/a", 80, "TCP",
        False, DEF, NP, ()),
    row("ipBlock-all-outside", to_xa("[{ipBlock: {cidr: 0.0.0.0/0}}]"), OUT, "x/a", 80, "TCP",
        True, NOTPOD, NP, ("x/p ingress[0]",)),
    # NETPOL 1.4: ipBlock matches pod IPs too.
    row("ipBlock-matches-pod-ip", to_xa("[{ipBlock: {cidr: 0.0.0.0/0}}]"), "y/b", "x/a", 80,
        "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    # NETPOL 1.4: a lenient parser masks host bits; v1.20 e2e wrote podIP/4 = 0.0.0.0/4.
    row("ipBlock-host-bits-masked-pod", to_xa("[{ipBlock: {cidr: 10.244.1.1/4}}]"), "y/b", "x/a",
        80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("ipBlock-host-bits-masked-outside", to_xa("[{ipBlock: {cidr: 10.244.1.1/4}}]"), OUT,
        "x/a", 80, "TCP", True, NOTPOD, NP, ("x/p ingress[0]",)),  # 8.8.8.8 in 0.0.0.0/4
    row("ipBlock-host-bits-masked-node", to_xa("[{ipBlock: {cidr: 10.244.1.1/4}}]"), N2, "x/a",
        80, "TCP", False, NOTPOD, NP, ()),
    # E2E "should allow egress access to server in CIDR block".
    row("egress-cidr-server", egress_xa("[{to: [{ipBlock: {cidr: 10.244.2.21/32}}]}]"),
        "x/a", "y/b", 80, "TCP", True, NP, DEF, ("x/p egress[0]",)),
    row("egress-cidr-other", egress_xa("[{to: [{ipBlock: {cidr: 10.244.2.21/32}}]}]"),
        "x/a", "y/c", 80, "TCP", False, NP, DEF, ()),
    # E2E "should enforce except clause while egress access to server in CIDR block" and
    # "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed".
    row("egress-except-excluded", EXCEPT_21, "x/a", "y/b", 80, "TCP", False, NP, DEF, ()),
    row("egress-except-rest", EXCEPT_21, "x/a", "y/c", 80, "TCP", True, NP, DEF,
        ("x/p egress[0]",)),
    row("egress-except-other-policy-allows", EXCEPT_21 + egress_xa(
        "[{to: [{namespaceSelector: {matchLabels: {ns: y}},"
        " podSelector: {matchLabels: {pod: b}}}]}]", "q"),
        "x/a", "y/b", 80, "TCP", True, NP, DEF, ("x/q egress[0]",)),
    row("egress-ipBlock-outside", egress_xa("[{to: [{ipBlock: {cidr: 8.8.8.0/24}}]}]"),
        "x/a", OUT, 80, "TCP", True, NP, NOTPOD, ("x/p egress[0]",)),
    row("egress-ipBlock-outside-other", egress_xa("[{to: [{ipBlock: {cidr: 8.8.8.0/24}}]}]"),
        "x/a", "ip:1.1.1.1", 80, "TCP", False, NP, NOTPOD, ()),
    row("egress-other-node-denied", DENY_OUT_X, "x/a", N2, 80, "TCP", False, NP, NOTPOD, ()),
    row("egress-other-node-ipBlock", egress_xa("[{to: [{ipBlock: {cidr: 172.18.0.3/32}}]}]"),
        "x/a", N2, 80, "TCP", True, NP, NOTPOD, ("x/p egress[0]",)),

    # -- ports, protocols, endPort, named ports (NETPOL 1.2, 1.5; defaults.go) ---------------
    row("port-default-TCP", ports_xa("[{port: 80}]"), "y/a", "x/a", 80, "TCP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("port-default-TCP-not-UDP", ports_xa("[{port: 80}]"), "y/a", "x/a", 80, "UDP", False,
        DEF, NP, ()),
    row("port-other-number", ports_xa("[{port: 80}]"), "y/a", "x/a", 81, "TCP", False, DEF, NP,
        ()),
    row("port-UDP", ports_xa("[{protocol: UDP, port: 80}]"), "y/a", "x/a", 80, "UDP", True, DEF,
        NP, ("x/p ingress[0]",)),
    row("port-UDP-not-TCP", ports_xa("[{protocol: UDP, port: 80}]"), "y/a", "x/a", 80, "TCP",
        False, DEF, NP, ()),
    row("ports-one-empty-entry-any-TCP", ports_xa("[{}]"), "y/a", "x/a", 81, "TCP", True, DEF,
        NP, ("x/p ingress[0]",)),
    row("ports-one-empty-entry-not-UDP", ports_xa("[{}]"), "y/a", "x/a", 80, "UDP", False, DEF,
        NP, ()),
    row("ports-empty-list-any", ports_xa("[]"), "y/a", "x/a", 81, "SCTP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("protocol-only-UDP", ports_xa("[{protocol: UDP}]"), "y/a", "x/a", 81, "UDP", True, DEF,
        NP, ("x/p ingress[0]",)),
    row("protocol-only-UDP-not-TCP", ports_xa("[{protocol: UDP}]"), "y/a", "x/a", 81, "TCP",
        False, DEF, NP, ()),
    # E2E "should not allow access by TCP when a policy specifies only SCTP".
    row("SCTP-only-allows-SCTP", ports_xa("[{protocol: SCTP, port: 80}]"), "y/a", "x/a", 80,
        "SCTP", True, DEF, NP, ("x/p ingress[0]",)),
    row("SCTP-only-isolates-TCP", ports_xa("[{protocol: SCTP, port: 80}]"), "y/a", "x/a", 80,
        "TCP", False, DEF, NP, ()),
    *[row(f"endPort-{port}-{proto}", ports_xa("[{port: 80, endPort: 81}]"), "y/a", "x/a", port,
          proto, ok, DEF, NP, ("x/p ingress[0]",) if ok else ())
      for port, proto, ok in [(80, "TCP", True), (81, "TCP", True), (79, "TCP", False),
                              (82, "TCP", False), (81, "UDP", False)]],
    *[row(f"endPort-UDP-{port}", ports_xa("[{protocol: UDP, port: 30000, endPort: 32768}]"),
          "y/a", "x/a", port, "UDP", ok, DEF, NP, ("x/p ingress[0]",) if ok else ())
      for port, ok in [(30000, True), (32768, True), (32769, False), (29999, False)]],
    # Named ports resolve on each destination pod: x/alt maps serve-80-tcp to 8080.
    row("named-port-xa-80", NAMED_80_X, "y/a", "x/a", 80, "TCP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("named-port-xa-8080", NAMED_80_X, "y/a", "x/a", 8080, "TCP", False, DEF, NP, ()),
    row("named-port-alt-8080", NAMED_80_X, "y/a", "x/alt", 8080, "TCP", True, DEF, NP,
        ("x/p ingress[0]",)),
    row("named-port-alt-80", NAMED_80_X, "y/a", "x/alt", 80, "TCP", False, DEF, NP, ()),
    # NPAPI policy-assistant portprotocolcases.go "pathological": the name exists only for UDP.
    row("named-port-wrong-protocol-TCP", ports_xa("[{protocol: TCP, port: serve-81-udp}]"),
        "y/a", "x/a", 81, "TCP", False, DEF, NP, ()),
    row("named-port-wrong-protocol-UDP", ports_xa("[{protocol: TCP, port: serve-81-udp}]"),
        "y/a", "x/a", 81, "UDP", False, DEF, NP, ()),
    row("named-port-default-TCP-UDP-name", ports_xa("[{port: serve-81-udp}]"),
        "y/a", "x/a", 81, "UDP", False, DEF, NP, ()),
    row("named-port-right-protocol", ports_xa("[{protocol: UDP, port: serve-81-udp}]"),
        "y/a", "x/a", 81, "UDP", True, DEF, NP, ("x/p ingress[0]",)),
    row("named-port-right-protocol-not-TCP", ports_xa("[{protocol: UDP, port: serve-81-udp}]"),
        "y/a", "x/a", 81, "TCP", False, DEF, NP, ()),
    # Egress: the name resolves on the peer (destination) pod.
    row("egress-named-port-peer-alt", egress_xa("[{ports: [{port: serve-80-tcp}]}]"),
        "x/a", "x/alt", 8080, "TCP", True, NP, DEF, ("x/p egress[0]",)),
    row("egress-named-port-peer-alt-80", egress_xa("[{ports: [{port: serve-80-tcp}]}]"),
        "x/a", "x/alt", 80, "TCP", False, NP, DEF, ()),
    row("egress-named-port-peer-yb", egress_xa("[{ports: [{port: serve-80-tcp}]}]"),
        "x/a", "y/b", 80, "TCP", True, NP, DEF, ("x/p egress[0]",)),
    # NETPOL 1.5: an outside address has no ports to resolve the name against.
    row("egress-named-port-outside", egress_xa("[{ports: [{port: serve-80-tcp}]}]"),
        "x/a", OUT, 80, "TCP", False, NP, NOTPOD, ()),

    # -- policyTypes defaulting and ignored directions (defaults.go; NETPOL 1.1, 1.2) ----------
    row("egress-rules-no-types-isolate-ingress", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        egress:
        - to: [{podSelector: {matchLabels: {pod: b}}}]
        """), "y/a", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("egress-rules-no-types-isolate-egress", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        egress:
        - to: [{podSelector: {matchLabels: {pod: b}}}]
        """), "x/a", "x/c", 80, "TCP", False, NP, DEF, ()),
    row("egress-rules-no-types-allow", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        egress:
        - to: [{podSelector: {matchLabels: {pod: b}}}]
        """), "x/a", "x/b", 80, "TCP", True, NP, DEF, ("x/p egress[0]",)),
    row("egress-empty-no-types-egress-open", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        ingress: [{}]
        egress: []
        """), "x/a", "x/c", 80, "TCP", True, DEF, DEF),
    row("egress-empty-no-types-ingress", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        ingress: [{}]
        egress: []
        """), "y/a", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("ingress-rules-ignored-egress-only", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Egress]
        ingress:
        - from: [{podSelector: {matchLabels: {pod: b}}}]
        egress: [{}]
        """), "y/c", "x/a", 80, "TCP", True, DEF, DEF),
    row("egress-rules-ignored-ingress-only", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Ingress]
        ingress: [{}]
        egress:
        - to: [{podSelector: {matchLabels: {pod: b}}}]
        """), "x/a", "x/c", 80, "TCP", True, DEF, DEF),

    # -- union of policies and rules (DOCS: policies are additive) ---------------------------
    row("union-first-policy", to_xa("[{podSelector: {matchLabels: {pod: b}}}]") + to_pod(
        "a", "[{namespaceSelector: {matchLabels: {ns: y}}}]", name="q"),
        "x/b", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]",)),
    row("union-second-policy", to_xa("[{podSelector: {matchLabels: {pod: b}}}]") + to_pod(
        "a", "[{namespaceSelector: {matchLabels: {ns: y}}}]", name="q"),
        "y/c", "x/a", 80, "TCP", True, DEF, NP, ("x/q ingress[0]",)),
    row("union-neither", to_xa("[{podSelector: {matchLabels: {pod: b}}}]") + to_pod(
        "a", "[{namespaceSelector: {matchLabels: {ns: y}}}]", name="q"),
        "x/c", "x/a", 80, "TCP", False, DEF, NP, ()),
    row("union-two-rules-one-policy", netpol("x", "p", """
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{podSelector: {matchLabels: {pod: b}}}]
        - from: [{namespaceSelector: {}}]
        """), "x/b", "x/a", 80, "TCP", True, DEF, NP, ("x/p ingress[0]", "x/p ingress[1]")),
    row("union-deny-all-plus-allow", DENY_IN_X + to_pod(
        "a", "[{namespaceSelector: {matchLabels: {ns: y}}}]", name="q"),
        "y/a", "x/a", 80, "TCP", True, DEF, NP, ("x/q ingress[0]",)),
    row("union-deny-all-plus-allow-other-pod", DENY_IN_X + to_pod(
        "a", "[{namespaceSelector: {matchLabels: {ns: y}}}]", name="q"),
        "y/a", "x/b", 80, "TCP", False, DEF, NP, ()),

    # -- both ends are required (DOCS; NETPOL 1.1) ---------------------------------------------
    # E2E "should support denying of egress traffic on the client side (even if the server
    # explicitly allows this traffic)".
    row("client-egress-denies", to_pod("b", "[{podSelector: {matchLabels: {pod: a}}}]") +
        egress_xa("[]", "q"), "x/a", "x/b", 80, "TCP", False, NP, NP, ("x/p ingress[0]",)),
    row("server-ingress-denies", egress_xa("[{}]") + deny("y"), "x/a", "y/b", 80, "TCP", False,
        NP, NP, ("x/p egress[0]",)),

    # -- self and the pod's own node (DOCS: "a pod cannot block access to itself"; "traffic to
    #    and from the node where a Pod is running is always allowed") ---------------------------
    row("self-always", DENY_BOTH_X, "x/a", "x/a", 80, "TCP", True, SELF, SELF, ()),
    row("own-node-ingress", DENY_IN_X, N1, "x/a", 80, "TCP", True, NOTPOD, NODE, ()),
    row("other-node-ingress", DENY_IN_X, N1, "x/c", 80, "TCP", False, NOTPOD, NP, ()),
    row("own-node-ingress-n2", DENY_IN_X, N2, "x/c", 80, "TCP", True, NOTPOD, NODE, ()),
    row("other-node-by-ipBlock", to_pod("c", "[{ipBlock: {cidr: 172.18.0.2/32}}]"), N1, "x/c",
        80, "TCP", True, NOTPOD, NP, ("x/p ingress[0]",)),
    row("own-node-egress", DENY_OUT_X, "x/a", N1, 80, "TCP", True, NODE, NOTPOD, ()),
    row("other-node-egress", DENY_OUT_X, "x/c", N1, 80, "TCP", False, NP, NOTPOD, ()),
    row("hostNetwork-same-node", DENY_IN_X, "x/host", "x/a", 80, "TCP", True, NOTPOD, NODE, ()),
    row("hostNetwork-other-node", DENY_IN_X, "x/host", "x/c", 80, "TCP", False, NOTPOD, NP, ()),

    # -- hostNetwork pods (DOCS "hostNetwork pods"; NETPOL 1.6): "node" mode (the default) ------
    *[row(f"hostNetwork-node-mode-{tag}{'-explicit' if mode else ''}", policies, src, dst,
          80, "TCP", ok, eg, ing, rules, mode=mode)
      for mode in (None, "node")
      for tag, policies, src, dst, ok, eg, ing, rules in [
          ("not-podSelector", to_pod("c", "[{podSelector: {}}]"), "x/host", "x/c", False,
           NOTPOD, NP, ()),
          ("not-podSelector-labels", to_pod("c", "[{podSelector: {matchLabels: {pod: host}}}]"),
           "x/host", "x/c", False, NOTPOD, NP, ()),
          ("not-namespaceSelector", to_pod("c", "[{namespaceSelector: {}}]"), "x/host", "x/c",
           False, NOTPOD, NP, ()),
          ("ipBlock-node-ip", to_pod("c", "[{ipBlock: {cidr: 172.18.0.2/32}}]"), "x/host",
           "x/c", True, NOTPOD, NP, ("x/p ingress[0]",)),
          ("own-ingress-not-isolated", DENY_IN_X, "y/b", "x/host", True, DEF, NOTPOD, ()),
          ("own-egress-not-isolated", DENY_OUT_X, "x/host", "y/b", True, NOTPOD, DEF, ()),
      ]],
    # "pod" mode: selected and isolated like any other pod, no node exception.
    *[row(f"hostNetwork-pod-mode-{tag}", policies, src, dst, 80, "TCP", ok, eg, ing, rules,
          mode="pod")
      for tag, policies, src, dst, ok, eg, ing, rules in [
          ("podSelector", to_pod("c", "[{podSelector: {matchLabels: {pod: host}}}]"), "x/host",
           "x/c", True, DEF, NP, ("x/p ingress[0]",)),
          ("namespaceSelector", to_pod("c", "[{namespaceSelector: {}}]"), "x/host", "x/c", True,
           DEF, NP, ("x/p ingress[0]",)),
          ("own-ingress-isolated", DENY_IN_X, "y/b", "x/host", False, DEF, NP, ()),
          ("own-egress-isolated", DENY_OUT_X, "x/host", "y/b", False, NP, DEF, ()),
          ("same-node-not-node-traffic", DENY_IN_X, "x/host", "x/a", False, DEF, NP, ()),
      ]],

    # -- cluster-external sources (DOCS "ipBlock"; NETPOL 1.3) --------------------------------
    row("outside-no-policy", "", OUT, "x/a", 80, "TCP", True, NOTPOD, DEF, ()),
    row("outside-ipBlock", to_xa("[{ipBlock: {cidr: 8.0.0.0/8}}]"), OUT, "x/a", 80, "TCP", True,
        NOTPOD, NP, ("x/p ingress[0]",)),
    row("outside-not-podSelector", to_xa("[{podSelector: {}}]"), OUT, "x/a", 80, "TCP", False,
        NOTPOD, NP, ()),
]


@pytest.mark.parametrize("r", ROWS)
def test_verdict(r: Row) -> None:
    cluster = cluster_with(r.policies, r.mode)
    ps = PolicySet.from_cluster(cluster)
    v = evaluate(ps, peer(ps, cluster, r.src), peer(ps, cluster, r.dst), r.port, r.protocol)
    got = (v.allowed, v.egress.decided_by, v.ingress.decided_by)
    assert got == (r.allowed, r.egress, r.ingress), (v.egress.reason, v.ingress.reason)
    assert v.allowed == (v.egress.allowed and v.ingress.allowed)
    if r.rules is not None:
        matched = {f"{m.policy.removeprefix('NetworkPolicy ')} {m.rule}"
                   for m in v.egress.matches + v.ingress.matches}
        assert matched == set(r.rules)


# ------------------------------------------------------------------ details beyond the table


def _verdict(policies: str, src: str, dst: str, port: int = 80, protocol: str = "TCP"):
    cluster = cluster_with(policies)
    ps = PolicySet.from_cluster(cluster)
    return evaluate(ps, peer(ps, cluster, src), peer(ps, cluster, dst), port, protocol)


def test_client_egress_denies_even_though_server_allows() -> None:
    # E2E "should support denying of egress traffic on the client side (even if the server
    # explicitly allows this traffic)": the ingress half allows, the egress half does not.
    v = _verdict(to_pod("b", "[{podSelector: {matchLabels: {pod: a}}}]") + egress_xa("[]", "q"),
                 "x/a", "x/b")
    assert (v.egress.allowed, v.ingress.allowed, v.allowed) == (False, True, False)
    assert v.egress.isolating == ("NetworkPolicy x/q",)
    assert v.ingress.isolating == ("NetworkPolicy x/p",)


def test_isolating_lists_every_selecting_policy() -> None:
    # DOCS: isolation comes from every policy that selects the pod and lists the direction.
    v = _verdict(DENY_IN_X + to_xa("[{podSelector: {matchLabels: {pod: b}}}]") + DENY_OUT_X,
                 "x/c", "x/a")
    assert not v.allowed
    assert set(v.ingress.isolating) == {"NetworkPolicy x/deny", "NetworkPolicy x/p"}
    assert v.egress.isolating == ("NetworkPolicy x/deny-out",)


def test_direction_not_isolated_lists_nothing() -> None:
    v = _verdict(DENY_IN_X, "y/a", "x/a")
    assert v.egress.isolating == ()
    assert v.egress.allowed and v.egress.decided_by == DEF


@pytest.mark.parametrize(("spec", "field", "message"), [
    # K8S pkg/apis/networking/validation: "must specify a peer".
    ("podSelector: {}\ningress:\n- from: [{}]\n", "spec.ingress[0].from[0]", "must specify"),
    ("podSelector: {}\ningress:\n- from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]\n",
     "spec.ingress[0].from[0]", "may not specify both"),
    ("podSelector: {}\negress:\n- to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]\n",
     "except[0]", "strict subset"),
    ("podSelector: {}\ningress:\n- ports: [{port: serve-80-tcp, endPort: 90}]\n",
     "spec.ingress[0].ports[0].endPort", "numeric port"),
    ("podSelector: {}\ningress:\n- ports: [{port: 90, endPort: 80}]\n",
     "spec.ingress[0].ports[0].endPort", "greater than or equal"),
    ("podSelector: {}\npolicyTypes: [Ingres]\n", "spec.policyTypes[0]", "Ingress or Egress"),
])
def test_invalid_networkpolicy(spec: str, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        cluster_with(netpol("x", "bad", spec))
    assert field in (info.value.field or ""), str(info.value)
    assert message in info.value.message
