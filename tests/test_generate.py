"""Tests for the synthetic cluster generator: exact sizes, determinism and API validity."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from netsim.generate import config as gen_config
from netsim.generate import generate
from netsim.generate import services as gen_services

ROOT = Path(__file__).resolve().parents[1]

SIZES = {
    "tiny": {"nodes": 1, "namespaces": 1, "pods": 5, "services": 1, "policies": 0},
    "small": {"nodes": 3, "namespaces": 2, "pods": 20, "services": 6, "policies": 7, "seed": 1},
    "service-heavy": {"nodes": 2, "namespaces": 3, "pods": 6, "services": 15, "policies": 3},
    "pod-heavy": {"nodes": 40, "namespaces": 5, "pods": 3000, "services": 10, "policies": 40},
    "medium": {
        "nodes": 200,
        "namespaces": 30,
        "pods": 4000,
        "services": 400,
        "policies": 150,
        "seed": 7,
    },
}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
PROTOCOLS = {"TCP", "UDP", "SCTP"}
LB_NETS = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24")]


@functools.cache
def cluster(size: str) -> dict:
    """Generate each named size once per test session (outputs are treated read-only)."""
    return generate(**SIZES[size])


def of_kind(doc: dict, kind: str) -> list[dict]:
    return [item for item in doc["items"] if item["kind"] == kind]


def workloads(doc: dict) -> list[dict]:
    return [i for i in doc["items"] if i["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """Kubernetes toleration matching (ToleratesTaint)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def eligible(pod_spec: dict, node: dict) -> bool:
    """Whether a DaemonSet pod would run on the node: nodeSelector and NoSchedule taints."""
    labels = node["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in pod_spec.get("nodeSelector", {}).items()):
        return False
    taints = node["spec"].get("taints", [])
    return all(tolerates(pod_spec.get("tolerations", []), t) for t in taints)


def expanded_pods(doc: dict) -> int:
    nodes = of_kind(doc, "Node")
    total = 0
    for w in workloads(doc):
        if w["kind"] == "DaemonSet":
            total += sum(eligible(w["spec"]["template"]["spec"], n) for n in nodes)
        else:
            total += w["spec"]["replicas"]
    return total


def container_ports(workload: dict) -> list[dict]:
    return [p for c in workload["spec"]["template"]["spec"]["containers"] for p in c["ports"]]


def selected(doc: dict, namespace: str, selector: dict[str, str]) -> list[dict]:
    return [
        w
        for w in workloads(doc)
        if w["metadata"]["namespace"] == namespace
        and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    ]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_json() -> None:
    args = SIZES["medium"]
    assert json.dumps(generate(**args)) == json.dumps(generate(**args))


def test_different_seed_gives_different_json() -> None:
    args = dict(SIZES["small"])
    first = json.dumps(generate(**args))
    args["seed"] = 2
    assert json.dumps(generate(**args)) != first


def test_output_does_not_depend_on_hash_seed() -> None:
    code = (
        "import hashlib, json; from netsim.generate import generate; "
        f"print(hashlib.sha256(json.dumps(generate(**{SIZES['medium']!r})).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    local = hashlib.sha256(json.dumps(cluster("medium")).encode()).hexdigest()
    assert digests == {local}


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", SIZES)
def test_exact_counts(size: str) -> None:
    doc, args = cluster(size), SIZES[size]
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    assert doc["metadata"] == {"resourceVersion": ""}
    assert doc["items"][0]["kind"] == "NetsimConfig"
    counts = Counter(i["kind"] for i in doc["items"])
    assert counts["NetsimConfig"] == 1
    assert counts["Node"] == args["nodes"]
    assert counts["Namespace"] == args["namespaces"] + 1  # plus kube-system
    assert counts["Service"] == args["services"]
    assert counts["NetworkPolicy"] == args["policies"]
    assert expanded_pods(doc) == args["pods"]


@pytest.mark.parametrize("size", SIZES)
def test_kube_system(size: str) -> None:
    doc = cluster(size)
    coredns = [w for w in workloads(doc) if w["metadata"]["name"] == "coredns"]
    assert [w["spec"]["replicas"] for w in coredns] == [2]
    assert coredns[0]["metadata"]["namespace"] == "kube-system"
    dns = [s for s in of_kind(doc, "Service") if s["metadata"]["name"] == "kube-dns"]
    assert dns[0]["metadata"]["namespace"] == "kube-system"
    assert dns[0]["spec"]["clusterIP"] == "10.96.0.10"
    assert "kube-system" in {n["metadata"]["name"] for n in of_kind(doc, "Namespace")}


@pytest.mark.parametrize(
    "bad",
    [
        {"nodes": 0},
        {"pods": 1},
        {"services": 0},
        {"policies": -1},
        {"namespaces": 0},
        {"pods": 2, "services": 3},
        {"nodes": 2**20},
    ],
)
def test_rejects_impossible_sizes(bad: dict[str, int]) -> None:
    args = {**SIZES["tiny"], **bad}
    with pytest.raises(ValueError):
        generate(**args)


# --------------------------------------------------------------------------- names and labels


def check_labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or DNS1123_SUBDOMAIN.match(prefix), key
        assert len(name) <= 63 and LABEL_NAME.match(name), key
        assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)


@pytest.mark.parametrize("size", SIZES)
def test_names_valid_and_unique(size: str) -> None:
    doc = cluster(size)
    seen: Counter[tuple[str, str, str]] = Counter()
    for item in doc["items"]:
        meta = item["metadata"]
        name, kind = meta["name"], item["kind"]
        seen[(kind, meta.get("namespace", ""), name)] += 1
        if kind in ("Namespace", "Service"):
            pattern = DNS1035_LABEL if kind == "Service" else DNS1123_LABEL
            assert len(name) <= 63 and pattern.match(name), (kind, name)
        else:
            assert len(name) <= 253 and DNS1123_SUBDOMAIN.match(name), (kind, name)
        check_labels(meta.get("labels", {}))
    assert [k for k, n in seen.items() if n > 1] == []
    # Deployment and StatefulSet pods would collide if their names did.
    apps = Counter((w["metadata"]["namespace"], w["metadata"]["name"]) for w in workloads(doc))
    assert [k for k, n in apps.items() if n > 1] == []


@pytest.mark.parametrize("size", SIZES)
def test_container_ports_valid(size: str) -> None:
    for w in workloads(cluster(size)):
        ports = container_ports(w)
        names = [p["name"] for p in ports]
        assert len(names) == len(set(names))
        assert len({(p["containerPort"], p["protocol"]) for p in ports}) == len(ports)
        for p in ports:
            name = p["name"]
            assert len(name) <= 15 and IANA_SVC_NAME.match(name) and "--" not in name
            assert re.search("[a-z]", name) and p["protocol"] in PROTOCOLS
            assert 1 <= p["containerPort"] <= 65535
        template = w["spec"]["template"]
        check_labels(template["metadata"]["labels"])
        assert (
            w["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        )
        assert "nodeName" not in template["spec"] and "status" not in w


# --------------------------------------------------------------------------- workloads


def test_app_labels_and_replica_tail() -> None:
    doc = cluster("medium")
    apps = [w for w in workloads(doc) if w["metadata"]["namespace"].startswith("ns-")]
    for w in apps:
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert {"app", "app.kubernetes.io/name", "tier", "version"} <= labels.keys()
        assert labels["tier"] in {"frontend", "backend", "db", "cache"}
        assert 1 <= len(container_ports(w)) <= 3
    replicas = [w["spec"]["replicas"] for w in apps]
    assert sum(r <= 3 for r in replicas) > len(replicas) / 3
    assert any(r >= 10 for r in replicas)
    kinds = Counter(w["kind"] for w in apps)
    assert 0.02 < kinds["StatefulSet"] / len(apps) < 0.08
    protocols = {p["protocol"] for w in apps for p in container_ports(w)}
    assert protocols == {"TCP", "UDP"}


def test_gpu_workloads_target_the_gpu_pool() -> None:
    doc = cluster("medium")
    gpu_nodes = [n for n in of_kind(doc, "Node") if n["metadata"]["labels"].get("pool") == "gpu"]
    assert len(gpu_nodes) == 10
    gpu_apps = [
        w
        for w in workloads(doc)
        if w["spec"]["template"]["spec"].get("nodeSelector", {}).get("pool") == "gpu"
    ]
    assert any(w["kind"] == "Deployment" for w in gpu_apps)
    for w in gpu_apps:
        assert all(eligible(w["spec"]["template"]["spec"], n) for n in gpu_nodes)


def test_statefulsets_have_governing_headless_service() -> None:
    doc = cluster("medium")
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in of_kind(doc, "Service")
    }
    statefulsets = of_kind(doc, "StatefulSet")
    assert statefulsets
    for sts in statefulsets:
        svc = services[(sts["metadata"]["namespace"], sts["spec"]["serviceName"])]
        assert svc["spec"]["clusterIP"] == "None"
        assert (
            svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
        )


# --------------------------------------------------------------------------- nodes and config


def test_nodes() -> None:
    doc = cluster("medium")
    nodes = of_kind(doc, "Node")
    assert [n["metadata"]["name"] for n in nodes] == [f"node-{i:05d}" for i in range(1, 201)]
    control = [
        n for n in nodes if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]
    ]
    assert len(control) == 3
    for n in control:
        assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in n[
            "spec"
        ]["taints"]
    zones = Counter(n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes)
    assert len(zones) == 3
    for i, n in enumerate(nodes, start=1):
        assert "podCIDR" not in n["spec"]
        labels = n["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == n["metadata"]["name"]
        assert labels["kubernetes.io/os"] == "linux"
        assert "node.kubernetes.io/instance-type" in labels
        addresses = {a["type"]: a["address"] for a in n["status"]["addresses"]}
        expected = ipaddress.IPv4Address("172.16.0.0") + i + 10
        assert addresses == {"InternalIP": str(expected), "Hostname": n["metadata"]["name"]}
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        assert n["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
        if labels.get("pool") == "gpu":
            assert n["spec"]["taints"] == [
                {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
            ]


def test_namespaces() -> None:
    doc = cluster("medium")
    spaces = [n for n in of_kind(doc, "Namespace") if n["metadata"]["name"] != "kube-system"]
    assert [n["metadata"]["name"] for n in spaces] == [f"ns-{i:04d}" for i in range(1, 31)]
    for n in spaces:
        labels = n["metadata"]["labels"]
        assert labels["kubernetes.io/metadata.name"] == n["metadata"]["name"]
        assert labels["env"] in {"prod", "staging", "dev"} and labels["team"]


@pytest.mark.parametrize("size", SIZES)
def test_config_pools(size: str) -> None:
    doc, args = cluster(size), SIZES[size]
    config = doc["items"][0]
    assert config["apiVersion"] == "netsim/v1alpha1"
    assert DNS1123_SUBDOMAIN.match(config["metadata"]["name"])
    spec = config["spec"]
    assert spec["cni"] == {"name": "calico", "calico": {"encapsulation": "VXLAN"}}
    assert spec["proxy"] == {"mode": "iptables"}
    [pods] = [ipaddress.ip_network(c) for c in spec["podCIDRs"]]
    [services] = [ipaddress.ip_network(c) for c in spec["serviceCIDRs"]]
    assert services == ipaddress.ip_network("10.96.0.0/12")
    assert pods.subnet_of(ipaddress.ip_network("10.128.0.0/9"))
    assert not pods.overlaps(services)
    # At least two /26 blocks per node, and room for every pod.
    blocks = 2 ** (26 - pods.prefixlen)
    assert blocks >= 2 * args["nodes"] and blocks * 64 >= args["pods"]


def test_pools_at_kubernetes_limits() -> None:
    """5,000 nodes of ~30-45 pods need one /26 each (x2 slack): a /12; 110 pods need a /11."""
    assert gen_config._config(5000, 150000, 10000, 1, 45)["spec"]["podCIDRs"] == ["10.128.0.0/12"]
    assert gen_config._config(5000, 550000, 10000, 1, 110)["spec"]["podCIDRs"] == ["10.128.0.0/11"]
    assert gen_config._config(10, 10, 1_500_000, 0, 10)["spec"]["serviceCIDRs"] == ["10.96.0.0/11"]


# --------------------------------------------------------------------------- services


@pytest.mark.parametrize("size", SIZES)
def test_service_targets_exist(size: str) -> None:
    doc = cluster(size)
    for svc in of_kind(doc, "Service"):
        ns, spec = svc["metadata"]["namespace"], svc["spec"]
        targets = selected(doc, ns, spec["selector"])
        assert len(targets) == 1, svc["metadata"]
        ports = container_ports(targets[0])
        by_name = {p["name"]: p for p in ports}
        names = [p["name"] for p in spec["ports"]]
        assert len(names) == len(set(names))
        assert len({(p["port"], p["protocol"]) for p in spec["ports"]}) == len(names)
        for p in spec["ports"]:
            assert "nodePort" not in p and DNS1123_LABEL.match(p["name"])
            target = p["targetPort"]
            if isinstance(target, str):
                assert target in by_name, (svc["metadata"], target)
                assert by_name[target]["protocol"] == p["protocol"]
            else:
                assert (target, p["protocol"]) in {
                    (c["containerPort"], c["protocol"]) for c in ports
                }


@pytest.mark.parametrize("size", SIZES)
def test_service_types_and_addresses(size: str) -> None:
    doc = cluster(size)
    lb_ips = []
    for svc in of_kind(doc, "Service"):
        spec = svc["spec"]
        assert spec["type"] in {"ClusterIP", "NodePort", "LoadBalancer"}
        if svc["metadata"]["name"] != "kube-dns":
            assert spec.get("clusterIP", "None") == "None"
        if spec.get("clusterIP") == "None":
            assert spec["type"] == "ClusterIP" and "sessionAffinity" not in spec
        if "externalTrafficPolicy" in spec:
            assert spec["type"] in {"NodePort", "LoadBalancer"}
        if spec["type"] == "LoadBalancer":
            [ingress] = svc["status"]["loadBalancer"]["ingress"]
            lb_ips.append(ipaddress.ip_address(ingress["ip"]))
        else:
            assert "status" not in svc
    assert len(lb_ips) == len(set(lb_ips))
    assert all(any(ip in net for net in LB_NETS) for ip in lb_ips)


def test_service_mix() -> None:
    doc = cluster("medium")
    kinds = Counter(
        "Headless" if s["spec"].get("clusterIP") == "None" else s["spec"]["type"]
        for s in of_kind(doc, "Service")
    )
    total = sum(kinds.values())
    assert abs(kinds["ClusterIP"] / total - 0.80) < 0.03
    assert abs(kinds["Headless"] / total - 0.10) < 0.02
    assert abs(kinds["NodePort"] / total - 0.07) < 0.02
    assert abs(kinds["LoadBalancer"] / total - 0.03) < 0.02
    specs = [s["spec"] for s in of_kind(doc, "Service")]
    assert any(s.get("sessionAffinity") == "ClientIP" for s in specs)
    assert any(s.get("externalTrafficPolicy") == "Local" for s in specs)
    assert any(len(s["ports"]) > 1 for s in specs)
    per_app = Counter(tuple(sorted(s["selector"].items())) for s in specs)
    assert max(per_app.values()) >= 2


def test_node_port_budget_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen_services, "NODE_PORT_BUDGET", 5)
    args = SIZES["medium"]
    doc = generate(**args)
    used = 0
    for svc in of_kind(doc, "Service"):
        spec = svc["spec"]
        if spec["type"] in ("NodePort", "LoadBalancer"):
            used += len(spec["ports"])
            used += spec["type"] == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
    assert used <= 5
    assert len(of_kind(doc, "Service")) == args["services"]


# --------------------------------------------------------------------------- network policies


def check_selector(selector: dict[str, Any]) -> None:
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    check_labels(selector.get("matchLabels", {}))
    for expr in selector.get("matchExpressions", []):
        assert LABEL_NAME.match(expr["key"].rpartition("/")[2])
        if expr["operator"] in ("In", "NotIn"):
            assert expr["values"]
        else:
            assert expr["operator"] in ("Exists", "DoesNotExist") and not expr.get("values")


def check_peer(peer: dict[str, Any]) -> None:
    assert peer, "empty peer"
    assert set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}
    if "ipBlock" in peer:
        assert set(peer) == {"ipBlock"}, "ipBlock combined with selectors"
        cidr = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        for text in peer["ipBlock"].get("except", []):
            inner = ipaddress.ip_network(text)
            assert inner.subnet_of(cidr) and inner != cidr, (text, cidr)
    for key in ("podSelector", "namespaceSelector"):
        if key in peer:
            check_selector(peer[key])


def check_policy_port(port: dict[str, Any]) -> None:
    assert port.get("protocol", "TCP") in PROTOCOLS
    value = port.get("port")
    if isinstance(value, str):
        assert len(value) <= 15 and IANA_SVC_NAME.match(value)
        assert "endPort" not in port
    elif value is not None:
        assert 1 <= value <= 65535
        assert port.get("endPort", value) >= value and port.get("endPort", value) <= 65535


@pytest.mark.parametrize("size", SIZES)
def test_network_policies_valid(size: str) -> None:
    for policy in of_kind(cluster(size), "NetworkPolicy"):
        spec = policy["spec"]
        check_selector(spec["podSelector"])
        types = spec["policyTypes"]
        assert types and len(types) == len(set(types)) and set(types) <= {"Ingress", "Egress"}
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            rules = spec.get(direction, [])
            if rules:
                assert direction.capitalize() in types
            for rule in rules:
                for peer in rule.get(peers_key, []):
                    check_peer(peer)
                for port in rule.get("ports", []):
                    check_policy_port(port)


def test_policy_mix_and_named_ports() -> None:
    doc = cluster("medium")
    policies = of_kind(doc, "NetworkPolicy")
    text = json.dumps(policies)
    for feature in (
        '"endPort"',
        '"except"',
        '"NotIn"',
        '"Exists"',
        '"In"',
        '"Egress"',
        '"namespaceSelector"',
        '"port": 53',
    ):
        assert feature in text, feature
    names = Counter(p["metadata"]["name"] for p in policies)
    assert names["default-deny-ingress"] + names["default-deny-all"] > 0
    assert names["allow-same-namespace"] > 0 and names["allow-dns-egress"] > 0
    assert any(
        "namespaceSelector" in peer and "podSelector" in peer
        for p in policies
        for rule in p["spec"].get("ingress", [])
        for peer in rule["from"]
    )
    for p in policies:
        app = p["spec"]["podSelector"].get("matchLabels", {}).get("app")
        if not app:
            continue
        [target] = selected(doc, p["metadata"]["namespace"], {"app": app})
        port_names = {c["name"] for c in container_ports(target)}
        for rule in p["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if isinstance(port["port"], str):
                    assert port["port"] in port_names


def test_generation_is_fast() -> None:
    """Generation is linear in objects, not pods: 40k pods take a fraction of a second."""
    start = time.perf_counter()
    generate(nodes=2000, namespaces=200, pods=40000, services=4000, policies=400, seed=3)
    assert time.perf_counter() - start < 2.0
