"""Bad input: exactly one InputError naming file, document, object and field; exit 2 in the CLI.

Each row is an object the Kubernetes API server (or kube-proxy, or netsim's own NetsimConfig
validation) would reject, with the field path the API server's validation names.
"""

from __future__ import annotations

import io
import re
import textwrap

import pytest

from netsim.cli import main
from netsim.cluster import load
from netsim.errors import InputError, Source
from tests.conftest import write_inputs

# Every YAML row follows this valid document, so its first document is "document 2" (line 5).
PREFIX = "apiVersion: v1\nkind: Namespace\nmetadata: {name: pre}\n---\n"

NODE = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n"


def _block(spec: str) -> str:
    return textwrap.indent(textwrap.dedent(spec).rstrip("\n") + "\n", "  ")


def svc(spec: str, name: str = "web") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n" + _block(spec)


def pod(spec: str = "containers: [{name: c}]\n", meta: str = "name: p", status: str = "") -> str:
    text = f"apiVersion: v1\nkind: Pod\nmetadata: {{{meta}}}\nspec:\n" + _block(spec)
    return text + (f"status: {status}\n" if status else "")


def netpol(spec: str) -> str:
    return (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\n"
        "spec:\n" + _block(spec)
    )


def ingress(spec: str, api: str = "networking.k8s.io/v1") -> str:
    return f"apiVersion: {api}\nkind: Ingress\nmetadata: {{name: ing}}\nspec:\n" + _block(spec)


def config(spec: str) -> str:
    return (
        "apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nmetadata: {name: netsim}\n"
        "spec:\n" + _block(spec)
    )


def deployment(selector: str, labels: str, api: str = "apps/v1", kind: str = "Deployment") -> str:
    return textwrap.dedent(f"""\
        apiVersion: {api}
        kind: {kind}
        metadata: {{name: web}}
        spec:
          selector: {selector}
          template:
            metadata: {{labels: {labels}}}
            spec: {{containers: [{{name: c}}]}}
        """)


KUBE_PROXY = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

D2 = "document 2"
SVC = "Service default/web"
POD = "Pod default/p"
NP = "NetworkPolicy default/np"

