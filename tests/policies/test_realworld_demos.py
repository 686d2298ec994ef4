"""Two NetworkPolicy walkthroughs, loaded from their published manifests and checked step by step.

Calico "stars" demo (tigera/docs calico/network-policy/get-started/kubernetes-policy/
kubernetes-demo.mdx), manifests in shared/realworld/calico-stars/. What the page states:

1. After 00..04 are created every pod has full connectivity; the management UI (a collector
   in namespace management-ui) draws backend "B", frontend "F" and client "C".
2. `default-deny.yaml` is created with `-n stars` and with `-n client`: all access to frontend,
   backend and client is cut, so the UI cannot reach them and they vanish from it.
3. `allow-ui.yaml` (stars) and `allow-ui-client.yaml` (client) let the UI back in; the
   services still cannot reach one another.
4. `backend-policy.yaml`: frontend -> backend works, on TCP 6379 only; backend -> frontend
   does not; client reaches neither.
5. `frontend-policy.yaml`: client -> frontend works (TCP 80), client -> backend still does
   not, neither frontend nor backend can open connections to client, frontend -> backend
   still works.

Labels and ports come from the manifests: pods carry `role: backend|frontend|client|
management-ui`; namespaces management-ui and client carry `role: <name>`, stars has no role
label; the probes serve backend 6379, frontend 80, client 9000 and the UI 9001.

Kubernetes "Declare Network Policy" task (kubernetes/website content/en/docs/tasks/
administer-cluster/declare-network-policy.md) with the stored examples file
shared/realworld/k8s-declare-network-policy/nginx-policy.yaml: an nginx Deployment and a
Service on port 80 in `default`; a busybox pod reaches it; after NetworkPolicy `access-nginx`
only pods labelled `access: "true"` do (an unlabelled busybox times out).

Neither demo ships cluster DNS, so netsim adds kubeadm's CoreDNS addon (kube-system/kube-dns
and two kube-system/coredns pods), as a real cluster running them has. The truth tables below
cover the demo's own namespaces; the addon's pods are checked separately, and so is DNS: every
stars policy is ingress-only, so each demo pod can still resolve names at every step.
"""

from __future__ import annotations

import copy
import io
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from netsim.cluster import Cluster, load, load_inputs
from netsim.model import Pod
from netsim.reach import explain, matrix
from netsim.reach_dns import dns_reach
from netsim.sources import RawDoc, read_inputs
from policies.engine import PolicySet, Verdict, evaluate

REALWORLD = Path(__file__).resolve().parents[3] / "shared" / "realworld"
STARS = REALWORLD / "calico-stars"
NGINX_POLICY = REALWORLD / "k8s-declare-network-policy" / "nginx-policy.yaml"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not present (shared/ sits beside the checkout in CI)")


# ------------------------------------------------------------------ calico stars

APPS = ["00-namespace.yaml", "01-management-ui.yaml", "02-backend.yaml", "03-frontend.yaml",
        "04-client.yaml"]
# The page's steps after the apps, each adding to the one before (kubectl create, in order).
STEPS = ["apps", "default-deny", "allow-ui", "backend-policy", "frontend-policy"]
ADDED = {
    "allow-ui": ["allow-ui.yaml", "allow-ui-client.yaml"],
    "backend-policy": ["backend-policy.yaml"],
    "frontend-policy": ["frontend-policy.yaml"],
}
# Each probe's serving port (containerPort and Service port in 01..04), plus one nobody serves.
SERVES = {"ui": 9001, "backend": 6379, "frontend": 80, "client": 9000}
PORTS = [*sorted(SERVES.values()), 8080]
ROLES = {"management-ui": "ui", "backend": "backend", "frontend": "frontend",
         "client": "client"}
NAMESPACE = {"ui": "management-ui", "backend": "stars", "frontend": "stars", "client": "client"}
ISOLATED = ("backend", "frontend", "client")  # the pods of stars and client
STARS_NAMESPACES = {"management-ui", "stars", "client"}  # the demo's own; not kube-system


def _read(name: str) -> list[RawDoc]:
    (docs,) = read_inputs([str(STARS / name)])
    return docs


