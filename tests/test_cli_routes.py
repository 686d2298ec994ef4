"""`netsim routes` as a user runs it: iproute2-style output and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cli import main
from tests.cni.test_calico import NGINX_MAC, cnimd_yaml

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cnimd(tmp_path):
    """Write the cni.md example cluster in a given mode; its path."""

    def _write(encapsulation: str = "VXLAN", **kwargs) -> str:
        path = tmp_path / f"{encapsulation}.yaml"
        path.write_text(cnimd_yaml(encapsulation, **kwargs))
        return str(path)

    return _write


def test_node_routes_print_as_ip_route(capsys, cnimd):
    code, out, err = run(capsys, "routes", "-f", cnimd("VXLAN"), "--node", "node1")
    assert (code, err) == (0, "")
    assert out == (
        "default via 192.168.1.1 dev eth0\n"
        "blackhole 10.244.1.64/26 proto 80\n"
        "10.244.1.65 dev calic440f455693 scope link\n"
        "10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink\n"
        "192.168.1.0/24 dev eth0 proto kernel scope link src 192.168.1.11\n"
    )


def test_neigh_and_fdb_sections(capsys, cnimd):
    code, out, _ = run(
        capsys, "routes", "-f", cnimd("VXLAN"), "--node", "node1", "--neigh", "--fdb"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "# ip route"
    neigh = lines.index("# ip neigh")
    fdb = lines.index("# bridge fdb show")
    assert lines[neigh + 1 : fdb] == [
        f"10.244.1.65 dev calic440f455693 lladdr {NGINX_MAC} PERMANENT",
        "10.244.2.0 dev vxlan.calico lladdr 66:2d:bf:44:a6:8b PERMANENT",
    ]
    assert lines[fdb + 1 :] == [
        "66:2d:bf:44:a6:8b dev vxlan.calico dst 192.168.1.12 self permanent"
    ]


def test_encapsulation_flag_overrides_the_config(capsys, cnimd):
    path = cnimd("VXLAN")
    _, out, _ = run(capsys, "routes", "-f", path, "--node", "node1", "--encapsulation", "IPIP")
    assert "10.244.2.0/26 via 192.168.1.12 dev tunl0 proto bird onlink" in out.splitlines()
    _, out, _ = run(capsys, "routes", "-f", SHOP, "--node", "shop-worker")
    assert sum(line.endswith("dev tunl0 proto bird onlink") for line in out.splitlines()) == 2
    _, out, _ = run(
        capsys, "routes", "-f", SHOP, "--node", "shop-worker", "--encapsulation", "None"
    )
    assert "tunl0" not in out and out.count(" dev eth0 proto bird\n") == 2


def test_pod_routes(capsys, cnimd):
    code, out, _ = run(capsys, "routes", "-f", cnimd("IPIP"), "--pod", "default/nginx", "--neigh")
    assert code == 0
    assert out == (
        "# ip route\n"
        "default via 169.254.1.1 dev eth0\n"
        "169.254.1.1 dev eth0 scope link\n"
        "# ip neigh\n"
        "169.254.1.1 dev eth0 lladdr ee:ee:ee:ee:ee:ee REACHABLE\n"
    )
    code, _, _ = run(
        capsys, "routes", "-f", cnimd("IPIP"), "--pod", "default/nginx", "--node", "node1"
    )
    assert code == 0


def test_ipv6_family(capsys, cnimd):
    path = cnimd("VXLAN", dual_stack=True)
    code, out, _ = run(
        capsys, "routes", "-f", path, "--node", "node1", "--family", "ipv6", "--neigh"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "# ip -6 route" and "# ip -6 neigh" in lines
    assert "default via fc00::1 dev eth0 metric 1024 pref medium" in lines
    assert not any(line.startswith("10.") for line in lines)
    code, out, _ = run(capsys, "routes", "-f", path, "--pod", "default/nginx", "--family", "ipv6")
    assert (
        out.splitlines()[-1]
        == "default via fe80::ecee:eeff:feee:eeee dev eth0 metric 1024 pref medium"
    )


def test_host_network_pod_shows_its_node(capsys, tmp_path, cnimd):
    path = tmp_path / "agent.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: kube-system}\n"
        "spec: {nodeName: node1, hostNetwork: true, containers: [{name: c, image: a}]}\n"
    )
    base = cnimd("IPIP")
    code, out, err = run(
        capsys, "routes", "-f", base, "-f", str(path), "--pod", "kube-system/agent"
    )
    assert code == 0 and "hostNetwork" in err
    _, node_out, _ = run(capsys, "routes", "-f", base, "-f", str(path), "--node", "node1")
    assert out == node_out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--node", "nope"), "error: command line: --node: no Node named 'nope'"),
        (("--pod", "default/nope"), "error: command line: --pod: no Pod default/nope"),
        (("--pod", "nginx"), "error: command line: --pod: must be NAMESPACE/NAME, got 'nginx'"),
        ((), "error: command line: --node: required: --node NAME or --pod NAMESPACE/NAME"),
        (
            ("--pod", "default/nginx", "--node", "node2"),
            "error: command line: --pod: Pod default/nginx runs on node1, not node2",
        ),
        (
            ("--node", "node1", "--family", "ipv6"),
            "error: command line: --family: the cluster has no ipv6 pod CIDR (10.244.0.0/16)",
        ),
        (
            ("--node", "node1", "--cni", "cilium"),
            "error: command line: --cni: netsim models Calico's routes only so far; Cilium's "
            "(cilium_host routes, the ipcache) come in a later step",
        ),
    ],
)
def test_errors_are_one_line(capsys, cnimd, argv, message):
    code, out, err = run(capsys, "routes", "-f", cnimd("IPIP"), *argv)
    assert (code, out, err) == (2, "", message + "\n")


def test_cilium_in_the_config_names_the_config(capsys, tmp_path):
    path = tmp_path / "cilium.yaml"
    path.write_text(
        "apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nmetadata: {name: n}\n"
        "spec: {cni: {name: cilium}}\n---\n"
        "apiVersion: v1\nkind: Node\nmetadata: {name: node1}\n"
    )
    code, _, err = run(capsys, "routes", "-f", str(path), "--node", "node1")
    assert code == 2 and "NetsimConfig: spec.cni.name: netsim models Calico's routes only" in err


def test_a_pod_without_a_namespace(capsys, tmp_path, cnimd):
    path = tmp_path / "lost.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lost, namespace: default}\n"
        "spec: {nodeSelector: {disk: ssd}, containers: [{name: c, image: a}]}\n"
    )
    code, _, err = run(
        capsys, "routes", "-q", "-f", cnimd("IPIP"), "-f", str(path), "--pod", "default/lost"
    )
    assert (code, err) == (
        2,
        "error: Pod default/lost: is not scheduled to a node: it has no network namespace yet\n",
    )
