"""AuthorizationPolicy decisions, row by row from Istio's documentation.

Sources of the expectations:
- istio/api authorization_policy.proto: the CUSTOM -> DENY -> ALLOW evaluation order, the
  examples (httpbin ALLOW with principals/namespaces, GET /info* or POST /data and a JWT issuer
  condition; DENY POST from namespace dev; allow-nothing `{}`; allow-all `rules: [{}]`; a root
  namespace policy selecting `version: v1` in every namespace; the ext-authz CUSTOM example),
  and the matching rules (exact, `prefix*`, `*suffix`, `*` = present; hosts case-insensitive);
- istio.io tasks "Explicit Deny" (authz-deny), "TCP Traffic" (authz-tcp), "JWT Token"
  (authz-jwt), each step's documented status code or "connection rejected";
- istio.io security best practices: `notPrincipals: ["*"]` in a DENY policy rejects
  plaintext, since principals need mTLS.
"""

from __future__ import annotations

import io
import textwrap

import pytest

from netsim.cluster import load
from netsim.errors import InputError
from netsim.fields import FrozenDict
from policies.istio import AuthorizationPolicies, AuthzRequest, authorize

WORKLOADS = """\
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: foo, labels: {app: httpbin, version: v1}}
spec: {serviceAccountName: httpbin, containers: [{name: httpbin, image: x}]}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: tcp-echo, namespace: foo, labels: {app: tcp-echo}}
spec: {containers: [{name: tcp-echo, image: x}]}
status: {podIP: 10.244.1.11}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep, namespace: foo, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: x}]}
status: {podIP: 10.244.1.12}
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: bar, labels: {app: httpbin, version: v2}}
spec: {containers: [{name: httpbin, image: x}]}
status: {podIP: 10.244.2.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: bar, labels: {app: web, version: v1}}
spec: {containers: [{name: web, image: x}]}
status: {podIP: 10.244.2.11}
---
apiVersion: v1
kind: Pod
metadata:
  name: gw-istio
  namespace: foo
  labels: {gateway.networking.k8s.io/gateway-name: gw}
spec: {containers: [{name: istio-proxy, image: x}]}
"""

SLEEP = "cluster.local/ns/foo/sa/sleep"
SLEEP_IP = "10.244.1.12"


def policy(name: str, namespace: str, spec: str, annotations: str = "") -> str:
    meta = f"name: {name}, namespace: {namespace}" + (f", annotations: {annotations}"
                                                      if annotations else "")
    return ("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{{meta}}}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  "))


def cluster(*policies: str):
    return load(["-"], stdin=io.StringIO(WORKLOADS + "".join(policies)))


def http(method: str = "GET", path: str = "/", *, principal: str | None = SLEEP,
         headers: dict | None = None, port: int = 8080, **kw) -> AuthzRequest:
    return AuthzRequest(source_ip=kw.pop("source_ip", SLEEP_IP), port=port,
                        source_principal=principal, method=method, path=path,
                        headers=FrozenDict(headers or {}), **kw)


def tcp(port: int, principal: str | None = SLEEP) -> AuthzRequest:
    return AuthzRequest(source_ip=SLEEP_IP, port=port, source_principal=principal, http=False,
                        method=None, path=None)


def decide(c, target: str, request: AuthzRequest, **kw):
    return authorize(c, c.pod(*target.split("/")), request, **kw)


def status(decision) -> int:
    return 200 if decision.allowed else decision.status


# --- istio.io "Explicit Deny" -----------------------------------------------------------------

DENY_GET = policy("deny-method-get", "foo", """\
    selector: {matchLabels: {app: httpbin}}
    action: DENY
    rules:
    - to:
      - operation:
          methods: ["GET"]
    """)
DENY_GET_UNLESS_ADMIN = policy("deny-method-get", "foo", """\
    selector: {matchLabels: {app: httpbin}}
    action: DENY
    rules:
    - to:
      - operation:
          methods: ["GET"]
      when:
      - key: request.headers[x-token]
        notValues: ["admin"]
    """)
