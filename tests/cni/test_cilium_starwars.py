"""The Cilium "Star Wars" demo (Documentation/gettingstarted/demo.rst, security/gsg_sw_demo),
run on its published manifests (shared/realworld/cilium-star-wars/). What the guide shows:

1. Without policy, both the tiefighter (org=empire) and the xwing (org=alliance) can
   `curl -XPOST deathstar.default.svc.cluster.local/v1/request-landing` ("Ship landed").
2. With sw_l3_l4_policy.yaml (rule1: only org=empire may reach org=empire,class=deathstar
   on TCP 80) the tiefighter still lands; the xwing's request hangs: its packets are dropped
   as "Policy denied".
3. With sw_l3_l4_l7_policy.yaml the tiefighter may POST /v1/request-landing but
   `curl -XPUT .../v1/exhaust-port` answers "Access denied" (HTTP 403 from the proxy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cni.cilium import compile_cilium
from cni.cilium_maps import DROP_POLICY
from netsim.cluster import load

DEMO = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "cilium-star-wars"


def _demo(policy: str | None):
    if not DEMO.exists():
        pytest.skip(f"{DEMO} is not present (shared/ sits beside the checkout in CI)")
    paths = [str(DEMO / "http-sw-app.yaml")] + ([str(DEMO / policy)] if policy else [])
    cluster = load(paths, overrides={"cni": "cilium"})
    return cluster, compile_cilium(cluster)


def _landing(cluster, state, ship: str):
    """(decision, node, endpoint id, ship identity) at every deathstar backend the
    tiefighter's or xwing's connection to the deathstar Service could reach."""
    src = cluster.pod("default", ship)
    src_node = state.node(src.node_name)
    svc = cluster.service("default", "deathstar")
    master = src_node.service_lookup(svc.cluster_ip, 80, "TCP")
    assert master.count == 2  # two deathstar replicas behind the ClusterIP
    out = []
    for bid in master.backend_ids:
        backend = src_node.backend(bid)
        dst_node = state.node(state.cluster.pod(*backend.pod_key.split("/")).node_name)
        ep = dst_node.endpoint(backend.address).id
        remote = dst_node.ipcache_lookup(src.ip).identity
        egress = src_node.policy_lookup(src_node.endpoint(src.ip).id,
                                        src_node.ipcache_lookup(backend.address).identity,
                                        "egress", "TCP", backend.port)
        assert egress.allowed  # the ships' egress is never restricted in the demo
        out.append((dst_node.policy_lookup(ep, remote, "ingress", "TCP", backend.port),
                    dst_node, ep, remote))
    return out


def test_without_policy_both_ships_land():
    cluster, state = _demo(None)
    for ship in ("tiefighter", "xwing"):
        assert all(d.allowed for d, *_ in _landing(cluster, state, ship))


def test_l3_l4_policy_lets_the_empire_in_and_drops_the_alliance():
    cluster, state = _demo("sw_l3_l4_policy.yaml")
    for d, *_ in _landing(cluster, state, "tiefighter"):
        assert (d.allowed, d.proxy_port, d.match) == (True, 0, "L3-L4")
        assert d.derived_from == ("CiliumNetworkPolicy default/rule1",)
    for d, *_ in _landing(cluster, state, "xwing"):
        assert (d.allowed, d.drop_reason, d.drop_text) == (False, DROP_POLICY, "Policy denied")
        assert d.derived_from == ("CiliumNetworkPolicy default/rule1",)


def test_l7_policy_allows_landing_and_denies_the_exhaust_port():
    cluster, state = _demo("sw_l3_l4_l7_policy.yaml")
    for d, node, ep, ship in _landing(cluster, state, "tiefighter"):
        assert d.allowed and d.proxy_port != 0  # redirected to the L7 proxy
        land = node.evaluate_http(ep, ship, "ingress", "TCP", 80, "POST", "/v1/request-landing")
        assert land.allowed
        exhaust = node.evaluate_http(ep, ship, "ingress", "TCP", 80, "PUT", "/v1/exhaust-port")
        assert (exhaust.allowed, exhaust.status, exhaust.body) == (False, 403, "Access denied")
    for d, *_ in _landing(cluster, state, "xwing"):
        assert (d.allowed, d.drop_reason) == (False, DROP_POLICY)
