"""One DNS question answered as CoreDNS's kubernetes plugin answers it for the cluster's objects.

Sources: the Kubernetes DNS-Based Service Discovery specification (kubernetes/dns
docs/specification.md) and CoreDNS plugin/kubernetes (parse.go parseRequest, kubernetes.go
findServices/findPods/endpointHostname, reverse.go, plugin/backend_lookup.go for SRV weights).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netsim.dns_server import CoreDnsConfig, in_zone
from netsim.model import IPV4, IPV6, Service

QTYPES = ("A", "AAAA", "SRV", "CNAME", "PTR")
# Closed set of outcomes for one question:
#   answer     NOERROR with records
#   nodata     NOERROR, the name exists but has no record of this type
#   nxdomain   the name does not exist in the cluster zone
#   forwarded  CoreDNS passes it on (forward plugin): netsim does not know the internet
STATUSES = ("answer", "nodata", "nxdomain", "forwarded")
_WILDCARDS = ("*", "any")  # parse.go: "*" or "any" match every value of a label
_MAX_CNAME_CHAIN = 8


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. Names are lowercase and carry no trailing dot."""

    name: str
    type: str
    ttl: int
    data: str  # the address (A, AAAA) or the target name (CNAME, PTR, SRV)
    priority: int | None = None  # SRV only
    weight: int | None = None
    port: int | None = None

    def rdata(self) -> str:
        """The record data as dig prints it (`dig +short`)."""
        if self.type in ("A", "AAAA"):
            return self.data
        if self.type == "SRV":
            return f"{self.priority} {self.weight} {self.port} {self.data}."
        return f"{self.data}."

    def text(self) -> str:
        """The zone-file line dig prints in its answer section."""
        return f"{self.name}.\t{self.ttl}\tIN\t{self.type}\t{self.rdata()}"


@dataclass(frozen=True, slots=True)
class Answer:
    """The cluster DNS server's reply to one question (one name, one type)."""

    name: str
    qtype: str
    status: str
    records: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()  # SRV targets' addresses
    authoritative: bool = False  # answered from the cluster zone, not forwarded
    note: str = ""

    @property
    def rcode(self) -> str | None:
        return rcode(self.status)

    @property
    def addresses(self) -> tuple[str, ...]:
        return addresses(self.records)


def rcode(status: str) -> str | None:
    """NOERROR or NXDOMAIN; None when forwarded (the upstream server decides)."""
    return {"answer": "NOERROR", "nodata": "NOERROR", "nxdomain": "NXDOMAIN"}.get(status)


def addresses(records: tuple[Record, ...]) -> tuple[str, ...]:
    """The A/AAAA data among records (the addresses a name resolved to, after CNAMEs)."""
    return tuple(r.data for r in records if r.type in ("A", "AAAA"))


@dataclass(frozen=True, slots=True)
class _Target:
    """What findServices/findPods yield (msg.Service): a host with a port, under a name."""

    host: str  # an address, or a name for ExternalName (a CNAME)
    port: int | None  # None: portless (the plugin's -1 sentinel)
    owner: str  # the name SRV records point at


def answer(cluster, config: CoreDnsConfig, name: str, qtype: str, _chain: int = 0) -> Answer:
    """The reply CoreDNS gives for `name` (absolute, no trailing dot needed) and `qtype`."""
    name = name.lower().rstrip(".")
    zone = in_zone(name, config.reverse_zones)
    if zone is not None:
        return _reverse(cluster, config, name, qtype)
    zone = in_zone(name, config.zones)
    if zone is None:
        served = ", ".join(z or "." for z in config.zones)
        return forwarded(name, qtype, config, f"not in the zone CoreDNS serves ({served})")
    targets = _lookup(cluster, config, name, zone)
    if targets is None:
        if config.falls_through(name):
            return forwarded(name, qtype, config, "no such name in the cluster zone, and the "
                             "kubernetes plugin falls through")
        return Answer(name, qtype, "nxdomain", authoritative=True)
    ttl = config.ttl
    addresses = [t for t in targets if _is_ip(t.host)]
    aliases = [t for t in targets if not _is_ip(t.host)]
    if qtype in ("A", "AAAA"):
        fam = IPV4 if qtype == "A" else IPV6
        records = _unique(Record(name, qtype, ttl, t.host) for t in addresses
                          if _family(t.host) == fam)
        if records:
            return Answer(name, qtype, "answer", records, authoritative=True)
        if aliases:
            return _chase(cluster, config, Record(name, "CNAME", ttl, aliases[0].host), qtype,
                          _chain)
    elif qtype == "CNAME":
        records = _unique(Record(name, "CNAME", ttl, t.host) for t in aliases)
        if records:
            return Answer(name, qtype, "answer", records, authoritative=True)
    elif qtype == "SRV":
        return _srv(name, addresses, ttl)
    return Answer(name, qtype, "nodata", authoritative=True)


