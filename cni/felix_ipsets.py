"""The IP sets felix keeps: which workload endpoints each selector and named port holds.

Names (felix calc): a selector set's ID is hash.MakeUniqueID("s", <canonical selector>), a
named-port set's is MakeUniqueID("n", "<selector ID>,<tcp|udp|sctp>,<port name>"); the name
is `cali40`/`cali60` + ID cut to 31 characters. Members are the workload endpoints' addresses
(hash:net) or address,protocol:port (hash:ip,port) of one family.

Membership is computed once per cluster and selector (cached here), over classes of pods that
selectors cannot tell apart (namespace, labels, service account), so a node's compile costs
its own selectors, not pods x policies.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import defaultdict
from dataclasses import dataclass, field

from netsim.fields import EMPTY
from netsim.model import Pod
from policies import calico_selector as sel
from policies.calico import LABEL_NAMESPACE, EndpointSelector, Workload
from proxy.netfilter import IPSet

from .felix_text import ipset_name, unique_id

FAILED_PHASES = ("Succeeded", "Failed")  # as cni.calico: a finished pod has no veth
ALL = EndpointSelector("all()")
NAMED_PORT_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
HASH_NET, HASH_IP_PORT = "hash:net", "hash:ip,port"


def has_veth(pod: Pod) -> bool:
    """A Calico workload endpoint: scheduled, not hostNetwork, addressed, not finished
    (cni.calico._wired; libcalico-go IsReadyCalicoPod and IsFinished)."""
    return bool(pod.node_name and not pod.host_network and pod.ips
                and pod.phase not in FAILED_PHASES)


def family_of(ip: str) -> int:
    return 6 if ":" in ip else 4


@dataclass(slots=True)
class WorkloadClass:
    """Pods that no selector can tell apart, with their Calico label view."""

    workload: Workload
    pods: list[Pod] = field(default_factory=list)
    _labels: dict | None = None

    @property
    def calico_labels(self) -> dict:
        if self._labels is None:
            self._labels = self.workload.calico_labels()
        return self._labels


def selector_set_id(selector: EndpointSelector) -> str:
    return unique_id("s", selector.text)


def named_port_set_id(selector: EndpointSelector, protocol: str, name: str) -> str:
    return unique_id("n", f"{selector_set_id(selector)},{protocol},{name}")


class WorkloadIndex:
    """The cluster's workload endpoints, grouped for selectors, with cached memberships."""

    def __init__(self, cluster) -> None:
        self.namespace_labels = {n.name: n.labels for n in cluster.namespaces}
        sa_labels = {(o.namespace, o.name): o.labels for o in cluster.raw("ServiceAccount")}
        classes: dict[tuple, WorkloadClass] = {}
        for pod in cluster.pods:
            if not has_veth(pod):
                continue
            sa = pod.spec.service_account or "default"
            key = (pod.namespace, pod.labels, sa)
            cls = classes.get(key)
            if cls is None:
                cls = classes[key] = WorkloadClass(Workload(
                    pod.namespace, pod.labels, self.namespace_labels.get(pod.namespace, EMPTY),
                    sa, sa_labels.get((pod.namespace, sa), EMPTY)))
            cls.pods.append(pod)
        self.by_namespace: dict[str, list[WorkloadClass]] = defaultdict(list)
        for cls in classes.values():
            self.by_namespace[cls.workload.namespace].append(cls)
        self._by_key = classes
        # (protocol, port name) -> (class, pod, port number): the named-port index
        self._named: dict[tuple[str, str], list[tuple[WorkloadClass, Pod, int]]] = \
            defaultdict(list)
        for cls in classes.values():
            for pod in cls.pods:
                for cp in pod.container_ports:
                    if cp.name:
                        self._named[cp.protocol.lower(), cp.name].append(
                            (cls, pod, cp.container_port))
        self._members: dict[EndpointSelector, list[WorkloadClass]] = {}
        self._ns_members: dict[tuple, list[str]] = {}
        self._sets: dict[tuple, IPSet] = {}

    def class_of(self, pod: Pod) -> WorkloadClass | None:
        return self._by_key.get((pod.namespace, pod.labels,
                                 pod.spec.service_account or "default"))

    def _namespaces(self, selector: EndpointSelector) -> list[str]:
        """The namespaces whose endpoints may match (many selectors share a namespace part)."""
        if selector.namespace is not None:
            return [selector.namespace]
        pinned = _pinned_namespace(selector.pods)
        if pinned is not None:
            return [pinned]
        key = (selector.namespace, selector.namespaces)
        found = self._ns_members.get(key)
        if found is None:
            found = self._ns_members[key] = [
                ns for ns in self.by_namespace
                if selector.namespace_matches(ns, self.namespace_labels.get(ns, EMPTY))]
        return found

    def members(self, selector: EndpointSelector) -> list[WorkloadClass]:
        """The classes of endpoints the selector matches (cached per selector)."""
        found = self._members.get(selector)
        if found is None:
            found = []
            for ns in self._namespaces(selector):
                if not selector.namespace_matches(ns, self.namespace_labels.get(ns, EMPTY)):
                    continue  # a pinned namespace the namespace part rules out
                for cls in self.by_namespace.get(ns, ()):
                    if selector.pod_matches(cls.workload, cls.calico_labels
                                            if isinstance(selector.pods, sel.Expr) else None):
                        found.append(cls)
            self._members[selector] = found
        return found

    def selector_set(self, selector: EndpointSelector, family: int) -> IPSet:
        key = ("s", selector, family)
        found = self._sets.get(key)
        if found is None:
            ips = {ip for cls in self.members(selector) for pod in cls.pods for ip in pod.ips
                   if family_of(ip) == family}
            found = self._sets[key] = IPSet(ipset_name(family, selector_set_id(selector)),
                                            HASH_NET, _sorted(ips), family)
        return found

    def named_port_set(self, selector: EndpointSelector | None, protocol: str, name: str,
                       family: int) -> IPSet:
        """Endpoints matching the selector (all() if None) with a container port of that name
        and protocol, as address,protocol:port."""
        selector = selector or ALL
        proto = NAMED_PORT_PROTOCOLS.get(protocol.upper(), protocol.lower())
        key = ("n", selector, proto, name, family)
        found = self._sets.get(key)
        if found is None:
            entries = self._named.get((proto, name), ())
            if selector != ALL:
                wanted = {id(c) for c in self.members(selector)}
                entries = [e for e in entries if id(e[0]) in wanted]
            members = {(ip, port) for _, pod, port in entries for ip in pod.ips
                       if family_of(ip) == family}
            ordered = sorted(members, key=lambda m: (_packed(m[0]), m[1]))
            found = self._sets[key] = IPSet(
                ipset_name(family, named_port_set_id(selector, proto, name)), HASH_IP_PORT,
                tuple(f"{ip},{proto}:{port}" for ip, port in ordered), family)
        return found


