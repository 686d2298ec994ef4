"""`netsim proxy rules` and `netsim iptables trace` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from netsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def web_cluster_ip(capsys) -> str:
    _, out, _ = run(capsys, "get", "svc", "web", "-n", "shop", "-o", "json", "-f", SHOP)
    return json.loads(out)["spec"]["clusterIP"]


def test_proxy_rules_prints_the_restore_payload(capsys):
    code, out, _ = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "shop-worker")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "*filter" and "*nat" in lines and lines[-1] == "COMMIT"
    ip = web_cluster_ip(capsys)
    # shop/web has three ready endpoints: one cluster IP rule, three SVC -> SEP rules.
    rule = next(line for line in lines if f"-d {ip}" in line and "KUBE-SERVICES" in line)
    assert '--comment "shop/web:http cluster IP"' in rule and "--dport 80" in rule
    svc = rule.split("-j ")[1]
    assert sum(line.startswith(f"-A {svc} ") for line in lines) == 1 + 3  # masq + 3 endpoints
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in lines


def test_proxy_rules_ipvs_and_save_forms(capsys):
    code, out, _ = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "shop-worker",
                       "--mode", "ipvs", "-o", "ipvsadm")
    assert code == 0 and out.startswith("IP Virtual Server version 1.2.1 (size=4096)")
    assert f"TCP  {web_cluster_ip(capsys)}:80 rr" in out
    code, out, _ = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "shop-worker",
                       "--mode", "ipvs", "-o", "ipset")
    assert code == 0 and "Name: KUBE-CLUSTER-IP" in out
    code, out, _ = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "shop-worker",
                       "-o", "save")
    assert code == 0 and ":PREROUTING ACCEPT [0:0]" in out
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in out


def test_proxy_rules_bad_node_and_family(capsys):
    code, _, err = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "nope")
    assert code == 2 and "--node: no Node named 'nope'" in err
    code, _, err = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "shop-worker",
                       "--family", "ipv6")
    assert code == 2 and "no IPv6 service CIDR" in err


def test_iptables_trace_forks_over_endpoints(capsys, tmp_path):
    save = tmp_path / "node.save"
    code, out, _ = run(capsys, "proxy", "rules", "-f", SHOP, "--node", "shop-worker",
                       "-o", "save")
    save.write_text(out)
    ip = web_cluster_ip(capsys)
    code, out, _ = run(capsys, "iptables", "trace", "--save", str(save), "--packet",
                       f"tcp 198.51.100.7:40000 -> {ip}:80", "--local", "172.18.0.3",
                       "--iface", "eth0=172.18.0.3", "--in-iface", "eth0", "-o", "json")
    assert code == 0
    branches = json.loads(out)
    # Three ready web endpoints: three branches of 1/3, each DNATed to port 8080 and, coming
    # from outside the cluster CIDR, masqueraded to the node's address.
    assert len(branches) == 3
    assert abs(sum(b["probability"] for b in branches) - 1) < 1e-9
    assert all(abs(b["probability"] - 1 / 3) < 1e-6 for b in branches)
    assert all(b["verdict"] == "ACCEPT" and b["packet"].startswith("tcp 172.18.0.3:")
               and b["packet"].split(" -> ")[1].split(" ")[0].endswith(":8080")
               for b in branches)
    assert len({b["packet"] for b in branches}) == 3
    assert any("-j KUBE-MARK-MASQ" in line for line in branches[0]["trace"])


def test_iptables_trace_bad_input(capsys, tmp_path):
    bad = tmp_path / "bad.save"
    bad.write_text("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m quota --quota 5 -j ACCEPT\n"
                   "COMMIT\n")
    code, _, err = run(capsys, "iptables", "trace", "--save", str(bad), "--packet",
                       "tcp 10.0.0.1:1 -> 10.0.0.2:80")
    assert code == 2 and err.count("\n") == 1 and f"{bad}:3" in err and "quota" in err
    code, out, _ = run(capsys, "iptables", "trace", "--save", str(bad), "--packet",
                       "tcp 10.0.0.1:1 -> 10.0.0.2:80", "--hook", "OUTPUT", "--lenient")
    # Lenient parsing loads the file; a locally generated packet meets only OUTPUT and
    # POSTROUTING, whose ACCEPT policies decide.
    assert code == 0 and out.startswith("branch 1 of 1 (p=1.0000): ACCEPT")
    code, _, err = run(capsys, "iptables", "trace", "--save", str(bad), "--packet",
                       "tcp 10.0.0.1 -> 10.0.0.2")
    assert code == 2 and "--packet" in err
