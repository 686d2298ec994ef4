"""Run the bundled conformance suites and report one result per case and dataplane.

The NetworkPolicy suite checks reach matrices (policy semantics, the same for every
dataplane; tests/test_trace_consistency.py holds the traces to them). The trace suites
(services, ingress, mesh) trace connections through the emulated dataplane under each
combination of CNI and Service proxy their file names (trace_suite.py, dataplanes.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from importlib import resources
from typing import TYPE_CHECKING

import yaml

from netsim.cluster import load_inputs
from netsim.conformance.base import NAMESPACES, base_objects
from netsim.conformance.dataplanes import Dataplane, select
from netsim.conformance.expect import expected_table
from netsim.errors import InputError, Source
from netsim.fields import Fields
from netsim.reach import matrix
from netsim.sources import RawDoc

if TYPE_CHECKING:
    from netsim.conformance.trace_suite import Case, TraceSuite

SUITES = ("networkpolicy", "services", "ingress", "mesh")
POLICY_SUITES = ("networkpolicy",)  # checked on policy semantics, once for every dataplane


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    description: str
    passed: bool
    probes: tuple[str, ...]  # "TCP/80" per probe (policy), "a -> b" per check (trace suites)
    failure: str | None = None  # the first differing expectation
    differences: int = 0
    seconds: float = 0.0
    deviation: str | None = None  # a known netsim deviation this case reproduced (xfail)

    @property
    def status(self) -> str:
        """pass, fail, or xfail (a declared known netsim deviation, still reproducing)."""
        if not self.passed:
            return "fail"
        return "xfail" if self.deviation else "pass"


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """One suite under one dataplane (None: a policy suite, dataplane-independent)."""

    suite: str
    dataplane: Dataplane | None
    results: list[CaseResult]
    seconds: float

    @property
    def label(self) -> str:
        return self.suite if self.dataplane is None else f"{self.suite}[{self.dataplane.name}]"


def suite_text(name: str) -> tuple[str, str]:
    """(file name, YAML text) of a bundled suite."""
    path = resources.files("netsim.conformance") / "suites" / f"{name}.yaml"
    return str(path), path.read_text(encoding="utf-8")


def load_suite(name: str) -> tuple[str, list[Fields]]:
    filename, text = suite_text(name)
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    f = Fields(doc, Source(filename), f"ConformanceSuite {name}")
    return filename, list(f.sub("spec").items("cases", required=True))


def run_suite(name: str, only: set[str] | None = None) -> list[CaseResult]:
    filename, cases = load_suite(name)
    base = [RawDoc(o, Source("<base cluster>", i + 1)) for i, o in enumerate(base_objects())]
    results = []
    for case in cases:
        case_name = case.str("name", required=True)
        if only and case_name not in only:
            continue
        results.append(run_case(case, base, filename))
    return results


def run_case(case: Fields, base: list[RawDoc], filename: str) -> CaseResult:
    start = time.perf_counter()
    name = case.str("name", required=True)
    case.obj = f"case {name}"
    # Objects apply one after another, so a later one may replace an earlier one.
    objects = [[RawDoc(o, Source(f"{filename} (case {name}, objects)", i + 1))]
               for i, o in enumerate(case.list("objects"))]
    try:
        cluster = load_inputs([base, *objects])
    except InputError as exc:
        raise exc.at(obj=f"case {name}") from None
    probes, failure, differences = [], None, 0
    for probe in case.items("probes", required=True):
        port = probe.int("port", required=True, lo=1, hi=65535)
        protocol = probe.enum("protocol", ("TCP", "UDP", "SCTP"), default="TCP")
        probes.append(f"{protocol}/{port}")
        # the truth tables cover the suite's pods; the cluster's CoreDNS is not probed
        m = matrix(cluster, port, protocol, namespaces=set(NAMESPACES))
        dense = m.dense()
        keys = m.keys
        expected = expected_table(probe.sub("expect"), keys)
        for (a, b), want in expected.items():
            got = bool(dense[keys.index(a), keys.index(b)])
            if got != want:
                differences += 1
                if failure is None:
                    failure = (f"{protocol}/{port}: {a} -> {b} expected "
                               f"{'allowed' if want else 'denied'}, got "
                               f"{'allowed' if got else 'denied'}")
    return CaseResult(name, case.str("description", default=""), failure is None,
                      tuple(probes), failure, differences, time.perf_counter() - start)


# ---------------------------------------------------------------- trace suites


def load_trace_suite(name: str) -> TraceSuite:
    """A bundled trace suite (services, ingress, mesh), parsed and checked."""
    from netsim.conformance.trace_suite import parse_suite

    filename, text = suite_text(name)
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}".replace("\n", " "),
                         source=Source(filename)) from None
    return parse_suite(doc, filename, name)


def run(name: str, *, cni: str = "all", proxy_mode: str = "all",
        dataplanes: tuple[str, ...] = (), only: set[str] | None = None) -> list[SuiteRun]:
    """A suite under every selected dataplane it names (policy suites: once)."""
    if name in POLICY_SUITES:
        start = time.perf_counter()
        results = run_suite(name, only)
        return [SuiteRun(name, None, results, time.perf_counter() - start)]
    suite = load_trace_suite(name)
    runs = []
    for dp in select(suite.dataplanes, cni, proxy_mode, dataplanes):
        start = time.perf_counter()
        results = [run_trace_case(suite, case, dp) for case in suite.cases
                   if not only or case.name in only]
        runs.append(SuiteRun(name, dp, results, time.perf_counter() - start))
    return runs


def run_trace_case(suite: TraceSuite, case: Case, dp: Dataplane) -> CaseResult:
    """One case of a trace suite under one dataplane; known deviations make failing checks
    xfail, and a declared deviation that no longer reproduces a failure."""
    from netsim.conformance.trace_suite import run_case as run_checks

    outcomes, seconds = run_checks(suite, case, dp)
    labels = tuple(o.label for o in outcomes)
    covering = suite.deviation(case.name, dp)
    failing = [o for o in outcomes if o.difference and not o.deviation]
    fixed = [o for o in outcomes if o.deviation and not o.difference]
    expected = [o for o in outcomes if o.deviation and o.difference]
    if covering is not None and failing:  # the suite-level bug accounts for these
        expected = [replace(o, deviation=covering) for o in failing] + expected
        failing = []
    elif covering is not None and not expected:
        return CaseResult(case.name, case.description, False, labels,
                          f"passes, but the suite declares a known netsim deviation for this "
                          f"case (remove it if the bug is fixed): {covering}", 1, seconds)
    if failing:
        o = failing[0]
        return CaseResult(case.name, case.description, False, labels,
                          f"{o.label}: {o.difference}", len(failing), seconds)
    if fixed:
        o = fixed[0]
        return CaseResult(case.name, case.description, False, labels,
                          f"{o.label}: passes, but the suite declares a known netsim "
                          f"deviation here (remove it if the bug is fixed): {o.deviation}",
                          len(fixed), seconds)
    if expected:
        o = expected[0]
        return CaseResult(case.name, case.description, True, labels,
                          f"{o.label}: {o.difference}", 0, seconds, o.deviation)
    return CaseResult(case.name, case.description, True, labels, None, 0, seconds)
