"""Model objects back to Kubernetes manifests (for -o json|yaml), as the API server prints them."""

from __future__ import annotations

from typing import Any

from netsim.model import (
    Container,
    EndpointSlice,
    Ingress,
    IngressBackend,
    LabelSelector,
    Meta,
    Namespace,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyRule,
    Node,
    Pod,
    Service,
)


def _drop_empty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (None, {}, [], "")}


def metadata(meta: Meta) -> dict:
    return _drop_empty({
        "name": meta.name, "namespace": meta.namespace, "uid": meta.uid,
        "creationTimestamp": meta.created, "deletionTimestamp": meta.deleted,
        "labels": dict(meta.labels),
        "annotations": dict(meta.annotations),
    })


def selector(s: LabelSelector) -> dict:
    return _drop_empty({
        "matchLabels": dict(s.match_labels),
        "matchExpressions": [_drop_empty({"key": r.key, "operator": r.operator,
                                          "values": list(r.values)})
                             for r in s.match_expressions],
    })


def node(n: Node) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node", "metadata": metadata(n.meta),
        "spec": _drop_empty({
            "podCIDR": n.pod_cidrs[0] if n.pod_cidrs else None, "podCIDRs": list(n.pod_cidrs),
            "taints": [_drop_empty({"key": t.key, "value": t.value, "effect": t.effect})
                       for t in n.taints],
            "unschedulable": n.unschedulable or None,
        }),
        "status": _drop_empty({
            "addresses": [{"type": a.type, "address": a.address} for a in n.addresses],
            "conditions": [{"type": "Ready", "status": "True" if n.ready else "False"}],
            "nodeInfo": dict(n.info),
        }),
    }


def namespace(n: Namespace) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(n.meta),
            "status": {"phase": "Active"}}


def _container(c: Container) -> dict:
    return _drop_empty({"name": c.name, "image": c.image, "ports": [
        _drop_empty({"name": p.name, "containerPort": p.container_port, "protocol": p.protocol,
                     "hostPort": p.host_port}) for p in c.ports]})


def pod(p: Pod) -> dict:
    meta = metadata(p.meta)
    if p.owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": p.owner.kind,
                                    "name": p.owner.name, "controller": True}]
    t = p.spec
    spec = _drop_empty({
        "containers": [_container(c) for c in t.containers],
        "initContainers": [_container(c) for c in t.init_containers],
        "nodeName": p.node_name, "hostNetwork": t.host_network or None,
        "nodeSelector": dict(t.node_selector), "serviceAccountName": t.service_account,
        "hostname": t.hostname, "subdomain": t.subdomain,
        "tolerations": [_drop_empty({"key": x.key, "operator": x.operator, "value": x.value,
                                     "effect": x.effect}) for x in t.tolerations],
    })
    if t.node_affinity:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [_drop_empty({
                "matchExpressions": [_drop_empty({"key": r.key, "operator": r.operator,
                                                  "values": list(r.values)})
                                     for r in term.match_expressions],
                "matchFields": [_drop_empty({"key": r.key, "operator": r.operator,
                                             "values": list(r.values)})
                                for r in term.match_fields]}) for term in t.node_affinity]}}}
    status = _drop_empty({
        "phase": p.phase,
        "conditions": [{"type": "Ready", "status": "True" if p.ready else "False"}],
        "hostIP": p.host_ips[0] if p.host_ips else None,
        "hostIPs": [{"ip": ip} for ip in p.host_ips],
        "podIP": p.ip, "podIPs": [{"ip": ip} for ip in p.ips],
    })
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def service(s: Service) -> dict:
    external = s.external_traffic_policy is not None
    spec: dict[str, Any] = _drop_empty({
        "type": s.type,
        "selector": dict(s.selector) if s.selector else None,
        "ports": [_drop_empty({"name": p.name, "protocol": p.protocol, "port": p.port,
                               "targetPort": p.target, "nodePort": p.node_port,
                               "appProtocol": p.app_protocol}) for p in s.ports],
        "clusterIP": "None" if s.headless else s.cluster_ip,
        "clusterIPs": ["None"] if s.headless else list(s.cluster_ips),
        "ipFamilies": list(s.ip_families), "ipFamilyPolicy": s.ip_family_policy,
        "externalName": s.external_name, "externalIPs": list(s.external_ips),
        "sessionAffinity": s.session_affinity,
        "externalTrafficPolicy": s.external_traffic_policy if external else None,
        "internalTrafficPolicy": s.internal_traffic_policy if s.type != "ExternalName" else None,
        "loadBalancerIP": s.load_balancer_ip,
        "loadBalancerSourceRanges": list(s.load_balancer_source_ranges),
        "loadBalancerClass": s.load_balancer_class,
        "healthCheckNodePort": s.health_check_node_port,
        "publishNotReadyAddresses": s.publish_not_ready_addresses or None,
    })
    if s.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": s.affinity_timeout}}
    if s.type == "LoadBalancer" and not s.allocate_load_balancer_node_ports:
        spec["allocateLoadBalancerNodePorts"] = False
    ingress = [{"ip": ip, **({"ipMode": "Proxy"} if ip in s.load_balancer_proxied else {})}
               for ip in s.load_balancer_ingress]
    ingress += [{"hostname": h} for h in s.load_balancer_hostnames]
    status = {"loadBalancer": {"ingress": ingress} if ingress else {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(s.meta), "spec": spec,
            "status": status}


def endpoint_slice(e: EndpointSlice) -> dict:
    def endpoint(x):
        namespace, _, name = (x.target or "").partition("/")
        return _drop_empty({
            "addresses": list(x.addresses),
            "conditions": {"ready": x.ready, "serving": x.serving, "terminating": x.terminating},
            "nodeName": x.node_name, "zone": x.zone, "hostname": x.hostname,
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": name}
            if x.target else None,
        })
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": metadata(e.meta), "addressType": e.address_type,
            "endpoints": [endpoint(x) for x in e.endpoints],
            "ports": [{k: v for k, v in (("name", p.name), ("port", p.port),
                                         ("protocol", p.protocol),
                                         ("appProtocol", p.app_protocol)) if v is not None}
                      for p in e.ports]}


