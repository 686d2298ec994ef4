"""`netsim live up|probe|down`: the cluster built in real network namespaces, probed beside
the emulator's prediction (wiring and rendering only; the work is in netsim.live)."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from netsim.errors import InputError
from netsim.live.state import DEFAULT_PREFIX, LiveError

EXIT_DISAGREE = 1
EXIT_LIVE = 2
CORNER = "from \\ to"


def register(sub: Any, cluster: argparse.ArgumentParser) -> None:
    live = sub.add_parser("live", help="build the cluster in real network namespaces (root) "
                          "and check the emulator against the kernel",
                          description="Build the emulated dataplane for real (Calico routing, "
                          "kube-proxy and felix iptables rules, servers on every pod's ports) "
                          "in Linux network namespaces, probe it, and compare each probe "
                          "with netsim's prediction. Needs root.")
    verbs = live.add_subparsers(dest="verb", required=True, metavar="VERB")
    prefix = argparse.ArgumentParser(add_help=False)
    prefix.add_argument("--prefix", default=DEFAULT_PREFIX, help="names the live cluster: "
                        "its namespaces are ns-PREFIX-<hash> (default %(default)s)")

    up = verbs.add_parser("up", parents=[cluster, prefix], help="build the cluster in "
                          "namespaces and start the pod servers")
    up.set_defaults(func=_reporting(cmd_up))

    probe = verbs.add_parser("probe", parents=[prefix], help="real connections between "
                             "pods, to Services and NodePorts, beside netsim's prediction "
                             "(exit 1 on any disagreement)")
    probe.add_argument("--port", type=int, help="only this port (default: every declared "
                       "container port, Service port and NodePort)")
    probe.add_argument("--protocol", type=str.upper, choices=("TCP", "UDP", "SCTP"),
                       help="only this protocol")
    probe.add_argument("--what", choices=("all", "pods", "services"), default="all",
                       help="pod-to-pod pairs, Service and NodePort probes, or both")
    probe.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                       help="how long a probe waits for an answer (default %(default)s)")
    probe.add_argument("-o", "--output", choices=("text", "json"), default="text")
    probe.set_defaults(func=_reporting(cmd_probe))

    down = verbs.add_parser("down", parents=[prefix], help="remove the namespaces, servers "
                            "and state that `up` made")
    down.set_defaults(func=_reporting(cmd_down))


def _reporting(command: Callable[[argparse.Namespace], int]):
    """A LiveError is the user's to fix (not root, already up, a kernel without a feature):
    one line and exit 2, as netsim.cli does for bad input."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except LiveError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_LIVE
    return run


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so that `up` cleans up."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace) -> int:
    from netsim.cli import _overrides
    from netsim.cluster import load_inputs
    from netsim.dataplane import build
    from netsim.live import kernel, realize
    from netsim.live.plan import plan
    from netsim.live.state import check_prefix, stored_inputs
    from netsim.sources import read_inputs

    check_prefix(args.prefix)
    kernel.require_root()
    if not args.filename:
        raise InputError("required: the cluster's manifests (-f FILE, -f DIR or -f -)",
                         obj="command line", field="-f")
    layers = read_inputs(args.filename)
    if args.settings:
        layers.append(read_inputs([args.settings])[0])
    overrides = _overrides(args)
    cluster = load_inputs(layers, overrides=overrides)
    if not args.quiet:
        for warning in cluster.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    built = plan(build(cluster))
    with _terminate_as_interrupt():
        report = realize.up(built, args.prefix, inputs=stored_inputs(layers),
                            overrides={k: v for k, v in overrides.items() if v is not None})
    _print_up(report, built)
    return 0


