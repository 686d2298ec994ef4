"""What users type into `netsim trace` (`--from ns/pod --to svc/ns/name:80`) as a packet and
the namespace that sends it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.dataplane import EXTERNAL_NETNS, Dataplane
from netsim.errors import InputError
from netsim.model import IPV4, IPV6, Pod
from netsim.packet import TracePacket
from netsim.topology import host_id, pod_id

DEFAULT_SPORT = 40000  # a fixed ephemeral port, so that traces are reproducible
PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end as resolved: its namespace id (sender only), address, port, and a label."""

    netns: str | None
    address: str
    port: int
    label: str
    notes: tuple[str, ...] = ()


def _fail(field: str, why: str) -> InputError:
    return InputError(why, obj="command line", field=field)


def resolve_source(dp: Dataplane, text: str, family: int | None = None) -> Endpoint:
    """--from: ns/pod, node/NAME or external."""
    cluster = dp.cluster
    if text == "external" or text.startswith("external:"):
        ip = text.partition(":")[2] or dp.external_ip
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise _fail("--from", f"external:{ip} is not an address") from None
        if not dp.is_external(ip):
            raise _fail("--from", f"{ip} is inside the cluster's ranges (pods, Services, "
                        "nodes, load balancers): not an external client")
        return Endpoint(EXTERNAL_NETNS, ip, 0, f"external client {ip}")
    if text.startswith("node/"):
        node = cluster.node(text[5:])
        if node is None:
            raise _fail("--from", f"no Node named {text[5:]!r}")
        ip = _family_pick(node.internal_ips, family, "--from", f"node {node.name}")
        return Endpoint(host_id(node.name), ip, 0, f"node/{node.name}")
    pod = _pod(cluster, text, "--from")
    if not pod.node_name or not pod.ips:
        raise _fail("--from", f"pod {pod.key} is not running with an address (phase "
                    f"{pod.phase})")
    ip = _family_pick(pod.ips, family, "--from", f"pod {pod.key}")
    netns = host_id(pod.node_name) if pod.host_network else pod_id(pod.namespace, pod.name)
    return Endpoint(netns, ip, 0, pod.key)


def resolve_destination(dp: Dataplane, text: str, protocol: str, source: Endpoint,
                        port: int | None = None) -> Endpoint:
    """--to: ns/pod[:port], svc/ns/name:port, node/NAME:port or IP:port."""
    cluster = dp.cluster
    fam = 6 if ":" in source.address else 4
    body, given = _split_port(text)
    number = port if port is not None else None
    if text.startswith("svc/"):
        return _service(dp, body[4:], given, protocol, source, fam)
    if given is not None:
        if not given.isdigit():
            raise _fail("--to", f"port {given!r} must be a number here (names work with "
                        "svc/NS/NAME:PORT)")
        number = int(given)
    if number is None and protocol != "ICMP":
        raise _fail("--to", f"{text!r} needs a port (e.g. {text}:80) or --port")
    number = number or 0
    if not 0 <= number <= 65535:
        raise _fail("--to", f"port {number} is out of range")
    if body.startswith("node/"):
        node = cluster.node(body[5:])
        if node is None:
            raise _fail("--to", f"no Node named {body[5:]!r}")
        ip = _family_pick(node.internal_ips, fam, "--to", f"node {node.name}")
        return Endpoint(None, ip, number, f"node/{node.name}")
    try:
        ip = str(ipaddress.ip_address(body.strip("[]")))
    except ValueError:
        pod = _pod(cluster, body, "--to")
        if not pod.ips:
            raise _fail("--to", f"pod {pod.key} has no address") from None
        ip = _family_pick(pod.ips, fam, "--to", f"pod {pod.key}")
        return Endpoint(None, ip, number, pod.key)
    if (":" in ip) != (fam == 6):
        raise _fail("--to", f"{ip} is not of the sender's family (IPv{fam})")
    return Endpoint(None, ip, number, ip)


def _service(dp: Dataplane, name: str, port: str | None, protocol: str, source: Endpoint,
             fam: int) -> Endpoint:
    ns, _, svc_name = name.partition("/")
    svc = dp.cluster.service(ns, svc_name) if svc_name else None
    if svc is None:
        raise _fail("--to", f"no Service {name!r} (svc/NAMESPACE/NAME:PORT)")
    if port is None:
        if len(svc.ports) != 1:
            raise _fail("--to", f"Service {name} has {len(svc.ports)} ports: name one, e.g. "
                        f"svc/{name}:{svc.ports[0].port if svc.ports else 80}")
        sp = svc.ports[0]
    else:
        found = [p for p in svc.ports if str(p.port) == port or p.name == port]
        found = [p for p in found if p.protocol == protocol] or found
        if not found:
            raise _fail("--to", f"Service {name} has no port {port!r} (ports: "
                        f"{', '.join(f'{p.port}/{p.protocol}' for p in svc.ports)})")
        sp = found[0]
    want = IPV6 if fam == 6 else IPV4
    if source.netns == EXTERNAL_NETNS:
        for ip in (*svc.load_balancer_ingress, *svc.external_ips):
            if (":" in ip) == (fam == 6):
                return Endpoint(None, ip, sp.port, f"svc/{name}:{sp.port} (external address "
                                f"{ip})")
        if sp.node_port:
            node = dp.cluster.nodes[0]
            ip = _family_pick(node.internal_ips, fam, "--to", f"node {node.name}")
            return Endpoint(None, ip, sp.node_port, f"svc/{name} NodePort {sp.node_port} on "
                            f"node {node.name}",
                            (f"an external client reaches {name} through its NodePort; "
                             f"node {node.name} chosen (use --to {ip}:{sp.node_port} style "
                             "addresses for another node)",))
        raise _fail("--to", f"Service {name} is not reachable from outside the cluster (type "
                    f"{svc.type}, no external address)")
    ips = [ip for ip in svc.cluster_ips if (":" in ip) == (want == IPV6)]
    if not ips:
        raise _fail("--to", f"Service {name} has no IPv{fam} cluster IP (headless Services "
                    "have none: trace to a pod instead)")
    return Endpoint(None, ips[0], sp.port, f"svc/{name}:{sp.port}")


