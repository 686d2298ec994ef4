"""cni.felix under kube-proxy's IPVS mode (felix's KubeIPVSSupportEnabled): the endpoint-mark
chains, and Services reached through IPVS obeying the backend's ingress and the client's
egress policy exactly as reach says.

Expectations come from outside the code under test:
- layout, rule order and comments: projectcalico/calico felix/rules static.go
  (filterInputChain, StaticFilterInputForwardCheckChain, filterOutputChain,
  StaticFilterOutputForwardEndpointMarkChain, StaticManglePostroutingChain), dispatch.go
  (endpointMarkDispatchChains), endpoints.go (endpointSetMarkChain), and the cali-INPUT /
  cali-OUTPUT / cali-forward-check lines of real nodes' iptables-save quoted in
  projectcalico/calico issues #2617 and #8002 (older mark bits there: 0xfff00000);
- mark values: felix's own unit tests (rules/epmark_test.go with its mock hash,
  rules/dispatch_test.go with FNV) and the published FNV-1 test vectors;
- verdicts: netsim.reach's matrix (policy semantics, no packets), which the Service walks
  must agree with under both proxy modes;
- the kernel: iptables-restore / iptables-save in a throw-away network namespace (marked).
"""

from __future__ import annotations

import difflib
import os
import subprocess
from dataclasses import replace

import pytest

from cni.felix import compile_felix, kube_proxy_ipvs
from cni.felix_epmark import endpoint_mark_chains, endpoint_marks, fnv1_32
from netsim.cluster import load_inputs
from netsim.conformance.base import NAMESPACES, NODE_OF, PODS, base_objects
from netsim.conformance.runner import load_suite
from netsim.dataplane import build
from netsim.errors import Source
from netsim.packet import TracePacket
from netsim.reach import matrix
from netsim.sources import RawDoc
from netsim.walk import walk
from proxy.kube_proxy.ipvs import compile_ipvs
from proxy.kube_proxy.options import options_for
from proxy.netfilter import parse_ruleset
from tests.cni.test_felix import _kernel_skip, veth

SUITE_FILE, SUITE = load_suite("networkpolicy")
CASES = {c.str("name"): c for c in SUITE}


def services() -> list[dict]:
    """A ClusterIP Service per pod, in the pod's namespace, selecting it alone (pods in
    different namespaces share their pod=<name> label)."""
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": f"svc-{pod}", "namespace": ns},
             "spec": {"selector": {"pod": pod},
                      "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}
            for ns in NAMESPACES for pod in PODS]


BASE = [RawDoc(o, Source("<base cluster>", i + 1))
        for i, o in enumerate(base_objects() + services())]


def case_cluster(name: str, proxy_mode: str = "ipvs", cni: str = "calico"):
    objects = [[RawDoc(o, Source(f"{SUITE_FILE} (case {name})", i + 1))]
               for i, o in enumerate(CASES[name].list("objects"))]
    return load_inputs([BASE, *objects], overrides={"cni": cni, "proxy_mode": proxy_mode})


def chain(text: str, table: str, name: str) -> list[str]:
    body = text[text.index(f"*{table}\n"):]
    body = body[:body.index("COMMIT")]
    return [line for line in body.splitlines() if line.startswith(f"-A {name} ")]


def assert_lines(ours: list[str], expected: str) -> None:
    want = expected.strip().splitlines()
    if ours != want:
        diff = "\n".join(difflib.unified_diff(want, ours, "felix", "ours", lineterm=""))
        pytest.fail(f"chain differs:\n{diff}")


def fnv1(data: bytes) -> int:
    """FNV-1 32-bit, by hand (Go's hash/fnv New32)."""
    h = 0x811C9DC5
    for b in data:
        h = (h * 0x01000193) % 2**32 ^ b
    return h


# ---------------------------------------------------------------- when felix emits them


