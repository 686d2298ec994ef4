"""Parsing iptables-save/-restore text and printing it back as iptables-save does.

Expected texts come from iptables-save 1.8.9 (nf_tables): the `.save` fixtures were printed by
it, and the canonical forms in CANONICAL were checked against it rule by rule.
"""

from __future__ import annotations

import difflib
import random
from pathlib import Path

import pytest

from netsim.errors import InputError
from proxy.netfilter import parse_ruleset
from proxy.netfilter.lexer import _split_escaped, _split_quoted, save_string, tokenize

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"


def tables(text: str) -> dict[str, list[str]]:
    """Rule text per table, comments dropped (iptables-save's table order varies)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = line[1:]
            found[current] = []
        found[current].append(line)
    return found


def assert_same_tables(ours: str, real: str) -> None:
    a, b = tables(ours), tables(real)
    assert sorted(a) == sorted(b)
    for name in b:
        if a[name] != b[name]:
            diff = "\n".join(difflib.unified_diff(b[name], a[name], "iptables-save", "ours",
                                                  lineterm=""))
            pytest.fail(f"table {name} differs:\n{diff}")


ROUND_TRIPS = [
    ("kube-proxy.restore", "kube-proxy.save", True),
    ("kube-proxy.save", "kube-proxy.save", True),
    ("kube-proxy-v6.restore", "kube-proxy-v6.save", True),
    ("kube-proxy-v6.save", "kube-proxy-v6.save", True),
    ("istio.restore", "istio.save", True),
    ("istio-tproxy.restore", "istio-tproxy.save", True),
    ("node-w1.save", "node-w1.save", False),
]


@pytest.mark.parametrize(("source", "expected", "strict"), ROUND_TRIPS)
def test_fixture_reprints_as_iptables_save(source, expected, strict):
    ruleset = parse_ruleset((DATA / source).read_text(), source, strict=strict)
    assert_same_tables(ruleset.dump(), (DATA / expected).read_text())


def test_counters_round_trip_with_opaque_rules():
    text = (DATA / "exotic.save").read_text()
    ruleset = parse_ruleset(text, "exotic.save", strict=False)
    assert_same_tables(ruleset.dump(counters=True), text)
    assert ruleset.rule("filter", "INPUT", 1).counters == (1150, 190001)
    assert ruleset.tables["filter"].chains["INPUT"].policy == "DROP"
    assert ruleset.tables["filter"].chains["INPUT"].counters == (12, 720)


def test_node_dump_loads_with_felix_docker_and_kube_proxy_chains():
    ruleset = parse_ruleset((DATA / "node-w1.save").read_text(), "node-w1.save")
    filt = ruleset.tables["filter"].chains
    assert {"cali-FORWARD", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "KUBE-FORWARD"} <= set(filt)
    assert filt["FORWARD"].policy == "DROP"
    assert ruleset.unsupported == ()  # felix's rpfilter check included
    assert ruleset.tables["nat"].reached_from["KUBE-SEP-34ZZ2QFGO32YYXXO"] == {
        "PREROUTING", "OUTPUT"}


# input rule -> what iptables-save 1.8.9 printed for it (verified in a network namespace)
CANONICAL = [
    ("-A X -p tcp --dport 80 -j ACCEPT", "-A X -p tcp -m tcp --dport 80 -j ACCEPT"),
    ('-A X -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 '
     "--dport 80 -j X",
     '-A X -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp '
     "--dport 80 -j X"),
    ("-A X -m comment --comment single", "-A X -m comment --comment single"),
    ("-A X -m comment --comment a/b-c_d.e", '-A X -m comment --comment "a/b-c_d.e"'),
    ("-A X -m comment --comment \"with 'single'\"",
     "-A X -m comment --comment \"with \\'single\\'\""),
    ('-A X -m comment --comment "with \\"esc\\" quote"',
     '-A X -m comment --comment "with \\"esc\\" quote"'),
    ("-A X -m tcp -p tcp --dport 80:90 ! --sport 5 --syn",
     "-A X -p tcp -m tcp ! --sport 5 --dport 80:90 --tcp-flags FIN,SYN,RST,ACK SYN"),
    ("-A X -p tcp --tcp-flags ALL NONE",
     "-A X -p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE"),
    ("-A X -p tcp -m tcp --sport 1024:", "-A X -p tcp -m tcp --sport 1024:65535"),
    ("-A X -p tcp -m tcp --dport :", "-A X -p tcp -m tcp"),
    ("-A X -p udp -m multiport --dports 53,1000:2000",
     "-A X -p udp -m multiport --dports 53,1000:2000"),
    ("-A X -m conntrack --ctstate ESTABLISHED,RELATED,NEW,INVALID,UNTRACKED,SNAT,DNAT",
     "-A X -m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT"),
    ("-A X -m conntrack --ctstatus SEEN_REPLY,ASSURED,CONFIRMED,EXPECTED",
     "-A X -m conntrack --ctstatus EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED"),
    ("-A X -m conntrack --ctorigdstport 80 --ctorigdst 10.0.0.1",
     "-A X -m conntrack --ctorigdst 10.0.0.1 --ctorigdstport 80"),
    ("-A X -m conntrack ! --ctorigdst 1.1.1.1/24", "-A X -m conntrack ! --ctorigdst 1.1.1.1/24"),
    ("-A X -m conntrack --ctproto tcp --ctorigdstport 80",
     "-A X -m conntrack --ctproto 6 --ctorigdstport 80"),
    ("-A X -m state --state NEW,UNTRACKED,INVALID", "-A X -m state --state INVALID,NEW,UNTRACKED"),
    ("-A X -m mark ! --mark 0x00004000", "-A X -m mark ! --mark 0x4000"),
    ("-A X -m mark --mark 5", "-A X -m mark --mark 0x5"),
    ("-A X -m connmark ! --mark 0x1/0x1", "-A X -m connmark ! --mark 0x1/0x1"),
    ("-A X -m addrtype --dst-type BROADCAST,UNICAST --src-type LOCAL",
     "-A X -m addrtype --src-type LOCAL --dst-type UNICAST,BROADCAST"),
    ("-A X -m addrtype ! --dst-type LOCAL --limit-iface-in",
     "-A X -m addrtype ! --dst-type LOCAL --limit-iface-in"),
    ("-A X -m statistic --mode random --probability 0.3333333333",
     "-A X -m statistic --mode random --probability 0.33333333349"),
    ("-A X -m statistic --mode random ! --probability 0.25",
     "-A X -m statistic --mode random ! --probability 0.25000000000"),
    ("-A X -m statistic --mode nth --every 3 --packet 1",
     "-A X -m statistic --mode nth --every 3 --packet 1"),
    ("-A X -m recent --name foo --rcheck --seconds 10800 --reap",
     "-A X -m recent --rcheck --seconds 10800 --reap --name foo --mask 255.255.255.255 "
     "--rsource"),
    ("-A X -m recent --set",
     "-A X -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource"),
    ("-A X -m recent --name foo --update --seconds 60 --hitcount 3 --rdest --mask 255.255.255.0",
     "-A X -m recent --update --seconds 60 --hitcount 3 --name foo --mask 255.255.255.0 --rdest"),
    ("-A X -i eth+ -o cali+ -s 10.0.0.1,10.0.0.2 -d 1.2.3.0/255.255.255.0",
     "-A X -s 10.0.0.1/32 -d 1.2.3.0/24 -i eth+ -o cali+\n"
     "-A X -s 10.0.0.2/32 -d 1.2.3.0/24 -i eth+ -o cali+"),
    ("-A X -s 10.1.2.3/8", "-A X -s 10.0.0.0/8"),
    ("-A X -s 10.0.0.0/255.0.255.0", "-A X -s 10.0.0.0/255.0.255.0"),
    ("-A X ! -s 10.0.0.0/8 ! -i lo -p 17", "-A X ! -s 10.0.0.0/8 ! -i lo -p udp"),
    ("-A X -p all", "-A X"),
    ("-A X -p 47", "-A X -p gre"),
    ("-A X -p 4", "-A X -p ipencap"),
    ("-A X -p icmp --icmp-type echo-request", "-A X -p icmp -m icmp --icmp-type 8"),
    ("-A X -p icmp -m icmp --icmp-type 3/4", "-A X -p icmp -m icmp --icmp-type 3/4"),
    ("-A X -p icmp -m icmp --icmp-type any", "-A X -p icmp -m icmp --icmp-type any"),
    ("-A X -m physdev --physdev-in veth0 ! --physdev-is-in --physdev-is-bridged",
     "-A X -m physdev ! --physdev-is-in --physdev-in veth0 --physdev-is-bridged"),
    ("-A X -m physdev --physdev-is-bridged --physdev-out o --physdev-is-out --physdev-in i "
     "--physdev-is-in",
     "-A X -m physdev --physdev-is-in --physdev-in i --physdev-is-out --physdev-out o "
     "--physdev-is-bridged"),
    ("-A X -m socket --nowildcard --transparent", "-A X -m socket --transparent --nowildcard"),
    ("-A X -m limit --limit 5/min --limit-burst 5", "-A X -m limit --limit 5/min"),
    ("-A X -m limit --limit 10/second --limit-burst 20",
     "-A X -m limit --limit 10/sec --limit-burst 20"),
    ("-A X -m limit", "-A X -m limit --limit 3/hour"),
    ("-A X -m limit --limit 1/d", "-A X -m limit --limit 1/day"),
    ("-A X -j REJECT", "-A X -j REJECT --reject-with icmp-port-unreachable"),
    ("-A X -p tcp -j REJECT --reject-with tcp-rst",
     "-A X -p tcp -j REJECT --reject-with tcp-reset"),
    ('-A X -j LOG --log-prefix "foo: " --log-level 4', '-A X -j LOG --log-prefix "foo: "'),
    ("-A X -j LOG --log-level debug --log-prefix x", "-A X -j LOG --log-prefix x --log-level 7"),
    ("-A X -j LOG --log-uid --log-level 6 --log-tcp-sequence",
     "-A X -j LOG --log-level 6 --log-tcp-sequence --log-uid"),
    ("-A X -j MARK --or-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0x4000"),
    ("-A X -j MARK --xor-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0x0"),
    ("-A X -j MARK --set-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0xffffffff"),
    ("-A X -j MARK --set-mark 0x4000/0xf000", "-A X -j MARK --set-xmark 0x4000/0xf000"),
    ("-A X -j MARK --and-mark 0xffffbfff", "-A X -j MARK --set-xmark 0x0/0x4000"),
    ("-A X -j CONNMARK --save-mark", "-A X -j CONNMARK --save-mark --nfmask 0xffffffff "
     "--ctmask 0xffffffff"),
    ("-A X -j CONNMARK --save-mark --mask 0xff",
     "-A X -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff"),
    ("-A X -j CONNMARK --and-mark 0x2", "-A X -j CONNMARK --set-xmark 0x0/0xfffffffd"),
    ("-A X -j NFLOG --nflog-group 1 --nflog-prefix \"API0|knp/default/allow-db\"",
     "-A X -j NFLOG --nflog-prefix \"API0|knp/default/allow-db\" --nflog-group 1"),
    ("-A X -m owner --gid-owner 5 --uid-owner 3 --socket-exists",
     "-A X -m owner --socket-exists --uid-owner 3 --gid-owner 5"),
    ("-A X -m owner --uid-owner 1000-2000", "-A X -m owner --uid-owner 1000-2000"),
    ("-A X -p tcp -m multiport --dports 80,443 -m tcp --sport 1 -j ACCEPT",
     "-A X -p tcp -m multiport --dports 80,443 -m tcp --sport 1 -j ACCEPT"),
    ("-A X -g Y", "-A X -g Y"),
    ("-A X -f", "-A X -f"),
    ("-A X -m nfacct --nfacct-name ct_state_invalid_dropped_pkts",
     "-A X -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts"),
]


@pytest.mark.parametrize(("rule", "expected"), CANONICAL)
def test_rule_prints_as_iptables_save(rule, expected):
    text = f"*filter\n:X - [0:0]\n:Y - [0:0]\n{rule}\nCOMMIT\n"
    ruleset = parse_ruleset(text)
    assert "\n".join(r.text for r in ruleset.tables["filter"].chains["X"].rules) == expected


NAT_CANONICAL = [
    ("-A X -p tcp -j DNAT --to-destination 10.0.0.1:80",
     "-A X -p tcp -j DNAT --to-destination 10.0.0.1:80"),
    ("-A X -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.5:80-90 --random --persistent",
     "-A X -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.5:80-90 --random --persistent"),
    ("-A X -p udp -j SNAT --to-source 1.2.3.4:1000-2000 --random-fully",
     "-A X -p udp -j SNAT --to-source 1.2.3.4:1000-2000 --random-fully"),
    ("-A X -p tcp -j MASQUERADE --to-ports 1000-2000 --random",
     "-A X -p tcp -j MASQUERADE --to-ports 1000-2000 --random"),
    ("-A X -p tcp -j REDIRECT --to-port 15053", "-A X -p tcp -j REDIRECT --to-ports 15053"),
    ("-A X -j REDIRECT", "-A X -j REDIRECT"),
]


@pytest.mark.parametrize(("rule", "expected"), NAT_CANONICAL)
def test_nat_rule_prints_as_iptables_save(rule, expected):
    ruleset = parse_ruleset(f"*nat\n:X - [0:0]\n{rule}\nCOMMIT\n")
    assert ruleset.rule("nat", "X", 1).text == expected


def test_mangle_and_raw_targets_print_as_iptables_save():
    text = """*mangle
