# ruff: noqa: E501 - istioctl's tables are wider than 100 columns; goldens keep them whole.
"""`istioctl proxy-config`-style tables and Envoy-style JSON of a sidecar's config.

The formats follow istioctl/pkg/writer/envoy/configdump/{cluster,listener,route}.go and
istioctl/pkg/writer/envoy/clusters/clusters.go: headers, tabwriter padding (5 for clusters,
routes and endpoints, 1 for listeners), sort orders, "-" for empty fields, "Cluster: " only
for names without "Cluster", "name.namespace" for Istio config, and the DOMAINS folding.
The golden tables below were checked against those rules line by line.
"""

from __future__ import annotations

import difflib

import pytest

from proxy.sidecar import render_json, render_text, sidecar_config
from proxy.sidecar_print import describe_domains, tabwrite
from tests.proxy.test_sidecar_config import NEEDS_BOOKINFO, bookinfo, pod_named, tiny


def assert_same(got: str, want: str) -> None:
    """Whole-text comparison with a unified diff on failure."""
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            "expected", "got"))
        pytest.fail("output differs:\n" + diff)


TINY_CLUSTERS = (
    'SERVICE FQDN                   PORT     SUBSET     DIRECTION     TYPE             DESTINATION RULE\n'
    '                               8080     -          inbound       ORIGINAL_DST     \n'
    'BlackHoleCluster               -        -          -             STATIC           \n'
    'InboundPassthroughCluster      -        -          -             ORIGINAL_DST     \n'
    'PassthroughCluster             -        -          -             ORIGINAL_DST     \n'
    'agent                          -        -          -             STATIC           \n'
    'prometheus_stats               -        -          -             STATIC           \n'
    'redis.db.svc.cluster.local     6379     -          outbound      EDS              \n'
    'sds-grpc                       -        -          -             STATIC           \n'
    'web.demo.svc.cluster.local     80       -          outbound      EDS              web.demo\n'
    'web.demo.svc.cluster.local     80       v1         outbound      EDS              web.demo\n'
    'web.demo.svc.cluster.local     80       v2         outbound      EDS              web.demo\n'
    'xds-grpc                       -        -          -             STATIC           \n'
)

TINY_LISTENERS = (
    'ADDRESSES  PORT  MATCH                                                                                           DESTINATION\n'
    '0.0.0.0    80    Trans: raw_buffer; App: http/1.1,h2c                                                            Route: 80\n'
    '0.0.0.0    80    ALL                                                                                             PassthroughCluster\n'
    '10.96.0.30 6379  ALL                                                                                             Cluster: outbound|6379||redis.db.svc.cluster.local\n'
    '0.0.0.0    15001 ALL                                                                                             PassthroughCluster\n'
    '0.0.0.0    15001 Addr: *:15001                                                                                   Non-HTTP/Non-TCP\n'
    '0.0.0.0    15006 Addr: *:15006                                                                                   Non-HTTP/Non-TCP\n'
    '0.0.0.0    15006 Trans: tls; App: istio-http/1.0,istio-http/1.1,istio-h2                                         InboundPassthroughCluster\n'
    '0.0.0.0    15006 Trans: raw_buffer; App: http/1.1,h2c                                                            InboundPassthroughCluster\n'
    '0.0.0.0    15006 Trans: tls; App: TCP TLS                                                                        InboundPassthroughCluster\n'
    '0.0.0.0    15006 Trans: raw_buffer                                                                               InboundPassthroughCluster\n'
    '0.0.0.0    15006 Trans: tls                                                                                      InboundPassthroughCluster\n'
    '0.0.0.0    15006 Trans: tls; App: istio,istio-peer-exchange,istio-http/1.0,istio-http/1.1,istio-h2; Addr: *:8080 Cluster: inbound|8080||\n'
    '0.0.0.0    15006 Trans: raw_buffer; Addr: *:8080                                                                 Cluster: inbound|8080||\n'
    '0.0.0.0    15021 ALL                                                                                             Inline Route: /healthz/ready*\n'
    '0.0.0.0    15090 ALL                                                                                             Inline Route: /stats/prometheus*\n'
)

