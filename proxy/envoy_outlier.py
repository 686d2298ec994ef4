"""Envoy's outlier detector: consecutive-error ejection, max_ejection_percent, interval sweeps.

Restates envoy source/common/upstream/outlier_detection_impl.cc (putHttpResponseCode,
onConsecutiveErrorWorker, ejectHost, checkHostForUneject, onIntervalTimer) for one cluster:
- counters count up on each error and fire when they *equal* the threshold; a success resets the
  5xx and gateway counters; a non-gateway 5xx resets the gateway counter;
- a host is ejected only if 100 * (ejected + 1) / hosts <= max_ejection_percent (Istio never
  sets always_eject_one_host), and the counter that fired is reset either way;
- the ejection lasts min(base_ejection_time * backoff, max_ejection_time), where backoff grows by
  one per ejection and shrinks by one per interval sweep the host spends healthy;
- hosts return only at an interval sweep (every `interval` from the start), so an ejection is
  rounded up to the next sweep.
Success-rate and failure-percentage ejection are off: Istio sets their enforcement to 0.
Times are integer microseconds; the caller owns the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.envoy_policy import OutlierDetection

CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
CONSECUTIVE_LOCAL_ORIGIN_FAILURE = "consecutive_local_origin_failure"
GATEWAY_ERRORS = (502, 503, 504)  # Http::CodeUtility::isGatewayError
# What the router reports for errors it detects itself, when errors are not split
# (resultToHttpCode): connect failures and resets count as 503, timeouts as 504.
LOCAL_ORIGIN_CODE = {"connect-failure": 503, "reset": 503, "timeout": 504}
MS = 1000  # microseconds per millisecond


@dataclass(frozen=True, slots=True)
class OutlierEvent:
    """One line of Envoy's outlier event log: an ejection, a return, or a refused ejection."""

    time_us: int
    host: str
    action: str  # "eject" | "uneject" | "overflow" (ejections_overflow: refused by the percent)
    reason: str | None = None  # consecutive_5xx, consecutive_gateway_failure, ...
    errors: int = 0  # the threshold that fired
    ejections: int = 0  # num_ejections after this event
    ejected_before: int = 0  # hosts already ejected when the ejection was decided
    hosts: int = 0
    duration_ms: int = 0  # for eject: min(base * backoff, max)
    cluster: str = ""  # the Envoy cluster whose detector logged it (set by the load run)


@dataclass(slots=True)
class _Monitor:
    """DetectorHostMonitorImpl: the per-host counters."""

    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    consecutive_local: int = 0
    ejected: bool = False
    num_ejections: int = 0
    backoff: int = 0  # eject_time_backoff_
    last_ejection: int | None = None
    last_unejection: int | None = None
    ejected_us: int = 0  # total time spent ejected (closed periods)


