"""The CLI as a user runs it: kubectl-style tables, -o json/yaml, exit codes and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from netsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")
DUMP = str(ROOT / "examples" / "shop-dump.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def columns(text: str) -> list[list[str]]:
    """Split a kubectl table into cells (columns are at least three spaces apart)."""
    return [re.split(r" {3,}", line.rstrip()) for line in text.splitlines()]


def test_get_pods_wide_on_a_dump_shows_its_own_addresses_and_nodes(capsys):
    code, out, _ = run(capsys, "get", "pods", "-A", "-o", "wide", "-f", DUMP)
    assert code == 0
    rows = columns(out)
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                       "NOMINATED NODE", "READINESS GATES"]
    by_name = {r[1]: r for r in rows[1:]}
    # Values as the dump itself records them (status.podIP, spec.nodeName).
    assert by_name["postgres-0"][6:8] == ["10.244.140.69", "shop-worker"]
    assert by_name["coredns-7c65d6cfc9-r4wbm"][6:8] == ["10.244.82.3", "shop-control-plane"]
    assert by_name["redis-5b6dc8f97d-kq9sj"][0] == "shop"
    assert len(rows) == 1 + 16


def test_get_services_prints_kubectl_ports_and_external_ips(capsys):
    code, out, _ = run(capsys, "get", "svc", "-n", "ingress-nginx", "-f", DUMP)
    assert code == 0
    rows = columns(out)
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][:5] == ["ingress-nginx-controller", "LoadBalancer", "10.96.161.118",
                           "203.0.113.10", "80:31080/TCP,443:31443/TCP"]


def test_headless_and_named_service(capsys):
    code, out, _ = run(capsys, "get", "services", "postgres", "-n", "data", "-f", SHOP)
    assert code == 0
    assert columns(out)[1][:5] == ["postgres", "ClusterIP", "None", "<none>", "5432/TCP"]


def test_get_endpoints_lists_ready_address_port_pairs(capsys):
    code, out, _ = run(capsys, "get", "endpoints", "redis", "-n", "shop", "-f", DUMP)
    assert code == 0
    assert columns(out)[1][:2] == ["redis", "10.244.201.133:6379"]


def test_get_nodes_and_networkpolicies(capsys):
    code, out, _ = run(capsys, "get", "nodes", "-f", SHOP)
    assert code == 0
    assert [r[:3] for r in columns(out)] == [["NAME", "STATUS", "ROLES"],
                                             ["shop-control-plane", "Ready", "control-plane"],
                                             ["shop-worker", "Ready", "<none>"],
                                             ["shop-worker2", "Ready", "<none>"]]
    code, out, _ = run(capsys, "get", "netpol", "-n", "shop", "-f", SHOP)
    assert code == 0
    rows = {r[0]: r[1] for r in columns(out)[1:]}
    assert rows["default-deny-all"] == "<none>"
    assert rows["cart-to-redis"] == "app=cart"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_output_round_trips_through_the_loader(capsys, tmp_path, fmt):
    code, out, _ = run(capsys, "get", "pods", "-A", "-o", fmt, "-f", SHOP)
    assert code == 0
    data = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert data["kind"] == "List" and len(data["items"]) == 16
    pod = next(i for i in data["items"] if i["metadata"]["name"].startswith("redis-"))
    assert pod["status"]["podIP"] and pod["spec"]["nodeName"]
    # Loading the printed pods (with the same nodes) keeps every address and placement.
    path = tmp_path / f"pods.{fmt}"
    path.write_text(out)
    code, again, _ = run(capsys, "get", "pods", "-A", "-o", "wide", "-f",
                         str(ROOT / "examples" / "shop" / "00-cluster.yaml"), "-f", str(path))
    code2, original, _ = run(capsys, "get", "pods", "-A", "-o", "wide", "-f", SHOP)
    assert code == code2 == 0 and again == original


def test_not_found_and_no_resources(capsys):
    code, _, err = run(capsys, "get", "pods", "nope", "-n", "shop", "-f", SHOP)
    assert code == 1 and 'pods "nope" not found' in err
    code, out, err = run(capsys, "get", "pods", "-n", "empty", "-f", SHOP)
    assert code == 0 and out == "" and "No resources found in empty namespace." in err


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
                   "spec:\n  ports:\n  - port: 70000\n")
    code, out, err = run(capsys, "get", "svc", "-f", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {bad}")
    assert "Service shop/web" in err and "spec.ports[0].port" in err and "70000" in err


def test_flags_override_the_settings_document(capsys):
    code, out, _ = run(capsys, "get", "pods", "-n", "shop", "-o", "wide", "-f", SHOP,
                       "--cni", "cilium", "--pod-cidr", "10.50.0.0/16")
    assert code == 0
    ips = [r[5] for r in columns(out)[1:]]
    assert ips and all(ip.startswith("10.50.") for ip in ips)


def test_generate_writes_a_loadable_cluster(capsys, tmp_path):
    out = tmp_path / "gen.json"
    code, _, _ = run(capsys, "generate", "--nodes", "4", "--pods", "30", "--services", "5",
                     "--policies", "3", "--out", str(out))
    assert code == 0
    code, text, _ = run(capsys, "get", "pods", "-A", "-f", str(out))
    assert code == 0 and len(text.splitlines()) == 31


def test_cluster_options_work_before_the_verb_too(capsys):
    code, before, _ = run(capsys, "-f", SHOP, "get", "nodes", "-o", "name")
    code2, after, _ = run(capsys, "get", "nodes", "-o", "name", "-f", SHOP)
    assert code == code2 == 0 and before == after == (
        "node/shop-control-plane\nnode/shop-worker\nnode/shop-worker2\n")
    code, out, err = run(capsys, "get", "nodes")
    assert code == 2 and out == "" and err.startswith("error: command line: -f: required")
