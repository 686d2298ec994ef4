"""cni.felix: felix's iptables chains and IP sets, checked against felix's own layout and by
walking packets through them with the netfilter interpreter.

Expectations come from outside the code under test:
- layout, rule order and comments: projectcalico/calico felix/rules (static.go,
  endpoints.go, policy.go, dispatch.go, rule_defs.go) and a real node's iptables-save
  (tests/data/iptables/node-w1.save); names recomputed here with hashlib from
  libcalico-go's GetLengthLimitedID / MakeUniqueID and the CNI plugin's veth naming;
- verdicts: the bundled NetworkPolicy conformance suite's hand-written tables, the Online
  Boutique documentation, the NPAPI text for the admin tiers, Calico's documentation for its
  own policies (tiers, order, Pass, selectors);
- the kernel: iptables-restore / iptables-save in a throw-away network namespace (marked).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pytest

from cni.calico import node_namespace
from cni.felix import FelixRules, compile_felix, compile_felix_all
from cni.felix_policy import dispatch_chains
from netsim.cluster import Cluster, load, load_inputs
from netsim.conformance.base import NAMESPACES, base_objects
from netsim.conformance.expect import expected_table
from netsim.conformance.runner import load_suite
from netsim.errors import InputError, Source
from netsim.sources import RawDoc
from policies import calico_selector as sel
from policies.calico import Workload, cluster_policies
from proxy.kube_proxy.iptables import compile_iptables
from proxy.kube_proxy.options import options_for
from proxy.netfilter import Context, Packet, Ruleset, parse_ipset_save, parse_ruleset, traverse
from tests.helpers import load_yaml
from tests.policies.fixtures import cluster_with, doc, netpol

BOUTIQUE = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "online-boutique"
SUITE_FILE, SUITE = load_suite("networkpolicy")
CASES = {c.str("name"): c for c in SUITE}
BASE = [RawDoc(o, Source("<base cluster>", i + 1)) for i, o in enumerate(base_objects())]


def veth(namespace: str, pod: str) -> str:
    """The CNI plugin's host veth name, computed here by hand: cali + SHA-1("ns.pod")[:11]."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def limited(prefix: str, suffix: str) -> str:
    """GetLengthLimitedID(prefix, suffix, 28), by hand."""
    if len(prefix) + len(suffix) <= 28 and not (len(prefix) + len(suffix) == 28
                                                 and suffix.startswith("_")):
        return prefix + suffix
    digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode()).digest()).decode()
    return prefix + "_" + digest[:28 - 1 - len(prefix)]


def unique_id(prefix: str, content: str) -> str:
    """MakeUniqueID, by hand."""
    digest = hashlib.sha224(f"{prefix}:{content}".encode()).digest()
    return prefix + ":" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


# ---------------------------------------------------------------- the dataplane harness


@dataclass
class NodePath:
    """One node as the kernel would run it: kube-proxy's and felix's rules, sets and routes."""

    felix: FelixRules
    ruleset: Ruleset
    ctx: Context
    routes: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str | None]]

    def out_iface(self, dst: str) -> str | None:
        """Longest-prefix match in the node's main table (None: blackhole or no route)."""
        addr = ipaddress.ip_address(dst)
        found = [(net.prefixlen, dev) for net, dev in self.routes
                 if net.version == addr.version and addr in net]
        return max(found)[1] if found else None


def node_path(cluster: Cluster, node: str, family: int = 4) -> NodePath:
    felix = compile_felix(cluster, node, family)
    fam = "IPv4" if family == 4 else "IPv6"
    kube_proxy = compile_iptables(cluster, options_for(cluster, node, fam)).save_text()
    ruleset = parse_ruleset(kube_proxy + felix.restore_text, f"{node}", strict=True,
                            family=family)
    ns = node_namespace(cluster, node)
    routes = [(ipaddress.ip_network(r.dst), r.dev if r.type == "unicast" else None)
              for r in ns.routes]
    local = tuple(a.split("/")[0] for i in ns.interfaces for a in i.addresses)
    path = NodePath(felix, ruleset, None, routes)  # type: ignore[arg-type]
    path.ctx = Context(local_addresses=local, ipsets=felix.ipsets,
                       route=lambda p: path.out_iface(p.dst))
    return path


