"""Probes: real connections through the live namespaces, the walk's prediction for each, and
where the two differ.

A probe is one connection attempt: TCP and SCTP connect and read the server's answer, UDP
sends a datagram and waits for the answer. The kernel's outcome is `delivered` (the answer
arrived: it names who answered), `rejected` (an RST or an ICMP error came back) or `dropped`
(nothing came back before the deadline). The probes run at once from one thread (in batches
when open files are scarce), so a round costs one deadline however many probes it holds.
"""

from __future__ import annotations

import errno
import ipaddress
import resource
import selectors
import socket
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from netsim.dataplane import EXTERNAL_NETNS, Dataplane
from netsim.live import kernel
from netsim.packet import TracePacket
from netsim.topology import pod_id
from netsim.trace_types import DELIVERED, DROPPED, REJECTED
from netsim.walk import walk

DEFAULT_TIMEOUT = 1.0  # seconds a probe waits for an answer before calling it dropped
WALK_SPORT = 40000  # the source port the walk uses (the kernel picks its own)
PROTOCOLS = ("TCP", "UDP", "SCTP")
_KIND = {"TCP": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
         "UDP": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
         "SCTP": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))}
# Errors that mean an answer came back (an RST, an ICMP unreachable): rejected. Any other
# (EPERM: netfilter dropped it on the way out; EINVAL: a blackhole route) means dropped.
_REJECTING = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET,
              errno.EACCES}


@dataclass(frozen=True, slots=True)
class Probe:
    """One connection to try: from a namespace (netsim id) to an address and port."""

    kind: str  # pod | service | nodeport
    source: str  # netsim id of the sender: "pod:<ns>/<name>" or "external"
    source_label: str  # "x/a", "external"
    src_ip: str
    dst_ip: str
    port: int
    protocol: str  # TCP | UDP | SCTP
    target: str  # "y/b", "svc/<ns>/<name>", "node/<name>"

    @property
    def service(self) -> str:
        return f"{self.protocol}/{self.port}"

    @property
    def family(self) -> int:
        return 6 if ":" in self.dst_ip else 4

    def text(self) -> str:
        return f"{self.service} {self.source_label} -> {self.target} ({self.dst_ip})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the kernel did with a probe."""

    result: str  # delivered | dropped | rejected
    answered_by: str | None = None  # the server's name, when delivered
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the walk predicts: every path (load balancing forks) with its result."""

    results: tuple[str, ...]  # per path
    delivered_to: tuple[str, ...]  # per path that delivers
    reason: str  # the most likely path's reason
    detail: str

    @property
    def result(self) -> str:
        if len(set(self.results)) == 1:
            return self.results[0]
        return "/".join(sorted(set(self.results)))


@dataclass(frozen=True, slots=True)
class Comparison:
    probe: Probe
    kernel: Outcome
    netsim: Prediction

    @property
    def agree(self) -> bool:
        """The kernel took one of the paths the walk predicts: the same result and, when
        delivered, the same server."""
        k = self.kernel
        if k.result not in self.netsim.results:
            return False
        return k.result != DELIVERED or k.answered_by is None or \
            k.answered_by in self.netsim.delivered_to

    def why(self) -> str:
        k, n = self.kernel, self.netsim
        kernel = k.result + (f" (answered by {k.answered_by})" if k.answered_by else
                             f" ({k.detail})" if k.detail else "")
        netsim = n.result + (f" to {', '.join(sorted(set(n.delivered_to)))}"
                             if n.delivered_to else "") + f" ({n.reason}: {n.detail})"
        return f"kernel {kernel}; netsim {netsim}"


# ---------------------------------------------------------------- which probes


def pod_probes(dp: Dataplane, ports: Sequence[int] = (),
               protocols: Sequence[str] = ()) -> list[Probe]:
    """Every ordered pair of distinct pods with a network namespace, on each port the
    destination declares (filtered by `ports` and `protocols`): what a server answers on."""
    wired = _wired_pods(dp)
    out = []
    for src in wired:
        for dst in wired:
            if src is dst:
                continue
            for src_ip in src.ips:  # each family both pods have
                dst_ip = _same_family(src_ip, dst.ips)
                if dst_ip is None:
                    continue
                for proto, port in _served(dst, ports, protocols):
                    out.append(Probe("pod", pod_id(src.namespace, src.name), src.key, src_ip,
                                     dst_ip, port, proto, dst.key))
    return out


def service_probes(dp: Dataplane, ports: Sequence[int] = (),
                   protocols: Sequence[str] = ()) -> list[Probe]:
    """From every pod to every Service's cluster IP and port; from the external client to
    every node's address on every NodePort."""
    out = []
    wired = _wired_pods(dp)
    for svc in dp.cluster.services:
        for sp in svc.ports:
            if sp.protocol not in PROTOCOLS or (protocols and sp.protocol not in protocols):
                continue
            target = f"svc/{svc.namespace}/{svc.name}"
            if (not ports or sp.port in ports) and not svc.headless:
                for vip in svc.cluster_ips:
                    for src in wired:
                        src_ip = _same_family(vip, src.ips)
                        if src_ip is not None:
                            out.append(Probe("service", pod_id(src.namespace, src.name),
                                             src.key, src_ip, vip, sp.port, sp.protocol,
                                             target))
            if sp.node_port and (not ports or sp.node_port in ports):
                ext = dp.external_ip
                for node in dp.cluster.nodes:
                    node_ip = _same_family(ext, node.internal_ips)
                    if node_ip is not None:
                        out.append(Probe("nodeport", EXTERNAL_NETNS, "external", ext, node_ip,
                                         sp.node_port, sp.protocol,
                                         f"{target} via node/{node.name}"))
    return out


