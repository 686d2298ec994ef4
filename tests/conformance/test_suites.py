"""The bundled suites: each passes under every dataplane combination it names (known netsim
deviations excepted, as the suite file declares them), covers what the issue asks for, and
every expectation it states is one a wrong dataplane would break (mutating it fails)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from netsim.conformance import dataplanes as dps
from netsim.conformance.runner import SUITES, load_trace_suite, run, run_trace_case
from netsim.conformance.trace_suite import run_case

TRACE_SUITES = [s for s in SUITES if s != "networkpolicy"]
MATRIX = [(name, d) for name in TRACE_SUITES for d in load_trace_suite(name).dataplanes]


@pytest.mark.parametrize("name,dataplane", MATRIX, ids=[f"{n}[{d}]" for n, d in MATRIX])
def test_bundled_suite_passes(name, dataplane):
    suite = load_trace_suite(name)
    dp = dps.BY_NAME[dataplane]
    failures = []
    for case in suite.cases:
        result = run_trace_case(suite, case, dp)
        if result.status == "fail":
            failures.append(f"{case.name}: {result.failure}")
    assert not failures, "\n".join(failures)


def test_networkpolicy_suite_still_passes_once():
    [only] = run("networkpolicy")
    assert only.dataplane is None and len(only.results) >= 90
    assert all(r.status == "pass" for r in only.results)


def test_dataplane_matrix():
    assert load_trace_suite("services").dataplanes == tuple(d.name for d in dps.DATAPLANES)
    # (as `netsim conformance --help` says)
    assert load_trace_suite("ingress").dataplanes == dps.CORE
    assert load_trace_suite("mesh").dataplanes == dps.CORE
    # Calico IPIP and VXLAN under both kube-proxy modes, Cilium tunnel and native routing
    # with its kube-proxy replacement and beside kube-proxy iptables
    assert {(d.cni, d.encapsulation, d.proxy_mode) for d in dps.DATAPLANES} == {
        (c, e, p) for c, e in (("calico", "IPIP"), ("calico", "VXLAN"))
        for p in ("iptables", "ipvs")} | {
        ("cilium", e, p) for e in ("tunnel", "native") for p in ("none", "iptables")}


def _expects(name: str) -> set[str]:
    return {k for case in load_trace_suite(name).cases for check in case.checks
            for k in check.expect}


def test_services_suite_covers_the_issue():
    suite = load_trace_suite("services")
    names = {c.name for c in suite.cases}
    assert {"clusterip-reaches-every-ready-endpoint", "multiport-named-targetports",
            "nodeport-on-every-node", "loadbalancer", "external-ips",
            "session-affinity-clientip", "external-traffic-policy-local-nodeport",
            "internal-traffic-policy-local", "headless-has-no-virtual-ip",
            "no-endpoints-rejected", "hairpin"} <= names
    assert {"endpoints", "weights", "target_port", "client_ip_preserved",
            "session_affinity", "cluster_ip", "proxy_rules"} <= _expects("services")
    assert len(suite.cases) >= 15


def test_ingress_and_mesh_suites_cover_the_features():
    assert {c.name for c in load_trace_suite("ingress").cases} == {
        "path-rules", "host-rules", "default-backend", "ingress-class", "load-balancing"}
    assert {"http_status", "request", "tls_secret"} <= _expects("ingress")
    mesh = {c.name for c in load_trace_suite("mesh").cases}
    assert {"mtls-strict-rejects-plaintext", "mtls-permissive-accepts-plaintext",
            "authorization-allow", "authorization-deny-overrides-allow",
            "virtualservice-weights", "subsets-and-header-match", "fault-abort"} <= mesh
    assert {"mtls", "weights", "statuses", "http_status"} <= _expects("mesh")


def test_every_known_deviation_names_the_bug():
    for name in TRACE_SUITES:
        suite = load_trace_suite(name)
        texts = [d.text for d in suite.deviations] + [
            v.text for c in suite.cases for ch in c.checks for v in ch.deviations]
        assert all(len(t) > 60 for t in texts), name
        sources = [v.text for c in suite.cases for ch in c.checks for v in ch.differences]
        assert all(len(t) > 20 for t in sources), name


# ---------------------------------------------------------------- sensitivity


def _mutations(expect: dict):
    """Each stated expectation, made wrong."""
    if isinstance(expect.get("result"), str):
        yield "result", {**expect, "result": "dropped" if expect["result"] != "dropped"
                         else "delivered"}
    if "endpoints" in expect:
        yield "endpoints", {**expect, "endpoints": [*expect["endpoints"], "x/bogus"]}
    for key in ("client_ip_preserved", "mtls"):
        if isinstance(expect.get(key), bool):
            yield key, {**expect, key: not expect[key]}
    if isinstance(expect.get("target_port"), int):
        yield "target_port", {**expect, "target_port": 1}
    if "http_status" in expect:
        yield "http_status", {**expect, "http_status": 299}
    if isinstance(expect.get("weights"), dict):
        yield "weights", {**expect, "weights": {k: v + 0.05
                                                for k, v in expect["weights"].items()}}
    if "statuses" in expect:
        yield "statuses", {**expect, "statuses": {200: 1.0}}
    if "request" in expect:
        yield "request", {**expect, "request": {k: v + "x"
                                                for k, v in expect["request"].items()}}
    if "session_affinity" in expect:
        yield "session_affinity", {**expect, "session_affinity": {"timeout": 100}}
    if "tls_secret" in expect:
        yield "tls_secret", {**expect, "tls_secret": "echo/other"}
    if "proxy_rules" in expect:
        yield "proxy_rules", {**expect, "proxy_rules": "present"}


@pytest.mark.parametrize("dataplane", ["calico-ipip/iptables", "cilium-tunnel/kpr"])
@pytest.mark.parametrize("name", TRACE_SUITES)
def test_every_expectation_is_sensitive(name, dataplane):
    """A check that still passes with a wrong expectation would check nothing."""
    suite = load_trace_suite(name)
    dp = dps.BY_NAME[dataplane]
    insensitive = []
    for case in suite.cases:
        if suite.deviation(case.name, dp):
            continue
        for check in case.checks:
            if check.deviation(dp):
                continue
            for key, wrong in _mutations(check.effective(dp).data):
                mutated = replace(check, expect=wrong, differences=(), deviations=())
                outcomes, _ = run_case(suite, replace(case, checks=(mutated,)), dp)
                if all(o.difference is None for o in outcomes):
                    insensitive.append(f"{case.name}: {check.label}: {key}")
    assert not insensitive, "\n".join(insensitive)