def _in_namespace(docs: list[RawDoc], namespace: str) -> list[RawDoc]:
    """`kubectl create -n <namespace> -f file` for a file whose objects name no namespace."""
    out = []
    for doc in docs:
        data = copy.deepcopy(doc.data)
        assert "namespace" not in data["metadata"]  # else kubectl -n would refuse a mismatch
        data["metadata"]["namespace"] = namespace
        out.append(replace(doc, data=data))
    return out


def stars_inputs(step: str) -> list[list[RawDoc]]:
    """The inputs applied up to and including `step`, one per `kubectl create`."""
    inputs = [_read(name) for name in APPS]
    for s in STEPS[1:STEPS.index(step) + 1]:
        if s == "default-deny":
            # default-deny.yaml has no metadata.namespace; the page creates it twice, with
            # `-n stars` and `-n client`. We emulate -n by setting metadata.namespace on a copy
            # of that one document here; the published file itself is read unchanged.
            deny = _read("default-deny.yaml")
            inputs += [_in_namespace(deny, "stars"), _in_namespace(deny, "client")]
        else:
            inputs += [_read(name) for name in ADDED[s]]
    return inputs


@pytest.fixture(scope="module")
def stars():
    """stars(step): the cluster after the page's steps up to `step` (loaded once each)."""
    _need(STARS)
    clusters: dict[str, Cluster] = {}

    def at(step: str) -> Cluster:
        if step not in clusters:
            clusters[step] = load_inputs(stars_inputs(step))
        return clusters[step]

    return at


def role_of(pod: Pod) -> str:
    return ROLES[pod.labels["role"]]


def demo_pods(cluster: Cluster) -> list[Pod]:
    """The demo's pods, without the CoreDNS addon netsim adds in kube-system."""
    return [p for p in cluster.pods if p.namespace in STARS_NAMESPACES]


def stars_pod(cluster: Cluster, who: str) -> Pod:
    (found,) = [p for p in demo_pods(cluster) if role_of(p) == who]
    assert found.namespace == NAMESPACE[who]
    return found


def stars_expected(step: str, src: str, dst: str, port: int, protocol: str) -> bool:
    """What the page says (and the manifests imply) for src -> dst:port at `step`."""
    done = STEPS.index(step)
    if src == dst or dst not in ISOLATED or done < STEPS.index("default-deny"):
        return True  # the UI's namespace gets no policy; nothing isolates before step 2
    tcp = protocol == "TCP"
    if done >= STEPS.index("allow-ui") and src == "ui":
        return True  # allow-ui rules have no ports: every port and protocol
    if done >= STEPS.index("backend-policy") and (src, dst) == ("frontend", "backend"):
        return tcp and port == 6379
    if done >= STEPS.index("frontend-policy") and (src, dst) == ("client", "frontend"):
        return tcp and port == 80
    return False


def verdict(cluster: Cluster, src: str, dst: str, port: int, protocol: str = "TCP") -> Verdict:
    return explain(cluster, stars_pod(cluster, src), stars_pod(cluster, dst), port, protocol)


def allowing_rules(v: Verdict) -> set[str]:
    return {f"{m.policy.removeprefix('NetworkPolicy ')} {m.rule}" for m in v.ingress.matches}


def test_stars_manifests_as_the_page_describes(stars) -> None:
    c = stars("apps")
    assert sorted(p.key.rsplit("-", 2)[0] for p in demo_pods(c)) == [
        "client/client", "management-ui/management-ui", "stars/backend", "stars/frontend"]
    # The demo ships no cluster DNS: the rest is kubeadm's CoreDNS addon (2 replicas).
    assert sorted(p.key.rsplit("-", 2)[0] for p in c.pods if p not in demo_pods(c)) == [
        "kube-system/coredns", "kube-system/coredns"]
    assert any("no cluster DNS" in w for w in c.warnings)
    assert all(p.phase == "Running" and p.ip for p in c.pods)
    labels = {n.name: n.labels.get("role") for n in c.namespaces}
    assert (labels["management-ui"], labels["client"], labels["stars"]) == (
        "management-ui", "client", None)
    # Each Service fronts its own probe on the port it serves.
    for who, port in SERVES.items():
        name = "management-ui" if who == "ui" else who
        svc = c.service(NAMESPACE[who], name)
        assert svc is not None and [p.port for p in svc.ports] == [port]
        ips = {e for s in c.slices_for(svc) for ep in s.endpoints for e in ep.addresses}
        assert ips == {stars_pod(c, who).ip}
    assert c.service("management-ui", "management-ui").ports[0].node_port == 30002