ALLOW_PATH_IP = policy("allow-path-ip", "foo", """\
    selector: {matchLabels: {app: httpbin}}
    action: ALLOW
    rules:
    - to:
      - operation:
          paths: ["/ip"]
    """)

# (step, policies, method, path, x-token header, documented status)
EXPLICIT_DENY = [
    ("no policy", (), "GET", "/ip", None, 200),
    ("GET denied", (DENY_GET,), "GET", "/get", None, 403),
    ("POST allowed", (DENY_GET,), "POST", "/post", None, 200),
    ("GET with x-token admin allowed", (DENY_GET_UNLESS_ADMIN,), "GET", "/get", "admin", 200),
    ("GET with x-token guest denied", (DENY_GET_UNLESS_ADMIN,), "GET", "/get", "guest", 403),
    ("deny beats allow at /ip", (DENY_GET_UNLESS_ADMIN, ALLOW_PATH_IP), "GET", "/ip", "guest",
     403),
    ("admin at /ip allowed", (DENY_GET_UNLESS_ADMIN, ALLOW_PATH_IP), "GET", "/ip", "admin",
     200),
    ("admin at /get matches no ALLOW", (DENY_GET_UNLESS_ADMIN, ALLOW_PATH_IP), "GET", "/get",
     "admin", 403),
]


@pytest.mark.parametrize(("policies", "method", "path", "token", "expected"),
                         [row[1:] for row in EXPLICIT_DENY], ids=[row[0] for row in EXPLICIT_DENY])
def test_explicit_deny_task(policies, method, path, token, expected):
    headers = {"X-Token": token} if token else {}
    decision = decide(cluster(*policies), "foo/httpbin", http(method, path, headers=headers))
    assert status(decision) == expected, decision.reason


def test_denial_names_the_rule_as_envoy_logs_it():
    deny = decide(cluster(DENY_GET), "foo/httpbin", http("GET", "/get"))
    assert (deny.action, deny.policy, deny.rule_index) == ("DENY", "foo/deny-method-get", 0)
    assert deny.body == "RBAC: access denied"
    assert deny.details == ("rbac_access_denied_matched_policy"
                            "[ns[foo]-policy[deny-method-get]-rule[0]]")
    none = decide(cluster(ALLOW_PATH_IP), "foo/httpbin", http("GET", "/get"))
    assert (none.allowed, none.action, none.policy) == (False, "ALLOW", None)
    assert none.details == "rbac_access_denied_matched_policy[none]"
    assert "foo/allow-path-ip" in none.reason
    allowed = decide(cluster(ALLOW_PATH_IP), "foo/httpbin", http("GET", "/ip"))
    assert (allowed.allowed, allowed.policy, allowed.rule_index) == \
        (True, "foo/allow-path-ip", 0)
    assert allowed.status is None and allowed.body is None


# --- istio.io "TCP Traffic" -------------------------------------------------------------------

def tcp_policy(action: str, operation: str) -> str:
    return policy("tcp-policy", "foo", f"""\
        selector: {{matchLabels: {{app: tcp-echo}}}}
        action: {action}
        rules:
        - to:
          - operation: {operation}
        """)


ALLOW_PORTS = tcp_policy("ALLOW", '{ports: ["9000", "9001"]}')
ALLOW_GET_9000 = tcp_policy("ALLOW", '{methods: ["GET"], ports: ["9000"]}')
TCP_DENY_GET = tcp_policy("DENY", '{methods: ["GET"]}')
DENY_GET_9000 = tcp_policy("DENY", '{methods: ["GET"], ports: ["9000"]}')

