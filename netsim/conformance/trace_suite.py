"""Trace suites (services, ingress, mesh): a base cluster, cases of extra objects, and checks
that trace connections through the emulated dataplane against hand-written expectations.

A suite file (kind ConformanceSuite, spec.kind trace) holds:

    spec:
      dataplanes: [calico-ipip/iptables, ...]    # or "all"; default: dataplanes.CORE
      cluster: [<manifests>]                     # the base cluster every case starts from
      cases:
      - name: clusterip-reaches-every-ready-endpoint
        description: ...
        upstream: <the e2e test or document the case follows>
        objects: [<manifests added on top of the base cluster>]
        checks:
        - from: svc/client                       # ns/pod, node/NAME, external[:IP]
          to: svc/svc/web:80                     # netsim trace --to forms; node/*:PORT (every
                                                 # node); ingress (the controller's front)
          protocol: TCP                          # default TCP
          http: GET http://foo.bar.com/          # the request a proxy on the path reads
          expect: {result: delivered, endpoints: [svc/web-1, svc/web-2], ...}
          differences:                           # documented dataplane differences
          - when: {proxy: ipvs}                  # dataplane (globs), cni, proxy, encapsulation
            expect: {result: rejected}           # merged over `expect`
            source: <where the real system documents it>
          known_deviations:                      # netsim bugs: the check must fail here
          - when: {cni: cilium, proxy: iptables}
            bug: <what netsim does and what the real system does>
        - service: svc/headless                  # a check on the compiled artifacts
          expect: {cluster_ip: none, proxy_rules: none}
      known_deviations:                          # a netsim bug breaking whole cases
      - when: {dataplane: cilium-native/iptables}
        cases: [clusterip-reaches-every-ready-endpoint, ...]
        bug: <...>

A check with a known deviation that fails is reported as a known deviation (xfail), not a
failure; one that passes fails the case, so that the marker goes when the bug is fixed. A
suite-level deviation does the same for every failing check of the cases it names; a named
case none of whose checks fails is a failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from netsim.cluster import load_inputs
from netsim.conformance import dataplanes as dps
from netsim.conformance.artifacts import affinity_difference, service_difference
from netsim.conformance.trace_expect import first_difference, parse_trace_expect
from netsim.dataplane import Dataplane, build
from netsim.errors import InputError, Source
from netsim.fields import Fields
from netsim.sources import RawDoc

SERVICE_KEYS = ("cluster_ip", "proxy_rules")


@dataclass(frozen=True, slots=True)
class Variant:
    """A `differences` or `known_deviations` entry: which dataplanes, and what it says."""

    when: dict[str, tuple[str, ...]]
    expect: dict  # differences: merged over the check's expect
    text: str  # the source (differences) or the bug (known deviations)


@dataclass(frozen=True, slots=True)
class Check:
    label: str
    fields: Fields
    expect: dict
    differences: tuple[Variant, ...]
    deviations: tuple[Variant, ...]

    def effective(self, dp: dps.Dataplane) -> Fields:
        merged = dict(self.expect)
        for v in self.differences:
            if dps.matches(dp, v.when):
                merged.update(v.expect)
        return Fields(merged, self.fields.source, self.fields.obj, f"{self.fields.path}.expect")

    def deviation(self, dp: dps.Dataplane) -> str | None:
        return next((v.text for v in self.deviations if dps.matches(dp, v.when)), None)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str
    upstream: str
    objects: tuple[dict, ...]
    checks: tuple[Check, ...]


@dataclass(frozen=True, slots=True)
class SuiteDeviation:
    """A netsim bug that breaks whole cases under some dataplanes (spec.known_deviations)."""

    when: dict[str, tuple[str, ...]]
    cases: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class TraceSuite:
    name: str
    filename: str
    dataplanes: tuple[str, ...]
    cluster: tuple[dict, ...]
    cases: tuple[Case, ...]
    deviations: tuple[SuiteDeviation, ...] = ()

    def deviation(self, case: str, dp: dps.Dataplane) -> str | None:
        """The suite-level known deviation covering a case under a dataplane, if any."""
        return next((d.text for d in self.deviations
                     if case in d.cases and dps.matches(dp, d.when)), None)


# ---------------------------------------------------------------- reading


def _when(f: Fields) -> dict[str, tuple[str, ...]]:
    w = f.sub("when")
    if not w.data:
        raise f.error("when", "required: which dataplanes (dataplane, cni, proxy, "
                      "encapsulation)")
    out = {}
    for key, value in w.data.items():
        if key not in dps.WHEN_KEYS:
            raise w.error(key, f"unknown selector (known: {', '.join(dps.WHEN_KEYS)})")
        values = (value,) if isinstance(value, str) else tuple(w.str_list(key))
        if not values:
            raise w.error(key, "must name at least one value")
        for v in values:
            if not dps.selects_any(key, v):
                raise w.error(key, f"{v!r} matches no dataplane (known: "
                              f"{', '.join(dps.known_values(key))})")
        out[key] = values
    return out


def _check(f: Fields) -> Check:
    expect = f.sub("expect")
    if f.has("service"):
        label = f"service {f.str('service')}"
        unknown = sorted(set(expect.data) - set(SERVICE_KEYS))
        if unknown:
            raise expect.error(unknown[0], f"unknown expectation for a service check "
                               f"(known: {', '.join(SERVICE_KEYS)})")
        expect.enum("cluster_ip", ("none",))
        expect.enum("proxy_rules", ("none", "present"))
    else:
        src = f.str("from", required=True)
        dst = f.str("to", required=True)
        f.enum("protocol", ("TCP", "UDP", "SCTP"), default="TCP")
        http = f.str("http")
        if f.has("headers") and not http:
            raise f.error("headers", "needs an `http:` request")
        f.string_map("headers")
        label = f"{src} -> {dst}" + (f" ({http})" if http else "")
        parse_trace_expect(expect)  # validate now, not under the first dataplane
    differences = []
    for d in f.items("differences"):
        merged = Fields({**expect.data, **d.sub("expect").data}, d.source, d.obj,
                        f"{d.path}.expect")
        if not f.has("service"):
            parse_trace_expect(merged)
        differences.append(Variant(_when(d), dict(d.sub("expect").data),
                                   d.str("source", required=True)))
    deviations = [Variant(_when(d), {}, d.str("bug", required=True))
                  for d in f.items("known_deviations")]
    if not expect.data:
        raise f.error("expect", "required field is missing")
    return Check(label, f, dict(expect.data), tuple(differences), tuple(deviations))


def parse_suite(doc: dict, filename: str, name: str) -> TraceSuite:
    f = Fields(doc, Source(filename), f"ConformanceSuite {name}")
    spec = f.sub("spec")
    raw = spec.data.get("dataplanes")
    if raw is None:
        names = dps.CORE
    elif raw == "all":
        names = tuple(d.name for d in dps.DATAPLANES)
    else:
        names = spec.str_list("dataplanes")
    for n in names:
        if n not in dps.BY_NAME:
            raise spec.error("dataplanes", f"no dataplane {n!r} (one of "
                             f"{', '.join(dps.BY_NAME)})")
    cases = []
    seen = set()
    for c in spec.items("cases", required=True):
        case_name = c.str("name", required=True)
        if case_name in seen:
            raise c.error("name", f"duplicate case name {case_name!r}")
        seen.add(case_name)
        c.obj = f"case {case_name}"
        checks = tuple(_check(ch) for ch in c.items("checks", required=True))
        cases.append(Case(case_name, c.str("description", default=""),
                          c.str("upstream", default=""), tuple(c.list("objects")), checks))
    deviations = []
    for d in spec.items("known_deviations"):
        covered = d.str_list("cases")
        for i, c in enumerate(covered):
            if c not in seen:
                raise d.error(f"cases[{i}]", f"no case named {c!r}")
        deviations.append(SuiteDeviation(_when(d), covered, d.str("bug", required=True)))
    return TraceSuite(name, filename, names, tuple(spec.list("cluster", required=True)),
                      tuple(cases), tuple(deviations))


# ---------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    label: str
    difference: str | None  # the first difference, or None
    deviation: str | None  # the known deviation declared for this dataplane


def run_case(suite: TraceSuite, case: Case, dp: dps.Dataplane) -> tuple[list[CheckOutcome],
                                                                         float]:
    """Every check of a case under one dataplane (one cluster, one dataplane build)."""
    start = time.perf_counter()
    base = [RawDoc(o, Source(f"{suite.filename} (spec.cluster)", i + 1))
            for i, o in enumerate(suite.cluster)]
    objects = [[RawDoc(o, Source(f"{suite.filename} (case {case.name}, objects)", i + 1))]
               for i, o in enumerate(case.objects)]
    try:
        cluster = load_inputs([base, *objects], overrides=dict(dp.overrides))
    except InputError as exc:
        raise exc.at(obj=f"case {case.name}") from None
    plane = build(cluster)
    out = []
    for check in case.checks:
        for label, diff in _run_check(plane, check, dp):
            out.append(CheckOutcome(label, diff, check.deviation(dp)))
    return out, time.perf_counter() - start


def _run_check(plane: Dataplane, check: Check, dp: dps.Dataplane):
    f = check.fields
    expect = check.effective(dp)
    if f.has("service"):
        yield check.label, service_difference(plane, f.str("service"), expect.data)
        return
    from netsim.packet import parse_http
    from netsim.trace_spec import packet_for, resolve_source
    from netsim.walk import walk

    want = parse_trace_expect(expect)
    protocol = f.str("protocol", default="TCP")
    http = parse_http(f.str("http"), field=f"{f.path}.http") if f.has("http") else None
    if http is not None and f.has("headers"):
        http = replace(http, headers=tuple(f.string_map("headers").items()))
    try:
        source = resolve_source(plane, f.str("from"))
        targets = _targets(plane, f.str("to"), protocol, source, http)
    except InputError as exc:
        raise InputError(exc.message, source=f.source, obj=f.obj,
                         field=f"{f.path}.{exc.field.strip('-') if exc.field else 'to'}") \
            from None
    for label, dest in targets:
        packet = packet_for(source, dest, protocol, None, http)
        trace = walk(plane, packet, source.netns, mode="all")
        diff = first_difference(want, trace, packet)
        if diff is None and want.affinity_timeout is not None:
            diff = affinity_difference(plane, trace, packet, want.affinity_timeout)
        yield (check.label if label is None else f"{check.label} [{label}]"), diff


def _targets(plane: Dataplane, text: str, protocol: str, source, http):
    """(label, endpoint) per destination: node/*:PORT is every node, `ingress` the
    controller's front for the request."""
    from netsim.trace_spec import ingress_front, resolve_destination

    if text == "ingress":
        return [(None, ingress_front(plane, http, source))]
    if text.startswith("node/*:"):
        port = text.rpartition(":")[2]
        return [(node.name, resolve_destination(plane, f"node/{node.name}:{port}", protocol,
                                                source))
                for node in plane.cluster.nodes]
    return [(None, resolve_destination(plane, text, protocol, source))]
