"""Packets through real-looking rulesets: kube-proxy, Calico felix, Istio capture.

Expectations are worked out by hand from the rules (kube-proxy's probabilities are what the
kernel stores: round(p * 2^31) / 2^31) and from the kernel's hook and conntrack semantics.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from proxy.netfilter import (
    Context,
    FlowTuple,
    Packet,
    Socket,
    evaluate_chain,
    evaluate_hook,
    parse_ipset_save,
    parse_ruleset,
    traverse,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"
NODE_IP = "172.18.0.3"
WEB_VIP, CART_VIP, EMPTY_VIP = "10.96.100.10", "10.96.100.20", "10.96.100.30"
WEB_EPS = ["10.244.1.5", "10.244.2.6", "10.244.2.7"]
P_THIRD = 715827883 / 2**31  # --probability 0.3333333333 as the kernel stores it
MASQ = 0x4000


@cache
def ruleset(name: str, strict: bool = True):
    return parse_ruleset((DATA / name).read_text(), name, strict=strict)


def node_ctx(**changes) -> Context:
    ctx = Context(local_addresses=(NODE_IP,), interfaces={"eth0": (NODE_IP,)})
    return replace(ctx, **changes) if changes else ctx


def tcp(src: str, dst: str, dport: int, sport: int = 40000, **kw) -> Packet:
    kw.setdefault("in_iface", "eth0")
    kw.setdefault("out_iface", "eth0")
    return Packet(src, dst, "tcp", sport, dport, **kw)


def trace_heads(branch) -> list[str]:
    return [f"{t.table}:{t.chain}:{t.kind}:{t.number}" for t in branch.trace]


# --- ClusterIP: three endpoints, masquerade only from outside the cluster CIDR ----------------

CLUSTER_IP_ROWS = [
    # source, masquerade mark per endpoint branch (after nat PREROUTING)
    ("10.244.2.20", [False, False, False]),  # a pod: inside the cluster CIDR
    ("192.168.5.5", [True, True, True]),  # outside: KUBE-SVC's `! -s 10.244.0.0/16` rule
    ("10.244.1.5", [True, False, False]),  # hairpin: an endpoint reaching itself
]


@pytest.mark.parametrize(("source", "marked"), CLUSTER_IP_ROWS)
def test_cluster_ip_three_endpoints(source, marked):
    branches = evaluate_hook(ruleset("kube-proxy.save"), "PREROUTING",
                             tcp(source, WEB_VIP, 80), node_ctx())
    assert [b.packet.dst for b in branches] == WEB_EPS
    assert [b.packet.dport for b in branches] == [8080, 8080, 8080]
    assert [b.probability for b in branches] == pytest.approx(
        [P_THIRD, (1 - P_THIRD) / 2, (1 - P_THIRD) / 2], abs=1e-15)
    assert sum(b.probability for b in branches) == pytest.approx(1.0, abs=1e-12)
    assert [bool(b.packet.mark & MASQ) for b in branches] == marked
    assert all(b.verdict.kind == "ACCEPT" and b.ct_state == "NEW" for b in branches)
    first = branches[0]
    assert str(first.trace[1]) == (
        'nat:KUBE-SERVICES:rule:4 -A KUBE-SERVICES -d 10.96.100.10/32 -p tcp -m comment '
        '--comment "shop/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-67NZLRHBNDSAWJRO')
    assert first.conntrack_entry.dnat
    assert first.conntrack_entry.reply == FlowTuple(6, "10.244.1.5", 8080, source, 40000)


@pytest.mark.parametrize(("source", "masqueraded"), [("10.244.2.20", False),
                                                      ("192.168.5.5", True)])
def test_forward_path_masquerades_marked_packets_and_clears_the_mark(source, masqueraded):
    branches = traverse(ruleset("kube-proxy.save"), tcp(source, WEB_VIP, 80), "forward",
                        node_ctx())
    for branch in branches:
        assert branch.verdict.kind == "ACCEPT"
        assert branch.packet.mark == 0
        assert branch.packet.src == (NODE_IP if masqueraded else source)
        heads = trace_heads(branch)
        if masqueraded:
            assert heads[-2:] == ["nat:KUBE-POSTROUTING:rule:2", "nat:KUBE-POSTROUTING:rule:3"]
            assert branch.trace[-2].text == "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0"
            assert branch.conntrack_entry.snat
            assert "filter:KUBE-FORWARD:rule:2" in heads  # marked: accepted by KUBE-FORWARD
        else:
            assert heads[-1] == "nat:POSTROUTING:policy:2"
            assert "nat:KUBE-POSTROUTING:rule:1" in heads  # RETURN: no mark
            assert not branch.conntrack_entry.snat


def test_nodeport_via_addrtype_local():
    rs = ruleset("kube-proxy.save")
    branches = traverse(rs, tcp("192.168.5.5", NODE_IP, 30080), "inbound", node_ctx())
    assert [b.packet.dst for b in branches] == WEB_EPS
    for branch in branches:
        assert branch.hooks == ("PREROUTING", "FORWARD", "POSTROUTING")
        assert branch.packet.src == NODE_IP  # KUBE-EXT marks external traffic
        heads = trace_heads(branch)
        assert heads[:5] == ["nat:PREROUTING:rule:1", "nat:KUBE-SERVICES:rule:6",
                             "nat:KUBE-NODEPORTS:rule:1", "nat:KUBE-EXT-67NZLRHBNDSAWJRO:rule:1",
                             "nat:KUBE-MARK-MASQ:rule:1"]
    # the same port on an address that is not the node's is not a NodePort
    [other] = traverse(rs, tcp("192.168.5.5", "172.18.0.99", 30080), "inbound", node_ctx())
    assert other.packet.dst == "172.18.0.99" and other.hooks[1] == "FORWARD"


def test_service_without_endpoints_is_rejected_in_filter():
    [branch] = traverse(ruleset("kube-proxy.save"), tcp("10.244.2.20", EMPTY_VIP, 80),
                        "forward", node_ctx())
    assert branch.verdict.kind == "REJECT"
    assert branch.verdict.reject_with == "icmp-port-unreachable"
    assert branch.verdict.hook == "FORWARD"
    assert str(branch.verdict.by) == (
        'filter:KUBE-SERVICES:rule:1 -A KUBE-SERVICES -d 10.96.100.30/32 -p tcp -m comment '
        '--comment "shop/empty:http has no endpoints" -m tcp --dport 80 -j REJECT '
        '--reject-with icmp-port-unreachable')
    assert branch.packet.dst == EMPTY_VIP
    assert len(branch.conntrack.entries()) == 0  # the unconfirmed connection died with it
    [nodeport] = traverse(ruleset("kube-proxy.save"), tcp("192.168.5.5", NODE_IP, 30090),
                          "inbound", node_ctx())
    assert nodeport.verdict.kind == "REJECT" and nodeport.hooks == ("PREROUTING", "INPUT")
    assert nodeport.verdict.by.chain == "KUBE-EXTERNAL-SERVICES"


def test_session_affinity_pins_the_second_connection():
    rs = ruleset("kube-proxy.save")
    ctx = node_ctx(now=1000.0)
    first = evaluate_hook(rs, "PREROUTING", tcp("10.244.2.20", CART_VIP, 80), ctx)
    assert [(b.packet.dst, b.probability) for b in first] == [("10.244.1.8", 0.5),
                                                             ("10.244.2.9", 0.5)]
    chosen = first[1]
    assert chosen.recent.addresses("KUBE-SEP-BQDHVMWANCT6EYGM") == {"10.244.2.20": (1000.0,)}
    assert chosen.recent.addresses("KUBE-SEP-SJM76NXQW4LDYTMK") == {}
    later = replace(ctx.advance(chosen), now=1060.0)
    second = evaluate_hook(rs, "PREROUTING", tcp("10.244.2.20", CART_VIP, 80, sport=40001),
                           later)
    assert len(second) == 1
    assert (second[0].packet.dst, second[0].probability) == ("10.244.2.9", 1.0)
    assert "nat:KUBE-SVC-I5LIAMPLWKMBJ54B:rule:3" in trace_heads(second[0])  # the --rcheck rule
    # another client is not pinned; after --seconds 10800 the pin has expired
    assert len(evaluate_hook(rs, "PREROUTING", tcp("10.244.2.21", CART_VIP, 80), later)) == 2
    expired = replace(later, now=1000.0 + 10801)
    assert len(evaluate_hook(rs, "PREROUTING", tcp("10.244.2.20", CART_VIP, 80), expired)) == 2


def test_reply_of_a_dnat_connection_gets_the_service_address_back():
    rs = ruleset("kube-proxy.save")
    ctx = node_ctx()
    branch = traverse(rs, tcp("10.244.2.20", WEB_VIP, 80), "forward", ctx)[2]
    assert branch.packet.dst == "10.244.2.7"
    after = ctx.advance(branch)
    reply = tcp("10.244.2.7", "10.244.2.20", 40000, sport=8080, tcp_flags="SYN,ACK")
    [back] = traverse(rs, reply, "forward", after)
    assert back.ct_state == "ESTABLISHED"
    assert (back.packet.src, back.packet.sport) == (WEB_VIP, 80)
    assert (back.packet.dst, back.packet.dport) == ("10.244.2.20", 40000)
    assert {t.table for t in back.trace} == {"filter"}  # conntrack, not the nat table, NATs
    assert "SEEN_REPLY" in back.conntrack_entry.status


def test_established_packets_skip_nat_and_reuse_the_binding():
    rs = ruleset("kube-proxy.save")
    ctx = node_ctx()
    branch = traverse(rs, tcp("192.168.5.5", WEB_VIP, 80), "forward", ctx)[1]
    ctx = ctx.advance(branch)
    [reply] = traverse(rs, tcp("10.244.2.6", NODE_IP, 40000, sport=8080, tcp_flags="SYN,ACK"),
                       "forward", ctx)
    assert (reply.packet.src, reply.packet.dst) == (WEB_VIP, "192.168.5.5")  # un-SNAT, un-DNAT
    ctx = ctx.advance(reply)
    [ack] = traverse(rs, tcp("192.168.5.5", WEB_VIP, 80, tcp_flags="ACK"), "forward", ctx)
    assert ack.probability == 1.0 and ack.ct_state == "ESTABLISHED"
    assert (ack.packet.src, ack.packet.dst, ack.packet.dport) == (NODE_IP, "10.244.2.6", 8080)
    assert not any(t.table == "nat" for t in ack.trace)
    assert trace_heads(ack)[-1] == "filter:KUBE-FORWARD:rule:3"  # the conntrack rule


def test_output_path_for_host_network_clients():
    [branch] = traverse(ruleset("kube-proxy.save"), tcp(NODE_IP, "10.96.0.1", 443,
                                                        in_iface=None),
                        "output", node_ctx())
    assert (branch.packet.dst, branch.packet.dport) == ("172.18.0.2", 6443)
    # the node's own address is outside the cluster CIDR: masqueraded to itself
    assert branch.packet.src == NODE_IP and branch.conntrack_entry.snat is False


def test_ipv6_service():
    rs = ruleset("kube-proxy-v6.save")
    packet = Packet("fd00:10:244:3::9", "fd00:10:96::10", "tcp", 40000, 80, in_iface="eth0",
                    out_iface="eth0")
    branches = evaluate_hook(rs, "PREROUTING", packet, Context())
    assert [(b.packet.dst, b.probability) for b in branches] == [
        ("fd00:10:244:1::5", 0.5), ("fd00:10:244:2::6", 0.5)]
    [rejected] = traverse(rs, replace(packet, dst="fd00:10:96::30"), "forward", Context())
    assert rejected.verdict.reject_with == "icmp6-port-unreachable"


def test_sample_mode_follows_one_branch_with_the_seed():
    rs = ruleset("kube-proxy.save")
    packet = tcp("10.244.2.20", WEB_VIP, 80)
    picked = set()
    for seed in range(30):
        [branch] = traverse(rs, packet, "forward", node_ctx(seed=seed), mode="sample")
        again = traverse(rs, packet, "forward", node_ctx(seed=seed), mode="sample")[0]
        assert branch.packet.dst == again.packet.dst
        assert branch.probability == pytest.approx(1 / 3, abs=1e-9)
        picked.add(branch.packet.dst)
    assert picked == set(WEB_EPS)


# --- chains: goto, jump, RETURN and policies --------------------------------------------------

CHAINS = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -p tcp -j A
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -p udp -g B
-A A -p tcp -m tcp --dport 1 -g B
-A A -p tcp -m tcp --dport 2 -j B
-A A -j LOG --log-prefix back-in-A
-A B -j RETURN
COMMIT
"""


