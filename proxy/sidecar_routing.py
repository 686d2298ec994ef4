"""How a sidecar's config routes one connection or request: listener, route, cluster, branches."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from netsim.packet import HttpRequest
from proxy.sidecar_print import chain_match
from proxy.sidecar_types import (
    BLACKHOLE,
    HTTP,
    INBOUND_SOURCE,
    MTLS_TCP_ALPNS,
    PASSTHROUGH,
    PLAINTEXT_HTTP_ALPNS,
    RAW_BUFFER,
    RESPONSE_FLAG_ORDER,
    TLS,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    FilterChain,
    Listener,
    Mirror,
    Retry,
    Rewrite,
    Route,
    RouteMatch,
    SidecarConfig,
    VirtualHost,
)


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """One branch of what the sidecar does with a request, and how likely it is.

    `status` is set when the sidecar answers itself (404 NR, 503 UH/NC, a fault abort, a
    redirect, 502 under REGISTRY_ONLY); otherwise the request goes to one of `endpoints`.
    """

    probability: float
    cluster: str | None
    subset: str | None = None
    endpoints: tuple[tuple[str, int, str | None], ...] = ()  # (ip, port, "ns/pod")
    retries: Retry | None = None
    timeout: str | None = None
    fault: str | None = None  # what the fault filter did: "delay 7s", "abort 500"
    mirror: tuple[Mirror, ...] = ()
    rewrite: Rewrite | None = None
    response_flag: str | None = None  # Envoy's: NR, UH, NC, FI, DI, "DI,FI"
    status: int | None = None
    mtls: bool = False
    virtual_service: str | None = None  # "ns/name"
    route_name: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundDecision:
    listener: str
    filter_chain: str  # the chain's match, as istioctl prints it
    protocol: str  # http or tcp
    route_config: str | None = None
    virtual_host: str | None = None
    route: Route | None = None
    choices: tuple[RouteChoice, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundChoice:
    """Where the server sidecar's virtualInbound listener sends a connection."""

    listener: str
    filter_chain: str | None  # None: no chain matches, the connection is reset
    cluster: str | None
    app_address: str | None
    app_port: int
    source: str = INBOUND_SOURCE
    tls_terminated: bool = False

    @property
    def reset(self) -> bool:
        return self.filter_chain is None


# ---------------------------------------------------------------- filter chain selection


def select_chain(listener: Listener, port: int, transport: str,
                 alpns: tuple[str, ...]) -> FilterChain | None:
    """Envoy's filter chain match: the most specific destination port, then transport
    protocol, then application protocol; no fallback once a level narrowed the set."""
    chains = list(listener.chains)
    for level in (_port_level(port), _transport_level(transport), _alpn_level(alpns)):
        exact = [c for c in chains if level(c) == 2]
        chains = exact or [c for c in chains if level(c) == 1]
        if not chains:
            return listener.default_chain
    return chains[0]


def _port_level(port: int):
    return lambda c: 2 if c.match.destination_port == port else \
        (1 if c.match.destination_port is None else 0)


def _transport_level(transport: str):
    return lambda c: 2 if c.match.transport_protocol == transport else \
        (1 if not c.match.transport_protocol else 0)


def _alpn_level(alpns: tuple[str, ...]):
    return lambda c: 2 if set(c.match.application_protocols) & set(alpns) else \
        (1 if not c.match.application_protocols else 0)


# ---------------------------------------------------------------- outbound


