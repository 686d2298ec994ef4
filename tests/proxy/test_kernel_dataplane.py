"""The kernel as referee for kube-proxy's dataplane: real connections through the rules netsim
compiles, loaded into a network namespace that plays one node, against the interpreter's
branches for the same packets.

Topology (all inside namespaces this module creates, named nsk-<pid>-<n>-<role>):

    client eth0 192.168.50.1/24 ==== eth0 192.168.50.2/24  node
                                     kpod0 10.244.1.1/32 ==== eth0 10.244.1.2  pod web-a
                                     kpod1 10.244.1.1/32 ==== eth0 10.244.1.3  pod web-b
                                     kpod2 10.244.1.1/32 ==== eth0 10.244.1.4  pod web-c

The node routes each pod's /32 to its veth and defaults via the client; the client routes
the service range 10.96.0.0/12 via the node; pods default-route via 10.244.1.1.

Each pod runs a TCP server on 8080 that answers "<its own address> <the peer it saw>". The
cluster (tests/data/kernel/dataplane.yaml) is compiled with compile_iptables, hooked and
restored as kube-proxy does, with nft iptables and with iptables-legacy. The expectations come
from the kernel: which backend it chose and which source address the backend saw; the
interpreter, given the node's real iptables-save and a Context read from the node's real
addresses and routes, must have a branch with that backend and that rewritten source.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from netsim.cluster import load
from proxy.kube_proxy.iptables import IptablesRules, compile_iptables
from proxy.kube_proxy.options import options_for
from proxy.netfilter import REJECT, Branch, Context, Packet, Ruleset, parse_ruleset, traverse

pytestmark = pytest.mark.kernel

CLUSTER = Path(__file__).resolve().parents[1] / "data" / "kernel" / "dataplane.yaml"
NODE_NAME = "kn1"
NODE_IP, CLIENT_IP = "192.168.50.2", "192.168.50.1"
GATEWAY = "10.244.1.1"  # the node's address on every pod-facing veth (kubenet's cbr0 style)
PODS = ("10.244.1.2", "10.244.1.3", "10.244.1.4")  # web-a, web-b, web-c
TARGET_PORT = 8080
WEB, NODE_PORT_SVC, STICKY, EMPTY = "10.96.0.10", "10.96.0.11", "10.96.0.12", "10.96.0.13"
NODE_PORT = 30080
SERVICE_CIDR = "10.96.0.0/12"

# backend -> (iptables, iptables-restore, iptables-save) commands
BACKENDS = {
    "nft": ("iptables", "iptables-restore", "iptables-save"),
    "legacy": ("iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save"),
}

SERVER = r"""
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(128)
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.sendall(f"{conn.getsockname()[0]} {peer[0]}\n".encode())
"""

CLIENT = r"""
import errno, json, socket, sys
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(count):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((dst, port))
        src, sport = s.getsockname()
        data = b""
        while chunk := s.recv(256):
            data += chunk
        out.append({"src": src, "sport": sport, "reply": data.decode().split()})
    except OSError as err:
        out.append({"error": errno.errorcode.get(err.errno, str(err))})
    finally:
        s.close()
