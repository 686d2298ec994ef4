"""Run a bundled conformance suite: each case's manifests on the base cluster, each probe's
matrix against the expectation written by hand from the specification."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import yaml

from netsim.cluster import load_inputs
from netsim.conformance.base import base_objects
from netsim.conformance.expect import expected_table
from netsim.errors import InputError, Source
from netsim.fields import Fields
from netsim.reach import matrix
from netsim.sources import RawDoc

SUITES = ("networkpolicy",)


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    description: str
    passed: bool
    probes: tuple[str, ...]  # "TCP/80" for each probe run
    failure: str | None = None  # the first differing expectation
    differences: int = 0
    seconds: float = 0.0


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
        m = matrix(cluster, port, protocol)
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