def _print_up(report, built) -> None:
    state = report.state
    kinds = [ns.id.partition(":")[0] for ns in built.namespaces]
    print(f"live cluster {state.prefix!r} is up in {report.seconds:.1f}s: "
          f"{len(built.namespaces)} network namespaces ({kinds.count('host')} nodes, "
          f"{kinds.count('pod')} pods, the underlay and an external client), "
          f"{len(built.veths)} veth pairs, {report.sockets} listening sockets")
    rows = [("NETSIM", "NAMESPACE", "ADDRESSES", "RUNS")]
    for ns in built.namespaces:
        addresses = [f"{i.name} {a}" for i in ns.state.interfaces if i.kind != "loopback"
                     for a in i.addresses]
        runs = []
        if ns.rules:
            lines = sum(text.count("\n-A ") + text.count("\n-I ") for _, text in ns.rules)
            runs.append(f"{lines} iptables rules, {len(ns.ipsets)} ipsets")
        if ns.listeners:
            served = sorted({f"{s.protocol.upper()}/{s.port}" for s in ns.listeners})
            runs.append("serves " + " ".join(served))
        rows.append((ns.id, state.namespaces[ns.id], ", ".join(addresses) or "-",
                     "; ".join(runs) or "-"))
    _table(rows)
    for protocol, count in sorted(report.skipped.items()):
        print(f"not listening: {count} {protocol.upper()} sockets (this kernel has no "
              f"{protocol.upper()})")
    pod = next((ns.id for ns in built.namespaces if ns.id.startswith("pod:")), None)
    hint = f"; a shell in {pod[4:]}: ip netns exec {state.namespaces[pod]} sh" if pod else ""
    flag = "" if state.prefix == DEFAULT_PREFIX else f" --prefix {state.prefix}"
    print(f"next: netsim live probe{flag}{hint}; netsim live down{flag}")


# ---------------------------------------------------------------- probe


def cmd_probe(args: argparse.Namespace) -> int:
    from netsim.cluster import load_inputs
    from netsim.dataplane import build
    from netsim.live import kernel, probe
    from netsim.live.server import sctp_supported
    from netsim.live.state import (
        check_prefix,
        load_state,
        restored_inputs,
        restored_overrides,
    )

    check_prefix(args.prefix)
    kernel.require_root()
    state = load_state(args.prefix)
    if not state.complete:
        raise LiveError(f"the live cluster {args.prefix!r} is not complete (an `up` is "
                        "running or was killed): run `netsim live down` and `up` again")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise InputError(f"must be between 1 and 65535, got {args.port}",
                         obj="command line", field="--port")
    if args.timeout <= 0:
        raise InputError("must be positive", obj="command line", field="--timeout")
    cluster = load_inputs(restored_inputs(state.inputs),
                          overrides=restored_overrides(state.overrides))
    dp = build(cluster)
    ports = [args.port] if args.port is not None else []
    protocols = [args.protocol] if args.protocol else []
    if not sctp_supported():
        protocols = [p for p in (protocols or probe.PROTOCOLS) if p != "SCTP"]
        if not protocols:
            raise LiveError("this kernel has no SCTP: no SCTP probes can be run")
        if any(p.protocol == "SCTP" for pod in cluster.pods for p in pod.container_ports):
            print("note: this kernel has no SCTP: SCTP ports are not probed", file=sys.stderr)
    probes = []
    if args.what in ("all", "pods"):
        probes += probe.pod_probes(dp, ports, protocols)
    if args.what in ("all", "services"):
        probes += probe.service_probes(dp, ports, protocols)
    missing = sorted({p.source for p in probes} - set(state.namespaces))
    if missing:
        raise LiveError(f"{missing[0]} has no live namespace: the manifests changed "
                        "since `up`? Run `netsim live down` and `up` again")
    comparisons = probe.compare(dp, probes, state.namespaces, args.timeout)
    bad = [c for c in comparisons if not c.agree]
    if args.output == "json":
        print(json.dumps(_probe_json(comparisons), indent=2))
    else:
        _print_probe(comparisons)
    return EXIT_DISAGREE if bad else 0


