"""Shared vocabulary of the generator: the manifest type, named ports, name and choice helpers."""

from __future__ import annotations

import random
from typing import Any, NamedTuple

Manifest = dict[str, Any]


class Port(NamedTuple):
    """A named container port; services and policies refer to it by name."""

    name: str
    number: int
    protocol: str


def _dns_label(text: str, reserve: int = 0) -> str:
    """Trim to a DNS-1123 label, leaving room for a uniqueness suffix."""
    return text[: 63 - reserve].rstrip("-")


def _weighted(rng: random.Random, pairs: tuple[tuple[Any, int], ...]) -> Any:
    """Pick from (value, weight) pairs; the order of pairs is part of the determinism."""
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]