# (step, policy, port, documented "connection succeeded")
TCP_TASK = [
    ("before any policy", None, 9002, True),
    ("ALLOW 9000,9001: 9000", ALLOW_PORTS, 9000, True),
    ("ALLOW 9000,9001: 9001", ALLOW_PORTS, 9001, True),
    ("ALLOW 9000,9001: 9002 (passthrough chain too)", ALLOW_PORTS, 9002, False),
    ("ALLOW with HTTP-only methods is ignored: 9000", ALLOW_GET_9000, 9000, False),
    ("ALLOW with HTTP-only methods is ignored: 9001", ALLOW_GET_9000, 9001, False),
    ("DENY with only HTTP fields denies all TCP: 9000", TCP_DENY_GET, 9000, False),
    ("DENY with only HTTP fields denies all TCP: 9001", TCP_DENY_GET, 9001, False),
    ("DENY GET on 9000: 9000", DENY_GET_9000, 9000, False),
    ("DENY GET on 9000: 9001", DENY_GET_9000, 9001, True),
]


@pytest.mark.parametrize(("spec", "port", "succeeded"), [row[1:] for row in TCP_TASK],
                         ids=[row[0] for row in TCP_TASK])
def test_tcp_traffic_task(spec, port, succeeded):
    c = cluster(*([spec] if spec else []))
    decision = decide(c, "foo/tcp-echo", tcp(port))
    assert decision.allowed is succeeded, decision.reason
    if not succeeded:
        assert decision.status is None and "connection is closed" in decision.reason


# --- istio.io "JWT Token" ---------------------------------------------------------------------

REQUIRE_JWT = policy("require-jwt", "foo", """\
    selector: {matchLabels: {app: httpbin}}
    action: ALLOW
    rules:
    - from:
      - source:
          requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
    """)
REQUIRE_GROUP = policy("require-jwt", "foo", """\
    selector: {matchLabels: {app: httpbin}}
    action: ALLOW
    rules:
    - from:
      - source:
          requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
      when:
      - key: request.auth.claims[groups]
        values: ["group1"]
    """)
ISSUER = "testing@secure.istio.io"
DEMO = {"iss": ISSUER, "sub": ISSUER, "foo": "bar"}  # demo.jwt's payload
GROUPS = {"iss": ISSUER, "sub": ISSUER, "groups": ["group1", "group2"],
          "scope": ["scope1", "scope2"]}  # groups-scope.jwt's payload

JWT_TASK = [
    ("no policy, no token", (), None, 200),
    ("valid token", (REQUIRE_JWT,), DEMO, 200),
    ("no token", (REQUIRE_JWT,), None, 403),
    ("token with groups: [group1, group2]", (REQUIRE_GROUP,), GROUPS, 200),
    ("token without a groups claim", (REQUIRE_GROUP,), DEMO, 403),
]


@pytest.mark.parametrize(("policies", "claims", "expected"), [row[1:] for row in JWT_TASK],
                         ids=[row[0] for row in JWT_TASK])
def test_jwt_task(policies, claims, expected):
    request = http("GET", "/headers")
    if claims:
        request = AuthzRequest(**{**_fields(request),
                                  "request_principal": f"{claims['iss']}/{claims['sub']}",
                                  "claims": FrozenDict(claims)})
    assert status(decide(cluster(*policies), "foo/httpbin", request)) == expected


def _fields(request: AuthzRequest) -> dict:
    return {name: getattr(request, name) for name in request.__dataclass_fields__}


# --- the reference's examples -----------------------------------------------------------------

HTTPBIN_EXAMPLE = policy("httpbin", "foo", """\
    action: ALLOW
    rules:
    - from:
      - source:
          principals: ["cluster.local/ns/default/sa/sleep"]
      - source:
          namespaces: ["test"]
      to:
      - operation:
          methods: ["GET"]
          paths: ["/info*"]
      - operation:
          methods: ["POST"]
          paths: ["/data"]
      when:
      - key: request.auth.claims[iss]
        values: ["https://accounts.google.com"]
    """)
GOOGLE = FrozenDict({"iss": "https://accounts.google.com", "sub": "u1"})
DEFAULT_SLEEP = "cluster.local/ns/default/sa/sleep"

