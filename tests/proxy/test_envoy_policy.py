"""DestinationRule and VirtualService into the client sidecar's Envoy cluster and route, as
istiod's cluster_traffic_policy.go and route/retry/retry.go translate them."""

from __future__ import annotations

import pytest

from netsim.errors import InputError
from netsim.fields import Fields
from proxy.envoy_policy import (
    DEFAULT_RETRY_ON,
    UINT32_MAX,
    CircuitBreakers,
    OutlierDetection,
    RetryPolicy,
    parse_duration_ms,
    resolve_target,
)

BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: front, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: front, labels: {app: client}}
spec: {containers: [{name: c, image: curl}]}
status: {podIP: 10.244.9.9}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.244.1.9}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web, ports: [{containerPort: 8080}]}]}
status:
  podIP: 10.244.1.11
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc-api, port: 9090, targetPort: 8080}
"""


def dr(name: str, namespace: str, host: str, policy: str = "", extra: str = "") -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: "{host}"
{extra}
  trafficPolicy: {{{policy}}}
"""


def resolve(load_text, *docs: str, port: int | str = 80):
    cluster = load_text(BASE + "".join(docs))
    return resolve_target(cluster, "front/client", "shop", "web", port)


def test_without_istio_config_istio_defaults_apply(load_text):
    t = resolve(load_text)
    c = t.cluster
    assert c.name == "outbound|80||web.shop.svc.cluster.local"
    # ready endpoints only (web-2 is not Ready), in address order (.9 before .10)
    assert [(h.address, h.pod) for h in c.hosts] == [("10.244.1.9:8080", "shop/web-1"),
                                                     ("10.244.1.10:8080", "shop/web-0")]
    assert c.lb_policy == "LEAST_REQUEST" and not c.http2
    assert c.circuit_breakers == CircuitBreakers() and c.circuit_breakers.max_retries == UINT32_MAX
    assert c.outlier is None
    assert t.route.retry == RetryPolicy(num_retries=2, retry_on=DEFAULT_RETRY_ON)
    assert t.route.retry.retriable_status_codes == ()  # 503 excluded by default
    assert t.route.timeout_ms is None and t.destination_rule is None and t.notes == ()


def test_destination_rule_connection_pool_and_outlier_detection(load_text):
    policy = """
    loadBalancer: {simple: ROUND_ROBIN},
    connectionPool: {tcp: {maxConnections: 1},
                     http: {http1MaxPendingRequests: 2, http2MaxRequests: 3, maxRetries: 4,
                            maxRequestsPerConnection: 5}},
    outlierDetection: {consecutive5xxErrors: 7, consecutiveGatewayErrors: 2, interval: 1m,
                       baseEjectionTime: 1.5s, maxEjectionPercent: 50, minHealthPercent: 30}"""
    t = resolve(load_text, dr("web", "shop", "web", policy))
    c = t.cluster
    assert t.destination_rule == "shop/web" and c.lb_policy == "ROUND_ROBIN"
    assert c.circuit_breakers == CircuitBreakers(1, 2, 3, 4, 5)
    assert c.outlier == OutlierDetection(
        consecutive_5xx=7, consecutive_gateway_failure=2, interval_ms=60_000,
        base_ejection_time_ms=1500, max_ejection_time_ms=300_000, max_ejection_percent=50,
        healthy_panic_threshold=30)


def test_outlier_detection_defaults_and_zero_values(load_text):
    # Envoy's defaults fill what Istio leaves unset; maxEjectionPercent 0 is "unset" (10%);
    # consecutive5xxErrors 0 disables; a base above 300s raises max_ejection_time with it.
    t = resolve(load_text, dr("web", "shop", "web",
                              "outlierDetection: {maxEjectionPercent: 0, consecutive5xxErrors: 0,"
                              " baseEjectionTime: 10m}"))
    assert t.cluster.outlier == OutlierDetection(
        consecutive_5xx=0, base_ejection_time_ms=600_000, max_ejection_time_ms=600_000)
    t = resolve(load_text, dr("web", "shop", "web", "outlierDetection: {}"))
    assert t.cluster.outlier == OutlierDetection()  # 5, 10s, 30s, 10%, panic 0


def test_port_level_settings_replace_the_top_level_part(load_text):
    policy = """
    connectionPool: {tcp: {maxConnections: 9}},
    outlierDetection: {consecutive5xxErrors: 9},
    portLevelSettings: [{port: {number: 80}, connectionPool: {tcp: {maxConnections: 1}}}]"""
    t = resolve(load_text, dr("web", "shop", "web", policy))
    assert t.cluster.circuit_breakers.max_connections == 1
    assert t.cluster.outlier.consecutive_5xx == 9  # not set at port level: top level stays
    t = resolve(load_text, dr("web", "shop", "web", policy), port=9090)
    assert t.cluster.circuit_breakers.max_connections == 9


@pytest.mark.parametrize(("docs", "chosen"), [
    # the client's namespace first, then the Service's, then the root namespace
    ((dr("a", "shop", "web"), dr("b", "front", "web.shop.svc.cluster.local")), "front/b"),
    ((dr("a", "shop", "web"), dr("c", "istio-system", "*.shop.svc.cluster.local")), "shop/a"),
    ((dr("c", "istio-system", "*.svc.cluster.local"),), "istio-system/c"),
    # the most specific host within a namespace
    ((dr("a", "shop", "*.shop.svc.cluster.local"), dr("z", "shop", "web")), "shop/z"),
    # a short name means the DestinationRule's own namespace
    ((dr("a", "front", "web"),), None),
    # exportTo "." hides a rule from other namespaces
    ((dr("a", "shop", "web", extra='  exportTo: ["."]'),), None),
    ((dr("a", "shop", "web", extra='  exportTo: ["front"]'),), "shop/a"),
    # a workloadSelector must select the client
    ((dr("a", "shop", "web", extra="  workloadSelector: {matchLabels: {app: other}}"),), None),
])
def test_which_destination_rule_applies(load_text, docs, chosen):
    assert resolve(load_text, *docs).destination_rule == chosen


