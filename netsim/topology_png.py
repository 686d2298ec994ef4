"""The topology graph as a PNG: underlay bar, host columns and their pods, drawn with matplotlib.

A pure function of the graph (and, for the title, the cluster): it returns bytes and touches
no files.
"""

from __future__ import annotations

import io
import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx

from netsim.topology import CLOUD_LB, EXTERNAL, UNDERLAY
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
    from netsim.cluster import Cluster

# ---------------------------------------------------------------- PNG: what to draw

PNG_MAX_HOSTS = 12
PNG_MAX_PODS = 150
_NAME_CHARS = 33  # fits a box in bold 8 pt


@dataclass(frozen=True, slots=True)
class _Box:
    """One labelled box: a pod, or in aggregate mode a namespace's pod count."""

    lines: tuple[str, ...]
    style: str  # pod | hostnet | summary | pending


@dataclass(frozen=True, slots=True)
class _Column:
    title: str
    lines: tuple[str, ...]
    boxes: tuple[_Box, ...]
    style: str = "host"  # host | pending


@dataclass(frozen=True, slots=True)
class _Scene:
    title: str
    underlay: str
    columns: tuple[_Column, ...]
    overlay: str | None
    external: tuple[str, ...] | None
    cloud_lb: tuple[str, ...] | None
    caption: str | None