@pytest.mark.parametrize(("proto", "port", "heads", "verdict"), [
    # goto B: B's RETURN goes back to A's caller, INPUT
    ("tcp", 1, ["filter:INPUT:rule:1", "filter:A:rule:1", "filter:B:rule:1",
                "filter:INPUT:rule:2"], "REJECT"),
    # jump B: RETURN comes back into A after the jump, A then ends
    ("tcp", 2, ["filter:INPUT:rule:1", "filter:A:rule:2", "filter:B:rule:1", "filter:A:rule:3",
                "filter:A:return:4", "filter:INPUT:rule:2"], "REJECT"),
    # goto from the built-in chain: RETURN in B ends INPUT with its policy
    ("udp", 1, ["filter:INPUT:rule:3", "filter:B:rule:1", "filter:INPUT:policy:4"], "DROP"),
    ("icmp", 0, ["filter:INPUT:policy:4"], "DROP"),
])
def test_goto_jump_and_return(proto, port, heads, verdict):
    rs = parse_ruleset(CHAINS)
    packet = Packet("192.168.1.1", NODE_IP, proto, 5000 if proto != "icmp" else 0, port,
                    in_iface="eth0")
    [branch] = evaluate_hook(rs, "INPUT", packet, node_ctx())
    assert trace_heads(branch) == heads
    assert branch.verdict.kind == verdict
    assert branch.verdict.by_policy == (verdict == "DROP")


