"""The whole NetworkPolicy conformance suite on the kernel: for every case, every pod pair on
the case's ports and protocols (SCTP where the kernel has it), the kernel's outcome beside the
walk's. Calico routing without encapsulation and kube-proxy in iptables mode; a sample of the
cases again over VXLAN. Any disagreement is a bug in the emulator or in live mode."""

from __future__ import annotations

import os

import pytest

from netsim.conformance.runner import load_suite
from netsim.live.suite import CaseRun, run_suite
from tests.live.conftest import needs_kernel

pytestmark = [pytest.mark.kernel, needs_kernel]

CASES = [c.str("name") for c in load_suite("networkpolicy")[1]]
# Cross-node paths, egress, ipBlock, named ports, UDP: the VXLAN sample.
VXLAN_SAMPLE = ("default-deny-all", "ingress-from-namespace-by-namespaceselector",
                "egress-to-pod-in-other-namespace", "egress-ipblock-except",
                "ingress-ipblock-except", "named-port-udp", "udp-ingress-from-pod-in-other-"
                "namespace", "egress-default-deny-allow-one-namespace",
                "namespace-relabel-removes-access", "multiple-egress-policies-allow-all-wins")


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory) -> dict[str, CaseRun]:
    """One run of the whole suite for the module (its cases are the parameters below)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NETSIM_RUN_DIR", str(tmp_path_factory.mktemp("run")))
    try:
        return {r.name: r for r in run_suite(f"np{os.getpid() % 100000}")}
    finally:
        mp.undo()


def _report(run: CaseRun) -> str:
    return "\n".join(f"{c.probe.text()}: {c.why()}" for c in run.disagreements)


@pytest.mark.parametrize("case", CASES)
def test_kernel_and_emulator_agree(suite_runs, case):
    run = suite_runs[case]
    assert run.comparisons or run.skipped, f"{case}: nothing was probed"
    assert not run.disagreements, f"{case}:\n{_report(run)}"


def test_every_pair_was_probed(suite_runs):
    for run in suite_runs.values():
        protocols = [p for p in run.probes if p not in run.skipped]
        # 9 pods, 8 peers each; the 2 CoreDNS pods of netsim's DNS addon probe the 9 too
        # (they serve only port 53 and 9153, which no case probes)
        assert len(run.comparisons) == (72 + 18) * len(protocols), run.name


def test_the_kernel_both_delivers_and_drops(suite_runs):
    results = {c.kernel.result for r in suite_runs.values() for c in r.comparisons}
    assert results == {"delivered", "dropped"}  # felix drops; nothing in the suite rejects


def test_vxlan_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSIM_RUN_DIR", str(tmp_path))
    runs = run_suite(f"vx{os.getpid() % 100000}", encapsulation="VXLAN", only=VXLAN_SAMPLE,
                     copies=2)
    assert [r.name for r in runs] == [c for c in CASES if c in VXLAN_SAMPLE]
    for run in runs:
        assert not run.disagreements, f"{run.name} (VXLAN):\n{_report(run)}"
