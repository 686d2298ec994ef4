"""Shared helpers for loader tests: write YAML to tmp_path and load it as netsim would."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from netsim.cluster import Cluster, load
from netsim.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = ROOT / "tests" / "data"
# CI keeps a copy of shared/ beside the checkout (../shared); tests that need it skip without it.
SHARED = Path(__file__).resolve().parents[2] / "shared"
REALWORLD = SHARED / "realworld"

# Three kind-style nodes: a tainted control plane and two workers in two zones.
THREE_NODES = """
apiVersion: v1
kind: Node
metadata:
  name: cp
  labels: {kubernetes.io/hostname: cp, node-role.kubernetes.io/control-plane: ""}
spec:
  taints: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
status:
  addresses: [{type: InternalIP, address: 172.18.0.2}]
---
apiVersion: v1
kind: Node
metadata:
  name: w1
  labels: {kubernetes.io/hostname: w1, topology.kubernetes.io/zone: a, disk: ssd}
status:
  addresses: [{type: InternalIP, address: 172.18.0.3}]
---
apiVersion: v1
kind: Node
metadata:
  name: w2
  labels: {kubernetes.io/hostname: w2, topology.kubernetes.io/zone: b}
status:
  addresses: [{type: InternalIP, address: 172.18.0.4}]
"""


def write_inputs(tmp_path: Path, texts: tuple[str, ...], suffix: str = ".yaml") -> list[str]:
    """Each text dedented into its own file (in0.yaml, in1.yaml, ...); their paths."""
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"in{i}{suffix}"
        path.write_text(textwrap.dedent(text))
        paths.append(str(path))
    return paths


@pytest.fixture
def load_text(tmp_path: Path) -> Callable[..., Cluster]:
    """load_text(yaml, yaml2, ..., **load_kwargs): each text is one -f input, loaded in order."""

    def _load(*texts: str, suffix: str = ".yaml", **kwargs) -> Cluster:
        return load(write_inputs(tmp_path, texts, suffix), **kwargs)

    return _load


@pytest.fixture
def load_error(tmp_path: Path) -> Callable[..., str]:
    """load_error(yaml, ...): str() of the one InputError that loading must raise."""

    def _error(*texts: str, suffix: str = ".yaml") -> str:
        with pytest.raises(InputError) as info:
            load(write_inputs(tmp_path, texts, suffix))
        return str(info.value)

    return _error
