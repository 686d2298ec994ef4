"""Renderers for reachability: grids, grouped tables, CSV, a PNG heatmap, explanations."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from netsim.reach import Matrix
from policies.engine import DirectionVerdict, Verdict

ALLOWED, DENIED, PARTIAL = ".", "X", "~"  # policy-assistant's truth-table symbols
GRID_LIMIT = 40  # pods: above this the table groups
GROUP_GRID_LIMIT = 120  # groups: above this each source group gets a summary line instead
DENSE_LIMIT = 20_000  # pods: above this a pods x pods matrix (-o json|csv) is refused


def summary(m: Matrix, dense: np.ndarray) -> str:
    n = len(m.pods)
    pairs = n * (n - 1)
    allowed = int(dense.sum()) - n
    return (f"{m.protocol}/{m.port}: {allowed} of {pairs} pod pairs allowed "
            f"({len(m.pods)} pods, {m.classes.shape[0]} source and {m.classes.shape[1]} "
            f"destination classes)")


def grid(m: Matrix, dense: np.ndarray) -> Table:
    """Rows are sources, columns destinations (numbered), '.' allowed and 'X' denied."""
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("from \\ to", no_wrap=True)
    for j in range(len(m.pods)):
        table.add_column(str(j + 1), justify="center", no_wrap=True, min_width=len(str(j + 1)))
    for i, pod in enumerate(m.pods):
        cells = [Text(ALLOWED, style="green") if dense[i, j] else Text(DENIED, style="bold red")
                 for j in range(len(m.pods))]
        table.add_row(Text(f"{i + 1:>2} {pod.key}"), *cells)
    return table


def group_key(pod: Any, by: str) -> str:
    if by == "namespace":
        return pod.namespace
    return f"{pod.namespace}/{pod.workload or 'Pod/' + pod.name}"


def grouped(m: Matrix, by: str = "workload") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(group names, allowed pod pairs, all pod pairs) per group pair, without self pairs."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, pod in enumerate(m.pods):
        groups[group_key(pod, by)].append(i)
    names = sorted(groups)
    index = np.empty(len(m.pods), dtype=np.int64)
    for g, name in enumerate(names):
        index[groups[name]] = g
    size = np.bincount(index, minlength=len(names))
    allowed = np.zeros((len(names), len(names)), dtype=np.int64)
    for row, sources in m.rows_by_class():
        counts = np.bincount(index[row], minlength=len(names))
        np.add.at(allowed, index[sources], counts)
        # a pod's pair with itself is not a pair: take back the self cells the row allowed
        np.add.at(allowed, (index[sources], index[sources]), -row[sources].astype(np.int64))
    total = np.outer(size, size) - np.diag(size)
    return names, allowed, total


def grouped_table(names: list[str], allowed: np.ndarray, total: np.ndarray) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("from \\ to", no_wrap=True)
    for j in range(len(names)):
        table.add_column(str(j + 1), justify="center", no_wrap=True, min_width=len(str(j + 1)))
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            if total[i, j] == 0:
                cells.append(Text(""))
            elif allowed[i, j] == total[i, j]:
                cells.append(Text(ALLOWED, style="green"))
            elif allowed[i, j] == 0:
                cells.append(Text(DENIED, style="bold red"))
            else:
                cells.append(Text(PARTIAL, style="yellow"))
        table.add_row(Text(f"{i + 1:>3} {name}"), *cells)
    return table


def group_summary(names: list[str], allowed: np.ndarray, total: np.ndarray) -> Table:
    """One line per source group: how many groups it reaches fully, partly or not at all."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("FROM", "ALL PAIRS ALLOWED", "SOME", "NONE"):
        table.add_column(column, no_wrap=True)
    pairs = total > 0
    full = (allowed == total) & pairs
    some = (allowed > 0) & (allowed < total)
    none = (allowed == 0) & pairs
    for i, name in enumerate(names):
        table.add_row(name, str(int(full[i].sum())), str(int(some[i].sum())),
                      str(int(none[i].sum())))
    return table


def to_csv(m: Matrix, dense: np.ndarray) -> str:
    """The matrix as CSV: a header of destinations, then one row per source (1/0)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["from \\ to", *m.keys])
    for key, row in zip(m.keys, dense.astype(int).tolist(), strict=True):
        writer.writerow([key, *row])
    return out.getvalue()


def to_png(m: Matrix, names: list[str], fraction: np.ndarray, title: str) -> bytes:
    """A heatmap: green allowed, red denied (fractions for groups), sources down the side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    n = len(names)
    size = min(max(6.0, 0.28 * n + 3), 40.0)
    fig, ax = plt.subplots(figsize=(size + 2, size))
    cmap = LinearSegmentedColormap.from_list("reach", ["#c0392b", "#f1c40f", "#27ae60"])
    masked = np.ma.masked_invalid(fraction)
    image = ax.imshow(masked, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    if n <= 80:
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    if n <= 80:  # thin lines between cells so single pods stay distinguishable
        ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    ax.set_xlabel("destination")
    ax.set_ylabel("source")
    ax.set_title(title, fontsize=11)
    values = fraction[~np.isnan(fraction)]
    if np.all((values == 0) | (values == 1)):
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color="#27ae60", label="allowed"),
                           Patch(color="#c0392b", label="denied")],
                  loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    else:
        bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
        bar.set_label("share of pod pairs allowed")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- explain


def explain_text(v: Verdict, src: str, dst: str, port: int, protocol: str) -> str:
    """A verdict in words a reviewer can paste into a ticket."""
    word = "ALLOWED" if v.allowed else "DENIED"
    lines = [f"{src} -> {dst} {protocol}/{port}: {word}", ""]
    for d, where in ((v.egress, src), (v.ingress, dst)):
        lines += _direction_text(d, where)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _direction_text(d: DirectionVerdict, where: str) -> list[str]:
    state = "allowed" if d.allowed else "denied"
    lines = [f"{d.direction} at {where}: {state} ({d.decided_by})", f"  {d.reason}"]
    for p in d.passed:
        lines.append(f"  passed on by {p.policy} {p.rule} ({p.peer}, {p.port})")
    if d.isolating:
        lines.append(f"  isolated by: {', '.join(d.isolating)}")
    for match in d.matches:
        lines.append(f"  {'decided' if d.decided_by != 'networkpolicy' else 'allowed'} by "
                     f"{match.policy} {match.rule}: {match.action} {match.peer}; {match.port}")
    for miss in d.misses:
        lines.append(f"  no match: {miss}")
    return lines


def verdict_json(v: Verdict, src: str, dst: str, port: int, protocol: str) -> dict[str, Any]:
    def direction(d: DirectionVerdict) -> dict[str, Any]:
        return {"allowed": d.allowed, "decidedBy": d.decided_by, "reason": d.reason,
                "isolatedBy": list(d.isolating),
                "matches": [{"policy": m.policy, "rule": m.rule, "peer": m.peer,
                             "port": m.port, "action": m.action} for m in d.matches],
                "passedBy": [{"policy": m.policy, "rule": m.rule} for m in d.passed],
                "misses": list(d.misses)}
    return {"from": src, "to": dst, "port": port, "protocol": protocol,
            "allowed": v.allowed, "egress": direction(v.egress),
            "ingress": direction(v.ingress)}
