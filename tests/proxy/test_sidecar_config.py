"""A sidecar's Envoy config: protocols, listeners, domains, clusters, subsets, mTLS.

Expectations come from Istio's documentation and source (pilot/pkg/networking/core), the
Bookinfo sample's documented behaviour and the reference note mesh-ingress.md sections 2-6.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.cluster import Cluster, load
from netsim.errors import InputError
from netsim.model import ServicePort
from proxy.sidecar import MeshOptions, port_protocol, sidecar_config
from tests.conftest import REALWORLD
from tests.helpers import load_yaml

BOOKINFO = REALWORLD / "istio-bookinfo"
NEEDS_BOOKINFO = pytest.mark.skipif(not (BOOKINFO / "bookinfo.yaml").exists(),
                                    reason="shared/realworld/istio-bookinfo is not checked out")
INJECT_DEFAULT = """
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {istio-injection: enabled}
"""


def bookinfo(tmp_path: Path, *extra: str) -> Cluster:
    """Bookinfo in an injected default namespace (as its docs do: kubectl label namespace
    default istio-injection=enabled), with the given sample files layered on top."""
    ns = tmp_path / "inject.yaml"
    ns.write_text(INJECT_DEFAULT)
    files = [str(BOOKINFO / "bookinfo.yaml"), str(ns)] + [str(BOOKINFO / f) for f in extra]
    return load(files, overrides={"mesh": True})


def pod_named(cluster: Cluster, prefix: str, namespace: str = "default"):
    return next(p for p in cluster.pods_in(namespace) if p.name.startswith(prefix))


# A small mesh with fixed addresses: demo is injected, db is not.
TINY = """
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: db}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: demo, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c, image: curl}]}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web-v1, namespace: demo, labels: {app: web, version: v1}}
spec:
  nodeName: n1
  containers: [{name: c, image: web, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.244.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: web-v2, namespace: demo, labels: {app: web, version: v2}}
spec:
  nodeName: n1
  containers: [{name: c, image: web, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.244.0.12}
---
apiVersion: v1
kind: Pod
metadata: {name: redis, namespace: db, labels: {app: redis}}
spec: {nodeName: n1, containers: [{name: c, image: redis}]}
status: {podIP: 10.244.0.20}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: db}
spec:
  clusterIP: 10.96.0.30
  selector: {app: redis}
  ports: [{name: tcp-redis, port: 6379}]
"""
DR_WEB = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: demo}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
VS_WEB = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo}
spec:
  hosts: [web]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: web, subset: v2}}]
  - route:
    - {destination: {host: web, subset: v1}, weight: 90}
    - {destination: {host: web, subset: v2}, weight: 10}
"""


def tiny(extra: str = "", *, dr: bool = True, vs: bool = True, dns: bool = True) -> Cluster:
    """TINY with the web DestinationRule and VirtualService unless the test brings its own;
    dns=False leaves out the CoreDNS addon (kube-dns at 10.96.0.10) for tables of TINY alone."""
    docs = [TINY] + [DR_WEB] * dr + [VS_WEB] * vs + [extra] * bool(extra)
    return load_yaml("---\n".join(docs), overrides={"mesh": True, "dns_addon": dns})


# ---------------------------------------------------------------- protocol selection


@pytest.mark.parametrize(("name", "app_protocol", "port", "proto", "expected"), [
    ("http", None, 80, "TCP", "HTTP"),
    ("http-web", None, 8080, "TCP", "HTTP"),
    ("HTTP2-x", None, 8080, "TCP", "HTTP2"),
    ("grpc", None, 7070, "TCP", "GRPC"),
    ("grpc-web", None, 7070, "TCP", "GRPC-Web"),
    ("grpc-web-ui", None, 7070, "TCP", "GRPC-Web"),
    ("tcp-db", None, 5432, "TCP", "TCP"),
    ("https", None, 443, "TCP", "HTTPS"),
    ("redis", None, 6379, "TCP", "Redis"),
    ("mysql", None, 3306, "TCP", "MySQL"),
    ("metrics", None, 9090, "TCP", "UnsupportedProtocol"),  # sniffed
    (None, None, 8080, "TCP", "UnsupportedProtocol"),
    ("dns", None, 53, "TCP", "TCP"),  # well-known server-first port, never sniffed
    (None, None, 3306, "TCP", "TCP"),
    ("web", "http", 80, "TCP", "HTTP"),  # appProtocol wins over the name
    ("http", "tcp", 80, "TCP", "TCP"),
    ("grpc", "kubernetes.io/h2c", 80, "TCP", "HTTP2"),
    ("dns", None, 53, "UDP", "UDP"),
])
def test_protocol_from_port_name_and_app_protocol(name, app_protocol, port, proto, expected):
    """Istio's protocol selection (istio.io "Protocol Selection"; conversion.go)."""
    sp = ServicePort(port=port, protocol=proto, name=name, app_protocol=app_protocol)
    assert port_protocol(sp) == expected


# ---------------------------------------------------------------- listeners


def test_listeners_of_a_sidecar():
    cfg = sidecar_config(tiny(), tiny().pod("demo", "client"))
    names = {lst.name: lst for lst in cfg.listeners}
    outbound = names["virtualOutbound"]
    assert (outbound.address, outbound.port, outbound.use_original_dst) == ("0.0.0.0", 15001,
                                                                            True)
    http = names["0.0.0.0_80"]  # HTTP ports share one listener per port, RDS "80"
    assert [c.route_config for c in http.chains] == ["80"]
    assert http.default_chain.cluster == "PassthroughCluster"
    assert not http.bind_to_port
    tcp = names["10.96.0.30_6379"]  # TCP ports: <ClusterIP>_<port> with tcp_proxy
    assert [(c.protocol, c.cluster) for c in tcp.chains] == [
        ("tcp", "outbound|6379||redis.db.svc.cluster.local")]
    # the CoreDNS addon's kube-dns: dns-tcp on 53 is TCP (Istio's well-known port, no
    # sniffing), metrics on 9153 has no protocol prefix and is sniffed (HTTP route, TCP default)
    dns = names["10.96.0.10_53"]
    assert [(c.protocol, c.cluster) for c in dns.chains] == [
        ("tcp", "outbound|53||kube-dns.kube-system.svc.cluster.local")]
    metrics = names["10.96.0.10_9153"]
    assert [(c.protocol, c.route_config or c.cluster) for c in metrics.chains] == [
        ("http", "kube-dns.kube-system.svc.cluster.local:9153"),
        ("tcp", "outbound|9153||kube-dns.kube-system.svc.cluster.local")]
    inbound = names["virtualInbound"]
    assert (inbound.address, inbound.port) == ("0.0.0.0", 15006)
    assert {lst.port for lst in cfg.listeners} == {15001, 53, 80, 6379, 9153, 15006, 15021,
                                                   15090}


def test_registry_only_sends_unknown_traffic_to_the_blackhole():
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"),
                         options=MeshOptions(outbound_traffic_policy="REGISTRY_ONLY"))
    assert cfg.listener_named("virtualOutbound").chains[-1].cluster == "BlackHoleCluster"
    assert cfg.listener("0.0.0.0", 80).default_chain.cluster == "BlackHoleCluster"
    assert cfg.route_config("80").virtual_hosts[-1].name == "block_all"


