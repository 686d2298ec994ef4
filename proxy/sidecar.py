"""Istio sidecars as Envoy runs them: each pod's config, and how it routes a request.

`sidecar_config(cluster, pod)` builds what istiod would push to the pod's sidecar
(listeners, route configs, clusters, endpoints); `route_outbound` and `route_inbound` walk a
connection or request through that config; `render_text` / `render_json` print it like
`istioctl proxy-config`. The parts live in proxy/sidecar_*.py.
"""

from __future__ import annotations

from proxy.sidecar_config import (
    default_mtls_mode,
    default_options,
    default_sidecars,
    sidecar_config,
)
from proxy.sidecar_istio import port_protocol
from proxy.sidecar_print import SECTIONS, render_json, render_text
from proxy.sidecar_routing import (
    InboundChoice,
    OutboundDecision,
    RouteChoice,
    route_inbound,
    route_outbound,
    select_chain,
)
from proxy.sidecar_types import (
    Cluster,
    FilterChain,
    LbEndpoint,
    Listener,
    MeshOptions,
    Route,
    RouteConfig,
    SidecarConfig,
    VirtualHost,
)

__all__ = [
    "SECTIONS",
    "Cluster",
    "FilterChain",
    "InboundChoice",
    "LbEndpoint",
    "Listener",
    "MeshOptions",
    "OutboundDecision",
    "Route",
    "RouteChoice",
    "RouteConfig",
    "SidecarConfig",
    "VirtualHost",
    "default_mtls_mode",
    "default_options",
    "default_sidecars",
    "port_protocol",
    "render_json",
    "render_text",
    "route_inbound",
    "route_outbound",
    "select_chain",
    "sidecar_config",
]
