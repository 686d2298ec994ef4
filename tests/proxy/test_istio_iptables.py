"""Istio's capture rules: the text istio-iptables writes, and what it does to packets.

Expected texts are istio/istio's capture goldens (tools/istio-iptables/pkg/capture/testdata,
the restore-format generation; the dry-run's `iptables-save` log lines are dropped). Each row
gives the golden's test config (common_test.go GetCommonTestCases on ConstructTestConfig:
no inbound ports, no outbound ranges unless set) as CaptureOptions. IPv6 rows apply the
substitutions ipv6-inbound-ports.golden shows (127.0.0.6/32 -> ::6/128, 127.0.0.1/32 ->
::1/128). Packet expectations follow the rules by hand and the kernel's hook semantics; the
kernel test restores the same text in real network namespaces and makes real connections.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace

import pytest

from netsim.cluster import load
from proxy.istio_inject import CaptureOptions, Injection, injected
from proxy.istio_iptables import capture_rules
from proxy.netfilter import Context, Packet, Socket, parse_ruleset, traverse

NONE_IN = {"include_inbound_ports": (), "exclude_inbound_ports": ()}
NONE_OUT = {"include_outbound_cidrs": ()}
TEST_CONFIG = {**NONE_IN, **NONE_OUT}  # ConstructTestConfig

NAT_HEAD = """\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
"""
OWNERS = """\
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
"""  # noqa: E501

GOLDENS = {
    # inbound-ports-wildcard.golden (cfg.InboundPortsInclude = "*")
    "inbound-ports-wildcard": (
        {**TEST_CONFIG, "include_inbound_ports": ("*",)},
        NAT_HEAD + "-A PREROUTING -p tcp -j ISTIO_INBOUND\n"
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n"
        "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS + "COMMIT\n"),
    # inbound-wildcard-exclude.golden (InboundPortsInclude "*", InboundPortsExclude 22,80,443)
    "inbound-wildcard-exclude": (
        {**TEST_CONFIG, "include_inbound_ports": ("*",),
         "exclude_inbound_ports": ("22", "80", "443")},
        NAT_HEAD + "-A PREROUTING -p tcp -j ISTIO_INBOUND\n"
        "-A ISTIO_INBOUND -p tcp -m multiport --dports 22,80,443 -j RETURN\n"
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n"
        "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS + "COMMIT\n"),
    # outbound-ports-exclude.golden (OutboundPortsExclude "22,80,443")
    "outbound-ports-exclude": (
        {**TEST_CONFIG, "exclude_outbound_ports": ("22", "80", "443")},
        NAT_HEAD + "-A OUTPUT -j ISTIO_OUTPUT\n"
        "-A ISTIO_OUTPUT -p tcp -m multiport --dports 22,80,443 -j RETURN\n"
        "-A ISTIO_OUTPUT -p udp -m multiport --dports 22,80,443 -j RETURN\n"
        + OWNERS + "COMMIT\n"),
    # outbound-ports-exclude-single.golden (OutboundPortsExclude "22")
    "outbound-ports-exclude-single": (
        {**TEST_CONFIG, "exclude_outbound_ports": ("22",)},
        NAT_HEAD + "-A OUTPUT -j ISTIO_OUTPUT\n"
        "-A ISTIO_OUTPUT -p tcp --dport 22 -j RETURN\n"
        "-A ISTIO_OUTPUT -p udp --dport 22 -j RETURN\n" + OWNERS + "COMMIT\n"),
    # kube-virt-interfaces.golden (RerouteVirtualInterfaces eth1,eth2; OutboundIPRanges "*")
    "kube-virt-interfaces": (
        {**NONE_IN, "reroute_interfaces": ("eth1", "eth2")},
        "* nat\n-N ISTIO_INBOUND\n-N ISTIO_REDIRECT\n-N ISTIO_IN_REDIRECT\n-N ISTIO_OUTPUT\n"
        "-I PREROUTING 1 -i eth1 -j RETURN\n-I PREROUTING 1 -i eth2 -j RETURN\n"
        + NAT_HEAD.split("-N ISTIO_OUTPUT\n", 1)[1] + "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS
        + "-A ISTIO_OUTPUT -j ISTIO_REDIRECT\n"
        "-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT\n-I PREROUTING 1 -i eth2 -j ISTIO_REDIRECT\n"
        "COMMIT\n"),
    # ipnets.golden (OutboundIPRangesInclude 10.0.0.0/8): no trailing RETURN any more
    "ipnets": (
        {**NONE_IN, "include_outbound_cidrs": ("10.0.0.0/8",)},
        NAT_HEAD + "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS
        + "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT\nCOMMIT\n"),
    # inbound-ports-wildcard-tproxy.golden
    "inbound-ports-wildcard-tproxy": (
        {**TEST_CONFIG, "include_inbound_ports": ("*",), "interception_mode": "TPROXY"},
        """\
