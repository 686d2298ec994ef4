"""Envoy's upstream connection pools, circuit breakers and load balancers for one cluster.

Restates envoy source/common/conn_pool/conn_pool_base.cc (newStream, tryCreateNewConnection,
attachStreamToClient, onUpstreamReady, onStreamClosed) and the circuit-breaking overview
(docs/root/intro/arch_overview/upstream/circuit_breaking.rst):
- a stream takes a ready connection of the chosen host's pool; if none is ready it must fit in
  the cluster's pending budget (max_pending_requests) or it overflows (503 UO), then it waits;
- a pool opens a connection for pending streams while the cluster is under max_connections, and
  always when the pool has no connection at all ("at least one connection per host");
- a stream attaching to a connection must fit in max_requests or it overflows (UO);
- a connection serves max_requests_per_connection streams, then drains and closes;
- HTTP/1.1 runs one stream per connection, HTTP/2 up to max_concurrent_streams.
Simplifications: connections open instantly (a connect either succeeds or is refused on the
spot), one worker thread, pending streams leave their queue first-in first-out.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.envoy_policy import CircuitBreakers

READY, OVERFLOW, CONNECT_FAILURE = "ready", "overflow", "connect-failure"


@dataclass(slots=True, eq=False)
class Connection:
    host: str
    limit: int  # concurrent streams
    remaining: int | None  # streams left before draining (None: unlimited)
    streams: set = field(default_factory=set)
    draining: bool = False

    @property
    def ready(self) -> bool:
        return not self.draining and len(self.streams) < self.limit


@dataclass(slots=True)
class _HostPool:
    connections: list[Connection] = field(default_factory=list)
    pending: deque = field(default_factory=deque)


@dataclass(slots=True)
class PoolStats:
    """The cluster counters Envoy keeps for these events (upstream_* stats)."""

    cx_total: int = 0
    cx_overflow: int = 0
    cx_connect_fail: int = 0
    cx_max_requests: int = 0
    rq_pending_overflow: int = 0  # pending and max_requests overflows both count here


@dataclass(slots=True)
class ClusterPools:
    """Every host's pool plus the cluster-wide resource counts the breakers compare."""

    limits: CircuitBreakers
    http2: bool
    connect_ok: Callable[[str], bool]  # decides whether a new connection to a host succeeds
    pools: dict[str, _HostPool] = field(default_factory=dict)
    stats: PoolStats = field(default_factory=PoolStats)
    connections: int = 0
    pending: int = 0
    active: int = 0
    active_by_host: dict[str, int] = field(default_factory=dict)
    where: dict[Any, Connection] = field(default_factory=dict)  # stream -> its connection

    def _pool(self, host: str) -> _HostPool:
        return self.pools.setdefault(host, _HostPool())

    def new_stream(self, host: str, stream: Any) -> list[tuple[Any, str]]:
        """Ask the host's pool for the stream; what happened to it and to any stream that a
        new connection picked up, each as (stream, READY | OVERFLOW | CONNECT_FAILURE). A
        stream missing from the answer waits in the pending queue."""
        pool = self._pool(host)
        ready = next((c for c in pool.connections if c.ready), None)
        if ready is not None:
            return [self._attach(ready, stream)]
        if self.pending >= self.limits.max_pending_requests:
            self.stats.rq_pending_overflow += 1
            return [(stream, OVERFLOW)]
        pool.pending.append(stream)
        self.pending += 1
        return self._create_connections(host)

    def _attach(self, conn: Connection, stream: Any) -> tuple[Any, str]:
        if self.active >= self.limits.max_requests:
            self.stats.rq_pending_overflow += 1
            return stream, OVERFLOW
        conn.streams.add(stream)
        self.where[stream] = conn
        self.active += 1
        self.active_by_host[conn.host] = self.active_by_host.get(conn.host, 0) + 1
        if conn.remaining is not None:
            conn.remaining -= 1
            if conn.remaining == 0:
                conn.draining = True
                self.stats.cx_max_requests += 1
        return stream, READY

    def _create_connections(self, host: str) -> list[tuple[Any, str]]:
        """tryCreateNewConnection for as long as streams wait: under the cluster's connection
        budget, or the pool's first connection regardless of it."""
        pool, out = self._pool(host), []
        while pool.pending:
            if self.connections >= self.limits.max_connections:
                self.stats.cx_overflow += 1
                if pool.connections:
                    break
            self.stats.cx_total += 1
            if not self.connect_ok(host):
                self.stats.cx_connect_fail += 1
                # purgePendingStreams: every stream waiting in this pool fails.
                while pool.pending:
                    out.append((pool.pending.popleft(), CONNECT_FAILURE))
                    self.pending -= 1
                break
            limit = self.limits.max_concurrent_streams if self.http2 else 1
            per_conn = self.limits.max_requests_per_connection or None
            conn = Connection(host, limit, per_conn)
            pool.connections.append(conn)
            self.connections += 1
            out += self._drain_pending(host, conn)
        return out

    def _drain_pending(self, host: str, conn: Connection) -> list[tuple[Any, str]]:
        """onUpstreamReady: waiting streams take the connection while it has room."""
        pool, out = self._pool(host), []
        while pool.pending and conn.ready:
            stream = pool.pending.popleft()
            self.pending -= 1
            out.append(self._attach(conn, stream))
        return out

    def end_stream(self, stream: Any, close: bool) -> list[tuple[Any, str]]:
        """The stream finished (close=False: the connection is reusable) or was reset
        (close=True: an HTTP/1.1 connection cannot be reused, so it closes); what waiting
        streams of the same pool got."""
        conn = self.where.pop(stream)
        conn.streams.discard(stream)
        self.active -= 1
        self.active_by_host[conn.host] -= 1
        pool = self._pool(conn.host)
        if (close and not self.http2) or (conn.draining and not conn.streams):
            pool.connections.remove(conn)
            self.connections -= 1
            return self._create_connections(conn.host)
        return self._drain_pending(conn.host, conn) if conn.ready else []

    def cancel_pending(self, stream: Any) -> bool:
        """Take a waiting stream out of its queue (the request timed out); False if it was
        not waiting."""
        for pool in self.pools.values():
            if stream in pool.pending:
                pool.pending.remove(stream)
                self.pending -= 1
                return True
        return False


# ---------------------------------------------------------------- load balancers


@dataclass(slots=True)
class LoadBalancer:
    """Envoy's LB over the hosts it may use (all healthy, or all in panic).

    ROUND_ROBIN with equal weights walks an index (unweightedHostPick; Envoy seeds the start
    at random, netsim starts at the first host); LEAST_REQUEST with equal weights samples two
    hosts with replacement and keeps the first unless the second has fewer active requests;
    RANDOM picks uniformly.
    """

    policy: str
    rng: random.Random
    index: dict[str, int] = field(default_factory=dict)

    def pick(self, hosts: tuple[str, ...], active: dict[str, int], panic: bool) -> str:
        if self.policy == "ROUND_ROBIN":
            key = "all" if panic else "healthy"
            i = self.index.get(key, 0)
            self.index[key] = i + 1
            return hosts[i % len(hosts)]
        if self.policy == "RANDOM":
            return hosts[self.rng.randrange(len(hosts))]
        best = hosts[self.rng.randrange(len(hosts))]
        other = hosts[self.rng.randrange(len(hosts))]
        return other if active.get(other, 0) < active.get(best, 0) else best
