"""Istio's security policies: PeerAuthentication (mTLS modes) and AuthorizationPolicy.

One import for the sidecar and the CLI; the semantics live in istio_peerauthn (mTLS),
istio_authz_model and istio_authz (authorization) and istio_mesh (root namespace, trust
domain, SPIFFE identities).
"""

from __future__ import annotations

from policies.istio_authz import (
    RBAC_DENIED_BODY,
    AuthorizationPolicies,
    AuthzDecision,
    AuthzRequest,
    authorize,
)
from policies.istio_authz_model import (
    ALLOW,
    AUDIT,
    CUSTOM,
    DENY,
    AuthorizationPolicy,
    parse_authorization_policy,
)
from policies.istio_mesh import MeshConfig, mesh_config, workload_principal
from policies.istio_peerauthn import (
    DISABLE,
    PERMISSIVE,
    STRICT,
    UNSET,
    MtlsMode,
    PeerAuthentication,
    PeerAuthentications,
    mtls_mode,
    parse_peer_authentication,
)

__all__ = [
    "ALLOW", "AUDIT", "CUSTOM", "DENY", "DISABLE", "PERMISSIVE", "RBAC_DENIED_BODY", "STRICT",
    "UNSET", "AuthorizationPolicies", "AuthorizationPolicy", "AuthzDecision", "AuthzRequest",
    "MeshConfig", "MtlsMode", "PeerAuthentication", "PeerAuthentications", "authorize",
    "mesh_config", "mtls_mode", "parse_authorization_policy", "parse_peer_authentication",
    "workload_principal",
]