ROWS = [
    # ---- wrong types
    pytest.param(
        svc("ports: [{port: eighty}]"),
        [D2, SVC, "spec.ports[0].port", "integer", "eighty"],
        id="port-not-a-number",
    ),
    pytest.param(svc("ports: [{port: 80.5}]"), [SVC, "spec.ports[0].port"], id="port-float"),
    pytest.param(
        pod(meta="name: p, labels: {app: web, tier: 3}"),
        [D2, POD, "metadata.labels.tier", "string"],
        id="label-integer-value",
    ),
    pytest.param(
        pod(meta="name: p, labels: {enabled: true}"),
        [POD, "metadata.labels.enabled", "string"],
        id="label-boolean-value",
    ),
    pytest.param(
        pod(meta="name: p, labels: {'bad key': x}"),
        [POD, "metadata.labels.bad key", "invalid label key"],
        id="label-key",
    ),
    pytest.param(
        pod("containers: {name: c}\n"), [POD, "spec.containers", "list"], id="containers-not-a-list"
    ),
    pytest.param(
        svc("type: Internal\nports: [{port: 80}]"),
        [SVC, "spec.type", "ClusterIP"],
        id="service-type",
    ),
    pytest.param(
        svc("ports: [{port: 80, protocol: HTTP}]"),
        [SVC, "spec.ports[0].protocol", "TCP, UDP, SCTP"],
        id="protocol",
    ),
    pytest.param("kind: 5\napiVersion: v1\n", [D2, "kind", "string"], id="kind-not-a-string"),
    pytest.param("just a string\n", [D2, "mapping"], id="document-not-a-mapping"),
    pytest.param(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, "
        "metadata: {name: a}}\n- 42\n",
        [D2, "items[1]", "mapping"],
        id="list-item-not-a-mapping",
    ),
    # ---- missing required fields
    pytest.param(
        pod(meta="labels: {app: p}"), [D2, "Pod", "metadata.name", "required"], id="no-name"
    ),
    pytest.param("apiVersion: v1\nmetadata: {name: x}\n", [D2, "kind", "required"], id="no-kind"),
    pytest.param(
        "kind: Pod\nmetadata: {name: x}\n", [D2, "apiVersion", "required"], id="no-apiVersion"
    ),
    pytest.param(
        pod("nodeName: n1\n"), [D2, POD, "spec.containers", "required"], id="no-containers"
    ),
    pytest.param(pod("containers: []\n"), [D2, POD, "spec.containers"], id="empty-containers"),
    pytest.param(
        svc("selector: {app: web}\n"),
        [D2, SVC, "spec.ports", "required"],
        id="service-without-ports",
    ),
    pytest.param(
        svc("type: ExternalName\n"),
        [SVC, "spec.externalName", "required"],
        id="external-name-missing",
    ),
    pytest.param(
        deployment("null", "{app: web}"),
        [D2, "Deployment default/web", "spec.selector", "required"],
        id="deployment-without-selector",
    ),
    pytest.param(
        pod(meta="name: p, ownerReferences: [{name: rs, uid: u}]"),
        [POD, "metadata.ownerReferences[0].kind", "required"],
        id="owner-kind",
    ),
    # ---- values out of range
    pytest.param(
        svc("ports: [{port: 70000}]"), [D2, SVC, "spec.ports[0].port", "70000"], id="port-70000"
    ),
    pytest.param(
        svc("type: NodePort\nports: [{port: 80, nodePort: 29999}]"),
        [D2, SVC, "spec.ports[0].nodePort", "29999", "30000-32767"],
        id="node-port-below-range",
    ),
    pytest.param(
        svc("type: NodePort\nports: [{port: 80, nodePort: 32768}]"),
        [SVC, "spec.ports[0].nodePort", "30000-32767"],
        id="node-port-above-range",
    ),
    pytest.param(
        KUBE_PROXY + "iptables: {masqueradeBit: 40}\n",
        [D2, "KubeProxyConfiguration", "iptables.masqueradeBit", "40"],
        id="masquerade-bit-40",
    ),
    pytest.param(
        svc(
            "sessionAffinity: ClientIP\nsessionAffinityConfig: "
            "{clientIP: {timeoutSeconds: 0}}\nports: [{port: 80}]"
        ),
        [SVC, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "0"],
        id="affinity-timeout-0",
    ),
    pytest.param(
        deployment("{matchLabels: {app: web}}", "{app: web}").replace(
            "spec:\n", "spec:\n  replicas: -1\n", 1
        ),
        ["Deployment default/web", "spec.replicas"],
        id="replicas-negative",
    ),
    pytest.param(
        config("nodePortRange: {from: 32000, to: 31000}"),
        [D2, "NetsimConfig", "spec.nodePortRange.to"],
        id="node-port-range-reversed",
    ),
    pytest.param(
        svc("ports: [{port: 80, targetPort: this-name-is-too-long}]"),
        [SVC, "spec.ports[0].targetPort"],
        id="target-port-name-too-long",
    ),
    # ---- bad names
    pytest.param(
        pod(meta="name: Web"),
        [D2, "Pod default/Web", "metadata.name", "'Web'"],
        id="name-uppercase",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team_a}\n",
        [D2, "Namespace team_a", "metadata.name", "team_a"],
        id="namespace-name",
    ),
    # ---- bad IPs and CIDRs
    pytest.param(
        svc("clusterIP: 10.0.0.300\nports: [{port: 80}]"),
        [D2, SVC, "spec.clusterIP", "10.0.0.300"],
        id="cluster-ip",
    ),
    pytest.param(
        pod(status="{podIP: 10.244.1.999}"), [POD, "status.podIP", "10.244.1.999"], id="pod-ip"
    ),
    pytest.param(
        netpol("podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]"),
        [D2, NP, "spec.ingress[0].from[0].ipBlock.cidr", "10.0.0.0/33"],
        id="ipblock-cidr",
    ),
    pytest.param(
        config("podCIDRs: [banana]"),
        [D2, "NetsimConfig", "spec.podCIDRs[0]", "banana"],
        id="netsim-pod-cidr",
    ),
    pytest.param(
        config("podCIDRs: banana"),
        [D2, "NetsimConfig", "spec.podCIDRs", "list"],
        id="netsim-pod-cidrs-not-a-list",
    ),
    pytest.param(
        KUBE_PROXY + "clusterCIDR: 10.244.0.0/16,10.300.0.0/16\n",
        ["KubeProxyConfiguration", "clusterCIDR", "10.300.0.0/16"],
        id="kube-proxy-cluster-cidr",
    ),
    pytest.param(
        svc("externalIPs: [198.51.100.500]\nports: [{port: 80}]"),
        [SVC, "spec.externalIPs[0]"],
        id="external-ip",
    ),
    pytest.param(
        svc("type: LoadBalancer\nports: [{port: 80}]") + "status: {loadBalancer: "
        "{ingress: [{ports: []}]}}\n",
        [SVC, "status.loadBalancer.ingress[0]"],
        id="lb-ingress-without-ip",
    ),
    pytest.param(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\n"
        "addressType: IPv4\nendpoints: [{addresses: ['fd00::1']}]\n",
        ["EndpointSlice default/s", "endpoints[0].addresses[0]", "IPv4"],
        id="slice-address-family",
    ),
    pytest.param(
        svc("clusterIP: 10.96.0.5\nipFamilies: [IPv6]\nports: [{port: 80}]"),
        [SVC, "spec.clusterIPs", "ipFamilies"],
        id="cluster-ip-family-mismatch",
    ),
    # ---- pools
    pytest.param(
        config("podCIDRs: [10.0.0.0/16]\nserviceCIDRs: [10.0.0.0/12]"),
        [D2, "NetsimConfig", "spec.podCIDRs", "overlaps", "10.0.0.0/12"],
        id="pools-overlap",
    ),
    pytest.param(
        config("podCIDRs: [10.244.0.0/16]")
        + "---\n"
        + pod("nodeName: n1\ncontainers: [{name: c}]\n", status="{podIP: 192.168.1.5}"),
        ["document 3", POD, "status.podIP", "192.168.1.5", "10.244.0.0/16"],
        id="pod-ip-outside-pod-cidr",
    ),
    pytest.param(
        config("serviceCIDRs: [10.96.0.0/16]")
        + "---\n"
        + svc("clusterIP: 10.97.0.1\nports: [{port: 80}]"),
        ["document 3", SVC, "spec.clusterIPs[0]", "10.97.0.1", "outside"],
        id="cluster-ip-outside-service-cidr",
    ),
    pytest.param(
        svc("clusterIP: 10.96.0.50\nports: [{port: 80}]", "a")
        + "---\n"
        + svc("clusterIP: 10.96.0.50\nports: [{port: 80}]", "b"),
        [
            "document 3",
            "Service default/b",
            "spec.clusterIPs[0]",
            "10.96.0.50",
            "already allocated",
            "default/a",
        ],
        id="duplicate-cluster-ip",
    ),
    pytest.param(
        svc("type: NodePort\nports: [{port: 80, nodePort: 30080}]", "a")
        + "---\n"
        + svc("type: NodePort\nports: [{port: 81, nodePort: 30080}]", "b"),
        ["document 3", "Service default/b", "spec.ports[0].nodePort", "30080"],
        id="duplicate-node-port",
    ),
    pytest.param(
        NODE
        + pod("nodeName: n1\ncontainers: [{name: c}]\n", status="{podIP: 10.244.1.5}")
        + "---\n"
        + pod(
            "nodeName: n1\ncontainers: [{name: c}]\n", meta="name: q", status="{podIP: 10.244.1.5}"
        ),
        ["10.244.1.5", "status.podIP"],
        id="duplicate-pod-ip",
    ),
    # ---- the same object twice in one input
    pytest.param(
        svc("ports: [{port: 80}]") + "---\n" + svc("ports: [{port: 81}]"),
        ["document 3", SVC, "twice", "document 2"],
        id="same-object-twice",
    ),
    pytest.param(
        svc("ports: [{port: 80}]")
        + "---\n"
        + svc("ports: [{port: 81}]").replace("{name: web}", "{name: web, namespace: default}"),
        ["document 3", SVC, "twice"],
        id="same-object-default-namespace-spelled-out",
    ),
    # ---- YAML and JSON syntax
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n",
        [D2, "line 8", "invalid YAML"],
        id="yaml-tab",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x\nspec: {}\n",
        [D2, "invalid YAML", "line"],
        id="yaml-unclosed-flow",
    ),
    pytest.param(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: !Ref v}\n",
        [D2, "line 8", "!Ref"],
        id="yaml-unknown-tag",
    ),
    # ---- NetworkPolicy
    pytest.param(
        netpol(
            "podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8}\n"
            "    podSelector: {}"
        ),
        [D2, NP, "spec.ingress[0].from[0]", "ipBlock"],
        id="peer-ipblock-and-pods",
    ),
    pytest.param(
        netpol("podSelector: {}\ningress: [{from: [{}]}]"),
        [NP, "spec.ingress[0].from[0]", "peer"],
        id="peer-empty",
    ),
    pytest.param(
        netpol(
            "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, "
            "except: [10.1.0.0/24]}}]}]"
        ),
        [D2, NP, "spec.ingress[0].from[0].ipBlock.except[0]", "10.1.0.0/24"],
        id="except-outside-cidr",
    ),
    pytest.param(
        netpol(
            "podSelector: {}\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, "
            "except: [10.0.0.0/16]}}]}]"
        ),
        [NP, "ipBlock.except[0]"],
        id="except-equals-cidr",
    ),
    pytest.param(
        netpol("podSelector: {}\negress: [{ports: [{port: http, endPort: 8080}]}]"),
        [D2, NP, "spec.egress[0].ports[0].endPort"],
        id="endport-named-port",
    ),
    pytest.param(
        netpol("podSelector: {}\negress: [{ports: [{port: 9000, endPort: 8080}]}]"),
        [NP, "spec.egress[0].ports[0].endPort"],
        id="endport-below-port",
    ),
    pytest.param(
        netpol("podSelector: {}\npolicyTypes: [Both]"),
        [NP, "spec.policyTypes[0]", "Both"],
        id="policy-type",
    ),
    pytest.param(
        netpol("podSelector: {matchExpressions: [{key: a, operator: In}]}"),
        [NP, "spec.podSelector.matchExpressions[0].values"],
        id="in-without-values",
    ),
    # ---- Ingress
    pytest.param(
        ingress(
            "rules:\n- http:\n    paths:\n    - path: /\n      backend: {service: "
            "{name: web, port: {number: 80}}}"
        ),
        [D2, "Ingress default/ing", "spec.rules[0].http.paths[0].pathType", "required"],
        id="ingress-path-type-missing",
    ),
    pytest.param(
        ingress(
            "rules:\n- host: 192.0.2.1\n  http:\n    paths:\n    - {path: /, "
            "pathType: Prefix, backend: {service: {name: web, port: {number: "
            "80}}}}"
        ),
        ["Ingress default/ing", "spec.rules[0].host"],
        id="ingress-host-ip",
    ),
    pytest.param(
        ingress("defaultBackend: {service: {name: web, port: {number: 80, name: http}}}"),
        ["Ingress default/ing", "spec.defaultBackend.service.port"],
        id="ingress-port-number-and-name",
    ),
    pytest.param(
        ingress("tls: [{hosts: [a.example.com]}]"),
        ["Ingress default/ing", "spec"],
        id="ingress-without-rules-or-backend",
    ),
    # ---- Services
    pytest.param(
        svc("ports: [{name: HTTP, port: 80}]"),
        [SVC, "spec.ports[0].name", "HTTP"],
        id="port-name-not-a-dns-label",
    ),
    pytest.param(
        svc("ports: [{port: 80}, {port: 443}]"),
        [D2, SVC, "spec.ports[0].name"],
        id="two-ports-without-names",
    ),
    pytest.param(
        svc("ports: [{name: a, port: 80}, {name: b, port: 80}]"),
        [SVC, "spec.ports[1].port", "duplicate"],
        id="duplicate-port",
    ),
    pytest.param(
        svc("type: NodePort\nclusterIP: None\nports: [{port: 80}]"),
        [SVC, "spec.clusterIP", "None"],
        id="headless-node-port",
    ),
    pytest.param(
        svc("ports: [{port: 80, nodePort: 30080}]"),
        [SVC, "spec.ports[0].nodePort", "ClusterIP"],
        id="node-port-on-cluster-ip",
    ),
    pytest.param(
        svc("externalTrafficPolicy: Local\nports: [{port: 80}]"),
        [SVC, "spec.externalTrafficPolicy"],
        id="etp-on-cluster-ip",
    ),
    # ---- Pods and controllers
    pytest.param(
        NODE + pod("nodeName: n9\ncontainers: [{name: c}]\n"),
        ["document 3", POD, "spec.nodeName", "n9"],
        id="node-name-unknown",
    ),
    pytest.param(
        pod("containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 80}]}]\n"),
        [POD, "spec.containers[0].ports[1].containerPort", "duplicate"],
        id="duplicate-container-port",
    ),
    pytest.param(
        pod("containers: [{name: c}]\ntolerations: [{key: k, operator: Exists, value: v}]\n"),
        [POD, "spec.tolerations[0].value"],
        id="toleration-exists-with-value",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {taints: [{key: k, "
        "effect: NoRun}]}\n",
        [D2, "Node n1", "spec.taints[0].effect", "NoRun"],
        id="taint-effect",
    ),
    pytest.param(
        deployment("{matchLabels: {app: web}}", "{app: api}"),
        [D2, "Deployment default/web", "spec.template.metadata.labels", "selector"],
        id="selector-does-not-match-template",
    ),
    # ---- API versions the API server no longer serves
    pytest.param(
        ingress(
            "defaultBackend: {serviceName: web, servicePort: 80}", api="networking.k8s.io/v1beta1"
        ),
        [
            D2,
            "Ingress default/ing",
            "apiVersion",
            "networking.k8s.io/v1beta1",
            "networking.k8s.io/v1",
        ],
        id="ingress-v1beta1",
    ),
    pytest.param(
        ingress("backend: {serviceName: web, servicePort: 80}", api="extensions/v1beta1"),
        [D2, "Ingress default/ing", "apiVersion", "extensions/v1beta1", "networking.k8s.io/v1"],
        id="ingress-extensions-v1beta1",
    ),
    pytest.param(
        deployment("{matchLabels: {app: web}}", "{app: web}", api="extensions/v1beta1"),
        [D2, "Deployment default/web", "apiVersion", "extensions/v1beta1", "apps/v1"],
        id="deployment-extensions-v1beta1",
    ),
    pytest.param(
        deployment("{matchLabels: {app: web}}", "{app: web}", api="apps/v1beta2", kind="DaemonSet"),
        [D2, "DaemonSet default/web", "apiVersion", "apps/v1beta2", "apps/v1"],
        id="daemonset-apps-v1beta2",
    ),
    pytest.param(
        netpol("podSelector: {}").replace("networking.k8s.io/v1", "extensions/v1beta1"),
        [D2, NP, "apiVersion", "networking.k8s.io/v1"],
        id="networkpolicy-extensions-v1beta1",
    ),
    pytest.param(
        "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: "
        "{name: s}\naddressType: IPv4\n",
        [D2, "EndpointSlice default/s", "apiVersion", "discovery.k8s.io/v1"],
        id="endpointslice-v1beta1",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ROWS)
def test_bad_input_is_one_input_error(load_error, text, expected):
    message = load_error(PREFIX + text)
    assert "in0.yaml" in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message


def test_error_message_shape(load_error):
    # file:line: document N: Kind namespace/name: field.path: what is wrong
    message = load_error(PREFIX + svc("ports: [{port: eighty}]"))
    assert re.fullmatch(
        r".*/in0\.yaml:5: document 2: Service default/web: "
        r"spec\.ports\[0\]\.port: must be an integer.*",
        message,
    ), message


def test_error_names_the_list_item(load_error):
    items = (
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, "
        "metadata: {name: a}}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n"
        "  spec: {ports: [{port: 0}]}\n"
    )
    message = load_error(items)
    assert "in0.yaml:5: document 1 items[1]: Service default/s: spec.ports[0].port" in message


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ('{\n  "apiVersion": "v1",\n  "kind": "Pod"\n  "metadata": {}\n}\n', 4, "delimiter"),
        ('[\n  {"apiVersion": "v1"},\n  {"kind": }\n]\n', 3, "Expecting value"),
    ],
)
def test_invalid_json_names_the_line(load_error, text, line, expected):
    message = load_error(text, suffix=".json")
    assert "in0.json" in message and f"invalid JSON at line {line}" in message
    assert expected in message


def test_same_object_in_two_inputs_is_replaced_not_an_error(tmp_path):
    first = svc("ports: [{port: 80}]")
    second = svc("ports: [{port: 81}]")
    c = load(write_inputs(tmp_path, (first, second)))
    assert [p.port for p in c.service("default", "web").ports] == [81]


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(InputError, match="no such file or directory") as info:
        load([str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"holds no \.yaml") as info:
        load([str(tmp_path / "empty")])
    assert "empty" in str(info.value)


def test_errors_from_stdin_name_stdin():
    with pytest.raises(InputError) as info:
        load(["-"], stdin=io.StringIO(PREFIX + svc("ports: [{port: 0}]")))
    assert str(info.value).startswith(
        "<stdin>:5: document 2: Service default/web: spec.ports[0].port"
    )


def test_source_renders_file_line_document_and_item():
    assert str(Source("a.yaml", 3, 2, 17)) == "a.yaml:17: document 3 items[2]"
    assert str(Source("a.yaml")) == "a.yaml: document 1"


# ---------------------------------------------------------------- the CLI


def _run_cli(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(code, out, err):
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(("text", "expected"), ROWS)
def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys, text, expected):
    path = write_inputs(tmp_path, (PREFIX + text,))[0]
    code, out, err = _run_cli(capsys, ["get", "pods", "-A", "-f", path])
    _assert_one_error_line(code, out, err)
    for part in expected:
        assert part in err


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "pods", "-f", "/nonexistent/netsim-test.yaml"],
        ["get", "pods", "--pod-cidr", "banana", "-f", "-"],
        ["topology", "-f", "/nonexistent/netsim-test.yaml"],
    ],
)
def test_cli_errors_outside_manifests(capsys, monkeypatch, argv):
    monkeypatch.setattr("sys.stdin", io.StringIO(PREFIX))
    code, out, err = _run_cli(capsys, argv)
    _assert_one_error_line(code, out, err)


def test_cli_reads_bad_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PREFIX + svc("ports: [{port: 70000}]")))
    code, out, err = _run_cli(capsys, ["get", "services", "-f", "-"])
    _assert_one_error_line(code, out, err)
    assert err.startswith("error: <stdin>:5: document 2: Service default/web: spec.ports[0].port")


def test_cli_bad_settings_file(tmp_path, capsys):
    manifests, settings = write_inputs(tmp_path, (PREFIX, config("podCIDRs: [banana]")))
    code, out, err = _run_cli(capsys, ["get", "pods", "-f", manifests, "--settings", settings])
    _assert_one_error_line(code, out, err)
    assert "in1.yaml" in err and "spec.podCIDRs[0]" in err
