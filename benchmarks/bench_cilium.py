"""Cilium control-plane state at scale: identities, ipcache, one node's maps, with targets.

Targets (2-core machine), on a generated 5,000-node / 150,000-pod / 10,000-service /
10,000-NetworkPolicy cluster loaded with --cni cilium:
  compile_cilium (identities, rules, ipcache contents)          < 20 s
  one node's endpoints + LB maps (lazily built)                 < 10 s
  every policy map of that node's endpoints                     < 10 s
  an ipcache lookup and a policy lookup                         < 1 ms each (p99)
Nothing may grow with pods x pods or nodes x pods: a node's maps are built on first use.

Run: python benchmarks/bench_cilium.py [--small-only] [--check]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from cni.cilium import compile_cilium
from netsim.cluster import load
from netsim.generate import generate


def _report(name: str, seconds: float, target: float, results: list[bool]) -> None:
    ok = seconds < target
    results.append(ok)
    shown = f"{seconds * 1000:.3f} ms" if target < 1 else f"{seconds:.2f} s"
    limit = f"{target * 1000:.0f} ms" if target < 1 else f"{target:.0f} s"
    print(f"  {'PASS' if ok else 'FAIL'}  {name:<44} {shown:>11}  (target < {limit})")


def _run(tmp: Path, rng: random.Random, results: list[bool], **size: int) -> None:
    path = tmp / f"cluster-{size['pods']}.json"
    path.write_text(json.dumps(generate(**size)))
    start = time.perf_counter()
    # Cilium's cluster-pool hands each node a /24: the generator sizes its pool for Calico's
    # /26 blocks, so give the pods the generator's whole space (10.128.0.0/9).
    cluster = load([str(path)], overrides={"cni": "cilium", "pod_cidrs": ("10.128.0.0/9",)})
    print(f"{len(cluster.pods):,} pods / {len(cluster.services):,} services / "
          f"{len(cluster.network_policies):,} policies on {len(cluster.nodes):,} nodes "
          f"(load {time.perf_counter() - start:.1f} s)")
    start = time.perf_counter()
    state = compile_cilium(cluster)
    _report("compile_cilium", time.perf_counter() - start, 20.0, results)
    print(f"  {len(state.identities):,} identities, {len(state.rules):,} rules")
    busiest = max(cluster.nodes, key=lambda n: len(cluster.pods_on(n.name))).name
    start = time.perf_counter()
    node = state.node(busiest)
    services = len(node.lb.services)
    _report(f"node {busiest}: endpoints + LB maps", time.perf_counter() - start, 10.0, results)
    print(f"  {len(node.endpoints_by_id)} endpoints, {services:,} LB frontends")
    start = time.perf_counter()
    entries = sum(len(node.policy_entries(i)) for i in node.endpoints_by_id)
    _report("its endpoints' policy maps", time.perf_counter() - start, 10.0, results)
    print(f"  {entries:,} policy entries")
    pods = [p for p in cluster.pods if p.ip and not p.host_network]
    ids = sorted(node.endpoints_by_id)
    lookups, decisions = [], []
    for _ in range(2000):
        ip = rng.choice(pods).ip
        start = time.perf_counter()
        remote = node.ipcache_lookup(ip).identity
        lookups.append(time.perf_counter() - start)
        start = time.perf_counter()
        node.policy_lookup(rng.choice(ids), remote, "ingress", "TCP", rng.choice((80, 8080)))
        decisions.append(time.perf_counter() - start)
    for name, times in (("ipcache lookup (p99)", lookups), ("policy lookup (p99)", decisions)):
        times.sort()
        _report(name, times[int(len(times) * 0.99)], 0.001, results)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"  peak RSS {peak:.2f} GiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="skip the 150k-pod cluster")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp), rng, results, nodes=100, namespaces=100, pods=10_000, services=700,
             policies=1_000, seed=args.seed)
        if not args.small_only:
            _run(Path(tmp), rng, results, nodes=5_000, namespaces=5_000, pods=150_000,
                 services=10_000, policies=10_000, seed=args.seed)
    return 1 if args.check and not all(results) else 0


if __name__ == "__main__":
    sys.exit(main())