@pytest.mark.parametrize(("policy", "port", "expected"), [
    # (transport, ALPNs, protocol) per chain, filterchain_options.go
    ("", 8080, [("tls", 5, "http"), ("raw_buffer", 0, "http")]),  # PERMISSIVE by default
    ("{mtls: {mode: STRICT}}", 8080, [("tls", 0, "http")]),
    ("{mtls: {mode: DISABLE}}", 8080, [("raw_buffer", 0, "http")]),
    ("{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, "
     "portLevelMtls: {8080: {mode: PERMISSIVE}}}", 8080,
     [("tls", 5, "http"), ("raw_buffer", 0, "http")]),
])
def test_inbound_chains_follow_peer_authentication(policy, port, expected):
    pa = ("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
          f"metadata: {{name: default, namespace: demo}}\nspec: {policy or '{}'}\n")
    c = tiny(pa if policy else "")
    cfg = sidecar_config(c, c.pod("demo", "web-v1"))
    chains = [(ch.match.transport_protocol, len(ch.match.application_protocols), ch.protocol)
              for ch in cfg.listener_named("virtualInbound").chains
              if ch.match.destination_port == port]
    assert chains == expected
    assert {ch.cluster for ch in cfg.listener_named("virtualInbound").chains
            if ch.match.destination_port == port} == {"inbound|8080||"}


