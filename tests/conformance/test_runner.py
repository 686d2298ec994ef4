"""The conformance runner's behaviour on small hand-made suites: first-difference messages,
per-dataplane differences, known deviations (xfail, and the failure once fixed), the
artifact checks for session affinity, JUnit and JSON output, and bad input."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

from netsim.cli import main
from netsim.conformance import runner

# Two nodes; app/client and app/web-1 on n1, app/web-2 on n2; Service web (80 -> 8080).
CLUSTER = """
  dataplanes: [calico-ipip/iptables, calico-ipip/ipvs, cilium-tunnel/kpr,
               cilium-tunnel/iptables]
  cluster:
  - apiVersion: netsim/v1alpha1
    kind: NetsimConfig
    metadata: {name: tiny}
    spec: {podCIDRs: [10.244.0.0/16], serviceCIDRs: [10.96.0.0/12]}
  - {apiVersion: v1, kind: Node, metadata: {name: n1},
     status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}}
  - {apiVersion: v1, kind: Node, metadata: {name: n2},
     status: {addresses: [{type: InternalIP, address: 172.18.0.3}]}}
  - {apiVersion: v1, kind: Namespace, metadata: {name: app}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: client, namespace: app}
    spec: {nodeName: n1, containers: [{name: c, image: agnhost}]}
    status: {phase: Running, podIP: 10.244.1.10}
  - apiVersion: v1
    kind: Pod
    metadata: {name: web-1, namespace: app, labels: {app: web}}
    spec: {nodeName: n1, containers: [{name: w, image: agnhost,
           ports: [{name: http, containerPort: 8080}]}]}
    status: {phase: Running, podIP: 10.244.1.11}
  - apiVersion: v1
    kind: Pod
    metadata: {name: web-2, namespace: app, labels: {app: web}}
    spec: {nodeName: n2, containers: [{name: w, image: agnhost,
           ports: [{name: http, containerPort: 8080}]}]}
    status: {phase: Running, podIP: 10.244.2.11}
  - apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: app}
    spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
"""


def suite(cases: str, extra: str = "") -> str:
    return ("apiVersion: netsim/v1alpha1\nkind: ConformanceSuite\nmetadata: {name: tiny}\n"
            "spec:" + CLUSTER + textwrap.indent(textwrap.dedent(extra), "  ")
            + "  cases:\n" + textwrap.indent(textwrap.dedent(cases), "  "))


@pytest.fixture
def services_suite(monkeypatch, tmp_path):
    """Replace the bundled services suite by the given text."""
    def install(text: str) -> None:
        path = tmp_path / "services.yaml"
        path.write_text(text)
        monkeypatch.setattr(runner, "suite_text", lambda name: (str(path), path.read_text()))
    return install


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


GOOD = """
- name: clusterip
  checks:
  - from: app/client
    to: svc/app/web:80
    expect: {result: delivered, endpoints: [app/web-1, app/web-2], weights: equal,
             target_port: 8080, client_ip_preserved: true}
