"""Who gets an Istio sidecar, and with which istio-iptables flags, as Istio's injector decides.

Two stages, as in a real cluster:

1. The MutatingWebhookConfiguration's selectors decide whether the API server calls istiod at
   all (istio/istio manifests/charts/istio-control/istio-discovery/templates/
   revision-tags-mwc.yaml, "namespace preference" for revision labels):
   - `namespace.`: namespace `istio-injection=enabled`, pod label `sidecar.istio.io/inject`
     not "false" -> the default revision;
   - `rev.namespace.`: namespace `istio.io/rev=R` without `istio-injection`, pod label not
     "false" -> revision R;
   - `rev.object.`: namespace without either label, pod label `istio.io/rev=R` and inject
     label not "false" -> revision R;
   - `object.`: namespace without either label, pod label `sidecar.istio.io/inject=true`
     and no pod `istio.io/rev` -> the default revision.
   Any other value of `istio-injection` (e.g. "disabled") matches no webhook.
2. istiod's injectRequired (pkg/kube/inject/inject.go): never hostNetwork pods, never
   kube-system or kube-public; then the pod label `sidecar.istio.io/inject`, else the
   deprecated annotation of that name (the label wins when both are set): y/yes/true/on
   inject, any other non-empty value does not, and an empty one takes the default policy
   `enabled`. istio.io's "Installing the Sidecar" page sums it up: either label disabled ->
   not injected; either label (or istio.io/rev) enabled -> injected.

The capture options are the istio-init arguments the injection template writes
(manifests/charts/istio-control/istio-discovery/files/injection-template.yaml):
`-p 15001 -z 15006 -u 1337 -m <mode> -i <includeOutboundIPRanges or *> -x <exclude...>
-b <includeInboundPorts or *> -d 15090,15021,<excludeInboundPorts + status port 15020>`
and, when their annotations are set, `-q`, `-o`, `-c`, `-k`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import Pod
from policies.istio_mesh import INTERCEPTION_MODES, mesh_config

# Labels and annotations (istio/api label/labels.yaml, annotation/annotations.yaml).
NAMESPACE_INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
INJECT_LABEL = "sidecar.istio.io/inject"  # also the deprecated pod annotation
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"
INTERCEPTION_MODE_ANNOTATION = "sidecar.istio.io/interceptionMode"
STATUS_PORT_ANNOTATION = "status.sidecar.istio.io/port"
INCLUDE_OUTBOUND_CIDRS = "traffic.sidecar.istio.io/includeOutboundIPRanges"
EXCLUDE_OUTBOUND_CIDRS = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
INCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/includeInboundPorts"
EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
INCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/includeOutboundPorts"
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
EXCLUDE_INTERFACES = "traffic.sidecar.istio.io/excludeInterfaces"
KUBEVIRT_INTERFACES = "traffic.sidecar.istio.io/kubevirtInterfaces"  # deprecated spelling
REROUTE_VIRTUAL_INTERFACES = "istio.io/reroute-virtual-interfaces"

PROXY_CONTAINER = "istio-proxy"
DEFAULT_REVISION = "default"
IGNORED_NAMESPACES = ("kube-system", "kube-public")  # injector's IgnoredNamespaces
TRUE_VALUES = ("y", "yes", "true", "on")  # injectRequired, http://yaml.org/type/bool.html

# Ports and ids the template passes to istio-iptables (tools/istio-iptables/pkg/constants).
PROXY_PORT = 15001  # -p: Envoy's virtualOutbound listener
INBOUND_CAPTURE_PORT = 15006  # -z: virtualInbound
INBOUND_TUNNEL_PORT = 15008  # HBONE, never captured inbound
PROXY_UID = "1337"  # -u
PROXY_GID = "1337"  # -g (defaults to -u)
STATUS_PORT = "15020"  # global.proxy.statusPort
ALWAYS_EXCLUDED_INBOUND = ("15090", "15021")  # Envoy Prometheus, health


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """istio-iptables flags for one pod. Lists keep the order written; ("*",) is the wildcard."""

    interception_mode: str = "REDIRECT"  # -m
    proxy_port: int = PROXY_PORT  # -p
    inbound_capture_port: int = INBOUND_CAPTURE_PORT  # -z
    inbound_tunnel_port: int = INBOUND_TUNNEL_PORT
    proxy_uids: tuple[str, ...] = (PROXY_UID,)  # -u
    proxy_gids: tuple[str, ...] = (PROXY_GID,)  # -g
    include_outbound_cidrs: tuple[str, ...] = ("*",)  # -i
    exclude_outbound_cidrs: tuple[str, ...] = ()  # -x
    include_inbound_ports: tuple[str, ...] = ("*",)  # -b; () captures no inbound traffic
    exclude_inbound_ports: tuple[str, ...] = (*ALWAYS_EXCLUDED_INBOUND, STATUS_PORT)  # -d
    include_outbound_ports: tuple[str, ...] = ()  # -q
    exclude_outbound_ports: tuple[str, ...] = ()  # -o
    exclude_interfaces: tuple[str, ...] = ()  # -c
    reroute_interfaces: tuple[str, ...] = ()  # -k

    @property
    def args(self) -> str:
        """The istio-init command line, as `kubectl describe pod` shows it."""
        parts = [
            "istio-iptables", "-p", str(self.proxy_port), "-z", str(self.inbound_capture_port),
            "-u", ",".join(self.proxy_uids), "-m", self.interception_mode,
            "-i", _shell(",".join(self.include_outbound_cidrs)),
            "-x", _shell(",".join(self.exclude_outbound_cidrs)),
            "-b", _shell(",".join(self.include_inbound_ports)),
            "-d", _shell(",".join(self.exclude_inbound_ports)),
        ]
        for flag, values in (("-q", self.include_outbound_ports),
                             ("-o", self.exclude_outbound_ports),
                             ("-c", self.exclude_interfaces), ("-k", self.reroute_interfaces)):
            if values:
                parts += [flag, _shell(",".join(values))]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Injection:
    """The injector's decision for one pod, with the reason a user can check it by.

    `capture` is None when there is no sidecar, and when the sidecar does not capture
    traffic (interception mode NONE: the template then adds no istio-init).
    """

    injected: bool
    reason: str
    revision: str | None = None
    interception_mode: str | None = None
    capture: CaptureOptions | None = None
    preinjected: bool = False  # the pod spec already has the istio-proxy container


def injected(cluster: Cluster, pod: Pod) -> Injection:
    """Whether the pod runs an Istio sidecar and, if so, the capture it installs.

    `cluster.settings.mesh` (the --mesh flag, NetsimConfig spec.mesh.enabled) says whether
    netsim emulates Istio's control plane at all; when it is off nobody has a sidecar, not
    even a pod dumped with one, so that the dataplane stays mesh-free as asked. Raises
    InputError for annotations the injector's validation rejects (the webhook would refuse
    the pod).
    """
    preinjected = has_proxy_container(pod)
    if not cluster.settings.mesh:
        why = "mesh emulation is off (--mesh / NetsimConfig spec.mesh.enabled)"
        if preinjected:
            why += f"; the pod spec's {PROXY_CONTAINER} container is not emulated"
        return Injection(False, why, preinjected=preinjected)
    if preinjected:
        revision = pod.labels.get(REVISION_LABEL) or DEFAULT_REVISION
        return _with_capture(cluster, pod, revision, True,
                             f"the pod spec already has an {PROXY_CONTAINER} container "
                             "(injected before the dump)")
    revision, why = webhook_revision(cluster, pod)
    if revision is None:
        return Injection(False, why)
    required, detail = inject_required(pod)
    if not required:
        return Injection(False, f"{why}, but {detail}")
    return _with_capture(cluster, pod, revision, False, f"{why}; {detail}")


def has_proxy_container(pod: Pod) -> bool:
    """The pod already carries Istio's proxy (a container, or a native sidecar init container)."""
    return any(c.name == PROXY_CONTAINER for c in (*pod.spec.containers,
                                                   *pod.spec.init_containers))