# ---------------------------------------------------------------- domains


def _domains(cfg, route: str, vhost: str) -> tuple[str, ...]:
    return next(v.domains for v in cfg.route_config(route).virtual_hosts if v.name == vhost)


def test_domains_as_istio_generates_them():
    """FQDN, absolute FQDN, the names that resolve from the client's namespace, ClusterIP;
    without ports, the route config ignoring the port (httproute.go)."""
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    assert _domains(cfg, "80", "web.demo.svc.cluster.local:80") == (
        "web.demo.svc.cluster.local", "web.demo.svc.cluster.local.", "web",
        "web.demo.svc", "web.demo", "10.96.0.20")
    assert cfg.route_config("80").ignore_port_in_host_matching


def test_domains_from_another_namespace_have_no_short_name():
    extra = """
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: other}
spec: {nodeName: n1, containers: [{name: c, image: curl}]}
status: {podIP: 10.244.0.30}
"""
    c = tiny(extra)
    cfg = sidecar_config(c, c.pod("other", "far"))
    assert _domains(cfg, "80", "web.demo.svc.cluster.local:80") == (
        "web.demo.svc.cluster.local", "web.demo.svc.cluster.local.", "web.demo",
        "web.demo.svc", "10.96.0.20")


def test_domains_with_ports_as_older_istio_listed_them():
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"),
                         options=MeshOptions(port_in_domains=True, absolute_fqdn=False))
    assert _domains(cfg, "80", "web.demo.svc.cluster.local:80") == (
        "web.demo.svc.cluster.local", "web.demo.svc.cluster.local:80", "web", "web:80",
        "web.demo.svc", "web.demo.svc:80", "web.demo", "web.demo:80", "10.96.0.20",
        "10.96.0.20:80")
    assert not cfg.route_config("80").ignore_port_in_host_matching


# ---------------------------------------------------------------- clusters and endpoints


@NEEDS_BOOKINFO
def test_bookinfo_cluster_names_and_destination_rules(tmp_path):
    c = bookinfo(tmp_path, "destination-rule-all.yaml")
    cfg = sidecar_config(c, pod_named(c, "productpage"))
    reviews = sorted(x.name for x in cfg.clusters if x.fqdn.startswith("reviews."))
    assert reviews == [
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
        "outbound|9080||reviews.default.svc.cluster.local",
    ]
    assert {x.destination_rule for x in cfg.clusters if x.fqdn.startswith("reviews.")} == \
        {"default/reviews"}
    assert cfg.cluster("inbound|9080||").type == "ORIGINAL_DST"
    assert cfg.cluster("outbound|9080|v1|reviews.default.svc.cluster.local").sni == \
        "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
    for static in ("BlackHoleCluster", "PassthroughCluster", "InboundPassthroughCluster"):
        assert cfg.cluster(static) is not None


@NEEDS_BOOKINFO
@pytest.mark.parametrize("subset", ["v1", "v2", "v3"])
def test_subset_endpoints_are_the_pods_with_the_subset_labels(tmp_path, subset):
    c = bookinfo(tmp_path, "destination-rule-all.yaml")
    cfg = sidecar_config(c, pod_named(c, "productpage"))
    want = {(p.ip, 9080) for p in c.pods_in("default")
            if p.labels.get("app") == "reviews" and p.labels.get("version") == subset}
    got = cfg.cluster(f"outbound|9080|{subset}|reviews.default.svc.cluster.local").endpoints
    assert {(e.address, e.port) for e in got} == want and len(want) == 1
    every = cfg.cluster("outbound|9080||reviews.default.svc.cluster.local").endpoints
    assert len(every) == 3 and all(e.health == "HEALTHY" for e in every)


