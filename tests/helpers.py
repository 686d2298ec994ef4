"""Small builders for test clusters written as YAML text."""

from __future__ import annotations

import io
import textwrap

from netsim.cluster import Cluster, load


def load_yaml(text: str, **kwargs) -> Cluster:
    """Load manifests given as (dedented) YAML text, as `netsim -f -` would."""
    return load(["-"], stdin=io.StringIO(textwrap.dedent(text)), **kwargs)


def node(name: str, ip: str | None = None, labels: dict | None = None,
         taints: list | None = None, extra: str = "") -> str:
    labels = labels or {}
    lines = [f"apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}"]
    if labels:
        lines.append("  labels:\n" + "".join(f"    {k}: {v!r}\n" for k, v in labels.items())
                     .rstrip("\n"))
    if taints:
        lines.append("spec:\n  taints:\n" + "".join(
            f"  - {{key: {t[0]}, effect: {t[1]}}}\n" for t in taints).rstrip("\n"))
    if ip:
        lines.append(f"status:\n  addresses:\n  - {{type: InternalIP, address: {ip}}}")
    return "\n".join(lines) + extra + "\n---\n"


def pod(name: str, namespace: str = "default", node_name: str | None = None,
        labels: dict | None = None, ip: str | None = None, spec: str = "",
        ports: str = "", status: str = "") -> str:
    labels = labels or {"app": name}
    text = (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            "  labels:\n" + "".join(f"    {k}: {v!r}\n" for k, v in labels.items()) +
            "spec:\n" + (f"  nodeName: {node_name}\n" if node_name else "") + spec +
            "  containers:\n  - name: c\n    image: nginx\n" +
            (f"    ports:\n{ports}" if ports else ""))
    if ip or status:
        text += "status:\n" + (f"  podIP: {ip}\n" if ip else "") + status
    return text + "---\n"


def config(spec: str) -> str:
    return ("apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nmetadata:\n  name: netsim\n"
            "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ") + "\n---\n")
