"""Nodes, Namespaces, Pods and the workload controllers that stamp Pods out."""

from __future__ import annotations

from netsim.fields import DNS1123_SUBDOMAIN, EMPTY, Fields, FrozenDict
from netsim.model import (
    DNS_POLICIES,
    PROTOCOLS,
    TCP,
    Container,
    ContainerPort,
    Namespace,
    Node,
    NodeAddress,
    NodeSelectorTerm,
    Pod,
    PodDnsConfig,
    PodTemplate,
    Taint,
    Toleration,
    Workload,
)
from netsim.parse.meta import (
    NODE_SELECTOR_OPERATORS,
    parse_meta,
    parse_owner,
    parse_requirements,
    parse_selector,
)
from netsim.parse.strategy import parse_strategy

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# pkg/apis/core/validation: MaxDNSNameservers, MaxDNSSearchPaths, MaxDNSSearchListChars
MAX_DNS_NAMESERVERS, MAX_DNS_SEARCH_PATHS, MAX_DNS_SEARCH_CHARS = 3, 32, 2048
NODE_ADDRESS_TYPES = ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def parse_node(f: Fields) -> Node:
    meta = parse_meta(f, "Node", namespaced=False)
    spec, status = f.sub("spec"), f.sub("status")
    addresses = []
    for a in status.items("addresses"):
        kind = a.enum("type", NODE_ADDRESS_TYPES, required=True)
        value = a.str("address", required=True)
        if kind in ("InternalIP", "ExternalIP"):
            value = a.check_ip("address", value)
        addresses.append(NodeAddress(kind, value))
    pod_cidrs = spec.cidr_list("podCIDRs")
    if not pod_cidrs and spec.has("podCIDR"):
        pod_cidrs = (spec.cidr("podCIDR", spec.str("podCIDR")),)
    taints = tuple(Taint(t.str("key", required=True), t.enum("effect", TAINT_EFFECTS,
                                                                 required=True), t.str("value",
                                                                                       default=""))
                   for t in spec.items("taints"))
    ready = True
    for c in status.items("conditions"):
        if c.data.get("type") == "Ready":
            ready = c.str("status", default="True") == "True"
    return Node(meta=meta, addresses=tuple(addresses), pod_cidrs=pod_cidrs, taints=taints,
                unschedulable=spec.bool("unschedulable"), ready=ready,
                info=status.string_map("nodeInfo") if _all_strings(status, "nodeInfo") else EMPTY)


def _all_strings(f: Fields, key: str) -> bool:
    value = f.data.get(key)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def parse_namespace(f: Fields) -> Namespace:
    meta = parse_meta(f, "Namespace", namespaced=False, dns_label=True)
    return Namespace(meta=with_name_label(meta))


def with_name_label(meta):
    """Namespaces carry kubernetes.io/metadata.name=<name>, set by the control plane."""
    if meta.labels.get(NAMESPACE_NAME_LABEL) == meta.name:
        return meta
    from dataclasses import replace
    return replace(meta, labels=FrozenDict({**meta.labels, NAMESPACE_NAME_LABEL: meta.name}))


def parse_pod(f: Fields) -> Pod:
    meta = parse_meta(f, "Pod", namespaced=True)
    spec, status = f.sub("spec"), f.sub("status")
    template = parse_pod_spec(spec, meta.labels, meta.annotations)
    ips = tuple(status.check_ip(f"podIPs[{i}].ip", p.str("ip"))
                for i, p in enumerate(status.items("podIPs")) if p.str("ip"))
    if not ips and status.ip("podIP"):
        ips = (status.ip("podIP"),)
    host_ips = tuple(status.check_ip(f"hostIPs[{i}].ip", p.str("ip"))
                     for i, p in enumerate(status.items("hostIPs")) if p.str("ip"))
    if not host_ips and status.ip("hostIP"):
        host_ips = (status.ip("hostIP"),)
    phase = status.enum("phase", ("Pending", "Running", "Succeeded", "Failed", "Unknown"),
                        default="Running")
    ready = phase == "Running"
    for c in status.items("conditions"):
        if c.data.get("type") == "Ready":
            ready = c.str("status", default="True") == "True"
    return Pod(meta=meta, spec=template, node_name=spec.str("nodeName"), ips=ips,
               host_ips=host_ips, phase=phase, ready=ready,
               terminating=f.sub("metadata").has("deletionTimestamp"), owner=parse_owner(f))


def parse_pod_spec(spec: Fields, labels: FrozenDict, annotations: FrozenDict) -> PodTemplate:
    """The parts of a PodSpec that networking and scheduling depend on."""
    containers = tuple(_container(c) for c in spec.items("containers", required=True))
    if not containers:  # ValidatePodSpec: at least one container
        raise spec.error("containers", "must hold at least one container")
    return PodTemplate(
        labels=labels,
        annotations=annotations,
        containers=containers,
        init_containers=tuple(_container(c) for c in spec.items("initContainers")),
        host_network=spec.bool("hostNetwork"),
        node_selector=spec.string_map("nodeSelector"),
        node_affinity=_node_affinity(spec),
        tolerations=tuple(_toleration(t) for t in spec.items("tolerations")),
        service_account=spec.str("serviceAccountName") or spec.str("serviceAccount")
        or "default",
        hostname=spec.str("hostname"),
        subdomain=spec.str("subdomain"),
        dns_policy=spec.enum("dnsPolicy", DNS_POLICIES, default="ClusterFirst"),
        dns_config=_dns_config(spec),
    )


