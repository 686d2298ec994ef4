"""Per-endpoint policy maps: Cilium rules compiled into policy_key entries, and the lookup.

Compilation follows the agent (pkg/policy: selectorcache.go, l4.go, mapstate.go, v1.16):
- each peer selector selects identities (the selector cache); wildcard selectors give
  identity 0 (ANY) keys, others one key per selected identity;
- ports become LPM keys over protocol and port: ANY with no port is prefix 0, a protocol
  alone prefix 8, a port prefix 24, a range the aligned blocks that cover it; ANY with a
  port means TCP, UDP and SCTP; named ports resolve on the endpoint itself for ingress and
  on the cluster's pods for egress (a name with two numbers there is skipped);
- when any rule on a port has L7 rules, every allow on that port is redirected to the proxy
  and the rules without L7 allow every request (L4Filter merging);
- a direction that no selecting rule covers gets an allow-all key; so does one whose rules
  all set enableDefaultDeny false; ingress always allows the local host (allow-localhost);
- deny keys win: allows that a deny of the same identity (or of ANY) covers are dropped.
The lookup is bpf/lib/policy.h __policy_can_access: an exact-identity LPM lookup and an
ANY-identity LPM lookup; a deny wins, then the longer prefix, then the exact identity. No
entry is DROP_POLICY (133), a deny entry DROP_POLICY_DENY (181).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from cni.cilium_identity import HOST, Identity, IdentityTable, world_identity
from cni.cilium_maps import (
    ALLOW_ANY,
    ALLOW_LOCALHOST_INGRESS,
    DROP_POLICY,
    DROP_POLICY_DENY,
    EGRESS,
    INGRESS,
    LPM_FULL_PREFIX_BITS,
    LPM_PROTO_PREFIX_BITS,
    MATCH_ALL,
    MATCH_L3_L4,
    MATCH_L3_ONLY,
    MATCH_L4_ONLY,
    MATCH_NONE,
    PROTO_ANY,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    PolicyDecision,
    PolicyEntry,
    PolicyKey,
    proto_number,
)
from netsim.fields import FrozenDict
from netsim.model import Pod
from policies.cilium import (
    ENTITY_LABELS,
    CIDRSet,
    EndpointSelector,
    Entity,
    HTTPRule,
    K8sPeer,
    PeerRule,
    PeerSelector,
    PolicyRule,
    PortRule,
)
from policies.endpoints import Peer

DIRECTIONS = (INGRESS, EGRESS)
ANY_PROTOCOLS = (PROTO_TCP, PROTO_UDP, PROTO_SCTP)  # what protocol ANY with a port expands to
PROXY_PORT_RANGE = (10000, 20000)  # option.ProxyPortMin/MaxDefault
ALLOW_ALL_HTTP = HTTPRule()


def proxy_port(node: str, direction: str) -> int:
    """The node's HTTP listener port for a direction ("cilium-http-ingress"/"-egress").

    Cilium leases a random free port in 10000-20000 on first use and keeps it across
    restarts; netsim derives one from the node name so it is stable and reproducible.
    """
    lo, hi = PROXY_PORT_RANGE
    digest = hashlib.sha256(f"{node}/cilium-http-{direction}".encode()).digest()
    return lo + int.from_bytes(digest[:4], "big") % (hi - lo)


# ---------------------------------------------------------------- selector cache


class SelectorCache:
    """Which identities each peer selector selects; None means every identity (ANY)."""

    def __init__(self, table: IdentityTable, namespace_labels: Mapping[str, FrozenDict]):
        self.table = table
        self.namespace_labels = namespace_labels
        self._cache: dict[object, frozenset[int] | None] = {}

    def select(self, peer: PeerSelector) -> frozenset[int] | None:
        if peer not in self._cache:
            self._cache[peer] = self._select(peer)
        return self._cache[peer]

    def _select(self, peer: PeerSelector) -> frozenset[int] | None:
        if isinstance(peer, EndpointSelector):
            return None if peer.is_wildcard else self._labels(peer)
        if isinstance(peer, K8sPeer):
            return self._k8s(peer)
        if isinstance(peer, Entity):
            return self._entity(peer.name)
        return self._cidr(peer)

    def _labels(self, sel: EndpointSelector) -> frozenset[int]:
        pairs, keys = self.table.postings()
        lists = [pairs.get(kv, []) for kv in sel.selector.match_labels.items()]
        for r in sel.selector.match_expressions:
            if r.operator == "In":
                lists.append([i for v in r.values for i in pairs.get((r.key, v), [])])
            elif r.operator == "Exists":
                lists.append(keys.get(r.key, []))
        ids = self.table.identities
        candidates = min(lists, key=len) if lists else list(ids)
        return frozenset(i for i in candidates if sel.matches(ids[i].label_map))

    def _k8s(self, peer: K8sPeer) -> frozenset[int]:
        sel = peer.peer.namespace_selector
        names = [peer.namespace] if sel is None else [
            ns for ns, labels in self.namespace_labels.items() if sel.matches(labels)]
        out = []
        for ns in names:
            labels = self.namespace_labels.get(ns, FrozenDict())
            for i in self.table.by_namespace.get(ns, ()):
                pod = self.table.representative(i)
                if peer.matches(Peer(ip=pod.ip or "", pod=pod, namespace_labels=labels,
                                     node=pod.node_name)):
                    out.append(i)
        return frozenset(out)

    def _entity(self, name: str) -> frozenset[int] | None:
        if name == "all":
            return None
        ids: set[int] = set()
        for label in ENTITY_LABELS[name]:
            ids |= self._labels(EndpointSelector.from_labels({label: ""}))
        if name == "cluster":  # every endpoint of the local cluster
            ids |= {i for i, ident in self.table.identities.items()
                    if ident.namespace is not None}
        return frozenset(ids)

    def _cidr(self, peer: CIDRSet) -> frozenset[int]:
        net = ipaddress.ip_network(peer.cidr)
        excepts = [ipaddress.ip_network(e) for e in peer.except_]
        ids = set()
        if net.prefixlen == 0:
            ids.add(world_identity(net.version, self.table.dual_stack))
        for prefix, number in self.table.cidr_ids.items():
            p = ipaddress.ip_network(prefix)
            if p.version == net.version and p.subnet_of(net) and \
                    not any(p.version == e.version and p.subnet_of(e) for e in excepts):
                ids.add(number)
        return frozenset(ids)


# ---------------------------------------------------------------- L4 keys


def port_blocks(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """(port, prefix length over protocol+port) blocks that exactly cover lo..hi."""
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while lo + size - 1 > hi:
            size >>= 1
        yield lo, LPM_PROTO_PREFIX_BITS + 16 - (size.bit_length() - 1)
        lo += size


@dataclass(frozen=True)
class NamedPorts:
    """Named container ports: the endpoint's own (ingress) and the cluster's (egress)."""

    own: Mapping[tuple[str, int], int]  # (name, proto) -> port
    cluster: Mapping[tuple[str, int], frozenset[int]]

    def resolve(self, name: str, proto: int, direction: str) -> int | None:
        if direction == INGRESS:
            return self.own.get((name, proto))
        ports = self.cluster.get((name, proto), frozenset())
        return next(iter(ports)) if len(ports) == 1 else None  # ErrDuplicateNamedPorts


def l4_keys(to_ports: tuple[PortRule, ...], direction: str, names: NamedPorts,
            ) -> Iterator[tuple[int, int, int, tuple[HTTPRule, ...] | None]]:
    """(protocol, port, prefix length, HTTP rules or None) for each key a rule's ports give."""
    if not to_ports:
        yield PROTO_ANY, 0, 0, None
        return
    for pr in to_ports:
        if not pr.ports:
            yield PROTO_ANY, 0, 0, pr.http
            continue
        for pp in pr.ports:
            if pp.protocol == "ANY" and pp.port is None:
                yield PROTO_ANY, 0, 0, pr.http
                continue
            protos = ANY_PROTOCOLS if pp.protocol == "ANY" else (proto_number(pp.protocol),)
            for proto in protos:
                if pp.port is None:
                    yield proto, 0, LPM_PROTO_PREFIX_BITS, pr.http
                elif isinstance(pp.port, str):
                    number = names.resolve(pp.port, proto, direction)
                    if number is not None:
                        yield proto, number, LPM_FULL_PREFIX_BITS, pr.http
                elif pp.end_port is not None:
                    for port, plen in port_blocks(pp.port, pp.end_port):
                        yield proto, port, plen, pr.http
                else:
                    yield proto, pp.port, LPM_FULL_PREFIX_BITS, pr.http


