"""Loading manifests: each kind parsed and defaulted as the Kubernetes API server would.

Expected values come from the Kubernetes API reference and its defaulting code
(pkg/apis/*/v1/defaults.go), the controllers' documented behaviour and the published
manifests' own documentation, never from running the loader.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import textwrap
from collections import Counter

import pytest

from netsim.cluster import load
from netsim.model import LabelSelector
from tests.conftest import DATA, EXAMPLES, REALWORLD, THREE_NODES

SAFE = "[bcdfghjklmnpqrstvwxz2456789]"  # apimachinery rand's vowel-free alphabet
NODE_PORT_RANGE = range(30000, 32768)  # kube-apiserver --service-node-port-range default


def only(items):
    assert len(items) == 1, items
    return items[0]


def in_cidr(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


# ---------------------------------------------------------------- Node and Namespace


NODES = """
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]
  taints:
  - {key: dedicated, value: db, effect: NoSchedule}
  - {key: spot, effect: PreferNoSchedule}
status:
  addresses:
  - {type: InternalIP, address: 172.18.0.5}
  - {type: ExternalIP, address: 203.0.113.5}
  - {type: Hostname, address: n1}
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec: {podCIDR: 10.244.2.0/24}
status:
  addresses: [{type: InternalIP, address: 172.18.0.6}]
  conditions: [{type: MemoryPressure, status: "False"}, {type: Ready, status: "False"}]
---
apiVersion: v1
kind: Node
metadata: {name: n3}
status:
  addresses: [{type: InternalIP, address: 172.18.0.7}]
  conditions: [{type: Ready, status: Unknown}]
"""


def test_node_addresses_cidrs_and_taints(load_text):
    c = load_text(NODES)
    n1 = c.node("n1")
    # the given address first (netsim adds an IPv6 one: its podCIDRs make the cluster dual-stack)
    assert n1.internal_ips[0] == "172.18.0.5"
    assert n1.external_ips == ("203.0.113.5",)
    assert n1.ip() == "172.18.0.5"
    # spec.podCIDRs wins over the legacy single podCIDR; both families kept, primary first
    assert n1.pod_cidrs == ("10.244.1.0/24", "fd00:10:244:1::/64")
    assert [(t.key, t.value, t.effect) for t in n1.taints] == [
        ("dedicated", "db", "NoSchedule"),
        ("spot", "", "PreferNoSchedule"),
    ]
    assert c.node("n2").pod_cidrs == ("10.244.2.0/24",)  # podCIDR alone
    assert c.node("n3").pod_cidrs == ()


def test_node_readiness_follows_the_ready_condition(load_text):
    c = load_text(NODES)
    # NodeReady is True only when the Ready condition's status is "True" (False and Unknown
    # both mean not ready).
    assert [c.node(n).ready for n in ("n1", "n2", "n3")] == [True, False, False]


def test_pods_are_not_scheduled_onto_not_ready_or_tainted_nodes(load_text):
    # The node lifecycle controller taints a not-ready node node.kubernetes.io/not-ready:
    # NoSchedule; n1 has dedicated=db:NoSchedule that this Deployment tolerates.
    deploy = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: web}]
          tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
    """
    c = load_text(NODES, deploy)
    assert {p.node_name for p in c.pods_in("default")} == {"n1"}
    assert len(c.pods_in("default")) == 3
    # The CoreDNS addon tolerates only the control-plane taint: it fits no node here.
    coredns = c.pods_in("kube-system")
    assert len(coredns) == 2 and all(p.phase == "Pending" and not p.node_name for p in coredns)
    assert any("stay Pending" in w for w in c.warnings)


def test_generated_nodes_when_the_input_has_none(load_text):
    c = load_text("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec: {nodeName: worker-7, containers: [{name: c}]}
    """)
    assert c.node("worker-7") is not None  # the node a Pod names exists
    assert any("holds no Node" in w for w in c.warnings)


def test_unquoted_dates_are_valid_label_values(load_text):
    # kubectl's YAML decoder keeps them as strings: 2024-05-01 is a valid label value
    c = load_text("""
        apiVersion: v1
        kind: Namespace
        metadata:
          name: a
          creationTimestamp: 2024-05-01T10:00:00Z
          labels: {built: 2024-05-01}
    """)
    ns = c.namespace("a")
    assert ns.labels["built"] == "2024-05-01"
    assert ns.meta.created == "2024-05-01T10:00:00Z"


def test_namespace_gets_its_name_label(load_text):
    c = load_text("""
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop, labels: {team: a}}
    """)
    ns = c.namespace("shop")
    # Since 1.21 the control plane sets kubernetes.io/metadata.name on every Namespace.
    assert ns.labels == {"team": "a", "kubernetes.io/metadata.name": "shop"}
    assert not ns.implicit
    assert c.namespace("default").labels["kubernetes.io/metadata.name"] == "default"


# ---------------------------------------------------------------- Pod


POD = """
apiVersion: v1
kind: Pod
metadata:
  name: coredns-5d78c9869d-x2x7q
  namespace: kube-system
  labels: {k8s-app: kube-dns, pod-template-hash: 5d78c9869d}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: coredns-5d78c9869d, uid: u-1,
     controller: true, blockOwnerDeletion: true}
spec:
  nodeName: w1
  containers:
  - name: coredns
    ports:
    - {name: dns, containerPort: 53, protocol: UDP}
    - {name: dns-tcp, containerPort: 53, protocol: TCP}
    - {name: metrics, containerPort: 9153}
  tolerations:
  - {key: CriticalAddonsOnly, operator: Exists}
  - {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}
status:
  phase: Running
  podIP: 10.244.1.5
  podIPs: [{ip: 10.244.1.5}, {ip: "fd00:10:244:1::5"}]
  hostIP: 172.18.0.3
  hostIPs: [{ip: 172.18.0.3}]
  conditions: [{type: Ready, status: "True"}]