# (case, principal, method, path, claims, allowed)
REFERENCE_ALLOW = [
    ("sleep GET /info", DEFAULT_SLEEP, "GET", "/info", GOOGLE, True),
    ("sleep GET /info/x (prefix)", DEFAULT_SLEEP, "GET", "/info/x", GOOGLE, True),
    ("namespace test POST /data", "cluster.local/ns/test/sa/any", "POST", "/data", GOOGLE,
     True),
    ("POST /info is not an operation", DEFAULT_SLEEP, "POST", "/info", GOOGLE, False),
    ("GET /data is not an operation", DEFAULT_SLEEP, "GET", "/data", GOOGLE, False),
    ("other principal", "cluster.local/ns/default/sa/other", "GET", "/info", GOOGLE, False),
    ("plaintext never matches principals", None, "GET", "/info", GOOGLE, False),
    ("wrong issuer", DEFAULT_SLEEP, "GET", "/info",
     FrozenDict({"iss": "https://evil.example.com"}), False),
    ("no token", DEFAULT_SLEEP, "GET", "/info", FrozenDict(), False),
    ("query strings are not part of the path", DEFAULT_SLEEP, "POST", "/data?x=1", GOOGLE,
     True),
]


@pytest.mark.parametrize(("principal", "method", "path", "claims", "allowed"),
                         [row[1:] for row in REFERENCE_ALLOW],
                         ids=[row[0] for row in REFERENCE_ALLOW])
def test_reference_allow_example(principal, method, path, claims, allowed):
    request = AuthzRequest(source_ip="10.244.9.9", port=8080, source_principal=principal,
                           method=method, path=path, claims=claims)
    assert decide(cluster(HTTPBIN_EXAMPLE), "foo/httpbin", request).allowed is allowed


DENY_DEV_POST = policy("httpbin", "foo", """\
    action: DENY
    rules:
    - from:
      - source:
          namespaces: ["dev"]
      to:
      - operation:
          methods: ["POST"]
    """)


@pytest.mark.parametrize(("principal", "method", "allowed"), [
    ("cluster.local/ns/dev/sa/x", "POST", False),
    ("cluster.local/ns/dev/sa/x", "GET", True),
    ("cluster.local/ns/prod/sa/x", "POST", True),
    (None, "POST", True),  # plaintext has no namespace: the DENY does not match
])
def test_reference_deny_example(principal, method, allowed):
    request = http(method, "/", principal=principal)
    assert decide(cluster(DENY_DEV_POST), "foo/httpbin", request).allowed is allowed


ALLOW_NOTHING = policy("allow-nothing", "foo", "{}\n")
ALLOW_ALL = policy("allow-all", "foo", "rules:\n- {}\n")
ROOT_V1 = policy("allow-nothing", "istio-system", "selector: {matchLabels: {version: v1}}\n")


@pytest.mark.parametrize(("policies", "target", "allowed"), [
    ((ALLOW_NOTHING,), "foo/httpbin", False),
    ((ALLOW_NOTHING,), "foo/tcp-echo", False),
    ((ALLOW_NOTHING,), "bar/httpbin", True),  # another namespace
    ((ALLOW_ALL,), "foo/httpbin", True),
    ((ALLOW_NOTHING, ALLOW_ALL), "foo/httpbin", True),  # any ALLOW match allows
    ((ROOT_V1,), "foo/httpbin", False),  # version v1 in foo
    ((ROOT_V1,), "bar/web", False),  # version v1 in bar
    ((ROOT_V1,), "bar/httpbin", True),  # version v2
    ((policy("deny-all", "foo", "action: DENY\nrules:\n- {}\n"),), "foo/httpbin", False),
    ((policy("deny-none", "foo", "action: DENY\n"),), "foo/httpbin", True),
])
def test_scope_and_empty_rules(policies, target, allowed):
    assert decide(cluster(*policies), target, http()).allowed is allowed


def test_allow_nothing_says_why():
    decision = decide(cluster(ALLOW_NOTHING), "foo/httpbin", http())
    assert decision.status == 403 and decision.body == "RBAC: access denied"
    assert "foo/allow-nothing has no rules and allows nothing" in decision.reason
    assert decision.applicable == ("foo/allow-nothing (ALLOW)",)


