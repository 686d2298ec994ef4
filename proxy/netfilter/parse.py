"""Read iptables-save / iptables-restore text (IPv4 or IPv6) into a frozen Ruleset."""

from __future__ import annotations

import gc
import re
from types import MappingProxyType

from netsim.errors import InputError

from . import ipset as _ipset  # noqa: F401  (registers -m set)
from . import matches_host as _matches_host  # noqa: F401  (registers node-fact matches)
from . import matches_state as _matches_state  # noqa: F401  (registers stateful matches)
from . import nat as _nat  # noqa: F401  (registers the NAT targets and TPROXY)
from .addr import Net
from .compile import CompileError, compile_table
from .ext import TARGETS, ExtensionError
from .lexer import tokenize
from .model import (
    TABLE_CHAINS,
    OpaqueRule,
    Rule,
    Ruleset,
    Table,
)
from .rules import ChainBuild, RuleParser, allowed_hooks, template_key
from .targets import STANDARD

_COMMANDS = {
    "-A": "append", "--append": "append", "-I": "insert", "--insert": "insert",
    "-D": "delete", "--delete": "delete", "-R": "replace", "--replace": "replace",
    "-N": "new", "--new-chain": "new", "-X": "delete-chain", "--delete-chain": "delete-chain",
    "-F": "flush", "--flush": "flush", "-P": "policy", "--policy": "policy",
    "-Z": "zero", "--zero": "zero",
}
# a chain name needing no further checks (the fast path for `:NAME - [0:0]` lines)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,27}").fullmatch
_ADDRESS_HINT = re.compile(
    r"(?:^|\s)(?:-s|-d|--source|--destination|--src|--dst)\s+(?:!\s+)?([0-9A-Fa-f.:]+)", re.M)


def parse_ruleset(text: str, source: str = "<rules>", *, strict: bool = True,
                  family: int | None = None) -> Ruleset:
    """Parse iptables-save or iptables-restore text into a frozen, indexed Ruleset.

    Raises InputError naming `source:line` for bad input and, when strict, for any match,
    target or option the interpreter does not model. With strict=False such rules are kept as
    opaque rules (never matching, reported in traces) and listed in `Ruleset.unsupported`.
    The family (4 or 6) is taken from the first address in the text unless given.
    """
    if family is None:
        hint = _ADDRESS_HINT.search(text)
        family = 6 if hint and ":" in hint.group(1) else 4
    if family not in (4, 6):
        raise ValueError("family must be 4 or 6")
    # A big ruleset is hundreds of thousands of small immutable objects: the cyclic garbage
    # collector would rescan them again and again while they are built (none form cycles).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Parser(source, strict, family).run(text)
    finally:
        if collecting:
            gc.enable()