"""


def test_pod_addresses_ports_and_owner(load_text):
    c = load_text(THREE_NODES, POD)
    p = c.pod("kube-system", "coredns-5d78c9869d-x2x7q")
    assert p.ips == ("10.244.1.5", "fd00:10:244:1::5")  # status.podIPs, primary first
    assert p.ip_of("IPv6") == "fd00:10:244:1::5"
    assert p.host_ips == ("172.18.0.3",)
    assert p.node_name == "w1" and p.phase == "Running" and p.ready
    # Named container ports are looked up per protocol (a Service targetPort "dns" over UDP).
    assert p.named_port("dns", "UDP") == 53
    assert p.named_port("dns-tcp", "TCP") == 53
    assert p.named_port("dns", "TCP") is None
    metrics = [cp for cp in p.container_ports if cp.name == "metrics"]
    assert only(metrics).protocol == "TCP"  # ContainerPort.protocol defaults to TCP
    assert (p.owner.kind, p.owner.name, p.owner.controller) == (
        "ReplicaSet",
        "coredns-5d78c9869d",
        True,
    )
    # A ReplicaSet named <deployment>-<pod-template-hash> belongs to Deployment coredns.
    assert p.workload == "Deployment/coredns"
    t = p.spec.tolerations
    assert (t[0].key, t[0].operator, t[0].effect) == ("CriticalAddonsOnly", "Exists", None)
    assert t[1].operator == "Equal"  # the API default operator


def test_pod_ip_only_in_legacy_field(load_text):
    c = load_text(
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec: {nodeName: w1, containers: [{name: c}]}
        status: {phase: Running, podIP: 10.244.9.9, hostIP: 172.18.0.3}
    """,
        THREE_NODES,
    )
    p = c.pod("default", "p")
    assert p.ips == ("10.244.9.9",)
    assert p.host_ips == ("172.18.0.3",)


def test_host_network_pod_uses_the_node_address(load_text):
    c = load_text(
        THREE_NODES,
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: agent, namespace: kube-system}
        spec: {nodeName: w2, hostNetwork: true, containers: [{name: c}]}
    """,
    )
    p = c.pod("kube-system", "agent")
    assert p.host_network
    assert p.ips == ("172.18.0.4",)  # a hostNetwork pod's podIP is its node's IP
    assert p.host_ips == ("172.18.0.4",)


@pytest.mark.parametrize(
    ("status", "phase", "ready"),
    [
        ("{phase: Running, conditions: [{type: Ready, status: 'False'}]}", "Running", False),
        ("{phase: Running, conditions: [{type: Ready, status: 'True'}]}", "Running", True),
        ("{phase: Succeeded}", "Succeeded", False),
        ("{phase: Failed}", "Failed", False),
    ],
)
def test_pod_phase_and_ready_condition(load_text, status, phase, ready):
    c = load_text(
        THREE_NODES,
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: p}}
        spec: {{nodeName: w1, containers: [{{name: c}}]}}
        status: {status}
    """,
    )
    p = c.pod("default", "p")
    assert (p.phase, p.ready) == (phase, ready)


def test_scheduling_honours_node_selector_affinity_and_tolerations(load_text):
    pods = """
    apiVersion: v1
    kind: Pod
    metadata: {name: on-ssd}
    spec: {nodeSelector: {disk: ssd}, containers: [{name: c}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: zone-b}
    spec:
      containers: [{name: c}]
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [b]}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: on-control-plane}
    spec:
      containers: [{name: c}]
      nodeSelector: {node-role.kubernetes.io/control-plane: ""}
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists,
                     effect: NoSchedule}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: nowhere}
    spec: {nodeSelector: {gpu: "true"}, containers: [{name: c}]}
    """
    c = load_text(THREE_NODES, pods)
    assert c.pod("default", "on-ssd").node_name == "w1"
    assert c.pod("default", "zone-b").node_name == "w2"
    assert c.pod("default", "on-control-plane").node_name == "cp"
    p = c.pod("default", "zone-b")
    term = only(p.spec.node_affinity)
    assert [(r.key, r.operator, r.values) for r in term.match_expressions] == [
        ("topology.kubernetes.io/zone", "In", ("b",))
    ]
    stuck = c.pod("default", "nowhere")  # fits no node: Pending, unscheduled, no IP
    assert stuck.node_name is None and stuck.phase == "Pending" and not stuck.ips
    assert any("stay Pending" in w and "default/nowhere" in w for w in c.warnings)


# ---------------------------------------------------------------- Service


SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  clusterIP: 10.96.0.40
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9090}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: https, port: 443, targetPort: 8443}
  sessionAffinity: ClientIP
---
apiVersion: v1
kind: Service
metadata: {name: web-lb, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [203.0.113.0/24, 198.51.100.0/25]
  ports: [{port: 443, targetPort: 8443}]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.20}]
---
apiVersion: v1
kind: Service
metadata: {name: cloud-lb, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  allocateLoadBalancerNodePorts: false
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: shop}
spec:
  type: ExternalName
  externalName: payments.example.com
---
apiVersion: v1
kind: Service
metadata: {name: local-dns, namespace: shop}
spec:
  selector: {app: dns}
  internalTrafficPolicy: Local
  externalIPs: [198.51.100.50]
  ports: [{port: 53, protocol: UDP}]
