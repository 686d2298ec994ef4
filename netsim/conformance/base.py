"""The cluster the NetworkPolicy suite probes: namespaces x, y, z with pods a, b, c.

As in the upstream e2e tests (test/e2e/network/netpol): every pod serves ports 80 and 81 on
TCP, UDP and SCTP under the names serve-80-tcp, serve-81-udp, ...; namespaces carry their
kubernetes.io/metadata.name label (and ns=<name>), pods pod=<name>. Addresses are fixed so
that ipBlock cases can name them.
"""

from __future__ import annotations

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP", "SCTP")
NODE_OF = {"x": "node-1", "y": "node-1", "z": "node-2"}


def pod_ip(namespace: str, pod: str) -> str:
    return f"10.244.{NAMESPACES.index(namespace) + 1}.{PODS.index(pod) + 11}"


def container_ports() -> list[dict]:
    return [{"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
            for port in PORTS for proto in PROTOCOLS]


def base_objects() -> list[dict]:
    """The base cluster's manifests (a NetsimConfig, nodes, namespaces and pods)."""
    objs: list[dict] = [{
        "apiVersion": "netsim/v1alpha1", "kind": "NetsimConfig",
        "metadata": {"name": "netpol-suite"},
        "spec": {"podCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/12"]},
    }]
    for i, node in enumerate(("node-1", "node-2")):
        objs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                     "status": {"addresses": [{"type": "InternalIP",
                                               "address": f"172.18.0.{i + 2}"}]}})
    for ns in NAMESPACES:
        objs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": {"ns": ns}}})
        for pod in PODS:
            objs.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
                "spec": {"nodeName": NODE_OF[ns], "containers": [
                    {"name": "cont", "image": "agnhost", "ports": container_ports()}]},
                "status": {"phase": "Running", "podIP": pod_ip(ns, pod)},
            })
    return objs