def vs(route: str, extra: str = "") -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [web]
{extra}
  http: [{route}]
"""


@pytest.mark.parametrize(("route", "retry", "timeout"), [
    ("{route: [{destination: {host: web}}]}", RetryPolicy(), None),
    ("{timeout: 2s, retries: {attempts: 3}}", RetryPolicy(num_retries=3), 2000),
    # attempts 0 (or no attempts) turns retries off
    ("{retries: {attempts: 0, retryOn: 5xx}}", None, None),
    ("{retries: {retryOn: 5xx}}", None, None),
    # bare status codes become retriable-status-codes, added to retryOn
    ('{retries: {attempts: 1, retryOn: "gateway-error,503", perTryTimeout: 250ms}}',
     RetryPolicy(num_retries=1, retry_on=("gateway-error", "retriable-status-codes"),
                 retriable_status_codes=(503,), per_try_timeout_ms=250), None),
    ("{retries: {attempts: 2, retryOn: 5xx, retryIgnorePreviousHosts: false, backoff: 100ms}}",
     RetryPolicy(num_retries=2, retry_on=("5xx",), previous_hosts=False, base_interval_ms=100,
                 max_interval_ms=1000), None),
])
def test_virtual_service_retries_and_timeout(load_text, route, retry, timeout):
    t = resolve(load_text, vs(route))
    assert (t.route.retry, t.route.timeout_ms) == (retry, timeout)
    assert t.route.virtual_service == "shop/web" and t.route.index == 0


def test_the_first_route_without_match_conditions_is_used(load_text):
    route = ("{match: [{uri: {prefix: /admin}}], retries: {attempts: 0}}, "
             "{retries: {attempts: 4}}")
    t = resolve(load_text, vs(route))
    assert t.route.index == 1 and t.route.retry.num_retries == 4
    assert t.notes == ("VirtualService shop/web: http[1] used",)


def test_a_virtual_service_bound_to_gateways_only_does_not_apply(load_text):
    t = resolve(load_text, vs("{retries: {attempts: 0}}", extra="  gateways: [shop/gw]"))
    assert t.route.virtual_service is None and t.route.retry == RetryPolicy()


def test_grpc_port_and_h2_upgrade_use_http2(load_text):
    assert resolve(load_text, port="grpc-api").cluster.http2
    t = resolve(load_text, dr("web", "shop", "web",
                              "connectionPool: {http: {h2UpgradePolicy: UPGRADE}}"))
    assert t.cluster.http2


@pytest.mark.parametrize(("text", "ms"), [("10s", 10_000), ("1m", 60_000), ("1.5s", 1500),
                                           ("500ms", 500), ("1m30s", 90_000), ("1h", 3_600_000)])
def test_durations(text, ms):
    assert parse_duration_ms(Fields({"d": text}, None, None), "d") == ms


def test_bad_input_names_the_object_and_field(load_text):
    with pytest.raises(InputError, match=r"DestinationRule shop/web: spec.trafficPolicy."
                                         r"outlierDetection.interval: must be a duration"):
        resolve(load_text, dr("web", "shop", "web", "outlierDetection: {interval: soon}"))
    with pytest.raises(InputError, match="must be between 0 and 100"):
        resolve(load_text, dr("web", "shop", "web", "outlierDetection: {maxEjectionPercent: 101}"))
    with pytest.raises(InputError, match="no port 81"):
        resolve(load_text, port=81)
    cluster = load_text(BASE)
    with pytest.raises(InputError, match="no pod 'front/nobody'"):
        resolve_target(cluster, "front/nobody", "shop", "web", 80)
    with pytest.raises(InputError, match="no Service shop/api"):
        resolve_target(cluster, "front/client", "shop", "api", 80)


def test_an_uninjected_client_gets_a_note(load_text):
    cluster = load_text(BASE.replace("labels: {istio-injection: enabled}}\n---\napiVersion: v1\n"
                                     "kind: Pod\nmetadata: {name: client",
                                     "labels: {}}\n---\napiVersion: v1\nkind: Pod\nmetadata: "
                                     "{name: client", 1)
                        .replace("name: front, labels: {istio-injection: enabled}",
                                 "name: front"))
    t = resolve_target(cluster, "front/client", "shop", "web", 80)
    assert "does not look injected" in t.notes[0]


def test_subsets_without_a_route_naming_them_leave_the_host_cluster(load_text):
    # "Policies specified for subsets will not take effect until a route rule explicitly sends
    # traffic to this subset" (Istio DestinationRule reference): every ready endpoint, the
    # host-level trafficPolicy. Routes to subsets: tests/proxy/test_envoy_subsets.py.
    t = resolve(load_text, dr("web", "shop", "web", "loadBalancer: {simple: RANDOM}",
                              extra="  subsets: [{name: v1, labels: {version: v1}}]"))
    assert t.cluster.name == "outbound|80||web.shop.svc.cluster.local"
    assert t.cluster.lb_policy == "RANDOM" and len(t.cluster.hosts) == 2
    assert t.notes == ()
