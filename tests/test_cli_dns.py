"""`netsim dns` from the command line: nslookup-like text, dig +short, JSON, exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netsim.cli import main

CLUSTER = str(Path(__file__).parent / "data" / "dns" / "cluster.yaml")


def run(capsys, *args):
    code = main(["dns", "-q", "-f", CLUSTER, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_is_an_nslookup_block_then_the_search_path(capsys):
    code, out, _ = run(capsys, "--from", "app/client", "web.app")
    assert code == 0
    assert out.splitlines()[:9] == [
        "Server:\t\t10.96.0.10",
        "Address:\t10.96.0.10#53",
        "",
        "Name:\tweb.app.svc.cluster.local",
        "Address: 10.96.0.80",
        "",
        "search path from app/client (dnsPolicy ClusterFirst, ndots 5, search "
        "app.svc.cluster.local svc.cluster.local cluster.local):",
        "  web.app.app.svc.cluster.local.  NXDOMAIN",
        "  web.app.svc.cluster.local.      NOERROR: A 10.96.0.80",
    ]
    assert "note: kubelet also appends the node's own search domains" in out


def test_nxdomain_exits_1(capsys):
    code, out, _ = run(capsys, "--from", "app/client", "nope.app.svc.cluster.local")
    assert code == 1
    assert "** server can't find nope.app.svc.cluster.local: NXDOMAIN" in out.splitlines()
    tried = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert tried == [["nope.app.svc.cluster.local.app.svc.cluster.local.", "NXDOMAIN"],
                     ["nope.app.svc.cluster.local.svc.cluster.local.", "NXDOMAIN"],
                     ["nope.app.svc.cluster.local.cluster.local.", "NXDOMAIN"],
                     ["nope.app.svc.cluster.local.", "NXDOMAIN"]]


def test_nodata_exits_1(capsys):
    code, out, _ = run(capsys, "web.app.svc.cluster.local", "--type", "AAAA")
    assert code == 1
    assert "*** Can't find web.app.svc.cluster.local: No answer" in out.splitlines()


def test_forwarded_exits_0_and_says_so(capsys):
    code, out, _ = run(capsys, "--from", "app/client", "www.example.com")
    assert code == 0
    assert ";; www.example.com: forwarded upstream, answer unknown to netsim" in out
    last = [line for line in out.splitlines() if line.startswith("  ")][-1]
    assert last.split(None, 1) == ["www.example.com.",
                                   "forwarded upstream (answer unknown to netsim)"]


@pytest.mark.parametrize(("args", "expected"), [
    (("web.app.svc.cluster.local",), "10.96.0.80\n"),
    (("dual.app.svc.cluster.local", "-t", "AAAA"), "fd00:10:96::81\n"),
    (("--from", "app/client", "cache.db"), "10.244.3.1\n10.244.3.2\n"),
    (("--from", "app/client", "_redis._tcp.cache.db", "-t", "srv"),
     "0 50 6380 cache-a.cache.db.svc.cluster.local.\n"
     "0 50 6380 10-244-3-2.cache.db.svc.cluster.local.\n"),
    (("ext.app.svc.cluster.local", "-t", "CNAME"), "www.example.com.\n"),
    (("alias.app.svc.cluster.local",), "web.app.svc.cluster.local.\n10.96.0.80\n"),
    (("10.96.0.80",), "web.app.svc.cluster.local.\n"),
    (("nope.app.svc.cluster.local",), ""),
])
def test_short_prints_like_dig_short(capsys, args, expected):
    _, out, _ = run(capsys, *args, "-o", "short")
    assert out == expected


def test_short_forwarded_note_goes_to_stderr(capsys):
    code, out, err = run(capsys, "ext.app.svc.cluster.local", "-o", "short")
    assert (code, out) == (0, "www.example.com.\n")
    assert "forwarded upstream" in err


def test_srv_and_ptr_text(capsys):
    _, out, _ = run(capsys, "_http._tcp.web.app.svc.cluster.local", "-t", "SRV")
    assert "_http._tcp.web.app.svc.cluster.local\tservice = 0 100 80 " \
        "web.app.svc.cluster.local." in out.splitlines()
    _, out, _ = run(capsys, "10.244.3.1")
    assert "1.3.244.10.in-addr.arpa\tname = cache-a.cache.db.svc.cluster.local." in \
        out.splitlines()
    _, out, _ = run(capsys, "ext.app.svc.cluster.local", "-t", "CNAME")
    assert "ext.app.svc.cluster.local\tcanonical name = www.example.com." in out.splitlines()


def test_json_has_the_same_facts(capsys):
    code, out, _ = run(capsys, "--from", "app/client", "web.app", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["query"], data["type"], data["from"], data["status"], data["rcode"]) == (
        "web.app", "A", "app/client", "answer", "NOERROR")
    assert data["records"] == [{"name": "web.app.svc.cluster.local", "type": "A", "ttl": 30,
                                "data": "10.96.0.80"}]
    assert [(a["name"], a["status"]) for a in data["attempts"]] == [
        ("web.app.app.svc.cluster.local", "nxdomain"), ("web.app.svc.cluster.local", "answer")]
    assert data["resolv_conf"] == {"dns_policy": "ClusterFirst", "nameservers": ["10.96.0.10"],
                                   "search": ["app.svc.cluster.local", "svc.cluster.local",
                                              "cluster.local"], "ndots": 5}
    assert data["dns_service"]["service"] == "kube-system/kube-dns"
    assert data["dns_service"]["emulated"] is False
    assert data["addresses"] == ["10.96.0.80"]


def test_dns_policy_default_from_the_command_line(capsys):
    code, out, _ = run(capsys, "--from", "app/client", "web.app", "--dns-policy", "Default")
    assert code == 0
    assert "Server:\t\t(the node's resolver: unknown to netsim)" in out.splitlines()


@pytest.mark.parametrize(("args", "message"), [
    (("--from", "app/nobody", "web"), "error: command line: --from: no Pod 'app/nobody'"),
    (("bad name!",), "error: dns: name: 'bad name!' is not a DNS name"),
    (("10.96.0.80", "-t", "A"), "error: dns: name: 10.96.0.80 is an address"),
])
def test_bad_input_exits_2_with_one_line(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