def _probe_json(comparisons) -> dict:
    return {
        "probes": [{
            "kind": c.probe.kind, "from": c.probe.source_label, "to": c.probe.target,
            "address": c.probe.dst_ip, "port": c.probe.port, "protocol": c.probe.protocol,
            "kernel": {"result": c.kernel.result, "answeredBy": c.kernel.answered_by,
                       "detail": c.kernel.detail},
            "netsim": {"result": c.netsim.result, "paths": list(c.netsim.results),
                       "deliveredTo": sorted(set(c.netsim.delivered_to)),
                       "reason": c.netsim.reason, "detail": c.netsim.detail},
            "agree": c.agree} for c in comparisons],
        "summary": _summary(comparisons),
    }


def _summary(comparisons) -> dict:
    return {"probes": len(comparisons), "agree": sum(c.agree for c in comparisons),
            "disagree": sum(not c.agree for c in comparisons),
            "kernelDelivered": sum(c.kernel.result == "delivered" for c in comparisons)}


def _print_probe(comparisons) -> None:
    groups: dict[tuple[str, str], list] = {}
    for c in comparisons:
        title = c.probe.service if c.probe.kind == "pod" else "Services and NodePorts"
        title += " (IPv6)" if c.probe.family == 6 else ""
        groups.setdefault((c.probe.kind != "pod", c.probe.family, title), []).append(c)
    for (_, _, title), group in sorted(groups.items()):
        _print_matrix(title, group)
        print()
    print("X delivered (kernel and netsim agree), . not delivered (both agree), ! they "
          "disagree, blank: not probed")
    bad = [c for c in comparisons if not c.agree]
    for c in bad:
        print(f"DISAGREE {c.probe.text()}: {c.why()}")
    s = _summary(comparisons)
    print(f"{s['probes']} probes: kernel and netsim agree on {s['agree']}, disagree on "
          f"{s['disagree']} (kernel delivered {s['kernelDelivered']})")


def _print_matrix(title: str, group) -> None:
    """Rows are senders, columns what they probed: X delivered (kernel and netsim), .
    not delivered (both), ! they disagree, blank not probed."""
    rows = list(dict.fromkeys(c.probe.source_label for c in group))
    services = any(c.probe.kind != "pod" for c in group)
    columns = list(dict.fromkeys(_column(c, services) for c in group))
    cell = {(c.probe.source_label, _column(c, services)): c for c in group}
    agree = sum(c.agree for c in group)
    delivered = sum(c.kernel.result == "delivered" for c in group)
    print(f"{title}: {len(group)} probes, {delivered} delivered by the kernel, netsim agrees "
          f"on {agree}")
    width = max(len(f"{len(rows):2d} {r}") for r in rows)
    numbers = "".join(f"{i:>3}" for i in range(1, len(columns) + 1))
    print(f"{CORNER:<{width}}{numbers}")
    for i, row in enumerate(rows, 1):
        marks = "".join(f"{_mark(cell.get((row, col))):>3}" for col in columns)
        print(f"{f'{i:2d} {row}':<{width}}{marks}")
    if services or columns != rows:
        for i, col in enumerate(columns, 1):
            print(f"  {i:>2} {col}")


def _column(c, services: bool) -> str:
    return f"{c.probe.service} {c.probe.target}" if services else c.probe.target


def _mark(c) -> str:
    if c is None:
        return ""
    if not c.agree:
        return "!"
    return "X" if c.kernel.result == "delivered" else "."


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths, strict=False)) + "  " + r[-1])


# ---------------------------------------------------------------- down


def cmd_down(args: argparse.Namespace) -> int:
    from netsim.live import realize
    from netsim.live.state import check_prefix

    check_prefix(args.prefix)
    removed = realize.down(args.prefix)
    print(f"live cluster {args.prefix!r} is down: removed {len(removed)} network namespaces, "
          "the pod servers and the state file")
    return 0
