"""Requests through a sidecar: listener, virtual host, first-match route, weighted branches.

Expectations: the Bookinfo traffic-management tasks on istio.io (request routing, fault
injection, traffic shifting), the VirtualService reference (match semantics, weights), Envoy's
response flags (NR, NC, UH, FI, DI) and mesh-ingress.md sections 2, 3, 5 and 6.
"""

from __future__ import annotations

import pytest

from netsim.packet import HttpRequest
from proxy.sidecar import MeshOptions, route_inbound, route_outbound, sidecar_config
from tests.proxy.test_sidecar_config import NEEDS_BOOKINFO, bookinfo, pod_named, tiny

WEB = "web.demo.svc.cluster.local"
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


def get(host: str, path: str = "/", method: str = "GET", **headers: str) -> HttpRequest:
    return HttpRequest(method, host, path, headers=tuple((k.replace("_", "-"), v)
                                                         for k, v in headers.items()))


def summary(decision) -> list[tuple]:
    """(probability, subset or cluster, status, flag) per branch, rounded."""
    return [(round(c.probability, 6), c.subset or c.cluster, c.status, c.response_flag)
            for c in decision.choices]


# ---------------------------------------------------------------- Bookinfo


@pytest.fixture
def reviews_call(tmp_path):
    """Route productpage's call to reviews:9080 with the given Bookinfo files applied."""

    def call(files: tuple[str, ...], **headers: str):
        c = bookinfo(tmp_path, "destination-rule-all.yaml", *files)
        cfg = sidecar_config(c, pod_named(c, "productpage"))
        svc = c.service("default", "reviews")
        decision = route_outbound(cfg, svc.cluster_ip, 9080,
                                  get("reviews:9080", "/reviews/0", **headers))
        return c, decision

    return call


@NEEDS_BOOKINFO
@pytest.mark.parametrize(("files", "headers", "expected"), [
    # istio.io "Traffic Shifting" / "Request Routing" with Bookinfo's sample files
    (("virtual-service-reviews-80-20.yaml",), {}, [(0.8, "v1"), (0.2, "v2")]),
    (("virtual-service-reviews-90-10.yaml",), {}, [(0.9, "v1"), (0.1, "v2")]),
    (("virtual-service-reviews-50-v3.yaml",), {}, [(0.5, "v1"), (0.5, "v3")]),
    (("virtual-service-reviews-v3.yaml",), {}, [(1.0, "v3")]),
    (("virtual-service-all-v1.yaml",), {}, [(1.0, "v1")]),
    (("virtual-service-reviews-jason-v2-v3.yaml",), {"end_user": "jason"}, [(1.0, "v2")]),
    (("virtual-service-reviews-jason-v2-v3.yaml",), {}, [(1.0, "v3")]),
    (("virtual-service-reviews-jason-v2-v3.yaml",), {"end_user": "Jason"}, [(1.0, "v3")]),
    (("virtual-service-reviews-test-v2.yaml",), {"end_user": "jason"}, [(1.0, "v2")]),
    (("virtual-service-reviews-test-v2.yaml",), {"end_user": "kim"}, [(1.0, "v1")]),
])
def test_bookinfo_reviews_routing(reviews_call, files, headers, expected):
    c, decision = reviews_call(files, **headers)
    assert (decision.listener, decision.route_config, decision.virtual_host) == (
        "0.0.0.0_9080", "9080", "reviews.default.svc.cluster.local:9080")
    assert [(round(ch.probability, 6), ch.subset) for ch in decision.choices] == expected
    for choice in decision.choices:  # each subset's endpoints: the pods with its version
        want = {(p.ip, 9080, p.key) for p in c.pods_in("default")
                if p.labels.get("app") == "reviews"
                and p.labels.get("version") == choice.subset}
        assert set(choice.endpoints) == want
        assert choice.cluster == f"outbound|9080|{choice.subset}|reviews.default.svc.cluster.local"
        assert choice.virtual_service == "default/reviews"
        assert choice.mtls and choice.status is None and choice.response_flag is None


