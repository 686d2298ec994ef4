"""Ingress path matching against the Kubernetes documentation's examples table, the Ingress
controller conformance suite, the Ingress API comments, and ingress-nginx's documented
location rules (--nginx-compat)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from netsim.cluster import load
from proxy.ingress import route

DATA = Path(__file__).resolve().parents[1] / "data" / "ingress"
BACKENDS = str(DATA / "backends.yaml")
P, E, IS = "Prefix", "Exact", "ImplementationSpecific"

# kubernetes.io/docs/concepts/services-networking/ingress/#examples: (rule paths, request
# path, the path that matches or None for "No"). One host per row.
DOCS_EXAMPLES = [
    ("prefix-root-all", [("/", P)], "/any/path/at/all", ("/", P)),
    ("prefix-root-root", [("/", P)], "/", ("/", P)),
    ("exact-same", [("/foo", E)], "/foo", ("/foo", E)),
    ("exact-other", [("/foo", E)], "/bar", None),
    ("exact-trailing-request", [("/foo", E)], "/foo/", None),
    ("exact-trailing-rule", [("/foo/", E)], "/foo", None),
    ("prefix-foo-foo", [("/foo", P)], "/foo", ("/foo", P)),
    ("prefix-foo-foo-slash", [("/foo", P)], "/foo/", ("/foo", P)),
    ("prefix-foo-slash-foo", [("/foo/", P)], "/foo", ("/foo/", P)),
    ("prefix-foo-slash-foo-slash", [("/foo/", P)], "/foo/", ("/foo/", P)),
    ("prefix-bb-bbb", [("/aaa/bb", P)], "/aaa/bbb", None),
    ("prefix-bbb-bbb", [("/aaa/bbb", P)], "/aaa/bbb", ("/aaa/bbb", P)),
    ("prefix-ignores-trailing-slash", [("/aaa/bbb/", P)], "/aaa/bbb", ("/aaa/bbb/", P)),
    ("prefix-matches-trailing-slash", [("/aaa/bbb", P)], "/aaa/bbb/", ("/aaa/bbb", P)),
    ("prefix-matches-subpath", [("/aaa/bbb", P)], "/aaa/bbb/ccc", ("/aaa/bbb", P)),
    ("prefix-not-string-prefix", [("/aaa/bbb", P)], "/aaa/bbbxyz", None),
    ("prefix-two-aaa", [("/", P), ("/aaa", P)], "/aaa/ccc", ("/aaa", P)),
    ("prefix-three-bbb", [("/", P), ("/aaa", P), ("/aaa/bbb", P)], "/aaa/bbb", ("/aaa/bbb", P)),
    ("prefix-three-root", [("/", P), ("/aaa", P), ("/aaa/bbb", P)], "/ccc", ("/", P)),
    ("prefix-default-backend", [("/aaa", P)], "/ccc", None),
    ("mixed-prefers-exact", [("/foo", P), ("/foo", E)], "/foo", ("/foo", E)),
    # types.go PathTypePrefix: "/foo and /foo/ ... the longest matching path (/foo/) is given
    # priority".
    ("api-longest-wins", [("/foo", P), ("/foo/", P)], "/foo", ("/foo/", P)),
    # ingress-controller-conformance path_rules.feature: case sensitivity, element prefixes.
    ("conformance-exact-case", [("/foo", E)], "/FOO", None),
    ("conformance-prefix-case", [("/foo", P)], "/FOO", None),
    ("conformance-aaaccc", [("/aaa/bbb", P), ("/aaa", P)], "/aaaccc", None),
    ("conformance-aaa-ccc", [("/aaa/bbb", P), ("/aaa", P)], "/aaa/ccc", ("/aaa", P)),
    ("conformance-bbb-ccc", [("/aaa/bbb", P), ("/aaa", P)], "/aaa/bbb/ccc", ("/aaa/bbb", P)),
    # The query string and fragment are not part of the matched path (HTTPIngressRuleValue).
    ("query-ignored", [("/foo", E)], "/foo?x=1#top", ("/foo", E)),
    # ImplementationSpecific: netsim's controller treats it as Prefix (the API allows it).
    ("impl-as-prefix-sub", [("/foo", IS)], "/foo/bar", ("/foo", IS)),
    ("impl-as-prefix-string", [("/foo", IS)], "/foobar", None),
]

# Where ingress-nginx answers differently (location.go: Prefix /foo/ becomes `location /foo/`
# plus `= /foo/`; nginx's core module redirects /foo to /foo/ for such a proxy_pass location;
# ImplementationSpecific is a plain nginx prefix string).
NGINX_DIFFERENT = {
    "prefix-foo-slash-foo": 301,
    "prefix-ignores-trailing-slash": 301,
    "impl-as-prefix-string": ("/foo", IS),
}
# Rows ingress-nginx cannot serve at all.
NGINX_SKIP = {"api-longest-wins": "Prefix /foo and /foo/ both become `location /foo/`; nginx "
              "rejects the duplicate, so ingress-nginx's admission refuses the Ingress"}


def _ingress(rows) -> str:
    rules = [{"host": f"{name}.example", "http": {"paths": [
        {"path": path, "pathType": kind,
         "backend": {"service": {"name": "echo", "port": {"number": 80}}}}
        for path, kind in paths]}} for name, paths, _, _ in rows]
    return yaml.safe_dump({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "metadata": {"name": "examples", "namespace": "default"},
                           "spec": {"rules": rules}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    path = tmp_path_factory.mktemp("ingress") / "examples.yaml"
    path.write_text(_ingress(DOCS_EXAMPLES))
    return load([BACKENDS, str(path)])


def _matched(answer) -> tuple[str, str] | None:
    if answer.rule is None:
        return None
    return answer.rule["path"], answer.rule["pathType"]


@pytest.mark.parametrize(("name", "paths", "request_path", "expected"), DOCS_EXAMPLES,
                         ids=[r[0] for r in DOCS_EXAMPLES])
def test_docs_examples_specification(cluster, name, paths, request_path, expected):
    answer = route(cluster, f"{name}.example", request_path)
    assert _matched(answer) == expected
    assert answer.status == (200 if expected else 404)
    if expected:
        assert answer.backend == {"service": "default/echo", "port": 80, "portName": None}
        assert answer.endpoints == ("10.244.1.10:8080", "10.244.2.10:8080")
    else:
        assert answer.backend is None and answer.endpoints == ()


@pytest.mark.parametrize(("name", "paths", "request_path", "expected"), DOCS_EXAMPLES,
                         ids=[r[0] for r in DOCS_EXAMPLES])
def test_docs_examples_nginx_compat(cluster, name, paths, request_path, expected):
    if name in NGINX_SKIP:
        pytest.skip(NGINX_SKIP[name])
    answer = route(cluster, f"{name}.example", request_path, nginx_compat=True)
    want = NGINX_DIFFERENT.get(name, expected)
    if want == 301:
        assert answer.status == 301
        assert answer.redirect == f"http://{name}.example{request_path}/"
        upper = route(cluster, f"{name.upper()}.example:8080", request_path, nginx_compat=True)
        assert upper.redirect == answer.redirect  # from $host: lower case, no port
        assert answer.backend is None
        return
    assert _matched(answer) == want
    assert answer.status == (200 if want else 404)


# ingress-nginx docs "Ingress Path Matching": Path Priority and Warning examples.
@pytest.mark.parametrize(("host", "path", "service"), [
    ("test.com", "/foo/bar/1", "service3"),
    ("test.com", "/foo/bar/", "service2"),
    ("test.com", "/foo/bar", "service1"),
    ("test.com", "/FOO/BAR", "service1"),  # ~* is case-insensitive
    ("warning.test.com", "/foo/bar/bar", "pattern"),  # first regex match, not the literal
])
def test_nginx_regex_locations(host, path, service):
    cluster = load([BACKENDS, str(DATA / "path-priority.yaml")])
    answer = route(cluster, host, path, nginx_compat=True)
    assert answer.status == 200
    assert answer.backend["service"] == f"default/{service}"
    assert "regex" in answer.reason


def test_regex_paths_are_literal_prefixes_under_the_specification():
    cluster = load([BACKENDS, str(DATA / "path-priority.yaml")])
    assert route(cluster, "test.com", "/foo/bar/1").backend["service"] == "default/service2"
    assert route(cluster, "warning.test.com", "/foo/bar/bar").backend["service"] == \
        "default/literal"
