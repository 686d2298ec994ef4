"""CiliumNetworkPolicy parsing and the rule semantics it encodes (no BPF), the NetworkPolicy
translation Cilium's agent makes, and the HTTP rule matching of the L7 proxy.

Expectations from docs.cilium.io security/policy/language (namespace scoping of
endpointSelector and fromEndpoints, L4-only rules, entities, CIDR sets, HTTP rules),
pkg/k8s/apis/cilium.io/utils/utils.go (namespace confinement) and cilium/cilium#9209 (the
translated form of a NetworkPolicy).
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from netsim.errors import InputError
from netsim.fields import freeze
from netsim.model import Meta, RawObject
from policies.cilium import (
    WILDCARD,
    CIDRSet,
    EndpointSelector,
    Entity,
    HeaderMatch,
    HTTPRule,
    K8sPeer,
    PortProtocol,
    label_key,
    parse_cilium_policy,
)
from policies.cilium_http import evaluate_http
from policies.cilium_k8s import translate_network_policy
from tests.helpers import load_yaml


def parse(text: str, kind: str = "CiliumNetworkPolicy", ns: str | None = "shop"):
    body = yaml.safe_load(textwrap.dedent(text))
    obj = RawObject(meta=Meta(kind=kind, name="p", namespace=ns if kind.startswith("CiliumN")
                              else None), api_version="cilium.io/v2", body=freeze(body))
    return parse_cilium_policy(obj)


def labels(sel: EndpointSelector) -> dict:
    return dict(sel.selector.match_labels)


def test_label_keys_keep_their_source_and_drop_any():
    assert label_key("k8s:app") == "k8s:app"
    assert label_key("any:app") == "app"
    assert label_key("app.kubernetes.io/name") == "app.kubernetes.io/name"
    assert label_key("reserved:host") == "reserved:host"


def test_namespaced_policy_confines_its_selectors():
    (rule,), warnings = parse("""
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
          - fromEndpoints:
            - {matchLabels: {app: client}}
            - {matchLabels: {k8s:io.kubernetes.pod.namespace: other}}
            - {matchLabels: {reserved:host: ""}}
            - {}
        """)
    assert warnings == ()
    assert rule.source == "CiliumNetworkPolicy shop/p" and rule.ingress_section
    assert labels(rule.subject) == {"app": "web", "k8s:io.kubernetes.pod.namespace": "shop"}
    peers = rule.ingress[0].peers
    assert labels(peers[0]) == {"app": "client", "k8s:io.kubernetes.pod.namespace": "shop"}
    assert labels(peers[1]) == {"k8s:io.kubernetes.pod.namespace": "other"}
    assert labels(peers[2]) == {"reserved:host": ""}
    assert labels(peers[3]) == {"k8s:io.kubernetes.pod.namespace": "shop"}  # {}: "my namespace"


def test_clusterwide_policy_is_not_confined():
    (rule,), _ = parse("""
        spec:
          endpointSelector: {}
          ingress: [{fromEndpoints: [{}]}]
        """, kind="CiliumClusterwideNetworkPolicy", ns=None)
    assert rule.source == "CiliumClusterwideNetworkPolicy p" and rule.namespace is None
    assert rule.subject.is_wildcard and rule.ingress[0].peers == (WILDCARD,)


def test_specs_give_one_rule_each_and_sections_decide_enforcement():
    rules, _ = parse("""
        specs:
        - endpointSelector: {}
          egress: [{toEntities: [world]}]
        - endpointSelector: {}
          ingressDeny: [{fromEntities: [world]}]
          enableDefaultDeny: {ingress: false}
        """)
    first, second = rules
    assert first.source.endswith("specs[0]") and first.egress_section
    assert not first.ingress_section
    assert first.egress[0].peers == (Entity("world"),)
    assert second.ingress_section and not second.default_deny_ingress


def test_ports_cidrs_and_l4_only_rules():
    (rule,), _ = parse("""
        spec:
          endpointSelector: {}
          egress:
          - toPorts: [{ports: [{port: "80"}, {port: "0", protocol: UDP},
                               {port: http, protocol: TCP},
                               {port: "8000", endPort: 8010, protocol: TCP}]}]
          - toCIDR: [10.1.2.3]
            toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]
        """)
    l4, cidrs = rule.egress
    assert l4.peers == (WILDCARD,)  # no L3 peer: every peer on these ports
    assert l4.to_ports[0].ports == (PortProtocol("ANY", 80), PortProtocol("UDP", None),
                                    PortProtocol("TCP", "http"), PortProtocol("TCP", 8000, 8010))
    assert cidrs.peers == (CIDRSet("10.1.2.3/32"), CIDRSet("10.0.0.0/8", ("10.1.0.0/16",)))
    assert cidrs.to_ports == ()


def test_http_rules_are_kept_and_unmodelled_peers_warn():
    (rule,), warnings = parse("""
        spec:
          endpointSelector: {}
          ingress:
          - toPorts:
            - ports: [{port: "80", protocol: TCP}]
              rules:
                http:
                - {method: GET, path: "/v1/.*", headers: ["X-Token: a"],
                   headerMatches: [{name: X-Trace, value: "1", mismatch: LOG}]}
          egress:
          - toFQDNs: [{matchName: example.com}]
            toPorts: [{ports: [{port: "443", protocol: TCP}]}]
        """)
    (http,) = rule.ingress[0].to_ports[0].http
    assert http == HTTPRule("GET", "/v1/.*", None, ("X-Token: a",),
                            (HeaderMatch("X-Trace", "1", "LOG"),))
    assert rule.egress[0].peers == ()  # toFQDNs is not modelled: selects nothing
    assert any("toFQDNs is not modelled" in w for w in warnings)


@pytest.mark.parametrize(("spec", "field", "message"), [
    ("ingress: [{fromEntities: [galaxy]}]", "spec.ingress[0].fromEntities[0]", "must be one of"),
    ("egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}]",
     "spec.egress[0].toCIDRSet[0].except[0]", "must lie inside"),
    ("egress: [{toPorts: [{ports: [{port: http, endPort: 90}]}]}]",
     "spec.egress[0].toPorts[0].ports[0].endPort", "numeric port"),
    ("ingressDeny: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{method: GET}]}}]}]",
     "spec.ingressDeny[0].toPorts[0].rules", "not allowed in deny"),
    ("ingress: [{toPorts: [{rules: {http: [{path: '('}]}}]}]",
     "spec.ingress[0].toPorts[0].rules.http[0].path", "invalid regular expression"),
])
def test_errors_name_the_field(spec, field, message):
    with pytest.raises(InputError) as info:
        parse("spec:\n  endpointSelector: {}\n  " + spec)
    assert info.value.field == field and message in info.value.message
    assert info.value.obj == "CiliumNetworkPolicy shop/p"


def test_a_networkpolicy_becomes_one_cilium_rule():
    cluster = load_yaml("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: np, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: db}}
          ingress:
          - from: [{podSelector: {matchLabels: {app: api}}}, {ipBlock: {cidr: 10.0.0.0/8}}]
            ports: [{port: 5432}]
          - {}
          egress: [{to: [{namespaceSelector: {}}]}]
        """)
    rule = translate_network_policy(cluster.network_policies[0])
    assert rule.source == "NetworkPolicy shop/np"
    assert (rule.ingress_section, rule.egress_section) == (True, True)
    selectors, everyone = rule.ingress
    assert isinstance(selectors.peers[0], K8sPeer) and selectors.peers[1] == CIDRSet("10.0.0.0/8")
    assert selectors.to_ports[0].ports == (PortProtocol("TCP", 5432),)
    assert everyone.peers == (WILDCARD,) and everyone.to_ports == ()  # from absent: anyone