"""


def test_a_passing_suite_runs_under_every_dataplane_it_names(capsys, services_suite,
                                                              tmp_path):
    services_suite(suite(GOOD))
    junit = tmp_path / "junit.xml"
    code, out, _ = run(capsys, "conformance", "--suite", "services", "--junit", str(junit))
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == [f"PASS  services/clusterip [{d}]  1 check" for d in
                         ("calico-ipip/iptables", "calico-ipip/ipvs", "cilium-tunnel/kpr",
                          "cilium-tunnel/iptables")]
    assert lines[-1] == "4 cases: 4 passed, 0 failed"
    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        "services[calico-ipip/iptables]", "services[calico-ipip/ipvs]",
        "services[cilium-tunnel/kpr]", "services[cilium-tunnel/iptables]"]
    for s in suites:
        assert (s.get("tests"), s.get("failures"), s.get("skipped")) == ("1", "0", "0")
        case = s.find("testcase")
        assert case.get("name") == "clusterip"
        assert case.get("classname") == f"netsim.conformance.{s.get('name')}"
        assert list(case) == []


@pytest.mark.parametrize("expect,message", [
    ("{result: delivered, endpoints: [app/web-1]}",
     "app/client -> svc/app/web:80: expected endpoints [app/web-1], got [app/web-1, "
     "app/web-2] (unexpected app/web-2)"),
    ("{result: rejected}",
     "app/client -> svc/app/web:80: expected rejected, got delivered (delivered) at "
     "app/web-1: a socket accepted the packet and its reply reached the sender (on 2 of "
     "2 paths)"),
    ("{target_port: 80}",
     "app/client -> svc/app/web:80: expected app/web-1 to receive on port 80, got 8080"),
    ("{client_ip_preserved: false}",
     "app/client -> svc/app/web:80: expected app/web-1 to see a translated source "
     "(SNAT/masquerade), got the client address 10.244.1.10"),
    ("{weights: {app/web-1: 0.9, app/web-2: 0.1}}",
     "app/client -> svc/app/web:80: expected app/web-1 to take 0.9000 of the connections, "
     "got 0.5000"),
])
def test_a_wrong_expectation_fails_with_the_first_difference(capsys, services_suite,
                                                             tmp_path, expect, message):
    services_suite(suite(f"""
        - name: wrong
          checks:
          - {{from: app/client, to: svc/app/web:80, expect: {expect}}}
        """))
    junit = tmp_path / "junit.xml"
    code, out, _ = run(capsys, "conformance", "--suite", "services", "--dataplane",
                       "calico-ipip/iptables", "--junit", str(junit))
    assert code == 1
    assert out.splitlines()[0] == f"FAIL  services/wrong [calico-ipip/iptables]  {message}"
    assert out.splitlines()[-1] == "1 cases: 0 passed, 1 failed"
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure.get("message") == message
    assert failure.text == f"{message}\n(1 differing checks)"


def test_the_first_differing_check_is_reported_and_the_others_counted(capsys,
                                                                     services_suite):
    services_suite(suite("""
        - name: two-wrong
          checks:
          - {from: app/client, to: app/web-2:8080, expect: {result: delivered}}
          - {from: app/client, to: svc/app/web:80, expect: {result: dropped}}
          - {from: app/client, to: app/web-1:8080, expect: {endpoints: [app/web-2]}}
        """))
    code, out, _ = run(capsys, "conformance", "--suite", "services", "--dataplane",
                       "cilium-tunnel/kpr", "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert (data["passed"], data["failed"], data["knownDeviations"]) == (0, 1, 0)
    [case] = data["cases"]
    assert case["suite"] == "services" and case["dataplane"] == "cilium-tunnel/kpr"
    assert case["status"] == "fail" and not case["passed"]
    assert case["failure"].startswith("app/client -> svc/app/web:80: expected dropped, got")
    assert case["probes"] == ["app/client -> app/web-2:8080", "app/client -> svc/app/web:80",
                              "app/client -> app/web-1:8080"]
    assert data["runs"] == [{"suite": "services", "dataplane": "cilium-tunnel/kpr",
                             "cases": 1, "passed": 0, "failed": 1, "knownDeviations": 0,
                             "seconds": data["runs"][0]["seconds"]}]


DIFFERENT = """
- name: empty
  objects:
  - apiVersion: v1
    kind: Service
    metadata: {name: empty, namespace: app}
    spec: {selector: {app: nothing}, ports: [{port: 80, targetPort: 8080}]}
  checks:
  - from: app/client
    to: svc/app/empty:80
    expect: {result: rejected, reason: no-endpoints}
    differences:
    - when: {cni: cilium}
      expect: {reason: service-backend-not-found}
      source: Cilium's load balancer
"""


# A stand-in for a netsim bug: under cilium-tunnel/iptables the fixture claims a drop, which
# netsim does not do, and declares that as a known deviation.
DEVIATING = DIFFERENT + """\
    - when: {dataplane: cilium-tunnel/iptables}
      expect: {result: dropped}
      source: a fictional Cilium, for the runner's test
    known_deviations:
    - when: {dataplane: cilium-tunnel/iptables}
      bug: netsim rejects where this fictional Cilium drops
