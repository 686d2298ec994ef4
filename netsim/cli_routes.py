"""The `netsim routes` command: a node's (or a pod's) routes, neighbours and FDB as iproute2
prints them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from netsim.errors import InputError

FAMILIES = {"ipv4": 4, "ipv6": 6}


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    routes = sub.add_parser(
        "routes",
        parents=[cluster],
        help="what the CNI programs in a "
        "node's or a pod's namespace, as `ip route` (and `ip neigh`, "
        "`bridge fdb`) print it",
    )
    routes.add_argument("--node", help="the node whose root namespace to show")
    routes.add_argument(
        "--pod",
        metavar="NS/POD",
        help="show the namespace inside this pod instead (a hostNetwork pod shares its node's)",
    )
    routes.add_argument(
        "--family",
        choices=tuple(FAMILIES),
        default="ipv4",
        help="`ip -4` or `ip -6` (default ipv4)",
    )
    routes.add_argument("--neigh", action="store_true", help="also print `ip neigh`")
    routes.add_argument("--fdb", action="store_true", help="also print `bridge fdb show`")
    routes.set_defaults(func=cmd_routes)


def cmd_routes(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from netsim.netns import format_fdb, format_neighbour, format_route

    if not args.node and not args.pod:
        raise InputError(
            "required: --node NAME or --pod NAMESPACE/NAME", obj="command line", field="--node"
        )
    cluster = load_cluster(args)
    _check_cni(cluster)
    version = FAMILIES[args.family]
    if not any((":" in c) == (version == 6) for c in cluster.addressing.pod_cidrs):
        raise InputError(
            f"the cluster has no {args.family} pod CIDR "
            f"({', '.join(cluster.addressing.pod_cidrs)})",
            obj="command line",
            field="--family",
        )
    namespace = _namespace(cluster, args)
    flag = "-6 " if version == 6 else ""
    sections = [
        (f"ip {flag}route", [format_route(r) for r in namespace.routes if r.family == version])
    ]
    if args.neigh:
        sections.append(
            (
                f"ip {flag}neigh",
                [
                    format_neighbour(n)
                    for n in namespace.neighbours
                    if (":" in n.ip) == (version == 6)
                ],
            )
        )
    if args.fdb:
        sections.append(("bridge fdb show", [format_fdb(e) for e in namespace.fdb]))
    out = []
    for title, lines in sections:
        if len(sections) > 1:
            out.append(f"# {title}")
        out += lines
    sys.stdout.write("".join(f"{line}\n" for line in out))
    return 0


def _check_cni(cluster: Any) -> None:
    settings = cluster.settings
    if settings.cni == "calico":
        return
    where = (
        {"obj": "command line", "field": "--cni"}
        if "cni" in settings.flags
        else {"source": settings.source, "obj": "NetsimConfig", "field": "spec.cni.name"}
    )
    # cni.md section 2 says only that tunnel mode keeps kernel routes to other nodes' pod
    # CIDRs through cilium_host; their next hop, src and MTU need a source before netsim
    # prints them as if a node had them.
    raise InputError(
        "netsim models Calico's routes only so far; Cilium's (cilium_host "
        "routes, the ipcache) come in a later step",
        **where,
    )


def _namespace(cluster: Any, args: argparse.Namespace) -> Any:
    from cni import calico
    from netsim.topology import build_topology

    if args.node and cluster.node(args.node) is None:
        raise InputError(f"no Node named {args.node!r}", obj="command line", field="--node")
    graph = build_topology(cluster)
    if not args.pod:
        return calico.node_namespace(cluster, args.node, graph)
    ns, sep, name = args.pod.partition("/")
    if not sep or not ns or not name:
        raise InputError(
            f"must be NAMESPACE/NAME, got {args.pod!r}", obj="command line", field="--pod"
        )
    pod = cluster.pod(ns, name)
    if pod is None:
        raise InputError(f"no Pod {ns}/{name}", obj="command line", field="--pod")
    if args.node and pod.node_name != args.node:
        raise InputError(
            f"Pod {ns}/{name} runs on {pod.node_name or 'no node'}, not {args.node}",
            obj="command line",
            field="--pod",
        )
    if pod.host_network and not args.quiet:
        print(
            f"note: Pod {ns}/{name} is hostNetwork: it shares node {pod.node_name}'s namespace",
            file=sys.stderr,
        )
    return calico.pod_namespace(cluster, pod, graph)
