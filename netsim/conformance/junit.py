"""JUnit XML for CI systems (the format Jenkins, GitLab and GitHub Actions read)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from netsim.conformance.runner import POLICY_SUITES, CaseResult


def junit_xml(suites: list[tuple[str, list[CaseResult]]]) -> str:
    """One <testsuites> document with a <testsuite> per suite run (a trace suite runs once
    per dataplane: "services[calico-ipip/iptables]"). A case that reproduces a known netsim
    deviation is <skipped>, with the deviation as its message."""
    root = ET.Element("testsuites")
    for suite, results in suites:
        _suite(root, suite, results)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(root: ET.Element, suite: str, results: list[CaseResult]) -> None:
    failures = sum(r.status == "fail" for r in results)
    skipped = sum(r.status == "xfail" for r in results)
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                         failures=str(failures), errors="0", skipped=str(skipped),
                         time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        case = ET.SubElement(node, "testcase", classname=f"netsim.conformance.{suite}",
                             name=r.name, time=f"{r.seconds:.3f}")
        if r.status == "fail":
            failure = ET.SubElement(case, "failure", message=r.failure or "failed")
            unit = "pairs" if suite in POLICY_SUITES else "checks"
            failure.text = f"{r.failure}\n({r.differences} differing {unit})"
        elif r.status == "xfail":
            skip = ET.SubElement(case, "skipped",
                                 message=f"known netsim deviation: {r.deviation}")
            skip.text = r.failure
