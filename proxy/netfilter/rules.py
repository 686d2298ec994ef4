"""One rule line's words into Rule tuples: base options, `-m`/`-j` extensions, shared parses."""

from __future__ import annotations

from .addr import Net, fast_v4_net, parse_net
from .ext import MATCHES, TARGETS, ExtensionError, Given, RuleFacts, Unsupported
from .model import PROTOCOL_MATCH, PROTOCOL_NUMBERS, OpaqueRule, Rule
from .targets import STANDARD

_NOT, _SRC, _DST, _IN, _OUT, _PROTO, _MATCH, _JUMP, _GOTO, _FRAG, _COUNTERS = range(11)
_BASE = {
    "!": _NOT,
    "-s": _SRC, "--source": _SRC, "--src": _SRC,
    "-d": _DST, "--destination": _DST, "--dst": _DST,
    "-i": _IN, "--in-interface": _IN, "-o": _OUT, "--out-interface": _OUT,
    "-p": _PROTO, "--protocol": _PROTO, "-m": _MATCH, "--match": _MATCH,
    "-j": _JUMP, "--jump": _JUMP, "-g": _GOTO, "--goto": _GOTO,
    "-f": _FRAG, "--fragment": _FRAG, "--fragments": _FRAG,
    "-c": _COUNTERS, "--set-counters": _COUNTERS,
}
# Well-known iptables targets this interpreter does not model: named as unsupported targets
# (rather than unknown chains) when a rule uses them.
_KNOWN_TARGETS = frozenset({
    "QUEUE", "NFQUEUE", "SET", "TCPMSS", "CHECKSUM", "CLASSIFY", "DSCP", "TOS", "TTL", "HL",
    "ECN", "SECMARK", "CONNSECMARK", "NETMAP", "CLUSTERIP", "IDLETIMER", "LED", "RATEEST",
    "SYNPROXY", "TEE", "AUDIT", "HMARK", "ULOG", "SNPT", "DNPT", "MIRROR", "SAME", "CONNTRACK",
})
_JUMPS = frozenset({"-j", "--jump", "-g", "--goto"})
_ADDRESS_OPTIONS = frozenset({"-s", "-d", "--source", "--destination", "--src", "--dst"})
_NAT_TO = frozenset({"--to-destination", "--to-source"})


def allowed_hooks(rule: Rule) -> frozenset[str] | None:
    """The hooks all of a rule's hook-restricted matches and targets allow (None: any)."""
    allowed = None
    for ext in (*rule.matches, rule.target):
        hooks = getattr(ext, "hooks", None)
        if hooks is not None:
            allowed = hooks if allowed is None else allowed & hooks
    return allowed


def template_key(words: list[str]) -> tuple | None:
    """The key under which rules differing in one word only share a parse (see run)."""
    if len(words) < 5:
        return None
    if words[2] in _ADDRESS_OPTIONS:
        if len(words) > 5 and "," not in words[3]:
            return ("A", words[2], *words[4:])
        return None
    if words[-2] in _JUMPS:
        return ("J", *words[2:-1])
    if words[-2] in _NAT_TO and words[-4] in ("-j", "--jump") and words[-3] in ("DNAT", "SNAT"):
        return ("N", *words[2:-1])
    return None
_new_rule = tuple.__new__  # Rule(...) without NamedTuple's keyword-handling constructor


def _givens(flat: list) -> list[Given]:
    return [Given(flat[k], flat[k + 1], flat[k + 2]) for k in range(0, len(flat), 3)]




class ChainBuild:
    """A chain while its table is being parsed."""

    __slots__ = ("counters", "line", "name", "policy", "rules")

    def __init__(self, name: str, policy: str | None, line: int) -> None:
        self.name = name
        self.policy = policy
        self.counters = (0, 0)
        self.rules: list[Rule] = []
        self.line = line


