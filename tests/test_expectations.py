"""ConnectivityExpectations files: what each field reads as, and the one-line errors (file,
document, expectation and field path) for what is malformed. The format is documented in
netsim/expectations.py; the messages here are written from that documentation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from netsim.cluster import load
from netsim.errors import InputError
from netsim.expectations import load_expectations

ROOT = Path(__file__).resolve().parents[1]
SHOP = str(ROOT / "examples" / "shop")
HEAD = """\
apiVersion: netsim/v1alpha1
kind: ConnectivityExpectations
metadata: {name: t}
spec:
  expectations:
"""


def write(tmp_path, body: str, head: str = HEAD, name: str = "e.yaml") -> str:
    path = tmp_path / name
    path.write_text(head + textwrap.indent(textwrap.dedent(body), "  "))
    return str(path)


def parse(tmp_path, body: str):
    return load_expectations([write(tmp_path, body)])


def error(tmp_path, body: str, head: str = HEAD) -> str:
    path = write(tmp_path, body, head)
    with pytest.raises(InputError) as exc:
        load_expectations([path])
    text = str(exc.value)
    assert "\n" not in text
    return text.removeprefix(f"{path}:1: document 1: ")


def test_full_expectation_reads_every_field(tmp_path):
    (s,) = parse(tmp_path, """\
        - name: web reaches api
          from: {pod: shop/web-*}
          to: {service: shop/api, port: http}
          protocol: tcp
          http: GET /api/orders
          expect: allow
          via: NetworkPolicy shop/api-from-web
          deliveredTo: {workload: Deployment/shop/api}
          clientIPPreserved: true
        """)
    assert (s.name, s.source.document) == ("t", 1)
    (e,) = s.expectations
    assert (e.name, e.index, e.field, e.expect) == ("web reaches api", 0, "spec.expectations[0]",
                                                    "allow")
    assert (e.origin.pods.kind, e.origin.pods.namespace, e.origin.pods.name) == (
        "pod", "shop", "web-*")
    assert (e.target.kind, e.target.service, e.target.port, e.target.text) == (
        "service", "shop/api", "http", "svc/shop/api:http")
    assert (e.protocol, e.http, e.via) == ("TCP", ("GET", "/api/orders"),
                                           "NetworkPolicy shop/api-from-web")
    d = e.delivered_to
    assert (d.kind, d.workload_kind, d.namespace, d.name) == ("workload", "Deployment", "shop",
                                                              "api")
    assert e.client_ip_preserved is True


def test_defaults_and_other_ends(tmp_path):
    (s,) = parse(tmp_path, """\
        - name: a
          from: {external: 198.51.100.7}
          to: {ingress: {host: shop.example.com}}
          expect: deny
        - name: b
          from: {node: n1}
          to: {address: "10.96.0.10:53"}
          protocol: UDP
          expect: allow
        - name: c
          from:
            namespace: shop
            selector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}
          to: {address: "fd00::1", port: 53}
          expect: allow
        - name: d
          from: {selector: {app: web}}
          to: {node: n2, port: 10250}
          expect: deny
        """)
    a, b, c, d = s.expectations
    assert a.origin.external == "198.51.100.7" and a.protocol is None and a.http is None
    assert (a.target.ingress.host, a.target.ingress.path, a.target.ingress.scheme,
            a.target.ingress.method) == ("shop.example.com", "/", "http", "GET")
    assert (b.origin.node, b.target.address, b.target.port, b.protocol) == (
        "n1", "10.96.0.10", 53, "UDP")
    assert (c.target.address, c.target.port, c.target.text) == ("fd00::1", 53, "[fd00::1]:53")
    assert c.origin.pods.namespace == "shop" and c.origin.pods.selector is not None
    assert d.origin.pods.namespace is None and d.target.text == "node/n2:10250"
    assert (a.via, a.delivered_to, a.client_ip_preserved) == (None, None, None)


def test_metadata_name_defaults_to_the_file_name(tmp_path):
    head = HEAD.replace("metadata: {name: t}\n", "")
    path = write(tmp_path, "- {name: a, from: {node: n1}, to: {node: n2, port: 1}, "
                 "expect: deny}\n", head, name="edge.yaml")
    (s,) = load_expectations([path])
    assert s.name == "edge"


def test_several_documents_and_a_directory(tmp_path):
    body = "- {name: a, from: {node: n1}, to: {node: n2, port: 1}, expect: deny}\n"
    text = HEAD + "  " + body
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.yaml").write_text(text + "---\n" + text.replace("name: t", "name: u"))
    (tmp_path / "d" / "two.yml").write_text(text)
    sets = load_expectations([str(tmp_path / "d")])
    assert [(Path(s.file).name, s.source.document, s.name) for s in sets] == [
        ("one.yaml", 1, "t"), ("one.yaml", 2, "u"), ("two.yml", 1, "t")]


OBJ = "ConnectivityExpectations t, expectation 'a'"

# (the expectation's YAML, the error after "FILE:1: document 1: ")
ERRORS = [
    ("- {from: {node: n1}, to: {node: n2, port: 1}, expect: deny}",
     "ConnectivityExpectations t: spec.expectations[0].name: required field is missing"),
    ("- {name: a, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from: required field is missing"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 1}}",
     f"{OBJ}: spec.expectations[0].expect: required field is missing"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 1}, expect: maybe}",
     f"{OBJ}: spec.expectations[0].expect: must be one of allow, deny, got 'maybe'"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 1}, expect: deny, deliveredto: {}}",
     f"{OBJ}: spec.expectations[0].deliveredto: unknown field (known: name, from, to, "
     "protocol, http, expect, via, deliveredTo, clientIPPreserved)"),
    ("- {name: a, from: {pod: web}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.pod: must be NAMESPACE/POD (globs allowed: "
     "shop/web-*), got 'web'"),
    ("- {name: a, from: {pod: a/b, external: 192.0.2.1}, to: {node: n2, port: 1}, "
     "expect: deny}",
     f"{OBJ}: spec.expectations[0].from.external: cannot be combined with pod: give one of "
     "pod, workload, namespace/selector, external or node"),
    ("- {name: a, from: {}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from: must give one of pod, workload, "
     "namespace/selector, external or node"),
    ("- {name: a, from: {pods: a/b}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.pods: unknown field (known: pod, workload, "
     "namespace, selector, external, node)"),
    ("- {name: a, from: {external: outside}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.external: must be an IP address, got 'outside'"),
    ("- {name: a, from: {workload: Job/shop/x}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.workload: kind must be one of Deployment, "
     "StatefulSet, DaemonSet, ReplicaSet, got 'Job'"),
    ("- {name: a, from: {workload: web}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.workload: must be [KIND/]NAMESPACE/NAME, got 'web'"),
    ("- {name: a, from: {namespace: shop, selector: {matchExpressions: [{key: app, "
     "operator: Is}]}}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.selector.matchExpressions[0].operator: must be one "
     "of In, NotIn, Exists, DoesNotExist, got 'Is'"),
    ("- {name: a, from: {selector: {app: 1}}, to: {node: n2, port: 1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].from.selector.app: must be a string, got integer 1 "
     "(quote it in YAML)"),
    ("- {name: a, from: {node: n1}, to: {service: shop/api*}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.service: names one object: no patterns, got "
     "'shop/api*'"),
    ("- {name: a, from: {node: n1}, to: {pod: shop/web-*}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.port: required field is missing"),
    ("- {name: a, from: {node: n1}, to: {pod: shop/web-*, port: 0}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.port: must be between 1 and 65535, got 0"),
    ("- {name: a, from: {node: n1}, to: {address: 10.0.0.1}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.address: needs a port: 10.0.0.1:PORT, or port: N"),
    ("- {name: a, from: {node: n1}, to: {address: '10.0.0.300:53'}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.address: must be an IP address, got '10.0.0.300'"),
    ("- {name: a, from: {node: n1}, to: {address: '10.0.0.1:53', port: 54}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.port: the address already gives port 53"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: http}, expect: deny}",
     f"{OBJ}: spec.expectations[0].to.port: must be a number for a node, got 'http'"),
    ("- {name: a, from: {node: n1}, to: {ingress: {host: a.example, path: api}}, "
     "expect: deny}",
     f"{OBJ}: spec.expectations[0].to.ingress.path: must start with /, got 'api'"),
    ("- {name: a, from: {node: n1}, to: {ingress: {host: a.example}, port: 443}, "
     "expect: deny}",
     f"{OBJ}: spec.expectations[0].to.port: an ingress request goes to the controller's "
     "port for its scheme: leave port out"),
    ("- {name: a, from: {node: n1}, to: {ingress: {host: a.example}}, http: GET /, "
     "expect: deny}",
     f"{OBJ}: spec.expectations[0].http: to.ingress gives the request (host, path, scheme, "
     "method)"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 53}, protocol: UDP, http: GET /, "
     "expect: deny}",
     f"{OBJ}: spec.expectations[0].http: HTTP needs protocol TCP, not UDP"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, http: FETCH /, expect: deny}",
     f"{OBJ}: spec.expectations[0].http: unknown HTTP method 'FETCH'"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, http: 'GET ftp://x/', "
     "expect: deny}",
     f"{OBJ}: spec.expectations[0].http: not an http(s) URL: 'ftp://x/'"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, protocol: ICMP, expect: deny}",
     f"{OBJ}: spec.expectations[0].protocol: must be one of TCP, UDP, SCTP, got 'ICMP'"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, expect: deny, "
     "deliveredTo: {pod: x/y}}",
     f"{OBJ}: spec.expectations[0].deliveredTo: only checks delivered paths: needs expect: "
     "allow"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, expect: allow, "
     "deliveredTo: {}}",
     f"{OBJ}: spec.expectations[0].deliveredTo: names no pods: give pod, workload or "
     "namespace/selector"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, expect: allow, "
     "clientIPPreserved: yes please}",
     f"{OBJ}: spec.expectations[0].clientIPPreserved: must be a boolean, got string "
     "'yes please'"),
    ("- {name: a, from: {node: n1}, to: {node: n2, port: 80}, expect: deny}\n"
     "- {name: a, from: {node: n2}, to: {node: n1, port: 80}, expect: deny}",
     f"{OBJ}: spec.expectations[1].name: duplicate expectation name 'a'"),
]


@pytest.mark.parametrize(("body", "message"), ERRORS, ids=[m.split(": ")[-2][:40] + str(i)
                                                           for i, (_, m) in enumerate(ERRORS)])
def test_errors_name_the_expectation_and_field(tmp_path, body, message):
    assert error(tmp_path, body + "\n") == message


@pytest.mark.parametrize(("head", "message"), [
    (HEAD.replace("ConnectivityExpectations", "ConformanceSuite"),
     "kind: must be ConnectivityExpectations, got 'ConformanceSuite'"),
    (HEAD.replace("netsim/v1alpha1", "netsim/v1"),
     "apiVersion: must be netsim/v1alpha1, got 'netsim/v1'"),
    (HEAD.replace("spec:", "status: {}\nspec:"),
     "ConnectivityExpectations t: status: unknown field (known: apiVersion, kind, metadata, "
     "spec)"),
])
def test_document_errors(tmp_path, head, message):
    assert error(tmp_path, "- {name: a, from: {node: n1}, to: {node: n2, port: 1}, "
                 "expect: deny}\n", head) == message


def test_empty_and_unreadable_files(tmp_path):
    assert error(tmp_path, "", HEAD.replace("expectations:", "expectations: []")) == (
        "ConnectivityExpectations t: spec.expectations: must list at least one expectation")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="holds no ConnectivityExpectations document"):
        load_expectations([str(empty)])
    broken = tmp_path / "broken.yaml"
    broken.write_text(HEAD + "  - name: [a\n")
    with pytest.raises(InputError, match=r"broken.yaml.*invalid YAML at line"):
        load_expectations([str(broken)])
    with pytest.raises(InputError, match="no such file or directory"):
        load_expectations([str(tmp_path / "missing.yaml")])


# ---------------------------------------------------------------- which pods a selector names


@pytest.fixture(scope="module")
def shop():
    return load([SHOP])


def names(shop, tmp_path, selector: str) -> list[str]:
    (s,) = parse(tmp_path, f"- {{name: a, from: {selector}, to: {{node: n1, port: 1}}, "
                 "expect: deny}\n")
    pods = s.expectations[0].origin.pods
    return sorted(p.name for p in shop.pods if pods.matches(p))


WEB = ["web-69898bbbd5-js95p", "web-69898bbbd5-s5qkd", "web-69898bbbd5-vsxw8"]
LOG_AGENTS = ["log-agent-62jjg", "log-agent-6h5tl", "log-agent-qsk75"]


@pytest.mark.parametrize(("selector", "expected"), [
    ("{pod: shop/web-*}", WEB),
    ("{pod: shop/web-69898bbbd5-s5qkd}", ["web-69898bbbd5-s5qkd"]),
    ("{pod: '*/postgres-?'}", ["postgres-0", "postgres-1"]),
    ("{pod: shop/web}", []),  # a pattern names whole pod names
    ("{workload: Deployment/shop/web}", WEB),
    ("{workload: shop/web}", WEB),
    ("{workload: StatefulSet/shop/web}", []),
    ("{workload: ReplicaSet/shop/web-69898bbbd5}", WEB),
    ("{workload: StatefulSet/data/postgres}", ["postgres-0", "postgres-1"]),
    ("{workload: DaemonSet/logging/log-agent}", LOG_AGENTS),
    ("{namespace: logging}", LOG_AGENTS),
    ("{namespace: shop, selector: {app: web, tier: frontend}}", WEB),
    ("{selector: {k8s-app: kube-dns}}", ["coredns-7884c65b84-7rhvg", "coredns-7884c65b84-wxtdl"]),
    ("{namespace: shop, selector: {matchExpressions: [{key: app, operator: NotIn, values: "
     "[web, api, cart]}]}}", ["redis-65dc644687-hrl9w"]),
])
def test_pod_selectors(shop, tmp_path, selector, expected):
    assert names(shop, tmp_path, selector) == expected
