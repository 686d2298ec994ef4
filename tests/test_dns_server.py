"""The cluster DNS Service (from the manifests or assumed as kubeadm makes it) and the Corefile."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.dns import dns_service, query, resolve
from netsim.dns_server import parse_corefile
from netsim.errors import InputError

DATA = Path(__file__).parent / "data" / "dns"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

APP = """
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: app}
spec: {containers: [{name: c, image: busybox}]}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  selector: {app: web}
  clusterIP: 10.100.0.80
  ports: [{name: http, port: 80}]
"""

# kubeadm's default Corefile (what `kubeadm init` puts in kube-system/coredns)
KUBEADM_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def corefile_configmap(corefile: str) -> str:
    body = "\n".join("    " + line for line in corefile.splitlines())
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
{body}
"""


def settings(**spec: str) -> str:
    lines = "\n".join(f"  {k}: {v}" for k, v in spec.items())
    return ("apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nmetadata: {name: n}\n"
            f"spec:\n{lines}\n")


def test_dns_service_from_the_manifests():
    from netsim.cluster import load

    shop = load([str(EXAMPLES / "shop")])
    svc = dns_service(shop)
    assert (svc.key, svc.cluster_ips, svc.emulated) == ("kube-system/kube-dns", ("10.96.0.10",),
                                                        False)
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [("dns", 53, "UDP"),
                                                                 ("dns-tcp", 53, "TCP")]
    assert len(svc.pods) == 2 and all(p.startswith("kube-system/coredns-") for p in svc.pods)
    assert svc.config.source == "ConfigMap kube-system/coredns"
    assert (svc.config.zones, svc.config.pods, svc.config.ttl) == (("cluster.local",),
                                                                  "insecure", 30)
    assert svc.notes == ()


def test_emulated_dns_service_at_the_tenth_address(load_text):
    cluster = load_text(settings(serviceCIDRs="[10.100.0.0/16]", dns="{disabled: true}"), APP)
    assert cluster.service("kube-system", "kube-dns") is None
    svc = dns_service(cluster)
    assert (svc.key, svc.cluster_ips, svc.emulated, svc.pods) == (
        "kube-system/kube-dns", ("10.100.0.10",), True, ())
    assert [(p.port, p.protocol) for p in svc.ports] == [(53, "UDP"), (53, "TCP")]
    assert "spec.dns.disabled" in svc.note and "cannot route" in svc.note
    # names still resolve, as kubeadm's CoreDNS would answer them
    got = resolve(cluster, "web", "A", "app/client")
    assert got.addresses == ("10.100.0.80",) and got.nameserver == "10.100.0.10"
    assert got.records[0].ttl == 30
    assert any("spec.dns.disabled" in n for n in got.notes)


def test_emulated_dns_address_taken_by_another_service(load_text):
    taken = APP.replace("10.100.0.80", "10.96.0.10")
    svc = dns_service(load_text(settings(dns="{disabled: true}"), taken))
    assert svc.cluster_ips == ("10.96.0.10",)
    assert "already Service app/web's cluster IP" in svc.note


def test_custom_cluster_domain(load_text):
    cluster = load_text(settings(clusterDomain="corp.example"), APP)
    assert cluster.settings.cluster_domain == "corp.example"
    got = resolve(cluster, "web.app", "A", "app/client")
    assert [(a.name, a.status) for a in got.attempts] == [
        ("web.app.app.svc.corp.example", "nxdomain"),
        ("web.app.svc.corp.example", "answer")]
    assert got.resolv_conf.search == ("app.svc.corp.example", "svc.corp.example",
                                      "corp.example")
    assert query(cluster, "web.app.svc.cluster.local", "A").status == "forwarded"
    assert query(cluster, "10.100.0.80", "PTR").records[0].data == "web.app.svc.corp.example"


@pytest.mark.parametrize("value", ['"Cluster.Local"', '"a..b"', '"-x.local"', '"x_y.local"'])
def test_cluster_domain_must_be_a_dns_name(load_error, value):
    assert "spec.clusterDomain: must be a lowercase DNS name" in load_error(
        settings(clusterDomain=value))


