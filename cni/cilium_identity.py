"""Cilium security identities: the numbers policy is written against, and their labels.

From pkg/identity/numericidentity.go, pkg/labelsfilter/filter.go and pkg/labels/cidr.go
(v1.16), restated in ../shared/reference/cni.md 2.1:
- reserved identities 1..11 each carry one `reserved:` label;
- a pod's identity is the set of its *security-relevant* labels: its own labels (source
  `k8s:`) that the default label filter keeps, `k8s:io.kubernetes.pod.namespace`, one
  `k8s:io.cilium.k8s.namespace.labels.<k>` per namespace label, the service account and the
  cluster name. Pods with equal sets share an identity;
- cluster identities are 256-65535. Real Cilium leases a free number at random when a set
  is first seen (pkg/idpool), so numbers differ between clusters and restarts; netsim numbers
  the sets from 256 in sorted order, so the same manifests always give the same numbers;
- CIDR identities are node-local (bit 24 set, 16777217 upward) and carry `cidr:<prefix>`
  plus the world label of their family.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from netsim.fields import FrozenDict
from netsim.model import Namespace, Pod
from policies.cilium import (
    CLUSTER_LABEL,
    NAMESPACE_LABEL,
    NAMESPACE_LABELS_PREFIX,
    SERVICE_ACCOUNT_LABEL,
)

CLUSTER_NAME = "default"  # helm cluster.name default
MIN_CLUSTER_IDENTITY = 256
LOCAL_IDENTITY_FLAG = 1 << 24
UNKNOWN, HOST, WORLD, UNMANAGED, HEALTH, INIT, REMOTE_NODE, KUBE_APISERVER, INGRESS, \
    WORLD_IPV4, WORLD_IPV6, ENCRYPTED_OVERLAY = range(12)
RESERVED = {HOST: "host", WORLD: "world", UNMANAGED: "unmanaged", HEALTH: "health",
            INIT: "init", REMOTE_NODE: "remote-node", KUBE_APISERVER: "kube-apiserver",
            INGRESS: "ingress", WORLD_IPV4: "world-ipv4", WORLD_IPV6: "world-ipv6",
            ENCRYPTED_OVERLAY: "encrypted-overlay"}
UNKNOWN_LABELS = ("reserved:unknown",)  # what the agent answers for identity 0

# pkg/labelsfilter defaultLabelPrefixCfg plus the exclusions docs.cilium.io lists for
# v1.16 (operations/performance/scalability/identity-relevant-labels). A pattern matches
# when its regex matches at the start of the key; the longest include beats an exclude.
_INCLUDE = (r"io\.kubernetes\.pod\.namespace", r"io\.cilium\.k8s\.namespace\.labels",
            r"app\.kubernetes\.io")
_EXCLUDE = (r"io\.kubernetes", r"kubernetes\.io", r"statefulset\.kubernetes\.io/pod-name",
            r"apps\.kubernetes\.io/pod-index", r"batch\.kubernetes\.io/job-completion-index",
            r"batch\.kubernetes\.io/controller-uid", r".*beta\.kubernetes\.io", r"k8s\.io",
            r"pod-template-generation", r"pod-template-hash", r"controller-revision-hash",
            r"annotation.*", r"controller-uid", r"etcd_node")
_INCLUDE_RE = tuple(re.compile(p) for p in _INCLUDE)
_EXCLUDE_RE = tuple(re.compile(p) for p in _EXCLUDE)


def _match_len(patterns: tuple[re.Pattern[str], ...], key: str) -> int:
    best = 0
    for p in patterns:
        m = p.match(key)
        if m is not None:
            best = max(best, m.end())
    return best


def identity_relevant(key: str) -> bool:
    """Whether the default label filter keeps a k8s label key for the identity."""
    excluded = _match_len(_EXCLUDE_RE, key)
    return excluded == 0 or _match_len(_INCLUDE_RE, key) > excluded


@dataclass(frozen=True, slots=True)
class Identity:
    """A numeric identity and its labels ("source:key=value", sorted as Cilium prints them).

    label_map is what selectors match: "source:key" -> value and, for the any-source form,
    "key" -> value. namespace and pod_labels are set for pod identities.
    """

    id: int
    labels: tuple[str, ...]
    namespace: str | None = None
    pod_labels: FrozenDict = field(default_factory=FrozenDict, compare=False)
    label_map: FrozenDict = field(default_factory=FrozenDict, compare=False)
    cidr: str | None = None

    @property
    def name(self) -> str | None:
        """The reserved identity's name (host, world, ...), else None."""
        return RESERVED.get(self.id)

    @property
    def is_reserved(self) -> bool:
        return 0 < self.id < MIN_CLUSTER_IDENTITY

    @property
    def is_local(self) -> bool:
        return bool(self.id & LOCAL_IDENTITY_FLAG)


def label_map(labels: Iterable[str]) -> FrozenDict:
    """The selector view of identity labels: both "src:key" and "key" map to the value."""
    out: dict[str, str] = {}
    for label in labels:
        source, _, rest = label.partition(":")
        key, _, value = rest.partition("=")
        out[f"{source}:{key}"] = value
        out.setdefault(key, value)
    return FrozenDict(out)


def reserved_identity(number: int) -> Identity:
    labels = (f"reserved:{RESERVED[number]}",)
    return Identity(number, labels, label_map=label_map(labels))