print(json.dumps(out))
"""

# What the backend probe restores: every extension the compiled rules use.
PROBE_RULES = """*filter
:X - [0:0]
-A X -m conntrack --ctstate NEW -m comment --comment probe -p tcp -m tcp --dport 1 -j REJECT
-A X -m addrtype --dst-type LOCAL -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
*nat
:Y - [0:0]
-A Y -m recent --name Y --rcheck --seconds 10 --reap -j RETURN
-A Y -m statistic --mode random --probability 0.5 -m recent --name Y --set -j RETURN
-A Y -p tcp -j DNAT --to-destination 10.1.1.1:80
-A Y -j MARK --or-mark 0x4000
-A Y -j MASQUERADE --random-fully
COMMIT
"""

_names = itertools.count()


def _skip_reason(backend: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "unshare", *BACKENDS[backend]):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    _, restore, _ = BACKENDS[backend]
    probe = subprocess.run(["unshare", "-n", restore], input=PROBE_RULES, text=True,
                           capture_output=True, check=False)
    if probe.returncode != 0:
        return f"{restore} cannot load kube-proxy's extensions here: {probe.stderr.strip()}"
    return None


def _run(argv: list[str], stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(argv, input=stdin, text=True, capture_output=True, check=False,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip()}")
    return done.stdout


def _in(ns: str, *argv: str, stdin: str | None = None, timeout: float = 60) -> str:
    return _run(["ip", "netns", "exec", ns, *argv], stdin, timeout)


def _ip_batch(ns: str, commands: list[str]) -> None:
    _run(["ip", "-n", ns, "-batch", "-"], "\n".join(commands) + "\n")


def _sysctl(ns: str, **values: str) -> None:
    _in(ns, "sysctl", "-q", "-w", *(f"{k.replace('__', '.')}={v}" for k, v in values.items()))


# ---------------------------------------------------------------- the node and its interpreter view


@dataclass(frozen=True)
class Dataplane:
    backend: str
    node: str
    client: str
    pods: tuple[str, ...]  # namespace per entry of PODS
    rules: IptablesRules
    saved: str  # the node's iptables-save right after loading, before any traffic
    ruleset: Ruleset
    ctx: Context
    route: Callable[[str], str | None]  # destination -> out interface on the node

    def connect(self, ns: str, dst: str, port: int, count: int) -> list[dict]:
        """`count` TCP connections from namespace `ns`, one after another."""
        out = _in(ns, sys.executable, "-c", CLIENT, dst, str(port), str(count),
                  timeout=10 + 6 * count)
        return json.loads(out)


def _node_context(ns: str) -> tuple[Context, Callable[[str], str | None]]:
    """A Context from the node namespace's real addresses and main routing table, and the
    route lookup (longest prefix; None for the node's own addresses)."""
    links = json.loads(_run(["ip", "-n", ns, "-j", "-4", "addr", "show"]))
    interfaces = {link["ifname"]: tuple(f"{a['local']}/{a['prefixlen']}"
                                        for a in link.get("addr_info", ())
                                        if a.get("family") == "inet")
                  for link in links}
    local = tuple(sorted({a.split("/")[0] for addrs in interfaces.values() for a in addrs}))
    routes = json.loads(_run(["ip", "-n", ns, "-j", "-4", "route", "show"]))
    table = [(ipaddress.ip_network("0.0.0.0/0" if r["dst"] == "default" else r["dst"]),
              r["dev"]) for r in routes]

    def route_to(dst: str) -> str | None:
        if dst in local or ipaddress.ip_address(dst).is_loopback:
            return None
        addr = ipaddress.ip_address(dst)
        found = [(net.prefixlen, dev) for net, dev in table if addr in net]
        return max(found)[1] if found else None

    ctx = Context(local_addresses=local, interfaces=interfaces,
                  route=lambda p: route_to(p.dst))
    return ctx, route_to


def _load_rules(ns: str, backend: str, rules: IptablesRules) -> str:
    """What kube-proxy does on a fresh node: canary chains, EnsureChain + insert each jump at
    position 1, then `iptables-restore --noflush`. Returns iptables-save's text."""
    ipt, restore, save = BACKENDS[backend]
    for table in ("mangle", "nat", "filter"):
        _in(ns, ipt, "-w", "-t", table, "-N", "KUBE-PROXY-CANARY")
    ensured: set[tuple[str, str]] = set()
    for hook in reversed(rules.jump_rules):  # kube-proxy's ensure order
        if (hook.table, hook.args[-1]) not in ensured:
            _in(ns, ipt, "-w", "-t", hook.table, "-N", hook.args[-1])
            ensured.add((hook.table, hook.args[-1]))
        _in(ns, ipt, "-w", "-t", hook.table, "-I", hook.chain, "1", *hook.args)
    _in(ns, restore, "-w", "--noflush", stdin=rules.restore_text())
    return _in(ns, save)


def _start_server(ns: str, ip: str) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, ip,
                             str(TARGET_PORT)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def dataplane(request) -> Iterator[Dataplane]:
    backend = request.param
    reason = _skip_reason(backend)
    if reason:
        pytest.skip(reason)
    prefix = f"nsk-{os.getpid()}-{next(_names)}"
    node, client = f"{prefix}-node", f"{prefix}-client"
    pods = tuple(f"{prefix}-pod{i}" for i in range(len(PODS)))
    created: list[str] = []
    servers: list[subprocess.Popen] = []
    try:
        for ns in (node, client, *pods):
            _run(["ip", "netns", "add", ns])
            created.append(ns)
        # before the veths exist, so that `default` reaches them; the redirect sysctl is OR-ed
        # over all/<dev>. ICMP rate limiting off: REJECT answers every probe.
        _sysctl(node, net__ipv4__ip_forward="1", net__ipv4__conf__all__route_localnet="1",
                net__ipv4__conf__all__send_redirects="0",
                net__ipv4__conf__default__send_redirects="0", net__ipv4__icmp_ratelimit="0")
        _run(["ip", "-n", client, "link", "add", "eth0", "type", "veth", "peer", "name",
              "eth0", "netns", node])
        for i, pod in enumerate(pods):
            _run(["ip", "-n", node, "link", "add", f"kpod{i}", "type", "veth", "peer", "name",
                  "eth0", "netns", pod])
        node_cmds = ["link set lo up", "link set eth0 up",
                     f"addr add {NODE_IP}/24 dev eth0"]
        for i, ip in enumerate(PODS):
            node_cmds += [f"link set kpod{i} up", f"addr add {GATEWAY}/32 dev kpod{i}",
                          f"route add {ip}/32 dev kpod{i}"]
        # a node has a default route; without it a ClusterIP with no endpoints is unroutable
        # and never reaches the filter table's REJECT
        node_cmds.append(f"route add default via {CLIENT_IP} dev eth0")
        _ip_batch(node, node_cmds)
        _ip_batch(client, ["link set lo up", "link set eth0 up",
                           f"addr add {CLIENT_IP}/24 dev eth0",
                           f"route add {SERVICE_CIDR} via {NODE_IP} dev eth0"])
        for pod, ip in zip(pods, PODS, strict=True):
            _ip_batch(pod, ["link set lo up", "link set eth0 up", f"addr add {ip}/32 dev eth0",
                            f"route add {GATEWAY}/32 dev eth0 scope link",
                            f"route add default via {GATEWAY} dev eth0"])
        for pod, ip in zip(pods, PODS, strict=True):
            servers.append(_start_server(pod, ip))
        for proc in servers:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read()}")

        cluster = load([str(CLUSTER)])
        assert cluster.warnings == ()
        rules = compile_iptables(cluster, options_for(cluster, NODE_NAME))
        saved = _load_rules(node, backend, rules)
        ruleset = parse_ruleset(saved, f"{backend} iptables-save of {node}")
        ctx, route = _node_context(node)
        yield Dataplane(backend, node, client, pods, rules, saved, ruleset, ctx, route)
    finally:
        for proc in servers:
            proc.kill()
        for proc in servers:
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


