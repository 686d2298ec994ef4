"""Canaries: by replica ratio (Argo Rollouts' basic canary: one Service over a stable and a
canary Deployment, each version's share its share of ready endpoints) or by mesh weight (Argo
Rollouts' Istio traffic routing: the VirtualService's weights move step by step).

Sources: argoproj/argo-rollouts utils/replicaset/canary.go (replica counts per setWeight) and
rollout/trafficrouting.go (the previous weight stays until the canary ReplicaSet is at its
desired count and available; with traffic routing the canary gets ceil(weight x replicas)
pods and the stable keeps all of its own).
"""

from __future__ import annotations

from dataclasses import replace

from netsim.errors import InputError
from netsim.fields import FrozenDict
from netsim.model import Workload
from netsim.rollout import (
    CLI,
    DEFAULT_WEIGHTS,
    Rollout,
    add_others,
    deployment_pods,
    images,
    new_template,
    selects,
)
from netsim.rollout_deploy import (
    RECREATE,
    DeploymentStrategy,
    ReplicaSetState,
    argo_fenceposts,
    basic_canary_counts,
    traffic_routed_canary_counts,
)
from netsim.rollout_mesh import Destination, MeshRoute, service_fqdn, with_weight
from netsim.rollout_plans import (
    Context,
    created_group,
    deployment,
    drive,
    existing_group,
    labels_text,
    make_world,
    no_deployment,
    ready_phrase,
    result,
    sibling,
    strategy_of,
)


def canary(ctx: Context) -> Rollout:
    by = ctx.options.canary_by or ("mesh" if ctx.route is not None else "replicas")
    weights = ctx.options.weights or DEFAULT_WEIGHTS
    if by == "mesh":
        return mesh_canary(ctx, weights)
    return _replica_canary(ctx, weights)


def pick_pair(ctx: Context, canary_labels: dict | None = None,
              stable_labels: dict | None = None) -> tuple[Workload | None, Workload | None]:
    """(stable, canary) Deployments behind the Service: --deployment names the stable,
    --new-version (or subset labels) the canary; otherwise the largest is the stable."""
    behind = ctx.behind
    canary_labels = canary_labels or (dict([ctx.options.new_version])
                                      if ctx.options.new_version else None)
    canary = None
    if canary_labels:
        canary = next((w for w in behind if selects(canary_labels, w.template.labels)), None)
    if ctx.options.deployment:
        stable = deployment(ctx, ctx.options.deployment)
    else:
        rest = [w for w in behind if w is not canary and
                (not stable_labels or selects(stable_labels, w.template.labels))]
        rest.sort(key=lambda w: (-(w.replicas or 0), w.name))
        stable = rest[0] if rest else None
    if canary is None and not canary_labels and stable is not None:
        others = sorted((w for w in behind if w is not stable),
                        key=lambda w: (w.replicas or 0, w.name))
        if len(others) == 1:
            canary = others[0]
        elif others:
            names = ", ".join(w.name for w in others)
            raise InputError(f"which is the canary ({names})? give --new-version LABEL=VALUE",
                             obj=CLI, field="--new-version")
    return stable, canary


