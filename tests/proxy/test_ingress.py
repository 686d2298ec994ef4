"""The emulated ingress controller: hosts, default backends, TLS by SNI, classes, merging,
503s, named ports, controllers, and the shop example. Expectations come from the Ingress
concept page, the API comments, the ingress controller conformance suite and ingress-nginx's
documentation and source."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.errors import InputError
from proxy.ingress import controllers, forwarded_headers, route

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "ingress"
BACKENDS = (DATA / "backends.yaml").read_text()
SHOP = str(ROOT / "examples" / "shop")
ECHO = ("10.244.1.10:8080", "10.244.2.10:8080")  # echo-1, echo-2 (echo-3 is not ready)


def _files(*names: str):
    return load([str(DATA / n) for n in ("backends.yaml", *names)])


def _backend(name: str, port) -> dict:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": name, "port": {key: port}}}


# ---------------------------------------------------------------- hosts


# host_rules.feature (ingress-controller-conformance) and the concept page's hostname
# wildcards table; --nginx-compat: nginx's server_name `*.foo.com` covers any depth.
@pytest.mark.parametrize(("host", "scheme", "service", "nginx_service"), [
    ("foo.bar.com", "https", "foo-bar-com", "foo-bar-com"),
    ("foo.bar.com", "http", "foo-bar-com", 308),  # TLS host: ssl-redirect
    ("FOO.bar.com:8443", "https", "foo-bar-com", "foo-bar-com"),
    ("subdomain.bar.com", "http", None, None),
    ("bar.foo.com", "http", "wildcard-foo-com", "wildcard-foo-com"),
    ("baz.bar.foo.com", "http", None, "wildcard-foo-com"),
    ("foo.com", "http", None, None),
])
def test_host_rules(host, scheme, service, nginx_service):
    cluster = _files("host-rules.yaml")
    for nginx, want in ((False, service), (True, nginx_service)):
        answer = route(cluster, host, "/", scheme, nginx_compat=nginx)
        if want == 308:
            assert (answer.status, answer.redirect) == (308, f"https://{host}/")
        elif want is None:
            assert (answer.status, answer.backend) == (404, None)
        else:
            assert answer.status == 200
            assert answer.backend["service"] == f"default/{want}"
            assert answer.endpoints == ECHO


def test_named_port_reports_the_service_port_number():
    answer = route(_files("host-rules.yaml"), "foo.bar.com", "/", "https")
    assert answer.to_json() == {
        "status": 200, "ingress": "default/host-rules",
        "rule": {"host": "foo.bar.com", "path": "/", "pathType": "Prefix"},
        "backend": {"service": "default/foo-bar-com", "port": 80, "portName": "http"},
        "endpoints": list(ECHO), "tlsSecret": "default/conformance-tls"}


def test_tls_secret_by_sni(load_text):
    cluster = load_text(BACKENDS, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: a, namespace: default}
        spec:
          tls: [{hosts: [a.example], secretName: a-tls}, {hosts: ["*.wild.example"],
                 secretName: wild-tls}]
          defaultBackend: {service: {name: echo, port: {number: 80}}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: b, namespace: default}
        spec:
          tls: [{secretName: any-tls}]
          rules: [{host: b.example, http: {paths: [{path: /, pathType: Prefix,
                   backend: {service: {name: echo, port: {number: 80}}}}]}}]
        """)
    # hosts listed first, then a one-label wildcard, then an entry without hosts (which
    # covers every host: IngressTLS.hosts "defaults to the wildcard host setting").
    assert route(cluster, "a.example", "/", "https").tls_secret == "default/a-tls"
    assert route(cluster, "x.wild.example", "/", "https").tls_secret == "default/wild-tls"
    assert route(cluster, "y.x.wild.example", "/", "https").tls_secret == "default/any-tls"
    assert route(cluster, "b.example", "/", "https").tls_secret == "default/any-tls"
    assert route(cluster, "a.example", "/", "http").tls_secret is None
    # ingress-nginx takes TLS only from Ingresses with a rule for the host (createServers).
    answer = route(cluster, "b.example", "/", "https", nginx_compat=True)
    assert answer.tls_secret is None and "default (self-signed) certificate" in answer.reason


