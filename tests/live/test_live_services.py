"""Services on the kernel, through the `netsim live` commands: ClusterIP reachability to every
endpoint (named and numbered targetPorts, TCP and UDP, hairpin included), a Service without
endpoints rejecting, NodePorts with externalTrafficPolicy Cluster and Local from outside the
cluster, and a NetworkPolicy behind a Service. Kernel and emulator must agree on every probe;
the facts asserted besides come from the kernel's answers."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from netsim.cli import main
from netsim.cluster import load
from netsim.dataplane import build
from netsim.live import probe
from netsim.live.state import load_state
from tests.live.conftest import needs_kernel, prefixed

pytestmark = [pytest.mark.kernel, needs_kernel]

CLUSTER = Path(__file__).resolve().parent / "data" / "services.yaml"
ROUNDS = 6  # connections per (source, Service port): enough to meet both web endpoints


def test_services_live(prefix, capsys):
    assert main(["live", "up", "-q", "-f", str(CLUSTER), "--prefix", prefix]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"live cluster {prefix!r} is up")
    assert main(["live", "up", "-q", "-f", str(CLUSTER), "--prefix", prefix]) == 2
    assert "already up" in capsys.readouterr().err
    try:
        assert main(["live", "probe", "--prefix", prefix, "-o", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["summary"]["disagree"] == 0, [p for p in report["probes"]
                                                     if not p["agree"]]
        by_target = defaultdict(list)
        for p in report["probes"]:
            by_target[p["to"], p["protocol"], p["port"]].append(p)

        # the fixture holds no cluster DNS: netsim adds kubeadm's (two CoreDNS pods), and
        # every pod's query reaches one through kube-proxy's DNAT in the kernel
        coredns = {p.key for p in load([str(CLUSTER)]).pods_in("kube-system")}
        assert len(coredns) == 2
        dns = by_target["svc/kube-system/kube-dns", "UDP", 53]
        assert len(dns) == 7 and all(p["kernel"]["result"] == "delivered" for p in dns)
        assert {p["kernel"]["answeredBy"] for p in dns} <= coredns
        # a Service without endpoints: kube-proxy's REJECT, from every pod
        empty = by_target["svc/app/empty", "TCP", 80]
        assert len(empty) == 7 and {p["kernel"]["result"] for p in empty} == {"rejected"}
        # the database admits the web pods only, through its Service as directly
        db = {p["from"]: p["kernel"]["result"] for p in by_target["svc/app/db", "TCP", 5432]}
        assert db == {"app/web-1": "delivered", "app/web-2": "delivered", "app/db": "dropped",
                      "client/c1": "dropped", "client/c2": "dropped",
                      **{pod: "dropped" for pod in coredns}}
        # NodePort, externalTrafficPolicy Cluster: both nodes forward to a web pod
        for node in ("node-1", "node-2"):
            [np] = by_target[f"svc/app/web-np via node/{node}", "TCP", 30080]
            assert np["kernel"]["result"] == "delivered"
            assert np["kernel"]["answeredBy"] in ("app/web-1", "app/web-2")
        # externalTrafficPolicy Local: node-1 has no db endpoint and drops; node-2 keeps the
        # client's address, which the db policy does not admit
        local = {p["to"]: p["kernel"]["result"] for p in report["probes"]
                 if p["port"] == 30432}
        assert local == {"svc/app/db-local via node/node-1": "dropped",
                         "svc/app/db-local via node/node-2": "dropped"}
        assert {p["netsim"]["reason"] for p in report["probes"] if p["port"] == 30432} == {
            "no-local-endpoints", "policy-denied"}

        # every endpoint of a Service answers on its ClusterIP, hairpin included
        state = load_state(prefix)
        dp = build(load([str(CLUSTER)]))
        probes = [p for p in probe.service_probes(dp) if p.kind == "service"] * ROUNDS
        comparisons = probe.compare(dp, probes, state.namespaces)
        assert [c.why() for c in comparisons if not c.agree] == []
        answered = defaultdict(set)
        for c in comparisons:
            if c.kernel.answered_by:
                answered[c.probe.target, c.probe.service].add(c.kernel.answered_by)
        web = {"app/web-1", "app/web-2"}
        assert answered["svc/app/web", "TCP/80"] == web  # targetPort http (named)
        assert answered["svc/app/web", "UDP/53"] == web  # targetPort 5353
        hairpin = {c.kernel.answered_by for c in comparisons
                   if c.probe.source_label == "app/web-1" and c.probe.target == "svc/app/web"}
        assert "app/web-1" in hairpin
    finally:
        assert main(["live", "down", "--prefix", prefix]) == 0
    assert "is down" in capsys.readouterr().out
    assert prefixed(prefix) == []