def webhook_revision(cluster: Cluster, pod: Pod) -> tuple[str | None, str]:
    """The revision whose injection webhook the API server calls for this pod (None: none)."""
    ns = cluster.namespace(pod.namespace)
    ns_labels = ns.labels if ns is not None else {}
    pod_labels = pod.labels
    inject_label = pod_labels.get(INJECT_LABEL)
    if NAMESPACE_INJECTION_LABEL in ns_labels:
        value = ns_labels[NAMESPACE_INJECTION_LABEL]
        where = f"namespace {pod.namespace} has {NAMESPACE_INJECTION_LABEL}={value}"
        if value != "enabled":
            return None, where + " (only 'enabled' selects the injector; it also overrides " \
                                 f"{REVISION_LABEL} labels)"
        if inject_label == "false":
            return None, f"{where}, but the pod label {INJECT_LABEL}=false opts out"
        return DEFAULT_REVISION, where
    if REVISION_LABEL in ns_labels:
        rev = ns_labels[REVISION_LABEL]
        where = f"namespace {pod.namespace} has {REVISION_LABEL}={rev}"
        if inject_label == "false":
            return None, f"{where}, but the pod label {INJECT_LABEL}=false opts out"
        return rev, where
    if REVISION_LABEL in pod_labels:
        rev = pod_labels[REVISION_LABEL]
        where = f"the pod label {REVISION_LABEL}={rev} selects the injector"
        if inject_label == "false":
            return None, f"{where}, but the pod label {INJECT_LABEL}=false opts out"
        return rev, where
    if inject_label == "true":
        return DEFAULT_REVISION, f"the pod label {INJECT_LABEL}=true selects the injector"
    why = (f"neither namespace {pod.namespace} ({NAMESPACE_INJECTION_LABEL} or "
           f"{REVISION_LABEL}) nor the pod ({INJECT_LABEL}=true or {REVISION_LABEL}) "
           "selects the injector")
    if ns_labels.get(DATAPLANE_MODE_LABEL) == "ambient":
        why += f" (the namespace is {DATAPLANE_MODE_LABEL}=ambient: ztunnel, no sidecar)"
    elif pod.meta.annotations.get(INJECT_LABEL, "").lower() in TRUE_VALUES:
        why += f" (the {INJECT_LABEL} annotation alone does not: webhooks select on labels)"
    return None, why