def test_auto_mtls_only_to_pods_with_a_sidecar():
    c = tiny()
    cfg = sidecar_config(c, c.pod("demo", "client"))
    assert all(e.mtls for e in cfg.cluster("outbound|80||web.demo.svc.cluster.local").endpoints)
    assert not any(e.mtls for e in
                   cfg.cluster("outbound|6379||redis.db.svc.cluster.local").endpoints)


@pytest.mark.parametrize(("mode", "mtls"), [("DISABLE", False), ("ISTIO_MUTUAL", True),
                                            ("SIMPLE", False)])
def test_destination_rule_tls_overrides_auto_mtls(mode, mtls):
    dr = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: redis, namespace: db}}
spec: {{host: redis.db.svc.cluster.local, trafficPolicy: {{tls: {{mode: {mode}}}}}}}
"""
    c = tiny(dr)
    cfg = sidecar_config(c, c.pod("demo", "client"))
    cluster = cfg.cluster("outbound|6379||redis.db.svc.cluster.local")
    assert cluster.tls_mode == mode
    assert [e.mtls for e in cluster.endpoints] == [mtls]


def test_peer_authentication_disable_turns_auto_mtls_off():
    pa = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: demo}
spec: {selector: {matchLabels: {version: v2}}, mtls: {mode: DISABLE}}
"""
    c = tiny(pa)
    cfg = sidecar_config(c, c.pod("demo", "client"))
    eps = cfg.cluster("outbound|80||web.demo.svc.cluster.local").endpoints
    assert {e.pod: e.mtls for e in eps} == {"demo/web-v1": True, "demo/web-v2": False}


def test_destination_rule_circuit_breakers_and_outlier_detection():
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: redis, namespace: db}
spec:
  host: redis.db.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 100, connectTimeout: 3s},
                     http: {http1MaxPendingRequests: 64}}
    outlierDetection: {consecutive5xxErrors: 7, maxEjectionPercent: 50}
"""
    c = tiny(dr)
    cluster = sidecar_config(c, c.pod("demo", "client")).cluster(
        "outbound|6379||redis.db.svc.cluster.local")
    pool = cluster.connection_pool
    assert (pool.max_connections, pool.connect_timeout, pool.http1_max_pending_requests,
            pool.http2_max_requests) == (100, "3s", 64, 2**32 - 1)
    od = cluster.outlier_detection
    assert (od.consecutive_5xx_errors, od.max_ejection_percent, od.interval,
            od.base_ejection_time) == (7, 50, "10s", "30s")
    # Without a DestinationRule there is no outlier detection (cluster_traffic_policy.go).
    assert sidecar_config(c, c.pod("demo", "client")).cluster(
        "outbound|80||web.demo.svc.cluster.local").outlier_detection is None


# ---------------------------------------------------------------- errors


def test_a_pod_without_a_sidecar_is_an_input_error():
    c = tiny()
    with pytest.raises(InputError, match="no Istio sidecar") as err:
        sidecar_config(c, c.pod("db", "redis"))
    assert "Pod db/redis" in str(err.value)


@pytest.mark.parametrize(("spec", "field"), [
    ("{hosts: [web], http: [{route: [{destination: {subset: v1}}]}]}",
     "spec.http[0].route[0].destination.host"),
    ("{hosts: [web], http: [{timeout: soon, route: [{destination: {host: web}}]}]}",
     "spec.http[0].timeout"),
    ("{hosts: [web], http: [{match: [{uri: {exact: /a, prefix: /b}}], "
     "route: [{destination: {host: web}}]}]}", "spec.http[0].match[0].uri"),
    ("{http: [{route: [{destination: {host: web}}]}]}", "spec.hosts"),
])
def test_invalid_virtual_service_names_the_field(spec, field):
    vs = f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n" \
         f"metadata: {{name: bad, namespace: demo}}\nspec: {spec}\n"
    c = tiny(vs)
    with pytest.raises(InputError) as err:
        sidecar_config(c, c.pod("demo", "client"))
    assert "VirtualService demo/bad" in str(err.value)
    assert err.value.field == field