def _pinned_namespace(expr) -> str | None:
    """A namespace the Calico expression requires by name (a top-level conjunct)."""
    parts = expr.parts if isinstance(expr, sel.And) else (expr,)
    for p in parts:
        if isinstance(p, sel.Compare) and p.key == LABEL_NAMESPACE and p.op == "==":
            return p.value
        if isinstance(p, sel.And):
            found = _pinned_namespace(p)
            if found is not None:
                return found
    return None


def _packed(ip: str) -> bytes:
    """The address as bytes: sorts in numeric order, much faster than ipaddress objects."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def _sorted(ips) -> tuple[str, ...]:
    return tuple(sorted(ips, key=_packed))


def net_set(name: str, cidrs, family: int) -> IPSet:
    """A hash:net set of CIDRs or addresses (pools, hosts)."""
    members = sorted({ipaddress.ip_network(c, strict=False) for c in cidrs
                      if family_of(c) == family}, key=lambda n: (int(n.network_address),
                                                                 n.prefixlen))
    return IPSet(name, HASH_NET, tuple(str(n.network_address) if n.prefixlen ==
                                       n.max_prefixlen else str(n) for n in members), family)


def ipset_save(sets) -> str:
    """The sets as `ipset save` prints them."""
    lines = []
    for s in sets:
        family = "inet6" if s.family == 6 else "inet"
        lines.append(f"create {s.name} {s.type} family {family} hashsize 1024 "
                     "maxelem 1048576")
        lines += [f"add {s.name} {m}" for m in s.members]
    return "\n".join(lines) + ("\n" if lines else "")
