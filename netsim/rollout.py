"""Deployment strategies on the wire: which endpoints and versions get a Service's traffic, step by
step, during a rolling update, a blue-green switch or a canary (by replica ratio or mesh weight).

`simulate(cluster, namespace, name, options) -> Rollout` is the engine; it reads the cluster and
returns frozen steps. The arithmetic of the controllers lives in rollout_deploy, the Istio
routing in rollout_mesh, the moving state in rollout_world, and the strategies in rollout_plans
(rolling, recreate, blue-green) and rollout_canary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.fields import EMPTY, FrozenDict
from netsim.model import Pod, PodTemplate, Service, ServicePort, Workload
from netsim.rollout_deploy import DeploymentStrategy
from netsim.rollout_mesh import find_route
from netsim.rollout_world import Step, Version, World

STRATEGIES = ("rolling", "blue-green", "canary")
CANARY_BY = ("replicas", "mesh")
DEFAULT_WEIGHTS = (10, 50, 100)
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
CLI = "command line"


@dataclass(frozen=True, slots=True)
class RolloutOptions:
    """What to roll and how; None picks what the cluster suggests."""

    strategy: str | None = None  # rolling, blue-green or canary
    deployment: str | None = None  # the Deployment to update (the stable / blue one)
    to_image: str | None = None  # "IMAGE" (first container) or "CONTAINER=IMAGE"
    new_version: tuple[str, str] | None = None  # a label the new pods carry
    weights: tuple[int, ...] | None = None  # canary weights, in percent
    canary_by: str | None = None  # replicas or mesh
    ready_delay: int = 0  # steps a new pod stays unready after the step it was created in
    port: str | None = None  # the Service port (name or number) whose endpoints count
    # "ns/name" -> a strategy to use instead of the Deployment's own spec.strategy
    strategies: Mapping[str, DeploymentStrategy] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rollout:
    """A rollout's timeline: each step's endpoints and the traffic share of each version."""

    service: str  # "ns/name"
    port: str  # "http 80/TCP"
    strategy: str  # rolling, recreate, blue-green or canary
    canary_by: str | None
    parameters: FrozenDict
    summary: tuple[str, ...]  # the parameters in words, as the text output prints them
    versions: tuple[Version, ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()
    complete: bool = True


def simulate(cluster: Cluster, namespace: str, name: str,
             options: RolloutOptions = RolloutOptions()) -> Rollout:
    """The steps of rolling out the workload behind Service namespace/name.

    Raises InputError when the Service, Deployment or option does not fit the strategy.
    """
    from netsim import rollout_canary, rollout_plans

    service = cluster.service(namespace, name)
    if service is None:
        raise InputError(f"no Service {namespace}/{name} in the input", obj=CLI,
                         field="--service")
    if service.type == "ExternalName" or not service.selector:
        raise InputError(f"Service {namespace}/{name} has no selector: no controller manages "
                         "its endpoints, so no rollout changes them", obj=CLI, field="--service")
    _check(options)
    port = service_port(service, options.port)
    route = find_route(cluster, service)
    behind = [w for w in cluster.workloads if w.meta.kind == "Deployment"
              and w.namespace == namespace and selects(service.selector, w.template.labels)]
    strategy = options.strategy or _detect(route, behind)
    ctx = rollout_plans.Context(cluster, service, port, options, route, behind)
    plan = {"rolling": rollout_plans.rolling, "blue-green": rollout_plans.blue_green,
            "canary": rollout_canary.canary}[strategy]
    return plan(ctx)


def _check(options: RolloutOptions) -> None:
    if options.strategy is not None and options.strategy not in STRATEGIES:
        raise InputError(f"must be one of {', '.join(STRATEGIES)}", obj=CLI, field="--strategy")
    if options.canary_by is not None and options.canary_by not in CANARY_BY:
        raise InputError(f"must be one of {', '.join(CANARY_BY)}", obj=CLI, field="--canary-by")
    if options.ready_delay < 0:
        raise InputError("must be 0 or more", obj=CLI, field="--ready-delay")
    for w in options.weights or ():
        if not 0 <= w <= 100:
            raise InputError(f"weights are percentages from 0 to 100, got {w}", obj=CLI,
                             field="--weights")
    if options.weights is not None and not options.weights:
        raise InputError("give at least one weight", obj=CLI, field="--weights")


def _detect(route, behind: list[Workload]) -> str:
    """A weighted mesh route or several Deployments behind the Service suggest a canary."""
    if route is not None and sum(1 for d in route.destinations if d.local) > 1:
        return "canary"
    return "canary" if len(behind) > 1 else "rolling"


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_port(service: Service, wanted: str | None) -> ServicePort:
    """The Service port whose endpoints count: by name or number, else the first."""
    if not service.ports:
        raise InputError(f"Service {service.key} has no ports", obj=CLI, field="--service")
    if wanted is None:
        return service.ports[0]
    for p in service.ports:
        if p.name == wanted or str(p.port) == wanted:
            return p
    names = ", ".join(p.name or str(p.port) for p in service.ports)
    raise InputError(f"Service {service.key} has no port {wanted!r} (it has {names})", obj=CLI,
                     field="--port")


def port_label(port: ServicePort) -> str:
    return f"{port.name + ' ' if port.name else ''}{port.port}/{port.protocol}"


# ---------------------------------------------------------------- workloads and templates


def deployment_pods(cluster: Cluster, deployment: Workload) -> list[Pod]:
    return [p for p in cluster.pods_in(deployment.namespace)
            if p.workload == f"Deployment/{deployment.name}"]


def images(template: PodTemplate) -> str:
    return ", ".join(c.image or "?" for c in template.containers)


def new_template(base: PodTemplate, options: RolloutOptions,
                 extra: Mapping[str, str] = EMPTY) -> tuple[PodTemplate, str]:
    """The updated pod template and a phrase saying what changed; no change at all is what
    `kubectl rollout restart` does (an annotation with the time)."""
    template, changes = base, []
    if options.to_image:
        container, sep, image = options.to_image.partition("=")
        if not sep:
            container, image = "", container
        containers = list(template.containers)
        index = next((i for i, c in enumerate(containers)
                      if not container or c.name == container), None)
        if index is None or not image:
            names = ", ".join(c.name for c in containers)
            raise InputError(f"no container {container!r} (the template has {names})"
                             if image else "give an image: IMAGE or CONTAINER=IMAGE",
                             obj=CLI, field="--to-image")
        containers[index] = replace(containers[index], image=image)
        template = replace(template, containers=tuple(containers))
        changes.append(f"image {image}")
    labels = dict(extra)
    if options.new_version:
        labels[options.new_version[0]] = options.new_version[1]
    if labels:
        template = replace(template, labels=FrozenDict({**template.labels, **labels}))
        changes.append(",".join(f"{k}={v}" for k, v in labels.items()))
    if not changes:
        template = replace(template, annotations=FrozenDict(
            {**template.annotations, RESTARTED_AT: "netsim"}))
        changes.append("restart (kubectl rollout restart: same spec, new pods)")
    return template, ", ".join(changes)


def static_version(pod: Pod) -> Version:
    """The version of a pod that no controller of the rollout scales."""
    if pod.workload:
        return Version(pod.workload.split("/", 1)[1], "other", pod.workload,
                       f"image {images(pod.spec)}")
    return Version(pod.name, "other", f"Pod/{pod.name}", f"image {images(pod.spec)}")


def add_others(world: World, cluster: Cluster, namespace: str, taken: set[str]) -> None:
    """Every other pod of the namespace: a selector change may bring it in."""
    for p in cluster.pods_in(namespace):
        if p.key not in taken:
            world.add_pod(p, static_version(p))