# ---------------------------------------------------------------- endpoint policy


@dataclass
class _Acc:
    sources: set[str] = field(default_factory=set)
    http: list[HTTPRule] = field(default_factory=list)
    plain: bool = False  # some contributing rule has no L7 rules


@dataclass(frozen=True)
class EndpointPolicy:
    """One endpoint's policy map and what made each direction default-deny."""

    endpoint_id: int
    entries: tuple[PolicyEntry, ...]
    enforcing: Mapping[str, tuple[str, ...]]  # direction -> rules that isolate it
    _index: Mapping[tuple[str, int], tuple[PolicyEntry, ...]] = field(repr=False)

    @classmethod
    def of(cls, endpoint_id: int, entries: tuple[PolicyEntry, ...],
           enforcing: Mapping[str, tuple[str, ...]] | None = None) -> EndpointPolicy:
        """A policy map from its entries, indexed by (direction, identity), longest first."""
        index: dict[tuple[str, int], list[PolicyEntry]] = defaultdict(list)
        for e in entries:
            index[e.key.direction, e.key.identity].append(e)
        return cls(endpoint_id, entries, enforcing or {},
                   {k: tuple(sorted(v, key=lambda e: -e.key.prefix_len))
                    for k, v in index.items()})

    def lookup(self, remote_identity: int, direction: str, protocol: str | int,
               dport: int) -> PolicyDecision:
        proto = proto_number(protocol)
        l3 = self._longest(direction, remote_identity, proto, dport) if remote_identity else None
        if l3 is not None and l3.deny:
            return _decision(l3, MATCH_L3_L4 if l3.key.prefix_len else MATCH_L3_ONLY)
        l4 = self._longest(direction, 0, proto, dport)
        if l4 is not None and (l4.deny or l3 is None or l4.key.prefix_len > l3.key.prefix_len):
            return _decision(l4, MATCH_ALL if l4.key.prefix_len == 0 else MATCH_L4_ONLY)
        if l3 is not None:
            return _decision(l3, MATCH_L3_L4 if l3.key.prefix_len else MATCH_L3_ONLY)
        return PolicyDecision(False, False, 0, None, DROP_POLICY, MATCH_NONE,
                              self.enforcing.get(direction, ()))

    def entry(self, decision: PolicyDecision) -> PolicyEntry | None:
        if decision.key is None:
            return None
        return next(e for e in self._index[decision.key.direction, decision.key.identity]
                    if e.key == decision.key)

    def _longest(self, direction: str, identity: int, proto: int,
                 dport: int) -> PolicyEntry | None:
        for e in self._index.get((direction, identity), ()):
            if e.key.covers(proto, dport):
                return e
        return None