@dataclass
class Dataplane:
    cluster: Cluster
    nodes: dict[str, NodePath]

    def reach(self, src: str, dst: str, port: int, protocol: str = "TCP",
              family: int = 4) -> bool:
        """Whether the first packet from pod src to pod dst:port gets through the source
        node's FORWARD path and, across nodes, the destination node's."""
        a, b = (self.cluster.pod(*key.split("/")) for key in (src, dst))
        a_ip, b_ip = a.ip_of("IPv4" if family == 4 else "IPv6"), \
            b.ip_of("IPv4" if family == 4 else "IPv6")
        first = self.nodes[a.node_name]
        out = first.out_iface(b_ip)
        packet = Packet(a_ip, b_ip, protocol.lower(), 40000, port,
                        in_iface=veth(a.namespace, a.name), out_iface=out)
        if a.node_name == b.node_name:
            assert out == veth(b.namespace, b.name)
        ok = self._walk(first, packet)
        if ok is None or a.node_name == b.node_name:
            return bool(ok)
        second = self.nodes[b.node_name]
        sent = ok
        packet = Packet(sent.src, sent.dst, protocol.lower(), sent.sport, sent.dport,
                        in_iface=out, out_iface=second.out_iface(b_ip))
        assert packet.out_iface == veth(b.namespace, b.name)
        return self._walk(second, packet) is not None

    @staticmethod
    def _walk(path: NodePath, packet: Packet) -> Packet | None:
        branches = traverse(path.ruleset, packet, "forward", path.ctx)
        assert len(branches) == 1
        (branch,) = branches
        assert not branch.unsupported, branch.unsupported
        return branch.packet if branch.accepted else None


def dataplane(cluster: Cluster, family: int = 4) -> Dataplane:
    return Dataplane(cluster, {n.name: node_path(cluster, n.name, family)
                               for n in cluster.nodes})


@cache
def case_cluster(name: str) -> Cluster:
    case = CASES[name]
    objects = [[RawDoc(o, Source(f"{SUITE_FILE} (case {name})", i + 1))]
               for i, o in enumerate(case.list("objects"))]
    return load_inputs([BASE, *objects])


@cache
def case_dataplane(name: str) -> Dataplane:
    return dataplane(case_cluster(name))


def section(felix: FelixRules, table: str) -> list[str]:
    return felix.restore_text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0].splitlines()


def chain(felix: FelixRules, name: str, table: str = "filter") -> list[str]:
    return [line for line in section(felix, table) if line.startswith(f"-A {name} ")]


def declared(felix: FelixRules, table: str) -> list[str]:
    return [line[1:].split()[0] for line in section(felix, table) if line.startswith(":")]


# ---------------------------------------------------------------- layout (felix/rules)


def test_static_filter_chains_and_hooks():
    felix = case_dataplane("default-deny-ingress").nodes["node-1"].felix
    filt = felix.restore_text.split("*filter\n", 1)[1]
    # int_dataplane.go: jumps inserted at the top, the accept rules appended to FORWARD.
    assert [line for line in filt.splitlines()
            if line.split()[1:2] in (["INPUT"], ["FORWARD"], ["OUTPUT"])] == [
        "-I INPUT 1 -j cali-INPUT",
        "-I FORWARD 1 -j cali-FORWARD",
        "-I OUTPUT 1 -j cali-OUTPUT",
        '-A FORWARD -m comment --comment "Policy explicitly accepted packet." '
        "-m mark --mark 0x10000/0x10000 -j ACCEPT",
        "-A FORWARD -j MARK --set-xmark 0x10000/0x10000",
    ]
    # static.go StaticFilterForwardChains
    assert chain(felix, "cali-FORWARD") == [
        "-A cali-FORWARD -j MARK --set-xmark 0x0/0x1a0000",
        "-A cali-FORWARD -m mark --mark 0x0/0x10000 -j cali-from-hep-forward",
        "-A cali-FORWARD -i cali+ -j cali-from-wl-dispatch",
        "-A cali-FORWARD -o cali+ -j cali-to-wl-dispatch",
        "-A cali-FORWARD -j cali-to-hep-forward",
        "-A cali-FORWARD -j cali-cidr-block",
    ]
    assert chain(felix, "cali-wl-to-host") == [
        "-A cali-wl-to-host -j cali-from-wl-dispatch",
        '-A cali-wl-to-host -m comment --comment "Configured DefaultEndpointToHostAction" '
        "-j ACCEPT",
    ]
    # filterOutputChain: host -> local workload traffic is not policed.
    assert chain(felix, "cali-OUTPUT")[:2] == [
        "-A cali-OUTPUT -m mark --mark 0x10000/0x10000 -j ACCEPT",
        "-A cali-OUTPUT -o cali+ -j RETURN",
    ]
    assert "-A cali-INPUT -i cali+ -g cali-wl-to-host" in chain(felix, "cali-INPUT")


def test_nat_outgoing_masquerades_pool_traffic_leaving_the_pools():
    felix = case_dataplane("default-deny-ingress").nodes["node-1"].felix
    assert "-A POSTROUTING -j cali-POSTROUTING" in section(felix, "nat")  # appended
    assert chain(felix, "cali-nat-outgoing", "nat") == [
        "-A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src "
        "-m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE"]
    assert felix.ipsets["cali40all-ipam-pools"].members == ("10.244.0.0/16",)
    assert felix.ipsets["cali40masq-ipam-pools"].members == ("10.244.0.0/16",)


