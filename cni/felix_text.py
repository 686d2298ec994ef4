"""felix's names, mark bits and the iptables-restore text its rules are written in.

Chain names from felix/rules/rule_defs.go; mark bits from felix/dataplane/driver.go with the
default IptablesMarkMask 0xffff0000 (bits handed out lowest first: accept, pass, drop,
scratch0, scratch1, then every bit left for the endpoint mark); the length-limited names
from libcalico-go lib/hash GetLengthLimitedID.
Rules are written in iptables-save's canonical order (addresses, interfaces and protocol
first, then the matches in felix's order, comments first), so the text diffs cleanly against
a node's `iptables-save`. felix's per-rule `cali:<hash>` comments are left out.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.netfilter.model import PROTOCOL_NAMES

# ---------------------------------------------------------------- marks

MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
MARK_DROP = 0x40000
MARK_SCRATCH0 = 0x80000
MARK_SCRATCH1 = 0x100000
# static.go allCalicoMarkBits: accept | pass | scratch0 | scratch1 (the drop bit is only
# ever set right before a DROP).
ALL_MARKS = MARK_ACCEPT | MARK_PASS | MARK_SCRATCH0 | MARK_SCRATCH1
MARK_MASK = 0xFFFF0000  # IptablesMarkMask default
# driver.go: the endpoint mark takes every bit of the mask left after the single bits
# (NextBlockBitsMark(AvailableMarkBitCount())), 0xffe00000; its lowest bit is reserved for
# packets from an interface that is neither a workload nor a host endpoint. Only used when
# KubeIPVSSupportEnabled.
MARK_ENDPOINT = MARK_MASK & ~(MARK_ACCEPT | MARK_PASS | MARK_DROP | MARK_SCRATCH0
                              | MARK_SCRATCH1)
MARK_NON_CALI_ENDPOINT = MARK_ENDPOINT & -MARK_ENDPOINT

# ---------------------------------------------------------------- chain names

PREFIX = "cali-"
MAX_CHAIN_NAME = 28  # felix/iptables MaxChainNameLength
IFACE_PREFIX = "cali"  # FELIX_INTERFACEPREFIX default
IFACE_WILDCARD = IFACE_PREFIX + "+"

FILTER_INPUT, FILTER_FORWARD, FILTER_OUTPUT = "cali-INPUT", "cali-FORWARD", "cali-OUTPUT"
PREROUTING, POSTROUTING, OUTPUT = "cali-PREROUTING", "cali-POSTROUTING", "cali-OUTPUT"
WORKLOAD_TO_HOST = "cali-wl-to-host"
FROM_WORKLOAD_DISPATCH = "cali-from-wl-dispatch"
TO_WORKLOAD_DISPATCH = "cali-to-wl-dispatch"
FROM_HOST_ENDPOINT = "cali-from-host-endpoint"
TO_HOST_ENDPOINT = "cali-to-host-endpoint"
FROM_HEP_FORWARD = "cali-from-hep-forward"
TO_HEP_FORWARD = "cali-to-hep-forward"
CIDR_BLOCK = "cali-cidr-block"
RPF_SKIP = "cali-rpf-skip"
NAT_OUTGOING = "cali-nat-outgoing"
FIP_DNAT, FIP_SNAT = "cali-fip-dnat", "cali-fip-snat"
TO_WORKLOAD, FROM_WORKLOAD = "cali-tw-", "cali-fw-"
# kube-proxy IPVS mode only (KubeIPVSSupportEnabled)
SET_ENDPOINT_MARK_DISPATCH = "cali-set-endpoint-mark"
FROM_ENDPOINT_MARK_DISPATCH = "cali-from-endpoint-mark"
FORWARD_CHECK = "cali-forward-check"
FORWARD_ENDPOINT_MARK = "cali-forward-endpoint-mark"
SET_ENDPOINT_MARK = "cali-sm-"
POLICY_IN, POLICY_OUT = "cali-pi-", "cali-po-"
PROFILE_IN, PROFILE_OUT = "cali-pri-", "cali-pro-"
GROUP_IN, GROUP_OUT = "cali-gi-", "cali-go-"

# ---------------------------------------------------------------- ipset names

IPSET_PREFIX = {4: "cali40", 6: "cali60"}
MAX_IPSET_NAME = 31
ALL_POOLS, MASQ_POOLS = "all-ipam-pools", "masq-ipam-pools"
ALL_HOSTS, ALL_VXLAN = "all-hosts-net", "all-vxlan-net"
THIS_HOST = "this-host"  # IPSetIDThisHostIPs: the host's own addresses (KubeIPVSSupportEnabled)

KUBE_NODE_PORT_RANGE = (30000, 32767)  # felix KubeNodePortRanges default

VXLAN_PORT = 4789
PROTO_IPIP = 4


def length_limited_id(prefix: str, suffix: str, max_length: int = MAX_CHAIN_NAME) -> str:
    """GetLengthLimitedID: prefix+suffix, or prefix + "_" + base64url(SHA-256(suffix)) cut to
    fit when that is too long (or exactly fits but starts with "_")."""
    if not suffix:
        suffix = "_"
    total = len(prefix) + len(suffix)
    if total > max_length or (total == max_length and suffix[0] == "_"):
        digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode()).digest()).decode()
        return prefix + "_" + digest.rstrip("=")[:max_length - 1 - len(prefix)]
    return prefix + suffix


def unique_id(prefix: str, content: str) -> str:
    """libcalico-go hash.MakeUniqueID: prefix + ":" + base64url(SHA-224(prefix:content))."""
    digest = hashlib.sha224(f"{prefix}:{content}".encode()).digest()
    return prefix + ":" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def ipset_name(family: int, set_id: str) -> str:
    """ipsets.IPVersionConfig.NameForMainIPSet: the family prefix + ID, cut to 31 chars."""
    return (IPSET_PREFIX[family] + set_id)[:MAX_IPSET_NAME]


# ---------------------------------------------------------------- matches and targets


def hexmark(value: int) -> str:
    return f"{value:#x}"


def mark_set(bit: int) -> str:
    """MarkSingleBitSet."""
    return f"-m mark --mark {hexmark(bit)}/{hexmark(bit)}"


def mark_clear(bits: int) -> str:
    """MarkClear."""
    return f"-m mark --mark 0x0/{hexmark(bits)}"


def mark_not_clear(bits: int) -> str:
    """MarkNotClear."""
    return f"-m mark ! --mark 0x0/{hexmark(bits)}"


def mark_matches(value: int, mask: int, negated: bool = False) -> str:
    """MarkMatchesWithMask (NotMarkMatchesWithMask when negated)."""
    return f"-m mark {'! ' if negated else ''}--mark {hexmark(value)}/{hexmark(mask)}"


def set_mark(bits: int) -> str:
    return f"-j MARK --set-xmark {hexmark(bits)}/{hexmark(bits)}"


def clear_mark(bits: int) -> str:
    return f"-j MARK --set-xmark 0x0/{hexmark(bits)}"


def set_masked_mark(value: int, mask: int) -> str:
    return f"-j MARK --set-xmark {hexmark(value)}/{hexmark(mask)}"


def ctstate(states: str, negated: bool = False) -> str:
    return f"-m conntrack {'! ' if negated else ''}--ctstate {states}"


def match_set(name: str, dirs: str, negated: bool = False) -> str:
    return f"-m set {'! ' if negated else ''}--match-set {name} {dirs}"


def multiport(which: str, ports: Iterable[tuple[int, int]], negated: bool = False) -> str:
    text = ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ports)
    return f"-m multiport {'! ' if negated else ''}--{which} {text}"


def protocol_name(protocol: str | int) -> str:
    """The protocol as iptables-save prints it."""
    if isinstance(protocol, int):
        return PROTOCOL_NAMES.get(protocol, str(protocol))
    return {"ICMPV6": "ipv6-icmp"}.get(protocol.upper(), protocol.lower())


def comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


@dataclass(slots=True)
class R:
    """One rule before rendering: iptables-save prints addresses, interfaces and the protocol
    first, then the matches in the order given, then the target."""

    matches: tuple[str, ...] = ()
    target: str | None = None
    src: str | None = None
    dst: str | None = None
    src_inv: bool = False
    dst_inv: bool = False
    in_iface: str | None = None
    out_iface: str | None = None
    proto: str | None = None
    proto_inv: bool = False
    comments: tuple[str, ...] = ()

    def render(self, chain: str, verb: str = "-A") -> str:
        parts = [verb, chain]
        if self.src is not None:
            parts.append(f"{'! ' if self.src_inv else ''}-s {self.src}")
        if self.dst is not None:
            parts.append(f"{'! ' if self.dst_inv else ''}-d {self.dst}")
        if self.in_iface is not None:
            parts.append(f"-i {self.in_iface}")
        if self.out_iface is not None:
            parts.append(f"-o {self.out_iface}")
        if self.proto is not None:
            parts.append(f"{'! ' if self.proto_inv else ''}-p {self.proto}")
        parts.extend(comment(c) for c in self.comments)
        parts.extend(self.matches)
        if self.target is not None:
            parts.append(self.target)
        return " ".join(parts)


@dataclass(slots=True)
class Table:
    """One table's felix chains plus its hooks into the built-in chains."""

    name: str
    chains: dict[str, list[R]] = field(default_factory=dict)
    inserts: list[tuple[str, R]] = field(default_factory=list)  # (built-in chain, rule)
    appends: list[tuple[str, R]] = field(default_factory=list)

    def chain(self, name: str, rules: Iterable[R] = ()) -> list[R]:
        out = self.chains.setdefault(name, [])
        out.extend(rules)
        return out

    def referenced(self) -> list[str]:
        """felix programs only chains reachable from its hooks (its table refcounts them)."""
        seen: set[str] = set()
        todo = [_jump(r) for _, r in self.inserts + self.appends]
        while todo:
            name = todo.pop()
            if name is None or name in seen or name not in self.chains:
                continue
            seen.add(name)
            todo.extend(_jump(r) for r in self.chains[name])
        return sorted(seen)

    def render(self) -> str:
        names = self.referenced()
        lines = [f"*{self.name}"]
        lines += [f":{n} - [0:0]" for n in names]
        lines += [r.render(f"{chain} 1", "-I") for chain, r in self.inserts]
        lines += [r.render(chain) for chain, r in self.appends]
        for n in names:
            lines += [r.render(n) for r in self.chains[n]]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def _jump(rule: R) -> str | None:
    target = rule.target or ""
    if target.startswith(("-j ", "-g ")):
        name = target[3:].split(" ", 1)[0]
        if name.startswith(PREFIX):
            return name
    return None
