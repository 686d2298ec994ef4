"""VirtualService and DestinationRule parsed once (proxy.istio_resources,
proxy.istio_destination_rule): resolved hosts, every route kind, errors naming the field path,
and the trafficPolicy merge, hand-derived from Istio's DestinationRule reference:
- "Settings specified at the subset level will override the corresponding settings specified at
  the DestinationRule level" (Subset.trafficPolicy);
- port-level settings override the destination-level ones, and "default values will be applied
  to fields omitted in port-level traffic policies" (TrafficPolicy.portLevelSettings), i.e. a
  part (connectionPool, outlierDetection, loadBalancer, tls) is replaced whole;
- istio/istio MergeTrafficPolicy applies the host's port settings, then the subset's policy,
  then the subset's port settings.
"""

from __future__ import annotations

import pytest

from netsim.errors import InputError
from proxy.istio_destination_rule import parse_destination_rule
from proxy.istio_resources import RouteDestination, parse_virtual_service

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web, "*.example.com", api.other.svc.cluster.local]
  http:
  - name: admin
    match: [{uri: {prefix: /admin}, headers: {End-User: {exact: jason}}}, {name: all}]
    route: [{destination: {host: web, subset: v2, port: {number: 8080}}, weight: 30},
            {destination: {host: web, subset: v1}, weight: 70}]
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,503", backoff: 50ms,
              retryIgnorePreviousHosts: false}
    timeout: 2s
  tcp:
  - match: [{port: 5432, sourceLabels: {app: db-client}}]
    route: [{destination: {host: pg}}]
  tls:
  - match: [{port: 443, sniHosts: [a.example.com]}]
    route: [{destination: {host: a.example.com}}]
"""


def _vs(load_text, text: str = VS, **kw):
    (obj,) = load_text(text).raw("VirtualService")
    return parse_virtual_service(obj, **kw)


def test_a_virtual_service_is_read_with_hosts_resolved(load_text):
    vs = _vs(load_text)
    # short names take the VirtualService's namespace (ResolveShortnameToFQDN)
    assert vs.hosts == ("web.shop.svc.cluster.local", "*.example.com",
                        "api.other.svc.cluster.local")
    assert (vs.key, vs.name, vs.for_sidecars) == ("shop/web", "web", True)
    (http,) = vs.http
    assert http.destinations == (
        RouteDestination("web.shop.svc.cluster.local", "v2", 8080, 30),
        RouteDestination("web.shop.svc.cluster.local", "v1", None, 70))
    first, second = http.matches
    assert first.uri.kind == "prefix" and first.headers[0][0] == "end-user"  # lower-cased
    assert not first.matches_everything and second.matches_everything  # only a name
    r = http.retries
    assert (r.attempts, r.per_try_timeout, r.retry_on, r.backoff, r.ignore_previous_hosts) == \
        (3, "500ms", "5xx,503", "50ms", False)
    assert tuple(r) == (3, "500ms", "5xx,503")  # the sidecar's (attempts, perTry, retryOn)
    assert http.timeout == "2s"
    (tcp,) = vs.tcp
    assert (tcp.matches[0].port, dict(tcp.matches[0].source_labels)) == (5432, {"app": "db-client"})
    assert tcp.destinations[0].host == "pg.shop.svc.cluster.local"
    assert vs.tls[0].matches[0].sni_hosts == ("a.example.com",)


def test_gateways_without_mesh_leave_the_sidecars_alone(load_text):
    text = VS.replace("  hosts:", "  gateways: [shop/gw]\n  hosts:")
    assert not _vs(load_text, text).for_sidecars
    assert _vs(load_text, text.replace("[shop/gw]", "[shop/gw, mesh]")).for_sidecars


def test_a_route_without_destination_is_an_error_unless_asked(load_text):
    # Istio's validation: "http route or redirect or delegate is required"
    text = VS.replace("    route: [{destination: {host: web, subset: v2, port: {number: 8080}}, "
                      "weight: 30},\n            {destination: {host: web, subset: v1}, "
                      "weight: 70}]\n", "")
    with pytest.raises(InputError, match=r"spec.http\[0\].route: required"):
        _vs(load_text, text)
    assert _vs(load_text, text, require_route=False).http[0].destinations == ()


def _head(kind: str) -> str:
    return f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: x, namespace: " \
           "shop}\nspec:\n"


@pytest.mark.parametrize(("kind", "spec", "message"), [
    ("VirtualService", "  http: [{route: [{destination: {host: a}}]}]",
     r"VirtualService shop/x: spec.hosts: required: at least one host"),
    ("VirtualService", "  hosts: [a]\n  http: [{match: [{uri: {exact: /, prefix: /}}], "
     "route: [{destination: {host: a}}]}]",
     r"spec.http\[0\].match\[0\].uri: only one of exact, prefix, regex"),
    ("VirtualService", "  hosts: [a]\n  http: [{timeout: soon, route: [{destination: {host: a}}]}]",
     r"spec.http\[0\].timeout: must be a duration"),
    ("VirtualService", "  hosts: [a]\n  http: [{route: [{destination: {host: a}, weight: 101}]}]",
     r"spec.http\[0\].route\[0\].weight: must be between 0 and 100"),
    ("VirtualService", "  hosts: [a]\n  http: [{route: [{destination: {host: a}}], "
     "retries: {attempts: 1, retryIgnorePreviousHosts: 'no'}}]",
     r"spec.http\[0\].retries.retryIgnorePreviousHosts: must be a boolean"),
    ("VirtualService", "  hosts: [a]\n  tcp: [{match: [{port: 70000}], route: [{destination: "
     "{host: a}}]}]", r"spec.tcp\[0\].match\[0\].port: must be between 1 and 65535"),
    ("DestinationRule", "  host: a\n  subsets: [{labels: {v: '1'}}]",
     r"DestinationRule shop/x: spec.subsets\[0\].name: required field is missing"),
    ("DestinationRule", "  host: a\n  trafficPolicy: {portLevelSettings: [{tls: {mode: SIMPLE}}]}",
     r"spec.trafficPolicy.portLevelSettings\[0\].port.number: required field is missing"),
    ("DestinationRule", "  host: a\n  trafficPolicy: {connectionPool: {http: "
     "{h2UpgradePolicy: ALWAYS}}}",
     r"connectionPool.http.h2UpgradePolicy: must be one of DEFAULT, DO_NOT_UPGRADE, UPGRADE"),
    ("DestinationRule", "  host: a\n  subsets: [{name: v1, trafficPolicy: {outlierDetection: "
     "{maxEjectionPercent: 101}}}]",
     r"spec.subsets\[0\].trafficPolicy.outlierDetection.maxEjectionPercent: must be between"),
])
def test_bad_fields_are_named(load_text, kind, spec, message):
    parse = parse_virtual_service if kind == "VirtualService" else parse_destination_rule
    with pytest.raises(InputError, match=message):
        for obj in load_text(_head(kind) + spec).raw(kind):
            parse(obj)


DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    connectionPool: {tcp: {maxConnections: 10}}
    outlierDetection: {consecutive5xxErrors: 3}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 80}
      connectionPool: {http: {http1MaxPendingRequests: 5}}
    - port: {number: 81}
      tls: {mode: DISABLE}
  subsets:
  - name: a
    labels: {version: a}
  - name: b
    labels: {version: b}
    trafficPolicy:
      outlierDetection: {consecutive5xxErrors: 9}
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: RANDOM}
"""


