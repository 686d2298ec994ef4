"""Services, EndpointSlices and legacy Endpoints, validated as the API server does."""

from __future__ import annotations

import re

from netsim.fields import DNS1123_LABEL, Fields
from netsim.model import (
    IPV4,
    IPV6,
    PROTOCOLS,
    SERVICE_TYPES,
    TCP,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Meta,
    Service,
    ServicePort,
    family,
)
from netsim.parse.meta import parse_meta

FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_DNS_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?\.?$",
                       re.IGNORECASE)


def parse_service(f: Fields) -> Service:
    meta = parse_meta(f, "Service", namespaced=True, dns_label=True)
    spec, status = f.sub("spec"), f.sub("status")
    svc_type = spec.enum("type", SERVICE_TYPES, default="ClusterIP")
    external = svc_type in ("NodePort", "LoadBalancer")
    cluster_ips, headless = _cluster_ips(spec, svc_type)
    ports = _service_ports(spec, svc_type, headless)
    families = _families(spec)
    for ip, fam in zip(cluster_ips, families, strict=False):
        if family(ip) != fam:
            raise spec.error("clusterIPs", f"{ip} does not match ipFamilies {list(families)}")
    policy = spec.enum("ipFamilyPolicy", FAMILY_POLICIES)
    if policy == "SingleStack" and (len(cluster_ips) == 2 or len(families) == 2):
        # the API server's allocator refuses these (registry/core/service initIPFamilyFields)
        given = "clusterIPs holds two addresses" if len(cluster_ips) == 2 else \
            "ipFamilies holds two families"
        raise spec.error("ipFamilyPolicy", f"must be RequireDualStack or PreferDualStack when "
                         f"{given}")
    external_ips = spec.ip_list("externalIPs")
    # service.ExternallyAccessible: NodePort, LoadBalancer, or ClusterIP with externalIPs;
    # SetDefaults_Service gives exactly those externalTrafficPolicy Cluster (core/v1/defaults.go)
    accessible = external or (svc_type == "ClusterIP" and bool(external_ips))
    etp = spec.enum("externalTrafficPolicy", ("Cluster", "Local"))
    if etp and not accessible:
        raise spec.error("externalTrafficPolicy", "may only be set for externally-accessible "
                         "services (NodePort, LoadBalancer, or ClusterIP with externalIPs)")
    affinity = spec.enum("sessionAffinity", ("None", "ClientIP"), default="None")
    timeout = spec.sub("sessionAffinityConfig").sub("clientIP").int(
        "timeoutSeconds", default=10800, lo=1, hi=86400)
    external_name = spec.str("externalName")
    if svc_type == "ExternalName":
        if not external_name:
            raise spec.error("externalName", "required field is missing for type ExternalName")
        if not _DNS_NAME.match(external_name) or len(external_name) > 253:
            raise spec.error("externalName", f"must be a DNS name, got {external_name!r}")
    selector = spec.labels("selector") or None
    lb_ingress, lb_hostnames, lb_proxied = [], [], []
    for i, ing in enumerate(status.sub("loadBalancer").items("ingress")):
        if ing.has("ip"):
            ip = ing.check_ip("ip", ing.str("ip"))
            lb_ingress.append(ip)
            if ing.enum("ipMode", ("VIP", "Proxy"), default="VIP") == "Proxy":
                lb_proxied.append(ip)  # the load balancer proxies: kube-proxy skips this IP
        elif ing.has("hostname"):
            lb_hostnames.append(ing.str("hostname"))
        else:
            raise status.error(f"loadBalancer.ingress[{i}]", "needs an ip or a hostname")
    return Service(
        meta=meta,
        type=svc_type,
        selector=selector if svc_type != "ExternalName" else None,
        ports=ports,
        cluster_ips=cluster_ips,
        headless=headless,
        ip_families=families,
        ip_family_policy=policy,
        external_name=external_name if svc_type == "ExternalName" else None,
        external_ips=external_ips,
        session_affinity=affinity,
        affinity_timeout=timeout,
        external_traffic_policy=(etp or "Cluster") if accessible else None,
        internal_traffic_policy=spec.enum("internalTrafficPolicy", ("Cluster", "Local"),
                                          default="Cluster"),
        load_balancer_ip=spec.ip("loadBalancerIP") if spec.data.get("loadBalancerIP") else None,
        load_balancer_source_ranges=_source_ranges(spec),
        load_balancer_ingress=tuple(lb_ingress),
        load_balancer_hostnames=tuple(lb_hostnames),
        load_balancer_proxied=tuple(lb_proxied),
        load_balancer_class=spec.str("loadBalancerClass"),
        health_check_node_port=spec.int("healthCheckNodePort", lo=1, hi=65535),
        publish_not_ready_addresses=spec.bool("publishNotReadyAddresses"),
        allocate_load_balancer_node_ports=spec.bool("allocateLoadBalancerNodePorts",
                                                    default=True),
    )


