"""kube-proxy iptables mode: the rules netsim compiles, checked against kube-proxy's own tests.

Expected rule text comes from kubernetes pkg/proxy/iptables/proxier_test.go (already in the
form its sortIPTablesRules produces), the Services and EndpointSlices of each upstream case
are written as manifests in tests/data/kube_proxy/, and iptables-save's canonical form is
checked against the real kernel where the machine allows (marked `kernel`).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from netsim.cluster import Cluster, load
from proxy.kube_proxy.iptables import IptablesRules, compile_iptables
from proxy.kube_proxy.iptables_text import kernel_probability, save_args, sort_rules_text
from proxy.kube_proxy.options import KubeProxyOptions, options_for
from proxy.kube_proxy.serviceports import hash16

DATA = Path(__file__).resolve().parents[1] / "data" / "kube_proxy"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def assert_text(actual: str, expected: str, label: str) -> None:
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"{label} (expected)", f"{label} (netsim)"))
        pytest.fail(f"{label} differs:\n{diff}")


def upstream_spelling(text: str) -> str:
    # kube-proxy formats the mark with %#08x (0x00004000); upstream's fake proxier injects
    # "0x4000" instead, so the expected texts spell it that way. The kernel stores the same
    # number either way.
    return text.replace("0x00004000", "0x4000")


def options(cluster: Cluster, node: str, fam: str = "IPv4", **changes) -> KubeProxyOptions:
    # Upstream's fake iptables reports no --random-fully support unless a test asks for it.
    return replace(options_for(cluster, node, fam), **{"random_fully": False, **changes})


# ---------------------------------------------------------------- upstream cases, exact text

V128, V131 = "v1.28", "v1.31-v1.33"
# (fixture, upstream test (and t.Run case), kube-proxy version, node, family, random_fully,
#  expected text)
UPSTREAM = [
    ("overall-v1.31", "TestOverallIPTablesRules", V131, "test-node", "IPv4", False, None),
    ("overall-v1.28", "TestOverallIPTablesRulesWithMultipleServices", V128, "test-hostname",
     "IPv4", False, None),
    ("load-balancer", "TestLoadBalancer", V128, "test-hostname", "IPv4", False, None),
    ("node-port", "TestNodePort", V128, "test-hostname", "IPv4", False, None),
    ("external-traffic-policy-local", "TestExternalTrafficPolicyLocal", V128, "test-hostname",
     "IPv4", False, None),
    ("non-local-external-ips", "TestNonLocalExternalIPs", V128, "test-hostname", "IPv4", False,
     None),
    ("masquerade-rule", "TestMasqueradeRule randomFully=false", V128, "test-hostname", "IPv4",
     False, None),
    ("masquerade-rule", "TestMasqueradeRule randomFully=true", V128, "test-hostname", "IPv4",
     True, "masquerade-rule-random-fully"),
    ("enable-localhost-nodeports-ipv4", "TestEnableLocalhostNodePortsIPv4", V128,
     "test-hostname", "IPv4", False, None),
    ("disable-localhost-nodeports-ipv4", "TestDisableLocalhostNodePortsIPv4", V128,
     "test-hostname", "IPv4", False, None),
    ("disable-localhost-nodeports-ipv4-with-node-address",
     "TestDisableLocalhostNodePortsIPv4WithNodeAddress", V128, "test-hostname", "IPv4", False,
     None),
    ("enable-localhost-nodeports-ipv6", "TestEnableLocalhostNodePortsIPv6", V128,
     "test-hostname", "IPv6", False, None),
    ("disable-localhost-nodeports-ipv6", "TestDisableLocalhostNodePortsIPv6", V128,
     "test-hostname", "IPv6", False, None),
    ("only-local-nodeports-no-cluster-cidr", "TestOnlyLocalNodePortsNoClusterCIDR", V128,
     "test-hostname", "IPv4", False, None),
    ("only-local-nodeports", "TestOnlyLocalNodePorts", V128, "test-hostname", "IPv4", False,
     None),
    ("internal-traffic-policy-cluster", "TestInternalTrafficPolicyE2E/cluster", V128,
     "test-hostname", "IPv4", False, None),
    ("internal-traffic-policy-local", "TestInternalTrafficPolicyE2E/local", V128,
     "test-hostname", "IPv4", False, None),
    ("internal-traffic-policy-local-none-local", "TestInternalTrafficPolicyE2E/no-local", V128,
     "test-hostname", "IPv4", False, None),
    *[(f"terminating-{policy}-{case}", f"TestTerminatingEndpointsTrafficPolicy"
       f"{policy.title()}/{case}", V128, "test-hostname", "IPv4", False, None)
      for policy in ("local", "cluster")
      for case in ("ready", "only-terminating", "remote", "none-usable")],
]


@pytest.mark.parametrize(("fixture", "test", "version", "node", "fam", "random_fully",
                          "expected"), UPSTREAM, ids=[f"{r[1]}@{r[2]}" for r in UPSTREAM])
def test_upstream_case(fixture, test, version, node, fam, random_fully, expected) -> None:
    cluster = load([str(DATA / f"{fixture}.yaml")])
    rules = compile_iptables(cluster, options(cluster, node, fam, random_fully=random_fully))
    want = (DATA / f"{expected or fixture}.txt").read_text()
    assert_text(upstream_spelling(rules.sorted_text()), want, f"{test} ({version})")


def test_fixtures_load_without_warnings() -> None:
    for path in sorted(DATA.glob("*.yaml")):
        assert load([str(path)]).warnings == (), path.name


# ---------------------------------------------------------------- names and probabilities


def test_chain_names_hash_service_port_and_protocol() -> None:
    # The names kube-proxy's tests use (proxier_test.go, TestOverallIPTablesRules).
    assert hash16("ns1/svc1:p80tcp") == "XPGD46QRK7WJZT7O"
    assert hash16("ns1/svc1:p80tcp10.180.0.1:80") == "SXIVWICOYRO3J4NJ"
    assert hash16("ns2/svc2:p80tcp") == "GNZBNJ2PO5MGZ6GT"
    # an unnamed port hashes "ns/svc" (TestInternalTrafficPolicyE2E's KUBE-SVC-AQI2S6QIMU7PVVRP)
    assert hash16("ns1/svc1tcp") == "AQI2S6QIMU7PVVRP"


SERVICE_WITH_N = """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.0.0.0/8
---
apiVersion: v1
kind: Node
metadata: {{name: test-node}}
status: {{addresses: [{{type: InternalIP, address: 192.168.0.2}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  clusterIP: 172.30.0.41
  ports: [{{name: p80, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
addressType: IPv4
endpoints: [{endpoints}]
ports: [{{name: p80, port: 80, protocol: TCP}}]
"""


def _probabilities(rules: IptablesRules) -> list[str | None]:
    out = []
    for rule in rules.nat.chain_rules("KUBE-SVC-XPGD46QRK7WJZT7O"):
        if "KUBE-MARK-MASQ" in rule.args:
            continue
        args = rule.args
        out.append(args[args.index("--probability") + 1] if "--probability" in args else None)
    return out


@pytest.mark.parametrize(("n", "expected", "saved"), [
    # computeProbability is 1/(n-i) printed %0.10f, the last pick unconditional; the kernel
    # keeps round(p * 2^31), which iptables-save prints with 11 decimals (seen with 1.8.9).
    (1, [None], []),
    (2, ["0.5000000000", None], ["0.50000000000"]),
    (3, ["0.3333333333", "0.5000000000", None], ["0.33333333349", "0.50000000000"]),
    (4, ["0.2500000000", "0.3333333333", "0.5000000000", None],
     ["0.25000000000", "0.33333333349", "0.50000000000"]),
    (5, ["0.2000000000", "0.2500000000", "0.3333333333", "0.5000000000", None],
     ["0.20000000019", "0.25000000000", "0.33333333349", "0.50000000000"]),
])
def test_probabilities_for_n_endpoints(load_text, n, expected, saved) -> None:
    eps = ", ".join(f"{{addresses: [10.180.0.{i + 1}]}}" for i in range(n))
    cluster = load_text(SERVICE_WITH_N.format(endpoints=eps))
    rules = compile_iptables(cluster, options(cluster, "test-node"))
    assert _probabilities(rules) == expected
    assert [kernel_probability(p) for p in expected if p] == saved


def test_endpoints_sort_as_strings(load_text) -> None:
    # endpoints are ordered by "ip:port" string, so 10.180.0.11 comes before 10.180.0.2
    eps = "{addresses: [10.180.0.2]}, {addresses: [10.180.0.11]}"
    cluster = load_text(SERVICE_WITH_N.format(endpoints=eps))
    rules = compile_iptables(cluster, options(cluster, "test-node"))
    comments = [r.comment for r in rules.nat.chain_rules("KUBE-SVC-XPGD46QRK7WJZT7O")][1:]
    assert comments == ["ns1/svc1:p80 -> 10.180.0.11:80", "ns1/svc1:p80 -> 10.180.0.2:80"]


# ---------------------------------------------------------------- large-cluster mode


def _large_cluster(tmp_path: Path, extra_endpoints: int) -> Cluster:
    """TestSyncProxyRulesLargeClusterMode's services: masqueradeAll, two services with
    threshold/2-1 endpoints each, and ns3/svc3 with the given number of endpoints."""
    docs = ["""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.0.0.0/8
iptables: {masqueradeAll: true}
""", """apiVersion: v1
kind: Node
metadata: {name: test-node}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
"""]
    services = [("ns1", "svc1", "p80", 80, "172.30.0.41",
                 [f"10.0.{i % 256}.{i // 256}" for i in range(499)]),
                ("ns2", "svc2", "p8080", 8080, "172.30.0.42",
                 [f"10.1.{i % 256}.{i // 256}" for i in range(499)]),
                ("ns3", "svc3", "p8081", 8081, "172.30.0.43",
                 ["203.0.113.4", "203.0.113.8", "203.0.113.12"][:extra_endpoints])]
    for ns, name, port_name, port, ip, ips in services:
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  clusterIP: {ip}
  ports: [{{name: {port_name}, port: {port}, protocol: TCP}}]
""")
        if ips:
            eps = ", ".join(f"{{addresses: [{a}]}}" for a in ips)
            docs.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
endpoints: [{eps}]
ports: [{{name: {port_name}, port: {port}, protocol: TCP}}]
""")
    path = tmp_path / "large.yaml"
    path.write_text("---\n".join(docs))
    # upstream's fake proxier holds only these services: no kube-dns endpoints to count
    return load([str(path)], overrides={"dns_addon": False})


def _dnat_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith("-A KUBE-SEP-") and "-j DNAT" in line]


def test_large_cluster_mode_drops_endpoint_comments(tmp_path: Path) -> None:
    # TestSyncProxyRulesLargeClusterMode: 998 endpoints keep their comments ...
    cluster = _large_cluster(tmp_path, 0)
    text = compile_iptables(cluster, options(cluster, "test-node")).restore_text()
    dnat = _dnat_lines(text)
    assert len(dnat) == 998 and all("--comment" in line for line in dnat)
    assert ("-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp "
            "-j DNAT --to-destination 10.0.0.0:80") in dnat

    # ... and 1001 (> 1000) drop them from SEP (and SVC -> SEP) rules on a full sync.
    cluster = _large_cluster(tmp_path, 3)
    rules = compile_iptables(cluster, options(cluster, "test-node"))
    dnat = _dnat_lines(rules.restore_text())
    assert len(dnat) == 1001 and not any("--comment" in line for line in dnat)
    assert ("-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
            in dnat)
    assert ("-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination "
            "203.0.113.4:8081" in dnat)
    svc3 = rules.nat.chain_rules("KUBE-SVC-" + hash16("ns3/svc3:p8081tcp"))
    # masqueradeAll keeps the "cluster IP" comment on the masquerade rule (spec section 5)
    assert svc3[0].args == ("-m", "comment", "--comment", "ns3/svc3:p8081 cluster IP",
                            "-m", "tcp", "-p", "tcp", "-d", "172.30.0.43", "--dport", "8081",
                            "-j", "KUBE-MARK-MASQ")
    assert all("--comment" not in r.args for r in svc3[1:])
    # KUBE-SERVICES rules keep theirs
    assert all(r.comment for r in rules.nat.chain_rules("KUBE-SERVICES"))


# ---------------------------------------------------------------- masquerading variants

MASQ_CASE = """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
{config}
---
apiVersion: v1
kind: Node
metadata: {{name: test-node}}
spec: {{podCIDR: 10.244.3.0/24, podCIDRs: [10.244.3.0/24]}}
status: {{addresses: [{{type: InternalIP, address: 192.168.0.2}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 172.30.0.41
  ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 30001}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}
addressType: IPv4
endpoints: [{{addresses: [10.180.0.1], nodeName: test-node}}]
ports: [{{name: p80, port: 80, protocol: TCP}}]
"""
SVC = "KUBE-SVC-XPGD46QRK7WJZT7O"
EXT = "KUBE-EXT-XPGD46QRK7WJZT7O"
CLUSTER_IP_ARGS = ("-m", "comment", "--comment", "ns1/svc1:p80 cluster IP", "-m", "tcp", "-p",
                   "tcp", "-d", "172.30.0.41", "--dport", "80")


@pytest.mark.parametrize(("config", "masq", "pod_traffic"), [
    # the detector's "not local" args mark ClusterIP traffic; its "local" args short-circuit
    # pod traffic to eTP Local external destinations (spec sections 4.6, 4.7 and 6)
    ("clusterCIDR: 10.0.0.0/8", ("!", "-s", "10.0.0.0/8"), ("-s", "10.0.0.0/8")),
    ("detectLocalMode: NodeCIDR", ("!", "-s", "10.244.3.0/24"), ("-s", "10.244.3.0/24")),
    ("detectLocalMode: BridgeInterface\ndetectLocal: {bridgeInterface: cbr0}",
     ("!", "-i", "cbr0"), ("-i", "cbr0")),
    ("detectLocalMode: InterfaceNamePrefix\ndetectLocal: {interfaceNamePrefix: veth}",
     ("!", "-i", "veth+"), ("-i", "veth+")),
    ("clusterCIDR: 10.0.0.0/8\niptables: {masqueradeAll: true}", (), ("-s", "10.0.0.0/8")),
    ("mode: iptables", None, None),  # no detector: no masquerade rule, no pod short-circuit
])
def test_masquerade_variants(load_text, config, masq, pod_traffic) -> None:
    cluster = load_text(MASQ_CASE.format(config=config))
    rules = compile_iptables(cluster, options(cluster, "test-node"))
    svc = [r.args for r in rules.nat.chain_rules(SVC) if "KUBE-MARK-MASQ" in r.args]
    assert svc == ([] if masq is None else [(*CLUSTER_IP_ARGS, *masq, "-j", "KUBE-MARK-MASQ")])
    ext = rules.nat.chain_rules(EXT)
    pod = [r.args for r in ext if (r.comment or "").startswith("pod traffic")]
    assert pod == ([] if pod_traffic is None else [(
        "-m", "comment", "--comment", "pod traffic for ns1/svc1:p80 external destinations",
        *pod_traffic, "-j", SVC)])
    # the host's own traffic is masqueraded and short-circuited whatever the detector
    assert [r.args[-1] for r in ext] == [*(["KUBE-SVC-XPGD46QRK7WJZT7O"] if pod else []),
                                         "KUBE-MARK-MASQ", SVC, "KUBE-SVL-XPGD46QRK7WJZT7O"]


def test_nfacct_and_real_mark_spelling(load_text) -> None:
    # TestDropInvalidRule: the INVALID drop counts into ct_state_invalid_dropped_pkts when the
    # counter exists; real kube-proxy spells the mark %#08x.
    cluster = load_text(MASQ_CASE.format(config="clusterCIDR: 10.0.0.0/8"))
    with_nfacct = compile_iptables(cluster, options(cluster, "test-node", nfacct=True))
    forward = with_nfacct.restore_text().splitlines()
    assert ("-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name "
            "ct_state_invalid_dropped_pkts -j DROP") in forward
    assert ("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark "
            "--mark 0x00004000/0x00004000 -j ACCEPT") in forward
    assert ("-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 "
            "--dport 30001 -m nfacct --nfacct-name localhost_nps_accepted_pkts "
            "-j KUBE-EXT-XPGD46QRK7WJZT7O") in forward
    without = compile_iptables(cluster, options(cluster, "test-node", nfacct=False))
    assert "nfacct" not in without.restore_text()


# ---------------------------------------------------------------- IPv6

IPV6_CASE = """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: "fd00:10::/64"
---
apiVersion: v1
kind: Node
metadata: {name: test-node}
status: {addresses: [{type: InternalIP, address: "2001:db8::1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: "fd00:172:30::41"
  ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv6
endpoints: [{addresses: ["fd00:10:180::1"]}]
ports: [{name: p80, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc2, namespace: ns2}
spec:
  clusterIP: "fd00:172:30::42"
  ports: [{name: p80, port: 80, protocol: TCP}]
"""


def test_ipv6_rules(load_text) -> None:
    cluster = load_text(IPV6_CASE)
    rules = compile_iptables(cluster, options(cluster, "test-node", "IPv6"))
    text = upstream_spelling(rules.restore_text()).splitlines()
    sep = "KUBE-SEP-" + hash16("ns1/svc1:p80tcp[fd00:10:180::1]:80")
    assert "KUBE-FIREWALL" not in rules.restore_text()
    for line in [
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        "-d fd00:172:30::41 --dport 80 ! -s fd00:10::/64 -j KUBE-MARK-MASQ",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> [fd00:10:180::1]:80" -j {sep}',
        f"-A {sep} -m comment --comment ns1/svc1:p80 -s fd00:10:180::1 -j KUBE-MARK-MASQ",
        f"-A {sep} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT "
        "--to-destination [fd00:10:180::1]:80",
        '-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 has no endpoints" -m tcp -p tcp '
        "-d fd00:172:30::42 --dport 80 -j REJECT",
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
        'be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 '
        "-j KUBE-NODEPORTS",
    ]:
        assert line in text
    saved = rules.save_text().splitlines()
    assert (f"-A {SVC} ! -s fd00:10::/64 -d fd00:172:30::41/128 -p tcp -m comment --comment "
            '"ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ') in saved
    assert ("-A KUBE-SERVICES -d fd00:172:30::42/128 -p tcp -m comment --comment "
            '"ns2/svc2:p80 has no endpoints" -m tcp --dport 80 -j REJECT --reject-with '
            "icmp6-port-unreachable") in saved


def test_no_other_family_objects(load_text) -> None:
    # the IPv4 proxier of an IPv6-only cluster writes only the fixed chains
    cluster = load_text(IPV6_CASE)
    rules = compile_iptables(cluster, options(cluster, "test-node"))
    assert [r.chain for r in rules.nat.rules] == [
        "KUBE-POSTROUTING", "KUBE-POSTROUTING", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
        "KUBE-SERVICES"]


# ---------------------------------------------------------------- hooks and iptables-save


def test_jump_rules_in_built_in_chain_order(load_text) -> None:
    # iptablesJumpChains + kubelet's KUBE-FIREWALL jumps, each ensured at position 1: the last
    # ensured is first (spec section 3).
    cluster = load_text(SERVICE_WITH_N.format(endpoints=""))
    rules = compile_iptables(cluster, options(cluster, "test-node"))
    assert [(h.table, h.chain, h.args[-1]) for h in rules.jump_rules] == [
        ("filter", "INPUT", "KUBE-FIREWALL"),
        ("filter", "INPUT", "KUBE-PROXY-FIREWALL"),
        ("filter", "INPUT", "KUBE-NODEPORTS"),
        ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES"),
        ("filter", "FORWARD", "KUBE-PROXY-FIREWALL"),
        ("filter", "FORWARD", "KUBE-FORWARD"),
        ("filter", "FORWARD", "KUBE-SERVICES"),
        ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES"),
        ("filter", "OUTPUT", "KUBE-FIREWALL"),
        ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL"),
        ("filter", "OUTPUT", "KUBE-SERVICES"),
        ("nat", "PREROUTING", "KUBE-SERVICES"),
        ("nat", "OUTPUT", "KUBE-SERVICES"),
        ("nat", "POSTROUTING", "KUBE-POSTROUTING"),
    ]
    assert rules.jump_rules[3].args == (
        "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
        "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES")


@pytest.mark.parametrize(("args", "saved"), [
    # What iptables-save 1.8.9 prints for kube-proxy's argument orders (seen in a namespace,
    # and ../shared/reference/kube-proxy.md section 12).
    (("-m", "comment", "--comment", "ns1/svc1:p80 cluster IP", "-m", "tcp", "-p", "tcp",
      "-d", "172.30.0.41", "--dport", "80", "!", "-s", "10.0.0.0/8", "-j", "KUBE-MARK-MASQ"),
     '! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP"'
     " -m tcp --dport 80 -j KUBE-MARK-MASQ"),
    (("-m", "comment", "--comment", "ns1/svc1 -> 10.0.1.1:80", "-m", "recent", "--name",
      "KUBE-SEP-X", "--rcheck", "--seconds", "10800", "--reap", "-j", "KUBE-SEP-X"),
     '-m comment --comment "ns1/svc1 -> 10.0.1.1:80" -m recent --rcheck --seconds 10800 '
     "--reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j KUBE-SEP-X"),
    (("-m", "comment", "--comment", "ns2/svc2:p80", "-m", "tcp", "-p", "tcp", "-d",
      "127.0.0.0/8", "--dport", "3001", "-m", "nfacct", "--nfacct-name",
      "localhost_nps_accepted_pkts", "-j", "KUBE-EXT-X"),
     '-d 127.0.0.0/8 -p tcp -m comment --comment "ns2/svc2:p80" -m tcp --dport 3001 '
     "-m nfacct --nfacct-name  localhost_nps_accepted_pkts -j KUBE-EXT-X"),
    (("-j", "MARK", "--or-mark", "0x00004000"), "-j MARK --set-xmark 0x4000/0x4000"),
    (("-j", "MARK", "--xor-mark", "0x00004000"), "-j MARK --set-xmark 0x4000/0x0"),
    (("-m", "mark", "!", "--mark", "0x00004000/0x00004000", "-j", "RETURN"),
     "-m mark ! --mark 0x4000/0x4000 -j RETURN"),
    (("-m", "comment", "--comment", "x", "-j", "REJECT"),
     "-m comment --comment x -j REJECT --reject-with icmp-port-unreachable"),
])
def test_save_form(args, saved) -> None:
    assert save_args(args, ipv6=False) == saved


def test_unit_test_sort_matches_upstream_example() -> None:
    # proxier_test.go TestSortIPTablesRules "correctly match same service name in different
    # styles of comments"
    given = """*filter
COMMIT
*nat
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
-A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
-A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
-A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
-A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
-A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
-A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
-A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
-A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
COMMIT
"""
    expected = """*filter
COMMIT
*nat
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
-A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
-A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
-A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
-A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
-A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
-A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
-A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
-A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
COMMIT
"""
    assert_text(sort_rules_text(given), expected, "sortIPTablesRules")


def test_compile_is_pure_and_deterministic() -> None:
    cluster = load([str(EXAMPLES / "shop")])
    opts = options_for(cluster, "shop-worker")
    first, second = compile_iptables(cluster, opts), compile_iptables(cluster, opts)
    assert first == second and first.restore_text() == second.restore_text()
    assert "--random-fully" in first.restore_text()  # options_for's default: supported


# ---------------------------------------------------------------- the kernel comparison


def _kernel_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-restore", "ip6tables-restore"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _load_into_kernel(rules: IptablesRules) -> str:
    """Do what kube-proxy does on a fresh node (canary chains, ensure + insert the jumps, then
    iptables-restore --noflush) in a new network namespace; iptables-save's text."""
    ipt = "ip6tables" if rules.ipv6 else "iptables"
    ns = f"netsim-kp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, *args], input=stdin, text=True,
                                  capture_output=True, check=check).stdout
        for table in ("mangle", "nat", "filter"):
            run(ipt, "-t", table, "-N", "KUBE-PROXY-CANARY")
        for hook in reversed(rules.jump_rules):  # kube-proxy's ensure order
            run(ipt, "-t", hook.table, "-N", hook.args[-1], check=False)  # EnsureChain
            run(ipt, "-t", hook.table, "-I", hook.chain, "1", *hook.args)
        run(f"{ipt}-restore", "--noflush", "--counters", stdin=rules.restore_text())
        saved = run(f"{ipt}-save")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return "".join(line + "\n" for line in saved.splitlines() if not line.startswith("#"))


KERNEL_CASES = [
    ("overall-v1.31", "test-node", "IPv4"),
    ("load-balancer", "test-hostname", "IPv4"),
    ("terminating-local-ready", "test-hostname", "IPv4"),
    ("disable-localhost-nodeports-ipv4", "test-hostname", "IPv4"),
    ("only-local-nodeports", "test-hostname", "IPv4"),
    ("enable-localhost-nodeports-ipv6", "test-hostname", "IPv6"),
]


@pytest.mark.kernel
@pytest.mark.parametrize(("fixture", "node", "fam"), KERNEL_CASES)
def test_save_text_matches_kernel(fixture, node, fam) -> None:
    reason = _kernel_ready()
    if reason:
        pytest.skip(reason)
    cluster = load([str(DATA / f"{fixture}.yaml")])
    # -m nfacct needs the counter objects in the kernel, which this test does not create
    rules = compile_iptables(cluster, options(cluster, node, fam, nfacct=False,
                                              random_fully=True))
    assert_text(_load_into_kernel(rules), rules.save_text(), f"iptables-save after {fixture}")


@pytest.mark.kernel
def test_save_text_matches_kernel_on_example() -> None:
    reason = _kernel_ready()
    if reason:
        pytest.skip(reason)
    cluster = load([str(EXAMPLES / "shop")])
    rules = compile_iptables(cluster, replace(options_for(cluster, "shop-worker"), nfacct=False))
    assert_text(_load_into_kernel(rules), rules.save_text(), "iptables-save for examples/shop")


# ---------------------------------------------------------------- nodePortAddresses

NODE_PORTS = """
apiVersion: netsim/v1alpha1
kind: NetsimConfig
spec: {{serviceCIDRs: [172.30.0.0/16]}}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: {cidr}
iptables: {{localhostNodePorts: {localhost}}}
nodePortAddresses: {addresses}
---
apiVersion: v1
kind: Node
metadata: {{name: test-node}}
status:
  addresses:
  - {{type: InternalIP, address: 192.168.0.2}}
  - {{type: InternalIP, address: 192.168.1.2}}
  - {{type: InternalIP, address: 192.168.99.11}}
  - {{type: InternalIP, address: "2001:db8::1"}}
  - {{type: InternalIP, address: "2001:db8:1::2"}}
"""
TAIL = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
        'the last rule in this chain" ')


@pytest.mark.parametrize(("fam", "localhost", "addresses", "tails", "firewall"), [
    # TestNodePorts (v1.31-v1.33): which node addresses take NodePorts, and whether
    # KUBE-FIREWALL gets the anti-martian rule (its allowAltNodeIP / expectFirewall columns)
    ("IPv4", True, [], ["-m addrtype --dst-type LOCAL"], True),
    ("IPv4", False, [], ["-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8"], False),
    ("IPv4", False, ["192.168.0.0/24", "127.0.0.1/32"], ["-d 192.168.0.2"], False),
    ("IPv4", False, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"],
     ["-d 192.168.0.2", "-d 192.168.1.2"], False),
    ("IPv6", True, [], ["-m addrtype --dst-type LOCAL ! -d ::1/128"], False),
    ("IPv6", False, [], ["-m addrtype --dst-type LOCAL ! -d ::1/128"], False),
    ("IPv6", False, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"],
     ["-d 2001:db8::1"], False),
    # TestHealthCheckNodePort: loopback listed and localhost NodePorts on
    ("IPv4", True, ["127.0.0.0/8"], ["-d 127.0.0.1"], True),
    # a list without this family's CIDRs matches every address (NewNodePortAddresses)
    ("IPv6", False, ["192.168.0.0/24"], ["-m addrtype --dst-type LOCAL ! -d ::1/128"], False),
    # not covering loopback turns localhost NodePorts off (NewProxier)
    ("IPv4", True, ["192.168.0.0/24"], ["-d 192.168.0.2"], False),
])
def test_node_port_addresses(load_text, fam, localhost, addresses, tails, firewall) -> None:
    listed = "[" + ", ".join(f'"{a}"' for a in addresses) + "]"
    cidr = '"fd00:10::/64"' if fam == "IPv6" else "10.0.0.0/8"
    cluster = load_text(NODE_PORTS.format(cidr=cidr, localhost=str(localhost).lower(),
                                          addresses=listed))
    rules = compile_iptables(cluster, options(cluster, "test-node", fam))
    lines = rules.restore_text().splitlines()
    assert [line[len(TAIL):] for line in lines if line.startswith(TAIL)] == \
        [f"{t} -j KUBE-NODEPORTS" for t in tails]
    assert any(line.startswith("-A KUBE-FIREWALL") for line in lines) == firewall