def _clip(text: str, width: int = _NAME_CHARS) -> str:
    """Fit a box, eliding the middle: a pod's generated suffix is what tells replicas apart."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _pod_box(graph: nx.Graph, pod: str, host: str | None) -> _Box:
    d = graph.nodes[pod]
    if d["host_network"]:
        return _Box(
            (_clip(f"{d['namespace']}/{d['name']}"), f"{pod_ips(d)} hostNetwork"), "hostnet"
        )
    veth = host_veth(graph, pod, host) if host else None
    second = f"{pod_ips(d)}  {veth}" if veth else pod_ips(d)
    return _Box(
        (_clip(f"{d['namespace']}/{d['name']}"), _clip(second)), "pod" if host else "pending"
    )


def _summary_boxes(graph: nx.Graph, pods: list[str], limit: int = 10) -> tuple[_Box, ...]:
    """One box counting pods per namespace, largest first: what fits on a column at scale."""
    if not pods:
        return ()
    counts = Counter(graph.nodes[p]["namespace"] for p in pods)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"{_clip(ns, _NAME_CHARS - 6)}: {n}" for ns, n in ranked[:limit]]
    if len(ranked) > limit:
        rest = sum(n for _, n in ranked[limit:])
        lines.append(f"{count(len(ranked) - limit, 'more namespace')}: {rest}")
    return (_Box(("pods by namespace", *lines), "summary"),)


def _host_column(graph: nx.Graph, host: str, aggregate: bool) -> _Column:
    d = graph.nodes[host]
    lines = [
        ", ".join(d["addresses"]) or "no IP",
        *(_clip(device_text(i)) for i in shown_devices(d)),
    ]
    blocks = list(d["pod_blocks"])
    if blocks:
        more = f" +{len(blocks) - 2}" if len(blocks) > 2 else ""
        lines.append("pods " + ", ".join(blocks[:2]) + more)
    if d["roles"] or d["zone"]:
        lines.append(" · ".join([*d["roles"], *([f"zone {d['zone']}"] if d["zone"] else [])]))
    pods = pods_of(graph, host)
    if aggregate:
        boxes = _summary_boxes(graph, pods)
        lines.append(count(len(pods), "pod"))
    else:
        boxes = tuple(_pod_box(graph, p, host) for p in reversed(pods))
    return _Column(d["name"], tuple(lines), boxes)


def _scene(graph: nx.Graph, cluster: Cluster | None) -> _Scene:
    """Decide what the picture shows; aggregate past ~12 hosts or ~150 pods."""
    hosts = host_ids(graph)
    pod_count = sum(1 for _, kind in graph.nodes(data="kind") if kind == "pod")
    aggregate = len(hosts) > PNG_MAX_HOSTS or pod_count > PNG_MAX_PODS
    shown = hosts[:PNG_MAX_HOSTS]
    columns = [_host_column(graph, h, aggregate) for h in shown]
    pending = unattached(graph)
    if pending:
        boxes = (
            _summary_boxes(graph, pending)
            if aggregate
            else tuple(_pod_box(graph, p, None) for p in reversed(pending))
        )
        columns.append(
            _Column("unscheduled", (count(len(pending), "pod"), "no node yet"), boxes, "pending")
        )
    caption = None
    if len(hosts) > len(shown):
        hidden = hosts[len(shown) :]
        hidden_pods = sum(len(pods_of(graph, h)) for h in hidden)
        caption = f"{len(hidden)} more hosts ({count(hidden_pods, 'pod')}) not shown"
    overlay = overlay_node(graph)
    ext = graph.nodes[EXTERNAL] if EXTERNAL in graph else None
    lb = graph.nodes[CLOUD_LB] if CLOUD_LB in graph else None
    return _Scene(
        title=_title(graph, cluster, len(hosts), pod_count),
        underlay="underlay  " + ", ".join(graph.nodes[UNDERLAY]["cidrs"]),
        columns=tuple(columns),
        overlay=overlay_text(graph, overlay) if overlay else None,
        external=(
            "external client",
            *ext["addresses"],
            count(len(ext["services"]), "exposed service"),
        )
        if ext
        else None,
        cloud_lb=_lb_lines(lb) if lb else None,
        caption=caption,
    )


def _lb_lines(lb: dict) -> tuple[str, ...]:
    lines = [f"{ip}  {_clip(svc, _NAME_CHARS - len(ip) - 2)}" for ip, svc in lb["frontends"][:6]]
    if len(lb["frontends"]) > 6:
        lines.append(f"+{len(lb['frontends']) - 6} more")
    return ("cloud load balancer", *lines)


def _title(graph: nx.Graph, cluster: Cluster | None, hosts: int, pods: int) -> str:
    parts = [f"{graph.graph.get('cni', '?')} ({graph.graph.get('mode', '?')})"]
    if cluster is not None:
        parts.append(f"kube-proxy {cluster.settings.proxy_mode}")
    parts.append(f"{count(hosts, 'host')}, {count(pods, 'pod')}")
    if cluster is not None:
        parts.append(count(len(cluster.services), "service"))
    return "  ·  ".join(parts)


# ---------------------------------------------------------------- PNG: drawing

# Sizes in inches (the axes use 1 data unit = 1 inch, so text in points lines up).
_COL_W, _COL_GAP, _MARGIN, _SIDE_W, _LANE = 2.9, 0.35, 0.4, 2.9, 0.4
_BAR_Y, _BAR_H, _OVERLAY_Y, _HOST_Y = 0.45, 0.42, 1.25, 1.65
_LINE, _BOX_GAP, _PAD = 0.18, 0.1, 0.12
_COLORS = {
    "host": ("#dbe8f7", "#3a6ea5"),
    "pending": ("#f4f4f4", "#999999"),
    "pod": ("#e3f3dc", "#3b7d3b"),
    "hostnet": ("#fff5d6", "#a07a00"),
    "summary": ("#e3f3dc", "#3b7d3b"),
    "external": ("#f9e0e8", "#b03a5b"),
    "lb": ("#ece0f7", "#7040a0"),
    "underlay": ("#e0e0e0", "#555555"),
}
_TUNNEL_COLOR = "#d06a00"


def _host_columns(scene: _Scene) -> int:
    return sum(1 for c in scene.columns if c.style == "host")


def _host_height(column: _Column) -> float:
    return _PAD * 2 + _LINE * (1 + len(column.lines))


def _box_height(box: _Box) -> float:
    return 2 * _PAD + _LINE * (len(box.lines) - 1) + 0.13


def _column_height(column: _Column) -> float:
    return _host_height(column) + 0.3 + sum(_box_height(b) + _BOX_GAP for b in column.boxes)


def _side_heights(scene: _Scene) -> tuple[float, float]:
    ext = _PAD * 2 + _LINE * len(scene.external) if scene.external else 0.0
    lb = _PAD * 2 + _LINE * len(scene.cloud_lb) if scene.cloud_lb else 0.0
    return ext, lb


def _figure_size(scene: _Scene) -> tuple[float, float]:
    cols = max(len(scene.columns), 1)
    side = _COL_GAP + _SIDE_W + _LANE if scene.external else 0.0
    width = _MARGIN * 2 + cols * _COL_W + (cols - 1) * _COL_GAP + side
    ext, lb = _side_heights(scene)
    tallest = max([_column_height(c) for c in scene.columns] + [ext + lb + 0.5, 1.0])
    return max(width, 6.5), _HOST_Y + tallest + 0.9


def _box(
    ax: Any,
    x: float,
    y: float,
    w: float,
    h: float,
    lines: tuple[str, ...],
    style: str,
    title: str | None = None,
    size: float = 8.0,
) -> None:
    """A rounded box with a bold title line and plain lines below, text from the top."""
    from matplotlib.patches import FancyBboxPatch

    fill, edge = _COLORS[style]
    dashed = style in ("hostnet", "pending")
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0,rounding_size=0.06",
            facecolor=fill,
            edgecolor=edge,
            linewidth=1.2,
            linestyle="--" if dashed else "-",
        )
    )
    top = y + h - _PAD
    if title is not None:
        ax.text(x + _PAD, top, title, fontsize=size + 1.5, fontweight="bold", va="top")
        top -= _LINE + 0.02
    for i, line in enumerate(lines):
        weight = "bold" if title is None and i == 0 else "normal"
        ax.text(
            x + _PAD,
            top - i * _LINE,
            line,
            fontsize=size,
            va="top",
            fontweight=weight,
            family="DejaVu Sans",
        )


def _draw_column(ax: Any, scene: _Scene, x: float, column: _Column) -> None:
    host_h = _host_height(column)
    _box(ax, x, _HOST_Y, _COL_W, host_h, column.lines, column.style, title=column.title)
    if column.style == "host":  # links down: eth0 to the underlay, tunnel to the overlay
        ax.plot([x + 0.6] * 2, [_BAR_Y + _BAR_H, _HOST_Y], color="#555555", linewidth=2.2)
        if scene.overlay:
            ax.plot(
                [x + _COL_W - 0.6] * 2,
                [_OVERLAY_Y, _HOST_Y],
                color=_TUNNEL_COLOR,
                linestyle="--",
                linewidth=1.4,
            )
    y = _HOST_Y + host_h + 0.3
    for i, box in enumerate(column.boxes):
        ax.plot(
            [x + _COL_W / 2] * 2,
            [y - (0.3 if i == 0 else _BOX_GAP), y],
            color=_COLORS[box.style][1],
            linewidth=1.0,
        )
        _box(ax, x + 0.1, y, _COL_W - 0.2, _box_height(box), box.lines, box.style)
        y += _box_height(box) + _BOX_GAP


def _draw_side(ax: Any, scene: _Scene, x: float) -> None:
    ext_h, lb_h = _side_heights(scene)
    if scene.external:
        _box(
            ax, x, _HOST_Y, _SIDE_W, ext_h, scene.external[1:], "external", title=scene.external[0]
        )
        ax.plot(
            [x + 0.6] * 2, [_BAR_Y + _BAR_H, _HOST_Y], color=_COLORS["external"][1], linewidth=1.6
        )
    if scene.cloud_lb:
        lb_y = _HOST_Y + ext_h + 0.5
        _box(ax, x, lb_y, _SIDE_W, lb_h, scene.cloud_lb[1:], "lb", title=scene.cloud_lb[0])
        ax.plot([x + 0.6] * 2, [_HOST_Y + ext_h, lb_y], color=_COLORS["lb"][1], linewidth=1.6)
        edge_x = x + _SIDE_W + _LANE / 2  # LB to the nodes: a lane beside the client's box
        ax.plot(
            [x + _SIDE_W, edge_x, edge_x],
            [lb_y + lb_h / 2, lb_y + lb_h / 2, _BAR_Y + _BAR_H],
            color=_COLORS["lb"][1],
            linewidth=1.6,
        )


def _draw(scene: _Scene) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    width, height = _figure_size(scene)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.text(_MARGIN, height - 0.3, scene.title, fontsize=12, fontweight="bold", va="top")
    cols_right = _MARGIN + len(scene.columns) * (_COL_W + _COL_GAP) - _COL_GAP
    hosts_right = _MARGIN + _host_columns(scene) * (_COL_W + _COL_GAP) - _COL_GAP
    bar_right = width - _MARGIN
    fill, edge = _COLORS["underlay"]
    ax.add_patch(
        FancyBboxPatch(
            (_MARGIN, _BAR_Y),
            bar_right - _MARGIN,
            _BAR_H,
            boxstyle="round,pad=0,rounding_size=0.08",
            facecolor=fill,
            edgecolor=edge,
            linewidth=1.6,
        )
    )
    ax.text(
        _MARGIN + _PAD,
        _BAR_Y + _BAR_H / 2,
        scene.underlay,
        fontsize=10,
        fontweight="bold",
        va="center",
    )
    if scene.overlay and _host_columns(scene):
        ax.plot(
            [_MARGIN + 0.3, hosts_right - 0.3],
            [_OVERLAY_Y] * 2,
            color=_TUNNEL_COLOR,
            linestyle="--",
            linewidth=1.8,
        )
        ax.text(
            _MARGIN + 1.0,
            _OVERLAY_Y + 0.05,
            scene.overlay,
            fontsize=8.5,
            color=_TUNNEL_COLOR,
            va="bottom",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
    for i, column in enumerate(scene.columns):
        _draw_column(ax, scene, _MARGIN + i * (_COL_W + _COL_GAP), column)
    if scene.external:
        _draw_side(ax, scene, cols_right + _COL_GAP)
    if scene.caption:
        ax.text(
            width - _MARGIN,
            0.15,
            scene.caption,
            fontsize=10,
            ha="right",
            va="bottom",
            style="italic",
        )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def to_png(graph: nx.Graph, cluster: Cluster | None = None) -> bytes:
    """A PNG a person can read: underlay bar, host boxes, their pods stacked above.

    Past ~12 hosts or ~150 pods each host shows pods per namespace and the rest of the hosts
    become a caption. ``cluster`` only adds the proxy mode and Service count to the title.
    """
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # a headless default; a backend the caller chose is kept
    return _draw(_scene(graph, cluster))
