"""Replica arithmetic of rollout controllers: the Deployment controller, Argo Rollouts canary.

Pure functions over small ReplicaSet records, restating upstream code:
- kubernetes pkg/controller/deployment/rolling.go (rolloutRolling, reconcileNewReplicaSet,
  reconcileOldReplicaSets, cleanupUnhealthyReplicas, scaleDownOldReplicaSetsForRollingUpdate),
  recreate.go (rolloutRecreate) and util/deployment_util.go (NewRSNewReplicas, MaxUnavailable,
  ResolveFenceposts); apimachinery intstr.GetScaledValueFromIntOrPercent;
- kubernetes pkg/apis/apps/validation ValidateDeploymentStrategy (what the API server rejects)
  and apps/v1 defaults (RollingUpdate, 25% / 25%);
- argoproj/argo-rollouts utils/replicaset/canary.go (CalculateReplicaCountsForBasicCanary,
  approximateWeightedCanaryStableReplicaCounts, CalculateReplicaCountsForTrafficRoutedCanary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from netsim.model import (  # noqa: F401  (re-exported: the strategy's home is the model)
    DEFAULT_SURGE,
    DEFAULT_UNAVAILABLE,
    RECREATE,
    ROLLING_UPDATE,
    DeploymentStrategy,
)
from netsim.parse.strategy import parse_strategy  # noqa: F401

# Argo's canary defaults its fenceposts as apps/v1 does (DEFAULT_SURGE, DEFAULT_UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class ReplicaSetState:
    """What the controllers read of a ReplicaSet: spec.replicas and status.availableReplicas."""

    name: str
    replicas: int
    available: int = 0


# ---------------------------------------------------------------- fenceposts


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "N%" of total rounded up or down."""
    if isinstance(value, int):
        return value
    product = int(value[:-1]) * total
    return -(-product // 100) if round_up else product // 100


def resolve_fenceposts(max_surge: int | str, max_unavailable: int | str,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both 0 makes unavailable 1.

    Validation forbids 0 and 0 as written, but 1% of 2 rounds down to 0: the controller then
    allows one unavailable pod "on the theory that surge might not work due to quota".
    """
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(strategy: DeploymentStrategy, desired: int) -> int:
    """deploymentutil.MaxSurge: 0 unless RollingUpdate."""
    if strategy.type != ROLLING_UPDATE:
        return 0
    return resolve_fenceposts(strategy.max_surge, strategy.max_unavailable, desired)[0]


def max_unavailable(strategy: DeploymentStrategy, desired: int) -> int:
    """deploymentutil.MaxUnavailable: 0 unless RollingUpdate with replicas; capped at replicas."""
    if strategy.type != ROLLING_UPDATE or desired == 0:
        return 0
    unavailable = resolve_fenceposts(strategy.max_surge, strategy.max_unavailable, desired)[1]
    return min(unavailable, desired)


# ---------------------------------------------------------------- the Deployment controller


def rolling_sync(desired: int, strategy: DeploymentStrategy, new: ReplicaSetState,
                 olds: list[ReplicaSetState]) -> tuple[tuple[str, int], ...]:
    """One pass of rolloutRolling: the ReplicaSets it scales, and to how many replicas.

    `olds` oldest first. The pass scales the new ReplicaSet up if it can and stops there;
    otherwise it scales old ReplicaSets down (unhealthy replicas first). Each scale triggers
    another sync, so callers repeat until a pass returns nothing.
    """
    every = [*olds, new]
    # reconcileNewReplicaSet
    if new.replicas > desired:
        return ((new.name, desired),)
    if new.replicas < desired:
        # NewRSNewReplicas: maxSurge is scaled from the raw value (rounded up)
        surge = scaled_value(strategy.max_surge, desired, True)
        current = sum(r.replicas for r in every)
        most = desired + surge
        if current < most:
            count = new.replicas + min(most - current, desired - new.replicas)
            if count != new.replicas:
                return ((new.name, count),)
    # reconcileOldReplicaSets
    active = [o for o in olds if o.replicas > 0]  # FilterActiveReplicaSets
    if not active:
        return ()
    min_available = desired - max_unavailable(strategy, desired)
    new_unavailable = new.replicas - new.available
    most_down = sum(r.replicas for r in every) - min_available - new_unavailable
    if most_down <= 0:
        return ()
    actions: dict[str, int] = {}
    cleaned = 0
    for i, rs in enumerate(active):  # cleanupUnhealthyReplicas
        if cleaned >= most_down:
            break
        if rs.replicas == rs.available:
            continue
        count = min(most_down - cleaned, rs.replicas - rs.available)
        active[i] = replace(rs, replicas=rs.replicas - count)
        actions[rs.name] = active[i].replicas
        cleaned += count
    # scaleDownOldReplicaSetsForRollingUpdate: available pods of every ReplicaSet
    available = sum(r.available for r in [*active, new])
    if available > min_available:
        total, done = available - min_available, 0
        for rs in active:
            if done >= total:
                break
            if rs.replicas == 0:
                continue
            count = min(rs.replicas, total - done)
            actions[rs.name] = rs.replicas - count
            done += count
    return tuple(actions.items())


def recreate_sync(desired: int, new: ReplicaSetState, olds: list[ReplicaSetState],
                  old_pods_running: bool) -> tuple[tuple[str, int], ...]:
    """One pass of rolloutRecreate: old ReplicaSets to 0; the new one only once no old pod runs
    (terminating pods count as running until they are gone)."""
    down = tuple((o.name, 0) for o in olds if o.replicas > 0)
    if down:
        return down
    if old_pods_running or new.replicas == desired:
        return ()
    return ((new.name, desired),)


# ---------------------------------------------------------------- Argo Rollouts canary


def argo_fenceposts(max_surge_: int | str, max_unavailable_: int | str,
                    replicas: int) -> tuple[int, int]:
    """Argo's MaxSurge / MaxUnavailable: the same fencepost rule, unavailable capped at replicas."""
    if replicas == 0:
        return resolve_fenceposts(max_surge_, max_unavailable_, 0)[0], 0
    surge, unavailable = resolve_fenceposts(max_surge_, max_unavailable_, replicas)
    return surge, min(unavailable, replicas)


def approximate_canary_counts(replicas: int, weight: int, surge: int,
                              max_weight: int = 100) -> tuple[int, int]:
    """(canary, stable) whose ratio is closest to weight/max_weight, as Argo's basic canary picks.

    Candidates are the ceiling and floor of replicas x weight, out of replicas or (when surge
    is allowed) replicas + 1; a tie between floor and ceiling goes to the ceiling, and a weight
    strictly between 0 and 100 keeps at least one canary and one stable pod.
    """
    if replicas == 0:
        return 0, 0
    # Argo computes these in float64; Python floats are the same IEEE doubles.
    ceil = math.ceil(float(replicas * weight) / float(max_weight))
    floor = math.floor(float(replicas * weight) / float(max_weight))
    zero_allowed = weight in (max_weight, 0) or (replicas == 1 and surge == 0)
    options: list[tuple[int, int]] = []
    if ceil < replicas or zero_allowed:
        options.append((ceil, replicas))
    if not _tied(weight, max_weight, replicas) and (floor != 0 or zero_allowed):
        options.append((floor, replicas))
    if surge > 0:
        options.append((ceil, replicas + 1))
        if not _tied(weight, max_weight, replicas + 1) and (floor != 0 or zero_allowed):
            options.append((floor, replicas + 1))
    if not options:
        return 0, replicas
    best = options[0]
    for option in options[1:]:
        if _delta(weight, max_weight, *option) < _delta(weight, max_weight, *best):
            best = option
    return best[0], best[1] - best[0]


def _tied(weight: int, max_weight: int, total: int) -> bool:
    return math.modf(float(total) * (float(weight) / float(max_weight)))[0] == 0.5


def _delta(weight: int, max_weight: int, canary: int, total: int) -> float:
    return abs(float(canary * max_weight) / float(total) - float(weight))


def basic_canary_counts(replicas: int, weight: int, new: ReplicaSetState,
                        stable: ReplicaSetState, surge: int,
                        unavailable: int) -> tuple[int, int]:
    """CalculateReplicaCountsForBasicCanary (no older ReplicaSets): the (canary, stable) replica
    counts for this reconcile, moving toward the weight within maxSurge and maxUnavailable."""
    desired_new, desired_stable = approximate_canary_counts(replicas, weight, surge)
    new_count, stable_count = new.replicas, stable.replicas
    most = replicas + surge
    scale_up = most - (new.replicas + stable.replicas)
    if stable.replicas < desired_stable and scale_up > 0:  # the stable first
        if stable.replicas + scale_up < desired_stable:
            stable_count, scale_up = stable.replicas + scale_up, 0
        else:
            stable_count = desired_stable
            scale_up -= desired_stable - stable.replicas
    if new.replicas < desired_new and scale_up > 0:
        new_count = min(new.replicas + scale_up, desired_new)
    min_available = replicas - unavailable
    increasing = desired_new >= new.replicas
    to_scale_down = _for_scale_down(new, not increasing) + _for_scale_down(stable, increasing)
    if to_scale_down <= min_available:
        return new_count, stable_count
    scale_down = to_scale_down - min_available
    if not increasing:
        if new.replicas > desired_new:
            new_count = max(desired_new, new.replicas - scale_down)
        new_count, stable_count = _within_limits(new, stable, new_count, stable_count, most,
                                                 min_available)
    else:
        if stable.replicas > desired_stable:
            stable_count = max(desired_stable, stable.replicas - scale_down)
        stable_count, new_count = _within_limits(stable, new, stable_count, new_count, most,
                                                 min_available)
    return new_count, stable_count


def traffic_routed_canary_counts(replicas: int, weight: int,
                                 max_weight: int = 100) -> tuple[int, int]:
    """CalculateReplicaCountsForTrafficRoutedCanary without dynamicStableScale: the canary gets
    ceil(weight x replicas) pods and the stable stays fully scaled until promotion."""
    return math.ceil(float(weight) * float(replicas) / float(max_weight)), replicas


def _for_scale_down(rs: ReplicaSetState, ignore_availability: bool) -> int:
    """GetReplicasForScaleDown."""
    if rs.replicas < rs.available or ignore_availability:
        return rs.replicas
    return rs.available


def _within_limits(drain: ReplicaSetState, adjust: ReplicaSetState, drain_count: int,
                   adjust_count: int, most: int, min_available: int) -> tuple[int, int]:
    """adjustReplicaWithinLimits: keep the pair within maxSurge without breaking maxUnavailable."""
    over = max(0, adjust_count + drain_count - most)
    available = min(drain.available, drain_count)
    adjust_count -= over
    available += min(adjust.available, adjust_count)
    extra = max(0, adjust.available - adjust_count)
    adjust_count += min(extra, max(0, min_available - available))
    drain_count -= max(0, adjust_count + drain_count - most)
    return drain_count, adjust_count
