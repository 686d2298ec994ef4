"""`netsim mesh load`: requests through a client sidecar, with circuit breaking and ejection."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from netsim.errors import InputError
from netsim.fields import FrozenDict

FAILURE_HELP = ("NS/POD=RATE[:WHAT]: that endpoint fails RATE (0-1, or a percentage) of the "
                "time; WHAT is a 5xx status (default 503), reset (closes the connection: UC) "
                "or connect-failure (refuses RATE of new connections: UF); repeatable")
MAX_EVENTS = 40  # outlier events listed in text; JSON lists them all


def add_load_verb(verbs: Any, cluster: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `load` to the `netsim mesh` verbs; `cluster` is the shared cluster-input parent."""
    p = verbs.add_parser(
        "load", parents=[cluster], help="simulate a series of requests through the client's "
        "sidecar: retries, circuit breakers, outlier ejection, response flags",
        description="Send N requests from a pod's Envoy sidecar to a Service port on a simulated "
        "clock. The VirtualService route whose match the request passes picks the weighted "
        "clusters (subsets), retries and timeout; each cluster's DestinationRule "
        "connectionPool and outlierDetection (a subset's over the host's) act as Envoy's do. "
        "Endpoints fail at the rates given. "
        "Prints the success rate, Envoy response flags (UH, UF, UC, UT, UO, URX, NR, NC), each "
        "endpoint's requests and ejections, and the ejection timeline.")
    p.add_argument("--from", dest="source", required=True, metavar="NS/POD",
                   help="the client pod (its sidecar sends the requests)")
    p.add_argument("--to", dest="destination", required=True, metavar="svc/NS/NAME:PORT",
                   help="the Service port (number or name)")
    p.add_argument("--requests", type=int, default=100, metavar="N",
                   help="how many requests (default 100)")
    p.add_argument("--rate", type=float, default=10.0, metavar="R",
                   help="requests per second (default 10)")
    p.add_argument("--concurrency", type=int, default=1, metavar="C",
                   help="requests sent at the same instant, every C/R seconds (default 1)")
    p.add_argument("--latency", type=float, default=10.0, metavar="MS",
                   help="how long an endpoint takes to answer, in ms (default 10)")
    p.add_argument("--slow", action="append", default=[], metavar="NS/POD=MS",
                   help="a different latency for one endpoint; repeatable")
    p.add_argument("--fail", action="append", default=[], metavar="NS/POD=RATE[:WHAT]",
                   help=FAILURE_HELP)
    p.add_argument("--http", metavar="REQUEST", help="what each request is, for "
                   "VirtualService match conditions: 'METHOD http://HOST/PATH' (default: GET / "
                   "with the Service's FQDN as Host)")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="a request header, for header match conditions; repeatable")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0; the same seed "
                   "gives the same run)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_mesh_load)
    return p


def cmd_mesh_load(args: argparse.Namespace) -> int:
    from netsim.cli import load_cluster
    from proxy.envoy_load import simulate
    from proxy.envoy_policy import resolve_target
    from proxy.envoy_report import LoadSpec

    namespace, name, port = parse_service_port(args.destination)
    for flag, value, lo in (("--requests", args.requests, 1), ("--concurrency",
                                                                args.concurrency, 1)):
        if value < lo:
            raise InputError(f"must be at least {lo}, got {value}", obj="command line",
                             field=flag)
    for flag, value in (("--rate", args.rate), ("--latency", args.latency)):
        if not value > 0 or value == float("inf"):
            raise InputError(f"must be a positive number, got {value}", obj="command line",
                             field=flag)
    if args.requests > 1_000_000:
        raise InputError("at most 1000000 requests", obj="command line", field="--requests")
    cluster = load_cluster(args)
    target = resolve_target(cluster, args.source, namespace, name, port,
                            parse_request(args, f"{name}.{namespace}.svc.cluster.local"))
    hosts = {h.address: h for b in target.backends for h in b.cluster.hosts}
    failures: dict[str, Any] = {}
    for text in args.fail:
        pod, failure = parse_failure(text)
        failures.update(dict.fromkeys(_hosts_of(pod, hosts, "--fail"), failure))
    latencies: dict[str, float] = {}
    for text in args.slow:
        pod, ms = parse_slow(text)
        latencies.update(dict.fromkeys(_hosts_of(pod, hosts, "--slow"), ms))
    spec = LoadSpec(requests=args.requests, rate=args.rate, concurrency=args.concurrency,
                    latency_ms=args.latency, failures=FrozenDict(failures),
                    latencies=FrozenDict(latencies), seed=args.seed)
    report = simulate(target, spec)
    if args.output == "json":
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report_text(report), end="")
    return 0