def _wired_pods(dp: Dataplane) -> list:
    """Pods with their own namespace (a veth on their node), as the node's station lists."""
    keys = set()
    for node in dp.cluster.nodes:
        for iface in dp.host_station(node.name).namespace.interfaces:
            if iface.kind == "veth" and iface.peer and iface.peer[0].startswith("pod:"):
                keys.add(iface.peer[0])
    return [p for p in dp.cluster.pods if pod_id(p.namespace, p.name) in keys]


def _served(pod, ports, protocols) -> list[tuple[str, int]]:
    """The pod's declared ports, filtered. (An ingress controller's ports are probed too: the
    walk's controller accepts a connection that carries no HTTP request, as a server does.)"""
    found = [(p.protocol, p.container_port) for p in pod.container_ports
             if p.protocol in PROTOCOLS and (not ports or p.container_port in ports) and
             (not protocols or p.protocol in protocols)]
    return list(dict.fromkeys(found))


def _same_family(ip: str, candidates: Iterable[str]) -> str | None:
    version = ipaddress.ip_address(ip).version
    return next((c for c in candidates if ipaddress.ip_address(c).version == version), None)


# ---------------------------------------------------------------- the walk's prediction


def predict(dp: Dataplane, probe: Probe) -> Prediction:
    packet = TracePacket(probe.src_ip, probe.dst_ip, probe.protocol.lower(), WALK_SPORT,
                         probe.port)
    trace = walk(dp, packet, probe.source, mode="all")
    paths = trace.branches or (trace,)
    return Prediction(tuple(t.result for t in paths),
                      tuple(t.delivered_to for t in paths if t.result == DELIVERED and
                            t.delivered_to),
                      trace.reason, trace.detail)


# ---------------------------------------------------------------- the kernel's outcome


class _Attempt:
    __slots__ = ("data", "done", "established", "index", "probe", "sock")

    def __init__(self, index: int, probe: Probe, sock: socket.socket) -> None:
        self.index, self.probe, self.sock = index, probe, sock
        self.data = b""
        self.established = False
        self.done: Outcome | None = None