"""


def test_cluster_ip_service_defaults(load_text):
    c = load_text(SERVICES)
    s = c.service("shop", "api")
    assert s.type == "ClusterIP"
    assert s.cluster_ips == ("10.96.0.40",) and s.cluster_ip == "10.96.0.40"
    assert not s.headless
    assert s.external_traffic_policy is None  # only NodePort/LoadBalancer have one
    assert s.internal_traffic_policy == "Cluster"  # SetDefaults_Service
    assert s.session_affinity == "None"
    assert s.selector == {"app": "api"}
    ports = [(p.name, p.port, p.protocol, p.target_port) for p in s.ports]
    assert ports == [
        ("http", 80, "TCP", "http"),
        ("metrics", 9090, "TCP", 9090),
        ("dns", 53, "UDP", "dns"),
    ]


def test_headless_service(load_text):
    s = load_text(SERVICES).service("shop", "db")
    assert s.headless and s.cluster_ips == () and s.cluster_ip is None
    p = only(s.ports)
    assert p.target == 5432  # targetPort defaults to port


def test_node_port_service(load_text):
    s = load_text(SERVICES).service("shop", "web")
    assert s.type == "NodePort"
    assert s.external_traffic_policy == "Cluster"  # the default for NodePort/LoadBalancer
    http, https = s.ports
    assert http.node_port == 30080  # kept as given
    assert https.node_port in NODE_PORT_RANGE  # allocated from the node port range
    assert s.session_affinity == "ClientIP"
    assert s.affinity_timeout == 10800  # sessionAffinityConfig.clientIP.timeoutSeconds: 3h
    assert s.cluster_ip and in_cidr(s.cluster_ip, "10.96.0.0/12")


def test_load_balancer_service(load_text):
    c = load_text(SERVICES)
    s = c.service("shop", "web-lb")
    assert s.type == "LoadBalancer"
    assert s.load_balancer_ingress == ("203.0.113.20",)  # status.loadBalancer.ingress[].ip
    assert s.load_balancer_source_ranges == ("203.0.113.0/24", "198.51.100.0/25")
    assert s.external_traffic_policy == "Local"
    assert s.affinity_timeout == 600
    # A LoadBalancer gets node ports (allocateLoadBalancerNodePorts defaults to true) and,
    # with externalTrafficPolicy Local, a healthCheckNodePort from the same range.
    assert only(s.ports).node_port in NODE_PORT_RANGE
    assert s.health_check_node_port in NODE_PORT_RANGE
    cloud = c.service("shop", "cloud-lb")
    assert cloud.external_traffic_policy == "Cluster"
    assert only(cloud.ports).node_port is None  # allocateLoadBalancerNodePorts: false


def test_external_name_service(load_text):
    s = load_text(SERVICES).service("shop", "payments")
    assert s.type == "ExternalName"
    assert s.external_name == "payments.example.com"
    assert s.cluster_ips == () and s.ports == () and s.selector is None
    assert s.external_traffic_policy is None


def test_internal_traffic_policy_and_external_ips(load_text):
    s = load_text(SERVICES).service("shop", "local-dns")
    assert s.internal_traffic_policy == "Local"
    assert s.external_ips == ("198.51.100.50",)
    assert only(s.ports).protocol == "UDP"


def test_cluster_ip_with_external_ips_is_externally_accessible(load_text):
    # service.ExternallyAccessible counts a ClusterIP Service with externalIPs, so it may set
    # externalTrafficPolicy and SetDefaults_Service defaults it to Cluster.
    c = load_text("""
        apiVersion: v1
        kind: Service
        metadata: {name: local}
        spec:
          externalIPs: [198.51.100.7]
          externalTrafficPolicy: Local
          ports: [{port: 80}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: cluster}
        spec:
          externalIPs: [198.51.100.8]
          ports: [{port: 80}]
    """)
    assert c.service("default", "local").external_traffic_policy == "Local"
    assert c.service("default", "cluster").external_traffic_policy == "Cluster"


def test_dual_stack_services(load_text):
    config = """
    apiVersion: netsim/v1alpha1
    kind: NetsimConfig
    metadata: {name: netsim}
    spec:
      podCIDRs: [10.244.0.0/16, "fd00:10:244::/56"]
      serviceCIDRs: [10.96.0.0/16, "fd00:10:96::/112"]
    """
    services = """
    apiVersion: v1
    kind: Service
    metadata: {name: given}
    spec:
      ipFamilyPolicy: PreferDualStack
      ipFamilies: [IPv4, IPv6]
      clusterIP: 10.96.0.20
      clusterIPs: [10.96.0.20, "fd00:10:96::20"]
      ports: [{port: 80}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: required}
    spec:
      ipFamilyPolicy: RequireDualStack
      ports: [{port: 80}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: v6-first}
    spec:
      ipFamilyPolicy: PreferDualStack
      ipFamilies: [IPv6]
      ports: [{port: 80}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: single}
    spec:
      ports: [{port: 80}]
    """
    c = load_text(config, services)
    given = c.service("default", "given")
    assert given.cluster_ips == ("10.96.0.20", "fd00:10:96::20")
    assert given.ip_families == ("IPv4", "IPv6")
    assert given.ip_family_policy == "PreferDualStack"
    # RequireDualStack without ipFamilies: the cluster's primary family first, then the other.
    req = c.service("default", "required")
    assert req.ip_families == ("IPv4", "IPv6")
    assert in_cidr(req.cluster_ips[0], "10.96.0.0/16")
    assert in_cidr(req.cluster_ips[1], "fd00:10:96::/112")
    v6 = c.service("default", "v6-first")  # the listed family first
    assert v6.ip_families == ("IPv6", "IPv4")
    single = c.service("default", "single")  # ipFamilyPolicy defaults to SingleStack
    assert single.ip_families == ("IPv4",) and len(single.cluster_ips) == 1


# ---------------------------------------------------------------- EndpointSlice / Endpoints


SLICES = """
apiVersion: v1
kind: Service
metadata: {name: external-db}
spec:
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: external-db-1
  labels: {kubernetes.io/service-name: external-db}
addressType: IPv4
ports: [{name: pg, port: 5432}]
endpoints:
- addresses: [192.0.2.10]
- addresses: [192.0.2.11]
  conditions: {ready: false}
- addresses: [192.0.2.12]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: [192.0.2.13]
  conditions: {ready: true, serving: false}
  nodeName: w1
  zone: a
  hostname: db-3
  targetRef: {kind: Pod, name: db-3, namespace: data}
"""


def test_endpoint_slice_condition_defaults(load_text):
    c = load_text(SLICES)
    s = only(c.slices_for(c.service("default", "external-db")))
    assert s.name == "external-db-1" and s.service_name == "external-db"
    assert s.address_type == "IPv4" and not s.derived
    conds = [(e.addresses, e.ready, e.serving, e.terminating) for e in s.endpoints]
    # discovery/v1 EndpointConditions: ready and serving "nil should be interpreted as
    # true", terminating nil as false (kube-proxy's endpointslicecache reads them so).
    assert conds == [
        (("192.0.2.10",), True, True, False),
        (("192.0.2.11",), False, True, False),
        (("192.0.2.12",), False, True, True),
        (("192.0.2.13",), True, False, False),
    ]
    last = s.endpoints[3]
    assert (last.node_name, last.zone, last.hostname, last.target) == (
        "w1",
        "a",
        "db-3",
        "data/db-3",
    )
    port = only(s.ports)
    assert (port.name, port.port, port.protocol) == ("pg", 5432, "TCP")


def test_given_slices_replace_derived_ones(load_text):
    svc = """
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80}]}
    ---
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: {name: web-abcde, labels: {kubernetes.io/service-name: web}}
    addressType: IPv4
    endpoints: [{addresses: [10.244.1.7]}]
    """
    c = load_text(svc)
    assert [s.name for s in c.slices_for(c.service("default", "web"))] == ["web-abcde"]


def test_legacy_endpoints_become_slices(load_text):
    c = load_text("""
        apiVersion: v1
        kind: Service
        metadata: {name: legacy, namespace: ops}
        spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
        ---
        apiVersion: v1
        kind: Endpoints
        metadata: {name: legacy, namespace: ops}
        subsets:
        - addresses: [{ip: 192.0.2.1, nodeName: w1}, {ip: 192.0.2.2}]
          notReadyAddresses: [{ip: 192.0.2.3}]
          ports: [{name: http, port: 8080}]
    """)
    s = only(c.slices_for(c.service("ops", "legacy")))
    assert s.service_name == "legacy" and s.namespace == "ops" and s.address_type == "IPv4"
    # addresses are ready endpoints, notReadyAddresses not ready (endpointslicemirroring)
    assert [(e.addresses[0], e.ready) for e in s.endpoints] == [
        ("192.0.2.1", True),
        ("192.0.2.2", True),
        ("192.0.2.3", False),
    ]
    assert s.endpoints[0].node_name == "w1"
    assert [(p.name, p.port, p.protocol) for p in s.ports] == [("http", 8080, "TCP")]


def test_derived_slices_resolve_named_target_ports(load_text):
    c = load_text(
        THREE_NODES,
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: web-http}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: web-1, labels: {app: web}}
        spec:
          nodeName: w1
          containers: [{name: c, ports: [{name: web-http, containerPort: 8080}]}]
        status: {phase: Running, podIP: 10.244.1.10,
                 conditions: [{type: Ready, status: "False"}]}
    """,
    )
    s = only(c.slices_for(c.service("default", "web")))
    assert s.derived
    assert [(p.name, p.port) for p in s.ports] == [("http", 8080)]
    e = only(s.endpoints)
    assert e.addresses == ("10.244.1.10",) and e.target == "default/web-1"
    assert not e.ready and not e.serving  # the pod's Ready condition is False


