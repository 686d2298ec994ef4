"""Text forms of iptables rules: restore lines, iptables-save's canonical form, the test sort.

Shared by the iptables and IPVS proxiers. Facts from ../shared/reference/kube-proxy.md
section 12, checked against iptables 1.8.9 (nf_tables) in a network namespace: iptables-save
prints addresses, interfaces and the protocol first, then the matches in the order given,
each in its own canonical spelling.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import shlex
from collections.abc import Iterable, Sequence

from proxy.kube_proxy.constants import BUILTIN_CHAINS, PROTOCOL_NUMBERS

# ---------------------------------------------------------------- restore text


def quote(arg: str) -> str:
    """An argument as kube-proxy writes it into restore input: quoted when it holds a space."""
    return f'"{arg}"' if (not arg or any(c.isspace() for c in arg)) else arg


def restore_line(chain: str, args: Sequence[str]) -> str:
    return " ".join(["-A", chain, *map(quote, args)])


def restore_table(name: str, chains: Iterable[str],
                  rules: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """One table of an iptables-restore payload: its chain lines, (chain, args) rules in
    order, COMMIT."""
    return [f"*{name}", *(f":{chain} - [0:0]" for chain in chains),
            *(restore_line(chain, args) for chain, args in rules), "COMMIT"]


# ---------------------------------------------------------------- the jump rules


def ensured_jumps(rows: Iterable[tuple[str, str, str, str, tuple[str, ...]]],
                  tables: Iterable[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(table, built-in chain, args) for jump rules given as (table, built-in chain, target,
    comment, extra match args) in the order kube-proxy ensures them, each inserted at
    position 1: per table (in `tables` order) and built-in chain, the last ensured first."""
    rows = tuple(rows)
    out = []
    for table in tables:
        for chain in BUILTIN_CHAINS[table]:
            ensured = [(target, comment, extra) for t, c, target, comment, extra in rows
                       if t == table and c == chain]
            for target, comment, extra in reversed(ensured):
                args = (*extra, *(("-m", "comment", "--comment", comment) if comment else ()),
                        "-j", target)
                out.append((table, chain, args))
    return out


# ---------------------------------------------------------------- iptables-save canonical form

