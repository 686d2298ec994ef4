"""Load runs through the client sidecar, hand-computed from Envoy's documented behaviour:
round robin, consecutive-5xx ejection rounded up to the interval sweep, max_ejection_percent,
retries (URX, previous hosts), circuit breakers (UO), no healthy upstream (UH), timeouts (UT)."""

from __future__ import annotations

import pytest

from netsim.fields import FrozenDict
from proxy.envoy_load import simulate
from proxy.envoy_policy import (
    CircuitBreakers,
    Host,
    LoadTarget,
    OutlierDetection,
    RetryPolicy,
    Route,
    UpstreamCluster,
)
from proxy.envoy_report import Failure, LoadSpec, over_time

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
RETRY_5XX = RetryPolicy(num_retries=2, retry_on=("5xx",))


def target(hosts=(A, B, C), lb="ROUND_ROBIN", outlier=None, retry=None, timeout_ms=None,
           breakers=None) -> LoadTarget:
    return LoadTarget(
        client="ns/client", service="ns/web", port=80,
        cluster=UpstreamCluster("outbound|80||web.ns.svc.cluster.local",
                                tuple(Host(h, f"ns/{h}") for h in hosts), lb,
                                circuit_breakers=breakers or CircuitBreakers(),
                                outlier=outlier),
        route=Route(retry=retry, timeout_ms=timeout_ms))


def spec(requests, failures=None, latencies=None, **kw) -> LoadSpec:
    return LoadSpec(requests=requests, failures=FrozenDict(failures or {}),
                    latencies=FrozenDict(latencies or {}), **kw)


def host(report, address):
    return next(h for h in report.hosts if h.address == address)


def test_consecutive_5xx_ejects_then_the_sweep_returns_the_host():
    # 10 req/s round robin over A, B, C; B answers 503 always. B gets requests 1, 4, 7: the
    # third 503 lands at 0.71s and ejects B for 5s; it may return at 5.71s, so the 6s sweep
    # returns it. B then gets requests 61, 64, 67 and is ejected again at 6.71s for 10s.
    od = OutlierDetection(consecutive_5xx=3, interval_ms=1000, base_ejection_time_ms=5000,
                          max_ejection_percent=100)
    r = simulate(target(outlier=od), spec(70, {B: Failure(1.0)}))
    assert [(e.time_us, e.host, e.action, e.ejections, e.duration_ms) for e in r.events] == [
        (710_000, B, "eject", 1, 5000), (6_000_000, B, "uneject", 1, 0),
        (6_710_000, B, "eject", 2, 10000)]
    assert r.succeeded == 64 and r.codes == {200: 64, 503: 6}
    assert r.flags == {"-": 70}  # a 503 answered by the app carries no flag
    b = host(r, B)
    assert (b.routed, b.http_5xx, b.ejections) == (6, 6, 2)
    assert b.ejected_us == (6_000_000 - 710_000) + (6_910_000 - 6_710_000)
    assert r.end_us == 6_910_000


def test_istio_default_max_ejection_percent_ejects_nobody_among_three_hosts():
    # maxEjectionPercent 10: ejecting 1 of 3 would be 33%, so each run of 3 errors is refused
    # (ejections_overflow) and B keeps getting every third request.
    od = OutlierDetection(consecutive_5xx=3)
    r = simulate(target(outlier=od), spec(60, {B: Failure(1.0)}))
    assert {e.action for e in r.events} == {"overflow"}
    assert len(r.events) == 6  # 20 errors: a refused ejection after every 3rd
    assert r.succeeded == 40 and host(r, B).ejections == 0
    assert r.stats["outlier_detection.ejections_overflow"] == 6


def test_a_failed_request_is_retried_on_another_host():
    # retryOn 5xx, previous hosts avoided. Picks go a, b(503) -> c, a, b(503) -> c, ...:
    # every second request lands on B and is retried on C.
    r = simulate(target(retry=RETRY_5XX), spec(30, {B: Failure(1.0)}))
    assert r.succeeded == 30
    assert [(h.routed, h.ok, h.http_5xx) for h in r.hosts] == [(15, 15, 0), (15, 0, 15),
                                                               (15, 15, 0)]
    assert r.stats["upstream_rq_retry"] == 15
    assert [len(q.attempts) for q in r.requests[:4]] == [1, 2, 1, 2]


def test_retries_exhausted_give_urx_with_the_last_status():
    r = simulate(target(retry=RETRY_5XX), spec(5, {A: Failure(1.0, status=500),
                                                   B: Failure(1.0, status=500),
                                                   C: Failure(1.0, status=500)}))
    assert r.succeeded == 0 and r.flags == {"URX": 5} and r.codes == {500: 5}
    assert all(len(q.attempts) == 3 for q in r.requests)  # 1 + 2 retries, three hosts
    assert r.stats["upstream_rq_retry_limit_exceeded"] == 5


