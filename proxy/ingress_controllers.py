"""The ingress controllers of a cluster: ingress-nginx pods and their Service found in the
manifests, or the one netsim emulates when the cluster has Ingresses and no controller."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.model import IPV4, Node, Pod, Service
from proxy.ingress_classes import (
    BY_ANNOTATION,
    BY_DEFAULT,
    BY_FIELD,
    ClassChoice,
    default_class,
)
from proxy.ingress_constants import (
    EMULATED_NODE_PORTS,
    HTTP_PORT,
    HTTPS_PORT,
    NGINX_CLASS,
    NGINX_COMPONENT_LABEL,
    NGINX_CONTROLLER,
    NGINX_NAME,
    NGINX_NAME_LABEL,
    NGINX_NAMESPACE,
    NODE_PORT_RANGE,
)

SERVICE_PREFERENCE = {"LoadBalancer": 0, "NodePort": 1, "ClusterIP": 2}


@dataclass(frozen=True, slots=True)
class Controller:
    """One controller serving one IngressClass, with what a trace needs to reach it.

    `pods` are "ns/name"; `addresses` are where nginx listens (pod IPs, or node IPs for a
    host-network controller). `emulated` means neither pods nor Service exist in the
    manifests: netsim describes the controller it stands in for (see `note`).
    """

    ingress_class: str
    controller: str
    namespace: str
    pods: tuple[str, ...]
    service: str | None
    emulated: bool
    http_port: int = HTTP_PORT  # the Service's (front) ports
    https_port: int = HTTPS_PORT
    workload: str | None = None  # "Deployment/ingress-nginx-controller"
    nodes: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    container_http_port: int = HTTP_PORT
    container_https_port: int = HTTPS_PORT
    http_node_port: int | None = None
    https_node_port: int | None = None
    service_type: str | None = None
    load_balancer_ips: tuple[str, ...] = ()
    external_traffic_policy: str | None = None
    host_network: bool = False
    annotation_class: str = NGINX_CLASS  # the kubernetes.io/ingress.class value it claims
    watch_without_class: bool = False  # --watch-ingress-without-class
    is_default_class: bool = False
    note: str = ""

    def serves(self, choice: ClassChoice) -> bool:
        """Whether this controller claims an Ingress of that class (ingress-nginx store.go)."""
        if choice.source in (BY_FIELD, BY_DEFAULT):
            return choice.name == self.ingress_class
        if choice.source == BY_ANNOTATION:
            return choice.name == self.annotation_class
        return self.watch_without_class


def controllers(cluster: Cluster) -> tuple[Controller, ...]:
    """The controllers found in the manifests; an emulated one if Ingresses exist and none does.

    ingress-nginx is recognised as its deploy manifests and chart label it
    (app.kubernetes.io/name=ingress-nginx, app.kubernetes.io/component=controller). It serves
    every IngressClass whose spec.controller is k8s.io/ingress-nginx (its --controller-class
    default) and the annotation value "nginx". Container args are not in netsim's model, so
    non-default --controller-class / --ingress-class flags are not seen.
    """
    found = _found(cluster)
    if found or not cluster.ingresses:
        return found
    return _emulated(cluster)


def controller_for(cluster: Cluster, choice: ClassChoice) -> Controller | None:
    """The first controller that claims Ingresses of this class, if any."""
    return next((c for c in controllers(cluster) if c.serves(choice)), None)


# ---------------------------------------------------------------- found in the manifests


def _is_controller_pod(p: Pod) -> bool:
    return all(p.labels.get(k) == v for k, v in (NGINX_NAME_LABEL, NGINX_COMPONENT_LABEL))


def _found(cluster: Cluster) -> tuple[Controller, ...]:
    groups: dict[tuple[str, str], list[Pod]] = defaultdict(list)
    for p in cluster.pods:
        if _is_controller_pod(p) and p.phase == "Running":
            groups[p.namespace, p.workload or f"Pod/{p.name}"].append(p)
    default = default_class(cluster)
    classes = [c for c in cluster.ingress_classes if c.controller == NGINX_CONTROLLER]
    names = [c.name for c in classes] or [NGINX_CLASS]
    out = []
    for (namespace, workload), pods in sorted(groups.items()):
        ready = [p for p in pods if p.ready and not p.terminating]
        svc = _front_service(cluster, namespace, pods[0])
        http_c = _container_port(pods[0], "http", HTTP_PORT)
        https_c = _container_port(pods[0], "https", HTTPS_PORT)
        front = _front_ports(svc, http_c, https_c)
        note = (f"{workload} in {namespace}: {len(ready)} ready of {len(pods)} pod(s)"
                + ("" if classes else f"; no IngressClass names {NGINX_CONTROLLER}, so it "
                   f"serves only Ingresses annotated {NGINX_CLASS!r}"))
        for name in names:
            out.append(Controller(
                ingress_class=name, controller=NGINX_CONTROLLER, namespace=namespace,
                pods=tuple(p.key for p in ready), service=svc.key if svc else None,
                emulated=False, workload=workload,
                nodes=tuple(sorted({p.node_name for p in ready if p.node_name})),
                addresses=tuple(p.ip for p in ready if p.ip), container_http_port=http_c,
                container_https_port=https_c, host_network=any(p.host_network for p in pods),
                is_default_class=default is not None and default.name == name,
                note=note, **front))
    return tuple(out)


def _container_port(pod: Pod, name: str, fallback: int) -> int:
    return pod.named_port(name) or fallback


def _front_service(cluster: Cluster, namespace: str, pod: Pod) -> Service | None:
    """The Service selecting the controller pods: LoadBalancer, then NodePort, then ClusterIP.

    The chart's "-admission" Service selects the same pods for the validating webhook; it is
    not the front door.
    """
    matching = [s for s in cluster.services
                if s.namespace == namespace and s.selector
                and all(pod.labels.get(k) == v for k, v in s.selector.items())
                and not s.name.endswith("-admission")]
    matching.sort(key=lambda s: (SERVICE_PREFERENCE.get(s.type, 3), s.name))
    return matching[0] if matching else None


def _front_ports(svc: Service | None, http_c: int, https_c: int) -> dict:
    """The Service port and NodePort that lead to nginx's HTTP and HTTPS listeners."""
    if svc is None:
        return {}
    out: dict = {"service_type": svc.type, "load_balancer_ips": svc.load_balancer_ingress,
                 "external_traffic_policy": svc.external_traffic_policy}
    for scheme, container, default in (("http", http_c, HTTP_PORT), ("https", https_c,
                                                                     HTTPS_PORT)):
        port = next((p for p in svc.ports if p.target in (scheme, container)
                     or p.name == scheme), None)
        out[f"{scheme}_port"] = port.port if port else default
        out[f"{scheme}_node_port"] = port.node_port if port else None
    return out