def test_policy_of_built_in_chains_and_user_chains_alone():
    rs = parse_ruleset(CHAINS)
    [forward] = evaluate_hook(rs, "FORWARD", tcp("1.1.1.1", "2.2.2.2", 1), node_ctx())
    assert forward.verdict.kind == "ACCEPT" and forward.verdict.by_policy
    assert str(forward.trace[-1]) == "filter:FORWARD:policy:1 -P FORWARD ACCEPT"
    [alone] = evaluate_chain(rs, "filter", "A", tcp("1.1.1.1", "2.2.2.2", 3), node_ctx())
    assert alone.verdict.kind == "CONTINUE"
    assert trace_heads(alone) == ["filter:A:rule:3", "filter:A:return:4"]
    assert alone.notes == ("LOG back-in-A",)


# --- Istio capture ----------------------------------------------------------------------------

POD_IP = "10.244.1.5"


def pod_ctx(**changes) -> Context:
    return replace(Context(local_addresses=(POD_IP,), interfaces={"eth0": (POD_IP,),
                                                                  "lo": ("127.0.0.1",)}),
                   **changes)


@pytest.mark.parametrize(("port", "redirected"), [(8080, True), (15021, False), (15008, False),
                                                  (15090, False)])
def test_istio_inbound_capture_redirects_to_15006(port, redirected):
    [branch] = traverse(ruleset("istio.save"), tcp("10.244.2.20", POD_IP, port), "input",
                        pod_ctx())
    assert branch.verdict.kind == "ACCEPT"
    assert (branch.packet.dst, branch.packet.dport) == (POD_IP, 15006 if redirected else port)
    lines = [str(t) for t in branch.trace]
    redirect = ("nat:ISTIO_IN_REDIRECT:rule:1 -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT "
                "--to-ports 15006")
    assert (redirect in lines) == redirected
    assert lines[-1] == "nat:INPUT:policy:1 -P INPUT ACCEPT"  # nat INPUT: new connections