def test_dispatch_chains_goto_each_local_workload():
    dp = case_dataplane("default-deny-ingress")
    felix = dp.nodes["node-1"].felix
    local = sorted([veth(ns, p) for ns in ("x", "y") for p in ("a", "b", "c")]
                   + [veth(p.namespace, p.name) for p in dp.cluster.pods_on("node-1")
                      if p.namespace == "kube-system"])  # the CoreDNS addon's pod
    # The names differ right after "cali": one goto per interface in the root chain.
    assert chain(felix, "cali-from-wl-dispatch") == [
        f"-A cali-from-wl-dispatch -i {i} -g cali-fw-{i}" for i in local] + [
        '-A cali-from-wl-dispatch -m comment --comment "Unknown interface" -j DROP']
    assert chain(felix, "cali-to-wl-dispatch") == [
        f"-A cali-to-wl-dispatch -o {i} -g cali-tw-{i}" for i in local] + [
        '-A cali-to-wl-dispatch -m comment --comment "Unknown interface" -j DROP']
    remote = veth("z", "a")
    assert f"cali-tw-{remote}" not in declared(felix, "filter")


def test_dispatch_tree_splits_shared_prefixes():
    chains = dispatch_chains(["cali1ab", "cali2cd", "cali1aa"], "cali-from-wl-dispatch",
                             "cali-fw-", inbound=True)
    rendered = {name: [r.render(name) for r in rules] for name, rules in chains.items()}
    unknown = '-m comment --comment "Unknown interface" -j DROP'
    assert rendered == {
        "cali-from-wl-dispatch-1": [
            "-A cali-from-wl-dispatch-1 -i cali1aa -g cali-fw-cali1aa",
            "-A cali-from-wl-dispatch-1 -i cali1ab -g cali-fw-cali1ab",
            f"-A cali-from-wl-dispatch-1 {unknown}"],
        "cali-from-wl-dispatch": [
            "-A cali-from-wl-dispatch -i cali1+ -g cali-from-wl-dispatch-1",
            "-A cali-from-wl-dispatch -i cali2cd -g cali-fw-cali2cd",
            f"-A cali-from-wl-dispatch {unknown}"],
    }


def test_endpoint_chains_in_felix_order():
    felix = case_dataplane("ingress-from-same-namespace-podselector").nodes["node-1"].felix
    a = veth("x", "a")
    tw = f"cali-tw-{a}"
    policy = "cali-pi-knp/x/x-a-allows-x-b"  # 28 characters: no hashing
    assert len(policy) == 28
    ret = "-m mark --mark 0x10000/0x10000 -j RETURN"
    assert chain(felix, tw) == [f"-A {tw} {rest}" for rest in (
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP",
        "-j MARK --set-xmark 0x0/0x30000",
        '-m comment --comment "Start of tier default" -j MARK --set-xmark 0x0/0x20000',
        f"-m mark --mark 0x0/0x20000 -j {policy}",
        f'-m comment --comment "Return if policy accepted" {ret}',
        '-m comment --comment "End of tier default. Drop if no policies passed packet" '
        "-m mark --mark 0x0/0x20000 -j DROP",
        "-j cali-pri-kns.x",
        f'-m comment --comment "Return if profile accepted" {ret}',
        "-j cali-pri-ksa.x.default",
        f'-m comment --comment "Return if profile accepted" {ret}',
        '-m comment --comment "Drop if no profiles matched" -j DROP')]
    fw = f"cali-fw-{a}"  # no egress policy: conntrack, encapsulation drops, then profiles
    assert chain(felix, fw) == [f"-A {fw} {rest}" for rest in (
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP",
        "-j MARK --set-xmark 0x0/0x30000",
        '-p udp -m comment --comment "Drop VXLAN encapped packets originating in workloads" '
        "-m multiport --dports 4789 -j DROP",
        '-p ipencap -m comment --comment "Drop IPinIP encapped packets originating in '
        'workloads" -j DROP',
        "-j cali-pro-kns.x",
        f'-m comment --comment "Return if profile accepted" {ret}',
        "-j cali-pro-ksa.x.default",
        f'-m comment --comment "Return if profile accepted" {ret}',
        '-m comment --comment "Drop if no profiles matched" -j DROP')]
    # The profiles: kns allows (its trailing RETURN stripped), ksa has no rules.
    assert chain(felix, "cali-pri-kns.x") == [
        '-A cali-pri-kns.x -m comment --comment "Profile kns.x ingress" '
        "-j MARK --set-xmark 0x10000/0x10000"]
    assert chain(felix, "cali-pro-ksa.x.default") == [
        '-A cali-pro-ksa.x.default -m comment --comment "Profile ksa.x.default egress"']
    # The policy: one Allow rule from the x/b selector set; its set holds x/b only.
    (rule,) = chain(felix, policy)
    name = rule.split("--match-set ")[1].split()[0]
    assert rule == (f'-A {policy} -m comment --comment "KubernetesNetworkPolicy '
                    f'x/x-a-allows-x-b ingress" -m set --match-set {name} src '
                    "-j MARK --set-xmark 0x10000/0x10000")
    assert name.startswith("cali40s:") and len(name) == 31
    assert felix.ipsets[name].members == ("10.244.1.12",)
    # Only the chains a hook reaches are programmed: the policy has no egress chain.
    assert "cali-po-knp/x/x-a-allows-x-b" not in declared(felix, "filter")


