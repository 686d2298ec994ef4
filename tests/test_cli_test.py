"""`netsim test` from the command line: the table, exit status, JSON, JUnit XML (read back with
xml.etree), one-line errors, and the shipped example expectations passing on the shop."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from netsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TRACE = str(DATA / "trace" / "cluster.yaml")
POLICIES = str(DATA / "expectations" / "policies.yaml")
PASSING = str(DATA / "expectations" / "passing.yaml")
FAILING = str(DATA / "expectations" / "failing.yaml")


def run(capsys, *args):
    code = main(["test", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_all_pass_exit_0_and_table(capsys):
    code, out, err = run(capsys, PASSING, "-f", TRACE, "-f", POLICIES)
    assert code == 0  # stderr: only the warning that netsim added the cluster's CoreDNS
    assert [line.split(":")[:2] for line in err.splitlines()] == [
        ["warning", " the input holds no cluster DNS"]]
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "FROM", "TO", "EXPECT", "GOT", "RESULT", "REASON"]
    rows = [line.split("   ") for line in lines[1:4]]
    assert [[cell.strip() for cell in row if cell.strip()][:6] for row in rows] == [
        ["client reaches web", "demo/client", "svc/demo/web:http", "allow", "allow", "PASS"],
        ["web pods do not talk", "demo/web-1", "demo/web-2:8080", "deny", "deny", "PASS"],
        ["web pods do not talk", "demo/web-2", "demo/web-1:8080", "deny", "deny", "PASS"]]
    assert lines[-1] == "3 expectation(s), 4 case(s): 4 passed, 0 failed"


def test_failure_and_error_exit_1_with_the_reasons(capsys):
    code, out, _ = run(capsys, FAILING, "-f", TRACE, "-f", POLICIES)
    assert code == 1
    assert out.splitlines()[-1] == "3 expectation(s), 3 case(s): 1 passed, 1 failed, 1 error(s)"
    assert (f"FAIL  client cannot reach web [demo/client]  ({FAILING}: document 1: "
            "spec.expectations[1])\n  expected deny, got allow: path 1/2 (p=0.5000) delivered "
            "to demo/web-1; path 2/2 (p=0.5000) delivered to demo/web-2\n") in out
    assert (f"ERROR  gone [demo/client]  ({FAILING}: document 1: spec.expectations[2])\n"
            "  to: no Service demo/gone\n") in out


def test_json_has_the_same_facts(capsys):
    code, out, _ = run(capsys, FAILING, "-f", TRACE, "-f", POLICIES, "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert {k: data[k] for k in ("expectations", "cases", "passed", "failed", "errors")} == {
        "expectations": 3, "cases": 3, "passed": 1, "failed": 1, "errors": 1}
    (f,) = data["files"]
    assert (f["file"], f["document"], f["name"]) == (FAILING, 1, "failing")
    ok, bad, err = f["cases"]
    assert (ok["result"], bad["result"], err["result"]) == ("PASS", "FAIL", "ERROR")
    assert {k: bad[k] for k in ("name", "expectation", "index", "from", "to", "expect",
                                "got")} == {
        "name": "client cannot reach web [demo/client]",
        "expectation": "client cannot reach web", "index": 1, "from": "demo/client",
        "to": "svc/demo/web:http", "expect": "deny", "got": "allow"}
    assert bad["failures"][0].startswith("expected deny, got allow: ")
    assert [set(p) for p in ok["paths"]] == [
        {"result", "reason", "detail", "deliveredTo", "probability", "clientAddress",
         "allowedBy", "allowedImplicitly"}] * 2
    assert ok["paths"][0]["allowedBy"] == ["NetworkPolicy demo/web-from-client"]
    assert [p["deliveredTo"] for p in bad["paths"]] == ["demo/web-1", "demo/web-2"]
    assert err["paths"] == [] and err["got"] == "error"


def test_junit_xml_one_suite_per_file(capsys, tmp_path):
    junit = tmp_path / "out.xml"
    code, _, _ = run(capsys, PASSING, FAILING, "-f", TRACE, "-f", POLICIES, "--junit",
                     str(junit))
    assert code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("7", "1", "1")
    suites = root.findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures"), s.get("errors")) for s in
            suites] == [(PASSING, "4", "0", "0"), (FAILING, "3", "1", "1")]
    passing = suites[0].findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in passing] == [
        ("netsim.test.passing", "client reaches web [demo/client]"),
        ("netsim.test.passing", "web pods do not talk [demo/web-1 -> demo/web-2:8080]"),
        ("netsim.test.passing", "web pods do not talk [demo/web-2 -> demo/web-1:8080]"),
        ("netsim.test.passing", "outside through web-lb")]
    assert all(len(c) == 0 for c in passing)  # no failure, error or skipped child
    ok, bad, err = suites[1].findall("testcase")
    assert len(ok) == 0
    (failure,) = bad
    assert failure.tag == "failure"
    assert failure.get("message") == ("expected deny, got allow: delivered; allowed by "
                                      "NetworkPolicy demo/web-from-client")
    assert failure.text.splitlines() == [
        f"{FAILING}: document 1: spec.expectations[1]",
        "from demo/client to svc/demo/web:http",
        "expected deny, got allow",
        "path 1/2 (p=0.5000): delivered (delivered) demo/web-1: a socket accepted the packet "
        "and its reply reached the sender",
        "path 2/2 (p=0.5000): delivered (delivered) demo/web-2: a socket accepted the packet "
        "and its reply reached the sender"]
    (error,) = err
    assert error.tag == "error"
    assert error.get("message") == "to: no Service demo/gone"
    assert all(float(c.get("time")) >= 0 for c in root.iter("testcase"))


def test_bad_file_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(PASSING).read_text().replace("expect: deny", "expect: block", 1))
    code, out, err = run(capsys, str(bad), "-f", TRACE)
    assert (code, out) == (2, "")
    assert err == (f"error: {bad}:2: document 1: ConnectivityExpectations passing, expectation "
                   "'web pods do not talk': spec.expectations[1].expect: must be one of "
                   "allow, deny, got 'block'\n")


def test_missing_cluster_and_unwritable_junit(capsys, tmp_path):
    code, _, err = run(capsys, PASSING)
    assert code == 2 and err.startswith("error: command line: -f: required")
    code, _, err = run(capsys, PASSING, "-f", TRACE, "-f", POLICIES, "--junit",
                       str(tmp_path / "no" / "such" / "dir.xml"))
    assert code == 2 and err.splitlines()[-1].startswith(
        "error: command line: --junit: cannot write ")


def test_cluster_options_apply(capsys):
    """The expectations run on the dataplane the options choose: under Cilium with its
    kube-proxy replacement the drop is Cilium's own."""
    _, out, _ = run(capsys, PASSING, "-f", TRACE, "-f", POLICIES, "--cni", "cilium",
                    "--proxy-mode", "none", "-o", "json")
    cases = json.loads(out)["files"][0]["cases"]
    assert [c["result"] for c in cases[:3]] == ["PASS"] * 3
    assert cases[1]["paths"][0]["detail"] == (
        "Policy denied (133) at ingress of demo/web-2: decided by NetworkPolicy "
        "demo/web-from-client, NetworkPolicy demo/web-from-outside")


def test_the_shipped_example_passes(capsys, tmp_path):
    junit = tmp_path / "shop.xml"
    code, out, _ = run(capsys, str(ROOT / "examples" / "shop-expectations.yaml"), "-f",
                       str(ROOT / "examples" / "shop"), "--junit", str(junit))
    assert code == 0, out
    summary = out.splitlines()[-1]
    assert summary.endswith(" passed, 0 failed") and summary.startswith("15 expectation(s)")
    (suite,) = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert int(suite.get("tests")) >= 15