@dataclass(slots=True)
class OutlierDetector:
    """Mutable detector state for one simulation run."""

    config: OutlierDetection
    hosts: tuple[str, ...]
    events: list[OutlierEvent] = field(default_factory=list)
    monitors: dict[str, _Monitor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.monitors = {h: _Monitor() for h in self.hosts}

    # ------------------------------------------------------------ queries

    def ejected(self, host: str) -> bool:
        return self.monitors[host].ejected

    @property
    def active(self) -> int:
        return sum(m.ejected for m in self.monitors.values())

    def next_sweep(self, now: int) -> int:
        """The first interval sweep strictly after `now` (the timer is armed at time 0)."""
        step = self.config.interval_ms * MS
        return (now // step + 1) * step

    def ejected_time(self, host: str, end: int) -> int:
        """Microseconds the host spent ejected up to `end`."""
        m = self.monitors[host]
        return m.ejected_us + (end - m.last_ejection if m.ejected and m.last_ejection is not None
                               else 0)

    def ejections(self, host: str) -> int:
        return self.monitors[host].num_ejections

    # ------------------------------------------------------------ results from the router

    def put_http(self, host: str, status: int, now: int) -> None:
        """An upstream response status (putHttpResponseCode)."""
        m, cfg = self.monitors[host], self.config
        if 500 <= status <= 599:
            if status in GATEWAY_ERRORS:
                m.consecutive_gateway += 1
                if cfg.consecutive_gateway_failure and \
                        m.consecutive_gateway == cfg.consecutive_gateway_failure:
                    self._consecutive_error(host, CONSECUTIVE_GATEWAY_FAILURE, now)
            else:
                m.consecutive_gateway = 0
            m.consecutive_5xx += 1
            if cfg.consecutive_5xx and m.consecutive_5xx == cfg.consecutive_5xx:
                self._consecutive_error(host, CONSECUTIVE_5XX, now)
        else:
            m.consecutive_5xx = 0
            m.consecutive_gateway = 0

    def put_local_failure(self, host: str, kind: str, now: int) -> None:
        """An error Envoy detected itself: connect-failure, reset or timeout."""
        if not self.config.split_external_local_origin_errors:
            self.put_http(host, LOCAL_ORIGIN_CODE[kind], now)
            return
        m = self.monitors[host]
        m.consecutive_local += 1
        if m.consecutive_local == self.config.consecutive_local_origin_failure:
            self._consecutive_error(host, CONSECUTIVE_LOCAL_ORIGIN_FAILURE, now)

    def put_connect_success(self, host: str) -> None:
        """The pool handed the request a connection (LocalOriginConnectSuccess): in split mode
        this resets the local-origin counter; otherwise it is not reported."""
        if self.config.split_external_local_origin_errors:
            self.monitors[host].consecutive_local = 0

    # ------------------------------------------------------------ the detector

    def _consecutive_error(self, host: str, reason: str, now: int) -> None:
        """onConsecutiveErrorWorker: an ejected host keeps its counter (it is reset on return);
        otherwise try to eject, then reset the counter that fired."""
        m = self.monitors[host]
        if m.ejected:
            return
        self._eject(host, reason, now)
        if reason == CONSECUTIVE_5XX:
            m.consecutive_5xx = 0
        elif reason == CONSECUTIVE_GATEWAY_FAILURE:
            m.consecutive_gateway = 0
        else:
            m.consecutive_local = 0

    def _eject(self, host: str, reason: str, now: int) -> None:
        cfg, m = self.config, self.monitors[host]
        threshold = {CONSECUTIVE_5XX: cfg.consecutive_5xx,
                     CONSECUTIVE_GATEWAY_FAILURE: cfg.consecutive_gateway_failure}.get(
            reason, cfg.consecutive_local_origin_failure)
        active = self.active
        # ejectHost: the percentage counts the host about to be ejected.
        if 100.0 * (active + 1) / len(self.hosts) > min(100, cfg.max_ejection_percent):
            self.events.append(OutlierEvent(now, host, "overflow", reason, threshold,
                                            m.num_ejections, active, len(self.hosts)))
            return
        m.ejected, m.num_ejections, m.last_ejection = True, m.num_ejections + 1, now
        base, cap = cfg.base_ejection_time_ms, cfg.max_ejection_time_ms
        if m.backoff * base < cap + base:
            m.backoff += 1
        self.events.append(OutlierEvent(now, host, "eject", reason, threshold, m.num_ejections,
                                        active, len(self.hosts), min(base * m.backoff, cap)))

    def sweep(self, now: int) -> None:
        """onIntervalTimer: return hosts whose ejection has run out, then shrink the backoff of
        hosts that stayed healthy for a whole interval since their return."""
        cfg = self.config
        for host, m in self.monitors.items():
            if not m.ejected or m.last_ejection is None:
                continue
            duration = min(cfg.base_ejection_time_ms * m.backoff, cfg.max_ejection_time_ms)
            if duration * MS <= now - m.last_ejection:
                m.ejected = False
                m.ejected_us += now - m.last_ejection
                m.consecutive_5xx = m.consecutive_gateway = m.consecutive_local = 0
                m.last_unejection = now
                self.events.append(OutlierEvent(now, host, "uneject", None, 0, m.num_ejections,
                                                hosts=len(self.hosts)))
        for m in self.monitors.values():
            if not m.ejected and m.last_unejection is not None and m.backoff and \
                    now - m.last_unejection >= cfg.interval_ms * MS:
                m.backoff -= 1
