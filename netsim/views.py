"""kubectl-style tables of the model: the columns `kubectl get` prints, with netsim's addresses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from netsim.cluster import Cluster
from netsim.model import EndpointSlice, Ingress, Namespace, NetworkPolicy, Node, Pod, Service

NONE = "<none>"


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def render(table: Table) -> str:
    """Columns padded as kubectl's tabwriter does: left-aligned, three spaces apart."""
    if not table.rows:
        return ""
    widths = [max(len(r[i]) for r in (table.headers, *table.rows))
              for i in range(len(table.headers))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in (table.headers, *table.rows)]
    return "\n".join(lines) + "\n"


def age(created: str | None, now: datetime | None = None) -> str:
    """kubectl's HumanDuration of an object's age, or <unknown> without a timestamp."""
    if not created:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "<invalid>"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _more(items: Sequence[str], limit: int = 3) -> str:
    """kubectl's list cell: the first three, then "+ N more..."."""
    if not items:
        return NONE
    text = ",".join(items[:limit])
    return text + (f" + {len(items) - limit} more..." if len(items) > limit else "")


def node_row(c: Cluster, n: Node, wide: bool) -> tuple[str, ...]:
    status = "Ready" if n.ready else "NotReady"
    if n.unschedulable:
        status += ",SchedulingDisabled"
    row = (n.name, status, ",".join(n.roles) or NONE, age(n.meta.created),
           n.info.get("kubeletVersion", ""))
    if wide:
        row += (",".join(n.internal_ips) or NONE, ",".join(n.external_ips) or NONE,
                n.info.get("osImage", "<unknown>"), n.info.get("kernelVersion", "<unknown>"),
                n.info.get("containerRuntimeVersion", "<unknown>"))
    return row


def pod_row(c: Cluster, p: Pod, wide: bool) -> tuple[str, ...]:
    containers = len(p.spec.containers)
    status = "Terminating" if p.terminating else p.phase
    row = (p.name, f"{containers if p.ready else 0}/{containers}", status, "0",
           age(p.meta.created))
    if wide:
        row += (",".join(p.ips) or NONE, p.node_name or NONE, NONE, NONE)
    return row


def service_row(c: Cluster, s: Service, wide: bool) -> tuple[str, ...]:
    if s.type == "ExternalName":
        cluster_ip, external = NONE, s.external_name or NONE
    else:
        cluster_ip = "None" if s.headless else (",".join(s.cluster_ips) or NONE)
        ips = list(s.load_balancer_ingress) + list(s.load_balancer_hostnames) + \
            list(s.external_ips)
        external = ",".join(ips) if ips else ("<pending>" if s.type == "LoadBalancer" else NONE)
    ports = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port
                     else f"{p.port}/{p.protocol}" for p in s.ports) or NONE
    row = (s.name, s.type, cluster_ip, external, ports, age(s.meta.created))
    if wide:
        row += (",".join(f"{k}={v}" for k, v in sorted(s.selector.items())) if s.selector
                else NONE,)
    return row


def endpoints_row(c: Cluster, s: Service, wide: bool) -> tuple[str, ...]:
    """The legacy Endpoints view of a Service: ready address:port pairs from its slices."""
    pairs = []
    for sl in c.slices_for(s):
        for port in sl.ports or ():
            for e in sl.endpoints:
                if e.ready:
                    pairs += [f"{a}:{port.port}" if ":" not in a else f"[{a}]:{port.port}"
                              for a in e.addresses]
    return (s.name, _more(pairs), age(s.meta.created))


def slice_row(c: Cluster, e: EndpointSlice, wide: bool) -> tuple[str, ...]:
    ports = ",".join(str(p.port) if p.port else "<unset>" for p in e.ports) or "<unset>"
    addresses = [a for x in e.endpoints for a in x.addresses]
    return (e.name, e.address_type, ports, _more(addresses), age(e.meta.created))


def policy_row(c: Cluster, n: NetworkPolicy, wide: bool) -> tuple[str, ...]:
    return (n.name, str(n.pod_selector), age(n.meta.created))


def namespace_row(c: Cluster, n: Namespace, wide: bool) -> tuple[str, ...]:
    return (n.name, "Active", age(n.meta.created))


def ingress_row(c: Cluster, i: Ingress, wide: bool) -> tuple[str, ...]:
    hosts = [r.host or "*" for r in i.rules] or ["*"]
    return (i.name, i.ingress_class_name or NONE, ",".join(hosts),
            ",".join(i.load_balancer_ingress), "80, 443" if i.tls else "80",
            age(i.meta.created))


@dataclass(frozen=True, slots=True)
class Resource:
    """One `netsim get` resource: how to list it and the kubectl columns it prints."""

    names: tuple[str, ...]  # plural, singular and short names, as kubectl accepts them
    kind: str
    namespaced: bool
    items: Callable[[Cluster], Sequence]
    headers: tuple[str, ...]
    wide_headers: tuple[str, ...]
    row: Callable[[Cluster, object, bool], tuple[str, ...]]


RESOURCES = (
    Resource(("nodes", "node", "no"), "Node", False, lambda c: c.nodes,
             ("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
             ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"),
             node_row),
    Resource(("pods", "pod", "po"), "Pod", True, lambda c: c.pods,
             ("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
             ("IP", "NODE", "NOMINATED NODE", "READINESS GATES"), pod_row),
    Resource(("services", "service", "svc"), "Service", True, lambda c: c.services,
             ("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), ("SELECTOR",),
             service_row),
    Resource(("endpoints", "endpoint", "ep"), "Endpoints", True,
             lambda c: tuple(s for s in c.services if c.slices_for(s)),
             ("NAME", "ENDPOINTS", "AGE"), (), endpoints_row),
    Resource(("endpointslices", "endpointslice"), "EndpointSlice", True,
             lambda c: c.endpoint_slices,
             ("NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"), (), slice_row),
    Resource(("networkpolicies", "networkpolicy", "netpol"), "NetworkPolicy", True,
             lambda c: c.network_policies, ("NAME", "POD-SELECTOR", "AGE"), (), policy_row),
    Resource(("namespaces", "namespace", "ns"), "Namespace", False, lambda c: c.namespaces,
             ("NAME", "STATUS", "AGE"), (), namespace_row),
    Resource(("ingresses", "ingress", "ing"), "Ingress", True, lambda c: c.ingresses,
             ("NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"), (), ingress_row),
)
RESOURCE_NAMES = {name: r for r in RESOURCES for name in r.names}


def select(cluster: Cluster, resource: Resource, namespace: str | None,
           names: Sequence[str] = ()) -> list:
    """The objects `kubectl get` would list: one namespace (or all when None), named ones."""
    items = list(resource.items(cluster))
    if resource.namespaced and namespace is not None:
        items = [o for o in items if o.namespace == namespace]
    if names:
        items = [o for o in items if o.name in names]
    return items


def table(cluster: Cluster, resource: Resource, items: list, *, wide: bool,
          all_namespaces: bool) -> Table:
    headers = resource.headers + (resource.wide_headers if wide else ())
    rows = [resource.row(cluster, o, wide) for o in items]
    if all_namespaces and resource.namespaced:
        headers = ("NAMESPACE", *headers)
        rows = [(o.namespace, *row) for o, row in zip(items, rows, strict=True)]
    return Table(headers, tuple(rows))
