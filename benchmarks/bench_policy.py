"""NetworkPolicy analysis at scale: matrices, class compression and explain, with targets.

Targets (2-core machine):
  10,000 pods / 1,000 policies: the full pod matrix for one port in under 2 s;
  150,000 pods / 5,000 namespaces / 10,000 policies: the class-compressed analysis in
  under 30 s and 4 GiB;
  explain for one pair in that cluster in under 50 ms after loading;
  `netsim diff` on the README's generated cluster (150,000 pods, 500 namespaces, 1,000
  policies; a change that removes two policies and adds two): in under 60 s and 4 GiB end to
  end, so a CI gate on the largest supported cluster answers within a minute (two loads take
  about 10 s each, see bench_scale.py); and diff() itself after loading in under 15 s. It
  compares 29 listening ports on two policy sets, 58 matrices, so it must share what does not
  depend on the port or the policies: half the 30 s one class-compressed matrix may take.
For comparison it times pairwise evaluation (policies.engine.evaluate per pod pair) on a
random sample of pairs and extrapolates to all pairs.

Run: python benchmarks/bench_policy.py [--small-only] [--diff-only] [--check]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netsim.cluster import load
from netsim.diff import diff
from netsim.generate import generate
from netsim.reach import explain, matrix
from policies.engine import PolicySet, evaluate

SAMPLE_PAIRS = 20_000


def _cluster(tmp: Path, **size: int):
    path = tmp / f"cluster-{size['pods']}.json"
    path.write_text(json.dumps(generate(**size)))
    start = time.perf_counter()
    cluster = load([str(path)])
    return cluster, time.perf_counter() - start


def policy_change(manifest: dict) -> dict:
    """The generated cluster after a typical policy review: it removes one namespace's
    allow-same-namespace (under a default deny) and one cross-namespace allow, adds an allow
    for team=data on a named port, and a default deny to a namespace that had no policy."""
    items = manifest["items"]
    policies = [i for i in items if i["kind"] == "NetworkPolicy"]
    names: dict[str, set[str]] = {}
    for p in policies:
        names.setdefault(p["metadata"]["namespace"], set()).add(p["metadata"]["name"])
    deny_ingress = [ns for ns, n in names.items() if "default-deny-ingress" in n]
    unguarded = next(i["metadata"]["name"] for i in items if i["kind"] == "Namespace"
                     and i["metadata"]["name"].startswith("ns-")
                     and i["metadata"]["name"] not in names)
    same = next(p for p in policies if p["metadata"]["name"] == "allow-same-namespace"
                and p["metadata"]["namespace"] == deny_ingress[0])
    cross = next(p for p in policies if p["metadata"]["name"].endswith("-from-data"))
    added = [
        {"podSelector": {}, "policyTypes": ["Ingress"],
         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}],
                      "ports": [{"protocol": "TCP", "port": "http"}]}]},
        {"podSelector": {}, "policyTypes": ["Ingress"]},
    ]
    new = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}
           for (name, ns), spec in zip([("allow-http-from-data", deny_ingress[1]),
                                        ("default-deny-ingress", unguarded)], added,
                                       strict=True)]
    kept = [i for i in items if i is not same and i is not cross]
    return {**manifest, "items": kept + new}


# `netsim diff` as the CLI runs it, then the process's own peak RSS in KiB on stderr: VmHWM
# (Linux), as ru_maxrss, of either process, would count the forked child's copy of the parent
DIFF_CLI = ("import sys\nfrom netsim.cli import main\ncode = main(sys.argv[1:])\n"
            "print(next(line.split()[1] for line in open('/proc/self/status')\n"
            "           if line.startswith('VmHWM')), file=sys.stderr)\nsys.exit(code)")


def _diff_cli(old: Path, new: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS GiB, summary line) of `netsim diff` in a fresh process."""
    command = [sys.executable, "-c", DIFF_CLI, "diff", "-q", "-f", str(old),
               "--against", str(new)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"netsim diff failed:\n{done.stderr}")
    peak = int(done.stderr.split()[-1]) / 1024 ** 2
    return seconds, peak, done.stdout.splitlines()[-1]


def _busiest_port(cluster) -> int:
    counts: dict[int, int] = {}
    for p in cluster.pods:
        for c in p.container_ports:
            if c.protocol == "TCP":
                counts[c.container_port] = counts.get(c.container_port, 0) + 1
    return max(counts, key=counts.get)


def _pairwise_seconds(cluster, ps, port: int, rng: random.Random) -> tuple[float, float]:
    """(seconds per pair, extrapolated seconds for every pair) of pairwise evaluation."""
    pods = [p for p in cluster.pods if p.ip]
    peers = [ps.pod_peer(p) for p in pods]
    pairs = [(rng.randrange(len(pods)), rng.randrange(len(pods))) for _ in range(SAMPLE_PAIRS)]
    start = time.perf_counter()
    for i, j in pairs:
        evaluate(ps, peers[i], peers[j], port, "TCP")
    per_pair = (time.perf_counter() - start) / SAMPLE_PAIRS
    return per_pair, per_pair * len(pods) ** 2