HOSTLESS = """
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {name: mixed, namespace: default}
    spec:
      rules:
        - host: a.example
          http: {paths: [{path: /a, pathType: Prefix,
                          backend: {service: {name: echo, port: {number: 80}}}}]}
        - http: {paths: [{path: /b, pathType: Prefix,
                          backend: {service: {name: web, port: {name: http}}}}]}
    """


@pytest.mark.parametrize(("host", "path", "spec", "nginx"), [
    ("a.example", "/a", "default/echo", "default/echo"),
    ("other.example", "/b", "default/web", "default/web"),  # no host: every host
    ("203.0.113.10", "/b", "default/web", "default/web"),  # a request by address
    # A rule matches when host and path do: the host-less /b matches a.example/b. nginx
    # picks the a.example server by name and never looks at the catch-all's locations.
    ("a.example", "/b", "default/web", None),
    ("other.example", "/a", None, None),
])
def test_hostless_rules(load_text, host, path, spec, nginx):
    cluster = load_text(BACKENDS, HOSTLESS)
    for compat, want in ((False, spec), (True, nginx)):
        answer = route(cluster, host, path, nginx_compat=compat)
        assert (answer.backend or {}).get("service") == want
        assert answer.status == (200 if want else 404)


# ---------------------------------------------------------------- default backends


@pytest.mark.parametrize("nginx", [False, True])
@pytest.mark.parametrize(("host", "path"), [  # default_backend.feature's examples
    ("my-host", "/"), ("my-host", "/sub-path"), ("some-host", "/"), ("", "/resource")])
def test_ingress_with_only_a_default_backend_takes_everything(load_text, host, path, nginx):
    cluster = load_text(BACKENDS, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: default-backend, namespace: default}
        spec:
          defaultBackend: {service: {name: echo, port: {number: 80}}}
        """)
    answer = route(cluster, host, path, nginx_compat=nginx)
    assert (answer.status, answer.ingress, answer.rule) == (200, "default/default-backend",
                                                            None)
    assert answer.backend == {"service": "default/echo", "port": 80, "portName": None}


@pytest.mark.parametrize("nginx", [False, True])
def test_unmatched_path_uses_the_default_backend(load_text, nginx):
    # Concept page examples: Prefix /aaa, request /ccc: "No, uses default backend".
    cluster = load_text(BACKENDS, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: app, namespace: default}
        spec:
          defaultBackend: {service: {name: echo, port: {number: 80}}}
          rules: [{host: app.example, http: {paths: [{path: /aaa, pathType: Prefix,
                   backend: {service: {name: web, port: {number: 8080}}}}]}}]
        """)
    assert route(cluster, "app.example", "/aaa", nginx_compat=nginx).backend["service"] == \
        "default/web"
    answer = route(cluster, "app.example", "/ccc", nginx_compat=nginx)
    assert (answer.status, answer.rule, answer.backend["service"]) == (200, None,
                                                                       "default/echo")