:X - [0:0]
-A X -p tcp -j TPROXY --on-port 15006 --tproxy-mark 0x1
-A X -p tcp -j TPROXY --on-port 15006
-A X -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xf
COMMIT
*raw
:X - [0:0]
-A X -j CT --notrack
-A X -j NOTRACK
-A X -j CT --zone-orig 2
-A X -j CT --ctevents related,new --zone 3
COMMIT
"""
    ruleset = parse_ruleset(text)
    assert [r.text for r in ruleset.tables["mangle"].chains["X"].rules] == [
        "-A X -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x1/0xffffffff",
        "-A X -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x0/0x0",
        "-A X -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xf",
    ]
    assert [r.text for r in ruleset.tables["raw"].chains["X"].rules] == [
        "-A X -j CT --notrack", "-A X -j NOTRACK", "-A X -j CT --zone-orig 2",
        "-A X -j CT --ctevents new,related --zone 3",
    ]


def test_ipv6_rules_print_as_ip6tables_save():
    text = """*filter
:X - [0:0]
-A X -j REJECT
-A X -p ipv6-icmp -m icmp6 --icmpv6-type echo-request
-A X -d ::1 -j ACCEPT
-A X -m recent --set --name x
COMMIT
"""
    ruleset = parse_ruleset(text)
    assert ruleset.family == 6
    assert [r.text for r in ruleset.tables["filter"].chains["X"].rules] == [
        "-A X -j REJECT --reject-with icmp6-port-unreachable",
        "-A X -p ipv6-icmp -m icmp6 --icmpv6-type 128",
        "-A X -d ::1/128 -j ACCEPT",
        "-A X -m recent --set --name x --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource",
    ]


def test_rules_keep_their_original_text_and_line():
    ruleset = parse_ruleset((DATA / "kube-proxy.restore").read_text(), "kube-proxy.restore")
    rule = ruleset.rule("filter", "KUBE-SERVICES", 1)
    assert rule.original == ('-A KUBE-SERVICES -m comment --comment "shop/empty:http has no '
                             'endpoints" -m tcp -p tcp -d 10.96.100.30 --dport 80 -j REJECT')
    assert rule.line == 22
    assert rule.text == ('-A KUBE-SERVICES -d 10.96.100.30/32 -p tcp -m comment --comment '
                         '"shop/empty:http has no endpoints" -m tcp --dport 80 -j REJECT '
                         '--reject-with icmp-port-unreachable')


# --- errors -------------------------------------------------------------------------------------


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        parse_ruleset(text, "node.rules", **kwargs)
    return str(info.value)


def test_unsupported_match_names_source_line_and_match():
    text = "*filter\n:X - [0:0]\n-A X -j ACCEPT\n-A X -m quota --quota 100 -j ACCEPT\nCOMMIT\n"
    message = error_of(text)
    assert message.startswith("node.rules:4: ")
    assert "unsupported match -m quota" in message


def test_unsupported_target_and_option_are_named():
    assert "unsupported target -j TCPMSS" in error_of(
        "*mangle\n:X - [0:0]\n-A X -p tcp -j TCPMSS --clamp-mss-to-pmtu\nCOMMIT\n")
    assert "unsupported option --hashlimit-upto" in error_of(
        "*filter\n-A INPUT -p tcp --hashlimit-upto 5/min\nCOMMIT\n")
    assert "node.rules:2: " in error_of("*filter\n-A INPUT -m tcp -p tcp --tcp-option 2\n"
                                        "COMMIT\n")


def test_strict_false_keeps_opaque_rules():
    text = (DATA / "exotic.save").read_text()
    assert "exotic.save:8: unsupported target -j TCPMSS" in error_of_named(text, "exotic.save")
    ruleset = parse_ruleset(text, "exotic.save", strict=False)
    reasons = [(o.line, o.chain, o.reason) for o in ruleset.unsupported]
    assert reasons == [
        (8, "FORWARD", "unsupported target -j TCPMSS"),
        (9, "POSTROUTING", "unsupported target -j CHECKSUM"),
        (22, "INPUT", "unsupported match -m pkttype"),
        (23, "INPUT", "unsupported match -m quota"),
        (25, "SSH-GUARD", "unsupported match -m hashlimit"),
    ]
    opaque = ruleset.rule("filter", "INPUT", 5)
    assert opaque.unsupported == "unsupported match -m pkttype"
    assert opaque.text == "-A INPUT -m pkttype --pkt-type multicast -j DROP"


def error_of_named(text: str, source: str) -> str:
    with pytest.raises(InputError) as info:
        parse_ruleset(text, source)
    return str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("-A X -j ACCEPT\n", "node.rules:1: -A outside a table"),
    ("*filter\n-A X -j ACCEPT\nCOMMIT\n", "node.rules:2: chain 'X' does not exist"),
    ("*filter\n:X - [0:0]\n-A X -j nowhere\nCOMMIT\n", "node.rules:3: -j nowhere: no such chain"),
    ("*filter\n:X - [0:0]\n-A X -j NOWHERE\nCOMMIT\n",
     "node.rules:3: unsupported target -j NOWHERE"),
    ("*filter\n:X - [0:0]\n-A X -s example.com\nCOMMIT\n", "host names are not resolved"),
    ("*filter\n:X - [0:0]\n-A X -p tcp --dport 70000\nCOMMIT\n", "port '70000' out of range"),
    ("*filter\n:X - [0:0]\n-A X -j REJECT --reject-with tcp-reset\nCOMMIT\n",
     "tcp-reset is only valid with -p tcp"),
    ("*filter\n:X - [0:0]\n-A X -j DNAT --to-destination 1.2.3.4\nCOMMIT\n",
     "DNAT is only valid in the nat table"),
    ("*filter\n:X - [0:0]\n-A X -m tcp --dport 80\nCOMMIT\n", "tcp match requires '-p tcp'"),
    ("*filter\n:X - [0:0]\n-A X -m comment --comment \"open\nCOMMIT\n",
     "unterminated quoted string"),
    ("*filter\n:X - [0:0]\n-A X ! ! -s 1.2.3.4\nCOMMIT\n", "multiple '!'"),
    ("*filter\n:X - [0:0]\n-A INPUT -j X\n-A X -j X\nCOMMIT\n",
     "node.rules:5: jump loop in table filter: X -> X"),
    ("*filter\n:X - [0:0]\n-A X -j ACCEPT\n", "node.rules:1: table 'filter' has no COMMIT"),
    ("*filter\n:X - [0:0]\n-A X -s fd00::1\nCOMMIT\n", "is not an IPv4 address"),
    ("*bogus\nCOMMIT\n", "unknown table 'bogus'"),
    ("*filter\n:INPUT FOO [0:0]\nCOMMIT\n", "bad policy 'FOO'"),
    ("*filter\n:X - [0:0]\n-A X -m statistic --mode nth --every 2\nCOMMIT\n",
     'option "--every" also requires "--packet"'),
])
def test_bad_input_is_one_input_error(text, expected):
    assert expected in error_of(text, family=4)


def test_owner_match_outside_output_is_refused_like_the_kernel():
    text = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SHARED - [0:0]
-A PREROUTING -j SHARED
-A OUTPUT -j SHARED
-A SHARED -m owner --uid-owner 1337 -j RETURN
COMMIT
"""
    message = error_of(text)
    assert message == ("node.rules:7: -m owner: only valid in OUTPUT/POSTROUTING; chain SHARED "
                       "is reached from PREROUTING")
    ruleset = parse_ruleset(text, strict=False)
    assert ruleset.rule("nat", "SHARED", 1).unsupported.startswith("-m owner is only valid")
    # reached only from OUTPUT it is fine
    parse_ruleset(text.replace("-A PREROUTING -j SHARED\n", ""))


