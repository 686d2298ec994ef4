"""Expand Deployments, ReplicaSets, StatefulSets and DaemonSets into the Pods they would create."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace

from netsim.fields import FrozenDict
from netsim.model import Meta, Node, OwnerRef, Pod, PodTemplate, Toleration, Workload

# k8s.io/apimachinery/pkg/util/rand: the alphabet of generated name suffixes (no vowels).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_HASH_LABEL = "controller-revision-hash"

# The DaemonSet controller adds these tolerations to every pod it makes
# (pkg/controller/daemon/util AddOrUpdateDaemonPodTolerations).
DAEMONSET_TOLERATIONS = tuple(
    Toleration(key=k, operator="Exists", effect=e) for k, e in (
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ))
HOST_NETWORK_TOLERATION = Toleration(key="node.kubernetes.io/network-unavailable",
                                     operator="Exists", effect="NoSchedule")


def safe_encode(value: int, length: int) -> str:
    """A name suffix from a number, in Kubernetes' vowel-free alphabet."""
    out = []
    for _ in range(length):
        value, digit = divmod(value, len(SAFE_ALPHABET))
        out.append(SAFE_ALPHABET[digit])
    return "".join(out)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def safe_encode_string(text: str) -> str:
    """apimachinery rand.SafeEncodeString: each character mapped into the safe alphabet."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in text)


def template_hash(template: PodTemplate) -> str:
    """A pod-template-hash shaped as the controller's: a uint32's decimal digits, safe-encoded.

    Kubernetes hashes the Go struct dump with FNV-32a, which cannot be reproduced from YAML;
    this hashes the parsed template instead, so equal templates still share a hash.
    """
    digest = hashlib.blake2b(repr(template).encode(), digest_size=4).digest()
    return safe_encode_string(str(int.from_bytes(digest, "big")))


def expand(workloads: Iterable[Workload], pods: Iterable[Pod], nodes: tuple[Node, ...],
           eligible: Callable[[PodTemplate, Node], bool]) -> list[Pod]:
    """The Pods of every controller whose Pods are not already in the input.

    A controller counts as already realised when some input Pod (or, for a Deployment, some
    ReplicaSet) names it as owner, as in a `kubectl get -A` dump.
    """
    workloads = list(workloads)
    owners = {(w.namespace, w.name): w.owner for w in workloads
              if w.meta.kind == "ReplicaSet" and w.owner}
    owned = {(p.namespace, p.owner.kind, p.owner.name) for p in pods if p.owner}
    owned |= {(w.namespace, w.owner.kind, w.owner.name) for w in workloads if w.owner}
    # A Deployment's Pods may come without their ReplicaSet (kubectl get deploy,pods):
    # the pod-template-hash names the Deployment they belong to.
    owned |= {(p.namespace, *top.split("/", 1)) for p in pods if p.owner
              for top in (workload_of(p, owners),) if top}
    out: list[Pod] = []
    for w in workloads:
        if (w.namespace, w.meta.kind, w.name) in owned:
            continue
        if w.meta.kind == "Deployment":
            rs = f"{w.name}-{template_hash(w.template)}"
            out += _replicas(w, rs, f"Deployment/{w.name}", OwnerRef("ReplicaSet", rs),
                             {TEMPLATE_HASH_LABEL: rs.rsplit("-", 1)[1]})
        elif w.meta.kind == "ReplicaSet":
            top = owners.get((w.namespace, w.name))
            workload = f"Deployment/{top.name}" if top and top.kind == "Deployment" else \
                f"ReplicaSet/{w.name}"
            out += _replicas(w, w.name, workload, OwnerRef("ReplicaSet", w.name), {})
        elif w.meta.kind == "StatefulSet":
            out += _stateful(w)
        elif w.meta.kind == "DaemonSet":
            out += _daemons(w, nodes, eligible)
    return out


def _pod(w: Workload, name: str, labels: FrozenDict, template: PodTemplate, owner: OwnerRef,
         workload: str, node: str | None = None) -> Pod:
    meta = Meta(kind="Pod", name=name, namespace=w.namespace, labels=labels,
                annotations=template.annotations, source=w.meta.source)
    if labels is not template.labels:
        template = replace(template, labels=labels)
    return Pod(meta=meta, spec=template, node_name=node, phase="Pending" if node is None else
               "Running", owner=owner, workload=workload, generated=True,
               scheduled=node is not None)


def _replicas(w: Workload, base: str, workload: str, owner: OwnerRef,
              extra: dict[str, str]) -> list[Pod]:
    labels = FrozenDict({**w.template.labels, **extra}) if extra else w.template.labels
    template = replace(w.template, labels=labels) if extra else w.template
    seen: set[str] = set()
    pods = []
    for i in range(w.replicas or 0):
        salt = 0
        while True:
            suffix = safe_encode(_digest(f"{w.namespace}/{base}/{i}/{salt}"), 5)
            if suffix not in seen:
                break
            salt += 1
        seen.add(suffix)
        pods.append(_pod(w, f"{base}-{suffix}", labels, template, owner, workload))
    return pods


def _stateful(w: Workload) -> list[Pod]:
    revision = f"{w.name}-{template_hash(w.template)}"
    pods = []
    for i in range(w.replicas or 0):
        name = f"{w.name}-{i}"
        labels = FrozenDict({**w.template.labels, REVISION_HASH_LABEL: revision,
                             "statefulset.kubernetes.io/pod-name": name,
                             "apps.kubernetes.io/pod-index": str(i)})
        template = replace(w.template, labels=labels, hostname=name,
                           subdomain=w.service_name or w.template.subdomain)
        pods.append(_pod(w, name, labels, template, OwnerRef("StatefulSet", w.name),
                         f"StatefulSet/{w.name}"))
    return pods


def _daemons(w: Workload, nodes: tuple[Node, ...],
             eligible: Callable[[PodTemplate, Node], bool]) -> list[Pod]:
    extra = DAEMONSET_TOLERATIONS + ((HOST_NETWORK_TOLERATION,) if w.template.host_network
                                     else ())
    labels = FrozenDict({**w.template.labels,
                         REVISION_HASH_LABEL: template_hash(w.template),
                         "pod-template-generation": "1"})
    template = replace(w.template, labels=labels, tolerations=w.template.tolerations + extra)
    pods = []
    for node in nodes:
        if not eligible(template, node):
            continue
        suffix = safe_encode(_digest(f"{w.namespace}/{w.name}/{node.name}"), 5)
        pods.append(_pod(w, f"{w.name}-{suffix}", labels, template,
                         OwnerRef("DaemonSet", w.name), f"DaemonSet/{w.name}", node.name))
    return pods


def workload_of(pod: Pod, rs_owners: dict[tuple[str, str], OwnerRef]) -> str | None:
    """The top controller of an input Pod ("Deployment/web"), for grouping by workload."""
    if pod.owner is None:
        return None
    if pod.owner.kind == "ReplicaSet":
        top = rs_owners.get((pod.namespace, pod.owner.name))
        if top is not None:
            return f"{top.kind}/{top.name}"
        if TEMPLATE_HASH_LABEL in pod.labels:
            suffix = "-" + pod.labels[TEMPLATE_HASH_LABEL]
            if pod.owner.name.endswith(suffix):
                return f"Deployment/{pod.owner.name[:-len(suffix)]}"
    return f"{pod.owner.kind}/{pod.owner.name}"