# ---------------------------------------------------------------- arguments


def parse_service_port(text: str) -> tuple[str, str, int | str]:
    """svc/NS/NAME:PORT -> (namespace, name, port number or name)."""
    body, _, port = text.partition(":")
    parts = body.split("/")
    if len(parts) != 3 or parts[0] != "svc" or not all(parts[1:]) or not port:
        raise InputError(f"must be svc/NS/NAME:PORT, got {text!r}", obj="command line",
                         field="--to")
    return parts[1], parts[2], int(port) if port.isdigit() else port


def parse_request(args: argparse.Namespace, fqdn: str):
    """--http and --header -> the HttpRequest routes are matched against."""
    from netsim.packet import HttpRequest, parse_http

    request = parse_http(args.http) if args.http else HttpRequest("GET", fqdn, "/")
    headers = []
    for text in args.header:
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            raise InputError(f"must be NAME:VALUE, got {text!r}", obj="command line",
                             field="--header")
        headers.append((name.strip().lower(), value.strip()))
    return replace(request, headers=request.headers + tuple(headers))


def parse_failure(text: str):
    """NS/POD=RATE[:WHAT] -> (pod, Failure)."""
    from proxy.envoy_report import Failure

    pod, rate_text, what = _split_assignment(text, "--fail", "NS/POD=RATE[:WHAT]")
    rate = _rate(rate_text, text)
    if what in ("", "5xx"):
        return pod, Failure(rate)
    if what in ("reset", "connect-failure"):
        return pod, Failure(rate, kind=what)
    if what.isdigit() and 500 <= int(what) <= 599:
        return pod, Failure(rate, status=int(what))
    raise InputError(f"{text!r}: WHAT must be a 5xx status, reset or connect-failure, got "
                     f"{what!r}", obj="command line", field="--fail")


def parse_slow(text: str) -> tuple[str, float]:
    pod, ms_text, extra = _split_assignment(text, "--slow", "NS/POD=MS")
    try:
        ms = float(ms_text)
    except ValueError:
        ms = -1.0
    if extra or not 0 < ms < float("inf"):
        raise InputError(f"{text!r}: MS must be a positive number of milliseconds",
                         obj="command line", field="--slow")
    return pod, ms


def _split_assignment(text: str, flag: str, form: str) -> tuple[str, str, str]:
    pod, eq, value = text.partition("=")
    if not eq or not pod or not value:
        raise InputError(f"must be {form}, got {text!r}", obj="command line", field=flag)
    value, _, extra = value.partition(":")
    return pod, value, extra


def _rate(value: str, text: str) -> float:
    try:
        rate = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 1:
        raise InputError(f"{text!r}: RATE must be between 0 and 1 (or 0% and 100%)",
                         obj="command line", field="--fail")
    return rate


def _hosts_of(pod: str, hosts: dict, flag: str) -> list[str]:
    """The endpoint addresses of a pod (NS/POD), or the endpoint itself (IP or IP:PORT)."""
    found = [a for a, h in hosts.items() if h.pod == pod or a == pod
             or a.rpartition(":")[0].strip("[]") == pod]
    if not found:
        have = ", ".join(f"{h.pod or a}" for a, h in hosts.items()) or "none"
        raise InputError(f"{pod} is not a ready endpoint of the Service port (endpoints: "
                         f"{have})", obj="command line", field=flag)
    return found


# ---------------------------------------------------------------- rendering