# ---------------------------------------------------------------- workload controllers


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]
"""


def test_deployment_expands_to_named_pods(load_text):
    c = load_text(THREE_NODES, DEPLOYMENT)
    pods = c.pods_in("shop")
    assert len(pods) == 3
    pattern = re.compile(rf"^web-({SAFE}{{1,10}})-{SAFE}{{5}}$")
    hashes = set()
    for p in pods:
        m = pattern.match(p.name)
        assert m, p.name
        # The ReplicaSet <deployment>-<pod-template-hash> owns the pod, which carries the hash.
        assert p.labels == {"app": "web", "tier": "front", "pod-template-hash": m.group(1)}
        assert (p.owner.kind, p.owner.name) == ("ReplicaSet", f"web-{m.group(1)}")
        assert p.workload == "Deployment/web"
        assert p.phase == "Running" and p.ips and p.node_name in ("w1", "w2")
        hashes.add(m.group(1))
    assert len(hashes) == 1  # one template, one ReplicaSet
    assert len({p.name for p in pods}) == 3
    # Replicas are spread over the schedulable workers, never the tainted control plane.
    assert Counter(p.node_name for p in pods) in (Counter(w1=2, w2=1), Counter(w1=1, w2=2))


def test_deployment_replicas_default_to_one(load_text):
    c = load_text(DEPLOYMENT.replace("  replicas: 3\n", ""))
    assert len(c.pods_in("shop")) == 1


def test_replicaset_pods_are_named_after_it(load_text):
    c = load_text("""
        apiVersion: apps/v1
        kind: ReplicaSet
        metadata: {name: front}
        spec:
          replicas: 2
          selector: {matchLabels: {app: front}}
          template:
            metadata: {labels: {app: front}}
            spec: {containers: [{name: c}]}
    """)
    pods = c.pods_in("default")
    assert len(pods) == 2
    assert all(re.fullmatch(rf"front-{SAFE}{{5}}", p.name) for p in pods)
    assert {(p.owner.kind, p.owner.name) for p in pods} == {("ReplicaSet", "front")}


def test_statefulset_pods_have_stable_identities(load_text):
    c = load_text(
        THREE_NODES,
        """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: db, namespace: data}
        spec:
          serviceName: db-headless
          replicas: 3
          selector: {matchLabels: {app: db}}
          template:
            metadata: {labels: {app: db}}
            spec: {containers: [{name: pg, ports: [{containerPort: 5432}]}]}
    """,
    )
    pods = c.pods_in("data")
    assert [p.name for p in pods] == ["db-0", "db-1", "db-2"]
    for i, p in enumerate(pods):
        assert p.spec.hostname == f"db-{i}"
        assert p.spec.subdomain == "db-headless"  # spec.serviceName
        assert p.labels["app"] == "db"
        assert p.labels["statefulset.kubernetes.io/pod-name"] == f"db-{i}"
        assert p.labels["apps.kubernetes.io/pod-index"] == str(i)
        assert (p.owner.kind, p.owner.name) == ("StatefulSet", "db")
        assert p.workload == "StatefulSet/db"


DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: logging}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent}]
"""


@pytest.mark.parametrize(
    ("extra", "nodes"),
    [
        ("", {"w1", "w2"}),  # the control plane's NoSchedule taint keeps it off
        (
            "      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]\n",
            {"cp", "w1", "w2"},
        ),
        ("      tolerations: [{operator: Exists}]\n", {"cp", "w1", "w2"}),  # tolerates all
        ("      nodeSelector: {disk: ssd}\n", {"w1"}),
    ],
)
def test_daemonset_runs_one_pod_per_eligible_node(load_text, extra, nodes):
    c = load_text(THREE_NODES, DAEMONSET + extra)
    pods = c.pods_in("logging")
    assert sorted(p.node_name for p in pods) == sorted(nodes)  # exactly one per node
    assert all(re.fullmatch(rf"agent-{SAFE}{{5}}", p.name) for p in pods)
    assert {(p.owner.kind, p.owner.name) for p in pods} == {("DaemonSet", "agent")}


def test_controllers_already_realised_in_the_input_are_not_expanded(load_text):
    # As in `kubectl get -A -o yaml`: the Deployment, its ReplicaSet and its Pods all present.
    dump = (
        DEPLOYMENT
        + """
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7d4b9c8f5d
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, controller: true}]
spec:
  replicas: 1
  selector: {matchLabels: {app: web, pod-template-hash: 7d4b9c8f5d}}
  template:
    metadata: {labels: {app: web, tier: front, pod-template-hash: 7d4b9c8f5d}}
    spec: {containers: [{name: web}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d4b9c8f5d-abcde
  namespace: shop
  labels: {app: web, tier: front, pod-template-hash: 7d4b9c8f5d}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c8f5d,
                     controller: true}]
spec: {nodeName: w1, containers: [{name: web}]}
status: {phase: Running, podIP: 10.244.1.20}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: shop
  labels: {app: db}
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, controller: true}]
spec: {nodeName: w2, containers: [{name: pg}]}
status: {phase: Running, podIP: 10.244.2.20}
"""
    )
    c = load_text(THREE_NODES, dump)
    assert sorted(p.name for p in c.pods_in("shop")) == ["db-0", "web-7d4b9c8f5d-abcde"]
    assert c.pod("shop", "web-7d4b9c8f5d-abcde").workload == "Deployment/web"
    assert not any(p.generated for p in c.pods_in("shop"))