@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("step", STEPS)
def test_stars_matrix_at_each_step(stars, step: str, port: int, protocol: str) -> None:
    c = stars(step)
    m = matrix(c, port, protocol, namespaces=STARS_NAMESPACES)
    who = [role_of(p) for p in m.pods]
    assert sorted(who) == ["backend", "client", "frontend", "ui"]
    want = np.array([[stars_expected(step, s, d, port, protocol) for d in who] for s in who])
    got = m.dense()
    wrong = [f"{s} -> {d}: got {bool(got[i, j])}" for i, s in enumerate(who)
             for j, d in enumerate(who) if bool(got[i, j]) != bool(want[i, j])]
    assert not wrong, f"{step} {port}/{protocol}"


def test_stars_step1_full_connectivity(stars) -> None:
    c = stars("apps")
    for port in PORTS:
        assert matrix(c, port, "TCP").dense().all()
    assert not c.network_policies


def test_stars_step2_default_deny_hides_everything_from_the_ui(stars) -> None:
    c = stars("default-deny")
    assert {(p.namespace, p.name) for p in c.network_policies} == {
        ("stars", "default-deny"), ("client", "default-deny")}
    for dst in ISOLATED:
        for src in ("ui", *(s for s in ISOLATED if s != dst)):
            v = verdict(c, src, dst, SERVES[dst])
            assert not v.allowed, (src, dst)
            assert v.egress.allowed  # egress is never restricted in this demo
            assert v.ingress.decided_by == "networkpolicy"
            assert v.ingress.isolating == (f"NetworkPolicy {NAMESPACE[dst]}/default-deny",)
            assert not v.ingress.matches
    # Nothing isolates the UI's own namespace: the probes can still reach it.
    assert verdict(c, "backend", "ui", 9001).ingress.decided_by == "default"


def test_stars_step3_ui_sees_the_services_again_but_they_stay_apart(stars) -> None:
    c = stars("allow-ui")
    for dst in ISOLATED:
        v = verdict(c, "ui", dst, SERVES[dst])
        assert v.allowed
        assert allowing_rules(v) == {f"{NAMESPACE[dst]}/allow-ui ingress[0]"}
    for src in ISOLATED:
        for dst in ISOLATED:
            if src != dst:
                assert not verdict(c, src, dst, SERVES[dst]).allowed, (src, dst)


def test_stars_step4_backend_policy(stars) -> None:
    c = stars("backend-policy")
    v = verdict(c, "frontend", "backend", 6379)
    assert v.allowed and allowing_rules(v) == {"stars/backend-policy ingress[0]"}
    # "on TCP port 6379 only"
    for port, protocol in [(6380, "TCP"), (80, "TCP"), (9000, "TCP"), (6379, "UDP")]:
        v = verdict(c, "frontend", "backend", port, protocol)
        assert not v.allowed, (port, protocol)
        assert set(v.ingress.isolating) == {"NetworkPolicy stars/default-deny",
                                            "NetworkPolicy stars/allow-ui",
                                            "NetworkPolicy stars/backend-policy"}
    # "The backend cannot access the frontend at all."
    assert not any(verdict(c, "backend", "frontend", p).allowed for p in PORTS)
    # "The client cannot access the frontend, nor can it access the backend."
    assert not any(verdict(c, "client", d, p).allowed for d in ("frontend", "backend")
                   for p in PORTS)
    # The UI's allow-ui rule still applies next to backend-policy.
    assert verdict(c, "ui", "backend", 6379).allowed


def test_stars_step5_frontend_policy(stars) -> None:
    c = stars("frontend-policy")
    v = verdict(c, "client", "frontend", 80)
    assert v.allowed and allowing_rules(v) == {"stars/frontend-policy ingress[0]"}
    assert "namespaceSelector" in v.ingress.matches[0].peer
    assert not verdict(c, "client", "frontend", 6379).allowed
    assert not verdict(c, "client", "frontend", 80, "UDP").allowed
    # "... but not the backend."
    assert not any(verdict(c, "client", "backend", p).allowed for p in PORTS)
    # "Neither the frontend nor the backend can initiate connections to the client."
    assert not any(verdict(c, s, "client", p).allowed for s in ("frontend", "backend")
                   for p in PORTS)
    # "The frontend can still access the backend."
    assert verdict(c, "frontend", "backend", 6379).allowed
    # stars has no role label, so frontend-policy's namespaceSelector does not admit backend.
    assert not verdict(c, "backend", "frontend", 80).allowed


