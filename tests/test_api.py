"""The Python API: netsim.trace with a Scapy packet, as the README shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP

import netsim

CLUSTER = str(Path(__file__).parent / "data" / "trace" / "cluster.yaml")


def test_trace_a_scapy_packet():
    cluster = netsim.load([CLUSTER])
    t = netsim.trace(cluster, IP(src="10.244.1.10", dst="10.96.0.50") / TCP(sport=41000,
                                                                            dport=80),
                     from_="demo/client", all_paths=True)
    assert sorted(b.delivered_to for b in t.branches) == ["demo/web-1", "demo/web-2"]
    assert t.packet.sport == 41000
    one = netsim.trace(cluster, IP(src="10.244.1.10", dst="10.244.2.11") / UDP(dport=8080),
                       from_="demo/client")
    assert (one.result, one.delivered_to) == ("delivered", "demo/web-2")


def test_the_source_must_be_the_senders_address():
    cluster = netsim.load([CLUSTER])
    with pytest.raises(ValueError, match="not demo/client's address"):
        netsim.trace(cluster, IP(src="10.9.9.9", dst="10.96.0.50") / TCP(dport=80),
                     from_="demo/client")
