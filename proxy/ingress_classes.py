"""Which IngressClass an Ingress belongs to: ingressClassName, the deprecated annotation, or the
default class that admission stamps on a class-less Ingress."""

from __future__ import annotations

from dataclasses import dataclass

from netsim.cluster import Cluster
from netsim.model import Ingress, IngressClass
from proxy.ingress_constants import CLASS_ANNOTATION

# How the class was found, for explanations.
BY_FIELD = "spec.ingressClassName"
BY_ANNOTATION = f"the deprecated {CLASS_ANNOTATION} annotation"
BY_DEFAULT = "the default IngressClass (stamped at admission)"
NO_CLASS = "no class"


@dataclass(frozen=True, slots=True)
class ClassChoice:
    """The class an Ingress asks for and where that came from."""

    name: str | None
    source: str

    def __str__(self) -> str:
        return f"{self.name} (from {self.source})" if self.name else "no IngressClass"


def default_class(cluster: Cluster) -> IngressClass | None:
    """The IngressClass admission stamps on new class-less Ingresses, or None.

    kube-apiserver's DefaultIngressClass plugin (plugin/pkg/admission/network/
    defaultingressclass) takes the newest is-default-class, ties broken by name; releases
    before that rejected the Ingress when two classes were marked default.
    """
    defaults = sorted((c for c in cluster.ingress_classes if c.is_default), key=lambda c: c.name)
    if not defaults:
        return None
    # sort is stable with reverse=True: among equal timestamps the name order stays.
    return sorted(defaults, key=lambda c: c.meta.created or "", reverse=True)[0]


def class_of(cluster: Cluster, ingress: Ingress) -> ClassChoice:
    """The class that decides which controller serves this Ingress.

    The field wins; the deprecated annotation comes next; an Ingress with neither gets the
    default class, as the admission plugin would stamp it when the manifest is applied (it
    skips Ingresses that carry the annotation).
    """
    if ingress.ingress_class_name:
        return ClassChoice(ingress.ingress_class_name, BY_FIELD)
    annotated = ingress.meta.annotations.get(CLASS_ANNOTATION)
    if annotated is not None:
        return ClassChoice(annotated, BY_ANNOTATION)
    default = default_class(cluster)
    if default is not None:
        return ClassChoice(default.name, BY_DEFAULT)
    return ClassChoice(None, NO_CLASS)


def ingress_class(cluster: Cluster, name: str | None) -> IngressClass | None:
    """The IngressClass object of that name, if the input holds one."""
    return next((c for c in cluster.ingress_classes if c.name == name), None) if name else None


def known_classes(cluster: Cluster) -> tuple[str, ...]:
    """Every class name the input mentions: IngressClass objects and classes Ingresses ask for."""
    names = {c.name for c in cluster.ingress_classes}
    names |= {n for i in cluster.ingresses if (n := class_of(cluster, i).name)}
    return tuple(sorted(names))
