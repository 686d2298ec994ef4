"""The servers behind every pod's container ports: one daemon process holding a listening
socket per (namespace, protocol, port), each answering with the name of who owns it.

A TCP or SCTP connection gets the owner's name ("x/a", "node/node-1") and a FIN; a UDP
datagram gets it back as one datagram. The daemon enters each namespace only to open its
sockets (setns moves the calling thread; a socket keeps the namespace it was opened in), so
one process serves the whole cluster. `netsim live down` ends it (SIGTERM).

Run as `python -m netsim.live.server`: it reads the spec (JSON) on stdin, prints one line
`ready <json>` when every socket listens, then serves until killed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from netsim.live.state import LiveError

READY_TIMEOUT = 30.0
KINDS = {"tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
         "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
         "sctp": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))}
UNSUPPORTED = (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT)


def sctp_supported() -> bool:
    """Whether this kernel speaks SCTP (CONFIG_IP_SCTP); probes skip it when not."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, KINDS["sctp"][1]).close()
    except OSError as exc:
        if exc.errno in UNSUPPORTED:
            return False
        raise
    return True


# ---------------------------------------------------------------- the launcher (in `up`)


def spec_entry(netns: str, families: tuple[int, ...], listeners) -> dict:
    return {"netns": netns, "families": list(families),
            "listeners": [[s.protocol, s.port, s.label] for s in listeners]}


def start(spec: list[dict], log: Path) -> subprocess.Popen:
    """Start the daemon in its own session (a Ctrl-C meant for `up` does not reach it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "netsim.live.server"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True, close_fds=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode())
    proc.stdin.close()
    return proc


def wait_ready(proc: subprocess.Popen, log: Path) -> dict:
    """The daemon's `ready` report ({"sockets": n, "skipped": {...}}), or LiveError."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        if sel.select(deadline - time.monotonic()):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    sel.close()
    proc.stdout.close()
    if not line.startswith(b"ready "):
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() \
            else []
        raise LiveError(f"the pod servers did not start: {tail[0] if tail else 'no output'} "
                        f"(see {log})")
    return json.loads(line[6:])


def stop(pid: int | None) -> bool:
    """End the daemon if `pid` is still ours (its command line names this module) and wait
    for it, so that the sockets it holds no longer keep the namespaces alive."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
    except OSError:
        return False
    if b"netsim.live.server" not in cmdline:
        return False  # gone, or the pid was reused by someone else
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:  # our own child (started by this process)
                break
        except ChildProcessError:
            if _gone(pid):
                break
        time.sleep(0.01)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------- the daemon


def _listen(protocol: str, port: int, family: int) -> socket.socket:
    kind, proto = KINDS[protocol]
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    s = socket.socket(af, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if af == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if af == socket.AF_INET6 else "0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(1024)
    s.setblocking(False)
    return s


def serve(spec: list[dict]) -> None:
    from netsim.live.kernel import entered

    sel = selectors.DefaultSelector()
    skipped: dict[str, int] = {}
    count = 0
    for entry in spec:
        with entered(entry["netns"]):
            for protocol, port, label in entry["listeners"]:
                for family in entry["families"] or [4]:
                    try:
                        s = _listen(protocol, port, family)
                    except OSError as exc:
                        if exc.errno in UNSUPPORTED:
                            skipped[protocol] = skipped.get(protocol, 0) + 1
                            continue
                        raise OSError(exc.errno, f"{entry['netns']} {protocol}/{port}: "
                                      f"{exc.strerror}") from None
                    sel.register(s, selectors.EVENT_READ, (protocol, label.encode() + b"\n"))
                    count += 1
    print("ready " + json.dumps({"sockets": count, "skipped": skipped}), flush=True)
    sys.stdout.close()
    while True:
        for key, _ in sel.select():
            sock, (protocol, reply) = key.fileobj, key.data
            try:
                if protocol == "udp":
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(reply, peer)
                else:
                    conn, _ = sock.accept()
                    with conn:
                        conn.send(reply)
            except OSError:
                continue  # a client gone before the answer: nothing to do


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(json.load(sys.stdin))


if __name__ == "__main__":
    main()