TINY_ROUTES = (
    'NAME     VHOST NAME                        DOMAINS                                          MATCH                  VIRTUAL SERVICE\n'
    '80       web.demo.svc.cluster.local:80     web.demo.svc.cluster.local., web + 2 more...     /*                     web.demo\n'
    '80       web.demo.svc.cluster.local:80     web.demo.svc.cluster.local., web + 2 more...     /*                     web.demo\n'
    '         backend                           *                                                /healthz/ready*        \n'
    '         backend                           *                                                /stats/prometheus*     \n'
)

TINY_ENDPOINTS = (
    'ENDPOINT                                                STATUS      OUTLIER CHECK     CLUSTER\n'
    '10.244.0.11:8080                                        HEALTHY     OK                outbound|80|v1|web.demo.svc.cluster.local\n'
    '10.244.0.11:8080                                        HEALTHY     OK                outbound|80||web.demo.svc.cluster.local\n'
    '10.244.0.12:8080                                        HEALTHY     OK                outbound|80|v2|web.demo.svc.cluster.local\n'
    '10.244.0.12:8080                                        HEALTHY     OK                outbound|80||web.demo.svc.cluster.local\n'
    '10.244.0.20:6379                                        HEALTHY     OK                outbound|6379||redis.db.svc.cluster.local\n'
    '127.0.0.1:15000                                         HEALTHY     OK                prometheus_stats\n'
    '127.0.0.1:15020                                         HEALTHY     OK                agent\n'
    'unix://./etc/istio/proxy/XDS                            HEALTHY     OK                xds-grpc\n'
    'unix://./var/run/secrets/workload-spiffe-uds/socket     HEALTHY     OK                sds-grpc\n'
)

# Bookinfo's published manifests on a real cluster run beside CoreDNS, whose kube-dns Service
# (53/UDP skipped, 53/TCP, 9153/TCP) gets outbound clusters and, as 9153 is sniffed, an RDS
# route named <fqdn>:<port> with domains "*", as istioctl prints them for kube-dns.
BOOKINFO_CLUSTERS = (
    'SERVICE FQDN                               PORT     SUBSET          DIRECTION     TYPE             DESTINATION RULE\n'
    '                                           9080     -               inbound       ORIGINAL_DST     \n'
    'BlackHoleCluster                           -        -               -             STATIC           \n'
    'InboundPassthroughCluster                  -        -               -             ORIGINAL_DST     \n'
    'PassthroughCluster                         -        -               -             ORIGINAL_DST     \n'
    'agent                                      -        -               -             STATIC           \n'
    'details.default.svc.cluster.local          9080     -               outbound      EDS              details.default\n'
    'details.default.svc.cluster.local          9080     v1              outbound      EDS              details.default\n'
    'details.default.svc.cluster.local          9080     v2              outbound      EDS              details.default\n'
    'kube-dns.kube-system.svc.cluster.local     53       -               outbound      EDS              \n'
    'kube-dns.kube-system.svc.cluster.local     9153     -               outbound      EDS              \n'
    'productpage.default.svc.cluster.local      9080     -               outbound      EDS              productpage.default\n'
    'productpage.default.svc.cluster.local      9080     v1              outbound      EDS              productpage.default\n'
    'prometheus_stats                           -        -               -             STATIC           \n'
    'ratings.default.svc.cluster.local          9080     -               outbound      EDS              ratings.default\n'
    'ratings.default.svc.cluster.local          9080     v1              outbound      EDS              ratings.default\n'
    'ratings.default.svc.cluster.local          9080     v2              outbound      EDS              ratings.default\n'
    'ratings.default.svc.cluster.local          9080     v2-mysql        outbound      EDS              ratings.default\n'
    'ratings.default.svc.cluster.local          9080     v2-mysql-vm     outbound      EDS              ratings.default\n'
    'reviews.default.svc.cluster.local          9080     -               outbound      EDS              reviews.default\n'
    'reviews.default.svc.cluster.local          9080     v1              outbound      EDS              reviews.default\n'
    'reviews.default.svc.cluster.local          9080     v2              outbound      EDS              reviews.default\n'
    'reviews.default.svc.cluster.local          9080     v3              outbound      EDS              reviews.default\n'
    'sds-grpc                                   -        -               -             STATIC           \n'
    'xds-grpc                                   -        -               -             STATIC           \n'
)

