"""Team namespaces, their Namespace manifests and the names already taken in each."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from netsim.generate.common import Manifest, _dns_label

TEAMS = (
    "payments",
    "checkout",
    "search",
    "identity",
    "platform",
    "data",
    "ml",
    "growth",
    "messaging",
    "observability",
)
TEAM_WEIGHTS = (12, 10, 9, 8, 14, 10, 6, 9, 7, 5)
ENVS = ("prod", "staging", "dev")
ENV_WEIGHTS = (50, 30, 20)


@dataclass
class _Namespace:
    """A team namespace plus the names already taken in it, so generated names never clash."""

    name: str
    team: str
    env: str
    used_names: dict[str, set[str]] = field(default_factory=dict)

    def claim(self, kind: str, base: str) -> str:
        """Reserve a unique name per kind, because generated names collide in big namespaces."""
        used = self.used_names.setdefault(kind, set())
        name, n = _dns_label(base), 2
        while name in used:
            suffix = f"-{n}"
            name, n = _dns_label(base, len(suffix)) + suffix, n + 1
        used.add(name)
        return name


def _namespaces(rng: random.Random, count: int) -> list[_Namespace]:
    """Team namespaces; prod dominates, as in most shared clusters."""
    width = max(4, len(str(count)))
    return [
        _Namespace(
            name=f"ns-{i:0{width}d}",
            team=rng.choices(TEAMS, weights=TEAM_WEIGHTS)[0],
            env=rng.choices(ENVS, weights=ENV_WEIGHTS)[0],
        )
        for i in range(1, count + 1)
    ]


def _namespace_manifest(name: str, labels: dict[str, str]) -> Manifest:
    """A Namespace carrying the immutable metadata.name label like the API server sets."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**labels, "kubernetes.io/metadata.name": name}},
    }