def test_cluster_domain_trailing_dot_is_dropped(load_text):
    assert load_text(settings(clusterDomain='"corp.example."')).settings.cluster_domain == \
        "corp.example"


def test_corefile_zone_differs_from_the_cluster_domain(load_text):
    cluster = load_text(settings(clusterDomain="corp.example"), APP,
                        corefile_configmap(KUBEADM_COREFILE))
    svc = dns_service(cluster)
    assert "serves cluster.local but the cluster domain" in svc.note
    # CoreDNS answers its own zone; the pods' search list names the other one
    assert query(cluster, "web.app.svc.cluster.local", "A").status == "answer"
    assert resolve(cluster, "web.app", "A", "app/client").status == "forwarded"


def test_parse_kubeadm_corefile():
    config = parse_corefile(KUBEADM_COREFILE)
    assert config.zones == ("cluster.local",)
    assert config.reverse_zones == ("in-addr.arpa", "ip6.arpa")
    assert (config.pods, config.ttl, config.upstream) == ("insecure", 30, "/etc/resolv.conf")
    assert config.fallthrough == ("in-addr.arpa", "ip6.arpa")
    assert config.falls_through("1.0.96.10.in-addr.arpa")
    assert not config.falls_through("nope.cluster.local")


def test_plugin_defaults_without_options(load_text):
    # the plugin's own defaults: ttl 5, pods disabled, no fallthrough
    corefile = "cluster.local:53 {\n    kubernetes\n    forward . 8.8.8.8\n}\n"
    config = parse_corefile(corefile)
    assert (config.zones, config.ttl, config.pods, config.fallthrough, config.upstream) == (
        ("cluster.local",), 5, "disabled", None, "8.8.8.8")
    assert config.reverse_zones == ()
    cluster = load_text(APP, corefile_configmap(corefile))
    assert query(cluster, "web.app.svc.cluster.local", "A").records[0].ttl == 5
    assert query(cluster, "10-244-1-10.app.pod.cluster.local", "A").status == "nxdomain"
    # no reverse zone in the kubernetes block: PTR questions go upstream
    assert query(cluster, "10.100.0.80", "PTR").status == "forwarded"


def test_pods_verified_and_endpoint_pod_names(load_text):
    corefile = KUBEADM_COREFILE.replace("pods insecure", "pods verified\n       "
                                        "endpoint_pod_names").replace(
        "fallthrough in-addr.arpa ip6.arpa", "")
    headless = """
apiVersion: v1
kind: Pod
metadata: {name: web-x, namespace: app, labels: {app: web}}
spec: {containers: [{name: c, image: nginx}]}
status: {podIP: 10.244.2.7}
---
apiVersion: v1
kind: Service
metadata: {name: hl, namespace: app}
spec:
  selector: {app: web}
  clusterIP: None
  ports: [{name: http, port: 80}]
"""
    cluster = load_text(APP, headless, corefile_configmap(corefile))
    assert query(cluster, "10-244-1-10.app.pod.cluster.local", "A").status == "answer"
    assert query(cluster, "10-244-9-9.app.pod.cluster.local", "A").status == "nxdomain"
    assert query(cluster, "10-244-1-10.other.pod.cluster.local", "A").status == "nxdomain"
    got = query(cluster, "web-x.hl.app.svc.cluster.local", "A")
    assert [r.data for r in got.records] == ["10.244.2.7"]
    # no fallthrough for reverse zones now: an unknown address is NXDOMAIN
    assert query(cluster, "192.0.2.9", "PTR").status == "nxdomain"


def test_bad_corefile_names_the_configmap(load_text):
    # the Corefile is read when DNS is asked for, not when the cluster loads
    cluster = load_text(APP, corefile_configmap(KUBEADM_COREFILE.replace("ttl 30", "ttl soon")))
    with pytest.raises(InputError) as info:
        dns_service(cluster)
    assert "ConfigMap kube-system/coredns: data.Corefile: kubernetes: ttl must be 0..3600 " \
        "seconds, got 'soon'" in str(info.value)


def test_corefile_without_kubernetes_plugin():
    with pytest.raises(InputError, match="has no kubernetes plugin"):
        parse_corefile(".:53 {\n    forward . 8.8.8.8\n}\n")
