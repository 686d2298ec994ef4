"""Each match and target on its own: which rules of a small chain a packet hits.

Rows are (packet, rules hit), worked out from the iptables-extensions(8) descriptions and
the kernel modules' logic; `statistic --mode nth` was checked against the kernel.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from proxy.netfilter import (
    Context,
    IPSet,
    Packet,
    Physdev,
    Socket,
    VirtualService,
    evaluate_chain,
    evaluate_hook,
    parse_ipset_save,
    parse_ruleset,
    traverse,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"


def run_chain(rules: list[str], packet: Packet, ctx: Context | None = None,
              table: str = "filter", hook: str = "INPUT"):
    text = f"*{table}\n:T - [0:0]\n" + "".join(f"-A T {r}\n" for r in rules) + "COMMIT\n"
    [branch] = evaluate_chain(parse_ruleset(text), table, "T", packet, ctx or Context(),
                              hook=hook)
    return branch


def hits(rules: list[str], packet: Packet, ctx: Context | None = None, **kw) -> list[int]:
    """The numbers of the rules the packet matched (the chain's rules have no targets)."""
    branch = run_chain(rules, packet, ctx, **kw)
    return [t.number for t in branch.trace if t.kind == "rule"]


def tcp(src="10.0.0.1", dst="10.0.0.2", dport=80, sport=40000, **kw) -> Packet:
    return Packet(src, dst, "tcp", sport, dport, **kw)


def udp(src="10.0.0.1", dst="10.0.0.2", dport=53, sport=40000, **kw) -> Packet:
    return Packet(src, dst, "udp", sport, dport, **kw)


# --- ipsets -------------------------------------------------------------------------------------

SETS = {s.name: s for s in (
    IPSet("HOSTS", "hash:ip", ("10.0.0.1", "10.0.1.0/24", "10.0.2.1-10.0.2.3")),
    IPSet("KUBE-CLUSTER-IP", "hash:ip,port", ("10.96.0.1,tcp:443", "10.96.0.10,udp:53")),
    IPSet("KUBE-LOOP-BACK", "hash:ip,port,ip", ("10.244.1.5,tcp:8080,10.244.1.5",)),
    IPSet("SRC-CIDR", "hash:ip,port,net", ("10.96.0.50,tcp:80,192.168.0.0/16",)),
    IPSet("NETS", "hash:net", ("10.0.0.0/8", "10.1.0.0/16 nomatch")),
    IPSet("NODE-PORTS", "bitmap:port", ("30000-30010", "31000")),
    IPSet("ALL", "list:set", ("HOSTS", "NODE-PORTS")),
)}
SET_RULES = [
    "-m set --match-set HOSTS src",
    "-m set --match-set KUBE-CLUSTER-IP dst,dst",
    "-m set --match-set KUBE-LOOP-BACK dst,dst,src",
    "-m set --match-set SRC-CIDR dst,dst,src",
    "-m set --match-set NETS src",
    "-m set --match-set NETS src --return-nomatch",
    "-m set ! --match-set NETS src",
    "-m set --match-set NODE-PORTS dst",
    "-m set --match-set ALL dst",  # each member set with the same directions
]


@pytest.mark.parametrize(("packet", "expected"), [
    (tcp("10.0.0.1", "10.96.0.1", 443), [1, 2, 5, 6]),
    (udp("10.0.1.77", "10.96.0.1", 443), [1, 5, 6]),  # udp:443 is not in KUBE-CLUSTER-IP
    (udp("10.0.2.3", "10.96.0.10", 53), [1, 2, 5, 6]),
    (tcp("10.244.1.5", "10.244.1.5", 8080), [3, 5, 6]),  # 10.244/16 inside 10/8
    (tcp("192.168.3.4", "10.244.1.5", 8080), [7]),
    (tcp("10.244.1.6", "10.244.1.5", 8080, sport=1), [5, 6]),
    (tcp("192.168.7.7", "10.96.0.50", 80), [4, 7]),
    (tcp("10.1.2.3", "9.9.9.9", 30005), [6, 7, 8, 9]),  # nomatch exception in 10.1/16
    (tcp("172.16.0.1", "9.9.9.9", 31000), [7, 8, 9]),
])
def test_set_match_directions_and_types(packet, expected):
    assert hits(SET_RULES, packet, Context(ipsets=SETS)) == expected


def test_hash_ip_port_ip_uses_three_directions():
    rules = ["-m set --match-set KUBE-LOOP-BACK dst,dst,src"]
    ctx = Context(ipsets=SETS)
    assert hits(rules, tcp("10.244.1.5", "10.244.1.5", 8080), ctx) == [1]
    assert hits(rules, tcp("10.244.1.6", "10.244.1.5", 8080), ctx) == []


def test_missing_set_never_matches_and_is_reported():
    branch = run_chain(["-m set --match-set GONE src"], tcp(), Context(ipsets=SETS))
    assert [t.kind for t in branch.trace] == ["return"]
    assert branch.unsupported == ("-m set: ipset 'GONE' was not supplied",)


def test_ipset_save_text():
    sets = parse_ipset_save((DATA / "calico.ipset").read_text())
    assert sorted(sets) == ["cali40all-hosts-net", "cali40all-ipam-pools",
                            "cali40masq-ipam-pools", "cali40s:x0sVe4YVJ1jXRwCmuUb9Kdl"]
    assert sets["cali40all-hosts-net"].members == ("172.18.0.2", "172.18.0.3", "172.18.0.4")
    assert sets["cali40all-ipam-pools"].type == "hash:net"
    v6 = parse_ipset_save("create S6 hash:ip family inet6\nadd S6 fd00::1\n")
    assert v6["S6"].family == 6
    with pytest.raises(ValueError, match="undeclared set"):
        parse_ipset_save("add NOPE 10.0.0.1\n")


# --- addresses, interfaces, bridges, sockets, owners ------------------------------------------

NODE = Context(local_addresses=("172.18.0.3",), interfaces={"eth0": ("172.18.0.3",)},
               broadcast_addresses=("172.18.255.255",))
ADDRTYPE_RULES = [
    "-m addrtype --dst-type LOCAL",
    "-m addrtype --dst-type UNICAST",
    "-m addrtype --dst-type BROADCAST",
    "-m addrtype --dst-type MULTICAST",
    "-m addrtype --src-type LOCAL",
    "-m addrtype ! --dst-type LOCAL",
    "-m addrtype --dst-type LOCAL --limit-iface-in",
]


@pytest.mark.parametrize(("packet", "expected"), [
    (tcp("8.8.8.8", "172.18.0.3", in_iface="eth0"), [1, 7]),
    (tcp("8.8.8.8", "127.0.0.53", in_iface="eth0"), [1]),  # loopback is local, not eth0's
    (tcp("127.0.0.1", "127.0.0.53", in_iface="lo"), [1, 5, 7]),
    (tcp("172.18.0.3", "8.8.8.8", in_iface="eth0"), [2, 5, 6]),
    (udp("172.18.0.9", "172.18.255.255", in_iface="eth0"), [3, 6]),
    (udp("172.18.0.9", "224.0.0.251", in_iface="eth0"), [4, 6]),
])
def test_addrtype(packet, expected):
    assert hits(ADDRTYPE_RULES, packet, NODE) == expected


PHYSDEV_RULES = [
    "-m physdev --physdev-is-bridged",
    "-m physdev ! --physdev-is-bridged",
    "-m physdev --physdev-in veth+",
    "-m physdev ! --physdev-in veth1",
    "-m physdev --physdev-is-in --physdev-out veth2",
]


@pytest.mark.parametrize(("bridge", "expected"), [
    (None, [2, 4]),  # routed: only negated criteria hold
    (Physdev("veth1", "veth2"), [1, 3, 5]),
    (Physdev("veth3", None), [2, 3, 4]),  # bridged in, going up to the host
])
def test_physdev(bridge, expected):
    assert hits(PHYSDEV_RULES, tcp(), Context(physdev=bridge), hook="FORWARD") == expected


SOCKETS = (Socket("0.0.0.0", 80), Socket("10.0.0.2", 443, transparent=True),
           Socket("10.0.0.2", 22, mark=0x10, remote=("10.0.0.1", 5000)))
SOCKET_RULES = ["-m socket", "-m socket --transparent", "-m socket --nowildcard",
                "-m socket --restore-skmark"]


@pytest.mark.parametrize(("packet", "expected", "mark"), [
    (tcp(dport=80), [1, 4], 0),
    (tcp(dport=443), [1, 2, 3, 4], 0),
    (tcp(sport=5000, dport=22), [1, 3, 4], 0x10),
    (tcp(dport=8080), [], 0),
    (udp(dport=80), [], 0),
])
def test_socket(packet, expected, mark):
    branch = run_chain(SOCKET_RULES, packet, Context(sockets=SOCKETS), hook="PREROUTING")
    assert [t.number for t in branch.trace if t.kind == "rule"] == expected
    assert branch.packet.mark == mark


def test_socket_without_a_socket_table_is_reported():
    branch = run_chain(["-m socket"], tcp(), Context(), hook="PREROUTING")
    assert branch.unsupported and not [t for t in branch.trace if t.kind == "rule"]


OWNER_RULES = [
    "-m owner --uid-owner 1000",
    "-m owner ! --uid-owner 1337",
    "-m owner --gid-owner 1337",
    "-m owner --gid-owner 1337 --suppl-groups",
    "-m owner --uid-owner 0-999",
    "-m owner --socket-exists",
    "-m owner ! --socket-exists",
]


@pytest.mark.parametrize(("ctx", "expected"), [
    (Context(uid=1000, gid=1000, groups=(1337,)), [1, 2, 4, 6]),
    (Context(uid=0, gid=0), [2, 5, 6]),
    (Context(), [2, 7]),  # no local socket: only all-negated criteria hold (xt_owner)
])
def test_owner_in_output(ctx, expected):
    assert hits(OWNER_RULES, tcp(), ctx, hook="OUTPUT") == expected


def test_owner_rules_of_output_do_not_apply_to_forwarded_packets():
    text = ("*filter\n:OUTPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
            "-A OUTPUT -m owner --uid-owner 1337 -j DROP\nCOMMIT\n")
    rs = parse_ruleset(text)
    ctx = Context(uid=1337)
    assert evaluate_hook(rs, "OUTPUT", tcp(), ctx)[0].verdict.kind == "DROP"
    assert evaluate_hook(rs, "FORWARD", tcp(), ctx)[0].verdict.kind == "ACCEPT"


# --- L4 -----------------------------------------------------------------------------------------

L4_RULES = [
    "-p tcp --syn",
    "-p tcp ! --syn",
    "-p tcp --tcp-flags SYN,ACK SYN,ACK",
    "-p tcp -m multiport --dports 80,443,8000:8100",
    "-p tcp -m multiport ! --ports 22",
    "-p tcp --sport 1024:65535 --dport 8080",
    "-p udp --dport 53",
    "! -p tcp",
]


@pytest.mark.parametrize(("packet", "expected"), [
    (tcp(dport=8080), [1, 4, 5, 6]),
    (tcp(dport=443, tcp_flags="SYN,ACK"), [2, 3, 4, 5]),
    (tcp(sport=22, dport=40000, tcp_flags="ACK"), [2]),
    (udp(), [7, 8]),
])
def test_tcp_udp_multiport(packet, expected):
    assert hits(L4_RULES, packet) == expected


ICMP_RULES = ["-p icmp --icmp-type echo-request", "-p icmp --icmp-type port-unreachable",
              "-p icmp --icmp-type destination-unreachable", "-p icmp ! --icmp-type 8",
              "-p icmp --icmp-type any"]


@pytest.mark.parametrize(("icmp", "expected"), [((8, 0), [1, 5]), ((3, 3), [2, 3, 4, 5]),
                                                ((3, 1), [3, 4, 5])])
def test_icmp_types(icmp, expected):
    packet = Packet("10.0.0.1", "10.0.0.2", "icmp", icmp_type=icmp[0], icmp_code=icmp[1])
    assert hits(ICMP_RULES, packet) == expected


def test_interfaces_and_fragments():
    rules = ["-i eth+", "! -i eth0", "-o cali+", "-f", "! -f"]
    assert hits(rules, tcp(in_iface="eth1", out_iface="cali1234")) == [1, 2, 3, 5]
    assert hits(rules, tcp(in_iface="eth0", fragment=True)) == [1, 4]
    assert hits(rules, tcp()) == [2, 5]  # no interface is the empty name


# --- marks and connection state ----------------------------------------------------------------


def test_mark_targets_and_match():
    rules = ["-j MARK --set-mark 0x10000/0x30000", "-m mark --mark 0x10000/0x10000",
             "-j MARK --xor-mark 0x1", "-j MARK --and-mark 0xffff", "-m mark --mark 0x1",
             "-j MARK --or-mark 0xf0", "-m mark ! --mark 0xf1"]
    branch = run_chain(rules, tcp(mark=0x20002), table="mangle", hook="PREROUTING")
    # 0x20002 -> set 0x10000 in 0x30000 -> 0x10002 -> xor 1 -> 0x10003 -> and 0xffff -> 0x3
    # -> or 0xf0 -> 0xf3
    assert [t.number for t in branch.trace if t.kind == "rule"] == [1, 2, 3, 4, 6, 7]
    assert branch.packet.mark == 0xF3


def test_connmark_save_and_restore_across_directions():
    text = """*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m conntrack --ctstate NEW -j MARK --set-mark 0x7
-A PREROUTING -m conntrack --ctstate NEW -j CONNMARK --save-mark --mask 0x3
-A PREROUTING -m conntrack --ctstate ESTABLISHED -j CONNMARK --restore-mark
-A PREROUTING -m connmark --mark 0x3 -j ACCEPT
COMMIT
"""
    rs = parse_ruleset(text)
    [first] = traverse(rs, tcp(), ("PREROUTING", "INPUT"), Context())
    assert first.conntrack_entry.mark == 0x3
    [reply] = traverse(rs, tcp().reply(), ("PREROUTING", "INPUT"), Context().advance(first))
    assert reply.packet.mark == 0x3
    assert [t.number for t in reply.trace if t.kind == "rule"] == [3, 4]


def test_conntrack_fields_after_dnat():
    kube = parse_ruleset((DATA / "kube-proxy.save").read_text())
    ctx = Context(local_addresses=("172.18.0.3",))
    packet = tcp("10.244.2.20", "10.96.100.10", 80, in_iface="eth0", out_iface="eth0")
    branch = evaluate_hook(kube, "PREROUTING", packet, ctx)[0]  # DNAT to 10.244.1.5:8080
    rules = ["-m conntrack --ctstate DNAT", "-m conntrack --ctorigdst 10.96.100.10 "
             "--ctorigdstport 80", "-m conntrack --ctstatus CONFIRMED",
             "-m conntrack --ctdir ORIGINAL", "-m conntrack --ctproto tcp",
             "-m conntrack --ctreplsrc 10.244.1.5", "-m conntrack --ctstate NEW",
             "-m connmark --mark 0x0", "-m state --state NEW", "-m conntrack --ctdir REPLY",
             "-m conntrack ! --ctstate DNAT"]
    # the packet carries its (still unconfirmed) connection into FORWARD
    assert hits(rules, branch.packet, ctx.advance(branch), hook="FORWARD") == [
        1, 2, 4, 5, 6, 7, 8, 9]


def test_statistic_nth_counts_per_rule_across_packets():
    text = ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m statistic --mode nth --every 3 "
            "--packet 1 -j DROP\nCOMMIT\n")
    rs = parse_ruleset(text)
    ctx = Context()
    seen = []
    for _ in range(6):
        [branch] = evaluate_hook(rs, "INPUT", udp(), ctx)
        seen.append(branch.verdict.kind)
        ctx = ctx.advance(branch)
    # the kernel takes packets 2, 5, ... for --every 3 --packet 1
    assert seen == ["ACCEPT", "DROP", "ACCEPT", "ACCEPT", "DROP", "ACCEPT"]


