"""kubeadm's CoreDNS addon, for manifests that hold none: every real cluster runs one, and
without it a pod's DNS query has nowhere to go.

The objects are the ones kubeadm applies (cmd/kubeadm/app/phases/addons/dns/manifests.go):
the `coredns` Deployment (2 replicas, label k8s-app=kube-dns, ports dns 53/UDP, dns-tcp
53/TCP, metrics 9153/TCP) and the `kube-dns` Service at the tenth address of the service
range. They go through the same parser as the user's manifests.
"""

from __future__ import annotations

import ipaddress

from netsim.dns_server import DNS_LABEL, DNS_NAMESPACE, DNS_SERVICE_NAME, KUBEADM_DNS_INDEX
from netsim.errors import Source
from netsim.model import Pod, Service, Workload
from netsim.parse import parse_doc
from netsim.sources import RawDoc

ADDON_SOURCE = Source("<netsim: kubeadm CoreDNS addon>")
DEPLOYMENT_NAME = "coredns"
REPLICAS = 2  # kubeadm's CoreDNS replica count
IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
_PORTS = (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP"))


def has_dns_pods(pods: list[Pod], workloads: list[Workload]) -> bool:
    """Whether the manifests run CoreDNS (pods or a controller labelled k8s-app=kube-dns)."""
    key, value = DNS_LABEL
    return any(p.namespace == DNS_NAMESPACE and p.labels.get(key) == value for p in pods) \
        or any(w.namespace == DNS_NAMESPACE and w.template.labels.get(key) == value
               for w in workloads)


def dns_ip(service_cidr: str, taken: set[str]) -> str | None:
    """kubeadm's DNS address (GetDNSIP: the tenth of the range), None when a Service holds it
    or the range is too small to have one."""
    net = ipaddress.ip_network(service_cidr)
    if net.num_addresses <= KUBEADM_DNS_INDEX + 1:
        return None
    ip = str(net.network_address + KUBEADM_DNS_INDEX)
    return None if ip in taken else ip


def kube_dns_service(cluster_ip: str | None) -> Service:
    """The kube-dns Service; without an address the IP allocator picks one."""
    ports = [{"name": name, "port": port, "protocol": proto, "targetPort": port}
             for name, port, proto in _PORTS]
    spec: dict = {"selector": dict([DNS_LABEL]), "ports": ports, "type": "ClusterIP"}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return _parse({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": DNS_SERVICE_NAME, "namespace": DNS_NAMESPACE,
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153",
                                     "prometheus.io/scrape": "true"}},
        "spec": spec,
    })


def coredns_deployment() -> Workload:
    """The coredns Deployment, tolerating the control plane as kubeadm's does."""
    container = {
        "name": "coredns", "image": IMAGE, "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"name": name, "containerPort": port, "protocol": proto}
                  for name, port, proto in _PORTS],
    }
    labels = dict([DNS_LABEL])
    return _parse({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT_NAME, "namespace": DNS_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                # kubeadm also selects kubernetes.io/os=linux, a label kubelet sets and
                # manifests often leave out: without it the pods would fit no Node
                "priorityClassName": "system-cluster-critical",
                "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                {"key": "node-role.kubernetes.io/control-plane",
                                 "effect": "NoSchedule"}],
                "containers": [container],
            }},
        },
    })


def _parse(data: dict):
    return parse_doc(RawDoc(data, ADDON_SOURCE))
