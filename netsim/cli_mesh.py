"""The `netsim mesh` commands: a sidecar's Envoy config (`mesh config`, as istioctl shows it)
and a load of requests through its circuit breakers (`mesh load`).

Each verb is a (register, command) pair in VERBS; a new verb adds one pair.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netsim.errors import InputError

CONFIG_SECTIONS = ("listeners", "routes", "clusters", "endpoints", "all")


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    mesh = sub.add_parser("mesh", help="the Istio-style service mesh: sidecar config and "
                          "behaviour")
    verbs = mesh.add_subparsers(dest="mesh_verb", required=True, metavar="VERB")
    for add in VERBS:
        add(verbs, cluster)


def pod_arg(cluster: Any, text: str | None, flag: str = "--pod") -> Any:
    """The Pod a NAMESPACE/NAME flag names; one-line errors otherwise."""
    if not text:
        raise InputError("required: a pod as NAMESPACE/NAME", obj="command line", field=flag)
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name:
        raise InputError(f"must be NAMESPACE/NAME, got {text!r}", obj="command line",
                         field=flag)
    pod = cluster.pod(ns, name)
    if pod is None:
        raise InputError(f"no Pod {ns}/{name}", obj="command line", field=flag)
    return pod


# ---------------------------------------------------------------- mesh config


def _register_config(verbs: Any, cluster: argparse.ArgumentParser) -> None:
    p = verbs.add_parser("config", parents=[cluster], help="a pod's sidecar listeners, "
                         "routes, clusters and endpoints, as `istioctl proxy-config` prints")
    p.add_argument("section", nargs="?", choices=CONFIG_SECTIONS, default="all",
                   help="which part of the config (default: all)")
    p.add_argument("--pod", metavar="NS/POD", help="the pod whose sidecar to show")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--outbound-traffic-policy", choices=("ALLOW_ANY", "REGISTRY_ONLY"),
                   default="ALLOW_ANY", help="meshConfig.outboundTrafficPolicy.mode")
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from netsim.cli import load_cluster
    from proxy.sidecar import default_options, render_json, render_text, sidecar_config

    if not args.pod:
        raise InputError("required: --pod NAMESPACE/NAME", obj="command line", field="--pod")
    if args.mesh is None:  # a mesh command emulates the mesh unless told --no-mesh
        args.mesh = True
    cluster = load_cluster(args)
    pod = pod_arg(cluster, args.pod)
    options = replace(default_options(cluster),
                      outbound_traffic_policy=args.outbound_traffic_policy)
    config = sidecar_config(cluster, pod, options=options)
    if not args.quiet:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(render_json(config, args.section), indent=2))
    else:
        sys.stdout.write(render_text(config, args.section))
    return 0


def _register_load(verbs: Any, cluster: argparse.ArgumentParser) -> None:
    from netsim.cli_mesh_load import add_load_verb

    add_load_verb(verbs, cluster)


VERBS = [_register_config, _register_load]