def test_long_policy_names_are_hashed():
    felix = case_dataplane("egress-ipblock-except").nodes["node-1"].felix
    name = limited("cali-po-", "knp/x/allow-client-a-via-cidr-egress-rule")
    assert name.startswith("cali-po-_") and len(name) == 28
    # An ipBlock with an except: a negated CIDR block computes scratch0 first.
    assert chain(felix, name) == [
        f'-A {name} -m comment --comment "KubernetesNetworkPolicy '
        'x/allow-client-a-via-cidr-egress-rule egress" -j MARK --set-xmark 0x80000/0x180000',
        f"-A {name} -d 10.244.1.12/32 -j MARK --set-xmark 0x0/0x80000",
        f"-A {name} -d 0.0.0.0/4 -m mark --mark 0x80000/0x80000 "
        "-j MARK --set-xmark 0x10000/0x10000"]


def test_named_port_is_an_ip_port_set():
    felix = case_dataplane("ingress-named-port").nodes["node-1"].felix
    selector_id = unique_id("s", "all()")
    expected = ("cali40" + unique_id("n", f"{selector_id},tcp,serve-81-tcp"))[:31]
    (rule,) = chain(felix, "cali-pi-knp/x/allow-all")
    assert "-p tcp " in rule and f"-m set --match-set {expected} dst,dst " in rule
    members = felix.ipsets[expected].members
    assert len(members) == 9 and "10.244.3.13,tcp:81" in members


def test_port_block_for_named_and_numeric_ports():
    cluster = cluster_with(netpol("x", "mixed", """
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - ports:
          - {port: serve-80-tcp}
          - {port: 9000, endPort: 9010}
          - {port: 443}
        """))
    felix = compile_felix(cluster, "n1")
    named = ("cali40" + unique_id("n", f"{unique_id('s', 'all()')},tcp,serve-80-tcp"))[:31]
    name = "cali-pi-knp/x/mixed"
    # SimplifyPorts merges the numeric ports into one multiport match; a named and a numeric
    # match are ORed in a block that sets scratch0, which the final rule requires.
    assert chain(felix, name) == [f"-A {name} {rest}" for rest in (
        '-m comment --comment "KubernetesNetworkPolicy x/mixed ingress" '
        "-j MARK --set-xmark 0x0/0x180000",
        "-p tcp -m multiport --dports 443,9000:9010 -j MARK --set-xmark 0x80000/0x80000",
        f"-m set --match-set {named} dst,dst -j MARK --set-xmark 0x80000/0x80000",
        "-p tcp -m mark --mark 0x80000/0x80000 -j MARK --set-xmark 0x10000/0x10000")]
    # x/alt names its 8080 serve-80-tcp: the set resolves the name per pod.
    assert "10.244.2.13,tcp:8080" in felix.ipsets[named].members
    dp = dataplane(cluster)
    assert [dp.reach("y/a", "x/a", port) for port in (80, 443, 9000, 9010, 9011, 81)] == \
        [True, True, True, True, False, False]


def test_policy_group_for_policies_sharing_a_selector():
    spec = "podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{podSelector: {}}]}]"
    cluster = cluster_with(netpol("x", "first", spec) + netpol("x", "second", spec))
    felix = compile_felix(cluster, "n1")
    group = [c for c in declared(felix, "filter") if c.startswith("cali-gi-")]
    assert len(group) == 1 and len(group[0]) == 28
    assert chain(felix, group[0]) == [
        f"-A {group[0]} -j cali-pi-knp/x/first",
        f"-A {group[0]} -m mark --mark 0x0/0x30000 -j cali-pi-knp/x/second"]
    tw = chain(felix, f"cali-tw-{veth('x', 'a')}")
    assert f"-A cali-tw-{veth('x', 'a')} -m mark --mark 0x0/0x20000 -j {group[0]}" in tw


def test_combined_text_parses_strictly_and_sets_round_trip():
    cluster = case_cluster("ingress-named-port")
    for node in ("node-1", "node-2"):
        felix = compile_felix(cluster, node)
        kube_proxy = compile_iptables(cluster, options_for(cluster, node)).save_text()
        ruleset = parse_ruleset(kube_proxy + felix.restore_text, node, strict=True)
        assert not ruleset.unsupported
        assert set(ruleset.tables) == {"raw", "mangle", "nat", "filter"}
        assert parse_ipset_save(felix.ipset_text()) == dict(felix.ipsets)
        referenced = {w for line in felix.restore_text.splitlines()
                      for w in line.split("--match-set ")[1:]}
        assert {w.split()[0] for w in referenced} == set(felix.ipsets)
    assert compile_felix_all(cluster)["node-2"] == compile_felix(cluster, "node-2")