"""


def test_differences_apply_to_the_dataplanes_they_name(capsys, services_suite):
    services_suite(suite(DEVIATING))
    code, out, _ = run(capsys, "conformance", "--suite", "services")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "PASS  services/empty [calico-ipip/iptables]  1 check"
    assert lines[2] == "PASS  services/empty [cilium-tunnel/kpr]  1 check"
    assert lines[3].startswith("XFAIL services/empty [cilium-tunnel/iptables]  app/client -> "
                               "svc/app/empty:80: expected dropped, got rejected "
                               "(service-backend-not-found)")
    assert lines[3].endswith("[known netsim deviation: netsim rejects where this fictional "
                             "Cilium drops]")
    assert lines[-1] == "4 cases: 3 passed, 1 known netsim deviations (xfail), 0 failed"


def test_a_known_deviation_that_no_longer_reproduces_fails(capsys, services_suite,
                                                           tmp_path):
    services_suite(suite(DIFFERENT + """
    known_deviations:
    - when: {proxy: ipvs}
      bug: an invented bug
"""))
    junit = tmp_path / "junit.xml"
    code, out, _ = run(capsys, "conformance", "--suite", "services", "--cni", "calico",
                       "--junit", str(junit))
    assert code == 1
    assert out.splitlines()[1] == (
        "FAIL  services/empty [calico-ipip/ipvs]  app/client -> svc/app/empty:80: passes, "
        "but the suite declares a known netsim deviation here (remove it if the bug is "
        "fixed): an invented bug")
    assert out.splitlines()[-1] == "2 cases: 1 passed, 1 failed"
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["services[calico-ipip/iptables]",
                                               "services[calico-ipip/ipvs]"]


def test_junit_marks_known_deviations_skipped(capsys, services_suite, tmp_path):
    services_suite(suite(DEVIATING))
    junit = tmp_path / "junit.xml"
    code, _, _ = run(capsys, "conformance", "--suite", "services", "--cni", "cilium",
                     "--junit", str(junit))
    assert code == 0
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("skipped")) for s in suites] == [
        ("services[cilium-tunnel/kpr]", "0"), ("services[cilium-tunnel/iptables]", "1")]
    skipped = suites[1].find("testcase/skipped")
    assert skipped.get("message") == ("known netsim deviation: netsim rejects where this "
                                      "fictional Cilium drops")
    assert skipped.text.startswith("app/client -> svc/app/empty:80: expected dropped")


def test_a_suite_level_deviation_covers_the_cases_it_names(capsys, services_suite):
    services_suite(suite("""
        - name: wrong-under-ipvs
          checks:
          - {from: app/client, to: svc/app/web:80, expect: {result: delivered}}
          - {from: app/client, to: app/web-2:8080, expect: {result: delivered}}
        """, extra="""
        known_deviations:
        - when: {proxy: ipvs}
          cases: [wrong-under-ipvs]
          bug: an invented bug
        """))
    code, out, _ = run(capsys, "conformance", "--suite", "services", "--cni", "calico")
    assert code == 1  # nothing fails under ipvs, so the declaration is stale
    assert out.splitlines()[1].startswith(
        "FAIL  services/wrong-under-ipvs [calico-ipip/ipvs]  passes, but the suite declares "
        "a known netsim deviation for this case")


def test_session_affinity_is_checked_on_each_proxy_s_own_state(capsys, services_suite):
    services_suite(suite("""
        - name: sticky
          objects:
          - apiVersion: v1
            kind: Service
            metadata: {name: sticky, namespace: app}
            spec:
              selector: {app: web}
              sessionAffinity: ClientIP
              sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
              ports: [{port: 80, targetPort: 8080}]
          checks:
          - {from: app/client, to: svc/app/sticky:80,
             expect: {result: delivered, session_affinity: {timeout: 600}}}
        """))
    code, out, _ = run(capsys, "conformance", "--suite", "services")
    assert code == 1
    lines = out.splitlines()
    # iptables: the interpreter replays kube-proxy's recent rules with the first
    # connection's state; the affinity is gone before 600 s
    assert lines[0].startswith("FAIL  services/sticky [calico-ipip/iptables]  app/client -> "
                               "svc/app/sticky:80: 600s after a connection to 10.244.")
    assert lines[0].endswith("the affinity ends before timeoutSeconds 600")
    assert lines[1].startswith("FAIL  services/sticky [calico-ipip/ipvs]  app/client -> "
                               "svc/app/sticky:80: IPVS virtual server TCP 10.")
    assert lines[1].endswith(" on n1 persists 60s, not 600s")
    assert lines[2].endswith("holds affinity timeout 60s, not 600s")
    assert lines[3].endswith("holds affinity timeout 60s, not 600s")


def test_session_affinity_without_client_ip_affinity_fails(capsys, services_suite):
    services_suite(suite("""
        - name: not-sticky
          checks:
          - {from: app/client, to: svc/app/web:80,
             expect: {session_affinity: {timeout: 10800}}}
        """))
    code, out, _ = run(capsys, "conformance", "--suite", "services")
    assert code == 1
    lines = out.splitlines()
    assert "DNATs without `-m recent --set`" in lines[0]
    assert "is not persistent" in lines[1]
    assert "lacks the sessionAffinity flag" in lines[2]


def test_service_checks_read_the_proxies_state(capsys, services_suite):
    services_suite(suite("""
        - name: web-has-rules
          checks:
          - service: app/web
            expect: {proxy_rules: none}
        """))
    code, out, _ = run(capsys, "conformance", "--suite", "services")
    assert code == 1
    lines = out.splitlines()
    assert "expected no Service proxy state for app/web, found n1: -A KUBE-" in lines[0]
    assert "found n1: IPVS TCP" in lines[1]
    assert "found n1: lb4_services_v2[" in lines[2]


@pytest.mark.parametrize("cases,message", [
    ("- {name: x, checks: [{from: app/client, to: svc/app/web:80, expect: {speed: fast}}]}",
     "checks[0].expect.speed: unknown expectation"),
    ("- {name: x, checks: [{from: app/client, to: svc/app/web:80, expect: {result: fine}}]}",
     "checks[0].expect.result: must be one of delivered, dropped, rejected"),
    ("- {name: x, checks: [{from: app/client, to: svc/app/web:80, expect: {result: "
     "delivered}, differences: [{when: {colour: red}, expect: {}, source: s}]}]}",
     "checks[0].differences[0].when.colour: unknown selector"),
    ("- {name: x, checks: [{from: app/client, to: svc/app/web:80, expect: {result: "
     "delivered}, known_deviations: [{when: {proxy: ipv}, bug: b}]}]}",
     "checks[0].known_deviations[0].when.proxy: 'ipv' matches no dataplane (known: "
     "iptables, ipvs, none)"),
    ("- {name: x, checks: [{from: app/client, to: svc/app/nope:80, expect: {result: "
     "delivered}}]}", "no Service 'app/nope'"),
    ("- {name: x, checks: [{from: app/client, expect: {result: delivered}}]}",
     "checks[0].to: required field is missing"),
])
def test_bad_suite_files_are_input_errors(capsys, services_suite, cases, message):
    services_suite(suite(cases))
    code, _, err = run(capsys, "conformance", "--suite", "services")
    assert code == 2
    assert err.startswith("error: ") and message in err and "case x" in err


def test_bad_yaml_is_an_input_error(capsys, services_suite):
    services_suite("spec: [unclosed")
    code, _, err = run(capsys, "conformance", "--suite", "services")
    assert code == 2 and "not valid YAML" in err


@pytest.mark.parametrize("argv,message", [
    (["--cni", "calico", "--proxy-mode", "none"],
     "no dataplane is --cni calico --proxy-mode none: Calico runs with kube-proxy"),
    (["--cni", "cilium", "--proxy-mode", "ipvs"], "no dataplane is --cni cilium"),
    (["--dataplane", "weave/iptables"], "no dataplane 'weave/iptables'"),
])
def test_filters_that_select_nothing_are_refused(capsys, argv, message):
    code, _, err = run(capsys, "conformance", *argv)
    assert code == 2 and message in err


def test_filters_pick_the_combinations(capsys, services_suite):
    services_suite(suite(GOOD))
    code, out, _ = run(capsys, "conformance", "--suite", "services", "--proxy-mode",
                       "iptables")
    assert code == 0
    assert [line.split()[2] for line in out.splitlines() if line.startswith("PASS")] == [
        "[calico-ipip/iptables]", "[cilium-tunnel/iptables]"]
