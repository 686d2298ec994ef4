"""reach, explain, diff and conformance from the command line, on the bundled examples."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netsim.cli import main
from netsim.conformance import runner

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_reach_json_shape_and_values(capsys):
    code, out, _ = run(capsys, "reach", "-f", str(SHOP), "--port", "6379", "-n", "shop",
                       "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"port", "protocol", "pods", "allowed"}
    assert data["port"] == 6379 and data["protocol"] == "TCP"
    pods = data["pods"]
    assert pods == sorted(pods) and all(p.startswith("shop/") for p in pods)
    # examples/README.md: only cart may reach redis on 6379 (cart-to-redis, redis-from-cart).
    for i, a in enumerate(pods):
        for j, b in enumerate(pods):
            want = i == j or ("/cart-" in a and "/redis-" in b)
            assert data["allowed"][i][j] == int(want), (a, b)


def test_reach_table_csv_and_png(capsys, tmp_path):
    code, out, _ = run(capsys, "reach", "-f", str(SHOP), "--port", "8000", "-n", "shop")
    assert code == 0 and out.startswith("TCP/8000: 6 of 56 pod pairs allowed")
    code, out, _ = run(capsys, "reach", "-f", str(SHOP), "--port", "8000", "-n", "shop",
                       "-o", "csv")
    rows = [line.split(",") for line in out.splitlines()]
    assert rows[0][0] == "from \\ to" and len(rows) == 9 and all(len(r) == 9 for r in rows)
    png = tmp_path / "reach.png"
    code, _, _ = run(capsys, "reach", "-f", str(SHOP), "--port", "8000", "-o", "png",
                     "--out", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "reach", "-f", str(SHOP), "--port", "8080",
                       "--group-by", "namespace")
    assert code == 0 and "grouped by namespace" in out


def test_explain_names_the_deciding_policies(capsys):
    web = "shop/web-69898bbbd5-js95p"
    code, out, _ = run(capsys, "explain", "-f", str(SHOP), "--from", web,
                       "--to", "shop/redis-65dc644687-hrl9w", "--port", "6379")
    assert code == 0
    assert out.splitlines()[0].endswith("TCP/6379: DENIED")
    assert "NetworkPolicy shop/redis-from-cart ingress[0]" in out
    assert "NetworkPolicy shop/default-deny-all has no egress rules" in out
    code, out, _ = run(capsys, "explain", "-f", str(SHOP), "--from", web,
                       "--to", "shop/api-8bcb5b98b-fgcnp", "--port", "8000", "-o", "json")
    data = json.loads(out)
    assert data["allowed"] is True
    assert data["egress"]["matches"][0]["policy"] == "NetworkPolicy shop/web-to-api"
    assert data["ingress"]["matches"][0]["policy"] == "NetworkPolicy shop/api-from-web"


def test_explain_from_an_outside_address_and_bad_pod(capsys):
    code, out, _ = run(capsys, "explain", "-f", str(SHOP), "--from", "203.0.113.77",
                       "--to", "shop/web-69898bbbd5-js95p", "--port", "8080")
    assert code == 0 and "DENIED" in out and "outside the cluster" in out
    code, _, err = run(capsys, "explain", "-f", str(SHOP), "--from", "shop/web",
                       "--to", "shop/nope", "--port", "80")
    assert code == 2 and "--from: no pod 'shop/web'" in err and "did you mean" in err


def test_diff_reports_a_closed_connection_and_exits_1(capsys, tmp_path):
    changed = tmp_path / "shop"
    shutil.copytree(SHOP, changed)
    policies = changed / "40-network-policies.yaml"
    docs = policies.read_text().split("\n---\n")
    policies.write_text("\n---\n".join(d for d in docs if "name: cart-to-redis" not in d))
    code, out, _ = run(capsys, "diff", "-f", str(SHOP), "--against", str(changed))
    assert code == 1
    assert "- shop/Deployment/cart -> shop/Deployment/redis TCP/6379 closed" in out
    code, out, _ = run(capsys, "diff", "-f", str(SHOP), "--against", str(SHOP))
    assert code == 0 and out.startswith("0 connection(s) changed")


def test_conformance_suite_passes_with_junit(capsys, tmp_path):
    junit = tmp_path / "junit.xml"
    code, out, _ = run(capsys, "conformance", "--suite", "networkpolicy", "--junit",
                       str(junit))
    assert code == 0
    last = out.splitlines()[-1]
    total = int(last.split()[0])
    assert total >= 40 and last.endswith(f"{total} passed, 0 failed")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == str(total) and suite.get("failures") == "0"


def test_conformance_reports_a_wrong_expectation(capsys, tmp_path, monkeypatch):
    suite = tmp_path / "suite.yaml"
    suite.write_text("""
spec:
  cases:
  - name: deny-all-ingress-in-x
    objects:
    - apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: deny, namespace: x}
      spec: {podSelector: {}}
    probes:
    - port: 80
      expect: {default: allow}   # wrong on purpose: x is isolated
""")
    monkeypatch.setattr(runner, "suite_text", lambda name: (str(suite), suite.read_text()))
    junit = tmp_path / "junit.xml"
    code, out, _ = run(capsys, "conformance", "--suite", "networkpolicy", "--junit",
                       str(junit))
    assert code == 1
    assert out.startswith("FAIL  networkpolicy/deny-all-ingress-in-x  TCP/80: x/a -> x/b "
                          "expected allowed, got denied")
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and "x/a -> x/b" in failure.get("message")


@pytest.mark.parametrize("argv", [["reach", "--port", "70000"],
                                  ["reach", "-n", "nope"]])
def test_reach_bad_arguments(capsys, argv):
    code, _, err = run(capsys, *argv, "-f", str(SHOP))
    assert code == 2 and err.startswith("error: command line:")


def test_reach_refuses_matrices_too_big_to_print_and_summarises_many_groups(capsys,
                                                                            monkeypatch):
    from netsim import reach_views

    monkeypatch.setattr(reach_views, "DENSE_LIMIT", 10)
    code, _, err = run(capsys, "reach", "-f", str(SHOP), "-o", "json")
    assert code == 2 and "16 pods make a 16x16 matrix" in err
    code, _, err = run(capsys, "reach", "-f", str(SHOP), "--group-by", "pod")
    assert code == 2 and "--group-by" in err
    monkeypatch.setattr(reach_views, "GROUP_GRID_LIMIT", 3)
    code, out, _ = run(capsys, "reach", "-f", str(SHOP), "--port", "8080",
                       "--group-by", "namespace")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("5 namespaces: too many for a grid")
    # shop's egress allows DNS and its named flows, none of them on 8080 (examples/README.md):
    # from shop, no namespace (shop included) is reachable on 8080.
    shop = next(line.split() for line in lines if line.startswith("shop "))
    assert shop[1:] == ["0", "0", "5"]
