"""A Deployment's spec.strategy, defaulted and validated as the API server does
(pkg/apis/apps/validation ValidateDeploymentStrategy; apps/v1 SetDefaults_Deployment)."""

from __future__ import annotations

import re

from netsim.fields import Fields
from netsim.model import (
    DEFAULT_SURGE,
    DEFAULT_UNAVAILABLE,
    RECREATE,
    ROLLING_UPDATE,
    DeploymentStrategy,
)

_PERCENT = re.compile(r"[0-9]+%")  # validation IsValidPercent


def parse_strategy(f: Fields) -> DeploymentStrategy:
    """A Deployment's spec.strategy (Fields of that mapping), defaulted and validated."""
    kind = f.enum("type", (ROLLING_UPDATE, RECREATE), default=ROLLING_UPDATE)
    rolling = f.opt_sub("rollingUpdate")
    if kind == RECREATE:
        if rolling is not None:
            raise f.error("rollingUpdate", "may not be specified when strategy `type` is "
                          "'Recreate'")
        return DeploymentStrategy(RECREATE, 0, 0)
    if rolling is None:
        return DeploymentStrategy()
    surge = _int_or_percent(rolling, "maxSurge", DEFAULT_SURGE)
    unavailable = _int_or_percent(rolling, "maxUnavailable", DEFAULT_UNAVAILABLE)
    if isinstance(unavailable, str) and int(unavailable[:-1]) > 100:
        raise rolling.error("maxUnavailable", "must not be greater than 100%")
    if _number(surge) == 0 and _number(unavailable) == 0:
        raise rolling.error("maxUnavailable", "may not be 0 when `maxSurge` is 0")
    return DeploymentStrategy(ROLLING_UPDATE, surge, unavailable)


def _int_or_percent(f: Fields, key: str, default: str) -> int | str:
    value = f.data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise f.error(key, f"must be an integer or a percentage such as '25%', got {value!r}")
    if isinstance(value, str) and not _PERCENT.fullmatch(value):
        raise f.error(key, f"must be an integer or a percentage such as '25%', got {value!r}")
    if isinstance(value, int) and value < 0:
        raise f.error(key, f"must be greater than or equal to 0, got {value}")
    return value


def _number(value: int | str) -> int:
    return int(value[:-1]) if isinstance(value, str) else value