EXT_AUTHZ = policy("ext-authz", "foo", """\
    selector: {matchLabels: {app: httpbin}}
    action: CUSTOM
    provider: {name: my-custom-authz}
    rules:
    - to:
      - operation:
          paths: ["/admin/*"]
    """)


def test_custom_goes_first_and_the_provider_decides():
    c = cluster(EXT_AUTHZ, ALLOW_PATH_IP)
    denied = decide(c, "foo/httpbin", http("GET", "/admin/users"), custom="deny")
    assert (denied.allowed, denied.action, denied.policy) == (False, "CUSTOM", "foo/ext-authz")
    assert denied.status == 403 and denied.response_flag == "UAEX"
    # the provider allows: ALLOW still has the last word (the extension cannot bypass it)
    passed = decide(c, "foo/httpbin", http("GET", "/admin/users"), custom="allow")
    assert not passed.allowed and passed.action == "ALLOW"
    assert passed.custom == ("foo/ext-authz -> provider my-custom-authz",)
    # no CUSTOM rule matches: the provider is not asked
    other = decide(c, "foo/httpbin", http("GET", "/ip"), custom="deny")
    assert other.allowed and other.custom == ()
    with pytest.raises(ValueError):
        decide(c, "foo/httpbin", http(), custom="maybe")


def test_custom_policies_do_not_count_as_allow_policies():
    assert decide(cluster(EXT_AUTHZ), "foo/httpbin", http("GET", "/x")).allowed


# --- matching rules ---------------------------------------------------------------------------

def op_policy(operation: str, action: str = "ALLOW") -> str:
    return policy("p", "foo", f"action: {action}\nrules:\n- to:\n  - operation: {operation}\n")


# (case, operation, request overrides, allowed)
MATCHING = [
    ("exact path", '{paths: ["/a"]}', {"path": "/a"}, True),
    ("exact path, other", '{paths: ["/a"]}', {"path": "/ab"}, False),
    ("prefix matches itself", '{paths: ["/abc*"]}', {"path": "/abc"}, True),
    ("prefix", '{paths: ["/abc*"]}', {"path": "/abcd"}, True),
    ("suffix matches itself", '{paths: ["*.html"]}', {"path": ".html"}, True),
    ("suffix", '{paths: ["*.html"]}', {"path": "/x/index.html"}, True),
    ("presence", '{paths: ["*"]}', {"path": "/anything"}, True),
    ("dot segments are normalized", '{paths: ["/admin"]}', {"path": "/public/../admin"}, True),
    ("template {*} is one segment", '{paths: ["/users/{*}/profile"]}',
     {"path": "/users/7/profile"}, True),
    ("template {*} is not two", '{paths: ["/users/{*}/profile"]}',
     {"path": "/users/7/8/profile"}, False),
    ("template trailing {**}", '{paths: ["/files/{**}"]}', {"path": "/files/a/b/c"}, True),
    ("template inner {**} needs a segment", '{paths: ["/a/{**}/z"]}', {"path": "/a/z"},
     False),
    ("hosts ignore case", '{hosts: ["*.Example.com"]}', {"host": "api.example.COM"}, True),
    ("hosts", '{hosts: ["example.com"]}', {"host": "other.com"}, False),
    ("host from the Host header", '{hosts: ["example.com"]}',
     {"headers": FrozenDict({"Host": "example.com"})}, True),
    ("methods are case-sensitive", '{methods: ["GET"]}', {"method": "get"}, False),
    ("notMethods", '{notMethods: ["DELETE"]}', {"method": "GET"}, True),
    ("notMethods, excluded", '{notMethods: ["DELETE"]}', {"method": "DELETE"}, False),
    ("ports", '{ports: ["8080"]}', {"port": 8080}, True),
    ("notPorts", '{notPorts: ["8080"]}', {"port": 8080}, False),
    ("fields AND", '{methods: ["GET"], paths: ["/a"]}', {"method": "GET", "path": "/b"},
     False),
]


