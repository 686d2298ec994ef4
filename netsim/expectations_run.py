"""Run connectivity expectations on an emulated dataplane: every path of each sender's trace,
and the checks the expectation asks for (result, via, deliveredTo, clientIPPreserved)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from netsim.cluster import Cluster
from netsim.dataplane import EXTERNAL_NETNS, Dataplane
from netsim.errors import InputError
from netsim.expectations import Expectation, ExpectationSet, PodSet
from netsim.model import Pod
from netsim.packet import HttpRequest, parse_http
from netsim.trace_spec import (
    Endpoint,
    ingress_front,
    packet_for,
    resolve_destination,
    resolve_source,
)
from netsim.trace_types import DELIVERED, REASONS, Trace
from netsim.walk import walk
from policies.engine import (
    ADMIN_TIER,
    BASELINE_TIER,
    NETWORK_POLICY,
    NODE,
    SELF,
    PolicySet,
    evaluate,
)

CLUSTER_DOMAIN = "cluster.local"
ALLOW, DENY, PARTIAL, ERROR = "allow", "deny", "partial", "error"

# A policy named in a component's words: felix's chain comments ("KubernetesNetworkPolicy
# shop/default-deny-all ingress"), Cilium's "decided by NetworkPolicy ns/name", the engine's
# Match.policy, a sidecar's AuthorizationPolicy.
POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy", "AdminNetworkPolicy",
                "BaselineAdminNetworkPolicy", "AuthorizationPolicy", "CiliumNetworkPolicy",
                "CiliumClusterwideNetworkPolicy", "PeerAuthentication")
_POLICY_REF = re.compile(r"\b(?:Kubernetes)?(" + "|".join(POLICY_KINDS) + r")\s+"
                         r"([a-z0-9][a-z0-9.-]*(?:/[a-z0-9][a-z0-9.-]*)?)")
# What a sidecar's authorization line says (policies.istio_authz reasons).
_AUTHZ_ONE = re.compile(r"^authorization: (?:ALLOW|DENY|CUSTOM) policy (\S+) rule")
_AUTHZ_APPLY = re.compile(r"^authorization: ALLOW policies apply \(([^)]*)\)")


@dataclass(frozen=True, slots=True)
class PathResult:
    """One path of a case's trace, with the facts the checks read."""

    result: str
    reason: str
    detail: str
    delivered_to: str | None
    probability: float
    client_address: str | None = None  # the source address as the destination pod got it
    allowed_by: tuple[str, ...] = ()  # delivered: "NetworkPolicy ns/name" that admitted it
    implicit: tuple[str, ...] = ()  # delivered: allowed whatever the policies (own node, self)
    named: tuple[str, ...] = ()  # not delivered: the policies its drop names
    provenance: str = ""  # not delivered: the detail and the last hop's lines

    @property
    def delivered(self) -> bool:
        return self.result == DELIVERED

    def as_json(self) -> dict:
        data = {"result": self.result, "reason": self.reason, "detail": self.detail,
                "deliveredTo": self.delivered_to, "probability": round(self.probability, 6)}
        if self.delivered:
            data["clientAddress"] = self.client_address
            data["allowedBy"] = list(self.allowed_by)
            data["allowedImplicitly"] = list(self.implicit)
        else:
            data["decidedBy"] = list(self.named)
        return data


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One expectation for one sender (and destination pod, when `to` names pods)."""

    expectation: Expectation
    source: str
    destination: str
    got: str  # allow, deny, partial, or error (the case could not be set up)
    passed: bool
    summary: str  # what decided, in one line
    failures: tuple[str, ...] = ()
    paths: tuple[PathResult, ...] = ()
    seconds: float = 0.0
    suffix: str = ""  # "[shop/web-1]" when the expectation expands to several cases

    @property
    def name(self) -> str:
        return f"{self.expectation.name} {self.suffix}".rstrip()

    @property
    def error(self) -> bool:
        return self.got == ERROR


@dataclass(frozen=True, slots=True)
class SetResult:
    expectations: ExpectationSet
    cases: tuple[CaseResult, ...]


def run(dp: Dataplane, sets: tuple[ExpectationSet, ...]) -> list[SetResult]:
    """Every expectation of every document, in file order."""
    runner = Runner(dp)
    return [SetResult(s, tuple(c for e in s.expectations for c in runner.run(e))) for s in sets]


class Runner:
    """Resolves ends against one dataplane and traces them; the policy index is shared."""

    def __init__(self, dp: Dataplane) -> None:
        self.dp = dp
        self.cluster: Cluster = dp.cluster
        self.ps = PolicySet.from_cluster(self.cluster)
        self.pods = sorted(self.cluster.pods, key=lambda p: p.key)

    def run(self, e: Expectation) -> list[CaseResult]:
        start = time.perf_counter()
        sources = self._sources(e)
        if isinstance(sources, str):
            return [_error(e, e.origin.text, e.target.text, sources, start)]
        many = e.origin.pods is not None
        cases = []
        for label, src in sources:
            suffix = f"[{label}]" if many else ""
            if isinstance(src, str):
                cases.append(_error(e, label, e.target.text, f"from: {src}", start, suffix))
                continue
            targets = self._targets(e, src, label)
            if isinstance(targets, str):
                cases.append(_error(e, label, e.target.text, targets, start, suffix))
                continue
            for dest_label, dest, protocol in targets:
                if e.target.kind == "pods":
                    suffix = f"[{label} -> {dest_label}]"
                if isinstance(dest, str):
                    cases.append(_error(e, label, dest_label, f"to: {dest}", start, suffix))
                else:
                    cases.append(self._case(e, label, src, dest_label, dest, protocol, suffix,
                                            start))
                start = time.perf_counter()
        return cases

    # ------------------------------------------------------------ ends

    def _matching(self, pods: PodSet) -> list[Pod]:
        return [p for p in self.pods if pods.matches(p)]

    def _sources(self, e: Expectation) -> str | list[tuple[str, Endpoint | str]]:
        o = e.origin
        if o.pods is None:
            text = f"external:{o.external}" if o.external else f"node/{o.node}"
            return [(o.text, _resolve(lambda: resolve_source(self.dp, text)))]
        found = self._matching(o.pods)
        if not found:
            return f"from: no pod matches {o.pods.text}"
        return [(p.key, _resolve(lambda p=p: resolve_source(self.dp, p.key))) for p in found]

    def _targets(self, e: Expectation, src: Endpoint, src_label: str):
        """[(label, Endpoint or error, protocol)], or an error for the whole source."""
        t = e.target
        if t.kind == "ingress":
            from proxy.ingress import controllers

            if not controllers(self.cluster):
                return "to: the cluster has no Ingress and no ingress controller"
            http = _ingress_request(e)
            return [(t.text, _resolve(lambda: ingress_front(self.dp, http, src)), "TCP")]
        if t.kind == "name":  # resolved per case, after the lookup's own trace
            return [(t.text, Endpoint(None, src.address, t.port, t.address),
                     e.protocol or "TCP")]
        if t.kind == "pods":
            found = [p for p in self._matching(t.pods) if p.key != src_label]
            if not found:
                return f"to: no pod matches {t.pods.text}" + (
                    " (other than the sender)" if self._matching(t.pods) else "")
            out = []
            for pod in found:
                protocol = e.protocol or "TCP"
                port = t.port if isinstance(t.port, int) else pod.named_port(t.port, protocol)
                if port is None:
                    out.append((pod.key, f"pod {pod.key} has no container port named "
                                f"{t.port!r} ({protocol})", protocol))
                    continue
                text = f"{pod.key}:{port}"
                out.append((text, _resolve(lambda text=text, protocol=protocol:
                                           resolve_destination(self.dp, text, protocol, src)),
                            protocol))
            return out
        if t.kind == "service":
            if self.cluster.service(*t.service.split("/")) is None:
                return f"to: no Service {t.service}"
            protocol = e.protocol or self._service_protocol(t.service, t.port) or "TCP"
        else:
            protocol = e.protocol or "TCP"
        return [(t.text, _resolve(lambda: resolve_destination(self.dp, t.text, protocol, src)),
                 protocol)]

    def _service_protocol(self, name: str, port: int | str | None) -> str | None:
        """A Service port named (or the only one) carries its own protocol."""
        ns, _, svc_name = name.partition("/")
        svc = self.cluster.service(ns, svc_name)
        if svc is None:
            return None
        found = [p for p in svc.ports if port is None or p.port == port or p.name == port]
        protocols = {p.protocol for p in found}
        return protocols.pop() if len(protocols) == 1 else None

    # ------------------------------------------------------------ one case

    def _case(self, e: Expectation, src_label: str, src: Endpoint, dest_label: str,
              dest: Endpoint, protocol: str, suffix: str, start: float) -> CaseResult:
        http = self._http(e, src, dest)
        if e.target.ingress is not None:
            label = str(e.target.ingress)
        else:
            label = dest_label + (f" {' '.join(e.http)}" if e.http else "") + (
                f" ({protocol})" if protocol != "TCP" else "")
        hops: tuple = ()
        failed = None
        if e.target.kind == "name":  # the DNS lookup first, as real traffic
            from netsim.trace_dns import lookup, with_lookup

            family = 6 if ":" in src.address else 4
            addresses, hops, failed = lookup(self.dp, src.netns, src.address,
                                             e.target.address, family)
            if failed is None:
                dest = replace(dest, address=addresses[0])
        try:
            packet = packet_for(src, dest, protocol, None, http)
        except InputError as exc:
            return _error(e, src_label, label, exc.message, start, suffix)
        if e.target.kind == "name" and failed is not None:
            trace = failed
        else:
            trace = walk(self.dp, packet, src.netns, mode="all")
            if hops:
                trace = with_lookup(trace, hops)
        paths = tuple(self._path(p, src) for p in (trace.branches or (trace,)))
        delivered = sum(p.delivered for p in paths)
        got = ALLOW if delivered == len(paths) else DENY if not delivered else PARTIAL
        failures = []
        if got != e.expect:
            failures.append(f"expected {e.expect}, got {got}: {_paths_text(paths)}")
        failures += self._checks(e, src, paths)
        return CaseResult(e, src_label, label, got, not failures, _summary(paths), tuple(failures),
                          paths, time.perf_counter() - start, suffix)

    def _http(self, e: Expectation, src: Endpoint, dest: Endpoint) -> HttpRequest | None:
        """The request: a path alone goes to the Service's DNS name (inside the cluster) or
        to the address the connection is opened to."""
        if e.target.ingress is not None:
            return _ingress_request(e)
        if e.http is None:
            return None
        method, target = e.http
        if not target.startswith("/"):
            return parse_http(f"{method} {target}")
        t = e.target
        if t.kind == "service" and src.netns != EXTERNAL_NETNS:
            ns, _, name = t.service.partition("/")
            host = f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"
        else:
            host = f"[{dest.address}]" if ":" in dest.address else dest.address
        if dest.port != 80:
            host += f":{dest.port}"
        return HttpRequest(method, host, target, "http")

    def _path(self, path: Trace, src: Endpoint) -> PathResult:
        if path.result != DELIVERED:
            last = path.hops[-1].detail if path.hops else ()
            lines = (path.detail, *last)
            named = tuple(dict.fromkeys(
                [*_policy_refs(path.detail), *(r for line in last for r in _authz_refs(line)),
                 *(r for line in last for r in _policy_refs(line))]))
            return PathResult(path.result, path.reason, path.detail, path.delivered_to,
                              path.probability, named=named, provenance="\n".join(lines))
        arrived = _arrived(path)
        allowed: list[str] = []
        implicit: list[str] = []
        pod = self._pod(path.delivered_to)
        if arrived is not None and pod is not None:
            verdict = evaluate(self.ps, self.ps.ip_peer(arrived.src),
                               self.ps.pod_peer(pod, arrived.dst), arrived.dport,
                               arrived.protocol.upper())
            for side in (verdict.egress, verdict.ingress):
                if side.allowed and side.decided_by in (NETWORK_POLICY, ADMIN_TIER,
                                                        BASELINE_TIER):
                    allowed += [_normal(m.policy) for m in side.matches]
                elif side.decided_by in (NODE, SELF):
                    implicit.append(side.reason)
        for hop in path.hops:
            if hop.component == "envoy":
                allowed += [r for line in hop.detail if line.startswith("authorization: ALLOW")
                            for r in _authz_refs(line)]
        return PathResult(path.result, path.reason, path.detail, path.delivered_to,
                          path.probability, arrived.src if arrived is not None else None,
                          tuple(dict.fromkeys(allowed)), tuple(implicit))

    def _pod(self, key: str | None) -> Pod | None:
        if not key or "/" not in key:
            return None
        ns, _, name = key.partition("/")
        return self.cluster.pod(ns, name)

    def _checks(self, e: Expectation, src: Endpoint, paths: tuple[PathResult, ...]) -> list:
        out = []
        n = len(paths)
        if e.via:
            for i, p in enumerate(paths, 1):
                if p.delivered != (e.expect == ALLOW):
                    continue  # the result check already fails this path
                if not via_matches(e.via, p):
                    what = (f"allowed by {', '.join(p.allowed_by) or 'no policy'}"
                            if p.delivered else f"{p.result} ({p.reason}): {p.detail}")
                    out.append(f"via {e.via}: path {i}/{n} was {what}")
                    break
        if e.delivered_to is not None:
            for i, p in enumerate(paths, 1):
                pod = self._pod(p.delivered_to)
                if p.delivered and (pod is None or not e.delivered_to.matches(pod)):
                    out.append(f"deliveredTo {e.delivered_to.text}: path {i}/{n} was delivered "
                               f"to {p.delivered_to}")
                    break
        if e.client_ip_preserved is not None:
            for i, p in enumerate(paths, 1):
                if p.delivered and (p.client_address == src.address) != e.client_ip_preserved:
                    seen = p.client_address or "an unknown address"
                    out.append(f"clientIPPreserved {str(e.client_ip_preserved).lower()}: path "
                               f"{i}/{n}: {p.delivered_to} receives the connection from {seen} "
                               f"(the sender is {src.address})")
                    break
        return out


# ---------------------------------------------------------------- via and provenance


def via_matches(via: str, path: PathResult) -> bool:
    """Whether the path's decision names the policy (optionally "KIND ns/name")."""
    kind, _, name = via.rpartition(" ")
    kind = kind.strip().removeprefix("Kubernetes")
    refs = path.allowed_by if path.delivered else path.named
    for ref in refs:
        ref_kind, _, ref_name = ref.partition(" ")
        if ref_name == name and kind in ("", ref_kind):
            return True
    if path.delivered or kind:
        return False
    # a drop no policy made (loadBalancerSourceRanges, a chain): any whole name in its words
    pattern = r"(?<![\w./-])" + re.escape(name) + r"(?![\w/-]|\.\w)"
    return re.search(pattern, path.provenance) is not None