def _peer(p: NetworkPolicyPeer) -> dict:
    out: dict[str, Any] = {}
    if p.pod_selector is not None:
        out["podSelector"] = selector(p.pod_selector)
    if p.namespace_selector is not None:
        out["namespaceSelector"] = selector(p.namespace_selector)
    if p.ip_block is not None:
        out["ipBlock"] = _drop_empty({"cidr": p.ip_block.cidr,
                                      "except": list(p.ip_block.except_)})
    return out


def _rule(r: NetworkPolicyRule, peers_key: str) -> dict:
    return _drop_empty({
        peers_key: [_peer(p) for p in r.peers],
        "ports": [_drop_empty({"protocol": p.protocol, "port": p.port, "endPort": p.end_port})
                  for p in r.ports],
    })


def network_policy(n: NetworkPolicy) -> dict:
    spec: dict[str, Any] = {"podSelector": selector(n.pod_selector),
                            "policyTypes": list(n.policy_types)}
    if n.ingress:
        spec["ingress"] = [_rule(r, "from") for r in n.ingress]
    if n.egress:
        spec["egress"] = [_rule(r, "to") for r in n.egress]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(n.meta), "spec": spec}


def _backend(b: IngressBackend) -> dict:
    if b.resource:
        kind, _, name = b.resource.partition("/")
        return {"resource": _drop_empty({"apiGroup": b.resource_group, "kind": kind,
                                         "name": name})}
    port = {"number": b.port_number} if b.port_number else {"name": b.port_name}
    return {"service": {"name": b.service_name, "port": port}}


def ingress(i: Ingress) -> dict:
    spec = _drop_empty({
        "ingressClassName": i.ingress_class_name,
        "defaultBackend": _backend(i.default_backend) if i.default_backend else None,
        "tls": [_drop_empty({"hosts": list(t.hosts), "secretName": t.secret_name})
                for t in i.tls],
        "rules": [_drop_empty({"host": r.host, "http": {"paths": [
            _drop_empty({"path": p.path, "pathType": p.path_type, "backend": _backend(p.backend)})
            for p in r.paths]} if r.paths else None}) for r in i.rules],
    })
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": metadata(i.meta), "spec": spec}


SERIALIZERS = {Node: node, Namespace: namespace, Pod: pod, Service: service,
               EndpointSlice: endpoint_slice, NetworkPolicy: network_policy, Ingress: ingress}


def to_manifest(obj: Any) -> dict:
    return SERIALIZERS[type(obj)](obj)


def as_list(objs: list) -> dict:
    """A `kind: List` as `kubectl get -o yaml` prints one."""
    return {"apiVersion": "v1", "kind": "List", "items": [to_manifest(o) for o in objs],
            "metadata": {"resourceVersion": ""}}
