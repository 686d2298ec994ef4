"""The policy test cluster: namespaces x, y, z with pods a, b, c (policy-assistant's layout).

Every pod serves 80 and 81 on TCP, UDP and SCTP under the names policy-assistant's generator
uses (serve-80-tcp, ...), as the upstream e2e netpol pods do (K8S test/e2e/network/netpol
kubemanager.go; NPAPI cmd/policy-assistant/pkg/generator). Addresses are fixed so that ipBlock
rows can be computed by hand:

    n1 172.18.0.2: x/a 10.244.1.10, x/b 10.244.1.11, y/a 10.244.1.20, x/host (hostNetwork)
    n2 172.18.0.3: x/c 10.244.2.12, x/alt 10.244.2.13, y/b .21, y/c .22, z/a .30, z/b .31,
                   z/c .32 (all 10.244.2.x)

Namespace labels: x {ns: x, env: prod}, y {ns: y, env: dev}, z {ns: z} (no env), plus the
kubernetes.io/metadata.name label the control plane adds. Pod labels: pod=<name>; a and b also
carry tier=web and tier=db, c has no tier. x/alt names its 8080/TCP port serve-80-tcp (the same
name mapped to another number) and x/host is a hostNetwork pod on n1 with n1's address.
"""

from __future__ import annotations

import textwrap

from netsim.cluster import Cluster
from policies.endpoints import Peer
from policies.engine import PolicySet
from tests.helpers import config, load_yaml, node, pod

N1_IP, N2_IP = "172.18.0.2", "172.18.0.3"
OUTSIDE_IP = "8.8.8.8"
# Peer names rows use besides "ns/pod": the nodes' addresses and an outside address.
N1, N2, OUT = f"ip:{N1_IP}", f"ip:{N2_IP}", f"ip:{OUTSIDE_IP}"

# (namespace, name, node, ip, labels)
PODS = [
    ("x", "a", "n1", "10.244.1.10", {"pod": "a", "tier": "web"}),
    ("x", "b", "n1", "10.244.1.11", {"pod": "b", "tier": "db"}),
    ("x", "c", "n2", "10.244.2.12", {"pod": "c"}),
    ("y", "a", "n1", "10.244.1.20", {"pod": "a", "tier": "web"}),
    ("y", "b", "n2", "10.244.2.21", {"pod": "b", "tier": "db"}),
    ("y", "c", "n2", "10.244.2.22", {"pod": "c"}),
    ("z", "a", "n2", "10.244.2.30", {"pod": "a", "tier": "web"}),
    ("z", "b", "n2", "10.244.2.31", {"pod": "b", "tier": "db"}),
    ("z", "c", "n2", "10.244.2.32", {"pod": "c"}),
]
ALT_IP = "10.244.2.13"

SERVE_PORTS = "".join(
    f"    - {{name: serve-{n}-{proto.lower()}, containerPort: {n}, protocol: {proto}}}\n"
    for n in (80, 81) for proto in ("TCP", "UDP", "SCTP"))
ALT_PORTS = ("    - {name: serve-80-tcp, containerPort: 8080, protocol: TCP}\n"
             "    - {name: serve-81-udp, containerPort: 81, protocol: UDP}\n")

NAMESPACES = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x, env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {ns: y, env: dev}}
---
apiVersion: v1
kind: Namespace
metadata: {name: z, labels: {ns: z}}
---
"""


def base_yaml() -> str:
    """Nodes, namespaces and pods, without policies."""
    text = node("n1", N1_IP, {"kubernetes.io/hostname": "n1", "zone": "a"})
    text += node("n2", N2_IP, {"kubernetes.io/hostname": "n2", "zone": "b"})
    text += NAMESPACES
    for ns, name, where, ip, labels in PODS:
        text += pod(name, ns, where, labels, ip, ports=SERVE_PORTS)
    text += pod("alt", "x", "n2", {"pod": "alt"}, ALT_IP, ports=ALT_PORTS)
    text += pod("host", "x", "n1", {"pod": "host"}, N1_IP, spec="  hostNetwork: true\n",
                ports="    - {name: serve-80-tcp, containerPort: 80, protocol: TCP}\n")
    return text


def cluster_with(policies: str = "", host_network: str | None = None) -> Cluster:
    """The fixture cluster plus policy documents (YAML text), optionally in a hostNetwork mode."""
    text = base_yaml()
    if host_network is not None:
        text += config(f"networkPolicy:\n  hostNetwork: {host_network}\n")
    return load_yaml(text + policies)


def doc(api_version: str, kind: str, name: str, spec: str, namespace: str | None = None) -> str:
    """One YAML document with the given (dedented) spec text."""
    meta = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n{meta}spec:\n{body}\n---\n"


def netpol(namespace: str, name: str, spec: str) -> str:
    return doc("networking.k8s.io/v1", "NetworkPolicy", name, spec, namespace)


def peer(ps: PolicySet, cluster: Cluster, who: str) -> Peer:
    """"ns/name" is a pod; "ip:A" is whatever owns address A (pod, node or the outside)."""
    if who.startswith("ip:"):
        return ps.ip_peer(who[3:])
    namespace, name = who.split("/")
    found = cluster.pod(namespace, name)
    assert found is not None, who
    return ps.pod_peer(found)
