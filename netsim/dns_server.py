"""The cluster DNS server: the kube-dns Service, its CoreDNS pods, the Corefile's settings."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from netsim.errors import InputError
from netsim.model import TCP, UDP, Service

DNS_PORT = 53
DNS_NAMESPACE = "kube-system"
DNS_SERVICE_NAME = "kube-dns"
DNS_LABEL = ("k8s-app", "kube-dns")  # kubeadm's and the CoreDNS deployment's label
COREFILE_CONFIGMAP = "coredns"
# kubeadm puts the DNS Service at the tenth address of the service range
# (cmd/kubeadm/app/constants GetDNSIP: GetIndexedIP(svcSubnet, 10)).
KUBEADM_DNS_INDEX = 10
# The kubernetes plugin's own defaults (coredns plugin/kubernetes README: "ttl ... default 5",
# "pods disabled: Default") ...
PLUGIN_TTL, PLUGIN_PODS = 5, "disabled"
# ... and what kubeadm's default Corefile sets: `kubernetes cluster.local in-addr.arpa ip6.arpa
# { pods insecure  fallthrough in-addr.arpa ip6.arpa  ttl 30 }` and `forward . /etc/resolv.conf`.
KUBEADM_TTL, KUBEADM_PODS = 30, "insecure"
POD_MODES = ("disabled", "insecure", "verified")
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")


@dataclass(frozen=True, slots=True)
class CoreDnsConfig:
    """What the Corefile's `kubernetes` block tells CoreDNS to answer, and how.

    `fallthrough` None means no fallthrough; () means every zone of the block.
    `namespaces` empty means every namespace is exposed.
    """

    zones: tuple[str, ...]  # forward zones, primary first ("" is the root zone)
    reverse_zones: tuple[str, ...] = REVERSE_ZONES
    pods: str = PLUGIN_PODS
    ttl: int = PLUGIN_TTL
    endpoint_pod_names: bool = False
    fallthrough: tuple[str, ...] | None = None
    ignore_empty_service: bool = False
    noendpoints: bool = False
    namespaces: tuple[str, ...] = ()
    upstream: str | None = None  # the forward plugin's target for everything else
    source: str = ""  # where this came from, for notes

    @property
    def primary_zone(self) -> str:
        return self.zones[0] if self.zones else ""

    def falls_through(self, name: str) -> bool:
        """Whether an NXDOMAIN for `name` goes on down the plugin chain (to forward)."""
        if self.fallthrough is None:
            return False
        return not self.fallthrough or in_zone(name, self.fallthrough) is not None


@dataclass(frozen=True, slots=True)
class DnsPort:
    name: str | None
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class DnsService:
    """The Service pods' resolv.conf points at, and the CoreDNS pods behind it.

    `emulated` means the cluster has no such Service (the manifests hold none and
    NetsimConfig spec.dns.disabled keeps netsim's addon out) and netsim describes the one
    kubeadm would have made; nothing routes traffic to it, so queries cannot be traced.
    """

    namespace: str
    name: str
    cluster_ips: tuple[str, ...]
    ports: tuple[DnsPort, ...]
    pods: tuple[str, ...]  # "ns/pod" of the ready CoreDNS endpoints
    emulated: bool
    config: CoreDnsConfig
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def cluster_ip(self) -> str | None:
        return self.cluster_ips[0] if self.cluster_ips else None

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def dns_service(cluster) -> DnsService:
    """The cluster's DNS Service: from the manifests, or the kubeadm-style one netsim assumes."""
    return cluster.derived("dns_service", _dns_service)


def _dns_service(cluster) -> DnsService:
    config = corefile_config(cluster)
    notes: list[str] = []
    domain = cluster.settings.cluster_domain
    if domain not in config.zones and "" not in config.zones:
        notes.append(f"the Corefile's kubernetes block serves {', '.join(config.zones)} but "
                     f"the cluster domain (kubelet clusterDomain) is {domain}: names in pods' "
                     f"search list are forwarded upstream, not answered")
    svc = find_dns_service(cluster.services)
    if svc is not None:
        ports = tuple(DnsPort(p.name, p.port, p.protocol) for p in svc.ports
                      if p.port == DNS_PORT and p.protocol in (UDP, TCP))
        if not {p.protocol for p in ports} >= {UDP, TCP}:
            have = ", ".join(f"{p.port}/{p.protocol}" for p in svc.ports) or "none"
            notes.append(f"Service {svc.key} should serve 53/UDP and 53/TCP (ports: {have})")
        if not svc.cluster_ips:
            notes.append(f"Service {svc.key} has no cluster IP: kubelet's clusterDNS needs one")
        pods = _endpoint_pods(cluster, svc) or _labelled_pods(cluster)
        if not pods:
            notes.append(f"Service {svc.key} has no ready endpoints: queries to it go nowhere")
        return DnsService(svc.namespace, svc.name, svc.cluster_ips, ports, pods, False, config,
                          tuple(notes))
    ip = kubeadm_dns_ip(cluster.addressing.service_cidrs[0])
    notes.append(f"{DNS_NAMESPACE}/{DNS_SERVICE_NAME} is not in the manifests and NetsimConfig "
                 f"spec.dns.disabled keeps netsim from adding it: names are answered as "
                 f"CoreDNS would at {ip} (the tenth address of the service range, as kubeadm "
                 f"assigns), but no Service or rules exist there, so a trace cannot route a "
                 f"query to it")
    taken = next((s for s in cluster.services if ip in s.cluster_ips), None)
    if taken is not None:
        notes.append(f"{ip} is already Service {taken.key}'s cluster IP")
    pods = _labelled_pods(cluster)
    if not pods:
        notes.append("no CoreDNS pods (label k8s-app=kube-dns in kube-system) either")
    ports = (DnsPort("dns", DNS_PORT, UDP), DnsPort("dns-tcp", DNS_PORT, TCP))
    return DnsService(DNS_NAMESPACE, DNS_SERVICE_NAME, (ip,), ports, pods, True, config,
                      tuple(notes))


def kubeadm_dns_ip(service_cidr: str) -> str:
    """The tenth address of a service range (10.96.0.0/12 -> 10.96.0.10)."""
    net = ipaddress.ip_network(service_cidr)
    return str(net.network_address + KUBEADM_DNS_INDEX)


def find_dns_service(services: Iterable[Service]) -> Service | None:
    """kube-system's Service labelled k8s-app=kube-dns (kube-dns first), else by name."""
    key, value = DNS_LABEL
    system = [s for s in services if s.namespace == DNS_NAMESPACE]
    labelled = sorted((s for s in system if s.labels.get(key) == value
                       and s.type != "ExternalName"),
                      key=lambda s: (s.name != DNS_SERVICE_NAME, s.name))
    named = [s for s in system if s.name == DNS_SERVICE_NAME]
    return (labelled or named or [None])[0]


def _endpoint_pods(cluster, svc: Service) -> tuple[str, ...]:
    out: list[str] = []
    for s in cluster.slices_for(svc):
        for e in s.endpoints:
            if e.ready and e.target and e.target not in out:
                out.append(e.target)
    return tuple(out)


def _labelled_pods(cluster) -> tuple[str, ...]:
    key, value = DNS_LABEL
    return tuple(p.key for p in cluster.pods_in(DNS_NAMESPACE)
                 if p.labels.get(key) == value and p.ready)


# ---------------------------------------------------------------- the Corefile


def corefile_config(cluster) -> CoreDnsConfig:
    """The kubernetes block of kube-system/coredns's Corefile, or kubeadm's default one."""
    cm = next((o for o in cluster.raw("ConfigMap")
               if o.namespace == DNS_NAMESPACE and o.name == COREFILE_CONFIGMAP), None)
    text = (cm.body.get("data") or {}).get("Corefile") if cm is not None else None
    if not isinstance(text, str):
        return CoreDnsConfig(zones=(cluster.settings.cluster_domain,), pods=KUBEADM_PODS,
                             ttl=KUBEADM_TTL, fallthrough=REVERSE_ZONES,
                             upstream="/etc/resolv.conf",
                             source="kubeadm's default Corefile (no ConfigMap "
                                    f"{DNS_NAMESPACE}/{COREFILE_CONFIGMAP} in the manifests)")
    try:
        return parse_corefile(text, source=f"ConfigMap {DNS_NAMESPACE}/{COREFILE_CONFIGMAP}")
    except InputError as exc:
        raise InputError(exc.message, source=cm.meta.source,
                         obj=f"ConfigMap {DNS_NAMESPACE}/{COREFILE_CONFIGMAP}",
                         field="data.Corefile") from None


def parse_corefile(text: str, source: str = "Corefile") -> CoreDnsConfig:
    """The first server block's kubernetes plugin settings (coredns plugin/kubernetes setup)."""
    lines = [line.split("#", 1)[0].split() for line in text.splitlines()]
    lines = [tokens for tokens in lines if tokens]
    depth, block_keys, keys_here, start, upstream = 0, [], [], None, None
    for i, tokens in enumerate(lines):
        if depth == 0 and tokens[-1] == "{":
            keys_here = tokens[:-1]
        elif depth == 1 and tokens[0] == "kubernetes" and start is None:
            start, block_keys = i, keys_here
        elif depth == 1 and tokens[0] == "forward" and len(tokens) >= 3 and upstream is None:
            upstream = tokens[2]
        depth += tokens.count("{") - tokens.count("}")
    if start is None:
        raise InputError("has no kubernetes plugin: netsim cannot tell which zone CoreDNS "
                         "serves")
    head = [t for t in lines[start][1:] if t != "{"]
    zones_given = [_zone(z) for z in head] or [_zone(k) for k in block_keys]
    options: list[list[str]] = []
    if lines[start][-1] == "{":
        for tokens in lines[start + 1:]:
            if tokens == ["}"]:
                break
            options.append(tokens)
    fields: dict = {}
    for tokens in options:
        name, args = tokens[0], tokens[1:]
        if name == "pods":
            if len(args) != 1 or args[0] not in POD_MODES:
                raise InputError(f"kubernetes: pods must be one of {', '.join(POD_MODES)}, "
                                 f"got {' '.join(args)!r}")
            fields["pods"] = args[0]
        elif name == "ttl":
            if len(args) != 1 or not args[0].isdigit() or not 0 <= int(args[0]) <= 3600:
                raise InputError(f"kubernetes: ttl must be 0..3600 seconds, got "
                                 f"{' '.join(args)!r}")
            fields["ttl"] = int(args[0])
        elif name == "endpoint_pod_names":
            fields["endpoint_pod_names"] = True
        elif name == "fallthrough":
            fields["fallthrough"] = tuple(_zone(z) for z in args)
        elif name == "ignore" and args == ["empty_service"]:
            fields["ignore_empty_service"] = True
        elif name == "noendpoints":
            fields["noendpoints"] = True
        elif name == "namespaces":
            fields["namespaces"] = tuple(args)
    forward = [z for z in zones_given if not _is_reverse(z)]
    reverse = tuple(z for z in zones_given if _is_reverse(z))
    return CoreDnsConfig(zones=tuple(forward), reverse_zones=reverse, upstream=upstream,
                         source=source, **fields)


def _zone(text: str) -> str:
    """A Corefile zone or server key as a bare name ("cluster.local.:53" -> "cluster.local")."""
    text = text.lower()
    for scheme in ("dns://", "tls://", "grpc://", "https://"):
        text = text.removeprefix(scheme)
    if "/" in text:  # a CIDR zone: the reverse zone of its network
        try:
            return _reverse_zone(ipaddress.ip_network(text, strict=False))
        except ValueError:
            pass
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return host.strip(".")


def _reverse_zone(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The reverse zone of a network, to the last whole octet (or nibble)."""
    unit = 8 if net.version == 4 else 4
    labels = net.network_address.reverse_pointer.split(".")
    suffix = 2  # in-addr.arpa / ip6.arpa
    keep = net.prefixlen // unit
    digits = labels[:-suffix]
    return ".".join(digits[len(digits) - keep:] + labels[-suffix:])


def _is_reverse(zone: str) -> bool:
    return any(zone == z or zone.endswith("." + z) for z in REVERSE_ZONES)


def in_zone(name: str, zones: tuple[str, ...]) -> str | None:
    """The longest of `zones` that holds `name` ("" is the root zone, holding every name)."""
    best = None
    for z in zones:
        if (z == "" or name == z or name.endswith("." + z)) and (best is None
                                                                  or len(z) > len(best)):
            best = z
    return best