def _policy_refs(text: str) -> list[str]:
    return [f"{kind} {name.rstrip('.-')}" for kind, name in _POLICY_REF.findall(text)]


def _authz_refs(line: str) -> list[str]:
    found = _AUTHZ_ONE.match(line)
    if found:
        return [f"AuthorizationPolicy {found.group(1)}"]
    found = _AUTHZ_APPLY.match(line)
    if found:
        return [f"AuthorizationPolicy {n.strip()}" for n in found.group(1).split(",")]
    return []


def _normal(policy: str) -> str:
    """The engine's "AdminNetworkPolicy x (priority 3)" as "AdminNetworkPolicy x"."""
    refs = _policy_refs(policy)
    return refs[0] if refs else policy


def _arrived(path: Trace):
    """The request as it entered the pod it was delivered to (before any sidecar there)."""
    hops = path.request_hops
    for i, hop in enumerate(hops):
        if hop.netns == path.delivered_to:
            return hops[i - 1].packet if i else path.packet
    return None


def _summary(paths: tuple[PathResult, ...]) -> str:
    delivered = [p for p in paths if p.delivered]
    if len(delivered) == len(paths):
        allowed = list(dict.fromkeys(r for p in paths for r in p.allowed_by))
        implicit = list(dict.fromkeys(r for p in paths for r in p.implicit))
        if allowed:
            return "delivered; allowed by " + ", ".join(allowed)
        if implicit:
            more = f" (and {len(implicit) - 2} more)" if len(implicit) > 2 else ""
            return "delivered; " + "; ".join(implicit[:2]) + more
        return "delivered; no policy isolates either end"
    denied = _denials([p for p in paths if not p.delivered])
    if delivered:
        share = sum(p.probability for p in delivered)
        return f"{len(delivered)} of {len(paths)} paths delivered (p={share:.4f}); " + denied
    return denied


