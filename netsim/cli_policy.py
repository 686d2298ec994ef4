"""The policy commands of the CLI: reach, explain and diff (wiring and rendering only)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from netsim.cli_io import write_output
from netsim.cluster import Cluster
from netsim.errors import InputError
from netsim.model import PROTOCOLS, Pod

EXIT_CHANGED = 1


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    reach = sub.add_parser("reach", parents=[cluster], help="the pod-to-pod reachability "
                           "matrix for a port and protocol")
    reach.add_argument("--port", type=int, default=80)
    reach.add_argument("--protocol", choices=PROTOCOLS, default="TCP", type=str.upper)
    reach.add_argument("-n", "--namespace", action="append", metavar="NS",
                       help="only pods of this namespace (repeatable)")
    reach.add_argument("--group-by", choices=("auto", "pod", "workload", "namespace"),
                       default="auto", help="table rows and columns (auto: pods up to 40)")
    reach.add_argument("-o", "--output", choices=("table", "json", "csv", "png"),
                       default="table")
    reach.add_argument("--out", metavar="FILE", help="write to FILE (png: default reach.png)")
    reach.add_argument("--dns", action="store_true", help="also: can each pod resolve names "
                       "(UDP and TCP 53 to the CoreDNS pods) under its egress policy?")
    reach.set_defaults(func=cmd_reach)

    explain = sub.add_parser("explain", parents=[cluster], help="the verdict for one "
                             "connection and the policies and rules that decided it")
    explain.add_argument("--from", dest="source", required=True, metavar="NS/POD|IP")
    explain.add_argument("--to", dest="target", required=True, metavar="NS/POD|IP|NAME",
                         help="a pod, an address, or a DNS name as the source pod would "
                         "resolve it (a Service's name explains each of its endpoints)")
    explain.add_argument("--port", type=int, required=True)
    explain.add_argument("--protocol", choices=PROTOCOLS, default="TCP", type=str.upper)
    explain.add_argument("-o", "--output", choices=("text", "json"), default="text")
    explain.set_defaults(func=cmd_explain)

    diff = sub.add_parser("diff", parents=[cluster], help="connections a change to the "
                          "manifests opens or closes (exit 1 when any)")
    diff.add_argument("--against", action="append", required=True, metavar="PATH",
                      help="the changed manifests (repeatable, like -f)")
    diff.add_argument("-o", "--output", choices=("text", "json"), default="text")
    diff.set_defaults(func=cmd_diff)


def _port(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise InputError(f"must be between 1 and 65535, got {args.port}", obj="command line",
                         field="--port")
    return args.port


# ---------------------------------------------------------------- reach


def cmd_reach(args: argparse.Namespace) -> int:
    from netsim import reach_views
    from netsim.cli import load_cluster
    from netsim.reach import matrix

    cluster = load_cluster(args)
    namespaces = set(args.namespace) if args.namespace else None
    if namespaces:
        unknown = sorted(namespaces - {n.name for n in cluster.namespaces})
        if unknown:
            raise InputError(f"no namespace {unknown[0]!r} in the cluster", obj="command line",
                             field="-n")
    m = matrix(cluster, _port(args), args.protocol, namespaces)
    if args.output in ("json", "csv") and len(m.pods) > reach_views.DENSE_LIMIT:
        raise InputError(f"{len(m.pods)} pods make a {len(m.pods)}x{len(m.pods)} matrix; "
                         "narrow it with -n NS, or use -o table/png (grouped)",
                         obj="command line", field="-o")
    dns = None
    if args.dns:
        from netsim.reach_dns import dns_reach

        dns = dns_reach(cluster, tuple(m.pods))
    if args.output == "json":
        data = m.as_json()
        if dns is not None:
            data["dns"] = {"server": dns[0], "pods": {
                d.pod: {"udp": d.udp, "tcp": d.tcp, "reason": d.reason} for d in dns[1]}}
        _write(args, json.dumps(data))
        return 0
    if args.output == "csv":
        _write(args, reach_views.to_csv(m, m.dense()).rstrip("\n"))
        return 0
    by = args.group_by
    if by == "auto":
        by = "pod" if len(m.pods) <= reach_views.GRID_LIMIT else "workload"
    if by == "pod" and len(m.pods) > reach_views.DENSE_LIMIT:
        raise InputError(f"{len(m.pods)} pods are too many to show one by one; use "
                         "--group-by workload|namespace or -n NS", obj="command line",
                         field="--group-by")
    if by == "pod":
        dense = m.dense()
        names = m.keys
        fraction = dense.astype(float)
    else:
        names, allowed, total = reach_views.grouped(m, by)
        with_pairs = total > 0
        fraction = (allowed / total.clip(min=1)).astype(float)
        fraction[~with_pairs] = float("nan")
        dense = None
    if args.output == "png":
        title = f"{args.protocol}/{args.port} reachability ({len(m.pods)} pods, by {by})"
        data = reach_views.to_png(m, names, fraction, title)
        out = Path(args.out or "reach.png")
        write_output(str(out), data, "--out")
        print(f"wrote {out} ({len(data) // 1024} KiB)", file=sys.stderr)
        return 0
    from rich.console import Console

    if by != "pod" and len(names) > reach_views.GROUP_GRID_LIMIT:
        Console(highlight=False, width=200).print(
            f"{len(names)} {by}s: too many for a grid; per source {by}, how many {by}s it "
            f"reaches for every pod pair, for some, for none (-n NS narrows, -o png draws)")
        Console(highlight=False, width=200).print(
            reach_views.group_summary(names, allowed, total))
        return 0
    widest = max((len(n) for n in names), default=0)
    needed = widest + 8 + sum(len(str(j + 1)) + 2 for j in range(len(names)))
    console = Console(highlight=False, width=max(needed, 100))
    full = dense if dense is not None else m.dense() if len(m.pods) <= 5000 else None
    if full is not None:
        console.print(reach_views.summary(m, full))
    if by == "pod":
        console.print(reach_views.grid(m, dense))
    else:
        console.print(f"grouped by {by}: '.' every pod pair allowed, 'X' none, '~' some")
        console.print(reach_views.grouped_table(names, allowed, total))
    if dns is not None:
        print(_dns_text(dns, by))
    return 0


def _dns_text(dns: tuple[str, tuple], by: str) -> str:
    """Per pod (or per group: how many of its pods) whether names resolve."""
    server, rows = dns
    lines = ["", f"DNS: UDP and TCP 53 to {server}"]
    if by == "pod":
        width = max((len(r.pod) for r in rows), default=3)
        lines.append(f"  {'POD':<{width}}  UDP  TCP  WHY NOT")
        for r in rows:
            why = "" if r.udp and r.tcp else r.reason
            lines.append(f"  {r.pod:<{width}}  {'yes' if r.udp else 'NO':<3}  "
                         f"{'yes' if r.tcp else 'NO':<3}  {why}".rstrip())
        return "\n".join(lines)
    groups: dict[str, list] = {}
    for r in rows:
        key = r.pod.split("/")[0] if by == "namespace" else r.pod.rsplit("-", 1)[0]
        groups.setdefault(key, []).append(r)
    lines.append(f"  {by.upper():<30} RESOLVE  FIRST REASON")
    for key, found in sorted(groups.items()):
        ok = sum(r.udp for r in found)
        first = next((r.reason for r in found if not r.udp), "")
        lines.append(f"  {key:<30} {ok}/{len(found):<6} {first}".rstrip())
    return "\n".join(lines)


def _write(args: argparse.Namespace, text: str) -> None:
    if args.out:
        write_output(args.out, text + "\n", "--out")
    else:
        print(text)


# ---------------------------------------------------------------- explain


def find_pod(cluster: Cluster, ref: str, flag: str) -> Pod:
    """A pod named ns/name (or name in the default namespace)."""
    namespace, _, name = ref.rpartition("/")
    pod = cluster.pod(namespace or "default", name)
    if pod is None:
        near = sorted(p.key for p in cluster.pods if p.name.startswith(name)
                      and (not namespace or p.namespace == namespace))[:3]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise InputError(f"no pod {ref!r} in the cluster{hint}", obj="command line",
                         field=flag)
    if not pod.ip:
        raise InputError(f"pod {pod.key} has no address (it is {pod.phase})",
                         obj="command line", field=flag)
    return pod


def _endpoint(cluster: Cluster, ps: Any, ref: str, flag: str) -> tuple[Any, str]:
    try:
        ip = str(ipaddress.ip_address(ref))
    except ValueError:
        pod = find_pod(cluster, ref, flag)
        return ps.pod_peer(pod), pod.key
    peer = ps.ip_peer(ip)
    return peer, str(peer) if peer.pod is None else f"{peer.pod.key} ({ip})"


def cmd_explain(args: argparse.Namespace) -> int:
    from netsim import reach_views
    from netsim.cli import load_cluster
    from policies.engine import PolicySet, evaluate

    cluster = load_cluster(args)
    ps = PolicySet.from_cluster(cluster)
    src, src_name = _endpoint(cluster, ps, args.source, "--from")
    port = _port(args)
    targets = _named_targets(cluster, ps, src, args.target, port, args.protocol)
    if targets is None:
        dst, dst_name = _endpoint(cluster, ps, args.target, "--to")
        targets = [(dst, dst_name, port)]
    results = []
    for dst, dst_name, dst_port in targets:
        verdict = evaluate(ps, src, dst, dst_port, args.protocol, explain=True)
        if args.output == "json":
            results.append(reach_views.verdict_json(verdict, src_name, dst_name, dst_port,
                                                    args.protocol))
        else:
            if results:
                sys.stdout.write("\n")
            results.append(1)
            sys.stdout.write(reach_views.explain_text(verdict, src_name, dst_name, dst_port,
                                                      args.protocol))
    if args.output == "json":
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 0


def _named_targets(cluster: Cluster, ps: Any, src: Any, ref: str, port: int,
                   protocol: str) -> list | None:
    """--to as a DNS name: resolved from the source pod as it would (search path, ndots).
    A Service's name gives each ready endpoint pod at the port the Service sends to, since
    NetworkPolicy sees the connection after kube-proxy's DNAT. None: not a name."""
    from netsim.dns import resolve

    try:
        ipaddress.ip_address(ref)
        return None
    except ValueError:
        if "/" in ref:
            return None
    res = resolve(cluster, ref, "A", from_pod=src.pod)
    if not res.addresses:
        raise InputError(f"{ref!r} does not resolve from {src}: {res.status}",
                         obj="command line", field="--to")
    ip = res.addresses[0]
    service = next((s for s in cluster.services if ip in s.cluster_ips), None)
    if service is None:
        peer = ps.ip_peer(ip)
        return [(peer, f"{ref} ({ip})" if peer.pod is None else f"{peer.pod.key} ({ref})",
                 port)]
    sp = next((p for p in service.ports if p.port == port and p.protocol == protocol), None)
    if sp is None:
        raise InputError(f"Service {service.namespace}/{service.name} ({ref}) has no port "
                         f"{port}/{protocol}", obj="command line", field="--port")
    out = []
    for es in cluster.slices_for(service):
        number = next((p.port for p in es.ports if p.name == sp.name
                       and p.protocol == protocol), None)
        for e in es.endpoints:
            pod = cluster.pod(*e.target.split("/", 1)) if e.target else None
            if e.ready and pod is not None and number is not None:
                out.append((ps.pod_peer(pod), f"{pod.key} (via {ref}:{port} -> {number})",
                            number))
    if not out:
        raise InputError(f"Service {service.namespace}/{service.name} ({ref}) has no ready "
                         "endpoint to explain", obj="command line", field="--to")
    return out


