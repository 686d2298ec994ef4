"""The `netsim maps` command: one node's Cilium BPF maps as cilium-dbg prints them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from netsim.errors import InputError

MAPS = ("ipcache", "endpoints", "lb", "policy", "identities")
COMMANDS = {"ipcache": "cilium-dbg bpf ipcache list", "endpoints": "cilium-dbg bpf endpoint list",
            "lb": "cilium-dbg bpf lb list", "identities": "cilium-dbg identity list"}
LB_VIEWS = ("frontends", "backends", "revnat")


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    maps = sub.add_parser(
        "maps", parents=[cluster],
        help="what Cilium's agent on a node holds: ipcache, endpoints, load-balancing and "
        "policy maps and identities, as `cilium-dbg` prints them (needs --cni cilium)")
    maps.add_argument("--node", required=True, help="the node whose agent to show")
    maps.add_argument("--map", choices=MAPS, help="only this map (default: all, each under a "
                      "`# cilium-dbg ...` header)")
    maps.add_argument("--endpoint", metavar="ID|NS/POD",
                      help="the policy map of this endpoint (implies --map policy)")
    view = maps.add_mutually_exclusive_group()
    for name in LB_VIEWS:
        view.add_argument(f"--{name}", dest="lb_view", action="store_const", const=name,
                          help=f"with --map lb: `cilium-dbg bpf lb list --{name}`")
    maps.add_argument("-o", "--output", choices=("text", "json"), default="text")
    maps.set_defaults(func=cmd_maps)


def cmd_maps(args: argparse.Namespace) -> int:
    from cni.cilium import compile_cilium
    from netsim.cli import load_cluster

    selected = args.map or ("policy" if args.endpoint else None)
    if args.endpoint and selected != "policy":
        raise InputError("--endpoint selects a policy map; use it with --map policy",
                         obj="command line", field="--endpoint")
    if args.lb_view and selected != "lb":
        raise InputError(f"--{args.lb_view} is a view of the lb map; add --map lb",
                         obj="command line", field=f"--{args.lb_view}")
    cluster = load_cluster(args)
    _check_cni(cluster)
    if cluster.node(args.node) is None:
        names = ", ".join(n.name for n in cluster.nodes[:5])
        raise InputError(f"no Node named {args.node!r} (nodes: {names}"
                         f"{', ...' if len(cluster.nodes) > 5 else ''})",
                         obj="command line", field="--node")
    state = compile_cilium(cluster)
    if not args.quiet:
        for warning in state.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    node = state.node(args.node)
    endpoints = [_endpoint(node, args.endpoint)] if args.endpoint else sorted(node.endpoints_by_id)
    if args.output == "json":
        print(json.dumps(_as_data(node, selected, endpoints), indent=2))
        return 0
    sys.stdout.write(_as_text(node, selected, endpoints, args.lb_view))
    return 0


def _check_cni(cluster: Any) -> None:
    settings = cluster.settings
    if settings.cni == "cilium":
        return
    where = ({"obj": "command line", "field": "--cni"} if "cni" in settings.flags else
             {"source": settings.source, "obj": "NetsimConfig", "field": "spec.cni.name"})
    raise InputError(f"the cluster's CNI is {settings.cni}; `netsim maps` shows Cilium's BPF "
                     "maps: add --cni cilium", **where)


def _endpoint(node: Any, text: str) -> int:
    """An endpoint id from "1234" or "namespace/pod" (the pod must run on the node)."""
    if text.isdigit():
        if int(text) not in node.endpoints_by_id:
            raise InputError(f"no endpoint {text} on node {node.name} (endpoints: "
                             f"{', '.join(map(str, sorted(node.endpoints_by_id))) or 'none'})",
                             obj="command line", field="--endpoint")
        return int(text)
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name:
        raise InputError(f"must be an endpoint id or NAMESPACE/POD, got {text!r}",
                         obj="command line", field="--endpoint")
    pod = node.state.cluster.pod(ns, name)
    entry = node.endpoint_of_pod(pod) if pod is not None else None
    if entry is None:
        where = "no such pod" if pod is None else (
            "a hostNetwork pod has no endpoint" if pod.host_network else
            f"it runs on {pod.node_name or 'no node'}" if pod.node_name != node.name else
            "it has no address")
        raise InputError(f"Pod {text} has no endpoint on node {node.name} ({where})",
                         obj="command line", field="--endpoint")
    return entry.id


def _as_text(node: Any, selected: str | None, endpoints: list[int], lb_view: str | None) -> str:
    from cni import cilium_print as p

    def policy() -> list[tuple[str, str]]:
        return [(f"cilium-dbg bpf policy get {i}", p.policy_get(node, i)) for i in endpoints]

    lb_command = COMMANDS["lb"] + (f" --{lb_view}" if lb_view else "")
    sections = {
        "ipcache": lambda: [(COMMANDS["ipcache"], p.ipcache_list(node))],
        "endpoints": lambda: [(COMMANDS["endpoints"], p.endpoint_list(node))],
        "lb": lambda: [(lb_command, p.lb_list(node, lb_view or "services"))],
        "policy": policy,
        "identities": lambda: [(COMMANDS["identities"], p.identity_list(node.state))],
    }
    chosen = [selected] if selected else list(MAPS)
    parts = [part for name in chosen for part in sections[name]()]
    if len(parts) == 1:
        return parts[0][1]
    return "".join(f"# {title}\n{text}" for title, text in parts)


def _as_data(node: Any, selected: str | None, endpoints: list[int]) -> dict:
    lb = node.lb
    data: dict[str, Any] = {"node": node.name}
    build = {
        "ipcache": lambda: [asdict(e) for e in node.ipcache_entries()],
        "endpoints": lambda: [asdict(node.endpoints_by_ip[ip]) for ip in node.endpoints_by_ip],
        "lb": lambda: {"services": [asdict(s) | {"flag_words": list(s.flag_words)}
                                    for s in lb.services.values()],
                       "backends": [asdict(b) for b in lb.backends.values()],
                       "revnat": {str(k): list(v) for k, v in sorted(lb.revnat.items())}},
        "policy": lambda: {str(i): [asdict(e) for e in node.policy_entries(i)]
                           for i in endpoints},
        "identities": lambda: [{"id": i.id, "labels": list(i.labels)}
                               for i in node.state.identities.values()],
    }
    for name in ([selected] if selected else MAPS):
        data[name] = build[name]()
    return data
