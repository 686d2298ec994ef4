"""Strategies as controllers driving a World tick by tick: the Deployment controller's rolling
update and recreate, and a blue-green selector switch (canaries are in rollout_canary), with the
driver and helpers they share.

A tick is one moment: pods due become Ready and deleted pods go, then the controller syncs until
it has nothing left to do (each scale triggers another sync, as informer events do). So with
the Kubernetes documentation's 3-replica nginx example a step pairs "Scaled down ... to 2" with
"Scaled up ... to 2", as the events in its `kubectl describe` carry the same age. A tick where
only time passes (new pods still starting, --ready-delay) is a step that says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.fields import FrozenDict
from netsim.model import Pod, Service, ServicePort, Workload
from netsim.rollout import (
    CLI,
    Rollout,
    RolloutOptions,
    add_others,
    deployment_pods,
    images,
    new_template,
    port_label,
    selects,
)
from netsim.rollout_deploy import (
    RECREATE,
    DeploymentStrategy,
    ReplicaSetState,
    max_unavailable,
    recreate_sync,
    resolve_fenceposts,
    rolling_sync,
    scaled_value,
)
from netsim.rollout_mesh import MeshRoute
from netsim.rollout_world import Group, Step, Version, World
from netsim.workloads import TEMPLATE_HASH_LABEL, template_hash

MAX_TICKS = 10_000
MAX_PASSES = 1_000


@dataclass(frozen=True, slots=True)
class Context:
    cluster: Cluster
    service: Service
    port: ServicePort
    options: RolloutOptions
    route: MeshRoute | None
    behind: list[Workload]  # Deployments whose pod template the Service selects


def drive(world: World, first: str, sync: Callable[[], list[str]],
           after: Callable[[], list[str]], title: Callable[[], str]) -> list[Step]:
    """Steps until nothing changes and nothing is pending (done, or stuck)."""
    steps = [world.snapshot(first, [])]
    for _ in range(MAX_TICKS):
        changes = world.advance()
        events: list[str] = []
        for _ in range(MAX_PASSES):
            done = sync()
            if not done:
                break
            events += done
        else:
            raise RuntimeError("the controller never settles")
        events += after()
        if not changes and not events:
            events = world.waiting()  # time passes: the wire stays as it is
            if not events:
                return steps
        steps.append(world.snapshot(title(), changes + events))
    raise RuntimeError("the rollout never ends")


def make_world(ctx: Context, mesh_first: bool = False, route: MeshRoute | None = None) -> World:
    return World(ctx.cluster, ctx.service, ctx.port, ctx.options.ready_delay,
                 route if route is not None else ctx.route, mesh_first)


def result(ctx: Context, world: World, strategy: str, parameters: dict, summary: list[str],
            steps: list[Step], complete: bool, notes: list[str] = (),
            canary_by: str | None = None) -> Rollout:
    notes = [*notes, *world.notes, *(world.route.notes if world.route else ())]
    seen = {r.version for s in steps for r in s.endpoints}
    versions = [v for v in world.versions() if v.name in world.groups or v.name in seen]
    if not complete:
        notes.append("the rollout stalls here: a pod never becomes Ready (unschedulable?) or "
                     "the controller cannot proceed")
    return Rollout(ctx.service.key, port_label(ctx.port), strategy, canary_by,
                   FrozenDict(parameters), tuple(summary), tuple(versions),
                   tuple(steps), tuple(dict.fromkeys(notes)), complete)


def deployment(ctx: Context, name: str | None) -> Workload:
    """The Deployment named by --deployment, or the only one behind the Service."""
    ns = ctx.service.namespace
    if name is not None:
        found = next((w for w in ctx.cluster.workloads if w.meta.kind == "Deployment"
                      and w.namespace == ns and w.name == name), None)
        if found is None:
            raise InputError(f"no Deployment {ns}/{name} in the input", obj=CLI,
                             field="--deployment")
        if found not in ctx.behind:
            raise InputError(f"Service {ctx.service.key} does not select the pods of "
                             f"Deployment {ns}/{name}", obj=CLI, field="--deployment")
        return found
    if not ctx.behind:
        raise no_deployment(ctx)
    if len(ctx.behind) > 1:
        names = ", ".join(w.name for w in ctx.behind)
        raise InputError(f"{len(ctx.behind)} Deployments back Service {ctx.service.key} "
                         f"({names}): choose one with --deployment, or use --strategy canary",
                         obj=CLI, field="--deployment")
    return ctx.behind[0]


def strategy_of(ctx: Context, deploy: Workload) -> DeploymentStrategy:
    """The Deployment's spec.strategy, unless the options replace it (a what-if)."""
    return ctx.options.strategies.get(deploy.key) or deploy.strategy or DeploymentStrategy()


