"""kubeadm's CoreDNS addon, added when the manifests hold no cluster DNS: what it creates
(cmd/kubeadm/app/phases/addons/dns/manifests.go), that it moves no input pod, that the
manifests' own DNS wins, and that queries to it are real traffic through policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cli import main
from netsim.dns import dns_service
from tests.helpers import config, load_yaml, node

DNS_DATA = Path(__file__).parent / "data" / "dns"

NODES = node("n1") + node("n2") + node("n3")
APP = """
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: app, labels: {app: client}}
spec: {containers: [{name: c, image: curl}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
"""
CIDRS = "podCIDRs: [10.10.0.0/16]\nserviceCIDRs: [10.100.0.0/16]\n"
KUBE_DNS = """
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: 10.100.0.53
  selector: {k8s-app: kube-dns}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
"""
COREDNS_POD = """
apiVersion: v1
kind: Pod
metadata: {name: coredns-own, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: coredns, ports: [{containerPort: 53, protocol: UDP}]}]}
---
"""


def _app(*extra: str, dns: str = "", namespace: str = "app"):
    app = APP.replace("namespace: app", f"namespace: {namespace}")
    return load_yaml(config(CIDRS + dns) + NODES + app + "".join(extra))


def test_the_addon_is_kubeadms_service_and_deployment():
    c = _app()
    svc = c.service("kube-system", "kube-dns")
    assert svc.cluster_ips == ("10.100.0.10",)  # GetDNSIP: the tenth address of the range
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    assert dict(svc.labels) == {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"}
    assert dict(svc.selector) == {"k8s-app": "kube-dns"}
    (deploy,) = [w for w in c.workloads if w.namespace == "kube-system"]
    assert (deploy.meta.kind, deploy.name, deploy.replicas) == ("Deployment", "coredns", 2)
    pods = c.pods_in("kube-system")
    assert len(pods) == 2 and all(p.workload == "Deployment/coredns" for p in pods)
    assert all(p.phase == "Running" and p.ip.startswith("10.10.") for p in pods)
    assert len({p.node_name for p in pods}) == 2  # replicas spread over two nodes
    endpoints = {a for s in c.slices_for(svc) for e in s.endpoints for a in e.addresses}
    assert endpoints == {p.ip for p in pods}
    assert c.namespace("kube-system").implicit
    assert [w for w in c.warnings if "cluster DNS" in w] == [
        "the input holds no cluster DNS: created Service kube-system/kube-dns (10.100.0.10) "
        "and Deployment kube-system/coredns (2 pods) as kubeadm does; NetsimConfig "
        "spec.dns.disabled: true leaves them out"]
    server = dns_service(c)
    assert (server.key, server.emulated, set(server.pods)) == (
        "kube-system/kube-dns", False, {p.key for p in pods})


@pytest.mark.parametrize("cni", ["{name: calico}", "{name: calico, calico: {encapsulation: None}}",
                                 "{name: cilium}"])
def test_input_pods_keep_their_nodes_addresses_and_blocks(cni):
    # "shop" sorts after kube-system: the addon's pods must still come last
    cni_line = f"cni: {cni}\n"
    with_addon = _app(dns=cni_line, namespace="shop")
    without = _app(dns=cni_line + "dns: {disabled: true}\n", namespace="shop")
    mine = {p.key: (p.node_name, p.ips) for p in without.pods}
    assert {k: v for k, v in ((p.key, (p.node_name, p.ips)) for p in with_addon.pods)
            if k in mine} == mine
    assert set(without.addressing.blocks.items()) <= set(with_addon.addressing.blocks.items())
    assert {s.key: s.cluster_ips for s in with_addon.services if s.namespace == "shop"} == {
        s.key: s.cluster_ips for s in without.services}


def test_the_manifests_dns_wins():
    c = _app(KUBE_DNS, COREDNS_POD)
    assert [s.key for s in c.services if s.namespace == "kube-system"] == [
        "kube-system/kube-dns"]
    assert c.service("kube-system", "kube-dns").cluster_ips == ("10.100.0.53",)
    assert [p.name for p in c.pods_in("kube-system")] == ["coredns-own"]
    assert not any("cluster DNS" in w for w in c.warnings)


def test_coredns_pods_without_their_service_get_only_the_service():
    c = _app(COREDNS_POD)
    assert [p.name for p in c.pods_in("kube-system")] == ["coredns-own"]
    svc = c.service("kube-system", "kube-dns")
    ips = {a for s in c.slices_for(svc) for e in s.endpoints for a in e.addresses}
    assert ips == {c.pod("kube-system", "coredns-own").ip}
    (warning,) = [w for w in c.warnings if "cluster DNS" in w]
    assert "Service kube-system/kube-dns (10.100.0.10)" in warning and "Deployment" not in warning


def test_a_taken_tenth_address_gets_a_free_one():
    taken = APP.replace("ports: [{port: 80}]", "clusterIP: 10.100.0.10\n  ports: [{port: 80}]")
    c = load_yaml(config(CIDRS) + NODES + taken)
    assert c.service("app", "web").cluster_ips == ("10.100.0.10",)
    (ip,) = c.service("kube-system", "kube-dns").cluster_ips
    assert ip != "10.100.0.10" and ip.startswith("10.100.")
    assert any("the tenth address of the service range is taken" in w for w in c.warnings)


def test_a_range_without_a_tenth_address_gets_a_free_one():
    c = load_yaml(config("serviceCIDRs: [10.100.0.0/29]\n") + NODES + APP)
    (ip,) = c.service("kube-system", "kube-dns").cluster_ips
    assert ip in {f"10.100.0.{i}" for i in range(1, 7)} - {c.service("app", "web").cluster_ip}


def test_dns_disabled_leaves_it_out():
    c = _app(dns="dns: {disabled: true}\n")
    assert c.service("kube-system", "kube-dns") is None and not c.pods_in("kube-system")
    assert not any("cluster DNS" in w for w in c.warnings)
    assert dns_service(c).emulated


# ---------------------------------------------------------------- the query is traffic


@pytest.fixture
def app_file(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(config(CIDRS) + NODES + APP)
    return str(path)


def _trace(capsys, *args):
    code = main(["trace", "-q", *args])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_a_name_is_resolved_through_the_added_dns_service(capsys, app_file, cni):
    code, lines = _trace(capsys, "-f", app_file, "--cni", cni, "--from", "app/client",
                         "--to", "web:80", "--verbosity", "detailed")
    assert code == 0
    assert "  dns: web.app.svc.cluster.local -> " + _web_ip(app_file) in lines
    dns_part = lines[lines.index("dns lookup"):lines.index("request")]
    # the query went to 10.100.0.10:53 and was delivered to one of the addon's pods
    assert any("10.100.0.10" in line for line in dns_part)
    assert any("kube-system/coredns-" in line for line in dns_part)
    assert not any("query not traced" in line for line in dns_part)


def _web_ip(path: str) -> str:
    from netsim.cluster import load

    return load([path]).service("app", "web").cluster_ip


@pytest.mark.parametrize("cni", ["calico", "cilium"])
def test_default_deny_egress_cuts_the_added_dns_and_the_docs_rule_restores_it(
        capsys, app_file, cni):
    deny = ["-f", str(DNS_DATA / "deny-egress.yaml")]
    code, lines = _trace(capsys, "-f", app_file, *deny, "--cni", cni, "--from", "app/client",
                         "--to", "web:80")
    assert code == 1
    assert lines[2].startswith("result: dropped (dns-failed): the DNS query to "
                               "10.100.0.10:53/UDP never got an answer: policy-denied")
    assert lines[2].endswith("(p=1.0000)")  # the query fails whichever CoreDNS pod it meets
    allow = ["-f", str(DNS_DATA / "allow-dns.yaml")]
    code, lines = _trace(capsys, "-f", app_file, *deny, *allow, "--cni", cni, "--from",
                         "app/client", "--to", "web:80")
    assert code == 0 and lines[2].startswith("result: delivered to app/web-")


def test_reach_dns_names_the_added_server_and_the_denying_policy(capsys, app_file):
    code = main(["reach", "--dns", "-f", app_file, "-f", str(DNS_DATA / "deny-egress.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    dns = out[out.index("DNS: "):].splitlines()
    assert dns[0].startswith("DNS: UDP and TCP 53 to kube-system/kube-dns (10.100.0.10): "
                             "kube-system/coredns-")
    client = next(line for line in dns if line.lstrip().startswith("app/client"))
    assert client.split()[1:3] == ["NO", "NO"] and "app/default-deny-egress" in client