def test_istio_default_retry_policy_does_not_retry_503_but_retries_refused_connections():
    # retry.go: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
    # with no status codes (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY).
    default = RetryPolicy()
    r = simulate(target(hosts=(A, B), retry=default), spec(4, {A: Failure(1.0)}))
    assert r.codes == {200: 2, 503: 2} and r.stats.get("upstream_rq_retry", 0) == 0
    r = simulate(target(hosts=(A, B), retry=default),
                 spec(4, {A: Failure(1.0, kind="connect-failure")}))
    # Round robin over A, B: each request picks A (refused), then B on its retry.
    assert r.succeeded == 4 and r.stats["upstream_rq_retry"] == 4
    assert host(r, A).connect_failures == 4
    r = simulate(target(hosts=(A, B), retry=default),
                 spec(2, {A: Failure(1.0, kind="connect-failure"),
                          B: Failure(1.0, kind="connect-failure")}))
    assert r.flags == {"UF,URX": 2} and r.codes == {503: 2}


def test_a_reset_is_uc_and_retried_on_reset():
    retry = RetryPolicy(num_retries=1, retry_on=("reset",))
    r = simulate(target(hosts=(A,), retry=retry), spec(3, {A: Failure(1.0, kind="reset")}))
    assert r.flags == {"UC,URX": 3}
    r = simulate(target(hosts=(A,)), spec(3, {A: Failure(1.0, kind="reset")}))
    assert r.flags == {"UC": 3}


@pytest.mark.parametrize(("concurrency", "overflowed"), [(1, 0), (2, 0), (3, 10), (4, 20)])
def test_pending_overflow_with_one_connection_and_one_pending_request(concurrency,
                                                                     overflowed):
    # Istio's circuit-breaking task: one endpoint, maxConnections 1, http1MaxPendingRequests
    # 1. Of C requests sent at once, one gets the connection, one waits, the rest get 503 UO
    # at once (not retried). Groups are 1s apart, long after the 10 ms answers.
    breakers = CircuitBreakers(max_connections=1, max_pending_requests=1)
    r = simulate(target(hosts=(A,), breakers=breakers, retry=RETRY_5XX),
                 spec(10 * concurrency, rate=concurrency, concurrency=concurrency))
    assert r.flags.get("UO", 0) == overflowed
    assert r.succeeded == 10 * concurrency - overflowed
    waited = [q for q in r.requests if q.ok and q.end_us - q.start_us == 20_000]
    assert len(waited) == (10 if concurrency > 1 else 0)  # queued behind the first


def test_max_retries_breaker_turns_the_second_concurrent_retry_into_uo():
    breakers = CircuitBreakers(max_retries=1)
    failures = {A: Failure(1.0), B: Failure(1.0)}
    r = simulate(target(hosts=(A, B), breakers=breakers, retry=RETRY_5XX),
                 spec(4, failures, concurrency=2, rate=2))
    assert r.flags == {"URX": 2, "UO": 2}
    assert r.stats["upstream_rq_retry_overflow"] == 2


def test_no_healthy_upstream_when_the_only_host_is_ejected():
    # consecutive5xxErrors 1: the first 503 ejects the only host (100% allowed) for 30s;
    # every later request in the run finds no host: 503 UH.
    od = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100)
    r = simulate(target(hosts=(A,), outlier=od), spec(20, {A: Failure(1.0)}))
    assert r.flags == {"-": 1, "UH": 19} and r.codes == {503: 20}
    assert host(r, A).routed == 1


@pytest.mark.parametrize(("min_health", "panic"), [(0, False), (66, False), (70, True)])
def test_panic_threshold_sends_traffic_to_ejected_hosts(min_health, panic):
    # 1 of 3 ejected leaves 66.7% healthy: below minHealthPercent the LB uses every host.
    od = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100,
                          healthy_panic_threshold=min_health)
    r = simulate(target(outlier=od), spec(30, {B: Failure(1.0)}))
    assert (r.stats.get("lb_healthy_panic", 0) > 0) is panic
    assert (host(r, B).routed > 1) is panic


def test_per_try_timeout_moves_to_another_host_and_route_timeout_ends_the_request():
    retry = RetryPolicy(num_retries=1, retry_on=("5xx",), per_try_timeout_ms=50)
    # Round robin over A, B: each request tries A first (its retry took B), times out at 50 ms.
    r = simulate(target(hosts=(A, B), retry=retry), spec(2, latencies={A: 500}))
    assert r.succeeded == 2
    assert [[a.outcome for a in q.attempts] for q in r.requests] == [["UT", "200"]] * 2
    assert host(r, A).timeouts == 2
    r = simulate(target(hosts=(A,), timeout_ms=50), spec(3, latency_ms=100))
    assert r.flags == {"UT": 3} and r.codes == {504: 3}
    assert all(q.end_us - q.start_us == 50_000 for q in r.requests)


def test_the_same_seed_gives_the_same_run():
    od = OutlierDetection(consecutive_5xx=2, max_ejection_percent=50)
    t = target(lb="LEAST_REQUEST", outlier=od, retry=RETRY_5XX)
    s = spec(200, {A: Failure(0.5), C: Failure(0.2, kind="reset")}, concurrency=4, seed=3)
    assert simulate(t, s) == simulate(t, s)


def test_over_time_windows_show_the_ejection():
    od = OutlierDetection(consecutive_5xx=3, interval_ms=1000, base_ejection_time_ms=5000,
                          max_ejection_percent=100)
    r = simulate(target(outlier=od), spec(60, {B: Failure(1.0)}))
    windows = over_time(r, 6)
    assert [(w.requests, w.ok, w.ejected) for w in windows] == \
        [(10, 7, 1), (10, 10, 1), (10, 10, 1), (10, 10, 1), (10, 10, 1), (10, 10, 1)]