def test_host_network_pods_are_not_workload_endpoints():
    cluster = cluster_with(netpol("x", "from-x", """
        podSelector: {}
        ingress: [{from: [{podSelector: {}}]}]
        """))
    felix = compile_felix(cluster, "n1")
    (selector_set,) = [s for s in felix.ipsets.values() if s.name.startswith("cali40s:")]
    # x's pods with a veth; x/host (hostNetwork, 172.18.0.2) is not a workload endpoint.
    assert selector_set.members == ("10.244.1.10", "10.244.1.11", "10.244.2.12",
                                    "10.244.2.13")
    assert f"cali-tw-{veth('x', 'host')}" not in declared(felix, "filter")


@pytest.mark.parametrize("name", list(CASES))
def test_selector_text_selects_what_the_label_selectors_select(name):
    """The Calico selector text a Kubernetes selector becomes (conversion.go and the update
    processor's namespace scoping), evaluated on the workload endpoints' Calico labels,
    selects the same pods as the Kubernetes label selector semantics."""
    cluster = case_cluster(name)
    ns_labels = {n.name: n.labels for n in cluster.namespaces}
    workloads = [Workload(p.namespace, p.labels, ns_labels[p.namespace]) for p in cluster.pods]
    for policy in cluster_policies(cluster).policies:
        selectors = [policy.selector] + [s for r in policy.ingress + policy.egress
                                         for s in (r.source.selector, r.destination.selector)
                                         if s is not None]
        for s in selectors:
            expr = sel.parse(s.text)
            assert [expr.matches(w.calico_labels()) for w in workloads] == \
                [s.matches(w) for w in workloads], s.text


def test_unknown_node_is_an_input_error():
    with pytest.raises(InputError, match="no Node named 'nope'"):
        compile_felix(case_cluster("default-deny-ingress"), "nope")


# ---------------------------------------------------------------- the conformance suite


def _probe_cells(name: str):
    cluster = case_cluster(name)
    keys = sorted(p.key for p in cluster.pods if p.namespace in NAMESPACES)  # not CoreDNS
    for probe in CASES[name].items("probes", required=True):
        port = probe.int("port", required=True)
        protocol = probe.enum("protocol", ("TCP", "UDP", "SCTP"), default="TCP")
        yield port, protocol, expected_table(probe.sub("expect"), keys)


@pytest.mark.parametrize("name", list(CASES))
def test_conformance_case_through_felix_chains(name):
    dp = case_dataplane(name)
    wrong = [f"{protocol}/{port} {a} -> {b}: expected {'allowed' if want else 'denied'}"
             for port, protocol, table in _probe_cells(name)
             for (a, b), want in table.items()
             if dp.reach(a, b, port, protocol) != want]
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- Online Boutique


@pytest.fixture(scope="module")
def boutique() -> Dataplane:
    if not BOUTIQUE.is_dir():
        pytest.skip(f"{BOUTIQUE} is not present (shared/ sits beside the checkout in CI)")
    return dataplane(load([str(BOUTIQUE)]))


def _app(dp: Dataplane, app: str) -> str:
    (found,) = [p.key for p in dp.cluster.pods if p.labels.get("app") == app]
    return found


# kustomize/components/network-policies/README.md: deny-all plus one policy per service
# admitting its callers on its port; frontend admits everyone; egress wide open.
@pytest.mark.parametrize(("src", "dst", "port", "allowed"), [
    ("frontend", "cartservice", 7070, True),
    ("checkoutservice", "cartservice", 7070, True),
    ("loadgenerator", "frontend", 8080, True),
    ("loadgenerator", "cartservice", 7070, False),
    ("checkoutservice", "paymentservice", 50051, True),
    ("frontend", "paymentservice", 50051, False),
    ("checkoutservice", "paymentservice", 8080, False),
    ("cartservice", "redis-cart", 6379, True),
    ("frontend", "redis-cart", 6379, False),
    ("recommendationservice", "productcatalogservice", 3550, True),
    ("checkoutservice", "emailservice", 8080, True),
    ("frontend", "loadgenerator", 8080, False),
])
def test_online_boutique_flows(boutique: Dataplane, src, dst, port, allowed):
    assert boutique.reach(_app(boutique, src), _app(boutique, dst), port) is allowed


# ---------------------------------------------------------------- admin tiers

V1 = "policy.networking.k8s.io/v1alpha1"
SUBJECT_X = "subject: {namespaces: {matchLabels: {ns: x}}}"


def admin(kind: str, name: str, spec: str) -> str:
    return doc(V1, kind, name, spec)


def test_admin_tier_layout():
    cluster = cluster_with(admin("AdminNetworkPolicy", "deny-y", f"""
        priority: 10
        {SUBJECT_X}
        ingress:
        - {{name: no-y, action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
        """))
    felix = compile_felix(cluster, "n1")
    tw = f"cali-tw-{veth('x', 'a')}"
    policy = limited("cali-pi-", "kanp/deny-y")
    lines = chain(felix, tw)
    # kube-admin (order 1000) before everything; its default action is Pass: no tier drop.
    assert f'-A {tw} -m comment --comment "Start of tier kube-admin" ' \
           "-j MARK --set-xmark 0x0/0x20000" in lines
    assert f"-A {tw} -m mark --mark 0x0/0x20000 -j {policy}" in lines
    assert not any("End of tier kube-admin" in line for line in lines)
    # Deny: set the drop bit, then DROP on it.
    assert chain(felix, policy)[-1] == f"-A {policy} -m mark --mark 0x40000/0x40000 -j DROP"