# ---------------------------------------------------------------- HTTP


@pytest.mark.parametrize(("method", "path", "headers", "allowed"), [
    ("GET", "/v1/users", {"X-Token": "a"}, True),
    ("GET", "/v1/users", {"x-token": "a"}, True),  # header names are case-insensitive
    ("GET", "/v1/users", {"X-Token": "b"}, False),
    ("GET", "/v1/users", {}, False),
    ("GETX", "/v1/users", {"X-Token": "a"}, False),  # regexes match the whole value
    ("GET", "/v2/users", {"X-Token": "a"}, False),
    ("POST", "/public", {}, True),
])
def test_http_rules(method, path, headers, allowed):
    rules = (HTTPRule("GET", "/v1/.*", headers=("X-Token: a",)),
             HTTPRule("POST", header_matches=(HeaderMatch("X-Trace", "1", "LOG"),)))
    verdict = evaluate_http(rules, method, path, "shop.example", headers)
    assert verdict.allowed is allowed
    if not allowed:
        assert (verdict.status, verdict.body) == (403, "Access denied")


def test_host_is_a_regex_on_the_host_header():
    rules = (HTTPRule(host="api\\.example\\.com"),)
    assert evaluate_http(rules, "GET", "/", "api.example.com").allowed
    assert not evaluate_http(rules, "GET", "/", "www.example.com").allowed
