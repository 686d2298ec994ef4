"""The bundled Services conformance suite on the kernel: every case's cluster (the suite's base
cluster and the case's objects) built live under Calico without encapsulation and kube-proxy in
iptables mode, every check that is a connection probed for real, repeated so that each
endpoint answers, each probe compared with the walk (netsim.live.probe's agreement rule).

Cases that only add Services share a build of the base cluster (their rules are reloaded and
tracked connections forgotten); a case whose topology differs (new pods) gets a build of its
own. Checks that are not connections a live probe can make are listed with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from netsim.cluster import load_inputs
from netsim.conformance.runner import load_trace_suite
from netsim.conformance.trace_suite import Case, TraceSuite, _targets
from netsim.dataplane import EXTERNAL_NETNS, Dataplane, build
from netsim.errors import Source
from netsim.live import probe, realize
from netsim.live.plan import plan
from netsim.live.suite import live, run_on_copies
from netsim.sources import RawDoc
from netsim.trace_spec import resolve_source

SUITE = "services"
OVERRIDES = {"calico_encapsulation": "None", "proxy_mode": "iptables", "cni": "calico"}
ROUNDS = 30  # connections per probe: a miss of one of 3 equal endpoints is ~1e-5
COPIES = 3  # live builds of the base cluster taking cases side by side


@dataclass(frozen=True, slots=True)
class CheckRun:
    """One check (one destination of it) on the kernel: ROUNDS comparisons, or skipped."""

    label: str
    comparisons: tuple[probe.Comparison, ...] = ()
    skipped: str | None = None  # why it was not probed
    affinity: bool = False  # the check expects ClientIP session affinity

    @property
    def disagreements(self) -> list[probe.Comparison]:
        return [c for c in self.comparisons if not c.agree]

    @property
    def kernel_endpoints(self) -> set[str]:
        return {c.kernel.answered_by for c in self.comparisons if c.kernel.answered_by}

    @property
    def walk_endpoints(self) -> set[str]:
        return {e for c in self.comparisons for e in c.netsim.delivered_to}


@dataclass(frozen=True, slots=True)
class CaseRun:
    name: str
    checks: tuple[CheckRun, ...]
    seconds: float
    own_build: bool  # the case changed the topology and had a build of its own

    @property
    def comparisons(self) -> list[probe.Comparison]:
        return [c for ch in self.checks for c in ch.comparisons]


def case_dataplane(suite: TraceSuite, case: Case) -> Dataplane:
    base = [RawDoc(o, Source(f"{suite.filename} (spec.cluster)", i + 1))
            for i, o in enumerate(suite.cluster)]
    objects = [[RawDoc(o, Source(f"{suite.filename} (case {case.name}, objects)", i + 1))]
               for i, o in enumerate(case.objects)]
    return build(load_inputs([base, *objects], overrides=OVERRIDES))


def case_probes(dp: Dataplane, case: Case) -> list[tuple[CheckRun, list[probe.Probe]]]:
    """Each check's probe (one per destination; `node/*` is every node), or why none."""
    out = []
    for check in case.checks:
        f = check.fields
        if f.has("service"):
            out.append((CheckRun(check.label, skipped="a check on the compiled proxy rules "
                                 "(cluster_ip/proxy_rules), not a connection"), []))
            continue
        protocol = f.str("protocol", default="TCP")
        affinity = "session_affinity" in check.expect
        source = resolve_source(dp, f.str("from"))
        if source.address not in dp.station(source.netns).addresses():
            out.append((CheckRun(check.label, skipped=f"source address {source.address} is "
                                 "not the live client's own (the live external namespace "
                                 "holds only the cluster's external client address, and the "
                                 "underlay routes only that one back)"), []))
            continue
        for label, dest in _targets(dp, f.str("to"), protocol, source, None):
            name = check.label if label is None else f"{check.label} [{label}]"
            if source.netns == EXTERNAL_NETNS and dest.address in dp.load_balancer_ips:
                # a drop there would be the underlay's, not kube-proxy's: not compared either
                out.append((CheckRun(name, skipped=f"{dest.address} is a load-balancer "
                                     "address: the walk's underlay has a cloud load balancer "
                                     "send it to the nodes, the live underlay has none (it "
                                     "routes node addresses and the external client only, "
                                     "and blackholes the rest; netsim/live/plan.py)"), []))
                continue
            p = probe.Probe("check", source.netns, source.label, source.address, dest.address,
                            dest.port, protocol, dest.label)
            out.append((CheckRun(name, affinity=affinity), [p]))
    return out


def run_case(suite: TraceSuite, case: Case, state, dp: Dataplane,
             timeout: float) -> list[CheckRun]:
    planned = case_probes(dp, case)
    probes = [p for _, ps in planned for p in ps for _ in range(ROUNDS)]
    comparisons = probe.compare(dp, probes, state.namespaces, timeout)
    out, i = [], 0
    for check, ps in planned:
        n = len(ps) * ROUNDS
        out.append(CheckRun(check.label, tuple(comparisons[i:i + n]), check.skipped,
                            check.affinity))
        i += n
    return out


def run_suite(prefix: str, *, only: tuple[str, ...] = (), copies: int = COPIES,
              timeout: float = probe.DEFAULT_TIMEOUT) -> list[CaseRun]:
    """The suite's cases (or `only` those) live: `copies` builds of the base cluster (prefixes
    `<prefix>-<i>`) take the cases from one queue; a case with a topology of its own is
    built under `<prefix>-c<index>` for the duration of the case."""
    suite = load_trace_suite(SUITE)
    cases = [c for c in suite.cases if not only or c.name in only]
    base_dp = case_dataplane(suite, Case("base", "", "", (), ()))

    def one(index: int, case: Case, state, base_plan) -> CaseRun:
        start = time.perf_counter()
        dp = case_dataplane(suite, case)
        case_plan = plan(dp)
        if case_plan.fingerprint() == base_plan.fingerprint():
            realize.load_rules(state, case_plan)
            checks = run_case(suite, case, state, dp, timeout)
            own = False
        else:
            with live(dp, f"{prefix}-c{index}") as (own_state, _):
                checks = run_case(suite, case, own_state, dp, timeout)
            own = True
        return CaseRun(case.name, tuple(checks), time.perf_counter() - start, own)

    return run_on_copies(base_dp, prefix, cases, copies, one)