def _s(us: int) -> str:
    return f"{us / 1e6:.3f}s"


def _ms(ms: int | None) -> str:
    if ms is None:
        return "none"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _limit(n: int) -> str:
    return "unlimited" if n >= 2**31 - 1 else str(n)


def config_lines(report) -> list[str]:
    t, r = report.target, report.target.route
    split = len(t.backends) > 1
    lines = [] if r.answer is not None else \
        [line for b in t.backends for line in cluster_lines(b, split)]
    where = f"VirtualService {r.virtual_service} http[{r.index}]" if r.virtual_service and \
        r.index is not None else f"VirtualService {r.virtual_service}" if r.virtual_service \
        else "default route"
    if r.answer is not None:
        lines.append(f"  {where}: the sidecar answers {r.answer}"
                     + (f" {r.answer_flag}" if r.answer_flag else "") + ", no upstream")
        return lines
    if r.retry is None:
        retries = "retries off"
    else:
        on = ",".join(r.retry.retry_on)
        codes = ",".join(map(str, r.retry.retriable_status_codes))
        retries = (f"retries {r.retry.num_retries} on {on}"
                   + (f" (codes {codes})" if codes else " (no status codes)"
                      if "retriable-status-codes" in r.retry.retry_on else "")
                   + f", perTryTimeout {_ms(r.retry.per_try_timeout_ms)}")
    lines.append(f"  {where}: {retries}, timeout {_ms(r.timeout_ms)}")
    return lines


def cluster_lines(backend, split: bool) -> list[str]:
    """One Envoy cluster of the route: endpoints, breakers, outlier detection (and its weight
    when the route splits)."""
    c, cb, od = backend.cluster, backend.cluster.circuit_breakers, backend.cluster.outlier
    weight = f"  weight {backend.weight}" if split else ""
    if not c.defined:
        return [f"Cluster  {c.name}{weight}  (no such cluster: 503 NC)"]
    lines = [f"Cluster  {c.name}{weight}  ({len(c.hosts)} ready endpoints, "
             f"{'HTTP/2' if c.http2 else 'HTTP/1.1'}, lb {c.lb_policy})",
             f"  DestinationRule {c.destination_rule or '<none>'}: maxConnections "
             f"{_limit(cb.max_connections)}, http1MaxPendingRequests "
             f"{_limit(cb.max_pending_requests)}, http2MaxRequests {_limit(cb.max_requests)}, "
             f"maxRequestsPerConnection {_limit(cb.max_requests_per_connection or 2**32)}, "
             f"maxRetries {_limit(cb.max_retries)}"]
    if od is None:
        lines.append("  outlierDetection: none (no host is ever ejected)")
    else:
        parts = [f"consecutive5xxErrors {od.consecutive_5xx or 'off'}",
                 f"consecutiveGatewayErrors {od.consecutive_gateway_failure or 'off'}"]
        if od.split_external_local_origin_errors:
            parts.append(f"consecutiveLocalOriginFailures {od.consecutive_local_origin_failure}")
        parts += [f"interval {_ms(od.interval_ms)}",
                  f"baseEjectionTime {_ms(od.base_ejection_time_ms)}",
                  f"maxEjectionPercent {od.max_ejection_percent}%",
                  f"minHealthPercent {od.healthy_panic_threshold}%"]
        lines.append("  outlierDetection: " + ", ".join(parts))
    return lines


def short_cluster(name: str) -> str:
    """outbound|80|v1|web.shop.svc.cluster.local -> v1 (the host when there is no subset)."""
    _, _, subset, host = name.split("|")
    return subset or host


