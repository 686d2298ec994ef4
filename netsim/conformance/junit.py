"""JUnit XML for CI systems (the format Jenkins, GitLab and GitHub Actions read)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from netsim.conformance.runner import CaseResult


def junit_xml(suites: list[tuple[str, list[CaseResult]]]) -> str:
    """One <testsuites> document with a <testsuite> per suite run."""
    root = ET.Element("testsuites")
    for suite, results in suites:
        _suite(root, suite, results)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(root: ET.Element, suite: str, results: list[CaseResult]) -> None:
    failures = sum(not r.passed for r in results)
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                         failures=str(failures), errors="0",
                         time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        case = ET.SubElement(node, "testcase", classname=f"netsim.conformance.{suite}",
                             name=r.name, time=f"{r.seconds:.3f}")
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.failure or "failed")
            failure.text = f"{r.failure}\n({r.differences} differing pairs)"
