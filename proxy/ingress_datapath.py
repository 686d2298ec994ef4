"""The ingress controller as a hop of the walk: nginx accepts the client's connection, routes
the request (proxy.ingress.route), and opens its own connection to a backend pod.

Installed on the controller's namespaces (its pods, or its nodes when it uses the host
network) as socket programs on its HTTP and HTTPS container ports. An HTTP error the
controller answers itself (404, 503, a redirect) ends the trace as "rejected" with that
status; otherwise the trace forks over the backend's endpoints (round robin: equal shares)
and the request carries the X-Forwarded-* headers nginx sets, with the client address nginx
saw (after any SNAT on the way in).
"""

from __future__ import annotations

import zlib
from dataclasses import replace

from netsim.packet import HttpRequest
from proxy.ingress import Controller, controllers, forwarded_headers, route

EPHEMERAL = (32768, 60999)


def attach(dp, station) -> None:
    """Install nginx on the station if a controller runs in it."""
    for ctl in _controllers(dp):
        owners = ctl.pods if not ctl.host_network else tuple(f"node/{n}" for n in ctl.nodes)
        if station.owner in owners:
            for port in (ctl.container_http_port, ctl.container_https_port):
                station.socket_programs[("tcp", port)] = _program(ctl)


def _controllers(dp) -> tuple[Controller, ...]:
    found = getattr(dp, "_ingress_controllers", None)
    if found is None:
        found = dp._ingress_controllers = controllers(dp.cluster)
    return found


def front(dp, ctl: Controller, scheme: str, external: bool) -> tuple[str, int] | None:
    """Where a client sends the request: the LoadBalancer address, a NodePort, the Service's
    ClusterIP, or (host network) the node itself."""
    https = scheme == "https"
    if ctl.service and not ctl.emulated:
        ns, _, name = ctl.service.partition("/")
        svc = dp.cluster.service(ns, name)
        port = ctl.https_port if https else ctl.http_port
        if external:
            if ctl.load_balancer_ips:
                return ctl.load_balancer_ips[0], port
            node_port = ctl.https_node_port if https else ctl.http_node_port
            if node_port and dp.cluster.nodes:
                return dp.cluster.nodes[0].internal_ips[0], node_port
        elif svc is not None and svc.cluster_ips:
            return svc.cluster_ips[0], port
    if ctl.addresses:
        return ctl.addresses[0], ctl.container_https_port if https else ctl.container_http_port
    return None


def _program(ctl: Controller):
    def nginx(walker, c) -> list:
        p = c.packet
        req = p.http
        if req is None:
            c = walker.hop(c, "ingress-nginx", "connection accepted (no --http request to "
                           "route)", [f"controller {ctl.controller} ({ctl.ingress_class})"])
            return walker.deliver_socket(c)
        scheme = "https" if p.dport == ctl.container_https_port else "http"
        r = route(walker.dp.cluster, req.host, req.path, scheme, ctl.ingress_class)
        detail = [r.reason, f"ingress {r.ingress or '-'}, rule {r.rule or '-'}",
                  f"backend {r.backend or '-'}"]
        if r.tls_secret:
            detail.append(f"TLS terminated with Secret {r.tls_secret}")
        if r.status >= 300 or not r.endpoints:
            c = walker.hop(c, "ingress-nginx", f"{req.method} {scheme}://{req.host}{req.path}"
                           f" -> {r.status}", detail)
            return walker.end(c, "rejected", "http-error", f"the ingress controller answers "
                              f"{r.status}: {r.reason}")
        client = p.src
        headers = forwarded_headers(client, req.host, scheme)
        out = []
        share = 1.0 / len(r.endpoints)
        for endpoint in r.endpoints:
            ip, _, port = endpoint.rpartition(":")
            ip = ip.strip("[]")
            upstream = HttpRequest(req.method, req.host, req.path, "http", headers)
            sport = EPHEMERAL[0] + zlib.crc32(f"{client}|{p.sport}|{endpoint}".encode()) % (
                EPHEMERAL[1] - EPHEMERAL[0] + 1)
            new = replace(p, src=p.dst, sport=sport, dst=ip, dport=int(port), http=upstream,
                          ttl=64, outer=None, tcp_flags="S")
            nc = replace(c, probability=c.probability * share)
            target = r.backend.get("service") or r.backend
            nc = walker.hop(nc, "ingress-nginx", f"{req.method} {scheme}://{req.host}{req.path}"
                            f" -> {target} endpoint {endpoint}",
                            [*detail, f"{len(r.endpoints)} endpoint(s), round robin",
                             *(f"{k}: {v}" for k, v in headers)])
            nc = walker.open_leg(nc, new)
            out.append((nc, walker.send))
        return walker.choose(out)
    return nginx
