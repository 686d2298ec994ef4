"""`netsim mesh load` follows VirtualService match conditions and DestinationRule subsets.

Expected values are derived by hand from Istio's documented semantics:
- VirtualService reference: http routes are evaluated in order and the first whose match passes
  wins; inside a match block conditions are ANDed, blocks are ORed; uri prefix is
  case-sensitive; `port` and `sourceLabels` select at config time; no match means 404 NR
  (../shared/reference/mesh-ingress.md section 5); a destination without a port on a
  one-port Service uses that port (route.go GetDestinationCluster);
- DestinationRule reference: a subset's cluster holds the endpoints whose pods carry its labels;
  subset settings override the host's, port-level settings replace the part they set (the
  omitted fields take defaults); a subset the rule does not define has no cluster, 503 NC
  (mesh-ingress.md section 6);
- Envoy weighted_clusters: each request picks one cluster with probability weight/total.
"""

from __future__ import annotations

import pytest

from netsim.fields import FrozenDict
from netsim.packet import HttpRequest
from proxy.envoy_load import simulate
from proxy.envoy_policy import UINT32_MAX, resolve_target
from proxy.envoy_report import Failure, LoadSpec

FQDN = "web.shop.svc.cluster.local"
V1, V2, X = "outbound|80|v1|" + FQDN, "outbound|80|v2|" + FQDN, "outbound|80||" + FQDN


def _pod(name: str, ip: str, labels: str) -> str:
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {{{labels}}}}}
spec: {{containers: [{{name: c, image: x}}]}}
status: {{podIP: {ip}}}
"""


BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
""" + "".join(_pod(*p) for p in (
    ("client", "10.244.9.9", "app: client"), ("tester", "10.244.9.8", "app: tester"),
    ("web-v1-0", "10.244.1.10", "app: web, version: v1"),
    ("web-v1-1", "10.244.1.11", "app: web, version: v1"),
    ("web-v2-0", "10.244.1.20", "app: web, version: v2"),
    ("web-v2-1", "10.244.1.21", "app: web, version: v2"),
    ("web-x", "10.244.1.30", "app: web"),  # in no subset
    ("legacy-0", "10.244.2.10", "app: legacy"))) + """
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http-admin, port: 9090, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 100}}
    outlierDetection: {consecutive5xxErrors: 7}
    portLevelSettings:
    - port: {number: 80}
      connectionPool: {http: {http1MaxPendingRequests: 10}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {http: {maxRetries: 3}}
      outlierDetection: {consecutive5xxErrors: 2, interval: 1s, maxEjectionPercent: 100}
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: RANDOM}
"""

ROUTES = """
  - match: [{uri: {prefix: /admin}}]
    directResponse: {status: 403}
  - match: [{headers: {end-user: {exact: jason}}}, {sourceLabels: {app: tester}}]
    route: [{destination: {host: web, subset: v2}}]
    retries: {attempts: 0}
  - match: [{method: {exact: POST}, port: 80}]
    route: [{destination: {host: legacy}}]
  - route:
    - {destination: {host: web, subset: v1}, weight: 75}
    - {destination: {host: web, subset: v2}, weight: 25}
"""