def run(probes: Sequence[Probe], namespaces: dict[str, str],
        timeout: float = DEFAULT_TIMEOUT) -> list[Outcome]:
    """Try the probes, as many at once as open files allow; `namespaces` maps netsim ids to
    kernel namespace names. Sockets are closed whatever happens (an interrupt included)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    batch = max(64, soft // 2 - 64)
    out: list[Outcome] = []
    for start in range(0, len(probes), batch):
        out += _run_batch(probes[start:start + batch], namespaces, timeout)
    return out


def _run_batch(probes: Sequence[Probe], namespaces: dict[str, str],
               timeout: float) -> list[Outcome]:
    attempts: list[_Attempt] = []
    outcomes: list[Outcome | None] = [None] * len(probes)
    sel = selectors.DefaultSelector()
    try:
        by_source: dict[str, list[int]] = {}
        for i, probe in enumerate(probes):
            by_source.setdefault(probe.source, []).append(i)
        for source, indices in by_source.items():
            with kernel.entered(namespaces[source]):
                for i in indices:
                    outcomes[i] = _open(probes[i], i, attempts, sel)
        deadline = time.monotonic() + timeout
        pending = sum(a.done is None for a in attempts)
        while pending:
            left = deadline - time.monotonic()
            for key, _ in sel.select(max(left, 0)):
                attempt = key.data
                if _step(attempt, sel):
                    pending -= 1
            if left <= 0:
                break
        for a in attempts:
            if a.done is None:
                a.done = _unanswered(a)
            outcomes[a.index] = a.done
    finally:
        for a in attempts:
            a.sock.close()
        sel.close()
    return [o if o is not None else Outcome(DROPPED, detail="not sent") for o in outcomes]


def _open(probe: Probe, index: int, attempts: list, sel) -> Outcome | None:
    """Open the probe's socket and start it; an Outcome when it failed at once."""
    kind, proto = _KIND[probe.protocol]
    family = socket.AF_INET6 if ":" in probe.dst_ip else socket.AF_INET
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        return Outcome(DROPPED, detail=f"cannot open a {probe.protocol} socket: "
                       f"{exc.strerror}")
    sock.setblocking(False)
    attempt = _Attempt(index, probe, sock)
    attempts.append(attempt)
    try:
        if kind == socket.SOCK_DGRAM:
            sock.connect((probe.dst_ip, probe.port))  # ICMP errors come back on the socket
            sock.send(b"netsim live probe\n")
            sel.register(sock, selectors.EVENT_READ, attempt)
        else:
            code = sock.connect_ex((probe.dst_ip, probe.port))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, errno.errorcode.get(code, str(code)))
            sel.register(sock, selectors.EVENT_WRITE, attempt)
    except OSError as exc:
        attempt.done = _failed(exc.errno)
    return attempt.done


def _step(a: _Attempt, sel) -> bool:
    """Advance an attempt on a socket event; True when it just finished."""
    sock = a.sock
    if a.probe.protocol != "UDP" and not a.established:
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            return _finish(a, sel, _failed(code))
        a.established = True
        sel.modify(sock, selectors.EVENT_READ, a)
        return False
    try:
        chunk = sock.recv(512)
    except BlockingIOError:
        return False
    except OSError as exc:
        if a.established:  # answered, then reset: the path worked
            return _finish(a, sel, _answered(a))
        return _finish(a, sel, _failed(exc.errno))
    a.data += chunk
    if a.probe.protocol == "UDP" or not chunk:
        return _finish(a, sel, _answered(a))
    return False


def _finish(a: _Attempt, sel, outcome: Outcome) -> bool:
    a.done = outcome
    sel.unregister(a.sock)
    return True


def _answered(a: _Attempt) -> Outcome:
    label = a.data.decode(errors="replace").strip() or None
    return Outcome(DELIVERED, label, "answered" if label else "connected, no answer")


def _unanswered(a: _Attempt) -> Outcome:
    if a.established:  # the handshake completed: a socket accepted it
        return _answered(a)
    return Outcome(DROPPED, detail="no answer")


def _failed(code: int) -> Outcome:
    name = errno.errorcode.get(code, str(code))
    return Outcome(REJECTED if code in _REJECTING else DROPPED, detail=name)


# ---------------------------------------------------------------- both


def compare(dp: Dataplane, probes: Sequence[Probe], namespaces: dict[str, str],
            timeout: float = DEFAULT_TIMEOUT) -> list[Comparison]:
    """Each probe's kernel outcome beside the walk's prediction. The walks run while the
    kernel's probes wait for their deadline."""
    with ThreadPoolExecutor(1) as pool:
        kernel_side = pool.submit(run, probes, namespaces, timeout)
        predictions = [predict(dp, p) for p in probes]
        outcomes = kernel_side.result()
    return [Comparison(p, o, n) for p, o, n in zip(probes, outcomes, predictions, strict=True)]