def _decision(e: PolicyEntry, match: str) -> PolicyDecision:
    if e.deny:
        return PolicyDecision(False, True, 0, e.key, DROP_POLICY_DENY, match, e.derived_from)
    return PolicyDecision(True, False, e.proxy_port, e.key, None, match, e.derived_from)


@dataclass(frozen=True)
class PolicyInputs:
    """What compiling one endpoint needs besides the endpoint: cluster-wide and shared."""

    rules: tuple[PolicyRule, ...]
    selectors: SelectorCache
    cluster_ports: Mapping[tuple[str, int], frozenset[int]]
    _by_namespace: dict = field(default_factory=dict, repr=False)
    _selected: dict = field(default_factory=dict, repr=False)

    def selecting(self, ident: Identity) -> tuple[PolicyRule, ...]:
        """The rules whose endpointSelector selects the identity (cached per identity)."""
        found = self._selected.get(ident.id)
        if found is None:
            if not self._by_namespace:
                groups: dict[str | None, list[PolicyRule]] = defaultdict(list)
                for r in self.rules:
                    groups[r.namespace].append(r)
                self._by_namespace.update(groups)
            candidates = self._by_namespace.get(ident.namespace, []) + \
                self._by_namespace.get(None, [])
            found = self._selected[ident.id] = tuple(
                r for r in candidates
                if r.selects(ident.label_map, ident.namespace, ident.pod_labels))
        return found


def own_named_ports(pod: Pod) -> Mapping[tuple[str, int], int]:
    return {(c.name, proto_number(c.protocol)): c.container_port
            for c in pod.container_ports if c.name}