ANP_DENY_Y = admin("AdminNetworkPolicy", "deny-y", f"""
    priority: 10
    {SUBJECT_X}
    ingress:
    - {{action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
    """)
ANP_ALLOW_Y = ANP_DENY_Y.replace("Deny", "Allow").replace("deny-y", "allow-y")
ANP_PASS_Y = ANP_DENY_Y.replace("Deny", "Pass").replace("deny-y", "pass-y")
BANP_DENY_Y = admin("BaselineAdminNetworkPolicy", "default", f"""
    {SUBJECT_X}
    ingress:
    - {{action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
    """)
BANP_ALLOW_Y = BANP_DENY_Y.replace("Deny", "Allow")
NP_DENY_X = netpol("x", "deny-all", "podSelector: {}\npolicyTypes: [Ingress]")
NP_ALLOW_Y = netpol("x", "allow-y", """
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
    """)
ANP_EGRESS_NET = admin("AdminNetworkPolicy", "no-n2", f"""
    priority: 5
    {SUBJECT_X}
    egress:
    - {{action: Deny, to: [{{networks: [10.244.2.0/24]}}]}}
    """)
ANP_NODES = admin("AdminNetworkPolicy", "nodes", f"""
    priority: 5
    {SUBJECT_X}
    egress:
    - {{action: Deny, to: [{{nodes: {{matchLabels: {{zone: b}}}}}}]}}
    """)
CNP_ACCEPT_Y = doc("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", "accept-y", f"""
    tier: Admin
    priority: 3
    {SUBJECT_X}
    ingress:
    - {{action: Accept, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
    """)


# (policies, src, dst, allowed); NPAPI apis/v1alpha1 and netpol.md section 3: ANP rules
# decide first (Allow and Deny are final, Pass hands over to NetworkPolicy), then
# NetworkPolicy isolation, then the BANP, then allow.
@pytest.mark.parametrize(("policies", "src", "dst", "allowed"), [
    (ANP_DENY_Y, "y/b", "x/a", False),
    (ANP_DENY_Y, "z/b", "x/a", True),
    (ANP_DENY_Y, "x/b", "y/a", True),
    (ANP_ALLOW_Y + NP_DENY_X, "y/b", "x/a", True),
    (ANP_ALLOW_Y + NP_DENY_X, "z/b", "x/a", False),
    (ANP_PASS_Y + NP_DENY_X, "y/b", "x/a", False),
    (ANP_PASS_Y + BANP_ALLOW_Y, "y/b", "x/a", True),
    (ANP_PASS_Y + BANP_DENY_Y, "y/b", "x/a", False),
    (BANP_DENY_Y, "y/b", "x/a", False),
    (BANP_DENY_Y, "z/a", "x/a", True),
    (BANP_DENY_Y + NP_ALLOW_Y, "y/b", "x/a", True),
    (ANP_EGRESS_NET, "x/a", "z/a", False),
    (ANP_EGRESS_NET, "x/a", "y/a", True),
    (ANP_EGRESS_NET, "y/a", "z/a", True),
    (CNP_ACCEPT_Y + NP_DENY_X, "y/c", "x/b", True),
    (CNP_ACCEPT_Y + NP_DENY_X, "z/c", "x/b", False),
    # Calico cannot express a nodes peer: clusternetworkpolicy.go replaces the Deny rule by
    # "deny everything" (fails closed).
    (ANP_NODES, "x/a", "y/a", False),
    (ANP_NODES, "y/a", "x/a", True),
])
def test_admin_tiers_through_felix_chains(policies, src, dst, allowed):
    assert dataplane(cluster_with(policies)).reach(src, dst, 80) is allowed


# ---------------------------------------------------------------- Calico selectors


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    # libcalico-go lib/selector docs: != and not in also match when the label is absent.
    ("a == 'b'", {}, False),
    ("a != 'b'", {}, True),
    ("a != 'b'", {"a": "b"}, False),
    ("a in {'x', 'y'}", {"a": "y"}, True),
    ("a not in {'x', 'y'}", {}, True),
    ("a not in {'x', 'y'}", {"a": "x"}, False),
    ("has(a)", {"a": ""}, True),
    ("!has(a)", {"a": ""}, False),
    ("all()", {}, True),
    ("", {"x": "y"}, True),
    ("a == 'x' || b == 'y' && c == 'z'", {"a": "x"}, True),  # && binds tighter
    ("(a == 'x' || b == 'y') && c == 'z'", {"a": "x"}, False),
    ("!(a == 'x')", {"a": "y"}, True),
    ("a starts with 'fr' && a ends with 'nd'", {"a": "frontend"}, True),
    ("a contains 'ont'", {"a": "frontend"}, True),
    ('app.kubernetes.io/name == "web"', {"app.kubernetes.io/name": "web"}, True),
])
def test_calico_selector_semantics(selector, labels, matches):
    assert sel.parse(selector).matches(labels) is matches


