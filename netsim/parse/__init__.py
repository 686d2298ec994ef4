"""Turn one parsed manifest into a typed model object, by API group and kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netsim.errors import InputError
from netsim.fields import Fields, freeze
from netsim.model import Meta, RawObject
from netsim.parse.meta import parse_meta
from netsim.parse.network import (
    parse_ingress,
    parse_ingress_class,
    parse_kube_proxy_configuration,
    parse_network_policy,
)
from netsim.parse.pods import WORKLOAD_KINDS, parse_namespace, parse_node, parse_pod, parse_workload
from netsim.parse.services import parse_endpoint_slice, parse_endpoints, parse_service
from netsim.settings import parse_settings
from netsim.sources import RawDoc

# (API group, kind) -> (parser, namespaced, supported versions)
TYPED: dict[tuple[str, str], tuple[Callable[[Fields], Any], bool, tuple[str, ...]]] = {
    ("", "Node"): (parse_node, False, ("v1",)),
    ("", "Namespace"): (parse_namespace, False, ("v1",)),
    ("", "Pod"): (parse_pod, True, ("v1",)),
    ("", "Service"): (parse_service, True, ("v1",)),
    ("", "Endpoints"): (parse_endpoints, True, ("v1",)),
    ("discovery.k8s.io", "EndpointSlice"): (parse_endpoint_slice, True, ("v1",)),
    ("networking.k8s.io", "NetworkPolicy"): (parse_network_policy, True, ("v1",)),
    ("networking.k8s.io", "Ingress"): (parse_ingress, True, ("v1",)),
    ("networking.k8s.io", "IngressClass"): (parse_ingress_class, False, ("v1",)),
    ("kubeproxy.config.k8s.io", "KubeProxyConfiguration"):
        (parse_kube_proxy_configuration, False, ("v1alpha1",)),
    ("netsim", "NetsimConfig"): (lambda f: parse_settings(f, f.source), False, ("v1alpha1",)),
    **{("apps", k): (lambda f, k=k: parse_workload(f, k), True, ("v1",)) for k in WORKLOAD_KINDS},
}

# Kinds the API server no longer serves from these groups (extensions/v1beta1 went in 1.16 for
# the workloads and NetworkPolicy, in 1.22 for Ingress): an error naming the replacement.
REMOVED_GROUPS = {
    **{("extensions", k): "apps/v1" for k in ("Deployment", "ReplicaSet", "DaemonSet")},
    ("extensions", "NetworkPolicy"): "networking.k8s.io/v1",
    ("extensions", "Ingress"): "networking.k8s.io/v1",
}

# Kinds other components read from the raw object; everything else is skipped with a warning.
RAW_GROUPS = {
    "cilium.io", "projectcalico.org", "crd.projectcalico.org", "networking.istio.io",
    "security.istio.io", "policy.networking.k8s.io", "gateway.networking.k8s.io",
}
RAW_CORE_KINDS = {"Secret", "ServiceAccount", "ConfigMap"}
CLUSTER_SCOPED_RAW = {
    "CiliumClusterwideNetworkPolicy", "GlobalNetworkPolicy", "GlobalNetworkSet", "IPPool",
    "IPAMBlock", "BlockAffinity", "BGPConfiguration", "BGPPeer", "FelixConfiguration",
    "HostEndpoint", "ClusterInformation", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy",
    "ClusterNetworkPolicy", "GatewayClass", "CiliumNode", "CiliumIdentity", "Tier",
}


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def object_key(doc: RawDoc) -> tuple[str, str, str | None, str] | None:
    """(group, kind, namespace, name): what makes two documents the same object."""
    data = doc.data
    kind, api = data.get("kind"), data.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api, str):
        return None
    group, _ = split_api_version(api)
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = meta.get("name", "")
    if (group, kind) in TYPED:
        namespaced = TYPED[group, kind][1]
    else:
        namespaced = kind not in CLUSTER_SCOPED_RAW
    ns = (meta.get("namespace") or "default") if namespaced else None
    return group, kind, ns, str(name)


def _ref(data: dict, group: str, kind: str) -> str:
    """Kind namespace/name as far as the raw metadata tells, for errors before parse_meta."""
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return kind
    namespaced = TYPED[group, kind][1] if (group, kind) in TYPED else \
        kind not in CLUSTER_SCOPED_RAW
    namespace = meta.get("namespace") or "default"
    if not namespaced or not isinstance(namespace, str):
        return f"{kind} {name}"
    return f"{kind} {namespace}/{name}"


def parse_doc(doc: RawDoc) -> Any:
    """The typed object for one document, a RawObject, or None for a kind netsim skips.

    Raises InputError naming the document and field when the object is invalid.
    """
    f = Fields(doc.data, doc.source, None)
    kind = f.str("kind", required=True)
    api_version = f.str("apiVersion", required=True)
    group, version = split_api_version(api_version)
    f.obj = _ref(doc.data, group, kind)  # parse_meta refines it once the name is validated
    try:
        if (group, kind) in TYPED:
            parser, _, versions = TYPED[group, kind]
            if version not in versions:
                raise f.error("apiVersion", f"{api_version} {kind} is not supported; use "
                              f"{group + '/' if group else ''}{versions[-1]}")
            return parser(f)
        if (group, kind) in REMOVED_GROUPS:
            raise f.error("apiVersion", f"{api_version} {kind} is not supported; use "
                          f"{REMOVED_GROUPS[group, kind]}")
        if group in RAW_GROUPS or (group == "" and kind in RAW_CORE_KINDS):
            meta = parse_meta(f, kind, namespaced=kind not in CLUSTER_SCOPED_RAW)
            body = {k: v for k, v in doc.data.items() if k not in ("apiVersion", "kind",
                                                                   "metadata")}
            if kind == "Secret":  # never keep secret material: the name and type suffice
                body = {"type": body.get("type")}
            return RawObject(meta=meta, api_version=api_version, body=freeze(body))
    except InputError:
        raise
    except RecursionError:  # pragma: no cover - absurdly nested input
        raise f.error(None, "nesting too deep") from None
    return None


__all__ = ["Meta", "object_key", "parse_doc", "split_api_version"]