def test_ipvs_support_follows_kube_proxy_mode():
    ipvs, iptables = case_cluster("default-deny-ingress"), case_cluster(
        "default-deny-ingress", "iptables")
    assert kube_proxy_ipvs(ipvs, "node-1") and not kube_proxy_ipvs(iptables, "node-1")
    on = compile_felix(ipvs, "node-1")
    assert on == compile_felix(ipvs, "node-1", ipvs=True)
    assert "cali-forward-check" in on.restore_text and "cali40this-host" in on.ipsets
    off = compile_felix(iptables, "node-1")
    assert off == compile_felix(ipvs, "node-1", ipvs=False)
    for word in ("forward-check", "endpoint-mark", "cali-sm-", "0xffe00000", "this-host"):
        assert word not in off.restore_text
    assert "cali40this-host" not in off.ipsets


def test_no_kube_proxy_is_not_ipvs():
    """proxy mode none (no kube-proxy, e.g. a kube-proxy replacement): options_for refuses,
    felix just sees no kube-ipvs0."""
    cluster = case_cluster("default-deny-ingress", "none")
    assert not kube_proxy_ipvs(cluster, "node-1")
    assert "cali-forward-check" not in compile_felix(cluster, "node-1").restore_text


# ---------------------------------------------------------------- the static chains


def test_static_chains_under_ipvs():
    text = compile_felix(case_cluster("default-deny-ingress"), "node-1").restore_text
    # static.go filterInputChain: after the IPIP rules, clear the endpoint mark, run the
    # forward check, return if it marked the packet; then the usual workload/host rules.
    assert_lines(chain(text, "filter", "cali-INPUT"), """
-A cali-INPUT -p ipencap -m comment --comment "Allow IPIP packets from Calico hosts" -m set --match-set cali40all-hosts-net src -m addrtype --dst-type LOCAL -j ACCEPT
-A cali-INPUT -p ipencap -m comment --comment "Drop IPIP packets from non-Calico hosts" -j DROP
-A cali-INPUT -j MARK --set-xmark 0x0/0xffe00000
-A cali-INPUT -j cali-forward-check
-A cali-INPUT -m mark ! --mark 0x0/0xffe00000 -j RETURN
-A cali-INPUT -i cali+ -g cali-wl-to-host
-A cali-INPUT -m mark --mark 0x10000/0x10000 -j ACCEPT
-A cali-INPUT -j MARK --set-xmark 0x0/0x1b0000
-A cali-INPUT -j cali-from-host-endpoint
-A cali-INPUT -m comment --comment "Host endpoint policy accepted packet." -m mark --mark 0x10000/0x10000 -j ACCEPT
""")  # noqa: E501
    # StaticFilterInputForwardCheckChain (KubeNodePortRanges default 30000:32767)
    assert_lines(chain(text, "filter", "cali-forward-check"), """
-A cali-forward-check -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
-A cali-forward-check -p tcp -m comment --comment "To kubernetes NodePort service" -m multiport --dports 30000:32767 -m set --match-set cali40this-host dst -g cali-set-endpoint-mark
-A cali-forward-check -p udp -m comment --comment "To kubernetes NodePort service" -m multiport --dports 30000:32767 -m set --match-set cali40this-host dst -g cali-set-endpoint-mark
-A cali-forward-check -m comment --comment "To kubernetes service" -m set ! --match-set cali40this-host dst -j cali-set-endpoint-mark
""")  # noqa: E501
    # filterOutputChain: the goto to the endpoint-mark chain before the `-o cali+` RETURN
    # (no `-m ipvs --ipvs` rule: felix dropped it when the goto took over, PR #1724)
    assert_lines(chain(text, "filter", "cali-OUTPUT"), """
-A cali-OUTPUT -m mark --mark 0x10000/0x10000 -j ACCEPT
-A cali-OUTPUT -m mark ! --mark 0x0/0xffe00000 -g cali-forward-endpoint-mark
-A cali-OUTPUT -o cali+ -j RETURN
-A cali-OUTPUT -p ipencap -m comment --comment "Allow IPIP packets to other Calico hosts" -m set --match-set cali40all-hosts-net dst -m addrtype --src-type LOCAL -j ACCEPT
-A cali-OUTPUT -j MARK --set-xmark 0x0/0x1b0000
-A cali-OUTPUT -m conntrack ! --ctstate DNAT -j cali-to-host-endpoint
-A cali-OUTPUT -m comment --comment "Host endpoint policy accepted packet." -m mark --mark 0x10000/0x10000 -j ACCEPT
""")  # noqa: E501
    # StaticFilterOutputForwardEndpointMarkChain
    assert_lines(chain(text, "filter", "cali-forward-endpoint-mark"), """
-A cali-forward-endpoint-mark -m mark ! --mark 0x200000/0xffe00000 -j cali-from-endpoint-mark
-A cali-forward-endpoint-mark -o cali+ -j cali-to-wl-dispatch
-A cali-forward-endpoint-mark -j cali-to-hep-forward
-A cali-forward-endpoint-mark -j MARK --set-xmark 0x0/0xffe00000
-A cali-forward-endpoint-mark -m comment --comment "Policy explicitly accepted packet." -m mark --mark 0x10000/0x10000 -j ACCEPT
""")  # noqa: E501
    # StaticManglePostroutingChain: IPVS-forwarded packets skip host endpoint policy
    assert_lines(chain(text, "mangle", "cali-POSTROUTING"), """
-A cali-POSTROUTING -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-POSTROUTING -m mark ! --mark 0x0/0xffe00000 -j RETURN
-A cali-POSTROUTING -j MARK --set-xmark 0x0/0x1b0000
-A cali-POSTROUTING -m conntrack --ctstate DNAT -j cali-to-host-endpoint
-A cali-POSTROUTING -m comment --comment "Host endpoint policy accepted packet." -m mark --mark 0x10000/0x10000 -j RETURN
""")  # noqa: E501
    # FORWARD is unchanged: IPVS traffic never takes it on the client's node
    assert chain(text, "filter", "cali-FORWARD") == chain(
        compile_felix(case_cluster("default-deny-ingress", "iptables"), "node-1").restore_text,
        "filter", "cali-FORWARD")