def no_deployment(ctx: Context) -> InputError:
    """Nothing to roll: say which other controller backs the Service, if one does."""
    others = [f"{w.meta.kind} {w.key}" for w in ctx.cluster.workloads
              if w.namespace == ctx.service.namespace and w.meta.kind != "Deployment"
              and selects(ctx.service.selector, w.template.labels)]
    tail = f" (it selects the pods of {', '.join(others)}; netsim rolls out Deployments)" \
        if others else ""
    return InputError(f"no Deployment's pod template matches the selector of Service "
                      f"{ctx.service.key}{tail}", obj=CLI, field="--service")


def _fence(value: int | str, replicas: int, result: int, rounding: str) -> str:
    if isinstance(value, str):
        return f"{value} of {replicas} = {result} (rounded {rounding})"
    return str(result)


def _replica_sets(pods: list[Pod], fallback: str) -> dict[str, list[Pod]]:
    """A Deployment's pods by ReplicaSet, oldest first (by creation time, then name)."""
    groups: dict[str, list[Pod]] = defaultdict(list)
    for p in pods:
        groups[p.owner.name if p.owner else fallback].append(p)
    return dict(sorted(groups.items(), key=lambda kv: (min(p.meta.created or "" for p in kv[1]),
                                                       kv[0])))


def existing_group(world: World, deploy: Workload, role: str, detail: str,
                    display: bool = True) -> str:
    """A Deployment whose pods exist, as one group (for blue-green and canaries)."""
    pods = deployment_pods(world.cluster, deploy)
    owner = pods[0].owner.name if pods and pods[0].owner else \
        f"{deploy.name}-{template_hash(deploy.template)}"
    extra = FrozenDict({TEMPLATE_HASH_LABEL: owner.rsplit("-", 1)[-1]})
    world.add_group(Group(Version(deploy.name, role, f"Deployment/{deploy.name}", detail),
                          deploy.template, owner, len(pods), extra,
                          f"Deployment {deploy.name}" if display else ""))
    for p in pods:
        world.add_pod(p, world.groups[deploy.name].version)
    return deploy.name


def created_group(world: World, name: str, role: str, template, detail: str) -> str:
    rs_hash = template_hash(template)
    world.add_group(Group(Version(name, role, f"Deployment/{name}", detail), template,
                          f"{name}-{rs_hash}", 0, FrozenDict({TEMPLATE_HASH_LABEL: rs_hash}),
                          f"Deployment {name}"))
    return name


def sibling(name: str, old: str | None, new: str) -> str:
    """web-blue -> web-green: the new version's Deployment name."""
    if old and name.endswith(f"-{old}"):
        return f"{name[:-len(old)]}{new}"
    return f"{name}-{new}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def ready_phrase(delay: int) -> str:
    after = "the next step" if delay == 0 else f"{delay + 1} steps later"
    return f"a new pod is Ready at {after} after the step that creates it (--ready-delay {delay})"


# ---------------------------------------------------------------- rolling update / recreate