def _replica_canary(ctx: Context, weights: tuple[int, ...]) -> Rollout:
    stable, existing = pick_pair(ctx)
    if stable is None:
        raise no_deployment(ctx)
    strategy = strategy_of(ctx, stable)
    if strategy.type == RECREATE:
        strategy = DeploymentStrategy()
    world = make_world(ctx)
    taken = {p.key for p in deployment_pods(ctx.cluster, stable)}
    existing_group(world, stable, "stable", f"image {images(stable.template)}")
    if existing is not None:
        taken |= {p.key for p in deployment_pods(ctx.cluster, existing)}
        name = existing_group(world, existing, "canary", f"image {images(existing.template)}")
        change = "existing Deployment"
    else:
        key = ctx.options.new_version[0] if ctx.options.new_version else None
        template, change = new_template(stable.template, ctx.options)
        if not selects(ctx.service.selector, template.labels):
            raise InputError(f"Service {ctx.service.key} selects "
                             f"{labels_text(ctx.service.selector)}: canary pods labelled {change} "
                             "would get no traffic; a canary by replicas needs one selector "
                             "over both (--strategy blue-green flips it)", obj=CLI,
                             field="--new-version")
        new = ctx.options.new_version[1] if ctx.options.new_version else "canary"
        name = created_group(world, sibling(stable.name, stable.template.labels.get(key)
                                              if key else None, new), "canary", template, change)
    add_others(world, ctx.cluster, stable.namespace, taken)
    total = world.groups[stable.name].replicas + world.groups[name].replicas
    surge, unavailable = argo_fenceposts(strategy.max_surge, strategy.max_unavailable, total)
    state = {"index": 0, "title": "", "done": False}

    def states() -> tuple[ReplicaSetState, ReplicaSetState]:
        return (ReplicaSetState(name, world.groups[name].replicas, world.available(name)),
                ReplicaSetState(stable.name, world.groups[stable.name].replicas,
                                world.available(stable.name)))

    def sync() -> list[str]:
        if state["done"]:
            return []
        weight = weights[state["index"]]
        new, old = states()
        n_new, n_stable = basic_canary_counts(total, weight, new, old, surge, unavailable)
        events = []
        if n_stable != old.replicas:
            events.append(world.scale(stable.name, n_stable))
        if n_new != new.replicas:
            events.append(world.scale(name, n_new))
        state["title"] = f"setWeight {weight}"
        return events

    def after() -> list[str]:
        if state["done"]:
            state["title"] = "complete" if weights[-1] == 100 else state["title"]
            return []
        weight = weights[state["index"]]
        new, old = states()
        if basic_canary_counts(total, weight, new, old, surge, unavailable) != \
                (new.replicas, old.replicas) or new.available != new.replicas:
            state["title"] = f"setWeight {weight}"
            return []
        state["title"] = f"setWeight {weight} reached"
        pods = new.replicas + old.replicas
        share = f"{new.replicas}/{pods} pods" if pods else "no pods"
        if state["index"] + 1 < len(weights):
            state["index"] += 1
        else:
            state["done"] = True
        return [f"setWeight {weight} reached: canary {share}"]

    steps = drive(world, "before the canary", sync, after, lambda: state["title"])
    params = {"stable": stable.name, "canary": name, "replicas": total, "weights": weights,
              "maxSurge": strategy.max_surge, "maxUnavailable": strategy.max_unavailable,
              "surge": surge, "unavailable": unavailable,
              "readyDelay": ctx.options.ready_delay}
    summary = [f"stable: Deployment {stable.key}; canary: {name} ({change}); one Service over "
               "both, so each version's share is its share of ready endpoints",
               f"Argo Rollouts' basic canary over {total} replicas: the canary count nearest "
               f"each setWeight ({', '.join(map(str, weights))}), within maxSurge "
               f"{strategy.max_surge} = {surge} and maxUnavailable {strategy.max_unavailable} "
               f"= {unavailable}", ready_phrase(ctx.options.ready_delay)]
    return result(ctx, world, "canary", params, summary, steps, state["done"],
                   canary_by="replicas")


def synthesized_route(ctx: Context, stable: Workload, key: str, value: str) -> MeshRoute:
    """A VirtualService routing subsets key=stable/key=value, when the input has none."""
    stable_value = stable.template.labels.get(key)
    if stable_value is None:
        raise InputError(f"the pods of Deployment {stable.key} carry no {key!r} label to tell "
                         "the subsets apart", obj=CLI, field="--new-version")
    host = service_fqdn(ctx.service)
    subsets = FrozenDict({stable_value: FrozenDict({key: stable_value}),
                          value: FrozenDict({key: value})})
    note = (f"no VirtualService binds {host}: assumed one routing subsets {key}={stable_value} "
            f"and {key}={value} by weight")
    return MeshRoute("(assumed)", "http[0]", (Destination(host, stable_value, 100,
                                                          subsets[stable_value]),),
                     subsets, None, (note,))


def replace_subsets(route: MeshRoute, name: str, labels: FrozenDict) -> MeshRoute:
    """The route with a subset the DestinationRule lacks, as Argo's canary subset adds it."""
    subsets = FrozenDict({**route.subsets, name: labels})
    destinations = tuple(replace(d, labels=labels) if d.local and d.subset == name else d
                         for d in route.destinations)
    return replace(route, subsets=subsets, destinations=destinations)


