"""PeerAuthentication: which mTLS mode a workload's sidecar accepts on one port, and why.

Semantics of istio/istio pilot/pkg/security/authn/policy_applier.go ComposePeerAuthentication
and istio/api security/v1beta1/peer_authentication.proto:

- A policy without a selector (or with empty matchLabels) is namespace-wide; in the root
  namespace it is mesh-wide. A policy with a selector is workload-specific, except in the root
  namespace, where Istio ignores it.
- The narrowest scope wins (workload > namespace > mesh); inside one scope the oldest policy
  (creationTimestamp, then name) wins.
- UNSET (or no `mtls`) inherits from the wider scope; with nothing set the mode is PERMISSIVE.
- `portLevelMtls` (workload policies only) keys on the workload's port; UNSET there inherits
  the workload's effective mode.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.fields import EMPTY, Fields, FrozenDict
from netsim.model import Pod, RawObject
from policies.istio_mesh import mesh_config, parse_workload_selector, raw_fields, selects

KIND = "PeerAuthentication"
UNSET, DISABLE, PERMISSIVE, STRICT = "UNSET", "DISABLE", "PERMISSIVE", "STRICT"
MODES = (UNSET, DISABLE, PERMISSIVE, STRICT)


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    namespace: str
    name: str
    created: str | None
    selector: FrozenDict | None  # None or empty: namespace-wide (mesh-wide in the root ns)
    mode: str = UNSET
    port_modes: FrozenDict = EMPTY  # int port -> mode

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def workload_level(self) -> bool:
        return bool(self.selector)


@dataclass(frozen=True, slots=True)
class MtlsMode:
    """The effective mode, the policy that set it (None: the PERMISSIVE default) and why."""

    mode: str
    policy: str | None
    reason: str
    scope: str = "default"  # port | workload | namespace | mesh | default


def parse_peer_authentication(obj: RawObject) -> PeerAuthentication:
    """Validate one PeerAuthentication as Istio's webhook would; InputError otherwise."""
    spec = raw_fields(obj).sub("spec")
    selector = parse_workload_selector(spec)
    mode = spec.sub("mtls").enum("mode", MODES, default=UNSET)
    ports: dict[int, str] = {}
    levels = spec.sub("portLevelMtls")
    if levels.data and not selector:
        raise levels.error(None, "mesh/namespace peer authentication cannot have port level "
                                 "mTLS (it needs a workload selector)")
    for raw_port, value in levels.data.items():
        port = int(raw_port) if str(raw_port).isdigit() else 0
        if not 1 <= port <= 65535:
            raise levels.error(str(raw_port), "port must be between 1 and 65535")
        ports[port] = Fields(value, levels.source, levels.obj,
                             f"spec.portLevelMtls.{raw_port}").enum("mode", MODES, default=UNSET)
    return PeerAuthentication(obj.namespace or "default", obj.name, obj.meta.created, selector,
                              mode, FrozenDict(ports))


class PeerAuthentications:
    """A cluster's PeerAuthentications indexed by namespace, parsed once."""

    def __init__(self, cluster: Cluster) -> None:
        self.root = mesh_config(cluster).root_namespace
        self.by_namespace: dict[str, list[PeerAuthentication]] = defaultdict(list)
        for obj in cluster.raw(KIND):
            pa = parse_peer_authentication(obj)
            self.by_namespace[pa.namespace].append(pa)
        for items in self.by_namespace.values():
            # istio sorts configs by creation time, then name; the first one wins a scope
            items.sort(key=lambda p: (p.created is None, p.created or "", p.name))

    def mode(self, pod: Pod, port: int) -> MtlsMode:
        """The mTLS mode the pod's sidecar enforces for inbound traffic to `port`."""
        mesh = next((p for p in self.by_namespace.get(self.root, ()) if not p.workload_level),
                    None)
        namespace = workload = None
        if pod.namespace != self.root:
            for p in self.by_namespace.get(pod.namespace, ()):
                if not p.workload_level:
                    namespace = namespace or p
                elif workload is None and selects(p.selector, pod.labels):
                    workload = p
        effective = MtlsMode(PERMISSIVE, None, "no PeerAuthentication sets a mode: PERMISSIVE "
                             "by default")
        for scope, policy in (("mesh", mesh), ("namespace", namespace), ("workload", workload)):
            if policy is None:
                continue
            if policy.mode == UNSET:
                effective = MtlsMode(effective.mode, effective.policy,
                                     f"{scope} policy {policy.key} leaves the mode UNSET; "
                                     f"{_lower(effective.reason)}", effective.scope)
            else:
                effective = MtlsMode(policy.mode, policy.key,
                                     f"{scope} policy {policy.key} sets {policy.mode}"
                                     + _overrides(effective), scope)
        if workload is not None and port in workload.port_modes:
            port_mode = workload.port_modes[port]
            if port_mode == UNSET:
                return MtlsMode(effective.mode, effective.policy,
                                f"port {port} is UNSET in {workload.key}: inherits "
                                f"{effective.mode} ({effective.reason})", effective.scope)
            return MtlsMode(port_mode, workload.key,
                            f"workload policy {workload.key} sets {port_mode} on port {port}"
                            f" (the workload mode is {effective.mode})", "port")
        return effective


def mtls_mode(cluster: Cluster, pod: Pod, port: int, *,
              policies: PeerAuthentications | None = None) -> MtlsMode:
    """The mTLS mode `pod`'s sidecar enforces on inbound `port` (the pod's port, not a
    Service port), with the deciding PeerAuthentication. Pass `policies` to reuse an index
    when asking for many pods."""
    return (policies or PeerAuthentications(cluster)).mode(pod, port)


def _overrides(previous: MtlsMode) -> str:
    if previous.policy is None:
        return ""
    return f" (overriding {previous.mode} of {previous.scope} policy {previous.policy})"


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


__all__ = ["DISABLE", "MODES", "PERMISSIVE", "STRICT", "UNSET", "MtlsMode",
           "PeerAuthentication", "PeerAuthentications", "mtls_mode",
           "parse_peer_authentication"]