def _denials(paths: list[PathResult]) -> str:
    """Why paths were not delivered, once per reason: the policies named, or the words."""
    by_reason: dict[str, list[PathResult]] = {}
    for p in paths:
        by_reason.setdefault(p.reason, []).append(p)
    out = []
    for reason, found in by_reason.items():
        named = list(dict.fromkeys(r for p in found for r in p.named))
        if named:
            out.append(f"{reason}: {', '.join(named)}")
            continue
        why = REASONS.get(reason)
        if why is None:
            why = found[0].detail
            if len({p.detail for p in found}) > 1:
                why += f" (and {len(found) - 1} more path(s))"
        out.append(f"{reason}: {why}")
    return "; ".join(out)


def _paths_text(paths: tuple[PathResult, ...]) -> str:
    parts = []
    for i, p in enumerate(paths, 1):
        end = f"delivered to {p.delivered_to}" if p.delivered else \
            f"{p.result} ({p.reason}): {p.detail}"
        parts.append(f"path {i}/{len(paths)} (p={p.probability:.4f}) {end}")
    return "; ".join(parts)


def _resolve(fn) -> Endpoint | str:
    """An end, or the reason the cluster cannot give it (an error result, not bad input)."""
    try:
        return fn()
    except InputError as exc:
        return exc.message


def _ingress_request(e: Expectation) -> HttpRequest:
    req = e.target.ingress
    return HttpRequest(req.method, req.host, req.path, req.scheme)


def _error(e: Expectation, source: str, destination: str, message: str, start: float,
           suffix: str = "") -> CaseResult:
    return CaseResult(e, source, destination, ERROR, False, message, (message,),
                      seconds=time.perf_counter() - start, suffix=suffix)