def route_outbound(config: SidecarConfig, dst_ip: str, dport: int,
                   request: HttpRequest | None = None) -> OutboundDecision:
    """Route a connection the app opened to dst_ip:dport (and the request it carries).

    The original destination picks the listener (exact address, then 0.0.0.0, then
    virtualOutbound's passthrough); plain HTTP picks the HTTP chain and the Host header the
    virtual host; the first matching route's weights, fault percentages and endpoint mTLS
    split the result into choices whose probabilities sum to 1.
    """
    listener = config.listener(dst_ip, dport) or config.listener("0.0.0.0", dport)
    if listener is None or listener.direction != "OUTBOUND" or listener.name == VIRTUAL_OUTBOUND:
        listener = config.listener_named(VIRTUAL_OUTBOUND)
    http = request is not None and request.scheme == "http"  # https is opaque TLS to Envoy
    chain = select_chain(listener, dport, RAW_BUFFER if request is None or http else TLS,
                         PLAINTEXT_HTTP_ALPNS[:1] if http else ())
    if chain is None:
        return OutboundDecision(listener.name, "-", "tcp", choices=(RouteChoice(
            1.0, None, response_flag="NR"),))
    match = chain_match(chain)
    if chain.protocol != HTTP or chain.route_config is None or request is None:
        # tcp_proxy has no status to answer with: a failure closes the connection.
        choices = tuple(RouteChoice(**{**_fields(c), "status": None}) for c in _forward(
            config, chain.cluster or BLACKHOLE, 1.0, dst_ip, dport, None))
        return OutboundDecision(listener.name, match, "tcp", choices=choices)
    rc = config.route_config(chain.route_config)
    vhost = _virtual_host(rc.virtual_hosts if rc else (), request.host,
                          rc.ignore_port_in_host_matching if rc else True)
    route = next((r for r in vhost.routes if route_matches(r.match, request)), None) \
        if vhost else None
    base = OutboundDecision(listener.name, match, "http", chain.route_config,
                            vhost.name if vhost else None, route)
    if route is None:  # no virtual host or no route matched: 404 NR
        return _with(base, (RouteChoice(1.0, None, response_flag="NR", status=404),))
    return _with(base, route_choices(config, route, dst_ip, dport))


def _with(decision: OutboundDecision, choices: tuple[RouteChoice, ...]) -> OutboundDecision:
    return OutboundDecision(decision.listener, decision.filter_chain, decision.protocol,
                            decision.route_config, decision.virtual_host, decision.route,
                            choices)


def _virtual_host(vhosts: tuple[VirtualHost, ...], host: str,
                  ignore_port: bool) -> VirtualHost | None:
    """Envoy's domain search: exact, then the longest suffix wildcard, then prefix, then *."""
    host = host.lower()
    if ignore_port:
        host = _strip_port(host)
    exact = next((v for v in vhosts if host in (d.lower() for d in v.domains)), None)
    if exact:
        return exact
    best, best_len = None, -1
    for v in vhosts:
        for d in v.domains:
            d = d.lower()
            if d.startswith("*") and d != "*" and host.endswith(d[1:]) and len(d) > best_len:
                best, best_len = v, len(d)
    if best:
        return best
    for v in vhosts:
        for d in v.domains:
            d = d.lower()
            if d.endswith("*") and d != "*" and host.startswith(d[:-1]):
                return v
    return next((v for v in vhosts if "*" in v.domains), None)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def route_matches(match: RouteMatch, request: HttpRequest) -> bool:
    """One Envoy RouteMatch against a request: path (query stripped), headers, query."""
    path, _, query = request.path.partition("?")
    want, have = (match.path, path) if match.case_sensitive else \
        (match.path.lower(), path.lower())
    if match.path_kind == "prefix" and not have.startswith(want):
        return False
    if match.path_kind == "path" and have != want:
        return False
    if match.path_kind == "regex":
        import re

        if re.fullmatch(match.path, path, 0 if match.case_sensitive else re.IGNORECASE) is None:
            return False
    headers = {k.lower(): v for k, v in request.headers}
    headers.update({":method": request.method, ":authority": request.host,
                    ":scheme": request.scheme, ":path": request.path})
    for h in match.headers:
        ok = h.match.matches(headers.get(h.name))
        if ok == h.invert:
            return False
    params = dict(parse_qsl(query, keep_blank_values=True))
    return all(sm.matches(params.get(name)) for name, sm in match.query)