BOOKINFO_ROUTES = (
    'NAME                                            VHOST NAME                                      DOMAINS                                                             MATCH                  VIRTUAL SERVICE\n'
    '9080                                            details.default.svc.cluster.local:9080          details.default.svc.cluster.local., details + 2 more...             /*                     \n'
    '9080                                            productpage.default.svc.cluster.local:9080      productpage.default.svc.cluster.local., productpage + 2 more...     /*                     \n'
    '9080                                            ratings.default.svc.cluster.local:9080          ratings.default.svc.cluster.local., ratings + 2 more...             /*                     \n'
    '9080                                            reviews.default.svc.cluster.local:9080          reviews.default.svc.cluster.local., reviews + 2 more...             /*                     reviews.default\n'
    '9080                                            reviews.default.svc.cluster.local:9080          reviews.default.svc.cluster.local., reviews + 2 more...             /*                     reviews.default\n'
    'kube-dns.kube-system.svc.cluster.local:9153     kube-dns.kube-system.svc.cluster.local:9153     *                                                                   /*                     \n'
    '                                                backend                                         *                                                                   /healthz/ready*        \n'
    '                                                backend                                         *                                                                   /stats/prometheus*     \n'
)


@pytest.mark.parametrize(("section", "golden"), [
    ("clusters", TINY_CLUSTERS), ("listeners", TINY_LISTENERS), ("routes", TINY_ROUTES),
    ("endpoints", TINY_ENDPOINTS),
])
def test_golden_tables_for_a_small_mesh(section, golden):
    c = tiny(dns=False)  # the tables hold TINY's objects alone
    assert_same(render_text(sidecar_config(c, c.pod("demo", "web-v1")), section), golden)


def test_all_prints_the_four_tables_apart():
    c = tiny(dns=False)
    text = render_text(sidecar_config(c, c.pod("demo", "web-v1")))
    assert_same(text, "\n".join((TINY_CLUSTERS, TINY_LISTENERS, TINY_ROUTES, TINY_ENDPOINTS)))


@NEEDS_BOOKINFO
@pytest.mark.parametrize(("section", "golden"), [("clusters", BOOKINFO_CLUSTERS),
                                                 ("routes", BOOKINFO_ROUTES)])
def test_golden_tables_for_bookinfo_productpage(tmp_path, section, golden):
    c = bookinfo(tmp_path, "destination-rule-all.yaml",
                 "virtual-service-reviews-jason-v2-v3.yaml")
    assert_same(render_text(sidecar_config(c, pod_named(c, "productpage")), section), golden)


# ---------------------------------------------------------------- istioctl's own test data


def test_tabwriter_matches_istioctl_endpoint_summary_testdata():
    """istioctl/pkg/writer/envoy/clusters/testdata/clustersummary.txt (padding 5)."""
    rows = [["ENDPOINT", "STATUS", "CLUSTER"],
            ["172.17.0.13:443", "HEALTHY",
             "outbound|443||istio-ingressgateway.istio-system.svc.cluster.local"],
            ["172.17.0.14:15014", "UNHEALTHY",
             "outbound|15014||istio-policy.istio-system.svc.cluster.local"],
            ["172.17.0.24:9080", "HEALTHY", "outbound|9080||reviews.default.svc.cluster.local"]]
    assert_same(tabwrite(rows, 5), (
        "ENDPOINT              STATUS        CLUSTER\n"
        "172.17.0.13:443       HEALTHY       outbound|443||istio-ingressgateway.istio-system.svc.cluster.local\n"
        "172.17.0.14:15014     UNHEALTHY     outbound|15014||istio-policy.istio-system.svc.cluster.local\n"
        "172.17.0.24:9080      HEALTHY       outbound|9080||reviews.default.svc.cluster.local\n"))


