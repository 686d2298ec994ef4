"""The `netsim` command: wires the model and the engines to the terminal; renders only."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netsim import __version__
from netsim.cli_io import write_output
from netsim.cluster import Cluster, load
from netsim.errors import InputError
from netsim.settings import CALICO_ENCAPSULATIONS, CILIUM_ROUTING_MODES, CNIS, PROXY_MODES

EXIT_INPUT = 2


CLUSTER_DEFAULTS = {"filename": None, "settings": None, "cni": None, "encapsulation": None,
                    "routing_mode": None, "proxy_mode": None, "pod_cidr": None,
                    "service_cidr": None, "nodes": None, "mesh": None, "quiet": False}


def _cluster_options() -> argparse.ArgumentParser:
    """Options every command that reads a cluster takes, before or after the verb (as kubectl).

    Defaults are suppressed so that a value given on either side survives; main() fills them.
    """
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("cluster input")
    g.add_argument("-f", "--filename", action="append", metavar="PATH",
                   help="manifest file, directory (recursive) or - for stdin; repeatable, "
                        "later inputs replace earlier objects like kubectl apply")
    g.add_argument("--settings", metavar="FILE", help="a NetsimConfig document (beats one "
                   "found in the inputs; flags beat both)")
    g.add_argument("--cni", choices=CNIS, help="CNI to emulate")
    g.add_argument("--encapsulation", choices=CALICO_ENCAPSULATIONS,
                   help="Calico encapsulation (None means BGP without encapsulation)")
    g.add_argument("--routing-mode", choices=CILIUM_ROUTING_MODES, help="Cilium routing mode")
    g.add_argument("--proxy-mode", choices=PROXY_MODES, help="kube-proxy mode (none: Cilium's "
                   "kube-proxy replacement)")
    g.add_argument("--pod-cidr", action="append", metavar="CIDR", help="pod CIDR (repeat for "
                   "dual-stack)")
    g.add_argument("--service-cidr", action="append", metavar="CIDR", help="service CIDR")
    g.add_argument("--nodes", type=int, metavar="N", help="nodes to create when the input "
                   "holds no Node")
    g.add_argument("--mesh", action=argparse.BooleanOptionalAction,
                   help="emulate the Istio-style service mesh")
    g.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from netsim.fields import Fields

    f = Fields({}, None, "command line")
    cidrs = {k: tuple(f.cidr(f"--{k.replace('_', '-')[:-1]}", c) for c in v)
             for k, v in (("pod_cidrs", args.pod_cidr), ("service_cidrs", args.service_cidr))
             if v}
    if args.nodes is not None and args.nodes < 1:
        raise InputError("must be at least 1", obj="command line", field="--nodes")
    return {"cni": args.cni, "calico_encapsulation": args.encapsulation,
            "cilium_routing_mode": args.routing_mode, "proxy_mode": args.proxy_mode,
            "nodes": args.nodes, "mesh": args.mesh, **cidrs}


def load_cluster(args: argparse.Namespace) -> Cluster:
    if not args.filename:
        raise InputError("required: the cluster's manifests (-f FILE, -f DIR or -f -)",
                         obj="command line", field="-f")
    cluster = load(args.filename, settings_path=args.settings, overrides=_overrides(args))
    if not args.quiet:
        for warning in cluster.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return cluster


# ---------------------------------------------------------------- get


def cmd_get(args: argparse.Namespace) -> int:
    from netsim import manifests, views

    resource = views.RESOURCE_NAMES.get(args.resource)
    if resource is None:
        raise InputError(f"unknown resource type {args.resource!r}; one of "
                         f"{', '.join(r.names[0] for r in views.RESOURCES)}",
                         obj="command line", field="get")
    cluster = load_cluster(args)
    namespace = None if args.all_namespaces else args.namespace
    items = views.select(cluster, resource, namespace, args.names)
    missing = [n for n in args.names if n not in {o.name for o in items}]
    if missing:
        where = f' in namespace "{namespace}"' if resource.namespaced and namespace else ""
        print(f'Error from server (NotFound): {resource.names[0]} "{missing[0]}" not found'
              f"{where}", file=sys.stderr)
        return 1
    if args.output in ("json", "yaml"):
        objs = [cluster.slices_for(o) for o in items] if resource.kind == "Endpoints" else \
            [items]
        doc = manifests.as_list([o for group in objs for o in group])
        if len(items) == 1 and args.names and resource.kind != "Endpoints":
            doc = doc["items"][0]
        _print_data(doc, args.output)
        return 0
    if args.output == "name":
        for o in items:
            print(f"{resource.names[1]}/{o.name}")
        return 0
    table = views.table(cluster, resource, items, wide=args.output == "wide",
                        all_namespaces=args.all_namespaces)
    if not table.rows:
        where = f" in {namespace} namespace" if resource.namespaced and namespace else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    sys.stdout.write(views.render(table))
    return 0


def _print_data(data: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=4))
    else:
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        sys.stdout.write(yaml.dump(data, Dumper=dumper, sort_keys=False,
                                   default_flow_style=False))


# ---------------------------------------------------------------- topology


def cmd_topology(args: argparse.Namespace) -> int:
    from netsim import topology, topology_export

    cluster = load_cluster(args)
    graph = topology.build_topology(cluster)
    fmt = args.output or "tree"
    if fmt == "tree":
        from rich.console import Console

        # Piped output has no terminal width: keep lines whole rather than cropped at 80.
        width = None if sys.stdout.isatty() else 200
        Console(highlight=False, width=width).print(topology_export.to_tree(graph))
        return 0
    if fmt == "png":
        data = topology_export.to_png(graph)
        out = Path(args.out or "topology.png")
        write_output(str(out), data, "--out")
        print(f"wrote {out} ({len(data) // 1024} KiB)", file=sys.stderr)
        return 0
    text = {"json": topology_export.to_json, "dot": topology_export.to_dot,
            "graphml": topology_export.to_graphml}[fmt](graph)
    if args.out:
        write_output(args.out, text, "--out")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# ---------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    from netsim.generate import generate

    for name in ("nodes", "namespaces", "pods", "services", "policies"):
        if getattr(args, name) < (1 if name in ("nodes", "namespaces") else 0):
            raise InputError("must be positive", obj="command line", field=f"--{name}")
    data = generate(nodes=args.nodes, namespaces=args.namespaces, pods=args.pods,
                    services=args.services, policies=args.policies, seed=args.seed)
    text = json.dumps(data, separators=(",", ":"))
    if args.out:
        write_output(args.out, text, "--out")
        print(f"wrote {args.out}: {len(data['items'])} objects", file=sys.stderr)
    else:
        print(text)
    return 0


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsim", description="Kubernetes network dataplane emulator: load a cluster's "
        "manifests, see its addresses, placement and topology, and verify its policies.",
        parents=[_cluster_options()])
    parser.add_argument("--version", action="version", version=f"netsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cluster = _cluster_options()

    get = sub.add_parser("get", parents=[cluster], help="list objects as kubectl get does, "
                         "with the addresses and placement netsim assigned")
    get.add_argument("resource", help="nodes, pods, services, endpoints, endpointslices, "
                     "networkpolicies, namespaces, ingresses (kubectl short names work)")
    get.add_argument("names", nargs="*", help="only these objects")
    scope = get.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="default")
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=("wide", "json", "yaml", "name"))
    get.set_defaults(func=cmd_get)

    topo = sub.add_parser("topology", parents=[cluster], help="the hosts, pods, interfaces "
                          "and links netsim built")
    topo.add_argument("-o", "--output", choices=("tree", "json", "dot", "graphml", "png"),
                      default="tree")
    topo.add_argument("--out", metavar="FILE", help="write to FILE (png: default topology.png)")
    topo.set_defaults(func=cmd_topology)

    from netsim import cli_policy

    cli_policy.register(sub, cluster)
    cli_policy.register_conformance(sub)
    from netsim import cli_maps, cli_proxy, cli_routes

    cli_proxy.register(sub, cluster)
    cli_proxy.register_iptables(sub)
    cli_routes.register(sub, cluster)
    cli_maps.register(sub, cluster)
    from netsim import cli_trace

    cli_trace.register(sub, cluster)
    from netsim import cli_live

    cli_live.register(sub, cluster)
    from netsim import cli_dns

    cli_dns.register(sub, cluster)
    from netsim import cli_test

    cli_test.register(sub, cluster)
    from netsim import cli_rollout

    cli_rollout.register(sub, cluster)
    from netsim import cli_mesh

    cli_mesh.register(sub, cluster)
    from netsim import cli_ingress

    cli_ingress.register(sub, cluster)

    gen = sub.add_parser("generate", help="write a realistic synthetic cluster as JSON "
                         "(benchmarks, capacity planning)")
    for name, default in (("nodes", 3), ("namespaces", 5), ("pods", 50), ("services", 20),
                          ("policies", 10), ("seed", 0)):
        gen.add_argument(f"--{name}", type=int, default=default, metavar="N")
    gen.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    gen.set_defaults(func=cmd_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in CLUSTER_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # `netsim get pods | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