@pytest.mark.parametrize(("operation", "changes", "allowed"), [row[1:] for row in MATCHING],
                         ids=[row[0] for row in MATCHING])
def test_operation_matching(operation, changes, allowed):
    request = AuthzRequest(**{**_fields(http()), **changes})
    assert decide(cluster(op_policy(operation)), "foo/httpbin", request).allowed is allowed


def source_policy(source: str, action: str = "ALLOW") -> str:
    return policy("p", "foo", f"action: {action}\nrules:\n- from:\n  - source: {source}\n")


# (case, source, principal, source ip, allowed)
SOURCES = [
    ("principal prefix", '{principals: ["cluster.local/ns/foo/*"]}', SLEEP, SLEEP_IP, True),
    ("principal presence needs mTLS", '{principals: ["*"]}', None, SLEEP_IP, False),
    ("principal with spiffe:// prefix", '{principals: ["cluster.local/ns/foo/sa/sleep"]}',
     "spiffe://cluster.local/ns/foo/sa/sleep", SLEEP_IP, True),
    ("namespaces from the certificate", '{namespaces: ["foo"]}', SLEEP, SLEEP_IP, True),
    ("namespaces need mTLS", '{namespaces: ["foo"]}', None, SLEEP_IP, False),
    ("notNamespaces on plaintext", '{notNamespaces: ["foo"]}', None, SLEEP_IP, True),
    ("serviceAccounts", '{serviceAccounts: ["foo/sleep"]}', SLEEP, SLEEP_IP, True),
    ("ipBlocks CIDR", '{ipBlocks: ["10.244.1.0/24"]}', None, SLEEP_IP, True),
    ("ipBlocks single IP", '{ipBlocks: ["10.244.1.12"]}', None, SLEEP_IP, True),
    ("notIpBlocks", '{notIpBlocks: ["10.244.1.0/24"]}', None, SLEEP_IP, False),
    ("fields AND", '{namespaces: ["foo"], ipBlocks: ["10.0.0.0/8"]}', None, SLEEP_IP, False),
]


@pytest.mark.parametrize(("source", "principal", "ip", "allowed"), [row[1:] for row in SOURCES],
                         ids=[row[0] for row in SOURCES])
def test_source_matching(source, principal, ip, allowed):
    request = http(principal=principal, source_ip=ip)
    assert decide(cluster(source_policy(source)), "foo/httpbin", request).allowed is allowed


def test_deny_plaintext_with_not_principals():
    deny = source_policy('{notPrincipals: ["*"]}', action="DENY")
    assert not decide(cluster(deny), "foo/httpbin", http(principal=None)).allowed
    assert decide(cluster(deny), "foo/httpbin", http()).allowed


def test_remote_ip_blocks_read_the_original_client():
    allow = source_policy('{remoteIpBlocks: ["203.0.113.0/24"]}')
    via_proxy = http(principal=None, source_ip="10.244.0.5", remote_ip="203.0.113.4")
    assert decide(cluster(allow), "foo/httpbin", via_proxy).allowed
    assert not decide(cluster(allow), "foo/httpbin", http(principal=None)).allowed


# (case, when, request overrides, allowed)
CONDITIONS = [
    ("header presence", '{key: "request.headers[version]", values: ["*"]}',
     {"headers": FrozenDict({"Version": "v1"})}, True),
    ("header absent", '{key: "request.headers[version]", values: ["*"]}', {}, False),
    ("source.ip", '{key: source.ip, values: ["10.244.1.0/24"]}', {}, True),
    ("source.namespace", '{key: source.namespace, values: ["foo"]}', {}, True),
    ("source.principal", '{key: source.principal, notValues: ["*/sa/sleep"]}', {}, False),
    ("destination.port", '{key: destination.port, values: ["8080", "9090"]}', {}, True),
    ("destination.ip defaults to the pod's", '{key: destination.ip, values: ["10.244.1.10"]}',
     {}, True),
    ("connection.sni", '{key: connection.sni, values: ["*.svc.cluster.local"]}',
     {"sni": "outbound_.8000_._.httpbin.foo.svc.cluster.local"}, True),
    ("values and notValues", '{key: "request.headers[x]", values: ["a*"], notValues: ["ab"]}',
     {"headers": FrozenDict({"x": "ab"})}, False),
]