# ---------------------------------------------------------------- diff


def cmd_diff(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from netsim.diff import diff

    old = load_cluster(args)
    new_args = argparse.Namespace(**{**vars(args), "filename": args.against})
    new = load_cluster(new_args)
    result = diff(old, new)
    if args.output == "json":
        print(json.dumps({
            "changes": [{"from": c.src, "to": c.dst, "port": c.port, "protocol": c.protocol,
                         "change": "opened" if c.opened else "closed"}
                        for c in result.changes],
            "addedWorkloads": list(result.added_workloads),
            "removedWorkloads": list(result.removed_workloads)}, indent=2))
    else:
        for c in result.changes:
            sign, word = ("+", "opened") if c.opened else ("-", "closed")
            print(f"{sign} {c.src} -> {c.dst} {c.protocol}/{c.port} {word}")
        for w in result.added_workloads:
            print(f"  workload added: {w}")
        for w in result.removed_workloads:
            print(f"  workload removed: {w}")
        opened = sum(c.opened for c in result.changes)
        print(f"{len(result.changes)} connection(s) changed: {opened} opened, "
              f"{len(result.changes) - opened} closed ({len(result.ports)} ports compared)")
    return EXIT_CHANGED if result.changes else 0


# ---------------------------------------------------------------- conformance


def register_conformance(sub: Any) -> None:
    import textwrap

    from netsim.conformance.dataplanes import CNIS, CORE, DATAPLANES, PROXY_MODES
    from netsim.conformance.runner import SUITES

    paragraphs = [
        "Run the bundled conformance suites: networkpolicy (reach matrices against the "
        "NetworkPolicy e2e semantics), services (what the Service e2e tests check on the "
        "wire), ingress (the ingress-controller-conformance features) and mesh (Istio "
        "sidecars: mTLS, authorization, routing, faults).",
        "The trace suites run under each dataplane combination they name: services under "
        f"all of {', '.join(d.name for d in DATAPLANES)}; ingress and mesh under "
        f"{', '.join(CORE)} (kpr: Cilium's kube-proxy replacement, --proxy-mode none). "
        "By default every suite runs under every combination (--cni all --proxy-mode "
        "all); --cni, --proxy-mode and --dataplane narrow that. The networkpolicy suite "
        "checks policy semantics, the same for every dataplane, and runs once.",
        "One line per case and dataplane: PASS, FAIL with the first differing "
        "expectation, or XFAIL for a known netsim deviation the suite file declares; a "
        "summary per suite and dataplane. Exit status 1 if any case fails.",
    ]
    conf = sub.add_parser(
        "conformance", help="run the bundled conformance suites against the emulated "
        "dataplane", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n\n".join(textwrap.fill(p, 79, break_on_hyphens=False)
                                  for p in paragraphs))
    conf.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    conf.add_argument("--cni", choices=(*CNIS, "all"), default="all",
                      help="only dataplanes of this CNI (default all)")
    conf.add_argument("--proxy-mode", choices=(*PROXY_MODES, "all"), default="all",
                      help="only this Service proxy: kube-proxy iptables or ipvs, or none "
                      "(Cilium's kube-proxy replacement); default all")
    conf.add_argument("--dataplane", action="append", metavar="NAME", default=[],
                      help="only this combination, e.g. calico-vxlan/ipvs (repeatable)")
    conf.add_argument("--case", action="append", metavar="NAME", help="only this case "
                      "(repeatable)")
    conf.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE (a "
                      "<testsuite> per suite and dataplane)")
    conf.add_argument("-o", "--output", choices=("text", "json"), default="text")
    conf.set_defaults(func=cmd_conformance)