def inject_required(pod: Pod) -> tuple[bool, str]:
    """istiod's injectRequired with the default policy `enabled` and no never/always selectors."""
    if pod.host_network:
        return False, "hostNetwork pods are never injected (their rules would be the node's)"
    if pod.namespace in IGNORED_NAMESPACES:
        return False, f"namespace {pod.namespace} is never injected"
    value = pod.meta.annotations.get(INJECT_LABEL)
    source = f"annotation {INJECT_LABEL}"
    if INJECT_LABEL in pod.labels:  # the label is the newer API and wins over the annotation
        value, source = pod.labels[INJECT_LABEL], f"label {INJECT_LABEL}"
    if not value:
        return True, "default policy: enabled"
    if value.lower() in TRUE_VALUES:
        return True, f"{source}={value}"
    return False, f"the pod {source}={value} opts out"


def _with_capture(cluster: Cluster, pod: Pod, revision: str, preinjected: bool,
                  reason: str) -> Injection:
    mode = pod.meta.annotations.get(INTERCEPTION_MODE_ANNOTATION)
    if mode is None:
        mode = mesh_config(cluster, revision).interception_mode
    elif mode not in INTERCEPTION_MODES:
        raise _annotation_error(pod, INTERCEPTION_MODE_ANNOTATION,
                                f"must be one of {', '.join(INTERCEPTION_MODES)}, got {mode!r}")
    capture = None if mode == "NONE" else capture_options(pod, mode)
    return Injection(True, reason, revision=revision, interception_mode=mode, capture=capture,
                     preinjected=preinjected)