* mangle
-N ISTIO_DIVERT
-N ISTIO_TPROXY
-N ISTIO_INBOUND
-A ISTIO_DIVERT -j MARK --set-mark 1337
-A ISTIO_DIVERT -j ACCEPT
-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT
-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY
-A PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark
-A OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN
-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --uid-owner 1337 -j MARK --set-mark 1338
-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --gid-owner 1337 -j MARK --set-mark 1338
-A OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark
-I ISTIO_INBOUND 1 -p tcp -m mark --mark 1337 -j RETURN
-I ISTIO_INBOUND 2 -p tcp -s 127.0.0.6/32 -i lo -j RETURN
-I ISTIO_INBOUND 3 -p tcp -i lo -m mark ! --mark 1338 -j RETURN
COMMIT
""" + NAT_HEAD + "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS + "COMMIT\n"),
    # inbound-ports-tproxy.golden (InboundPortsInclude 32000,31000; TPROXY)
    "inbound-ports-tproxy": (
        {**TEST_CONFIG, "include_inbound_ports": ("32000", "31000"),
         "interception_mode": "TPROXY"},
        """\
* mangle
-N ISTIO_DIVERT
-N ISTIO_TPROXY
-N ISTIO_INBOUND
-A ISTIO_DIVERT -j MARK --set-mark 1337
-A ISTIO_DIVERT -j ACCEPT
-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 32000 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT
-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_TPROXY
-A ISTIO_INBOUND -p tcp --dport 31000 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT
-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_TPROXY
-A PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark
-A OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN
-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --uid-owner 1337 -j MARK --set-mark 1338
-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --gid-owner 1337 -j MARK --set-mark 1338
-A OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark
-I ISTIO_INBOUND 1 -p tcp -m mark --mark 1337 -j RETURN
-I ISTIO_INBOUND 2 -p tcp -s 127.0.0.6/32 -i lo -j RETURN
-I ISTIO_INBOUND 3 -p tcp -i lo -m mark ! --mark 1338 -j RETURN
COMMIT
""" + NAT_HEAD + "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS + "COMMIT\n"),
    # basic-exclude-nic.golden (ExcludeInterfaces not-istio-nic)
    "basic-exclude-nic": (
        {**TEST_CONFIG, "exclude_interfaces": ("not-istio-nic",)},
        "* nat\n-N ISTIO_INBOUND\n-N ISTIO_REDIRECT\n-N ISTIO_IN_REDIRECT\n-N ISTIO_OUTPUT\n"
        "-A PREROUTING -i not-istio-nic -j RETURN\n-A OUTPUT -o not-istio-nic -j RETURN\n"
        + NAT_HEAD.split("-N ISTIO_OUTPUT\n", 1)[1] + "-A OUTPUT -j ISTIO_OUTPUT\n" + OWNERS
        + "COMMIT\n"),
}
V6 = {"127.0.0.6/32": "::6/128", "127.0.0.1/32": "::1/128"}


def assert_same_text(actual: str, expected: str) -> None:
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                              "golden", "netsim", lineterm=""))
        pytest.fail(f"capture rules differ from the golden:\n{diff}")


def capture(**options) -> Injection:
    opts = CaptureOptions(**options)
    return Injection(True, "test", "default", opts.interception_mode, opts)


@pytest.mark.parametrize("name", list(GOLDENS))
def test_capture_rules_match_istio_goldens(name):
    options, golden = GOLDENS[name]
    text = capture_rules(capture(**options), None)
    assert_same_text(text, golden)
    parse_ruleset(text, f"{name}.golden", strict=True)


@pytest.mark.parametrize("name", ["inbound-ports-wildcard", "inbound-ports-wildcard-tproxy",
                                  "ipnets"])
def test_ipv6_rules_swap_the_loopback_addresses(name):
    options, golden = GOLDENS[name]
    expected = golden
    for v4, v6 in V6.items():
        expected = expected.replace(v4, v6)
    if name == "ipnets":  # an IPv4 range is not written into the ip6tables rules
        expected = expected.replace("-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT\n", "")
    text = capture_rules(capture(**options), None, family=6)
    assert_same_text(text, expected)
    assert parse_ruleset(text, "v6", strict=True, family=6).family == 6


def test_multiport_groups_hold_at_most_fifteen_ports():
    ports = tuple(str(p) for p in range(1001, 1018))  # 17 ports: 15 + 2
    text = capture_rules(capture(**TEST_CONFIG, exclude_outbound_ports=ports), None)
    lines = [line for line in text.splitlines() if "multiport" in line]
    assert lines == [
        f"-A ISTIO_OUTPUT -p tcp -m multiport --dports {','.join(ports[:15])} -j RETURN",
        f"-A ISTIO_OUTPUT -p udp -m multiport --dports {','.join(ports[:15])} -j RETURN",
        "-A ISTIO_OUTPUT -p tcp -m multiport --dports 1016,1017 -j RETURN",
        "-A ISTIO_OUTPUT -p udp -m multiport --dports 1016,1017 -j RETURN",
    ]
    parse_ruleset(text, "17 ports", strict=True)


def test_per_port_form_matches_the_existing_fixture():
    """multiport=False writes the one-rule-per-port form of earlier istio-iptables releases;
    tests/data/iptables/istio.restore holds those rules for the default injected pod."""
    from pathlib import Path

    fixture = (Path(__file__).resolve().parents[1] / "data" / "iptables" / "istio.restore")
    want = [line for line in fixture.read_text().splitlines() if line.startswith("-A ")]
    text = capture_rules(capture(), None, multiport=False)
    assert [line for line in text.splitlines() if line.startswith("-A ")] == want


def test_no_sidecar_or_no_interception_means_no_rules():
    assert capture_rules(Injection(False, "not injected"), None) == ""
    assert capture_rules(Injection(True, "NONE", "default", "NONE", None), None) == ""
    with pytest.raises(ValueError):
        capture_rules(capture(), None, family=5)


def test_loopback_in_include_ranges_keeps_app_to_app_loopback_captured():
    """run.go: with a loopback range in OutboundIPRangesInclude the `-o lo ! --uid-owner`
    RETURN rules are not written (traffic-annotations.yaml includes 127.0.0.1/24)."""
    text = capture_rules(capture(include_outbound_cidrs=("127.0.0.1/24", "10.96.0.1/24")),
                         None)
    assert "! --uid-owner" not in text and "! --gid-owner" not in text
    assert text.splitlines()[-3:] == ["-A ISTIO_OUTPUT -d 127.0.0.1/24 -j ISTIO_REDIRECT",
                                      "-A ISTIO_OUTPUT -d 10.96.0.1/24 -j ISTIO_REDIRECT",
                                      "COMMIT"]


# --- packets through the rules of real injected pods ------------------------------------------

POD_IP, PEER_IP, VIP = "10.244.1.5", "10.244.2.20", "10.96.0.10"
NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
"""