def _source_ranges(spec: Fields) -> tuple[str, ...]:
    """loadBalancerSourceRanges, each trimmed of spaces as the API server and kube-proxy do
    (service util GetLoadBalancerSourceRanges: strings.TrimSpace)."""
    return tuple(spec.cidr(f"loadBalancerSourceRanges[{i}]", v.strip())
                 for i, v in enumerate(spec.str_list("loadBalancerSourceRanges")))


def _cluster_ips(spec: Fields, svc_type: str) -> tuple[tuple[str, ...], bool]:
    """spec.clusterIP(s): "None" means headless; empty means "allocate one"."""
    first = spec.str("clusterIP", default="")
    rest = spec.str_list("clusterIPs")
    if rest and first and rest[0] != first:
        raise spec.error("clusterIPs", f"first entry must match clusterIP ({first})")
    values = rest or ((first,) if first else ())
    if svc_type == "ExternalName":
        if values and values != ("None",) and any(values):
            raise spec.error("clusterIP", "must be empty for type ExternalName")
        return (), False
    if values and values[0] == "None":
        if svc_type != "ClusterIP":
            raise spec.error("clusterIP", f"may not be None for type {svc_type}")
        if len(values) > 1:
            raise spec.error("clusterIPs", "must hold only None for a headless Service")
        return (), True
    ips = tuple(spec.check_ip(f"clusterIPs[{i}]", v) for i, v in enumerate(values) if v)
    if len(ips) == 2 and family(ips[0]) == family(ips[1]):
        raise spec.error("clusterIPs", "may hold at most one address per family")
    if len(ips) > 2:
        raise spec.error("clusterIPs", "may hold at most two addresses")
    return ips, False


def _families(spec: Fields) -> tuple[str, ...]:
    values = spec.str_list("ipFamilies")
    for i, v in enumerate(values):
        if v not in (IPV4, IPV6):
            raise spec.error(f"ipFamilies[{i}]", f"must be one of IPv4, IPv6, got {v!r}")
    if len(set(values)) != len(values) or len(values) > 2:
        raise spec.error("ipFamilies", "may hold each family at most once")
    return values


def _service_ports(spec: Fields, svc_type: str, headless: bool) -> tuple[ServicePort, ...]:
    ports: list[ServicePort] = []
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    items = list(spec.items("ports"))
    if not items and svc_type != "ExternalName" and not headless:
        raise spec.error("ports", "required field is missing")
    for p in items:
        name = p.str("name")
        if len(items) > 1 and not name:
            raise p.error("name", "required when a Service has more than one port")
        if name:
            if len(name) > 63 or not DNS1123_LABEL.match(name):  # ValidateService: a DNS label
                raise p.error("name", f"must be a lowercase RFC 1123 label, got {name!r}")
            if name in names:
                raise p.error("name", f"duplicate port name {name!r}")
            names.add(name)
        port = ServicePort(
            port=p.int("port", required=True, lo=1, hi=65535),
            protocol=p.enum("protocol", PROTOCOLS, default=TCP),
            name=name,
            # SetDefaults_Service: an unset, zero or empty targetPort means the port itself
            target_port=None if p.data.get("targetPort") in (0, "") else
            p.int_or_str("targetPort"),
            node_port=p.int("nodePort", lo=1, hi=65535),
            app_protocol=p.str("appProtocol"),
        )
        if (port.port, port.protocol) in seen:
            raise p.error("port", f"duplicate port {port.port}/{port.protocol}")
        seen.add((port.port, port.protocol))
        if port.node_port and svc_type not in ("NodePort", "LoadBalancer"):
            raise p.error("nodePort", f"may not be used when type is {svc_type}")
        ports.append(port)
    return tuple(ports)