def mesh_canary(ctx: Context, weights: tuple[int, ...]) -> Rollout:
    route, notes = ctx.route, []
    version = ctx.options.new_version
    if route is None:
        if not version:
            raise InputError("a canary by mesh weight without a VirtualService needs "
                             "--new-version LABEL=VALUE to name the canary subset", obj=CLI,
                             field="--new-version")
        stable, _ = pick_pair(ctx, canary_labels=dict([version]))
        if stable is None:
            raise no_deployment(ctx)
        route = synthesized_route(ctx, stable, *version)
    subset, labels, more = _canary_subset(route, version)
    notes += more
    if route.subsets.get(subset) != labels:
        route = replace_subsets(route, subset, labels)
    stable_dest = max((d for d in route.destinations if d.local and d.subset != subset),
                      key=lambda d: d.weight, default=None)
    stable_labels = dict(stable_dest.labels) if stable_dest and stable_dest.labels else None
    stable, existing = pick_pair(ctx, canary_labels=dict(labels), stable_labels=stable_labels)
    world = make_world(ctx, mesh_first=True, route=route)
    taken: set[str] = set()
    if stable is not None:
        taken |= {p.key for p in deployment_pods(ctx.cluster, stable)}
        existing_group(world, stable, "stable", _detail(stable.template, stable_labels))
    created = existing is None
    if existing is not None:
        taken |= {p.key for p in deployment_pods(ctx.cluster, existing)}
        name = existing_group(world, existing, "canary", _detail(existing.template, labels))
        change = "existing Deployment"
    else:
        if stable is None:
            raise InputError(f"no Deployment runs the stable subset of {route.virtual_service} "
                             "to copy the canary from; name it with --deployment", obj=CLI,
                             field="--deployment")
        template, change = new_template(stable.template, ctx.options, labels)
        old = next(iter(stable_labels.values())) if stable_labels and len(stable_labels) == 1 \
            else None
        name = created_group(world, sibling(stable.name, old, subset), "canary", template,
                              change)
    add_others(world, ctx.cluster, ctx.service.namespace, taken)
    replicas = stable.replicas or 0 if stable is not None else 0
    host = service_fqdn(ctx.service)
    state = {"index": 0, "weight": _weight(route, subset), "title": "", "done": False}

    def want() -> int:
        if not created:
            return world.groups[name].replicas
        return traffic_routed_canary_counts(replicas, weights[state["index"]])[0]

    def sync() -> list[str]:
        if state["done"]:
            return []
        weight = weights[state["index"]]
        state["title"] = f"setWeight {weight}"
        events = []
        if created and world.groups[name].replicas != want():
            events.append(world.scale(name, want()))
        ready = world.available(name)
        if (weight == 0 or ready == want() > 0) and state["weight"] != weight:
            world.route = with_weight(world.route, subset, labels, weight, host)
            state["weight"] = weight
            split = ", ".join(f"{n} {w}" for n, w in world.route.weights())
            events.append(f"VirtualService {route.virtual_service} weights: {split}")
        return events

    def after() -> list[str]:
        if state["done"]:
            return []
        weight = weights[state["index"]]
        if state["weight"] != weight:
            return []
        state["title"] = f"setWeight {weight} reached"
        if state["index"] + 1 < len(weights):
            state["index"] += 1
        else:
            state["done"] = True
        return [f"setWeight {weight} reached"]

    steps = drive(world, "before the canary", sync, after, lambda: state["title"])
    if not state["done"]:
        notes.append(f"the canary subset {subset} has no Ready pod: Argo Rollouts keeps the "
                     "previous weight")
    elif weights[-1] == 100:
        notes.append("at 100 Argo Rollouts promotes: the canary becomes the stable and the old "
                     "stable is scaled down")
    params = {"virtualService": route.virtual_service, "route": route.route,
              "destinationRule": route.destination_rule, "stableSubset":
              stable_dest.name if stable_dest else None, "canarySubset": subset,
              "stable": stable.name if stable else None, "canary": name,
              "weights": weights, "readyDelay": ctx.options.ready_delay}
    summary = [f"VirtualService {route.virtual_service} {route.route}: "
               f"{_weights(route)}; DestinationRule {route.destination_rule or '(none)'}: "
               + ", ".join(f"{n} {{{labels_text(ls)}}}" for n, ls in route.subsets.items()),
               f"stable: {stable.name if stable else '(no Deployment)'}; canary: subset "
               f"{subset}, {name} ({change})",
               "meshed clients split requests by weight, whatever the replica counts; clients "
               "without a sidecar go through kube-proxy, which splits connections per ready "
               "endpoint"]
    if created:
        summary.append(f"Argo Rollouts' traffic routing: the canary gets ceil(weight x "
                       f"{replicas}) pods and the weight moves once they are Ready; the stable "
                       f"keeps {replicas}")
        summary.append(ready_phrase(ctx.options.ready_delay))
    return result(ctx, world, "canary", params, summary, steps, state["done"], notes,
                   canary_by="mesh")


def _canary_subset(route: MeshRoute,
                   version: tuple[str, str] | None) -> tuple[str, FrozenDict, list[str]]:
    """The canary subset: the one labelled --new-version, else the lightest of the route's
    weighted subsets, else the only subset the route does not use."""
    if version:
        key, value = version
        for name, labels in route.subsets.items():
            if labels.get(key) == value:
                return name, labels, []
        where = f"DestinationRule {route.destination_rule}" if route.destination_rule else \
            "no DestinationRule"
        return value, FrozenDict({key: value}), [
            f"{where} defines no subset with {key}={value}: assumed subset {value} "
            f"{{{key}: {value}}}, as Argo Rollouts adds its canary subset"]
    local = [d for d in route.destinations if d.local and d.subset]
    if len(local) > 1:
        lightest = min(reversed(local), key=lambda d: d.weight)
        if lightest.labels is None:
            raise InputError(f"{route.virtual_service} routes to subset {lightest.subset!r}, "
                             "which no DestinationRule defines; give --new-version "
                             "LABEL=VALUE", obj=CLI, field="--new-version")
        return lightest.subset, lightest.labels, []
    unused = [n for n in route.subsets if n not in {d.subset for d in local}]
    if len(unused) == 1:
        return unused[0], route.subsets[unused[0]], []
    raise InputError(f"which subset is the canary ({', '.join(unused) or 'none defined'})? "
                     "give --new-version LABEL=VALUE", obj=CLI, field="--new-version")


def _weight(route: MeshRoute, subset: str) -> int:
    return sum(d.weight for d in route.destinations if d.local and d.subset == subset)


def _weights(route: MeshRoute) -> str:
    return ", ".join(f"{n} {w}" for n, w in route.weights())


def _detail(template, labels) -> str:
    where = f"{labels_text(labels)}, " if labels else ""
    return f"{where}image {images(template)}"