def pod_rules(annotations: dict | None = None, family: int = 4):
    notes = "".join(f"    {k}: {v!r}\n" for k, v in (annotations or {}).items())
    text = NAMESPACE + textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: web
          namespace: shop
          labels: {app: web}
        """) + (f"  annotations:\n{notes}" if notes else "") + textwrap.dedent(f"""\
        spec:
          containers:
          - {{name: web, image: nginx, ports: [{{containerPort: 9080}}]}}
        status: {{podIP: {POD_IP}}}
        """)
    cluster = load(["-"], stdin=io.StringIO(text), overrides={"mesh": True})
    pod = cluster.pod("shop", "web")
    return parse_ruleset(capture_rules(injected(cluster, pod), pod, family), "web",
                         strict=True)


def ctx(**changes) -> Context:
    return replace(Context(local_addresses=(POD_IP,),
                           interfaces={"eth0": (POD_IP,), "lo": ("127.0.0.1",)}), **changes)


def outbound(rules, dst: str, dport: int, uid: int | None, proto: str = "tcp",
             src: str = POD_IP, out_iface: str = "eth0"):
    [branch] = traverse(rules, Packet(src, dst, proto, 40000, dport, out_iface=out_iface),
                        "output", ctx(uid=uid, gid=uid))
    assert branch.verdict.kind == "ACCEPT"
    return branch.packet.dst, branch.packet.dport


def inbound(rules, dport: int, proto: str = "tcp"):
    [branch] = traverse(rules, Packet(PEER_IP, POD_IP, proto, 40000, dport, in_iface="eth0"),
                        "input", ctx())
    assert branch.verdict.kind == "ACCEPT"
    return branch.packet.dst, branch.packet.dport


# (case, annotations, destination, port, uid, protocol, expected (dst, dport))
OUTBOUND = [
    ("app to a ClusterIP", {}, VIP, 80, 1000, "tcp", ("127.0.0.1", 15001)),
    ("app to the internet", {}, "8.8.8.8", 443, 1000, "tcp", ("127.0.0.1", 15001)),
    ("Envoy's own traffic", {}, VIP, 80, 1337, "tcp", (VIP, 80)),
    ("UDP is not captured", {}, VIP, 53, 1000, "udp", (VIP, 53)),
    ("a process without socket owner", {}, VIP, 80, None, "tcp", ("127.0.0.1", 15001)),
    ("excluded CIDR", {"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.0/12"},
     VIP, 80, 1000, "tcp", (VIP, 80)),
    ("outside the excluded CIDR", {"traffic.sidecar.istio.io/excludeOutboundIPRanges":
                                   "10.96.0.0/12"}, "8.8.8.8", 443, 1000, "tcp",
     ("127.0.0.1", 15001)),
    ("only included CIDRs", {"traffic.sidecar.istio.io/includeOutboundIPRanges":
                             "10.96.0.0/12"}, "8.8.8.8", 443, 1000, "tcp", ("8.8.8.8", 443)),
    ("excluded outbound port", {"traffic.sidecar.istio.io/excludeOutboundPorts": "5432,6379"},
     VIP, 5432, 1000, "tcp", (VIP, 5432)),
    ("included outbound port beats no ranges", {
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "",
        "traffic.sidecar.istio.io/includeOutboundPorts": "3306"}, VIP, 3306, 1000, "tcp",
     ("127.0.0.1", 15001)),
]


@pytest.mark.parametrize(("annotations", "dst", "dport", "uid", "proto", "expected"),
                         [row[1:] for row in OUTBOUND], ids=[row[0] for row in OUTBOUND])
def test_outbound_capture(annotations, dst, dport, uid, proto, expected):
    assert outbound(pod_rules(annotations), dst, dport, uid, proto) == expected


# (case, annotations, port, protocol, expected (dst, dport))
INBOUND = [
    ("application port", {}, 9080, "tcp", (POD_IP, 15006)),
    ("undeclared port too", {}, 12345, "tcp", (POD_IP, 15006)),
    ("health port 15021", {}, 15021, "tcp", (POD_IP, 15021)),
    ("Envoy Prometheus 15090", {}, 15090, "tcp", (POD_IP, 15090)),
    ("merged metrics 15020", {}, 15020, "tcp", (POD_IP, 15020)),
    ("HBONE 15008", {}, 15008, "tcp", (POD_IP, 15008)),
    ("UDP", {}, 9080, "udp", (POD_IP, 9080)),
    ("excluded inbound port", {"traffic.sidecar.istio.io/excludeInboundPorts": "9080"}, 9080,
     "tcp", (POD_IP, 9080)),
    ("listed inbound port", {"traffic.sidecar.istio.io/includeInboundPorts": "9080"}, 9080,
     "tcp", (POD_IP, 15006)),
    ("unlisted inbound port", {"traffic.sidecar.istio.io/includeInboundPorts": "9080"}, 8080,
     "tcp", (POD_IP, 8080)),
    ("no inbound capture", {"traffic.sidecar.istio.io/includeInboundPorts": ""}, 9080, "tcp",
     (POD_IP, 9080)),
]


@pytest.mark.parametrize(("annotations", "dport", "proto", "expected"),
                         [row[1:] for row in INBOUND], ids=[row[0] for row in INBOUND])
def test_inbound_capture(annotations, dport, proto, expected):
    assert inbound(pod_rules(annotations), dport, proto) == expected


@pytest.mark.parametrize(("src", "dst", "uid", "expected"), [
    # Envoy hands inbound traffic to the app from 127.0.0.6: never captured again
    ("127.0.0.6", POD_IP, 1337, (POD_IP, 9080)),
    # the app calls itself over lo: not captured
    (POD_IP, POD_IP, 1000, (POD_IP, 9080)),
    # Envoy (client side) calls its own pod's IP: sent to the inbound listener
    (POD_IP, POD_IP, 1337, ("127.0.0.1", 15006)),
    # anything to 127.0.0.1 stays local
    ("127.0.0.1", "127.0.0.1", 1000, ("127.0.0.1", 9080)),
])
def test_loopback_rules(src, dst, uid, expected):
    assert outbound(pod_rules(), dst, 9080, uid, src=src, out_iface="lo") == expected


def test_ipv6_pod_rules_capture_v6_traffic():
    rules = pod_rules(family=6)
    pod6, vip6 = "fd00:10:244::5", "fd00:10:96::10"
    v6ctx = Context(local_addresses=(pod6,), interfaces={"eth0": (pod6,), "lo": ("::1",)},
                    uid=1000, gid=1000)
    [branch] = traverse(rules, Packet(pod6, vip6, "tcp", 40000, 80, out_iface="eth0"),
                        "output", v6ctx)
    assert (branch.packet.dst, branch.packet.dport) == ("::1", 15001)


def test_tproxy_pod_diverts_inbound_to_a_transparent_listener():
    rules = pod_rules({"sidecar.istio.io/interceptionMode": "TPROXY"})
    listener = Socket("0.0.0.0", 15006, transparent=True)
    [branch] = traverse(rules, Packet(PEER_IP, POD_IP, "tcp", 40000, 9080, in_iface="eth0"),
                        "input", ctx(sockets=(listener,)))
    assert branch.tproxy == ("0.0.0.0", 15006)
    assert branch.packet.mark == 1337
    assert (branch.packet.dst, branch.packet.dport) == (POD_IP, 9080)  # TPROXY keeps them


# --- the kernel as referee --------------------------------------------------------------------

SERVER = r"""
import json, socket, struct, sys, threading
SO_ORIGINAL_DST = 80
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            raw = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            dport, ip = struct.unpack("!H", raw[2:4])[0], socket.inet_ntoa(raw[4:8])
        except OSError:
            ip, dport = None, None
        c.sendall((json.dumps([port, ip, dport]) + "\n").encode()); c.close()
