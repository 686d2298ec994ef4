"""NetworkPolicies: per-namespace bundles that exercise every peer and port feature."""

from __future__ import annotations

import random

from netsim.generate.common import Manifest, Port, _dns_label
from netsim.generate.namespaces import TEAMS, _Namespace
from netsim.generate.workloads import TIERS, _Workload

PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def _policies(
    rng: random.Random, count: int, spaces: list[_Namespace], workloads: list[_Workload]
) -> list[Manifest]:
    """Namespaces adopt policies as a bundle (deny, allow-same-ns, DNS, per-app rules)."""
    by_ns: dict[str, list[_Workload]] = {ns.name: [] for ns in spaces}
    for w in workloads:
        by_ns[w.namespace.name].append(w)
    order = list(spaces)
    rng.shuffle(order)
    items: list[Manifest] = []
    round_no = 0
    while len(items) < count:
        for ns in order:
            for name, spec in _bundle(rng, ns, by_ns[ns.name], round_no, spaces):
                items.append(_policy_manifest(ns.name, ns.claim("policy", name), spec))
                if len(items) == count:
                    return items
        round_no += 1
    return items


def _bundle(
    rng: random.Random,
    ns: _Namespace,
    apps: list[_Workload],
    round_no: int,
    spaces: list[_Namespace],
) -> list[tuple[str, Manifest]]:
    """Baseline policies on first adoption, then app-specific rules on every round."""
    bundle: list[tuple[str, Manifest]] = []
    if round_no == 0:
        bundle.extend(_baseline(rng))
    for _ in range(rng.randint(1, 5) if round_no == 0 else rng.randint(1, 3)):
        bundle.append(_app_policy(rng, ns, apps, spaces))
    return bundle


def _baseline(rng: random.Random) -> list[tuple[str, Manifest]]:
    """Default deny (ingress, sometimes egress too) and the allows it makes necessary."""
    if rng.random() < 0.3:
        deny = ("default-deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        return [deny, _allow_dns(), _allow_same_namespace()]
    deny = ("default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    return [deny, _allow_same_namespace()]


def _allow_dns() -> tuple[str, Manifest]:
    """Egress to kube-dns over UDP and TCP 53, needed once egress is denied."""
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [peer], "ports": ports}],
    }
    return "allow-dns-egress", spec


def _allow_same_namespace() -> tuple[str, Manifest]:
    """Pods of the namespace may talk to each other."""
    spec = {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
    }
    return "allow-same-namespace", spec


def _app_policy(
    rng: random.Random, ns: _Namespace, apps: list[_Workload], spaces: list[_Namespace]
) -> tuple[str, Manifest]:
    """One per-app rule drawn from the mix of features real policies use."""
    if not apps:
        return _tier_policy(rng)
    w = rng.choice(apps)
    builders = (
        _from_team,
        _external_egress,
        _port_range,
        _monitoring,
        _not_dev,
        _from_nodes,
        _db_clients,
        _egress_to_app,
    )
    name, spec = rng.choice(builders)(rng, w, spaces)
    return _dns_label(name), spec


def _target(w: _Workload) -> Manifest:
    """The policy's subject: one app's pods."""
    return {"matchLabels": {"app": w.name}}


def _ingress(w: _Workload, peers: list[Manifest], ports: list[Manifest]) -> Manifest:
    """Ingress-only policy spec for one app."""
    rule: Manifest = {"from": peers}
    if ports:
        rule["ports"] = ports
    return {"podSelector": _target(w), "policyTypes": ["Ingress"], "ingress": [rule]}


def _egress(w: _Workload, peers: list[Manifest], ports: list[Manifest]) -> Manifest:
    """Egress-only policy spec for one app."""
    return {
        "podSelector": _target(w),
        "policyTypes": ["Egress"],
        "egress": [{"to": peers, "ports": ports}],
    }


