"""`netsim mesh load` from the command line: text and JSON output, arguments, errors.

`netsim mesh` itself is wired by netsim/cli_mesh.py; these tests build the verb on a small
argparse harness that behaves as netsim.cli.main does (defaults filled, InputError -> exit 2).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap

import pytest

from netsim.cli import CLUSTER_DEFAULTS, EXIT_INPUT, _cluster_options
from netsim.cli_mesh_load import add_load_verb, parse_failure, parse_service_port
from netsim.errors import InputError

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec: {containers: [{name: c, image: curl}]}
status: {podIP: 10.244.1.5}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web}]}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web}]}
status: {podIP: 10.244.1.11}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web}]}
status: {podIP: 10.244.1.12}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 5s,
                       maxEjectionPercent: 100}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
"""


@pytest.fixture
def cluster_file(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="netsim mesh")
    verbs = parser.add_subparsers(dest="verb", required=True)
    add_load_verb(verbs, _cluster_options())
    args = parser.parse_args(["load", "-q", *argv])
    for name, default in CLUSTER_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        code = args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_INPUT
    out, err = capsys.readouterr()
    return code, out, err


EXPECTED = """\
Load: 70 requests from shop/client to svc/shop/web:80, 10/s, 1 at a time, 10 ms upstream latency, seed 0
Cluster  outbound|80||web.shop.svc.cluster.local  (3 ready endpoints, HTTP/1.1, lb ROUND_ROBIN)
  DestinationRule shop/web: maxConnections unlimited, http1MaxPendingRequests unlimited, http2MaxRequests unlimited, maxRequestsPerConnection unlimited, maxRetries unlimited
  outlierDetection: consecutive5xxErrors 3, consecutiveGatewayErrors off, interval 1s, baseEjectionTime 5s, maxEjectionPercent 100%, minHealthPercent 0%
  default route: retries 2 on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes (no status codes), perTryTimeout none, timeout none

Summary: 64/70 succeeded (91.4%) over 6.910s
  responses: 200 x64, 503 x6
  response flags: - x70

Endpoints
  ENDPOINT           POD          REQUESTS   2XX   5XX   UF   UC   UT   UO   EJECTIONS   EJECTED
  10.244.1.10:8080   shop/web-0   33         33    0     0    0    0    0    0           0.000s
  10.244.1.11:8080   shop/web-1   6          0     6     0    0    0    0    2           5.490s
  10.244.1.12:8080   shop/web-2   31         31    0     0    0    0    0    0           0.000s

Outlier events
      0.710s  10.244.1.11:8080  shop/web-1  ejected (3 consecutive 5xx; ejection 1, for 5s; 1/3 hosts ejected)
      6.000s  10.244.1.11:8080  shop/web-1  returned to the load balancing set
      6.710s  10.244.1.11:8080  shop/web-1  ejected (3 consecutive 5xx; ejection 2, for 10s; 1/3 hosts ejected)

Over time
  STARTED         REQUESTS   OK   FAILED   EJECTED
  0.000s-1.000s   10         7    503 x3   1
  1.000s-2.000s   10         10   -        1
  2.000s-3.000s   10         10   -        1
  3.000s-4.000s   10         10   -        1
  4.000s-5.000s   10         10   -        1
  5.000s-6.000s   10         10   -        1
  6.000s-7.000s   10         7    503 x3   1
"""  # noqa: E501


def test_text_output(capsys, cluster_file):
    # Round robin at 10/s: web-1 gets requests 1, 4, 7 -> ejected at 0.71s for 5s, back at
    # the 6s sweep, ejected again at 6.71s for 10s (Istio's default retries skip 503).
    # Pick i goes to hosts[i % 3] while all are healthy and to (web-0, web-2)[i % 2] while
    # web-1 is out: web-0 gets 0,3,6 + 8,10..58 + 60,63,66,69 = 33; web-2 2,5 + 9..59 +
    # 62,65,68 = 31.
    code, out, _ = run(capsys, "-f", cluster_file, "--from", "shop/client", "--to",
                       "svc/shop/web:80", "--requests", "70", "--fail", "shop/web-1=1")
    assert code == 0
    assert out == EXPECTED, "\n".join(difflib.unified_diff(
        EXPECTED.splitlines(), out.splitlines(), "expected", "got", lineterm=""))


