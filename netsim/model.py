"""The typed, read-only Kubernetes objects that netsim's components read."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netsim.errors import Source
from netsim.fields import EMPTY, FrozenDict

TCP, UDP, SCTP = "TCP", "UDP", "SCTP"
PROTOCOLS = (TCP, UDP, SCTP)
IPV4, IPV6 = "IPv4", "IPv6"


def family(ip: str) -> str:
    """IPv4 or IPv6, as Kubernetes names address families."""
    return IPV6 if ":" in ip else IPV4


@dataclass(frozen=True, slots=True)
class Meta:
    """The identity every object carries: kind, namespace, name, labels and provenance."""

    kind: str
    name: str
    namespace: str | None = None
    labels: FrozenDict = EMPTY
    annotations: FrozenDict = EMPTY
    uid: str | None = None
    created: str | None = None
    deleted: str | None = None  # metadata.deletionTimestamp: the object is terminating
    source: Source | None = None

    @property
    def ref(self) -> str:
        """Kind namespace/name, as error messages and warnings print it."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else \
            f"{self.kind} {self.name}"


class ClusterScoped:
    """Name and labels of an object, read from its metadata."""

    __slots__ = ()
    meta: Meta

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def labels(self) -> FrozenDict:
        return self.meta.labels


class Namespaced(ClusterScoped):
    """A namespaced object: its namespace ("default" when unset) and "ns/name" key."""

    __slots__ = ()

    @property
    def namespace(self) -> str:
        return self.meta.namespace or "default"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# ---------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions entry (or node selector requirement)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        op, value = self.operator, labels.get(self.key)
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":  # a missing key matches NotIn (apimachinery labels.Requirement)
            return value is None or value not in self.values
        if op == "Exists":
            return self.key in labels
        if op == "DoesNotExist":
            return self.key not in labels
        if op in ("Gt", "Lt"):  # node affinity only: integer comparison
            try:
                have, want = int(value), int(self.values[0])
            except (TypeError, ValueError):
                return False
            return have > want if op == "Gt" else have < want
        raise ValueError(f"unknown operator {op}")


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """metav1.LabelSelector: matchLabels AND every matchExpression; empty matches all."""

    match_labels: FrozenDict = EMPTY
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: dict) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(r.matches(labels) for r in self.match_expressions)

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def __str__(self) -> str:
        """The form kubectl prints (app=web,tier in (a,b)); <none> when empty."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
            elif r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                parts.append(f"{r.key} {r.operator} {','.join(r.values)}")
        return ",".join(parts) or "<none>"


# ---------------------------------------------------------------- nodes and namespaces


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class NodeAddress:
    type: str  # InternalIP, ExternalIP, Hostname, ...
    address: str


@dataclass(frozen=True, slots=True)
class Node(ClusterScoped):
    meta: Meta
    addresses: tuple[NodeAddress, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    info: FrozenDict = EMPTY  # status.nodeInfo
    generated: bool = False  # created by netsim because the input held no Node

    @property
    def internal_ips(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.addresses if a.type == "InternalIP")

    @property
    def external_ips(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.addresses if a.type == "ExternalIP")

    def ip(self, fam: str = IPV4) -> str | None:
        """The node's InternalIP of a family (the address kube-proxy and the CNI use)."""
        return next((ip for ip in self.internal_ips if family(ip) == fam), None)

    @property
    def roles(self) -> tuple[str, ...]:
        prefix = "node-role.kubernetes.io/"
        return tuple(sorted(k[len(prefix):] for k in self.labels if k.startswith(prefix)))


@dataclass(frozen=True, slots=True)
class Namespace(ClusterScoped):
    meta: Meta
    implicit: bool = False  # used by objects but not in the input


# ---------------------------------------------------------------- pods


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    protocol: str = TCP
    name: str | None = None
    host_port: int | None = None


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str | None = None
    ports: tuple[ContainerPort, ...] = ()


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str | None = None
    operator: str = "Equal"
    value: str = ""
    effect: str | None = None

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' Toleration.ToleratesTaint (empty key + Exists tolerates everything)."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return (self.key is not None or self.value == "") and self.value == taint.value


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """One term of requiredDuringScheduling node affinity (terms are ORed)."""

    match_expressions: tuple[Requirement, ...] = ()
    match_fields: tuple[Requirement, ...] = ()  # only metadata.name is supported upstream


DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


@dataclass(frozen=True, slots=True)
class PodDnsConfig:
    """A pod's spec.dnsConfig: merged into what its dnsPolicy gives (None: it is all there is)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """What a controller stamps out: labels, annotations and the pod spec."""

    labels: FrozenDict
    annotations: FrozenDict
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    host_network: bool = False
    node_selector: FrozenDict = EMPTY
    node_affinity: tuple[NodeSelectorTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    service_account: str = "default"
    hostname: str | None = None
    subdomain: str | None = None
    # out of repr, so that pod-template-hashes (and pod names) stay what they were before
    # netsim kept them: templates differing only here share a hash, which nothing relies on
    dns_policy: str = field(default="ClusterFirst", repr=False)
    dns_config: PodDnsConfig | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: str
    name: str
    uid: str | None = None
    controller: bool = True


@dataclass(frozen=True, slots=True)
class Pod(Namespaced):
    meta: Meta
    spec: PodTemplate
    node_name: str | None = None
    ips: tuple[str, ...] = ()  # status.podIPs (primary first)
    host_ips: tuple[str, ...] = ()
    phase: str = "Running"
    ready: bool = True
    terminating: bool = False
    owner: OwnerRef | None = None
    workload: str | None = None  # "Deployment/web": the top controller, for grouping
    generated: bool = False  # expanded from a controller by netsim
    addressed: bool = False  # IPs assigned by netsim's IPAM, not the input
    scheduled: bool = False  # node chosen by netsim's scheduler, not the input

    @property
    def host_network(self) -> bool:
        return self.spec.host_network

    @property
    def ip(self) -> str | None:
        return self.ips[0] if self.ips else None

    def ip_of(self, fam: str) -> str | None:
        return next((ip for ip in self.ips if family(ip) == fam), None)

    @property
    def container_ports(self) -> tuple[ContainerPort, ...]:
        return tuple(p for c in self.spec.containers for p in c.ports)

    def named_port(self, name: str, protocol: str = TCP) -> int | None:
        """The container port a named targetPort resolves to in this pod (podutil.FindPort)."""
        for p in self.container_ports:
            if p.name == name and p.protocol == protocol:
                return p.container_port
        return None


ROLLING_UPDATE, RECREATE = "RollingUpdate", "Recreate"
DEFAULT_SURGE = DEFAULT_UNAVAILABLE = "25%"  # apps/v1 SetDefaults_Deployment


@dataclass(frozen=True, slots=True)
class DeploymentStrategy:
    """spec.strategy after the API server's defaulting: the type and the two fenceposts."""

    type: str = ROLLING_UPDATE
    max_surge: int | str = DEFAULT_SURGE  # an int or "N%"
    max_unavailable: int | str = DEFAULT_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Workload(Namespaced):
    """A Deployment, ReplicaSet, StatefulSet or DaemonSet, kept for grouping and display."""

    meta: Meta
    selector: LabelSelector
    template: PodTemplate
    replicas: int | None = None  # None for DaemonSets
    service_name: str | None = None  # StatefulSet spec.serviceName
    owner: OwnerRef | None = None
    strategy: DeploymentStrategy | None = None  # Deployments only


# ---------------------------------------------------------------- services and endpoints


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    protocol: str = TCP
    name: str | None = None
    target_port: int | str | None = None  # defaults to port
    node_port: int | None = None
    app_protocol: str | None = None

    @property
    def target(self) -> int | str:
        return self.target_port if self.target_port is not None else self.port


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


