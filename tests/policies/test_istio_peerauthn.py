"""PeerAuthentication: the effective mTLS mode per workload and port.

Rows come from istio/api peer_authentication.proto's examples (namespace STRICT; namespace
PERMISSIVE with a STRICT workload; STRICT with port 8080 DISABLE; UNSET inheriting with port
8080 DISABLE) and from istio.io's "Authentication Policy" task (mesh-wide STRICT in the root
namespace istio-system; a namespace policy; a workload policy overriding its namespace), plus
the rules the proto and pilot's ComposePeerAuthentication state: UNSET inherits, nothing set
means PERMISSIVE, the oldest policy of a scope wins, root-namespace selectors do not apply.
"""

from __future__ import annotations

import io
import textwrap

import pytest

from netsim.cluster import load
from netsim.errors import InputError
from policies.istio import PeerAuthentications, mtls_mode, workload_principal

PODS = """\
apiVersion: v1
kind: Pod
metadata: {name: finance, namespace: foo, labels: {app: finance}}
spec:
  serviceAccountName: finance
  containers: [{name: app, image: x}]
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: foo, labels: {app: httpbin}}
spec: {containers: [{name: app, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: bar, labels: {app: httpbin}}
spec: {containers: [{name: app, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ingress, namespace: istio-system, labels: {app: ingress}}
spec: {containers: [{name: app, image: x}]}
"""