def _dns_config(spec: Fields) -> PodDnsConfig | None:
    """spec.dnsConfig, validated as the API server does (validatePodDNSConfig)."""
    none = spec.data.get("dnsPolicy") == "None"
    config = spec.opt_sub("dnsConfig")
    if config is None:
        if none:
            raise spec.error("dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")
        return None
    nameservers = config.ip_list("nameservers")
    if none and not nameservers:
        raise config.error("nameservers", "must provide at least one DNS nameserver when "
                           "`dnsPolicy` is None")
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        raise config.error("nameservers", f"must not have more than {MAX_DNS_NAMESERVERS} "
                           f"nameservers: {', '.join(nameservers)}")
    searches = config.str_list("searches")
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        raise config.error("searches", f"must not have more than {MAX_DNS_SEARCH_PATHS} "
                           "search paths")
    if len(" ".join(searches)) > MAX_DNS_SEARCH_CHARS:
        raise config.error("searches", f"must not have more than {MAX_DNS_SEARCH_CHARS} "
                           "characters (including spaces) in the search list")
    for i, search in enumerate(searches):
        bare = search.removesuffix(".")
        if search != "." and (len(bare) > 253 or not DNS1123_SUBDOMAIN.match(bare)):
            raise config.error(f"searches[{i}]", f"must be a lowercase DNS name, got {search!r}")
    options = []
    for option in config.items("options"):
        value = option.data.get("value")
        options.append((option.str("name", required=True),
                        None if value is None else option.str("value")))
    return PodDnsConfig(nameservers, tuple(s.removesuffix(".") or "." for s in searches),
                        tuple(options))


def _container(c: Fields) -> Container:
    ports = []
    seen: set[tuple[int, str]] = set()
    for p in c.items("ports"):
        port = ContainerPort(
            container_port=p.int("containerPort", required=True, lo=1, hi=65535),
            protocol=p.enum("protocol", PROTOCOLS, default=TCP),
            name=p.int_or_str("name") if p.has("name") else None,
            host_port=p.int("hostPort", lo=1, hi=65535),
        )
        if isinstance(port.name, int):
            raise p.error("name", "must be an IANA port name, not a number")
        if (port.container_port, port.protocol) in seen:
            raise p.error("containerPort", f"duplicate port {port.container_port}/{port.protocol}")
        seen.add((port.container_port, port.protocol))
        ports.append(port)
    return Container(name=c.str("name", required=True), image=c.str("image"), ports=tuple(ports))


def _toleration(t: Fields) -> Toleration:
    op = t.enum("operator", ("Equal", "Exists"), default="Equal")
    if op == "Exists" and t.data.get("value"):
        raise t.error("value", "must be empty when operator is Exists")
    return Toleration(key=t.str("key") or None, operator=op, value=t.str("value", default=""),
                      effect=t.enum("effect", TAINT_EFFECTS) or None)


def _node_affinity(spec: Fields) -> tuple[NodeSelectorTerm, ...]:
    required = spec.sub("affinity").sub("nodeAffinity").opt_sub(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return ()
    terms = tuple(NodeSelectorTerm(parse_requirements(t, "matchExpressions",
                                                      NODE_SELECTOR_OPERATORS),
                                   parse_requirements(t, "matchFields", NODE_SELECTOR_OPERATORS))
                  for t in required.items("nodeSelectorTerms", required=True))
    if not terms:
        raise required.error("nodeSelectorTerms", "must have at least one term")
    return terms


WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")


def parse_workload(f: Fields, kind: str) -> Workload:
    """A controller, validated as the API server does: its selector must match its template."""
    meta = parse_meta(f, kind, namespaced=True)
    spec = f.sub("spec")
    selector_f = spec.sub("selector")
    if not spec.has("selector"):
        raise spec.error("selector", "required field is missing")
    selector = parse_selector(selector_f)
    if selector.is_empty:
        raise spec.error("selector", "must not be empty")
    tmpl = spec.sub("template")
    tmeta = tmpl.sub("metadata")
    labels = tmeta.labels("labels")
    if not selector.matches(labels):
        raise tmeta.error("labels", f"`selector` does not match template `labels` "
                          f"(selector {selector})")
    template = parse_pod_spec(tmpl.sub("spec"), labels, tmeta.string_map("annotations"))
    replicas = None if kind == "DaemonSet" else spec.int("replicas", default=1, lo=0,
                                                         hi=1_000_000)
    service_name = spec.str("serviceName") if kind == "StatefulSet" else None
    strategy = parse_strategy(spec.sub("strategy")) if kind == "Deployment" else None
    return Workload(meta=meta, selector=selector, template=template, replicas=replicas,
                    service_name=service_name, owner=parse_owner(f), strategy=strategy)
