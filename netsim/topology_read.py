"""What the topology renderers read off the graph: hosts, their pods, devices and labels.

Shared by the text renderers (netsim.topology_export) and the picture (netsim.topology_png);
nothing else needs them.
"""

from __future__ import annotations

import networkx as nx

from netsim.topology import Interface


def host_ids(graph: nx.Graph) -> list[str]:
    return [n for n, kind in graph.nodes(data="kind") if kind == "host"]


def pods_of(graph: nx.Graph, host: str) -> list[str]:
    """The pods attached to a host (veth or hostNetwork), by namespace and name."""
    pods = [n for n in graph.adj[host] if graph.nodes[n]["kind"] == "pod"]
    return sorted(pods, key=lambda p: (graph.nodes[p]["namespace"], graph.nodes[p]["name"]))


def unattached(graph: nx.Graph) -> list[str]:
    """Pods with no network namespace yet: unscheduled, or bound to a node we don't have."""
    return [n for n, d in graph.nodes(data=True) if d["kind"] == "pod" and not graph.adj[n]]


def overlay_node(graph: nx.Graph) -> str | None:
    return next((n for n, kind in graph.nodes(data="kind") if kind == "overlay"), None)


def _bare(address: str) -> str:
    """An interface address without its host prefix, as people write pod and tunnel IPs."""
    ip, _, prefix = address.partition("/")
    return ip if prefix in ("32", "128", "") else address


def shown_devices(host: dict) -> list[Interface]:
    """The CNI's own devices on a host worth showing: addressed ones and the tunnel device."""
    out = []
    for iface in host["interfaces"]:
        pod_veth = iface.peer is not None and iface.peer[0].startswith("pod:")
        if iface.kind == "ethernet" or pod_veth:
            continue
        if iface.addresses or iface.name == host["tunnel"]:
            out.append(iface)
    return out


def device_text(iface: Interface) -> str:
    return " ".join([iface.name, *map(_bare, iface.addresses)])


def host_veth(graph: nx.Graph, pod: str, host: str) -> str | None:
    edge = graph.edges[pod, host]
    return edge["ifaces"][1] if edge["kind"] == "veth" else None


def pod_ips(pod: dict) -> str:
    return ", ".join(pod["ips"]) or "no IP"


def overlay_text(graph: nx.Graph, node: str) -> str:
    o = graph.nodes[node]
    parts = [f"{o['protocol'].upper()} overlay", f"dev {o['device']}", o["transport"]]
    if o["port"]:
        parts[-1] += f" {o['port']}"
    if o["vni"] is not None:
        parts.append(f"VNI {o['vni']}")
    elif o["protocol"] != "ipip" and graph.graph.get("cni") == "cilium":
        parts.append("VNI = source identity")
    if o["cross_subnet"]:
        parts.append("cross-subnet only")
    return ", ".join(parts)


def count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