def test_this_host_set_holds_the_node_addresses():
    """hostip_mgr: every non-workload interface's address (eth0, tunl0, lo; kube-ipvs0 is
    excluded by felix's default InterfaceExclude, so Service addresses are not in it)."""
    cluster = case_cluster("default-deny-ingress")
    felix = compile_felix(cluster, "node-2")
    found = felix.ipsets["cali40this-host"]
    tunnel = cluster.addressing.tunnel_ips["node-2"]
    tunnel = (tunnel,) if isinstance(tunnel, str) else tunnel
    assert found.type == "hash:ip"
    assert set(found.members) == {"172.18.0.3", "127.0.0.1", *tunnel}
    assert not {ip for s in cluster.services for ip in s.cluster_ips} & set(found.members)


# ---------------------------------------------------------------- endpoint marks


def test_fnv1_matches_the_published_vectors():
    for data, want in ((b"", 0x811C9DC5), (b"a", 0x050C5D7E), (b"foobar", 0x31F0B262)):
        assert fnv1_32(data) == want == fnv1(data)


@pytest.mark.parametrize(("names", "want"), [
    # rules/dispatch_test.go (mask 0xff00, non-Calico mark 0x100, FNV)
    (["cali1234"], [0xD400]),
    (["cali1234", "cali2333", "cali2444"], [0xD400, 0xA700, 0x5200]),
    (["cali11", "cali12", "cali13", "cali21", "cali22"], [0x200, 0x300, 0x400, 0xF700, 0xF400]),
])
def test_endpoint_marks_as_felix_dispatch_tests(names, want):
    assert list(endpoint_marks(names, 0xFF00, 0x100).values()) == want


def test_endpoint_marks_as_felix_epmark_tests():
    """rules/epmark_test.go: mask 0x700, non-Calico 0x100, a hash that is the last byte."""
    def last_byte(data: bytes) -> int:
        return data[-1]
    got = endpoint_marks(["cali1", "cali6", "cali3", "cali11", "cali22", "cali33"], 0x700,
                         0x100, last_byte)
    assert list(got.values()) == [0x200, 0x600, 0x300, 0x400, 0x500, 0x700]
    assert endpoint_marks(["cali1", "cali2", "cali3", "cali1", "cali7"], 0x700, 0x100,
                          last_byte) == {"cali1": 0x200, "cali2": 0x300, "cali3": 0x400,
                                         "cali7": 0x700}
    with pytest.raises(ValueError):  # "No mark left for endpoint"
        endpoint_marks(["cali1", "cali6", "cali3", "cali11", "cali22", "cali33", "cali8"],
                       0x700, 0x100, last_byte)