# ---------------------------------------------------------------- helpers for the comparison


def _syn(dp: Dataplane, conn: dict, dst: str, dport: int, in_iface: str | None) -> Packet:
    """The first packet of a connection the client made, as the node received it (or, for
    one the node made itself, as it left the socket: out interface from the first route)."""
    out = None if in_iface else dp.route(dst)
    return Packet(conn["src"], dst, "tcp", conn["sport"], dport, in_iface=in_iface,
                  out_iface=out)


def _accepted_by_backend(branches: list[Branch]) -> dict[str, Branch]:
    found: dict[str, Branch] = {}
    for b in branches:
        if b.accepted:
            assert b.packet.dst not in found, f"two branches to {b.packet.dst}"
            found[b.packet.dst] = b
    return found


def _describe(branches: list[Branch]) -> str:
    return "\n".join(f"  {b.verdict} p={b.probability:.4f} -> {b.packet.src}:{b.packet.sport} "
                     f"{b.packet.dst}:{b.packet.dport}" for b in branches)


def _check_connections(dp: Dataplane, conns: list[dict], dst: str, dport: int,
                       in_iface: str | None, path: str, hooks: tuple[str, ...]) -> Counter:
    """For each kernel connection: the backend it reached is an accepted branch of the SYN,
    and that branch's source is what the backend saw. Returns the backends chosen."""
    chosen: Counter = Counter()
    for conn in conns:
        assert "reply" in conn, f"{dp.backend}: connection to {dst}:{dport} failed: {conn}"
        backend, peer = conn["reply"]
        chosen[backend] += 1
        packet = _syn(dp, conn, dst, dport, in_iface)
        branches = traverse(dp.ruleset, packet, path, dp.ctx)
        assert not any(b.unsupported for b in branches), [b.unsupported for b in branches]
        assert sum(b.probability for b in branches) == pytest.approx(1.0, abs=1e-9)
        accepted = _accepted_by_backend(branches)
        assert backend in accepted, (
            f"{dp.backend}: the kernel sent {packet} to {backend}; the interpreter's branches:\n"
            f"{_describe(branches)}")
        branch = accepted[backend]
        assert branch.hooks == hooks
        assert (branch.packet.dport, branch.packet.out_iface) == (
            TARGET_PORT, dp.route(backend))
        assert branch.packet.src == peer, (
            f"{dp.backend}: {packet} reached {backend} from {peer} in the kernel, from "
            f"{branch.packet.src} in the interpreter (masquerade decision differs)\n"
            + "\n".join(branch.trace_lines()))
    return chosen


