"""`netsim maps` as a user runs it: cilium-dbg tables per node and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from netsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")
TINY = str(ROOT / "tests" / "data" / "cilium" / "tiny.yaml")  # cni: cilium in its NetsimConfig


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_one_map_prints_the_bare_table(capsys):
    code, out, err = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--map", "ipcache")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "IP PREFIX/ADDRESS   IDENTITY"
    assert lines[1].rstrip() == \
        "0.0.0.0/0           identity=2 encryptkey=0 tunnelendpoint=0.0.0.0 flags=<none>"
    assert "10.244.2.10/32      identity=258 encryptkey=0 tunnelendpoint=192.168.1.12 " \
           "flags=<none>" in [line.rstrip() for line in lines]


def test_all_maps_under_cilium_dbg_headers(capsys):
    code, out, _ = run(capsys, "maps", "-f", TINY, "--node", "node-a")
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("# ")]
    assert headers == ["# cilium-dbg bpf ipcache list", "# cilium-dbg bpf endpoint list",
                       "# cilium-dbg bpf lb list", "# cilium-dbg bpf policy get 1000",
                       "# cilium-dbg bpf policy get 1350", "# cilium-dbg identity list"]


def test_endpoint_by_id_or_pod(capsys):
    _, by_pod, _ = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--endpoint",
                       "default/web-1")
    _, by_id, _ = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--map", "policy",
                      "--endpoint", "1000")
    assert by_pod == by_id
    assert by_pod.startswith("POLICY   DIRECTION   LABELS (source:key[=value])")


def test_lb_views(capsys):
    _, out, _ = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--map", "lb", "--backends")
    assert out == "ID   BACKEND ADDRESS (REVNAT_ID) (SLOT)\n1    TCP://10.244.1.10   \n" \
                  "2    TCP://10.244.2.10   \n"


def test_json(capsys):
    code, out, _ = run(capsys, "maps", "-f", TINY, "--node", "node-b", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["node"] == "node-b"
    assert set(data) == {"node", "ipcache", "endpoints", "lb", "policy", "identities"}
    (svc,) = data["lb"]["services"]
    assert svc["frontend"] == ["10.96.0.100", 80, "TCP"] and svc["count"] == 2
    assert {"id": 258, "labels": [
        "k8s:app=web", "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=default",
        "k8s:io.kubernetes.pod.namespace=default"]} in data["identities"]


def test_the_cni_flag_switches_a_calico_cluster_to_cilium(capsys):
    code, out, err = run(capsys, "maps", "-f", SHOP, "--node", "shop-worker")
    assert code == 2 and out == ""
    assert "the cluster's CNI is calico" in err and "--cni cilium" in err
    assert "spec.cni.name" in err  # the NetsimConfig chose calico
    code, out, _ = run(capsys, "maps", "-f", SHOP, "--cni", "cilium", "--node", "shop-worker",
                       "--map", "endpoints")
    assert code == 0 and out.startswith("IP ADDRESS")


def test_errors(capsys):
    code, _, err = run(capsys, "maps", "-f", TINY, "--node", "node-z")
    assert code == 2 and "--node: no Node named 'node-z' (nodes: node-a, node-b)" in err
    code, _, err = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--endpoint",
                       "default/db")
    assert code == 2 and "Pod default/db has no endpoint on node node-a (it runs on node-b)" \
        in err
    code, _, err = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--endpoint", "7")
    assert code == 2 and "no endpoint 7 on node node-a (endpoints: 1000, 1350)" in err
    code, _, err = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--revnat")
    assert code == 2 and "--revnat is a view of the lb map" in err
    code, _, err = run(capsys, "maps", "-f", TINY, "--node", "node-a", "--map", "lb",
                       "--endpoint", "1000")
    assert code == 2 and "--endpoint selects a policy map" in err
