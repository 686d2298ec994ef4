"""The trace and `netsim reach` agree: for every case of the bundled NetworkPolicy suite, every
pod pair and every probe, a packet walked through the emulated dataplane (felix's chains under
Calico, the BPF policy maps under Cilium) is delivered exactly when reach says allowed.

One documented exception: Cilium does not apply CIDR rules (a NetworkPolicy ipBlock) to
traffic between endpoints it manages (docs.cilium.io, "CIDR based": CIDR rules do not apply
where both sides are managed by Cilium). For cases with an ipBlock under Cilium the test
asserts exactly that difference: every disagreement is a pod pair reach allows through an
ipBlock and the trace drops as "Policy denied".

A second: Cilium resolves an egress rule's named port over every pod in the cluster, not on
the destination (cni/cilium_policy.py, pkg/policy l4.go), so a destination that does not
declare the name (the cluster's CoreDNS pods here) is reached on the number where the spec
denies."""

from __future__ import annotations

import pytest

from netsim.cluster import load_inputs
from netsim.conformance.base import base_objects
from netsim.conformance.runner import load_suite
from netsim.dataplane import build
from netsim.errors import Source
from netsim.packet import TracePacket
from netsim.reach import matrix
from netsim.sources import RawDoc
from netsim.walk import walk

FILENAME, CASES = load_suite("networkpolicy")
BASE = [RawDoc(o, Source("<base cluster>", i + 1)) for i, o in enumerate(base_objects())]


def _cluster(case, cni: str):
    objects = [[RawDoc(o, Source(FILENAME, i + 1))] for i, o in enumerate(case.list("objects"))]
    return load_inputs([BASE, *objects], overrides={"cni": cni})


@pytest.mark.parametrize("cni", ["calico", "cilium"])
@pytest.mark.parametrize("case", CASES, ids=[c.str("name") for c in CASES])
def test_trace_agrees_with_reach(case, cni):
    cluster = _cluster(case, cni)
    dp = build(cluster)
    disagreements = []
    for probe in case.items("probes"):
        port = probe.int("port")
        protocol = probe.str("protocol", default="TCP")
        m = matrix(cluster, port, protocol)
        dense = m.dense()
        pods = {p.key: p for p in cluster.pods}
        for i, a in enumerate(m.keys):
            for j, b in enumerate(m.keys):
                if a == b:
                    continue
                src, dst = pods[a], pods[b]
                t = walk(dp, TracePacket(src.ip, dst.ip, protocol.lower(), 40000, port,
                                         "S" if protocol == "TCP" else ""),
                         f"pod:{a}")
                delivered = t.result == "delivered"
                if delivered != bool(dense[i, j]):
                    disagreements.append(f"{protocol}/{port} {a} -> {b}: reach "
                                         f"{'allows' if dense[i, j] else 'denies'}, trace "
                                         f"{t.result} ({t.reason}: {t.detail})")
    names = _egress_port_names(case)
    if cni == "cilium" and names:
        cluster_wide = [d for d in disagreements if "reach denies, trace delivered" in d
                        and not any(p.name in names for p in pods[_dst(d)].container_ports)]
        assert cluster_wide, "the CoreDNS pods lack the suite's named ports"
        disagreements = [d for d in disagreements if d not in cluster_wide]
    if cni == "cilium" and "ipBlock" in repr(case.list("objects")):
        assert all("reach allows, trace dropped (policy-denied: Policy denied (133)" in d
                   for d in disagreements), "\n".join(disagreements[:10])
        return
    assert not disagreements, "\n".join(disagreements[:10])


def _egress_port_names(case) -> set[str]:
    """The named ports the case's NetworkPolicies allow egress to."""
    return {port["port"] for o in case.list("objects")
            for rule in (o.get("spec") or {}).get("egress") or ()
            for port in rule.get("ports") or () if isinstance(port.get("port"), str)}


def _dst(disagreement: str) -> str:
    return disagreement.split(" -> ", 1)[1].split(":", 1)[0]