def test_calico_selector_printing_and_errors():
    assert sel.canonical("a=='b'&&c in {'z','y'}") == '(a == "b" && c in {"y", "z"})'
    assert sel.canonical("! has(k)") == "!has(k)"
    for bad in ("a ==", "a = 'b'", "has(a", "a in {'x'", "(a == 'b'", "&& a == 'b'"):
        with pytest.raises(sel.SelectorError):
            sel.parse(bad)


# ---------------------------------------------------------------- Calico's own policies


def calico(kind: str, name: str, spec: str, namespace: str | None = None) -> str:
    return doc("projectcalico.org/v3", kind, name, spec, namespace)


TIER_SECURITY = doc("projectcalico.org/v3", "Tier", "security", "order: 100")
GNP_PASS_X = calico("GlobalNetworkPolicy", "security.pass-x", """
    tier: security
    selector: pod == 'a'
    types: [Ingress]
    ingress:
    - {action: Pass, source: {namespaceSelector: "ns == 'x'"}}
    - {action: Allow, source: {selector: "pod == 'c'"}}
    """)
GNP_DENY_Y = calico("GlobalNetworkPolicy", "deny-y", """
    order: 10
    selector: pod == 'a'
    ingress:
    - {action: Deny, source: {namespaceSelector: "ns == 'y'"}}
    - {action: Allow}
    """)
NP_B_81 = calico("NetworkPolicy", "b-81", """
    selector: pod == 'b'
    ingress:
    - {action: Allow, protocol: TCP, destination: {ports: [81]}}
    """, "x")
NP_FROM_A = calico("NetworkPolicy", "from-a", """
    selector: pod == 'c'
    ingress:
    - {action: Allow, source: {selector: "pod == 'a'"}}
    """, "y")
NP_NOT_PORTS = calico("NetworkPolicy", "not-81", """
    selector: pod == 'b'
    egress:
    - {action: Log, protocol: TCP}
    - {action: Allow, protocol: TCP, destination: {notPorts: [81], notNets: [10.244.2.0/24]}}
    """, "z")
GNP_ORDERED = calico("GlobalNetworkPolicy", "allow-first", """
    order: 1
    selector: pod == 'b'
    ingress: [{action: Allow, source: {namespaceSelector: "kubernetes.io/metadata.name == 'z'"}}]
    """) + calico("GlobalNetworkPolicy", "deny-later", """
    order: 2
    selector: pod == 'b'
    ingress: [{action: Deny}]
    """)


# Calico docs (network-policy/policy-tiers, reference/resources/*policy): tiers run in
# order; Pass skips to the next tier; a tier whose policies apply but do not decide drops;
# lower `order` first; `!=`-free selectors on namespace labels via namespaceSelector; a
# namespaced policy's rule selectors stay in its namespace; unselected pods are allowed by
# the kns profile.
@pytest.mark.parametrize(("policies", "src", "dst", "port", "allowed"), [
    (TIER_SECURITY + GNP_PASS_X, "x/b", "y/a", 80, True),  # passed, no more policy: profile
    (TIER_SECURITY + GNP_PASS_X, "z/c", "y/a", 80, True),  # allowed in tier security
    (TIER_SECURITY + GNP_PASS_X, "z/b", "y/a", 80, False),  # end of tier security drops
    (TIER_SECURITY + GNP_PASS_X + GNP_DENY_Y, "x/b", "y/a", 80, True),
    (TIER_SECURITY + GNP_PASS_X + GNP_DENY_Y, "y/b", "x/a", 80, False),
    (GNP_DENY_Y, "y/b", "z/a", 80, False),
    (GNP_DENY_Y, "z/b", "y/a", 80, True),
    (GNP_DENY_Y, "y/b", "z/b", 80, True),  # z/b is not selected
    (NP_B_81, "z/a", "x/b", 81, True),
    (NP_B_81, "z/a", "x/b", 80, False),
    (NP_B_81, "z/a", "y/b", 80, True),  # a namespaced policy selects in its namespace only
    (NP_FROM_A, "y/a", "y/c", 80, True),
    (NP_FROM_A, "x/a", "y/c", 80, False),  # the rule's selector is scoped to y
    (NP_NOT_PORTS, "z/b", "x/a", 80, True),
    (NP_NOT_PORTS, "z/b", "x/a", 81, False),
    (NP_NOT_PORTS, "z/b", "z/a", 80, False),  # notNets: z/a is 10.244.2.30
    (GNP_ORDERED, "z/a", "x/b", 80, True),
    (GNP_ORDERED, "y/a", "x/b", 80, False),
])
def test_calico_policies_through_felix_chains(policies, src, dst, port, allowed):
    assert dataplane(cluster_with(policies)).reach(src, dst, port) is allowed


