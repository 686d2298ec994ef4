"""Who gets a sidecar: Istio's injection decision and the istio-init flags it derives.

Expectations come from Istio, not from the code under test:

- istio.io "Installing the Sidecar" (Controlling the injection policy): a namespace
  `istio-injection=enabled` or a pod label `sidecar.istio.io/inject=true` or an `istio.io/rev`
  label enables injection; either label disabled (`istio-injection=disabled`,
  `sidecar.istio.io/inject=false`) disables it; `istio-injection` overrides `istio.io/rev`;
  with neither label nothing is injected (enableNamespacesByDefault is off); hostNetwork pods
  are never injected; the label wins over the deprecated annotation.
- the injector's webhook selectors (revision-tags-mwc.yaml) for which label combinations reach
  istiod at all, and injectRequired's ignored namespaces (kube-system, kube-public);
- the injection golden pkg/kube/inject/testdata/inject/traffic-annotations.yaml.injected for
  the istio-init arguments of an annotated pod, and the reference note's default command line
  `istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d
  15090,15021,15020`.
"""

from __future__ import annotations

import io
import textwrap

import pytest

from netsim.cluster import load
from netsim.errors import InputError
from proxy.istio_inject import CaptureOptions, injected

MESH_ON = {"mesh": True}


def cluster(namespace_labels: dict, pod_labels: dict | None = None,
            annotations: dict | None = None, *, namespace: str = "shop",
            host_network: bool = False, extra_containers: str = "",
            init_containers: str = "", overrides: dict | None = None, extra: str = ""):
    """One namespace and one pod `web` in it, loaded as netsim would."""
    def block(name: str, values: dict | None) -> str:
        if not values:
            return ""
        return f"  {name}:\n" + "".join(f"    {k}: {v!r}\n" for k, v in values.items())

    text = (f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
            + block("labels", namespace_labels) + "---\n"
            f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: {namespace}\n"
            + block("labels", pod_labels) + block("annotations", annotations)
            + "spec:\n" + ("  hostNetwork: true\n" if host_network else "")
            + init_containers
            + "  containers:\n  - name: app\n    image: nginx\n" + extra_containers + extra)
    c = load(["-"], stdin=io.StringIO(text),
             overrides=MESH_ON if overrides is None else overrides)
    return c, c.pod(namespace, "web")


ENABLED = {"istio-injection": "enabled"}
DISABLED = {"istio-injection": "disabled"}
INJECT = "sidecar.istio.io/inject"
REV = "istio.io/rev"

# (case, namespace labels, pod labels, pod annotations, injected, revision)
DECISIONS = [
    ("namespace enabled", ENABLED, {}, {}, True, "default"),
    ("namespace disabled", DISABLED, {}, {}, False, None),
    ("no labels anywhere", {}, {}, {}, False, None),
    ("pod label false opts out", ENABLED, {INJECT: "false"}, {}, False, None),
    ("pod label true, namespace unlabelled", {}, {INJECT: "true"}, {}, True, "default"),
    ("either label disabled wins", DISABLED, {INJECT: "true"}, {}, False, None),
    ("namespace revision", {REV: "canary"}, {}, {}, True, "canary"),
    ("istio-injection beats istio.io/rev", {**ENABLED, REV: "canary"}, {}, {}, True,
     "default"),
    ("disabled beats istio.io/rev", {**DISABLED, REV: "canary"}, {}, {}, False, None),
    ("pod revision label", {}, {REV: "canary"}, {}, True, "canary"),
    ("namespace revision wins over pod's", {REV: "canary"}, {REV: "stable"}, {}, True,
     "canary"),
    ("namespace revision, pod opts out", {REV: "canary"}, {INJECT: "false"}, {}, False, None),
    ("deprecated annotation false", ENABLED, {}, {INJECT: "false"}, False, None),
    ("label beats annotation", ENABLED, {INJECT: "true"}, {INJECT: "false"}, True, "default"),
    ("annotation alone reaches no webhook", {}, {}, {INJECT: "true"}, False, None),
    ("annotation 'off' is not a yes", ENABLED, {}, {INJECT: "off"}, False, None),
    ("annotation 'yes' is a yes", ENABLED, {}, {INJECT: "yes"}, True, "default"),
    ("label 'True' passes the webhook, then is read as true", ENABLED, {INJECT: "True"}, {},
     True, "default"),
]


@pytest.mark.parametrize(("namespace_labels", "pod_labels", "annotations", "expected",
                          "revision"), [row[1:] for row in DECISIONS],
                         ids=[row[0] for row in DECISIONS])
def test_injection_decision_table(namespace_labels, pod_labels, annotations, expected,
                                  revision):
    c, pod = cluster(namespace_labels, pod_labels, annotations)
    decision = injected(c, pod)
    assert decision.injected is expected, decision.reason
    assert decision.revision == revision
    assert decision.reason
    assert (decision.capture is not None) is expected


@pytest.mark.parametrize(("namespace", "host_network", "fragment"), [
    ("shop", True, "hostNetwork"),
    ("kube-system", False, "kube-system is never injected"),
    ("kube-public", False, "kube-public is never injected"),
])
def test_never_injected_even_when_enabled(namespace, host_network, fragment):
    c, pod = cluster(ENABLED, namespace=namespace, host_network=host_network)
    decision = injected(c, pod)
    assert not decision.injected
    assert fragment in decision.reason