@dataclass(frozen=True, slots=True)
class Service(Namespaced):
    meta: Meta
    type: str = "ClusterIP"
    selector: FrozenDict | None = None  # None: endpoints are managed by hand
    ports: tuple[ServicePort, ...] = ()
    cluster_ips: tuple[str, ...] = ()  # empty for headless and ExternalName
    headless: bool = False
    ip_families: tuple[str, ...] = ()
    ip_family_policy: str | None = None
    external_name: str | None = None
    external_ips: tuple[str, ...] = ()
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    external_traffic_policy: str | None = None  # Cluster/Local when externally reachable
    internal_traffic_policy: str = "Cluster"
    load_balancer_ip: str | None = None
    load_balancer_source_ranges: tuple[str, ...] = ()
    load_balancer_ingress: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip
    load_balancer_hostnames: tuple[str, ...] = ()  # ingress entries with a hostname (ELB)
    load_balancer_proxied: tuple[str, ...] = ()  # ingress IPs with ipMode: Proxy
    load_balancer_class: str | None = None
    health_check_node_port: int | None = None
    publish_not_ready_addresses: bool = False
    allocate_load_balancer_node_ports: bool = True
    addressed: bool = False  # some address or port assigned by netsim

    @property
    def cluster_ip(self) -> str | None:
        return self.cluster_ips[0] if self.cluster_ips else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None
    hostname: str | None = None
    target: str | None = None  # "ns/pod" of the targetRef Pod


@dataclass(frozen=True, slots=True)
class EndpointPort:
    port: int | None
    protocol: str = TCP
    name: str | None = None
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointSlice(Namespaced):
    meta: Meta
    service_name: str | None
    address_type: str = IPV4
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()
    derived: bool = False  # computed by netsim as the EndpointSlice controller would


# ---------------------------------------------------------------- network policy


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicyPeer:
    """One from/to entry: selectors in one peer are ANDed; an ipBlock stands alone."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyPort:
    protocol: str = TCP  # the API server's default
    port: int | str | None = None  # None: every port of the protocol
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkPolicyRule:
    """An ingress or egress rule: empty peers means every peer, empty ports every port."""

    peers: tuple[NetworkPolicyPeer, ...] = ()
    ports: tuple[NetworkPolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy(Namespaced):
    meta: Meta
    pod_selector: LabelSelector
    policy_types: tuple[str, ...]  # after the API server's defaulting
    ingress: tuple[NetworkPolicyRule, ...] = ()
    egress: tuple[NetworkPolicyRule, ...] = ()


# ---------------------------------------------------------------- ingress


@dataclass(frozen=True, slots=True)
class IngressBackend:
    service_name: str | None = None
    port_number: int | None = None
    port_name: str | None = None
    resource: str | None = None  # "Kind/name" (apiGroup in resource_group)
    resource_group: str | None = None


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str | None
    path_type: str
    backend: IngressBackend


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str | None
    paths: tuple[IngressPath, ...] = ()


@dataclass(frozen=True, slots=True)
class IngressTLS:
    hosts: tuple[str, ...] = ()
    secret_name: str | None = None


@dataclass(frozen=True, slots=True)
class Ingress(Namespaced):
    meta: Meta
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    rules: tuple[IngressRule, ...] = ()
    tls: tuple[IngressTLS, ...] = ()
    load_balancer_ingress: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IngressClass(ClusterScoped):
    meta: Meta
    controller: str
    is_default: bool = False
    parameters: FrozenDict | None = None


# ---------------------------------------------------------------- kube-proxy and the rest


@dataclass(frozen=True, slots=True)
class KubeProxyConfiguration:
    """The kubeproxy.config.k8s.io/v1alpha1 fields netsim reads; `raw` keeps the rest."""

    mode: str = ""  # as written; empty means kube-proxy's default (iptables)
    cluster_cidrs: tuple[str, ...] = ()
    masquerade_all: bool = False
    masquerade_bit: int = 14
    local_localhost_node_ports: bool = True
    node_port_addresses: tuple[str, ...] = ()
    detect_local_mode: str = ""
    bridge_interface: str | None = None
    interface_name_prefix: str | None = None
    ipvs_scheduler: str = ""
    ipvs_strict_arp: bool = False
    source: Source | None = None
    raw: FrozenDict = EMPTY


@dataclass(frozen=True, slots=True)
class RawObject(ClusterScoped):
    """Any other kind a component reads (CNI, mesh and admin policy resources): frozen data."""

    meta: Meta
    api_version: str
    body: FrozenDict = EMPTY  # the whole object minus apiVersion/kind/metadata, deep-frozen

    @property
    def namespace(self) -> str | None:
        return self.meta.namespace

    @property
    def kind(self) -> str:
        return self.meta.kind


def ip_in(ip: str, cidrs: tuple[str, ...]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in ipaddress.ip_network(c) for c in cidrs)