def test_calico_policy_chains():
    felix = compile_felix(cluster_with(TIER_SECURITY + GNP_PASS_X + NP_NOT_PORTS), "n2")
    lines = chain(felix, "cali-po-np/z/not-81")
    assert lines[0] == ('-A cali-po-np/z/not-81 -p tcp -m comment --comment "NetworkPolicy '
                        'z/not-81 egress" -j LOG --log-prefix calico-packet --log-level 5')
    assert lines[1] == ("-A cali-po-np/z/not-81 ! -d 10.244.2.0/24 -p tcp "
                        "-m multiport ! --dports 81 -j MARK --set-xmark 0x10000/0x10000")
    tw = chain(felix, f"cali-tw-{veth('z', 'a')}")
    tiers = [line.split('"')[1] for line in tw if "tier" in line]
    assert tiers == ["Start of tier security",
                     "End of tier security. Drop if no policies passed packet"]
    # Pass: the pass bit, then RETURN.
    assert chain(felix, "cali-pi-gnp/security.pass-x")[1] == \
        "-A cali-pi-gnp/security.pass-x -m mark --mark 0x20000/0x20000 -j RETURN"


def test_bad_calico_policy_is_an_input_error():
    bad = calico("NetworkPolicy", "bad", "selector: pod = 'a'", "x")
    with pytest.raises(InputError, match="not a valid selector"):
        compile_felix(cluster_with(bad), "n1")
    unknown = calico("GlobalNetworkPolicy", "t.p", "tier: nope\nselector: all()")
    with pytest.raises(InputError, match="tier 'nope'"):
        compile_felix(cluster_with(unknown), "n1")


# ---------------------------------------------------------------- IPv6


@cache
def ipv6_cluster() -> Cluster:
    """An IPv6-only VXLAN cluster: x/a and x/b on n1, x/c on n2; x/a admits x/b only."""
    text = textwrap.dedent("""\
        apiVersion: netsim/v1alpha1
        kind: NetsimConfig
        metadata: {name: v6}
        spec: {podCIDRs: ["fd00:10:244::/56"], serviceCIDRs: ["fd00:10:96::/112"],
               cni: {calico: {encapsulation: VXLAN}}}
        ---
        """)
    text += "".join(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Node
        metadata: {{name: {n}}}
        status: {{addresses: [{{type: InternalIP, address: "fc00::{i}"}}]}}
        ---
        """) for i, n in ((2, "n1"), (3, "n2")))
    for i, (name, where) in enumerate((("a", "n1"), ("b", "n1"), ("c", "n2"))):
        text += textwrap.dedent(f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: {name}, namespace: x, labels: {{pod: {name}}}}}
            spec: {{nodeName: {where}, containers: [{{name: c, image: i}}]}}
            status: {{podIP: "fd00:10:244::{i + 10}"}}
            ---
            """)
    text += netpol("x", "only-b", """
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
        """)
    return load_yaml(text)


def test_ipv6_chains_and_sets():
    cluster = ipv6_cluster()
    felix = compile_felix(cluster, "n1", 6)
    (selector_set,) = [s for s in felix.ipsets.values() if s.name.startswith("cali60s:")]
    assert selector_set.family == 6 and selector_set.members == ("fd00:10:244::11",)
    assert "IPIP" not in felix.restore_text  # IPIP is IPv4-only
    dp = dataplane(cluster, 6)
    assert dp.reach("x/b", "x/a", 80, family=6)
    assert not dp.reach("x/c", "x/a", 80, family=6)


# ---------------------------------------------------------------- the kernel


def _kernel_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-restore", "iptables-save", "ip6tables-restore", "ipset"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_skip() is not None, reason=_kernel_skip() or "")
@pytest.mark.parametrize("family", [4, 6])
def test_kernel_accepts_felix_rules_and_prints_them_as_we_do(family):
    from tests.proxy.test_netfilter_parse import assert_same_tables

    cluster, node = (case_cluster("egress-named-port"), "node-1") if family == 4 else \
        (ipv6_cluster(), "n1")
    felix = compile_felix(cluster, node, family)
    fam = "IPv4" if family == 4 else "IPv6"
    options = replace(options_for(cluster, node, fam), nfacct=False)
    kube_proxy = compile_iptables(cluster, options).save_text()
    tool = "iptables" if family == 4 else "ip6tables"
    ns = f"netsim-felix-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        def run(*argv: str, stdin: str | None = None) -> str:
            done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin,
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{argv}: {done.stderr}"
            return done.stdout

        run("ipset", "restore", stdin=felix.ipset_text())
        run(f"{tool}-restore", stdin=kube_proxy)
        run(f"{tool}-restore", "--noflush", stdin=felix.restore_text)
        saved = run(f"{tool}-save")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    ours = parse_ruleset(kube_proxy + felix.restore_text, "felix", strict=True, family=family)
    assert_same_tables(ours.dump(), saved)