def test_insert_delete_flush_and_delete_chain():
    text = """*filter
:A - [0:0]
:B - [0:0]
-A A -j ACCEPT
-I A -j DROP
-I A 2 -p tcp -j RETURN
-A A -s 10.0.0.1 -j ACCEPT
-D A -s 10.0.0.1/32 -j ACCEPT
-A B -j ACCEPT
-F B
-X B
-N C
-A INPUT -j A
-P INPUT DROP
COMMIT
"""
    ruleset = parse_ruleset(text)
    chains = ruleset.tables["filter"].chains
    assert [r.text for r in chains["A"].rules] == ["-A A -j DROP", "-A A -p tcp -j RETURN",
                                                   "-A A -j ACCEPT"]
    assert "B" not in chains and "C" in chains
    assert chains["INPUT"].policy == "DROP"
    assert "still referenced" in error_of(text.replace("-F B\n", "-A A -j B\n"))


def test_option_abbreviations_and_newest_module_win():
    ruleset = parse_ruleset("*nat\n:X - [0:0]\n-A X -p udp --dport 53 -j REDIRECT --to-port "
                            "15053\n-A X -m comment --comment a -m comment --comment b\nCOMMIT\n")
    assert ruleset.rule("nat", "X", 1).text == ("-A X -p udp -m udp --dport 53 -j REDIRECT "
                                                "--to-ports 15053")
    assert ruleset.rule("nat", "X", 2).text == "-A X -m comment --comment a -m comment --comment b"