@pytest.mark.parametrize(("uid", "captured"), [(1000, True), (1337, False), (None, True)])
def test_istio_outbound_capture_spares_envoy(uid, captured):
    packet = tcp(POD_IP, CART_VIP, 80, in_iface=None)
    [branch] = traverse(ruleset("istio.save"), packet, "output", pod_ctx(uid=uid, gid=uid))
    expected = ("127.0.0.1", 15001) if captured else (CART_VIP, 80)
    assert (branch.packet.dst, branch.packet.dport) == expected
    if uid == 1337:
        assert "nat:ISTIO_OUTPUT:rule:4" in trace_heads(branch)  # --uid-owner 1337 RETURN


def test_istio_tproxy_hands_packets_to_a_transparent_listener():
    rs = ruleset("istio-tproxy.save")
    listener = Socket("0.0.0.0", 15006, transparent=True)
    ctx = pod_ctx(sockets=(listener,))
    [branch] = evaluate_hook(rs, "PREROUTING", tcp("10.244.2.20", POD_IP, 8080), ctx)
    assert branch.verdict.kind == "ACCEPT"
    assert branch.tproxy == ("0.0.0.0", 15006)
    assert branch.packet.mark == 1337
    # TPROXY ends mangle PREROUTING: the later CONNMARK --save-mark rule is not reached
    heads = trace_heads(branch)
    assert "mangle:ISTIO_TPROXY:rule:1" in heads and "mangle:PREROUTING:rule:2" not in heads
    assert branch.conntrack_entry.mark == 0
    assert (branch.packet.dst, branch.packet.dport) == (POD_IP, 8080)  # TPROXY does not rewrite
    no_listener = pod_ctx(sockets=(replace(listener, transparent=False),))
    [dropped] = evaluate_hook(rs, "PREROUTING", tcp("10.244.2.20", POD_IP, 8080), no_listener)
    assert dropped.verdict.kind == "DROP"


