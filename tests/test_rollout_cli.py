"""`netsim rollout` from the command line: text and JSON, --step, strategies read from the
manifests, stdin, and one-line errors with exit status 2."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from netsim.cli import main

DATA = Path(__file__).parent / "data" / "rollout"
NGINX = str(DATA / "nginx.yaml")
BOOKINFO = str(DATA / "bookinfo-reviews.yaml")


def run(capsys, *args):
    code = main(["rollout", "-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_shows_each_step_with_the_share_per_version(capsys):
    code, out, _ = run(capsys, "-f", NGINX, "--service", "svc/default/nginx",
                       "--to-image", "nginx=nginx:1.16.1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "rollout: svc/default/nginx port http 80/TCP, rolling"
    assert ("  maxSurge 25% of 3 = 1 (rounded up), maxUnavailable 25% of 3 = 0 (rounded down): "
            "at most 4 pods, at least 3 available") in lines
    step2 = lines.index("step 2")
    assert re.fullmatch(r"  kube-proxy \(per connection\): nginx-deployment-\w+ 66\.7% \(2\) · "
                        r"nginx-deployment-\w+ 33\.3% \(1\)", lines[step2 + 1])
    assert "terminating, serving" in out and "not ready" in out
    assert lines[-1].startswith("    ")  # the last step's endpoints close the output


def test_step_prints_only_that_step(capsys):
    code, out, _ = run(capsys, "-f", NGINX, "--service", "svc/default/nginx", "--step", "3")
    assert code == 0
    assert re.findall(r"^step \d+", out, re.M) == ["step 3"]


def test_json_lists_steps_with_shares_and_endpoints(capsys):
    code, out, _ = run(capsys, "-f", BOOKINFO, "--service", "svc/default/reviews",
                       "--weights", "50", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["strategy"], data["canaryBy"], data["complete"]) == ("canary", "mesh", True)
    assert {v["role"] for v in data["versions"]} == {"stable", "canary", "other"}
    first = data["steps"][0]
    mesh, kube_proxy = first["traffic"]
    assert (mesh["balancer"], mesh["unit"]) == ("mesh", "request")
    assert mesh["shares"] == {"reviews-v1": 0.9, "reviews-v2": 0.1}
    assert mesh["weights"] == {"v1": 90, "v2": 10}
    assert kube_proxy["shares"] == {"reviews-v1": 0.6, "reviews-v2": 0.2, "reviews-v3": 0.2}
    last = data["steps"][-1]
    assert last["title"] == "setWeight 50 reached"
    assert last["traffic"][0]["shares"] == {"reviews-v1": 0.5, "reviews-v2": 0.5}
    endpoint = first["endpoints"][0]
    assert set(endpoint) == {"pod", "version", "address", "node", "ready", "serving",
                             "terminating", "selected", "share"}
    assert endpoint["address"].endswith(":9080")


RECREATE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: demo}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: db:1, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: demo}
spec: {selector: {app: db}, ports: [{port: 5432}]}
"""


def test_strategy_is_read_from_the_manifest_on_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(RECREATE))
    code, out, _ = run(capsys, "-f", "-", "--service", "svc/demo/db", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["strategy"] == "recreate"
    assert any(t["failed"] == 1.0 for s in data["steps"] for t in s["traffic"])


def test_an_invalid_strategy_in_the_manifest_names_file_and_field(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECREATE.replace("{type: Recreate}",
                                    "{rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}"))
    code, out, err = run(capsys, "-f", str(bad), "--service", "svc/demo/db")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: {bad}:2: document 1") and \
        "Deployment demo/db: spec.strategy.rollingUpdate.maxUnavailable: may not be 0" in err


@pytest.mark.parametrize("args, message", [
    (["--service", "default/nginx/x"], "--service: expected svc/NAMESPACE/NAME"),
    (["--service", "svc/default/nope"], "no Service default/nope"),
    (["--service", "svc/default/nginx", "--step", "42"], "--step: the rollout has steps 0 to"),
    (["--service", "svc/default/nginx", "--new-version", "v2"], "expected LABEL=VALUE"),
    (["--service", "svc/default/nginx", "--weights", "ten"], "--weights: expected"),
    (["--service", "svc/default/nginx", "--ready-delay", "-1"], "--ready-delay: must be 0"),
])
def test_errors_are_one_line_and_exit_2(capsys, args, message):
    code, out, err = run(capsys, "-f", NGINX, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err