def route_choices(config: SidecarConfig, route: Route, dst_ip: str,
                  dport: int) -> tuple[RouteChoice, ...]:
    """A matched route's branches: redirect or direct reply, fault abort, then weights."""
    common = _route_fields(route)
    if route.redirect is not None:
        return (RouteChoice(1.0, None, status=route.redirect.code, **common),)
    if route.direct_response is not None:
        return (RouteChoice(1.0, None, status=route.direct_response[0], **common),)
    fault = route.fault
    abort = fault.abort_percent / 100 if fault and (fault.abort_status or fault.abort_grpc) \
        else 0.0
    delay = fault.delay_percent / 100 if fault and fault.delay else 0.0
    out: list[RouteChoice] = []
    if abort > 0:  # the fault filter answers before the router picks a cluster
        code = fault.abort_status or 200  # gRPC aborts answer 200 with grpc-status
        what = f"abort {fault.abort_status or 'grpc ' + str(fault.abort_grpc)}"
        for p, flag, text in ((abort * delay, "DI,FI", f"delay {fault.delay}, {what}"),
                              (abort * (1 - delay), "FI", what)):
            if p > 0:
                out.append(RouteChoice(p, None, fault=text, response_flag=flag, status=code,
                                       **common))
    total = sum(w.weight for w in route.clusters) or 1
    for wc in route.clusters:
        share = (1 - abort) * wc.weight / total
        for p, text in ((share * delay, f"delay {fault.delay}" if delay else None),
                        (share * (1 - delay), None)):
            if p > 0:
                for choice in _forward(config, wc.cluster, p, dst_ip, dport, route):
                    flags = [f for f in (choice.response_flag, "DI" if text else None) if f]
                    out.append(RouteChoice(**{**_fields(choice), "fault": text,
                                              "response_flag": _flags(flags)}))
    return tuple(out)


def _flags(flags: list[str]) -> str | None:
    """Several response flags as Envoy prints them: comma-joined in its enum order."""
    return ",".join(sorted(flags, key=RESPONSE_FLAG_ORDER.index)) or None


def _route_fields(route: Route) -> dict:
    """What every branch of a route carries from it."""
    return {"virtual_service": route.virtual_service, "route_name": route.name or None,
            "retries": route.retry, "timeout": route.timeout, "rewrite": route.rewrite,
            "mirror": route.mirrors}


def _fields(choice: RouteChoice) -> dict:
    return {name: getattr(choice, name) for name in RouteChoice.__dataclass_fields__}


def _forward(config: SidecarConfig, cluster_name: str, p: float, dst_ip: str, dport: int,
             route: Route | None) -> tuple[RouteChoice, ...]:
    """Send to a cluster: its healthy endpoints (split by mTLS), or 503 NC / UH."""
    common = _route_fields(route) if route is not None else {}
    cluster = config.cluster(cluster_name)
    if cluster is None:
        return (RouteChoice(p, cluster_name, response_flag="NC", status=503, **common),)
    subset = cluster.subset or None
    if cluster.type == "ORIGINAL_DST":  # PassthroughCluster, headless services
        pod = config.pods_by_ip.get(dst_ip)
        mtls = cluster.name != PASSTHROUGH and cluster.tls_mode == "ISTIO_MUTUAL"
        return (RouteChoice(p, cluster_name, subset, ((dst_ip, dport, pod),), mtls=mtls,
                            **common),)
    healthy = cluster.healthy_endpoints
    if not healthy:  # BlackHoleCluster, or every endpoint unready: 503 no healthy upstream
        return (RouteChoice(p, cluster_name, subset, response_flag="UH", status=503,
                            **common),)
    out = []
    for mtls in (True, False):
        group = [e for e in healthy if e.mtls == mtls]
        if group:
            out.append(RouteChoice(p * len(group) / len(healthy), cluster_name, subset,
                                   tuple((e.address, e.port, e.pod) for e in group),
                                   mtls=mtls, **common))
    return tuple(out)


# ---------------------------------------------------------------- inbound


def route_inbound(config: SidecarConfig, port: int, *, mtls: bool = True,
                  http: bool = True) -> InboundChoice:
    """Where virtualInbound sends a connection to the pod's `port`.

    `mtls`: the client's sidecar originated Istio mTLS (ALPN istio-http/1.1 for HTTP,
    istio-peer-exchange/istio for TCP); otherwise plaintext (HTTP detected by the inspector).
    A port without a chain of its own goes to InboundPassthroughCluster; a STRICT port
    has no plaintext chain, so the connection is reset.
    """
    listener = config.listener_named(VIRTUAL_INBOUND)
    if mtls:
        transport, alpns = TLS, (("istio-http/1.1",) if http else MTLS_TCP_ALPNS)
    else:
        transport, alpns = RAW_BUFFER, (PLAINTEXT_HTTP_ALPNS[:1] if http else ())
    chain = select_chain(listener, port, transport, alpns)
    if chain is None or chain.cluster == BLACKHOLE:
        return InboundChoice(listener.name, None, None, None, port)
    return InboundChoice(listener.name, chain_match(chain), chain.cluster, config.pod_ip,
                         port, tls_terminated=chain.tls)