# --- Calico felix chains with the caller's ipsets ---------------------------------------------

WEB_IFACE, CART_IFACE = "calie1c4a3b6d52", "cali9b04d2c7f61"


def calico_ctx() -> Context:
    sets = parse_ipset_save((DATA / "calico.ipset").read_text())
    return node_ctx(ipsets=sets, interfaces={"eth0": (NODE_IP,), "tunl0": ("10.244.1.0",)})


@pytest.mark.parametrize(("source", "in_iface", "verdict", "decided_by"), [
    ("10.244.1.5", WEB_IFACE, "ACCEPT", "Policy explicitly accepted packet."),
    ("10.244.2.6", "tunl0", "ACCEPT", "Policy explicitly accepted packet."),  # web on w2
    ("10.244.2.99", "tunl0", "DROP", "Drop if no policies passed packet"),  # not in the set
])
def test_calico_policy_uses_the_selector_ipset(source, in_iface, verdict, decided_by):
    rs = ruleset("node-w1.save", strict=False)
    packet = tcp(source, "10.244.1.8", 8080, in_iface=in_iface, out_iface=CART_IFACE)
    [branch] = traverse(rs, packet, "forward", calico_ctx())
    assert branch.verdict.kind == verdict
    assert decided_by in branch.verdict.by.text
    heads = trace_heads(branch)
    assert "filter:cali-to-wl-dispatch:rule:1" in heads  # -o cali9b04d2c7f61 -g cali-tw-...
    if verdict == "ACCEPT":
        assert "filter:cali-pi-_kXWz8Gg1Yd3QhGf2oE9:rule:1" in heads
        assert branch.packet.src == source  # inside the pools: cali-nat-outgoing does not NAT
    if in_iface == WEB_IFACE:  # without routes felix's rpfilter check is reported, not guessed
        assert any("rpfilter: no routes" in u for u in branch.unsupported)


# felix drops workload packets whose source would not be routed back out of the same cali veth
@pytest.mark.parametrize(("in_iface", "verdict"), [(WEB_IFACE, "ACCEPT"), (CART_IFACE, "DROP")])
def test_calico_rpfilter_drops_spoofed_workload_sources(in_iface, verdict):
    routes = {"10.244.1.5": WEB_IFACE, "10.244.1.8": CART_IFACE}
    ctx = replace(calico_ctx(), route=lambda p: routes.get(p.dst, "eth0"))
    packet = tcp("10.244.1.5", "10.244.1.8", 8080, in_iface=in_iface, out_iface=CART_IFACE)
    [branch] = traverse(ruleset("node-w1.save"), packet, "forward", ctx)
    assert branch.verdict.kind == verdict and not branch.unsupported
    if verdict == "DROP":
        assert "rpfilter --validmark --invert" in branch.verdict.by.text


def test_calico_nat_outgoing_masquerades_pod_traffic_leaving_the_pools():
    rs = ruleset("node-w1.save", strict=False)
    packet = tcp("10.244.1.5", "8.8.8.8", 443, in_iface=WEB_IFACE, out_iface="eth0")
    [branch] = traverse(rs, packet, "forward", calico_ctx())
    assert branch.verdict.kind == "ACCEPT"
    assert branch.packet.src == NODE_IP
    assert trace_heads(branch)[-1] == "nat:cali-nat-outgoing:rule:1"


def test_calico_sets_must_be_supplied():
    rs = ruleset("node-w1.save", strict=False)
    packet = tcp("10.244.1.5", "10.244.1.8", 8080, in_iface=WEB_IFACE, out_iface=CART_IFACE)
    [branch] = traverse(rs, packet, "forward", node_ctx())
    assert branch.verdict.kind == "DROP"  # the policy's set match cannot hold without the set
    assert any("cali40s:x0sVe4YVJ1jXRwCmuUb9Kdl" in u for u in branch.unsupported)


def test_docker_published_port():
    rs = ruleset("node-w1.save", strict=False)
    packet = tcp("192.168.5.5", NODE_IP, 8080, out_iface="docker0")
    [branch] = traverse(rs, packet, "inbound", calico_ctx())
    assert (branch.packet.dst, branch.packet.dport) == ("172.17.0.2", 80)
    assert branch.verdict.kind == "ACCEPT"
    assert "filter:DOCKER:rule:1" in trace_heads(branch)


