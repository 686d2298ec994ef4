"""Inputs real clusters produce that once went wrong: each row states the Kubernetes fact."""

from __future__ import annotations

import pytest

from netsim.cli import main
from netsim.errors import InputError
from proxy.kube_proxy.options import options_for
from tests.helpers import config, load_yaml, node

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
---
"""


def test_deployment_pods_without_their_replicaset_are_not_expanded_again(capsys, tmp_path):
    # `kubectl get deploy,pods -o yaml` has the Pods but not the ReplicaSet between them.
    source = tmp_path / "deploy.yaml"
    source.write_text(DEPLOY)
    assert main(["get", "pods", "-o", "yaml", "-q", "-f", str(source)]) == 0
    pods = tmp_path / "pods.yaml"
    pods.write_text(capsys.readouterr().out)
    assert main(["get", "pods", "-o", "name", "-q", "-f", str(pods), "-f", str(source)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_list_inside_a_list_is_flattened():
    cluster = load_yaml("""
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: inner}}
""")
    assert cluster.namespace("inner") is not None
    assert not any("skipped" in w for w in cluster.warnings)


@pytest.mark.parametrize("target", ["0", '""'])
def test_zero_or_empty_target_port_defaults_to_the_port(target):
    # SetDefaults_Service: targetPort 0 or "" becomes the port.
    cluster = load_yaml(node("a") + f"""
apiVersion: v1
kind: Service
metadata: {{name: s}}
spec: {{ports: [{{port: 8080, targetPort: {target}}}]}}
""")
    assert cluster.service("default", "s").ports[0].target == 8080


def test_empty_pod_ip_strings_mean_unset():
    cluster = load_yaml(node("a") + """
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {nodeName: a, containers: [{name: c}]}
status: {podIP: "", hostIP: "", podIPs: [{ip: ""}]}
""")
    pod = cluster.pod("default", "p")
    assert pod.ip and pod.addressed  # netsim's IPAM filled it


def test_deletion_timestamp_survives_the_yaml_round_trip(capsys, tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text(node("a") + """
apiVersion: v1
kind: Pod
metadata: {name: p, deletionTimestamp: "2026-01-01T00:00:00Z"}
spec: {nodeName: a, containers: [{name: c}]}
status: {podIP: 10.244.0.5}
""")
    assert main(["get", "pods", "p", "-o", "yaml", "-f", str(path)]) == 0
    assert "deletionTimestamp: '2026-01-01T00:00:00Z'" in capsys.readouterr().out


KPC = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n{mode}---\n"


@pytest.mark.parametrize(("kpc_mode", "overrides", "flag", "expected"), [
    ("", {}, None, "iptables"),  # nothing set: kube-proxy's default
    ("mode: ipvs\n", {}, None, "ipvs"),  # the KubeProxyConfiguration's mode
    ("", {"proxy_mode": "ipvs"}, None, "ipvs"),  # --proxy-mode beats an unset mode
    ("mode: iptables\n", {"proxy_mode": "ipvs"}, None, "ipvs"),  # flags beat documents
    ("mode: ipvs\n", {"proxy_mode": "ipvs"}, "iptables", "iptables"),  # --mode beats all
])
def test_proxy_mode_precedence(kpc_mode, overrides, flag, expected):
    cluster = load_yaml(node("a") + KPC.format(mode=kpc_mode), overrides=overrides)
    assert options_for(cluster, "a", mode=flag).mode == expected


def test_cilium_has_no_kube_proxy_unless_asked():
    cluster = load_yaml(node("a"), overrides={"cni": "cilium"})
    assert cluster.settings.proxy_mode == "none"
    with pytest.raises(InputError, match="no kube-proxy runs on this cluster"):
        options_for(cluster, "a")
    assert options_for(cluster, "a", mode="iptables").mode == "iptables"
    explicit = load_yaml(node("a") + config("proxy: {mode: ipvs}"), overrides={"cni": "cilium"})
    assert explicit.settings.proxy_mode == "ipvs"


LB_STATUS = node("a", ip="172.18.0.3") + """
apiVersion: v1
kind: Service
metadata: {name: lb}
spec: {type: LoadBalancer, selector: {app: x}, ports: [{port: 80, nodePort: 30080}]}
status: {loadBalancer: {ingress: [INGRESS]}}
"""


def test_a_hostname_load_balancer_gets_no_invented_address(capsys, tmp_path):
    # AWS ELBs report a hostname, not an IP: kubectl shows it as EXTERNAL-IP.
    path = tmp_path / "lb.yaml"
    path.write_text(LB_STATUS.replace("INGRESS", "{hostname: a1.elb.example.com}"))
    assert main(["get", "svc", "lb", "-f", str(path)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[3] == "a1.elb.example.com"


def test_kube_proxy_skips_load_balancer_ips_in_proxy_mode():
    # ipMode: Proxy means the load balancer itself forwards to the nodes (KEP-1860).
    from proxy.kube_proxy.serviceports import service_ports

    cluster = load_yaml(LB_STATUS.replace("INGRESS", "{ip: 203.0.113.9, ipMode: Proxy}"))
    assert cluster.service("default", "lb").load_balancer_ingress == ("203.0.113.9",)
    assert service_ports(cluster)[0].lb_ips == ()
    vip = load_yaml(LB_STATUS.replace("INGRESS", "{ip: 203.0.113.9}"))
    assert service_ports(vip)[0].lb_ips == ("203.0.113.9",)


# ---------------------------------------------------------------- session-1 validation gaps

SVC = """
apiVersion: v1
kind: Service
metadata: {{name: s, namespace: a}}
spec:
  selector: {{app: s}}
  ports: [{{port: 80}}]
{spec}
"""
DUAL = config("podCIDRs: [10.244.0.0/16, 'fd00:10:244::/56']\n"
              "serviceCIDRs: [10.96.0.0/12, 'fd00:10:96::/112']")


@pytest.mark.parametrize(("spec", "given"), [
    ("  ipFamilyPolicy: SingleStack\n  clusterIP: 10.96.0.20\n"
     "  clusterIPs: [10.96.0.20, 'fd00:10:96::20']", "clusterIPs holds two addresses"),
    ("  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4, IPv6]",
     "ipFamilies holds two families"),
])
def test_single_stack_refuses_two_families(spec, given):
    # The API server's allocator refuses a SingleStack Service with two addresses or families.
    with pytest.raises(InputError, match=f"spec.ipFamilyPolicy: must be RequireDualStack or "
                                         f"PreferDualStack when {given}"):
        load_yaml(DUAL + SVC.format(spec=spec))


def test_load_balancer_source_ranges_are_trimmed():
    # GetLoadBalancerSourceRanges trims each entry: " 10.0.0.0/8 " is 10.0.0.0/8.
    c = load_yaml(SVC.format(spec="  type: LoadBalancer\n"
                                  "  loadBalancerSourceRanges: [' 10.0.0.0/8 ', 192.0.2.0/24]"))
    assert c.service("a", "s").load_balancer_source_ranges == ("10.0.0.0/8", "192.0.2.0/24")


def test_a_directory_skips_hidden_folders_and_files(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yaml").write_text("on: push\njobs: {}\n")
    (tmp_path / ".hidden.yaml").write_text("not: a manifest\n")
    (tmp_path / "svc.yaml").write_text(SVC.format(spec=""))
    from netsim.cluster import load

    c = load([str(tmp_path)])
    assert c.service("a", "s") is not None
