"""Names as CoreDNS's kubernetes plugin answers them, and as a pod's resolver searches for them.

Expectations are written from the Kubernetes DNS-Based Service Discovery specification
(kubernetes/dns docs/specification.md), the CoreDNS kubernetes plugin's documented behaviour
and tests (plugin/kubernetes README, handler_test.go), resolv.conf(5) and glibc's res_search.
Addresses come from tests/data/dns/cluster.yaml, where they are written by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.dns import (
    PodDnsConfig,
    query,
    resolv_conf,
    resolve,
    search_candidates,
)
from netsim.errors import InputError

DATA = Path(__file__).parent / "data" / "dns"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TTL = 30  # kubeadm's Corefile: `ttl 30`
SEARCH = ("app.svc.cluster.local", "svc.cluster.local", "cluster.local")


@pytest.fixture(scope="module")
def cluster():
    return load([str(DATA / "cluster.yaml")])


@pytest.fixture(scope="module")
def shop():
    return load([str(EXAMPLES / "shop")])


def rdata(answer) -> list[str]:
    return [r.rdata() for r in answer.records]


# ---------------------------------------------------------------- records (absolute names)


@pytest.mark.parametrize(("name", "qtype", "status", "expected"), [
    # spec 2.3.1: a ClusterIP Service's A record is its cluster IP (endpoints do not matter)
    ("web.app.svc.cluster.local", "A", "answer", ["10.96.0.80"]),
    # dual-stack: A and AAAA; an IPv4-only Service has no AAAA (NOERROR, no answer)
    ("dual.app.svc.cluster.local", "A", "answer", ["10.96.0.81"]),
    ("dual.app.svc.cluster.local", "AAAA", "answer", ["fd00:10:96::81"]),
    ("web.app.svc.cluster.local", "AAAA", "nodata", []),
    ("v6only.app.svc.cluster.local", "AAAA", "answer", ["fd00:10:96::82"]),
    ("v6only.app.svc.cluster.local", "A", "nodata", []),
    # spec 2.4.1: headless -> every ready endpoint; with no ready endpoint, NXDOMAIN
    ("cache.db.svc.cluster.local", "A", "answer", ["10.244.3.1", "10.244.3.2"]),
    ("web-headless.app.svc.cluster.local", "A", "answer", ["10.244.1.11"]),
    ("empty.db.svc.cluster.local", "A", "nxdomain", []),
    # endpoint names: the hostname, else the dashed address (CoreDNS endpointHostname)
    ("cache-a.cache.db.svc.cluster.local", "A", "answer", ["10.244.3.1"]),
    ("10-244-3-2.cache.db.svc.cluster.local", "A", "answer", ["10.244.3.2"]),
    ("cache-c.cache.db.svc.cluster.local", "A", "nxdomain", []),  # not ready
    ("nobody.cache.db.svc.cluster.local", "A", "nxdomain", []),
    # spec.hostname + spec.subdomain naming a headless Service in the namespace
    ("box-1.boxes.app.svc.cluster.local", "A", "answer", ["10.244.1.20"]),
    # spec 2.5: ExternalName is a CNAME; an address in externalName is no CNAME at all
    ("ext.app.svc.cluster.local", "CNAME", "answer", ["www.example.com."]),
    ("byip.app.svc.cluster.local", "A", "nxdomain", []),
    ("web.app.svc.cluster.local", "CNAME", "nodata", []),
    # spec 2.3.2: SRV per named port, to the Service name; headless: one per endpoint
    ("_http._tcp.web.app.svc.cluster.local", "SRV", "answer",
     ["0 100 80 web.app.svc.cluster.local."]),
    ("_admin._udp.web.app.svc.cluster.local", "SRV", "answer",
     ["0 100 9000 web.app.svc.cluster.local."]),
    ("_http._udp.web.app.svc.cluster.local", "SRV", "nxdomain", []),
    ("_nope._tcp.web.app.svc.cluster.local", "SRV", "nxdomain", []),
    # headless SRV: the endpoint port (6380, the slice's), weight 100 split over endpoints
    ("_redis._tcp.cache.db.svc.cluster.local", "SRV", "answer",
     ["0 50 6380 cache-a.cache.db.svc.cluster.local.",
      "0 50 6380 10-244-3-2.cache.db.svc.cluster.local."]),
    # the bare Service name asked for SRV: every port (CoreDNS handler_test "svc1 SRV")
    ("web.app.svc.cluster.local", "SRV", "answer",
     ["0 50 80 web.app.svc.cluster.local.", "0 50 9000 web.app.svc.cluster.local."]),
    # a portless headless Service has A records but no SRV (handler_test "hdlsprtls")
    ("web-headless.app.svc.cluster.local", "SRV", "nodata", []),
    ("ext.app.svc.cluster.local", "SRV", "nodata", []),
    # spec 2.6 pod records, answered in `pods insecure` mode without checking the pod
    ("10-244-9-9.app.pod.cluster.local", "A", "answer", ["10.244.9.9"]),
    ("fd00-10-244-1--10.app.pod.cluster.local", "AAAA", "answer", ["fd00:10:244:1::10"]),
    ("fd00-10-244-1--10.app.pod.cluster.local", "A", "nodata", []),
    ("10-244-9-9.nons.pod.cluster.local", "A", "nxdomain", []),
    ("not-an-ip.app.pod.cluster.local", "A", "nxdomain", []),
    # the zone's structure: apex, svc, pod and namespace names exist but hold nothing
    ("cluster.local", "A", "nodata", []),
    ("svc.cluster.local", "A", "nodata", []),
    ("pod.cluster.local", "A", "nodata", []),
    ("app.svc.cluster.local", "A", "nodata", []),
    ("nons.svc.cluster.local", "A", "nxdomain", []),
    ("nope.app.svc.cluster.local", "A", "nxdomain", []),
    ("web.nons.svc.cluster.local", "A", "nxdomain", []),
    ("web.app.cluster.local", "A", "nxdomain", []),
    ("a.b.c.web.app.svc.cluster.local", "A", "nxdomain", []),
    # case-insensitive (spec 2.1)
    ("WEB.App.SVC.cluster.LOCAL", "A", "answer", ["10.96.0.80"]),
])
def test_records(cluster, name, qtype, status, expected):
    got = query(cluster, name, qtype)
    assert (got.status, rdata(got)) == (status, expected)


def test_records_carry_the_corefile_ttl_and_names(cluster):
    got = query(cluster, "web.app.svc.cluster.local.", "A")
    (record,) = got.records
    assert (record.name, record.type, record.ttl, record.data) == (
        "web.app.svc.cluster.local", "A", TTL, "10.96.0.80")
    assert record.text() == "web.app.svc.cluster.local.\t30\tIN\tA\t10.96.0.80"
    assert got.rcode == "NOERROR" and got.authoritative


def test_srv_additional_section_holds_target_addresses(cluster):
    got = query(cluster, "_redis._tcp.cache.db.svc.cluster.local", "SRV")
    assert [(r.name, r.type, r.data) for r in got.additional] == [
        ("cache-a.cache.db.svc.cluster.local", "A", "10.244.3.1"),
        ("10-244-3-2.cache.db.svc.cluster.local", "A", "10.244.3.2")]
    first = got.records[0]
    assert (first.priority, first.weight, first.port, first.data) == (
        0, 50, 6380, "cache-a.cache.db.svc.cluster.local")


def test_dual_stack_srv_is_one_record(cluster):
    # two cluster IPs, one port: one SRV (deduplicated); CoreDNS counts both for the weight
    got = query(cluster, "_grpc._tcp.dual.app.svc.cluster.local", "SRV")
    assert rdata(got) == ["0 50 7070 dual.app.svc.cluster.local."]
    assert sorted(r.data for r in got.additional) == ["10.96.0.81", "fd00:10:96::81"]


def test_statefulset_pods_have_stable_names(cluster):
    # the StatefulSet controller sets hostname pg-N and subdomain = serviceName
    for i in (0, 1):
        pod = cluster.pod("db", f"pg-{i}")
        got = query(cluster, f"pg-{i}.pg.db.svc.cluster.local", "A")
        assert rdata(got) == [pod.ip]
    srv = query(cluster, "_postgres._tcp.pg.db.svc.cluster.local", "SRV")
    assert rdata(srv) == ["0 50 5432 pg-0.pg.db.svc.cluster.local.",
                          "0 50 5432 pg-1.pg.db.svc.cluster.local."]
    headless = query(cluster, "pg.db.svc.cluster.local", "A")
    assert sorted(rdata(headless)) == sorted(cluster.pod("db", f"pg-{i}").ip for i in (0, 1))


def test_external_name_a_query_gives_the_cname_then_upstream(cluster):
    got = query(cluster, "ext.app.svc.cluster.local", "A")
    assert got.status == "forwarded"
    assert [(r.type, r.rdata()) for r in got.records] == [("CNAME", "www.example.com.")]
    assert "www.example.com" in got.note and "netsim does not know" in got.note


def test_external_name_to_a_cluster_name_is_resolved_in_the_cluster(cluster):
    # handler_test "CNAME External To Internal Service"
    got = query(cluster, "alias.app.svc.cluster.local", "A")
    assert got.status == "answer"
    assert [(r.name, r.type, r.rdata()) for r in got.records] == [
        ("alias.app.svc.cluster.local", "CNAME", "web.app.svc.cluster.local."),
        ("web.app.svc.cluster.local", "A", "10.96.0.80")]


@pytest.mark.parametrize(("address", "status", "expected"), [
    ("10.96.0.80", "answer", ["web.app.svc.cluster.local."]),  # spec 2.3.3
    ("fd00:10:96::81", "answer", ["dual.app.svc.cluster.local."]),
    ("10.244.3.1", "answer", ["cache-a.cache.db.svc.cluster.local."]),  # spec 2.4.3
    ("10.244.3.3", "forwarded", []),  # not ready: no record, falls through upstream
    ("198.51.100.7", "forwarded", []),
])
def test_ptr(cluster, address, status, expected):
    got = resolve(cluster, address, "PTR")
    assert (got.status, rdata(got)) == (status, expected)


def test_names_outside_the_cluster_domain_are_forwarded_not_nxdomain(cluster):
    got = query(cluster, "www.example.com", "A")
    assert got.status == "forwarded" and got.rcode is None and not got.records
    assert "forward . /etc/resolv.conf" in got.note


# ---------------------------------------------------------------- the search list


@pytest.mark.parametrize(("name", "search", "ndots", "expected"), [
    # fewer dots than ndots: the search list first, the name as is last
    ("redis", ("a.b", "b"), 5, ("redis.a.b", "redis.b", "redis")),
    ("redis.shop", ("a.b", "b"), 5, ("redis.shop.a.b", "redis.shop.b", "redis.shop")),
    # at least ndots dots: as is first, then the search list
    ("a.b.c.d.e.f", ("x",), 5, ("a.b.c.d.e.f", "a.b.c.d.e.f.x")),
    ("www.example.com", ("x",), 1, ("www.example.com", "www.example.com.x")),
    ("redis", ("x",), 0, ("redis", "redis.x")),
    # a trailing dot makes the name absolute: no search at all
    ("redis.shop.svc.cluster.local.", ("x", "y"), 5, ("redis.shop.svc.cluster.local",)),
])
def test_search_candidates(name, search, ndots, expected):
    assert search_candidates(name, search, ndots) == expected


@pytest.mark.parametrize(("name", "tried", "final"), [
    ("web", [("web.app.svc.cluster.local", "answer")], "web.app.svc.cluster.local"),
    ("web.app", [("web.app.app.svc.cluster.local", "nxdomain"),
                 ("web.app.svc.cluster.local", "answer")], "web.app.svc.cluster.local"),
    ("web.app.svc", [("web.app.svc.app.svc.cluster.local", "nxdomain"),
                     ("web.app.svc.svc.cluster.local", "nxdomain"),
                     ("web.app.svc.cluster.local", "answer")], "web.app.svc.cluster.local"),
    # 4 dots < ndots 5: the full name without its dot costs three NXDOMAINs first
    ("web.app.svc.cluster.local", [
        ("web.app.svc.cluster.local.app.svc.cluster.local", "nxdomain"),
        ("web.app.svc.cluster.local.svc.cluster.local", "nxdomain"),
        ("web.app.svc.cluster.local.cluster.local", "nxdomain"),
        ("web.app.svc.cluster.local", "answer")], "web.app.svc.cluster.local"),
    ("web.app.svc.cluster.local.", [("web.app.svc.cluster.local", "answer")],
     "web.app.svc.cluster.local"),
    ("cache.db", [("cache.db.app.svc.cluster.local", "nxdomain"),
                  ("cache.db.svc.cluster.local", "answer")], "cache.db.svc.cluster.local"),
])
def test_search_path_from_a_pod(cluster, name, tried, final):
    got = resolve(cluster, name, "A", "app/client")
    assert [(a.name, a.status) for a in got.attempts] == tried
    assert (got.status, got.name, got.nameserver) == ("answer", final, "10.96.0.10")


def test_external_name_through_the_search_list_ends_upstream(cluster):
    got = resolve(cluster, "www.example.com", "A", "app/client")
    assert [(a.name, a.status) for a in got.attempts] == [
        ("www.example.com.app.svc.cluster.local", "nxdomain"),
        ("www.example.com.svc.cluster.local", "nxdomain"),
        ("www.example.com.cluster.local", "nxdomain"),
        ("www.example.com", "forwarded")]
    assert got.status == "forwarded" and got.rcode is None


def test_a_long_name_goes_upstream_first(cluster):
    # 5 dots >= ndots 5: asked as is first; netsim cannot know the upstream's answer, so the
    # walk stops there and says what would come next on NXDOMAIN
    got = resolve(cluster, "a.b.c.d.example.com", "A", "app/client")
    assert [(a.name, a.status) for a in got.attempts] == [("a.b.c.d.example.com", "forwarded")]
    assert "if the upstream answers NXDOMAIN the resolver goes on with: " \
        "a.b.c.d.example.com.app.svc.cluster.local a.b.c.d.example.com.svc.cluster.local " \
        "a.b.c.d.example.com.cluster.local" in got.notes


def test_a_namespace_name_is_nodata_and_the_search_goes_on(cluster):
    # db.svc.cluster.local exists (the namespace) but holds no record: glibc keeps searching
    got = resolve(cluster, "db", "A", "app/client")
    assert [(a.name, a.status) for a in got.attempts] == [
        ("db.app.svc.cluster.local", "nxdomain"),
        ("db.svc.cluster.local", "nodata"),
        ("db.cluster.local", "nxdomain"),
        ("db", "forwarded")]


def test_nxdomain_everywhere(cluster):
    got = resolve(cluster, "missing.app.svc.cluster.local", "A", "app/client")
    assert got.status == "nxdomain" and got.rcode == "NXDOMAIN" and not got.records
    assert len(got.attempts) == 4 and got.name == "missing.app.svc.cluster.local"


def test_nodata_after_the_search(cluster):
    got = resolve(cluster, "web.app.svc.cluster.local.", "AAAA", "app/client")
    assert (got.status, got.rcode) == ("nodata", "NOERROR")


def test_srv_short_name_from_a_pod(cluster):
    got = resolve(cluster, "_http._tcp.web", "SRV", "app/client")
    assert got.name == "_http._tcp.web.app.svc.cluster.local"
    assert rdata(got) == ["0 100 80 web.app.svc.cluster.local."]


def test_without_a_pod_the_name_is_asked_as_given(cluster):
    got = resolve(cluster, "web.app", "A")
    assert [a.name for a in got.attempts] == ["web.app"]
    assert got.status == "forwarded" and got.resolv_conf.search == ()


# ---------------------------------------------------------------- resolv.conf


def test_cluster_first_resolv_conf(cluster):
    conf = resolv_conf(cluster, cluster.pod("app", "client"))
    assert (conf.nameservers, conf.search, conf.ndots, conf.dns_policy) == (
        ("10.96.0.10",), SEARCH, 5, "ClusterFirst")
    assert conf.text() == ("search app.svc.cluster.local svc.cluster.local cluster.local\n"
                           "nameserver 10.96.0.10\noptions ndots:5\n")
    assert not any("dnsPolicy" in n for n in conf.notes)  # the pod's own: the default


def test_host_network_pod_falls_back_to_default(cluster):
    pod = cluster.pod("app", "hostnet")
    conf = resolv_conf(cluster, pod)
    assert (conf.dns_policy, conf.nameservers, conf.search) == ("Default", (), ())
    got = resolve(cluster, "web.app", "A", pod)
    assert got.status == "forwarded" and got.nameserver is None
    assert "asked of the node's resolver" in got.attempts[0].note
    with_host_net = resolve(cluster, "web.app", "A", pod, dns_policy="ClusterFirstWithHostNet")
    assert with_host_net.addresses == ("10.96.0.80",)


def test_dns_policy_none_and_dns_config(cluster):
    pod = cluster.pod("app", "client")
    with pytest.raises(InputError, match="dnsPolicy None needs a dnsConfig"):
        resolv_conf(cluster, pod, dns_policy="None")
    config = PodDnsConfig(nameservers=("10.96.0.10",), searches=("db.svc.cluster.local",),
                          options=(("ndots", "2"),))
    conf = resolv_conf(cluster, pod, dns_policy="None", dns_config=config)
    assert (conf.nameservers, conf.search, conf.ndots) == (
        ("10.96.0.10",), ("db.svc.cluster.local",), 2)
    got = resolve(cluster, "cache", "A", pod, dns_policy="None", dns_config=config)
    assert got.addresses == ("10.244.3.1", "10.244.3.2")
    # ClusterFirst + dnsConfig: searches appended, options override
    merged = resolv_conf(cluster, pod, dns_config=PodDnsConfig(
        searches=("corp.example",), options=(("ndots", "20"),)))
    assert merged.search == (*SEARCH, "corp.example") and merged.ndots == 15


def test_a_foreign_nameserver_is_not_answered_by_netsim(cluster):
    config = PodDnsConfig(nameservers=("192.0.2.53",))
    got = resolve(cluster, "web.app.svc.cluster.local.", "A", "app/client", dns_policy="None",
                  dns_config=config)
    assert got.status == "forwarded" and got.nameserver == "192.0.2.53"
    assert "192.0.2.53, which is not the cluster DNS" in got.attempts[0].note


@pytest.mark.parametrize(("name", "qtype", "message"), [
    ("bad name", "A", "is not a DNS name"),
    ("a..b", "A", "is not a DNS name"),
    ("x" * 64 + ".com", "A", "is not a DNS name"),
    ("10.96.0.10", "A", "is an address"),
    ("web", "MX", "unknown query type"),
])
def test_bad_questions(cluster, name, qtype, message):
    with pytest.raises(InputError, match=message):
        resolve(cluster, name, qtype)
    with pytest.raises(InputError, match=message):
        query(cluster, name, qtype)


def test_unknown_pod(cluster):
    with pytest.raises(InputError, match="no Pod 'app/nobody'"):
        resolve(cluster, "web", "A", "app/nobody")


# ---------------------------------------------------------------- the shop example


def test_shop_names_from_cart(shop):
    cart = next(p for p in shop.pods if p.workload == "Deployment/cart")
    redis_ip = shop.service("shop", "redis").cluster_ip
    got = resolve(shop, "redis", "A", cart)
    assert [a.name for a in got.attempts] == ["redis.shop.svc.cluster.local"]
    assert got.addresses == (redis_ip,) and got.nameserver == "10.96.0.10"
    assert got.records[0].ttl == 30  # the shop's Corefile says `ttl 30`
    got = resolve(shop, "redis.shop", "A", cart)
    assert [(a.name, a.status) for a in got.attempts] == [
        ("redis.shop.shop.svc.cluster.local", "nxdomain"),
        ("redis.shop.svc.cluster.local", "answer")]
    postgres = resolve(shop, "postgres-0.postgres.data", "A", cart)
    assert postgres.addresses == (shop.pod("data", "postgres-0").ip,)
    srv = resolve(shop, "_postgres._tcp.postgres.data", "SRV", cart)
    assert rdata(srv) == ["0 50 5432 postgres-0.postgres.data.svc.cluster.local.",
                          "0 50 5432 postgres-1.postgres.data.svc.cluster.local."]