def test_endpoint_mark_dispatch_chains_as_felix():
    """dispatch.go endpointMarkDispatchChains for the "interfaces sharing prefix" case: the
    set-mark tree's child chain has no end rule; unknown cali+ interfaces are dropped and the
    rest get the non-Calico mark; the from-mark chain goes to each cali-fw- chain."""
    names = ["cali1234", "cali2333", "cali2444"]
    marks = {n: (fnv1(n.encode()) % 2048) << 21 for n in names}  # no collisions here
    chains = {name: [r.render(name) for r in rules]
              for name, rules in endpoint_mark_chains(endpoint_marks(names)).items()}
    assert chains["cali-set-endpoint-mark"] == [
        "-A cali-set-endpoint-mark -i cali1234 -g cali-sm-cali1234",
        "-A cali-set-endpoint-mark -i cali2+ -g cali-set-endpoint-mark-2",
        '-A cali-set-endpoint-mark -i cali+ -m comment --comment "Unknown endpoint" -j DROP',
        '-A cali-set-endpoint-mark -m comment --comment "Non-Cali endpoint mark" '
        "-j MARK --set-xmark 0x200000/0xffe00000"]
    assert chains["cali-set-endpoint-mark-2"] == [
        "-A cali-set-endpoint-mark-2 -i cali2333 -g cali-sm-cali2333",
        "-A cali-set-endpoint-mark-2 -i cali2444 -g cali-sm-cali2444"]
    for n in names:
        assert chains[f"cali-sm-{n}"] == [
            f"-A cali-sm-{n} -j MARK --set-xmark {marks[n]:#x}/0xffe00000"]
    assert chains["cali-from-endpoint-mark"] == [
        *(f"-A cali-from-endpoint-mark -m mark --mark {marks[n]:#x}/0xffe00000 -g cali-fw-{n}"
          for n in names),
        '-A cali-from-endpoint-mark -m comment --comment "Unknown interface" -j DROP']


def test_each_workload_mark_leads_back_to_its_egress_chain():
    """On a node: the cali-sm- chain of each local workload sets a distinct mark, and
    cali-from-endpoint-mark sends that mark to the same workload's cali-fw- chain."""
    cluster = case_cluster("default-deny-egress")
    text = compile_felix(cluster, "node-1").restore_text
    local = [veth(ns, pod) for ns in NAMESPACES if NODE_OF[ns] == "node-1" for pod in PODS]
    # and the CoreDNS addon's pods scheduled there
    local += [veth(p.namespace, p.name) for p in cluster.pods
              if p.namespace not in NAMESPACES and p.node_name == "node-1"]
    set_marks = {}
    for iface in local:
        (rule,) = chain(text, "filter", f"cali-sm-{iface}")
        set_marks[iface] = rule.split("--set-xmark ")[1].split("/")[0]
    assert len(set(set_marks.values())) == len(local)
    from_mark = chain(text, "filter", "cali-from-endpoint-mark")
    assert from_mark[:-1] == [  # in interface-name order
        f"-A cali-from-endpoint-mark -m mark --mark {set_marks[i]}/0xffe00000 -g cali-fw-{i}"
        for i in sorted(local)]
    assert "cali-sm-" not in "".join(chain(text, "filter", "cali-set-endpoint-mark")[-2:])


def test_rules_parse_beside_kube_proxy_ipvs_rules():
    cluster = case_cluster("ingress-and-egress-together")
    felix = compile_felix(cluster, "node-1")
    kube_proxy = compile_ipvs(cluster, options_for(cluster, "node-1")).save_text()
    ruleset = parse_ruleset(kube_proxy + felix.restore_text, "node-1", strict=True)
    assert "cali-forward-endpoint-mark" in ruleset.tables["filter"].chains


# ---------------------------------------------------------------- Services through IPVS

# Every case of the suite, in both modes (~45 s): ingress and egress isolation, same-node
# pairs (x and y share node-1), ipBlocks (egress evaluated on the backend address, not the
# ClusterIP), named ports, port ranges, protocols.


# Every case under IPVS (what felix's endpoint marks are for); every third under iptables,
# whose pod-to-pod path the trace consistency test already covers case by case.
SERVICE_WALKS = [(name, "ipvs") for name in CASES] + [
    (name, "iptables") for name in list(CASES)[::3]]


