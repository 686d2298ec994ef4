"""Envoy's connection pools, circuit breakers and load balancers: expectations from the
circuit-breaking overview and conn_pool_base.cc (see ../shared/reference/mesh-ingress.md §6)."""

from __future__ import annotations

import random

from proxy.envoy_policy import CircuitBreakers
from proxy.envoy_pool import CONNECT_FAILURE, OVERFLOW, READY, ClusterPools, LoadBalancer


def pools(http2: bool = False, refuse: tuple[str, ...] = (), **limits) -> ClusterPools:
    return ClusterPools(CircuitBreakers(**limits), http2, lambda host: host not in refuse)


def test_one_connection_one_pending_the_third_concurrent_request_overflows():
    # Istio's circuit-breaking task: maxConnections 1, http1MaxPendingRequests 1.
    p = pools(max_connections=1, max_pending_requests=1)
    assert p.new_stream("a", "r1") == [("r1", READY)]
    assert p.new_stream("a", "r2") == []  # waits for the connection
    assert p.new_stream("a", "r3") == [("r3", OVERFLOW)]
    assert p.stats.rq_pending_overflow == 1
    assert p.end_stream("r1", close=False) == [("r2", READY)]  # keep-alive reuse
    assert (p.connections, p.pending, p.active) == (1, 0, 1)


def test_every_host_gets_one_connection_even_past_max_connections():
    p = pools(max_connections=1)
    assert p.new_stream("a", "r1") == [("r1", READY)]
    assert p.new_stream("b", "r2") == [("r2", READY)]  # b had no connection at all
    assert p.connections == 2 and p.stats.cx_overflow == 1
    assert p.new_stream("b", "r3") == []  # b has one: over the limit, r3 waits


def test_max_requests_overflows_when_the_stream_attaches():
    p = pools(max_requests=1)
    assert p.new_stream("a", "r1") == [("r1", READY)]
    assert p.new_stream("b", "r2") == [("r2", OVERFLOW)]
    assert p.stats.rq_pending_overflow == 1


def test_max_requests_per_connection_drains_and_reconnects():
    p = pools(max_requests_per_connection=1)
    p.new_stream("a", "r1")
    p.end_stream("r1", close=False)
    assert p.connections == 0 and p.stats.cx_max_requests == 1
    assert p.new_stream("a", "r2") == [("r2", READY)]
    assert p.stats.cx_total == 2


def test_a_reset_closes_an_http1_connection_and_a_waiting_stream_gets_a_new_one():
    p = pools(max_connections=1, max_pending_requests=5)
    p.new_stream("a", "r1")
    p.new_stream("a", "r2")
    assert p.end_stream("r1", close=True) == [("r2", READY)]
    assert p.stats.cx_total == 2 and p.connections == 1


def test_http2_multiplexes_every_stream_on_one_connection():
    p = pools(http2=True, max_connections=1, max_pending_requests=1)
    assert [p.new_stream("a", f"r{i}")[0][1] for i in range(5)] == [READY] * 5
    assert p.connections == 1 and p.active == 5
    p.end_stream("r0", close=True)  # an HTTP/2 reset ends only its stream
    assert p.connections == 1


def test_a_refused_connection_fails_the_waiting_streams():
    p = pools(refuse=("a",))
    assert p.new_stream("a", "r1") == [("r1", CONNECT_FAILURE)]
    assert (p.pending, p.connections, p.stats.cx_connect_fail) == (0, 0, 1)


def test_a_timed_out_request_leaves_the_pending_queue():
    p = pools(max_connections=1, max_pending_requests=1)
    p.new_stream("a", "r1")
    p.new_stream("a", "r2")
    assert p.cancel_pending("r2") and p.pending == 0
    assert p.new_stream("a", "r3") == []  # the pending slot is free again


def test_round_robin_walks_the_hosts_in_order():
    lb = LoadBalancer("ROUND_ROBIN", random.Random(0))
    hosts = ("a", "b", "c")
    assert [lb.pick(hosts, {}, False) for _ in range(7)] == list("abcabca")


class FixedRandom(random.Random):
    """randrange answers from a list, to pin the two samples of least-request."""

    def __init__(self, values):
        super().__init__(0)
        self.values = list(values)

    def randrange(self, n):  # type: ignore[override]
        return self.values.pop(0)


def test_least_request_keeps_the_first_sample_unless_the_second_is_less_loaded():
    hosts = ("a", "b", "c")
    active = {"a": 2, "b": 1, "c": 2}
    lb = LoadBalancer("LEAST_REQUEST", FixedRandom([0, 1, 0, 2, 1, 1]))
    assert lb.pick(hosts, active, False) == "b"  # a (2) vs b (1)
    assert lb.pick(hosts, active, False) == "a"  # a (2) vs c (2): a tie keeps the first
    assert lb.pick(hosts, active, False) == "b"  # the same host twice


def test_random_picks_with_the_seeded_generator():
    hosts = ("a", "b", "c")
    picks = [LoadBalancer("RANDOM", random.Random(7)).pick(hosts, {}, False) for _ in range(3)]
    assert len(set(picks)) == 1  # same seed, same pick
