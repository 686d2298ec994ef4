"""The conformance run as text lines and JSON (the CLI prints them; JUnit is junit.py)."""

from __future__ import annotations

from netsim.conformance.runner import CaseResult, SuiteRun

STATUSES = ("pass", "xfail", "fail")


def counts(results: list[CaseResult]) -> dict[str, int]:
    return {s: sum(c.status == s for c in results) for s in STATUSES}


def case_line(run: SuiteRun, c: CaseResult) -> str:
    """PASS / FAIL with the first differing expectation / XFAIL with the known deviation."""
    where = f" [{run.dataplane.name}]" if run.dataplane else ""
    status = {"pass": "PASS ", "fail": "FAIL ", "xfail": "XFAIL"}[c.status]
    if c.status == "fail":
        detail = c.failure
    elif c.status == "xfail":
        bug = c.deviation or ""
        bug = bug if len(bug) <= 90 else bug[:87].rstrip() + "..."
        detail = f"{c.failure} [known netsim deviation: {bug}]"
    elif run.dataplane is None:
        detail = ", ".join(c.probes)
    else:
        detail = f"{len(c.probes)} check{'s' if len(c.probes) != 1 else ''}"
    return f"{status} {run.suite}/{c.name}{where}  {detail}"


def summary_lines(runs: list[SuiteRun]) -> list[str]:
    """A line per suite and dataplane: cases, outcomes, time, what the dataplane is."""
    width = max((len(r.label) for r in runs), default=0)
    lines = ["summary:"]
    for r in runs:
        n = counts(r.results)
        what = r.dataplane.describe() if r.dataplane else \
            "policy semantics (dataplane-independent)"
        lines.append(f"  {r.label:<{width}}  {len(r.results):3} cases  {n['pass']:3} passed  "
                     f"{n['xfail']:2} xfail  {n['fail']:2} failed  {r.seconds:6.2f}s  {what}")
    return lines


def total_line(runs: list[SuiteRun]) -> str:
    results = [c for r in runs for c in r.results]
    n = counts(results)
    xfail = f"{n['xfail']} known netsim deviations (xfail), " if n["xfail"] else ""
    return f"{len(results)} cases: {n['pass']} passed, {xfail}{n['fail']} failed"


def as_json(runs: list[SuiteRun]) -> dict:
    def name(r: SuiteRun) -> str | None:
        return r.dataplane.name if r.dataplane else None

    total = counts([c for r in runs for c in r.results])
    return {
        "passed": total["pass"], "failed": total["fail"], "knownDeviations": total["xfail"],
        "runs": [{"suite": r.suite, "dataplane": name(r), "cases": len(r.results),
                  "passed": counts(r.results)["pass"], "failed": counts(r.results)["fail"],
                  "knownDeviations": counts(r.results)["xfail"],
                  "seconds": round(r.seconds, 3)} for r in runs],
        "cases": [{"suite": r.suite, "dataplane": name(r), "case": c.name,
                   "status": c.status, "passed": c.passed, "probes": list(c.probes),
                   "failure": c.failure, "deviation": c.deviation,
                   "seconds": round(c.seconds, 4)} for r in runs for c in r.results]}
