"""App Services: the type mix, ports by name, LoadBalancer addresses and the node-port budget."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator

from netsim.generate.common import Manifest, _dns_label
from netsim.generate.workloads import _Workload

NODE_PORT_RANGE = 32767 - 30000 + 1
NODE_PORT_BUDGET = NODE_PORT_RANGE - 68  # keep headroom for anything netsim adds itself
LB_RANGES = ("203.0.113.0/24", "198.51.100.0/24")
SERVICE_PORT_NUMBER = {"http": 80, "https": 443}


def _service_types(rng: random.Random, workloads: list[_Workload]) -> list[list[str]]:
    """Per-workload service types: ~80% ClusterIP, 10% headless, 7% NodePort, 3% LoadBalancer."""
    slots = [(wi, j) for wi, w in enumerate(workloads) for j in range(w.services)]
    types = [["ClusterIP"] * w.services for w in workloads]
    others = []
    for wi, j in slots:
        if workloads[wi].kind == "StatefulSet" and j == 0:
            types[wi][j] = "Headless"  # the StatefulSet's governing service
        else:
            others.append((wi, j))
    rng.shuffle(others)
    total = len(slots)
    governing = total - len(others)
    headless = max(0, round(total * 0.10) - governing)
    lbs = min(round(total * 0.03), _lb_pool_size())
    nodeports = round(total * 0.07)
    quotas = [("Headless", headless), ("LoadBalancer", lbs), ("NodePort", nodeports)]
    start = 0
    for kind, n in quotas:
        for wi, j in others[start : start + n]:
            types[wi][j] = kind
        start += n
    return types


def _lb_pool_size() -> int:
    """Usable documentation addresses for LoadBalancer ingress (.1-.254 of each /24)."""
    return sum(ipaddress.ip_network(r).num_addresses - 2 for r in LB_RANGES)


def _lb_addresses() -> list[str]:
    """All LoadBalancer ingress IPs in allocation order."""
    return [str(ip) for r in LB_RANGES for ip in ipaddress.ip_network(r).hosts()]


def _services(rng: random.Random, workloads: list[_Workload]) -> list[Manifest]:
    """Every app Service, in workload order, within the node-port budget."""
    types = _service_types(rng, workloads)
    lb_ips = iter(_lb_addresses())
    node_ports_left = NODE_PORT_BUDGET
    items = []
    for w, kinds in zip(workloads, types, strict=True):
        for j, kind in enumerate(kinds):
            ports = _service_ports(rng, w, kind, j)
            if kind in ("NodePort", "LoadBalancer"):
                local = rng.random() < (0.3 if kind == "LoadBalancer" else 0.15)
                cost = len(ports) + (1 if local and kind == "LoadBalancer" else 0)
                if cost > node_ports_left:
                    kind, local = "ClusterIP", False
                    ports = _service_ports(rng, w, kind, j)
                else:
                    node_ports_left -= cost
            else:
                local = False
            name = w.name if j == 0 else w.namespace.claim("service", _service_name(w, kind, j))
            items.append(_app_service(rng, w, name, kind, ports, local, lb_ips))
    return items


def _service_name(w: _Workload, kind: str, index: int) -> str:
    """The primary service shares the workload's name; extras get a purpose suffix."""
    if index == 0:
        return w.name
    if kind == "ClusterIP":
        suffix = "metrics" if any(p.name == "metrics" for p in w.ports) else "internal"
    else:
        suffix = {"Headless": "headless", "NodePort": "nodeport", "LoadBalancer": "public"}[kind]
    return f"{_dns_label(w.name, len(suffix) + 4)}-{suffix}"


def _service_ports(rng: random.Random, w: _Workload, kind: str, index: int) -> list[Manifest]:
    """Service ports targeting container ports, usually by name."""
    if kind == "Headless":
        chosen = list(w.ports)
    elif kind == "ClusterIP" and index > 0:
        metrics = [p for p in w.ports if p.name == "metrics"]
        chosen = metrics or w.ports[:1]
    elif kind in ("NodePort", "LoadBalancer"):
        chosen = w.ports[:1] + [p for p in w.ports[1:] if p.name == "https"]
    else:
        chosen = w.ports[:1]
        if len(w.ports) > 1 and rng.random() < 0.3:
            chosen = list(w.ports)
    return [
        {
            "name": p.name,
            "port": SERVICE_PORT_NUMBER.get(p.name, p.number),
            "protocol": p.protocol,
            "targetPort": p.name if rng.random() < 0.85 else p.number,
        }
        for p in chosen
    ]


def _app_service(
    rng: random.Random,
    w: _Workload,
    name: str,
    kind: str,
    ports: list[Manifest],
    local: bool,
    lb_ips: Iterator[str],
) -> Manifest:
    """A Service manifest; clusterIP and nodePort are left for netsim to allocate."""
    spec: Manifest = {"selector": {"app": w.name}, "ports": ports}
    if kind == "Headless":
        spec["type"] = "ClusterIP"
        spec["clusterIP"] = "None"
        if w.kind == "StatefulSet":
            spec["publishNotReadyAddresses"] = True
    else:
        spec["type"] = kind
        if rng.random() < 0.05:
            spec["sessionAffinity"] = "ClientIP"
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    labels = {"app": w.name, "app.kubernetes.io/name": w.name, "tier": w.tier}
    service = _service_manifest(w.namespace.name, name, labels, spec)
    if kind == "LoadBalancer":
        service["status"] = {"loadBalancer": {"ingress": [{"ip": next(lb_ips)}]}}
    return service


def _service_manifest(
    namespace: str, name: str, labels: dict[str, str], spec: Manifest
) -> Manifest:
    """The v1 Service wrapper."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