def dns_name(text: str) -> tuple[str, int | None, str | None] | None:
    """(name, port, path) when --to is a DNS name: `redis.shop:6379`, `redis`,
    `http://api.shop/api/orders`; None for pods, Services, nodes and addresses."""
    from urllib.parse import urlsplit

    scheme_port = None
    path = None
    if "://" in text:
        split = urlsplit(text)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise _fail("--to", f"not an http(s) URL: {text!r}")
        scheme_port = split.port or (443 if split.scheme == "https" else 80)
        path = split.path or "/"
        text = split.hostname + (f":{scheme_port}")
    if "/" in text or text.startswith("["):
        return None
    body, port = _split_port(text)
    try:
        ipaddress.ip_address(body)
        return None
    except ValueError:
        pass
    if not body or not all(part for part in body.rstrip(".").split(".")):
        raise _fail("--to", f"{text!r} is not a name, address, pod or Service")
    if port is not None and not port.isdigit():
        raise _fail("--to", f"port {port!r} must be a number")
    return body, int(port) if port else scheme_port, path


def _split_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):  # [v6]:port
        head, _, rest = text.partition("]")
        return head + "]", rest[1:] if rest.startswith(":") else None
    if text.count(":") > 1:  # a bare IPv6 address
        return text, None
    body, sep, port = text.rpartition(":")
    return (body, port) if sep else (text, None)


def _pod(cluster: Cluster, text: str, field: str) -> Pod:
    ns, sep, name = text.partition("/")
    if not sep or not name or "/" in name:
        raise _fail(field, f"{text!r} is not NAMESPACE/POD, node/NAME, svc/NS/NAME:PORT, "
                    "external or an address")
    pod = cluster.pod(ns, name)
    if pod is None:
        candidates = [p.name for p in cluster.pods_in(ns) if p.name.startswith(name)]
        if len(candidates) == 1:
            return cluster.pod(ns, candidates[0])
        hint = f" (did you mean {', '.join(candidates[:3])}?)" if candidates else ""
        raise _fail(field, f"no pod {text!r}{hint}")
    return pod


def _family_pick(ips, family: int | None, field: str, what: str) -> str:
    for ip in ips:
        if family is None or (":" in ip) == (family == 6):
            return ip
    raise _fail(field, f"{what} has no IPv{family} address")


def ingress_front(dp: Dataplane, http, source: Endpoint, field: str = "--to") -> Endpoint:
    """Where a client sends an HTTP request meant for the ingress controller serving its host:
    the controller's LoadBalancer, NodePort or ClusterIP (or its node, on the host network)."""
    from proxy.ingress import controllers, route
    from proxy.ingress_datapath import front

    if http is None:
        raise _fail(field, "a request through the ingress controller needs an HTTP request")
    found = controllers(dp.cluster)
    if not found:
        raise _fail(field, "the cluster has no Ingress and no ingress controller")
    answer = route(dp.cluster, http.host, http.path, http.scheme)
    ctl = next((c for c in found if c.ingress_class == answer.ingress_class), found[0])
    where = front(dp, ctl, http.scheme, source.netns == EXTERNAL_NETNS)
    if where is None:
        raise _fail(field, f"cannot tell how to reach the {ctl.ingress_class} ingress "
                    "controller")
    ip, port = where
    return Endpoint(None, ip, port, f"ingress controller {ctl.service or ctl.controller} "
                    f"({ip}:{port})")


def packet_for(source: Endpoint, destination: Endpoint, protocol: str,
               sport: int | None = None, http=None) -> TracePacket:
    proto = protocol.lower()
    if proto == "icmp":
        return TracePacket(source.address, destination.address, "icmp", sport or 1, 0, "",
                           icmp_type=128 if ":" in source.address else 8)
    if http is not None and proto != "tcp":
        raise _fail("--http", "HTTP needs --protocol TCP")
    return TracePacket(source.address, destination.address, proto,
                       sport or DEFAULT_SPORT, destination.port,
                       "S" if proto == "tcp" else "", http=http)
