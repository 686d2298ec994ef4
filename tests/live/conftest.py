"""Fixtures for live mode: a unique prefix per test, its own state directory, and a teardown
that removes whatever the test left (and fails the test if it had to)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netsim.live import kernel, realize
from netsim.live.state import LiveError, load_state

_serial = itertools.count()


def live_skip_reason() -> str | None:
    """Why live mode cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables-restore", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    done = subprocess.run(["unshare", "-n", "iptables-restore"], input="*filter\nCOMMIT\n",
                          text=True, capture_output=True, check=False)
    if done.returncode != 0:
        return f"iptables-restore cannot run in a new network namespace: {done.stderr.strip()}"
    return None


SKIP = live_skip_reason()
needs_kernel = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def prefixed(prefix: str) -> list[str]:
    """The kernel namespaces whose names live mode would give under `prefix`."""
    root = Path(kernel.NETNS_DIR)
    names = os.listdir(root) if root.exists() else []
    return sorted(n for n in names if n.startswith(f"ns-{prefix}-"))


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """State files in a directory of the test's own."""
    path = tmp_path / "run"
    monkeypatch.setenv("NETSIM_RUN_DIR", str(path))
    return path


@pytest.fixture
def prefix(run_dir: Path) -> str:
    """A prefix no other test (or test run) uses; anything left under it is removed after
    the test, and the test fails if something was."""
    name = f"t{os.getpid() % 100000}-{next(_serial)}"
    yield name
    leftovers = prefixed(name)
    with contextlib.suppress(LiveError):  # nothing is up: the test took it down
        realize.teardown(load_state(name))
    for ns in prefixed(name):
        kernel.remove_netns(ns)
    assert not leftovers, f"the test left namespaces behind: {leftovers}"
