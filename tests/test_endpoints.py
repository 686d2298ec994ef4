"""EndpointSlices derived as the EndpointSlice controller makes them."""

from __future__ import annotations

from tests.helpers import load_yaml, node, pod

PORTS_8080 = "    - {name: http, containerPort: 8080}\n"
PORTS_9000 = "    - {name: http, containerPort: 9000}\n"


def service(name: str, target: str = "http", extra: str = "", selector: str = "{app: web}"):
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {selector}
  ports: [{{name: web, port: 80, targetPort: {target}}}]
{extra}---
"""


WEB = node("a") + node("b")


def endpoints_by_port(cluster, name):
    svc = cluster.service("default", name)
    out = {}
    for s in cluster.slices_for(svc):
        port = s.ports[0].port if s.ports else None
        out.setdefault(port, set()).update(e.target for e in s.endpoints)
    return out


def test_named_target_port_resolves_per_pod():
    text = WEB + pod("w1", node_name="a", labels={"app": "web"}, ports=PORTS_8080) + \
        pod("w2", node_name="b", labels={"app": "web"}, ports=PORTS_9000) + \
        pod("w3", node_name="b", labels={"app": "web"}) + service("web")
    cluster = load_yaml(text)
    # One slice per distinct port mapping. w3 has no port named http: the controller still
    # lists it, in a slice without ports (endpointslice reconciler, getEndpointPorts).
    assert endpoints_by_port(cluster, "web") == {8080: {"default/w1"}, 9000: {"default/w2"},
                                                 None: {"default/w3"}}
    for s in cluster.slices_for(cluster.service("default", "web")):
        assert s.derived
        assert all(p.name == "web" and p.protocol == "TCP" for p in s.ports)
        assert s.meta.labels["kubernetes.io/service-name"] == "web"
        assert s.name.startswith("web-")


def test_numeric_target_port_and_default_target():
    text = WEB + pod("w1", node_name="a", labels={"app": "web"}) + service("num", "8443") + \
        "apiVersion: v1\nkind: Service\nmetadata: {name: same}\nspec:\n  selector: {app: web}\n" \
        "  ports: [{port: 81}]\n---\n"
    cluster = load_yaml(text)
    assert endpoints_by_port(cluster, "num") == {8443: {"default/w1"}}
    assert endpoints_by_port(cluster, "same") == {81: {"default/w1"}}


def test_conditions_follow_pod_readiness_and_termination():
    not_ready = pod("slow", node_name="a", labels={"app": "web"}, ports=PORTS_8080,
                    status="  conditions: [{type: Ready, status: 'False'}]\n")
    text = WEB + not_ready + pod("ok", node_name="b", labels={"app": "web"}, ports=PORTS_8080) \
        + service("web") + service("all", extra="  publishNotReadyAddresses: true\n")
    cluster = load_yaml(text)
    (web,) = cluster.slices_for(cluster.service("default", "web"))
    cond = {e.target: (e.ready, e.serving, e.terminating) for e in web.endpoints}
    assert cond == {"default/slow": (False, False, False), "default/ok": (True, True, False)}
    (everyone,) = cluster.slices_for(cluster.service("default", "all"))
    assert all(e.ready for e in everyone.endpoints)


def test_hostname_only_when_subdomain_names_the_service():
    text = WEB + pod("db-0", node_name="a", labels={"app": "web"}, ports=PORTS_8080,
                     spec="  hostname: db-0\n  subdomain: web\n") + \
        pod("db-1", node_name="a", labels={"app": "web"}, ports=PORTS_8080,
            spec="  hostname: db-1\n  subdomain: other\n") + service("web")
    cluster = load_yaml(text)
    (s,) = cluster.slices_for(cluster.service("default", "web"))
    assert {e.target: e.hostname for e in s.endpoints} == {"default/db-0": "db-0",
                                                            "default/db-1": None}
    assert {e.node_name for e in s.endpoints} == {"a"}


def test_services_without_selector_get_no_slices_and_given_slices_win():
    given = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-manual
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.9.9.9]}]
ports: [{name: web, port: 1234}]
---
"""
    text = WEB + pod("w1", node_name="a", labels={"app": "web"}, ports=PORTS_8080) + \
        service("web") + given + "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\n" \
        "spec:\n  ports: [{port: 80}]\n---\n"
    cluster = load_yaml(text)
    assert [s.name for s in cluster.slices_for(cluster.service("default", "web"))] == \
        ["web-manual"]
    assert cluster.slices_for(cluster.service("default", "ext")) == ()


def test_slices_hold_at_most_100_endpoints():
    deploy = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: big}
spec:
  replicas: 250
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]
---
"""
    from tests.helpers import config
    text = config("podCIDRs: [10.0.0.0/16]") + WEB + deploy + service("web")
    cluster = load_yaml(text)
    sizes = sorted(len(s.endpoints) for s in cluster.slices_for(cluster.service("default",
                                                                                 "web")))
    assert sizes == [50, 100, 100]


def test_pending_pods_are_not_endpoints():
    text = node("a", taints=[("x", "NoSchedule")]) + \
        pod("w", labels={"app": "web"}, ports=PORTS_8080) + service("web")
    cluster = load_yaml(text)
    (s,) = cluster.slices_for(cluster.service("default", "web"))
    assert s.endpoints == ()