INBOUND = ("PREROUTING", "FORWARD", "POSTROUTING")
OUTBOUND = ("OUTPUT", "POSTROUTING")


# ---------------------------------------------------------------- the tests


def _tables(text: str) -> dict[str, str]:
    """iptables-save text per table, comment lines dropped and the built-in chains' counters
    zeroed (the only thing the kernel adds)."""
    tables: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:]
        line = re.sub(r"^(:[A-Z]+ [A-Z]+) \[\d+:\d+\]$", r"\1 [0:0]", line)
        tables[name] = tables.get(name, "") + line + "\n"
    return tables


def test_saved_rules_are_the_compiled_ones(dataplane: Dataplane) -> None:
    # Compared table by table: iptables-legacy-save lists the tables in the order the kernel
    # registered them in the namespace (/proc/net/ip_tables_names), nft's in mangle, filter,
    # nat order, which is what save_text() reproduces.
    actual, expected = _tables(dataplane.saved), _tables(dataplane.rules.save_text())
    assert sorted(actual) == sorted(expected)
    for name in expected:
        if actual[name] != expected[name]:
            diff = "".join(difflib.unified_diff(
                expected[name].splitlines(True), actual[name].splitlines(True),
                "compile_iptables(...).save_text()", f"{dataplane.backend} iptables-save"))
            pytest.fail(f"iptables-save's {name} table differs from the compiled rules:\n{diff}")


# (probe, source namespace, destination, port, in interface on the node (None: the node's
#  own socket), path, connections)
PROBES = [
    ("client-clusterip", "client", WEB, 80, "eth0", "inbound", 60),
    ("client-nodeport", "client", NODE_IP, NODE_PORT, "eth0", "inbound", 30),
    ("pod-clusterip", "pod0", WEB, 80, "kpod0", "inbound", 30),
    ("node-clusterip", "node", WEB, 80, None, "output", 30),
]


def _namespace(dp: Dataplane, role: str) -> str:
    return {"client": dp.client, "node": dp.node,
            **{f"pod{i}": ns for i, ns in enumerate(dp.pods)}}[role]


@pytest.mark.parametrize(("probe", "source", "dst", "port", "in_iface", "path", "count"),
                         PROBES, ids=[p[0] for p in PROBES])
