"""Envoy's outlier detector: expectations hand-computed from outlier_detection_impl.cc and the
outlier detection overview (see ../shared/reference/mesh-ingress.md section 6)."""

from __future__ import annotations

import pytest

from proxy.envoy_outlier import OutlierDetector
from proxy.envoy_policy import OutlierDetection

S = 1_000_000  # microseconds per second


def detector(hosts: int = 3, **config) -> OutlierDetector:
    return OutlierDetector(OutlierDetection(**config), tuple(f"h{i}" for i in range(hosts)))


def fail(d: OutlierDetector, host: str, times: int, now: int = 0, status: int = 503) -> None:
    for _ in range(times):
        d.put_http(host, status, now)


# ejectHost: eject only if 100 * (ejected + 1) / hosts <= max_ejection_percent, in doubles;
# always_eject_one_host is never set by Istio, so a small cluster at 10% ejects nobody.
@pytest.mark.parametrize(("hosts", "percent", "already", "ejected"), [
    (3, 10, 0, False),    # 1/3 = 33.3% > 10%: Istio's default ejects nobody below 10 hosts
    (9, 10, 0, False),    # 1/9 = 11.1% > 10%
    (10, 10, 0, True),    # 1/10 = 10% <= 10%
    (10, 10, 1, False),   # 2/10 = 20%
    (20, 10, 1, True),    # 2/20 = 10%
    (20, 10, 2, False),   # 3/20 = 15%
    (7, 15, 0, True),     # 1/7 = 14.29% <= 15%
    (7, 14, 0, False),    # 14.29% > 14%: no rounding down
    (6, 50, 2, True),     # 3/6 = 50%
    (6, 50, 3, False),    # 4/6 = 66.7%
    (2, 50, 0, True),
    (2, 50, 1, False),
    (3, 100, 2, True),    # 100% lets every host go
])
def test_max_ejection_percent_counts_the_host_being_ejected(hosts, percent, already, ejected):
    d = detector(hosts, max_ejection_percent=percent, consecutive_5xx=1)
    for i in range(already):
        d.monitors[f"h{i}"].ejected = True
    d.put_http(f"h{hosts - 1}", 503, 0)
    assert d.ejected(f"h{hosts - 1}") is ejected
    assert [e.action for e in d.events] == ["eject" if ejected else "overflow"]
    assert d.events[0].ejected_before == already


def test_consecutive_5xx_fires_at_exactly_the_threshold_and_success_resets():
    d = detector(max_ejection_percent=100)  # consecutive5xxErrors defaults to 5
    fail(d, "h0", 4)
    d.put_http("h0", 200, 0)  # the run restarts
    fail(d, "h0", 4)
    assert not d.ejected("h0")
    fail(d, "h0", 1, now=7 * S)
    assert d.ejected("h0")
    e = d.events[0]
    assert (e.time_us, e.reason, e.errors, e.ejections, e.duration_ms) == \
        (7 * S, "consecutive_5xx", 5, 1, 30_000)


def test_any_5xx_counts_for_consecutive_5xx_but_only_502_503_504_for_gateway_errors():
    d = detector(max_ejection_percent=100, consecutive_5xx=5, consecutive_gateway_failure=3)
    for status in (503, 503, 500, 502, 504):  # gateway run: 1, 2, reset by 500, 1, 2
        d.put_http("h0", status, 0)
    assert [(e.action, e.reason) for e in d.events] == [("eject", "consecutive_5xx")]


def test_gateway_errors_eject_first_when_their_threshold_is_lower():
    d = detector(max_ejection_percent=100, consecutive_5xx=5, consecutive_gateway_failure=3)
    fail(d, "h0", 3, status=502)
    assert [(e.action, e.reason, e.errors) for e in d.events] == \
        [("eject", "consecutive_gateway_failure", 3)]


def test_a_refused_ejection_resets_the_counter_so_the_next_try_needs_a_full_run():
    d = detector(3)  # 10%: every ejection overflows
    fail(d, "h0", 5)
    fail(d, "h0", 4)
    assert [e.action for e in d.events] == ["overflow"]
    fail(d, "h0", 1)
    assert [e.action for e in d.events] == ["overflow", "overflow"]


def test_local_origin_errors_count_as_503_and_504_unless_split():
    d = detector(max_ejection_percent=100, consecutive_gateway_failure=3)
    d.put_local_failure("h0", "connect-failure", 0)
    d.put_local_failure("h0", "reset", 0)
    d.put_local_failure("h0", "timeout", 0)
    assert [e.reason for e in d.events] == ["consecutive_gateway_failure"]


def test_split_mode_counts_local_origin_failures_apart_and_a_connection_resets_them():
    d = detector(max_ejection_percent=100, split_external_local_origin_errors=True,
                 consecutive_local_origin_failure=2)
    d.put_local_failure("h0", "connect-failure", 0)
    d.put_connect_success("h0")
    d.put_local_failure("h0", "reset", 0)
    fail(d, "h0", 4)  # 5xx responses do not add to the local-origin run
    assert d.events == []
    d.put_local_failure("h0", "timeout", 0)
    assert [e.reason for e in d.events] == ["consecutive_local_origin_failure"]


def test_hosts_return_only_at_an_interval_sweep_and_ejection_time_grows():
    # interval 10s, base 30s: ejected at 12.3s it may return at 42.3s, so the 50s sweep frees it.
    d = detector(max_ejection_percent=100, consecutive_5xx=1)
    d.put_http("h0", 503, 12_300_000)
    for t in (20, 30, 40):
        d.sweep(t * S)
        assert d.ejected("h0")
    d.sweep(50 * S)
    assert not d.ejected("h0")
    assert d.ejected_time("h0", 60 * S) == 37_700_000
    # Ejected again at 50.5s: backoff 2, so 60s; free from 110.5s, at the 120s sweep.
    d.put_http("h0", 503, 50_500_000)
    assert d.events[-1].duration_ms == 60_000
    d.sweep(110 * S)
    assert d.ejected("h0")
    d.sweep(120 * S)
    assert not d.ejected("h0")
    # Healthy for a whole interval at the 130s and 140s sweeps: the backoff falls 2 -> 0,
    # so the third ejection lasts 30s again.
    d.sweep(130 * S)
    d.sweep(140 * S)
    d.put_http("h0", 503, 145 * S)
    assert d.events[-1].duration_ms == 30_000
    assert [e.action for e in d.events] == ["eject", "uneject", "eject", "uneject", "eject"]
    assert d.ejections("h0") == 3


def test_ejection_time_stops_growing_at_max_ejection_time():
    d = detector(max_ejection_percent=100, consecutive_5xx=1)  # base 30s, max 300s
    durations, now = [], 0
    for _ in range(12):
        d.put_http("h0", 503, now)
        durations.append(d.events[-1].duration_ms // 1000)
        now = d.next_sweep(now + d.events[-1].duration_ms * 1000 - 1)
        d.sweep(now)  # returned at the first sweep the ejection allows: no healthy interval
    assert durations == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]


def test_an_ejected_host_keeps_its_counter_until_it_returns():
    d = detector(max_ejection_percent=100, consecutive_5xx=2, interval_ms=1000)
    fail(d, "h0", 2)  # ejected
    fail(d, "h0", 3)  # in-flight answers while ejected: counted, never fire
    d.sweep(30 * S)
    assert not d.ejected("h0")
    fail(d, "h0", 1)  # the counter was reset on return: one error is not enough
    assert not d.ejected("h0")
    fail(d, "h0", 1)
    assert d.ejected("h0")