def capture_options(pod: Pod, mode: str = "REDIRECT") -> CaptureOptions:
    """The istio-init flags the injection template derives from the pod's annotations."""
    notes = pod.meta.annotations

    def ports(key: str, wildcard: bool = False) -> tuple[str, ...] | None:
        if key not in notes:
            return None
        return _port_list(pod, key, notes[key], wildcard)

    def cidrs(key: str, wildcard: bool = False) -> tuple[str, ...] | None:
        if key not in notes:
            return None
        return _cidr_list(pod, key, notes[key], wildcard)

    status = notes.get(STATUS_PORT_ANNOTATION, STATUS_PORT).strip()
    if status != "0":
        _port_list(pod, STATUS_PORT_ANNOTATION, status, False)
    excluded = ports(EXCLUDE_INBOUND_PORTS) or ()
    # excludeInboundPort (pkg/kube/inject/template.go): the status port joins the list unless
    # it is already there or is 0
    if status not in ("", "0") and status not in excluded:
        excluded += (status,)
    return CaptureOptions(
        interception_mode=mode,
        include_outbound_cidrs=_or(cidrs(INCLUDE_OUTBOUND_CIDRS, True), ("*",)),
        exclude_outbound_cidrs=_or(cidrs(EXCLUDE_OUTBOUND_CIDRS), ()),
        include_inbound_ports=_or(ports(INCLUDE_INBOUND_PORTS, True), ("*",)),
        exclude_inbound_ports=ALWAYS_EXCLUDED_INBOUND + excluded,
        include_outbound_ports=_or(ports(INCLUDE_OUTBOUND_PORTS), ()),
        exclude_outbound_ports=_or(ports(EXCLUDE_OUTBOUND_PORTS), ()),
        exclude_interfaces=_names(notes.get(EXCLUDE_INTERFACES, "")),
        reroute_interfaces=_names(notes.get(REROUTE_VIRTUAL_INTERFACES)
                                  or notes.get(KUBEVIRT_INTERFACES, "")),
    )


def _or(value: tuple[str, ...] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return default if value is None else value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _port_list(pod: Pod, key: str, text: str, wildcard: bool) -> tuple[str, ...]:
    """A comma-separated port list as the injector validates it (validatePortList)."""
    if wildcard and text.strip() == "*":
        return ("*",)
    out = []
    for part in _names(text):
        if not part.isdigit() or not 0 < int(part) <= 65535:
            raise _annotation_error(pod, key, f"{part!r} is not a port number (1-65535)")
        out.append(part)
    return tuple(out)


def _cidr_list(pod: Pod, key: str, text: str, wildcard: bool) -> tuple[str, ...]:
    """A comma-separated CIDR list as the injector validates it (validateCIDRList)."""
    if wildcard and text.strip() == "*":
        return ("*",)
    out = []
    for part in _names(text):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise _annotation_error(pod, key, f"{part!r} is not a CIDR") from None
        if "/" not in part:
            raise _annotation_error(pod, key, f"{part!r} is not a CIDR (no prefix length)")
        out.append(part)
    return tuple(out)


def _annotation_error(pod: Pod, key: str, message: str) -> InputError:
    return InputError(f"{message}; Istio's injector rejects the pod", source=pod.meta.source,
                      obj=f"Pod {pod.key}", field=f"metadata.annotations.{key}")


def _shell(value: str) -> str:
    """Quote an argument the way a shell transcript would need it ('*' and empty)."""
    return f"'{value}'" if value in ("*", "") or "*" in value else value
