"""`netsim trace` from the command line: outputs, exit status, pcap in and out, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap, wrpcap

from netsim.cli import main

CLUSTER = str(Path(__file__).parent / "data" / "trace" / "cluster.yaml")
REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"


def run(capsys, *args):
    code = main(["trace", "-f", CLUSTER, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output_and_exit_status(capsys):
    code, out, _ = run(capsys, "--from", "demo/client", "--to", "demo/web-2:8080")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("trace: tcp 10.244.1.10:40000 -> 10.244.2.11:8080 [S] from demo/client "
                        "to demo/web-2")
    assert lines[1] == "dataplane: calico IPIP, kube-proxy iptables"
    assert lines[2] == "result: delivered to demo/web-2 (p=1.0000)"
    assert "  ipip [tunl0]: encapsulate on tunl0" in lines
    assert "reply" in lines


def test_json_schema(capsys):
    code, out, _ = run(capsys, "--from", "demo/client", "--to", "svc/demo/empty:80", "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert set(data) >= {"result", "delivered_to", "probability", "hops", "branches"}
    assert (data["result"], data["delivered_to"], data["reason"]) == ("rejected", None,
                                                                      "no-endpoints")
    hop = data["hops"][0]
    assert set(hop) >= {"node", "netns", "interface", "component", "action", "detail", "packet"}
    assert hop["packet"] == {"src": "10.244.1.10", "dst": "10.96.0.60", "proto": "TCP",
                             "sport": 40000, "dport": 80, "outer": None}


def test_all_paths_lists_each_path(capsys):
    code, out, _ = run(capsys, "--from", "demo/client", "--to", "svc/demo/web:http",
                       "--all-paths")
    assert code == 0
    assert "paths: 2 (probabilities sum to 1.0000)" in out
    assert "  path 1: p=0.5000 delivered to demo/web-1" in out.splitlines()
    assert "  path 2: p=0.5000 delivered to demo/web-2" in out.splitlines()


def test_pcap_has_every_hop_with_outer_headers(capsys, tmp_path):
    pcap = tmp_path / "trace.pcap"
    code, _, err = run(capsys, "--encapsulation", "VXLAN", "--from", "demo/client", "--to",
                         "demo/web-2:8080", "-o", "pcap", str(pcap))
    assert code == 0
    packets = rdpcap(str(pcap))
    assert f"wrote {len(packets)} packets" in err
    vxlan = [p for p in packets if p.haslayer(VXLAN)]
    assert vxlan and vxlan[0][VXLAN].vni == 4096
    assert vxlan[0][IP].dst == "172.18.0.3"  # the outer header
    inner = vxlan[0][VXLAN].payload[IP]
    assert (inner.src, inner.dst, inner[TCP].dport) == ("10.244.1.10", "10.244.2.11", 8080)


def test_read_traces_a_users_pcap(capsys, tmp_path):
    pcap = tmp_path / "in.pcap"
    wrpcap(str(pcap), [IP(src="10.244.1.10", dst="10.96.0.50") / TCP(sport=41000, dport=80,
                                                                      flags="S")])
    code, out, _ = run(capsys, "--from", "demo/client", "--read", str(pcap))
    assert code == 0
    assert out.startswith("trace: tcp 10.244.1.10:41000 -> 10.96.0.50:80 [S] (packet 1 of ")


def test_read_rejects_packets_from_someone_else(capsys, tmp_path):
    pcap = tmp_path / "in.pcap"
    wrpcap(str(pcap), [IP(src="10.244.2.11", dst="10.96.0.50") / TCP(dport=80)])
    code, _, err = run(capsys, "--from", "demo/client", "--read", str(pcap))
    assert code == 2
    assert "packet 1 comes from 10.244.2.11, not from --from demo/client" in err


@pytest.mark.parametrize("args,message", [
    (["--from", "demo/nobody", "--to", "demo/web-1:8080"], "--from: no pod 'demo/nobody'"),
    (["--from", "demo/client", "--to", "svc/demo/web:9999"], "Service demo/web has no port"),
    (["--from", "demo/client", "--to", "demo/web-1"], "needs a port"),
    (["--from", "demo/client", "--to", "demo/web-1:80", "-o", "hubble"], "--cni cilium"),
    (["--from", "demo/client", "--to", "demo/web-1:80", "-o", "pcap"], "-o pcap FILE"),
    (["--from", "demo/client", "--to", "demo/web-1:80", "--http", "FETCH x"],
     "unknown HTTP method"),
])
def test_errors_are_one_line(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2
    *warnings, error = err.strip().splitlines()  # the fixture gets netsim's CoreDNS addon
    assert message in error and all(w.startswith("warning: ") for w in warnings)


def test_hubble_output_under_cilium(capsys):
    code, out, _ = run(capsys, "--cni", "cilium", "--from", "demo/client", "--to",
                       "svc/demo/web:80", "-o", "hubble")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("demo/client:40000 -> demo/web:80 pre-xlate-fwd TRACED (TCP)")
    assert "post-xlate-fwd TRANSLATED" in lines[1]
    assert any("to-endpoint FORWARDED (TCP Flags: SYN)" in line for line in lines)
    assert any(" <- " in line and "(TCP Flags: SYN, ACK)" in line for line in lines)


@pytest.mark.skipif(not REALWORLD.exists(), reason="shared/realworld is not beside the checkout")
@pytest.mark.parametrize("request_line,code,result", [
    ("POST http://deathstar.default.svc.cluster.local/v1/request-landing", 0, "delivered"),
    ("PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port", 1,
     "rejected (http-denied): the L7 proxy answers 403 'Access denied'"),
])
def test_http_through_cilium_l7_policy(capsys, request_line, code, result):
    demo = REALWORLD / "cilium-star-wars"
    got = main(["trace", "-q", "-f", str(demo / "http-sw-app.yaml"), "-f",
                str(demo / "sw_l3_l4_l7_policy.yaml"), "--cni", "cilium", "--from",
                "default/tiefighter", "--to", "svc/default/deathstar:80", "--http", request_line])
    out = capsys.readouterr().out
    assert got == code
    assert out.splitlines()[2].startswith(f"result: {result}")


@pytest.mark.parametrize("endpoint,pod", [("demo/web-2", "demo/web-2"),
                                          ("10.244.1.11", "demo/web-1")])
def test_endpoint_pins_the_load_balancing_choice(capsys, endpoint, pod):
    code, out, _ = run(capsys, "--from", "demo/client", "--to", "svc/demo/web:80",
                       "--endpoint", endpoint)
    assert code == 0
    assert out.splitlines()[2] == f"result: delivered to {pod} (p=0.5000)"
