"""Scale benchmark: load a synthetic cluster at Kubernetes' limits and build its topology.

Usage: python benchmarks/bench_scale.py [--nodes 5000 --pods 150000 --services 10000
                                         --policies 1000 --seed 1] [--check]

The cluster is generated and written as JSON in this process; loading and the topology are
measured in a fresh interpreter so peak RSS reflects netsim alone, not the generator's garbage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIME_TARGET_S = 30.0  # load (parse, validate, expand, schedule, address, slices) + topology
RSS_TARGET_GIB = 4.0
RESULT_MARKER = "NETSIM_BENCH_RESULT "
GIB = 1024**3
SIZE_ARGS = ("nodes", "namespaces", "pods", "services", "policies", "seed")


@dataclass
class Target:
    """One pass/fail line of the report."""

    label: str
    value: str
    passed: bool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Defaults are Kubernetes' documented limits (5k nodes, 150k pods, 10k services)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--namespaces", type=int, help="default: nodes / 10 (at least 1)")
    p.add_argument("--pods", type=int, default=150000)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--policies", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--keep", action="store_true", help="keep the generated JSON file")
    p.add_argument("--json-out", type=Path, help="also write the measurements as JSON here")
    p.add_argument("--measure", metavar="PATH", help=argparse.SUPPRESS)  # child mode
    args = p.parse_args(argv)
    if args.namespaces is None:
        args.namespaces = max(1, args.nodes // 10)
    return args


def peak_rss_bytes() -> int:
    """This process's peak RSS (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# --------------------------------------------------------------------------- child


def measure(path: str) -> dict[str, Any]:
    """Time netsim's import, load and topology in this (fresh) process."""
    start = time.perf_counter()
    from netsim.cluster import load
    from netsim.topology import build_topology

    imported = time.perf_counter()
    cluster = load([path])
    loaded = time.perf_counter()
    rss_after_load = peak_rss_bytes()
    graph = build_topology(cluster)
    built = time.perf_counter()
    return {
        "import_s": imported - start,
        "load_s": loaded - imported,
        "topology_s": built - loaded,
        "peak_rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": peak_rss_bytes(),
        "counts": {
            "nodes": len(cluster.nodes),
            "pods": len(cluster.pods),
            "services": len(cluster.services),
            "graph_nodes": graph.number_of_nodes(),
            "graph_edges": graph.number_of_edges(),
        },
    }


def run_child(path: Path) -> dict[str, Any]:
    """Run ``measure`` in a new interpreter; raise with its stderr if it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
    raise RuntimeError(f"measurement process exited {proc.returncode}:\n{tail}")


# --------------------------------------------------------------------------- parent


def write_cluster(args: argparse.Namespace, directory: Path) -> tuple[Path, dict[str, float]]:
    """Generate and serialise the cluster, timing each separately."""
    sys.path.insert(0, str(ROOT))
    from netsim.generate import generate

    start = time.perf_counter()
    doc = generate(
        nodes=args.nodes,
        namespaces=args.namespaces,
        pods=args.pods,
        services=args.services,
        policies=args.policies,
        seed=args.seed,
    )
    generated = time.perf_counter()
    path = directory / f"cluster-n{args.nodes}-p{args.pods}-s{args.seed}.json"
    path.write_text(json.dumps(doc, separators=(",", ":")))
    written = time.perf_counter()
    return path, {
        "generate_s": generated - start,
        "write_s": written - generated,
        "json_bytes": path.stat().st_size,
    }


def targets(result: dict[str, Any]) -> list[Target]:
    """The budget netsim must meet at Kubernetes' limits."""
    seconds = result["load_s"] + result["topology_s"]
    peak = result["peak_rss_bytes"] / GIB
    return [
        Target(
            f"load + topology < {TIME_TARGET_S:g} s", f"{seconds:.2f} s", seconds < TIME_TARGET_S
        ),
        Target(f"peak RSS < {RSS_TARGET_GIB:g} GiB", f"{peak:.2f} GiB", peak < RSS_TARGET_GIB),
    ]


def report(args: argparse.Namespace, path: Path, result: dict[str, Any]) -> list[Target]:
    """Print stage times, memory, counts and the target verdicts."""
    size_mb = result["json_bytes"] / 1e6
    print(
        f"netsim scale benchmark: nodes={args.nodes} namespaces={args.namespaces} "
        f"pods={args.pods} services={args.services} policies={args.policies} seed={args.seed}"
    )
    stages = [
        ("generate", result["generate_s"], ""),
        ("write JSON", result["write_s"], f"{size_mb:.1f} MB  {path if args.keep else ''}"),
        ("import netsim", result["import_s"], "fresh subprocess"),
        ("load", result["load_s"], "parse+validate+expand+schedule+address+slices"),
        ("build_topology", result["topology_s"], ""),
    ]
    for name, seconds, note in stages:
        print(f"  {name:<16}{seconds:9.2f} s  {note}")
    print(f"  {'total':<16}{sum(s for _, s, _ in stages):9.2f} s")
    print(
        f"  {'peak RSS':<16}{result['peak_rss_bytes'] / GIB:9.2f} GiB  "
        f"(after load {result['peak_rss_after_load_bytes'] / GIB:.2f} GiB)"
    )
    counts = result["counts"]
    print(
        f"  counts: nodes={counts['nodes']} pods={counts['pods']} "
        f"services={counts['services']} graph nodes={counts['graph_nodes']} "
        f"edges={counts['graph_edges']}"
    )
    verdicts = targets(result)
    for t in verdicts:
        print(f"  {'PASS' if t.passed else 'FAIL'}  {t.label:<26}{t.value}")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    """Exit 0 unless --check and a target was missed (1), or the measurement crashed (2)."""
    args = parse_args(argv)
    if args.measure:
        print(RESULT_MARKER + json.dumps(measure(args.measure)), flush=True)
        return 0
    directory = Path(tempfile.mkdtemp(prefix="netsim-bench-"))
    path, result = write_cluster(args, directory)
    try:
        result |= run_child(path)
    except RuntimeError as err:
        print(f"FAIL  measurement crashed: {err}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            directory.rmdir()
    verdicts = report(args, path, result)
    if args.json_out:
        sizes = {k: getattr(args, k) for k in SIZE_ARGS}
        payload = {**sizes, **result, "targets": [vars(t) for t in verdicts]}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if args.check and not all(t.passed for t in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