def test_tabwriter_keeps_padding_before_an_empty_last_cell():
    """istioctl testdata routes/istio-gateway-http-route-prefix/output.txt."""
    rows = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
            ["http.8080", "httpbin.example.com:80", "httpbin.example.com", "/get*",
             "httpbin.default"],
            ["", "backend", "*", "/stats/prometheus*", ""]]
    assert_same(tabwrite(rows, 5), (
        "NAME          VHOST NAME                 DOMAINS                 MATCH                  VIRTUAL SERVICE\n"
        "http.8080     httpbin.example.com:80     httpbin.example.com     /get*                  httpbin.default\n"
        "              backend                    *                       /stats/prometheus*     \n"))


@pytest.mark.parametrize(("domains", "shown"), [
    # What `proxy-config routes` shows for Bookinfo's reviews seen from its own namespace
    # (istio.io docs and blog output: "reviews, reviews.bookinfo + 1 more...").
    (("reviews.bookinfo.svc.cluster.local", "reviews", "reviews.bookinfo.svc",
      "reviews.bookinfo", "10.96.12.7"), "reviews, reviews.bookinfo + 1 more..."),
    (("reviews.bookinfo.svc.cluster.local", "reviews.bookinfo.svc.cluster.local:9080",
      "reviews", "reviews:9080", "reviews.bookinfo.svc", "reviews.bookinfo.svc:9080",
      "reviews.bookinfo", "reviews.bookinfo:9080", "10.96.12.7", "10.96.12.7:9080"),
     "reviews, reviews.bookinfo + 1 more..."),
    (("*",), "*"),
    (("httpbin.example.com", "httpbin.example.com:80"), "httpbin.example.com"),
    (("[fd00:10:96::7fc7]", "[fd00:10:96::7fc7]:8090"), "[fd00:10:96::7fc7]"),
])
def test_domains_column_folds_expanded_names(domains, shown):
    assert describe_domains(domains) == shown


# ---------------------------------------------------------------- JSON


def test_json_uses_envoy_field_names():
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    listeners = {x["name"]: x for x in render_json(cfg, "listeners")}
    outbound = listeners["virtualOutbound"]
    assert outbound["address"] == {"socketAddress": {"address": "0.0.0.0", "portValue": 15001}}
    assert outbound["useOriginalDst"] is True
    http = listeners["0.0.0.0_80"]["filterChains"][0]
    assert http["filterChainMatch"] == {"transportProtocol": "raw_buffer",
                                        "applicationProtocols": ["http/1.1", "h2c"]}
    assert http["filters"][0]["typedConfig"]["rds"] == {"routeConfigName": "80"}
    (rc,) = [r for r in render_json(cfg, "routes") if r["name"] == "80"]
    web = next(v for v in rc["virtualHosts"] if v["name"] == "web.demo.svc.cluster.local:80")
    split = web["routes"][1]["route"]["weightedClusters"]["clusters"]
    assert split == [{"name": "outbound|80|v1|web.demo.svc.cluster.local", "weight": 90},
                     {"name": "outbound|80|v2|web.demo.svc.cluster.local", "weight": 10}]
    assert web["routes"][0]["match"]["headers"] == [
        {"name": "x-canary", "stringMatch": {"exact": "1"}}]
    assert web["routes"][0]["metadata"]["filterMetadata"]["istio"]["config"] == \
        "/apis/networking.istio.io/v1alpha3/namespaces/demo/virtual-service/web"
    clusters = {x["name"]: x for x in render_json(cfg, "clusters")}
    assert clusters["outbound|80|v1|web.demo.svc.cluster.local"]["type"] == "EDS"
    statuses = {s["name"]: s for s in render_json(cfg, "endpoints")["clusterStatuses"]}
    assert [h["address"]["socketAddress"] for h in
            statuses["outbound|80|v2|web.demo.svc.cluster.local"]["hostStatuses"]] == [
        {"address": "10.244.0.12", "portValue": 8080}]
    everything = render_json(cfg)
    assert set(everything) == {"pod", "clusters", "listeners", "routes", "endpoints"}


def test_inline_and_static_listeners_have_their_routes():
    c = tiny()
    listeners = {x["name"]: x for x in render_json(sidecar_config(c, c.pod("demo", "web-v1")),
                                                   "listeners")}
    health = listeners["0.0.0.0_15021"]["filterChains"][0]["filters"][0]["typedConfig"]
    assert health["routeConfig"]["virtualHosts"][0]["routes"][0] == {
        "match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}
