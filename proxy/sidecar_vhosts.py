"""A sidecar's route configs: virtual hosts per service port, VirtualService routes first."""

from __future__ import annotations

import ipaddress

from proxy.sidecar_config import Context, MeshService
from proxy.sidecar_istio import (
    SNIFFED,
    DestinationSpec,
    HttpMatchSpec,
    HttpRouteSpec,
    VirtualServiceSpec,
    host_matches,
    is_http,
)
from proxy.sidecar_types import (
    ALLOW_ANY,
    BLOCK_ALL,
    DEFAULT_RETRY,
    DEFAULT_RETRY_ON,
    DEFAULT_ROUTE,
    HTTP,
    PASSTHROUGH,
    HeaderMatch,
    Listener,
    Mirror,
    Retry,
    Route,
    RouteConfig,
    RouteMatch,
    VirtualHost,
    WeightedCluster,
)

# The bootstrap's inline routes (15021, 15090) also show in the route dump, unnamed.
_BOOTSTRAP_ROUTES = (("/healthz/ready", "agent"), ("/stats/prometheus", "prometheus_stats"))


def build_route_configs(ctx: Context, listeners: list[Listener]) -> list[RouteConfig]:
    """RDS route configs the outbound listeners name: "<port>" and "<fqdn>:<port>"."""
    wanted = {c.route_config for lst in listeners for c in lst.chains
              if c.protocol == HTTP and c.route_config}
    ports = sorted({int(n) for n in wanted if n.isdigit()}
                   | {int(n.rsplit(":", 1)[1]) for n in wanted if not n.isdigit()})
    vhosts = {p: virtual_hosts(ctx, p) for p in ports}
    numbered = [RouteConfig(str(p), tuple(vhosts[p]) + (_catch_all(ctx),),
                            ignore_port_in_host_matching=not ctx.options.port_in_domains)
                for p in ports if str(p) in wanted]
    sniffed = []
    for name in sorted(n for n in wanted if not n.isdigit()):
        port = name.rsplit(":", 1)[1]
        # Sniffed listeners get only the service's own virtual host, matching any Host
        # (httproute.go getVirtualHostsForSniffedServicePort).
        own = next((v for v in vhosts[int(port)] if v.name == name), None)
        hosts = (VirtualHost(name, ("*",), own.routes),) if own else ()
        sniffed.append(RouteConfig(name, hosts))
    static = [RouteConfig("", (VirtualHost("backend", ("*",), (Route(
        "", RouteMatch(path=prefix), (WeightedCluster(cluster),), retry=None),)),))
        for prefix, cluster in _BOOTSTRAP_ROUTES]
    return numbered + sniffed + static


def _catch_all(ctx: Context) -> VirtualHost:
    """allow_any to PassthroughCluster, or block_all answering 502 (buildCatchAllVirtualHost)."""
    if ctx.options.outbound_traffic_policy == "REGISTRY_ONLY":
        return VirtualHost(BLOCK_ALL, ("*",), (Route(BLOCK_ALL, RouteMatch(),
                                                     direct_response=(502, ""), retry=None),))
    return VirtualHost(ALLOW_ANY, ("*",), (Route(ALLOW_ANY, RouteMatch(),
                                                 (WeightedCluster(PASSTHROUGH),),
                                                 retry=None),))


def virtual_hosts(ctx: Context, port: int) -> list[VirtualHost]:
    """The virtual hosts of route config "<port>", sorted by name (util.SortVirtualHosts).

    VirtualServices come first, oldest first; a service one of them claims gets its routes,
    every other HTTP or sniffed service on the port a default route
    (route.go BuildSidecarVirtualHostWrapper).
    """
    on_port = [s for s in ctx.services if (p := s.port(port)) and
               (is_http(p[1]) or p[1] == SNIFFED)]
    claimed: set[str] = set()
    names: set[str] = set()
    used_domains: set[str] = set()
    out: list[VirtualHost] = []

    def add(name: str, domains: list[str], routes: tuple[Route, ...]) -> None:
        if name in names:  # a duplicate virtual host: the first one stays
            return
        names.add(name)
        kept = [d for d in domains if d.lower() not in used_domains]
        used_domains.update(d.lower() for d in kept)
        if kept:
            out.append(VirtualHost(name, tuple(kept), routes))

    for vs in ctx.virtual_services:
        matched = [s for s in on_port if s.fqdn not in claimed
                   and any(host_matches(h, s.fqdn) for h in vs.hosts)]
        others = [h for h in vs.hosts if not any(host_matches(h, s.fqdn) for s in on_port)]
        if not matched and port != 80:  # only port 80 takes non-service hosts alone
            continue
        routes = vs_routes(ctx, vs, port)
        if not routes:
            continue
        for host in others:
            add(f"{host}:{port}", _with_port(ctx, [host], port), routes)
        for svc in matched:
            claimed.add(svc.fqdn)
            add(f"{svc.fqdn}:{port}", domains(ctx, svc, port), routes)
    for svc in on_port:
        if svc.fqdn not in claimed:
            cluster = f"outbound|{port}||{svc.fqdn}"
            add(f"{svc.fqdn}:{port}", domains(ctx, svc, port),
                (Route(DEFAULT_ROUTE, RouteMatch(), (WeightedCluster(cluster),)),))
    return sorted(out, key=lambda v: v.name)


def _with_port(ctx: Context, hosts: list[str], port: int) -> list[str]:
    if not ctx.options.port_in_domains:
        return hosts
    return [d for h in hosts for d in (h, f"{h}:{port}")]