def test_stars_ui_view_after_each_step(stars) -> None:
    """Which services the UI can poll on their serving ports, and which edges it draws."""
    seen, edges = {}, {}
    for step in STEPS:
        c = stars(step)
        seen[step] = {d for d in ISOLATED if verdict(c, "ui", d, SERVES[d]).allowed}
        edges[step] = {(s, d) for s in ISOLATED for d in ISOLATED
                       if s != d and verdict(c, s, d, SERVES[d]).allowed}
    every = {(s, d) for s in ISOLATED for d in ISOLATED if s != d}
    assert seen == {"apps": set(ISOLATED), "default-deny": set(), "allow-ui": set(ISOLATED),
                    "backend-policy": set(ISOLATED), "frontend-policy": set(ISOLATED)}
    assert edges == {"apps": every, "default-deny": set(), "allow-ui": set(),
                     "backend-policy": {("frontend", "backend")},
                     "frontend-policy": {("frontend", "backend"), ("client", "frontend")}}


@pytest.mark.parametrize("step", STEPS)
def test_stars_pods_resolve_dns_at_each_step(stars, step: str) -> None:
    # Every stars policy (default-deny, allow-ui, backend-policy, frontend-policy) has no
    # policyTypes and no egress section, so its policyTypes is [Ingress]: no demo pod is ever
    # egress-isolated. CoreDNS runs in kube-system, which no policy selects. So each demo pod
    # reaches CoreDNS on UDP and TCP 53 at every step, the policies notwithstanding.
    c = stars(step)
    _, rows = dns_reach(c, tuple(demo_pods(c)))
    assert sorted(r.pod.split("/")[0] for r in rows) == [
        "client", "management-ui", "stars", "stars"]
    assert all((r.udp, r.tcp, r.reason) == (True, True, "allowed") for r in rows), rows
    (coredns, *_) = [p for p in c.pods if p.namespace == "kube-system"]
    for who in ROLES.values():
        for protocol in ("UDP", "TCP"):
            v = explain(c, stars_pod(c, who), coredns, 53, protocol)
            assert v.allowed, (step, who, protocol)
            assert (v.egress.decided_by, v.ingress.decided_by) == ("default", "default")


# ------------------------------------------------------------------ declare network policy

# `kubectl create deployment nginx --image=nginx` labels the Deployment, its selector and its
# pod template `app: nginx`; `kubectl expose deployment nginx --port=80` copies that selector
# into Service nginx (port 80, targetPort 80). The page's prose says the policy selects
# `app=nginx`, but THIS stored version of nginx-policy.yaml selects `app.kubernetes.io/name:
# nginx`, a label kubectl does not add. The template below therefore also carries
# `app.kubernetes.io/name: nginx`, so that the published policy selects the nginx pod as the
# page intends (see test_nginx_policy_misses_kubectls_own_label for the label kubectl sets).
NGINX_TEMPLATE_LABELS = {"app": "nginx", "app.kubernetes.io/name": "nginx"}


