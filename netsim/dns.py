"""Cluster DNS: resolve a name as a pod would (its resolv.conf, the glibc search list, CoreDNS).

The answers come from `dns_records` (CoreDNS's kubernetes plugin), the DNS Service and the
Corefile from `dns_server`; this module adds what happens inside the pod: the resolv.conf that
kubelet writes for its dnsPolicy, and the stub resolver walking the search list.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netsim.dns_records import QTYPES, STATUSES, Answer, Record, addresses, answer, rcode
from netsim.dns_server import CoreDnsConfig, DnsPort, DnsService, dns_service
from netsim.errors import InputError
from netsim.model import DNS_POLICIES, Pod, PodDnsConfig

__all__ = [
    "QTYPES",
    "STATUSES",
    "Answer",
    "CoreDnsConfig",
    "DnsPort",
    "DnsService",
    "PodDnsConfig",
    "Record",
    "Resolution",
    "ResolvConf",
    "dns_service",
    "query",
    "resolv_conf",
    "resolve",
    "search_candidates",
]

KUBELET_NDOTS = 5  # kubelet writes `options ndots:5` for ClusterFirst pods
GLIBC_NDOTS = 1  # resolv.conf(5): the default for n is 1
NDOTS_CAP = 15  # resolv.conf(5): "silently capped to 15"
_LABEL = re.compile(r"^[a-z0-9_*]([-a-z0-9_*]*[a-z0-9_*])?$")


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """The /etc/resolv.conf kubelet gives a pod. Empty nameservers: the node's, unknown."""

    nameservers: tuple[str, ...]
    search: tuple[str, ...] = ()
    ndots: int = GLIBC_NDOTS
    dns_policy: str | None = None  # None: no pod (the name is asked as given)
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        """The file, in the order containerd writes it (search, nameserver, options)."""
        lines = [f"search {' '.join(self.search)}"] if self.search else []
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.ndots != GLIBC_NDOTS:
            lines.append(f"options ndots:{self.ndots}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Resolution:
    """A name resolved from a pod: every search-list candidate tried, in order, and the result.

    `status` is one of STATUSES for the whole lookup; `name` is the candidate that answered
    (the query itself when none did). Records of a forwarded answer are what netsim knows
    (e.g. the CNAME an ExternalName gives before the upstream part).
    """

    query: str
    qtype: str
    from_pod: str | None
    resolv_conf: ResolvConf
    nameserver: str | None
    server: DnsService
    attempts: tuple[Answer, ...]
    status: str
    name: str
    records: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def rcode(self) -> str | None:
        return rcode(self.status)

    @property
    def addresses(self) -> tuple[str, ...]:
        return addresses(self.records)

    @property
    def ok(self) -> bool:
        return self.status == "answer"


def resolve(cluster, name: str, qtype: str = "A", from_pod: Pod | str | None = None, *,
            dns_policy: str | None = None, dns_config: PodDnsConfig | None = None) -> Resolution:
    """Resolve `name` as `from_pod` would (glibc's search over its resolv.conf), or, without a
    pod, ask the cluster DNS for the name exactly as given (as dig does: no search list).

    An address with qtype PTR is turned into its in-addr.arpa / ip6.arpa name. The pod's own
    dnsPolicy and dnsConfig apply unless `dns_policy` / `dns_config` override them.
    Raises InputError for a malformed name, an unknown type or an unknown pod.
    """
    qtype = _qtype(qtype)
    name = _query_name(name, qtype)
    server = dns_service(cluster)
    if from_pod is None:
        conf = ResolvConf(nameservers=server.cluster_ips[:1], notes=(
            "no pod given: the name is asked as written, without a search list (as dig does); "
            "give a pod to resolve it as that pod would",))
        candidates = (name.removesuffix("."),)
        pod_key = None
    else:
        pod = _pod(cluster, from_pod)
        pod_key = pod.key
        conf = resolv_conf(cluster, pod, dns_policy=dns_policy, dns_config=dns_config,
                           server=server)
        candidates = search_candidates(name, conf.search, conf.ndots)
    nameserver = conf.nameservers[0] if conf.nameservers else None
    attempts: list[Answer] = []
    for candidate in candidates:
        reply = _ask(cluster, server, nameserver, candidate, qtype)
        attempts.append(reply)
        # glibc res_search: NXDOMAIN and NODATA go on down the list; anything else ends it.
        # A forwarded name's fate is unknown here: the walk stops at it.
        if reply.status in ("answer", "forwarded"):
            break
    last = attempts[-1]
    notes = list(conf.notes) + list(server.notes)
    if last.status in ("answer", "forwarded"):
        if last.status == "forwarded" and len(attempts) < len(candidates):
            rest = " ".join(candidates[len(attempts):])
            notes.append(f"if the upstream answers NXDOMAIN the resolver goes on with: {rest}")
        if last.note:
            notes.append(last.note)
        return Resolution(name, qtype, pod_key, conf, nameserver, server, tuple(attempts),
                          last.status, last.name, last.records, last.additional, tuple(notes))
    status = "nodata" if any(a.status == "nodata" for a in attempts) else "nxdomain"
    return Resolution(name, qtype, pod_key, conf, nameserver, server, tuple(attempts), status,
                      name.removesuffix("."), notes=tuple(notes))


def query(cluster, name: str, qtype: str = "A") -> Answer:
    """One question to the cluster DNS server, for an absolute name: no resolver, no search."""
    qtype = _qtype(qtype)
    server = dns_service(cluster)
    return answer(cluster, server.config, _query_name(name, qtype).removesuffix("."), qtype)


def search_candidates(name: str, search: tuple[str, ...], ndots: int) -> tuple[str, ...]:
    """The names glibc's res_search asks, in order: a name ending in a dot only as is; a name
    with at least `ndots` dots as is first, then with each search domain; a shorter one with
    each search domain first and as is last. (musl differs: it never searches names with
    `ndots` dots or more.)"""
    if name.endswith("."):
        return (name[:-1],)
    dots = name.count(".")
    out = [name] if dots >= ndots else []
    out += [f"{name}.{domain}" for domain in search]
    if dots < ndots:
        out.append(name)
    return tuple(dict.fromkeys(out))


def resolv_conf(cluster, pod: Pod, *, dns_policy: str | None = None,
                dns_config: PodDnsConfig | None = None,
                server: DnsService | None = None) -> ResolvConf:
    """The resolv.conf kubelet writes for `pod` (Kubernetes "DNS for Services and Pods":
    ClusterFirst -> the cluster DNS, search <ns>.svc.<domain> svc.<domain> <domain>, ndots 5;
    Default -> the node's file; None -> dnsConfig alone; a hostNetwork pod's ClusterFirst
    falls back to Default unless it is ClusterFirstWithHostNet)."""
    if dns_policy is not None and dns_policy not in DNS_POLICIES:
        raise InputError(f"unknown dnsPolicy {dns_policy!r}; one of {', '.join(DNS_POLICIES)}",
                         obj=f"Pod {pod.key}", field="spec.dnsPolicy")
    notes = []
    policy = dns_policy or pod.spec.dns_policy
    if dns_config is None:
        dns_config = pod.spec.dns_config
    effective = policy
    if policy == "ClusterFirst" and pod.host_network:
        effective = "Default"
        notes.append(f"{pod.key} uses the host network: dnsPolicy ClusterFirst falls back to "
                     f"Default (ClusterFirstWithHostNet would keep the cluster DNS)")
    domain = cluster.settings.cluster_domain
    if effective in ("ClusterFirst", "ClusterFirstWithHostNet"):
        server = server or dns_service(cluster)
        nameservers = server.cluster_ips[:1]
        search = (f"{pod.namespace}.svc.{domain}", f"svc.{domain}", domain)
        ndots = KUBELET_NDOTS
        notes.append("kubelet also appends the node's own search domains, which netsim does "
                     "not know")
    elif effective == "Default":
        nameservers, search, ndots = (), (), GLIBC_NDOTS
        notes.append("dnsPolicy Default: the pod gets the node's /etc/resolv.conf (kubelet "
                     "--resolv-conf), which netsim does not know; its resolvers answer")
    else:
        if dns_config is None:
            raise InputError("dnsPolicy None needs a dnsConfig", obj=f"Pod {pod.key}",
                             field="spec.dnsConfig")
        nameservers, search, ndots = (), (), GLIBC_NDOTS
    if dns_config is not None:
        nameservers = tuple(dict.fromkeys(nameservers + dns_config.nameservers))
        search = tuple(dict.fromkeys(search + dns_config.searches))
        for option, value in dns_config.options:
            if option == "ndots":
                if value is None or not value.isdigit():
                    raise InputError(f"ndots needs a number, got {value!r}",
                                     obj=f"Pod {pod.key}", field="spec.dnsConfig.options")
                ndots = min(int(value), NDOTS_CAP)
    return ResolvConf(nameservers, search, ndots, effective, tuple(notes))


# ---------------------------------------------------------------- helpers


def _ask(cluster, server: DnsService, nameserver: str | None, name: str, qtype: str) -> Answer:
    """One question to the pod's first nameserver: CoreDNS when it is the cluster DNS."""
    if nameserver is not None and _same_ip(nameserver, server.cluster_ips):
        return answer(cluster, server.config, name, qtype)
    who = f"nameserver {nameserver}, which is not the cluster DNS" if nameserver else \
        "the node's resolver"
    return Answer(name, qtype, "forwarded",
                  note=f"{name}: asked of {who}: netsim does not know its answers")


def _qtype(qtype: str) -> str:
    qtype = qtype.upper()
    if qtype not in QTYPES:
        raise InputError(f"unknown query type {qtype!r}; one of {', '.join(QTYPES)}",
                         obj="dns", field="type")
    return qtype


def _same_ip(ip: str, ips: tuple[str, ...]) -> bool:
    try:
        want = ipaddress.ip_address(ip)
        return any(ipaddress.ip_address(i) == want for i in ips)
    except ValueError:
        return False


def _pod(cluster, pod: Pod | str) -> Pod:
    if isinstance(pod, Pod):
        return pod
    ns, sep, name = pod.partition("/")
    found = cluster.pod(ns, name) if sep and ns and name else None
    if found is None:
        raise InputError(f"no Pod {pod!r} (give NAMESPACE/NAME)", obj="command line",
                         field="--from")
    return found


def _query_name(name: str, qtype: str) -> str:
    """The name to ask for, lowercased; an address asked for PTR becomes its reverse name
    (absolute, as nslookup and dig -x do)."""
    text = name.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is not None:
        if qtype != "PTR":
            raise InputError(f"{text} is an address: ask for its name with type PTR",
                             obj="dns", field="name")
        return ip.reverse_pointer + "."
    lowered = text.lower()
    bare = lowered.removesuffix(".")
    labels = bare.split(".")
    if not bare or len(bare) > 253 or any(len(label) > 63 or not _LABEL.match(label)
                                          for label in labels):
        raise InputError(f"{name!r} is not a DNS name", obj="dns", field="name")
    return lowered
