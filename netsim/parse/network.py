"""NetworkPolicy, Ingress, IngressClass and KubeProxyConfiguration, validated and defaulted."""

from __future__ import annotations

import ipaddress
import re

from netsim.fields import Fields, freeze
from netsim.model import (
    PROTOCOLS,
    TCP,
    Ingress,
    IngressBackend,
    IngressClass,
    IngressPath,
    IngressRule,
    IngressTLS,
    IPBlock,
    KubeProxyConfiguration,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicyRule,
)
from netsim.parse.meta import parse_meta, parse_selector

POLICY_TYPES = ("Ingress", "Egress")
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
_WILDCARD_HOST = re.compile(r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*"
                            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def parse_network_policy(f: Fields) -> NetworkPolicy:
    meta = parse_meta(f, "NetworkPolicy", namespaced=True)
    spec = f.sub("spec")
    ingress = tuple(_rule(r, "from") for r in spec.items("ingress"))
    egress = tuple(_rule(r, "to") for r in spec.items("egress"))
    types = spec.str_list("policyTypes")
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            raise spec.error(f"policyTypes[{i}]", f"must be Ingress or Egress, got {t!r}")
    if len(set(types)) != len(types):
        raise spec.error("policyTypes", "may list each type once")
    if not types:
        # The API server's SetDefaults_NetworkPolicy: Ingress always, Egress only when
        # there are egress rules (networking/v1/defaults.go).
        types = ("Ingress", "Egress") if egress else ("Ingress",)
    return NetworkPolicy(meta=meta, pod_selector=parse_selector(spec.sub("podSelector")),
                         policy_types=tuple(t for t in POLICY_TYPES if t in types),
                         ingress=ingress, egress=egress)


def _rule(r: Fields, peers_key: str) -> NetworkPolicyRule:
    return NetworkPolicyRule(peers=tuple(_peer(p) for p in r.items(peers_key)),
                             ports=tuple(_policy_port(p) for p in r.items("ports")))


def _peer(p: Fields) -> NetworkPolicyPeer:
    pods, namespaces, block = (p.opt_sub("podSelector"), p.opt_sub("namespaceSelector"),
                               p.opt_sub("ipBlock"))
    if pods is None and namespaces is None and block is None:
        raise p.error(None, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    if block is not None and (pods is not None or namespaces is not None):
        raise p.error(None, "may not specify both ipBlock and another peer")
    return NetworkPolicyPeer(
        pod_selector=parse_selector(pods) if pods is not None else None,
        namespace_selector=parse_selector(namespaces) if namespaces is not None else None,
        ip_block=_ip_block(block) if block is not None else None,
    )


def _ip_block(b: Fields) -> IPBlock:
    cidr = b.cidr("cidr", b.str("cidr", required=True))  # lenient: host bits are masked
    net = ipaddress.ip_network(cidr)
    excepts = b.cidr_list("except")
    for i, e in enumerate(excepts):
        sub = ipaddress.ip_network(e)
        if sub.version != net.version or not sub.subnet_of(net) or sub == net:
            raise b.error(f"except[{i}]", f"must be a strict subset of cidr {cidr}, got {e}")
    return IPBlock(cidr, excepts)


def _policy_port(p: Fields) -> NetworkPolicyPort:
    port = p.int_or_str("port")
    end = p.int("endPort", lo=1, hi=65535)
    if end is not None:
        if not isinstance(port, int):
            raise p.error("endPort", "may only be set with a numeric port")
        if end < port:
            raise p.error("endPort", f"must be greater than or equal to port ({port})")
    return NetworkPolicyPort(protocol=p.enum("protocol", PROTOCOLS, default=TCP), port=port,
                             end_port=end)


def parse_ingress(f: Fields) -> Ingress:
    meta = parse_meta(f, "Ingress", namespaced=True)
    spec = f.sub("spec")
    default = _backend(spec.sub("defaultBackend")) if spec.has("defaultBackend") else None
    rules = []
    for r in spec.items("rules"):
        host = r.str("host")
        if host is not None:
            _check_host(r, "host", host)
        paths = []
        for p in r.sub("http").items("paths", required=r.has("http")):
            path_type = p.enum("pathType", PATH_TYPES, required=True)
            path = p.str("path")
            if path is not None and not path.startswith("/"):
                raise p.error("path", f"must be an absolute path, got {path!r}")
            if path is None and path_type != "ImplementationSpecific":
                raise p.error("path", f"required for pathType {path_type}")
            paths.append(IngressPath(path, path_type, _backend(p.sub("backend"))))
        rules.append(IngressRule(host, tuple(paths)))
    if not rules and default is None:
        raise spec.error(None, "either defaultBackend or rules must be specified")
    tls = []
    for t in spec.items("tls"):
        hosts = t.str_list("hosts")
        for i, h in enumerate(hosts):
            _check_host(t, f"hosts[{i}]", h)
        tls.append(IngressTLS(hosts, t.str("secretName")))
    lb = tuple(i.check_ip("ip", i.str("ip")) for i in
               f.sub("status").sub("loadBalancer").items("ingress") if i.has("ip"))
    return Ingress(meta=meta, ingress_class_name=spec.str("ingressClassName"),
                   default_backend=default, rules=tuple(rules), tls=tuple(tls),
                   load_balancer_ingress=lb)


def _check_host(f: Fields, key: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise f.error(key, f"must be a DNS name, not an IP address: {host!r}")
    if not _WILDCARD_HOST.match(host) or len(host) > 253:
        raise f.error(key, f"must be a DNS name with at most a leading '*.' wildcard, "
                      f"got {host!r}")


def _backend(b: Fields) -> IngressBackend:
    service, resource = b.opt_sub("service"), b.opt_sub("resource")
    if (service is None) == (resource is None):
        raise b.error(None, "must specify exactly one of service or resource")
    if resource is not None:
        return IngressBackend(resource=f"{resource.str('kind', required=True)}/"
                                       f"{resource.str('name', required=True)}",
                              resource_group=resource.str("apiGroup"))
    port = service.sub("port")
    number, name = port.int("number", lo=1, hi=65535), port.str("name")
    if (number is None) == (name is None):
        raise port.error(None, "must specify exactly one of number or name")
    return IngressBackend(service_name=service.str("name", required=True), port_number=number,
                          port_name=name)


def parse_ingress_class(f: Fields) -> IngressClass:
    meta = parse_meta(f, "IngressClass", namespaced=False)
    spec = f.sub("spec")
    params = spec.sub("parameters").data or None
    return IngressClass(meta=meta, controller=spec.str("controller", required=True),
                        is_default=meta.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true",
                        parameters=freeze(params) if params else None)


PROXY_MODES = ("", "iptables", "ipvs", "nftables", "kernelspace")
DETECT_LOCAL_MODES = ("", "ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")


def parse_kube_proxy_configuration(f: Fields) -> KubeProxyConfiguration:
    """kubeproxy.config.k8s.io/v1alpha1 (a config file, not an API object: no metadata)."""
    iptables, ipvs, detect = f.sub("iptables"), f.sub("ipvs"), f.sub("detectLocal")
    cluster_cidr = f.str("clusterCIDR", default="")
    cidrs = tuple(f.cidr("clusterCIDR", c.strip()) for c in cluster_cidr.split(",") if c.strip())
    addresses = f.str_list("nodePortAddresses")
    for i, a in enumerate(addresses):
        if a != "primary":
            f.cidr(f"nodePortAddresses[{i}]", a, strict=True)
    mode = f.enum("mode", PROXY_MODES, default="")  # "": not set (kube-proxy: iptables)
    return KubeProxyConfiguration(
        mode=mode,
        cluster_cidrs=cidrs,
        masquerade_all=iptables.bool("masqueradeAll"),
        masquerade_bit=iptables.int("masqueradeBit", default=14, lo=0, hi=31),
        local_localhost_node_ports=iptables.bool("localhostNodePorts", default=True),
        node_port_addresses=addresses,
        detect_local_mode=f.enum("detectLocalMode", DETECT_LOCAL_MODES, default=""),
        bridge_interface=detect.str("bridgeInterface"),
        interface_name_prefix=detect.str("interfaceNamePrefix"),
        ipvs_scheduler=ipvs.str("scheduler", default=""),
        ipvs_strict_arp=ipvs.bool("strictARP"),
        source=f.source,
        raw=freeze(f.data),
    )
