"""cilium-dbg output of the emulated maps, compared with text written by hand from the format.

The formats are those of the v1.16 cilium-dbg commands (cilium-dbg/cmd/*.go and the String()
methods of pkg/maps/*), printed through Go's text/tabwriter. The tabwriter emulation is
checked first against cases from Go's own text/tabwriter/tabwriter_test.go. The golden
tables use tests/data/cilium/tiny.yaml; each column width is the widest cell plus the
padding of 3 (minimum 5), counted by hand and written as the literal widths below. Values
netsim derives by documented rules are restated where used: endpoint id = 1 + the first
4 bytes of SHA-256("ns/pod") mod 4095; pod/veth MACs as netsim.topology gives them; the
HTTP proxy port = 10000 + first 4 bytes of SHA-256("<node>/cilium-http-ingress") mod 10000.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from cni import cilium_print as p
from cni.cilium import compile_cilium
from cni.cilium_maps import TUPLE_F_IN, TUPLE_F_OUT, TUPLE_F_SERVICE, CtEntry, CtKey, NatEntry
from netsim.cluster import load

TINY = str(Path(__file__).resolve().parents[1] / "data" / "cilium" / "tiny.yaml")
CLIENT_ID, WEB1_ID = 1350, 1000  # endpoint ids of default/client and default/web-1
PROXY = 17004  # node-a's cilium-http-ingress port
NS_LABELS = ("k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default",
             "k8s:io.cilium.k8s.policy.cluster=default",
             "k8s:io.cilium.k8s.policy.serviceaccount=default",
             "k8s:io.kubernetes.pod.namespace=default")


def same(got: str, want: str) -> None:
    if got != want:
        diff = "\n".join(difflib.unified_diff(want.splitlines(), got.splitlines(), "expected",
                                              "netsim", lineterm=""))
        pytest.fail(f"text differs:\n{diff}")


@pytest.fixture(scope="module")
def node_a():
    # the hand-written tables cover tiny.yaml alone: no cluster DNS
    return compile_cilium(load([TINY])).node("node-a")


# ---------------------------------------------------------------- Go's tabwriter

GO_TABWRITER_CASES = [  # (name, minwidth, padding, padchar, input, output) from tabwriter_test.go
    ("5", 8, 1, ".", "*\t*", "*.......*"),
    ("5c", 8, 1, ".", "*\t*\t", "*.......*"),
    ("6", 8, 1, ".", "\t\n", "........\n"),
    ("7b", 8, 1, " ", "b) foo\tbar", "b) foo  bar"),
    ("7c", 8, 1, ".", "c) foo\tbar\t", "c) foo..bar"),
    ("7e", 8, 1, ".", "e) foo\tbar\t\n", "e) foo..bar.....\n"),
    ("8", 8, 1, "*", "Hello, world!\n", "Hello, world!\n"),
    ("9a", 1, 0, ".", "1\t2\t3\t4\n11\t222\t3333\t44444\n", "1.2..3...4\n11222333344444\n"),
    ("10b", 5, 0, ".", "1\t2\t3\t4\t\n", "1....2....3....4....\n"),
    ("11", 8, 1, ".", "本\tb\tc\naa\t本本本\tcccc\tddddd\naaa\tbbbb\n",
     "本.......b.......c\naa......本本本.....cccc....ddddd\naaa.....bbbb\n"),
    ("12b", 2, 0, " ", "a\tb\tc\naa\tbbb\tcccc\naaa\tbbbb\n", "a  b  c\naa bbbcccc\naaabbbb\n"),
    ("13b", 4, 3, ".",
     "4444\t333\t22\t1\t333\n999999999\t22\n7\t22\n\t\t\t88888888\n\n"
     "666666\t666666\t666666\t4444\n1\t1\t999999999\t0000000000\n",
     "4444........333...22...1...333\n999999999...22\n7...........22\n"
     "....................88888888\n\n666666...666666...666666......4444\n"
     "1........1........999999999...0000000000\n"),
    ("15a", 4, 0, ".", "a\t\tb", "a.......b"),
]


@pytest.mark.parametrize(("name", "minwidth", "padding", "padchar", "text", "want"),
                         GO_TABWRITER_CASES, ids=[c[0] for c in GO_TABWRITER_CASES])
def test_tabwriter_matches_go(name, minwidth, padding, padchar, text, want):
    assert p.tabwrite(text, minwidth, padding, padchar) == want


# ---------------------------------------------------------------- the maps of node-a


def test_ipcache_list(node_a):
    def row(prefix: str, identity: int, tunnel: str = "0.0.0.0") -> str:
        value = f"identity={identity} encryptkey=0 tunnelendpoint={tunnel} flags=<none>"
        return prefix.ljust(20) + value.ljust(69) + "\n"

    same(p.ipcache_list(node_a),
         "IP PREFIX/ADDRESS   IDENTITY\n"
         + row("0.0.0.0/0", 2)
         + row("10.244.1.1/32", 1)  # own cilium_host
         + row("10.244.1.10/32", 258)  # web-1, local
         + row("10.244.1.11/32", 256)  # client, local
         + row("10.244.2.1/32", 6, "192.168.1.12")  # node-b's cilium_host, via the tunnel
         + row("10.244.2.10/32", 258, "192.168.1.12")  # web-2
         + row("10.244.2.20/32", 257, "192.168.1.12")  # db
         + row("192.168.1.11/32", 1)
         + row("192.168.1.12/32", 6)
         + row("203.0.113.0/24", 16777217)
         + row("203.0.113.128/25", 16777218))


def test_endpoint_list(node_a):
    def row(key: str, value: str) -> str:
        return key.ljust(17) + value.ljust(97) + "\n"

    same(p.endpoint_list(node_a),
         "IP ADDRESS       LOCAL ENDPOINT INFO\n"
         + row("10.244.1.1:0", "(localhost)")
         + row("10.244.1.10:0", "id=1000  sec_id=258   flags=0x0000 ifindex=7   "
                                "mac=82:27:98:98:13:E1 nodemac=A6:3B:26:07:74:4E")
         + row("10.244.1.11:0", "id=1350  sec_id=256   flags=0x0000 ifindex=6   "
                                "mac=52:BF:32:FA:4E:69 nodemac=BE:88:96:E0:EF:02")
         + row("192.168.1.11:0", "(localhost)"))


def test_lb_list_and_its_views(node_a):
    same(p.lb_list(node_a),
         "SERVICE ADDRESS   BACKEND ADDRESS (REVNAT_ID) (SLOT)\n"
         "10.96.0.100:80    " + "0.0.0.0:0 (1) (0) [ClusterIP, non-routable] ".ljust(47) + "\n"
         "                  " + "10.244.1.10:8080 (1) (1)".ljust(47) + "\n"
         "                  " + "10.244.2.10:8080 (1) (2)".ljust(47) + "\n")
    same(p.lb_list(node_a, "frontends"),
         "SERVICE ADDRESS   BACKEND ID\n"
         "10.96.0.100:80    0 2 (1) [0x0 0x0]   \n"
         "                  1 0 (1) [0x0 0x0]   \n"
         "                  2 0 (1) [0x0 0x0]   \n")
    same(p.lb_list(node_a, "backends"),
         "ID   BACKEND ADDRESS (REVNAT_ID) (SLOT)\n"
         "1    TCP://10.244.1.10   \n"
         "2    TCP://10.244.2.10   \n")
    same(p.lb_list(node_a, "revnat"),
         "ID   BACKEND ADDRESS (REVNAT_ID) (SLOT)\n"
         "1    10.96.0.100:80   \n")


def test_policy_get(node_a):
    widths = (9, 12, 73, 13, 13, 12, 8, 10, 9)

    def row(*cells: str) -> str:
        return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "\n"

    def more(label: str) -> str:
        return row("", "", label, "", "", "", "", "", "")

    client = ("k8s:app=client", *NS_LABELS)
    same(p.policy_get(node_a, WEB1_ID),
         row("POLICY", "DIRECTION", "LABELS (source:key[=value])", "PORT/PROTO", "PROXY PORT",
             "AUTH TYPE", "BYTES", "PACKETS", "PREFIX")
         # denies first. The world entity selects world, world-ipv4 and world-ipv6 (entity.go)
         # and the CIDR identities, which carry reserved:world.
         + row("Deny", "Egress", "reserved:world", "25/TCP", "NONE", "disabled", "0", "0", "24")
         + row("Deny", "Egress", "reserved:world-ipv4", "25/TCP", "NONE", "disabled", "0", "0",
               "24")
         + row("Deny", "Egress", "reserved:world-ipv6", "25/TCP", "NONE", "disabled", "0", "0",
               "24")
         + row("Deny", "Egress", "cidr:203.0.113.0/24", "25/TCP", "NONE", "disabled", "0", "0",
               "24") + more("reserved:world")
         + row("Deny", "Egress", "cidr:203.0.113.128/25", "25/TCP", "NONE", "disabled", "0",
               "0", "24") + more("reserved:world")
         + row("Allow", "Ingress", "reserved:host", "ANY", "NONE", "disabled", "0", "0", "0")
         + row("Allow", "Ingress", client[0], "8080/TCP", str(PROXY), "disabled", "0", "0", "24")
         + "".join(more(label) for label in client[1:])
         # the except range's identity is not allowed
         + row("Allow", "Egress", "cidr:203.0.113.0/24", "443/TCP", "NONE", "disabled", "0",
               "0", "24") + more("reserved:world"))


def test_identity_list(node_a):
    def rows(number: int, *labels: str) -> str:
        return f"{number}".ljust(11) + labels[0] + "\n" + "".join(
            " " * 11 + label + "\n" for label in labels[1:])

    reserved = ("host", "world", "unmanaged", "health", "init", "remote-node",
                "kube-apiserver", "ingress", "world-ipv4", "world-ipv6", "encrypted-overlay")
    same(p.identity_list(node_a.state),
         "ID         LABELS\n"
         + "".join(rows(i, f"reserved:{name}") for i, name in enumerate(reserved, start=1))
         + rows(256, "k8s:app=client", *NS_LABELS)
         + rows(257, "k8s:app=db", *NS_LABELS)
         + rows(258, "k8s:app=web", *NS_LABELS)
         + rows(16777217, "cidr:203.0.113.0/24", "reserved:world")
         + rows(16777218, "cidr:203.0.113.128/25", "reserved:world"))


# ---------------------------------------------------------------- conntrack and NAT


def test_ct_list_prints_the_tcp_map_then_the_other():
    tcp = (CtKey("10.244.1.11", "10.244.2.10", 43210, 8080, 6, TUPLE_F_OUT),
           CtEntry(lifetime=17036, tx_packets=1, tx_bytes=74, tx_flags_seen=0x02,
                   last_tx_report=16976, src_sec_id=256))
    svc = (CtKey("10.244.1.11", "10.96.0.10", 5353, 53, 17, TUPLE_F_SERVICE),
           CtEntry(lifetime=60, rx_bytes=1, flags=1 << 4, rev_nat_index=1, backend_id=2))
    same(p.ct_list([svc, tcp]),
         "TCP OUT 10.244.1.11:43210 -> 10.244.2.10:8080 expires=17036 RxPackets=0 RxBytes=0 "
         "RxFlagsSeen=0x00 LastRxReport=0 TxPackets=1 TxBytes=74 TxFlagsSeen=0x02 "
         "LastTxReport=16976 Flags=0x0000 [ ] RevNAT=0 SourceSecurityID=256 IfIndex=0 "
         "BackendID=0 \n"
         "\n"
         "UDP SVC 10.244.1.11:5353 -> 10.96.0.10:53 expires=60 RxPackets=0 RxBytes=1 "
         "RxFlagsSeen=0x00 LastRxReport=0 TxPackets=0 TxBytes=0 TxFlagsSeen=0x00 "
         "LastTxReport=0 Flags=0x0010 [ SeenNonSyn ] RevNAT=1 SourceSecurityID=0 IfIndex=0 "
         "BackendID=2 \n"
         "\n")


def test_nat_list():
    out = NatEntry(CtKey("10.244.1.11", "1.1.1.1", 43210, 443, 6, TUPLE_F_OUT),
                   "192.168.1.11", 43210, created=12)
    back = NatEntry(CtKey("1.1.1.1", "192.168.1.11", 443, 43210, 6, TUPLE_F_IN),
                    "10.244.1.11", 43210, created=12)
    same(p.nat_list([out, back]),
         "TCP OUT 10.244.1.11:43210 -> 1.1.1.1:443 XLATE_SRC 192.168.1.11:43210 Created=12sec "
         "NeedsCT=1\n"
         "TCP IN 1.1.1.1:443 -> 192.168.1.11:43210 XLATE_DST 10.244.1.11:43210 Created=12sec "
         "NeedsCT=1\n"
         "\n")