def test_ambient_namespace_has_no_sidecar():
    c, pod = cluster({"istio.io/dataplane-mode": "ambient"})
    decision = injected(c, pod)
    assert not decision.injected and "ambient" in decision.reason


PROXY = "  - name: istio-proxy\n    image: docker.io/istio/proxyv2:1.24.0\n"
NATIVE = "  initContainers:\n  - name: istio-proxy\n    image: docker.io/istio/proxyv2\n"


@pytest.mark.parametrize(("extra_containers", "init_containers"), [(PROXY, ""), ("", NATIVE)],
                         ids=["container", "native-sidecar"])
def test_a_dumped_pod_with_istio_proxy_is_injected_regardless_of_labels(extra_containers,
                                                                        init_containers):
    c, pod = cluster(DISABLED, {INJECT: "false"}, extra_containers=extra_containers,
                     init_containers=init_containers)
    decision = injected(c, pod)
    assert decision.injected and decision.preinjected
    assert decision.capture == CaptureOptions()


def test_mesh_off_injects_nobody():
    for extra in ("", PROXY):
        c, pod = cluster(ENABLED, extra_containers=extra, overrides={})
        assert c.settings.mesh is False
        decision = injected(c, pod)
        assert not decision.injected
        assert "--mesh" in decision.reason


def test_default_istio_init_command_line():
    c, pod = cluster(ENABLED)
    decision = injected(c, pod)
    assert decision.interception_mode == "REDIRECT"
    assert decision.capture.args == ("istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT "
                                     "-i '*' -x '' -b '*' -d 15090,15021,15020")


def test_traffic_annotations_golden():
    """pkg/kube/inject/testdata/inject/traffic-annotations.yaml(.injected)."""
    annotations = {
        "traffic.sidecar.istio.io/excludeInboundPorts": "4,5,6",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.2/24,10.96.0.3/24",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "7,8,9",
        "traffic.sidecar.istio.io/includeInboundPorts": "1,2,3",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "127.0.0.1/24,10.96.0.1/24",
    }
    c, pod = cluster(ENABLED, {"app": "traffic"}, annotations)
    golden_args = ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m",
                   "REDIRECT", "-i", "127.0.0.1/24,10.96.0.1/24", "-x",
                   "10.96.0.2/24,10.96.0.3/24", "-b", "1,2,3", "-d", "15090,15021,4,5,6,15020",
                   "-o", "7,8,9"]
    assert injected(c, pod).capture.args.split() == golden_args


@pytest.mark.parametrize(("annotations", "field", "expected"), [
    ({"traffic.sidecar.istio.io/excludeInboundPorts": "8080,15020"}, "exclude_inbound_ports",
     ("15090", "15021", "8080", "15020")),  # the status port is not added twice
    ({"status.sidecar.istio.io/port": "0"}, "exclude_inbound_ports", ("15090", "15021")),
    ({"status.sidecar.istio.io/port": "15999"}, "exclude_inbound_ports",
     ("15090", "15021", "15999")),
    ({"traffic.sidecar.istio.io/includeInboundPorts": ""}, "include_inbound_ports", ()),
    ({"traffic.sidecar.istio.io/includeOutboundIPRanges": ""}, "include_outbound_cidrs", ()),
    ({"traffic.sidecar.istio.io/includeOutboundPorts": "3306"}, "include_outbound_ports",
     ("3306",)),
    ({"traffic.sidecar.istio.io/excludeInterfaces": "net1"}, "exclude_interfaces", ("net1",)),
    ({"traffic.sidecar.istio.io/kubevirtInterfaces": "eth1,eth2"}, "reroute_interfaces",
     ("eth1", "eth2")),
    ({"sidecar.istio.io/interceptionMode": "TPROXY"}, "interception_mode", "TPROXY"),
])
def test_annotations_become_capture_options(annotations, field, expected):
    c, pod = cluster(ENABLED, {}, annotations)
    assert getattr(injected(c, pod).capture, field) == expected


def test_interception_mode_none_injects_without_capture():
    c, pod = cluster(ENABLED, {}, {"sidecar.istio.io/interceptionMode": "NONE"})
    decision = injected(c, pod)
    assert decision.injected and decision.interception_mode == "NONE"
    assert decision.capture is None


def test_mesh_config_sets_the_default_interception_mode():
    configmap = textwrap.dedent("""\
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: istio, namespace: istio-system}
        data:
          mesh: |-
            defaultConfig:
              interceptionMode: TPROXY
        """)
    c, pod = cluster(ENABLED, extra=configmap)
    assert injected(c, pod).interception_mode == "TPROXY"


@pytest.mark.parametrize(("key", "value"), [
    ("traffic.sidecar.istio.io/excludeInboundPorts", "80,http"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "70000"),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,nope"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "*"),
    ("sidecar.istio.io/interceptionMode", "redirect"),
])
def test_invalid_annotations_are_rejected_with_their_field(key, value):
    c, pod = cluster(ENABLED, {}, {key: value})
    with pytest.raises(InputError) as info:
        injected(c, pod)
    message = str(info.value)
    assert "Pod shop/web" in message and f"metadata.annotations.{key}" in message


def test_invalid_annotations_do_not_matter_without_a_sidecar():
    c, pod = cluster({}, {}, {"traffic.sidecar.istio.io/excludeInboundPorts": "http"})
    assert not injected(c, pod).injected