def rolling(ctx: Context) -> Rollout:
    deploy = deployment(ctx, ctx.options.deployment)
    strategy = strategy_of(ctx, deploy)
    desired = deploy.replicas or 0
    world = make_world(ctx)
    pods = deployment_pods(ctx.cluster, deploy)
    olds = []
    for rs, members in _replica_sets(pods, deploy.name).items():
        version = Version(rs, "old", f"Deployment/{deploy.name}",
                          f"image {images(members[0].spec)}")
        world.add_group(Group(version, members[0].spec, rs, len(members)))
        for p in members:
            world.add_pod(p, version)
        olds.append(rs)
    template, change = new_template(deploy.template, ctx.options)
    if not deploy.selector.matches(template.labels):
        raise InputError(f"the new pods' labels would not match the selector of Deployment "
                         f"{deploy.key} ({deploy.selector}): the API server rejects that "
                         "template", obj=CLI, field="--new-version")
    new = f"{deploy.name}-{template_hash(template)}"
    if new in world.groups:
        raise InputError("the new template equals the current one: Kubernetes starts no "
                         "rollout", obj=CLI, field="--to-image")
    world.add_group(Group(Version(new, "new", f"Deployment/{deploy.name}", change), template,
                          new, 0, FrozenDict({TEMPLATE_HASH_LABEL: new.rsplit("-", 1)[1]})))
    add_others(world, ctx.cluster, deploy.namespace, {p.key for p in pods})
    recreate = strategy.type == RECREATE

    def sync() -> list[str]:
        state = ReplicaSetState(new, world.groups[new].replicas, world.available(new))
        old_states = [ReplicaSetState(o, world.groups[o].replicas, world.available(o))
                      for o in olds]
        if recreate:
            actions = recreate_sync(desired, state, old_states,
                                    any(world.running(o) for o in olds))
        else:
            actions = rolling_sync(desired, strategy, state, old_states)
        return [world.scale(name, count) for name, count in actions]

    def done() -> bool:
        return (world.groups[new].replicas == desired and world.available(new) == desired
                and not any(world.running(o) for o in olds))

    steps = drive(world, "before the update", sync, lambda: [],
                   lambda: "rollout complete" if done() else "")
    params = {"deployment": deploy.key, "type": strategy.type, "replicas": desired,
              "newReplicaSet": new, "change": change, "readyDelay": ctx.options.ready_delay}
    summary = [f"Deployment {deploy.key}: {strategy.type}, {plural(desired, 'replica')}; "
               f"new pods: {change}"]
    if recreate:
        summary.append("Recreate: every old pod is gone before a new one is created, so the "
                       "Service has no endpoint in between")
    else:
        surge, unavailable = resolve_fenceposts(strategy.max_surge, strategy.max_unavailable,
                                                desired)
        raw = scaled_value(strategy.max_unavailable, desired, False)
        unavailable = max_unavailable(strategy, desired)
        params.update({"maxSurge": strategy.max_surge, "maxUnavailable": strategy.max_unavailable,
                       "surge": surge, "unavailable": unavailable,
                       "maxPods": desired + surge, "minAvailable": desired - unavailable})
        forced = " (both rounded to 0, so the controller allows 1)" if raw == 0 and \
            surge == 0 else ""
        summary.append(f"maxSurge {_fence(strategy.max_surge, desired, surge, 'up')}, "
                       "maxUnavailable "
                       f"{_fence(strategy.max_unavailable, desired, unavailable, 'down')}"
                       f"{forced}: at most {desired + surge} pods, at least "
                       f"{desired - unavailable} available")
    summary.append(ready_phrase(ctx.options.ready_delay))
    return result(ctx, world, "recreate" if recreate else "rolling", params, summary, steps,
                   done())


# ---------------------------------------------------------------- blue-green