def report_text(report) -> str:
    from netsim.views import Table, render
    from proxy.envoy_report import over_time

    spec, t = report.spec, report.target
    out = [f"Load: {spec.requests} requests from {t.client} to svc/{t.service}:{t.port}, "
           f"{spec.rate:g}/s, {spec.concurrency} at a time, {spec.latency_ms:g} ms upstream "
           f"latency, seed {spec.seed}"]
    out += config_lines(report)
    out += [f"note: {n}" for n in t.notes]
    n, ok = len(report.requests), report.succeeded
    out += ["", f"Summary: {ok}/{n} succeeded ({100 * report.success_rate:.1f}%) over "
            f"{_s(report.end_us)}",
            "  responses: " + ", ".join(f"{code} x{k}" for code, k in
                                        sorted(report.codes.items())),
            "  response flags: " + ", ".join(f"{flag} x{k}" for flag, k in
                                             sorted(report.flags.items(), key=_flag_key))]
    retried = report.stats.get("upstream_rq_retry", 0)
    if retried:
        out.append(f"  retries: {retried} (limit exceeded "
                   f"{report.stats.get('upstream_rq_retry_limit_exceeded', 0)}, overflow "
                   f"{report.stats.get('upstream_rq_retry_overflow', 0)})")
    split = len(t.backends) > 1
    rows = tuple(((short_cluster(h.cluster),) if split else ()) + (
        h.address, h.pod or "-", str(h.routed), str(h.ok), str(h.http_5xx),
        str(h.connect_failures), str(h.resets), str(h.timeouts), str(h.overflows),
        str(h.ejections), _s(h.ejected_us)) for h in report.hosts)
    out += ["", "Endpoints"]
    table = render(Table((("CLUSTER",) if split else ()) + (
        "ENDPOINT", "POD", "REQUESTS", "2XX", "5XX", "UF", "UC", "UT", "UO", "EJECTIONS",
        "EJECTED"), rows))
    nobody = "the sidecar answers every request itself" if t.route.answer is not None else \
        "every request is UH" if all(b.cluster.defined for b in t.backends) else \
        "every request is UH or NC"
    out += ["  " + line for line in table.splitlines()] or [f"  none: {nobody}"]
    pods = {h.address: h.pod for h in report.hosts}
    outliers = {b.cluster.name: b.cluster.outlier for b in t.backends}
    out += ["", "Outlier events"]
    if not report.events:
        out.append("  none" if any(outliers.values()) else
                   "  none (no outlierDetection in the DestinationRule)")
    for e in report.events[:MAX_EVENTS]:
        where = f"  {short_cluster(e.cluster)}" if split else ""
        out.append(f"  {_s(e.time_us):>10}  {e.host}  {pods.get(e.host) or '-'}{where}  "
                   f"{event_text(e, outliers.get(e.cluster, t.cluster.outlier))}")
    if len(report.events) > MAX_EVENTS:
        out.append(f"  ... {len(report.events) - MAX_EVENTS} more (all of them in -o json)")
    windows = over_time(report)
    if len(windows) > 1:
        rows = tuple((f"{_s(w.start_us)}-{_s(w.end_us)}", str(w.requests), str(w.ok),
                      ", ".join(f"{k} x{v}" for k, v in sorted(w.flags.items())) or "-",
                      str(w.ejected)) for w in windows)
        table = render(Table(("STARTED", "REQUESTS", "OK", "FAILED", "EJECTED"), rows))
        out += ["", "Over time"] + ["  " + line for line in table.splitlines()]
    return "\n".join(out) + "\n"


def _flag_key(item: tuple[str, int]) -> tuple[int, str]:
    return (0 if item[0] == "-" else 1, item[0])


def event_text(e, outlier) -> str:
    """One outlier event in words; a refused ejection shows Envoy's percentage test."""
    share = f"{e.ejected_before + 1}/{e.hosts} hosts"
    reason = f"{e.errors} {(e.reason or '').replace('_', ' ')}"
    if e.action == "eject":
        return (f"ejected ({reason}; ejection {e.ejections}, for {_ms(e.duration_ms)}; "
                f"{share} ejected)")
    if e.action == "uneject":
        return "returned to the load balancing set"
    pct = 100.0 * (e.ejected_before + 1) / e.hosts
    return (f"not ejected ({reason}): {share} = {pct:.1f}% > maxEjectionPercent "
            f"{outlier.max_ejection_percent}%")


