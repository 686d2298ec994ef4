"""What a live cluster is made of, on disk: its namespaces' names and the inputs it was built
from, so that `probe` and `down` find it (and `down` can undo an `up` that was killed)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netsim.errors import Source
from netsim.sources import RawDoc

DEFAULT_PREFIX = "netsim"
PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
RUN_DIR_ENV = "NETSIM_RUN_DIR"  # where state files live (default /run/netsim)
UNDERLAY = "underlay"  # the netsim id of the namespace holding the node network's bridge
EXTERNAL = "external"  # netsim.dataplane.EXTERNAL_NETNS: the client outside the cluster


class LiveError(Exception):
    """Live mode cannot do what was asked (not root, already up, a tool missing, a kernel
    feature absent): one line for the user, exit 2."""


def check_prefix(prefix: str) -> str:
    if not PREFIX_PATTERN.match(prefix):
        raise LiveError(f"--prefix {prefix!r}: use 1-16 lowercase letters, digits or dashes")
    return prefix


def netns_name(prefix: str, netsim_id: str) -> str:
    """The kernel namespace for a netsim id: `ns-<prefix>-<8 hex of SHA-1(id)>`, so that
    names are stable, short, and unlikely to meet a user's own namespaces."""
    digest = hashlib.sha1(netsim_id.encode()).hexdigest()[:8]
    return f"ns-{prefix}-{digest}"


def run_dir() -> Path:
    """/run/netsim (root's runtime directory), $NETSIM_RUN_DIR when set, else
    $XDG_RUNTIME_DIR/netsim for a user who cannot write /run."""
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        return Path(given)
    if os.geteuid() == 0 or not os.environ.get("XDG_RUNTIME_DIR"):
        return Path("/run/netsim")
    return Path(os.environ["XDG_RUNTIME_DIR"]) / "netsim"


def state_path(prefix: str) -> Path:
    return run_dir() / f"{prefix}.json"


@dataclass
class LiveState:
    """One live cluster. `namespaces` maps netsim ids ("host:<node>", "pod:<ns>/<name>",
    "underlay", "external") to kernel namespace names, written before each is created so that
    `down` removes whatever an interrupted `up` left. `inputs` are the manifests as loaded (one
    list of documents per input, as netsim.cluster layers them) and `overrides` the flags, so
    that `probe` rebuilds the same emulated dataplane."""

    prefix: str
    namespaces: dict[str, str] = field(default_factory=dict)
    server_pid: int | None = None
    inputs: list[dict] = field(default_factory=list)  # [{"file": str, "docs": [obj, ...]}]
    overrides: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    complete: bool = False  # up finished: the servers answer and the rules are loaded

    def save(self) -> None:
        """Write atomically (a reader never sees half a file)."""
        path = state_path(self.prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{self.prefix}.")
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=1, default=str)  # YAML dates become text
        os.replace(tmp, path)


def stored_inputs(layers: list[list[RawDoc]]) -> list[dict]:
    """Loaded inputs as the state file keeps them (one entry per input)."""
    return [{"file": docs[0].source.file if docs else "", "docs": [d.data for d in docs]}
            for docs in layers]


def restored_inputs(stored: list[dict]) -> list[list[RawDoc]]:
    return [[RawDoc(data, Source(layer["file"], i + 1)) for i, data in enumerate(layer["docs"])]
            for layer in stored]


def restored_overrides(stored: dict) -> dict:
    """JSON has no tuples: the CIDR overrides come back as the tuples Settings holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}


def claim(prefix: str) -> LiveState:
    """A new state file for `prefix`, created exclusively: a second `up` fails here."""
    path = state_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise LiveError(f"a live cluster with prefix {prefix!r} is already up ({path}): run "
                        f"`netsim live down{_flag(prefix)}` first, or use another --prefix") \
            from None
    os.close(fd)
    state = LiveState(prefix)
    state.save()
    return state


def load_state(prefix: str) -> LiveState:
    path = state_path(prefix)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LiveError(f"no live cluster with prefix {prefix!r} is up (no {path}): run "
                        f"`netsim live up -f CLUSTER{_flag(prefix)}` first") from None
    except json.JSONDecodeError as exc:
        raise LiveError(f"{path} is not a netsim state file ({exc}); remove it by hand") \
            from None
    return LiveState(**data)


def forget(prefix: str) -> None:
    path = state_path(prefix)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the directory too, once no live cluster is left
        path.parent.rmdir()


def _flag(prefix: str) -> str:
    return "" if prefix == DEFAULT_PREFIX else f" --prefix {prefix}"