@pytest.mark.parametrize(("name", "proxy_mode"), SERVICE_WALKS)
def test_service_walk_agrees_with_reach(name, proxy_mode):
    cluster = case_cluster(name, proxy_mode)
    dp = build(cluster)
    assert dp.proxy_mode == proxy_mode
    m = matrix(cluster, 80, "TCP")
    dense = m.dense()
    pods = {p.key: p for p in cluster.pods}
    vip = {(s.namespace, s.name): s.cluster_ips[0] for s in cluster.services}
    suite = {p.key for p in cluster.pods if p.namespace in NAMESPACES}  # not CoreDNS
    disagreements = []
    for i, a in enumerate(m.keys):
        for j, b in enumerate(m.keys):
            if a == b or a not in suite or b not in suite:
                continue
            dst = pods[b]
            t = walk(dp, TracePacket(pods[a].ip, vip[dst.namespace, f"svc-{dst.name}"], "tcp",
                                     40000, 80, "S"), f"pod:{a}")
            delivered = t.result == "delivered"
            if delivered != bool(dense[i, j]) or (delivered and t.delivered_to != b):
                disagreements.append(f"{a} -> svc of {b}: reach "
                                     f"{'allows' if dense[i, j] else 'denies'}, trace "
                                     f"{t.result} to {t.delivered_to} ({t.reason}: {t.detail})")
    assert not disagreements, "\n".join(disagreements[:10])


def test_same_node_ingress_is_decided_after_ipvs_in_output():
    """x/b -> Service of x/a (both on node-1) under default-deny-ingress: IPVS picks x/a
    in INPUT and the drop is x/a's ingress chain, run from OUTPUT."""
    cluster = case_cluster("default-deny-ingress")
    dp = build(cluster)
    vip = next(s.cluster_ips[0] for s in cluster.services
               if (s.namespace, s.name) == ("x", "svc-a"))
    t = walk(dp, TracePacket(cluster.pod("x", "b").ip, vip, "tcp", 40000, 80, "S"), "pod:x/b")
    assert (t.result, t.reason) == ("dropped", "policy-denied")
    assert f"cali-tw-{veth('x', 'a')}" in t.detail
    components = [h.component for h in t.hops]
    assert components[-3:] == ["ipvs", "routing", "netfilter"]
    assert t.hops[-1].action.startswith("OUTPUT: DROP")


# ---------------------------------------------------------------- the kernel


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_skip() is not None, reason=_kernel_skip() or "")
def test_kernel_accepts_felix_ipvs_rules_and_prints_them_as_we_do():
    from tests.proxy.test_netfilter_parse import assert_same_tables

    cluster = case_cluster("egress-named-port")
    felix = compile_felix(cluster, "node-1")
    ipvs = compile_ipvs(cluster, replace(options_for(cluster, "node-1"), nfacct=False))
    if any(r.chain == "KUBE-IPVS-OUT-FILTER" for r in ipvs.rules):
        pytest.skip("the ipvs match needs the xt_ipvs module")
    kube_proxy = ipvs.save_text()
    kube_sets = []
    for s in ipvs.ipsets:  # as tests/proxy/test_kube_proxy_ipvs.py creates them
        header = "range 0-65535" if s.type == "bitmap:port" else \
            f"family {s.family} hashsize 1024 maxelem 65536"
        kube_sets.append(f"create {s.name} {s.type} {header}")
        kube_sets += [f"add {s.name} {m}" for m in s.members]
    ns = f"netsim-felix-ipvs-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        def run(*argv: str, stdin: str | None = None) -> str:
            done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin,
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{argv}: {done.stderr}"
            return done.stdout

        run("ipset", "restore", stdin="\n".join(kube_sets) + "\n")
        run("ipset", "restore", stdin=felix.ipset_text())
        run("iptables-restore", stdin=kube_proxy)
        run("iptables-restore", "--noflush", stdin=felix.restore_text)
        saved = run("iptables-save")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    ours = parse_ruleset(kube_proxy + felix.restore_text, "felix", strict=True)
    assert_same_tables(ours.dump(), saved)
