"""An Ingress backend resolved as the controller sees it: the Service port it names and the
ready endpoints it proxies to directly (or why it answers 503)."""

from __future__ import annotations

from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.model import TCP, IngressBackend, Service, ServicePort
from proxy.ingress_constants import SERVICE_UPSTREAM

OK, UNAVAILABLE = 200, 503


@dataclass(frozen=True, slots=True)
class Backend:
    """What the controller does with a request routed to one backend."""

    status: int
    json: dict  # the "backend" object
    endpoints: tuple[str, ...]
    why: str
    service_port: ServicePort | None = None


def describe(b: IngressBackend) -> str:
    """kubectl describe's `name:port` form of a backend."""
    if b.resource:
        return b.resource
    return f"{b.service_name}:{b.port_number if b.port_number is not None else b.port_name}"


def resolve(cluster: Cluster, namespace: str, backend: IngressBackend, *,
            nginx_compat: bool = False, annotations: dict | None = None) -> Backend:
    """The answer for a request routed to `backend` of an Ingress in `namespace`.

    The Ingress spec says nothing of status codes for broken backends; ingress-nginx answers
    503 when the Service or its port does not exist or has no ready endpoint (its upstream has
    no servers), and netsim does the same in both modes.
    """
    if backend.resource:
        group = f" (apiGroup {backend.resource_group})" if backend.resource_group else ""
        return Backend(OK, {"resource": backend.resource}, (),
                       f"resource backend {backend.resource}{group}: the controller serves it "
                       "itself; it has no Service endpoints")
    key = f"{namespace}/{backend.service_name}"
    svc = cluster.service(namespace, backend.service_name or "")
    if svc is None:
        return Backend(UNAVAILABLE, _json(key, backend.port_number, backend.port_name), (),
                       f"Service {key} does not exist: 503")
    port = _service_port(svc, backend, nginx_compat)
    wanted = (f"port {backend.port_number}" if backend.port_number is not None
              else f"port named {backend.port_name!r}")
    if port is None:
        have = ", ".join(f"{p.name}:{p.port}" if p.name else str(p.port) for p in svc.ports)
        return Backend(UNAVAILABLE, _json(key, backend.port_number, backend.port_name), (),
                       f"Service {key} has no {wanted} (it has {have or 'none'}): 503")
    data = _json(key, port.port, backend.port_name)
    if port.protocol != TCP:
        return Backend(UNAVAILABLE, data, (), f"Service {key} port {port.port} is "
                       f"{port.protocol}; the controller proxies TCP only: 503", port)
    if svc.type == "ExternalName":
        target = port.target if isinstance(port.target, int) else port.port
        return Backend(OK, data, (f"{svc.external_name}:{target}",),
                       f"ExternalName Service {key}: proxied to {svc.external_name}", port)
    if (annotations or {}).get(SERVICE_UPSTREAM) == "true" and svc.cluster_ip:
        return Backend(OK, data, (_address(svc.cluster_ip, port.port),),
                       f"service-upstream: proxied to the ClusterIP of {key} (kube-proxy "
                       "picks the pod)", port)
    endpoints = ready_endpoints(cluster, svc, port)
    if not endpoints:
        return Backend(UNAVAILABLE, data, (), f"Service {key} port {port.port} has no ready "
                       "endpoint: 503", port)
    return Backend(OK, data, endpoints, f"Service {key} port {port.port}: "
                   f"{len(endpoints)} ready endpoint(s), proxied to directly (not the "
                   "ClusterIP)", port)


def _json(service: str, port: int | None, port_name: str | None) -> dict:
    return {"service": service, "port": port, "portName": port_name}


def _service_port(svc: Service, backend: IngressBackend, nginx_compat: bool
                  ) -> ServicePort | None:
    """The Service port a backend names: by number (the Service port, not the target) or name.

    ingress-nginx (controller.go serviceEndpoints) compares the Ingress's port, as a string,
    with each Service port's number, targetPort and name, first match in spec order; so a
    number equal to a targetPort, or a name equal to a named targetPort, also matches.
    """
    want = backend.port_number if backend.port_number is not None else backend.port_name
    if nginx_compat:
        return next((p for p in svc.ports if str(want) in (str(p.port), str(p.target), p.name)),
                    None)
    if backend.port_number is not None:
        found = [p for p in svc.ports if p.port == backend.port_number]
    else:
        found = [p for p in svc.ports if p.name == backend.port_name]
    return next((p for p in found if p.protocol == TCP), found[0] if found else None)


def ready_endpoints(cluster: Cluster, svc: Service, port: ServicePort) -> tuple[str, ...]:
    """Every ready address:port of the Service port across its EndpointSlices.

    An EndpointSlice port carries the Service port's name (empty when unnamed) and the number
    resolved per pod (ingress-nginx endpointslices.go getEndpointsFromSlices); a slice without
    ports uses a numeric targetPort.
    """
    out: list[str] = []
    name = port.name or ""
    for eps in cluster.slices_for(svc):
        numbers = [p.port for p in eps.ports
                   if (p.name or "") == name and p.protocol == TCP and p.port]
        if not eps.ports and isinstance(port.target, int):
            numbers = [port.target]
        for ep in eps.endpoints:
            if not ep.ready:
                continue
            for number in numbers:
                for ip in ep.addresses:
                    address = _address(ip, number)
                    if address not in out:
                        out.append(address)
    return tuple(out)


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