class RuleParser:
    """The words of one `-A CHAIN ...` line into Rule(s): mixed into the table parser,
    whose state (table, chains, caches) it uses."""

    def net(self, text: str, option: str) -> Net:
        net = self._nets.get(text)
        if net is None:
            net = fast_v4_net(text) if self.family == 4 else None
            if net is not None:
                self._nets[text] = net
                return net
            try:
                net = parse_net(text)
            except ValueError:
                raise ExtensionError(f"{option}: {text!r} is not an address "
                                     "(host names are not resolved)") from None
            if net.family != self.family:
                raise ExtensionError(f"{option}: {text!r} is not an IPv{self.family} address")
            if net.addr & net.mask != net.addr:
                net = Net(net.family, net.addr & net.mask, net.mask, net.prefix)
            self._nets[text] = net
        return net

    def parse_rule(self, chain: str, words: list[str], start: int, line: int, raw: str,
                   counters) -> list[Rule]:
        try:
            return self._parse_rule(chain, words, start, line, raw, counters)
        except Unsupported as err:
            if self.strict:
                raise self.error(line, f"unsupported {err} (lenient parsing keeps such rules, "
                                 "never matching)") from None
            reason = f"unsupported {err}"
            self.opaque.append(OpaqueRule(self.table, chain, line, raw, reason))
            return [Rule(self.table, chain, line, raw, self.family, counters=counters,
                         unsupported=reason)]
        except ExtensionError as err:
            raise self.error(line, str(err)) from None

    def _parse_rule(self, chain: str, words: list[str], start: int, line: int, raw: str,
                    counters) -> list[Rule]:
        srcs = dsts = None
        src_inv = dst_inv = in_inv = out_inv = proto_inv = False
        in_iface = out_iface = None
        protocol = None
        fragment = None
        # options are collected flat (name, invert, args, name, ...): cheap to key the caches
        entries: list[list] = []  # [match class, [name, invert, args, ...]]
        target_cls = None
        target_given: list = []
        target_at = 0  # how many matches were loaded before the target
        jump = None
        goto = False
        invert = False
        base = _BASE
        i = start
        n = len(words)
        while i < n:
            word = words[i]
            i += 1
            code = base.get(word)
            if code is None:
                # fast path: an exact option name of the newest extension loaded
                # (iptables merges each new module's options ahead of the older ones)
                owner = option = None
                name = word[2:]
                if target_cls is not None and target_at == len(entries) and \
                        type(target_cls) is not str:
                    option = target_cls._exact.get(name)
                    owner = target_given
                elif entries:
                    option = entries[-1][0]._exact.get(name)
                    owner = entries[-1][1]
                if option is None or not word.startswith("--") or (
                        invert and not option.invertible):
                    i, invert = self._extension_option(word, words, i, invert, entries,
                                                       target_cls, target_given, target_at,
                                                       protocol, proto_inv)
                    continue
                nargs = option.nargs
                if nargs == 1 and i < n and words[i] != "!":
                    owner += (option.name, invert, (words[i],))
                    i += 1
                elif nargs == 0:
                    owner += (option.name, invert, ())
                else:
                    i, invert = self._extension_option(word, words, i, invert, entries,
                                                       target_cls, target_given, target_at,
                                                       protocol, proto_inv)
                    continue
                invert = False
                continue
            if code == _NOT:
                if invert:
                    raise ExtensionError("multiple '!' flags are not allowed")
                invert = True
                continue
            if code == _FRAG:
                fragment = not invert
                invert = False
                continue
            if i >= n:
                raise ExtensionError(f"option {word} needs an argument")
            arg = words[i]
            i += 1
            if code == _MATCH:
                if invert:
                    raise ExtensionError("'!' before -m is not allowed")
                cls = MATCHES.get(arg)
                if cls is None:
                    raise Unsupported(f"match -m {arg}")
                entries.append([cls, []])
            elif code in (_JUMP, _GOTO):
                if jump is not None or target_cls is not None:
                    raise ExtensionError("only one -j/-g per rule")
                known = self.chains.get(arg)
                if known is not None and known.policy is None:
                    jump, goto = arg, code == _GOTO
                    edges = self.edges.get(chain)
                    if edges is None:
                        self.edges[chain] = {arg}
                    else:
                        edges.add(arg)
                elif known is not None:
                    raise ExtensionError(f"cannot jump to built-in chain {arg}")
                elif code == _GOTO:
                    raise ExtensionError(f"-g {arg}: no such chain")
                elif arg in STANDARD:
                    target_cls = arg
                elif arg in TARGETS:
                    target_cls = TARGETS[arg]
                    target_at = len(entries)
                elif arg in _KNOWN_TARGETS or arg.isupper():
                    # an upper-case name that is no chain of this table: an iptables target
                    raise Unsupported(f"target -j {arg}")
                else:
                    raise ExtensionError(f"-j {arg}: no such chain or target")
            elif code == _SRC:
                srcs = [self.net(a, "-s") for a in arg.split(",")] if "," in arg else [
                    self.net(arg, "-s")]
                src_inv = invert
            elif code == _DST:
                dsts = [self.net(a, "-d") for a in arg.split(",")] if "," in arg else [
                    self.net(arg, "-d")]
                dst_inv = invert
            elif code == _PROTO:
                number = PROTOCOL_NUMBERS.get(arg) or PROTOCOL_NUMBERS.get(arg.lower())
                if number is None:
                    if not arg.isdigit() or int(arg) > 255:
                        raise ExtensionError(f"unknown protocol {arg!r}")
                    number = int(arg)
                protocol = number or None
                proto_inv = invert and number != 0
            elif code == _IN:
                in_iface, in_inv = arg, invert
            elif code == _OUT:
                out_iface, out_inv = arg, invert
            else:  # -c packets bytes
                if i >= n or not arg.isdigit() or not words[i].isdigit():
                    raise ExtensionError("-c needs packet and byte counts")
                counters = (int(arg), int(words[i]))
                i += 1
            invert = False
        if invert:
            raise ExtensionError("'!' at the end of the rule")

        matches = ()
        if entries:
            built = []
            cache = self._match_cache
            for cls, given in entries:
                key = (cls, tuple(given), protocol, proto_inv)
                match = cache.get(key)
                if match is None:
                    match = cache[key] = cls.build(_givens(given),
                                                   self.facts(protocol, proto_inv))
                if cls.hooks is not None:
                    self.restrict(chain, cls.hooks)
                built.append(match)
            matches = tuple(built)
        target = None
        if target_cls is not None:
            if type(target_cls) is str:
                if target_given:
                    raise ExtensionError(f"{target_cls} takes no options")
                target = STANDARD[target_cls]
            else:
                if target_cls.cacheable:
                    key = (target_cls, tuple(target_given), protocol, proto_inv)
                    target = self._target_cache.get(key)
                    if target is None:
                        target = self._target_cache[key] = target_cls.build(
                            _givens(target_given), self.facts(protocol, proto_inv))
                else:
                    target = target_cls.build(_givens(target_given), self.facts(protocol,
                                                                               proto_inv))
                if target.tables is not None and self.table not in target.tables:
                    raise ExtensionError(f"target {target.name} is only valid in the "
                                         f"{'/'.join(sorted(target.tables))} table")
                if target.hooks is not None:
                    self.restrict(chain, target.hooks)
        table = self.table
        family = self.family
        if (srcs is None or len(srcs) == 1) and (dsts is None or len(dsts) == 1):
            return [_new_rule(Rule, (table, chain, line, raw, family, srcs and srcs[0], src_inv,
                                     dsts and dsts[0], dst_inv, in_iface, in_inv, out_iface,
                                     out_inv, protocol, proto_inv, fragment, matches, target,
                                     jump, goto, counters, None))]
        # `-s a,b -d c,d` becomes one rule per pair, sources outermost (as iptables does)
        return [Rule(table, chain, line, raw, family, src, src_inv, dst, dst_inv, in_iface,
                     in_inv, out_iface, out_inv, protocol, proto_inv, fragment, matches, target,
                     jump, goto, counters)
                for src in srcs or (None,) for dst in dsts or (None,)]

    def from_template(self, chain: ChainBuild, kind: str, template: tuple, words: list[str],
                      number: int, line: str) -> bool:
        """Append the template rule with this line's one differing word; False to parse it."""
        template, allowed = template
        try:
            if kind == "J":
                target = words[-1]
                known = self.chains.get(target)
                if known is None or known.policy is not None or template.jump is None:
                    return False
                rule = _new_rule(Rule, (self.table, chain.name, number, line) + template[4:18]
                                 + (target, words[-2] in ("-g", "--goto"), template[20], None))
            elif kind == "A":
                net = self.net(words[3], words[2])
                fields = list(template)
                fields[1:4] = chain.name, number, line
                fields[5 if words[2] in ("-s", "--source", "--src") else 7] = net
                rule = _new_rule(Rule, fields)
            else:  # "N": -j DNAT --to-destination X / -j SNAT --to-source X
                cls = type(template.target)
                facts = self.facts(template.protocol, template.proto_inv)
                target = cls.build([Given(words[-2][2:], False, (words[-1],))], facts)
                rule = _new_rule(Rule, (self.table, chain.name, number, line) + template[4:17]
                                 + (target,) + template[18:])
        except ExtensionError:
            return False  # the full parse reports it with the line
        chain.rules.append(rule)
        if rule.jump is not None:
            edges = self.edges.get(chain.name)
            if edges is None:
                self.edges[chain.name] = {rule.jump}
            else:
                edges.add(rule.jump)
        if allowed is not None:
            self.restrict(chain.name, allowed)
        return True

    def restrict(self, chain: str, hooks: frozenset[str]) -> None:
        """Remember that a chain holds an extension the kernel allows only in some hooks."""
        found = self.restricted.get(chain)
        self.restricted[chain] = hooks if found is None else found & hooks

    def facts(self, protocol: int | None, proto_inv: bool) -> RuleFacts:
        facts = self._facts.get((protocol, proto_inv))
        if facts is None or facts.table != self.table:
            facts = self._facts[(protocol, proto_inv)] = RuleFacts(
                self.family, self.table, protocol, proto_inv)
        return facts

    def _extension_option(self, word: str, words: list[str], i: int, invert: bool,
                          entries: list, target_cls, target_given: list, target_at: int,
                          protocol, proto_inv: bool) -> tuple[int, bool]:
        """File one `--option [args]` with the target or match that owns it: the newest
        loaded extension that knows the name exactly, else by an unambiguous abbreviation,
        else the protocol's own match, loaded on the spot (`-p tcp --dport 80`)."""
        if not word.startswith("--"):
            raise ExtensionError(f"unexpected word {word!r}")
        name = word[2:]
        loaded = [(cls, given) for cls, given in entries]
        if target_cls is not None and type(target_cls) is not str:
            loaded.insert(target_at, (target_cls, target_given))
        owner = option = None
        for exact in (True, False):
            for cls, given in reversed(loaded):
                option = cls.option(name, exact)
                if option is not None:
                    owner = given
                    break
            if owner is not None:
                break
            if protocol is not None and not proto_inv:
                auto = PROTOCOL_MATCH.get(protocol)
                cls = MATCHES.get(auto) if auto else None
                option = cls.option(name, exact) if cls is not None else None
                if option is not None:
                    entries.append([cls, []])
                    owner = entries[-1][1]
                    break
        if owner is None:
            raise Unsupported(f"option {word}")
        if invert and not option.invertible:
            raise ExtensionError(f"option {word} cannot be inverted")
        nargs = option.nargs
        if nargs and i < len(words) and words[i] == "!":  # deprecated `--opt ! value`
            invert = True
            i += 1
        args = tuple(words[i:i + nargs])
        if len(args) < nargs:
            raise ExtensionError(f"option {word} needs {nargs} argument(s)")
        owner += (option.name, invert, args)
        return i + nargs, False
