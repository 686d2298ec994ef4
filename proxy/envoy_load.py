"""A load run through one client sidecar: retries, circuit breakers and outlier ejection over time.

`simulate(target, spec) -> LoadReport` replays N requests from the client's Envoy against the
Service's endpoints on a simulated clock: requests leave in groups of `concurrency` every
concurrency/rate seconds, each endpoint answers after its latency and fails at the given rate,
and the router, pools and outlier detector react as Envoy's do (envoy_pool.py, envoy_outlier.py).
The router side restates envoy source/common/router/router.cc and retry_state_impl.cc:
- retry decisions: 5xx retries any 5xx and resets; gateway-error 502/503/504 and resets;
  retriable-status-codes the listed codes; connect-failure refused connections; reset any reset;
  overflow (UO) is never retried; a per-try timeout is retried on 5xx, gateway-error or reset;
- a retriable failure with no retries left gets URX; a retry refused by max_retries gets UO;
- back-off before retry N is uniform in [0, min(base * 2^(N-1), max)) ms (fully jittered);
- retries avoid hosts already tried (previous_hosts, up to host_selection_max_attempts re-picks);
- the route timeout runs from the request's arrival (504 UT, no retry); the per-try timeout
  from the moment the attempt gets a connection;
- no host to pick (all ejected, panic threshold not reached) is 503 UH;
- a route over several weighted clusters picks one per request (weight/sum of weights, Envoy's
  weighted_clusters), and each cluster keeps its own pools, breakers, retry budget, load
  balancer and outlier detector; retries stay in the request's cluster; a cluster istiod would
  not build is 503 NC, and a route the sidecar answers itself (404 NR, redirect, direct
  response) never reaches an upstream.
Deterministic for a seed: every random choice comes from one random.Random(seed).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field, replace

from netsim.fields import FrozenDict
from proxy.envoy_outlier import MS, OutlierDetector
from proxy.envoy_policy import LoadTarget, RetryPolicy, UpstreamCluster
from proxy.envoy_pool import CONNECT_FAILURE, OVERFLOW, READY, ClusterPools, LoadBalancer
from proxy.envoy_report import (
    FLAG_ORDER,
    Attempt,
    HostStats,
    LoadReport,
    LoadSpec,
    RequestResult,
)

# Event priorities at equal times: an answer lands before timers fire, the outlier sweep runs
# before new attempts pick hosts.
_COMPLETE, _PER_TRY, _ROUTE_TIMEOUT, _SWEEP, _RETRY, _ARRIVE = range(6)


def simulate(target: LoadTarget, spec: LoadSpec) -> LoadReport:
    """Run the load and report every request, every endpoint and every outlier event."""
    return _Run(target, spec).run()


# ---------------------------------------------------------------- the run (mutable, private)


@dataclass(slots=True, eq=False)
class _Try:
    request: _Request
    host: str
    start: int
    attached: int | None = None
    done: bool = False
    plan: str = "200"  # what the endpoint will do: a status or "reset"


@dataclass(slots=True, eq=False)
class _Upstream:
    """One Envoy cluster's mutable state in the run."""

    config: UpstreamCluster
    weight: int
    hosts: tuple[str, ...]
    pools: ClusterPools
    lb: LoadBalancer
    outlier: OutlierDetector | None
    counts: dict[str, Counter]
    active_retries: int = 0


@dataclass(slots=True, eq=False)
class _Request:
    index: int
    retries_left: int
    next_interval_ms: int
    upstream: _Upstream | None = None
    start: int = 0
    done: bool = False
    holding_retry: bool = False
    current: _Try | None = None
    tried: set = field(default_factory=set)
    attempts: list = field(default_factory=list)