def forwarded(name: str, qtype: str, config: CoreDnsConfig | None, why: str,
              records: tuple[Record, ...] = ()) -> Answer:
    """A question CoreDNS hands to its upstream: netsim does not know that answer."""
    to = config.upstream if config is not None else None
    where = "the node's resolvers (forward . /etc/resolv.conf)" if to == "/etc/resolv.conf" \
        else (f"{to} (forward plugin)" if to else "the upstream resolver")
    return Answer(name, qtype, "forwarded", records,
                  note=f"{name}: {why}: forwarded to {where}; netsim does not know names "
                       f"outside the cluster, so the answer is unknown")


def _chase(cluster, config: CoreDnsConfig, cname: Record, qtype: str, chain: int) -> Answer:
    """CNAME, then the target's records: CoreDNS resolves in-zone targets itself and asks
    upstream for the others (spec 2.5; plugin/backend_lookup.go)."""
    if chain >= _MAX_CNAME_CHAIN:
        return Answer(cname.name, qtype, "answer", (cname,), authoritative=True,
                      note="CNAME chain too long: stopped")
    if in_zone(cname.data, config.zones) is None:
        return forwarded(cname.data, qtype, config, f"the CNAME target of {cname.name}",
                         (cname,))
    target = answer(cluster, config, cname.data, qtype, chain + 1)
    status = "answer" if target.status == "nodata" else target.status
    return Answer(cname.name, qtype, status, (cname, *target.records), target.additional,
                  authoritative=True, note=target.note)


def _srv(name: str, addresses: list[_Target], ttl: int) -> Answer:
    """One SRV per (port, target); every record gets priority 0 and the weight CoreDNS gives
    it: 100 split over all port/address pairs it found (backend_lookup.go SRV)."""
    ported = [t for t in addresses if t.port is not None]
    if not ported:
        return Answer(name, "SRV", "nodata", authoritative=True)
    weight = 100 // len(ported)
    records = _unique(Record(name, "SRV", ttl, t.owner, 0, weight, t.port) for t in ported)
    extra = _unique(Record(t.owner, "A" if _family(t.host) == IPV4 else "AAAA", ttl, t.host)
                    for t in ported)
    return Answer(name, "SRV", "answer", records, extra, authoritative=True)


# ---------------------------------------------------------------- names -> targets


def _lookup(cluster, config: CoreDnsConfig, name: str, zone: str) -> list[_Target] | None:
    """What the name denotes: targets (empty: the name exists but holds nothing, NODATA), or
    None for NXDOMAIN. The name's shape, right to left: svc|pod, namespace, service, then
    one endpoint label or _port._protocol (parse.go)."""
    base = name if zone == "" else name[:-len(zone)].rstrip(".")
    if base in ("", "svc", "pod"):
        return []
    segs = base.split(".")
    kind = segs[-1]
    if kind not in ("svc", "pod") or len(segs) > 5:
        return None
    namespace = segs[-2]
    if not _exposed(cluster, config, namespace):
        return None
    if len(segs) == 2:
        return []
    if kind == "pod":
        return _pod_targets(cluster, config, name, namespace, segs[-3])
    svc = cluster.service(namespace, segs[-3])
    if svc is None:
        return None
    endpoint = segs[0] if len(segs) == 4 else None
    port, protocol = (segs[0].removeprefix("_"), segs[1].removeprefix("_")) if len(segs) == 5 \
        else ("*", "*")
    fqdn = _join(svc.name, svc.namespace, "svc", zone)
    if config.ignore_empty_service and svc.type != "ExternalName" and not svc.headless \
            and not _ready_addresses(cluster, svc):
        return None
    if svc.type == "ExternalName":
        host = (svc.external_name or "").lower().rstrip(".")
        # an ExternalName that is an address is no CNAME: the plugin skips it (HostType A)
        return [_Target(host, None, fqdn)] if host and not _is_ip(host) else None
    if svc.headless or endpoint is not None:
        if config.noendpoints:
            return None
        targets = _endpoint_targets(cluster, config, svc, zone, endpoint, port, protocol)
    else:
        targets = [_Target(ip, p.port, fqdn) for p in svc.ports
                   if _match(port, p.name or "") and _match(protocol, p.protocol)
                   for ip in svc.cluster_ips]
    return targets or None


def _endpoint_targets(cluster, config: CoreDnsConfig, svc: Service, zone: str,
                      endpoint: str | None, port: str, protocol: str) -> list[_Target]:
    """Ready endpoints (EndpointConditions.ready nil or true), by endpoint hostname."""
    out = []
    for s in cluster.slices_for(svc):
        if s.address_type not in (IPV4, IPV6):
            continue
        ports = s.ports or (None,)
        for e in s.endpoints:
            if not e.ready:
                continue
            for addr in e.addresses:
                host = endpoint_hostname(addr, e.hostname, e.target, config.endpoint_pod_names)
                if endpoint is not None and not _match(endpoint, host):
                    continue
                owner = _join(host, svc.name, svc.namespace, "svc", zone)
                for p in ports:
                    if p is None or p.port is None:
                        if _match(port, "") and _match(protocol, ""):
                            out.append(_Target(addr, None, owner))
                    elif _match(port, p.name or "") and _match(protocol, p.protocol):
                        out.append(_Target(addr, p.port, owner))
    return out