class _Parser(RuleParser):
    def __init__(self, source: str, strict: bool, family: int) -> None:
        self.source = source
        self.strict = strict
        self.family = family
        self.tables: dict[str, dict[str, ChainBuild]] = {}
        self.table: str | None = None
        self.chains: dict[str, ChainBuild] = {}
        self.table_line = 0
        self.opaque: list[OpaqueRule] = []
        self.built_tables: dict[str, Table] = {}
        self._match_cache: dict = {}
        self._target_cache: dict = {}
        self._facts: dict = {}
        self._nets: dict[str, Net] = {}
        # chain -> the hooks that all its hook-restricted matches and targets allow
        self.restricted: dict[str, frozenset[str]] = {}
        # jumps seen while parsing the current table (an over-approximation once rules are
        # deleted or flushed: `edges_stale` then asks for them to be recomputed)
        self.edges: dict[str, set[str]] = {}
        self.edges_stale = False
        self.templates: dict[tuple, tuple[Rule, frozenset[str] | None]] = {}

    # --- errors ------------------------------------------------------------------------------

    def error(self, line: int, message: str, name: str | None = None) -> InputError:
        return InputError(message, obj=f"{self.source}:{line}", field=name)

    # --- lines -------------------------------------------------------------------------------

    def run(self, text: str) -> Ruleset:
        templates = self.templates
        parse = self._parse_rule
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            first = line[0]
            if first == "-" and line.startswith("-A "):
                # the common case, kept short: -A CHAIN rule...
                try:
                    words = tokenize(line) if '"' in line else line.split()
                except ValueError as err:
                    raise self.error(number, str(err)) from None
                chain = self.chains.get(words[1]) if len(words) > 1 else None
                if chain is None:
                    if self.table is None:
                        raise self.error(number, "-A outside a table (no '*table' line)")
                    self.command(line, words, number, None)
                    continue
                # Rules that differ from an earlier one in one word only (the chain jumped to,
                # the -s/-d address, the DNAT/SNAT address) share its parse: kube-proxy
                # writes hundreds of thousands of those.
                key = template_key(words)
                if key is not None:
                    template = templates.get(key)
                    if template is not None and self.from_template(chain, key[0], template,
                                                                   words, number, line):
                        continue
                try:
                    rules = parse(chain.name, words, 2, number, line, None)
                except ExtensionError:
                    rules = self.parse_rule(chain.name, words, 2, number, line, None)
                chain.rules += rules
                if key is not None and len(rules) == 1 and rules[0].unsupported is None:
                    templates[key] = (rules[0], allowed_hooks(rules[0]))
            elif first == "#":
                continue
            elif first == ":":
                if self.table is None:
                    raise self.error(number, "chain line outside a table (no '*table' line)")
                name = line[1:-8]
                if line.endswith(" - [0:0]") and name not in self.chains and _PLAIN_NAME(name) \
                        and name not in TARGETS and name not in STANDARD:
                    self.chains[name] = ChainBuild(name, None, number)  # the common case
                else:
                    self.declare_chain(line, number)
            elif first == "*":
                self.start_table(line[1:].strip(), number)
            elif line == "COMMIT":
                self.commit(number)
            elif self.table is None:
                raise self.error(number, f"{line.split()[0]!r} outside a table (no '*table' line)")
            else:
                counters = None
                if first == "[":
                    close = line.find("]")
                    counters = self.parse_counters(line[1:close], number)
                    line = line[close + 1:].lstrip()
                try:
                    words = tokenize(line)
                except ValueError as err:
                    raise self.error(number, str(err)) from None
                self.command(line, words, number, counters)
        if self.table is not None:
            raise self.error(self.table_line, f"table {self.table!r} has no COMMIT")
        return Ruleset(self.family, self.source, MappingProxyType(self.built_tables),
                       tuple(self.opaque))

    def parse_counters(self, text: str, line: int) -> tuple[int, int]:
        packets, colon, octets = text.partition(":")
        if not colon or not packets.isdigit() or not octets.isdigit():
            raise self.error(line, f"bad counters [{text}]")
        return int(packets), int(octets)

    def start_table(self, name: str, line: int) -> None:
        if self.table is not None:
            raise self.error(line, f"'*{name}' before COMMIT of table {self.table!r}")
        if name not in TABLE_CHAINS:
            raise self.error(line, f"unknown table {name!r}", f"*{name}")
        self.table = name
        self.table_line = line
        # a second section for the same table continues it (iptables-restore --noflush)
        chains = self.tables.get(name)
        if chains is None:
            chains = {c: ChainBuild(c, "ACCEPT", line) for c in TABLE_CHAINS[name]}
            self.tables[name] = chains
        self.chains = chains

    def declare_chain(self, line: str, number: int) -> None:
        parts = line[1:].split()
        if not parts:
            raise self.error(number, "chain line without a name")
        name = parts[0]
        policy = parts[1] if len(parts) > 1 else "-"
        chain = self.chains.get(name)
        builtin = chain is not None and chain.policy is not None
        if builtin:
            if policy not in ("ACCEPT", "DROP"):
                raise self.error(number, f"bad policy {policy!r} for built-in chain {name}")
            chain.policy = policy
        elif policy != "-":
            raise self.error(number, f"user chain {name} cannot have a policy ({policy})")
        elif chain is None:
            if len(name) > 28 or name in TARGETS or name in STANDARD or name[0] in "-!":
                self.check_chain_name(name, number)
            chain = self.chains[name] = ChainBuild(name, None, number)
        if chain.rules:  # declaring a chain again flushes it (iptables-restore)
            chain.rules.clear()
            self.edges_stale = True
        if len(parts) > 2 and parts[2] != "[0:0]":
            chain.counters = self.parse_counters(parts[2].strip("[]"), number)

    def check_chain_name(self, name: str, line: int) -> None:
        if len(name) > 28:
            raise self.error(line, f"chain name {name!r} is longer than 28 characters")
        if name in TARGETS or name in STANDARD or name[0] in "-!":
            raise self.error(line, f"chain name {name!r} is not allowed")

    def commit(self, line: int) -> None:
        if self.table is None:
            raise self.error(line, "COMMIT outside a table")
        self.built_tables[self.table] = self.freeze_table(self.table, self.chains, line)
        self.table = None
        self.chains = {}

    # --- commands ----------------------------------------------------------------------------

    def command(self, line: str, words: list[str], number: int,
                counters: tuple[int, int] | None) -> None:
        raw = line
        command = _COMMANDS.get(words[0])
        if command is None:
            if words[0] in ("-t", "--table"):
                raise self.error(number, "-t cannot be used in restore text (use '*table')")
            raise self.error(number, f"unknown command {words[0]!r}")
        chain_name = words[1] if len(words) > 1 else None
        if command in ("append", "insert", "delete", "replace", "policy"):
            if chain_name is None:
                raise self.error(number, f"{words[0]} needs a chain name")
            chain = self.chains.get(chain_name)
            if chain is None:
                raise self.error(number, f"chain {chain_name!r} does not exist in table "
                                 f"{self.table!r}")
        if command == "append":
            chain.rules.extend(self.parse_rule(chain_name, words, 2, number, raw, counters))
        elif command in ("insert", "replace", "delete"):
            self.edges_stale = self.edges_stale or command != "insert"
            self.positional(command, chain, words, number, raw, counters)
        elif command == "new":
            if chain_name is None:
                raise self.error(number, "-N needs a chain name")
            if chain_name in self.chains:
                raise self.error(number, f"chain {chain_name!r} already exists", chain_name)
            self.check_chain_name(chain_name, number)
            self.chains[chain_name] = ChainBuild(chain_name, None, number)
        elif command == "delete-chain":
            self.delete_chains(chain_name, number)
            self.edges_stale = True
        elif command == "flush":
            self.edges_stale = True
            for chain in ([self.chains[chain_name]] if chain_name in self.chains
                          else self.chains.values() if chain_name is None else []):
                chain.rules.clear()
            if chain_name is not None and chain_name not in self.chains:
                raise self.error(number, f"chain {chain_name!r} does not exist", chain_name)
        elif command == "policy":
            if chain.policy is None or len(words) < 3 or words[2] not in ("ACCEPT", "DROP"):
                raise self.error(number, "-P needs a built-in chain and ACCEPT or DROP")
            chain.policy = words[2]
        # -Z (zero counters) has nothing to do here

    def positional(self, command: str, chain: ChainBuild, words: list[str], number: int,
                   raw: str, counters) -> None:
        has_number = len(words) > 2 and words[2].isdigit()
        position = int(words[2]) if has_number else 1
        start = 3 if has_number else 2
        if command == "insert":
            if position < 1 or position > len(chain.rules) + 1:
                raise self.error(number, f"index of insertion {position} too big", chain.name)
            rules = self.parse_rule(chain.name, words, start, number, raw, counters)
            chain.rules[position - 1:position - 1] = rules
            return
        if command == "replace" or (command == "delete" and has_number):
            if not has_number or not 1 <= position <= len(chain.rules):
                raise self.error(number, f"{words[0]}: no rule number {words[2:3]} in "
                                 f"{chain.name}", chain.name)
            if command == "delete":
                del chain.rules[position - 1]
            else:
                rules = self.parse_rule(chain.name, words, start, number, raw, counters)
                if len(rules) != 1:
                    raise self.error(number, "-R needs a rule that expands to one rule")
                chain.rules[position - 1] = rules[0]
            return
        wanted = [r.spec() for r in self.parse_rule(chain.name, words, 2, number, raw, None)]
        for spec in wanted:
            for i, rule in enumerate(chain.rules):
                if rule.spec() == spec:
                    del chain.rules[i]
                    break
            else:
                raise self.error(number, "bad rule (does a matching rule exist in that chain?)",
                                 chain.name)

    def delete_chains(self, name: str | None, number: int) -> None:
        names = [name] if name is not None else [
            c.name for c in self.chains.values() if c.policy is None]
        for chain_name in names:
            chain = self.chains.get(chain_name)
            if chain is None:
                raise self.error(number, f"chain {chain_name!r} does not exist", chain_name)
            if chain.policy is not None:
                raise self.error(number, f"cannot delete built-in chain {chain_name}")
            for other in self.chains.values():
                if other.name != chain_name and any(r.jump == chain_name for r in other.rules):
                    raise self.error(number, f"chain {chain_name!r} is still referenced by "
                                     f"chain {other.name}", chain_name)
            del self.chains[chain_name]

    # --- one rule ----------------------------------------------------------------------------

    # --- freezing a table --------------------------------------------------------------------

    def freeze_table(self, name: str, builds: dict[str, ChainBuild], line: int) -> Table:
        chains = {b.name: (b.rules, b.policy, b.counters) for b in builds.values()}
        edges = None if self.edges_stale else self.edges
        try:
            table, opaque = compile_table(name, chains, edges, self.restricted, self.strict)
        except CompileError as err:
            raise self.error(err.line or line, err.message, err.name) from None
        self.opaque.extend(opaque)
        self.restricted = {}
        self.templates.clear()
        self.edges = {}
        self.edges_stale = False
        return table