class _Run:
    def __init__(self, target: LoadTarget, spec: LoadSpec) -> None:
        self.target, self.spec = target, spec
        self.rng = random.Random(spec.seed)
        self.retry: RetryPolicy | None = target.route.retry
        self.upstreams = [self._upstream(b.cluster, b.weight) for b in target.backends]
        self.total_weight = sum(u.weight for u in self.upstreams)
        self.heap: list = []
        self.seq = itertools.count()
        self.now = 0
        self.unfinished = spec.requests
        self.results: list[RequestResult] = []
        self.stats: Counter = Counter()

    def _upstream(self, config: UpstreamCluster, weight: int) -> _Upstream:
        hosts = tuple(h.address for h in config.hosts)
        outlier = OutlierDetector(config.outlier, hosts) if config.outlier and hosts else None
        return _Upstream(config, weight, hosts,
                         ClusterPools(config.circuit_breakers, config.http2, self._connect_ok),
                         LoadBalancer(config.lb_policy, self.rng), outlier,
                         {h: Counter() for h in hosts})

    # ------------------------------------------------------------ the clock

    def _at(self, t: int, priority: int, obj: object) -> None:
        heapq.heappush(self.heap, (t, priority, next(self.seq), obj))

    def run(self) -> LoadReport:
        spec = self.spec
        retries = self.retry.num_retries if self.retry else 0
        base = self.retry.base_interval_ms if self.retry else 25
        for i in range(spec.requests):
            group = i // spec.concurrency
            t = round(group * spec.concurrency * 1_000_000 / spec.rate)
            self._at(t, _ARRIVE, _Request(i, retries, base))
        for up in self.upstreams:
            if up.outlier is not None:
                self._at(up.outlier.next_sweep(0), _SWEEP, up)
        handlers = {_COMPLETE: self._complete, _PER_TRY: self._per_try_timeout,
                    _ROUTE_TIMEOUT: self._route_timeout, _SWEEP: self._sweep,
                    _RETRY: self._retry_now, _ARRIVE: self._arrive}
        while self.heap:
            self.now, priority, _, obj = heapq.heappop(self.heap)
            handlers[priority](obj)
        return self._report()

    def _sweep(self, up: _Upstream) -> None:
        assert up.outlier is not None
        up.outlier.sweep(self.now)
        if self.unfinished:
            self._at(up.outlier.next_sweep(self.now), _SWEEP, up)

    # ------------------------------------------------------------ requests and attempts

    def _arrive(self, req: _Request) -> None:
        req.start = self.now
        route = self.target.route
        if route.answer is not None:
            self._finish(req, route.answer, (route.answer_flag,) if route.answer_flag else ())
            return
        req.upstream = self._weighted_pick()
        if not req.upstream.config.defined:
            self._finish(req, 503, ("NC",))
            return
        timeout = route.timeout_ms
        if timeout:
            self._at(self.now + timeout * MS, _ROUTE_TIMEOUT, req)
        self._attempt(req)

    def _retry_now(self, req: _Request) -> None:
        if not req.done:
            self._attempt(req)

    def _weighted_pick(self) -> _Upstream:
        """The request's cluster: one of the route's weighted clusters, at random by weight
        (no random draw when there is only one)."""
        if len(self.upstreams) == 1:
            return self.upstreams[0]
        value = self.rng.randrange(self.total_weight)
        for up in self.upstreams:
            if value < up.weight:
                return up
            value -= up.weight
        raise AssertionError("weights do not add up")

    def _attempt(self, req: _Request) -> None:
        up = req.upstream
        host = self._choose(req)
        if host is None:
            self._finish(req, 503, ("UH",))
            return
        attempt = _Try(req, host, self.now)
        req.current = attempt
        req.tried.add(host)
        up.counts[host]["routed"] += 1
        for stream, what in up.pools.new_stream(host, attempt):
            self._pool_answer(stream, what)

    def _choose(self, req: _Request) -> str | None:
        """The load balancer's pick among healthy hosts (all hosts in panic), re-picked while
        it lands on a host this request already tried."""
        up = req.upstream
        hosts, panic = up.hosts, False
        if up.outlier is not None:
            healthy = tuple(h for h in hosts if not up.outlier.ejected(h))
            threshold = up.config.outlier.healthy_panic_threshold
            panic = bool(hosts) and 100.0 * len(healthy) / len(hosts) < threshold
            hosts = up.hosts if panic else healthy
        if not hosts:
            return None
        if panic:
            self.stats["lb_healthy_panic"] += 1
        avoid = self.retry is not None and self.retry.previous_hosts and req.tried
        picks = 1 + (self.retry.host_selection_max_attempts if avoid else 0)
        for _ in range(picks):
            host = up.lb.pick(hosts, up.pools.active_by_host, panic)
            if not avoid or host not in req.tried:
                break
        return host

    def _connect_ok(self, host: str) -> bool:
        failure = self.spec.failures.get(host)
        if failure is None or failure.kind != "connect-failure":
            return True
        return self.rng.random() >= failure.rate

    def _pool_answer(self, attempt: _Try, what: str) -> None:
        if what == READY:
            self._started(attempt)
            return
        attempt.done = True
        self._record(attempt, "UO" if what == OVERFLOW else "UF")
        up = attempt.request.upstream
        if what == OVERFLOW:  # not retried, not counted against the host (envoy#25487)
            up.counts[attempt.host]["overflows"] += 1
            self._release_retry(attempt.request)
            self._finish(attempt.request, 503, ("UO",))
        else:
            assert what == CONNECT_FAILURE
            self._local_failure(attempt, "connect_failures", "connect-failure")
            self._failed(attempt.request, 503, "connect-failure", "UF")

    def _local_failure(self, attempt: _Try, counter: str, kind: str) -> None:
        """An error the router detects itself: counted for the host, told to the detector."""
        up = attempt.request.upstream
        up.counts[attempt.host][counter] += 1
        if up.outlier is not None:
            up.outlier.put_local_failure(attempt.host, kind, self.now)

    def _end_stream(self, attempt: _Try, close: bool) -> None:
        for stream, what in attempt.request.upstream.pools.end_stream(attempt, close=close):
            self._pool_answer(stream, what)

    def _started(self, attempt: _Try) -> None:
        """The attempt has a connection: decide what the endpoint does, set its timers."""
        attempt.attached = self.now
        outlier = attempt.request.upstream.outlier
        if outlier is not None:
            outlier.put_connect_success(attempt.host)
        failure = self.spec.failures.get(attempt.host)
        if failure is not None and failure.kind != "connect-failure" \
                and self.rng.random() < failure.rate:
            attempt.plan = "reset" if failure.kind == "reset" else str(failure.status)
        latency = self.spec.latencies.get(attempt.host, self.spec.latency_ms)
        self._at(self.now + round(latency * MS), _COMPLETE, attempt)
        per_try = self.retry.per_try_timeout_ms if self.retry else None
        if per_try:
            self._at(self.now + per_try * MS, _PER_TRY, attempt)

    def _complete(self, attempt: _Try) -> None:
        if attempt.done:
            return
        attempt.done = True
        up, host, plan = attempt.request.upstream, attempt.host, attempt.plan
        self._end_stream(attempt, close=plan == "reset")
        self._record(attempt, "UC" if plan == "reset" else plan)
        if plan == "reset":
            self._local_failure(attempt, "resets", "reset")
            self._failed(attempt.request, 503, "reset", "UC")
            return
        status = int(plan)
        if up.outlier is not None:
            up.outlier.put_http(host, status, self.now)
        if status >= 500:
            up.counts[host]["http_5xx"] += 1
            self._failed(attempt.request, status, None, None)
        else:
            up.counts[host]["ok"] += 1
            self._release_retry(attempt.request)
            self._finish(attempt.request, status, ())

    def _per_try_timeout(self, attempt: _Try) -> None:
        if attempt.done:
            return
        attempt.done = True
        self._end_stream(attempt, close=True)
        self._record(attempt, "UT")
        self._local_failure(attempt, "timeouts", "timeout")
        self._failed(attempt.request, 504, "timeout", "UT")

    def _route_timeout(self, req: _Request) -> None:
        if req.done:
            return
        attempt = req.current
        if attempt is not None and not attempt.done:
            attempt.done = True
            if attempt.attached is None:
                req.upstream.pools.cancel_pending(attempt)
            else:
                self._end_stream(attempt, close=True)
                self._local_failure(attempt, "timeouts", "timeout")
            self._record(attempt, "UT")
        self.stats["upstream_rq_timeout"] += 1
        self._finish(req, 504, ("UT",))

    # ------------------------------------------------------------ retries

    def _would_retry(self, status: int, cause: str | None) -> bool:
        policy = self.retry
        if policy is None:
            return False
        on = set(policy.retry_on)
        if cause is None:
            return ("5xx" in on and status >= 500) \
                or ("gateway-error" in on and status in (502, 503, 504)) \
                or ("retriable-4xx" in on and status == 409) \
                or ("retriable-status-codes" in on and status in policy.retriable_status_codes)
        if {"5xx", "gateway-error", "reset"} & on:
            return True
        return cause == "connect-failure" and bool({"connect-failure", "reset-before-request"}
                                                   & on)

    def _failed(self, req: _Request, status: int, cause: str | None, flag: str | None) -> None:
        """shouldRetry: retry with back-off, or answer with the failure (and URX or UO)."""
        flags = (flag,) if flag else ()
        self._release_retry(req)
        if not self._would_retry(status, cause):
            self._finish(req, status, flags)
            return
        if req.retries_left == 0:
            self.stats["upstream_rq_retry_limit_exceeded"] += 1
            self._finish(req, status, flags + ("URX",))
            return
        req.retries_left -= 1
        assert self.retry is not None
        up = req.upstream
        if up.active_retries >= up.config.circuit_breakers.max_retries:
            self.stats["upstream_rq_retry_overflow"] += 1
            self._finish(req, status, flags + ("UO",))
            return
        up.active_retries += 1
        req.holding_retry = True
        self.stats["upstream_rq_retry"] += 1
        interval = req.next_interval_ms
        req.next_interval_ms = min(2 * interval, self.retry.max_interval_ms)
        self._at(self.now + self.rng.randrange(interval) * MS, _RETRY, req)

    def _release_retry(self, req: _Request) -> None:
        """resetRetry: a scheduled retry stops counting against max_retries once its outcome
        is known or the request ends."""
        if req.holding_retry:
            req.holding_retry = False
            req.upstream.active_retries -= 1

    # ------------------------------------------------------------ results

    def _record(self, attempt: _Try, outcome: str) -> None:
        attempt.request.attempts.append(Attempt(attempt.host, attempt.start, self.now, outcome))

    def _finish(self, req: _Request, status: int, flags: tuple[str, ...]) -> None:
        if req.done:
            return
        req.done = True
        self._release_retry(req)
        self.unfinished -= 1
        ordered = tuple(sorted(set(flags), key=FLAG_ORDER.index))
        self.results.append(RequestResult(req.index, req.start, self.now, status, ordered,
                                          tuple(req.attempts)))

    def _report(self) -> LoadReport:
        results = tuple(sorted(self.results, key=lambda r: r.index))
        end = max((r.end_us for r in results), default=0)
        hosts, events, stats = [], [], Counter(self.stats)
        for up in self.upstreams:
            name, od = up.config.name, up.outlier
            for h in up.config.hosts:
                c = up.counts[h.address]
                hosts.append(HostStats(
                    address=h.address, pod=h.pod, routed=c["routed"], ok=c["ok"],
                    http_5xx=c["http_5xx"], connect_failures=c["connect_failures"],
                    resets=c["resets"], timeouts=c["timeouts"], overflows=c["overflows"],
                    ejections=od.ejections(h.address) if od else 0,
                    ejected_us=od.ejected_time(h.address, end) if od else 0, cluster=name))
            events += [replace(e, cluster=name) for e in (od.events if od else ())]
            pool = up.pools.stats
            stats.update({
                "upstream_cx_total": pool.cx_total, "upstream_cx_overflow": pool.cx_overflow,
                "upstream_cx_connect_fail": pool.cx_connect_fail,
                "upstream_cx_max_requests": pool.cx_max_requests,
                "upstream_rq_pending_overflow": pool.rq_pending_overflow})
        events.sort(key=lambda e: e.time_us)
        stats["outlier_detection.ejections_enforced_total"] = \
            sum(e.action == "eject" for e in events)
        stats["outlier_detection.ejections_overflow"] = sum(e.action == "overflow" for e in events)
        return LoadReport(self.target, self.spec, results, tuple(hosts), tuple(events), end,
                          FrozenDict(sorted(stats.items())))
