"""What a trace check expects, read from a suite file, and the first way a trace differs.

An expectation states what the specification promises for one connection, never how netsim
gets there: the result and reason of every path, the set of pods the paths deliver to (with
`--all-paths` semantics: every path of the fork, probabilities summing to 1), their shares,
the port the backend's socket sees, whether the backend sees the client's own address, the
HTTP status a proxy answers with, mTLS between sidecars, ClientIP session affinity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netsim.fields import Fields
from netsim.trace_types import DELIVERED, REASONS, REQUEST, RESULTS, Trace

TOLERANCE = 1e-6
# Reasons a path may end with besides REASONS (the sidecar's own; see the final report).
EXTRA_REASONS = ("mtls-required", "envoy-response", "authz-denied")
TRACE_KEYS = ("result", "reason", "endpoints", "weights", "target_port", "client_ip_preserved",
              "http_status", "statuses", "request", "tls_secret", "mtls", "session_affinity")
REQUEST_KEYS = ("method", "host", "path")
_STATUS = re.compile(r"(?:answers |: )([1-5]\d\d)\b")


@dataclass(frozen=True, slots=True)
class TraceExpect:
    """One trace check's expectation (None: not checked)."""

    result: tuple[str, ...] | None = None
    reason: tuple[str, ...] | None = None
    endpoints: tuple[str, ...] | None = None
    weights: dict[str, float] | str | None = None  # "equal" or endpoint -> share
    target_port: int | dict[str, int] | None = None  # one port, or ns/pod -> port
    client_ip_preserved: bool | None = None
    http_status: int | None = None
    statuses: dict[int, float] | None = None  # HTTP status -> share of the connections
    request: dict[str, str] | None = None  # the HTTP request as the backend receives it
    tls_secret: str | None = None  # the Secret ("ns/name") a proxy terminates TLS with
    mtls: bool | None = None
    affinity_timeout: int | None = None  # sessionAffinity ClientIP: timeoutSeconds


def _one_or_many(f: Fields, key: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    value = f.data.get(key)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str)
                                                               for v in values):
        raise f.error(key, f"must be one of {', '.join(allowed)} or a list of them")
    for v in values:
        if v not in allowed:
            raise f.error(key, f"must be one of {', '.join(allowed)}, got {v!r}")
    return tuple(values)


def parse_trace_expect(f: Fields) -> TraceExpect:
    """The `expect:` mapping of a trace check (after any per-dataplane differences merged)."""
    unknown = sorted(set(f.data) - set(TRACE_KEYS))
    if unknown:
        raise f.error(unknown[0], f"unknown expectation (known: {', '.join(TRACE_KEYS)})")
    weights = f.data.get("weights")
    if weights is not None and weights != "equal":
        if not isinstance(weights, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in weights.items()):
            raise f.error("weights", "must be 'equal' or a mapping of ns/pod to a share")
        weights = {k: float(v) for k, v in weights.items()}
    endpoints = None
    if f.data.get("endpoints") is not None:
        endpoints = f.str_list("endpoints")
        for i, e in enumerate(endpoints):
            if e.count("/") != 1:
                raise f.error(f"endpoints[{i}]", f"must be NAMESPACE/POD, got {e!r}")
    affinity = None
    if f.data.get("session_affinity") is not None:
        affinity = f.sub("session_affinity").int("timeout", required=True, lo=1,
                                                 hi=86400)
    request = None
    if f.data.get("request") is not None:
        r = f.sub("request")
        unknown = sorted(set(r.data) - set(REQUEST_KEYS))
        if unknown:
            raise r.error(unknown[0], f"unknown field (known: {', '.join(REQUEST_KEYS)})")
        request = {k: r.str(k, required=True) for k in r.data}
    return TraceExpect(
        result=_one_or_many(f, "result", RESULTS),
        reason=_one_or_many(f, "reason", (*REASONS, *EXTRA_REASONS)),
        endpoints=endpoints, weights=weights,
        target_port=_target_port(f),
        client_ip_preserved=f.data.get("client_ip_preserved") if _bool(
            f, "client_ip_preserved") else None,
        http_status=f.int("http_status", lo=100, hi=599),
        statuses=_statuses(f), request=request, tls_secret=f.str("tls_secret"),
        mtls=f.data.get("mtls") if _bool(f, "mtls") else None,
        affinity_timeout=affinity)


def _target_port(f: Fields) -> int | dict[str, int] | None:
    value = f.data.get("target_port")
    if isinstance(value, dict):
        ports = f.sub("target_port")
        return {k: ports.int(k, required=True, lo=1, hi=65535) for k in value}
    return f.int("target_port", lo=1, hi=65535)


def _statuses(f: Fields) -> dict[int, float] | None:
    value = f.data.get("statuses")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, int) and 100 <= k <= 599 and isinstance(v, (int, float))
            and not isinstance(v, bool) for k, v in value.items()):
        raise f.error("statuses", "must map HTTP status codes to shares, e.g. {200: 0.5, "
                      "500: 0.5}")
    return {k: float(v) for k, v in value.items()}


def _bool(f: Fields, key: str) -> bool:
    """Whether a boolean is given (and is one)."""
    if f.data.get(key) is None:
        return False
    f.bool(key)
    return True


def _either(values: tuple[str, ...]) -> str:
    return values[0] if len(values) == 1 else " or ".join(values)


def _path_text(t: Trace) -> str:
    where = t.delivered_to or (t.hops[-1].netns if t.hops else "?")
    return f"{t.result} ({t.reason}) at {where}: {t.detail}"