@pytest.mark.parametrize(("when", "changes", "allowed"), [row[1:] for row in CONDITIONS],
                         ids=[row[0] for row in CONDITIONS])
def test_conditions(when, changes, allowed):
    spec = policy("p", "foo", f"rules:\n- when:\n  - {when}\n")
    request = AuthzRequest(**{**_fields(http()), **changes})
    assert decide(cluster(spec), "foo/httpbin", request).allowed is allowed


def test_dry_run_policies_are_not_enforced():
    dry = policy("dry-run-example", "foo", """\
        selector: {matchLabels: {app: httpbin}}
        action: DENY
        rules:
        - to:
          - operation:
              paths: ["/headers"]
        """, annotations='{"istio.io/dry-run": "true"}')
    decision = decide(cluster(dry), "foo/httpbin", http("GET", "/headers"))
    assert decision.allowed and "dry-run" in decision.reason


def test_target_refs_attach_to_gateways_not_sidecars():
    gateway = policy("gw-only", "foo", """\
        targetRefs:
        - {group: gateway.networking.k8s.io, kind: Gateway, name: gw}
        """)
    c = cluster(gateway)
    assert not decide(c, "foo/gw-istio", http()).allowed
    assert decide(c, "foo/httpbin", http()).allowed


def test_the_first_matching_rule_in_envoys_order_is_reported():
    a = policy("a", "foo", "action: DENY\nrules:\n- {}\n- {}\n")
    b = policy("b", "foo", "action: DENY\nrules:\n- {}\n")
    decision = decide(cluster(b, a), "foo/httpbin", http())
    assert (decision.policy, decision.rule_index) == ("foo/a", 0)


def test_one_index_serves_many_requests():
    c = cluster(ALLOW_PATH_IP)
    index = AuthorizationPolicies(c)
    pod = c.pod("foo", "httpbin")
    assert [authorize(c, pod, http("GET", p), policies=index).allowed
            for p in ("/ip", "/get")] == [True, False]


@pytest.mark.parametrize(("spec", "field"), [
    ("action: MAYBE\n", "spec.action"),
    ("action: CUSTOM\nrules:\n- {}\n", "spec.provider"),
    ("provider: {name: x}\n", "spec.provider"),
    ("rules:\n- from:\n  - source: {}\n", "spec.rules[0].from[0]"),
    ("rules:\n- from:\n  - {}\n", "spec.rules[0].from[0].source"),
    ("rules:\n- to:\n  - operation: {verbs: [GET]}\n", "spec.rules[0].to[0].operation.verbs"),
    ("rules:\n- from:\n  - source: {ipBlocks: [not-an-ip]}\n",
     "spec.rules[0].from[0].source.ipBlocks[0]"),
    ("rules:\n- to:\n  - operation: {ports: [http]}\n", "spec.rules[0].to[0].operation.ports[0]"),
    ("rules:\n- when:\n  - {key: request.color, values: [red]}\n", "spec.rules[0].when[0].key"),
    ("rules:\n- when:\n  - {key: source.ip}\n", "spec.rules[0].when[0]"),
    ("rules:\n- to:\n  - operation: {paths: ['/a/{**}/{*}']}\n",
     "spec.rules[0].to[0].operation.paths[0]"),
    ("selector: {matchLabels: {app: x}}\ntargetRefs: [{kind: Gateway, name: g}]\n",
     "spec.selector"),
])
def test_invalid_policies_name_their_field(spec, field):
    c = cluster(policy("bad", "foo", spec))
    with pytest.raises(InputError) as info:
        decide(c, "foo/httpbin", http())
    assert "AuthorizationPolicy foo/bad" in str(info.value)
    assert field in str(info.value)