for p in map(int, sys.argv[1:]):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import json, os, socket, sys
uid, dst, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if uid:
    os.setgid(uid); os.setuid(uid)
s = socket.socket(); s.settimeout(1.0)
try:
    s.connect((dst, port)); print(s.makefile().readline().strip())
except OSError as err:
    print(json.dumps(type(err).__name__))
"""


def _kernel_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-restore", "iptables-save"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_skip() is not None, reason=_kernel_skip() or "")
def test_kernel_applies_the_capture_like_the_interpreter():
    """Restore the default pod's rules in a pod namespace wired to a client namespace by a
    veth pair; real connections show which listener each one reaches and its original
    destination, and the interpreter must agree."""
    from tests.proxy.test_netfilter_parse import assert_same_tables

    text = capture_rules(capture(), None)
    tag = uuid.uuid4().hex[:8]
    pod_ns, client_ns = f"netsim-istio-{tag}-pod", f"netsim-istio-{tag}-client"
    veth_pod, veth_client = f"ip{tag[:6]}", f"ic{tag[:6]}"
    server = None
    try:
        _run("ip", "netns", "add", pod_ns)
        _run("ip", "netns", "add", client_ns)
        _run("ip", "link", "add", veth_pod, "type", "veth", "peer", "name", veth_client)
        _run("ip", "link", "set", veth_pod, "netns", pod_ns)
        _run("ip", "link", "set", veth_client, "netns", client_ns)
        for ns, dev, addr in ((pod_ns, veth_pod, POD_IP), (client_ns, veth_client, PEER_IP)):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "addr", "add", f"{addr}/16", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", pod_ns, "route", "add", "default", "via", PEER_IP)
        _run("ip", "netns", "exec", pod_ns, "iptables-restore", stdin=text)
        saved = _run("ip", "netns", "exec", pod_ns, "iptables-save")
        assert_same_tables(parse_ruleset(text, "capture").dump(), saved)

        server = subprocess.Popen(
            ["ip", "netns", "exec", pod_ns, sys.executable, "-c", SERVER,
             "15001", "15006", "15021", "9080"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"

        def connect(ns: str, uid: int, dst: str, port: int):
            return json.loads(_run("ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
                                   str(uid), dst, str(port)))

        rules = parse_ruleset(saved, "kernel", strict=False)
        # inbound from the client: 9080 -> 15006 listener, original destination kept
        assert connect(client_ns, 0, POD_IP, 9080) == [15006, POD_IP, 9080]
        assert inbound(rules, 9080) == (POD_IP, 15006)
        # the health port is excluded: the real 15021 listener answers
        assert connect(client_ns, 0, POD_IP, 15021)[0] == 15021
        assert inbound(rules, 15021) == (POD_IP, 15021)
        # the app (uid 1000) calls a ClusterIP: lands on 15001 with the VIP as original dst
        assert connect(pod_ns, 1000, VIP, 80) == [15001, VIP, 80]
        assert outbound(rules, VIP, 80, 1000) == ("127.0.0.1", 15001)
        # Envoy (uid 1337) is not captured: the SYN goes out unanswered
        assert connect(pod_ns, 1337, VIP, 80) in ("TimeoutError", "ConnectionRefusedError",
                                                  "OSError")
        assert outbound(rules, VIP, 80, 1337) == (VIP, 80)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for ns in (pod_ns, client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