_SAFE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_string(value: str) -> str:
    """xtables_save_string: bare when only [_-0-9A-Za-z], else double-quoted with \\ escapes."""
    if value and all(c in _SAFE for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


def kernel_probability(text: str) -> str:
    """The statistic match stores round(p * 2^31) (lround); iptables-save prints %.11f of it."""
    stored = math.floor(float(text) * 0x80000000 + 0.5)
    return f"{stored / 0x80000000:.11f}"


def _hex(value: str) -> str:
    return f"0x{int(value, 16):x}"


@functools.lru_cache(maxsize=1 << 18)  # the same addresses recur on every node compiled
def _address(value: str, ipv6: bool) -> str:
    if "/" in value:
        return str(ipaddress.ip_network(value, strict=False))
    return f"{ipaddress.ip_address(value)}/{128 if ipv6 else 32}"


# iptables-save's order for the "ip" part of a rule, whatever order it was given in.
_IP_PART = {"-s": 0, "-d": 1, "-i": 2, "-o": 3, "-p": 4}


def _options(tokens: Sequence[str]) -> list[tuple[bool, str, list[str]]]:
    """Split a match's or target's tokens into (negated, --option, values)."""
    out: list[tuple[bool, str, list[str]]] = []
    neg = False
    for tok in tokens:
        if tok == "!":
            neg = True
        elif tok.startswith("--"):
            out.append((neg, tok, []))
            neg = False
        else:
            out[-1][2].append(tok)
    return out


def _canonical_match(name: str, tokens: Sequence[str], ipv6: bool) -> list[str]:
    opts = _options(tokens)
    words = ["-m", name]
    if name == "comment":
        return words + ["--comment", save_string(opts[0][2][0])]
    if name == "recent":
        given = {opt: vals for _, opt, vals in opts}
        for command in ("--set", "--rcheck", "--update", "--remove"):
            if command in given:
                words.append(command)
        if "--seconds" in given:
            words += ["--seconds", given["--seconds"][0]]
        if "--reap" in given:
            words.append("--reap")
        mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if ipv6 else "255.255.255.255"
        return words + ["--name", given.get("--name", ["DEFAULT"])[0], "--mask", mask,
                        "--rsource"]
    if name == "nfacct":  # libxt_nfacct prints the name after two spaces
        return words + ["--nfacct-name  " + opts[0][2][0]]
    if name == "ipvs":  # libxt_ipvs prints --vproto (as a number), --vaddr, --vport in order
        given = {opt: vals[0] for _, opt, vals in opts}
        return words + ["--vproto", str(PROTOCOL_NUMBERS[given["--vproto"]]),
                        "--vaddr", _address(given["--vaddr"], ipv6), "--vport", given["--vport"]]
    for neg, opt, vals in opts:
        if neg:
            words.append("!")
        if name == "statistic" and opt == "--probability":
            vals = [kernel_probability(vals[0])]
        elif name == "mark" and opt == "--mark":
            vals = ["/".join(_hex(v) for v in vals[0].split("/"))]
        words += [opt, *vals]
    return words


def _canonical_target(name: str, tokens: Sequence[str], ipv6: bool) -> list[str]:
    opts = _options(tokens)
    if name == "MARK":
        _, opt, vals = opts[0]
        value = _hex(vals[0])
        mask = {"--or-mark": value, "--xor-mark": "0x0"}.get(opt)
        if mask is not None:
            return ["-j", "MARK", "--set-xmark", f"{value}/{mask}"]
    if name == "REJECT" and not opts:
        unreachable = "icmp6-port-unreachable" if ipv6 else "icmp-port-unreachable"
        return ["-j", "REJECT", "--reject-with", unreachable]
    words = ["-j", name]
    for neg, opt, vals in opts:
        words += (["!"] if neg else []) + [opt, *vals]
    return words


def save_args(args: Sequence[str], ipv6: bool) -> str:
    """A rule's arguments (after "-A CHAIN") as iptables-save prints them back."""
    ip_part: dict[int, list[str]] = {}
    blocks: list[tuple[str, str, list[str]]] = []  # ("m"|"j", name, option tokens)
    pending_not = False
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "!" and i + 1 < len(args) and args[i + 1] in _IP_PART:
            pending_not = True
            i += 1
            continue
        if tok in _IP_PART:
            value = args[i + 1]
            if tok in ("-s", "-d"):
                value = _address(value, ipv6)
            ip_part[_IP_PART[tok]] = (["!"] if pending_not else []) + [tok, value]
            pending_not = False
            i += 2
        elif tok in ("-m", "-j"):
            blocks.append((tok[1], args[i + 1], []))
            i += 2
        else:  # an option (or "!") of the latest match or target
            blocks[-1][2].append(tok)
            i += 1
    words = [w for k in sorted(ip_part) for w in ip_part[k]]
    for kind, name, tokens in blocks:
        words += (_canonical_match(name, tokens, ipv6) if kind == "m"
                  else _canonical_target(name, tokens, ipv6))
    return " ".join(words)


def save_table(name: str, user_chains: Iterable[str], rules: Iterable[tuple[str, Sequence[str]]],
               ipv6: bool) -> list[str]:
    """One table as iptables-save prints it on a fresh node (no `#` lines, zero counters):
    built-in chains in hook order with policy ACCEPT, user chains by name, then the (chain,
    args) rules chain by chain in that order, each in canonical form."""
    builtins = BUILTIN_CHAINS[name]
    users = sorted(set(user_chains))
    by_chain: dict[str, list[Sequence[str]]] = {}
    for chain, args in rules:
        by_chain.setdefault(chain, []).append(args)
    out = [f"*{name}", *(f":{c} ACCEPT [0:0]" for c in builtins),
           *(f":{c} - [0:0]" for c in users)]
    for chain in (*builtins, *users):
        out += [f"-A {chain} {save_args(args, ipv6)}" for args in by_chain.get(chain, ())]
    out.append("COMMIT")
    return out


# ---------------------------------------------------------------- the upstream unit-test sort


def _comment(line: str) -> str | None:
    try:
        tokens = shlex.split(line)
    except ValueError:
        return None
    for i, tok in enumerate(tokens[:-1]):
        if tok == "--comment":
            return tokens[i + 1]
    return None


def _service_name(line: str) -> str | None:
    comment = _comment(line)
    if comment is None:
        return None
    for i, c in enumerate(comment):
        if c in " :":
            return comment[:i]
    return comment


def _chain_order(name: str) -> tuple[int, str]:
    if name == "KUBE-NODEPORTS":
        return (0, "")
    if name == "KUBE-SERVICES":
        return (1, "")
    return (2 if name.startswith("KUBE-") else 3, name)


def sort_rules_text(text: str) -> str:
    """kube-proxy's sortIPTablesRules (proxier_test.go): tables by name; chains KUBE-NODEPORTS,
    KUBE-SERVICES, other KUBE-* by name, then the rest; rules grouped by chain in their
    order, KUBE-NODEPORTS and KUBE-SERVICES stable-sorted by the service name in their
    comment with the nat "must be the last rule" rule kept last; -X lines after the rules."""
    tables: dict[str, tuple[list[str], dict[str, list[str]], list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], ([], {}, []))
        elif line.startswith(":"):
            name = line[1:].split()[0]
            current[0].append(line)
            current[1].setdefault(name, [])
        elif line.startswith("-A "):
            current[1].setdefault(line.split()[1], []).append(line)
        elif line.startswith("-X "):
            current[2].append(line)
    out: list[str] = []
    for table in sorted(tables):
        chain_lines, rules, deletions = tables[table]
        by_name = {line[1:].split()[0]: line for line in chain_lines}
        order = sorted(rules, key=_chain_order)
        out.append(f"*{table}")
        out += [by_name[name] for name in order if name in by_name]
        for name in order:
            chain_rules = rules[name]
            if name in ("KUBE-NODEPORTS", "KUBE-SERVICES"):
                chain_rules = _sorted_by_service(chain_rules, last_rule=table == "nat"
                                                 and name == "KUBE-SERVICES")
            out += chain_rules
        out += deletions
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _sorted_by_service(lines: Iterable[str], last_rule: bool) -> list[str]:
    def key(line: str) -> tuple[bool, str]:
        comment = _comment(line) or ""
        return (last_rule and "must be the last rule" in comment, _service_name(line) or "")
    return sorted(lines, key=key)