# (subset, port) -> (loadBalancer.simple, tcp.maxConnections, http.http1MaxPendingRequests,
# consecutive5xxErrors, tls.mode), each derived from the rules in the module docstring.
@pytest.mark.parametrize(("subset", "port", "expected"), [
    # port 80's connectionPool replaces the host's whole: maxConnections back to unset
    ("", 80, ("LEAST_CONN", None, 5, 3, "ISTIO_MUTUAL")),
    ("", 81, ("LEAST_CONN", 10, None, 3, "DISABLE")),
    ("", 82, ("LEAST_CONN", 10, None, 3, "ISTIO_MUTUAL")),
    # a subset without a trafficPolicy inherits the host's, port settings included
    ("a", 80, ("LEAST_CONN", None, 5, 3, "ISTIO_MUTUAL")),
    # subset b: its outlierDetection everywhere, its port-80 loadBalancer on port 80 only
    ("b", 80, ("RANDOM", None, 5, 9, "ISTIO_MUTUAL")),
    ("b", 81, ("LEAST_CONN", 10, None, 9, "DISABLE")),
    ("b", 82, ("LEAST_CONN", 10, None, 9, "ISTIO_MUTUAL")),
])
def test_subset_and_port_policies_merge_as_istio_does(load_text, subset, port, expected):
    (obj,) = load_text(DR).raw("DestinationRule")
    p = parse_destination_rule(obj).policy_for(subset, port)
    pool = p.connection_pool
    assert (p.load_balancer.simple, pool.max_connections, pool.http1_max_pending_requests,
            p.outlier_detection.consecutive_5xx_errors, p.tls_mode) == expected


def test_an_undefined_subset_has_no_policy(load_text):
    (obj,) = load_text(DR).raw("DestinationRule")
    dr = parse_destination_rule(obj)
    assert dr.host == "web.shop.svc.cluster.local" and dr.policy_for("c", 80) is None
    assert [(s.name, dict(s.labels)) for s in dr.subsets] == [("a", {"version": "a"}),
                                                              ("b", {"version": "b"})]