def test_a_deployment_realised_by_its_replicaset_expands_through_it(load_text):
    # A dump without pods: the ReplicaSet, not the Deployment, makes the Pods.
    rs = (
        DEPLOYMENT
        + """
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7d4b9c8f5d
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, controller: true}]
spec:
  replicas: 2
  selector: {matchLabels: {app: web, pod-template-hash: 7d4b9c8f5d}}
  template:
    metadata: {labels: {app: web, pod-template-hash: 7d4b9c8f5d}}
    spec: {containers: [{name: web}]}
"""
    )
    c = load_text(rs)
    pods = c.pods_in("shop")
    assert len(pods) == 2
    assert all(re.fullmatch(rf"web-7d4b9c8f5d-{SAFE}{{5}}", p.name) for p in pods)
    assert {p.workload for p in pods} == {"Deployment/web"}
    assert {p.labels["pod-template-hash"] for p in pods} == {"7d4b9c8f5d"}


# ---------------------------------------------------------------- NetworkPolicy


def policy(spec: str, name: str = "np") -> str:
    return textwrap.dedent("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: %s, namespace: shop}
        spec:
    """) % name + textwrap.indent(textwrap.dedent(spec), "  ")


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        # SetDefaults_NetworkPolicy: no policyTypes -> Ingress, plus Egress when egress rules exist
        ("podSelector: {}\n", ("Ingress",)),
        ("podSelector: {}\ningress: [{}]\n", ("Ingress",)),
        ("podSelector: {}\negress: [{}]\n", ("Ingress", "Egress")),
        ("podSelector: {}\negress: []\n", ("Ingress",)),  # an empty list is no rules
        ("podSelector: {}\npolicyTypes: [Egress]\n", ("Egress",)),
        ("podSelector: {}\npolicyTypes: [Egress, Ingress]\n", ("Ingress", "Egress")),
        ("podSelector: {}\npolicyTypes: [Ingress]\negress: [{}]\n", ("Ingress",)),
    ],
)
def test_policy_types_defaulting(load_text, spec, types):
    np = only(load_text(policy(spec)).network_policies)
    assert set(np.policy_types) == set(types)
    assert len(np.policy_types) == len(types)


def test_policy_ports(load_text):
    np = only(
        load_text(
            policy("""
        podSelector: {matchLabels: {app: api}}
        ingress:
        - ports:
          - port: 8080
          - {port: http, protocol: TCP}
          - {protocol: UDP, port: 53}
          - {port: 32000, endPort: 32768}
          - {protocol: SCTP}
    """)
        ).network_policies
    )
    ports = [(p.protocol, p.port, p.end_port) for p in only(np.ingress).ports]
    assert ports == [
        ("TCP", 8080, None),
        ("TCP", "http", None),
        ("UDP", 53, None),
        ("TCP", 32000, 32768),
        ("SCTP", None, None),
    ]  # protocol defaults TCP
    assert np.pod_selector.match_labels == {"app": "api"}


def test_policy_ip_block_with_except(load_text):
    np = only(
        load_text(
            policy("""
        podSelector: {}
        egress:
        - to:
          - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/24]}
          - ipBlock: {cidr: "2001:db8::/32"}
    """)
        ).network_policies
    )
    a, b = only(np.egress).peers
    assert (a.ip_block.cidr, a.ip_block.except_) == ("10.0.0.0/8", ("10.1.0.0/16", "10.2.0.0/24"))
    assert a.pod_selector is None and a.namespace_selector is None
    assert (b.ip_block.cidr, b.ip_block.except_) == ("2001:db8::/32", ())


def test_policy_null_and_empty_selectors_differ(load_text):
    np = only(
        load_text(
            policy("""
        podSelector: {}
        ingress:
        - from:
          - namespaceSelector: {}
          - podSelector: {}
          - namespaceSelector: {matchLabels: {team: a}}
            podSelector: {matchExpressions: [{key: role, operator: In, values: [db, cache]}]}
    """)
        ).network_policies
    )
    all_ns, same_ns, both = only(np.ingress).peers
    # namespaceSelector {} alone: every pod in every namespace; podSelector stays null.
    assert all_ns.pod_selector is None
    assert all_ns.namespace_selector == LabelSelector()
    assert all_ns.namespace_selector.matches({"anything": "x"})
    # podSelector {} alone: every pod in the policy's namespace; namespaceSelector null.
    assert same_ns.namespace_selector is None and same_ns.pod_selector.is_empty
    # both in one peer: ANDed (pods with role db/cache in namespaces with team=a)
    assert both.namespace_selector.match_labels == {"team": "a"}
    r = only(both.pod_selector.match_expressions)
    assert (r.key, r.operator, r.values) == ("role", "In", ("db", "cache"))


def test_policy_and_within_one_peer_vs_two_peers(load_text):
    one = only(
        load_text(
            policy("""
        podSelector: {}
        ingress:
        - from:
          - namespaceSelector: {matchLabels: {team: a}}
            podSelector: {matchLabels: {role: client}}
    """)
        ).network_policies
    )
    two = only(
        load_text(
            policy("""
        podSelector: {}
        ingress:
        - from:
          - namespaceSelector: {matchLabels: {team: a}}
          - podSelector: {matchLabels: {role: client}}
    """)
        ).network_policies
    )
    assert len(only(one.ingress).peers) == 1
    assert len(only(two.ingress).peers) == 2
    first, second = only(two.ingress).peers
    assert first.pod_selector is None and second.namespace_selector is None


def test_policy_empty_rule_allows_everything(load_text):
    np = only(load_text(policy("podSelector: {}\ningress: [{}]\n")).network_policies)
    rule = only(np.ingress)
    assert rule.peers == () and rule.ports == ()


# ---------------------------------------------------------------- Ingress and IngressClass


INGRESS = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: other}
spec: {controller: example.com/other}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  ingressClassName: nginx
  defaultBackend:
    service: {name: web, port: {number: 80}}
  tls:
  - hosts: [shop.example.com, "*.shop.example.com"]
    secretName: shop-tls
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /healthz, pathType: Exact, backend: {service: {name: web, port: {number: 8080}}}}
      - path: /static
        pathType: ImplementationSpecific
        backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: assets}}
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


def test_ingress_rules_backends_and_tls(load_text):
    ing = only(load_text(INGRESS).ingresses)
    assert ing.ingress_class_name == "nginx"
    d = ing.default_backend
    assert (d.service_name, d.port_number, d.port_name) == ("web", 80, None)
    first, second = ing.rules
    assert first.host == "shop.example.com" and second.host is None  # no host: any host
    api, health, static = first.paths
    assert (api.path, api.path_type) == ("/api", "Prefix")
    assert (api.backend.service_name, api.backend.port_name, api.backend.port_number) == (
        "api",
        "http",
        None,
    )
    assert (health.path_type, health.backend.port_number) == ("Exact", 8080)
    assert static.backend.service_name is None
    assert (static.backend.resource, static.backend.resource_group) == (
        "StorageBucket/assets",
        "k8s.example.com",
    )
    tls = only(ing.tls)
    assert tls.hosts == ("shop.example.com", "*.shop.example.com")
    assert tls.secret_name == "shop-tls"


def test_ingress_class_default_annotation(load_text):
    classes = {c.name: c for c in load_text(INGRESS).ingress_classes}
    assert classes["nginx"].is_default and classes["nginx"].controller == "k8s.io/ingress-nginx"
    assert not classes["other"].is_default


# ---------------------------------------------------------------- component configuration


def test_kube_proxy_configuration(load_text):
    c = load_text("""
        apiVersion: kubeproxy.config.k8s.io/v1alpha1
        kind: KubeProxyConfiguration
        clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
        iptables: {masqueradeAll: true}
    """)
    kp = c.kube_proxy
    assert kp.cluster_cidrs == ("10.244.0.0/16", "fd00:10:244::/56")  # comma-separated
    assert kp.masquerade_bit == 14  # KubeProxyIPTablesConfiguration default
    assert kp.masquerade_all
    assert kp.mode == ""  # kept unset; proxy.kube_proxy.options resolves it (iptables)


def test_kube_proxy_masquerade_bit_and_mode(load_text):
    kp = load_text("""
        apiVersion: kubeproxy.config.k8s.io/v1alpha1
        kind: KubeProxyConfiguration
        mode: ipvs
        iptables: {masqueradeBit: 12}
        ipvs: {scheduler: lc, strictARP: true}
    """).kube_proxy
    assert (kp.mode, kp.masquerade_bit, kp.ipvs_scheduler, kp.ipvs_strict_arp) == (
        "ipvs",
        12,
        "lc",
        True,
    )


def test_no_kube_proxy_configuration(load_text):
    assert load_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").kube_proxy is None


def test_netsim_config_defaults(load_text):
    c = load_text("""
        apiVersion: netsim/v1alpha1
        kind: NetsimConfig
        metadata: {name: netsim}
        spec: {}
    """)
    s = c.settings
    assert (s.cni, s.calico_encapsulation, s.proxy_mode, s.mesh) == (
        "calico",
        "IPIP",
        "iptables",
        False,
    )
    assert s.node_port_range == (30000, 32767)
    assert s.source is not None and s.source.file.endswith("in0.yaml")


@pytest.mark.parametrize(
    ("proxy", "mode"),
    [
        ("", "none"),  # Cilium's kube-proxy replacement unless told otherwise
        ("  proxy: {mode: iptables}\n", "iptables"),
        ("  proxy: {mode: ipvs}\n", "ipvs"),
    ],
)
def test_netsim_config_cilium_proxy_default(load_text, proxy, mode):
    c = load_text(
        "apiVersion: netsim/v1alpha1\nkind: NetsimConfig\nspec:\n  cni: {name: cilium}\n" + proxy
    )
    assert c.settings.cni == "cilium"
    assert c.settings.proxy_mode == mode
    assert c.settings.cilium_routing_mode == "tunnel"


def test_netsim_config_cidrs_drive_addressing(load_text):
    c = load_text(
        """
        apiVersion: netsim/v1alpha1
        kind: NetsimConfig
        spec: {podCIDRs: [10.32.0.0/16], serviceCIDRs: [10.33.0.0/16]}
    """,
        THREE_NODES,
        DEPLOYMENT,
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n",
    )
    assert c.addressing.pod_cidrs == ("10.32.0.0/16",)
    assert all(in_cidr(p.ip, "10.32.0.0/16") for p in c.pods)
    assert in_cidr(c.service("default", "s").cluster_ip, "10.33.0.0/16")


# ---------------------------------------------------------------- raw and unknown kinds


RAW = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1, namespace: sw}
spec:
  endpointSelector: {matchLabels: {org: empire}}
  ingress: [{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-all}
spec: {selector: all(), types: [Ingress]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: cluster-control}
spec: {priority: 10, subject: {namespaces: {}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec: {template: {spec: {containers: [{name: c}]}}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: tls}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: tls2}
"""