def test_catch_all_default_backend_oldest_or_newest(load_text):
    cluster = load_text(BACKENDS, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: older, namespace: default, creationTimestamp: "2024-05-01T00:00:00Z"}
        spec:
          defaultBackend: {service: {name: echo, port: {number: 80}}}
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: newer, namespace: default, creationTimestamp: "2024-05-02T00:00:00Z"}
        spec:
          defaultBackend: {service: {name: web, port: {number: 8080}}}
        """)
    # netsim's specification mode keeps the merge order (oldest first); ingress-nginx's
    # createServers sets the catch-all location from each Ingress in turn: the newest stays.
    assert route(cluster, "x.example", "/").ingress == "default/older"
    assert route(cluster, "x.example", "/", nginx_compat=True).ingress == "default/newer"


def test_resource_backends():
    # The concept page's ingress-resource-backend example.
    cluster = _files("resource-backend.yaml")
    icons = route(cluster, "any.example", "/icons/a.png")
    assert (icons.status, icons.backend, icons.endpoints) == (
        200, {"resource": "StorageBucket/icon-assets"}, ())
    assert icons.rule == {"host": None, "path": "/icons", "pathType": "ImplementationSpecific"}
    other = route(cluster, "any.example", "/other")
    assert (other.status, other.rule, other.backend) == (
        200, None, {"resource": "StorageBucket/static-assets"})
    # ingress-nginx skips non-Service backends ("using default backend"): its own 404.
    for path in ("/icons", "/other"):
        assert route(cluster, "any.example", path, nginx_compat=True).status == 404


# ---------------------------------------------------------------- backends and 503


def _one_path(backend: dict, annotations: str = "{}") -> str:
    return f"""
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {{name: one, namespace: default, annotations: {annotations}}}
        spec:
          rules: [{{host: one.example, http: {{paths: [{{path: /, pathType: Prefix,
                   backend: {backend}}}]}}}}]
        """.replace("'", '"')


@pytest.mark.parametrize(("backend", "status", "port", "endpoints", "why"), [
    (_backend("echo", 80), 200, 80, ECHO, "2 ready endpoint(s)"),
    (_backend("echo", "http"), 200, 80, ECHO, "2 ready endpoint(s)"),
    # named Service port -> named targetPort "web" -> container port 9000 of web-1
    (_backend("web", "http"), 200, 8080, ("10.244.1.20:9000",), "1 ready endpoint(s)"),
    (_backend("nope", 80), 503, 80, (), "does not exist"),
    (_backend("echo", 8080), 503, 8080, (), "has no port 8080"),
    (_backend("echo", "grpc"), 503, None, (), "no port named 'grpc'"),
    (_backend("idle", 80), 503, 80, (), "no ready endpoint"),
    (_backend("echo", 53), 503, 53, (), "is UDP"),
    # A number equal to the targetPort is not the Service port (spec: Service port number).
    (_backend("web", "web"), 503, None, (), "no port named 'web'"),
])
def test_backend_resolution(load_text, backend, status, port, endpoints, why):
    answer = route(load_text(BACKENDS, _one_path(backend)), "one.example", "/")
    assert (answer.status, answer.endpoints) == (status, endpoints)
    assert answer.backend["port"] == port
    assert answer.backend["portName"] == backend["service"]["port"].get("name")
    assert why in answer.reason


def test_nginx_matches_a_backend_port_against_target_ports(load_text):
    # controller.go serviceEndpoints: port number, targetPort or name, as strings.
    cluster = load_text(BACKENDS, _one_path(_backend("web", "web")))
    answer = route(cluster, "one.example", "/", nginx_compat=True)
    assert (answer.status, answer.backend["port"], answer.endpoints) == (
        200, 8080, ("10.244.1.20:9000",))


def test_service_upstream_proxies_to_the_cluster_ip(load_text):
    annotations = "{nginx.ingress.kubernetes.io/service-upstream: 'true'}"
    cluster = load_text(BACKENDS, _one_path(_backend("echo", 80), annotations))
    assert route(cluster, "one.example", "/").endpoints == ("10.96.0.50:80",)


@pytest.mark.parametrize(("annotations", "scheme", "status"), [
    ("{}", "http", 200),  # no TLS: nothing to redirect to
    ("{nginx.ingress.kubernetes.io/force-ssl-redirect: 'true'}", "http", 308),
    ("{nginx.ingress.kubernetes.io/force-ssl-redirect: 'true'}", "https", 200),
])
def test_nginx_force_ssl_redirect(load_text, annotations, scheme, status):
    cluster = load_text(BACKENDS, _one_path(_backend("echo", 80), annotations))
    answer = route(cluster, "one.example", "/x?q=1", scheme, nginx_compat=True)
    assert answer.status == status
    if status == 308:
        assert answer.redirect == "https://one.example/x?q=1"
    assert route(cluster, "one.example", "/x", scheme).status == 200


# ---------------------------------------------------------------- merging


def test_ingresses_merge_per_host_oldest_first(load_text):
    cluster = load_text(BACKENDS, """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: newer, namespace: default, creationTimestamp: "2024-05-02T00:00:00Z"}
        spec:
          rules: [{host: m.example, http: {paths: [
            {path: /app, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}},
            {path: /api, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
          ]}}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: older, namespace: default, creationTimestamp: "2024-05-01T00:00:00Z"}
        spec:
          rules: [{host: m.example, http: {paths: [
            {path: /app, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
          ]}}]
        """)
    for nginx in (False, True):
        app = route(cluster, "m.example", "/app/x", nginx_compat=nginx)
        assert (app.ingress, app.backend["service"]) == ("default/older", "default/echo")
        api = route(cluster, "m.example", "/api", nginx_compat=nginx)
        assert (api.ingress, api.backend["service"]) == ("default/newer", "default/web")


# ---------------------------------------------------------------- classes

CLASSES = textwrap.dedent("""
    apiVersion: networking.k8s.io/v1
    kind: IngressClass
    metadata:
      name: nginx
      annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
    spec: {controller: k8s.io/ingress-nginx}
    ---
    apiVersion: networking.k8s.io/v1
    kind: IngressClass
    metadata: {name: other}
    spec: {controller: example.com/other}
    """)


def _classed(name: str, host: str, how: str) -> str:
    meta = f"{{name: {name}, namespace: default}}"
    spec = ""
    if how.startswith("field="):
        spec = f"ingressClassName: {how[6:]}"
    elif how.startswith("annotation="):
        meta = (f"{{name: {name}, namespace: default, annotations: "
                f"{{kubernetes.io/ingress.class: {how[11:]}}}}}")
    return textwrap.dedent(f"""
        ---
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {meta}
        spec:
          {spec}
          rules: [{{host: {host}, http: {{paths: [{{path: /, pathType: Prefix,
                   backend: {{service: {{name: echo, port: {{number: 80}}}}}}}}]}}}}]
        """)


@pytest.fixture
def classed(load_text):
    return load_text(BACKENDS, CLASSES + "".join(_classed(*row) for row in (
        ("by-field", "field.example", "field=nginx"),
        ("by-annotation", "annotation.example", "annotation=nginx"),
        ("by-default", "default.example", "none"),
        ("of-other", "other.example", "field=other"),
        # ingress_class.feature: an invalid class gets no traffic from any controller
        ("invalid", "invalid.example", "field=some-invalid-class-name"),
    )))


@pytest.mark.parametrize(("host", "nginx_class", "other_class"), [
    ("field.example", 200, 404),
    ("annotation.example", 200, 404),
    ("default.example", 200, 404),  # the default class is stamped at admission
    ("other.example", 404, 200),
    ("invalid.example", 404, 404),
])
def test_class_selection(classed, host, nginx_class, other_class):
    assert route(classed, host, "/").status == 200  # without a class every Ingress counts
    assert route(classed, host, "/", ingress_class="nginx").status == nginx_class
    assert route(classed, host, "/", ingress_class="other").status == other_class


def test_route_names_the_class_and_its_controller(classed):
    answer = route(classed, "default.example", "/")
    assert (answer.ingress_class, answer.controller) == ("nginx", "k8s.io/ingress-nginx")
    answer = route(classed, "other.example", "/")
    assert (answer.ingress_class, answer.controller) == ("other", "example.com/other")


def test_unknown_class_is_an_input_error(classed):
    with pytest.raises(InputError, match="no IngressClass 'nope'"):
        route(classed, "field.example", "/", ingress_class="nope")


def test_newest_default_class_wins_and_annotation_beats_default(load_text):
    cluster = load_text(BACKENDS, textwrap.dedent("""
        apiVersion: networking.k8s.io/v1
        kind: IngressClass
        metadata:
          name: old-default
          creationTimestamp: "2024-01-01T00:00:00Z"
          annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
        spec: {controller: k8s.io/ingress-nginx}
        ---
        apiVersion: networking.k8s.io/v1
        kind: IngressClass
        metadata:
          name: new-default
          creationTimestamp: "2024-06-01T00:00:00Z"
          annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
        spec: {controller: k8s.io/ingress-nginx}
        """) + _classed("plain", "plain.example", "none")
        + _classed("annotated", "annotated.example", "annotation=old-default"))
    assert route(cluster, "plain.example", "/").ingress_class == "new-default"
    assert route(cluster, "annotated.example", "/").ingress_class == "old-default"


# ---------------------------------------------------------------- controllers


def test_shop_controller_from_the_manifests():
    cluster = load([SHOP])
    pod = next(p for p in cluster.pods if p.namespace == "ingress-nginx")
    (ctrl,) = controllers(cluster)
    assert (ctrl.ingress_class, ctrl.controller, ctrl.namespace, ctrl.emulated) == (
        "nginx", "k8s.io/ingress-nginx", "ingress-nginx", False)
    assert ctrl.pods == (pod.key,) and ctrl.addresses == (pod.ip,)
    assert ctrl.service == "ingress-nginx/ingress-nginx-controller"
    assert (ctrl.service_type, ctrl.load_balancer_ips, ctrl.external_traffic_policy) == (
        "LoadBalancer", ("203.0.113.10",), "Local")
    assert (ctrl.http_port, ctrl.https_port, ctrl.http_node_port, ctrl.https_node_port) == (
        80, 443, 31080, 31443)
    assert (ctrl.container_http_port, ctrl.container_https_port) == (80, 443)
    assert ctrl.is_default_class


def test_emulated_controller_when_the_manifests_hold_none():
    cluster = load([str(DATA / "no-controller.yaml")])
    (ctrl,) = controllers(cluster)
    assert ctrl.emulated and ctrl.host_network and ctrl.watch_without_class
    assert (ctrl.namespace, ctrl.service, ctrl.service_type) == (
        "ingress-nginx", "ingress-nginx/ingress-nginx-controller", "NodePort")
    assert ctrl.nodes == ("w1", "w2")  # the tainted control plane is left out
    assert ctrl.addresses == ("172.18.0.3", "172.18.0.4")
    assert (ctrl.http_node_port, ctrl.https_node_port) == (30081, 30443)  # 30080 is taken
    assert "emulated by netsim" in ctrl.note
    answer = route(cluster, "site.example", "/")
    assert (answer.status, answer.controller) == (503, "k8s.io/ingress-nginx")


def test_no_ingress_no_controller(load_text):
    assert controllers(load_text(BACKENDS)) == ()
    answer = route(load_text(BACKENDS), "x.example", "/")
    assert (answer.status, answer.ingress) == (404, None)
    assert "no Ingress is served" in answer.reason


# ---------------------------------------------------------------- the shop example


def test_shop_api_through_the_ingress():
    cluster = load([SHOP])
    api_pods = [p for p in cluster.pods if p.labels.get("app") == "api" and p.ready]
    answer = route(cluster, "shop.example.com", "/api/orders", "https")
    data = answer.to_json()
    assert sorted(data.pop("endpoints")) == sorted(f"{p.ip}:8000" for p in api_pods)
    assert data == {
        "status": 200, "ingress": "shop/shop",
        "rule": {"host": "shop.example.com", "path": "/api", "pathType": "Prefix"},
        "backend": {"service": "shop/api", "port": 80, "portName": "http"},
        "tlsSecret": "shop/shop-tls"}
    assert len(api_pods) == 2


def test_shop_storefront_and_plain_http():
    cluster = load([SHOP])
    web = route(cluster, "shop.example.com", "/apiary")  # not under /api element-wise
    assert (web.status, web.backend["service"], len(web.endpoints)) == (200, "shop/web", 3)
    redirect = route(cluster, "shop.example.com", "/api", nginx_compat=True)
    assert (redirect.status, redirect.redirect) == (308, "https://shop.example.com/api")
    assert route(cluster, "www.example.com", "/").status == 404


# ---------------------------------------------------------------- headers and input


def test_forwarded_headers_as_ingress_nginx_sets_them():
    # rootfs/etc/nginx/template/nginx.tmpl: Host $best_http_host, X-Real-IP and
    # X-Forwarded-For the client (use-forwarded-headers off), port and scheme of the listener.
    assert forwarded_headers("198.51.100.7", "shop.example.com", "https") == (
        ("Host", "shop.example.com"), ("X-Real-IP", "198.51.100.7"),
        ("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Host", "shop.example.com"),
        ("X-Forwarded-Port", "443"), ("X-Forwarded-Proto", "https"), ("X-Scheme", "https"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scheme": "ftp"}, "scheme: must be http or https"),
    ({"path": "api"}, "path: must start with '/'"),
    ({"host": "a b"}, "host: must be a host name"),
])
def test_bad_requests(kwargs, message):
    args = {"host": "shop.example.com", "path": "/", "scheme": "http", **kwargs}
    with pytest.raises(InputError, match=message):
        route(load([SHOP]), **args)
