"""`netsim reach --dns`: can each pod resolve names under its egress policy? Expectations
from the NetworkPolicy specification: a default-deny egress isolates every pod of app; only
a rule to kube-system on UDP/TCP 53 lets queries reach CoreDNS (tests/data/dns)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsim.cli import main
from netsim.cluster import load
from netsim.reach_dns import dns_reach

DATA = Path(__file__).parent / "data" / "dns"


def reach(*overlays: str):
    cluster = load([str(DATA / "cluster.yaml"), *(str(DATA / o) for o in overlays)])
    pods = tuple(p for p in cluster.pods if p.namespace == "app" and p.ip)
    server, rows = dns_reach(cluster, pods)
    return server, {r.pod: r for r in rows}


@pytest.mark.parametrize("overlays,udp,tcp", [
    ((), True, True),
    (("deny-egress.yaml",), False, False),
    (("deny-egress.yaml", "allow-dns.yaml"), True, True),
    (("deny-egress.yaml", "allow-dns-udp-only.yaml"), True, False),
])
def test_dns_under_egress_policy(overlays, udp, tcp):
    server, rows = reach(*overlays)
    assert server.startswith("kube-system/kube-dns (10.96.0.10): kube-system/coredns-a")
    client = rows["app/client"]
    assert (client.udp, client.tcp) == (udp, tcp)
    if not udp:
        assert "NetworkPolicy app/default-deny-egress" in client.reason
    assert rows["app/hostnet"].reason == "hostNetwork, dnsPolicy ClusterFirst: the node's resolver"


def test_cli_table_and_json(capsys):
    args = ["reach", "-q", "-f", str(DATA / "cluster.yaml"), "-f",
            str(DATA / "deny-egress.yaml"), "--dns", "-n", "app"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith("  app/client "))
    assert row.split()[1:3] == ["NO", "NO"]
    assert main([*args, "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dns"]["pods"]["app/client"]["udp"] is False
    assert data["dns"]["pods"]["app/hostnet"] == {
        "udp": True, "tcp": True,
        "reason": "hostNetwork, dnsPolicy ClusterFirst: the node's resolver"}


def test_explain_to_a_service_name_explains_each_endpoint_at_its_target_port(capsys):
    args = ["explain", "-q", "-f", str(DATA / "cluster.yaml"), "--from", "app/client",
            "--to", "web", "--port", "80"]
    assert main(args) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if " -> " in line and "TCP/" in line]
    # Service web (app) port 80 -> targetPort http (8080) on its ready endpoint, web-1
    # (web-2 is not Ready, so the Service does not send to it)
    assert heads == ["app/client -> app/web-1 (via web:80 -> 8080) TCP/8080: ALLOWED"]


def test_explain_to_an_unknown_name_is_a_one_line_error(capsys):
    args = ["explain", "-q", "-f", str(DATA / "cluster.yaml"), "--from", "app/client",
            "--to", "nope.app.svc.cluster.local.", "--port", "80"]
    assert main(args) == 2
    assert "does not resolve from app/client" in capsys.readouterr().err


def test_expectations_by_name_fail_when_dns_is_blocked(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("apiVersion: netsim/v1alpha1\nkind: ConnectivityExpectations\n"
                   "metadata: {name: dns}\nspec:\n  expectations:\n"
                   "  - name: client reaches web by name\n    from: {pod: app/client}\n"
                   "    to: {name: web, port: 80}\n    expect: allow\n")
    base = ["test", "-q", str(exp), "-f", str(DATA / "cluster.yaml")]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "-f", str(DATA / "deny-egress.yaml")]) == 1
    assert "dns-failed" in capsys.readouterr().out
    assert main([*base, "-f", str(DATA / "deny-egress.yaml"), "-f",
                 str(DATA / "allow-dns.yaml")]) == 0