def parse_endpoint_slice(f: Fields) -> EndpointSlice:
    meta = parse_meta(f, "EndpointSlice", namespaced=True)
    address_type = f.enum("addressType", (IPV4, IPV6, "FQDN"), required=True)
    endpoints = []
    for e in f.items("endpoints"):
        addresses = e.str_list("addresses")
        if not 1 <= len(addresses) <= 100:
            raise e.error("addresses", "must hold between 1 and 100 addresses")
        if address_type != "FQDN":
            addresses = tuple(e.check_ip(f"addresses[{i}]", a) for i, a in enumerate(addresses))
            for i, a in enumerate(addresses):
                if family(a) != address_type:
                    raise e.error(f"addresses[{i}]", f"{a} is not an {address_type} address")
        cond = e.sub("conditions")
        # discovery/v1 EndpointConditions: ready and serving nil mean true, terminating nil
        # false (kube-proxy endpointslicecache reads them so; "defer to ready" was v1beta1).
        ready = cond.bool("ready", default=True)
        target = e.sub("targetRef")
        endpoints.append(Endpoint(
            addresses=addresses, ready=ready, serving=cond.bool("serving", default=True),
            terminating=cond.bool("terminating", default=False), node_name=e.str("nodeName"),
            zone=e.str("zone"), hostname=e.str("hostname"),
            target=_target(target, meta.namespace),
        ))
    ports = tuple(EndpointPort(port=p.int("port", lo=1, hi=65535),
                               protocol=p.enum("protocol", PROTOCOLS, default=TCP),
                               name=p.str("name"), app_protocol=p.str("appProtocol"))
                  for p in f.items("ports"))
    return EndpointSlice(meta=meta, service_name=meta.labels.get(SERVICE_NAME_LABEL),
                         address_type=address_type, endpoints=tuple(endpoints), ports=ports)


def _target(target: Fields, namespace: str | None) -> str | None:
    if target.data.get("kind", "Pod") != "Pod" or not target.has("name"):
        return None
    return f"{target.str('namespace', default=namespace)}/{target.str('name')}"


def parse_endpoints(f: Fields) -> tuple[EndpointSlice, ...]:
    """Legacy v1 Endpoints, converted to the EndpointSlices the mirroring controller makes."""
    meta = parse_meta(f, "Endpoints", namespaced=True)
    slices = []
    for s, subset in enumerate(f.items("subsets")):
        ports = tuple(EndpointPort(port=p.int("port", required=True, lo=1, hi=65535),
                                   protocol=p.enum("protocol", PROTOCOLS, default=TCP),
                                   name=p.str("name"), app_protocol=p.str("appProtocol"))
                      for p in subset.items("ports"))
        by_family: dict[str, list[Endpoint]] = {}
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.items(key):
                ip = a.ip("ip", required=True)
                by_family.setdefault(family(ip), []).append(Endpoint(
                    addresses=(ip,), ready=ready, serving=ready, node_name=a.str("nodeName"),
                    hostname=a.str("hostname"), target=_target(a.sub("targetRef"),
                                                               meta.namespace)))
        for fam, endpoints in sorted(by_family.items()):
            name = f"{meta.name}-{s}" + ("-v6" if fam == IPV6 else "")
            slices.append(EndpointSlice(
                meta=Meta(kind="EndpointSlice", name=name, namespace=meta.namespace,
                          labels=meta.labels, source=meta.source),
                service_name=meta.name, address_type=fam, endpoints=tuple(endpoints),
                ports=ports))
    return tuple(slices)