def blue_green(ctx: Context) -> Rollout:
    blue = deployment(ctx, ctx.options.deployment) if ctx.options.deployment or \
        len(ctx.behind) <= 1 else _active(ctx)
    key, green_value, green = _green(ctx, blue)
    blue_value = blue.template.labels.get(key)
    if blue_value is None:
        raise InputError(f"the pods of Deployment {blue.key} carry no {key!r} label: the "
                         "Service cannot tell blue from green", obj=CLI, field="--new-version")
    world = make_world(ctx)
    notes = []
    if ctx.service.selector.get(key) != blue_value:
        notes.append(f"Service {ctx.service.key} selects {labels_text(ctx.service.selector)}, "
                     f"which takes green pods too; blue-green pins it to {key}={blue_value} "
                     "until the switch")
        world.selector[key] = blue_value
    taken = {p.key for p in deployment_pods(ctx.cluster, blue)}
    existing_group(world, blue, "blue", f"{key}={blue_value}, image {images(blue.template)}")
    target = blue.replicas or 0
    if target == 0:
        raise InputError(f"Deployment {blue.key} has 0 replicas: nothing to switch", obj=CLI,
                         field="--service")
    if isinstance(green, Workload):
        taken |= {p.key for p in deployment_pods(ctx.cluster, green)}
        name = existing_group(world, green, "green",
                               f"{key}={green_value}, image {images(green.template)}")
        target = green.replicas or target
        change = "existing Deployment"
    else:
        template, change = new_template(blue.template, ctx.options, {key: green_value})
        name = created_group(world, green, "green", template, change)
    add_others(world, ctx.cluster, blue.namespace, taken)
    state = {"phase": "preview", "at": -1}

    def sync() -> list[str]:
        group = world.groups[name]
        if state["phase"] == "preview":
            if group.replicas < target:
                return [world.scale(name, target)]
            if world.available(name) < target:
                return []
            world.selector[key] = green_value
            state.update(phase="switched", at=world.tick)
            return [f"Service {ctx.service.key} selector switched from {key}={blue_value} to "
                    f"{key}={green_value}"]
        if state["phase"] == "switched" and world.tick > state["at"]:
            state["phase"] = "done"
            return [world.scale(blue.name, 0) + " (after Argo Rollouts' scaleDownDelaySeconds, "
                    "30 s by default)"]
        return []

    titles = {"preview": "preview: green starting, not selected",
              "switched": "switch: green serves", "done": "blue scaled down"}

    def title() -> str:
        if state["phase"] == "done" and not world.running(blue.name):
            return "complete"
        return titles[state["phase"]]

    steps = drive(world, "blue serves", sync, lambda: [], title)
    params = {"blue": blue.name, "green": name, "label": key, "blueValue": blue_value,
              "greenValue": green_value, "replicas": target,
              "readyDelay": ctx.options.ready_delay}
    summary = [f"blue: Deployment {blue.key} ({key}={blue_value}); green: {name} ({change})",
               f"the Service's selector flips {key}={blue_value} -> {key}={green_value} once "
               "every green pod is Ready; kube-proxy follows the EndpointSlice at once, but "
               "open keep-alive connections stay on blue until they close",
               ready_phrase(ctx.options.ready_delay)]
    return result(ctx, world, "blue-green", params, summary, steps,
                   state["phase"] == "done" and not world.running(blue.name), notes)


def _active(ctx: Context) -> Workload:
    """With several Deployments behind the Service: the blue one is the largest."""
    return sorted(ctx.behind, key=lambda w: (-(w.replicas or 0), w.name))[0]


def _green(ctx: Context, blue: Workload) -> tuple[str, str, Workload | str]:
    """(label key, green value, the green Deployment or the name of one to create)."""
    ns = ctx.service.namespace
    deployments = [w for w in ctx.cluster.workloads if w.meta.kind == "Deployment"
                   and w.namespace == ns and w is not blue]
    if ctx.options.new_version:
        key, value = ctx.options.new_version
        wanted = {**(ctx.service.selector or {}), key: value}
        for w in deployments:
            if selects(wanted, w.template.labels):
                return key, value, w
        return key, value, sibling(blue.name, blue.template.labels.get(key), value)
    for w in deployments:
        differ = [k for k in blue.template.labels
                  if w.template.labels.get(k) not in (None, blue.template.labels[k])]
        same = all(w.template.labels.get(k) == v for k, v in (ctx.service.selector or {}).items()
                   if k not in differ)
        if len(differ) == 1 and same:
            return differ[0], w.template.labels[differ[0]], w
    raise InputError(f"blue-green needs a green version of Deployment {blue.key}: give "
                     "--new-version LABEL=VALUE (e.g. version=green)", obj=CLI,
                     field="--new-version")


def labels_text(labels) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())
