"""The iptables rules kube-proxy's IPVS mode still installs, and their restore and save text.

From kubernetes pkg/proxy/ipvs/proxier.go: iptablesChains, iptablesJumpChain,
ipsetWithIptablesChain, writeIptablesRules, acceptIPVSTraffic, createAndLinkKubeChain
(restated in ../shared/reference/kube-proxy.md section 10). Set-match rules are written only
for non-empty sets, except the fixed KUBE-IPVS-FILTER and health-check rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.kube_proxy import ipvs_sets as S
from proxy.kube_proxy.ipvs_sets import IpSet

NAT, FILTER = "nat", "filter"

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_NODE_PORT = "KUBE-NODE-PORT"  # sic: IPVS mode's name, not iptables mode's KUBE-NODEPORTS
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_SOURCE_RANGES_FIREWALL = "KUBE-SOURCE-RANGES-FIREWALL"
KUBE_IPVS_FILTER = "KUBE-IPVS-FILTER"
KUBE_IPVS_OUT_FILTER = "KUBE-IPVS-OUT-FILTER"

# iptablesChains: declared (and so flushed) in every restore payload, in this order.
CHAINS: dict[str, tuple[str, ...]] = {
    NAT: (KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER, KUBE_MARK_MASQ),
    FILTER: (KUBE_FORWARD, KUBE_NODE_PORT, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL,
             KUBE_IPVS_FILTER, KUBE_IPVS_OUT_FILTER),
}

# iptablesJumpChain: (table, built-in chain, target chain, comment), in the order ensured.
JUMPS: tuple[tuple[str, str, str, str], ...] = (
    (NAT, "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    (NAT, "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    (NAT, "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    (FILTER, "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    (FILTER, "INPUT", KUBE_NODE_PORT, "kubernetes health check rules"),
    (FILTER, "INPUT", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    (FILTER, "FORWARD", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    (FILTER, "INPUT", KUBE_IPVS_FILTER, "kubernetes ipvs access filter"),
    (FILTER, "OUTPUT", KUBE_IPVS_OUT_FILTER, "kubernetes ipvs access filter"),
)

# ipsetWithIptablesChain: (set, table, from chain, target, match flags, -p protocol).
# The -LOCAL node-port sets come before their masquerading counterparts on purpose.
SET_CHAINS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (S.LOOP_BACK, NAT, KUBE_POSTROUTING, "MASQUERADE", "dst,dst,src", ""),
    (S.LOAD_BALANCER, NAT, KUBE_SERVICES, KUBE_LOAD_BALANCER, "dst,dst", ""),
    (S.LOAD_BALANCER_LOCAL, NAT, KUBE_LOAD_BALANCER, "RETURN", "dst,dst", ""),
    (S.NODE_PORT_LOCAL_TCP, NAT, KUBE_NODE_PORT, "RETURN", "dst", "tcp"),
    (S.NODE_PORT_TCP, NAT, KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "tcp"),
    (S.NODE_PORT_LOCAL_UDP, NAT, KUBE_NODE_PORT, "RETURN", "dst", "udp"),
    (S.NODE_PORT_UDP, NAT, KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "udp"),
    (S.NODE_PORT_LOCAL_SCTP, NAT, KUBE_NODE_PORT, "RETURN", "dst,dst", "sctp"),
    (S.NODE_PORT_SCTP, NAT, KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst,dst", "sctp"),
    (S.LOAD_BALANCER_FW, FILTER, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, "dst,dst",
     ""),
    (S.LOAD_BALANCER_SOURCE_CIDR, FILTER, KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src",
     ""),
    (S.LOAD_BALANCER_SOURCE_IP, FILTER, KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src",
     ""),
)

BUILTIN_CHAINS = {FILTER: ("INPUT", "FORWARD", "OUTPUT"),
                  NAT: ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
SAVE_TABLE_ORDER = (FILTER, NAT)  # iptables-save 1.8.9 (nf_tables) prints filter first
_PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: its arguments after `-A CHAIN` as kube-proxy writes them, a comment as one
    unquoted argument."""

    table: str
    chain: str
    args: tuple[str, ...]

    @property
    def target(self) -> str:
        return self.args[self.args.index("-j") + 1]

    @property
    def match_set(self) -> str | None:
        return self.args[self.args.index("--match-set") + 1] if "--match-set" in self.args \
            else None

    def restore_line(self) -> str:
        return " ".join(["-A", self.chain, *(_quote(a) for a in self.args)])

    def save_line(self, ipv6: bool) -> str:
        return f"-A {self.chain} {save_args(self.args, ipv6)}"


@dataclass(frozen=True, slots=True)
class NoNodeAccess:
    """A load-balancer VIP:port whose source ranges exclude the node (lbNoNodeAccess…)."""

    ip: str
    protocol: str
    port: int


