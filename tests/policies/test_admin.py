"""Admin and Baseline tiers: AdminNetworkPolicy / BaselineAdminNetworkPolicy (v1alpha1) and
ClusterNetworkPolicy (v1alpha2), alone and together with NetworkPolicy, on the x/y/z fixture.

Expectations are computed by hand from the API text: NPAPI = kubernetes-sigs/network-policy-api
apis/v1alpha1/{adminnetworkpolicy,baselineadminnetworkpolicy,shared}_types.go and
apis/v1alpha2/clusternetworkpolicy_types.go; NETPOL = /work/shared/reference/netpol.md section 3.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from netsim.errors import InputError
from policies.engine import PolicySet, evaluate
from tests.policies.fixtures import N2, OUT, cluster_with, doc, netpol, peer

NP, DEF, NOTPOD = "networkpolicy", "default", "not-a-pod"
ADMIN, BASE = "admin", "baseline"
V1, V2 = "policy.networking.k8s.io/v1alpha1", "policy.networking.k8s.io/v1alpha2"
SUBJECT_X = "{namespaces: {matchLabels: {ns: x}}}"
FROM_Y = "[{namespaces: {matchLabels: {ns: y}}}]"
TO_Y = FROM_Y


class Row(NamedTuple):
    policies: str
    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    egress: str  # expected egress decided_by
    ingress: str  # expected ingress decided_by
    # (policy name, rule, action) of the tier rule that decided, for admin/baseline directions
    decided: tuple[str, str, str] | None = None
    passed: tuple[str, ...] = ()  # names of policies whose Pass rules were crossed
    mode: str | None = None


def rules(direction: str, items: list[str]) -> str:
    return f"{direction}:\n" + "".join(f"- {r}\n" for r in items) if items else ""


def anp(name: str, priority: int, ingress: list[str] = (), egress: list[str] = (),
        subject: str = SUBJECT_X) -> str:
    """An AdminNetworkPolicy; rules are flow-YAML mappings."""
    return doc(V1, "AdminNetworkPolicy", name, f"priority: {priority}\nsubject: {subject}\n"
               + rules("ingress", list(ingress)) + rules("egress", list(egress)))


def banp(ingress: list[str] = (), egress: list[str] = (), subject: str = SUBJECT_X,
         name: str = "default") -> str:
    return doc(V1, "BaselineAdminNetworkPolicy", name, f"subject: {subject}\n"
               + rules("ingress", list(ingress)) + rules("egress", list(egress)))


def cnp(name: str, tier: str, priority: int, ingress: list[str] = (), egress: list[str] = (),
        subject: str = SUBJECT_X) -> str:
    return doc(V2, "ClusterNetworkPolicy", name,
               f"tier: {tier}\npriority: {priority}\nsubject: {subject}\n"
               + rules("ingress", list(ingress)) + rules("egress", list(egress)))


DENY_IN_X = netpol("x", "deny", "podSelector: {}\npolicyTypes: [Ingress]\n")
ALLOW_ALL_IN_X = netpol("x", "all", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]\n")
DENY_IN_Y = netpol("y", "deny", "podSelector: {}\npolicyTypes: [Ingress]\n")
DENY_Y = anp("deny-y", 10, [f"{{name: deny-from-y, action: Deny, from: {FROM_Y}}}"])
PASS_Y = anp("pass-y", 10, [f"{{action: Pass, from: {FROM_Y}}}"])
YA = "{pods: {namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}}"


def row(id_: str, *values, **named) -> pytest.param:
    return pytest.param(Row(*values, **named), id=id_)


ROWS = [
    # -- AdminNetworkPolicy actions against NetworkPolicy (NETPOL 3.1 "Actions") ---------------
    row("anp-deny", DENY_Y, "y/a", "x/a", 80, "TCP", False, DEF, ADMIN,
        ("deny-y", "ingress[0]", "Deny")),
    # NETPOL 3.1: ANP rules do not isolate implicitly.
    row("anp-no-implicit-isolation", DENY_Y, "z/a", "x/a", 80, "TCP", True, DEF, DEF),
    row("anp-not-subject", DENY_Y, "y/a", "z/a", 80, "TCP", True, DEF, DEF),
    row("anp-allow-beats-np-deny", DENY_IN_X + anp("allow-y", 10, [
        f"{{action: Allow, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP", True, DEF, ADMIN,
        ("allow-y", "ingress[0]", "Accept")),
    row("anp-allow-others-np-deny", DENY_IN_X + anp("allow-y", 10, [
        f"{{action: Allow, from: {FROM_Y}}}"]), "z/a", "x/a", 80, "TCP", False, DEF, NP),
    row("anp-deny-beats-np-allow", ALLOW_ALL_IN_X + DENY_Y, "y/a", "x/a", 80, "TCP", False, DEF,
        ADMIN, ("deny-y", "ingress[0]", "Deny")),
    row("anp-deny-others-np-allow", ALLOW_ALL_IN_X + DENY_Y, "z/a", "x/a", 80, "TCP", True, DEF,
        NP),

    # -- priority: lower number wins, whatever the names (NPAPI spec.priority) ------------------
    row("priority-lower-wins-deny", anp("a-allow", 20, [f"{{action: Allow, from: {FROM_Y}}}"])
        + anp("b-deny", 10, [f"{{action: Deny, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP",
        False, DEF, ADMIN, ("b-deny", "ingress[0]", "Deny")),
    row("priority-lower-wins-allow", anp("a-allow", 10, [f"{{action: Allow, from: {FROM_Y}}}"])
        + anp("b-deny", 20, [f"{{action: Deny, from: {FROM_Y}}}"]) + DENY_IN_X, "y/a", "x/a", 80,
        "TCP", True, DEF, ADMIN, ("a-allow", "ingress[0]", "Accept")),
    row("priority-0-beats-1000", anp("late", 0, [f"{{action: Deny, from: {FROM_Y}}}"])
        + anp("early", 1000, [f"{{action: Allow, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP",
        False, DEF, ADMIN, ("late", "ingress[0]", "Deny")),

    # -- rule order inside one policy (NPAPI: "the order in which the rule is written") -------
    *[row(f"rule-order-{tag}", anp("order", 10, items), src, "x/a", 80, "TCP", ok, DEF, ADMIN,
          ("order", rule, action))
      for tag, items, src, ok, rule, action in [
          ("allow-first", [f"{{action: Allow, from: [{YA}]}}", f"{{action: Deny, from: {FROM_Y}}}"],
           "y/a", True, "ingress[0]", "Accept"),
          ("allow-first-other", [f"{{action: Allow, from: [{YA}]}}",
                                 f"{{action: Deny, from: {FROM_Y}}}"],
           "y/b", False, "ingress[1]", "Deny"),
          ("deny-first", [f"{{action: Deny, from: {FROM_Y}}}", f"{{action: Allow, from: [{YA}]}}"],
           "y/a", False, "ingress[0]", "Deny"),
      ]],

    # -- Pass hands over to NetworkPolicy, then to the baseline (NETPOL 3.1 "Pass") ------------
    row("pass-to-np-allow", anp("pass", 10, [f"{{action: Pass, from: {FROM_Y}}}",
                                             "{action: Deny, from: [{namespaces: {}}]}"])
        + netpol("x", "p", """
            podSelector: {matchLabels: {pod: a}}
            ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}},
                                 podSelector: {matchLabels: {pod: a}}}]}]
            """), "y/a", "x/a", 80, "TCP", True, DEF, NP, None, ("pass",)),
    row("pass-to-np-deny", anp("pass", 10, [f"{{action: Pass, from: {FROM_Y}}}",
                                            "{action: Deny, from: [{namespaces: {}}]}"])
        + netpol("x", "p", """
            podSelector: {matchLabels: {pod: a}}
            ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}},
                                 podSelector: {matchLabels: {pod: a}}}]}]
            """), "y/b", "x/a", 80, "TCP", False, DEF, NP, None, ("pass",)),
    row("pass-skips-later-rules-only-for-matches", anp("pass", 10, [
        f"{{action: Pass, from: {FROM_Y}}}", "{action: Deny, from: [{namespaces: {}}]}"]),
        "z/a", "x/a", 80, "TCP", False, DEF, ADMIN, ("pass", "ingress[1]", "Deny")),
    row("pass-no-np-to-baseline", PASS_Y + banp([f"{{action: Deny, from: {FROM_Y}}}"]),
        "y/a", "x/a", 80, "TCP", False, DEF, BASE, ("default", "ingress[0]", "Deny"), ("pass-y",)),
    row("pass-no-np-no-baseline-default", PASS_Y, "y/a", "x/a", 80, "TCP", True, DEF, DEF, None,
        ("pass-y",)),
    # Pass skips the remaining ANP rules, those of lower-precedence ANPs included.
    row("pass-skips-lower-priority-anp", PASS_Y + anp("deny-later", 20, [
        f"{{action: Deny, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP", True, DEF, DEF, None,
        ("pass-y",)),

    # -- the baseline applies only where no NetworkPolicy isolates (NETPOL 3.1 "BANP") ----------
    row("baseline-ignored-when-np-isolates", banp(["{action: Allow, from: "
                                                   "[{namespaces: {matchLabels: {ns: z}}}]}"])
        + netpol("x", "p", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\n"),
        "z/a", "x/a", 80, "TCP", False, DEF, NP),
    row("baseline-allow-not-isolated", banp(["{action: Allow, from: "
                                             "[{namespaces: {matchLabels: {ns: z}}}]}"])
        + netpol("x", "p", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\n"),
        "z/a", "x/b", 80, "TCP", True, DEF, BASE, ("default", "ingress[0]", "Accept")),
    row("baseline-deny", banp(["{action: Deny, from: [{namespaces: {}}]}"]), "y/a", "x/b", 80,
        "TCP", False, DEF, BASE, ("default", "ingress[0]", "Deny")),
    row("baseline-deny-np-allows", banp(["{action: Deny, from: [{namespaces: {}}]}"])
        + netpol("x", "p", "podSelector: {matchLabels: {pod: a}}\n"
                 "ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n"),
        "y/a", "x/a", 80, "TCP", True, DEF, NP),
    row("baseline-deny-np-denies", banp(["{action: Deny, from: [{namespaces: {}}]}"])
        + netpol("x", "p", "podSelector: {matchLabels: {pod: a}}\n"
                 "ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n"),
        "z/a", "x/a", 80, "TCP", False, DEF, NP),
    # Isolation is per direction: an egress-only NetworkPolicy leaves ingress to the baseline.
    row("baseline-per-direction", banp([f"{{action: Deny, from: {FROM_Y}}}"])
        + netpol("x", "p", "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\n"
                 "egress: [{}]\n"),
        "y/a", "x/a", 80, "TCP", False, DEF, BASE, ("default", "ingress[0]", "Deny")),
    row("baseline-rule-order-first", banp([f"{{action: Allow, from: [{YA}]}}",
                                           f"{{action: Deny, from: {FROM_Y}}}"]),
        "y/a", "x/a", 80, "TCP", True, DEF, BASE, ("default", "ingress[0]", "Accept")),
    row("baseline-rule-order-second", banp([f"{{action: Allow, from: [{YA}]}}",
                                            f"{{action: Deny, from: {FROM_Y}}}"]),
        "y/b", "x/a", 80, "TCP", False, DEF, BASE, ("default", "ingress[1]", "Deny")),

    # -- subjects (NPAPI AdminNetworkPolicySubject: exactly one of namespaces or pods) ----------
    row("subject-pods-match", anp("pods", 10, [f"{{action: Deny, from: {FROM_Y}}}"], subject=(
        "{pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}"
        )), "y/a", "x/a", 80, "TCP", False, DEF, ADMIN, ("pods", "ingress[0]", "Deny")),
    row("subject-pods-other", anp("pods", 10, [f"{{action: Deny, from: {FROM_Y}}}"], subject=(
        "{pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}"
        )), "y/a", "x/b", 80, "TCP", True, DEF, DEF),
    row("subject-namespaces-expression", anp("env", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: z}}}]}"],
        subject="{namespaces: {matchExpressions: [{key: env, operator: Exists}]}}"),
        "z/a", "y/a", 80, "TCP", False, DEF, ADMIN, ("env", "ingress[0]", "Deny")),
    row("subject-namespaces-expression-other", anp("env", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: z}}}]}"],
        subject="{namespaces: {matchExpressions: [{key: env, operator: Exists}]}}"),
        "z/a", "z/b", 80, "TCP", True, DEF, DEF),
    # NPAPI: "host-networked pods are not included in subject selection" / "in this peer".
    row("hostNetwork-never-subject-pod-mode", DENY_Y, "y/b", "x/host", 80, "TCP", True, DEF, DEF,
        mode="pod"),
    row("hostNetwork-never-subject-node-mode", DENY_Y, "y/b", "x/host", 80, "TCP", True, DEF,
        NOTPOD),
    row("hostNetwork-never-peer-pod-mode", anp("deny-x", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}"]),
        "x/host", "x/c", 80, "TCP", True, DEF, DEF, mode="pod"),
    row("hostNetwork-never-peer-node-mode", anp("deny-x", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}"]),
        "x/host", "x/c", 80, "TCP", True, NOTPOD, DEF),
    row("namespaces-peer-normal-pod", anp("deny-x", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}"]),
        "x/b", "x/c", 80, "TCP", False, DEF, ADMIN, ("deny-x", "ingress[0]", "Deny")),

    # NETPOL 3.2 / NPAPI api-overview "Clarify hairpinning behavior": a pod reaching its own
    # pod IP is not subject to the policy.
    row("self-exempt", anp("deny-x", 10, [
        "{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}"], egress=[
        "{action: Deny, to: [{networks: [0.0.0.0/0]}]}"]), "x/b", "x/b", 80, "TCP", True, "self",
        "self"),

    # -- networks and nodes peers (NPAPI AdminNetworkPolicyEgressPeer) --------------------------
    row("networks-match-pod-ips", anp("no-egress", 10, egress=[
        "{action: Deny, to: [{networks: [0.0.0.0/0]}]}"]), "x/a", "y/a", 80, "TCP", False, ADMIN,
        DEF, ("no-egress", "egress[0]", "Deny")),
    row("networks-match-outside", anp("no-egress", 10, egress=[
        "{action: Deny, to: [{networks: [0.0.0.0/0]}]}"]), "x/a", OUT, 80, "TCP", False, ADMIN,
        NOTPOD, ("no-egress", "egress[0]", "Deny")),
    row("networks-pass-first", anp("no-egress", 10, egress=[
        f"{{action: Pass, to: {TO_Y}}}", "{action: Deny, to: [{networks: [0.0.0.0/0]}]}"]),
        "x/a", "y/a", 80, "TCP", True, DEF, DEF, None, ("no-egress",)),
    row("networks-pass-first-others-denied", anp("no-egress", 10, egress=[
        f"{{action: Pass, to: {TO_Y}}}", "{action: Deny, to: [{networks: [0.0.0.0/0]}]}"]),
        "x/a", "z/a", 80, "TCP", False, ADMIN, DEF, ("no-egress", "egress[1]", "Deny")),
    row("networks-node-ip", anp("no-node", 10, egress=[
        "{action: Deny, to: [{networks: [172.18.0.3/32]}]}"]), "x/a", N2, 80, "TCP", False, ADMIN,
        NOTPOD, ("no-node", "egress[0]", "Deny")),
    row("nodes-peer-node-ip", anp("no-node", 10, egress=[
        "{action: Deny, to: [{nodes: {matchLabels: {zone: b}}}]}"]), "x/a", N2, 80, "TCP", False,
        ADMIN, NOTPOD, ("no-node", "egress[0]", "Deny")),
    row("nodes-peer-not-pods-on-node", anp("no-node", 10, egress=[
        "{action: Deny, to: [{nodes: {matchLabels: {zone: b}}}]}"]), "x/a", "y/b", 80, "TCP", True,
        DEF, DEF),

    # -- a connection still needs both ends (NETPOL 3.1; NPAPI egress Accept: "any ingress rules
    #    at the destination do apply") --------------------------------------------------------
    row("egress-allow-ingress-np-deny", anp("out-y", 10, egress=[
        f"{{action: Allow, to: {TO_Y}}}"]) + DENY_IN_Y, "x/a", "y/b", 80, "TCP", False, ADMIN, NP,
        ("out-y", "egress[0]", "Accept")),
    row("egress-allow-ingress-anp-deny", anp("out-y", 10, egress=[
        f"{{action: Allow, to: {TO_Y}}}"]) + anp("in-y", 20, [
            "{action: Deny, from: [{namespaces: {matchLabels: {ns: x}}}]}"],
            subject="{namespaces: {matchLabels: {ns: y}}}"),
        "x/a", "y/b", 80, "TCP", False, ADMIN, ADMIN, ("in-y", "ingress[0]", "Deny")),

    # -- ports (NPAPI AdminNetworkPolicyPort: portNumber, portRange, namedPort) ----------------
    *[row(f"anp-{tag}-{dst.replace('/', '')}-{port}-{proto}", anp("ports", 10, [
        f"{{action: Deny, from: {FROM_Y}, ports: [{ports}]}}"]), "y/a", dst, port, proto, ok, DEF,
        DEF if ok else ADMIN, None if ok else ("ports", "ingress[0]", "Deny"))
      for tag, ports, dst, port, proto, ok in [
          ("portNumber", "{portNumber: {port: 80}}", "x/a", 80, "TCP", False),  # TCP default
          ("portNumber", "{portNumber: {port: 80}}", "x/a", 81, "TCP", True),
          ("portNumber", "{portNumber: {port: 80}}", "x/a", 80, "UDP", True),
          ("portRange", "{portRange: {protocol: UDP, start: 80, end: 81}}", "x/a", 81, "UDP",
           False),
          ("portRange", "{portRange: {protocol: UDP, start: 80, end: 81}}", "x/a", 82, "UDP",
           True),
          ("portRange", "{portRange: {protocol: UDP, start: 80, end: 81}}", "x/a", 81, "TCP",
           True),
          ("namedPort", "{namedPort: serve-80-tcp}", "x/alt", 8080, "TCP", False),
          ("namedPort", "{namedPort: serve-80-tcp}", "x/alt", 80, "TCP", True),
          ("namedPort", "{namedPort: serve-80-tcp}", "x/a", 80, "TCP", False),
          ("namedPort", "{namedPort: serve-80-tcp}", "x/a", 80, "UDP", True),
      ]],

    # -- peers that fail closed (NPAPI: "For Allow rules ... matching no traffic; for Deny and
    #    Pass rules ... a 'Deny all' rule") ----------------------------------------------------
    row("empty-peer-deny-denies-all", anp("broken", 10, ["{action: Deny, from: [{}]}"]),
        "z/a", "x/a", 80, "TCP", False, DEF, ADMIN, ("broken", "ingress[0]", "Deny")),
    row("empty-peer-allow-matches-nothing", DENY_IN_X + anp("broken", 10, [
        "{action: Allow, from: [{}]}"]), "z/a", "x/a", 80, "TCP", False, DEF, NP),

    # -- ClusterNetworkPolicy v1alpha2 (NETPOL 3.2) ---------------------------------------------
    row("cnp-admin-accept-beats-np", DENY_IN_X + cnp("acc", "Admin", 10, [
        f"{{action: Accept, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP", True, DEF, ADMIN,
        ("acc", "ingress[0]", "Accept")),
    *[row(f"cnp-{tag}-{dst.replace('/', '')}-{port}-{proto}", ALLOW_ALL_IN_X + cnp(
        "ports", "Admin", 10, [f"{{action: Deny, from: {FROM_Y}, protocols: [{protocols}]}}"]),
        "y/a", dst, port, proto, ok, DEF, NP if ok else ADMIN,
        None if ok else ("ports", "ingress[0]", "Deny"))
      for tag, protocols, dst, port, proto, ok in [
          ("tcp-number", "{tcp: {destinationPort: {number: 80}}}", "x/a", 80, "TCP", False),
          ("tcp-number", "{tcp: {destinationPort: {number: 80}}}", "x/a", 81, "TCP", True),
          ("tcp-number", "{tcp: {destinationPort: {number: 80}}}", "x/a", 80, "UDP", True),
          ("udp-range", "{udp: {destinationPort: {range: {start: 80, end: 81}}}}", "x/a", 81,
           "UDP", False),
          ("udp-range", "{udp: {destinationPort: {range: {start: 80, end: 81}}}}", "x/a", 82,
           "UDP", True),
          ("udp-range", "{udp: {destinationPort: {range: {start: 80, end: 81}}}}", "x/a", 80,
           "TCP", True),
          ("sctp-number", "{sctp: {destinationPort: {number: 81}}}", "x/a", 81, "SCTP", False),
          ("named", "{destinationNamedPort: serve-80-tcp}", "x/alt", 8080, "TCP", False),
          ("named", "{destinationNamedPort: serve-80-tcp}", "x/alt", 80, "TCP", True),
      ]],
    row("cnp-admin-pass-to-np", netpol("x", "p", "podSelector: {matchLabels: {pod: a}}\n"
                                       "ingress: [{from: [{podSelector: {}}]}]\n")
        + cnp("pass", "Admin", 10, [f"{{action: Pass, from: {FROM_Y}}}"]),
        "y/a", "x/a", 80, "TCP", False, DEF, NP, None, ("pass",)),
    row("cnp-baseline-priority-deny", cnp("base-accept", "Baseline", 10, [
        f"{{action: Accept, from: {FROM_Y}}}"]) + cnp("base-deny", "Baseline", 5, [
            f"{{action: Deny, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP", False, DEF, BASE,
        ("base-deny", "ingress[0]", "Deny")),
    row("cnp-baseline-priority-accept", cnp("base-accept", "Baseline", 5, [
        f"{{action: Accept, from: {FROM_Y}}}"]) + cnp("base-deny", "Baseline", 10, [
            f"{{action: Deny, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP", True, DEF, BASE,
        ("base-accept", "ingress[0]", "Accept")),
    # NPAPI Pass: "passes evaluation to the next tier"; after Baseline that is the default.
    row("cnp-baseline-pass-to-default", cnp("base-pass", "Baseline", 5, [
        f"{{action: Pass, from: {FROM_Y}}}"]) + cnp("base-deny", "Baseline", 10, [
            "{action: Deny, from: [{namespaces: {}}]}"]), "y/a", "x/a", 80, "TCP", True, DEF, DEF,
        None, ("base-pass",)),
    row("cnp-baseline-pass-others", cnp("base-pass", "Baseline", 5, [
        f"{{action: Pass, from: {FROM_Y}}}"]) + cnp("base-deny", "Baseline", 10, [
            "{action: Deny, from: [{namespaces: {}}]}"]), "z/a", "x/a", 80, "TCP", False, DEF,
        BASE, ("base-deny", "ingress[0]", "Deny")),
    row("cnp-baseline-overridden-by-np", ALLOW_ALL_IN_X + cnp("base-deny", "Baseline", 10, [
        "{action: Deny, from: [{namespaces: {}}]}"]), "y/a", "x/a", 80, "TCP", True, DEF, NP),
    # Admin-tier CNPs and ANPs share one priority order.
    row("cnp-and-anp-share-priorities", anp("anp-allow", 20, [
        f"{{action: Allow, from: {FROM_Y}}}"]) + cnp("cnp-deny", "Admin", 10, [
            f"{{action: Deny, from: {FROM_Y}}}"]), "y/a", "x/a", 80, "TCP", False, DEF, ADMIN,
        ("cnp-deny", "ingress[0]", "Deny")),
    # NPAPI NamespacedPod: an absent namespaceSelector selects all namespaces.
    row("cnp-pods-peer-all-namespaces", cnp("pods", "Admin", 10, [
        "{action: Deny, from: [{pods: {podSelector: {matchLabels: {pod: b}}}}]}"]),
        "z/b", "x/a", 80, "TCP", False, DEF, ADMIN, ("pods", "ingress[0]", "Deny")),
    row("cnp-pods-peer-other-pod", cnp("pods", "Admin", 10, [
        "{action: Deny, from: [{pods: {podSelector: {matchLabels: {pod: b}}}}]}"]),
        "z/c", "x/a", 80, "TCP", True, DEF, DEF),
    row("cnp-egress-accept-ingress-np-deny", cnp("out", "Admin", 10, egress=[
        f"{{action: Accept, to: {TO_Y}}}"]) + DENY_IN_Y, "x/a", "y/b", 80, "TCP", False, ADMIN,
        NP, ("out", "egress[0]", "Accept")),
]


@pytest.mark.parametrize("r", ROWS)
def test_verdict(r: Row) -> None:
    cluster = cluster_with(r.policies, r.mode)
    ps = PolicySet.from_cluster(cluster)
    v = evaluate(ps, peer(ps, cluster, r.src), peer(ps, cluster, r.dst), r.port, r.protocol)
    got = (v.allowed, v.egress.decided_by, v.ingress.decided_by)
    assert got == (r.allowed, r.egress, r.ingress), (v.egress.reason, v.ingress.reason)
    assert v.allowed == (v.egress.allowed and v.ingress.allowed)
    tiered = [d for d in (v.egress, v.ingress) if d.decided_by in (ADMIN, BASE)]
    if r.decided is not None:
        name, rule, action = r.decided
        found = [(m.policy, m.rule, m.action) for d in tiered for m in d.matches]
        assert any(f" {name} " in f"{p} " and ru.startswith(rule) and a == action
                   for p, ru, a in found), found
    passed = [m for d in (v.egress, v.ingress) for m in d.passed]
    assert all(m.action == "Pass" for m in passed)
    assert sorted({m.policy.split(" ")[1] for m in passed}) == sorted(r.passed)


# ------------------------------------------------------------------ invalid input


@pytest.mark.parametrize(("text", "field"), [
    (anp("p", 2000, [f"{{action: Deny, from: {FROM_Y}}}"]), "spec.priority"),
    (anp("p", -1, [f"{{action: Deny, from: {FROM_Y}}}"]), "spec.priority"),
    (cnp("p", "Admin", 2000, [f"{{action: Deny, from: {FROM_Y}}}"]), "spec.priority"),
    (cnp("p", "Middle", 10, [f"{{action: Deny, from: {FROM_Y}}}"]), "spec.tier"),
    (doc(V2, "ClusterNetworkPolicy", "p", f"priority: 10\nsubject: {SUBJECT_X}\n"), "spec.tier"),
    (doc(V1, "AdminNetworkPolicy", "p", f"subject: {SUBJECT_X}\n"), "spec.priority"),
    (anp("p", 10, [f"{{action: Deny, from: {FROM_Y}}}"], subject=(
        "{namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}")), "spec.subject"),
    (anp("p", 10, [f"{{action: Deny, from: {FROM_Y}}}"], subject="{}"), "spec.subject"),
    (anp("p", 10, [f"{{action: Accept, from: {FROM_Y}}}"]), "spec.ingress[0].action"),
    (anp("p", 10, [f"{{action: Drop, from: {FROM_Y}}}"]), "spec.ingress[0].action"),
    (anp("p", 10, egress=[f"{{action: Drop, to: {TO_Y}}}"]), "spec.egress[0].action"),
    (cnp("p", "Admin", 10, [f"{{action: Allow, from: {FROM_Y}}}"]), "spec.ingress[0].action"),
    (banp([f"{{action: Pass, from: {FROM_Y}}}"]), "spec.ingress[0].action"),
    (banp([f"{{action: Deny, from: {FROM_Y}}}"], name="strict"), "metadata.name"),
    (anp("p", 10, ["{action: Deny}"]), "spec.ingress[0].from"),
    (anp("p", 10, [f"{{action: Deny, from: {FROM_Y}, ports: "
                   "[{portRange: {start: 90, end: 80}}]}"]),
     "spec.ingress[0].ports[0].portRange.end"),
    (cnp("p", "Admin", 10, [f"{{action: Deny, from: {FROM_Y}, protocols: "
                            "[{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]}"]),
     "spec.ingress[0].protocols[0].tcp.destinationPort.range.end"),
], ids=["anp-priority-2000", "anp-priority-negative", "cnp-priority-2000", "cnp-tier-unknown",
        "cnp-tier-missing", "anp-priority-missing", "subject-both", "subject-neither",
        "anp-action-Accept", "anp-action-unknown", "anp-egress-action-unknown",
        "cnp-action-Allow", "banp-action-Pass", "banp-not-default", "rule-without-peers",
        "portRange-reversed", "cnp-range-reversed"])
def test_invalid_admin_policy(text: str, field: str) -> None:
    cluster = cluster_with(text)
    with pytest.raises(InputError) as info:
        PolicySet.from_cluster(cluster)
    assert info.value.field == field, str(info.value)
    assert info.value.obj and info.value.obj.split(" ")[1] in ("p", "default", "strict")