def pod_security_labels(pod: Pod, namespace_labels: Mapping[str, str],
                        cluster: str = CLUSTER_NAME) -> tuple[str, ...]:
    """The identity labels of a pod, sorted as labels.GetPrintableModel sorts them."""
    labels = [_label("k8s", k, v) for k, v in pod.labels.items() if identity_relevant(k)]
    labels += [_label("k8s", NAMESPACE_LABELS_PREFIX + k, v)
               for k, v in namespace_labels.items()]
    labels += [f"k8s:{NAMESPACE_LABEL}={pod.namespace}",
               f"k8s:{SERVICE_ACCOUNT_LABEL}={pod.spec.service_account}",
               f"k8s:{CLUSTER_LABEL}={cluster}"]
    return tuple(sorted(labels))


def _label(source: str, key: str, value: str) -> str:
    """Label.String(): "source:key=value", or "source:key" when the value is empty."""
    return f"{source}:{key}={value}" if value else f"{source}:{key}"


def world_identity(version: int, dual_stack: bool) -> int:
    """The identity of 0.0.0.0/0 (::/0): world, or world-ipv4/-ipv6 in dual-stack clusters."""
    if not dual_stack:
        return WORLD
    return WORLD_IPV4 if version == 4 else WORLD_IPV6


def _world_label(version: int, dual_stack: bool) -> str:
    return f"reserved:{RESERVED[world_identity(version, dual_stack)]}"


@dataclass(frozen=True)
class IdentityTable:
    """Every identity of the cluster, which pods hold which, and indexes for selectors."""

    identities: Mapping[int, Identity]
    of_pod: Mapping[tuple[str, str], int]  # (namespace, name) -> id, for non-hostNetwork pods
    members: Mapping[int, tuple[Pod, ...]]
    by_namespace: Mapping[str, tuple[int, ...]]
    cidr_ids: Mapping[str, int]  # prefix -> CIDR identity
    dual_stack: bool
    _postings: dict = field(default_factory=dict, repr=False, compare=False)

    def representative(self, identity: int) -> Pod:
        """A pod of the identity whose labels are the identity's own (filtered) labels."""
        reps = self._postings.setdefault("reps", {})
        found = reps.get(identity)
        if found is None:
            pod = self.members[identity][0]
            found = reps[identity] = replace(pod, meta=replace(
                pod.meta, labels=self.identities[identity].pod_labels))
        return found

    def postings(self) -> tuple[dict, dict]:
        """(label "key=value" -> ids, key -> ids) over every identity's label map."""
        if "pairs" not in self._postings:
            pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
            keys: dict[str, list[int]] = defaultdict(list)
            for ident in self.identities.values():
                for k, v in ident.label_map.items():
                    pairs[k, v].append(ident.id)
                    keys[k].append(ident.id)
            self._postings["pairs"], self._postings["keys"] = dict(pairs), dict(keys)
        return self._postings["pairs"], self._postings["keys"]


def allocate(pods: Iterable[Pod], namespaces: Iterable[Namespace], cidrs: Iterable[str],
             dual_stack: bool, cluster: str = CLUSTER_NAME) -> IdentityTable:
    """Identities for every addressed, non-hostNetwork pod and for the given CIDR prefixes."""
    ns_labels = {n.name: n.labels for n in namespaces}
    by_set: dict[tuple[str, ...], list[Pod]] = defaultdict(list)
    cache: dict[tuple, tuple[str, ...]] = {}
    for pod in pods:
        if pod.host_network or not pod.ips or pod.phase in ("Succeeded", "Failed"):
            continue
        key = (pod.namespace, pod.spec.service_account, pod.labels)
        labels = cache.get(key)
        if labels is None:
            labels = cache[key] = pod_security_labels(pod, ns_labels.get(pod.namespace, {}),
                                                      cluster)
        by_set[labels].append(pod)
    identities: dict[int, Identity] = {n: reserved_identity(n) for n in RESERVED}
    of_pod: dict[tuple[str, str], int] = {}
    members: dict[int, tuple[Pod, ...]] = {}
    by_namespace: dict[str, list[int]] = defaultdict(list)
    for number, labels in enumerate(sorted(by_set), start=MIN_CLUSTER_IDENTITY):
        group = by_set[labels]
        first = group[0]
        kept = FrozenDict({k: v for k, v in first.labels.items() if identity_relevant(k)})
        identities[number] = Identity(number, labels, first.namespace, kept, label_map(labels))
        members[number] = tuple(group)
        by_namespace[first.namespace].append(number)
        for pod in group:
            of_pod[pod.namespace, pod.name] = number
    cidr_ids: dict[str, int] = {}
    zero = {"0.0.0.0/0", "::/0"}
    for i, prefix in enumerate(sorted(set(cidrs) - zero, key=_prefix_order), start=1):
        number = LOCAL_IDENTITY_FLAG | i
        version = ipaddress.ip_network(prefix).version
        labels = (f"cidr:{prefix}", _world_label(version, dual_stack))
        identities[number] = Identity(number, labels, label_map=label_map(labels), cidr=prefix)
        cidr_ids[prefix] = number
    return IdentityTable(identities, of_pod, members,
                         {k: tuple(v) for k, v in by_namespace.items()}, cidr_ids, dual_stack)


def _prefix_order(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix)
    return net.version, int(net.network_address), net.prefixlen
