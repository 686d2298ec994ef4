"""Connectivity expectation results as a table, JSON and JUnit XML (one testsuite per file)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from netsim.expectations_run import CaseResult, SetResult
from netsim.views import Table, render

HEADERS = ("NAME", "FROM", "TO", "EXPECT", "GOT", "RESULT", "REASON")


def status(case: CaseResult) -> str:
    return "PASS" if case.passed else "ERROR" if case.error else "FAIL"


def counts(results: list[SetResult]) -> tuple[int, int, int, int]:
    """(expectations, cases, failed, errors)."""
    cases = [c for r in results for c in r.cases]
    return (sum(len(r.expectations.expectations) for r in results), len(cases),
            sum(not c.passed and not c.error for c in cases), sum(c.error for c in cases))


def text(results: list[SetResult]) -> str:
    """The table, the failures spelled out, and a summary line."""
    rows = tuple((c.expectation.name, c.source, c.destination, c.expectation.expect, c.got,
                  status(c), c.summary) for r in results for c in r.cases)
    out = render(Table(HEADERS, rows))
    failed = [c for r in results for c in r.cases if not c.passed]
    if failed:
        out += "\n"
        for c in failed:
            e = c.expectation
            out += f"{status(c)}  {c.name}  ({e.source.file}: document {e.source.document}: "
            out += f"{e.field})\n"
            out += "".join(f"  {line}\n" for line in c.failures)
    total, cases, fails, errors = counts(results)
    passed = cases - fails - errors
    out += (f"\n{total} expectation(s), {cases} case(s): {passed} passed, {fails} failed"
            + (f", {errors} error(s)" if errors else "") + "\n")
    return out


def as_json(results: list[SetResult]) -> dict:
    total, cases, fails, errors = counts(results)
    return {
        "expectations": total, "cases": cases, "passed": cases - fails - errors,
        "failed": fails, "errors": errors,
        "files": [{
            "file": r.expectations.file, "document": r.expectations.source.document,
            "name": r.expectations.name,
            "cases": [_case_json(c) for c in r.cases],
        } for r in results],
    }


def _case_json(c: CaseResult) -> dict:
    e = c.expectation
    return {"name": c.name, "expectation": e.name, "index": e.index, "from": c.source,
            "to": c.destination, "expect": e.expect, "got": c.got, "result": status(c),
            "reason": c.summary, "failures": list(c.failures),
            "paths": [p.as_json() for p in c.paths]}


def junit_xml(results: list[SetResult]) -> str:
    """<testsuites>, a <testsuite> per expectations file, a <testcase> per case."""
    _, total, fails, errors = counts(results)
    root = ET.Element("testsuites", name="netsim test", tests=str(total), failures=str(fails),
                      errors=str(errors))
    by_file: dict[str, list[SetResult]] = {}
    for r in results:
        by_file.setdefault(r.expectations.file, []).append(r)
    for file, found in by_file.items():
        cases = [(r.expectations.name, c) for r in found for c in r.cases]
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(cases)),
                              failures=str(sum(not c.passed and not c.error for _, c in cases)),
                              errors=str(sum(c.error for _, c in cases)), skipped="0",
                              time=f"{sum(c.seconds for _, c in cases):.3f}")
        for doc, c in cases:
            case = ET.SubElement(suite, "testcase", classname=f"netsim.test.{doc}", name=c.name,
                                 time=f"{c.seconds:.3f}")
            if c.passed:
                continue
            tag = "error" if c.error else "failure"
            e = c.expectation
            message = (c.summary if c.error else
                       f"expected {e.expect}, got {c.got}: {c.summary}")
            node = ET.SubElement(case, tag, message=message,
                                 type="unresolved" if c.error else "expectation")
            mismatch = f"expected {e.expect}, got {c.got}"
            lines = [f"{e.source.file}: document {e.source.document}: {e.field}",
                     f"from {c.source} to {c.destination}",
                     *(mismatch if f.startswith(mismatch + ": ") else f for f in c.failures)]
            lines += [f"path {i}/{len(c.paths)} (p={p.probability:.4f}): {p.result} "
                      f"({p.reason}) {p.delivered_to or ''}: {p.detail}".replace(" :", ":")
                      for i, p in enumerate(c.paths, 1)]
            node.text = "\n".join(lines)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