def cluster_json(c) -> dict:
    """One cluster's DestinationRule-derived settings, as the JSON report shows them."""
    cb, od = c.circuit_breakers, c.outlier
    return {
        "destinationRule": c.destination_rule, "lbPolicy": c.lb_policy, "http2": c.http2,
        "circuitBreakers": {"maxConnections": cb.max_connections,
                            "maxPendingRequests": cb.max_pending_requests,
                            "maxRequests": cb.max_requests, "maxRetries": cb.max_retries,
                            "maxRequestsPerConnection": cb.max_requests_per_connection},
        "outlierDetection": None if od is None else {
            "consecutive5xxErrors": od.consecutive_5xx,
            "consecutiveGatewayErrors": od.consecutive_gateway_failure,
            "splitExternalLocalOriginErrors": od.split_external_local_origin_errors,
            "consecutiveLocalOriginFailures": od.consecutive_local_origin_failure,
            "intervalMs": od.interval_ms, "baseEjectionTimeMs": od.base_ejection_time_ms,
            "maxEjectionTimeMs": od.max_ejection_time_ms,
            "maxEjectionPercent": od.max_ejection_percent,
            "minHealthPercent": od.healthy_panic_threshold}}


def report_json(report) -> dict:
    from proxy.envoy_report import over_time

    t, spec, r = report.target, report.spec, report.target.route
    return {
        "client": t.client, "service": t.service, "port": t.port, "cluster": t.cluster.name,
        "config": {
            **cluster_json(t.cluster), "virtualService": r.virtual_service, "route": r.index,
            "request": str(t.request) if t.request else None,
            "requestHeaders": dict(t.request.headers) if t.request else {},
            "answer": r.answer,
            "retries": None if r.retry is None else {
                "attempts": r.retry.num_retries, "retryOn": list(r.retry.retry_on),
                "retriableStatusCodes": list(r.retry.retriable_status_codes),
                "perTryTimeoutMs": r.retry.per_try_timeout_ms},
            "timeoutMs": r.timeout_ms,
            "clusters": [{"cluster": b.cluster.name, "weight": b.weight,
                          "defined": b.cluster.defined, "endpoints": len(b.cluster.hosts),
                          **cluster_json(b.cluster)} for b in t.backends],
        },
        "load": {"requests": spec.requests, "rate": spec.rate, "concurrency": spec.concurrency,
                 "latencyMs": spec.latency_ms, "seed": spec.seed,
                 "failures": {a: {"rate": f.rate, "kind": f.kind,
                                  "status": f.status if f.kind == "http" else None}
                              for a, f in sorted(spec.failures.items())},
                 "latencies": dict(sorted(spec.latencies.items()))},
        "summary": {"requests": len(report.requests), "succeeded": report.succeeded,
                    "successRate": round(report.success_rate, 6),
                    "durationSeconds": report.end_us / 1e6,
                    "codes": {str(k): v for k, v in sorted(report.codes.items())},
                    "flags": dict(sorted(report.flags.items(), key=_flag_key))},
        "endpoints": [{"cluster": h.cluster, "address": h.address, "pod": h.pod,
                       "requests": h.routed, "2xx": h.ok,
                       "5xx": h.http_5xx, "UF": h.connect_failures, "UC": h.resets,
                       "UT": h.timeouts, "UO": h.overflows, "ejections": h.ejections,
                       "ejectedSeconds": h.ejected_us / 1e6} for h in report.hosts],
        "events": [{"time": e.time_us / 1e6, "cluster": e.cluster, "endpoint": e.host,
                    "action": e.action,
                    "reason": e.reason, "errors": e.errors, "ejections": e.ejections,
                    "ejectedBefore": e.ejected_before, "hosts": e.hosts,
                    "durationSeconds": e.duration_ms / 1e3 if e.action == "eject" else None}
                   for e in report.events],
        "overTime": [{"start": w.start_us / 1e6, "end": w.end_us / 1e6,
                      "requests": w.requests, "succeeded": w.ok, "failed": dict(w.flags),
                      "ejected": w.ejected} for w in over_time(report)],
        "stats": dict(report.stats),
        "notes": list(t.notes),
    }