@NEEDS_BOOKINFO
def test_without_a_virtual_service_the_default_route_spreads_over_all_endpoints(reviews_call):
    c, decision = reviews_call(())
    (choice,) = decision.choices
    assert choice.cluster == "outbound|9080||reviews.default.svc.cluster.local"
    assert choice.route_name == "default" and choice.virtual_service is None
    assert {e[2] for e in choice.endpoints} == {
        p.key for p in c.pods_in("default") if p.labels.get("app") == "reviews"}
    # Default retries: 2 on connect-failure,refused-stream,... (retry.go); no timeout.
    assert (choice.retries.attempts, choice.retries.retry_on, choice.timeout) == (
        2, DEFAULT_RETRY_ON, None)


@NEEDS_BOOKINFO
@pytest.mark.parametrize(("file", "user", "expected"), [
    # istio.io "Fault Injection": jason gets HTTP 500 (abort) or a 7s delay; others do not.
    ("virtual-service-ratings-test-abort.yaml", "jason", [(1.0, None, 500, "FI", "abort 500")]),
    ("virtual-service-ratings-test-abort.yaml", "kim", [(1.0, "v1", None, None, None)]),
    ("virtual-service-ratings-test-delay.yaml", "jason", [(1.0, "v1", None, "DI", "delay 7s")]),
    ("virtual-service-ratings-test-delay.yaml", "kim", [(1.0, "v1", None, None, None)]),
])
def test_bookinfo_ratings_fault_injection(tmp_path, file, user, expected):
    c = bookinfo(tmp_path, "destination-rule-all.yaml", file)
    cfg = sidecar_config(c, pod_named(c, "reviews-v2"))
    decision = route_outbound(cfg, c.service("default", "ratings").cluster_ip, 9080,
                              get("ratings:9080", "/ratings/0", end_user=user))
    assert [(round(ch.probability, 6), ch.subset, ch.status, ch.response_flag, ch.fault)
            for ch in decision.choices] == expected
    if expected[0][2] == 500:
        assert decision.choices[0].endpoints == ()  # the fault filter answers, no upstream


# ---------------------------------------------------------------- weights x faults


def test_fault_percentages_split_the_weighted_branches():
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  hosts: [web]
  http:
  - fault:
      abort: {httpStatus: 503, percentage: {value: 20}}
      delay: {fixedDelay: 2s, percentage: {value: 50}}
    route:
    - {destination: {host: web, subset: v1}, weight: 75}
    - {destination: {host: web, subset: v2}, weight: 25}
"""
    c = tiny(vs, vs=False)
    cfg = sidecar_config(c, c.pod("demo", "client"))
    d = route_outbound(cfg, "10.96.0.20", 80, get("web"))
    # abort 20% and delay 50% are independent; weights split what is not aborted.
    assert [(round(ch.probability, 6), ch.subset, ch.status, ch.response_flag)
            for ch in d.choices] == [
        (0.1, None, 503, "DI,FI"), (0.1, None, 503, "FI"),
        (0.3, "v1", None, "DI"), (0.3, "v1", None, None),
        (0.1, "v2", None, "DI"), (0.1, "v2", None, None)]
    assert sum(ch.probability for ch in d.choices) == pytest.approx(1.0)


def test_a_fault_without_percentage_never_fires():
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  hosts: [web]
  http:
  - fault: {abort: {httpStatus: 503}}
    route: [{destination: {host: web, subset: v1}}]
"""
    c = tiny(vs, vs=False)
    d = route_outbound(sidecar_config(c, c.pod("demo", "client")), "10.96.0.20", 80, get("web"))
    assert summary(d) == [(1.0, "v1", None, None)]


# ---------------------------------------------------------------- matching