def build_rules(sets: Mapping[str, IpSet], *, ipv6: bool, mark: str, masquerade_all: bool,
                not_local: Sequence[str], random_fully: bool,
                no_node_access: Sequence[NoNodeAccess]) -> tuple[Rule, ...]:
    """writeIptablesRules: the nat rules, then the filter rules, each in the order written.
    `not_local` is the local-traffic detector's IfNotLocal() (empty when none)."""
    nat: list[Rule] = []
    filt: list[Rule] = []

    def add(out: list[Rule], chain: str, *args: str) -> None:
        out.append(Rule(NAT if out is nat else FILTER, chain, args))

    def name(base: str) -> str:
        return sets[base].name

    def comment(base: str) -> tuple[str, str, str]:
        return ("-m", "comment", "--comment", sets[base].comment)

    def full(base: str) -> bool:
        return bool(sets[base].entries)

    add(nat, KUBE_SERVICES, "-s", "::1/128" if ipv6 else "127.0.0.0/8", "-j", "RETURN")
    for base, table, chain, target, flags, proto in SET_CHAINS:
        if full(base):
            add(nat if table == NAT else filt, chain, *(("-p", proto) if proto else ()),
                *comment(base), "-m", "set", "--match-set", name(base), flags, "-j", target)
    if full(S.CLUSTER_IP):
        head = (*comment(S.CLUSTER_IP), "-m", "set", "--match-set", name(S.CLUSTER_IP))
        if masquerade_all:
            add(nat, KUBE_SERVICES, *head, "dst,dst", "-j", KUBE_MARK_MASQ)
        elif not_local:
            add(nat, KUBE_SERVICES, *head, "dst,dst", *not_local, "-j", KUBE_MARK_MASQ)
        else:  # masquerade node-originated traffic whose source is a VIP on kube-ipvs0
            add(nat, KUBE_SERVICES, *head, "src,dst", "-j", KUBE_MARK_MASQ)
    for base, masquerade in ((S.EXTERNAL_IP, True), (S.EXTERNAL_IP_LOCAL, False)):
        if full(base):
            head = (*comment(base), "-m", "set", "--match-set", name(base), "dst,dst")
            if masquerade:
                add(nat, KUBE_SERVICES, *head, "-j", KUBE_MARK_MASQ)
            add(nat, KUBE_SERVICES, *head, "-m", "physdev", "!", "--physdev-is-in",
                "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "ACCEPT")
            add(nat, KUBE_SERVICES, *head, "-m", "addrtype", "--dst-type", "LOCAL",
                "-j", "ACCEPT")
    add(nat, KUBE_SERVICES, "-m", "addrtype", "--dst-type", "LOCAL", "-j", KUBE_NODE_PORT)
    add(nat, KUBE_LOAD_BALANCER, "-j", KUBE_MARK_MASQ)
    add(filt, KUBE_SOURCE_RANGES_FIREWALL, "-j", "DROP")
    for entry in no_node_access:  # the node reaches the VIP with the VIP as source
        add(filt, KUBE_IPVS_OUT_FILTER, "-s", entry.ip, "-m", "ipvs", "--vaddr", entry.ip,
            "--vproto", entry.protocol, "--vport", str(entry.port), "-j", "DROP")
    for base in (S.CLUSTER_IP, S.LOAD_BALANCER):  # acceptIPVSTraffic
        if full(base):
            add(nat, KUBE_SERVICES, "-m", "set", "--match-set", name(base), "dst,dst",
                "-j", "ACCEPT")
    add(filt, KUBE_FORWARD, "-m", "comment", "--comment", "kubernetes forwarding rules",
        "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT")
    add(filt, KUBE_FORWARD, "-m", "comment", "--comment", "kubernetes forwarding conntrack rule",
        "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    add(filt, KUBE_NODE_PORT, *comment(S.HEALTH_CHECK_NODE_PORT), "-m", "set", "--match-set",
        name(S.HEALTH_CHECK_NODE_PORT), "dst", "-j", "ACCEPT")
    for base in (S.LOAD_BALANCER, S.CLUSTER_IP, S.EXTERNAL_IP, S.EXTERNAL_IP_LOCAL,
                 S.HEALTH_CHECK_NODE_PORT):
        flags = "dst" if base == S.HEALTH_CHECK_NODE_PORT else "dst,dst"
        add(filt, KUBE_IPVS_FILTER, "-m", "set", "--match-set", name(base), flags,
            "-j", "RETURN")
    add(filt, KUBE_IPVS_FILTER, "-m", "conntrack", "--ctstate", "NEW", "-m", "set",
        "--match-set", name(S.IPVS_IPS), "dst", "-j", "REJECT")
    add(nat, KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    add(nat, KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    add(nat, KUBE_POSTROUTING, "-m", "comment", "--comment",
        "kubernetes service traffic requiring SNAT", "-j", "MASQUERADE",
        *(("--random-fully",) if random_fully else ()))
    add(nat, KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    return tuple(nat + filt)


def hook_rules() -> tuple[Rule, ...]:
    """The jump rules from the built-in chains, in the order they end up: each is ensured
    with "insert at position 1", so within one built-in chain the last ensured comes first."""
    out: list[Rule] = []
    for table in SAVE_TABLE_ORDER:
        for builtin in BUILTIN_CHAINS[table]:
            rows = [j for j in JUMPS if j[0] == table and j[1] == builtin]
            out += [Rule(table, builtin, ("-m", "comment", "--comment", text, "-j", target))
                    for _, _, target, text in reversed(rows)]
    return tuple(out)


def restore_text(rules: Sequence[Rule]) -> str:
    """The iptables-restore --noflush payload: *nat (chains, rules, COMMIT), then *filter."""
    lines: list[str] = []
    for table in (NAT, FILTER):
        lines.append(f"*{table}")
        lines += [f":{chain} - [0:0]" for chain in CHAINS[table]]
        lines += [r.restore_line() for r in rules if r.table == table]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def save_text(rules: Sequence[Rule], hooks: Sequence[Rule], ipv6: bool) -> str:
    """What iptables-save prints for kube-proxy's part of a fresh node (counters zero, no
    `#` comment lines): built-in chains in hook order, user chains by name, then the rules
    chain by chain in that order, each in canonical spelling."""
    lines: list[str] = []
    for table in SAVE_TABLE_ORDER:
        chains = list(BUILTIN_CHAINS[table]) + sorted(CHAINS[table])
        lines.append(f"*{table}")
        lines += [f":{c} ACCEPT [0:0]" for c in BUILTIN_CHAINS[table]]
        lines += [f":{c} - [0:0]" for c in sorted(CHAINS[table])]
        for chain in chains:
            lines += [r.save_line(ipv6) for r in (*hooks, *rules)
                      if r.table == table and r.chain == chain]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- canonical (iptables-save) form

_IP_PART = {"-s": 0, "-d": 1, "-i": 2, "-o": 3, "-p": 4}
_BARE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _quote(arg: str) -> str:
    return f'"{arg}"' if not arg or any(c.isspace() for c in arg) else arg


def _save_string(value: str) -> str:
    """xtables_save_string: bare when only [_-0-9A-Za-z], else double-quoted."""
    if value and all(c in _BARE for c in value):
        return value
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in value) + '"'


def _host(value: str, ipv6: bool) -> str:
    if "/" in value:
        return str(ipaddress.ip_network(value, strict=False))
    return f"{ipaddress.ip_address(value)}/{128 if ipv6 else 32}"


def _hex(value: str) -> str:
    return f"0x{int(value, 16):x}"


def save_args(args: Sequence[str], ipv6: bool) -> str:
    """A rule's arguments as iptables-save prints them back: -s/-d/-i/-o/-p first (hosts
    with a prefix length), then the matches in order, each canonical, then the target."""
    ip_part: dict[int, list[str]] = {}
    blocks: list[tuple[str, str, list[str]]] = []
    negate = False
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "!" and i + 1 < len(args) and args[i + 1] in _IP_PART:
            negate, i = True, i + 1
            continue
        if tok in _IP_PART:
            value = _host(args[i + 1], ipv6) if tok in ("-s", "-d") else args[i + 1]
            ip_part[_IP_PART[tok]] = (["!"] if negate else []) + [tok, value]
            negate, i = False, i + 2
        elif tok in ("-m", "-j"):
            blocks.append((tok, args[i + 1], []))
            i += 2
        else:
            blocks[-1][2].append(tok)
            i += 1
    words = [w for k in sorted(ip_part) for w in ip_part[k]]
    for kind, name, opts in blocks:
        words += _match(name, opts, ipv6) if kind == "-m" else _target(name, opts, ipv6)
    return " ".join(words)


def _match(name: str, opts: list[str], ipv6: bool) -> list[str]:
    if name == "comment":
        return ["-m", "comment", "--comment", _save_string(opts[1])]
    if name == "mark":
        return ["-m", "mark", *opts[:-1], "/".join(_hex(v) for v in opts[-1].split("/"))]
    if name == "ipvs":  # libxt_ipvs prints --vproto (as a number), --vaddr, --vport in order
        given = dict(zip(opts[::2], opts[1::2], strict=True))
        return ["-m", "ipvs", "--vproto", str(_PROTOCOL_NUMBERS[given["--vproto"]]),
                "--vaddr", _host(given["--vaddr"], ipv6), "--vport", given["--vport"]]
    return ["-m", name, *opts]  # set, addrtype, physdev, conntrack: printed as given


def _target(name: str, opts: list[str], ipv6: bool) -> list[str]:
    if name == "MARK" and opts[0] in ("--or-mark", "--xor-mark"):
        value = _hex(opts[1])
        mask = value if opts[0] == "--or-mark" else "0x0"
        return ["-j", "MARK", "--set-xmark", f"{value}/{mask}"]
    if name == "REJECT" and not opts:
        return ["-j", "REJECT", "--reject-with",
                "icmp6-port-unreachable" if ipv6 else "icmp-port-unreachable"]
    return ["-j", name, *opts]