# ---------------------------------------------------------------- emulated


def _emulated(cluster: Cluster) -> tuple[Controller, ...]:
    """The controller netsim stands in for: ingress-nginx on the host network of each worker.

    ingress-nginx's bare-metal guide ("Via the host network") runs the controller with
    hostNetwork on the nodes, so nginx listens on each node's address at 80/443; a NodePort
    Service in front (as its baremetal deploy manifest has) lets a load balancer reach any
    node. Nothing of this is added to the cluster model: it is data for the trace.
    """
    nodes = _chosen_nodes(cluster)
    http_np, https_np = _free_node_ports(cluster)
    default = default_class(cluster)
    classes = sorted(cluster.ingress_classes, key=lambda c: (c is not default, c.name))
    wanted = [(c.name, c.controller) for c in classes] or [(NGINX_CLASS, NGINX_CONTROLLER)]
    addresses = tuple(ip for n in nodes if (ip := n.ip(IPV4) or next(iter(n.internal_ips), None)))
    out = []
    for i, (name, controller) in enumerate(wanted):
        note = (f"emulated by netsim: no ingress controller runs in the manifests, so an "
                f"ingress-nginx-like controller stands in for class {name!r} ({controller}): "
                f"host-network pods in namespace {NGINX_NAMESPACE} on "
                f"{', '.join(n.name for n in nodes) or 'no node'} listening on "
                f"{HTTP_PORT}/{HTTPS_PORT}, behind NodePort Service "
                f"{NGINX_NAMESPACE}/{NGINX_NAME} ({HTTP_PORT}:{http_np}, "
                f"{HTTPS_PORT}:{https_np})")
        out.append(Controller(
            ingress_class=name, controller=controller, namespace=NGINX_NAMESPACE,
            pods=tuple(f"{NGINX_NAMESPACE}/{NGINX_NAME}-{n.name}" for n in nodes),
            service=f"{NGINX_NAMESPACE}/{NGINX_NAME}", emulated=True,
            workload=f"DaemonSet/{NGINX_NAME}", nodes=tuple(n.name for n in nodes),
            addresses=addresses, http_node_port=http_np, https_node_port=https_np,
            service_type="NodePort", external_traffic_policy="Cluster", host_network=True,
            annotation_class=name, watch_without_class=i == 0,
            is_default_class=default is not None and default.name == name, note=note))
    return tuple(out)


def _chosen_nodes(cluster: Cluster) -> tuple[Node, ...]:
    """Ready, schedulable Linux nodes without NoSchedule/NoExecute taints (a DaemonSet's pick
    without tolerations); every ready node if none qualifies."""
    ready = [n for n in cluster.nodes if n.ready] or list(cluster.nodes)
    workers = [n for n in ready if not n.unschedulable
               and n.labels.get("kubernetes.io/os", "linux") == "linux"
               and not any(t.effect in ("NoSchedule", "NoExecute") for t in n.taints)]
    return tuple(workers or ready)


def _free_node_ports(cluster: Cluster) -> tuple[int, int]:
    """The first NodePorts at or above 30080 and 30443 that no Service uses."""
    used = {p.node_port for s in cluster.services for p in s.ports if p.node_port}
    chosen = []
    for start in EMULATED_NODE_PORTS:
        port = start
        while port in used or port in chosen:
            port = port + 1 if port < NODE_PORT_RANGE[1] else NODE_PORT_RANGE[0]
        chosen.append(port)
    return chosen[0], chosen[1]