def vs(routes: str = ROUTES) -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [web]
  http:{routes}"""


def target(load_text, routes: str = ROUTES, *, client="shop/client", port=80, method="GET",
           path="/", headers=()):
    cluster = load_text(BASE + vs(routes))
    return resolve_target(cluster, client, "shop", "web", port,
                          HttpRequest(method, FQDN, path, headers=headers))


@pytest.mark.parametrize(("client", "port", "method", "path", "headers", "index", "clusters",
                          "answer"), [
    ("shop/client", 80, "GET", "/", (), 3, ((V1, 75), (V2, 25)), None),
    ("shop/client", 80, "GET", "/admin/users", (), 0, (), 403),
    ("shop/client", 80, "GET", "/Admin", (), 3, ((V1, 75), (V2, 25)), None),  # case-sensitive
    ("shop/client", 80, "GET", "/", (("end-user", "jason"),), 1, ((V2, 100),), None),
    ("shop/client", 80, "GET", "/", (("end-user", "bob"),), 3, ((V1, 75), (V2, 25)), None),
    ("shop/tester", 80, "GET", "/", (), 1, ((V2, 100),), None),  # sourceLabels block
    # POST on port 80: legacy's one port, 8080
    ("shop/client", 80, "POST", "/orders", (), 2,
     (("outbound|8080||legacy.shop.svc.cluster.local", 100),), None),
    # the same POST on 9090 skips http[2] (port: 80); subsets on the listener's port
    ("shop/client", 9090, "POST", "/orders", (), 3,
     ((f"outbound|9090|v1|{FQDN}", 75), (f"outbound|9090|v2|{FQDN}", 25)), None),
])
def test_the_route_the_request_matches(load_text, client, port, method, path, headers, index,
                                       clusters, answer):
    t = target(load_text, client=client, port=port, method=method, path=path, headers=headers)
    assert (t.route.virtual_service, t.route.index, t.route.answer) == ("shop/web", index,
                                                                          answer)
    if answer is None:
        assert tuple((b.cluster.name, b.weight) for b in t.backends) == clusters


# (port, subset) -> (endpoints, lb, maxConnections, http1MaxPendingRequests, maxRetries,
# consecutive5xxErrors)
@pytest.mark.parametrize(("port", "subset", "expected"), [
    # port 80's connectionPool replaces the host's: maxConnections back to the default
    (80, "v1", (("10.244.1.10:8080", "10.244.1.11:8080"), "ROUND_ROBIN", UINT32_MAX, 10,
                UINT32_MAX, 7)),
    # v2's connectionPool replaces the host's port-80 one; its port-80 lb is RANDOM
    (80, "v2", (("10.244.1.20:8080", "10.244.1.21:8080"), "RANDOM", UINT32_MAX, UINT32_MAX,
                3, 2)),
    (9090, "v1", (("10.244.1.10:8080", "10.244.1.11:8080"), "ROUND_ROBIN", 100, UINT32_MAX,
                  UINT32_MAX, 7)),
    (9090, "v2", (("10.244.1.20:8080", "10.244.1.21:8080"), "ROUND_ROBIN", UINT32_MAX,
                  UINT32_MAX, 3, 2)),
])
def test_each_subset_cluster_has_its_members_and_policy(load_text, port, subset, expected):
    t = target(load_text, port=port)
    c = next(b.cluster for b in t.backends if b.cluster.name.split("|")[2] == subset)
    cb = c.circuit_breakers
    assert (tuple(h.address for h in c.hosts), c.lb_policy, cb.max_connections,
            cb.max_pending_requests, cb.max_retries, c.outlier.consecutive_5xx) == expected
    assert c.destination_rule == "shop/web" and c.defined


def test_the_subset_outlier_policy_ejects_where_the_hosts_would_not(load_text):
    # end-user: jason -> v2 only, on 9090 (v2's RANDOM lb is port 80's), retries off.
    # Round robin over .20, .21 at 10/s; web-v2-0 always 503: requests 0 and 2 fail, the
    # second (0.21s) reaches v2's consecutive5xxErrors 2 and 1/2 = 50% <= 100% ejects it for
    # the default 30s; the host-level 7 would not fire within 10 requests.
    t = target(load_text, port=9090, headers=(("end-user", "jason"),))
    assert t.cluster.name == f"outbound|9090|v2|{FQDN}" and t.route.retry is None
    r = simulate(t, LoadSpec(10, failures=FrozenDict({"10.244.1.20:8080": Failure(1.0)})))
    assert [(e.time_us, e.host, e.action, e.cluster) for e in r.events] == \
        [(210_000, "10.244.1.20:8080", "eject", t.cluster.name)]
    assert (r.succeeded, r.codes) == (8, {200: 8, 503: 2})
    assert [(h.address, h.routed) for h in r.hosts] == [("10.244.1.20:8080", 2),
                                                        ("10.244.1.21:8080", 8)]


@pytest.mark.parametrize(("routes", "path", "codes", "flags"), [
    # a subset the DestinationRule does not define: no cluster, 503 NC
    ("\n  - route: [{destination: {host: web, subset: v9}}]\n", "/", {503: 5}, {"NC": 5}),
    # routes exist but none matches: 404 NR
    ("\n  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: web}}]\n", "/",
     {404: 5}, {"NR": 5}),
    # a direct response never reaches an upstream
    (ROUTES, "/admin", {403: 5}, {"-": 5}),
])
def test_answers_without_an_upstream(load_text, routes, path, codes, flags):
    t = target(load_text, routes, path=path)
    r = simulate(t, LoadSpec(5))
    assert (r.codes, r.flags) == (codes, flags)
    assert all(h.routed == 0 for h in r.hosts)


def test_a_route_only_for_another_port_leaves_the_default_route(load_text):
    # a VirtualService whose every match is for port 9090 builds no route on port 80, so the
    # Service keeps its default route there (every ready endpoint, host-level policy)
    t = target(load_text, "\n  - match: [{port: 9090}]\n    route: [{destination: {host: web, "
                          "subset: v2}}]\n")
    assert t.cluster.name == X and t.route.virtual_service is None
    assert len(t.cluster.hosts) == 5 and "no http route for port 80" in t.notes[0]


def test_requests_split_by_weight_and_stay_in_their_subset(load_text):
    # 75/25 over v1/v2: each request picks a cluster with probability 3/4 vs 1/4 (binomial
    # standard deviation over 1000 is 13.7; 60 is over four of them); web-x carries no
    # version label, so it is in neither subset and gets nothing.
    t = target(load_text)
    r = simulate(t, LoadSpec(1000, rate=1000.0))
    per = {}
    for h in r.hosts:
        per[h.cluster] = per.get(h.cluster, 0) + h.routed
    assert abs(per[V1] - 750) < 60 and per[V1] + per[V2] == 1000
    assert "10.244.1.30:8080" not in {h.address for h in r.hosts}
    assert r.succeeded == 1000
