"""`netsim rollout`: a Deployment strategy step by step, with each version's share of traffic."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netsim.errors import InputError
from netsim.rollout import CANARY_BY, STRATEGIES, Rollout, RolloutOptions, simulate
from netsim.rollout_world import Step, Traffic

CLI = "command line"
UNITS = {"connection": "per connection", "request": "per request"}


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    p = sub.add_parser("rollout", parents=[cluster], help="which endpoints and versions get a "
                       "Service's traffic, step by step, during a rolling update, a blue-green "
                       "switch or a canary",
                       description="Roll out the workload behind a Service and show each step: "
                       "the endpoints of every version (ready or not) and each version's share "
                       "of traffic, for kube-proxy (per endpoint) and, where a VirtualService "
                       "routes the Service, for meshed clients (per weight).")
    p.add_argument("--service", required=True, metavar="svc/NS/NAME")
    p.add_argument("--strategy", choices=STRATEGIES, help="default: canary when a weighted "
                   "VirtualService or several Deployments back the Service, else rolling (the "
                   "Deployment's own RollingUpdate or Recreate)")
    p.add_argument("--deployment", metavar="NAME", help="the Deployment to update (the blue or "
                   "stable one) when several back the Service")
    change = p.add_argument_group("what changes (neither: kubectl rollout restart)")
    change.add_argument("--to-image", metavar="[CONTAINER=]IMAGE", help="the new image (of the "
                        "first container unless named)")
    change.add_argument("--new-version", metavar="LABEL=VALUE", help="a label the new pods "
                        "carry (the green value, the canary subset)")
    p.add_argument("--weights", metavar="W,W,...", help="canary setWeight steps in percent "
                   "(default 10,50,100)")
    p.add_argument("--canary-by", choices=CANARY_BY, help="replica ratio or mesh weight "
                   "(default: mesh when a VirtualService routes the Service)")
    p.add_argument("--ready-delay", type=int, default=0, metavar="N", help="steps a new pod "
                   "stays unready after the step that creates it (default 0: Ready at the next "
                   "step)")
    p.add_argument("--port", metavar="NAME|NUMBER", help="the Service port whose endpoints "
                   "count (default: the first)")
    p.add_argument("--step", type=int, metavar="K", help="print only step K")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_rollout)


def cmd_rollout(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster

    namespace, name = _service(args.service)
    options = RolloutOptions(
        strategy=args.strategy, deployment=args.deployment, to_image=args.to_image,
        new_version=_label(args.new_version) if args.new_version else None,
        weights=_weights(args.weights) if args.weights is not None else None,
        canary_by=args.canary_by, ready_delay=args.ready_delay, port=args.port)
    cluster = load_cluster(args)
    rollout = simulate(cluster, namespace, name, options)
    steps = rollout.steps
    if args.step is not None:
        if not 0 <= args.step < len(steps):
            raise InputError(f"the rollout has steps 0 to {len(steps) - 1}", obj=CLI,
                             field="--step")
        steps = (steps[args.step],)
    if args.output == "json":
        print(json.dumps(to_json(rollout, steps), indent=2))
    else:
        sys.stdout.write(to_text(rollout, steps))
    return 0


def _service(text: str) -> tuple[str, str]:
    parts = text.split("/")
    if parts[0] in ("svc", "service", "services") and len(parts) == 3:
        parts = parts[1:]
    if len(parts) != 2 or not all(parts):
        raise InputError(f"expected svc/NAMESPACE/NAME, got {text!r}", obj=CLI,
                         field="--service")
    return parts[0], parts[1]


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"expected LABEL=VALUE, got {text!r}", obj=CLI, field="--new-version")
    return key, value


def _weights(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise InputError(f"expected percentages such as 10,50,100, got {text!r}", obj=CLI,
                         field="--weights") from None


# ---------------------------------------------------------------- rendering


def _pct(fraction: float) -> str:
    value = round(fraction * 100, 1)
    return f"{value:g}%"


def headline(traffic: Traffic) -> str:
    """"kube-proxy (per connection): web-5f7c 66.7% (2) · web-8d6f 33.3% (1)"."""
    parts = [f"{s.version} {_pct(s.fraction)} ({s.endpoints})" for s in traffic.shares]
    if traffic.failed:
        parts.append(f"fails {_pct(traffic.failed)}: {traffic.reason}")
    tail = " [only terminating endpoints serve: kube-proxy's fallback]" if traffic.fallback \
        else ""
    return f"{traffic.balancer} ({UNITS[traffic.unit]}): " + (" · ".join(parts) or "-") + tail


def to_text(rollout: Rollout, steps: tuple[Step, ...]) -> str:
    by = f" by {rollout.canary_by}" if rollout.canary_by else ""
    lines = [f"rollout: svc/{rollout.service} port {rollout.port}, {rollout.strategy}{by}"]
    lines += [f"  {s}" for s in rollout.summary]
    width = max((len(v.name) for v in rollout.versions), default=0)
    for v in rollout.versions:
        lines.append(f"  {v.role:<6} {v.name:<{width}}  {v.detail}")
    for step in steps:
        lines.append("")
        lines.append(f"step {step.index}" + (f": {step.title}" if step.title else ""))
        for t in step.traffic:
            lines.append(f"  {headline(t)}")
            if t.weights:
                lines.append("    weights: " + ", ".join(f"{n} {w}" for n, w in t.weights))
        for event in step.events:
            lines.append(f"  - {event}")
        if step.replicas:
            lines.append("  replicas: " + " · ".join(
                f"{r.version} {r.desired} ({r.ready} ready)" for r in step.replicas))
        for row in step.endpoints:
            state = "terminating" if row.terminating else "ready" if row.ready else "not ready"
            if row.terminating:
                state += ", serving" if row.serving else ""
            if not row.selected:
                state += ", not selected"
            shares = " ".join(f"{b} {_pct(f)}" for b, f in row.share.items())
            lines.append(f"    {row.version:<{width}}  {row.pod.split('/', 1)[1]:<28} "
                         f"{row.address or '-':<21} {state:<22} {shares}".rstrip())
    if rollout.notes:
        lines.append("")
        lines += [f"note: {n}" for n in rollout.notes]
    return "\n".join(lines) + "\n"


def to_json(rollout: Rollout, steps: tuple[Step, ...]) -> dict:
    return {
        "service": rollout.service, "port": rollout.port, "strategy": rollout.strategy,
        "canaryBy": rollout.canary_by, "complete": rollout.complete,
        "parameters": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in rollout.parameters.items()},
        "versions": [{"name": v.name, "role": v.role, "workload": v.workload,
                      "detail": v.detail} for v in rollout.versions],
        "steps": [{
            "step": s.index, "title": s.title, "events": list(s.events),
            "selector": dict(s.selector),
            "traffic": [{"balancer": t.balancer, "unit": t.unit,
                         "shares": {v.version: round(v.fraction, 6) for v in t.shares},
                         "endpoints": {v.version: v.endpoints for v in t.shares},
                         "failed": round(t.failed, 6), "reason": t.reason,
                         "terminatingFallback": t.fallback,
                         "weights": dict(t.weights) if t.weights else None}
                        for t in s.traffic],
            "replicas": [{"version": r.version, "desired": r.desired, "pods": r.pods,
                          "ready": r.ready} for r in s.replicas],
            "endpoints": [{"pod": e.pod, "version": e.version, "address": e.address,
                           "node": e.node, "ready": e.ready, "serving": e.serving,
                           "terminating": e.terminating, "selected": e.selected,
                           "share": {b: round(f, 6) for b, f in e.share.items()}}
                          for e in s.endpoints],
        } for s in steps],
        "notes": list(rollout.notes),
    }