def test_statistic_random_probabilities_and_inversion():
    rules = ["-m statistic --mode random --probability 0.25 -j RETURN",
             "-m statistic --mode random ! --probability 0.5 -j RETURN"]
    text = "*filter\n:T - [0:0]\n" + "".join(f"-A T {r}\n" for r in rules) + "COMMIT\n"
    branches = evaluate_chain(parse_ruleset(text), "filter", "T", tcp(), Context(),
                              hook="INPUT")
    assert [b.probability for b in branches] == [0.25, 0.375, 0.375]
    assert [[t.number for t in b.trace if t.kind != "return"] for b in branches] == [
        [1], [2], []]


def test_recent_update_hitcount_remove_and_masks():
    rules = ["-m recent --name seen --update --seconds 60 --hitcount 2 --mask 255.255.255.0 "
             "-j RETURN",
             "-m recent --name seen --set --mask 255.255.255.0",
             "-m recent --name dst --rdest --set"]
    text = "*filter\n:T - [0:0]\n" + "".join(f"-A T {r}\n" for r in rules) + "COMMIT\n"
    rs = parse_ruleset(text)
    ctx = Context(now=100.0)
    results = []
    for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # one /24: the list keys on 10.0.0.0
        [branch] = evaluate_chain(rs, "filter", "T", tcp(source, "10.9.9.9"), ctx,
                                  hook="INPUT")
        results.append([t.number for t in branch.trace if t.kind == "rule"])
        ctx = replace(ctx.advance(branch), now=ctx.now + 1)
    assert results == [[2, 3], [2, 3], [1]]
    assert ctx.recent.addresses("seen") == {"10.0.0.0": (100.0, 101.0, 102.0)}
    assert ctx.recent.addresses("dst") == {"10.9.9.9": (100.0, 101.0)}
    remove = parse_ruleset("*filter\n:T - [0:0]\n-A T -m recent --name dst --rdest --remove\n"
                           "COMMIT\n")
    [gone] = evaluate_chain(remove, "filter", "T", tcp("1.1.1.1", "10.9.9.9"), ctx,
                            hook="INPUT")
    assert gone.recent.addresses("dst") == {}