def delivered_packet(t: Trace):
    """The request as the destination's socket received it (the last delivery on the way)."""
    found = [h.packet for h in t.hops if h.direction == REQUEST and h.action == "delivered"]
    return found[-1] if found else None


def http_status(t: Trace) -> int | None:
    """The status the client gets: a proxy's own answer, or 200 from the application."""
    if t.result == DELIVERED:
        return 200
    found = _STATUS.search(t.detail or "")
    return int(found.group(1)) if found else None


def first_difference(expect: TraceExpect, trace: Trace, sent) -> str | None:
    """The first way the trace (every path, with mode all) differs from the expectation."""
    paths = trace.branches or (trace,)
    total = sum(p.probability for p in paths)
    if abs(total - 1.0) > TOLERANCE:
        return f"the paths' probabilities sum to {total:.6f}, not 1"
    n = len(paths)
    if expect.result is not None:
        bad = [p for p in paths if p.result not in expect.result]
        if bad:
            return (f"expected {_either(expect.result)}, got {_path_text(bad[0])}"
                    + (f" (on {len(bad)} of {n} paths)" if n > 1 else ""))
    if expect.reason is not None:
        bad = [p for p in paths if p.reason not in expect.reason]
        if bad:
            return (f"expected reason {_either(expect.reason)}, got {_path_text(bad[0])}"
                    + (f" (on {len(bad)} of {n} paths)" if n > 1 else ""))
    delivered = [p for p in paths if p.result == DELIVERED]
    if expect.endpoints is not None:
        got = sorted({p.delivered_to or "?" for p in delivered})
        want = sorted(set(expect.endpoints))
        if got != want:
            missing = [e for e in want if e not in got]
            extra = [e for e in got if e not in want]
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(extra)}"] if extra else [])
            return (f"expected endpoints [{', '.join(want)}], got [{', '.join(got)}] "
                    f"({'; '.join(parts)})")
    if expect.weights is not None:
        share: dict[str, float] = {}
        for p in delivered:
            share[p.delivered_to or "?"] = share.get(p.delivered_to or "?", 0.0) + p.probability
        want_w = expect.weights
        if want_w == "equal":
            keys = sorted(share) or sorted(expect.endpoints or ())
            want_w = {k: 1.0 / len(keys) for k in keys} if keys else {}
        for key in sorted(set(share) | set(want_w)):
            if abs(share.get(key, 0.0) - want_w.get(key, 0.0)) > TOLERANCE:
                return (f"expected {key} to take {want_w.get(key, 0.0):.4f} of the "
                        f"connections, got {share.get(key, 0.0):.4f}")
    for p in delivered:
        pkt = delivered_packet(p)
        if pkt is None:
            continue
        port = expect.target_port
        if isinstance(port, dict):
            port = port.get(p.delivered_to or "")
        if port is not None and pkt.dport != port:
            return f"expected {p.delivered_to} to receive on port {port}, got {pkt.dport}"
        if expect.client_ip_preserved is not None and \
                (pkt.src == sent.src) != expect.client_ip_preserved:
            if expect.client_ip_preserved:
                return (f"expected {p.delivered_to} to see the client address {sent.src}, "
                        f"got {pkt.src}")
            return (f"expected {p.delivered_to} to see a translated source (SNAT/"
                    f"masquerade), got the client address {pkt.src}")
    if expect.request is not None:
        for p in delivered:
            pkt = delivered_packet(p)
            got = pkt.http if pkt is not None else None
            for key, want in expect.request.items():
                value = getattr(got, key, None) if got is not None else None
                if value != want:
                    return (f"expected {p.delivered_to} to receive the request with {key} "
                            f"{want!r}, got {value!r}")
    if expect.tls_secret is not None:
        for p in delivered:
            found = [d for h in p.hops for d in h.detail
                     if d.startswith("TLS terminated with Secret ")]
            names = [d.split()[4] for d in found]
            if expect.tls_secret not in names:
                return (f"expected TLS terminated with Secret {expect.tls_secret} on the way "
                        f"to {p.delivered_to}, got "
                        f"{', '.join(names) if names else 'no TLS termination'}")
    if expect.http_status is not None:
        for p in paths:
            got_status = http_status(p)
            if got_status != expect.http_status:
                return (f"expected HTTP {expect.http_status}, got "
                        f"{got_status if got_status is not None else 'no HTTP answer'} "
                        f"({_path_text(p)})")
    if expect.statuses is not None:
        shares: dict[int | None, float] = {}
        for p in paths:
            code = http_status(p)
            shares[code] = shares.get(code, 0.0) + p.probability
        for code in sorted(set(shares) | set(expect.statuses), key=lambda c: c or 0):
            want = expect.statuses.get(code, 0.0) if code is not None else 0.0
            if abs(shares.get(code, 0.0) - want) > TOLERANCE:
                what = f"HTTP {code}" if code is not None else "no HTTP answer"
                return (f"expected {what} on {want:.4f} of the connections, got "
                        f"{shares.get(code, 0.0):.4f}")
    if expect.mtls is not None:
        for p in delivered:
            terminated = any(h.component == "envoy" and "(mTLS terminated)" in h.action
                             for h in p.hops)
            if terminated != expect.mtls:
                return (f"expected the connection to {p.delivered_to} "
                        f"{'over' if expect.mtls else 'without'} mTLS, got "
                        f"{'mTLS' if terminated else 'plaintext'} at its sidecar")
    return None