def nginx_app(template_labels: dict[str, str]) -> str:
    labels = "".join(f"        {k}: {v}\n" for k, v in template_labels.items())
    return textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: nginx
          namespace: default
          labels: {app: nginx}
        spec:
          replicas: 1
          selector:
            matchLabels: {app: nginx}
          template:
            metadata:
              labels:
        """) + labels + textwrap.dedent("""\
            spec:
              containers:
              - name: nginx
                image: nginx
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: nginx
          namespace: default
          labels: {app: nginx}
        spec:
          selector: {app: nginx}
          ports:
          - {port: 80, protocol: TCP, targetPort: 80}
        ---
        # `kubectl run busybox --image=busybox` labels its pod run=busybox.
        apiVersion: v1
        kind: Pod
        metadata:
          name: busybox
          namespace: default
          labels: {run: busybox}
        spec:
          containers:
          - {name: busybox, image: busybox}
        ---
        # `kubectl run busybox --labels="access=true" ...`: --labels replaces run=busybox. The
        # page reuses the name busybox (its pods are --rm); here both exist at once.
        apiVersion: v1
        kind: Pod
        metadata:
          name: busybox-access
          namespace: default
          labels: {access: "true"}
        spec:
          containers:
          - {name: busybox, image: busybox}
        """)


def nginx_cluster(with_policy: bool, template_labels: dict[str, str] | None = None) -> Cluster:
    _need(NGINX_POLICY)
    app = nginx_app(template_labels or NGINX_TEMPLATE_LABELS)
    paths = ["-", str(NGINX_POLICY)] if with_policy else ["-"]
    return load(paths, stdin=io.StringIO(app))


def by_name(cluster: Cluster, prefix: str) -> Pod:
    (found,) = [p for p in cluster.pods if p.name == prefix
                or (prefix == "nginx" and p.name.startswith("nginx-"))]
    return found


def test_nginx_service_fronts_the_nginx_pod() -> None:
    c = nginx_cluster(with_policy=True)
    nginx = by_name(c, "nginx")
    svc = c.service("default", "nginx")
    assert svc is not None and [(p.port, p.protocol) for p in svc.ports] == [(80, "TCP")]
    ips = {a for s in c.slices_for(svc) for ep in s.endpoints for a in ep.addresses}
    assert ips == {nginx.ip}
    (policy,) = c.network_policies
    assert (policy.namespace, policy.name) == ("default", "access-nginx")


def test_busybox_reaches_nginx_before_the_policy() -> None:
    c = nginx_cluster(with_policy=False)
    v = explain(c, by_name(c, "busybox"), by_name(c, "nginx"), 80, "TCP")
    assert v.allowed and v.ingress.decided_by == "default"


def test_unlabelled_busybox_times_out() -> None:
    c = nginx_cluster(with_policy=True)
    v = explain(c, by_name(c, "busybox"), by_name(c, "nginx"), 80, "TCP")
    assert not v.allowed
    assert v.egress.allowed
    assert v.ingress.decided_by == "networkpolicy"
    assert v.ingress.isolating == ("NetworkPolicy default/access-nginx",)
    assert not v.ingress.matches
    assert any("access-nginx" in why for why in v.ingress.misses)


def test_access_true_busybox_gets_through() -> None:
    c = nginx_cluster(with_policy=True)
    v = explain(c, by_name(c, "busybox-access"), by_name(c, "nginx"), 80, "TCP")
    assert v.allowed
    assert [(m.policy, m.rule) for m in v.ingress.matches] == [
        ("NetworkPolicy default/access-nginx", "ingress[0]")]
    assert "podSelector access=true" in v.ingress.matches[0].peer


def test_nginx_matrix_on_80() -> None:
    c = nginx_cluster(with_policy=True)
    m = matrix(c, 80, "TCP", namespaces={"default"})  # the task's pods, not the CoreDNS addon
    names = ["nginx" if p.name.startswith("nginx-") else p.name for p in m.pods]
    assert names == ["busybox", "busybox-access", "nginx"]
    got = m.dense()
    col = got[:, names.index("nginx")]
    assert col.tolist() == [False, True, True]
    # The policy isolates nginx only; the busybox pods stay open to everyone.
    assert got[:, :2].all()


def test_nginx_policy_rule_has_no_ports() -> None:
    # access-nginx lists no ports: an access=true pod reaches nginx on any port and protocol.
    c = nginx_cluster(with_policy=True)
    ps = PolicySet.from_cluster(c)
    src, dst = ps.pod_peer(by_name(c, "busybox-access")), ps.pod_peer(by_name(c, "nginx"))
    assert evaluate(ps, src, dst, 8080, "UDP").allowed
    src = ps.pod_peer(by_name(c, "busybox"))
    assert not evaluate(ps, src, dst, 8080, "UDP").allowed


def test_nginx_policy_misses_kubectls_own_label() -> None:
    # With only the label `kubectl create deployment` really sets (app=nginx), the stored
    # policy's podSelector (app.kubernetes.io/name=nginx) selects nothing: nginx stays open.
    # This is the gap between the page's prose and this version of nginx-policy.yaml.
    c = nginx_cluster(with_policy=True, template_labels={"app": "nginx"})
    v = explain(c, by_name(c, "busybox"), by_name(c, "nginx"), 80, "TCP")
    assert v.allowed and v.ingress.decided_by == "default" and not v.ingress.isolating