def compile_endpoint(inputs: PolicyInputs, endpoint_id: int, ident: Identity, pod: Pod,
                     node: str) -> EndpointPolicy:
    """The policy map of one endpoint (a pod with identity `ident` on `node`)."""
    names = NamedPorts(own_named_ports(pod), inputs.cluster_ports)
    rules = inputs.selecting(ident)
    allow: dict[PolicyKey, _Acc] = {}
    deny: dict[PolicyKey, _Acc] = {}
    enforcing: dict[str, tuple[str, ...]] = {}
    for direction in DIRECTIONS:
        sectioned = [r for r in rules if r.section(direction)]
        enforcing[direction] = tuple(dict.fromkeys(r.source for r in sectioned))
        if not sectioned or not any(r.default_deny(direction) for r in sectioned):
            _acc(allow, PolicyKey(0, direction), ALLOW_ANY[direction], None)
        for r in sectioned:
            for is_deny, table in ((False, allow), (True, deny)):
                for pr in r.rules(direction, is_deny):
                    _add_rule(table, inputs.selectors, pr, direction, names, r.source)
    _acc(allow, PolicyKey(HOST, INGRESS), ALLOW_LOCALHOST_INGRESS, None)
    return EndpointPolicy.of(endpoint_id, _finish(allow, deny, node), enforcing)


def _acc(table: dict[PolicyKey, _Acc], key: PolicyKey, source: str,
         http: tuple[HTTPRule, ...] | None) -> None:
    acc = table.get(key)
    if acc is None:
        acc = table[key] = _Acc()
    acc.sources.add(source)
    if http is None:
        acc.plain = True
    else:
        acc.http.extend(h for h in http if h not in acc.http)


def _add_rule(table: dict[PolicyKey, _Acc], selectors: SelectorCache, pr: PeerRule,
              direction: str, names: NamedPorts, source: str) -> None:
    ids: set[int] = set()
    wildcard = False
    for peer in pr.peers:
        got = selectors.select(peer)
        if got is None:
            wildcard = True
        else:
            ids |= got
    targets = [0] if wildcard else sorted(ids)
    if not targets:
        return
    for proto, port, plen, http in l4_keys(pr.to_ports, direction, names):
        for identity in targets:
            _acc(table, PolicyKey(identity, direction, proto, port, plen), source, http)


def _finish(allow: dict[PolicyKey, _Acc], deny: dict[PolicyKey, _Acc],
            node: str) -> tuple[PolicyEntry, ...]:
    denies: dict[tuple[str, int], list[PolicyKey]] = defaultdict(list)
    for k in deny:
        denies[k.direction, k.identity].append(k)
    redirected = {(k.direction, k.protocol, k.dport, k.prefix_len)
                  for k, acc in allow.items() if acc.http}
    out = [PolicyEntry(k, True, derived_from=tuple(sorted(acc.sources)))
           for k, acc in deny.items()]
    for k, acc in allow.items():
        covering = denies.get((k.direction, k.identity), []) + denies.get((k.direction, 0), [])
        if any(d.covers_key(k) for d in covering):
            continue  # deny wins (mapstate denyPreferredInsert)
        if (k.direction, k.protocol, k.dport, k.prefix_len) in redirected:
            http = tuple(acc.http) + ((ALLOW_ALL_HTTP,) if acc.plain else ())
            out.append(PolicyEntry(k, False, proxy_port(node, k.direction),
                                   derived_from=tuple(sorted(acc.sources)), http=http))
        else:
            out.append(PolicyEntry(k, False, derived_from=tuple(sorted(acc.sources))))
    return tuple(sorted(out, key=entry_order))


def entry_order(e: PolicyEntry) -> tuple:
    """PolicyEntriesDump.Less: denies first, then ingress before egress, then identity;
    netsim breaks the remaining ties by protocol, port and prefix for a stable order."""
    return (not e.deny, e.key.direction != INGRESS, e.key.identity, e.key.protocol,
            e.key.dport, e.key.prefix_len)


def cluster_named_ports(pods: tuple[Pod, ...]) -> Mapping[tuple[str, int], frozenset[int]]:
    """Every (port name, protocol) of the cluster's pods and the numbers it stands for."""
    out: dict[tuple[str, int], set[int]] = defaultdict(set)
    for pod in pods:
        if pod.host_network:
            continue
        for c in pod.container_ports:
            if c.name:
                out[c.name, proto_number(c.protocol)].add(c.container_port)
    return {k: frozenset(v) for k, v in out.items()}
