"""Live mode without the kernel: what `up` would build (the plan), the state file, the
comparison rule, and the CLI's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsim.cli import main
from netsim.cluster import load, load_inputs
from netsim.conformance.runner import load_suite
from netsim.dataplane import build
from netsim.live import plan as live_plan
from netsim.live import probe, state
from netsim.live.probe import Comparison, Outcome, Prediction, Probe
from netsim.live.state import LiveError
from netsim.live.suite import base_docs, case_cluster
from netsim.topology import calico_veth_name

DATA = Path(__file__).resolve().parent / "data"
NONE = {"calico_encapsulation": "None"}


def suite_plan(**overrides):
    return live_plan.plan(build(load_inputs([base_docs()], overrides={**NONE, **overrides})))


def test_plan_holds_a_namespace_per_node_and_pod_plus_underlay_and_external():
    p = suite_plan()
    ids = [n.id for n in p.namespaces]
    assert ids[:4] == ["underlay", "external", "host:node-1", "host:node-2"]
    assert sorted(ids[4:]) == sorted([f"pod:{ns}/{pod}" for ns in "xyz" for pod in "abc"]
                                     + [f"pod:{key}" for key in _coredns()])


def test_pod_veths_carry_calicos_names_and_macs():
    # cni.md 1.2: host side cali + 11 hex of SHA-1("ns.pod"), MAC ee:ee:ee:ee:ee:ee; pod side
    # eth0 with the pod's own MAC, created from the node's namespace
    p = suite_plan()
    pods = [(a, b) for a, b in p.veths if b.netns.startswith("pod:")]
    assert len(pods) == 9 + 2  # and the CoreDNS addon's two
    for host, pod in pods:
        ns, _, name = pod.netns[4:].partition("/")
        if ns == "kube-system":
            assert host.netns == f"host:{_coredns()[f'{ns}/{name}']}"
        else:
            assert host.netns == ("host:node-2" if ns == "z" else "host:node-1")
        assert (host.name, host.mac) == (calico_veth_name(ns, name), "ee:ee:ee:ee:ee:ee")
        assert pod.name == "eth0" and pod.mac and pod.mac != host.mac


def test_underlay_bridges_the_nodes_behind_their_gateway():
    p = suite_plan()
    underlay = p.namespace("underlay")
    bridge = next(i for i in underlay.state.interfaces if i.name == "br0")
    # the nodes are 172.18.0.2 and .3 in 172.18.0.0/16; netsim takes the subnet's first
    # address as their default gateway (cni/calico.py)
    assert bridge.addresses == ("172.18.0.1/16",)
    assert [port for port, _ in underlay.bridge_ports] == ["n0-node-1", "n1-node-2"]
    links = [(a.name, b.netns, b.name) for a, b in p.veths if a.netns == "underlay"]
    assert links == [("n0-node-1", "host:node-1", "eth0"), ("n1-node-2", "host:node-2", "eth0"),
                     ("ext0", "external", "eth0")]
    assert ("net/ipv4/conf/ext0/proxy_arp", "1") in underlay.sysctls


def test_host_sysctls_are_calicos_on_every_workload_veth():
    host = suite_plan().namespace("host:node-1")
    veth = calico_veth_name("x", "a")
    for key, value in (("conf/{}/proxy_arp", "1"), ("neigh/{}/proxy_delay", "0"),
                       ("conf/{}/forwarding", "1"), ("conf/{}/route_localnet", "1"),
                       ("conf/{}/rp_filter", "1")):
        assert (f"net/ipv4/{key.format(veth)}", value) in host.sysctls
    assert ("net/ipv4/ip_forward", "1") in host.sysctls


def test_host_rules_are_the_stations_text_and_sets():
    dp = build(load_inputs([base_docs()], overrides=NONE))
    host = live_plan.plan(dp).namespace("host:node-1")
    station = dp.host_station("node-1")
    assert host.rules == ((4, station.sources[4]),)
    assert {s.name for s in host.ipsets} == set(station.contexts[4].ipsets)
    assert host.nfacct == ("ct_state_invalid_dropped_pkts",)


def test_pods_serve_their_container_ports():
    pod = suite_plan().namespace("pod:x/a")
    assert {(s.protocol, s.port) for s in pod.listeners} == {
        (proto, port) for proto in ("tcp", "udp", "sctp") for port in (80, 81)}
    assert {s.label for s in pod.listeners} == {"x/a"}


def test_vxlan_plan_has_the_device_neighbour_and_fdb_entries():
    host = suite_plan(calico_encapsulation="VXLAN").namespace("host:node-1").state
    vxlan = host.interface("vxlan.calico")
    assert (vxlan.kind, vxlan.vni, vxlan.port, vxlan.local) == ("vxlan", 4096, 4789,
                                                                "172.18.0.2")
    assert [f.dst for f in host.fdb] == ["172.18.0.3"]
    assert any(n.dev == "vxlan.calico" and n.state == "PERMANENT" for n in host.neighbours)


def test_relabelling_cases_keep_the_base_topology():
    """The live suite reuses one build for every case: the cases that change pods or
    namespaces must not change devices, addresses or routes."""
    base = suite_plan().fingerprint()
    _, cases = load_suite("networkpolicy")
    relabelling = [c for c in cases if any(o.get("kind") in ("Pod", "Namespace")
                                           for o in c.list("objects"))]
    assert len(relabelling) >= 5
    for case in relabelling:
        assert live_plan.plan(build(case_cluster(case, NONE))).fingerprint() == base, \
            case.str("name")


@pytest.mark.parametrize(("override", "words"), [
    ({"mesh": True}, "--no-mesh"),
    ({"cni": "cilium"}, "Calico"),
    ({"proxy_mode": "ipvs"}, "IPVS"),
])
def test_what_live_mode_does_not_realise_is_refused(override, words):
    cluster = load_inputs([base_docs()], overrides={**NONE, **override})
    with pytest.raises(LiveError, match=words):
        live_plan.plan(build(cluster))


# ---------------------------------------------------------------- state


def test_netns_names_are_prefixed_short_and_stable():
    name = state.netns_name("netsim", "pod:x/a")
    assert name.startswith("ns-netsim-") and len(name) == len("ns-netsim-") + 8
    assert name == state.netns_name("netsim", "pod:x/a") != state.netns_name("other", "pod:x/a")


@pytest.mark.parametrize("bad", ["", "UPPER", "with space", "x" * 17, "-lead"])
def test_bad_prefixes_are_refused(bad):
    with pytest.raises(LiveError, match="--prefix"):
        state.check_prefix(bad)


def test_a_second_claim_is_refused(run_dir):
    state.claim("p1")
    with pytest.raises(LiveError, match="already up"):
        state.claim("p1")
    state.forget("p1")
    assert not run_dir.exists()  # the directory goes with the last state file


def test_inputs_survive_the_state_file(run_dir):
    from netsim.sources import read_inputs

    layers = read_inputs([str(DATA / "services.yaml")])
    s = state.claim("p2")
    s.inputs = state.stored_inputs(layers)
    s.overrides = {"pod_cidrs": ("10.244.0.0/16",), "proxy_mode": "iptables"}
    s.save()
    loaded = state.load_state("p2")
    again = load_inputs(state.restored_inputs(loaded.inputs),
                        overrides=state.restored_overrides(loaded.overrides))
    original = load([str(DATA / "services.yaml")])
    assert [(p.key, p.ips) for p in again.pods] == [(p.key, p.ips) for p in original.pods]
    assert [s.cluster_ips for s in again.services] == [s.cluster_ips for s in original.services]
    assert state.restored_overrides(loaded.overrides)["pod_cidrs"] == ("10.244.0.0/16",)
    state.forget("p2")


# ---------------------------------------------------------------- the comparison rule

PROBE = Probe("service", "pod:x/a", "x/a", "10.244.1.11", "10.96.0.10", 80, "TCP", "svc/x/s")


@pytest.mark.parametrize(("kernel", "paths", "to", "agree"), [
    (Outcome("delivered", "x/b"), ("delivered",), ("x/b",), True),
    (Outcome("delivered", "x/c"), ("delivered",), ("x/b",), False),  # another server answered
    (Outcome("delivered", "x/c"), ("delivered", "delivered"), ("x/b", "x/c"), True),
    (Outcome("dropped"), ("delivered", "dropped"), ("x/b",), True),  # one of two branches
    (Outcome("delivered", "x/b"), ("delivered", "dropped"), ("x/b",), True),
    (Outcome("dropped"), ("delivered",), ("x/b",), False),
    (Outcome("rejected"), ("dropped",), (), False),  # a different way of not arriving
    (Outcome("rejected"), ("rejected",), (), True),
])
def test_a_probe_agrees_when_the_kernel_took_a_predicted_path(kernel, paths, to, agree):
    comparison = Comparison(PROBE, kernel, Prediction(paths, to, "r", "d"))
    assert comparison.agree is agree


def test_pod_probes_cover_every_pair_on_every_declared_port():
    dp = build(load_inputs([base_docs()], overrides=NONE))
    probes = probe.pod_probes(dp, [80], ["TCP", "UDP"])
    # CoreDNS serves no port 80: it sends probes but is not a target
    assert len(probes) == (9 * 8 + 2 * 9) * 2
    assert {(p.source_label, p.target) for p in probes if p.protocol == "UDP"} == {
        (a, b) for a in [*_pods(), *_coredns()] for b in _pods() if a != b}


def _pods() -> list[str]:
    return [f"{ns}/{pod}" for ns in "xyz" for pod in "abc"]


def _coredns() -> dict[str, str]:
    """The CoreDNS addon's pods (the suite's base holds no cluster DNS) and their nodes."""
    cluster = load_inputs([base_docs()], overrides=NONE)
    return {p.key: p.node_name for p in cluster.pods_in("kube-system")}


def test_service_probes_reach_cluster_ips_and_node_ports():
    dp = build(load([str(DATA / "services.yaml")]))
    probes = probe.service_probes(dp)
    nodeports = {(p.target, p.dst_ip, p.port) for p in probes if p.kind == "nodeport"}
    assert nodeports == {
        (f"svc/app/{svc} via node/{node}", ip, port)
        for svc, port in (("web-np", 30080), ("db-local", 30432))
        for node, ip in (("node-1", "172.18.0.2"), ("node-2", "172.18.0.3"))}
    assert {p.source_label for p in probes if p.kind == "service"} == {
        "app/web-1", "app/web-2", "app/db", "client/c1", "client/c2",
        *(p.key for p in dp.cluster.pods_in("kube-system"))}


# ---------------------------------------------------------------- the CLI without root


@pytest.mark.parametrize("argv", [
    ["live", "up", "-f", str(DATA / "services.yaml")],
    ["live", "probe"],
    ["live", "down"],
])
def test_without_root_live_mode_says_so_in_one_line(argv, monkeypatch, capsys, run_dir):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: live mode needs root") and err.count("\n") == 1
    assert not run_dir.exists()


def test_probe_without_a_live_cluster_says_so(monkeypatch, capsys, run_dir):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert main(["live", "probe", "--prefix", "nothing"]) == 2
    assert "no live cluster with prefix 'nothing'" in capsys.readouterr().err


def test_state_file_is_json(run_dir):
    state.claim("p3").save()
    assert json.loads((run_dir / "p3.json").read_text())["prefix"] == "p3"
    state.forget("p3")
