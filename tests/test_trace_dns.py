"""A trace to a name: the DNS query is real traffic through kube-proxy (or Cilium) and
NetworkPolicy, and a default-deny egress without a DNS rule breaks resolution, naming the
policy (the Kubernetes docs' advice: allow UDP and TCP 53 to kube-system).

tests/data/dns/cluster.yaml: kube-system/kube-dns 10.96.0.10 (coredns-a), app/client,
app/web (web-1, web-2); overlays deny-egress.yaml (default deny + allow to web) and
allow-dns.yaml (UDP/TCP 53 to kube-system)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cli import main

DATA = Path(__file__).parent / "data" / "dns"
BASE = ["-q", "-f", str(DATA / "cluster.yaml")]
DENY = ["-f", str(DATA / "deny-egress.yaml")]
ALLOW = ["-f", str(DATA / "allow-dns.yaml")]


def trace(capsys, *args):
    code = main(["trace", *args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_a_name_is_looked_up_then_connected(capsys, cni):
    code, out = trace(capsys, *BASE, "--cni", cni, "--from", "app/client", "--to", "web:80",
                      "--verbosity", "detailed")
    assert code == 0
    lines = out.splitlines()
    assert "dns lookup" in lines
    assert "  dns: resolve web (A)" in lines
    assert any(line.startswith("  dns: web.app.svc.cluster.local -> ") for line in lines)
    # the query itself went to the DNS Service and reached CoreDNS
    assert any("kube-system/coredns-a" in line for line in lines)


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_default_deny_egress_without_dns_rule_breaks_resolution(capsys, cni):
    code, out = trace(capsys, *BASE, *DENY, "--cni", cni, "--from", "app/client", "--to",
                      "web:80")
    assert code == 1
    result = out.splitlines()[2]
    assert result.startswith("result: dropped (dns-failed): the DNS query to 10.96.0.10:53/UDP"
                             " never got an answer: policy-denied")
    assert "default-deny-egress" in result or "Policy denied" in result


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_allowing_dns_to_kube_system_restores_it(capsys, cni):
    code, out = trace(capsys, *BASE, *DENY, *ALLOW, "--cni", cni, "--from", "app/client",
                      "--to", "web:80")
    assert code == 0
    assert out.splitlines()[2].startswith("result: delivered to app/web-")


def test_unknown_cluster_name_is_nxdomain_and_a_short_one_goes_upstream(capsys):
    code, out = trace(capsys, *BASE, "--from", "app/client", "--to",
                      "nope.app.svc.cluster.local.:80")
    assert code == 1
    assert ("result: rejected (dns-failed): nope.app.svc.cluster.local.: the name does not "
            "exist") in out
    # a short name that matches nothing ends, as glibc does, with the bare name upstream
    code, out = trace(capsys, *BASE, "--from", "app/client", "--to", "nope.app:80")
    assert code == 1
    assert "the name is outside the cluster" in out.splitlines()[2]


def test_url_destination_carries_the_request(capsys):
    code, out = trace(capsys, *BASE, "--from", "app/client", "--to", "http://web.app/x")
    assert code == 0
    assert out.splitlines()[0].endswith("carrying GET http://web.app/x")