def test_raw_kinds_are_kept(load_text):
    c = load_text(RAW)
    cnp = only(c.raw("CiliumNetworkPolicy"))
    assert (cnp.namespace, cnp.name, cnp.api_version) == ("sw", "rule1", "cilium.io/v2")
    assert cnp.body["spec"]["endpointSelector"]["matchLabels"] == {"org": "empire"}
    gnp = only(c.raw("GlobalNetworkPolicy"))
    assert gnp.namespace is None  # cluster-scoped
    assert gnp.body["spec"]["selector"] == "all()"
    vs = only(c.raw("VirtualService"))
    assert vs.namespace == "default"
    assert vs.body["spec"]["hosts"] == ("reviews",)  # deep-frozen
    anp = only(c.raw("AdminNetworkPolicy"))
    assert anp.namespace is None and anp.body["spec"]["priority"] == 10
    assert {o.kind for o in c.others} == {
        "CiliumNetworkPolicy",
        "GlobalNetworkPolicy",
        "VirtualService",
        "AdminNetworkPolicy",
    }
    assert c.namespace("sw") is not None  # namespaces that raw objects use exist


def test_unknown_kinds_are_skipped_with_a_warning(load_text):
    c = load_text(RAW)
    assert c.raw("Job") == () and c.raw("Certificate") == ()
    warning = only([w for w in c.warnings if "skipped" in w])
    assert "batch/v1/Job" in warning
    assert "cert-manager.io/v1/Certificate" in warning
    assert not c.pods_in("default")  # a Job's pod template is not expanded


# ---------------------------------------------------------------- input forms


def test_kind_list_in_yaml(load_text):
    c = load_text("""
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Namespace
          metadata: {name: a}
        - apiVersion: v1
          kind: Service
          metadata: {name: s, namespace: a}
          spec: {ports: [{port: 80}]}
    """)
    assert c.namespace("a") is not None and not c.namespace("a").implicit
    assert c.service("a", "s") is not None


def test_kind_list_in_json(load_text):
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s", "namespace": "a"},
                "spec": {"ports": [{"port": 80}]},
            },
        ],
    }
    c = load_text(json.dumps(doc, indent=2), suffix=".json")
    assert c.service("a", "s") is not None
    c = load_text(json.dumps(doc["items"]), suffix=".json")  # a bare JSON array too
    assert c.service("a", "s") is not None


def test_typed_list_kinds_are_unwrapped(load_text):
    c = load_text("""
        apiVersion: v1
        kind: ServiceList
        items:
        - {apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}]}}
    """)
    assert c.service("default", "s") is not None


def test_multi_document_yaml_with_empty_documents(load_text):
    c = load_text("""
        ---
        # a comment-only document
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: a}
        ---
        ---

        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: b}
        ...
    """)
    assert {"a", "b"} <= {n.name for n in c.namespaces if not n.implicit}


