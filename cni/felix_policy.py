"""felix's policy, profile, endpoint and dispatch chains for one node (filter table).

Sources, all in projectcalico/calico felix/rules:
- policy.go ProtoRuleToIptablesRules and CombineMatchAndActionsForProtoRule: a rule is a
  match that sets a mark bit (accept, pass or drop) followed by actions conditioned on it;
  port lists over 15 slots, several positive CIDRs, negated CIDRs beside another CIDR and
  named ports beside numeric ports become "match blocks" that compute scratch0 first;
  trailing RETURNs are dropped and the first rule carries the chain's comment;
- endpoints.go endpointIptablesChain: conntrack, clear marks, the encapsulation drops on
  the way out of a workload, per tier "Start of tier", a jump per policy (or policy group)
  while the pass bit is clear with "Return if policy accepted", the end-of-tier drop unless
  the tier's default action is Pass, then the profiles and "Drop if no profiles matched";
  PolicyGroupToIptablesChains for several consecutive policies that share a selector;
- dispatch.go: the from/to-workload dispatch chains, split into per-prefix child chains,
  ending in "Unknown interface".
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from policies.calico import (
    ALLOW,
    DENY_,
    EGRESS,
    INGRESS,
    LOG,
    PASS_,
    EndpointSelector,
    EntityRule,
    Policy,
    Port,
    Rule,
    Tier,
)
from proxy.netfilter import IPSet

from .felix_text import (
    GROUP_IN,
    GROUP_OUT,
    MARK_ACCEPT,
    MARK_DROP,
    MARK_PASS,
    MARK_SCRATCH0,
    MARK_SCRATCH1,
    MAX_CHAIN_NAME,
    POLICY_IN,
    POLICY_OUT,
    PROFILE_IN,
    PROFILE_OUT,
    PROTO_IPIP,
    VXLAN_PORT,
    R,
    clear_mark,
    ctstate,
    length_limited_id,
    mark_clear,
    mark_not_clear,
    mark_set,
    match_set,
    multiport,
    protocol_name,
    set_mark,
    set_masked_mark,
)

LOG_PREFIX = "calico-packet"  # felix config LogPrefix default
RETURN_STRIDE = 5  # endpoints.go PolicyGroupToIptablesChains


@dataclass(slots=True)
class SetNamer:
    """Names the IP sets rules refer to and remembers them (by name)."""

    selector_set: Callable[[EndpointSelector], IPSet]
    named_port_set: Callable[[EndpointSelector | None, str, str], IPSet]
    used: dict[str, IPSet]

    def selector(self, s: EndpointSelector) -> str:
        found = self.selector_set(s)
        self.used[found.name] = found
        return found.name

    def named(self, s: EndpointSelector | None, protocol, name: str) -> str:
        found = self.named_port_set(s, str(protocol), name)
        self.used[found.name] = found
        return found.name


def policy_chain_name(prefix: str, policy: Policy) -> str:
    """PolicyChainName: the prefix + the policy ID, length-limited."""
    return length_limited_id(prefix, policy.id)


def policy_chains(policy: Policy, family: int, sets: SetNamer) -> dict[str, list[R]]:
    """PolicyToIptablesChains: the cali-pi- and cali-po- chains of one policy."""
    where = f"{policy.namespace}/{policy.name}" if policy.namespace else policy.name
    return {
        policy_chain_name(POLICY_IN, policy):
            rules_chain(policy.ingress, family, sets, f"{policy.kind} {where} ingress"),
        policy_chain_name(POLICY_OUT, policy):
            rules_chain(policy.egress, family, sets, f"{policy.kind} {where} egress"),
    }


def profile_chains(profile: str, allow: bool) -> dict[str, list[R]]:
    """ProfileToIptablesChains: kns.<ns> allows both ways, ksa.<ns>.<sa> has no rules."""
    rules = (Rule(ALLOW),) if allow else ()
    return {length_limited_id(PROFILE_IN, profile):
            rules_chain(rules, 4, None, f"Profile {profile} ingress"),
            length_limited_id(PROFILE_OUT, profile):
            rules_chain(rules, 4, None, f"Profile {profile} egress")}


def rules_chain(rules, family: int, sets: SetNamer | None, chain_comment: str) -> list[R]:
    """ProtoRulesToIptablesRules."""
    out: list[R] = []
    for rule in rules:
        out += rule_to_iptables(rule, family, sets)
    while out and out[-1].target == "-j RETURN":  # no-ops at the end of a chain
        out.pop()
    if not out:
        out.append(R())
    out[0].comments += (chain_comment,)
    return out


# ---------------------------------------------------------------- one rule


def _version_filter(nets: tuple[str, ...], family: int, negated: bool):
    """filterNets: (the nets of this family, whether the whole rule must be dropped)."""
    if not nets:
        return (), False
    kept = tuple(n for n in nets if (":" in n) == (family == 6))
    if negated and any(n in ("0.0.0.0/0", "::/0") for n in kept):
        return (), True
    return kept, not kept


def _split_ports(ports: tuple[Port, ...]) -> tuple[list[list[tuple[int, int]]], list[str]]:
    """SplitPortList for the numeric ports (15 multiport slots each) and the named ones."""
    splits: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    slots = 15
    for p in ports:
        if p.name is not None:
            continue
        need = 1 if p.first == p.last else 2
        if slots < need:
            splits.append(current)
            current, slots = [], 15
        current.append((p.first, p.last))
        slots -= need
    if current:
        splits.append(current)
    return splits, [p.name for p in ports if p.name is not None]


class _Blocks:
    """matchBlockBuilder: rules that compute the AllBlocks bit (scratch0) before the rule."""

    def __init__(self) -> None:
        self.rules: list[R] = []
        self.used = False
        self.done_first_positive = False

    def _initial(self, value: int) -> None:
        if not self.used:
            self.rules.append(R(target=set_masked_mark(value, MARK_SCRATCH0 | MARK_SCRATCH1)))
            self.used = True

    def _positive_mark(self) -> int:
        return MARK_SCRATCH1 if self.done_first_positive else MARK_SCRATCH0

    def _finish_positive(self) -> None:
        if self.done_first_positive:
            self.rules.append(R((mark_clear(MARK_SCRATCH1),), clear_mark(MARK_SCRATCH0)))
        self.done_first_positive = True

    def ports(self, proto: str | None, splits, named_sets: list[str], side: str) -> None:
        self._initial(0)
        mark = self._positive_mark()
        which = "sports" if side == "src" else "dports"
        for split in splits:
            self.rules.append(R((multiport(which, split),), set_mark(mark), proto=proto))
        for name in named_sets:
            self.rules.append(R((match_set(name, f"{side},{side}"),), set_mark(mark)))
        self._finish_positive()

    def cidrs(self, cidrs: tuple[str, ...], side: str) -> None:
        self._initial(0)
        mark = self._positive_mark()
        for c in cidrs:
            self.rules.append(R(target=set_mark(mark), **{side: c}))
        self._finish_positive()

    def negated(self, cidrs: tuple[str, ...], side: str) -> None:
        self._initial(MARK_SCRATCH0)
        for c in cidrs:
            self.rules.append(R(target=clear_mark(MARK_SCRATCH0), **{side: c}))


def rule_to_iptables(rule: Rule, family: int, sets: SetNamer | None) -> list[R]:
    """ProtoRuleToIptablesRules for one rule (no rules when it is for the other family)."""
    if rule.ip_version is not None and rule.ip_version != family:
        return []
    src, dst = rule.source, rule.destination
    src_nets, drop1 = _version_filter(src.nets, family, False)
    not_src_nets, drop2 = _version_filter(src.not_nets, family, True)
    dst_nets, drop3 = _version_filter(dst.nets, family, False)
    not_dst_nets, drop4 = _version_filter(dst.not_nets, family, True)
    if drop1 or drop2 or drop3 or drop4:
        return []
    proto = protocol_name(rule.protocol) if rule.protocol is not None else None
    blocks = _Blocks()
    ports: dict[str, tuple[list, list[str]]] = {}
    for side, entity in (("src", src), ("dst", dst)):
        splits, named = _split_ports(entity.ports)
        named_sets = [sets.named(entity.selector, rule.protocol, n) for n in named]
        if len(splits) + len(named_sets) > 1:
            blocks.ports(proto, splits, named_sets, side)
            splits, named_sets = [], []
        ports[side] = (splits, named_sets)
    if len(src_nets) > 1:
        blocks.cidrs(src_nets, "src")
        src_nets = ()
    if len(dst_nets) > 1:
        blocks.cidrs(dst_nets, "dst")
        dst_nets = ()
    if len(src_nets) + len(not_src_nets) > 1:
        blocks.negated(not_src_nets, "src")
        not_src_nets = ()
    if len(dst_nets) + len(not_dst_nets) > 1:
        blocks.negated(not_dst_nets, "dst")
        not_dst_nets = ()
    main = _main_match(rule, proto, family, sets, ports, src_nets, not_src_nets, dst_nets,
                       not_dst_nets)
    if blocks.used:
        main.matches += (mark_set(MARK_SCRATCH0),)
    return blocks.rules + _actions(rule, main)


def _main_match(rule: Rule, proto, family, sets, ports, src_nets, not_src_nets, dst_nets,
                not_dst_nets) -> R:
    """CalculateRuleMatch: positive criteria, then the negated ones."""
    src, dst = rule.source, rule.destination
    m: list[str] = []
    main = R(proto=proto)
    if src_nets:
        main.src = src_nets[0]
    if src.selector is not None:
        m.append(match_set(sets.selector(src.selector), "src"))
    for split in ports["src"][0]:
        m.append(multiport("sports", split))
    m += [match_set(n, "src,src") for n in ports["src"][1]]
    if dst_nets:
        main.dst = dst_nets[0]
    if dst.selector is not None:
        m.append(match_set(sets.selector(dst.selector), "dst"))
    for split in ports["dst"][0]:
        m.append(multiport("dports", split))
    m += [match_set(n, "dst,dst") for n in ports["dst"][1]]
    if rule.icmp is not None:
        m.append(_icmp(rule.icmp, family, False))
    if rule.not_protocol is not None and main.proto is None:
        main.proto, main.proto_inv = protocol_name(rule.not_protocol), True
    if not_src_nets:
        main.src, main.src_inv = not_src_nets[0], True
    m += _negated(src, "src", rule.protocol, sets)
    if not_dst_nets:
        main.dst, main.dst_inv = not_dst_nets[0], True
    m += _negated(dst, "dst", rule.protocol, sets)
    if rule.not_icmp is not None:
        m.append(_icmp(rule.not_icmp, family, True))
    main.matches = tuple(m)
    return main


def _negated(entity: EntityRule, side: str, protocol, sets: SetNamer) -> list[str]:
    out = []
    if entity.not_selector is not None:
        out.append(match_set(sets.selector(entity.not_selector), side, negated=True))
    splits, named = _split_ports(entity.not_ports)
    which = "sports" if side == "src" else "dports"
    out += [multiport(which, split, negated=True) for split in splits]
    out += [match_set(sets.named(entity.selector, protocol, n), f"{side},{side}", negated=True)
            for n in named]
    return out


def _icmp(icmp: tuple[int, int | None], family: int, negated: bool) -> str:
    kind, code = icmp
    value = f"{kind}" if code is None else f"{kind}/{code}"
    neg = "! " if negated else ""
    if family == 6:
        return f"-m icmp6 {neg}--icmpv6-type {value}"
    return f"-m icmp {neg}--icmp-type {value}"


def _actions(rule: Rule, main: R) -> list[R]:
    """CombineMatchAndActionsForProtoRule (flow logs off: no NFLOG rules)."""
    if rule.action == LOG:
        main.target = f"-j LOG --log-prefix {LOG_PREFIX} --log-level 5"
        return [main]
    mark, verdict = {ALLOW: (MARK_ACCEPT, "-j RETURN"), PASS_: (MARK_PASS, "-j RETURN"),
                     DENY_: (MARK_DROP, "-j DROP")}[rule.action]
    main.target = set_mark(mark)
    return [main, R((mark_set(mark),), verdict)]


# ---------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class PolicyGroup:
    """Consecutive policies of one tier and direction that share a selector."""

    tier: str
    direction: str
    selector: str
    policies: tuple[Policy, ...]

    def chain_name(self) -> str:
        """PolicyGroup.ChainName: cali-gi-/cali-go- + base64url(SHA3-224(...)) cut to fit."""
        h = hashlib.sha3_224()
        direction = "inbound" if self.direction == INGRESS else "outbound"
        for text in (self.selector, direction, str(len(self.policies)),
                     *(f"{{Name: {p.name}, Namespace: {p.namespace or ''}, Kind: {p.kind}}}"
                       for p in self.policies)):
            h.update(text.encode() + b"\n")
        prefix = GROUP_IN if self.direction == INGRESS else GROUP_OUT
        uid = base64.urlsafe_b64encode(h.digest()).decode().rstrip("=")
        return prefix + uid[:MAX_CHAIN_NAME - len(prefix)]


def group_policies(tier: str, direction: str, policies: list[Policy]) -> list[PolicyGroup]:
    """endpoint_mgr.go groupPolicies: runs of policies with the same selector."""
    groups: list[PolicyGroup] = []
    for p in policies:
        if groups and groups[-1].selector == p.selector.text:
            last = groups[-1]
            groups[-1] = PolicyGroup(tier, direction, last.selector, (*last.policies, p))
        else:
            groups.append(PolicyGroup(tier, direction, p.selector.text, (p,)))
    return groups


def group_chain(group: PolicyGroup) -> list[R]:
    """PolicyGroupToIptablesChains."""
    prefix = POLICY_IN if group.direction == INGRESS else POLICY_OUT
    rules = []
    for i, p in enumerate(group.policies):
        if i and i % RETURN_STRIDE == 0:
            rules.append(R((mark_not_clear(MARK_PASS | MARK_ACCEPT),), "-j RETURN",
                           comments=("Return on verdict",)))
        match = () if i % RETURN_STRIDE == 0 else (mark_clear(MARK_PASS | MARK_ACCEPT),)
        rules.append(R(match, f"-j {policy_chain_name(prefix, p)}"))
    return rules


def endpoint_chain(tiers: list[tuple[Tier, list[PolicyGroup]]], profiles: list[str],
                   direction: str) -> list[R]:
    """endpointIptablesChain for a workload: the cali-tw- (ingress) or cali-fw- chain."""
    rules = [R((ctstate("RELATED,ESTABLISHED"),), "-j ACCEPT"),
             R((ctstate("INVALID"),), "-j DROP"),
             R(target=clear_mark(MARK_ACCEPT | MARK_PASS))]
    if direction == EGRESS:  # AllowVXLAN/IPIPPacketsFromWorkloads default false
        rules.append(R((multiport("dports", [(VXLAN_PORT, VXLAN_PORT)]),), "-j DROP",
                       proto="udp", comments=("Drop VXLAN encapped packets originating in "
                                              "workloads",)))
        rules.append(R(target="-j DROP", proto=protocol_name(PROTO_IPIP),
                       comments=("Drop IPinIP encapped packets originating in workloads",)))
    prefix = POLICY_IN if direction == INGRESS else POLICY_OUT
    for tier, groups in tiers:
        rules.append(R(target=clear_mark(MARK_PASS), comments=(f"Start of tier {tier.name}",)))
        for g in groups:
            targets = [g.chain_name()] if len(g.policies) > 1 else \
                [policy_chain_name(prefix, g.policies[0])]
            for t in targets:
                rules.append(R((mark_clear(MARK_PASS),), f"-j {t}"))
                rules.append(R((mark_set(MARK_ACCEPT),), "-j RETURN",
                               comments=("Return if policy accepted",)))
        if tier.default_action != PASS_:
            rules.append(R((mark_clear(MARK_PASS),), "-j DROP", comments=(
                f"End of tier {tier.name}. Drop if no policies passed packet",)))
    profile_prefix = PROFILE_IN if direction == INGRESS else PROFILE_OUT
    for profile in profiles:
        rules.append(R(target=f"-j {length_limited_id(profile_prefix, profile)}"))
        rules.append(R((mark_set(MARK_ACCEPT),), "-j RETURN",
                       comments=("Return if profile accepted",)))
    rules.append(R(target="-j DROP", comments=("Drop if no profiles matched",)))
    return rules


def dispatch_chains(names: list[str], root: str, endpoint_prefix: str,
                    inbound: bool) -> dict[str, list[R]]:
    """interfaceNameDispatchChains: a goto per interface, grouped into child chains by the
    character after the common prefix, each ending in "Unknown interface"."""
    def end() -> list[R]:
        return [R(target="-j DROP", comments=("Unknown interface",))]

    chains, rules = dispatch_tree(names, root, endpoint_prefix, inbound, end)
    chains[root] = rules + end()
    return chains


def dispatch_tree(names: list[str], root: str, endpoint_prefix: str, inbound: bool,
                  end: Callable[[], list[R]] = list) -> tuple[dict[str, list[R]], list[R]]:
    """buildSingleDispatchChains: (the child chains, each ending in `end()`, and the root
    chain's rules before its end rules): a goto per interface to its `endpoint_prefix`
    chain, interfaces sharing the next character after the common prefix grouped into a
    child chain `<root>-<character>`."""
    names = sorted(set(names))
    common = _common_prefix(names)
    bins: dict[str, list[str]] = {}
    for name in names:
        bins.setdefault(name[:len(common) + 1] if len(name) > len(common) else common,
                        []).append(name)

    def goto(iface: str, target: str) -> R:
        return R(target=f"-g {target}", **({"in_iface": iface} if inbound else
                                           {"out_iface": iface}))

    chains: dict[str, list[R]] = {}
    rules: list[R] = []
    for prefix, members in bins.items():
        if len(members) > 1:
            child = f"{root}-{prefix[len(common):]}"
            rules.append(goto(prefix + "+", child))
            chains[child] = [goto(n, length_limited_id(endpoint_prefix, n)) for n in members]
            chains[child] += end()
        else:
            rules.append(goto(members[0], length_limited_id(endpoint_prefix, members[0])))
    return chains, rules


def _common_prefix(names: list[str]) -> str:
    """stringutils.CommonPrefix: the longest prefix all the names share."""
    if not names:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]