def test_ipvs_against_the_caller_table():
    rules = ["-m ipvs --ipvs", "-m ipvs --vaddr 10.96.0.50/32 --vport 80 --vproto tcp",
             "-m ipvs ! --ipvs", "-m ipvs --vaddr 10.96.0.51/32"]
    ctx = Context(ipvs=(VirtualService("10.96.0.50", 80),))
    assert hits(rules, tcp(dst="10.96.0.50", dport=80), ctx, hook="OUTPUT") == [1, 2]
    assert hits(rules, tcp(dst="10.96.0.50", dport=81), ctx, hook="OUTPUT") == [3]
    branch = run_chain(rules[:1], tcp(), Context(), hook="OUTPUT")
    assert branch.unsupported == ("-m ipvs: no IPVS table given in the context",)


def test_limit_matches_with_a_note_and_nfacct_needs_its_counter():
    branch = run_chain(["-m limit --limit 5/min"], tcp())
    assert branch.notes == ("-m limit --limit 5/min: assumed under the rate (matches)",)
    rules = ["-m nfacct --nfacct-name localhost_nps_accepted_pkts"]
    assert hits(rules, tcp(), Context()) == [1]  # counters not listed: assumed present
    assert hits(rules, tcp(), Context(nfacct=frozenset({"localhost_nps_accepted_pkts"}))) == [1]
    assert hits(rules, tcp(), Context(nfacct=frozenset())) == []


