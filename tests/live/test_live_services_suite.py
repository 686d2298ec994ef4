"""The bundled Services conformance suite on the kernel: every case's cluster (the suite's base
cluster and the case's objects) built live under Calico without encapsulation and kube-proxy in
iptables mode; every check that is a connection probed ROUNDS times, each probe's kernel
outcome (delivered and by whom / rejected / dropped) beside the walk's (netsim.live.probe's
agreement rule). Any disagreement is a bug in the emulator or in live mode.

Not probed, with the reason stated per check (SKIPPED below): the artifact check of the
headless Service (proxy rules, not a connection), a client at an address other than the live
external client's, and the external client to a load-balancer address (the live underlay has
no cloud load balancer). Session affinity checks are probed for reachability only: the walk
forks over every endpoint for a first connection, so the stickiness and its timeout are not
compared with the walk (the kernel's stickiness is asserted as a fact of its own)."""

from __future__ import annotations

import os

import pytest

from netsim.conformance.runner import load_trace_suite
from netsim.live.services_suite import ROUNDS, CaseRun, run_suite
from tests.live.conftest import needs_kernel

pytestmark = [pytest.mark.kernel, needs_kernel]

CASES = [c.name for c in load_trace_suite("services").cases]
# check label -> why it is not probed live
SKIPPED = {
    "service app/headless": "not a connection",
    "external -> svc/app/web:80": "load-balancer address",  # case loadbalancer
    "external:203.0.113.5 -> 198.18.0.11:80": "not the live client's own",
    "external:192.0.2.100 -> 198.18.0.11:80": "load-balancer address",
    "external -> 198.18.0.12:80": "load-balancer address",
}
SKIPPED_IN = {"loadbalancer": 1, "loadbalancer-source-ranges": 2,
              "external-traffic-policy-local-loadbalancer": 1, "headless-has-no-virtual-ip": 1}


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory) -> dict[str, CaseRun]:
    """One run of the whole suite for the module (its cases are the parameters below)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NETSIM_RUN_DIR", str(tmp_path_factory.mktemp("run")))
    try:
        return {r.name: r for r in run_suite(f"sv{os.getpid() % 100000}")}
    finally:
        mp.undo()


@pytest.mark.parametrize("case", CASES)
def test_kernel_and_emulator_agree(suite_runs, case):
    run = suite_runs[case]
    probed = [ch for ch in run.checks if not ch.skipped]
    assert all(len(ch.comparisons) == ROUNDS for ch in probed), case
    bad = [f"{ch.label}: {c.probe.text()}: {c.why()}" for ch in probed
           for c in ch.disagreements]
    assert not bad, f"{case}:\n" + "\n".join(bad)
    for ch in probed:
        if ch.affinity:  # ClientIP affinity: every connection of the client to one endpoint
            assert len(ch.kernel_endpoints) == 1, (case, ch.label, ch.kernel_endpoints)
        else:  # ROUNDS connections meet every endpoint the walk forks to, and no other
            assert ch.kernel_endpoints == ch.walk_endpoints, (case, ch.label)
    skipped = [ch for ch in run.checks if ch.skipped]
    assert len(skipped) == SKIPPED_IN.get(case, 0), [ch.label for ch in skipped]
    for ch in skipped:
        assert SKIPPED[ch.label] in ch.skipped, (ch.label, ch.skipped)


def test_the_kernel_delivers_rejects_and_drops(suite_runs):
    results = {c.kernel.result for r in suite_runs.values() for c in r.comparisons}
    assert results == {"delivered", "rejected", "dropped"}


def test_topologies(suite_runs):
    """Only the case that adds pods needs a build of its own; the rest reload rules."""
    assert [r.name for r in suite_runs.values() if r.own_build] == [
        "multiport-named-targetports"]
