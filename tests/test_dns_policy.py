"""A pod's own spec.dnsPolicy and spec.dnsConfig, as kubelet turns them into resolv.conf
(Kubernetes "DNS for Services and Pods": Pod's DNS Policy, Pod's DNS Config) and as the API
server validates them (pkg/apis/core/validation validatePodDNSConfig)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cli import main
from netsim.dns import resolv_conf, resolve
from netsim.reach_dns import dns_reach

DATA = Path(__file__).parent / "data" / "dns"


def pod(name: str, spec: str) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: app}}\n"
            f"spec:\n{spec}  containers: [{{name: c, image: busybox}}]\n---\n")


PODS = (
    pod("custom", "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [10.96.0.10]\n"
        "    searches: [app.svc.cluster.local, corp.example.]\n"
        "    options: [{name: ndots, value: '2'}, {name: edns0}]\n")
    + pod("node-dns", "  dnsPolicy: Default\n")
    + pod("hostnet-cluster", "  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n")
    + pod("extra-search", "  dnsConfig:\n    searches: [corp.example]\n"
          "    options: [{name: ndots, value: '1'}]\n")
    + pod("outside", "  dnsPolicy: None\n  dnsConfig: {nameservers: [192.0.2.53]}\n")
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from netsim.cluster import load

    path = tmp_path_factory.mktemp("dns") / "pods.yaml"
    path.write_text(PODS)
    return load([str(DATA / "cluster.yaml"), str(path)])


def test_dns_policy_none_is_the_dns_config_alone(cluster):
    conf = resolv_conf(cluster, cluster.pod("app", "custom"))
    assert conf.text() == ("search app.svc.cluster.local corp.example\n"
                           "nameserver 10.96.0.10\noptions ndots:2\n")
    # ndots 2: "web.app" (one dot) is searched first, "a.b.c" is asked as is first
    got = resolve(cluster, "web.app", "A", "app/custom")
    assert [(a.name, a.status) for a in got.attempts] == [
        ("web.app.app.svc.cluster.local", "nxdomain"), ("web.app.corp.example", "forwarded")]


def test_dns_policy_default_is_the_nodes_resolver(cluster):
    conf = resolv_conf(cluster, cluster.pod("app", "node-dns"))
    assert (conf.dns_policy, conf.nameservers, conf.search) == ("Default", (), ())
    assert resolve(cluster, "web", "A", "app/node-dns").status == "forwarded"


def test_cluster_first_with_host_net_keeps_the_cluster_dns(cluster):
    conf = resolv_conf(cluster, cluster.pod("app", "hostnet-cluster"))
    assert (conf.dns_policy, conf.nameservers, conf.ndots) == (
        "ClusterFirstWithHostNet", ("10.96.0.10",), 5)
    assert resolve(cluster, "web", "A", "app/hostnet-cluster").ok


def test_dns_config_merges_into_cluster_first(cluster):
    conf = resolv_conf(cluster, cluster.pod("app", "extra-search"))
    assert conf.search == ("app.svc.cluster.local", "svc.cluster.local", "cluster.local",
                           "corp.example")
    assert conf.ndots == 1  # the option overrides kubelet's ndots:5
    got = resolve(cluster, "web.app", "A", "app/extra-search")
    assert [a.name for a in got.attempts] == ["web.app"]  # one dot >= ndots: as is first


def test_a_what_if_policy_beats_the_pods_own(cluster):
    conf = resolv_conf(cluster, cluster.pod("app", "node-dns"), dns_policy="ClusterFirst")
    assert conf.nameservers == ("10.96.0.10",)


def test_reach_dns_says_where_each_pods_queries_go(cluster):
    _, rows = dns_reach(cluster)
    why = {r.pod: r.reason for r in rows}
    assert why["app/node-dns"] == "dnsPolicy Default: the node's resolver"
    assert why["app/outside"] == "dnsConfig nameserver 192.0.2.53: not the cluster DNS"
    assert why["app/hostnet"] == "hostNetwork, dnsPolicy ClusterFirst: the node's resolver"
    assert why["app/hostnet-cluster"] == "allowed"  # it asks CoreDNS, from the node
    assert why["app/custom"] == "allowed"


def test_a_trace_from_a_pod_with_another_nameserver_walks_its_query_there(capsys, tmp_path):
    path = tmp_path / "pods.yaml"
    path.write_text(PODS)
    code = main(["trace", "-q", "-f", str(DATA / "cluster.yaml"), "-f", str(path),
                 "--from", "app/outside", "--to", "web:80", "--verbosity", "detailed"])
    out = capsys.readouterr().out
    assert code == 1
    assert "nameserver 192.0.2.53" in out
    assert out.splitlines()[2].startswith("result: dropped (dns-failed): web: the name is "
                                          "outside the cluster")


@pytest.mark.parametrize(("spec", "message"), [
    ("  dnsPolicy: None\n", "spec.dnsConfig: must provide `dnsConfig` when `dnsPolicy` is None"),
    ("  dnsPolicy: None\n  dnsConfig: {searches: [a.example]}\n",
     "spec.dnsConfig.nameservers: must provide at least one DNS nameserver when `dnsPolicy` "
     "is None"),
    ("  dnsConfig: {nameservers: [1.1.1.1, 8.8.8.8, 9.9.9.9, 10.0.0.1]}\n",
     "spec.dnsConfig.nameservers: must not have more than 3 nameservers"),
    ("  dnsConfig: {nameservers: [not-an-ip]}\n",
     "spec.dnsConfig.nameservers[0]: must be an IP address, got 'not-an-ip'"),
    ("  dnsConfig: {searches: [Bad_Domain]}\n",
     "spec.dnsConfig.searches[0]: must be a lowercase DNS name, got 'Bad_Domain'"),
    ("  dnsConfig: {options: [{value: '2'}]}\n", "spec.dnsConfig.options[0].name: required"),
    ("  dnsPolicy: ClusterLast\n", "spec.dnsPolicy: must be one of"),
])
def test_invalid_dns_settings_are_one_line_errors(load_error, spec, message):
    err = load_error(pod("bad", spec))
    assert "Pod app/bad" in err and message in err, err
    assert "\n" not in err