def pa(name: str, namespace: str, body: str, created: str | None = None) -> str:
    meta = f"name: {name}, namespace: {namespace}"
    if created:
        meta += f", creationTimestamp: '{created}'"
    return ("---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            f"metadata: {{{meta}}}\nspec:\n" + textwrap.indent(textwrap.dedent(body), "  "))


def cluster(*policies: str):
    return load(["-"], stdin=io.StringIO(PODS + "".join(policies)))


MESH_STRICT = pa("default", "istio-system", "mtls: {mode: STRICT}\n")
FOO_STRICT = pa("default", "foo", "mtls: {mode: STRICT}\n")
FOO_PERMISSIVE = pa("default", "foo", "mtls: {mode: PERMISSIVE}\n")
FINANCE_STRICT = pa("finance", "foo", "selector: {matchLabels: {app: finance}}\n"
                                      "mtls: {mode: STRICT}\n")
FINANCE_PORT = pa("finance", "foo", "selector: {matchLabels: {app: finance}}\n"
                                    "mtls: {mode: STRICT}\n"
                                    "portLevelMtls: {8080: {mode: DISABLE}}\n")
FINANCE_UNSET_PORT = pa("finance", "foo", "selector: {matchLabels: {app: finance}}\n"
                                          "mtls: {mode: UNSET}\n"
                                          "portLevelMtls: {8080: {mode: DISABLE}}\n")

# (case, policies, pod "ns/name", port, mode, deciding policy)
ROWS = [
    ("nothing set: PERMISSIVE", (), "foo/httpbin", 80, "PERMISSIVE", None),
    ("mesh-wide STRICT", (MESH_STRICT,), "bar/httpbin", 80, "STRICT", "istio-system/default"),
    ("mesh-wide applies in the root namespace", (MESH_STRICT,), "istio-system/ingress", 80,
     "STRICT", "istio-system/default"),
    ("namespace STRICT", (FOO_STRICT,), "foo/httpbin", 80, "STRICT", "foo/default"),
    ("namespace policy stays in its namespace", (FOO_STRICT,), "bar/httpbin", 80,
     "PERMISSIVE", None),
    ("namespace PERMISSIVE, workload STRICT: workload", (FOO_PERMISSIVE, FINANCE_STRICT),
     "foo/finance", 80, "STRICT", "foo/finance"),
    ("namespace PERMISSIVE, workload STRICT: others", (FOO_PERMISSIVE, FINANCE_STRICT),
     "foo/httpbin", 80, "PERMISSIVE", "foo/default"),
    ("STRICT but port 8080 DISABLE: 8080", (FINANCE_PORT,), "foo/finance", 8080, "DISABLE",
     "foo/finance"),
    ("STRICT but port 8080 DISABLE: 9080", (FINANCE_PORT,), "foo/finance", 9080, "STRICT",
     "foo/finance"),
    ("UNSET inherits the mesh, port 8080 DISABLE", (MESH_STRICT, FINANCE_UNSET_PORT),
     "foo/finance", 8080, "DISABLE", "foo/finance"),
    ("UNSET inherits the mesh on other ports", (MESH_STRICT, FINANCE_UNSET_PORT),
     "foo/finance", 9080, "STRICT", "istio-system/default"),
    ("UNSET with nothing above: PERMISSIVE", (FINANCE_UNSET_PORT,), "foo/finance", 9080,
     "PERMISSIVE", None),
    ("namespace overrides mesh", (MESH_STRICT, pa("default", "foo", "mtls: {mode: DISABLE}\n")),
     "foo/httpbin", 80, "DISABLE", "foo/default"),
    ("workload DISABLE overrides namespace STRICT",
     (FOO_STRICT, pa("overwrite-example", "foo", "selector: {matchLabels: {app: httpbin}}\n"
                                                 "mtls: {mode: DISABLE}\n")),
     "foo/httpbin", 80, "DISABLE", "foo/overwrite-example"),
    ("namespace UNSET inherits the mesh", (MESH_STRICT, pa("default", "foo", "mtls: {}\n")),
     "foo/httpbin", 80, "STRICT", "istio-system/default"),
    ("no mtls at all is UNSET", (MESH_STRICT, pa("default", "foo", "{}\n")), "foo/httpbin", 80,
     "STRICT", "istio-system/default"),
    ("port UNSET inherits the workload",
     (pa("finance", "foo", "selector: {matchLabels: {app: finance}}\nmtls: {mode: STRICT}\n"
                           "portLevelMtls: {8080: {mode: UNSET}}\n"),),
     "foo/finance", 8080, "STRICT", "foo/finance"),
    ("selector that does not match", (pa("other", "foo", "selector: {matchLabels: {app: x}}\n"
                                                         "mtls: {mode: STRICT}\n"),),
     "foo/httpbin", 80, "PERMISSIVE", None),
    ("empty matchLabels is namespace-wide",
     (pa("all", "foo", "selector: {matchLabels: {}}\nmtls: {mode: STRICT}\n"),),
     "foo/httpbin", 80, "STRICT", "foo/all"),
    ("root-namespace selectors are ignored",
     (pa("httpbin", "istio-system", "selector: {matchLabels: {app: httpbin}}\n"
                                    "mtls: {mode: STRICT}\n"),),
     "foo/httpbin", 80, "PERMISSIVE", None),
    ("the oldest namespace policy wins",
     (pa("newer", "foo", "mtls: {mode: DISABLE}\n", "2024-05-01T00:00:00Z"),
      pa("older", "foo", "mtls: {mode: STRICT}\n", "2024-01-01T00:00:00Z")),
     "foo/httpbin", 80, "STRICT", "foo/older"),
    ("the oldest workload policy wins",
     (pa("b-newer", "foo", "selector: {matchLabels: {app: httpbin}}\nmtls: {mode: DISABLE}\n",
         "2024-05-01T00:00:00Z"),
      pa("z-older", "foo", "selector: {matchLabels: {app: httpbin}}\nmtls: {mode: STRICT}\n",
         "2024-01-01T00:00:00Z")),
     "foo/httpbin", 80, "STRICT", "foo/z-older"),
]


@pytest.mark.parametrize(("policies", "target", "port", "mode", "policy"),
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_effective_mtls_mode(policies, target, port, mode, policy):
    c = cluster(*policies)
    pod = c.pod(*target.split("/"))
    result = mtls_mode(c, pod, port)
    assert (result.mode, result.policy) == (mode, policy), result.reason
    assert result.reason


def test_reasons_name_the_scopes():
    c = cluster(MESH_STRICT, FINANCE_UNSET_PORT)
    index = PeerAuthentications(c)
    finance = c.pod("foo", "finance")
    assert index.mode(finance, 8080).scope == "port"
    inherited = index.mode(finance, 9080)
    assert inherited.scope == "mesh"
    assert "foo/finance leaves the mode UNSET" in inherited.reason
    assert "istio-system/default sets STRICT" in inherited.reason


def test_root_namespace_comes_from_the_mesh_config():
    configmap = textwrap.dedent("""\
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: istio, namespace: istio-system}
        data:
          mesh: |-
            rootNamespace: istio-config
            trustDomain: example.org
        """)
    c = cluster(configmap, pa("default", "istio-config", "mtls: {mode: STRICT}\n"),
                MESH_STRICT)
    pod = c.pod("bar", "httpbin")
    assert (mtls_mode(c, pod, 80).mode, mtls_mode(c, pod, 80).policy) == \
        ("STRICT", "istio-config/default")
    assert workload_principal(c, c.pod("foo", "finance")) == "example.org/ns/foo/sa/finance"


@pytest.mark.parametrize(("target", "principal"), [
    ("foo/finance", "cluster.local/ns/foo/sa/finance"),
    ("foo/httpbin", "cluster.local/ns/foo/sa/default"),  # no serviceAccountName
])
def test_workload_principal(target, principal):
    c = cluster()
    assert workload_principal(c, c.pod(*target.split("/"))) == principal


@pytest.mark.parametrize(("body", "field"), [
    ("mtls: {mode: STRICTER}\n", "spec.mtls.mode"),
    ("mtls: {mode: STRICT}\nportLevelMtls: {8080: {mode: DISABLE}}\n", "spec.portLevelMtls"),
    ("selector: {matchLabels: {app: x}}\nportLevelMtls: {0: {mode: DISABLE}}\n",
     "spec.portLevelMtls.0"),
    ("selector: {matchLabels: {app: x}}\nportLevelMtls: {80: {mode: NOPE}}\n",
     "spec.portLevelMtls.80.mode"),
])
def test_invalid_policies_name_their_field(body, field):
    c = cluster(pa("bad", "foo", body))
    with pytest.raises(InputError) as info:
        mtls_mode(c, c.pod("foo", "httpbin"), 80)
    assert "PeerAuthentication foo/bad" in str(info.value)
    assert field in str(info.value)