MATCHES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  hosts: [web]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: post-api
    match: [{uri: {prefix: /api}, method: {exact: POST}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: regex
    match: [{uri: {regex: "/items/[0-9]+"}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: query
    match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: either
    match:
    - {name: admin, headers: {x-user: {prefix: adm}}}
    - {name: beta, headers: {x-beta: {}}}
    route: [{destination: {host: web, subset: v1}}]
  - name: nocase
    match: [{uri: {prefix: /case}, ignoreUriCase: true}]
    route: [{destination: {host: web, subset: v2}}]
  - name: not-bot
    match: [{uri: {prefix: /shop}, withoutHeaders: {x-bot: {exact: "yes"}}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: version
    match: [{headers: {x-ver: {regex: "v[0-9]+"}}}]
    route: [{destination: {host: web, subset: v2}}]
"""


@pytest.mark.parametrize(("method", "path", "headers", "route"), [
    ("GET", "/exact", {}, "exact"),
    ("GET", "/exact?x=1", {}, "exact"),  # the query string is not part of the path
    ("GET", "/exact/", {}, None),  # exact means equal
    ("POST", "/api/orders", {}, "post-api"),
    ("POST", "/apiary", {}, "post-api"),  # a string prefix, not path elements
    ("GET", "/api/orders", {}, None),  # both conditions of a block must hold
    ("GET", "/items/42", {}, "regex"),
    ("GET", "/items/42/x", {}, None),  # RE2 must match the whole path
    ("GET", "/other?debug=1", {}, "query"),
    ("GET", "/other?debug=2", {}, None),
    ("GET", "/other", {"x_user": "admin"}, "either.admin"),  # blocks are ORed
    ("GET", "/other", {"x_beta": ""}, "either.beta"),  # {} tests presence
    ("GET", "/CASE/x", {}, "nocase"),
    ("GET", "/Exact", {}, None),  # case-sensitive unless ignoreUriCase
    ("GET", "/shop", {}, "not-bot"),
    ("GET", "/shop", {"x_bot": "yes"}, None),
    ("GET", "/", {"x_ver": "v12"}, "version"),
    ("GET", "/", {"x_ver": "v12x"}, None),  # header regexes match the whole value too
])
def test_virtual_service_match_semantics(method, path, headers, route):
    c = tiny(MATCHES, vs=False)
    cfg = sidecar_config(c, c.pod("demo", "client"))
    d = route_outbound(cfg, "10.96.0.20", 80, get("web", path, method, **headers))
    if route is None:  # no route matches and the VirtualService has no catch-all: 404 NR
        assert summary(d) == [(1.0, None, 404, "NR")]
    else:
        assert d.choices[0].route_name == route and d.choices[0].status is None


@pytest.mark.parametrize(("host", "vhost"), [
    ("web", f"{WEB}:80"), ("web:80", f"{WEB}:80"), ("web.demo", f"{WEB}:80"),
    ("web.demo.svc", f"{WEB}:80"), (WEB, f"{WEB}:80"), (f"{WEB}.", f"{WEB}:80"),
    ("10.96.0.20", f"{WEB}:80"), ("WEB.Demo", f"{WEB}:80"),
    ("example.com", "allow_any"),
])
def test_host_header_picks_the_virtual_host(host, vhost):
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    d = route_outbound(cfg, "10.96.0.20", 80, get(host, "/", x_canary="1"))
    assert d.virtual_host == vhost
    if vhost == "allow_any":  # unknown hosts pass through to the original destination
        assert [(ch.cluster, ch.endpoints) for ch in d.choices] == [
            ("PassthroughCluster", (("10.96.0.20", 80, None),))]


def test_first_matching_route_wins_in_order():
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    canary = route_outbound(cfg, "10.96.0.20", 80, get("web", x_canary="1"))
    assert summary(canary) == [(1.0, "v2", None, None)]
    rest = route_outbound(cfg, "10.96.0.20", 80, get("web"))
    assert summary(rest) == [(0.9, "v1", None, None), (0.1, "v2", None, None)]


def test_endpoints_split_by_mtls_when_only_some_have_a_sidecar_mode():
    """Auto mTLS is per endpoint: a PeerAuthentication DISABLE on v2 makes the client send
    it plaintext, so the default route's branch splits by endpoint (Envoy balances over
    both)."""
    pa = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: demo}
spec: {selector: {matchLabels: {version: v2}}, mtls: {mode: DISABLE}}
"""
    c = tiny(pa, vs=False)
    d = route_outbound(sidecar_config(c, c.pod("demo", "client")), "10.96.0.20", 80,
                       get("web"))
    assert [(ch.probability, ch.endpoints, ch.mtls) for ch in d.choices] == [
        (0.5, (("10.244.0.11", 8080, "demo/web-v1"),), True),
        (0.5, (("10.244.0.12", 8080, "demo/web-v2"),), False)]


# ---------------------------------------------------------------- failures and options


@pytest.mark.parametrize(("subset", "fault", "flag"), [
    ("v9", "", "NC"), ("v3", "", "UH"),
    # with a delay too, flags print in Envoy's enum order (UH before DI, DI before NC)
    ("v9", "fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}", "DI,NC"),
    ("v3", "fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}", "UH,DI"),
])
def test_undefined_subset_is_nc_and_empty_subset_is_uh(subset, fault, flag):
    """A subset the DestinationRule lacks has no cluster (503 NC); one whose labels match no
    pod has no healthy upstream (503 UH) (mesh-ingress.md section 6)."""
    extra = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: demo}}
spec:
  host: web
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: [web]
  http:
  - {{{fault}{", " if fault else ""}route: [{{destination: {{host: web, subset: {subset}}}}}]}}
"""
    c = tiny(extra, dr=False, vs=False)
    d = route_outbound(sidecar_config(c, c.pod("demo", "client")), "10.96.0.20", 80,
                       get("web"))
    assert [(ch.cluster, ch.status, ch.response_flag) for ch in d.choices] == [
        (f"outbound|80|{subset}|{WEB}", 503, flag)]


def test_route_options_retries_timeout_mirror_rewrite():
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /}
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,503,reset"}
    mirror: {host: web, subset: v2}
    mirrorPercentage: {value: 25}
    route: [{destination: {host: web, subset: v1}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - retries: {attempts: 0}
    route: [{destination: {host: web, subset: v1}}]
"""
    c = tiny(vs, vs=False)
    cfg = sidecar_config(c, c.pod("demo", "client"))
    (v1,) = route_outbound(cfg, "10.96.0.20", 80, get("web", "/v1/x")).choices
    # Bare status codes in retryOn become retriable-status-codes (retry.go parseRetryOn).
    assert (v1.retries.attempts, v1.retries.retry_on, v1.retries.per_try_timeout,
            v1.retries.status_codes) == (3, "5xx,reset,retriable-status-codes", "2s", (503,))
    assert v1.timeout == "10s" and v1.rewrite.uri == "/"
    assert [(m.cluster, m.percent) for m in v1.mirror] == [(f"outbound|80|v2|{WEB}", 25.0)]
    (moved,) = route_outbound(cfg, "10.96.0.20", 80, get("web", "/old")).choices
    assert (moved.status, moved.cluster, moved.endpoints) == (301, None, ())
    (plain,) = route_outbound(cfg, "10.96.0.20", 80, get("web", "/else")).choices
    assert plain.retries is None  # attempts 0 turns retries off


def test_tcp_goes_to_the_service_cluster_in_plaintext_to_a_pod_without_sidecar():
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    d = route_outbound(cfg, "10.96.0.30", 6379)
    assert (d.listener, d.protocol, d.filter_chain) == ("10.96.0.30_6379", "tcp", "ALL")
    assert [(ch.cluster, ch.endpoints, ch.mtls) for ch in d.choices] == [
        ("outbound|6379||redis.db.svc.cluster.local", (("10.244.0.20", 6379, "db/redis"),),
         False)]


@pytest.mark.parametrize(("policy", "request_", "expected"), [
    ("ALLOW_ANY", None, ("PassthroughCluster", None, None)),
    ("REGISTRY_ONLY", None, ("BlackHoleCluster", None, "UH")),  # TCP: closed, no status
    ("ALLOW_ANY", get("example.com"), ("PassthroughCluster", None, None)),
    ("REGISTRY_ONLY", get("example.com"), (None, 502, None)),  # block_all: direct 502
])
def test_unknown_destinations(policy, request_, expected):
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"),
                         options=MeshOptions(outbound_traffic_policy=policy))
    port = 80 if request_ else 443
    (choice,) = route_outbound(cfg, "93.184.216.34", port, request_).choices
    assert (choice.cluster, choice.status, choice.response_flag) == expected


def test_non_http_bytes_on_an_http_port_pass_through():
    """The HTTP chain needs the inspector's ALPN; TLS or raw TCP takes the default chain."""
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    for req in (None, HttpRequest("GET", "web", "/", scheme="https")):
        (choice,) = route_outbound(cfg, "10.96.0.20", 80, req).choices
        assert (choice.cluster, choice.endpoints) == ("PassthroughCluster",
                                                      (("10.96.0.20", 80, None),))


def test_sniffed_port_routes_http_and_tcp_apart():
    """A port named "metrics" is sniffed: HTTP gets route config "<fqdn>:<port>" (here the
    api VirtualService applies, with its explicit port 80), other bytes the TCP chain."""
    from netsim.cluster import load
    from tests.conftest import EXAMPLES

    c = load([str(EXAMPLES / "shop")], overrides={"mesh": True})
    web = pod_named(c, "web-", "shop")
    cfg = sidecar_config(c, web)
    ip = c.service("shop", "api").cluster_ip
    http = route_outbound(cfg, ip, 9090, get("api.shop:9090", "/metrics"))
    assert (http.route_config, http.virtual_host) == ("api.shop.svc.cluster.local:9090",) * 2
    assert {ch.cluster for ch in http.choices} == {"outbound|80|v1|api.shop.svc.cluster.local"}
    tcp = route_outbound(cfg, ip, 9090)
    assert {ch.cluster for ch in tcp.choices} == {"outbound|9090||api.shop.svc.cluster.local"}


# ---------------------------------------------------------------- inbound


@pytest.mark.parametrize(("mode", "mtls", "http", "port", "cluster", "terminated"), [
    ("PERMISSIVE", True, True, 8080, "inbound|8080||", True),
    ("PERMISSIVE", False, True, 8080, "inbound|8080||", False),
    ("PERMISSIVE", True, False, 8080, "inbound|8080||", True),  # TCP mTLS ALPN istio
    ("STRICT", True, True, 8080, "inbound|8080||", True),
    ("STRICT", False, True, 8080, None, False),  # plaintext to STRICT is reset
    ("PERMISSIVE", False, False, 9999, "InboundPassthroughCluster", False),
    ("STRICT", False, False, 9999, None, False),
    ("DISABLE", False, True, 8080, "inbound|8080||", False),
    ("DISABLE", True, True, 8080, None, False),
])
def test_inbound_chains(mode, mtls, http, port, cluster, terminated):
    pa = f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: demo}}
spec: {{mtls: {{mode: {mode}}}}}
"""
    c = tiny(pa)
    cfg = sidecar_config(c, c.pod("demo", "web-v1"))
    choice = route_inbound(cfg, port, mtls=mtls, http=http)
    assert choice.cluster == cluster
    assert choice.reset == (cluster is None)
    if cluster:
        assert (choice.app_address, choice.app_port, choice.source, choice.tls_terminated) == (
            "10.244.0.11", port, "127.0.0.6", terminated)