def cmd_conformance(args: argparse.Namespace) -> int:
    from netsim.conformance import report
    from netsim.conformance.dataplanes import check_filters
    from netsim.conformance.junit import junit_xml
    from netsim.conformance.runner import SUITES, run

    suites = SUITES if args.suite == "all" else (args.suite,)
    check_filters(args.cni, args.proxy_mode, tuple(args.dataplane))
    only = set(args.case) if args.case else None
    runs = []
    for suite in suites:
        for r in run(suite, cni=args.cni, proxy_mode=args.proxy_mode,
                     dataplanes=tuple(args.dataplane), only=only):
            if only and not r.results:
                continue  # --case names a case of another suite
            runs.append(r)
            if args.output == "text":
                for c in r.results:
                    print(report.case_line(r, c))
    if only and not runs:
        raise InputError(f"no case named {args.case[0]!r} in suite "
                         f"{'s ' + ', '.join(suites) if len(suites) > 1 else suites[0]}",
                         obj="command line", field="--case")
    if args.junit:
        write_output(args.junit, junit_xml([(r.label, r.results) for r in runs]), "--junit")
    if args.output == "json":
        print(json.dumps(report.as_json(runs), indent=2))
    else:
        if len(runs) > 1:
            print("\n".join(report.summary_lines(runs)))
        print(report.total_line(runs))
    return 1 if any(c.status == "fail" for r in runs for c in r.results) else 0