def endpoint_hostname(address: str, hostname: str | None, target: str | None,
                      pod_names: bool = False) -> str:
    """An endpoint's DNS label: its hostname, else (endpoint_pod_names) its pod's name, else
    the address with dashes (10-244-1-5, fd00--5) as CoreDNS's endpointHostname makes it."""
    if hostname:
        return hostname.lower()
    if pod_names and target:
        return target.split("/", 1)[-1].lower()
    return address.replace(".", "-") if "." in address else address.replace(":", "-")


def _pod_targets(cluster, config: CoreDnsConfig, name: str, namespace: str,
                 label: str) -> list[_Target] | None:
    """a-b-c-d.<ns>.pod.<zone> (spec 2.6, deprecated): `pods insecure` echoes the address,
    `verified` needs a pod with it in that namespace, `disabled` (the plugin default) none."""
    if config.pods == "disabled":
        return None
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    if not _is_ip(text):
        return None
    ip = str(ipaddress.ip_address(text))
    if config.pods == "verified" and not any(
            ip in (str(ipaddress.ip_address(a)) for a in p.ips)
            for p in cluster.pods_in(namespace) if not p.host_network):
        return None
    return [_Target(ip, None, name)]


def _reverse(cluster, config: CoreDnsConfig, name: str, qtype: str) -> Answer:
    """PTR for a Service's cluster IP, else for ready endpoints with that address (spec 2.3.3,
    2.4.3; reverse.go). Anything else is NXDOMAIN, which kubeadm's Corefile lets fall through
    to the upstream resolver."""
    ip = address_from_reverse(name)
    records: list[Record] = []
    if ip is not None and qtype == "PTR":
        zone = config.primary_zone
        svc = next((s for s in cluster.services
                    if ip in (_norm(a) for a in s.cluster_ips)
                    and _exposed(cluster, config, s.namespace)), None)
        if svc is not None:
            records = [Record(name, "PTR", config.ttl, _join(svc.name, svc.namespace, "svc",
                                                               zone))]
        else:
            for s in cluster.endpoint_slices:
                if not s.service_name or not _exposed(cluster, config, s.namespace):
                    continue
                for e in s.endpoints:
                    if e.ready and ip in (_norm(a) for a in e.addresses if _is_ip(a)):
                        host = endpoint_hostname(ip_text(e.addresses, ip), e.hostname,
                                                 e.target, config.endpoint_pod_names)
                        records.append(Record(name, "PTR", config.ttl, _join(
                            host, s.service_name, s.namespace, "svc", zone)))
    if records:
        return Answer(name, qtype, "answer", _unique(records), authoritative=True)
    if config.falls_through(name):
        return forwarded(name, qtype, config, "no Service or endpoint has this address, and "
                         "the kubernetes plugin falls through for reverse zones")
    return Answer(name, qtype, "nxdomain", authoritative=True)


def address_from_reverse(name: str) -> str | None:
    """The address a full in-addr.arpa / ip6.arpa name stands for; None for anything else."""
    labels = name.lower().rstrip(".").split(".")
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        text = ".".join(reversed(labels[:4]))
    elif labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        text = ":".join(nibbles[i:i + 4] for i in range(0, 32, 4))
    else:
        return None
    return _norm(text) if _is_ip(text) else None


def ip_text(addresses: tuple[str, ...], ip: str) -> str:
    """The address as the manifest wrote it (endpoint hostnames dash the written form)."""
    return next((a for a in addresses if _is_ip(a) and _norm(a) == ip), ip)


# ---------------------------------------------------------------- helpers


def _exposed(cluster, config: CoreDnsConfig, namespace: str) -> bool:
    """The namespace exists and the Corefile's `namespaces` list (if any) names it."""
    if config.namespaces and namespace not in config.namespaces:
        return False
    return cluster.namespace(namespace) is not None


def _ready_addresses(cluster, svc: Service) -> bool:
    return any(e.ready and e.addresses for s in cluster.slices_for(svc) for e in s.endpoints)


def _match(a: str, b: str) -> bool:
    """kubernetes.go match: equal ignoring case, or either side a wildcard."""
    return a in _WILDCARDS or b in _WILDCARDS or a.lower() == b.lower()


def _join(*labels: str) -> str:
    return ".".join(label for label in labels if label)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _norm(text: str) -> str:
    return str(ipaddress.ip_address(text))


def _family(ip: str) -> str:
    return IPV4 if ipaddress.ip_address(ip).version == 4 else IPV6


def _unique(records) -> tuple[Record, ...]:
    seen: dict[Record, None] = {}
    for r in records:
        seen.setdefault(r, None)
    return tuple(seen)