def _named(port: Port) -> Manifest:
    """A policy port referring to a container port by name."""
    return {"protocol": port.protocol, "port": port.name}


def _from_team(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """namespaceSelector AND podSelector in one peer: frontends of another team."""
    team = rng.choice(TEAMS)
    peer = {
        "namespaceSelector": {"matchLabels": {"team": team}},
        "podSelector": {"matchLabels": {"tier": "frontend"}},
    }
    return f"allow-{w.name}-from-{team}", _ingress(w, [peer], [_named(w.ports[0])])


def _external_egress(
    rng: random.Random, w: _Workload, spaces: list[_Namespace]
) -> tuple[str, Manifest]:
    """HTTPS to the internet but not to private ranges: ipBlock with except."""
    peer = {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}
    return f"allow-{w.name}-internet", _egress(w, [peer], [{"protocol": "TCP", "port": 443}])


def _port_range(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """endPort ranges: node ports on node IPs, or a UDP media range from prod/staging."""
    if rng.random() < 0.5:
        peer = {"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.16.0.0/28"]}}
        ports = [{"protocol": "TCP", "port": 30000, "endPort": 32767}]
        return f"allow-{w.name}-nodeports", _egress(w, [peer], ports)
    peer = {
        "namespaceSelector": {
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]
        }
    }
    ports = [{"protocol": "UDP", "port": 10000, "endPort": 10999}]
    return f"allow-{w.name}-media", _ingress(w, [peer], ports)


def _monitoring(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Prometheus scrapes from observability/platform namespaces (In, Exists)."""
    peer = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "team", "operator": "In", "values": ["observability", "platform"]}
            ]
        },
        "podSelector": {
            "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "Exists"}]
        },
    }
    metrics = [p for p in w.ports if p.name == "metrics"]
    ports = (
        [_named(metrics[0])]
        if metrics
        else [{"protocol": w.ports[0].protocol, "port": w.ports[0].number}]
    )
    return f"allow-{w.name}-scrape", _ingress(w, [peer], ports)


def _not_dev(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Only owned, non-dev namespaces may connect (NotIn, Exists)."""
    peer = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"},
            ]
        }
    }
    return f"deny-{w.name}-from-dev", _ingress(w, [peer], [_named(p) for p in w.ports])


def _from_nodes(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Kubelet probes and NodePort traffic from node IPs, minus a bastion subnet."""
    peer = {"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.31.255.0/24"]}}
    return f"allow-{w.name}-from-nodes", _ingress(w, [peer], [_named(w.ports[0])])


def _db_clients(rng: random.Random, w: _Workload, spaces: list[_Namespace]) -> tuple[str, Manifest]:
    """Backends of the same namespace reach the data store (pod selector only)."""
    peer = {"podSelector": {"matchLabels": {"tier": "backend"}}}
    return f"allow-{w.name}-clients", _ingress(w, [peer], [_named(w.ports[0])])


def _egress_to_app(
    rng: random.Random, w: _Workload, spaces: list[_Namespace]
) -> tuple[str, Manifest]:
    """Egress to a named namespace's API pods on numbered ports."""
    other = rng.choice(spaces)
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other.name}},
        "podSelector": {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["backend", "frontend"]}
            ]
        },
    }
    ports = [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 9090}]
    return f"allow-{w.name}-to-{other.name}", _egress(w, [peer], ports)


def _tier_policy(rng: random.Random) -> tuple[str, Manifest]:
    """For namespaces without apps: a tier-wide rule (DoesNotExist guards canaries)."""
    tier = rng.choice(TIERS)
    selector = {
        "matchLabels": {"tier": tier},
        "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}],
    }
    spec = {
        "podSelector": selector,
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}]}],
    }
    return f"allow-{tier}-from-frontend", spec


def _policy_manifest(namespace: str, name: str, spec: Manifest) -> Manifest:
    """The networking.k8s.io/v1 wrapper."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
