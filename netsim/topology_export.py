"""Renderers for the topology graph: JSON, DOT, GraphML and a rich tree; the CLI writes them.

Every renderer is a pure function of the graph: it returns text or a rich renderable and
touches no files. The PNG lives in netsim.topology_png; ``to_png`` is re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import TYPE_CHECKING, Any

import networkx as nx

from netsim.topology import CLOUD_LB, EXTERNAL, UNDERLAY, Interface, edge_ends
from netsim.topology_png import PNG_MAX_HOSTS, PNG_MAX_PODS, to_png
from netsim.topology_read import (
    count,
    device_text,
    host_ids,
    host_veth,
    overlay_node,
    overlay_text,
    pod_ips,
    pods_of,
    shown_devices,
    unattached,
)

if TYPE_CHECKING:
    from rich.tree import Tree

__all__ = ["PNG_MAX_HOSTS", "PNG_MAX_PODS", "to_dot", "to_graphml", "to_json", "to_png", "to_tree"]

# ---------------------------------------------------------------- JSON


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _json_default(value: Any) -> Any:
    """What json can't encode itself: dataclasses become dicts of their fields, sets lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _field_names(type(value))}
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(graph: nx.Graph) -> str:
    """Node-link JSON (networkx.node_link_graph(..., edges="links") reads it back), stable.

    Nodes are sorted by id and links by their ends; each link's source/target follow the
    order of its ``ifaces`` (pod, host, external, load-balancer, overlay, network). Tuples
    become lists. Compact, because json's indenting encoder is pure Python and ten times
    slower at 150,000 pods.
    """
    data = nx.node_link_data(graph, edges="links")
    for link in data["links"]:
        link["source"], link["target"] = edge_ends(graph, link["source"], link["target"])
    data["nodes"].sort(key=lambda node: node["id"])
    data["links"].sort(key=lambda link: (link["source"], link["target"]))
    return json.dumps(data, sort_keys=True, default=_json_default)


# ---------------------------------------------------------------- GraphML