def test_snat_and_redirect_targets():
    text = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080
-A OUTPUT -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8081
-A POSTROUTING -o eth1 -p udp -j SNAT --to-source 192.0.2.1:1000-2000
-A POSTROUTING -o eth2 -j MASQUERADE
COMMIT
"""
    rs = parse_ruleset(text)
    ctx = Context(interfaces={"eth0": ("198.51.100.7", "198.51.100.8"), "eth1": ("192.0.2.1",)})
    [pre] = evaluate_hook(rs, "PREROUTING", tcp(dst="203.0.113.5", in_iface="eth0"), ctx)
    assert (pre.packet.dst, pre.packet.dport) == ("198.51.100.7", 8080)  # primary address
    [out] = evaluate_hook(rs, "OUTPUT", tcp(dst="203.0.113.5"), ctx)
    assert (out.packet.dst, out.packet.dport) == ("127.0.0.1", 8081)
    [snat] = evaluate_hook(rs, "POSTROUTING", udp(sport=53, out_iface="eth1"), ctx)
    assert (snat.packet.src, snat.packet.sport) == ("192.0.2.1", 1000)
    [no_addr] = evaluate_hook(rs, "POSTROUTING", udp(out_iface="eth2"), ctx)
    assert no_addr.verdict.kind == "DROP"  # MASQUERADE on an interface without an address
