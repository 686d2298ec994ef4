"""Trace benchmark: one packet through a cluster with 10,000 Services, and the CLI end to end.

Usage: python benchmarks/bench_trace.py [--nodes 100 --pods 20000 --services 10000
                                         --policies 200 --traces 200 --seed 1] [--check]

Targets (issue 5): one trace under 5 ms in-process once the dataplane is built (the stations a
trace visits are compiled on first use and cached, like a node's rules are installed once), and
`netsim trace` on the example cluster under 1 s end to end. Build times are reported apart.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRACE_TARGET_MS = 5.0
CLI_TARGET_S = 1.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--namespaces", type=int, default=50)
    p.add_argument("--pods", type=int, default=20000)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--policies", type=int, default=200)
    p.add_argument("--traces", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cni", choices=("calico", "cilium"), default="calico")
    p.add_argument("--proxy-mode", choices=("iptables", "ipvs", "none"),
                   help="default: the generated cluster's")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)

    from netsim.cluster import load_inputs
    from netsim.dataplane import build
    from netsim.errors import Source
    from netsim.generate import generate
    from netsim.packet import TracePacket
    from netsim.sources import RawDoc
    from netsim.trace_dns import lookup
    from netsim.walk import walk

    t0 = time.perf_counter()
    doc = generate(nodes=args.nodes, namespaces=args.namespaces, pods=args.pods,
                   services=args.services, policies=args.policies, seed=args.seed)
    docs = [RawDoc(o, Source("<generated>", i + 1)) for i, o in enumerate(doc["items"])]
    overrides = {"cni": args.cni}
    if args.proxy_mode:
        overrides["proxy_mode"] = args.proxy_mode
    cluster = load_inputs([docs], overrides=overrides)
    t_load = time.perf_counter() - t0
    dp = build(cluster)
    rng = random.Random(args.seed)
    pods = [p for p in cluster.pods if p.ips and p.node_name and not p.host_network]
    services = [s for s in cluster.services if s.cluster_ips and s.ports]
    flows = []
    for _ in range(args.traces):
        src = rng.choice(pods)
        svc = rng.choice(services)
        port = svc.ports[0]
        flows.append((src, svc.cluster_ips[0], port.port, port.protocol.lower()))
    # warm: build every station the flows touch (rules compiled and parsed once per node)
    t0 = time.perf_counter()
    for src, ip, port, proto in flows:
        walk(dp, TracePacket(src.ip, ip, proto, 40000, port), f"pod:{src.key}")
    t_warm = time.perf_counter() - t0
    times = []
    results: dict[str, int] = {}
    for src, ip, port, proto in flows:
        start = time.perf_counter()
        t = walk(dp, TracePacket(src.ip, ip, proto, 40000, port), f"pod:{src.key}")
        times.append((time.perf_counter() - start) * 1000)
        results[t.result] = results.get(t.result, 0) + 1
    times.sort()
    p50 = statistics.median(times)
    p99 = times[int(len(times) * 0.99) - 1]
    # a trace to a name first resolves it: the search list, CoreDNS's answer, and the UDP
    # query walked to the DNS Service (issue 8)
    named = [(src, f"{svc.name}.{svc.namespace}")
             for src, svc in ((f[0], rng.choice(services)) for f in flows)]
    for src, name in named:  # warm the DNS Service's stations
        lookup(dp, f"pod:{src.key}", src.ip, name)
    lookups = []
    for src, name in named:
        start = time.perf_counter()
        addresses, _, failed = lookup(dp, f"pod:{src.key}", src.ip, name)
        lookups.append((time.perf_counter() - start) * 1000)
        assert addresses and failed is None, (src.key, name, failed)
    lookups.sort()
    l50 = statistics.median(lookups)

    cmd = [sys.executable, "-m", "netsim.cli", "trace", "-f", str(ROOT / "examples" / "shop"),
           "--from", "shop/cart-dbf884cbc-97wsf", "--to", "svc/shop/redis:6379"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, cwd=ROOT, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"netsim trace failed: {done.stderr}")
    cli = time.perf_counter() - start

    print(f"cluster: {len(cluster.nodes)} nodes, {len(cluster.pods)} pods, "
          f"{len(cluster.services)} services, {len(cluster.network_policies)} policies "
          f"({args.cni}, proxy {dp.proxy_mode})")
    print(f"load: {t_load:.2f} s; first {len(flows)} traces (building "
          f"{len(dp._stations)} stations): {t_warm:.2f} s")
    print(f"trace (warm): p50 {p50:.2f} ms, p99 {p99:.2f} ms  target < {TRACE_TARGET_MS} ms "
          f"{'PASS' if p50 < TRACE_TARGET_MS else 'FAIL'}; results {results}")
    print(f"name lookup (warm, query walked to CoreDNS): p50 {l50:.2f} ms, p99 "
          f"{lookups[int(len(lookups) * 0.99) - 1]:.2f} ms  target < {TRACE_TARGET_MS} ms "
          f"{'PASS' if l50 < TRACE_TARGET_MS else 'FAIL'}")
    print(f"netsim trace on examples/shop: {cli:.2f} s  target < {CLI_TARGET_S} s "
          f"{'PASS' if cli < CLI_TARGET_S else 'FAIL'}")
    ok = p50 < TRACE_TARGET_MS and l50 < TRACE_TARGET_MS and cli < CLI_TARGET_S
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