def test_json_output(capsys, cluster_file):
    code, out, _ = run(capsys, "-f", cluster_file, "--from", "shop/client", "--to",
                       "svc/shop/web:http", "--requests", "70", "--fail", "shop/web-1=100%",
                       "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["client"], data["service"], data["port"], data["cluster"]) == \
        ("shop/client", "shop/web", 80, "outbound|80||web.shop.svc.cluster.local")
    assert data["summary"] == {"requests": 70, "succeeded": 64, "successRate": 0.914286,
                               "durationSeconds": 6.91, "codes": {"200": 64, "503": 6},
                               "flags": {"-": 70}}
    assert data["config"]["outlierDetection"]["maxEjectionPercent"] == 100
    assert data["config"]["retries"]["retriableStatusCodes"] == []
    web1 = data["endpoints"][1]
    assert (web1["pod"], web1["requests"], web1["5xx"], web1["ejections"],
            web1["ejectedSeconds"]) == ("shop/web-1", 6, 6, 2, 5.49)
    assert [(e["time"], e["action"], e["durationSeconds"]) for e in data["events"]] == \
        [(0.71, "eject", 5.0), (6.0, "uneject", None), (6.71, "eject", 10.0)]
    assert data["load"]["failures"] == {"10.244.1.11:8080": {"rate": 1.0, "kind": "http",
                                                             "status": 503}}
    assert data["stats"]["outlier_detection.ejections_enforced_total"] == 2


def test_a_refused_ejection_shows_the_percentage_test(capsys, tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER.replace("maxEjectionPercent: 100", "maxEjectionPercent: 10"))
    code, out, _ = run(capsys, "-f", str(path), "--from", "shop/client", "--to",
                       "svc/shop/web:80", "--requests", "9", "--fail", "shop/web-1=1")
    assert code == 0
    assert ("      0.710s  10.244.1.11:8080  shop/web-1  not ejected (3 consecutive 5xx): "
            "1/3 hosts = 33.3% > maxEjectionPercent 10%") in out.splitlines()


def test_a_service_without_endpoints_answers_uh(capsys, cluster_file):
    code, out, _ = run(capsys, "-f", cluster_file, "--from", "shop/client", "--to",
                       "svc/shop/empty:80", "--requests", "5")
    assert code == 0
    assert "Summary: 0/5 succeeded (0.0%) over 0.400s" in out
    assert "  response flags: UH x5" in out
    assert "  none: every request is UH" in out


def test_the_same_seed_gives_the_same_output(capsys, cluster_file):
    args = ("-f", cluster_file, "--from", "shop/client", "--to", "svc/shop/web:80",
            "--requests", "50", "--concurrency", "5", "--fail", "shop/web-0=0.3:500",
            "--fail", "10.244.1.12:8080=0.2:reset", "--seed", "4", "-o", "json")
    first = run(capsys, *args)
    assert first == run(capsys, *args)
    data = json.loads(first[1])
    assert data["load"]["failures"]["10.244.1.12:8080"]["kind"] == "reset"


def test_slow_endpoint_and_latency(capsys, cluster_file):
    code, out, _ = run(capsys, "-f", cluster_file, "--from", "shop/client", "--to",
                       "svc/shop/web:80", "--requests", "3", "--latency", "5", "--slow",
                       "shop/web-2=250", "-o", "json")
    assert code == 0
    assert json.loads(out)["summary"]["durationSeconds"] == 0.45  # request 2 at 0.2s + 250 ms


@pytest.mark.parametrize(("argv", "message"), [
    (("--to", "web:80"), "--to: must be svc/NS/NAME:PORT"),
    (("--to", "svc/shop/web:81"), "Service shop/web has no port 81"),
    (("--to", "svc/shop/api:80"), "no Service shop/api"),
    (("--from", "shop/nobody"), "--from: no pod 'shop/nobody'"),
    (("--fail", "shop/client=1"), "--fail: shop/client is not a ready endpoint"),
    (("--fail", "shop/web-0=2"), "RATE must be between 0 and 1"),
    (("--fail", "shop/web-0=0.5:404"), "WHAT must be a 5xx status"),
    (("--fail", "shop/web-0"), "--fail: must be NS/POD=RATE[:WHAT]"),
    (("--slow", "shop/web-0=fast"), "MS must be a positive number"),
    (("--requests", "0"), "--requests: must be at least 1"),
    (("--rate", "0"), "--rate: must be a positive number"),
    (("--header", "end-user"), "--header: must be NAME:VALUE, got 'end-user'"),
    (("--http", "FETCH http://web/"), "--http: unknown HTTP method 'FETCH'"),
])
def test_bad_arguments_are_one_line_errors(capsys, cluster_file, argv, message):
    base = {"--from": "shop/client", "--to": "svc/shop/web:80"}
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    args = [x for k, v in {**base, **pairs}.items() for x in (k, v)]
    code, out, err = run(capsys, "-f", cluster_file, *args)
    assert code == EXIT_INPUT and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


SUBSETS = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match: [{headers: {end-user: {exact: jason}}}, {uri: {prefix: /beta}}]
    route: [{destination: {host: web, subset: v2}}]
  - route:
    - {destination: {host: web, subset: v1}, weight: 50}
    - {destination: {host: web, subset: v2}, weight: 50}
"""


@pytest.fixture
def subsets_file(tmp_path):
    text = (CLUSTER.replace("labels: {app: web}}", "labels: {app: web, version: v1}}")
            .replace("name: web-2, namespace: shop, labels: {app: web, version: v1}",
                     "name: web-2, namespace: shop, labels: {app: web, version: v2}")
            .replace("maxEjectionPercent: 100}\n",
                     "maxEjectionPercent: 100}\n  subsets:\n"
                     "  - {name: v1, labels: {version: v1}}\n"
                     "  - {name: v2, labels: {version: v2}}\n"))
    path = tmp_path / "subsets.yaml"
    path.write_text(text + SUBSETS)
    return str(path)


@pytest.mark.parametrize("request_args", [("--header", "End-User: jason"),
                                          ("--http", "GET http://web.shop/beta/home")])
def test_the_request_selects_the_route_and_its_subset(capsys, subsets_file, request_args):
    code, out, _ = run(capsys, "-f", subsets_file, "--from", "shop/client", "--to",
                       "svc/shop/web:80", "--requests", "5", *request_args)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("Cluster  outbound|80|v2|web.shop.svc.cluster.local  "
                               "(1 ready endpoints")  # web-2 is the only v2 pod
    assert lines[4].startswith("  VirtualService shop/web http[0]: retries 2")
    assert "passes its match" in lines[5] and "CLUSTER" not in out


def test_a_split_route_shows_each_cluster(capsys, subsets_file):
    code, out, _ = run(capsys, "-f", subsets_file, "--from", "shop/client", "--to",
                       "svc/shop/web:80", "--requests", "20", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert [(c["cluster"], c["weight"], c["endpoints"]) for c in data["config"]["clusters"]] \
        == [("outbound|80|v1|web.shop.svc.cluster.local", 50, 2),
            ("outbound|80|v2|web.shop.svc.cluster.local", 50, 1)]
    assert data["config"]["route"] == 1 and data["summary"]["succeeded"] == 20
    assert {e["cluster"].split("|")[2] for e in data["endpoints"]} == {"v1", "v2"}
    code, out, _ = run(capsys, "-f", subsets_file, "--from", "shop/client", "--to",
                       "svc/shop/web:80", "--requests", "20")
    assert "weight 50" in out and "  CLUSTER   ENDPOINT" in out


def test_argument_parsers():
    assert parse_service_port("svc/shop/web:http") == ("shop", "web", "http")
    assert parse_service_port("svc/shop/web:8080") == ("shop", "web", 8080)
    pod, failure = parse_failure("shop/web-0=25%:connect-failure")
    assert (pod, failure.rate, failure.kind) == ("shop/web-0", 0.25, "connect-failure")
    assert parse_failure("shop/web-0=0.5:502")[1].status == 502


def test_help_names_the_flags():
    parser = argparse.ArgumentParser(prog="netsim mesh")
    verbs = parser.add_subparsers(dest="verb")
    load = add_load_verb(verbs, _cluster_options())
    text = textwrap.dedent(load.format_help())
    for flag in ("--from", "--to", "--requests", "--fail", "--concurrency", "--rate", "--seed",
                 "--latency", "--slow", "-o"):
        assert flag in text
