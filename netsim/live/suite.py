"""The bundled NetworkPolicy conformance suite on the kernel: every case's policies loaded
into one live build of the suite's base cluster, every pod pair probed on the case's ports,
each probe compared with the walk.

The cases change policies and labels only, so the namespaces, devices and routes are built
once; a case reloads kube-proxy's and felix's rules and sets and forgets tracked connections.
A case whose topology differs from the base's gets a fresh build.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from netsim.cluster import Cluster, load_inputs
from netsim.conformance.base import base_objects
from netsim.conformance.runner import load_suite
from netsim.dataplane import Dataplane, build
from netsim.errors import Source
from netsim.live import probe, realize
from netsim.live.plan import LivePlan, plan
from netsim.live.server import sctp_supported
from netsim.live.state import LiveState
from netsim.sources import RawDoc

SUITE = "networkpolicy"
C, R = TypeVar("C"), TypeVar("R")  # a suite's case, and what running it gives
COPIES = 4  # live builds of the base cluster probed side by side


@dataclass(frozen=True, slots=True)
class CaseRun:
    """One case on the kernel: its probes' comparisons and how long it took."""

    name: str
    probes: tuple[str, ...]  # "TCP/80" for each probe run
    comparisons: tuple[probe.Comparison, ...]
    skipped: tuple[str, ...]  # probes not run here (e.g. "SCTP/80": no SCTP in this kernel)
    seconds: float

    @property
    def disagreements(self) -> list[probe.Comparison]:
        return [c for c in self.comparisons if not c.agree]


def base_docs() -> list[RawDoc]:
    return [RawDoc(o, Source("<base cluster>", i + 1)) for i, o in enumerate(base_objects())]


def case_cluster(case, overrides: dict) -> Cluster:
    name = case.str("name", required=True)
    objects = [[RawDoc(o, Source(f"case {name}", i + 1))]
               for i, o in enumerate(case.list("objects"))]
    return load_inputs([base_docs(), *objects], overrides=overrides)


@contextmanager
def live(dp: Dataplane, prefix: str) -> Iterator[tuple[LiveState, LivePlan]]:
    """The dataplane built live for the duration of the block, removed afterwards whatever
    happens (an exception, a KeyboardInterrupt)."""
    built = plan(dp)
    report = realize.up(built, prefix)
    try:
        yield report.state, built
    finally:
        realize.teardown(report.state)


def run_suite(prefix: str, *, encapsulation: str = "None", only: Sequence[str] = (),
              timeout: float = probe.DEFAULT_TIMEOUT, copies: int = COPIES) -> list[CaseRun]:
    """Run the suite's cases (or `only` those) live under Calico with `encapsulation` and
    kube-proxy in iptables mode. `copies` builds of the base cluster (prefixes
    `<prefix>-<i>`) take cases from one queue: a case mostly waits for its dropped probes'
    deadline, so copies overlap those waits."""
    overrides = {"calico_encapsulation": encapsulation, "proxy_mode": "iptables",
                 "cni": "calico"}
    _, cases = load_suite(SUITE)
    if only:
        cases = [c for c in cases if c.str("name") in only]
    sctp = sctp_supported()
    base = build(load_inputs([base_docs()], overrides=overrides))
    return run_on_copies(base, prefix, cases, copies, lambda _, case, state, base_plan:
                         run_case(case, state, base_plan, overrides, sctp, timeout))


def run_on_copies(base: Dataplane, prefix: str, cases: Sequence[C], copies: int,
                  run: Callable[[int, C, LiveState, LivePlan], R]) -> list[R]:
    """`run(index, case, state, base_plan)` for every case, in case order: `copies` live
    builds of `base` (prefixes `<prefix>-<i>`) take the cases from one queue. On any error
    the other copies finish their case and are taken down."""
    todo = deque(enumerate(cases))
    lock, stop = threading.Lock(), threading.Event()
    runs: dict[int, R] = {}

    def worker(copy: int) -> None:
        with live(base, f"{prefix}-{copy}") as (state, base_plan):
            while not stop.is_set():
                with lock:
                    if not todo:
                        return
                    index, case = todo.popleft()
                runs[index] = run(index, case, state, base_plan)

    with ThreadPoolExecutor(copies) as pool:
        futures = [pool.submit(worker, i) for i in range(min(copies, len(cases)) or 1)]
        try:
            for f in futures:
                f.result()
        except BaseException:
            stop.set()
            raise
    return [runs[i] for i in sorted(runs)]


def run_case(case, state: LiveState, base_plan: LivePlan, overrides: dict, sctp: bool,
             timeout: float) -> CaseRun:
    start = time.perf_counter()
    dp = build(case_cluster(case, overrides))
    case_plan = plan(dp)
    if case_plan.fingerprint() != base_plan.fingerprint():
        raise RuntimeError(f"case {case.str('name')} changes the topology; the live suite "
                           "reuses the base cluster's")
    realize.load_rules(state, case_plan)
    probes, names, skipped = [], [], []
    for spec in case.items("probes", required=True):
        port = spec.int("port", required=True)
        protocol = spec.enum("protocol", probe.PROTOCOLS, default="TCP")
        names.append(f"{protocol}/{port}")
        if protocol == "SCTP" and not sctp:
            skipped.append(f"{protocol}/{port}")
            continue
        probes += probe.pod_probes(dp, [port], [protocol])
    comparisons = probe.compare(dp, probes, state.namespaces, timeout)
    return CaseRun(case.str("name"), tuple(names), tuple(comparisons), tuple(skipped),
                   time.perf_counter() - start)