def _text(value: Any) -> str:
    """One attribute as a readable string for tools that hold only scalars (yEd, Gephi)."""
    if isinstance(value, Interface):
        return " ".join(filter(None, (value.name, value.kind, *value.addresses, value.mac)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__name__ == "Taint":  # kubectl's key=value:effect
            key = f"{value.key}={value.value}" if value.value else value.key
            return f"{key}:{value.effect}"
        return ",".join(
            f"{f.name}={_text(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
    if isinstance(value, dict):
        return ",".join(f"{k}={_text(v)}" for k, v in sorted(value.items()))
    if isinstance(value, tuple | list):
        compound = any(
            isinstance(v, tuple | list | dict) or dataclasses.is_dataclass(v) for v in value
        )
        return ("; " if compound else ",").join("-" if v is None else _text(v) for v in value)
    return str(value)


def _flat(attrs: dict) -> dict:
    """Scalars stay typed, None is dropped (GraphML has no null), the rest becomes text."""
    out = {}
    for key, value in attrs.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, bool | int | float | str) else _text(value)
    return out


def to_graphml(graph: nx.Graph) -> str:
    """GraphML text with every attribute flattened to a string or number."""
    flat = nx.Graph(**_flat(graph.graph))
    flat.add_nodes_from((n, _flat(d)) for n, d in graph.nodes(data=True))
    flat.add_edges_from((*edge_ends(graph, u, v), _flat(d)) for u, v, d in graph.edges(data=True))
    return "\n".join(nx.generate_graphml(flat)) + "\n"


# ---------------------------------------------------------------- DOT

_DOT_EDGE_STYLE = {
    "veth": 'style=solid, color="#3b7d3b"',
    "host-network": 'style=dotted, color="#a07a00"',
    "underlay": 'style=bold, color="#555555"',
    "tunnel": 'style=dashed, color="#d06a00"',
    "uplink": 'style=solid, color="#b03a5b"',
    "lb-frontend": 'style=solid, color="#7040a0"',
    "lb-backend": 'style=solid, color="#7040a0"',
}
_DOT_NODE_STYLE = {
    "host": 'fillcolor="#dbe8f7", color="#3a6ea5"',
    "pod": 'fillcolor="#e3f3dc", color="#3b7d3b"',
    "hostnet": 'fillcolor="#fff5d6", color="#a07a00", style="rounded,filled,dashed"',
    "pending": 'fillcolor="#f4f4f4", color="#999999", style="rounded,filled,dashed"',
    "network": 'shape=box, fillcolor="#e0e0e0", color="#555555", style="filled,bold"',
    "overlay": 'shape=ellipse, fillcolor="#fff0e0", color="#d06a00", style="filled,dashed"',
    "external": 'shape=ellipse, fillcolor="#f9e0e8", color="#b03a5b"',
    "load-balancer": 'shape=hexagon, fillcolor="#ece0f7", color="#7040a0"',
}


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _q(text: str) -> str:
    """A DOT quoted ID: any node name, including ':' '/' and quotes, is safe inside it."""
    return f'"{_dot_escape(text)}"'


def _dot_label(lines: list[str]) -> str:
    return '"' + "\\n".join(_dot_escape(line) for line in lines) + '"'


def _node_lines(graph: nx.Graph, node: str) -> list[str]:
    """What a person needs to recognise a graph node: its name and addresses."""
    d = graph.nodes[node]
    kind = d["kind"]
    if kind == "host":
        return [d["name"], *d["addresses"], *map(device_text, shown_devices(d)), *d["pod_blocks"]]
    if kind == "pod":
        tag = " (hostNetwork)" if d["host_network"] else ""
        return [f"{d['namespace']}/{d['name']}", pod_ips(d) + tag]
    if kind == "network":
        return ["underlay", *d["cidrs"]]
    if kind == "overlay":
        return [overlay_text(graph, node)]
    if kind == "external":
        return ["external client", *d["addresses"]]
    return ["cloud load balancer", *d["addresses"]]


def _dot_node(graph: nx.Graph, node: str, indent: str) -> str:
    d = graph.nodes[node]
    look = d["kind"]
    if look == "pod" and d["host_network"]:
        look = "hostnet"
    elif look == "pod" and not graph.adj[node]:
        look = "pending"
    style = _DOT_NODE_STYLE[look]
    return f"{indent}{_q(node)} [label={_dot_label(_node_lines(graph, node))}, {style}];"


def to_dot(graph: nx.Graph) -> str:
    """Graphviz DOT: one cluster per host holding its pods; edge style shows the link kind."""
    lines = [
        "graph netsim {",
        '  graph [fontname="Helvetica", rankdir=TB, newrank=true];',
        '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled"];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    in_cluster = set()
    for host in host_ids(graph):
        name = graph.nodes[host]["name"]
        lines += [
            f"  subgraph {_q('cluster_' + name)} {{",
            f'    label={_q(name)}; style=rounded; color="#3a6ea5";',
            _dot_node(graph, host, "    "),
        ]
        for pod in pods_of(graph, host):
            lines.append(_dot_node(graph, pod, "    "))
            in_cluster.add(pod)
        lines.append("  }")
        in_cluster.add(host)
    lines += [_dot_node(graph, n, "  ") for n in graph if n not in in_cluster]
    for u, v, d in graph.edges(data=True):
        a, b = edge_ends(graph, u, v)
        names = [i for i in d["ifaces"] if i]
        label = f", label={_q(' -- '.join(names))}" if names else ""
        lines.append(f"  {_q(a)} -- {_q(b)} [{_DOT_EDGE_STYLE[d['kind']]}{label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- rich tree


def _more(count: int, noun: str) -> str:
    return "… " + count(count, f"more {noun}")


def to_tree(graph: nx.Graph, *, max_hosts: int | None = 50, max_pods: int | None = 30) -> Tree:
    """The default `netsim topology` text: underlay → hosts → pods, then the outside world.

    ``max_hosts`` and ``max_pods`` (per host) keep a 5,000-node cluster to one screenful of
    structure; None shows everything.
    """
    from rich.text import Text
    from rich.tree import Tree

    underlay = graph.nodes[UNDERLAY]
    root = Tree(
        Text.assemble(
            ("underlay ", "bold"),
            ", ".join(underlay["cidrs"]) or "-",
            (f"  {graph.graph.get('cni', '')} {graph.graph.get('mode', '')}", "dim"),
        )
    )
    hosts = host_ids(graph)
    for host in hosts[:max_hosts]:
        _tree_host(graph, root.add(_host_text(graph.nodes[host])), host, max_pods)
    if max_hosts is not None and len(hosts) > max_hosts:
        root.add(Text(_more(len(hosts) - max_hosts, "host"), style="dim"))
    pending = unattached(graph)
    if pending:
        branch = root.add(Text(f"unscheduled ({len(pending)})", style="yellow"))
        for pod in pending[:max_pods]:
            d = graph.nodes[pod]
            branch.add(Text(f"{d['namespace']}/{d['name']}  {pod_ips(d)}"))
        if max_pods is not None and len(pending) > max_pods:
            branch.add(Text(_more(len(pending) - max_pods, "pod"), style="dim"))
    for line in _outside_lines(graph):
        root.add(line)
    return root


def _host_text(host: dict) -> Any:
    from rich.text import Text

    parts = [(host["name"], "bold cyan"), "  ", ", ".join(host["addresses"]) or "no IP"]
    for iface in shown_devices(host):
        parts += ["  ", (device_text(iface), "magenta")]
    if host["pod_blocks"]:
        parts += ["  ", ("blocks ", "dim"), ", ".join(host["pod_blocks"])]
    return Text.assemble(*parts)


def _tree_host(graph: nx.Graph, branch: Tree, host: str, max_pods: int | None) -> None:
    from rich.text import Text

    pods = pods_of(graph, host)
    for pod in pods[:max_pods]:
        d = graph.nodes[pod]
        veth = host_veth(graph, pod, host)
        where = ("hostNetwork", "yellow") if veth is None else (veth, "green")
        branch.add(Text.assemble(f"{d['namespace']}/{d['name']}  ", pod_ips(d), "  ", where))
    if max_pods is not None and len(pods) > max_pods:
        branch.add(Text(_more(len(pods) - max_pods, "pod"), style="dim"))


def _outside_lines(graph: nx.Graph) -> list:
    from rich.text import Text

    lines = []
    overlay = overlay_node(graph)
    if overlay:
        lines.append(Text.assemble(("overlay ", "bold"), overlay_text(graph, overlay)))
    if EXTERNAL in graph:
        d = graph.nodes[EXTERNAL]
        lines.append(
            Text.assemble(
                ("external ", "bold"),
                ", ".join(d["addresses"]),
                f"  reaches {count(len(d['services']), 'exposed service')}",
            )
        )
    if CLOUD_LB in graph:
        d = graph.nodes[CLOUD_LB]
        shown = ", ".join(f"{ip} ({svc})" for ip, svc in d["frontends"][:8])
        rest = len(d["frontends"]) - 8
        lines.append(
            Text.assemble(("cloud-lb ", "bold"), shown, f" … {rest} more" if rest > 0 else "")
        )
    return lines