def test_stdin():
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"
    c = load(["-"], stdin=io.StringIO(text))
    s = c.service("default", "s")
    assert s is not None and s.meta.source.file == "<stdin>"


def test_directories_are_read_recursively(tmp_path):
    root = tmp_path / "manifests"
    (root / "apps" / "deep").mkdir(parents=True)
    (root / "00-ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (root / "apps" / "svc.yml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\n"
        "spec: {ports: [{port: 80}]}\n"
    )
    (root / "apps" / "deep" / "pod.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "a"},
                "spec": {"containers": [{"name": "c"}]},
            }
        )
    )
    (root / "README.md").write_text("# not a manifest: ignored\nkind: [\n")
    (root / "notes.txt").write_text("{ not json")
    c = load([str(root)])
    assert c.service("a", "s") is not None and c.pod("a", "p") is not None
    assert not c.namespace("a").implicit


def test_later_inputs_replace_earlier_objects(load_text):
    first = """
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec: {ports: [{port: 80}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: keep, namespace: shop}
    spec: {ports: [{port: 81}]}
    """
    second = """
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec: {ports: [{port: 8080}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: other}
    spec: {ports: [{port: 9090}]}
    """
    c = load_text(first, second)
    assert only(c.service("shop", "web").ports).port == 8080  # like a second kubectl apply
    assert c.service("shop", "web").meta.source.file.endswith("in1.yaml")
    assert only(c.service("shop", "keep").ports).port == 81
    assert only(c.service("other", "web").ports).port == 9090  # another namespace: another
    assert len(c.services) == 4  # and the DNS addon's kube-system/kube-dns


def test_files_of_a_directory_layer_in_path_order(tmp_path):
    # kubectl apply -f dir/ applies the files one after another, in name order.
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: %d}]}\n"
    (tmp_path / "a.yaml").write_text(svc % 80)
    (tmp_path / "b.yaml").write_text(svc % 8080)
    c = load([str(tmp_path)])
    assert only(c.service("default", "web").ports).port == 8080