def domains(ctx: Context, svc: MeshService, port: int) -> list[str]:
    """Host header values that reach a service (httproute.go generateVirtualHostDomains).

    The FQDN, "<fqdn>." (absolute), the names that resolve from the client's namespace
    (name, name.ns.svc, name.ns; or name.ns, name.ns.svc from elsewhere), "*." forms for
    headless services, then the ClusterIPs.
    """
    name, ns = svc.service.name, svc.service.namespace
    hosts = [svc.fqdn]
    if ctx.options.absolute_fqdn:
        hosts.append(svc.fqdn + ".")
    if ns == ctx.pod.namespace:
        hosts += [name, f"{name}.{ns}.svc", f"{name}.{ns}"]
    else:
        hosts += [f"{name}.{ns}", f"{name}.{ns}.svc"]
    out = _with_port(ctx, hosts, port)
    if svc.headless:
        out += ["*." + d for d in out]
    ips = [f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
           for ip in svc.service.cluster_ips]
    return out + _with_port(ctx, ips, port)


# ---------------------------------------------------------------- VirtualService routes


def vs_routes(ctx: Context, vs: VirtualServiceSpec, port: int) -> tuple[Route, ...]:
    """A VirtualService's http routes on one port, in order, up to the first catch-all.

    Each match block becomes a route; blocks for another port, another gateway or other
    source labels/namespace are left out (route.go BuildHTTPRoutesForVirtualService).
    """
    out: list[Route] = []
    for http in vs.http:
        if not http.matches:
            out.append(_translate(ctx, vs, http, None, port))
            break
        done = False
        for m in http.matches:
            if (m.port and m.port != port) or not _source_match(ctx, m):
                continue
            route = _translate(ctx, vs, http, m, port)
            out.append(route)
            if route.match.is_catch_all:
                done = True
                break
        if done:
            break
    return tuple(out)


def _source_match(ctx: Context, m: HttpMatchSpec) -> bool:
    if m.gateways:
        return "mesh" in m.gateways
    labels = ctx.pod.labels
    if any(labels.get(k) != v for k, v in m.source_labels.items()):
        return False
    return m.source_namespace is None or m.source_namespace == ctx.pod.namespace


def _route_match(m: HttpMatchSpec | None) -> RouteMatch:
    if m is None:
        return RouteMatch()
    kind, path = "prefix", "/"
    if m.uri is not None and m.uri.kind != "present":
        kind, path = {"exact": "path", "prefix": "prefix", "regex": "regex"}[m.uri.kind], \
            m.uri.value
    headers = [HeaderMatch(n, s) for n, s in m.headers] + \
        [HeaderMatch(n, s, invert=True) for n, s in m.without_headers]
    headers.sort(key=lambda h: h.name)
    for name, sm in ((":method", m.method), (":authority", m.authority),
                     (":scheme", m.scheme)):
        if sm is not None:
            headers.append(HeaderMatch(name, sm))
    return RouteMatch(kind, path, not m.ignore_uri_case, tuple(headers), m.query)


def destination_cluster(ctx: Context, d: DestinationSpec, port: int) -> str:
    """outbound|port|subset|host: the destination's port, a one-port service's port, else
    the listener's (route.go GetDestinationCluster)."""
    number = d.port
    if number is None:
        svc = ctx.by_fqdn.get(d.host)
        number = svc.service.ports[0].port if svc and len(svc.service.ports) == 1 else port
    return f"outbound|{number}|{d.subset}|{d.host}"


def _retry(spec: tuple[int, str | None, str | None] | None) -> Retry | None:
    """retry.go ConvertPolicy: defaults unless set; attempts 0 turns retries off; bare status
    codes in retryOn become retriable-status-codes."""
    if spec is None:
        return DEFAULT_RETRY
    attempts, per_try, retry_on = spec
    if attempts <= 0:
        return None
    if not retry_on:
        return Retry(attempts, DEFAULT_RETRY_ON, per_try)
    parts = [p.strip() for p in retry_on.split(",") if p.strip()]
    codes = tuple(int(p) for p in parts if p.isdigit() and 100 <= int(p) <= 599)
    words = [p for p in parts if not (p.isdigit() and 100 <= int(p) <= 599)]
    if codes and "retriable-status-codes" not in words:
        words.append("retriable-status-codes")
    return Retry(attempts, ",".join(words), per_try, codes)


def _translate(ctx: Context, vs: VirtualServiceSpec, http: HttpRouteSpec,
               m: HttpMatchSpec | None, port: int) -> Route:
    name = http.name + (f".{m.name}" if m is not None and m.name else "")
    if len(http.destinations) == 1:
        clusters = (WeightedCluster(destination_cluster(ctx, http.destinations[0], port)),)
    else:  # weight 0 destinations are left out when there are others
        clusters = tuple(WeightedCluster(destination_cluster(ctx, d, port), d.weight)
                         for d in http.destinations if d.weight > 0)
    forwards = http.redirect is None and http.direct_response is None
    return Route(
        name=name, match=_route_match(m), clusters=clusters if forwards else (),
        timeout=http.timeout, retry=_retry(http.retries) if forwards else None,
        fault=http.fault, rewrite=http.rewrite, redirect=http.redirect,
        direct_response=http.direct_response, virtual_service=vs.key,
        mirrors=tuple(Mirror(destination_cluster(ctx, d, port), pct)
                      for d, pct in http.mirrors))