# --- conntrack states -------------------------------------------------------------------------

STATES = """*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp -j DNAT --to-destination 10.0.0.9
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-A FORWARD -m state --state INVALID -j DROP
-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED -j ACCEPT
COMMIT
"""


def test_untracked_invalid_and_related():
    rs = parse_ruleset(STATES)
    ctx = node_ctx()
    [untracked] = traverse(rs, Packet("10.0.0.1", "10.0.0.2", "udp", 5353, 53,
                                      in_iface="eth0"), "forward", ctx)
    assert untracked.ct_state == "UNTRACKED" and untracked.packet.dst == "10.0.0.2"  # no NAT
    assert trace_heads(untracked)[-1] == "filter:FORWARD:rule:2"
    [invalid] = traverse(rs, tcp("10.0.0.1", "10.0.0.2", 80, tcp_flags="RST"), "forward", ctx)
    assert invalid.ct_state == "INVALID" and invalid.verdict.kind == "DROP"
    [udp] = traverse(rs, Packet("10.0.0.1", "10.0.0.2", "udp", 5000, 9999, in_iface="eth0"),
                     "forward", ctx)
    assert udp.packet.dst == "10.0.0.9"
    error = Packet("10.0.0.9", "10.0.0.1", "icmp", icmp_type=3, icmp_code=3, in_iface="eth0",
                   related_to=FlowTuple(17, "10.0.0.1", 5000, "10.0.0.9", 9999))
    [related] = traverse(rs, error, "forward", ctx.advance(udp))
    assert related.ct_state == "RELATED" and trace_heads(related)[-1] == "filter:FORWARD:rule:3"


def test_mid_stream_tcp_depends_on_tcp_loose():
    rs = parse_ruleset(STATES)
    ack = tcp("10.0.0.1", "10.0.0.2", 80, tcp_flags="ACK")
    assert traverse(rs, ack, "forward", node_ctx())[0].ct_state == "NEW"
    assert traverse(rs, ack, "forward", node_ctx(tcp_loose=False))[0].ct_state == "INVALID"


def test_branches_never_share_state():
    rs = ruleset("kube-proxy.save")
    ctx = node_ctx()
    branches = evaluate_hook(rs, "PREROUTING", tcp("10.244.2.20", CART_VIP, 80), ctx)
    assert len(ctx.recent) == 0 and len(ctx.conntrack) == 0
    assert [len(b.recent) for b in branches] == [1, 1]
    assert branches[0].recent.addresses("KUBE-SEP-BQDHVMWANCT6EYGM") == {}
    assert [len(b.conntrack.entries()) for b in branches] == [1, 1]


def test_local_path_reroutes_after_output_nat_and_loops_back():
    def route(packet: Packet) -> str:
        return "lo" if packet.dst.startswith("127.") else "eth0"

    app = tcp(POD_IP, CART_VIP, 80, in_iface=None, out_iface="eth0")
    [branch] = traverse(ruleset("istio.save"), app, "local", pod_ctx(uid=1000, route=route))
    assert branch.hooks == ("OUTPUT", "POSTROUTING", "PREROUTING", "INPUT")
    assert (branch.packet.dst, branch.packet.dport) == ("127.0.0.1", 15001)
    assert branch.packet.in_iface == "lo" and branch.verdict.kind == "ACCEPT"
    # back in PREROUTING the looped packet keeps its connection: nat is not consulted again
    assert {t.hook for t in branch.trace if t.table == "nat" and t.kind == "rule"} == {"OUTPUT"}
    assert branch.conntrack_entry.orig.dst == CART_VIP


def test_hooks_can_be_walked_one_at_a_time():
    rs = ruleset("kube-proxy.save")
    ctx = node_ctx()
    pre = evaluate_hook(rs, "PREROUTING", tcp("192.168.5.5", WEB_VIP, 80), ctx)[0]
    ctx = ctx.advance(pre)
    fwd = evaluate_hook(rs, "FORWARD", pre.packet, ctx)[0]
    assert fwd.ct_state == "NEW" and fwd.verdict.by.chain == "KUBE-FORWARD"
    post = evaluate_hook(rs, "POSTROUTING", fwd.packet, ctx.advance(fwd))[0]
    whole = traverse(rs, tcp("192.168.5.5", WEB_VIP, 80), "forward", node_ctx())[0]
    assert post.packet == whole.packet
    assert post.conntrack_entry == whole.conntrack_entry
    assert "CONFIRMED" in post.conntrack_entry.status