def test_objects_without_namespace_land_in_default(load_text):
    c = load_text(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: s}
        spec: {ports: [{port: 80}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec: {containers: [{name: c}]}
    """,
        """
        apiVersion: v1
        kind: Service
        metadata: {name: s, namespace: default}
        spec: {ports: [{port: 81}]}
    """,
    )
    # The two Services are one object (namespace omitted means default): replaced, not both.
    assert [s.key for s in c.services] == ["default/s", "kube-system/kube-dns"]
    assert only(c.service("default", "s").ports).port == 81
    assert c.pod("default", "p").namespace == "default"


def test_empty_namespace_means_default(load_text):
    c = load_text("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: ""}
        spec: {containers: [{name: c}]}
    """)
    assert c.pod("default", "p") is not None


def test_implicit_namespaces_exist_for_what_objects_use(load_text):
    c = load_text("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p, namespace: team-a}
        spec: {containers: [{name: c}]}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: team-b}
        spec: {podSelector: {}}
    """)
    for name in ("team-a", "team-b", "default"):
        ns = c.namespace(name)
        assert ns is not None and ns.implicit
        assert ns.labels == {"kubernetes.io/metadata.name": name}


# ---------------------------------------------------------------- bundled examples


def test_shop_example_directory():
    c = load([str(EXAMPLES / "shop")])
    # examples/README.md: three kind-style nodes, Calico IPIP, iptables, mesh on
    assert [n.name for n in c.nodes] == ["shop-control-plane", "shop-worker", "shop-worker2"]
    assert (
        c.settings.cni,
        c.settings.calico_encapsulation,
        c.settings.proxy_mode,
        c.settings.mesh,
    ) == ("calico", "IPIP", "iptables", True)
    assert c.kube_proxy is not None and c.kube_proxy.cluster_cidrs == ("10.244.0.0/16",)
    assert {n.name for n in c.namespaces} >= {
        "shop",
        "data",
        "logging",
        "ingress-nginx",
        "kube-system",
    }
    assert c.service("kube-system", "kube-dns").cluster_ip == "10.96.0.10"
    _check_shop(c)
    # the log-agent DaemonSet tolerates the control-plane taint: one pod on every node
    agents = c.pods_in("logging")
    assert sorted(p.node_name for p in agents) == [n.name for n in c.nodes]
    assert [p.name for p in c.pods_in("data")] == ["postgres-0", "postgres-1"]
    assert c.raw("VirtualService") and c.raw("PeerAuthentication")
    default_class = only([ic for ic in c.ingress_classes if ic.is_default])
    assert default_class.name == "nginx"


def test_shop_example_dump():
    c = load([str(EXAMPLES / "shop-dump.yaml")])
    _check_shop(c)
    assert not any(p.generated or p.addressed or p.scheduled for p in c.pods)
    # examples/README.md: each node owns a Calico /26 block holding its pods' addresses
    blocks = {
        "shop-control-plane": "10.244.82.0/26",
        "shop-worker": "10.244.140.64/26",
        "shop-worker2": "10.244.201.128/26",
    }
    for p in c.pods:
        assert in_cidr(p.ip, blocks[p.node_name]), p.key
    web = [p for p in c.pods_in("shop") if p.workload == "Deployment/web"]
    assert len(web) == 3  # revision 1's ReplicaSet is scaled to 0
    assert all(s.derived is False for s in c.endpoint_slices if s.service_name == "web")


def test_json_dump_is_taken_as_it_is():
    # tests/data/dump/small-cluster.json: `kubectl get nodes,ns,pods,svc,endpointslices,
    # deploy,rs -A -o json` of one worker with a two-replica Deployment, one pod not ready.
    c = load([str(DATA / "dump" / "small-cluster.json")])
    assert [n.name for n in c.nodes] == ["worker-1"]
    assert only(c.warnings).startswith("the input holds no cluster DNS")  # nor kube-system
    assert c.node("worker-1").ip() == "192.168.10.11"
    pods = c.pods_in("shop")
    assert [(p.name, p.ip, p.ready) for p in pods] == [
        ("web-6d8f7c9b54-kx4vq", "10.244.5.3", True),
        ("web-6d8f7c9b54-zq8bd", "10.244.5.4", False),
    ]
    assert not any(p.generated or p.addressed or p.scheduled for p in pods)
    assert {p.workload for p in pods} == {"Deployment/web"}
    svc = c.service("shop", "web")
    assert svc.cluster_ips == ("10.96.120.7",) and not svc.addressed
    s = only(c.slices_for(svc))
    assert s.name == "web-x7k2p" and not s.derived
    assert [(e.addresses[0], e.ready) for e in s.endpoints] == [
        ("10.244.5.3", True),
        ("10.244.5.4", False),
    ]
    assert only(pods[0].meta.source.file.split("/")[-1:]) == "small-cluster.json"
    assert pods[0].meta.source.item is not None  # an item of the List


def _check_shop(c):
    """What examples/README.md says holds for both forms of the shop."""
    assert len(c.pods) == 16 and all(p.phase == "Running" and p.ip for p in c.pods)
    counts = Counter(p.workload for p in c.pods)
    assert counts == {
        "Deployment/coredns": 2,
        "Deployment/web": 3,
        "Deployment/api": 2,
        "Deployment/cart": 2,
        "Deployment/redis": 1,
        "StatefulSet/postgres": 2,
        "DaemonSet/log-agent": 3,
        "Deployment/ingress-nginx-controller": 1,
    }
    cp = c.node("shop-control-plane")
    assert cp.taints and cp.ip() == "172.18.0.2"
    assert c.node("shop-worker").ip() == "172.18.0.3"
    web = c.service("shop", "web")
    assert web.type == "NodePort" and any(p.node_port == 30080 for p in web.ports)
    lb = c.service("shop", "web-lb")
    assert lb.type == "LoadBalancer" and lb.external_traffic_policy == "Cluster"
    assert lb.session_affinity == "ClientIP" and "203.0.113.20" in lb.load_balancer_ingress
    nginx = c.service("ingress-nginx", "ingress-nginx-controller")
    assert nginx.external_traffic_policy == "Local"
    assert {p.node_port for p in nginx.ports} == {31080, 31443}
    assert "203.0.113.10" in nginx.load_balancer_ingress
    assert c.service("shop", "api-external").external_ips == ("198.51.100.50",)
    assert c.service("data", "postgres").headless
    rule_hosts = {r.host for ing in c.ingresses for r in ing.rules}
    assert "shop.example.com" in rule_hosts
    assert {np.namespace for np in c.network_policies} >= {"shop", "data"}


# ---------------------------------------------------------------- third-party manifests


needs_realworld = pytest.mark.skipif(
    not REALWORLD.is_dir(),
    reason=f"third-party manifests not found at {REALWORLD} (CI keeps shared/ beside the checkout)",
)


@needs_realworld
@pytest.mark.parametrize(
    "folder",
    sorted(p.name for p in REALWORLD.iterdir() if p.is_dir()) if REALWORLD.is_dir() else [],
)
def test_realworld_folder_loads(folder):
    c = load([str(REALWORLD / folder)])
    assert c.nodes  # netsim made nodes for them
    # every file as its own input, in name order, loads as well
    files = sorted(str(p) for p in (REALWORLD / folder).rglob("*.yaml"))
    assert load(files).pods == c.pods


@needs_realworld
def test_online_boutique():
    c = load([str(REALWORLD / "online-boutique")])
    deployments = [w for w in c.workloads if w.meta.kind == "Deployment"]
    # release/kubernetes-manifests.yaml: 11 services plus the load generator, one replica each
    assert len(deployments) == 13  # and the cluster DNS netsim adds: the demo assumes one
    assert c.service("kube-system", "kube-dns").cluster_ips == ("10.96.0.10",)
    deployments = [w for w in deployments if w.name != "coredns"]
    assert Counter(p.workload for p in c.pods_in("default")) == {
        f"Deployment/{w.name}": 1 for w in deployments}
    assert c.service("default", "frontend-external").type == "LoadBalancer"
    assert c.service("default", "frontend").type == "ClusterIP"
    assert len(c.network_policies) == 13
    deny = next(np for np in c.network_policies if np.name == "deny-all")
    assert deny.pod_selector.is_empty and set(deny.policy_types) == {"Ingress", "Egress"}
    assert deny.ingress == () and deny.egress == ()


@needs_realworld
def test_cilium_star_wars():
    c = load([str(REALWORLD / "cilium-star-wars" / "http-sw-app.yaml")])
    deathstar = [p for p in c.pods if p.workload == "Deployment/deathstar"]
    assert len(deathstar) == 2  # "deathstar ... replicas: 2"
    assert all(p.labels["org"] == "empire" and p.labels["class"] == "deathstar" for p in deathstar)
    assert c.pod("default", "tiefighter").labels["org"] == "empire"
    assert c.pod("default", "xwing").labels["org"] == "alliance"
    assert only(c.service("default", "deathstar").ports).port == 80
    policy_only = load([str(REALWORLD / "cilium-star-wars" / "sw_l3_l4_policy.yaml")])
    rule = only(policy_only.raw("CiliumNetworkPolicy"))
    assert rule.name == "rule1"


@needs_realworld
def test_istio_bookinfo():
    c = load([str(REALWORLD / "istio-bookinfo" / "bookinfo.yaml")])
    reviews = [p for p in c.pods if p.labels.get("app") == "reviews"]
    assert sorted(p.labels["version"] for p in reviews) == ["v1", "v2", "v3"]
    assert {s.name for s in c.services if s.namespace == "default"} == {
        "details", "ratings", "reviews", "productpage"}
    assert only(c.service("default", "productpage").ports).port == 9080
    assert len(c.raw("ServiceAccount")) == 4
    routing = load(
        [
            str(REALWORLD / "istio-bookinfo" / f)
            for f in (
                "bookinfo.yaml",
                "virtual-service-all-v1.yaml",
                "virtual-service-reviews-v3.yaml",
            )
        ]
    )
    vs = {v.name: v for v in routing.raw("VirtualService")}
    assert set(vs) == {"productpage", "reviews", "ratings", "details"}
    route = vs["reviews"].body["spec"]["http"][0]["route"][0]["destination"]
    assert route["subset"] == "v3"  # the later file replaced all-v1's reviews route


@needs_realworld
def test_calico_stars():
    c = load([str(REALWORLD / "calico-stars")])
    assert {"stars", "management-ui", "client"} <= {n.name for n in c.namespaces if not n.implicit}
    policies = {(np.namespace, np.name) for np in c.network_policies}
    assert ("stars", "allow-ui") in policies
    assert ("default", "default-deny") in policies  # the page applies it with -n
    allow_ui = next(np for np in c.network_policies if np.name == "allow-ui")
    peer = only(only(allow_ui.ingress).peers)
    assert peer.pod_selector is None
    assert peer.namespace_selector.match_labels == {"role": "management-ui"}


@needs_realworld
def test_declare_network_policy():
    np = only(load([str(REALWORLD / "k8s-declare-network-policy")]).network_policies)
    assert np.name == "access-nginx"
    assert np.pod_selector.match_labels == {"app.kubernetes.io/name": "nginx"}
    assert np.policy_types == ("Ingress",)
    peer = only(only(np.ingress).peers)
    assert peer.pod_selector.match_labels == {"access": "true"}
    assert peer.namespace_selector is None
