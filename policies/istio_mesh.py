"""Istio's mesh-wide settings and identities: root namespace, trust domain, SPIFFE principals.

Istio reads these from MeshConfig, which istiod loads from the `istio` ConfigMap in its own
namespace (key `mesh`, a YAML document; a revision `r` reads `istio-r`). Defaults are
MeshConfig's: rootNamespace is istiod's namespace (istio-system), trustDomain `cluster.local`,
defaultConfig.interceptionMode REDIRECT (istio/api mesh/v1alpha1/config.proto, proxy.proto).
Both policy kinds and the injector share these, so they live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import yaml

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.fields import EMPTY, Fields, FrozenDict, thaw
from netsim.model import Pod, RawObject

ISTIO_NAMESPACE = "istio-system"  # where istiod and its ConfigMaps live
ROOT_NAMESPACE = ISTIO_NAMESPACE  # MeshConfig.rootNamespace default
TRUST_DOMAIN = "cluster.local"  # MeshConfig.trustDomain default
MESH_CONFIGMAP = "istio"  # + "-<revision>" for a revisioned control plane
INTERCEPTION_MODES = ("REDIRECT", "TPROXY", "NONE")
SPIFFE = "spiffe://"


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The MeshConfig fields netsim reads; `source` names the ConfigMap when one was found."""

    root_namespace: str = ROOT_NAMESPACE
    trust_domain: str = TRUST_DOMAIN
    interception_mode: str = "REDIRECT"
    source: str | None = None


DEFAULT_MESH = MeshConfig()


def mesh_config(cluster: Cluster, revision: str | None = None) -> MeshConfig:
    """The mesh settings of a revision's control plane (the default one when None or "default").

    Raises InputError when the ConfigMap's `mesh` key is not a YAML mapping.
    """
    name = MESH_CONFIGMAP if revision in (None, "", "default") else f"{MESH_CONFIGMAP}-{revision}"
    for obj in cluster.raw("ConfigMap"):
        if obj.namespace == ISTIO_NAMESPACE and obj.name == name:
            return _parse_mesh(obj)
    return DEFAULT_MESH


@lru_cache(maxsize=64)
def _parse_mesh(obj: RawObject) -> MeshConfig:
    ref = f"ConfigMap {obj.namespace}/{obj.name}"
    text = raw_fields(obj).sub("data").str("mesh")
    if not text:
        return MeshConfig(source=f"{obj.namespace}/{obj.name}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"is not valid YAML: {err}", source=obj.meta.source, obj=ref,
                         field="data.mesh") from None
    f = Fields(data, obj.meta.source, ref, "data.mesh")
    proxy = f.sub("defaultConfig")
    return MeshConfig(
        root_namespace=f.str("rootNamespace") or ROOT_NAMESPACE,
        trust_domain=f.str("trustDomain") or TRUST_DOMAIN,
        interception_mode=proxy.enum("interceptionMode", INTERCEPTION_MODES,
                                     default="REDIRECT"),
        source=f"{obj.namespace}/{obj.name}",
    )


def raw_fields(obj: RawObject) -> Fields:
    """A kept-raw object's body as Fields; its deep-frozen tuples become lists again."""
    return Fields(thaw(obj.body), obj.meta.source, f"{obj.kind} {obj.namespace}/{obj.name}"
                  if obj.namespace else f"{obj.kind} {obj.name}")



def workload_principal(cluster: Cluster, pod: Pod) -> str:
    """The pod's mTLS identity as AuthorizationPolicy writes it: <trust domain>/ns/<ns>/sa/<sa>.

    Its certificate carries the same with `spiffe://` in front (istio security concepts,
    "Istio identity"); a pod without serviceAccountName runs as `default`.
    """
    account = pod.spec.service_account or "default"
    return f"{mesh_config(cluster).trust_domain}/ns/{pod.namespace}/sa/{account}"


def principal_parts(principal: str | None) -> tuple[str, str] | None:
    """(namespace, service account) of a SPIFFE-style principal, or None if it has no ns/sa."""
    if not principal:
        return None
    if principal.startswith(SPIFFE):
        principal = principal[len(SPIFFE):]
    parts = principal.split("/")
    # <trust domain>/ns/<namespace>/sa/<service account>
    if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
        return parts[2], parts[4]
    return None


def parse_workload_selector(f: Fields, key: str = "selector") -> FrozenDict | None:
    """WorkloadSelector.matchLabels (istio/api type/v1beta1/selector.proto), None when absent.

    An empty matchLabels selects every workload in scope, as no selector does.
    """
    sub = f.opt_sub(key)
    if sub is None:
        return None
    labels = sub.string_map("matchLabels")
    return labels if labels else EMPTY


def selects(selector: FrozenDict | None, labels: dict) -> bool:
    """A WorkloadSelector matches when every matchLabels pair is on the workload."""
    return not selector or all(labels.get(k) == v for k, v in selector.items())