# --- words ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "words"), [
    ('-A X -m comment --comment "a b" -j Y', ["-A", "X", "-m", "comment", "--comment", "a b",
                                              "-j", "Y"]),
    ('a"b c"d "" x', ["ab c", "d", "", "x"]),
    ('"x"y"z"', ["x", "yz"]),
    ("--comment \"it's\"", ["--comment", "it's"]),
    ('--comment "a\\"b\\\\c\\d"', ["--comment", 'a"b\\c\\d']),
    ("-A  X\t-j   Y ", ["-A", "X", "-j", "Y"]),
])
def test_tokenize_follows_iptables_restore(line, words):
    assert tokenize(line) == words


def test_quoted_fast_path_agrees_with_character_loop():
    rng = random.Random(5)
    for _ in range(2000):
        line = "".join(rng.choice(' a"b\t') for _ in range(rng.randrange(12)))
        try:
            slow = _split_escaped(line)
        except ValueError:
            with pytest.raises(ValueError):
                _split_quoted(line)
            continue
        assert _split_quoted(line) == slow, line


@pytest.mark.parametrize(("value", "printed"), [
    ("x", "x"), ("a-b_C9", "a-b_C9"), ("", '""'), ("a b", '"a b"'), ("a:b", '"a:b"'),
    ('q"uote', '"q\\"uote"'), ("it's", '"it\\\'s"'), ("back\\slash", '"back\\\\slash"'),
])
def test_save_string_quotes_like_xtables(value, printed):
    assert save_string(value) == printed


def test_only_loops_reachable_from_a_hook_are_refused():
    # as the kernel: `-A X -j X` alone loads; reached from INPUT it is "Too many links"
    unreachable = "*filter\n:X - [0:0]\n:Y - [0:0]\n-A X -j Y\n-A Y -j X\nCOMMIT\n"
    assert parse_ruleset(unreachable).tables["filter"].reached_from.get("X") is None
    assert "jump loop in table filter: X -> Y -> X" in error_of(
        unreachable.replace("COMMIT", "-A INPUT -j X\nCOMMIT"))
    # a chain below an unreachable loop still gets the hooks that reach it
    text = ("*filter\n:W - [0:0]\n:Y - [0:0]\n:Z - [0:0]\n-A Y -j Z\n-A Z -j Y\n-A Z -j W\n"
            "-A INPUT -j W\nCOMMIT\n")
    assert parse_ruleset(text).tables["filter"].reached_from["W"] == {"INPUT"}
