"""What a load run produced: the spec it ran, each request, each endpoint, the outlier events.

Plain frozen data for the CLI to render; `over_time` cuts the run into windows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from netsim.fields import EMPTY, FrozenDict
from proxy.envoy_outlier import OutlierEvent
from proxy.envoy_policy import LoadTarget

# Envoy's response flag order in access logs (StreamInfo ResponseFlag enum).
FLAG_ORDER = ("UH", "UT", "UF", "UC", "UO", "NR", "URX", "NC")


@dataclass(frozen=True, slots=True)
class Failure:
    """How an endpoint misbehaves: `rate` of its attempts fail this way.

    http: it answers `status`; reset: it closes the connection before answering (UC);
    connect-failure: `rate` of new connections to it are refused (UF).
    """

    rate: float
    kind: str = "http"
    status: int = 503


@dataclass(frozen=True, slots=True)
class LoadSpec:
    requests: int
    rate: float = 10.0  # requests per second
    concurrency: int = 1  # requests sent at the same instant
    latency_ms: float = 10.0  # how long an endpoint takes to answer
    failures: FrozenDict = EMPTY  # host address -> Failure
    latencies: FrozenDict = EMPTY  # host address -> ms
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream try: the host and how it ended (an HTTP status or an Envoy flag)."""

    host: str
    start_us: int
    end_us: int
    outcome: str  # "200", "503", ..., or "UF", "UC", "UT", "UO"


@dataclass(frozen=True, slots=True)
class RequestResult:
    index: int
    start_us: int
    end_us: int
    status: int
    flags: tuple[str, ...]
    attempts: tuple[Attempt, ...]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def flag_text(self) -> str:
        """%RESPONSE_FLAGS% as Envoy's access log prints it ("-" for none)."""
        return ",".join(self.flags) or "-"


@dataclass(frozen=True, slots=True)
class HostStats:
    address: str
    pod: str | None
    routed: int = 0  # attempts the load balancer sent here (retries included)
    ok: int = 0
    http_5xx: int = 0
    connect_failures: int = 0
    resets: int = 0
    timeouts: int = 0
    overflows: int = 0
    ejections: int = 0
    ejected_us: int = 0
    cluster: str = ""  # the Envoy cluster the endpoint belongs to (one pod may be in several)


@dataclass(frozen=True, slots=True)
class LoadReport:
    target: LoadTarget
    spec: LoadSpec
    requests: tuple[RequestResult, ...]
    hosts: tuple[HostStats, ...]
    events: tuple[OutlierEvent, ...]
    end_us: int
    stats: FrozenDict  # Envoy's cluster counters for the run (upstream_rq_retry, ...)

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.requests)

    @property
    def success_rate(self) -> float:
        return self.succeeded / len(self.requests) if self.requests else 0.0

    @property
    def codes(self) -> Counter:
        return Counter(r.status for r in self.requests)

    @property
    def flags(self) -> Counter:
        return Counter(r.flag_text for r in self.requests)


@dataclass(frozen=True, slots=True)
class Window:
    """Requests that started in [start, end): how they ended."""

    start_us: int
    end_us: int
    requests: int
    ok: int
    flags: FrozenDict  # flag text -> count, failures only
    ejected: int  # hosts ejected at the window's end


def over_time(report: LoadReport, windows: int = 10) -> tuple[Window, ...]:
    """The run cut into at most `windows` windows of a round width (1, 2 or 5 x 10^k ms) by
    request start time, for a success-rate timeline."""
    if not report.requests:
        return ()
    last = report.requests[-1].start_us
    width = next(w for w in (m * 10**k * 1000 for k in range(12) for m in (1, 2, 5))
                 if w * windows > last)
    out = []
    for lo in range(0, last + 1, width):
        rs = [r for r in report.requests if lo <= r.start_us < lo + width]
        fails = Counter(r.flag_text if r.flags else str(r.status) for r in rs if not r.ok)
        out.append(Window(lo, lo + width, len(rs), sum(r.ok for r in rs), FrozenDict(fails),
                          _ejected_at(report.events, lo + width)))
    return tuple(out)


def _ejected_at(events: tuple[OutlierEvent, ...], t: int) -> int:
    state: dict[tuple[str, str], bool] = {}
    for e in events:
        if e.time_us < t and e.action in ("eject", "uneject"):
            state[e.cluster, e.host] = e.action == "eject"
    return sum(state.values())