def _report(name: str, seconds: float, target: float, results: list[bool], unit: str = "s"):
    ok = seconds < target
    results.append(ok)
    shown = f"{seconds * 1000:.2f} ms" if unit == "ms" else f"{seconds:.2f} s"
    limit = f"{target * 1000:.0f} ms" if unit == "ms" else f"{target:.0f} s"
    print(f"  {'PASS' if ok else 'FAIL'}  {name:<46} {shown:>10}  (target < {limit})")


def _diff(tmp: Path, results: list[bool]) -> None:
    """netsim diff on the README's 150k-pod cluster and policy_change of it: end to end in a
    fresh process, then diff() alone after both loads."""
    size = {"nodes": 5_000, "namespaces": 500, "pods": 150_000, "services": 10_000,
            "policies": 1_000, "seed": 1}
    old, new = tmp / "before.json", tmp / "after.json"
    manifest = generate(**size)
    old.write_text(json.dumps(manifest))
    new.write_text(json.dumps(policy_change(manifest)))
    del manifest
    print("netsim diff: 150,000 pods / 500 namespaces / 1,000 policies (seed 1), "
          "2 policies removed and 2 added")
    seconds, peak, summary = _diff_cli(old, new)
    print(f"  {summary}")
    _report("netsim diff, end to end (two loads + compare)", seconds, 60.0, results)
    ok = peak < 4.0
    results.append(ok)
    print(f"  {'PASS' if ok else 'FAIL'}  {'peak RSS (netsim diff process)':<46} "
          f"{peak:>8.2f} GiB  (target < 4 GiB)")
    start = time.perf_counter()
    before, after = load([str(old)]), load([str(new)])
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    result = diff(before, after)
    _report(f"diff() after loading ({len(result.ports)} ports)", time.perf_counter() - start,
            15.0, results)
    print(f"  (loading both: {loaded:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="skip the 150k-pod cluster")
    parser.add_argument("--diff-only", action="store_true", help="only the netsim diff run")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.diff_only:
            _matrices(Path(tmp), args, rng, results)
        if not args.small_only:  # last: its loads would count in the peak RSS above
            _diff(Path(tmp), results)
    return 1 if args.check and not all(results) else 0


def _matrices(tmp: Path, args: argparse.Namespace, rng: random.Random,
              results: list[bool]) -> None:
    """The matrix, explain and pairwise measurements on both clusters."""
    cluster, load_s = _cluster(tmp, nodes=100, namespaces=100, pods=10_000,
                               services=700, policies=1_000, seed=args.seed)
    port = _busiest_port(cluster)
    print(f"10,000 pods / {len(cluster.network_policies)} policies (load {load_s:.1f} s), "
          f"TCP/{port}")
    ps = PolicySet.from_cluster(cluster)
    start = time.perf_counter()
    m = matrix(cluster, port, "TCP", ps=ps)
    dense = m.dense()
    full = time.perf_counter() - start
    print(f"  classes {m.classes.shape[0]} x {m.classes.shape[1]}; "
          f"{int(dense.sum())} of {dense.size} pairs allowed")
    _report("full pod matrix (classes + expansion)", full, 2.0, results)
    per_pair, all_pairs = _pairwise_seconds(cluster, ps, port, rng)
    print(f"  pairwise evaluate: {per_pair * 1e6:.1f} us/pair, "
          f"~{all_pairs:.0f} s for all {len(m.pods) ** 2:,} pairs")
    del cluster, m, dense, ps
    if not args.small_only:
        cluster, load_s = _cluster(tmp, nodes=5_000, namespaces=5_000,
                                   pods=150_000, services=10_000, policies=10_000,
                                   seed=args.seed)
        port = _busiest_port(cluster)
        print(f"150,000 pods / {len(cluster.namespaces)} namespaces / "
              f"{len(cluster.network_policies)} policies (load {load_s:.1f} s), "
              f"TCP/{port}")
        start = time.perf_counter()
        ps = PolicySet.from_cluster(cluster)
        m = matrix(cluster, port, "TCP", ps=ps)
        analysis = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        print(f"  classes {m.classes.shape[0]} x {m.classes.shape[1]}; "
              f"{int(m.classes.sum()):,} class pairs allowed")
        _report("class-compressed analysis", analysis, 30.0, results)
        ok = peak < 4.0
        results.append(ok)
        print(f"  {'PASS' if ok else 'FAIL'}  {'peak RSS (load + analysis)':<46} "
              f"{peak:>8.2f} GiB  (target < 4 GiB)")
        pods = [p for p in cluster.pods if p.ip]
        times = []
        for _ in range(200):
            a, b = rng.choice(pods), rng.choice(pods)
            start = time.perf_counter()
            explain(cluster, a, b, port, "TCP", ps=ps)
            times.append(time.perf_counter() - start)
        times.sort()
        _report("explain one pair (p99 of 200)", times[int(len(times) * 0.99) - 1], 0.05,
                results, unit="ms")
        per_pair, all_pairs = _pairwise_seconds(cluster, ps, port, rng)
        print(f"  pairwise evaluate: {per_pair * 1e6:.1f} us/pair, "
              f"~{all_pairs / 3600:.0f} h for all {len(pods) ** 2:,} pairs")


if __name__ == "__main__":
    sys.exit(main())