def test_kernel_choices_are_emulator_branches(dataplane: Dataplane, probe, source, dst, port,
                                              in_iface, path, count) -> None:
    ns = _namespace(dataplane, source)
    conns = dataplane.connect(ns, dst, port, count)
    hooks = INBOUND if path == "inbound" else OUTBOUND
    chosen = _check_connections(dataplane, conns, dst, port, in_iface, path, hooks)
    assert set(chosen) <= set(PODS)
    seen = {tuple(c["reply"]) for c in conns}
    if probe == "pod-clusterip":
        # hairpin: web-a reaching itself is masqueraded to the node's address on its veth;
        # reaching another pod keeps its own address (inside clusterCIDR). With 30 tries each
        # case turns up except with probability (2/3)^30 resp. (1/3)^30.
        assert (PODS[0], GATEWAY) in seen
        assert any(backend != PODS[0] and peer == PODS[0] for backend, peer in seen)
    elif probe == "node-clusterip":
        assert {c["src"] for c in conns} == {NODE_IP}
        assert {peer for _, peer in seen} == {GATEWAY}  # 192.168.50.2 is not a pod address
    else:
        assert {peer for _, peer in seen} == {GATEWAY}  # outside clusterCIDR: masqueraded


def test_three_endpoints_share_the_load(dataplane: Dataplane) -> None:
    conns = dataplane.connect(dataplane.client, WEB, 80, 60)
    chosen = _check_connections(dataplane, conns, WEB, 80, "eth0", "inbound", INBOUND)
    # each of 3 endpoints is missed by 60 tries with probability (2/3)^60 ~ 3e-11
    assert set(chosen) == set(PODS), chosen
    branches = traverse(dataplane.ruleset, _syn(dataplane, conns[0], WEB, 80, "eth0"),
                        "inbound", dataplane.ctx)
    assert [b.packet.dst for b in branches] == list(PODS)
    assert all(b.accepted for b in branches)
    assert sum(b.probability for b in branches) == pytest.approx(1.0, abs=1e-9)
    # the kernel keeps round(p * 2^31): 0.3333333333 becomes 0.33333333349
    assert [b.probability for b in branches] == pytest.approx([1 / 3] * 3, abs=1e-9)


def test_client_ip_affinity_pins_one_backend(dataplane: Dataplane) -> None:
    conns = dataplane.connect(dataplane.client, STICKY, 80, 10)
    chosen = _check_connections(dataplane, conns, STICKY, 80, "eth0", "inbound", INBOUND)
    assert len(chosen) == 1, f"{dataplane.backend}: ClientIP affinity not kept: {chosen}"
    (pinned,) = chosen

    ctx = dataplane.ctx
    first = traverse(dataplane.ruleset, _syn(dataplane, conns[0], STICKY, 80, "eth0"),
                     "inbound", ctx)
    assert [b.probability for b in first] == pytest.approx([1 / 3] * 3, abs=1e-9)
    ctx = ctx.advance(_accepted_by_backend(first)[pinned])  # the SEP's `-m recent --set`
    for i, conn in enumerate(conns[1:], start=1):
        ctx = replace(ctx, now=float(i))  # within the 10800 s of --rcheck --seconds
        branches = traverse(dataplane.ruleset, _syn(dataplane, conn, STICKY, 80, "eth0"),
                            "inbound", ctx)
        assert [(b.accepted, b.packet.dst, b.probability) for b in branches] == [
            (True, pinned, 1.0)], _describe(branches)
        assert branches[0].packet.src == conn["reply"][1]
        ctx = ctx.advance(branches[0])


def test_service_without_endpoints_is_rejected(dataplane: Dataplane) -> None:
    conns = dataplane.connect(dataplane.client, EMPTY, 80, 3)
    assert [c.get("error") for c in conns] == ["ECONNREFUSED"] * 3, conns
    branches = traverse(dataplane.ruleset, Packet(CLIENT_IP, EMPTY, "tcp", 40000, 80,
                                                  in_iface="eth0"), "inbound", dataplane.ctx)
    assert len(branches) == 1, _describe(branches)
    (branch,) = branches
    assert branch.verdict.kind == REJECT
    assert branch.verdict.hook == "FORWARD"
    assert branch.verdict.by is not None
    assert branch.verdict.by.chain == "KUBE-SERVICES"
    assert "demo/empty:http has no endpoints" in branch.verdict.by.text
    assert branch.packet.dst == EMPTY  # not DNATed
